"""Identity providers the databricks sink signs in through: an OIDC issuer's tokens, GitHub Actions' OIDC token
endpoint, and Microsoft Entra ID's v1 token endpoint (what databricks-sdk-py's azure-client-secret calls).

    issuer = Issuer("https://token.actions.githubusercontent.com")
    jwt = issuer.sign({"sub": "repo:my-org/my-repo:environment:prod", "aud": "…"}, lifetime=300)
    issuer.verify(jwt)                   # the claims, or raises TokenError(reason)

    github = GitHubOidc().start()        # ACTIONS_ID_TOKEN_REQUEST_URL = github.request_url,
                                         # ACTIONS_ID_TOKEN_REQUEST_TOKEN = github.request_token
    github.token_requests                # every token handed out: {"audience", "jwt"}

    entra = EntraId().start(tls=...)     # reached as https://login.microsoftonline.com through a test proxy
    entra.token_requests                 # every token issued: {"tenant", "client_id", "resource", "form"}
    entra.issue_user_token(upn, resource) / issue_app_token(client_id, resource)   # what `az login` holds
    entra.verify(token, resource)        # the claims of a token it issued for `resource` and still valid, else None

Signatures are HMAC-SHA256 with a key the issuer keeps. Real issuers sign RS256 and publish the key at their JWKS
URL; here whoever must verify a token (the Databricks emulator) is handed the Issuer object instead. The header says
what was used (`"alg": "HS256"`), so a client cannot mistake these tokens for real ones.

Facts from where they come:
- [GH] docs.github.com "OpenID Connect" and actions/toolkit packages/core (oidc-utils.ts): a job with `permissions:
  id-token: write` gets ACTIONS_ID_TOKEN_REQUEST_URL (…/idtoken?api-version=2.0) and ACTIONS_ID_TOKEN_REQUEST_TOKEN;
  `GET <url>&audience=<aud>` with `Authorization: Bearer <request token>` answers `{"count": …, "value": "<jwt>"}`.
  The token's iss is https://token.actions.githubusercontent.com, sub `repo:<owner>/<repo>:environment:<name>` (or
  `:ref:refs/heads/<branch>`), aud the requested audience, by default the repository owner's URL.
- [AAD] learn.microsoft.com "Microsoft identity platform and the OAuth 2.0 client credentials flow" (v1 endpoint
  https://login.microsoftonline.com/<tenant>/oauth2/token, form grant_type=client_credentials, client_id,
  client_secret, resource) and the AADSTS error reference: an unknown tenant is AADSTS90002, an unknown application
  AADSTS700016, a wrong secret AADSTS7000215 (401 invalid_client), an unknown resource AADSTS500011. The v1 answer
  carries expires_in, ext_expires_in, expires_on and not_before as strings. Tokens carry tid, appid, oid and, for a
  user, upn. databricks-sdk-py environments.py: 2ff814a6-3304-4ab8-85cb-cd0e6f879c1d is Azure Databricks' application
  id, https://management.core.windows.net/ the service-management resource.
Not verified: the exact texts of the errors past their AADSTS codes; that v1 ignores a `scope` parameter (the SDK
sends scope=all-apis to it).
"""

import base64
import hashlib
import hmac
import json
import os
import time
import urllib.parse
import uuid

from .base import Emulator, Reply

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
AZURE_DATABRICKS = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d"
AZURE_MANAGEMENT = "https://management.core.windows.net/"
DEFAULT_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
DEFAULT_APPLICATIONS = {"4e1a6f1c-0c6b-4a47-9e2a-6f3d2b7c8d90": "azure-secret-0123456789"}


class TokenError(Exception):
    """Why a token is not acceptable, in the words a token endpoint would use."""


