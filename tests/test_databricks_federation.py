"""databricks: workload identity federation (env-oidc, file-oidc, github-oidc) and the token cache that makes a
steady-state run one request whatever the way in (OAuth M2M included).

The configuration choice in process first (which method, in the SDK's order; what a half-done setup says), then the
zipapp against the emulator: the exchange exactly as databricks-sdk-py sends it, GitHub Actions' token endpoint,
reuse across invocations, expiry and revocation, two first runs at once, and what --check, --dry-run and --help say.
"""

import json
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest

from tests.conftest import (
    DIST,
    SINK_PYTHON,
    WINDOWS,
    assert_clean_failure,
    assert_mode,
    fixture,
    fixture_bytes,
    load_script,
    minimal_env,
)
from tests.databricks_identity import backfill_while_the_token_expires
from tests.emulators.databricks import DEFAULT_SERVICE_PRINCIPALS
from tests.emulators.identity import GitHubOidc, Issuer

db = load_script("databricks")
SinkError = db.sink.SinkError
CLIENT_ID, CLIENT_SECRET = next(iter(DEFAULT_SERVICE_PRINCIPALS.items()))
HOST = "https://abc-123.cloud.databricks.com"
TABLE = "main.default.peepshow_runs"
STATEMENTS = "/api/2.0/sql/statements"
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
SUBJECT = "repo:my-org/my-repo:environment:prod"
GITLAB = "https://gitlab.example.com"


# -- which method: the SDK's order ---------------------------------------------------------------------------------


def resolve(env, home="/nonexistent"):
    return db.read_config(
        {db.sink.HOME_VARIABLE: str(home), "PATH": "/nonexistent", "DATABRICKS_WAREHOUSE_ID": "wh-1", **env}
    )


def refused(env, home="/nonexistent"):
    with pytest.raises(SinkError) as caught:
        resolve(env, home)
    assert caught.value.code == 2, caught.value.message
    return caught.value.message


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "oidc-token"
    path.write_text(Issuer(GITLAB).sign({"sub": "project_path:g/p:ref_type:branch:ref:main"}) + "\n")
    return path


