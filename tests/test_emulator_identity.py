"""The identity emulators answer as the services do (see tests/emulators/identity.py and the [WIF], [AZ], [QT] notes
of tests/emulators/databricks.py): the workspace's token exchange, its host metadata and /aad/auth, GitHub Actions'
OIDC token endpoint, Entra ID's v1 token endpoint, and the query_tags of a statement."""

import json
import urllib.parse

import pytest
import urllib3

from tests.emulators.databricks import DEFAULT_SERVICE_PRINCIPALS, Databricks
from tests.emulators.identity import (
    AZURE_DATABRICKS,
    AZURE_MANAGEMENT,
    DEFAULT_APPLICATIONS,
    DEFAULT_TENANT,
    EntraId,
    GitHubOidc,
    Issuer,
    TokenError,
)

CLIENT_ID = next(iter(DEFAULT_SERVICE_PRINCIPALS))
APP_ID, APP_SECRET = next(iter(DEFAULT_APPLICATIONS.items()))
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT = "urn:ietf:params:oauth:token-type:jwt"
SUBJECT = "repo:my-org/my-repo:environment:prod"


@pytest.fixture(scope="module")
def servers():
    with Databricks().start() as workspace, GitHubOidc().start() as github, EntraId().start() as entra:
        yield workspace, github, entra


@pytest.fixture
def workspace(servers):
    servers[0].reset()
    return servers[0]


@pytest.fixture
def github(servers):
    servers[1].reset()
    return servers[1]


@pytest.fixture
def entra(servers):
    servers[2].reset()
    return servers[2]


def http(method, url, body=None, headers=None):
    with urllib3.PoolManager(retries=False, timeout=10) as pool:
        response = pool.request(method, url, body=body, headers=headers or {}, redirect=False)
    try:
        answer = json.loads(response.data) if response.data else None
    except ValueError:
        answer = response.data
    return response.status, answer, response.headers


def exchange(workspace, token, client_id=CLIENT_ID, **overrides):
    fields = {"grant_type": EXCHANGE, "scope": "all-apis", "subject_token_type": JWT, "subject_token": token}
    if client_id:
        fields["client_id"] = client_id
    fields.update(overrides)
    body = urllib.parse.urlencode({key: value for key, value in fields.items() if value is not None})
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    return http("POST", workspace.url + "/oidc/v1/token", body, form)


# -- an issuer's tokens -------------------------------------------------------------------------------------------


def test_an_issuer_verifies_its_own_tokens_only():
    issuer, other = Issuer("https://token.actions.githubusercontent.com"), Issuer("https://gitlab.example.com")
    token = issuer.sign({"sub": SUBJECT, "aud": "x"})
    assert issuer.verify(token)["sub"] == SUBJECT
    for bad, reason in (
        (other.sign({"sub": SUBJECT}), "signature"),
        (issuer.sign({"sub": SUBJECT}, expired=True), "expired"),
        ("not-a-jwt", "not a JWT"),
        (token[:-4] + "AAAA", "signature"),
    ):
        with pytest.raises(TokenError, match=reason):
            issuer.verify(bad)


# -- the workspace's token exchange [WIF] ------------------------------------------------------------------------


def test_a_token_the_policy_accepts_is_exchanged_for_one_the_apis_accept(workspace):
    issuer = Issuer("https://token.actions.githubusercontent.com")
    workspace.add_federation_policy(CLIENT_ID, issuer, SUBJECT)
    status, answer, headers = exchange(workspace, issuer.sign({"sub": SUBJECT, "aud": workspace.account_id}))
    assert status == 200 and headers["Cache-Control"] == "no-store", answer
    assert (answer["token_type"], answer["scope"], answer["expires_in"]) == ("Bearer", "all-apis", 3600)
    bearer = {"Authorization": f"Bearer {answer['access_token']}"}
    assert http("GET", workspace.url + "/api/2.0/sql/warehouses/wh-1", headers=bearer)[0] == 200
    (request,) = workspace.token_requests
    assert request == {
        "client_id": CLIENT_ID,
        "grant_type": EXCHANGE,
        "scope": "all-apis",
        "auth": "none",
        "issuer": issuer.iss,
        "subject": SUBJECT,
    }


