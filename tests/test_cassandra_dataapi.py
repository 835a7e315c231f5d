"""cassandra over the Data API, run as users run it (the built zipapp against the Data API emulator), plus the
pure pieces: which API a configuration resolves to, the request bodies, the per-row results."""

import json

import pytest

from tests.conftest import (
    FIXTURE_NAMES,
    assert_clean_failure,
    assert_delivered_as_predicted,
    fixture,
    fixture_bytes,
    load_script,
    self_signed_certificate,
)
from tests.emulators.dataapi import DataAPI
from tests.emulators.stargate import PEEPSHOW_SCHEMA
from tests.proxy import Proxy

TOKEN = "AstraCS:test-token"
ASTRA = "https://0f3a6c1e-9b7d-4e2a-8c55-1d2e3f4a5b6c-us-east1.apps.astra.datastax.com"
COLUMNS = dict(PEEPSHOW_SCHEMA["columns"])  # SPEC §4's table, as the Stargate tests know it

cassandra = load_script("cassandra")
sink = cassandra.sink


@pytest.fixture
def env(dataapi):
    return {"CASSANDRA_URL": dataapi.url + "/api/json/v1", "CASSANDRA_KEYSPACE": "peepshow", "CASSANDRA_TOKEN": TOKEN}


@pytest.fixture
def table(dataapi):
    dataapi.add_table("peepshow", "peepshow_runs", COLUMNS)
    return dataapi


def stored(emulator, name="peepshow_runs"):
    return emulator.rows("peepshow", name)


def commands(emulator):
    return [command for _, _, command in emulator.commands]


def run_titled(title, number):
    run = fixture("run-minimal.json")
    run["outputDir"] = f"/tmp/peepshow-data-{number}"
    run["video"]["tags"] = {"title": title}
    return run


def backfill(runs):
    return "\n".join(json.dumps(run) for run in runs)


# -- Astra, as the portal shows it ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def astra_certificate(tmp_path_factory):
    """A certificate for *.apps.astra.datastax.com, the name the sink verifies, made by the `openssl` CLI."""
    directory = tmp_path_factory.mktemp("astra-tls")
    return self_signed_certificate(directory, "apps.astra.datastax.com", ["DNS:*.apps.astra.datastax.com"])


@pytest.fixture(scope="module")
def astra_server(astra_certificate):
    emulator = DataAPI().start(tls=astra_certificate)
    yield emulator
    emulator.stop()


class AstraRoute(Proxy):
    """A proxy whose tunnels all lead to the TLS emulator: the sink talks to "Astra" by its real name."""

    def __init__(self, port):
        super().__init__()
        self.target_port = port

    def _connect(self, handler, host, port):
        return super()._connect(handler, "127.0.0.1", self.target_port)


@pytest.fixture
def astra(astra_server, astra_certificate):
    astra_server.reset()
    with AstraRoute(astra_server.port) as route:
        env = {
            "CASSANDRA_URL": ASTRA,
            "CASSANDRA_KEYSPACE": "peepshow",
            "CASSANDRA_TOKEN": TOKEN,
            "HTTPS_PROXY": route.url,
            "SSL_CERT_FILE": astra_certificate[0],
        }
        yield astra_server, env, route


def test_astra_endpoint_as_the_portal_shows_it(run_sink, astra):
    emulator, env, route = astra
    result = run_sink("cassandra", fixture_bytes("run-full.json"), env)
    assert result.code == 0, result
    assert result.stdout == "" and result.stderr == ""
    assert [line.split()[1] for line in route.seen] == [ASTRA.removeprefix("https://") + ":443"]
    # First delivery: the insert finds no table, the sink creates it and inserts again.
    assert commands(emulator) == ["insertOne", "createTable", "insertOne"]
    assert [request.path for request in emulator.requests] == [
        "/api/json/v1/peepshow/peepshow_runs",
        "/api/json/v1/peepshow",
        "/api/json/v1/peepshow/peepshow_runs",
    ]
    assert all(request.header("Token") == TOKEN for request in emulator.requests)
    assert emulator.table("peepshow", "peepshow_runs").columns == COLUMNS
    assert emulator.table("peepshow", "peepshow_runs").primary_key == ["run_id"]
    (row,) = stored(emulator)
    assert row["run_id"] == "peepshow-7f3kq2"


