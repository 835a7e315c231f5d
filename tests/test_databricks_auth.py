"""databricks: authentication the way Databricks' own tools do it (SPEC §3b), and one statement per steady-state run.

First the configuration resolution in process (table-driven: host, method, ~/.databrickscfg semantics), then the
zipapp against the emulator for every way in: personal access token, OAuth M2M, OAuth U2M through a fake
`databricks` CLI, a profile.
"""

import base64
import datetime
import json
import os
import sys

import pytest

from tests.conftest import assert_clean_failure, fixture, fixture_bytes, load_script, python_program
from tests.databricks_identity import backfill_while_the_token_expires
from tests.emulators.databricks import DEFAULT_SERVICE_PRINCIPALS

db = load_script("databricks")
SinkError = db.sink.SinkError
CLIENT_ID, CLIENT_SECRET = next(iter(DEFAULT_SERVICE_PRINCIPALS.items()))
TOKEN = "dapi-test-token"
HOST = "https://abc-123.cloud.databricks.com"
TABLE = "main.default.peepshow_runs"
STATEMENTS = "/api/2.0/sql/statements"


def resolve(env, home=None):
    """read_config in process; `home` stands for $HOME (where ~/.databrickscfg is looked for)."""
    return db.read_config({db.sink.HOME_VARIABLE: str(home or "/nonexistent"), "PATH": "/nonexistent", **env})


def refused(env, home=None):
    with pytest.raises(SinkError) as caught:
        resolve(env, home)
    assert caught.value.code == 2, caught.value.message
    return caught.value.message


# -- the workspace host ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "host"),
    [
        ("abc-123.cloud.databricks.com", HOST),  # no scheme means https
        ("https://abc-123.cloud.databricks.com/", HOST),
        ("https://abc-123.cloud.databricks.com:443", HOST),
        ("https://adb-1.2.azuredatabricks.net/?o=1234567890", "https://adb-1.2.azuredatabricks.net"),  # the portal's
        ("https://abc-123.cloud.databricks.com:8443/", "https://abc-123.cloud.databricks.com:8443"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
    ],
)
@pytest.mark.parametrize("variable", ["DATABRICKS_HOST", "DATABRICKS_URL"])
def test_host_normalisation(variable, given, host):
    config = resolve({variable: given, "DATABRICKS_TOKEN": TOKEN, "DATABRICKS_WAREHOUSE_ID": "wh-1"})
    assert config.host == host and config.sources.host == variable


def test_host_and_url_may_agree_but_not_differ():
    same = {"DATABRICKS_HOST": "abc-123.cloud.databricks.com", "DATABRICKS_URL": HOST + "/"}
    assert resolve({**same, "DATABRICKS_TOKEN": TOKEN, "DATABRICKS_WAREHOUSE_ID": "wh-1"}).host == HOST
    message = refused({"DATABRICKS_HOST": HOST, "DATABRICKS_URL": "https://other.cloud.databricks.com"})
    assert "DATABRICKS_HOST" in message and "DATABRICKS_URL" in message and "different" in message


def test_plain_http_to_a_remote_host_is_refused():
    assert "https" in refused({"DATABRICKS_HOST": "http://abc-123.cloud.databricks.com", "DATABRICKS_TOKEN": TOKEN})


# -- which method ---------------------------------------------------------------------------------------------------

BASE = {"DATABRICKS_HOST": HOST, "DATABRICKS_WAREHOUSE_ID": "wh-1"}
M2M = {"DATABRICKS_CLIENT_ID": CLIENT_ID, "DATABRICKS_CLIENT_SECRET": CLIENT_SECRET}


@pytest.mark.parametrize(
    ("env", "method"),
    [
        ({"DATABRICKS_TOKEN": TOKEN}, "pat"),
        (M2M, "oauth-m2m"),
        ({"DATABRICKS_TOKEN": TOKEN, **M2M, "DATABRICKS_AUTH_TYPE": "pat"}, "pat"),
        ({"DATABRICKS_TOKEN": TOKEN, **M2M, "DATABRICKS_AUTH_TYPE": "oauth-m2m"}, "oauth-m2m"),
    ],
    ids=["token", "client-credentials", "both-auth-type-pat", "both-auth-type-m2m"],
)
def test_the_method_is_picked_as_the_sdk_picks_it(env, method):
    config = resolve({**BASE, **env})
    assert config.auth.type == method
    assert config.user_agent.startswith(f"peepshow-sink-databricks/{db.sink.version()} python/")
    assert config.user_agent.endswith(f" auth/{method}") and " os/" in config.user_agent


