"""cassandra, run as users run it (the built zipapp against the Stargate emulators), plus its pure builders."""

import datetime
import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import (
    FIXTURE_NAMES,
    assert_clean_failure,
    assert_delivered_as_predicted,
    fixture,
    fixture_bytes,
    load_script,
)
from tests.emulators.stargate import PEEPSHOW_SCHEMA, Stargate, StargateAuth

TOKEN = "AstraCS:test-token"
MILLIS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


cassandra = load_script("cassandra")
sink = cassandra.sink


@pytest.fixture
def env(stargate):
    return {"CASSANDRA_URL": stargate.url, "CASSANDRA_KEYSPACE": "peepshow", "CASSANDRA_TOKEN": TOKEN}


@pytest.fixture(scope="module")
def auth_server(stargate_server):
    auth = StargateAuth(users={"peepshow": "pw-s3cret"}, on_token=stargate_server.add_token).start()
    yield auth
    auth.stop()


@pytest.fixture
def auth(auth_server, stargate):  # `stargate` first: its reset forgets the tokens minted by earlier tests
    auth_server.reset()
    return auth_server


@pytest.fixture
def minting(stargate, auth):
    return {
        "CASSANDRA_URL": stargate.url,
        "CASSANDRA_KEYSPACE": "peepshow",
        "CASSANDRA_USERNAME": "peepshow",
        "CASSANDRA_PASSWORD": "pw-s3cret",
        "CASSANDRA_AUTH_URL": auth.url,
    }


@pytest.fixture(scope="module")
def stargate_v1():
    emulator = Stargate(version=1).start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def stargate_partial():
    """A table created from an older schema, without the frames and transcript columns."""
    columns = [(name, kind) for name, kind in PEEPSHOW_SCHEMA["columns"] if name not in ("frames", "transcript")]
    schema = dict(PEEPSHOW_SCHEMA, columns=columns)
    emulator = Stargate(keyspaces={"peepshow": {"peepshow_runs": schema}}).start()
    yield emulator
    emulator.stop()


def stored(emulator):
    return emulator.rows("peepshow", "peepshow_runs")


def posted(emulator):
    return [request.json() for request in emulator.requests if request.method == "POST"]


def run_with_title(title, directory="/tmp/peepshow-quoted"):
    run = fixture("run-minimal.json")
    run["outputDir"] = directory
    run["video"]["tags"] = {"title": title}
    return run


# -- every fixture is one correct row ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_every_fixture_is_one_row(run_sink, stargate, env, name):
    result = run_sink("cassandra", fixture_bytes(name), env)
    assert result.code == 0, result
    assert result.stdout == "" and result.stderr == ""
    (row,) = stored(stargate)
    payload = fixture(name)
    tags = payload["video"].get("tags", {})
    assert row["run_id"] == payload["outputDir"].replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    assert row["title"] == tags.get("title") or payload.get("input", {}).get("filename") or row["run_id"]
    assert row["frames"] == len(payload["frames"]) and isinstance(row["frames"], int)
    assert isinstance(row["duration"], float)
    assert json.loads(row["tags"]) == tags
    assert row["strategy"] == payload["strategy"]
    assert row["transcript"] == payload.get("audio", {}).get("transcript", {}).get("text")
    assert row["created_at"].tzinfo is not None
    (body,) = posted(stargate)
    assert None not in body.values()  # a null would write a tombstone
    assert MILLIS.fullmatch(body["created_at"])
    assert isinstance(body["frames"], int)


def test_hostile_values_arrive_unchanged(run_sink, stargate, env):
    assert run_sink("cassandra", fixture_bytes("run-hostile.json"), env).code == 0
    (row,) = stored(stargate)
    payload = fixture("run-hostile.json")
    assert row["run_id"] == "peepshow-x'; DROP TABLE peepshow_runs; --"
    assert row["title"] == payload["video"]["tags"]["title"]
    assert row["transcript"] == payload["audio"]["transcript"]["text"]
    assert row["duration"] == 12.5  # a numeric string is a number


def test_manifest_keeps_its_created_at(run_sink, stargate, env):
    assert run_sink("cassandra", fixture_bytes("manifest.json"), env).code == 0
    (row,) = stored(stargate)
    assert row["created_at"] == datetime.datetime(2026, 11, 20, 9, 14, 3, 123000, tzinfo=datetime.timezone.utc)
    assert row["title"] == "checkout-flicker.mov"
    assert row["duration"] == 42.0