def test_the_seeds_api_rest_url_on_astra_uses_the_data_api(run_sink, astra):
    emulator, env, _ = astra
    env = dict(env, CASSANDRA_URL=ASTRA + "/api/rest")
    check = run_sink("cassandra", env=env, args=["--check"])
    assert check.code == 0, check
    assert "Astra no longer serves Stargate's REST API at /api/rest: using its Data API" in check.stdout
    result = run_sink("cassandra", fixture_bytes("run-full.json"), env)
    assert result.code == 0, result
    assert all(request.path.startswith("/api/json/v1/peepshow") for request in emulator.requests)
    assert len(stored(emulator)) == 1


@pytest.mark.parametrize(
    ("path", "env"),
    [
        ("/api/rest/v2", {}),
        ("/api/rest/v2/keyspaces/peepshow", {"CASSANDRA_KEYSPACE": None}),
        ("/api/json/v1/peepshow", {"CASSANDRA_KEYSPACE": None}),
        ("/api/json/v1/peepshow/peepshow_runs/", {}),
    ],
)
def test_astra_urls_as_the_docs_print_them(run_sink, astra, path, env):
    """Astra's URLs in every form its docs printed (the Data API's, and the old REST ones) reach its Data API."""
    emulator, astra_env, _ = astra
    emulator.add_table("peepshow", "peepshow_runs", COLUMNS)
    result = run_sink("cassandra", fixture_bytes("run-full.json"), dict(astra_env, CASSANDRA_URL=ASTRA + path, **env))
    assert (result.code, result.stderr) == (0, ""), result
    assert [request.path for request in emulator.requests] == ["/api/json/v1/peepshow/peepshow_runs"]
    assert len(stored(emulator)) == 1


# -- self-hosted ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hosted_server():
    emulator = DataAPI(astra=False, users={"peepshow": "pw-s3cret"}).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def hosted(hosted_server):
    hosted_server.reset()
    hosted_server.add_table("peepshow", "peepshow_runs", COLUMNS)
    return hosted_server


@pytest.mark.parametrize("path", ["", "/v1", "/v1/"])
def test_self_hosted_data_api_with_cassandra_credentials(run_sink, hosted, path):
    env = {
        "CASSANDRA_API": "data",
        "CASSANDRA_URL": hosted.url + path,
        "CASSANDRA_KEYSPACE": "peepshow",
        "CASSANDRA_USERNAME": "peepshow",
        "CASSANDRA_PASSWORD": "pw-s3cret",
    }
    result = run_sink("cassandra", fixture_bytes("run-full.json"), env)
    assert result.code == 0, result
    (request,) = hosted.requests
    assert request.path == "/v1/peepshow/peepshow_runs"
    assert request.header("Token") == "Cassandra:cGVlcHNob3c=:cHctczNjcmV0"
    assert len(stored(hosted)) == 1


def test_self_hosted_wrong_password_names_the_variables(run_sink, hosted):
    env = {
        "CASSANDRA_API": "data",
        "CASSANDRA_URL": hosted.url,
        "CASSANDRA_KEYSPACE": "peepshow",
        "CASSANDRA_USERNAME": "peepshow",
        "CASSANDRA_PASSWORD": "wrong-pw-1",
    }
    result = run_sink("cassandra", fixture_bytes("run-full.json"), env)
    assert_clean_failure(result, 5, "wrong-pw-1", "d3JvbmctcHctMQ")
    assert "CASSANDRA_USERNAME and CASSANDRA_PASSWORD" in result.stderr


# -- delivery -------------------------------------------------------------------------------------------------------