def b64url(data):
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Issuer:
    """An OIDC issuer's signing key: `sign` makes a JWT of its own, `verify` checks one."""

    def __init__(self, iss):
        self.iss = iss
        self.key = os.urandom(32)

    def sign(self, claims, lifetime=300, expired=False):
        now = int(time.time())
        body = {"iss": self.iss, "iat": now, "nbf": now, "exp": now - 60 if expired else now + lifetime}
        body.update(jti=str(uuid.uuid4()), **claims)
        head = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": self.iss}).encode())
        payload = b64url(json.dumps(body).encode())
        signature = hmac.new(self.key, f"{head}.{payload}".encode(), hashlib.sha256).digest()
        return f"{head}.{payload}.{b64url(signature)}"

    def verify(self, token):
        claims = read_claims(token)
        head, payload, signature = token.split(".")
        expected = hmac.new(self.key, f"{head}.{payload}".encode(), hashlib.sha256).digest()
        try:
            valid = hmac.compare_digest(b64url_decode(signature), expected)
        except ValueError:
            valid = False
        if not valid or claims.get("iss") != self.iss:
            raise TokenError(f"the signature does not verify with the keys of {claims.get('iss')}")
        now = time.time()
        if not isinstance(claims.get("exp"), (int, float)) or claims["exp"] <= now:
            raise TokenError("the token has expired")
        if isinstance(claims.get("nbf"), (int, float)) and claims["nbf"] > now + 60:
            raise TokenError("the token is not valid yet")
        return claims


def read_claims(token):
    """The claims of a JWT, unverified; TokenError when it is not one."""
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 3:
        raise TokenError("the token is not a JWT")
    try:
        claims = json.loads(b64url_decode(parts[1]))
    except ValueError:
        raise TokenError("the token is not a JWT") from None
    if not isinstance(claims, dict):
        raise TokenError("the token is not a JWT")
    return claims


# -- GitHub Actions' OIDC token endpoint [GH] -------------------------------------------------------------------------


