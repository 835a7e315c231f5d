"""databricks: the pure statement builders (imported from bin/), then the zipapp against the Databricks emulator."""

import json
import time

import pytest

from tests.conftest import FIXTURE_NAMES, assert_clean_failure, fixture, load_script

TOKEN = "dapi-test-token"
TABLE = "main.default.peepshow_runs"
CREATED = "2026-11-20T09:14:03.123Z"
MERGE_ONE = (
    "MERGE INTO `main`.`default`.`peepshow_runs` AS t USING (SELECT :run_id AS run_id, :title AS title, "
    ":frames AS frames, :duration AS duration, :transcript AS transcript, :thumbnail_url AS thumbnail_url, "
    ":strategy AS strategy, :tags AS tags, :created_at AS created_at) AS s "
    "ON t.run_id = s.run_id AND t.created_at = s.created_at WHEN NOT MATCHED THEN INSERT (run_id, title, frames, "
    "duration, transcript, thumbnail_url, strategy, tags, created_at) VALUES (s.run_id, s.title, s.frames, "
    "s.duration, s.transcript, s.thumbnail_url, s.strategy, s.tags, s.created_at)"
)
CREATE = (
    "CREATE TABLE IF NOT EXISTS `main`.`default`.`peepshow_runs` (run_id STRING, title STRING, frames BIGINT, "
    "duration DOUBLE, transcript STRING, thumbnail_url STRING, strategy STRING, tags STRING, created_at TIMESTAMP) "
    "USING DELTA"
)


db = load_script("databricks")
SinkError = db.sink.SinkError
ENV = {"DATABRICKS_URL": "https://abc-123.cloud.databricks.com", "DATABRICKS_TOKEN": TOKEN}
ENV["DATABRICKS_WAREHOUSE_ID"] = "wh-1"


def config(**overrides):
    return db.read_config({**ENV, **overrides})


def row(run_id="peepshow-abc", created_at=CREATED, **payload):
    document = {"outputDir": f"/tmp/{run_id}", "createdAt": created_at, **payload}
    return db.sink.derive(document, {})


def body(req):
    return json.loads(req.body)


# -- configuration ----------------------------------------------------------------------------------------------


def test_config_defaults_and_url_normalisation():
    cfg = config(DATABRICKS_URL="https://adb-1.2.azuredatabricks.net/?o=1234#x")
    assert cfg.host == "https://adb-1.2.azuredatabricks.net"
    assert (cfg.catalog, cfg.schema, cfg.table) == ("main", "default", "peepshow_runs")
    assert db.table_name(config(DATABRICKS_CATALOG="my-cat")) == "`my-cat`.`default`.`peepshow_runs`"
    label, material = db.destination(cfg)
    assert TOKEN not in label and TOKEN not in material  # a rotated token still replays the runs kept before
    assert material == ("https://adb-1.2.azuredatabricks.net", "main", "default", "peepshow_runs")
    rotated = config(
        DATABRICKS_URL="https://adb-1.2.azuredatabricks.net",
        DATABRICKS_TOKEN="dapi-rotated",
        DATABRICKS_WAREHOUSE_ID="other",
    )
    assert db.destination(rotated)[1] == material
    assert TOKEN in db.legacy_destinations(cfg)[-1]  # how 0.1.0 keyed them: still found
    # Unity Catalog names and host names are case-insensitive: one table, one key, whatever the spelling.
    shouted = config(DATABRICKS_URL="https://ADB-1.2.azuredatabricks.net", DATABRICKS_TABLE="Peepshow_Runs")
    assert db.destination(shouted)[1] == material
    assert ("https://ADB-1.2.azuredatabricks.net", "main", "default", "Peepshow_Runs") in db.legacy_destinations(
        shouted
    )
    # 0.1.0 knew only tokens: an OAuth configuration has only 0.2.0's spelling as an older name.
    m2m = dict(ENV, DATABRICKS_TOKEN="", DATABRICKS_CLIENT_ID="id", DATABRICKS_CLIENT_SECRET="dose-x")
    assert len(db.legacy_destinations(db.read_config(m2m))) == 1


@pytest.mark.parametrize("variable", ["DATABRICKS_URL", "DATABRICKS_TOKEN", "DATABRICKS_WAREHOUSE_ID"])
def test_config_each_required_variable(variable):
    for missing in (None, "", "   "):
        env = dict(ENV)
        if missing is None:
            del env[variable]
        else:
            env[variable] = missing
        with pytest.raises(SinkError) as caught:
            db.read_config(env)
        assert caught.value.code == 2 and variable in caught.value.message