def test_unknown_values_are_left_out_not_null(run_sink, stargate, env):
    assert run_sink("cassandra", fixture_bytes("run-minimal.json"), env).code == 0
    (body,) = posted(stargate)
    assert "transcript" not in body and "thumbnail_url" not in body
    assert body["duration"] == 0.0  # tables write 0 for an unknown duration (SPEC §1)
    (row,) = stored(stargate)
    assert row["transcript"] is None and row["thumbnail_url"] is None


@pytest.mark.parametrize("title", ["'Quoted'", "it's", "''", "'", " 'padded' "])
def test_single_quotes_are_stored_as_written(run_sink, stargate, env, title):
    # Stargate strips one pair of surrounding single quotes from every JSON string and un-doubles '' inside.
    assert run_sink("cassandra", run_with_title(title), env).code == 0
    assert stored(stargate)[0]["title"] == title


def test_single_quotes_on_stargate_v1(run_sink, stargate_v1, env):
    stargate_v1.reset()
    env = dict(env, CASSANDRA_URL=stargate_v1.url)
    for number, title in enumerate(["'Quoted'", "it's", " 'padded' "]):
        assert run_sink("cassandra", run_with_title(title, f"/tmp/peepshow-v1-{number}"), env).code == 0
    assert [row["title"] for row in stored(stargate_v1)] == ["'Quoted'", "it's", " 'padded' "]


def test_thumbnail_url(run_sink, stargate, env):
    env = dict(env, PEEPSHOW_FRAME_BASE_URL="https://cdn.example/frames/")
    assert run_sink("cassandra", fixture_bytes("run-hostile.json"), env).code == 0
    assert stored(stargate)[0]["thumbnail_url"] == "https://cdn.example/frames/frame%200001%20%C3%BC%23%3F.jpg"


def test_backfill_sends_every_run(run_sink, stargate, env):
    runs = [run_with_title(f"run {number}", f"/tmp/peepshow-backfill-{number}") for number in range(12)]
    result = run_sink("cassandra", "\n".join(json.dumps(run) for run in runs), env)
    assert result.code == 0, result
    assert sorted(row["title"] for row in stored(stargate)) == sorted(f"run {number}" for number in range(12))


def test_replay_overwrites_the_same_row(run_sink, stargate, env):
    # The record of delivered runs spares the second write; without it (no spool) the upsert absorbs it.
    for spool in ("on", "on", "off"):
        assert run_sink("cassandra", fixture_bytes("manifest.json"), dict(env, PEEPSHOW_SINK_SPOOL=spool)).code == 0
    assert len(stored(stargate)) == 1 and stargate.writes == 2


# -- configuration -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["CASSANDRA_URL", "CASSANDRA_KEYSPACE"])
def test_missing_variable(run_sink, env, missing):
    result = run_sink("cassandra", fixture_bytes("run-full.json"), dict(env, **{missing: ""}))
    assert_clean_failure(result, 2, TOKEN)
    assert missing in result.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CASSANDRA_KEYSPACE", "peep-show"),
        ("CASSANDRA_KEYSPACE", "peepshow.runs"),
        ("CASSANDRA_TABLE", "runs/../x"),
        ("CASSANDRA_TABLE", "t" * 49),
        ("CASSANDRA_TABLE", "tåble"),
        ("CASSANDRA_TABLE", '"Quoted"'),
    ],
)
def test_bad_names(run_sink, stargate, env, variable, value):
    result = run_sink("cassandra", fixture_bytes("run-full.json"), dict(env, **{variable: value}))
    assert_clean_failure(result, 2, TOKEN)
    assert variable in result.stderr
    assert stargate.requests == []


def test_half_the_credentials(run_sink, minting):
    result = run_sink("cassandra", fixture_bytes("run-full.json"), dict(minting, CASSANDRA_PASSWORD=None))
    assert_clean_failure(result, 2)
    assert "CASSANDRA_PASSWORD" in result.stderr


def test_token_over_plain_http_to_a_remote_host(run_sink, env):
    result = run_sink("cassandra", fixture_bytes("run-full.json"), dict(env, CASSANDRA_URL="http://db.example:8082"))
    assert_clean_failure(result, 2, TOKEN)
    assert "https" in result.stderr


