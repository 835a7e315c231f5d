"""Operator tools that tell the truth (issue 19): --check judges the service by its answer and diagnoses as delivery
does, --dry-run prints the requests delivery would send for every kind of run, --print-schema needs no
configuration, --help lists what works, and no output crashes on the terminal's encoding. From the built zipapps."""

import json

import pytest

from tests.conftest import TOKENS, assert_clean_failure, fixture, fixture_bytes


def runs(count, created_at=None):
    """`count` distinct runs, one JSON document per line (a backfill on stdin)."""
    documents = []
    for number in range(count):
        run = fixture("run-minimal.json")
        run["outputDir"] = f"/tmp/peepshow-tools-{number}"
        if created_at:
            run["createdAt"] = created_at
        documents.append(json.dumps(run))
    return "\n".join(documents)


# -- --check ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "paths", "token"),
    [
        ("mixpanel", ["/track", "/import"], "ok    token: Mixpanel's /import accepted the project token"),
        ("amplitude", ["/2/httpapi", "/batch"], "ok    token: Amplitude accepted the API key"),
        ("segment", ["/v1/track", "/v1/batch"], "n/a   token: Segment has no read-only way to validate it"),
    ],
)
def test_event_track_check_asks_both_apis_and_stores_nothing(run_sink, analytics, provider, paths, token):
    emulator, env = analytics(provider)
    result = run_sink("event-track", b"", env, args=["--check"])
    assert (result.code, result.stderr) == (0, ""), result
    assert [request.path for request in emulator.requests] == paths
    assert f"ok    single-event API: {emulator.url}{paths[0]} answered HTTP" in result.stdout
    assert f"ok    batch API: {emulator.url}{paths[1]}" in result.stdout
    assert token in result.stdout
    assert emulator.events == [] and getattr(emulator, "dropped", []) == []
    assert TOKENS[provider] not in result.stdout


@pytest.mark.parametrize(
    ("provider", "path", "fault", "words"),
    [
        ("mixpanel", "/v2/track", None, "answered HTTP 404"),  # a path the API does not have
        ("amplitude", "/2/httpapi/v2", None, "answered HTTP 400: Invalid request path"),  # Amplitude's own 404
        ("segment", "/v1/track", 501, "answered HTTP 501"),  # a proxy or mock that does not implement POST
        ("amplitude", "/2/httpapi", 503, "Amplitude is unavailable (HTTP 503)"),
    ],
)
def test_event_track_check_fails_when_the_answer_is_not_the_api(run_sink, analytics, provider, path, fault, words):
    emulator, env = analytics(provider)
    env["EVENT_TRACK_ENDPOINT"] = emulator.url + path
    if fault:
        emulator.fault("status", times=None, status=fault, body="")
    result = run_sink("event-track", b"", env, args=["--check"])
    assert_clean_failure(result, 5, TOKENS[provider])
    assert words in result.stdout and words in result.stderr, result
    assert "FAIL  single-event API" in result.stdout
    assert "ok    token" not in result.stdout
    if fault == 503:
        return
    advice = f"set EVENT_TRACK_ENDPOINT to {provider}'s host alone"
    assert advice in result.stderr
    delivery = run_sink("event-track", fixture_bytes("run-full.json"), dict(env, PEEPSHOW_SINK_SPOOL="off"))
    assert_clean_failure(delivery, 5, TOKENS[provider])
    assert advice in delivery.stderr  # the advice delivery gives


def test_event_track_check_names_a_refused_key(run_sink, analytics):
    emulator, env = analytics("amplitude", EVENT_TRACK_TOKEN="amp-wrong-key")
    result = run_sink("event-track", b"", env, args=["--check"])
    assert_clean_failure(result, 5, "amp-wrong-key")
    assert "FAIL  single-event API: Amplitude refused the credentials (HTTP 400: Invalid API key: ***)" in result.stdout
    assert "check EVENT_TRACK_TOKEN" in result.stderr
    assert emulator.events == []


def test_databricks_check_gives_the_advice_delivery_gives_for_a_warehouse_path(run_sink, databricks):
    """DATABRICKS_HOST with the warehouse's HTTP path pasted after it: not "no SQL warehouse" and a table to
    create, but the one fix, worded as delivery words it."""
    env = {
        "DATABRICKS_HOST": databricks.url + "/sql/1.0/warehouses/wh-1",
        "DATABRICKS_TOKEN": "dapi-test-token",
        "DATABRICKS_WAREHOUSE_ID": "wh-1",
    }
    advice = "DATABRICKS_HOST ends in the SQL warehouse's HTTP path (/sql/1.0/warehouses/wh-1): set DATABRICKS_HOST "
    advice += f"to the workspace URL alone ({databricks.url})"
    check = run_sink("databricks", b"", env, args=["--check"])
    assert_clean_failure(check, 5, "dapi-test-token")
    assert advice in check.stderr and "no SQL warehouse" not in check.stdout and "FAIL  table" not in check.stdout
    delivery = run_sink("databricks", fixture_bytes("run-full.json"), env)
    assert_clean_failure(delivery, 5, "dapi-test-token")
    assert advice in delivery.stderr


# -- --dry-run -------------------------------------------------------------------------------------------------