@pytest.mark.parametrize("variable", ["DATABRICKS_CATALOG", "DATABRICKS_SCHEMA", "DATABRICKS_TABLE"])
@pytest.mark.parametrize("value", ["a.b", "has space", "x/y", "tab\tname", "back`tick", "semi;colon", "é"])
def test_config_refuses_names_unity_catalog_refuses(variable, value):
    with pytest.raises(SinkError) as caught:
        config(**{variable: value})
    assert caught.value.code == 2 and variable in caught.value.message


def test_config_refuses_plain_http_except_loopback():
    with pytest.raises(SinkError) as caught:
        config(DATABRICKS_URL="http://abc-123.cloud.databricks.com")
    assert caught.value.code == 2 and "https" in caught.value.message
    assert config(DATABRICKS_URL="http://127.0.0.1:8080/").host == "http://127.0.0.1:8080"


# -- statements ---------------------------------------------------------------------------------------------------


def test_one_run_is_the_exact_merge_and_the_create_is_apart():
    cfg = config()
    payload = fixture("run-full.json")
    payload["createdAt"] = CREATED
    the_row = db.sink.derive(payload, {"PEEPSHOW_FRAME_BASE_URL": "https://cdn.example/f/"})
    (merge,) = db.build_requests([the_row], cfg)
    create = db.create_request(cfg)
    assert body(create) == {
        "warehouse_id": "wh-1",
        "statement": CREATE,
        "wait_timeout": "50s",
        "on_wait_timeout": "CONTINUE",
        "query_tags": [
            {"key": "peepshow_sink", "value": "databricks"},
            {"key": "peepshow_sink_version", "value": db.sink.version()},
        ],
    }
    assert create.url == merge.url == "https://abc-123.cloud.databricks.com/api/2.0/sql/statements"
    assert merge.headers["Authorization"] == "Bearer <pat token, added when sent>"  # never the credential
    assert merge.headers["User-Agent"].startswith("peepshow-sink-databricks/")
    assert merge.headers["Content-Type"] == "application/json"
    sent = body(merge)
    assert sent["statement"] == MERGE_ONE
    assert sent["on_wait_timeout"] == "CONTINUE" and sent["warehouse_id"] == "wh-1"
    assert sent["parameters"] == [
        {"name": "run_id", "value": "peepshow-7f3kq2", "type": "STRING"},
        {"name": "title", "value": "Checkout flicker repro", "type": "STRING"},
        {"name": "frames", "value": "3", "type": "BIGINT"},
        {"name": "duration", "value": "42.0", "type": "DOUBLE"},
        {"name": "transcript", "value": payload["audio"]["transcript"]["text"], "type": "STRING"},
        {"name": "thumbnail_url", "value": "https://cdn.example/f/frame_0001.jpg", "type": "STRING"},
        {"name": "strategy", "value": "scene", "type": "STRING"},
        {"name": "tags", "value": the_row.tags, "type": "STRING"},
        {"name": "created_at", "value": CREATED, "type": "TIMESTAMP"},
    ]
    assert merge.rows == [0] and not db.too_large(merge)


def test_nulls_are_absent_values_and_unknown_duration_is_zero():
    params = {item["name"]: item for item in body(db.build_requests([row()], config())[0])["parameters"]}
    assert params["transcript"] == {"name": "transcript", "type": "STRING"}
    assert params["thumbnail_url"] == {"name": "thumbnail_url", "type": "STRING"}
    assert params["duration"]["value"] == "0.0"
    assert params["frames"]["value"] == "0" and params["tags"]["value"] == "{}"


@pytest.mark.parametrize(
    ("given", "sent"),
    [(42, "42.0"), ("12.5", "12.5"), (0.1, "0.1"), (1 / 3, repr(1 / 3)), (1e-7, "1e-07"), (10**400, "0.0")],
)
def test_duration_is_a_round_tripping_double(given, sent):
    params = body(db.build_requests([row(video={"durationSeconds": given})], config())[0])["parameters"]
    value = next(item["value"] for item in params if item["name"] == "duration")
    assert value == sent
    assert float(value) == (float(given) if given != 10**400 else 0.0)


def test_payload_text_never_reaches_the_sql():
    hostile = fixture("run-hostile.json")
    for req in db.build_requests([db.sink.derive(hostile, {})], config()):
        statement = body(req)["statement"]
        assert "DROP" not in statement and "Robert" not in statement and "'" not in statement


def test_several_runs_use_numbered_markers_and_union_all():
    rows = [row(f"run-{number}") for number in range(3)]
    merge = db.build_requests(rows, config())[0]
    sent = body(merge)
    assert sent["statement"].count(" UNION ALL ") == 2
    assert ":run_id_1 AS run_id" in sent["statement"] and ":created_at_3 AS created_at" in sent["statement"]
    assert ":run_id AS" not in sent["statement"]
    names = [item["name"] for item in sent["parameters"]]
    assert names[:9] == [f"{name}_1" for name, _ in db.COLUMNS] and len(names) == 27
    assert [item["value"] for item in sent["parameters"] if item["name"].startswith("run_id_")] == [
        "run-0",
        "run-1",
        "run-2",
    ]
    assert merge.rows == [0, 1, 2]