# -- failures ----------------------------------------------------------------------------------------------------


def test_missing_table_prints_the_create_table(run_sink, stargate, env, spool):
    result = run_sink("cassandra", fixture_bytes("run-full.json"), dict(env, CASSANDRA_TABLE="runs"))
    assert_clean_failure(result, 5, TOKEN)
    assert "CREATE TABLE peepshow.runs (run_id text PRIMARY KEY, title text, frames bigint" in result.stderr
    assert len(list((spool / "cassandra").glob("*.json"))) == 1  # kept: replayed once the table exists


def test_missing_table_on_stargate_v1(run_sink, stargate_v1, env):
    result = run_sink(
        "cassandra", fixture_bytes("run-full.json"), dict(env, CASSANDRA_URL=stargate_v1.url, CASSANDRA_TABLE="runs")
    )
    assert_clean_failure(result, 5, TOKEN)
    assert "CREATE TABLE peepshow.runs (" in result.stderr


def test_missing_keyspace_is_named(run_sink, stargate_v1, env):
    result = run_sink(
        "cassandra", fixture_bytes("run-full.json"), dict(env, CASSANDRA_URL=stargate_v1.url, CASSANDRA_KEYSPACE="Nope")
    )
    assert_clean_failure(result, 5, TOKEN)
    assert 'CREATE KEYSPACE "Nope"' in result.stderr and 'CREATE TABLE "Nope".peepshow_runs' in result.stderr


def test_wrong_token_gives_the_hint(run_sink, stargate, env):
    result = run_sink("cassandra", fixture_bytes("run-full.json"), dict(env, CASSANDRA_TOKEN="AstraCS:wrong-token"))
    assert_clean_failure(result, 5, "AstraCS:wrong-token")
    assert "set CASSANDRA_TOKEN (Astra: an AstraCS: application token)" in result.stderr
    assert len(stargate.requests) == 1


def test_no_token_gives_the_hint(run_sink, stargate, env):
    result = run_sink("cassandra", fixture_bytes("run-full.json"), dict(env, CASSANDRA_TOKEN=None))
    assert_clean_failure(result, 5)
    assert "token missing, invalid or expired" in result.stderr


def test_502_then_success_is_one_row(run_sink, stargate, env):
    stargate.fault("status", status=502, body="<html>Bad Gateway</html>")
    result = run_sink("cassandra", fixture_bytes("run-full.json"), env)
    assert result.code == 0, result
    assert len(stargate.requests) == 2
    assert len(stored(stargate)) == 1


def test_a_400_about_the_request_keeps_the_run(run_sink, stargate, env, spool):
    stargate.fault(
        "status", status=400, body={"description": "Invalid path for row to create, problem: x", "code": 400}
    )
    result = run_sink("cassandra", fixture_bytes("run-full.json"), env)
    assert_clean_failure(result, 5, TOKEN)
    assert "Invalid path for row to create, problem: x" in result.stderr
    assert "cassandra --check" in result.stderr and "was kept" in result.stderr
    assert len(stargate.requests) == 1
    assert len(list((spool / "cassandra").glob("*.json"))) == 1


def test_a_400_about_a_value_of_a_live_run_keeps_it(run_sink, stargate, env, spool):
    # Nothing else reached the table in this invocation: the table may be at fault as much as the run, so the run
    # is kept (a later replay that follows a delivered run sets it aside if it is refused again).
    problem = (
        "Invalid path for row to create, problem: Failed to deserialize field 'peepshow_runs.frames', problem: "
        "Cannot coerce String value into expected protobuf type: TypeSpec.Basic.LONG"
    )
    stargate.fault("status", status=400, body={"description": problem, "code": 400})
    result = run_sink("cassandra", fixture_bytes("run-full.json"), env)
    assert_clean_failure(result, 5, TOKEN)
    assert "Failed to deserialize field" in result.stderr and "was kept" in result.stderr
    assert len(stargate.requests) == 1
    assert len(list((spool / "cassandra").glob("*.json"))) == 1


def test_a_value_the_table_refuses(run_sink, stargate_partial, env):
    stargate_partial.reset()
    result = run_sink("cassandra", fixture_bytes("run-full.json"), dict(env, CASSANDRA_URL=stargate_partial.url))
    assert_clean_failure(result, 5, TOKEN)
    assert "Unknown field name 'frames'" in result.stderr and "--check" in result.stderr


