"""Tables as users really have them, and a record of delivered runs that never skips a new one (issue 23), plus
backfills that can be rerun (issue 19): what the helper does with refused runs, the record, names and dates, and
what the terminal shows."""

import json
import os
import subprocess

import pytest

from tests.conftest import DESTINATIONS, NO_PTY, WINDOWS, fixture, fixture_bytes, load_script
from tests.test_destination_failures import ndjson, rejected, runs

db = load_script("databricks")
cassandra = load_script("cassandra")
peepshow_sink = db.sink
TABLE = "main.default.peepshow_runs"


def databricks_env(emulator, **overrides):
    env = {"DATABRICKS_URL": emulator.url, "DATABRICKS_TOKEN": "dapi-test-token", "DATABRICKS_WAREHOUSE_ID": "wh-1"}
    return dict(env, **overrides)


# -- a table that refuses every run alike keeps them all -----------------------------------------------------------

# A table made by hand that refuses every run the same way, and what the service's refusal names.
WRONG_TABLES = {
    "databricks": lambda emulator: emulator.create_table(
        TABLE, [(name, "INT" if name == "title" else kind) for name, kind in db.COLUMNS]
    ),
    "dataapi": lambda emulator: emulator.add_table(
        "peepshow", "peepshow_runs", dict(cassandra.COLUMNS, tags="map<text, text>")
    ),
}


@pytest.mark.parametrize("destination", sorted(WRONG_TABLES), indirect=True)
def test_a_table_that_refuses_every_run_alike_costs_no_run(destination):
    WRONG_TABLES[destination.name](destination.emulator)
    live = destination.run()
    assert live.code == 5, live
    assert "was kept" in live.stderr and "--check" in live.stderr, live
    assert len(destination.spooled()) == 1

    result = destination.run(stdin=ndjson(runs("table-at-fault", 3)))
    assert result.code == 5, result
    last = result.stderr.strip().splitlines()[-1]
    assert "stopped: " in last and "3 run(s) kept" in last and "--check" in last, result
    assert " rejected" not in result.stderr
    assert len(destination.spooled()) == 4 and rejected(destination.spooled()[0].parent) == []

    # The table fixed (here: dropped, so the sink creates it as it should be), every kept run is delivered.
    if destination.name == "databricks":
        destination.emulator.drop_table(TABLE)
    else:
        destination.emulator.keyspaces["peepshow"].pop("peepshow_runs")
    flushed = destination.run(stdin=b"", args=["--flush"])
    assert flushed.code == 0, flushed
    assert destination.stored() == 4 and destination.spooled() == []


# -- the record of delivered runs ----------------------------------------------------------------------------------


def manifests(tmp_path, names):
    """A run folder with a manifest.json for each name (…/<name>/out, the same folder name every time)."""
    folders = []
    for name in names:
        number = ord(name[0]) - ord("a")
        folder = tmp_path / name / "out"
        folder.mkdir(parents=True)
        run = dict(fixture("manifest.json"), outputDir=str(folder), runId=f"run-{name}")
        run["createdAt"] = f"2026-10-{number + 1:02d}T10:00:00.000Z"
        run["frames"] = [{"path": f"{folder}/frame_0001.jpg", "bytes": 1000 + number}]
        (folder / "manifest.json").write_text(json.dumps(run))
        folders.append(folder)
    return folders


def test_a_backfill_never_skips_a_run_only_because_its_folder_name_was_delivered(run_sink, analytics, tmp_path):
    emulator, env = analytics("segment")
    (live,) = manifests(tmp_path / "live", ["z"])
    run = json.loads((live / "manifest.json").read_text())
    for key in ("runId", "createdAt", "input"):  # what `--emit json` prints for the same run
        run.pop(key)
    assert run_sink("event-track", run, env).code == 0
    folders = manifests(tmp_path, ["a", "b", "c"])
    result = run_sink("event-track", b"", env, args=[str(folder) for folder in [*folders, live]])
    assert result.code == 0, result
    assert result.stderr.strip().endswith("3 delivered, 1 skipped as already delivered"), result
    assert len(emulator.events) == 4