def test_at_most_256_parameters_per_statement():
    rows = [row(f"run-{number}") for number in range(60)]
    merges = db.build_requests(rows, config())
    assert [len(req.rows) for req in merges] == [28, 28, 4]
    assert all(len(body(req)["parameters"]) <= 256 for req in merges)
    assert sorted(index for req in merges for index in req.rows) == list(range(60))


def test_a_run_listed_twice_is_sent_once():
    rows = [row("a"), row("b"), row("a"), row("a", created_at="2026-11-21T00:00:00.000Z")]
    merge = db.build_requests(rows, config())[0]
    assert sorted(merge.rows) == [0, 1, 2, 3]
    values = [item["value"] for item in body(merge)["parameters"] if item["name"].startswith("run_id")]
    assert values == ["a", "b", "a"]


def test_statements_stay_under_16_mib():
    transcript = {"audio": {"transcript": {"text": "a\n" * (512 * 1024)}}}  # 1.5x once JSON-escaped
    rows = [row(f"run-{number}", **transcript) for number in range(20)]
    merges = db.build_requests(rows, config())
    assert len(merges) > 1
    assert all(len(req.body) <= 16 * 1024 * 1024 and not db.too_large(req) for req in merges)
    assert sorted(index for req in merges for index in req.rows) == list(range(20))


def test_no_run_is_too_large_once_its_values_are_bounded():
    # The transcript and the tags are bounded to 1 MiB each, the other texts to 64 KiB: even escaped at their
    # worst (control characters, six bytes each in JSON) a run fits one statement.
    control = "\x01" * (2 * 1024 * 1024)
    huge = row("huge", video={"tags": {"comment": control, "title": control}}, audio={"transcript": {"text": control}})
    (merge,) = db.build_requests([huge], config())
    assert not db.too_large(merge) and len(merge.body) <= 16 * 1024 * 1024


def test_a_run_too_large_for_any_statement_is_marked():
    huge = row("huge")
    huge.tags = "x" * (17 * 1024 * 1024)  # past what derive lets through: the statement is still refused whole
    rows = [row("small"), huge]
    merges = db.build_requests(rows, config())
    assert [(req.rows, db.too_large(req)) for req in merges] == [([0], False), ([1], True)]


@pytest.mark.parametrize(
    ("left", "wait"), [(120.0, "50s"), (50.0, "50s"), (29.7, "29s"), (5.0, "5s"), (4.99, "0s"), (-3.0, "0s")]
)
def test_wait_timeout_follows_the_deadline(left, wait):
    merge = db.build_requests([row()], config())[0]
    refreshed = json.loads(merge.rebuild(time.monotonic() + left + 0.005))  # the body of an attempt with `left` s
    assert refreshed["wait_timeout"] == wait
    assert {**refreshed, "wait_timeout": "50s"} == body(merge)


def test_print_schema_is_the_ddl():
    text = db.print_schema(config(DATABRICKS_TABLE="runs-2"))
    assert text.startswith("CREATE TABLE IF NOT EXISTS `main`.`default`.`runs-2` (\n")
    assert "  frames BIGINT,\n" in text and "  created_at TIMESTAMP\n) USING DELTA;" in text


# -- responses ----------------------------------------------------------------------------------------------------


def response(status, payload, headers=None):
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return db.sink.Response(status, headers or {}, raw)


def statement(state, error=None):
    status = {"state": state}
    if error:
        status["error"] = error
    return {"statement_id": "01ef-stmt", "status": status}


def test_succeeded_and_closed_are_success():
    for state in ("SUCCEEDED", "CLOSED"):
        assert db.parse_response(config(), response(200, statement(state)))["status"]["state"] == state


def test_failed_is_permanent_with_databricks_words():
    error = {"error_code": "BAD_REQUEST", "message": "[TABLE_OR_VIEW_NOT_FOUND] The table cannot be found."}
    with pytest.raises(SinkError) as caught:
        db.parse_response(config(), response(200, statement("FAILED", error)))
    assert caught.value.code == 5 and not caught.value.transient
    assert "TABLE_OR_VIEW_NOT_FOUND" in caught.value.message and "01ef-stmt" in caught.value.message