GITHUB_JOB = {
    "ACTIONS_ID_TOKEN_REQUEST_URL": "https://pipelines.actions.githubusercontent.com/x/idtoken?api-version=2.0"
}
GITHUB_JOB["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] = "ghs-request"


@pytest.mark.parametrize(
    ("env", "method"),
    [
        ({"DATABRICKS_CLIENT_ID": CLIENT_ID, "DATABRICKS_OIDC_TOKEN": "eyJ.a.b"}, "env-oidc"),
        ({"DATABRICKS_OIDC_TOKEN": "eyJ.a.b"}, "env-oidc"),  # account-wide token federation
        (
            {"DATABRICKS_CLIENT_ID": CLIENT_ID, "DATABRICKS_CLIENT_SECRET": "s", "DATABRICKS_OIDC_TOKEN": "t"},
            "oauth-m2m",
        ),
        ({"DATABRICKS_CLIENT_ID": CLIENT_ID, **GITHUB_JOB}, "github-oidc"),
        ({"DATABRICKS_CLIENT_ID": CLIENT_ID, "DATABRICKS_OIDC_TOKEN": "eyJ.a.b", **GITHUB_JOB}, "env-oidc"),
        ({"DATABRICKS_TOKEN": "dapi", **GITHUB_JOB}, "pat"),
        ({"DATABRICKS_OIDC_TOKEN_ENV": "CI_JWT", "CI_JWT": "eyJ.a.b"}, "env-oidc"),
        ({"DATABRICKS_AUTH_TYPE": "github-oidc", "DATABRICKS_CLIENT_ID": CLIENT_ID, **GITHUB_JOB}, "github-oidc"),
    ],
    ids=[
        "env",
        "env-account-wide",
        "m2m-first",
        "github",
        "env-before-github",
        "pat-first",
        "named-variable",
        "chosen",
    ],
)
def test_the_method_is_the_first_in_the_sdks_order(env, method):
    config = resolve({"DATABRICKS_HOST": HOST, **env})
    assert config.auth.type == method
    assert config.user_agent.endswith(f" auth/{method}")


def test_a_token_file_is_file_oidc(token_file):
    config = resolve({"DATABRICKS_HOST": HOST, "DATABRICKS_OIDC_TOKEN_FILEPATH": str(token_file)})
    assert (config.auth.type, config.auth.path) == ("file-oidc", str(token_file))
    alias = resolve({"DATABRICKS_HOST": HOST, "DATABRICKS_OIDC_TOKEN_FILE": str(token_file)})  # the older name
    assert alias.sources.oidc_token_filepath == "DATABRICKS_OIDC_TOKEN_FILE"


@pytest.mark.parametrize(
    ("env", "words"),
    [
        # The SDK's credential groups: a client id (oauth) beside a token file (file-oidc) needs an auth type.
        (
            {"DATABRICKS_CLIENT_ID": CLIENT_ID, "DATABRICKS_OIDC_TOKEN_FILEPATH": "/tmp/t"},
            ("more than one authorization method configured: file-oidc and oauth", "DATABRICKS_AUTH_TYPE"),
        ),
        (
            {"DATABRICKS_CLIENT_ID": CLIENT_ID, "DATABRICKS_OIDC_TOKEN_ENV": "CI_JWT", "CI_JWT": "x"},
            ("env-oidc and oauth",),
        ),
        ({"DATABRICKS_TOKEN": "dapi", "ARM_TENANT_ID": "t"}, ("azure and pat", "ARM_TENANT_ID")),
        ({"DATABRICKS_CLIENT_ID": CLIENT_ID}, ("nothing to sign in with", "DATABRICKS_OIDC_TOKEN_FILEPATH")),
        (
            {"DATABRICKS_CLIENT_ID": CLIENT_ID, "GITHUB_ACTIONS": "true"},
            ("may not ask for an OIDC token", "permissions: id-token: write", "DATABRICKS_CLIENT_SECRET"),
        ),
        (
            {"DATABRICKS_AUTH_TYPE": "github-oidc", "DATABRICKS_CLIENT_ID": CLIENT_ID, "GITHUB_ACTIONS": "true"},
            ("permissions: id-token: write",),
        ),
        (
            {"DATABRICKS_AUTH_TYPE": "github-oidc", "DATABRICKS_CLIENT_ID": CLIENT_ID},
            ("inside a GitHub Actions job only", "env-oidc"),
        ),
        ({"DATABRICKS_AUTH_TYPE": "github-oidc", **GITHUB_JOB}, ("DATABRICKS_CLIENT_ID is not set",)),
        (
            {"DATABRICKS_AUTH_TYPE": "env-oidc", "DATABRICKS_CLIENT_ID": CLIENT_ID},
            ("DATABRICKS_OIDC_TOKEN is not set",),
        ),
        ({"DATABRICKS_OIDC_TOKEN_ENV": "CI_JWT"}, ("DATABRICKS_OIDC_TOKEN_ENV names CI_JWT, which is not set",)),
        ({"DATABRICKS_AUTH_TYPE": "file-oidc"}, ("DATABRICKS_OIDC_TOKEN_FILEPATH is not set",)),
        (
            {"DATABRICKS_OIDC_TOKEN_FILEPATH": "/nonexistent/token"},
            ("does not exist", "DATABRICKS_OIDC_TOKEN_FILEPATH"),
        ),
        (
            {"DATABRICKS_CLIENT_ID": CLIENT_ID, "DATABRICKS_WORKSPACE_ID": "12 34", "DATABRICKS_OIDC_TOKEN": "x"},
            ("DATABRICKS_WORKSPACE_ID", "not a workspace id"),
        ),
        (
            {
                "DATABRICKS_CLIENT_ID": CLIENT_ID,
                "ACTIONS_ID_TOKEN_REQUEST_URL": "http://github.example/t",
                "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "x",
            },
            ("ACTIONS_ID_TOKEN_REQUEST_URL uses plain http",),
        ),
    ],
    ids=[
        "file-and-client-id",
        "env-name-and-client-id",
        "tenant-and-token",
        "client-id-alone",
        "github-without-permission",
        "github-chosen-without-permission",
        "github-outside-github",
        "github-without-client-id",
        "env-without-token",
        "named-variable-unset",
        "file-without-path",
        "file-missing",
        "workspace-id",
        "plain-http-github",
    ],
)
def test_a_half_done_setup_is_one_line_naming_what_to_set(env, words):
    message = refused({"DATABRICKS_HOST": HOST, **env})
    for word in words:
        assert word in message, message


def test_an_empty_token_file_is_refused(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("")
    assert "is empty" in refused({"DATABRICKS_HOST": HOST, "DATABRICKS_OIDC_TOKEN_FILEPATH": str(empty)})


# -- the zipapp against the emulator ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def github_server():
    with GitHubOidc(subject=SUBJECT).start() as emulator:
        yield emulator


@pytest.fixture
def github(github_server):
    github_server.reset()
    return github_server


@pytest.fixture
def workspace(databricks):
    return databricks


@pytest.fixture
def gitlab(workspace):
    """A CI's OIDC issuer whose tokens the service principal's federation policy accepts."""
    issuer = Issuer(GITLAB)
    workspace.add_federation_policy(CLIENT_ID, issuer, "project_path:g/p:ref_type:branch:ref:main")
    return issuer


def oidc_token(issuer, workspace, **claims):
    return issuer.sign({"sub": "project_path:g/p:ref_type:branch:ref:main", "aud": workspace.account_id, **claims})


def sink_env(workspace, **overrides):
    env = {"DATABRICKS_HOST": workspace.url, "DATABRICKS_WAREHOUSE_ID": "wh-1", **overrides}
    return {key: value for key, value in env.items() if value is not None}


def env_oidc(workspace, token, **overrides):
    return sink_env(workspace, DATABRICKS_CLIENT_ID=CLIENT_ID, DATABRICKS_OIDC_TOKEN=token, **overrides)


def github_env(workspace, github, **overrides):
    job = {"ACTIONS_ID_TOKEN_REQUEST_URL": github.request_url, "ACTIONS_ID_TOKEN_REQUEST_TOKEN": github.request_token}
    return sink_env(workspace, DATABRICKS_CLIENT_ID=CLIENT_ID, GITHUB_ACTIONS="true", **{**job, **overrides})


def posts(workspace, path):
    return [request for request in workspace.requests if request.path == path]


def bearer_tokens(workspace):
    return [request.header("authorization") for request in workspace.requests if request.path.startswith("/api/")]


def everything_written(result, tmp_path):
    """stdout, stderr and every file the sink wrote in its spool and its home (the token cache)."""
    files = [
        path.read_text(errors="replace") for path in tmp_path.rglob("*") if path.is_file() and "shiv" not in str(path)
    ]
    return "\n".join([result.stdout, result.stderr, *files])


def cache_files(tmp_path):
    folder = tmp_path / "home" / ".peepshow" / "tokens"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def test_env_oidc_exchanges_the_token_as_the_sdk_does(run_sink, workspace, gitlab, tmp_path):
    token = oidc_token(gitlab, workspace)
    result = run_sink("databricks", fixture("run-full.json"), env_oidc(workspace, token))
    assert (result.code, result.stderr) == (0, ""), result
    (post,) = posts(workspace, "/oidc/v1/token")
    # databricks-sdk-py's ClientCredentials with endpoint_params, use_params: these fields, in this order, and no
    # client authentication at all.
    fields = [
        ("grant_type", EXCHANGE),
        ("scope", "all-apis"),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
        ("subject_token", token),
        ("client_id", CLIENT_ID),
    ]
    assert post.body == urllib.parse.urlencode(fields).encode()
    assert post.content_type == "application/x-www-form-urlencoded" and post.header("authorization") is None
    assert post.header("user-agent").endswith(" auth/env-oidc")
    (issued,) = workspace.oauth_tokens
    assert set(bearer_tokens(workspace)) == {f"Bearer {issued}"}
    assert workspace.token_requests[0]["subject"] == "project_path:g/p:ref_type:branch:ref:main"
    assert len(workspace.rows(TABLE)) == 1
    assert token not in everything_written(result, tmp_path)


def test_account_wide_federation_sends_no_client_id(run_sink, workspace):
    idp = Issuer("https://idp.example.com")
    workspace.add_account_federation_policy(idp)
    token = idp.sign({"sub": "user@example.com", "aud": workspace.account_id})
    result = run_sink("databricks", fixture("run-full.json"), sink_env(workspace, DATABRICKS_OIDC_TOKEN=token))
    assert result.code == 0, result
    (post,) = posts(workspace, "/oidc/v1/token")
    assert "client_id" not in post.form()
    assert workspace.token_requests[0]["client_id"] == "user@example.com"


def test_a_named_variable_and_a_file_in_a_profile(run_sink, workspace, gitlab, tmp_path):
    token = oidc_token(gitlab, workspace)
    env = env_oidc(workspace, None, DATABRICKS_AUTH_TYPE="env-oidc", DATABRICKS_OIDC_TOKEN_ENV="CI_JOB_JWT_V2")
    result = run_sink("databricks", fixture("run-full.json"), {**env, "CI_JOB_JWT_V2": token})
    assert result.code == 0, result
    assert posts(workspace, "/oidc/v1/token")[0].form()["subject_token"] == [token]
    # A profile picks file-oidc too; the file is read when a token is needed, so the CI may rotate it.
    token_file = tmp_path / "token"
    token_file.write_text(oidc_token(gitlab, workspace) + "\n")
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (home / ".databrickscfg").write_text(
        f"[ci]\nhost = {workspace.url}\nclient_id = {CLIENT_ID}\noidc_token_filepath = {token_file}\n"
        "auth_type = file-oidc\nwarehouse_id = wh-1\n"
    )
    check = run_sink("databricks", b"", {"DATABRICKS_CONFIG_PROFILE": "ci"}, args=["--check"])
    assert check.code == 0, check
    assert (
        f"ok    auth: file-oidc (workload identity federation: service principal {CLIENT_ID} from client_id in [ci] "
        f"of ~/.databrickscfg, OIDC token read from {token_file} (oidc_token_filepath in [ci] of ~/.databrickscfg)); "
        "chosen by auth_type in [ci] of ~/.databrickscfg; tokens kept in ~/.peepshow/tokens; profile [ci]"
    ) in check.stdout
    assert "ok    credential: the token exchange gave a token" in check.stdout
    assert posts(workspace, "/oidc/v1/token")[-1].form()["subject_token"] == [token_file.read_text().strip()]


def test_github_oidc_asks_github_for_the_workspaces_audience(run_sink, workspace, github):
    workspace.add_federation_policy(CLIENT_ID, github.issuer, SUBJECT)  # audiences: the account id, by default
    result = run_sink("databricks", fixture("run-full.json"), github_env(workspace, github))
    assert (result.code, result.stderr) == (0, ""), result
    (asked,) = github.token_requests
    assert asked["audience"] == workspace.account_id  # the workspace's token_federation_default_oidc_audiences
    assert [request.path for request in github.requests] == [github.PATH]
    assert github.requests[0].header("authorization") == f"Bearer {github.request_token}"
    assert [request.path for request in workspace.requests][:2] == ["/.well-known/databricks-config", "/oidc/v1/token"]
    assert posts(workspace, "/oidc/v1/token")[0].form()["subject_token"] == [asked["jwt"]]
    assert len(workspace.rows(TABLE)) == 1


def test_github_oidc_with_an_audience_of_its_own(run_sink, workspace, github):
    workspace.add_federation_policy(CLIENT_ID, github.issuer, SUBJECT, audiences=["https://github.com/my-org"])
    env = github_env(workspace, github, DATABRICKS_TOKEN_AUDIENCE="https://github.com/my-org")
    assert run_sink("databricks", fixture("run-full.json"), env).code == 0
    assert github.token_requests[0]["audience"] == "https://github.com/my-org"
    assert not posts(workspace, "/.well-known/databricks-config")  # no need to ask the workspace
    assert github.requests[0].query["audience"] == ["https://github.com/my-org"]


# -- one request per steady-state run -------------------------------------------------------------------------------


@pytest.fixture
def way_in(workspace, github, gitlab, tmp_path):
    """way_in(method) -> env: the workspace reached the way `method` signs in (each ready to work)."""

    def env(method):
        if method == "oauth-m2m":
            return sink_env(workspace, DATABRICKS_CLIENT_ID=CLIENT_ID, DATABRICKS_CLIENT_SECRET=CLIENT_SECRET)
        if method == "env-oidc":
            return env_oidc(workspace, oidc_token(gitlab, workspace))
        if method == "file-oidc":
            path = tmp_path / "oidc-token"
            path.write_text(oidc_token(gitlab, workspace))
            return sink_env(workspace, DATABRICKS_OIDC_TOKEN_FILEPATH=str(path), DATABRICKS_AUTH_TYPE="file-oidc",
                            DATABRICKS_CLIENT_ID=CLIENT_ID)  # fmt: skip
        workspace.add_federation_policy(CLIENT_ID, github.issuer, SUBJECT)
        return github_env(workspace, github)

    return env


METHODS = ["oauth-m2m", "env-oidc", "file-oidc", "github-oidc"]


@pytest.mark.parametrize("method", METHODS)
def test_three_runs_one_token_request(run_sink, workspace, github, way_in, method, tmp_path):
    env = way_in(method)
    workspace.create_table(TABLE, db.COLUMNS)
    for number in range(3):
        workspace.requests.clear()
        run = dict(fixture("run-minimal.json"), outputDir=f"/tmp/run-{number}")
        result = run_sink("databricks", run, env)
        assert (result.code, result.stderr) == (0, ""), result
        if number:  # the steady state: the statement, nothing else, and nothing asked of GitHub
            assert [(request.method, request.path) for request in workspace.requests] == [("POST", STATEMENTS)]
    assert len(workspace.token_requests) == 1 and len(workspace.rows(TABLE)) == 3
    assert len(github.token_requests) == (method == "github-oidc")
    (cached,) = cache_files(tmp_path)
    assert_mode(cached, 0o600)
    assert_mode(cached.parent, 0o700)
    entry = json.loads(cached.read_text())
    (issued,) = workspace.oauth_tokens
    assert entry["access_token"] == issued and entry["method"] == method and entry["host"] == workspace.url
    assert set(entry) == {"host", "method", "principal", "token_type", "access_token", "expires_at", "headers"}
    # Never a secret, an OIDC token or GitHub's request token.
    text = cached.read_text()
    assert CLIENT_SECRET not in text and github.request_token not in text
    path = env.get("DATABRICKS_OIDC_TOKEN_FILEPATH")
    subjects = [env.get("DATABRICKS_OIDC_TOKEN"), path and Path(path).read_text()]
    subjects += [asked["jwt"] for asked in github.token_requests]
    assert not any(subject and subject in text for subject in subjects)


def test_a_token_near_its_expiry_is_not_reused(run_sink, workspace, gitlab):
    workspace.set_token_lifetime(40)  # at most 40 s left: never reused (Azure refuses tokens with 30 s left)
    workspace.create_table(TABLE, db.COLUMNS)
    env = env_oidc(workspace, oidc_token(gitlab, workspace))
    for number in range(2):
        run = dict(fixture("run-minimal.json"), outputDir=f"/tmp/peepshow-expiry-{number}")
        assert run_sink("databricks", run, env).code == 0
    assert len(workspace.token_requests) == 2 and workspace.refused_tokens == []


@pytest.mark.parametrize("status", [401, 403])
def test_a_revoked_cached_token_is_dropped_and_replaced_once(run_sink, workspace, gitlab, tmp_path, status):
    env = env_oidc(workspace, oidc_token(gitlab, workspace))
    assert run_sink("databricks", fixture("run-full.json"), env).code == 0
    first = json.loads(cache_files(tmp_path)[0].read_text())["access_token"]
    workspace.expire_oauth_tokens(status=status)  # revoked (or expired early) on the server's side
    result = run_sink("databricks", fixture("run-minimal.json"), env)
    assert (result.code, result.stderr) == (0, ""), result
    assert workspace.refused_tokens == [first] and len(workspace.token_requests) == 2
    second = json.loads(cache_files(tmp_path)[0].read_text())["access_token"]
    assert second != first
    workspace.requests.clear()
    assert run_sink("databricks", dict(fixture("run-minimal.json"), outputDir="/tmp/third"), env).code == 0
    assert len(workspace.token_requests) == 2 and [request.path for request in workspace.requests] == [STATEMENTS]


def test_a_token_refused_after_renewal_fails_once_and_keeps_the_run(run_sink, workspace, gitlab, spool, tmp_path):
    env = env_oidc(workspace, oidc_token(gitlab, workspace))
    body = {"error_code": 403, "message": "Invalid access token."}
    workspace.fault("status", times=None, status=403, body=body, path=STATEMENTS)
    result = run_sink("databricks", fixture("run-full.json"), env)
    assert_clean_failure(result, 5)
    assert "token exchange" in result.stderr and "DATABRICKS_CLIENT_ID" in result.stderr and "kept" in result.stderr
    assert len(workspace.token_requests) == 2 and cache_files(tmp_path) != []  # the second token waits for a fix
    assert list((spool / "databricks").glob("*.json"))


def test_a_token_that_expires_mid_backfill_is_renewed(run_sink, workspace, gitlab):
    workspace.create_table(TABLE, db.COLUMNS)
    result = backfill_while_the_token_expires(run_sink, workspace, env_oidc(workspace, oidc_token(gitlab, workspace)))
    assert result.code == 0, result
    assert len(workspace.rows(TABLE)) == 30
    assert len(workspace.token_requests) == 2 and len(workspace.refused_tokens) == 1


def test_two_first_runs_at_once_share_a_sound_cache(workspace, gitlab, tmp_path, shiv_root):
    home = tmp_path / "home"
    home.mkdir()
    env = minimal_env(
        home,
        SHIV_ROOT=shiv_root,
        PEEPSHOW_SINK_SPOOL_DIR=str(tmp_path / "spool"),
        **env_oidc(workspace, oidc_token(gitlab, workspace)),
    )
    workspace.create_table(TABLE, db.COLUMNS)
    runs = [dict(fixture("run-minimal.json"), outputDir=f"/tmp/concurrent-{number}") for number in range(2)]
    processes = [
        subprocess.Popen(
            [SINK_PYTHON, str(DIST / "databricks.pyz")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for _ in runs
    ]
    outcomes = [process.communicate(json.dumps(run).encode(), timeout=60) for process, run in zip(processes, runs)]
    assert [process.returncode for process in processes] == [0, 0], outcomes
    assert len(workspace.rows(TABLE)) == 2 and 1 <= len(workspace.token_requests) <= 2
    folder = home / ".peepshow" / "tokens"
    (cached,) = folder.iterdir()  # one entry, no temporary file left behind
    assert json.loads(cached.read_text())["access_token"] in workspace.oauth_tokens
    workspace.requests.clear()
    third = subprocess.run(
        [SINK_PYTHON, str(DIST / "databricks.pyz")], input=fixture_bytes("run-full.json"), env=env, capture_output=True
    )
    assert third.returncode == 0 and [request.path for request in workspace.requests] == [STATEMENTS]


def test_an_unusable_cache_is_passed_over(run_sink, workspace, gitlab, tmp_path):
    env = env_oidc(workspace, oidc_token(gitlab, workspace))
    assert run_sink("databricks", fixture("run-full.json"), env).code == 0
    (cached,) = cache_files(tmp_path)
    cached.write_text("{half a file")
    assert run_sink("databricks", fixture("run-minimal.json"), env).code == 0
    json.loads(cached.read_text())  # rewritten whole
    if not WINDOWS:  # no modes there: the cache is as private as the profile folder it is in
        cached.chmod(0o644)  # readable by others: not trusted, a new token is had
        assert run_sink("databricks", dict(fixture("run-minimal.json"), outputDir="/tmp/x"), env).code == 0
        assert len(workspace.token_requests) == 3
    requested = len(workspace.token_requests)
    # A cache that cannot be written (a file where its folder should be: even root cannot write there): the run is
    # delivered all the same, with a token of its own.
    cached.unlink()
    cached.parent.rmdir()
    cached.parent.write_text("not a folder")
    assert run_sink("databricks", dict(fixture("run-minimal.json"), outputDir="/tmp/y"), env).code == 0
    assert len(workspace.token_requests) == requested + 1 and cached.parent.read_text() == "not a folder"


# -- what goes wrong, on one line -----------------------------------------------------------------------------------


def test_an_expired_oidc_token_is_a_configuration_error_and_the_run_is_kept(run_sink, workspace, gitlab, spool):
    stale = oidc_token(gitlab, workspace, exp=int(time.time()) - 5)
    result = run_sink("databricks", fixture("run-full.json"), env_oidc(workspace, stale))
    assert_clean_failure(result, 2, stale)
    assert "the OIDC token in DATABRICKS_OIDC_TOKEN expired at " in result.stderr
    assert "put a fresh one in DATABRICKS_OIDC_TOKEN" in result.stderr and "kept" in result.stderr
    assert workspace.requests == []  # found before anything was sent
    assert list((spool / "databricks").glob("*.json"))


def test_a_token_the_policy_refuses_names_the_policy(run_sink, workspace, gitlab, spool):
    token = oidc_token(gitlab, workspace, sub="project_path:g/other:ref_type:branch:ref:main")
    result = run_sink("databricks", fixture("run-full.json"), env_oidc(workspace, token))
    assert_clean_failure(result, 5, token)
    assert "Databricks refused the token exchange (HTTP 400 invalid_request" in result.stderr
    assert f"federation policy of service principal {CLIENT_ID} (DATABRICKS_CLIENT_ID)" in result.stderr
    assert "kept" in result.stderr and workspace.statements == []
    assert len(posts(workspace, "/oidc/v1/token")) == 1  # asked once, never in a loop
    assert list((spool / "databricks").glob("*.json"))


def test_a_github_job_without_the_permission(run_sink, workspace):
    env = sink_env(workspace, DATABRICKS_CLIENT_ID=CLIENT_ID, GITHUB_ACTIONS="true")
    result = run_sink("databricks", fixture("run-full.json"), env)
    assert_clean_failure(result, 2)
    assert "permissions: id-token: write" in result.stderr and workspace.requests == []


def test_a_github_request_token_github_refuses(run_sink, workspace, github):
    workspace.add_federation_policy(CLIENT_ID, github.issuer, SUBJECT)
    env = github_env(workspace, github, ACTIONS_ID_TOKEN_REQUEST_TOKEN="ghs_expired")
    result = run_sink("databricks", fixture("run-full.json"), env)
    assert_clean_failure(result, 5, "ghs_expired")
    assert "GitHub Actions refused the OIDC token request (HTTP 401)" in result.stderr and "kept" in result.stderr


# -- what the operator sees, and what every statement carries -------------------------------------------------------


def test_dry_run_and_help_name_the_method_and_its_sources(run_sink, workspace, github):
    env = github_env(workspace, github, DATABRICKS_WORKSPACE_ID="1234567890123456")
    dry = run_sink("databricks", fixture("run-full.json"), env, args=["--dry-run"])
    assert dry.code == 0, dry
    assert dry.stdout.startswith(
        f"# databricks: github-oidc (workload identity federation: service principal {CLIENT_ID} from "
        "DATABRICKS_CLIENT_ID, OIDC token from GitHub Actions for the workspace's audience); tokens kept in "
    )
    assert "X-Databricks-Workspace-Id: 1234567890123456" in dry.stdout
    assert '"query_tags":[{"key":"peepshow_sink","value":"databricks"},{"key":"peepshow_sink_version"' in dry.stdout
    assert github.request_token not in dry.stdout and workspace.requests == [] and github.requests == []
    helped = run_sink("databricks", b"", env, args=["--help"])
    assert "This environment: github-oidc (workload identity federation" in helped.stdout
    assert "GCP workspaces: a personal access token or OAuth M2M (or federation)" in helped.stdout


def test_every_workspace_request_names_the_workspace_and_every_statement_the_sink(run_sink, workspace, gitlab):
    env = env_oidc(workspace, oidc_token(gitlab, workspace), DATABRICKS_WORKSPACE_ID="1234567890123456")
    assert run_sink("databricks", fixture("run-full.json"), env).code == 0
    for request in workspace.requests:
        expected = None if request.path.startswith("/oidc/") else "1234567890123456"
        assert request.header("x-databricks-workspace-id") == expected, request.path
    version = db.sink.version()
    assert [statement["query_tags"] for statement in workspace.statements] == [
        {"peepshow_sink": "databricks", "peepshow_sink_version": version}
    ] * len(workspace.statements)


def test_without_host_metadata_github_oidc_asks_for_the_token_endpoint(run_sink, workspace, github):
    # An older workspace has no /.well-known/databricks-config: the SDK's last resort is the token endpoint's URL.
    workspace.fault(
        "status", status=404, body={"error_code": "ENDPOINT_NOT_FOUND"}, path="/.well-known/databricks-config"
    )
    workspace.add_federation_policy(CLIENT_ID, github.issuer, SUBJECT, audiences=[workspace.url + "/oidc/v1/token"])
    result = run_sink("databricks", fixture("run-full.json"), github_env(workspace, github))
    assert result.code == 0, result
    assert github.token_requests[0]["audience"] == workspace.url + "/oidc/v1/token"
