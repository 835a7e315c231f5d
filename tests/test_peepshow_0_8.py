"""The run as peepshow 0.8 sends it (issue 19): `frames` from `extraction.framesEmitted` when the list is left out,
numeric tag values as text, the agent, client and session peepshow sets in the sink's environment, and every other
0.8 field accepted. Pure derivations first, then the same run through the three built zipapps."""

import json
import sys
import urllib.parse

import pytest

from tests.conftest import ROOT, fixture, load_script

sys.path.insert(0, str(ROOT / "lib"))
import peepshow_sink as sink  # noqa: E402

event_track = load_script("event-track")


def run_08():
    """A manifest as peepshow 0.8 writes it, without the frames list, with tags ffprobe parsed as numbers."""
    run = fixture("manifest.json")
    del run["frames"]
    run["outputDir"] = "/tmp/peepshow-08run"
    run["extraction"] = {"strategy": "scene", "threshold": 0.3, "framesEmitted": 3, "elapsedMs": 12.5}
    run["video"]["tags"] = {"title": 2024, "track": 7, "gain": -3.5, "comment": "kept", "flags": None}
    run["sinks"] = [{"name": "event-track", "when": {"extension": ["mp4"]}}]
    run["agent"] = {"name": "claude-code", "version": "2.1.0"}
    return run


@pytest.mark.parametrize(
    ("frames", "extraction", "count"),
    [
        (None, {"framesEmitted": 3}, 3),
        ("absent", {"framesEmitted": 3}, 3),
        ("absent", {"framesEmitted": "4"}, 4),
        ("absent", {"framesEmitted": 3.0}, 3),
        ("absent", {"framesEmitted": 2.5}, 0),
        ("absent", {"framesEmitted": -1}, 0),
        ("absent", {"framesEmitted": True}, 0),
        ("absent", None, 0),
        ([], {"framesEmitted": 3}, 0),  # a list that is there is the count, even when empty
        ([{"path": "a.jpg"}], {"framesEmitted": 3}, 1),
    ],
)
def test_frames_fall_back_to_frames_emitted(frames, extraction, count):
    run = {"outputDir": "/tmp/r", "extraction": extraction}
    if frames != "absent":
        run["frames"] = frames
    assert sink.derive(run, {}).frames == count


def test_numeric_tags_become_text_and_a_numeric_title_is_the_title():
    row = sink.derive(run_08(), {})
    assert row.title == "2024"
    assert json.loads(row.tags) == {"title": "2024", "track": "7", "gain": "-3.5", "comment": "kept", "flags": None}
    assert json.loads(row.tags)["track"] == "7"
    assert sink.derive({"outputDir": "/tmp/r", "video": {"tags": {"title": True, "show": 12}}}, {}).title == "12"
    assert sink.derive({"outputDir": "/tmp/r", "video": {"tags": {"title": 0}}}, {}).title == "0"


def test_agent_client_and_session_are_bounded_like_the_other_strings():
    env = {"EVENT_TRACK_TOKEN": "t0ken", "EVENT_TRACK_USER_ID": "peepshow-cli", "PEEPSHOW_AGENT": "claude-code"}
    env["PEEPSHOW_SESSION"] = "é" * 2000
    env["PEEPSHOW_CLIENT"] = " "  # empty counts as unset
    row = sink.derive(run_08(), {}, now=0)
    mixpanel = event_track.mixpanel_event(row, event_track.read_config(dict(env, EVENT_TRACK_PROVIDER="mixpanel")))
    assert mixpanel["properties"]["agent"] == "claude-code" and "client" not in mixpanel["properties"]
    assert mixpanel["properties"]["session"] == "é" * 127  # Mixpanel keeps 255 bytes of UTF-8
    amplitude = event_track.amplitude_event(row, event_track.read_config(dict(env, EVENT_TRACK_PROVIDER="amplitude")))
    assert amplitude["event_properties"]["session"] == "é" * 1024  # Amplitude keeps 1024 characters
    segment = event_track.segment_event(row, event_track.read_config(dict(env, EVENT_TRACK_PROVIDER="segment")))
    assert len(segment["properties"]["session"].encode()) <= 1024
    unset = dict(env, EVENT_TRACK_PROVIDER="segment", PEEPSHOW_AGENT=None, PEEPSHOW_SESSION=None)
    bare = event_track.segment_event(row, event_track.read_config(unset))
    assert {"agent", "client", "session"}.isdisjoint(bare["properties"])


# -- the same run through the three zipapps ----------------------------------------------------------------------

AGENT = {"PEEPSHOW_AGENT": "claude-code", "PEEPSHOW_CLIENT": "cursor", "PEEPSHOW_SESSION": "sess-8f2c"}


def test_event_track_sends_frames_title_and_the_agent(run_sink, analytics):
    emulator, env = analytics("segment", **AGENT)
    result = run_sink("event-track", run_08(), env)
    assert (result.code, result.stderr) == (0, ""), result
    (event,) = emulator.events
    properties = event["properties"]
    assert properties["frames"] == 3
    assert (properties["agent"], properties["client"], properties["session"]) == ("claude-code", "cursor", "sess-8f2c")
    assert json.loads(properties["tags"])["title"] == "2024"
    mixpanel, env = analytics("mixpanel", **AGENT)
    dry_run = run_sink("event-track", run_08(), env, args=["--dry-run"])
    body = dry_run.stdout.split("\n\n", 1)[1]
    events = json.loads(body) if body.startswith("[") else [json.loads(urllib.parse.parse_qs(body)["data"][0])]
    assert events[0]["properties"]["agent"] == "claude-code" and events[0]["properties"]["frames"] == 3


def test_databricks_and_cassandra_store_frames_and_title(run_sink, databricks, stargate):
    env = {"DATABRICKS_URL": databricks.url, "DATABRICKS_TOKEN": "dapi-test-token", "DATABRICKS_WAREHOUSE_ID": "wh-1"}
    result = run_sink("databricks", run_08(), dict(env, **AGENT))
    assert (result.code, result.stderr) == (0, ""), result
    (row,) = databricks.tables["main.default.peepshow_runs"]["rows"]
    assert (row["frames"], row["title"]) == (3, "2024")
    env = {
        "CASSANDRA_URL": stargate.url + "/v2",
        "CASSANDRA_KEYSPACE": "peepshow",
        "CASSANDRA_TOKEN": "AstraCS:test-token",
    }
    result = run_sink("cassandra", run_08(), dict(env, **AGENT))
    assert (result.code, result.stderr) == (0, ""), result
    (row,) = stargate.rows("peepshow", "peepshow_runs")
    assert (row["frames"], row["title"]) == (3, "2024")
    assert json.loads(row["tags"])["track"] == "7"