@pytest.mark.parametrize("code", ["TEMPORARILY_UNAVAILABLE", "WORKSPACE_TEMPORARILY_UNAVAILABLE", "RESOURCE_EXHAUSTED"])
def test_failed_with_a_transient_code_is_kept_for_replay(code):
    with pytest.raises(SinkError) as caught:
        db.parse_response(config(), response(200, statement("FAILED", {"error_code": code, "message": "later"})))
    assert caught.value.transient


def test_write_conflicts_are_transient_and_retried_at_once():
    error = {"error_code": "ABORTED", "message": "[DELTA_CONCURRENT_APPEND] ConcurrentAppendException: files added"}
    with pytest.raises(SinkError) as caught:
        db.parse_response(config(), response(200, statement("FAILED", error)))
    assert caught.value.transient and caught.value.kind == db.sink.CONFLICT


def test_integer_error_codes_are_read():
    with pytest.raises(SinkError) as caught:
        db.parse_response(config(), response(400, {"error_code": 400, "message": "Bad parameter"}))
    assert "Bad parameter" in caught.value.message and not caught.value.transient


@pytest.mark.parametrize("status", [401, 403])
def test_bad_token_says_rotate(status):
    with pytest.raises(SinkError) as caught:
        db.parse_response(config(), response(status, {"error_code": 403, "message": "Invalid access token."}))
    assert caught.value.code == 5 and "rotate DATABRICKS_TOKEN" in caught.value.message


def test_missing_grant_is_not_called_a_bad_token():
    payload = {"error_code": "PERMISSION_DENIED", "message": "User does not have CAN USE on warehouse wh-1"}
    with pytest.raises(SinkError) as caught:
        db.parse_response(config(), response(403, payload))
    assert "CAN USE" in caught.value.message and "rotate" not in caught.value.message


def test_not_found_names_url_and_warehouse():
    with pytest.raises(SinkError) as caught:
        db.parse_response(config(), response(404, b"<html><body>Not Found</body></html>"))
    assert "DATABRICKS_URL" in caught.value.message and "DATABRICKS_WAREHOUSE_ID" in caught.value.message


def test_html_with_status_200_is_a_failure():
    with pytest.raises(SinkError) as caught:
        db.parse_response(config(), response(200, b"<!DOCTYPE html><html><title>Sign in</title></html>"))
    assert caught.value.code == 5 and "HTML" in caught.value.message and "DATABRICKS_URL" in caught.value.message


def test_redirect_is_not_followed():
    with pytest.raises(SinkError) as caught:
        db.parse_response(config(), response(302, b"", {"Location": "https://login.example/"}))
    assert "https://login.example/" in caught.value.message and "DATABRICKS_URL" in caught.value.message


def test_unavailable_after_retries_is_transient():
    with pytest.raises(SinkError) as caught:
        db.parse_response(config(), response(503, {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "busy"}))
    assert caught.value.transient


def test_fixture_names_cover_the_hostile_run():
    assert "run-hostile.json" in FIXTURE_NAMES


# -- the zipapp against the emulator ------------------------------------------------------------------------------

FRAME_BASE = "https://cdn.example/frames/"


@pytest.fixture
def warehouse(databricks):
    """conftest's session-wide emulator, reset for the test: token dapi-test-token, warehouse wh-1, main.default."""
    return databricks


def sink_env(emulator, **overrides):
    env = {"DATABRICKS_URL": emulator.url + "/", "DATABRICKS_TOKEN": TOKEN, "DATABRICKS_WAREHOUSE_ID": "wh-1"}
    env["PEEPSHOW_FRAME_BASE_URL"] = FRAME_BASE
    env.update(overrides)
    return env


def run(run_sink, emulator, stdin=b"", args=(), **overrides):
    return run_sink("databricks", stdin=stdin, env=sink_env(emulator, **overrides), args=args)


def spooled(spool):
    directory = spool / "databricks"
    return sorted(path.name for path in directory.glob("*.json")) if directory.exists() else []


def utc(text):
    import datetime

    return datetime.datetime.fromtimestamp(db.sink.parse_iso(text), datetime.timezone.utc)