@pytest.mark.parametrize(
    ("env", "words"),
    [
        (
            {"DATABRICKS_TOKEN": TOKEN, **M2M},
            ("more than one authorization method configured: oauth and pat", "DATABRICKS_AUTH_TYPE"),
        ),
        ({"DATABRICKS_TOKEN": TOKEN, "DATABRICKS_CLIENT_ID": CLIENT_ID}, ("oauth and pat", "DATABRICKS_TOKEN")),
        (
            {"DATABRICKS_CLIENT_ID": CLIENT_ID},
            ("nothing to sign in with", "DATABRICKS_CLIENT_SECRET", "DATABRICKS_OIDC_TOKEN", "id-token: write"),
        ),
        ({"DATABRICKS_CLIENT_SECRET": CLIENT_SECRET}, ("DATABRICKS_CLIENT_ID is not set",)),
        ({"DATABRICKS_AUTH_TYPE": "google-id", "DATABRICKS_TOKEN": TOKEN}, ("google-id", "pat, oauth-m2m, env-oidc")),
        ({"DATABRICKS_AUTH_TYPE": "pat", **M2M}, ("DATABRICKS_TOKEN is not set",)),
        ({"DATABRICKS_AUTH_TYPE": "databricks-cli"}, ("Databricks CLI is not installed", "DATABRICKS_TOKEN")),
        ({}, ("no credential", "DATABRICKS_TOKEN", "DATABRICKS_CLIENT_ID", "databricks auth login")),
        ({"DATABRICKS_CLI_PATH": "/nonexistent/databricks"}, ("DATABRICKS_CLI_PATH",)),
        ({"DATABRICKS_TOKEN": TOKEN, "DATABRICKS_WAREHOUSE_ID": "a/b"}, ("DATABRICKS_WAREHOUSE_ID",)),
    ],
    ids=[
        "ambiguous",
        "ambiguous-half",
        "no-secret",
        "no-id",
        "unsupported",
        "pat-without-token",
        "cli-missing",
        "nothing",
        "cli-path",
        "warehouse",
    ],
)
def test_configuration_errors_name_what_to_fix(env, words):
    message = refused({**BASE, **env})
    for word in words:
        assert word in message, message
    assert CLIENT_SECRET not in message and TOKEN not in message


@pytest.mark.parametrize(
    ("given", "warehouse"),
    [
        ("abcd1234efgh5678", "abcd1234efgh5678"),
        ("/sql/1.0/warehouses/abcd12", "abcd12"),
        ("sql/1.0/endpoints/x9/", "x9"),
    ],
)
def test_the_warehouse_may_be_its_http_path(given, warehouse):
    assert resolve({**BASE, "DATABRICKS_TOKEN": TOKEN, "DATABRICKS_WAREHOUSE_ID": given}).warehouse == warehouse


def test_credentials_are_redacted_from_the_moment_they_are_read():
    config = resolve({**BASE, **M2M})
    assert CLIENT_SECRET not in db.sink.redact(f"x {CLIENT_SECRET} y")
    assert config.auth.basic not in db.sink.redact(f"Authorization: Basic {config.auth.basic}")


def test_a_cli_on_path_is_the_method_when_nothing_else_is_configured(fake_cli):
    config = db.read_config({**BASE, db.sink.HOME_VARIABLE: "/nonexistent", "PATH": str(fake_cli.folder)})
    assert config.auth.type == "databricks-cli" and config.auth.implicit
    assert config.auth.command == [str(fake_cli.path), "auth", "token", "--host", HOST]


# -- ~/.databrickscfg -----------------------------------------------------------------------------------------------

PROFILES = """
[__settings__]
default_profile = {default}

[DEFAULT]
host = https://default.cloud.databricks.com
token = dapi-default
warehouse_id = wh-default

[dev]
host = dev.cloud.databricks.com
token = dapi#dev%s
warehouse_id = /sql/1.0/warehouses/wh-dev

[sp]
HOST = https://sp.cloud.databricks.com/
client_id = sp-client
client_secret = dose-sp-secret

[u2m]
host = https://u2m.cloud.databricks.com
auth_type = databricks-cli
warehouse_id = wh-u2m

[hostonly]
host = https://hostonly.cloud.databricks.com
"""


@pytest.fixture
def home(tmp_path):
    """A HOME whose ~/.databrickscfg is PROFILES; `write(text)` replaces it."""
    folder = tmp_path / "home"
    folder.mkdir(exist_ok=True)

    def write(text=None):
        (folder / ".databrickscfg").write_text(PROFILES.format(default="") if text is None else text)
        return folder

    write.folder = folder
    write()
    return write