@pytest.mark.parametrize(
    ("claims", "fields", "status", "words"),
    [
        ({"sub": "repo:my-org/other:ref:refs/heads/main"}, {}, 400, "no federation policy of service principal"),
        ({"aud": "https://github.com/my-org"}, {}, 400, "aud=https://github.com/my-org"),
        ({}, {"subject_token_type": "urn:ietf:params:oauth:token-type:id_token"}, 400, "Unsupported subject_token"),
        ({}, {"subject_token_type": None}, 400, "Unsupported subject_token_type: none"),
        ({}, {"subject_token": None}, 400, "Missing required parameter: subject_token"),
        ({}, {"scope": None}, 400, "Invalid scope"),
        ({}, {"client_id": "00000000-0000-0000-0000-000000000000"}, 401, "Client authentication failed"),
    ],
    ids=["other-subject", "other-audience", "other-token-type", "no-token-type", "no-token", "no-scope", "unknown-sp"],
)
def test_what_the_policy_or_the_grant_does_not_allow_is_refused(workspace, claims, fields, status, words):
    issuer = Issuer("https://token.actions.githubusercontent.com")
    workspace.add_federation_policy(CLIENT_ID, issuer, SUBJECT)
    token = issuer.sign({"sub": SUBJECT, "aud": workspace.account_id, **claims})
    answer = exchange(workspace, token, **fields)
    assert answer[0] == status and words in answer[1]["error_description"], answer
    assert answer[1]["error"] in ("invalid_request", "invalid_scope", "invalid_client")
    assert workspace.token_requests == [] and workspace.oauth_tokens == {}


def test_an_expired_or_untrusted_subject_token_is_refused(workspace):
    trusted, stranger = Issuer("https://token.actions.githubusercontent.com"), Issuer("https://evil.example")
    workspace.add_federation_policy(CLIENT_ID, trusted, SUBJECT)
    expired = trusted.sign({"sub": SUBJECT, "aud": workspace.account_id}, expired=True)
    assert "expired" in exchange(workspace, expired)[1]["error_description"]
    forged = stranger.sign({"sub": SUBJECT, "aud": workspace.account_id, "iss": trusted.iss})
    assert "signature" in exchange(workspace, forged)[1]["error_description"]
    untrusted = stranger.sign({"sub": SUBJECT, "aud": workspace.account_id})
    assert "trusts the issuer https://evil.example" in exchange(workspace, untrusted)[1]["error_description"]


def test_account_wide_federation_signs_in_the_user_the_token_names(workspace):
    issuer = Issuer("https://idp.example.com")
    workspace.add_account_federation_policy(issuer)
    status, answer, _ = exchange(workspace, issuer.sign({"sub": "user@example.com", "aud": workspace.account_id}), None)
    assert status == 200 and workspace.token_requests[0]["client_id"] == "user@example.com"
    stranger = issuer.sign({"sub": "someone@else.example", "aud": workspace.account_id})
    assert exchange(workspace, stranger, None)[0] == 400


def test_host_metadata_names_the_default_audience_of_federation_policies(workspace):
    status, answer, _ = http("GET", workspace.url + "/.well-known/databricks-config")
    assert status == 200
    assert answer == {
        "oidc_endpoint": workspace.url + "/oidc",
        "account_id": workspace.account_id,
        "workspace_id": workspace.workspace_id,
        "cloud": "AWS",
        "token_federation_default_oidc_audiences": [workspace.account_id],
    }


def test_an_azure_workspace_redirects_aad_auth_to_its_tenant_and_takes_entra_tokens(workspace, entra):
    assert http("GET", workspace.url + "/aad/auth")[0] == 401  # not Azure: an API path like any other
    workspace.azure(entra, DEFAULT_TENANT)
    status, _, headers = http("GET", workspace.url + "/aad/auth")
    assert status == 302
    assert headers["Location"].startswith(f"https://login.microsoftonline.com/{DEFAULT_TENANT}/oauth2/authorize?")
    for token, accepted in (
        (entra.issue_user_token(), 200),
        (entra.issue_app_token(APP_ID), 200),
        (entra.issue_app_token(APP_ID, AZURE_MANAGEMENT), 403),  # for another resource
    ):
        bearer = {"Authorization": f"Bearer {token}"}
        assert http("GET", workspace.url + "/api/2.0/sql/warehouses/wh-1", headers=bearer)[0] == accepted
    revoked = entra.issue_user_token()
    entra.revoke(revoked)
    assert (
        http("GET", workspace.url + "/api/2.0/sql/warehouses/wh-1", headers={"Authorization": f"Bearer {revoked}"})[0]
        == 403
    )


# -- GitHub Actions' OIDC token endpoint [GH] ----------------------------------------------------------------------


def test_github_issues_a_token_for_the_audience_asked(github):
    bearer = {"Authorization": f"Bearer {github.request_token}"}
    status, answer, _ = http(
        "GET", github.request_url + "&audience=" + urllib.parse.quote("urn:x", safe=""), None, bearer
    )
    assert status == 200 and answer["count"] == 1
    claims = github.issuer.verify(answer["value"])
    assert (claims["iss"], claims["sub"], claims["aud"]) == (
        "https://token.actions.githubusercontent.com",
        SUBJECT,
        "urn:x",
    )
    assert github.issuer.verify(http("GET", github.request_url, None, bearer)[1]["value"])["aud"] == (
        "https://github.com/my-org"
    )
    assert http("GET", github.request_url, None, {"Authorization": "Bearer wrong"})[0] == 401
    assert http("GET", github.url + github.PATH, None, bearer)[0] == 400  # no api-version


