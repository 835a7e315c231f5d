"""databricks on Azure: an Entra ID service principal (azure-client-secret) and the Azure CLI's login (azure-cli).

The workspace and Entra ID are TLS emulators reached by their real names (https://adb-….azuredatabricks.net and
https://login.microsoftonline.com) through a proxy, so the sink finds its Azure cloud from the host as
databricks-sdk-py does, with no test-only setting; a fake `az` on PATH stands for the Azure CLI.
"""

import json
import os
import time
import urllib.parse

import pytest

from tests.conftest import assert_clean_failure, assert_mode, fixture, load_script
from tests.databricks_identity import AZURE_HOST, LOGIN_HOST, FakeAz, azure_workspace
from tests.emulators.identity import AZURE_DATABRICKS, AZURE_MANAGEMENT, DEFAULT_APPLICATIONS, DEFAULT_TENANT

db = load_script("databricks")
SinkError = db.sink.SinkError
APP_ID, APP_SECRET = next(iter(DEFAULT_APPLICATIONS.items()))
TABLE = "main.default.peepshow_runs"
STATEMENTS = "/api/2.0/sql/statements"
RESOURCE_ID = (
    "/subscriptions/0b1f6471-1bf0-4dda-aec3-cb9272f09590/resourceGroups/analytics/providers/"
    "Microsoft.Databricks/workspaces/peepshow"
)
SECRET_ENV = {"ARM_CLIENT_ID": APP_ID, "ARM_CLIENT_SECRET": APP_SECRET, "ARM_TENANT_ID": DEFAULT_TENANT}


# -- which method -----------------------------------------------------------------------------------------------


def resolve(env, path="/nonexistent"):
    return db.read_config(
        {db.sink.HOME_VARIABLE: "/nonexistent", "PATH": str(path), "DATABRICKS_WAREHOUSE_ID": "wh-1", **env}
    )


def refused(env, path="/nonexistent"):
    with pytest.raises(SinkError) as caught:
        resolve(env, path)
    assert caught.value.code == 2, caught.value.message
    return caught.value.message


@pytest.fixture
def az(tmp_path):
    folder = tmp_path / "bin"
    folder.mkdir()
    return FakeAz(folder)


@pytest.mark.parametrize(
    ("host", "cloud"),
    [
        (f"https://{AZURE_HOST}", ("https://login.microsoftonline.com/", "https://management.core.windows.net/")),
        (
            "https://adb-1.2.databricks.azure.us",
            ("https://login.microsoftonline.us/", "https://management.core.usgovcloudapi.net/"),
        ),
        (
            "https://adb-1.2.databricks.azure.cn",
            ("https://login.chinacloudapi.cn/", "https://management.core.chinacloudapi.cn/"),
        ),
    ],
    ids=["public", "us-government", "china"],
)
def test_the_azure_cloud_comes_from_the_workspaces_dns_zone(host, cloud):
    auth = resolve({"DATABRICKS_HOST": host, **SECRET_ENV}).auth
    assert (auth.type, auth.application) == ("azure-client-secret", AZURE_DATABRICKS)
    assert (auth.login, auth.management) == cloud


def test_an_azure_host_with_az_on_path_and_nothing_else_is_azure_cli(az):
    config = resolve({"DATABRICKS_HOST": f"https://{AZURE_HOST}"}, az.folder)
    assert config.auth.type == "azure-cli" and config.auth.implicit
    assert config.auth.az == str(az.path)
    # Not on an AWS host: there the Databricks CLI's login is the last resort, as in the SDK.
    assert "no credential" in refused({"DATABRICKS_HOST": "https://abc-123.cloud.databricks.com"}, az.folder)
    resourced = resolve(
        {"DATABRICKS_HOST": f"https://{AZURE_HOST}", "DATABRICKS_AZURE_RESOURCE_ID": RESOURCE_ID}, az.folder
    )
    assert resourced.auth.subscription == "0b1f6471-1bf0-4dda-aec3-cb9272f09590"