class GitHubOidc(Emulator):
    """The endpoint a GitHub Actions job with `id-token: write` asks for its OIDC token."""

    name = "github-oidc"
    PATH = "/_apis/pipelines/workflows/4242/idtoken"

    def __init__(self, subject="repo:my-org/my-repo:environment:prod", owner="my-org"):
        super().__init__()
        self.issuer = Issuer(GITHUB_ISSUER)
        self.subject = subject
        self.owner = owner
        self.request_token = "ghs_request_" + uuid.uuid4().hex
        self._clear()

    def _clear(self):
        self.token_requests = []
        self.lifetime = 300

    def reset(self):
        with self.lock:
            super().reset()
            self._clear()

    @property
    def request_url(self):
        """ACTIONS_ID_TOKEN_REQUEST_URL as a runner sets it."""
        return f"{self.url}{self.PATH}?api-version=2.0"

    def handle(self, request):
        if request.path != self.PATH:
            return Reply(404, {"message": "Not Found"})
        if request.method != "GET":
            return Reply(405, {"message": "Method Not Allowed"})
        scheme, _, presented = (request.header("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or presented.strip() != self.request_token:
            return Reply(401, {"message": "Unauthorized"})
        if request.query.get("api-version") != ["2.0"]:
            return Reply(400, {"message": "api-version 2.0 is required"})
        audiences = request.query.get("audience") or [f"https://github.com/{self.owner}"]
        if len(audiences) != 1 or not audiences[0]:
            return Reply(400, {"message": "one audience, or none"})
        with self.lock:
            claims = {"sub": self.subject, "aud": audiences[0], "repository_owner": self.owner}
            claims.update(repository=self.subject.split(":")[1], runner_environment="github-hosted")
            token = self.issuer.sign(claims, lifetime=self.lifetime)
            self.token_requests.append({"audience": audiences[0], "jwt": token})
        return Reply(200, {"count": 1, "value": token})


# -- Microsoft Entra ID's v1 token endpoint [AAD] ---------------------------------------------------------------------


class EntraId(Emulator):
    """login.microsoftonline.com for one or more tenants: client credentials at /<tenant>/oauth2/token."""

    name = "entra-id"

    def __init__(self, tenants=None):
        super().__init__()
        self.tenants = {DEFAULT_TENANT: dict(DEFAULT_APPLICATIONS)} if tenants is None else tenants
        self.issuers = {tenant: Issuer(f"https://sts.windows.net/{tenant}/") for tenant in self.tenants}
        self.resources = (AZURE_DATABRICKS, AZURE_MANAGEMENT)
        self._revoked = set()
        self._clear()

    def _clear(self):
        self.token_requests = []
        self.lifetime = 3599
        self._revoked = set()

    def reset(self):
        with self.lock:
            super().reset()
            self._clear()

    def set_token_lifetime(self, seconds):
        with self.lock:
            self.lifetime = int(seconds)

    def revoke(self, token):
        """Refused from now on, as a token of a principal removed from the tenant is."""
        with self.lock:
            self._revoked.add(token)

    def issue_user_token(self, upn="ada@contoso.example", resource=AZURE_DATABRICKS, tenant=DEFAULT_TENANT):
        """What `az login` as a user holds for `resource` (a upn claim: a human)."""
        claims = {"aud": resource, "tid": tenant, "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, upn)), "upn": upn}
        with self.lock:
            return self.issuers[tenant].sign(dict(claims, appid="04b07795-8ddb-461a-bbee-02f9e1bf7b46"), self.lifetime)

    def issue_app_token(self, client_id, resource=AZURE_DATABRICKS, tenant=DEFAULT_TENANT):
        """A service principal's token for `resource` (no upn claim)."""
        with self.lock:
            return self.issuers[tenant].sign(_app_claims(client_id, resource, tenant), self.lifetime)

    def verify(self, token, resource):
        """The claims of a token this emulator issued for `resource`, not expired nor revoked; None otherwise."""
        try:
            claims = read_claims(token)
        except TokenError:
            return None
        with self.lock:
            issuer = self.issuers.get(claims.get("tid"))
            if issuer is None or token in self._revoked or claims.get("aud") != resource:
                return None
            try:
                return issuer.verify(token)
            except TokenError:
                return None

    def handle(self, request):
        parts = request.path.strip("/").split("/")
        if len(parts) != 3 or parts[1:] != ["oauth2", "token"]:
            return Reply(404, b"")
        if request.method != "POST":
            return _aad_error(405, "invalid_request", 900561, "The endpoint only accepts POST requests.")
        if request.content_type != "application/x-www-form-urlencoded":
            return _aad_error(400, "invalid_request", 900144, "The request body must contain: grant_type.")
        form = {name: values[0] for name, values in urllib.parse.parse_qs(request.body.decode(), True).items()}
        tenant = parts[0]
        with self.lock:
            applications = self.tenants.get(tenant)
            if applications is None:
                return _aad_error(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
            if form.get("grant_type") != "client_credentials":
                return _aad_error(400, "unsupported_grant_type", 70003, "The grant type is not supported.")
            client_id = form.get("client_id")
            if client_id not in applications:
                return _aad_error(
                    400,
                    "unauthorized_client",
                    700016,
                    f"Application with identifier '{client_id}' was not found in the directory '{tenant}'.",
                )
            if form.get("client_secret") != applications[client_id]:
                return _aad_error(
                    401, "invalid_client", 7000215, "Invalid client secret provided. Ensure the secret being sent "
                    "in the request is the client secret value, not the client secret ID."
                )  # fmt: skip
            resource = form.get("resource")
            if not resource:
                return _aad_error(400, "invalid_request", 900144, "The request body must contain: resource.")
            if resource not in self.resources:
                return _aad_error(
                    400, "invalid_resource", 500011, f"The resource principal named {resource} was not found."
                )
            self.token_requests.append({"tenant": tenant, "client_id": client_id, "resource": resource, "form": form})
            token = self.issuers[tenant].sign(_app_claims(client_id, resource, tenant), self.lifetime)
            now = int(time.time())
        return Reply(
            200,
            {
                "token_type": "Bearer",
                "expires_in": str(self.lifetime),
                "ext_expires_in": str(self.lifetime),
                "expires_on": str(now + self.lifetime),
                "not_before": str(now),
                "resource": resource,
                "access_token": token,
            },
            {"Cache-Control": "no-store, no-cache"},
        )


def _app_claims(client_id, resource, tenant):
    return {"aud": resource, "tid": tenant, "appid": client_id, "oid": str(uuid.uuid5(uuid.NAMESPACE_OID, client_id))}


def _aad_error(status, error, code, text):
    trace = str(uuid.uuid4())
    return Reply(
        status,
        {
            "error": error,
            "error_description": f"AADSTS{code}: {text} Trace ID: {trace} Correlation ID: {uuid.uuid4()} "
            f"Timestamp: {time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime())}",
            "error_codes": [code],
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
            "trace_id": trace,
            "correlation_id": str(uuid.uuid4()),
        },
    )