def test_steady_state_single_run_is_one_request(run_sink, table, env):
    result = run_sink("cassandra", fixture_bytes("run-full.json"), env)
    assert result.code == 0, result
    (request,) = table.requests
    assert request.method == "POST" and request.path == "/api/json/v1/peepshow/peepshow_runs"
    assert list(request.json()) == ["insertOne"]
    assert request.header("Content-Type") == "application/json"


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_every_fixture_is_one_row_with_plain_values(run_sink, table, env, name):
    result = run_sink("cassandra", fixture_bytes(name), env)
    assert result.code == 0, result
    (row,) = stored(table)
    payload = fixture(name)
    assert row["run_id"] == payload["outputDir"].replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    assert row["frames"] == len(payload["frames"])
    assert row["transcript"] == payload.get("audio", {}).get("transcript", {}).get("text")
    assert json.loads(row["tags"]) == payload["video"].get("tags", {})
    document = table.requests[0].json()["insertOne"]["document"]
    assert None not in document.values()  # unknown values are left out: null would write a tombstone
    assert isinstance(document["frames"], int) and isinstance(document["duration"], float)
    assert document["created_at"].endswith("Z") and len(document["created_at"]) == len("2026-11-20T09:14:03.123Z")


@pytest.mark.parametrize("title", ["'Quoted'", "it's", " 'padded' "])
def test_text_is_sent_as_is(run_sink, table, env, title):
    assert run_sink("cassandra", run_titled(title, 1), env).code == 0
    assert stored(table)[0]["title"] == title
    assert table.requests[0].json()["insertOne"]["document"]["title"] == title


def test_backfill_goes_in_insert_many_chunks_of_at_most_100(run_sink, table, env):
    runs = [run_titled(f"run {number}", number) for number in range(230)]
    result = run_sink("cassandra", backfill(runs), env)
    assert result.code == 0, result
    assert len(stored(table)) == 230
    sizes = []
    for request in table.requests:
        (command,) = request.json()
        assert command == "insertMany"
        assert request.json()["insertMany"]["options"] == {"ordered": False, "returnDocumentResponses": True}
        sizes.append(len(request.json()["insertMany"]["documents"]))
    assert sum(sizes) == 230 and max(sizes) <= 100


def test_backfill_with_a_refused_row_in_the_middle(run_sink, dataapi, env, spool):
    # A table made by hand with an ascii title: only the run titled "Café" has a value the table refuses.
    dataapi.add_table("peepshow", "peepshow_runs", dict(COLUMNS, title="ascii"))
    titles = [f"run {number}" for number in range(7)]
    titles[3] = "Café"
    result = run_sink("cassandra", backfill(run_titled(title, number) for number, title in enumerate(titles)), env)
    assert result.code == 5, result
    refused = [line for line in result.stderr.splitlines() if line.startswith("cassandra: run ")]
    assert len(refused) == 1 and "peepshow-data-3" in refused[0] and "INVALID_COLUMN_VALUES" in refused[0]
    assert "invalid values: title(ascii) - Cause: String contains non-ASCII character" in refused[0]
    assert sorted(row["title"] for row in stored(dataapi)) == sorted(t for t in titles if t != "Café")
    assert not list((spool / "cassandra").glob("*.json"))  # refused for good, not kept for a replay
    assert TOKEN not in result.stderr


def test_a_missing_table_is_created_once_for_a_whole_backfill(run_sink, dataapi, env):
    runs = [run_titled(f"run {number}", number) for number in range(250)]
    result = run_sink("cassandra", backfill(runs), env)
    assert result.code == 0, result
    assert commands(dataapi).count("createTable") == 1
    assert len(stored(dataapi)) == 250


def test_replay_writes_the_same_row(run_sink, table, env):
    # The record of delivered runs spares the second write; without it (no spool) the upsert absorbs it.
    for spool in ("on", "on", "off"):
        assert run_sink("cassandra", fixture_bytes("manifest.json"), dict(env, PEEPSHOW_SINK_SPOOL=spool)).code == 0
    assert len(stored(table)) == 1 and table.writes == 2


# -- failures -------------------------------------------------------------------------------------------------------