@pytest.mark.parametrize(
    ("env", "words"),
    [
        (
            {"DATABRICKS_HOST": "https://abc-123.cloud.databricks.com", **SECRET_ENV},
            ("azure-client-secret signs in to Azure Databricks only", "DATABRICKS_HOST"),
        ),
        (
            {"DATABRICKS_HOST": "https://1234.5.gcp.databricks.com", "DATABRICKS_AUTH_TYPE": "azure-cli"},
            ("not an Azure workspace", "GCP workspace takes a personal access token or OAuth M2M (or federation)"),
        ),
        (
            {"DATABRICKS_HOST": f"https://{AZURE_HOST}", "DATABRICKS_AUTH_TYPE": "azure-cli"},
            ("Azure CLI is not installed", "az login", "ARM_CLIENT_SECRET"),
        ),
        ({"DATABRICKS_HOST": f"https://{AZURE_HOST}", "ARM_CLIENT_ID": APP_ID}, ("ARM_CLIENT_SECRET is not set",)),
        ({"DATABRICKS_HOST": f"https://{AZURE_HOST}", "ARM_CLIENT_SECRET": "s"}, ("ARM_CLIENT_ID is not set",)),
        (
            {"DATABRICKS_HOST": f"https://{AZURE_HOST}", "DATABRICKS_AUTH_TYPE": "azure-client-secret"},
            ("ARM_CLIENT_ID and ARM_CLIENT_SECRET are not set",),
        ),
    ],
    ids=["aws-host", "gcp-host", "no-az", "id-without-secret", "secret-without-id", "chosen-without-either"],
)
def test_azure_misconfiguration_is_one_line(env, words):
    message = refused(env)
    for word in words:
        assert word in message, message
    assert APP_SECRET not in message


# -- the zipapp, against Azure by its real names ----------------------------------------------------------------


@pytest.fixture(scope="module")
def azure_server(tmp_path_factory):
    with azure_workspace(tmp_path_factory.mktemp("azure-tls")) as azure:
        yield azure


@pytest.fixture
def azure(azure_server):
    azure_server.reset()
    return azure_server


def cached(tmp_path):
    folder = tmp_path / "home" / ".peepshow" / "tokens"
    return [json.loads(path.read_text()) for path in sorted(folder.iterdir())] if folder.is_dir() else []


def workspace_requests(azure):
    return [(request.method, request.path) for request in azure.workspace.requests]


def test_a_service_principal_signs_in_as_the_sdk_does_once_for_three_runs(run_sink, azure, tmp_path):
    env = {**azure.env, **SECRET_ENV}
    azure.workspace.create_table(TABLE, db.COLUMNS)
    for number in range(3):
        azure.workspace.requests.clear()
        result = run_sink("databricks", dict(fixture("run-minimal.json"), outputDir=f"/tmp/az-{number}"), env)
        assert (result.code, result.stderr) == (0, ""), result
        assert workspace_requests(azure) == [("POST", STATEMENTS)]
    assert len(azure.workspace.rows(TABLE)) == 3
    # One sign-in for the three runs: a token for Azure Databricks and one for service management, each asked
    # the way databricks-sdk-py asks (the v1 endpoint, these form fields in this order, no Authorization header).
    assert [request.path for request in azure.entra.requests] == [f"/{DEFAULT_TENANT}/oauth2/token"] * 2
    for request, resource in zip(azure.entra.requests, (AZURE_DATABRICKS, AZURE_MANAGEMENT)):
        fields = [
            ("grant_type", "client_credentials"),
            ("scope", "all-apis"),
            ("resource", resource),
            ("client_id", APP_ID),
            ("client_secret", APP_SECRET),
        ]
        assert request.body == urllib.parse.urlencode(fields).encode() and request.header("authorization") is None
    (statement,) = azure.workspace.requests
    scheme, token = statement.header("authorization").split(" ")
    assert scheme == "Bearer" and azure.entra.verify(token, AZURE_DATABRICKS)["appid"] == APP_ID
    assert azure.workspace.management_token_ok(statement) is True
    assert statement.header("user-agent").endswith(" auth/azure-client-secret")
    # Both names went through the proxy: the sink found login.microsoftonline.com from the host's DNS zone.
    assert {line.split()[1] for line in azure.route.seen} == {f"{AZURE_HOST}:443", f"{LOGIN_HOST}:443"}
    (entry,) = cached(tmp_path)
    assert set(entry["headers"]) == {"X-Databricks-Azure-SP-Management-Token"}
    assert APP_SECRET not in json.dumps(entry)