def test_redirect_is_not_followed(run_sink, stargate, env):
    stargate.fault("status", status=307, headers={"Location": "https://elsewhere.example/api/rest"})
    result = run_sink("cassandra", fixture_bytes("run-full.json"), env)
    assert_clean_failure(result, 5, TOKEN)
    assert "CASSANDRA_URL" in result.stderr and len(stargate.requests) == 1


# -- token minting -------------------------------------------------------------------------------------------------


def test_minting(run_sink, stargate, auth, minting):
    result = run_sink("cassandra", fixture_bytes("run-full.json"), minting)
    assert result.code == 0, result
    assert len(auth.minted) == 1
    assert auth.requests[0].json() == {"username": "peepshow", "password": "pw-s3cret"}
    assert stargate.requests[0].header("X-Cassandra-Token") == auth.minted[0]
    assert len(stored(stargate)) == 1


def test_mints_again_once_on_401(run_sink, stargate, auth, minting):
    auth.expire_next()  # the first token is refused, as an expired one would be
    result = run_sink("cassandra", fixture_bytes("run-full.json"), minting)
    assert result.code == 0, result
    assert len(auth.minted) == 2
    assert len(stored(stargate)) == 1


def test_a_second_401_is_final(run_sink, stargate, auth, minting):
    auth.expire_next(2)
    result = run_sink("cassandra", fixture_bytes("run-full.json"), minting)
    assert_clean_failure(result, 5, "pw-s3cret", *auth.minted)
    assert "freshly minted token" in result.stderr
    assert len(auth.minted) == 2 and len(stargate.requests) == 2


def test_wrong_password(run_sink, stargate, auth, minting):
    result = run_sink("cassandra", fixture_bytes("run-full.json"), dict(minting, CASSANDRA_PASSWORD="wrong-pass"))
    assert_clean_failure(result, 5, "wrong-pass")
    assert "CASSANDRA_PASSWORD" in result.stderr and stargate.requests == []


def test_failed_minting_is_not_repeated_per_run(run_sink, stargate, auth, minting):
    runs = [run_with_title(f"run {number}", f"/tmp/peepshow-refused-{number}") for number in range(6)]
    result = run_sink("cassandra", "".join(json.dumps(run) for run in runs), dict(minting, CASSANDRA_PASSWORD="bad-pw"))
    assert result.code == 5, result
    assert len(auth.requests) == 1 and stargate.requests == []
    assert "bad-pw" not in result.stderr


def test_dry_run_does_not_mint(run_sink, stargate, auth, minting):
    result = run_sink("cassandra", fixture_bytes("run-full.json"), minting, args=["--dry-run"])
    assert result.code == 0, result
    assert "X-Cassandra-Token: <minted at delivery>" in result.stdout
    assert auth.requests == [] and stargate.requests == []


def test_minting_backfill_mints_once(run_sink, stargate, auth, minting):
    runs = [run_with_title(f"run {number}", f"/tmp/peepshow-minted-{number}") for number in range(10)]
    result = run_sink("cassandra", "".join(json.dumps(run) for run in runs), minting)
    assert result.code == 0, result
    assert len(auth.minted) == 1 and len(stored(stargate)) == 10


# -- --dry-run, --check, --print-schema ----------------------------------------------------------------------------


def test_dry_run_redacts_the_token(run_sink, stargate, env):
    result = run_sink("cassandra", fixture_bytes("run-full.json"), env, args=["--dry-run"])
    assert result.code == 0, result
    assert TOKEN not in result.stdout and "X-Cassandra-Token: ***" in result.stdout
    assert result.stdout.startswith(f"# cassandra: Stargate's REST API v2 at {stargate.url} ("), result
    assert f"POST {stargate.url}/v2/keyspaces/peepshow/peepshow_runs" in result.stdout
    assert stargate.requests == []


def test_check_ok(run_sink, stargate, env):
    result = run_sink("cassandra", args=["--check"], env=env)
    assert result.code == 0, result
    assert "FAIL" not in result.stdout and "ok    schema" in result.stdout
    assert "not verified" in result.stdout
    assert [request.method for request in stargate.requests] == ["GET"]