# What each fixture must become: the typed row, every column (created_at checked separately for live runs).
EXPECTED = {
    "manifest.json": {
        "run_id": "peepshow-7f3kq2",
        "title": "checkout-flicker.mov",
        "frames": 2,
        "duration": 42.0,
        "transcript": None,
        "thumbnail_url": FRAME_BASE + "frame_0001.jpg",
        "strategy": "scene",
        "tags": {"comment": "no title tag here"},
    },
    "run-full.json": {
        "run_id": "peepshow-7f3kq2",
        "title": "Checkout flicker repro",
        "frames": 3,
        "duration": 42.0,
        "transcript": "Okay, I'm on the checkout screen. Watch the total when I tap apply coupon.",
        "thumbnail_url": FRAME_BASE + "frame_0001.jpg",
        "strategy": "scene",
        "tags": fixture("run-full.json")["video"]["tags"],
    },
    "run-hostile.json": {
        "run_id": "peepshow-x'; DROP TABLE peepshow_runs; --",
        "title": fixture("run-hostile.json")["video"]["tags"]["title"],
        "frames": 1,
        "duration": 12.5,
        "transcript": fixture("run-hostile.json")["audio"]["transcript"]["text"],
        "thumbnail_url": FRAME_BASE + "frame%200001%20%C3%BC%23%3F.jpg",
        "strategy": "scene",
        "tags": fixture("run-hostile.json")["video"]["tags"],
    },
    "run-minimal.json": {
        "run_id": "peepshow-abc",
        "title": "peepshow-abc",
        "frames": 1,
        "duration": 0.0,
        "transcript": None,
        "thumbnail_url": FRAME_BASE + "frame_0001.jpg",
        "strategy": "fps",
        "tags": {},
    },
}


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_every_fixture_becomes_exactly_one_typed_row(run_sink, warehouse, spool, name):
    import datetime

    before = datetime.datetime.now(datetime.timezone.utc)
    result = run(run_sink, warehouse, fixture(name))
    after = datetime.datetime.now(datetime.timezone.utc)
    assert (result.code, result.stdout, result.stderr) == (0, "", ""), result
    (stored,) = warehouse.rows(TABLE)
    expected = EXPECTED[name]
    assert {key: value for key, value in stored.items() if key not in ("tags", "created_at")} == {
        key: value for key, value in expected.items() if key != "tags"
    }
    assert type(stored["frames"]) is int and type(stored["duration"]) is float
    assert isinstance(stored["tags"], str) and json.loads(stored["tags"]) == expected["tags"]
    if name == "manifest.json":
        assert stored["created_at"] == utc(CREATED)
    else:
        assert before - datetime.timedelta(milliseconds=1) <= stored["created_at"] <= after
        assert stored["created_at"].microsecond % 1000 == 0
    # The first run finds no table: MERGE, CREATE TABLE, MERGE again.
    assert [statement["statement"].split()[0] for statement in warehouse.statements] == ["MERGE", "CREATE", "MERGE"]
    assert spooled(spool) == []


def test_a_replayed_manifest_adds_no_second_row(run_sink, warehouse):
    for spool in ("on", "on", "off"):
        result = run(run_sink, warehouse, fixture("manifest.json"), PEEPSHOW_SINK_SPOOL=spool)
        assert (result.code, result.stderr) == (0, ""), result
    assert len(warehouse.rows(TABLE)) == 1
    # MERGE, CREATE, MERGE the first time. The same run again is not sent (the record knows it); without the
    # record (no spool) it is, and the MERGE skips it.
    kinds = [statement["statement"].split()[0] for statement in warehouse.statements]
    assert kinds == ["MERGE", "CREATE", "MERGE", "MERGE"]


def test_a_backfill_batches_28_runs_per_merge(run_sink, warehouse):
    runs = [
        {"outputDir": f"/tmp/peepshow-{number}", "createdAt": f"2026-11-20T09:{number:02d}:00.000Z", "frames": []}
        for number in range(30)
    ]
    stdin = "\n".join(json.dumps(document) for document in runs)
    result = run(run_sink, warehouse, stdin)
    assert result.code == 0, result
    assert len(warehouse.rows(TABLE)) == 30
    merges = [statement for statement in warehouse.statements if statement["statement"].startswith("MERGE")]
    assert [len(statement["parameters"]) for statement in merges] == [252, 252, 18]  # the first found no table
    assert [statement["statement"].startswith("CREATE") for statement in warehouse.statements].count(True) == 1


@pytest.mark.parametrize("variable", ["DATABRICKS_URL", "DATABRICKS_TOKEN", "DATABRICKS_WAREHOUSE_ID"])
def test_each_required_variable_missing_exits_2(run_sink, warehouse, variable):
    result = run(run_sink, warehouse, fixture("run-minimal.json"), **{variable: ""})
    assert_clean_failure(result, 2, TOKEN)
    assert variable in result.stderr
    assert warehouse.requests == []


@pytest.mark.parametrize("variable", ["DATABRICKS_CATALOG", "DATABRICKS_SCHEMA", "DATABRICKS_TABLE"])
def test_a_bad_identifier_exits_2(run_sink, warehouse, variable):
    result = run(run_sink, warehouse, fixture("run-minimal.json"), **{variable: "x; DROP TABLE y"})
    assert_clean_failure(result, 2, TOKEN)
    assert variable in result.stderr and warehouse.requests == []