def test_the_tenant_is_asked_of_the_workspace_when_unset(run_sink, azure):
    env = {**azure.env, "ARM_CLIENT_ID": APP_ID, "ARM_CLIENT_SECRET": APP_SECRET}
    env["DATABRICKS_AZURE_RESOURCE_ID"] = RESOURCE_ID
    result = run_sink("databricks", fixture("run-full.json"), env)
    assert result.code == 0, result
    assert workspace_requests(azure)[0] == ("GET", "/aad/auth")
    assert {request.path for request in azure.entra.requests} == {f"/{DEFAULT_TENANT}/oauth2/token"}
    for request in azure.workspace.requests[1:]:
        assert request.header("x-databricks-azure-workspace-resource-id") == RESOURCE_ID


def test_a_wrong_secret_is_entra_ids_reason_naming_the_variable(run_sink, azure, spool):
    env = {**azure.env, **SECRET_ENV, "ARM_CLIENT_SECRET": "wrong-secret-value"}
    result = run_sink("databricks", fixture("run-full.json"), env)
    assert_clean_failure(result, 5, "wrong-secret-value")
    assert (
        "Entra ID refused the service principal's token request (HTTP 401 invalid_client: AADSTS7000215"
        in result.stderr
    )
    assert "check ARM_CLIENT_SECRET" in result.stderr and "Trace ID" not in result.stderr and "kept" in result.stderr
    assert azure.workspace.statements == [] and len(azure.entra.requests) == 1
    assert list((spool / "databricks").glob("*.json"))


def test_an_application_the_tenant_does_not_know(run_sink, azure):
    env = {**azure.env, **SECRET_ENV, "ARM_CLIENT_ID": "11111111-2222-3333-4444-555555555555"}
    result = run_sink("databricks", fixture("run-full.json"), env)
    assert_clean_failure(result, 5, APP_SECRET)
    assert "(HTTP 400 unauthorized_client: AADSTS700016: Application with identifier" in result.stderr
    assert f"check ARM_CLIENT_ID and the tenant {DEFAULT_TENANT}" in result.stderr


def test_a_principal_the_workspace_does_not_know(run_sink, azure):
    azure.workspace.fault(
        "status", times=None, status=403, body={"error_code": 403, "message": "Invalid access token."}
    )
    result = run_sink("databricks", fixture("run-full.json"), {**azure.env, **SECRET_ENV})
    assert_clean_failure(result, 5, APP_SECRET)
    assert "Azure Databricks refused the Entra ID token of ARM_CLIENT_ID" in result.stderr
    assert "add the service principal to this workspace" in result.stderr
    assert len(azure.entra.requests) == 4  # signed in twice (a new token after the refusal), never more


# -- the Azure CLI ----------------------------------------------------------------------------------------------


def az_env(azure, az, **overrides):
    return {**azure.env, "PATH": f"{az.folder}{os.pathsep}{os.environ['PATH']}", **overrides}


def test_an_az_login_signs_in_once_for_three_runs(run_sink, azure, az, tmp_path):
    login = az.login(azure.entra)
    azure.workspace.create_table(TABLE, db.COLUMNS)
    for number in range(3):
        result = run_sink(
            "databricks", dict(fixture("run-minimal.json"), outputDir=f"/tmp/cli-{number}"), az_env(azure, az)
        )
        assert (result.code, result.stderr) == (0, ""), result
    assert len(azure.workspace.rows(TABLE)) == 3
    # As the SDK: the workspace's tenant, `az account show` (a managed identity takes no --tenant), the token.
    assert az.calls() == [
        ["account", "show", "--output", "json"],
        ["account", "get-access-token", "--resource", AZURE_DATABRICKS, "--output", "json", "--tenant", DEFAULT_TENANT],
    ]
    assert ("GET", "/aad/auth") in workspace_requests(azure) and azure.entra.requests == []
    statements = [request for request in azure.workspace.requests if request.path == STATEMENTS]
    assert {request.header("authorization") for request in statements} == {f"Bearer {login}"}
    # A person's login (the token has a upn): no service-management token, as in the SDK.
    assert all(azure.workspace.management_token_ok(request) is None for request in statements)
    (entry,) = cached(tmp_path)
    assert entry["method"] == "azure-cli" and entry["headers"] == {}
    check = run_sink("databricks", b"", az_env(azure, az), args=["--check"])
    assert check.code == 0, check
    assert "ok    auth: azure-cli (the Azure CLI's login: `az account get-access-token --resource" in check.stdout
    assert "ok    credential: the Azure CLI gave a token" in check.stdout