def test_check_ok_on_v1_where_text_is_varchar(run_sink, stargate_v1, env):
    result = run_sink("cassandra", args=["--check"], env=dict(env, CASSANDRA_URL=stargate_v1.url))
    assert result.code == 0, result


def test_check_names_the_fix(run_sink, stargate_partial, env):
    result = run_sink("cassandra", args=["--check"], env=dict(env, CASSANDRA_URL=stargate_partial.url))
    assert result.code == 5, result
    assert (
        "FAIL  column frames is missing: every run is refused (HTTP 400 Unknown field name); fix: ALTER TABLE "
        "peepshow.peepshow_runs ADD frames bigint;\n"
    ) in result.stdout
    assert (
        "FAIL  column transcript is missing: a run with a transcript is refused (HTTP 400 Unknown field name); fix: "
        "ALTER TABLE peepshow.peepshow_runs ADD transcript text;\n"
    ) in result.stdout


# Tables made by hand (cqlsh): their changed columns, the FAIL line --check writes (None: none), and what delivering
# run-full.json and run-minimal.json (no transcript, no tags) meets: Stargate's words, or None when stored.
HAND_MADE = {
    "tags a map": (
        {"tags": "map<text, text>"},
        "column tags is map<text, text>, the sink writes text: a run whose tags does not read as a CQL map<text, "
        "text> literal is refused (HTTP 400 Failed to deserialize field); fix: Cassandra cannot change a column's type",
        # A run without tags sends '{}', which reads as an empty map.
        {"run-full.json": "Invalid Compact Map value", "run-minimal.json": None},
    ),
    "created_at a date": (
        {"created_at": "date"},
        "column created_at is date, the sink writes timestamp: every run is refused (HTTP 400 Failed to deserialize "
        "field)",
        {"run-full.json": "could not be parsed, unparsed text found at index 10"},
    ),
    "title an int": (
        {"title": "int"},
        "column title is int, the sink writes text: a run whose title does not read as type int is refused",
        {"run-full.json": "TypeSpec.Basic.INT"},
    ),
    "no transcript column": (
        {"transcript": None},
        "column transcript is missing: a run with a transcript is refused (HTTP 400 Unknown field name)",
        {"run-full.json": "Unknown field name 'transcript'", "run-minimal.json": None},
    ),
    "frames an int": (
        {"frames": "int"},
        "column frames is int, the sink writes bigint: values past the range of int wrap around, silently",
        {"run-full.json": None},
    ),
    "frames a varint": ({"frames": "varint"}, None, {"run-full.json": None}),
}


@pytest.mark.parametrize("case", HAND_MADE, ids=list(HAND_MADE))
def test_check_predicts_what_delivery_meets_in_a_hand_made_table(run_sink, stargate, env, case):
    changes, expected, deliveries = HAND_MADE[case]
    columns = [(name, changes.get(name, kind)) for name, kind in PEEPSHOW_SCHEMA["columns"]]
    stargate.add_table(
        "peepshow", "peepshow_runs", dict(PEEPSHOW_SCHEMA, columns=[column for column in columns if column[1]])
    )
    check = run_sink("cassandra", args=["--check"], env=env)
    failures = [line for line in check.stdout.splitlines() if line.startswith("FAIL")]
    if expected is None:
        assert (check.code, failures) == (0, []), check
    else:
        assert check.code == 5 and len(failures) == 1 and failures[0].startswith("FAIL  " + expected), check
    assert [request.method for request in stargate.requests] == ["GET"]

    delivered = assert_delivered_as_predicted(run_sink, "cassandra", env, deliveries, TOKEN)
    assert len(stored(stargate)) == delivered


def test_check_missing_table(run_sink, env):
    result = run_sink("cassandra", args=["--check"], env=dict(env, CASSANDRA_TABLE="runs"))
    assert result.code == 5, result
    assert "CREATE TABLE peepshow.runs (" in result.stdout


def test_check_with_minting(run_sink, auth, minting):
    result = run_sink("cassandra", args=["--check"], env=minting)
    assert result.code == 0, result
    assert "ok    token minting" in result.stdout and len(auth.minted) == 1


def test_print_schema(run_sink, env):
    result = run_sink("cassandra", args=["--print-schema"], env=dict(env, CASSANDRA_TABLE="Runs"))
    assert result.code == 0, result
    assert result.stdout.startswith('CREATE TABLE peepshow."Runs" (\n  run_id text PRIMARY KEY,')