def test_wrong_token_names_cassandra_token(run_sink, table, env):
    result = run_sink("cassandra", fixture_bytes("run-full.json"), dict(env, CASSANDRA_TOKEN="AstraCS:wrong-token"))
    assert_clean_failure(result, 5, "AstraCS:wrong-token")
    assert "HTTP 401 UNAUTHENTICATED_REQUEST" in result.stderr and "CASSANDRA_TOKEN" in result.stderr
    assert len(table.requests) == 1


def test_a_token_that_may_not_write(run_sink, table, env):
    table.read_only.add(TOKEN)
    result = run_sink("cassandra", fixture_bytes("run-full.json"), env)
    assert_clean_failure(result, 5, TOKEN)
    assert "UNAUTHORIZED_ACCESS" in result.stderr and "peepshow.peepshow_runs" in result.stderr


def test_no_token_is_a_configuration_error(run_sink, env):
    result = run_sink("cassandra", fixture_bytes("run-full.json"), dict(env, CASSANDRA_TOKEN=None))
    assert_clean_failure(result, 2)
    assert "CASSANDRA_TOKEN is not set" in result.stderr


def test_unknown_keyspace_says_what_it_means_on_astra(run_sink, table, env):
    result = run_sink("cassandra", fixture_bytes("run-full.json"), dict(env, CASSANDRA_KEYSPACE="Nope"))
    assert_clean_failure(result, 5, TOKEN)
    assert "keyspace Nope does not exist (UNKNOWN_KEYSPACE)" in result.stderr
    assert "no access to Nope: check CASSANDRA_TOKEN" in result.stderr


def test_a_token_without_access_to_the_keyspace(run_sink, table, env):
    table.keyspace_access[TOKEN] = {"elsewhere"}
    result = run_sink("cassandra", fixture_bytes("run-full.json"), env)
    assert_clean_failure(result, 5, TOKEN)
    assert "UNKNOWN_KEYSPACE" in result.stderr and "CASSANDRA_TOKEN" in result.stderr


@pytest.mark.parametrize("code", ["TIMEOUT_WRITING_DATA", "UNAVAILABLE_DATABASE"])
def test_server_errors_at_http_200_are_retried(run_sink, table, env, code):
    table.command_error(code, times=2)
    result = run_sink("cassandra", fixture_bytes("run-full.json"), env)
    assert result.code == 0, result
    assert len(table.requests) == 3 and len(stored(table)) == 1


def test_gateway_errors_and_dropped_connections_are_retried(run_sink, table, env):
    table.fault("status", status=503, body="<html>Service Unavailable</html>")
    table.fault("drop")
    result = run_sink("cassandra", fixture_bytes("run-full.json"), env)
    assert result.code == 0, result
    assert len(stored(table)) == 1


def test_server_errors_are_kept_then_replayed_exactly_once(run_sink, table, env, spool):
    table.command_error("TIMEOUT_WRITING_DATA", times=None)
    result = run_sink("cassandra", fixture_bytes("manifest.json"), dict(env, PEEPSHOW_SINK_TIMEOUT="2"))
    assert_clean_failure(result, 5, TOKEN)
    assert "TIMEOUT_WRITING_DATA" in result.stderr and "kept" in result.stderr
    assert len(list((spool / "cassandra").glob("*.json"))) == 1
    table.reset()
    table.add_table("peepshow", "peepshow_runs", COLUMNS)
    flushed = run_sink("cassandra", env=env, args=["--flush"])
    assert flushed.code == 0, flushed
    assert "delivered 1" in flushed.stdout
    assert len(stored(table)) == 1 and table.writes == 1
    again = run_sink("cassandra", env=env, args=["--flush"])
    assert again.code == 0 and table.writes == 1


def test_pre_2026_servers(run_sink, dataapi, env):
    dataapi.legacy = True
    dataapi.command_error("TIMEOUT_WRITING_DATA", times=1, command="createTable")  # 504 SERVER_DRIVER_TIMEOUT
    result = run_sink("cassandra", fixture_bytes("run-full.json"), env)
    assert result.code == 0, result
    assert commands(dataapi) == ["insertOne", "createTable", "createTable", "insertOne"]
    assert len(stored(dataapi)) == 1


