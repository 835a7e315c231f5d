"""A destination that refuses everything never costs a spooled run (issue 15), for each destination.

404 (a mistyped URL), 401 and 403 (a revoked or rotated credential) during `--flush` and during a backfill: the
replay stops at the first failure, names the variable to fix, rejects nothing, and once the destination is fixed
every run is delivered exactly once. A failure the service pins on one run rejects that run only.
"""

import json
import time

import pytest

from tests.conftest import DESTINATIONS, assert_clean_failure, fixture, load_script

peepshow_sink = load_script("event-track").sink
SCRIPTS = {name: load_script(name) for name in ("event-track", "databricks", "cassandra")}
RUNS = 5
# More than one request may be in flight when the first failure comes back (cassandra sends 8 at a time); a
# replay that did not stop would send one request per run or per batch, every time.
MAX_REQUESTS_AFTER_A_DESTINATION_FAILURE = 8

# What each destination answers, and the variable the one-line reason must name.
NOT_FOUND = {
    "mixpanel": (b"404 page not found", "EVENT_TRACK_ENDPOINT"),
    "amplitude": (b"<html><body>Not Found</body></html>", "EVENT_TRACK_ENDPOINT"),
    "segment": ({"code": "not_found", "message": "Not Found"}, "EVENT_TRACK_ENDPOINT"),
    "databricks": ({"error_code": "ENDPOINT_NOT_FOUND", "message": "No API found for 'POST /sql/statements'"}, None),
    "stargate": (b"", "CASSANDRA_URL"),
    "dataapi": (b"", "CASSANDRA_URL"),  # the Data API's unknown paths are a bare 404
}
DENIED = {
    "mixpanel": ({"code": 401, "error": "Invalid credentials", "status": "Unauthorized"}, "EVENT_TRACK_TOKEN"),
    "amplitude": ({"code": 401, "error": "Invalid API key: amp-api-key"}, "EVENT_TRACK_TOKEN"),
    "segment": ({"code": "unauthorized", "message": "Unauthorized"}, "EVENT_TRACK_TOKEN"),
    "databricks": ({"error_code": 403, "message": "Invalid access token."}, "DATABRICKS_TOKEN"),
    "stargate": ({"description": "Role unauthorized for operation: Not allowed", "code": 401}, "CASSANDRA_TOKEN"),
    "dataapi": (DESTINATIONS["dataapi"][5]["body"], "CASSANDRA_TOKEN"),
}


def failure(name, status):
    body, variable = NOT_FOUND[name] if status == 404 else DENIED[name]
    if name == "databricks" and status == 404:
        variable = "DATABRICKS_URL"
    return body, variable


def runs(prefix, count=RUNS, **overrides):
    """`count` distinct runs as peepshow's manifests carry them (a fixed createdAt each: replays are the same run)."""
    created = time.time() - 3600
    documents = []
    for number in range(count):
        run = dict(fixture("manifest.json"), outputDir=f"/tmp/peepshow-{prefix}-{number}", **overrides)
        run["createdAt"] = peepshow_sink.iso_millis(created + number)
        documents.append(run)
    return documents


def spool_runs(destination, documents, spool, legacy=False):
    """Put runs in the spool the way a failing live delivery leaves them (`legacy`: the way 0.1.0 did)."""
    sink_name = DESTINATIONS[destination.name][0]
    script = SCRIPTS[sink_name]
    env = DESTINATIONS[destination.name][2](destination.emulator)
    config = script.read_config(env)
    label, material = script.destination(config)
    if legacy:
        material = script.legacy_destinations(config)[-1]  # the oldest spelling: 0.1.0's
    directory, key = str(spool / sink_name), peepshow_sink.destination_key(material)
    for document in documents:
        peepshow_sink.spool_put(directory, key, peepshow_sink.derive(document, env), label)
    return spool / sink_name


def run_id(document):
    return document["outputDir"].rsplit("/", 1)[1]


def ndjson(documents):
    return "".join(json.dumps(document) + "\n" for document in documents).encode()


def rejected(directory):
    return sorted(directory.glob("*.rejected")) if directory.exists() else []


@pytest.mark.parametrize("status", [404, 401, 403])
def test_flush_against_a_refusing_destination_keeps_every_run(destination, spool, status):
    directory = spool_runs(destination, runs(f"flush-{status}"), spool)
    body, variable = failure(destination.name, status)
    destination.emulator.fault("status", status=status, body=body, times=None)

    result = destination.run(stdin=b"", args=["--flush"])
    assert_clean_failure(result, 5, destination.secret)
    assert variable in result.stderr, result
    assert "still in the spool" in result.stderr
    assert "delivered 0 spooled run(s)" in result.stdout and f"; {RUNS} left" in result.stdout
    assert len(destination.emulator.requests) <= MAX_REQUESTS_AFTER_A_DESTINATION_FAILURE
    assert len(destination.spooled()) == RUNS and rejected(directory) == []

    destination.emulator.faults.clear()  # fixed: the token re-enabled, the URL answering
    flushed = destination.run(stdin=b"", args=["--flush"])
    assert flushed.code == 0, flushed
    assert f"delivered {RUNS} spooled run(s)" in flushed.stdout and "; 0 left" in flushed.stdout
    assert destination.stored() == RUNS
    assert destination.spooled() == [] and rejected(directory) == []