def test_a_backfill_from_the_index_skips_delivered_and_gone_runs_and_can_resend(run_sink, databricks, tmp_path):
    env = databricks_env(databricks)
    folders = manifests(tmp_path, ["a", "b", "c", "d"])
    index = tmp_path / "index.ndjson"
    index.write_text(
        "".join(json.dumps({"runId": f"run-{f.parent.name}", "outputDir": str(f)}) + "\n" for f in folders)
    )
    first = run_sink("databricks", b"", env, args=["--from-index", str(index)])
    assert first.code == 0 and "4 delivered" in first.stderr, first

    for folder in folders[:2]:  # /tmp cleaned: two runs' folders are gone
        (folder / "manifest.json").unlink()
    (new,) = manifests(tmp_path / "later", ["e"])
    with index.open("a") as handle:
        handle.write(json.dumps({"runId": "run-e", "outputDir": str(new)}) + "\n")
        handle.write(json.dumps({"runId": "run-gone", "outputDir": str(tmp_path / "gone" / "out")}) + "\n")
    again = run_sink("databricks", b"", env, args=["--from-index", str(index)])
    assert again.code == 0, again
    assert again.stderr.strip().endswith(
        "1 delivered, 4 skipped as already delivered, 1 skipped as gone (their files no longer exist)"
    ), again
    assert len(databricks.rows(TABLE)) == 5

    # The table dropped: --resend sends every run whose files remain, and the MERGE still keeps one copy each.
    databricks.drop_table(TABLE)
    resent = run_sink("databricks", b"", env, args=["--from-index", str(index), "--resend"])
    assert resent.code == 0, resent
    assert "3 delivered" in resent.stderr and "3 skipped as gone" in resent.stderr
    assert len(databricks.rows(TABLE)) == 3


def test_one_table_spelled_two_ways_is_one_destination(run_sink, databricks):
    env = databricks_env(databricks)
    databricks.fault("status", status=503, times=None)
    outage = dict(env, DATABRICKS_TABLE="Peepshow_Runs", PEEPSHOW_SINK_TIMEOUT="1.5")
    kept = run_sink("databricks", fixture_bytes("run-full.json"), outage)
    assert kept.code == 5, kept
    databricks.faults.clear()
    flushed = run_sink("databricks", b"", dict(env, DATABRICKS_TABLE="peepshow_runs"), args=["--flush"])
    assert flushed.code == 0 and "delivered 1 spooled run(s)" in flushed.stdout, flushed
    again = run_sink("databricks", fixture_bytes("run-full.json"), dict(env, DATABRICKS_TABLE="PEEPSHOW_RUNS"))
    assert again.code == 0, again
    assert len(databricks.rows(TABLE)) == 1


def test_records_and_runs_kept_by_0_2_0_keep_working(run_sink, databricks, spool):
    env = databricks_env(databricks, DATABRICKS_TABLE="Peepshow_Runs")
    config = db.read_config(env)
    older = peepshow_sink.destination_key(db.legacy_destinations(config)[0])  # 0.2.0 kept the spelling as given
    directory = spool / "databricks"
    directory.mkdir(parents=True)
    (directory / f"delivered-{older}.txt").write_text("peepshow-delivered-by-0.2.0\n")
    document = dict(fixture("manifest.json"), outputDir="/tmp/peepshow-delivered-by-0.2.0")
    result = run_sink("databricks", ndjson([document, dict(document, outputDir="/tmp/peepshow-new")]), env)
    assert result.code == 0, result
    assert "1 delivered, 1 skipped as already delivered" in result.stderr
    assert len(databricks.rows(TABLE)) == 1


# -- dates and bytes -----------------------------------------------------------------------------------------------


def test_a_created_at_no_destination_can_carry_is_one_malformed_document(run_sink, analytics):
    emulator, env = analytics("segment")
    documents = runs("dates", 3)
    documents[0]["createdAt"] = "9999-12-31T23:30:00-01:00"  # year 10000 in UTC
    documents[1]["createdAt"] = "0001-01-01T00:00:00Z"
    result = run_sink("event-track", ndjson(documents), env)
    assert result.code == 4, result
    assert "createdAt '9999-12-31T23:30:00-01:00' is outside the years 1000-9999" in result.stderr
    assert "document 2 on stdin: createdAt '0001-01-01T00:00:00Z'" in result.stderr
    assert result.stderr.strip().endswith("1 delivered, 2 malformed")
    assert [event["timestamp"][:5] for event in emulator.events] == [documents[2]["createdAt"][:5]]