def test_a_hyphenated_table_is_quoted(run_sink, warehouse):
    result = run(run_sink, warehouse, fixture("run-minimal.json"), DATABRICKS_TABLE="peepshow-runs")
    assert result.code == 0, result
    assert len(warehouse.rows("main.default.peepshow-runs")) == 1


def test_a_failed_statement_about_permissions_keeps_the_run(run_sink, warehouse, spool):
    warehouse.fail_next_statement("BAD_REQUEST", "[INSUFFICIENT_PERMISSIONS] User does not have USE SCHEMA.")
    result = run(run_sink, warehouse, fixture("run-full.json"))
    assert_clean_failure(result, 5, TOKEN)
    assert "[INSUFFICIENT_PERMISSIONS] User does not have USE SCHEMA." in result.stderr
    assert warehouse.statements[0]["statement_id"] in result.stderr
    assert len(spooled(spool)) == 1  # the grant is the destination's to fix; the run waits for it


def test_a_bad_token_exits_5_with_the_rotate_hint_and_keeps_the_run(run_sink, warehouse, spool):
    result = run(run_sink, warehouse, fixture("run-full.json"), DATABRICKS_TOKEN="dapi-wrong-secret")
    assert_clean_failure(result, 5, "dapi-wrong-secret")
    assert "HTTP 403" in result.stderr and "rotate DATABRICKS_TOKEN" in result.stderr
    assert len(spooled(spool)) == 1
    # Rotated: the new token finds the run kept under the old one and delivers it.
    flushed = run(run_sink, warehouse, b"", args=["--flush"])
    assert flushed.code == 0, flushed
    assert len(warehouse.rows(TABLE)) == 1 and spooled(spool) == []


def test_an_unknown_warehouse_names_the_variable(run_sink, warehouse):
    result = run(run_sink, warehouse, fixture("run-full.json"), DATABRICKS_WAREHOUSE_ID="wh-404")
    assert_clean_failure(result, 5, TOKEN)
    assert "DATABRICKS_WAREHOUSE_ID" in result.stderr


def test_pending_then_succeeded_across_polls(run_sink, warehouse):
    warehouse.cold_start(polls=2)
    result = run(run_sink, warehouse, fixture("run-full.json"))
    assert (result.code, result.stderr) == (0, ""), result
    assert len(warehouse.rows(TABLE)) == 1
    polls = [request for request in warehouse.requests if request.method == "GET"]
    assert len(polls) >= 4 and warehouse.cancels == []


def test_pending_forever_is_canceled_before_the_deadline(run_sink, warehouse, spool):
    warehouse.pending_forever()
    result = run(run_sink, warehouse, fixture("run-full.json"), PEEPSHOW_SINK_TIMEOUT="3")
    assert_clean_failure(result, 5, TOKEN)
    assert result.elapsed < 3 + 2, result
    (statement_id,) = {statement["statement_id"] for statement in warehouse.statements}
    assert warehouse.cancels == [statement_id]
    assert statement_id in result.stderr and "PENDING" in result.stderr
    assert warehouse.statements[0]["wait_timeout"] == "0s"  # less than 5 s left for the server to wait
    assert len(spooled(spool)) == 1  # transient: a later delivery replays it


def test_the_spooled_run_is_replayed_once_the_warehouse_answers(run_sink, warehouse, spool):
    warehouse.pending_forever()
    assert run(run_sink, warehouse, fixture("run-minimal.json"), PEEPSHOW_SINK_TIMEOUT="2").code == 5
    warehouse.reset()
    flushed = run(run_sink, warehouse, args=["--flush"])
    assert flushed.code == 0, flushed
    assert "delivered 1" in flushed.stdout and spooled(spool) == []
    assert [row["run_id"] for row in warehouse.rows(TABLE)] == ["peepshow-abc"]


def test_503_then_success_gives_one_row(run_sink, warehouse, spool):
    warehouse.fault("status", times=2, status=503, body={"error_code": "TEMPORARILY_UNAVAILABLE", "message": "busy"})
    result = run(run_sink, warehouse, fixture("run-full.json"))
    assert (result.code, result.stderr) == (0, ""), result
    assert len(warehouse.rows(TABLE)) == 1 and spooled(spool) == []


def test_a_write_conflict_is_run_again(run_sink, warehouse):
    warehouse.fail_next_statement("ABORTED", "[DELTA_CONCURRENT_APPEND] ConcurrentAppendException: files added.")
    result = run(run_sink, warehouse, fixture("run-full.json"))
    assert (result.code, result.stderr) == (0, ""), result
    assert len(warehouse.rows(TABLE)) == 1