# -- pure builders -------------------------------------------------------------------------------------------------

CONFIG = cassandra.read_config({"CASSANDRA_URL": "https://db.example/api/rest/", "CASSANDRA_KEYSPACE": "ks"})


def row_for(**changes):
    row = sink.derive(fixture("run-full.json"), {"PEEPSHOW_FRAME_BASE_URL": "https://cdn.example"}, now=0)
    for name, value in changes.items():
        setattr(row, name, value)
    return row


def stargate_v2_reads(value):
    """StringifiedValueUtil.handleSingleQuotes, which v2's ToProtoConverter applies to every JSON string."""
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1].replace("''", "'")
    return value


def stargate_v1_reads(value):
    """v1's Converters.toCqlValue(type, String): String.trim(), then the same quote stripping."""
    value = value.strip("".join(chr(code) for code in range(0x21)))
    if value.startswith("'") and value.endswith("'"):
        return value[1:-1].replace("''", "'")
    return value


@given(st.text())
def test_text_quoting_round_trips(value):
    assert stargate_v2_reads(cassandra.stargate_text(value)) == value
    assert stargate_v1_reads(cassandra.stargate_text(value)) == value


def test_request_shape():
    (req,) = cassandra.build_requests([row_for()], CONFIG.replace(token="AstraCS:x"))
    assert req.method == "POST" and req.url == "https://db.example/api/rest/v2/keyspaces/ks/peepshow_runs"
    assert req.headers == {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "X-Cassandra-Token": "AstraCS:x",
    }
    body = json.loads(req.body)
    assert list(body) == [name for name, _ in cassandra.COLUMNS]
    assert body["run_id"] == "'peepshow-7f3kq2'" and body["frames"] == 3 and body["duration"] == 42.0
    assert body["created_at"] == "1970-01-01T00:00:00.000Z"
    assert body["thumbnail_url"] == "'https://cdn.example/frame_0001.jpg'"


def test_no_token_header_without_a_token():
    (req,) = cassandra.build_requests([row_for()], CONFIG)
    assert "X-Cassandra-Token" not in req.headers


def test_each_row_its_own_request():
    reqs = cassandra.build_requests([row_for(run_id="a"), row_for(run_id="b")], CONFIG)
    assert [req.rows for req in reqs] == [[0], [1]]


@pytest.mark.parametrize("frames", [2**63, -(2**63) - 1, 10**30])
def test_out_of_range_bigint_is_left_out(frames):
    assert "frames" not in cassandra.columns(row_for(frames=frames))


@pytest.mark.parametrize(("value", "expected"), [(None, 0.0), (7, 7.0), (12.5, 12.5), (10**400, 0.0)])
def test_duration(value, expected):
    assert cassandra.columns(row_for(duration=value))["duration"] == expected


def test_unknowns_are_absent():
    values = cassandra.columns(row_for(transcript=None, thumbnail_url=None, strategy=None))
    assert {"transcript", "thumbnail_url", "strategy"}.isdisjoint(values)


def test_body_fits_stargates_limit():
    hostile = "\x01'" * 600_000  # 1.2 MB of UTF-8 that JSON escaping and quote doubling grow to 6 MB
    body = cassandra.row_body(row_for(transcript=hostile), 1_000_000, cassandra.rest_encode)
    assert len(body) <= 1_000_000
    transcript = stargate_v2_reads(json.loads(body)["transcript"])
    assert hostile.startswith(transcript) and len(transcript) > 100_000


def test_nan_never_reaches_the_body():
    body = cassandra.row_body(row_for(duration=float("nan")), cassandra.REST_MAX_BODY_BYTES, cassandra.rest_encode)
    assert json.loads(body)["duration"] == 0.0


@pytest.mark.parametrize(
    ("url", "auth_url", "expected"),
    [
        ("http://localhost:8082/", None, "http://localhost:8081/v1/auth"),
        ("https://[::1]:8443/api/rest", None, "https://[::1]:8081/v1/auth"),
        ("http://localhost:8082", "http://localhost:9000/", "http://localhost:9000/v1/auth"),
        ("http://localhost:8082", "http://localhost:9000/v1/auth", "http://localhost:9000/v1/auth"),
    ],
)
def test_auth_url(url, auth_url, expected):
    env = {"CASSANDRA_URL": url, "CASSANDRA_KEYSPACE": "ks", "CASSANDRA_USERNAME": "u", "CASSANDRA_PASSWORD": "p-1234"}
    if auth_url:
        env["CASSANDRA_AUTH_URL"] = auth_url
    assert cassandra.read_config(env).auth_url == expected


