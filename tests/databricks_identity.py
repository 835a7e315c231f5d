"""What the databricks sink's federation and Azure tests share with the benchmark: a fake `az`, and an Azure
workspace reached by its real name.

    az = FakeAz(folder)                 # folder/az on PATH stands for the Azure CLI
    az.login(entra, upn=...)            # `az login` as a user (or as_app=client_id: a service principal)
    az.logout()                         # az answers "Please run 'az login'"
    az.calls()                          # the argument lists it was run with

    with azure_workspace(tmp) as azure:  # TLS emulators of the workspace and of Entra ID, and a proxy that takes
        azure.env                       # https://adb-….azuredatabricks.net and https://login.microsoftonline.com
        azure.workspace, azure.entra    # to them (HTTPS_PROXY, SSL_CERT_FILE in azure.env)
"""

import contextlib
import datetime
import json
import sys
import time

from tests.conftest import python_program, self_signed_certificate
from tests.emulators.databricks import Databricks
from tests.emulators.identity import AZURE_DATABRICKS, DEFAULT_TENANT, EntraId
from tests.proxy import Proxy

AZURE_HOST = "adb-1234567890123456.7.azuredatabricks.net"
LOGIN_HOST = "login.microsoftonline.com"

FAKE_AZ = """#!{python}
# `az account get-access-token` and `az account show` as the Azure CLI answers them: JSON on stdout, or exit 1 with
# its reason on stderr. The tokens are the ones the test's Entra ID emulator issued (answer.json).
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "az-calls.log"), "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
with open(os.path.join(here, "az-answer.json")) as handle:
    answer = json.load(handle)
if "stderr" in answer:
    sys.stderr.write(answer["stderr"])
    sys.exit(1)
args = sys.argv[1:]
if args[:2] == ["account", "show"]:
    json.dump(answer["account"], sys.stdout, indent=2)
    sys.exit(0)
if args[:2] != ["account", "get-access-token"] or "--resource" not in args:
    sys.stderr.write("ERROR: unexpected arguments\\n")
    sys.exit(2)
resource = args[args.index("--resource") + 1]
if "--subscription" in args and args[args.index("--subscription") + 1] in answer.get("foreign_subscriptions", []):
    sys.stderr.write("ERROR: Subscription '%s' not found.\\n" % args[args.index("--subscription") + 1])
    sys.exit(1)
if resource not in answer["tokens"]:
    sys.stderr.write("ERROR: AADSTS500011: The resource principal named %s was not found.\\n" % resource)
    sys.exit(1)
json.dump(answer["tokens"][resource], sys.stdout, indent=2)
"""


class FakeAz:
    """`az` in `folder`: answers as the Azure CLI does for the login the test gives it."""

    def __init__(self, folder):
        self.folder = folder
        self.path = python_program(folder / "az", FAKE_AZ.format(python=sys.executable))
        self.logout()

    def login(self, entra, upn="ada@contoso.example", as_app=None, tenant=DEFAULT_TENANT, managed=False, old=False):
        """Logged in as the user `upn`, or as the service principal `as_app` (a managed identity with `managed`).
        `old`: an Azure CLI before 2.54, which prints expiresOn (local time) and no expires_on."""
        tokens = {}
        for resource in (AZURE_DATABRICKS, "https://management.core.windows.net/"):
            if as_app:
                token = entra.issue_app_token(as_app, resource, tenant)
            else:
                token = entra.issue_user_token(upn, resource, tenant)
            expires = time.time() + entra.lifetime
            answer = {
                "accessToken": token,
                "expiresOn": datetime.datetime.fromtimestamp(expires).strftime("%Y-%m-%d %H:%M:%S.%f"),
                "subscription": "0b1f6471-1bf0-4dda-aec3-cb9272f09590",
                "tenant": tenant,
                "tokenType": "Bearer",
            }
            if not old:
                answer["expires_on"] = int(expires)
            tokens[resource] = answer
        if as_app:
            name = "systemAssignedIdentity" if managed else as_app
            user = {"name": name, "type": "servicePrincipal"}
        else:
            user = {"name": upn, "type": "user"}
        account = {"id": "0b1f6471-1bf0-4dda-aec3-cb9272f09590", "tenantId": tenant, "user": user}
        self._write({"tokens": tokens, "account": account})
        return tokens[AZURE_DATABRICKS]["accessToken"]

    def logout(self):
        self._write({"stderr": "ERROR: Please run 'az login' to setup account.\n"})

    def refuse_subscription(self, subscription):
        """The login cannot see `subscription` (a workspace user who is no member of its subscription)."""
        answer = json.loads((self.folder / "az-answer.json").read_text())
        answer["foreign_subscriptions"] = [subscription]
        self._write(answer)

    def _write(self, answer):
        (self.folder / "az-answer.json").write_text(json.dumps(answer))

    def calls(self):
        log = self.folder / "az-calls.log"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


class HostRoute(Proxy):
    """A proxy whose tunnels go to the emulator serving each host name; any other name is refused (502)."""

    def __init__(self, routes):
        super().__init__()
        self.routes = routes

    def _connect(self, handler, host, port):
        if host not in self.routes:
            return super()._connect(handler, "127.0.0.1", 9)  # nothing listens on the discard port: 502
        return super()._connect(handler, "127.0.0.1", self.routes[host])


class AzureWorkspace:
    def __init__(self, workspace, entra, route, certificate):
        self.workspace, self.entra, self.route = workspace, entra, route
        self.host = f"https://{AZURE_HOST}"
        self.env = {
            "DATABRICKS_HOST": self.host,
            "DATABRICKS_WAREHOUSE_ID": "wh-1",
            "HTTPS_PROXY": route.url,
            "SSL_CERT_FILE": certificate,
        }

    def reset(self):
        self.workspace.reset()
        self.entra.reset()
        self.route.reset()
        self.workspace.azure(self.entra, DEFAULT_TENANT)


@contextlib.contextmanager
def azure_workspace(folder):
    """An Azure Databricks workspace and its Entra ID tenant, each a TLS emulator reached by its real name."""
    folder.mkdir(parents=True, exist_ok=True)
    certificate = self_signed_certificate(folder, AZURE_HOST, [f"DNS:{AZURE_HOST}", f"DNS:{LOGIN_HOST}"])
    workspace = Databricks().start(tls=certificate)
    entra = EntraId().start(tls=certificate)
    route = HostRoute({AZURE_HOST: workspace.port, LOGIN_HOST: entra.port}).start()
    azure = AzureWorkspace(workspace, entra, route, certificate[0])
    azure.reset()
    try:
        yield azure
    finally:
        route.stop()
        entra.stop()
        workspace.stop()


def backfill_while_the_token_expires(run_sink, workspace, env):
    """30 runs in one backfill while the workspace expires the token the sink got, once it got one: the first
    statement waits for a cold warehouse meanwhile, so the next request meets the expired token. The Result."""
    import threading

    from tests.conftest import fixture

    workspace.cold_start(seconds=1.5)
    runs = [
        dict(fixture("manifest.json"), outputDir=f"/tmp/run-{number}", runId=f"run-{number}") for number in range(30)
    ]

    def expire_once_issued():
        deadline = time.monotonic() + 10
        while not workspace.token_requests and time.monotonic() < deadline:
            time.sleep(0.01)
        workspace.expire_oauth_tokens()

    expirer = threading.Thread(target=expire_once_issued)
    expirer.start()
    try:
        return run_sink("databricks", "\n".join(json.dumps(run) for run in runs), env)
    finally:
        expirer.join()