# -- Entra ID's v1 token endpoint [AAD] ---------------------------------------------------------------------------


def entra_form(entra, tenant=DEFAULT_TENANT, **fields):
    form = {"grant_type": "client_credentials", "client_id": APP_ID, "client_secret": APP_SECRET, **fields}
    form.setdefault("resource", AZURE_DATABRICKS)
    body = urllib.parse.urlencode({key: value for key, value in form.items() if value is not None})
    url = f"{entra.url}/{tenant}/oauth2/token"
    return http("POST", url, body, {"Content-Type": "application/x-www-form-urlencoded"})


def test_entra_issues_v1_tokens_with_string_lifetimes(entra):
    status, answer, _ = entra_form(entra, scope="all-apis")
    assert status == 200, answer
    assert (
        answer["token_type"] == "Bearer" and answer["expires_in"] == "3599" and answer["resource"] == AZURE_DATABRICKS
    )
    assert int(answer["expires_on"]) - int(answer["not_before"]) == 3599
    claims = entra.verify(answer["access_token"], AZURE_DATABRICKS)
    assert (claims["tid"], claims["appid"]) == (DEFAULT_TENANT, APP_ID) and "upn" not in claims
    assert entra.verify(answer["access_token"], AZURE_MANAGEMENT) is None


@pytest.mark.parametrize(
    ("tenant", "fields", "status", "error", "code"),
    [
        ("00000000-0000-0000-0000-0000000000ff", {}, 400, "invalid_request", 90002),
        (DEFAULT_TENANT, {"client_id": "not-registered"}, 400, "unauthorized_client", 700016),
        (DEFAULT_TENANT, {"client_secret": "wrong"}, 401, "invalid_client", 7000215),
        (DEFAULT_TENANT, {"resource": "https://vault.azure.net"}, 400, "invalid_resource", 500011),
        (DEFAULT_TENANT, {"resource": None}, 400, "invalid_request", 900144),
        (DEFAULT_TENANT, {"grant_type": "password"}, 400, "unsupported_grant_type", 70003),
    ],
    ids=["tenant", "client", "secret", "resource", "no-resource", "grant"],
)
def test_entra_errors_carry_their_aadsts_code(entra, tenant, fields, status, error, code):
    answer = entra_form(entra, tenant, **fields)
    assert (answer[0], answer[1]["error"], answer[1]["error_codes"]) == (status, error, [code])
    assert answer[1]["error_description"].startswith(f"AADSTS{code}: ")
    assert entra.token_requests == []


# -- query_tags [QT] ------------------------------------------------------------------------------------------------


def statement(workspace, **fields):
    body = {"warehouse_id": "wh-1", "statement": "DESCRIBE TABLE `main`.`default`.`t`", "wait_timeout": "5s", **fields}
    headers = {"Content-Type": "application/json", "Authorization": "Bearer dapi-test-token"}
    return http("POST", workspace.url + "/api/2.0/sql/statements", json.dumps(body), headers)


@pytest.mark.parametrize(
    ("tags", "status", "code"),
    [
        ({"key": "team"}, 400, "MALFORMED_REQUEST"),
        ([{"key": " "}], 400, "INVALID_PARAMETER_VALUE"),
        ([{"value": "eng"}], 400, "INVALID_PARAMETER_VALUE"),
        ([{"key": 7}], 400, "MALFORMED_REQUEST"),
        ([{"key": "team", "value": 7}], 400, "MALFORMED_REQUEST"),
        (["team"], 400, "MALFORMED_REQUEST"),
    ],
    ids=["object", "blank-key", "no-key", "number-key", "number-value", "string-item"],
)
def test_query_tags_are_validated(workspace, tags, status, code):
    answer = statement(workspace, query_tags=tags)
    assert (answer[0], answer[1]["error_code"]) == (status, code), answer
    assert workspace.statements == []


def test_query_tags_are_recorded_as_query_history_keeps_them(workspace):
    tags = [{"key": f"k{number}", "value": "v"} for number in range(25)]
    tags[:3] = [{"key": " team ", "value": "eng"}, {"key": "only"}, {"key": "team", "value": " "}]
    assert statement(workspace, query_tags=tags)[0] == 200
    recorded = workspace.statements[0]["query_tags"]
    assert recorded["team"] is None and recorded["only"] is None and len(recorded) == 19  # 20 kept, one key twice
    assert statement(workspace)[0] == 200 and workspace.statements[1]["query_tags"] == {}