def test_a_wrong_path_is_not_mistaken_for_success(run_sink, table, env):
    result = run_sink("cassandra", fixture_bytes("run-full.json"), dict(env, CASSANDRA_URL=table.url + "/api/json"))
    assert result.code == 0, result  # …/api/json gains its /v1
    wrong = dict(env, CASSANDRA_API="data", CASSANDRA_URL=table.url + "/data")
    result = run_sink("cassandra", fixture_bytes("run-minimal.json"), wrong)
    assert_clean_failure(result, 5, TOKEN)
    assert "HTTP 404" in result.stderr and "CASSANDRA_URL" in result.stderr


# -- --dry-run, --check, --print-schema, --help --------------------------------------------------------------------


def test_dry_run_shows_the_data_api_request(run_sink, dataapi, env):
    result = run_sink("cassandra", fixture_bytes("run-full.json"), env, args=["--dry-run"])
    assert result.code == 0, result
    assert result.stdout.startswith(f"# cassandra: the Data API at {dataapi.url}/api/json/v1 ("), result
    assert f"POST {dataapi.url}/api/json/v1/peepshow/peepshow_runs" in result.stdout
    assert "Token: ***" in result.stdout and TOKEN not in result.stdout
    assert '{"insertOne":{"document":{"run_id":"peepshow-7f3kq2"' in result.stdout
    assert dataapi.requests == []


def test_check_reports_a_missing_table_as_to_be_created(run_sink, dataapi, env):
    result = run_sink("cassandra", env=env, args=["--check"])
    assert result.code == 0, result
    assert "the Data API at" in result.stdout
    assert "does not exist yet: it will be created on first delivery" in result.stdout
    assert commands(dataapi) == ["listTables"] and dataapi.writes == 0


def test_check_names_a_column_of_the_wrong_type(run_sink, dataapi, env):
    dataapi.add_table("peepshow", "peepshow_runs", dict(COLUMNS, frames="int"))
    result = run_sink("cassandra", env=env, args=["--check"])
    assert result.code == 5, result
    assert "FAIL  column frames is int, the sink writes bigint" in result.stdout
    assert "column frames is int" in result.stderr.strip().splitlines()[-1]
    assert commands(dataapi) == ["listTables"] and dataapi.writes == 0


def test_check_ok_and_missing_columns(run_sink, dataapi, env):
    dataapi.add_table("peepshow", "peepshow_runs", COLUMNS)
    assert "ok    schema: all 9 columns" in run_sink("cassandra", env=env, args=["--check"]).stdout
    dataapi.reset()
    dataapi.add_table("peepshow", "peepshow_runs", {"run_id": "text", "title": "text", "created_at": "timestamp"})
    result = run_sink("cassandra", env=env, args=["--check"])
    assert result.code == 5
    missing = [line for line in result.stdout.splitlines() if line.startswith("FAIL  column ")]
    assert [line.split(":")[0] for line in missing] == [
        f"FAIL  column {name} is missing"
        for name in ("frames", "duration", "transcript", "thumbnail_url", "strategy", "tags")
    ]
    assert missing[0].startswith(
        "FAIL  column frames is missing: every run is refused (UNKNOWN_TABLE_COLUMNS); fix: POST"
    )
    assert missing[0].endswith('{"alterTable":{"operation":{"add":{"columns":{"frames":"bigint"}}}}}')
    assert "a run with a transcript is refused" in missing[2]