def test_a_service_principal_logged_in_to_az_sends_its_management_token(run_sink, azure, az):
    az.login(azure.entra, as_app=APP_ID)
    env = az_env(azure, az, ARM_TENANT_ID=DEFAULT_TENANT, DATABRICKS_AZURE_RESOURCE_ID=RESOURCE_ID)
    az.refuse_subscription("0b1f6471-1bf0-4dda-aec3-cb9272f09590")  # a workspace user outside its subscription
    result = run_sink("databricks", fixture("run-full.json"), env)
    assert result.code == 0, result
    calls = az.calls()
    subscription = ["--subscription", "0b1f6471-1bf0-4dda-aec3-cb9272f09590", "--tenant", DEFAULT_TENANT]
    assert calls[1] == [
        "account",
        "get-access-token",
        "--resource",
        AZURE_DATABRICKS,
        "--output",
        "json",
        *subscription,
    ]
    assert calls[2] == [
        "account",
        "get-access-token",
        "--resource",
        AZURE_DATABRICKS,
        "--output",
        "json",
        "--tenant",
        DEFAULT_TENANT,
    ]
    assert [call[3] for call in calls[1:] if call[1] == "get-access-token"][-1] == AZURE_MANAGEMENT
    assert ("GET", "/aad/auth") not in workspace_requests(azure)  # ARM_TENANT_ID said it
    statements = [request for request in azure.workspace.requests if request.path == STATEMENTS]
    assert statements and all(azure.workspace.management_token_ok(request) for request in statements)


def test_a_managed_identity_takes_no_tenant(run_sink, azure, az):
    az.login(azure.entra, as_app=APP_ID, managed=True)
    assert run_sink("databricks", fixture("run-full.json"), az_env(azure, az, ARM_TENANT_ID=DEFAULT_TENANT)).code == 0
    assert all("--tenant" not in call for call in az.calls())


def test_an_older_az_gives_its_expiry_in_local_time(run_sink, azure, az, tmp_path):
    az.login(azure.entra, old=True)
    assert run_sink("databricks", fixture("run-full.json"), az_env(azure, az)).code == 0
    (entry,) = cached(tmp_path)
    assert abs(entry["expires_at"] - (time.time() + azure.entra.lifetime)) < 30


def test_az_not_logged_in_says_to_log_in_and_keeps_the_run(run_sink, azure, az, spool):
    result = run_sink("databricks", fixture("run-full.json"), az_env(azure, az, ARM_TENANT_ID=DEFAULT_TENANT))
    assert_clean_failure(result, 2)
    assert "the Azure CLI is not logged in (Please run 'az login' to setup account.)" in result.stderr
    assert f"run `az login --tenant {DEFAULT_TENANT}`" in result.stderr and "kept" in result.stderr
    assert azure.workspace.statements == []
    assert list((spool / "databricks").glob("*.json"))
    # Once logged in, a flush delivers what was kept.
    az.login(azure.entra)
    flushed = run_sink("databricks", b"", az_env(azure, az, ARM_TENANT_ID=DEFAULT_TENANT), args=["--flush"])
    assert flushed.code == 0 and "delivered 1" in flushed.stdout, flushed


def test_a_revoked_az_token_is_asked_for_again(run_sink, azure, az, tmp_path):
    first = az.login(azure.entra)
    assert run_sink("databricks", fixture("run-full.json"), az_env(azure, az)).code == 0
    azure.entra.revoke(first)
    second = az.login(azure.entra)  # what `az` hands out now
    result = run_sink("databricks", fixture("run-minimal.json"), az_env(azure, az))
    assert (result.code, result.stderr) == (0, ""), result
    assert azure.workspace.refused_tokens == [first]
    (entry,) = cached(tmp_path)
    assert entry["access_token"] == second
    folder = tmp_path / "home" / ".peepshow" / "tokens"
    assert_mode(folder, 0o700)