@pytest.mark.parametrize(
    ("env", "default", "name", "host", "credential", "warehouse"),
    [
        # No profile named: [DEFAULT], when it has keys.
        ({}, "", "DEFAULT", "https://default.cloud.databricks.com", ("pat", "dapi-default"), "wh-default"),
        # [__settings__] default_profile wins over [DEFAULT].
        ({}, "dev", "dev", "https://dev.cloud.databricks.com", ("pat", "dapi#dev%s"), "wh-dev"),
        # DATABRICKS_CONFIG_PROFILE wins over default_profile. Keys are case-insensitive (HOST), and [DEFAULT]'s
        # token and warehouse_id are not inherited: [sp] is OAuth M2M, its warehouse from the environment.
        (
            {"DATABRICKS_CONFIG_PROFILE": "sp", "DATABRICKS_WAREHOUSE_ID": "wh-env"},
            "dev",
            "sp",
            "https://sp.cloud.databricks.com",
            ("oauth-m2m", "dose-sp-secret"),
            "wh-env",
        ),
        # The environment wins over a named profile, key by key.
        (
            {"DATABRICKS_CONFIG_PROFILE": "dev", "DATABRICKS_TOKEN": "dapi-env", "DATABRICKS_WAREHOUSE_ID": "wh-env"},
            "",
            "dev",
            "https://dev.cloud.databricks.com",
            ("pat", "dapi-env"),
            "wh-env",
        ),
    ],
    ids=["default-section", "default-profile", "named-profile", "env-wins"],
)
def test_profile_choice_and_precedence(home, env, default, name, host, credential, warehouse):
    home(PROFILES.format(default=default))
    config = resolve(env, home.folder)
    auth = config.auth
    assert (config.profile.name, config.host, config.warehouse) == (name, host, warehouse)
    secret = getattr(auth, "token", None) or base64.b64decode(auth.basic).decode().partition(":")[2]
    assert (auth.type, secret) == credential


def test_values_are_raw(home):
    # `#` is part of a value and `%` is no interpolation: the token is exactly what the file says.
    assert resolve({"DATABRICKS_CONFIG_PROFILE": "dev"}, home.folder).auth.token == "dapi#dev%s"


def test_sources_name_the_profile_key(home):
    config = resolve({"DATABRICKS_CONFIG_PROFILE": "dev"}, home.folder)
    assert config.sources.token == "token in [dev] of ~/.databrickscfg"
    assert "profile [dev] of ~/.databrickscfg" in db.describe(config)


def test_the_default_section_is_not_inherited(home):
    # [hostonly] has a host and nothing else: the token of [DEFAULT] must not fill in.
    message = refused({"DATABRICKS_CONFIG_PROFILE": "hostonly"}, home.folder)
    assert "no credential for https://hostonly.cloud.databricks.com" in message


@pytest.mark.parametrize(
    ("env", "default", "words"),
    [
        ({"DATABRICKS_CONFIG_PROFILE": "prod"}, "", ("no [prod] profile", "DATABRICKS_CONFIG_PROFILE=prod", "[dev]")),
        ({}, "gone", ("no [gone] profile", "default_profile")),
        ({"DATABRICKS_CONFIG_PROFILE": "__settings__"}, "", ("reserved",)),
        ({}, "__settings__", ("reserved",)),
    ],
    ids=["named-missing", "default-profile-missing", "settings-named", "settings-as-default"],
)
def test_profile_errors(home, env, default, words):
    home(PROFILES.format(default=default))
    message = refused(env, home.folder)
    assert all(word in message for word in words), message


def test_the_file_is_not_read_when_the_environment_configures_host_or_credential(home):
    # The SDK's rule: with DATABRICKS_HOST (or a credential) set and no profile named, the file is not opened.
    message = refused({"DATABRICKS_HOST": HOST, "DATABRICKS_WAREHOUSE_ID": "wh-1"}, home.folder)
    assert "no credential" in message and "is not read when DATABRICKS_HOST is set" in message
    message = refused({"DATABRICKS_TOKEN": TOKEN}, home.folder)
    assert "DATABRICKS_HOST is not set" in message and "not read when DATABRICKS_TOKEN is set" in message
    home("[DEFAULT\n")  # a broken file: not an error as long as it is not read
    assert resolve({**BASE, "DATABRICKS_TOKEN": TOKEN}, home.folder).profile.name is None


def test_an_empty_default_section_means_no_profile(home):
    home("[DEFAULT]\n\n[dev]\nhost = https://dev.cloud.databricks.com\ntoken = t\n")
    message = refused({}, home.folder)
    assert "DATABRICKS_HOST is not set" in message and "no [DEFAULT] profile" in message