# Tables made by hand: their columns ({name: type}, None leaves one out), the FAIL line --check writes (None: none),
# and what delivering run-full.json and run-minimal.json (no transcript, no tags) meets: the Data API's error code,
# or None when the row is stored. --check fails exactly when a delivery would be refused or altered.
HAND_MADE = {
    "tags a map": (
        {"tags": "map<text,text>"},
        "column tags is map<text, text>, the sink writes text: every run is refused (INVALID_COLUMN_VALUES); fix: "
        "Cassandra cannot change a column's type",
        {"run-full.json": "INVALID_COLUMN_VALUES", "run-minimal.json": "INVALID_COLUMN_VALUES"},
    ),
    "created_at a date": (
        {"created_at": "date"},
        "column created_at is date, the sink writes timestamp: every run is refused (INVALID_COLUMN_VALUES)",
        {"run-full.json": "INVALID_COLUMN_VALUES", "run-minimal.json": "INVALID_COLUMN_VALUES"},
    ),
    "title an int": (
        {"title": "int"},
        "column title is int, the sink writes text: every run is refused (INVALID_COLUMN_VALUES)",
        {"run-minimal.json": "INVALID_COLUMN_VALUES"},
    ),
    "no transcript column": (
        {"transcript": None},
        "column transcript is missing: a run with a transcript is refused (UNKNOWN_TABLE_COLUMNS); fix: POST ",
        {"run-full.json": "UNKNOWN_TABLE_COLUMNS", "run-minimal.json": None},
    ),
    "frames an int": (
        {"frames": "int"},
        "column frames is int, the sink writes bigint: a frames past the range of int is refused "
        "(INVALID_COLUMN_VALUES)",
        {"run-full.json": None},
    ),
    "frames a varint, duration a decimal": ({"frames": "varint", "duration": "decimal"}, None, {"run-full.json": None}),
    "an extra column": ({"notes": "text", "labels": "set<text>"}, None, {"run-full.json": None}),
}


@pytest.mark.parametrize("case", HAND_MADE, ids=list(HAND_MADE))
def test_check_predicts_what_delivery_meets_in_a_hand_made_table(run_sink, dataapi, env, case):
    changes, expected, deliveries = HAND_MADE[case]
    columns = {name: kind for name, kind in {**COLUMNS, **changes}.items() if kind is not None}
    dataapi.add_table("peepshow", "peepshow_runs", columns)
    check = run_sink("cassandra", env=env, args=["--check"])
    failures = [line for line in check.stdout.splitlines() if line.startswith("FAIL")]
    if expected is None:
        assert (check.code, failures) == (0, []), check
        assert "ok    schema: all 9 columns" in check.stdout
    else:
        assert check.code == 5 and len(failures) == 1 and failures[0].startswith("FAIL  " + expected), check
        assert check.stderr.strip().splitlines()[-1].startswith("cassandra: " + expected.split(":")[0])
    assert commands(dataapi) == ["listTables"] and dataapi.writes == 0

    delivered = assert_delivered_as_predicted(run_sink, "cassandra", env, deliveries, TOKEN)
    assert len(stored(dataapi)) == delivered


def test_check_with_a_wrong_token(run_sink, dataapi, env):
    result = run_sink("cassandra", env=dict(env, CASSANDRA_TOKEN="AstraCS:nope"), args=["--check"])
    assert result.code == 5 and "FAIL  the Data API refused the credentials" in result.stdout


def test_print_schema_is_the_create_table_command(run_sink, env):
    result = run_sink("cassandra", env=dict(env, CASSANDRA_TABLE="Runs"), args=["--print-schema"])
    assert result.code == 0, result
    command = json.loads(result.stdout)
    assert command == {
        "createTable": {
            "name": "Runs",
            "definition": {"columns": COLUMNS, "primaryKey": "run_id"},
            "options": {"ifNotExists": True},
        }
    }


def test_help_says_which_api(run_sink, env):
    result = run_sink("cassandra", env=env, args=["--help"])
    assert result.code == 0, result
    assert "This environment: the Data API at" in result.stdout
    rest = run_sink("cassandra", env=dict(env, CASSANDRA_URL="http://localhost:8082"), args=["--help"])
    assert "This environment: Stargate's REST API v2 at http://localhost:8082" in rest.stdout