@pytest.mark.parametrize("status", [404, 401, 403])
def test_backfill_against_a_refusing_destination_stops_and_keeps_every_run(destination, status):
    documents = runs(f"backfill-{status}")
    body, variable = failure(destination.name, status)
    destination.emulator.fault("status", status=status, body=body, times=None)

    result = destination.run(stdin=ndjson(documents))
    assert result.code == 5, result
    assert "Traceback" not in result.stderr and destination.secret not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.split(": ", 1)[1].startswith("stopped: ") and variable in last, result
    assert f"{RUNS} run(s) kept" in last
    assert len(destination.emulator.requests) <= MAX_REQUESTS_AFTER_A_DESTINATION_FAILURE
    assert len(destination.spooled()) == RUNS

    destination.emulator.faults.clear()
    flushed = destination.run(stdin=b"", args=["--flush"])
    assert flushed.code == 0, flushed
    assert destination.stored() == RUNS
    # Running the same backfill again, as its message suggests, sends nothing twice.
    again = destination.run(stdin=ndjson(documents))
    assert again.code == 0, again
    assert f"{RUNS} skipped" in again.stderr
    assert destination.stored() == RUNS


# -- a run the service itself refuses, in the middle of a flush -----------------------------------------------------


def claim_order(destination, documents):
    """The documents in the order a flush claims them (by spool file name), as the requests carry them."""
    env = DESTINATIONS[destination.name][2](destination.emulator)
    return sorted(documents, key=lambda document: peepshow_sink.derive(document, env).identity)


def reject_one(destination, documents):
    """Make the destination refuse documents[2] alone, the way that service does."""
    victim = documents[2]
    emulator = destination.emulator
    if destination.name == "mixpanel":
        # /import refuses an event more than an hour in the future and names it in failed_records.
        victim["createdAt"] = "2099-01-01T00:00:00.000Z"
    elif destination.name == "amplitude":
        # One bad event refuses the whole request, naming its index; the sink sends the others again.
        index = claim_order(destination, documents).index(victim)
        body = {"code": 400, "error": "Invalid field values on some events", "events_with_invalid_fields": {}}
        body["events_with_invalid_fields"]["event_properties"] = [index]
        emulator.fault("status", status=400, body=body, match=run_id(victim))
    elif destination.name == "databricks":
        # A table whose duration is an INT: this run's duration overflows it (SQLSTATE 22003), the others fit.
        columns = [(name, "INT" if name == "duration" else kind) for name, kind in SCRIPTS["databricks"].COLUMNS]
        emulator.create_table("main.default.peepshow_runs", columns)
        victim["video"] = dict(victim["video"], durationSeconds=1e12)
    elif destination.name == "dataapi":
        # A table made by hand with an ascii title: the Data API refuses this run's title alone (scope DOCUMENT),
        # and writes the other rows of the same insertMany.
        columns = dict(SCRIPTS["cassandra"].COLUMNS, title="ascii")
        emulator.add_table("peepshow", "peepshow_runs", columns)
        victim["input"] = dict(victim.get("input") or {}, filename="café.mov")
    else:
        problem = (
            "Invalid path for row to create, problem: Failed to deserialize field 'peepshow_runs.frames', "
            "problem: Cannot coerce String value into expected protobuf type: TypeSpec.Basic.LONG"
        )
        emulator.fault("status", status=400, body={"description": problem, "code": 400}, match=run_id(victim))
    return victim


# Segment has no such failure: its batch API answers 200 for a batch whatever its events hold.
@pytest.mark.parametrize("destination", ["mixpanel", "amplitude", "databricks", "stargate", "dataapi"], indirect=True)
def test_a_run_refused_in_the_middle_of_a_flush_is_the_only_one_rejected(destination, spool):
    documents = runs("reject")
    victim = reject_one(destination, documents)
    directory = spool_runs(destination, documents, spool)

    result = destination.run(stdin=b"", args=["--flush"])
    assert result.code == 5, result
    assert "Traceback" not in result.stderr and destination.secret not in result.stderr
    lines = result.stderr.strip().splitlines()
    refused = [line for line in lines if " rejected: " in line]
    assert len(refused) == 1 and run_id(victim) in refused[0], result
    assert "this flush rejected 1 run(s)" in lines[-1]
    assert "1 rejected by this flush" in result.stdout and "--retry-rejected" in result.stdout
    assert destination.stored() == RUNS - 1
    assert destination.spooled() == [] and len(rejected(directory)) == 1

    # A later flush tells that the rejected run is still kept, and exits 0: nothing is left to deliver.
    again = destination.run(stdin=b"", args=["--flush"])
    assert again.code == 0, again
    assert "1 rejected run(s) kept as *.rejected" in again.stdout


@pytest.mark.parametrize("destination", ["stargate"], indirect=True)
def test_retry_rejected_delivers_a_run_once_its_cause_is_fixed(destination, spool):
    documents = runs("retry")
    reject_one(destination, documents)
    directory = spool_runs(destination, documents, spool)
    assert destination.run(stdin=b"", args=["--flush"]).code == 5
    assert len(rejected(directory)) == 1

    destination.emulator.faults.clear()  # the cause fixed (a column type altered, say)
    result = destination.run(stdin=b"", args=["--flush", "--retry-rejected"])
    assert result.code == 0, result
    assert "1 rejected run(s) were queued again" in result.stdout and "delivered 1 " in result.stdout
    assert destination.stored() == RUNS and rejected(directory) == []


def test_retry_rejected_goes_with_flush(run_sink):
    result = run_sink("cassandra", b"", {}, args=["--retry-rejected"])
    assert_clean_failure(result, 2)
    assert "--flush" in result.stderr


def test_runs_spooled_by_0_1_0_are_delivered_by_this_version(destination, spool):
    # 0.1.0 named a destination with its token (and endpoint or warehouse): its runs must not be orphaned.
    spool_runs(destination, runs("legacy"), spool, legacy=True)
    result = destination.run(stdin=b"", args=["--flush"])
    assert result.code == 0, result
    assert f"delivered {RUNS} spooled run(s)" in result.stdout and "; 0 left" in result.stdout
    assert destination.stored() == RUNS and destination.spooled() == []