def test_a_config_file_elsewhere_and_a_missing_one(home, tmp_path):
    elsewhere = tmp_path / "work.cfg"
    elsewhere.write_text("[w]\nhost = https://w.cloud.databricks.com\ntoken = t-w\nwarehouse_id = wh-w\n")
    config = resolve({"DATABRICKS_CONFIG_FILE": str(elsewhere), "DATABRICKS_CONFIG_PROFILE": "w"}, home.folder)
    assert (config.host, config.profile.file) == ("https://w.cloud.databricks.com", str(elsewhere))
    # A missing file is no error by itself (the SDKs ignore it); what is then missing is, and says why.
    message = refused({"DATABRICKS_CONFIG_FILE": str(tmp_path / "none.cfg"), "DATABRICKS_CONFIG_PROFILE": "w"})
    assert "does not exist" in message


@pytest.mark.parametrize("text", ["[a]\nhost = x\n[a]\nhost = y\n", "host = x\n", "[a]\nhost = x\nhost = y\n"])
def test_a_broken_file_is_a_configuration_error_naming_it(home, text):
    home(text)
    assert "~/.databrickscfg is not a valid config file" in refused({}, home.folder)


def test_a_u2m_profile_runs_the_cli_with_its_name(home, fake_cli):
    env = {db.sink.HOME_VARIABLE: str(home.folder), "PATH": str(fake_cli.folder), "DATABRICKS_CONFIG_PROFILE": "u2m"}
    assert db.read_config(env).auth.command == [str(fake_cli.path), "auth", "token", "--profile", "u2m"]
    # As [DEFAULT] fallback (not named), the SDKs pass the host instead.
    home("[DEFAULT]\nhost = https://u.cloud.databricks.com\nauth_type = databricks-cli\nwarehouse_id = w\n")
    env = {db.sink.HOME_VARIABLE: str(home.folder), "PATH": str(fake_cli.folder)}
    command = db.read_config(env).auth.command
    assert command[-2:] == ["--host", "https://u.cloud.databricks.com"]


# -- a fake `databricks` CLI ------------------------------------------------------------------------------------------

FAKE_CLI = """#!{python}
# `databricks auth token` as the Databricks CLI answers it: JSON on stdout, or exit 1 with its reason on stderr.
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "calls.log"), "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
with open(os.path.join(here, "answer.json")) as handle:
    answer = json.load(handle)
if "stderr" in answer:
    sys.stderr.write(answer["stderr"])
    sys.exit(1)
json.dump(answer, sys.stdout, indent=2)
"""


class FakeCli:
    def __init__(self, folder):
        self.folder = folder
        self.path = python_program(folder / "databricks", FAKE_CLI.format(python=sys.executable))
        self.fail("Error: no answer set by the test")

    def answer(self, token, expiry):
        (self.folder / "answer.json").write_text(json.dumps({"access_token": token, "token_type": "Bearer", **expiry}))

    def fail(self, stderr):
        (self.folder / "answer.json").write_text(json.dumps({"stderr": stderr}))

    def calls(self):
        log = self.folder / "calls.log"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def fake_cli(tmp_path):
    folder = tmp_path / "bin"
    folder.mkdir()
    return FakeCli(folder)


def rfc3339(seconds_from_now, offset_hours):
    """An expiry as the CLI prints it (Go's time.Time: 9 fractional digits, the local offset)."""
    zone = datetime.timezone(datetime.timedelta(hours=offset_hours))
    moment = datetime.datetime.now(zone) + datetime.timedelta(seconds=seconds_from_now)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123" + moment.strftime("%z")[:3] + ":" + moment.strftime("%z")[3:]


# -- the zipapp: every way in ---------------------------------------------------------------------------------------


@pytest.fixture
def workspace(databricks):
    return databricks


def sink_env(emulator, **overrides):
    env = {"DATABRICKS_HOST": emulator.url, "DATABRICKS_WAREHOUSE_ID": "wh-1", **overrides}
    return {key: value for key, value in env.items() if value is not None}


def statements(emulator):
    return [statement["statement"].split()[0] for statement in emulator.statements]


def authorizations(emulator, path=STATEMENTS):
    return [request.header("authorization") for request in emulator.requests if request.path.startswith(path)]


def everything_written(result, spool):
    """stdout, stderr and every file the sink wrote in its spool."""
    files = [path.read_text(errors="replace") for path in spool.rglob("*") if path.is_file()] if spool.exists() else []
    return "\n".join([result.stdout, result.stderr, *files])