def test_created_at_always_has_four_digits_of_year():
    assert peepshow_sink.iso_millis(-30610224000.0) == "1000-01-01T00:00:00.000Z"
    row = peepshow_sink.derive({"outputDir": "/x", "createdAt": "1000-01-01T00:00:00+00:00"}, {})
    assert row.created_at == "1000-01-01T00:00:00.000Z"


def test_mixpanel_gets_whole_json_tags_within_255_bytes(run_sink, analytics):
    emulator, env = analytics("mixpanel")
    run = fixture("run-full.json")
    run["video"]["tags"] = {"title": "日本語のタイトル", "comment": "とても長いコメント" * 40, "director": "監督" * 100}
    assert run_sink("event-track", json.dumps(run, ensure_ascii=False), env).code == 0
    (event,) = emulator.events
    tags = event["properties"]["tags"]
    assert len(tags.encode("utf-8")) <= 255
    assert json.loads(tags)["title"] == "日本語のタイトル"
    assert len(event["properties"]["director"].encode("utf-8")) <= 255


# -- the terminal --------------------------------------------------------------------------------------------------


def on_a_terminal(sink_process, name, env, args=(), stdin=b""):
    """Run a zipapp with its stderr on a pseudo-terminal; the lines as the terminal shows them."""
    import pty

    command, full_env = sink_process(name, env, args)
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen(
            command, env=full_env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=follower
        )
        os.close(follower)
        process.stdin.write(stdin)
        process.stdin.close()
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the other end closed (EIO on Linux)
                break
            if not chunk:
                break
            chunks.append(chunk)
        process.wait(timeout=60)
    finally:
        os.close(leader)
    raw = b"".join(chunks).decode()
    # A carriage return goes back to the line's start and ESC[K erases the rest: what is left is what shows.
    shown = [line.rsplit("\r", 1)[-1].replace("\x1b[K", "") for line in raw.replace("\r\n", "\n").split("\n")]
    return process.returncode, raw, [line for line in shown if line]


@pytest.mark.skipif(WINDOWS, reason=NO_PTY)
def test_on_a_terminal_progress_and_messages_never_share_a_line(sink_process, segment):
    env = DESTINATIONS["segment"][2](segment)
    documents = runs("terminal", 5)
    documents[1]["outputDir"] = "/tmp/peepshow-terminal-poison"
    refusal = {"code": "invalid_request", "message": "Invalid JSON"}
    segment.fault("status", status=400, body=refusal, match="poison", times=None)
    code, raw, shown = on_a_terminal(sink_process, "event-track", env, stdin=ndjson(documents))
    assert code == 5, raw
    assert "delivered so far" in raw
    rejection = [line for line in shown if " rejected: " in line]
    assert len(rejection) == 1 and rejection[0].startswith("event-track: run peepshow-terminal-poison rejected")
    assert not any("delivered so far" in line and "rejected" in line for line in shown), shown
    assert shown[-2] == "event-track: 4 delivered, 1 rejected (set aside as *.rejected)", shown


@pytest.mark.skipif(WINDOWS, reason=NO_PTY)
def test_on_a_terminal_a_flush_shows_its_progress(sink_process, segment, spool):
    env = DESTINATIONS["segment"][2](segment)
    segment.fault("status", status=503, times=None)
    for document in runs("flush-progress", 3):
        command, full_env = sink_process("event-track", dict(env, PEEPSHOW_SINK_TIMEOUT="0.5"))
        subprocess.run(command, input=json.dumps(document).encode(), env=full_env, capture_output=True, check=False)
    segment.faults.clear()
    code, raw, shown = on_a_terminal(sink_process, "event-track", env, args=["--flush"])
    assert code == 0, raw
    assert "event-track: 3 delivered so far" in raw
    assert not any("delivered so far" in line for line in shown)  # cleared before the summary