# -- pure pieces ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "api", "base"),
    [
        (ASTRA, "data", ASTRA + "/api/json/v1"),
        (ASTRA + "/", "data", ASTRA + "/api/json/v1"),
        (ASTRA + "/api/rest", "data", ASTRA + "/api/json/v1"),
        (ASTRA + "/api/json", "data", ASTRA + "/api/json/v1"),
        (ASTRA + "/api/json/v1/", "data", ASTRA + "/api/json/v1"),
        ("http://localhost:8181/api/json", "data", "http://localhost:8181/api/json/v1"),
        ("http://localhost:8181/api/json/v1", "data", "http://localhost:8181/api/json/v1"),
        ("http://localhost:8082", "rest", None),
        ("http://localhost:8082/api/rest", "rest", None),
        ("https://stargate.example/v2", "rest", None),
        (ASTRA + "/api/rest/v2", "data", ASTRA + "/api/json/v1"),
        ("https://apps.astra.datastax.com.example", "rest", None),
    ],
)
def test_which_api(url, api, base):
    config = cassandra.read_config({"CASSANDRA_URL": url, "CASSANDRA_KEYSPACE": "ks", "CASSANDRA_TOKEN": TOKEN})
    assert config.api == api
    assert (config.base if config.api == "data" else None) == base
    assert config.url == url.rstrip("/")  # what 0.1.0 spool keys were computed from


@pytest.mark.parametrize(("value", "api"), [("data", "data"), ("REST", "rest")])
def test_cassandra_api_overrides_the_url(value, api):
    env = {"CASSANDRA_URL": "http://localhost:8181", "CASSANDRA_KEYSPACE": "ks", "CASSANDRA_TOKEN": TOKEN}
    config = cassandra.read_config(dict(env, CASSANDRA_API=value))
    assert config.api == api
    if api == "data":
        assert config.base == "http://localhost:8181/v1"


def test_cassandra_api_must_be_data_or_rest():
    env = {"CASSANDRA_URL": "http://localhost:8181", "CASSANDRA_KEYSPACE": "ks", "CASSANDRA_API": "graphql"}
    with pytest.raises(sink.SinkError) as caught:
        cassandra.read_config(env)
    assert caught.value.code == 2 and "CASSANDRA_API" in caught.value.message


def test_destination_is_the_same_for_both_apis():
    env = {"CASSANDRA_KEYSPACE": "ks", "CASSANDRA_TOKEN": TOKEN}
    data = cassandra.read_config(dict(env, CASSANDRA_URL=ASTRA))
    rest = cassandra.read_config(dict(env, CASSANDRA_URL=ASTRA + "/api/rest", CASSANDRA_API="rest"))
    assert cassandra.destination(data)[1] == cassandra.destination(rest)[1]
    assert TOKEN not in repr(cassandra.destination(data))


CONFIG = cassandra.read_config({"CASSANDRA_URL": ASTRA, "CASSANDRA_KEYSPACE": "ks", "CASSANDRA_TOKEN": TOKEN})


def row_for(**changes):
    row = sink.derive(fixture("run-full.json"), {"PEEPSHOW_FRAME_BASE_URL": "https://cdn.example"}, now=0)
    for name, value in changes.items():
        setattr(row, name, value)
    return row


def test_insert_one_body():
    (req,) = cassandra.build_requests([row_for(title="it's")], CONFIG)
    assert req.url == ASTRA + "/api/json/v1/ks/peepshow_runs" and req.rows == [0]
    assert req.headers == {"Content-Type": "application/json", "Accept": "application/json", "Token": TOKEN}
    document = json.loads(req.body)["insertOne"]["document"]
    assert list(document) == [name for name in COLUMNS]
    assert document["title"] == "it's" and document["created_at"] == "1970-01-01T00:00:00.000Z"
    assert document["frames"] == 3 and document["duration"] == 42.0


def test_insert_many_chunks_carry_their_rows():
    rows = [row_for(run_id=f"r{number}") for number in range(205)]
    requests = cassandra.build_requests(rows, CONFIG)
    assert [req.rows[0] for req in requests] == list(range(0, 205, cassandra.DATA_CHUNK_ROWS))
    assert sum(len(req.rows) for req in requests) == 205
    for req in requests:
        body = json.loads(req.body)["insertMany"]
        assert [document["run_id"] for document in body["documents"]] == [f"r{index}" for index in req.rows]