def test_html_with_200_is_a_failure(run_sink, warehouse):
    warehouse.fault("status", status=200, body="<!DOCTYPE html><html><body>Sign in</body></html>")
    result = run(run_sink, warehouse, fixture("run-full.json"))
    assert_clean_failure(result, 5, TOKEN)
    assert "HTML" in result.stderr and "DATABRICKS_URL" in result.stderr


def test_check_reads_only(run_sink, warehouse):
    result = run(run_sink, warehouse, args=["--check"])
    assert result.code == 0, result
    assert "ok    token" in result.stdout and "RUNNING" in result.stdout
    assert "will be created on first write" in result.stdout and "n/a" in result.stdout
    assert warehouse.statements == [] and TOKEN not in result.stdout + result.stderr


def hand_made(warehouse, changes=(), extra=(), **options):
    """The sink's table as a user made it by hand: some columns retyped ({name: TYPE}; None leaves one out), `extra`
    columns added, NOT NULL columns, DEFAULTs or another format (`options`)."""
    changes = dict(changes)
    columns = [(name, changes.get(name, kind)) for name, kind in db.COLUMNS if changes.get(name, kind) is not None]
    warehouse.create_table(TABLE, columns + list(extra), **options)


def check_lines(result):
    return [line for line in result.stdout.splitlines() if line.startswith("FAIL")]


# Tables made by hand, what --check says of each (None: no FAIL line), and what delivering run-full.json and
# run-minimal.json (no transcript, no tags, no thumbnail without PEEPSHOW_FRAME_BASE_URL... which is set here) meets:
# the Delta error class that refuses it, or None when it is stored. --check fails exactly when a delivery would.
HAND_MADE = {
    "extra nullable column": (
        {"extra": [("notes", "STRING")]},
        None,
        {"run-full.json": None, "run-minimal.json": None},
    ),
    "extra NOT NULL column with a default": (
        {"extra": [("source", "STRING")], "not_null": ["source"], "defaults": {"source": "peepshow"}},
        None,
        {"run-full.json": None},
    ),
    "extra NOT NULL column": (
        {"extra": [("notes", "STRING")], "not_null": ["notes"]},
        "column notes is NOT NULL without a DEFAULT, and the sink does not write it: every run is refused "
        "([DELTA_NOT_NULL_CONSTRAINT_VIOLATED]); fix: ALTER TABLE `main`.`default`.`peepshow_runs` ALTER COLUMN "
        "notes DROP NOT NULL",
        {
            "run-full.json": "DELTA_NOT_NULL_CONSTRAINT_VIOLATED",
            "run-minimal.json": "DELTA_NOT_NULL_CONSTRAINT_VIOLATED",
        },
    ),
    "transcript NOT NULL": (
        {"not_null": ["transcript"]},
        "column transcript is NOT NULL, and a run without a transcript leaves it NULL: such runs are refused "
        "([DELTA_NOT_NULL_CONSTRAINT_VIOLATED]); fix: ALTER TABLE `main`.`default`.`peepshow_runs` ALTER COLUMN "
        "transcript DROP NOT NULL",
        {"run-full.json": None, "run-minimal.json": "DELTA_NOT_NULL_CONSTRAINT_VIOLATED"},
    ),
    "PARQUET table": (
        {"data_source_format": "PARQUET"},
        "table main.default.peepshow_runs is PARQUET, not Delta: every MERGE fails ([DELTA_UNSUPPORTED_SOURCE] MERGE "
        "destination only supports Delta sources); fix: CONVERT TO DELTA `main`.`default`.`peepshow_runs`, or set "
        "DATABRICKS_TABLE to a new name (the sink creates that table)",
        {"run-full.json": "DELTA_UNSUPPORTED_SOURCE", "run-minimal.json": "DELTA_UNSUPPORTED_SOURCE"},
    ),
    "title INT": (
        {"changes": {"title": "INT"}},
        "column title is INT, the sink writes STRING: a run whose title does not read as INT is refused "
        "([CAST_INVALID_INPUT]); fix: Delta cannot change this type in place",
        {"run-full.json": "CAST_INVALID_INPUT"},
    ),
    "no transcript column": (
        {"changes": {"transcript": None}},
        "column transcript is missing: every MERGE fails ([DELTA_MERGE_UNRESOLVED_EXPRESSION]); fix: ALTER TABLE "
        "`main`.`default`.`peepshow_runs` ADD COLUMN transcript STRING",
        {"run-full.json": "DELTA_MERGE_UNRESOLVED_EXPRESSION", "run-minimal.json": "DELTA_MERGE_UNRESOLVED_EXPRESSION"},
    ),
    "tags a map": (
        {"changes": {"tags": "MAP<STRING,STRING>"}},
        "column tags is MAP<STRING,STRING>, the sink writes STRING: every MERGE fails ([DATATYPE_MISMATCH] STRING "
        "cannot be cast to MAP<STRING,STRING>)",
        {"run-minimal.json": "DATATYPE_MISMATCH"},
    ),
    "frames a wider DECIMAL": (
        {"changes": {"frames": "DECIMAL(20,0)"}},
        None,
        {"run-full.json": None},
    ),
}