def test_m2m_delivers_with_one_token_request_made_as_the_sdk_makes_it(run_sink, workspace, spool):
    result = run_sink("databricks", fixture("run-full.json"), sink_env(workspace, **M2M), args=["--verbose"])
    assert result.code == 0, result
    assert len(workspace.rows(TABLE)) == 1
    (token_post,) = [request for request in workspace.requests if request.path == "/oidc/v1/token"]
    assert token_post.method == "POST" and token_post.content_type == "application/x-www-form-urlencoded"
    assert token_post.form() == {"grant_type": ["client_credentials"], "scope": ["all-apis"]}
    assert (
        token_post.header("authorization")
        == "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    )
    (issued,) = workspace.oauth_tokens
    assert set(authorizations(workspace)) == {f"Bearer {issued}"}
    agent = token_post.header("user-agent")
    assert agent.startswith("peepshow-sink-databricks/") and agent.endswith(" auth/oauth-m2m")
    written = everything_written(result, spool)
    assert CLIENT_SECRET not in written and issued not in written


def test_a_rejected_client_secret_is_one_line_naming_both_variables(run_sink, workspace, spool):
    result = run_sink(
        "databricks", fixture("run-full.json"), sink_env(workspace, **{**M2M, "DATABRICKS_CLIENT_SECRET": "dose-bad"})
    )
    assert_clean_failure(result, 5, "dose-bad")
    assert "invalid_client" in result.stderr
    assert "DATABRICKS_CLIENT_ID" in result.stderr and "DATABRICKS_CLIENT_SECRET" in result.stderr
    assert [request.path for request in workspace.requests] == ["/oidc/v1/token"]  # asked once, never in a loop
    assert workspace.statements == []
    assert "dose-bad" not in everything_written(result, spool)
    # The destination's failure, not the run's: kept, a flush stops at the first refusal, and it replays once fixed.
    assert len(list((spool / "databricks").glob("*.json"))) == 1
    workspace.requests.clear()
    env = sink_env(workspace, **{**M2M, "DATABRICKS_CLIENT_SECRET": "dose-bad"})
    assert run_sink("databricks", b"", env, args=["--flush"]).code == 5
    assert [request.path for request in workspace.requests] == ["/oidc/v1/token"]
    flushed = run_sink("databricks", b"", sink_env(workspace, **M2M), args=["--flush"])
    assert flushed.code == 0 and "delivered 1" in flushed.stdout, flushed
    assert len(workspace.rows(TABLE)) == 1


def test_a_token_about_to_expire_is_renewed_before_it_is_used_in_a_backfill(run_sink, workspace):
    # Tokens that last 41 s are good for 1 s to the sink (renewed 40 s early); the first statement takes 1.2 s.
    workspace.set_token_lifetime(41)
    workspace.create_table(TABLE, db.COLUMNS)
    workspace.cold_start(seconds=1.2)
    runs = [
        dict(fixture("manifest.json"), outputDir=f"/tmp/run-{number}", runId=f"run-{number}") for number in range(40)
    ]
    stdin = "\n".join(json.dumps(run) for run in runs)
    result = run_sink("databricks", stdin, sink_env(workspace, **M2M))
    assert result.code == 0, result
    assert len(workspace.rows(TABLE)) == 40
    assert len(workspace.token_requests) == 2 and workspace.refused_tokens == []
    first, second = workspace.oauth_tokens
    assert authorizations(workspace)[0] == f"Bearer {first}" and authorizations(workspace)[-1] == f"Bearer {second}"


def test_without_expiry_one_token_serves_the_whole_backfill(run_sink, workspace):
    runs = [
        dict(fixture("manifest.json"), outputDir=f"/tmp/run-{number}", runId=f"run-{number}") for number in range(40)
    ]
    result = run_sink("databricks", "\n".join(json.dumps(run) for run in runs), sink_env(workspace, **M2M))
    assert result.code == 0, result
    assert len(workspace.token_requests) == 1 and len(statements(workspace)) == 4  # MERGE, CREATE, MERGE, MERGE


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_oauth_token_is_renewed_and_the_request_sent_once_more(run_sink, workspace, status):
    workspace.create_table(TABLE, db.COLUMNS)
    body = {"error_code": status, "message": "Invalid access token."}
    workspace.fault("status", status=status, body=body, path=STATEMENTS)
    result = run_sink("databricks", fixture("run-full.json"), sink_env(workspace, **M2M))
    assert (result.code, result.stderr) == (0, ""), result
    assert len(workspace.token_requests) == 2
    assert len(authorizations(workspace)) == 2 and len(set(authorizations(workspace))) == 2
    assert len(workspace.rows(TABLE)) == 1


def test_a_token_refused_twice_is_not_tried_a_third_time(run_sink, workspace):
    workspace.create_table(TABLE, db.COLUMNS)
    body = {"error_code": 403, "message": "Invalid access token."}
    workspace.fault("status", times=None, status=403, body=body, path=STATEMENTS)
    result = run_sink("databricks", fixture("run-full.json"), sink_env(workspace, **M2M))
    assert_clean_failure(result, 5, CLIENT_SECRET)
    assert "a new one too" in result.stderr and "DATABRICKS_CLIENT_ID" in result.stderr
    assert len(workspace.token_requests) == 2 and len(authorizations(workspace)) == 2


def test_a_token_that_expires_mid_backfill_is_renewed(run_sink, workspace):
    # The workspace expires the token while the first statement waits for a cold warehouse: the next request is
    # refused (403, as Databricks answers an expired token), the sink gets a new token and goes on.
    workspace.create_table(TABLE, db.COLUMNS)
    result = backfill_while_the_token_expires(run_sink, workspace, sink_env(workspace, **M2M))
    assert result.code == 0, result
    assert len(workspace.rows(TABLE)) == 30
    assert len(workspace.token_requests) == 2 and len(workspace.refused_tokens) == 1


def test_the_token_endpoint_is_discovered_when_it_moved(run_sink, workspace):
    workspace.move_token_endpoint("/oidc/v2/token")
    result = run_sink("databricks", fixture("run-full.json"), sink_env(workspace, **M2M))
    assert result.code == 0, result
    paths = [request.path for request in workspace.requests if request.path.startswith("/oidc/")]
    assert paths == ["/oidc/v1/token", "/oidc/.well-known/oauth-authorization-server", "/oidc/v2/token"]


def test_m2m_check_says_method_and_verifies_a_token_can_be_had(run_sink, workspace):
    result = run_sink("databricks", b"", sink_env(workspace, **M2M), args=["--check"])
    assert result.code == 0, result
    assert f"ok    auth: oauth-m2m (service principal {CLIENT_ID}" in result.stdout
    assert "ok    credential: the workspace's token endpoint gave a token" in result.stdout
    assert workspace.statements == [] and CLIENT_SECRET not in result.stdout + result.stderr
    bad = run_sink(
        "databricks", b"", sink_env(workspace, **{**M2M, "DATABRICKS_CLIENT_SECRET": "dose-bad"}), args=["--check"]
    )
    assert bad.code == 5 and "FAIL  credential: " in bad.stdout and "invalid_client" in bad.stdout
    assert "DATABRICKS_CLIENT_SECRET" in bad.stderr.strip().splitlines()[-1]


def test_dry_run_fetches_no_token_and_shows_no_secret(run_sink, workspace):
    result = run_sink("databricks", fixture("run-full.json"), sink_env(workspace, **M2M), args=["--dry-run"])
    assert result.code == 0, result
    assert result.stdout.startswith("# databricks: oauth-m2m (service principal "), result
    assert "Authorization: Bearer <oauth-m2m token, added when sent>" in result.stdout
    assert "User-Agent: peepshow-sink-databricks/" in result.stdout and "MERGE INTO" in result.stdout
    assert workspace.requests == [] and CLIENT_SECRET not in result.stdout


def test_a_spooled_m2m_run_holds_no_secret_and_no_token(run_sink, workspace, spool):
    busy = {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "busy"}
    workspace.fault("status", times=None, status=503, body=busy, path=STATEMENTS)
    result = run_sink("databricks", fixture("run-full.json"), sink_env(workspace, **M2M, PEEPSHOW_SINK_TIMEOUT="2"))
    assert result.code == 5, result
    assert list((spool / "databricks").glob("*.json"))
    written = everything_written(result, spool)
    assert CLIENT_SECRET not in written
    assert not any(token in written for token in workspace.oauth_tokens)


# -- U2M through the Databricks CLI ---------------------------------------------------------------------------------


def u2m_env(workspace, fake_cli, home, **overrides):
    home(f"[dev]\nhost = {workspace.url}\nauth_type = databricks-cli\nwarehouse_id = wh-1\n")
    env = {"DATABRICKS_CONFIG_PROFILE": "dev", "PATH": f"{fake_cli.folder}{os.pathsep}{os.environ['PATH']}"}
    return {**env, **overrides}


def test_u2m_profile_delivers_with_the_cli_token(run_sink, workspace, fake_cli, home, spool):
    login = workspace.issue_token()
    fake_cli.answer(login, {"expiry": rfc3339(3600, -5)})  # a negative offset: read as local time, it is past
    result = run_sink("databricks", fixture("run-full.json"), u2m_env(workspace, fake_cli, home), args=["--check"])
    assert result.code == 0, result
    assert "ok    auth: databricks-cli (OAuth U2M: `" in result.stdout and "profile [dev] of" in result.stdout
    assert "ok    credential: the Databricks CLI gave a token" in result.stdout
    # Two reads (warehouse, table) and one run of the CLI: the expiry was read with its offset.
    assert fake_cli.calls() == [["auth", "token", "--profile", "dev"]]
    result = run_sink("databricks", fixture("run-full.json"), u2m_env(workspace, fake_cli, home))
    assert result.code == 0, result
    assert set(authorizations(workspace)) == {f"Bearer {login}"}
    assert all(request.header("user-agent").endswith(" auth/databricks-cli") for request in workspace.requests)
    assert login not in everything_written(result, spool)


def test_u2m_token_near_its_expiry_is_asked_for_again(run_sink, workspace, fake_cli, home):
    fake_cli.answer(workspace.issue_token(), {"expiry": rfc3339(30, 2)})  # 30 s left: under the 40 s margin
    result = run_sink("databricks", b"", u2m_env(workspace, fake_cli, home), args=["--check"])
    assert result.code == 0, result
    assert len(fake_cli.calls()) >= 3  # a fresh run of the CLI before each request


def test_u2m_cli_failure_is_its_reason_in_one_line(run_sink, workspace, fake_cli, home):
    fake_cli.fail(
        "Warn: [hostmetadata] failed to fetch host metadata, will skip for 1m0s\n"
        "Error: A new access token could not be retrieved because the refresh token is invalid. To reauthenticate, "
        "run the following command:\n  $ databricks auth login --profile dev\n"
    )
    result = run_sink("databricks", fixture("run-full.json"), u2m_env(workspace, fake_cli, home))
    assert_clean_failure(result, 5)
    assert "refresh token is invalid" in result.stderr and "Warn:" not in result.stderr
    assert "databricks auth login --profile dev" in result.stderr
    assert workspace.requests == []
    assert "kept" in result.stderr  # logged out is the destination's problem: the run waits for the login


def test_u2m_without_the_cli_says_how_to_install_it(run_sink, workspace, fake_cli, home):
    env = u2m_env(workspace, fake_cli, home, PATH="/usr/bin:/bin")
    result = run_sink("databricks", fixture("run-full.json"), env)
    assert_clean_failure(result, 2)
    assert "Databricks CLI is not installed" in result.stderr and "install" in result.stderr
    assert "DATABRICKS_TOKEN" in result.stderr and workspace.requests == []


def test_implicit_u2m_through_the_host(run_sink, workspace, fake_cli):
    fake_cli.answer(workspace.issue_token(), {"expiry": rfc3339(3600, 0)})
    env = sink_env(workspace, PATH=f"{fake_cli.folder}{os.pathsep}{os.environ['PATH']}")
    result = run_sink("databricks", fixture("run-full.json"), env)
    assert result.code == 0, result
    assert fake_cli.calls() == [["auth", "token", "--host", workspace.url]]


def test_implicit_u2m_without_a_login_lists_the_ways_in(run_sink, workspace, fake_cli):
    fake_cli.fail(
        "Error: cache: databricks OAuth is not configured for this host. no cached credentials; run "
        "`databricks auth login` to sign in\n"
    )
    env = sink_env(workspace, PATH=f"{fake_cli.folder}{os.pathsep}{os.environ['PATH']}")
    result = run_sink("databricks", fixture("run-full.json"), env)
    assert_clean_failure(result, 5)
    assert "no credential for" in result.stderr and "DATABRICKS_TOKEN" in result.stderr


# -- profiles and ambiguity through the zipapp ----------------------------------------------------------------------


def test_a_default_profile_alone_configures_the_sink(run_sink, workspace, home):
    home(f"[DEFAULT]\nhost = {workspace.url}/\ntoken = {TOKEN}\nwarehouse_id = /sql/1.0/warehouses/wh-1\n")
    result = run_sink("databricks", fixture("run-full.json"), {})
    assert result.code == 0, result
    assert len(workspace.rows(TABLE)) == 1
    check = run_sink("databricks", b"", {}, args=["--check"])
    assert "ok    auth: pat (personal access token from token in [DEFAULT] of ~/.databrickscfg)" in check.stdout


def test_help_says_which_way_in_this_environment_resolves_to(run_sink, workspace, home):
    home(f"[sp]\nhost = {workspace.url}\nclient_id = {CLIENT_ID}\nclient_secret = {CLIENT_SECRET}\nwarehouse_id = w\n")
    result = run_sink("databricks", b"", {"DATABRICKS_CONFIG_PROFILE": "sp"}, args=["--help"])
    assert result.code == 0, result
    assert f"This environment: oauth-m2m (service principal {CLIENT_ID}" in result.stdout
    assert "profile [sp] of ~/.databrickscfg" in result.stdout
    assert CLIENT_SECRET not in result.stdout and workspace.requests == []
    unset = run_sink("databricks", b"", {}, args=["--help"])
    assert "This environment: not configured yet (DATABRICKS_HOST is not set" in unset.stdout


def test_ambiguity_exits_2_before_any_request(run_sink, workspace):
    result = run_sink("databricks", fixture("run-full.json"), sink_env(workspace, DATABRICKS_TOKEN=TOKEN, **M2M))
    assert_clean_failure(result, 2, CLIENT_SECRET, TOKEN)
    assert "more than one authorization method configured: oauth and pat" in result.stderr
    assert "DATABRICKS_AUTH_TYPE" in result.stderr and workspace.requests == []
    picked = run_sink(
        "databricks",
        fixture("run-full.json"),
        sink_env(workspace, DATABRICKS_TOKEN=TOKEN, DATABRICKS_AUTH_TYPE="pat", **M2M),
    )
    assert picked.code == 0, picked
    assert workspace.token_requests == []


# -- one statement per steady-state run -------------------------------------------------------------------------------


def test_a_steady_state_run_is_one_statement(run_sink, workspace):
    env = sink_env(workspace, DATABRICKS_TOKEN=TOKEN)
    assert run_sink("databricks", fixture_bytes("run-full.json"), env).code == 0
    assert statements(workspace) == ["MERGE", "CREATE", "MERGE"]  # the very first run creates the table
    workspace.requests.clear()
    workspace.statements.clear()
    assert run_sink("databricks", fixture_bytes("run-minimal.json"), env).code == 0
    assert statements(workspace) == ["MERGE"]
    assert [(request.method, request.path) for request in workspace.requests] == [("POST", STATEMENTS)]


def test_a_table_dropped_between_runs_costs_one_round_and_no_run(run_sink, workspace, spool):
    env = sink_env(workspace, DATABRICKS_TOKEN=TOKEN)
    assert run_sink("databricks", fixture_bytes("run-full.json"), env).code == 0
    workspace.drop_table(TABLE)
    workspace.statements.clear()
    result = run_sink("databricks", fixture_bytes("run-minimal.json"), env)
    assert (result.code, result.stderr) == (0, ""), result
    assert statements(workspace) == ["MERGE", "CREATE", "MERGE"]
    assert [row["run_id"] for row in workspace.rows(TABLE)] == ["peepshow-abc"]
    assert not list((spool / "databricks").glob("*.json"))


def test_a_table_that_cannot_be_created_names_the_table(run_sink, workspace):
    env = sink_env(workspace, DATABRICKS_TOKEN=TOKEN, DATABRICKS_SCHEMA="nope")
    result = run_sink("databricks", fixture_bytes("run-full.json"), env)
    assert_clean_failure(result, 5, TOKEN)
    assert "main.nope.peepshow_runs does not exist, and creating it failed" in result.stderr
    assert "SCHEMA_NOT_FOUND" in result.stderr
    assert statements(workspace) == ["MERGE", "CREATE"]  # created at most once, never in a loop


def test_the_table_is_created_at_most_once_per_invocation(workspace):
    # write() in process, against the emulator: one invocation, two MERGEs, the table dropped in between.
    config = resolve(sink_env(workspace, DATABRICKS_TOKEN=TOKEN))
    ctx = db.sink.Invocation("databricks", {}, 10.0, session=db.Session(config))
    ctx.http = db.sink.http_client({})
    first, second = (db.build_requests([row], config)[0] for row in (run_row("run-1"), run_row("run-2")))
    db.write(first, config, ctx)
    assert statements(workspace) == ["MERGE", "CREATE", "MERGE"]
    workspace.drop_table(TABLE)
    with pytest.raises(SinkError) as caught:
        db.write(second, config, ctx)
    assert caught.value.kind == db.sink.MISSING_TABLE and not caught.value.refused
    assert statements(workspace) == ["MERGE", "CREATE", "MERGE", "MERGE"]


def run_row(run_id):
    return db.sink.derive({"outputDir": f"/tmp/{run_id}", "createdAt": "2026-11-20T09:14:03.123Z"}, {})