def test_a_huge_row_is_cut_to_fit_a_request():
    hostile = '\x01"' * 1_500_000  # 3 MB of text that JSON escaping grows to 10.5 MB
    (req,) = cassandra.build_requests([row_for(transcript=hostile)], CONFIG)
    assert len(req.body) <= cassandra.DATA_CHUNK_BYTES
    transcript = json.loads(req.body)["insertOne"]["document"]["transcript"]
    assert hostile.startswith(transcript) and len(transcript) > 100_000


@pytest.mark.parametrize("frames", [2**63, -(2**63) - 1])
def test_out_of_range_bigint_is_left_out(frames):
    (req,) = cassandra.build_requests([row_for(frames=frames)], CONFIG)
    assert "frames" not in json.loads(req.body)["insertOne"]["document"]


def test_per_row_results_map_by_position():
    rows = [row_for(run_id=f"r{number}") for number in range(3)]
    (req,) = cassandra.build_requests(rows, CONFIG)
    body = {
        "status": {
            "documentResponses": [
                {"_id": ["r0"], "status": "OK"},
                {"_id": [], "status": "ERROR", "errorsIdx": 1},
                {"_id": [], "status": "ERROR", "errorsIdx": 0},
            ]
        },
        "errors": [
            {"family": "SERVER", "scope": "DATABASE", "errorCode": "TIMEOUT_WRITING_DATA", "message": "slow"},
            {"family": "REQUEST", "scope": "DOCUMENT", "errorCode": "INVALID_COLUMN_VALUES", "message": "bad"},
        ],
    }
    whole, outcomes = cassandra.insert_outcome(CONFIG, req, body)
    assert whole is None and outcomes[0] is None
    assert outcomes[1].refused and "INVALID_COLUMN_VALUES: bad" in outcomes[1].message
    assert outcomes[2].transient and not outcomes[2].refused


@pytest.mark.parametrize(
    ("error", "run", "transient", "words"),
    [
        ({"errorCode": "UNKNOWN_KEYSPACE", "family": "REQUEST", "scope": "SCHEMA"}, False, False, "CASSANDRA_KEYSPACE"),
        ({"errorCode": "KEYSPACE_DOES_NOT_EXIST"}, False, False, "keyspace ks does not exist"),
        ({"errorCode": "NAMESPACE_DOES_NOT_EXIST"}, False, False, "keyspace ks does not exist"),
        ({"errorCode": "UNKNOWN_KEYSPACE", "family": "SERVER", "scope": "DATABASE"}, False, True, "database's side"),
        ({"errorCode": "SERVER_DRIVER_TIMEOUT"}, False, True, "database's side"),
        ({"errorCode": "INVALID_DATABASE_QUERY", "family": "SERVER"}, False, True, "database's side"),
        ({"errorCode": "UNAUTHENTICATED_REQUEST", "scope": "SECURITY"}, False, False, "CASSANDRA_TOKEN"),
        ({"errorCode": "COMMAND_FIELD_INVALID"}, False, False, "refused the insert"),
        ({"errorCode": "MISSING_PRIMARY_KEY_COLUMNS", "scope": "DOCUMENT"}, True, False, "refused the row"),
    ],
)
def test_whose_fault_an_error_is(error, run, transient, words):
    outcome = cassandra.data_error(CONFIG, error)
    assert (outcome.refused, outcome.transient) == (run, transient)
    assert words in outcome.message and "\n" not in outcome.message


def test_a_steady_state_run_imports_only_what_it_needs(run_sink, table, env):
    from tests.test_zipapp import NEVER, imported

    assert run_sink("cassandra", args=["--version"]).code == 0  # the one-off unpacking is not start-up
    result = run_sink(
        "cassandra",
        fixture_bytes("run-full.json"),
        dict(env, PYTHONPROFILEIMPORTTIME="1", COVERAGE_PROCESS_CONFIG=None),
    )
    assert result.code == 0, result
    assert sorted(set(NEVER) & imported(result)) == []
    assert len(stored(table)) == 1