@pytest.mark.parametrize("case", HAND_MADE, ids=list(HAND_MADE))
def test_check_predicts_what_delivery_meets_in_a_hand_made_table(run_sink, warehouse, case):
    table, expected, deliveries = HAND_MADE[case]
    hand_made(warehouse, **table)
    check = run(run_sink, warehouse, args=["--check"])
    assert "Traceback" not in check.stderr and TOKEN not in check.stdout + check.stderr
    if expected is None:
        assert (check.code, check_lines(check)) == (0, []), check
    else:
        assert check.code == 5 and len(check_lines(check)) == 1, check
        assert check_lines(check)[0].startswith("FAIL  " + expected), check
        assert check.stderr.strip().splitlines()[-1].startswith("databricks: " + expected.split(":")[0])
    assert warehouse.statements == []  # --check writes nothing, and reads without a statement

    for name, refused in deliveries.items():
        result = run(run_sink, warehouse, fixture(name))
        if refused is None:
            assert (result.code, result.stderr) == (0, ""), result
        else:
            assert_clean_failure(result, 5, TOKEN)
            assert f"[{refused}" in result.stderr, result
    stored = warehouse.rows(TABLE)
    assert len(stored) == sum(refused is None for refused in deliveries.values())
    for row in stored:  # what the sink does not write: NULL, or the column's DEFAULT
        assert row.get("notes") is None and row.get("source", "peepshow") == "peepshow"


def test_check_names_every_problem_on_its_own_line(run_sink, warehouse):
    hand_made(warehouse, {"title": "INT", "frames": "INT", "thumbnail_url": None, "created_at": "DATE"})
    result = run(run_sink, warehouse, args=["--check"])
    assert result.code == 5, result
    lines = check_lines(result)
    assert [line.split(",")[0].split(":")[0] for line in lines] == [
        "FAIL  column title is INT",
        "FAIL  column frames is INT",
        "FAIL  column thumbnail_url is missing",
        "FAIL  column created_at is DATE",
    ]
    assert lines[1].endswith(
        "fix: ALTER TABLE `main`.`default`.`peepshow_runs` SET TBLPROPERTIES ('delta.enableTypeWidening' = 'true'); "
        "ALTER TABLE `main`.`default`.`peepshow_runs` ALTER COLUMN frames TYPE BIGINT"
    )
    assert "a replayed run no longer matches its row and is stored a second time" in lines[3]
    assert "(and 3 more problem(s): see the report on stdout)" in result.stderr


def test_a_date_column_stores_a_replayed_run_twice_as_check_warned(run_sink, warehouse):
    hand_made(warehouse, {"created_at": "DATE"})
    for spool in ("on", "off"):  # the same run again, past the record (no spool): the MERGE no longer knows it
        result = run(run_sink, warehouse, fixture("manifest.json"), PEEPSHOW_SINK_SPOOL=spool)
        assert result.code == 0, result
    assert len(warehouse.rows(TABLE)) == 2


def test_a_count_past_a_tinyint_column_is_refused_as_check_warned(run_sink, warehouse):
    hand_made(warehouse, {"frames": "TINYINT"})
    assert "FAIL  column frames is TINYINT, the sink writes BIGINT" in run(run_sink, warehouse, args=["--check"]).stdout
    assert run(run_sink, warehouse, fixture("run-minimal.json")).code == 0
    long_run = dict(fixture("run-minimal.json"), outputDir="/runs/long")
    long_run["frames"] = [{"path": f"/runs/long/frame_{index:04d}.jpg", "bytes": 1} for index in range(200)]
    result = run(run_sink, warehouse, long_run)
    assert_clean_failure(result, 5, TOKEN)
    assert "[DELTA_CAST_OVERFLOW_IN_TABLE_WRITE]" in result.stderr
    assert len(warehouse.rows(TABLE)) == 1


def test_check_with_a_bad_token(run_sink, warehouse):
    result = run(run_sink, warehouse, args=["--check"], DATABRICKS_TOKEN="dapi-wrong-secret")
    assert result.code == 5 and "FAIL  token" in result.stdout and "rotate" in result.stdout
    assert "dapi-wrong-secret" not in result.stdout + result.stderr


def test_print_schema_reads_no_stdin(run_sink, warehouse):
    result = run(run_sink, warehouse, args=["--print-schema"])
    assert result.code == 0 and result.stdout == db.print_schema(config())
    assert warehouse.requests == []