def test_dry_run_of_an_old_mixpanel_run_shows_the_import_delivery_sends(run_sink, analytics):
    emulator, env = analytics("mixpanel")
    old = dict(fixture("run-minimal.json"), createdAt="2020-01-01T00:00:00.000Z")
    result = run_sink("event-track", old, env, args=["--dry-run"])
    assert result.code == 0, result
    assert f"\nPOST {emulator.url}/import?strict=1\n" in result.stdout
    assert "Authorization: Basic ***" in result.stdout and "/track" not in result.stdout.split("\n", 1)[1]
    assert emulator.requests == []
    assert run_sink("event-track", old, env).code == 0  # and delivery sends exactly that
    assert [(request.path, request.query) for request in emulator.requests] == [("/import", {"strict": ["1"]})]


@pytest.mark.parametrize(
    ("provider", "batch"), [("mixpanel", "/import"), ("amplitude", "/batch"), ("segment", "/v1/batch")]
)
def test_dry_run_of_a_backfill_shows_the_batch_url(run_sink, analytics, provider, batch):
    emulator, env = analytics(provider)
    result = run_sink("event-track", runs(2), env, args=["--dry-run"])
    assert result.code == 0, result
    requests = [line for line in result.stdout.splitlines() if line.startswith("POST ")]
    assert [line.split("?")[0] for line in requests] == [f"POST {emulator.url}{batch}"]
    assert emulator.requests == []


def test_dry_run_of_a_backfill_whose_last_group_is_one_run(run_sink, analytics):
    """The helper hands a backfill over 500 runs at a time: the 501st is a group of one, still not a live run."""
    emulator, env = analytics("amplitude")
    result = run_sink("event-track", runs(501), env, args=["--dry-run"])
    assert result.code == 0, result
    requests = [line for line in result.stdout.splitlines() if line.startswith("POST ")]
    assert requests == [f"POST {emulator.url}/batch"] * 2
    bodies = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [len(body["events"]) for body in bodies] == [500, 1]


# -- --print-schema, --help ------------------------------------------------------------------------------------


def test_print_schema_needs_no_configuration(run_sink):
    databricks = run_sink("databricks", args=["--print-schema"])
    assert (databricks.code, databricks.stderr) == (0, ""), databricks
    assert databricks.stdout.startswith("CREATE TABLE IF NOT EXISTS `main`.`default`.`peepshow_runs` (\n")
    named = run_sink("databricks", args=["--print-schema"], env={"DATABRICKS_TABLE": "qa-runs"})
    assert "`main`.`default`.`qa-runs`" in named.stdout
    cql = run_sink("cassandra", args=["--print-schema"])
    assert (cql.code, cql.stderr) == (0, ""), cql
    assert cql.stdout.startswith("CREATE TABLE peepshow_runs (\n  run_id text PRIMARY KEY,")
    keyspace = run_sink("cassandra", args=["--print-schema"], env={"CASSANDRA_KEYSPACE": "ks"})
    assert keyspace.stdout.startswith("CREATE TABLE ks.peepshow_runs (")
    data = run_sink("cassandra", args=["--print-schema"], env={"CASSANDRA_URL": "http://localhost:8181/v1/ks/runs"})
    assert json.loads(data.stdout)["createTable"]["name"] == "runs"
    assert_clean_failure(run_sink("event-track", args=["--print-schema"]), 2)


@pytest.mark.parametrize(("name", "schema"), [("event-track", False), ("databricks", True), ("cassandra", True)])
def test_help_lists_print_schema_only_where_it_works(run_sink, name, schema):
    result = run_sink(name, args=["--help"])
    assert result.code == 0, result
    assert ("--print-schema" in result.stdout) is schema
    for option in ("--dry-run", "--check", "--flush", "--retry-rejected", "--from-index", "--verbose"):
        assert option in result.stdout


def test_a_dry_run_never_sends_so_it_does_not_go_with_flush(run_sink, stargate, spool):
    env = {"CASSANDRA_URL": stargate.url, "CASSANDRA_KEYSPACE": "peepshow", "CASSANDRA_TOKEN": "AstraCS:test-token"}
    stargate.fault("status", status=503, times=None)
    assert run_sink("cassandra", fixture_bytes("run-full.json"), dict(env, PEEPSHOW_SINK_TIMEOUT="1")).code == 5
    stargate.reset()
    result = run_sink("cassandra", b"", env, args=["--flush", "--dry-run"])
    assert_clean_failure(result, 2, "AstraCS:test-token")
    assert "--dry-run does not go with --flush" in result.stderr
    assert stargate.requests == [] and len(list((spool / "cassandra").glob("*.json"))) == 1


# -- the terminal's encoding -----------------------------------------------------------------------------------


def test_an_ascii_terminal_never_crashes_the_output(run_sink, analytics):
    emulator, env = analytics("segment", PYTHONIOENCODING="ascii", EVENT_TRACK_USER_ID="zoë-cli")
    dry_run = run_sink("event-track", fixture_bytes("run-hostile.json"), env, args=["--dry-run"])
    assert (dry_run.code, dry_run.stderr) == (0, ""), dry_run
    assert '"userId":"zo\\xeb-cli"' in dry_run.stdout and '"director":"Zo\\xeb\\nNewline"' in dry_run.stdout
    check = run_sink("event-track", b"", env, args=["--check"])
    assert (check.code, check.stderr) == (0, ""), check
    assert "user id 'zo\\xeb-cli'" in check.stdout
    failure = run_sink(
        "cassandra",
        fixture_bytes("run-hostile.json"),
        {"PYTHONIOENCODING": "ascii", "CASSANDRA_URL": "http://localhost:8082", "CASSANDRA_KEYSPACE": "Zoë"},
    )
    assert_clean_failure(failure, 2)
    assert "CASSANDRA_KEYSPACE='Zo\\xeb' is not a Cassandra name" in failure.stderr