def test_minting_placeholder_in_dry_run():
    env = {"CASSANDRA_URL": "http://localhost:8082", "CASSANDRA_KEYSPACE": "ks"}
    config = cassandra.read_config(dict(env, CASSANDRA_USERNAME="u", CASSANDRA_PASSWORD="p-1234"))
    (req,) = cassandra.build_requests([row_for()], config)
    assert req.headers["X-Cassandra-Token"] == "<minted at delivery>"


def test_destination_identity_has_no_secret_and_survives_a_new_token():
    config = CONFIG.replace(token="AstraCS:secret")
    label, material = cassandra.destination(config)
    assert "AstraCS:secret" not in label and "AstraCS:secret" not in material
    # A new token, another port or path: the same table, so the runs kept meanwhile replay.
    moved = config.replace(token="AstraCS:rotated", url=config.url.replace("https://", "https://") + "/api/rest")
    assert cassandra.destination(moved)[1] == material
    # 0.1.0 named the destination with the token: runs it spooled are still found.
    assert cassandra.legacy_destinations(config) == [(config.url, config.keyspace, config.table, "AstraCS:secret")]


@pytest.mark.parametrize(
    ("name", "cql"), [("peepshow", "peepshow"), ("Runs", '"Runs"'), ("2024", '"2024"'), ("table", '"table"')]
)
def test_cql_names(name, cql):
    assert cassandra.cql_name(name) == cql


def response(status, body):
    return sink.Response(status, {}, body if isinstance(body, bytes) else json.dumps(body).encode())


@pytest.mark.parametrize("body", [b"", b"not json", {"run_id": "x"}, {"data": None}])
def test_any_201_is_success(body):
    assert cassandra.parse_response(CONFIG, sink.request("POST", "u"), response(201, body)) is None


@pytest.mark.parametrize(
    ("status", "description", "transient", "words"),
    [
        (400, "Table 'peepshow_runs' not found (in keyspace ks)", False, "CREATE TABLE ks.peepshow_runs ("),
        (404, "Resource not found: table 'peepshow_runs' not found", False, "CREATE TABLE ks.peepshow_runs ("),
        (400, "Keyspace ks does not exist", False, "CREATE KEYSPACE ks"),
        (400, "Invalid path for row to create, problem: bad", False, "problem: bad"),
        (401, "Invalid token", False, "set CASSANDRA_TOKEN"),
        (404, "HTTP 404 Not Found", False, "CASSANDRA_URL Stargate's REST API base"),
        (500, "boom", True, "HTTP 500"),
        (200, "", False, "instead of 201"),
    ],
)
def test_error_answers(status, description, transient, words):
    with pytest.raises(sink.SinkError) as caught:
        cassandra.parse_response(
            CONFIG, sink.request("POST", "u"), response(status, {"description": description, "code": status})
        )
    assert caught.value.code == 5 and caught.value.transient is transient
    assert words in caught.value.message and "\n" not in caught.value.message


def test_error_body_that_is_not_json():
    with pytest.raises(sink.SinkError) as caught:
        cassandra.parse_response(CONFIG, sink.request("POST", "u"), response(400, b"<html>nope</html>"))
    assert "<html>nope</html>" in caught.value.message


def test_schema_comparison():
    import io

    out = io.StringIO()
    definitions = [
        {"name": name, "typeDefinition": "varchar" if kind == "text" else kind} for name, kind in cassandra.COLUMNS
    ]
    body = {"data": {"columnDefinitions": definitions, "primaryKey": {"partitionKey": ["run_id"], "clusteringKey": []}}}
    assert cassandra.compare_rest_schema(CONFIG, body, out) == 0
    definitions[2]["typeDefinition"] = "int"
    out = io.StringIO()
    assert cassandra.compare_rest_schema(CONFIG, body, out) == 5
    assert "column frames is int, the sink writes bigint" in out.getvalue()
