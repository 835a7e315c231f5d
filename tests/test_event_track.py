"""event-track, run as users run it: the built zipapp, a payload on stdin, the emulators as providers."""

import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import (
    DIST,
    FIXTURE_NAMES,
    NO_PTY,
    TOKENS,
    WINDOWS,
    assert_clean_failure,
    fixture,
    fixture_bytes,
    load_script,
)

PROVIDERS = ("mixpanel", "amplitude", "segment")


event_track = load_script("event-track")


def properties(provider, event):
    if provider == "mixpanel":
        return event["properties"]
    if provider == "amplitude":
        return event["event_properties"]
    return event["properties"]


def everything_printed(result):
    return result.stdout + result.stderr


# -- every fixture, every provider ---------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_every_fixture_is_one_event(run_sink, analytics, provider, name):
    emulator, env = analytics(provider)
    result = run_sink("event-track", fixture_bytes(name), env)
    assert result.code == 0, result
    assert result.stderr == "" and result.stdout == ""
    assert len(emulator.events) == 1, emulator.events
    props = properties(provider, emulator.events[0])
    payload = fixture(name)
    assert props["frames"] == len(payload["frames"])
    assert props["strategy"] == payload["strategy"]
    assert props["output_dir"] == payload["outputDir"]
    assert json.loads(props["tags"]) == payload["video"].get("tags", {})
    assert None not in props.values()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_full_run_properties(run_sink, analytics, provider):
    emulator, env = analytics(provider)
    assert run_sink("event-track", fixture_bytes("run-full.json"), env).code == 0
    props = properties(provider, emulator.events[0])
    expected = {
        "strategy": "scene",
        "frames": 3,
        "codec": "h264",
        "output_dir": "/tmp/peepshow-7f3kq2",
        "duration_s": 42.0,
        "width": 1920,
        "height": 1080,
        "director": "QA Team",
        "studio": "Acme Mobile",
        "transcript_language": "en",
        "audio_duration_s": 41.9,
        "silence_ratio": 0.18,
    }
    assert {key: props[key] for key in expected} == expected
    assert json.loads(props["tags"])["title"] == "Checkout flicker repro"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_unknown_values_are_left_out(run_sink, analytics, provider):
    emulator, env = analytics(provider)
    assert run_sink("event-track", fixture_bytes("run-minimal.json"), env).code == 0
    props = properties(provider, emulator.events[0])
    for absent in ("duration_s", "width", "height", "director", "studio", "transcript_language", "silence_ratio"):
        assert absent not in props
    assert props["codec"] == "gif"
    assert props["tags"] == "{}"


def test_numeric_strings_are_numbers(run_sink, analytics):
    emulator, env = analytics("amplitude")
    assert run_sink("event-track", fixture_bytes("run-hostile.json"), env).code == 0
    props = emulator.events[0]["event_properties"]
    assert props["duration_s"] == 12.5
    assert props["director"] == "Zoë\nNewline"
    assert props["transcript_language"] == "de"


def test_wire_details_per_provider(run_sink, analytics):
    emulator, env = analytics("mixpanel")
    assert run_sink("event-track", fixture_bytes("run-full.json"), env).code == 0
    request = emulator.requests[-1]
    form = request.form()
    assert request.content_type == "application/x-www-form-urlencoded"
    assert form["verbose"] == ["1"] and form["ip"] == ["0"]
    event = json.loads(form["data"][0])
    assert isinstance(event["properties"]["time"], int) and event["properties"]["time"] > 10**12
    assert len(event["properties"]["$insert_id"]) <= 36
    assert "authorization" not in request.headers

    emulator, env = analytics("segment")
    assert run_sink("event-track", fixture_bytes("run-full.json"), env).code == 0
    request = emulator.requests[-1]
    assert request.headers["authorization"] == "Basic c2VnLXdyaXRlLWtleTo="  # base64("seg-write-key:")
    message = request.json()
    assert message["timestamp"].endswith("Z") and len(message["timestamp"]) == 24
    assert message["context"]["library"]["name"] == "peepshow-sinks"
    assert message["sentAt"]


def test_manifest_created_at_is_the_event_time(run_sink, analytics):
    emulator, env = analytics("segment")
    assert run_sink("event-track", fixture_bytes("manifest.json"), env).code == 0
    assert emulator.events[0]["timestamp"] == "2026-11-20T09:14:03.123Z"


def test_amplitude_refuses_its_own_placeholders(run_sink, analytics):
    _, env = analytics("amplitude", EVENT_TRACK_USER_ID="LMY47D")
    assert_clean_failure(run_sink("event-track", fixture_bytes("run-full.json"), env), 2, TOKENS["amplitude"])


def test_amplitude_short_user_id_uses_min_id_length(run_sink, analytics):
    emulator, env = analytics("amplitude", EVENT_TRACK_USER_ID="ana")
    result = run_sink("event-track", fixture_bytes("run-full.json"), env)
    assert result.code == 0, result
    assert emulator.requests[-1].json()["options"] == {"min_id_length": 3}
    assert emulator.events[0]["user_id"] == "ana"


def test_mixpanel_tags_never_cut_into_broken_json(run_sink, analytics):
    emulator, env = analytics("mixpanel")
    payload = fixture("run-full.json")
    payload["video"]["tags"]["comment"] = "x" * 400
    payload["video"]["tags"]["description"] = "é" * 300
    assert run_sink("event-track", payload, env).code == 0
    tags_text = emulator.events[0]["properties"]["tags"]
    assert len(tags_text) <= 255
    tags = json.loads(tags_text)
    assert tags["title"] == "Checkout flicker repro"


def test_custom_event_name(run_sink, analytics):
    emulator, env = analytics("segment", EVENT_TRACK_EVENT_NAME="video_extracted")
    assert run_sink("event-track", fixture_bytes("run-minimal.json"), env).code == 0
    assert emulator.events[0]["event"] == "video_extracted"


# -- retries and dedup ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_retry_then_success_stores_exactly_one_event(run_sink, analytics, provider):
    emulator, env = analytics(provider)
    emulator.fault("status", status=503, times=1)
    emulator.fault("drop", times=1)
    result = run_sink("event-track", fixture_bytes("run-full.json"), env)
    assert result.code == 0, result
    assert len(emulator.requests) == 3
    assert len(emulator.events) == 1
    bodies = [request.body for request in emulator.requests]
    if provider != "segment":  # Segment's sentAt is fresh per attempt; everything else is byte-identical
        assert bodies[0] == bodies[2]


def test_retry_after_is_honoured(run_sink, analytics):
    emulator, env = analytics("mixpanel")
    emulator.fault("status", status=429, headers={"Retry-After": "1"})
    result = run_sink("event-track", fixture_bytes("run-full.json"), env)
    assert result.code == 0, result
    gap = emulator.requests[1].received_at - emulator.requests[0].received_at
    assert gap >= 0.95
    assert len(emulator.events) == 1


def test_replayed_run_is_deduplicated_by_the_provider(run_sink, analytics):
    # The record of delivered runs spares the third request; without it (no spool) the dedup id absorbs it.
    for provider in PROVIDERS:
        emulator, env = analytics(provider)
        for spool in ("on", "on", "off"):
            assert (
                run_sink("event-track", fixture_bytes("manifest.json"), dict(env, PEEPSHOW_SINK_SPOOL=spool)).code == 0
            )
        assert len(emulator.events) == 1, provider
        first, second = (request.body for request in emulator.requests)
        if provider != "segment":
            assert first == second


# -- failures ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["EVENT_TRACK_PROVIDER", "EVENT_TRACK_TOKEN", "EVENT_TRACK_USER_ID"])
def test_each_required_variable(run_sink, analytics, missing):
    _, env = analytics("amplitude")
    env[missing] = ""
    result = run_sink("event-track", fixture_bytes("run-full.json"), env)
    assert_clean_failure(result, 2, TOKENS["amplitude"])
    assert missing in result.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("EVENT_TRACK_PROVIDER", "posthog"),
        ("EVENT_TRACK_USER_ID", "anonymous"),
        ("EVENT_TRACK_USER_ID", "null"),
        ("EVENT_TRACK_USER_ID", "<nil>"),
        ("EVENT_TRACK_ENDPOINT", "ftp://example.com/track"),
        ("EVENT_TRACK_ENDPOINT", "http://api.example.com/track"),
        ("EVENT_TRACK_REGION", "mars"),
        ("PEEPSHOW_SINK_TIMEOUT", "soon"),
    ],
)
def test_invalid_configuration(run_sink, analytics, variable, value):
    _, env = analytics("mixpanel", **{variable: value})
    result = run_sink("event-track", fixture_bytes("run-full.json"), env)
    assert_clean_failure(result, 2, TOKENS["mixpanel"])
    assert variable in result.stderr


@pytest.mark.parametrize(
    ("stdin", "reason"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'"a string"', "not a JSON object"),
        (b'{"outputDir": "/tmp/x", "frames": [', "truncated"),
        (b'{"outputDir": "/tmp/\xff\xfe"}', "UTF-8"),
        (b'{"strategy": "scene"}', "outputDir"),
        (b'{"outputDir": "/"}', "outputDir"),
    ],
)
def test_bad_stdin_exits_4(run_sink, analytics, stdin, reason):
    emulator, env = analytics("segment")
    result = run_sink("event-track", stdin, env)
    assert_clean_failure(result, 4, TOKENS["segment"])
    assert reason in result.stderr
    assert emulator.requests == []


def test_mixpanel_status_0_is_a_failure(run_sink, analytics):
    emulator, env = analytics("mixpanel")
    payload = fixture("run-full.json")
    # /track answers HTTP 200 {"status": 0, "error": ...} for a missing token; an empty-string token is one.
    emulator.fault("status", status=200, body={"status": 0, "error": "token, missing or empty"})
    result = run_sink("event-track", payload, env)
    assert_clean_failure(result, 5, TOKENS["mixpanel"])
    assert "token, missing or empty" in result.stderr
    assert len(emulator.requests) == 1


def test_amplitude_invalid_key_is_redacted(run_sink, analytics):
    emulator, env = analytics("amplitude", EVENT_TRACK_TOKEN="wrong-amplitude-key-123")
    result = run_sink("event-track", fixture_bytes("run-full.json"), env)
    assert_clean_failure(result, 5, "wrong-amplitude-key-123")
    assert "Invalid API key" in result.stderr
    assert len(emulator.requests) == 1  # a 400 is never retried


def test_amplitude_names_the_bad_field(run_sink, analytics):
    emulator, env = analytics("amplitude")
    emulator.fault(
        "status",
        status=400,
        body={"code": 400, "error": "Invalid field values on some events", "events_with_invalid_fields": {"time": [0]}},
    )
    result = run_sink("event-track", fixture_bytes("run-full.json"), env)
    assert_clean_failure(result, 5, TOKENS["amplitude"])
    assert "time" in result.stderr


def test_segment_rejection(run_sink, analytics):
    emulator, env = analytics("segment")
    emulator.fault("status", status=400, body={"success": False, "message": "Invalid JSON"})
    result = run_sink("event-track", fixture_bytes("run-full.json"), env)
    assert_clean_failure(result, 5, TOKENS["segment"])
    assert "Invalid JSON" in result.stderr


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failure_is_not_retried(run_sink, analytics, status):
    emulator, env = analytics("segment")
    emulator.fault("status", status=status, body={"message": "Unauthorized"})
    result = run_sink("event-track", fixture_bytes("run-full.json"), env)
    assert_clean_failure(result, 5, TOKENS["segment"])
    assert "EVENT_TRACK_TOKEN" in result.stderr
    assert len(emulator.requests) == 1


def test_connection_refused(run_sink, analytics, unused_port):
    _, env = analytics(
        "amplitude", EVENT_TRACK_ENDPOINT=f"http://127.0.0.1:{unused_port}/2/httpapi", PEEPSHOW_SINK_TIMEOUT="2"
    )
    result = run_sink("event-track", fixture_bytes("run-full.json"), env)
    assert_clean_failure(result, 5, TOKENS["amplitude"])
    assert "connect" in result.stderr


# -- the command line ----------------------------------------------------------------------------------------------


def test_dry_run_prints_and_sends_nothing(run_sink, analytics):
    emulator, env = analytics("segment")
    result = run_sink("event-track", fixture_bytes("run-full.json"), env, args=["--dry-run"])
    assert result.code == 0, result
    which, request = result.stdout.split("\n", 1)
    assert which == f"# event-track: segment: single runs to {emulator.url}/v1/track, backfills and --flush to " + (
        f"{emulator.url}/v1/batch (EVENT_TRACK_ENDPOINT)"
    )
    assert request.startswith(f"POST {emulator.url}/v1/track\n")
    assert "Authorization: Basic ***" in result.stdout
    assert TOKENS["segment"] not in result.stdout and "c2VnLXdyaXRlLWtleTo" not in result.stdout
    assert emulator.requests == []


def test_help_version_and_unknown_option(run_sink):
    result = run_sink("event-track", args=["--help"])
    assert result.code == 0
    for needle in ("EVENT_TRACK_PROVIDER", "EVENT_TRACK_TOKEN", "EVENT_TRACK_USER_ID", "Exit codes", "--dry-run"):
        assert needle in result.stdout
    result = run_sink("event-track", args=["--version"])
    assert result.code == 0 and result.stdout.startswith("event-track ")
    assert_clean_failure(run_sink("event-track", args=["--frobnicate"]), 2)


# -- pure functions ------------------------------------------------------------------------------------------------


def test_fit_json_shortens_values_not_the_json():
    tags = {"title": "t" * 1000, "comment": "c" * 10, "nested": {"a": 1}}
    text = event_track.sink.fit_json(tags, 255)
    assert len(text) <= 255
    decoded = json.loads(text)
    assert decoded["comment"] == "c" * 10 and decoded["nested"] == {"a": 1}
    assert decoded["title"].startswith("ttt")
    many = {f"key{i}": 123456 for i in range(100)}
    assert len(event_track.sink.fit_json(many, 255)) <= 255
    assert json.loads(event_track.sink.fit_json(many, 255))


def test_batch_url_replaces_the_last_segment_or_the_whole_path():
    assert event_track.batch_url("https://api.mixpanel.com/track", "import") == "https://api.mixpanel.com/import"
    assert event_track.batch_url("https://x.example/v1/track?x=1", "batch") == "https://x.example/v1/batch?x=1"
    assert event_track.batch_url("https://api2.amplitude.com/2/httpapi", "/batch") == "https://api2.amplitude.com/batch"
    assert (
        event_track.batch_url("http://127.0.0.1:8080/amp/2/httpapi?a=1", "/batch") == "http://127.0.0.1:8080/batch?a=1"
    )


# -- regions and preflight -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "region", "url"),
    [
        ("mixpanel", "us", "https://api.mixpanel.com/track"),
        ("mixpanel", "eu", "https://api-eu.mixpanel.com/track"),
        ("mixpanel", "in", "https://api-in.mixpanel.com/track"),
        ("amplitude", "eu", "https://api.eu.amplitude.com/2/httpapi"),
        ("segment", "EU", "https://events.eu1.segmentapis.com/v1/track"),
        ("segment", None, "https://api.segment.io/v1/track"),
    ],
)
def test_region_picks_the_regional_host(run_sink, provider, region, url):
    env = {
        "EVENT_TRACK_PROVIDER": provider,
        "EVENT_TRACK_TOKEN": TOKENS[provider],
        "EVENT_TRACK_USER_ID": "peepshow-cli",
        "EVENT_TRACK_REGION": region,
    }
    result = run_sink("event-track", fixture_bytes("run-full.json"), env, args=["--dry-run"])
    assert result.code == 0, result
    assert result.stdout.split("\n", 1)[1].startswith(f"POST {url}\n")
    assert f"(region {(region or 'us').lower()})" in result.stdout.split("\n", 1)[0]


@pytest.mark.parametrize("provider", ["amplitude", "segment"])
def test_region_the_provider_lacks_is_a_usage_error(run_sink, provider):
    env = {
        "EVENT_TRACK_PROVIDER": provider,
        "EVENT_TRACK_TOKEN": TOKENS[provider],
        "EVENT_TRACK_USER_ID": "peepshow-cli",
        "EVENT_TRACK_REGION": "in",
    }
    result = run_sink("event-track", fixture_bytes("run-full.json"), env)
    assert_clean_failure(result, 2, TOKENS[provider])
    assert "EVENT_TRACK_REGION" in result.stderr


def test_endpoint_wins_over_region(run_sink, analytics):
    emulator, env = analytics("mixpanel", EVENT_TRACK_REGION="eu")
    assert run_sink("event-track", fixture_bytes("run-full.json"), env).code == 0
    assert len(emulator.events) == 1


def test_check_verifies_configuration_and_reachability_without_writing(run_sink, analytics, unused_port):
    emulator, env = analytics("amplitude")
    result = run_sink("event-track", b"", env, args=["--check"])
    assert result.code == 0, result
    assert "ok    single-event API:" in result.stdout and "ok    batch API:" in result.stdout
    assert "ok    token: Amplitude accepted the API key" in result.stdout
    assert emulator.events == [] and [request.path for request in emulator.requests] == ["/2/httpapi", "/batch"]
    assert TOKENS["amplitude"] not in result.stdout
    env["EVENT_TRACK_ENDPOINT"] = f"http://127.0.0.1:{unused_port}/2/httpapi"
    result = run_sink("event-track", b"", dict(env, PEEPSHOW_SINK_TIMEOUT="2"), args=["--check"])
    assert result.code == 5 and "FAIL" in result.stdout


def test_print_schema_is_not_for_events(run_sink, analytics):
    _, env = analytics("segment")
    assert_clean_failure(run_sink("event-track", b"", env, args=["--print-schema"]), 2)


def test_backfill_batches_and_skips_what_was_delivered(run_sink, analytics):
    runs = []
    for number in range(30):
        run = fixture("manifest.json")
        run["outputDir"] = f"/tmp/peepshow-backfill-{number}"
        runs.append(json.dumps(run))
    for provider, batch_path in (("mixpanel", "/import"), ("amplitude", "/batch"), ("segment", "/v1/batch")):
        emulator, env = analytics(provider)
        result = run_sink("event-track", "\n".join(runs), env)
        assert result.code == 0, result
        assert len(emulator.events) == 30
        assert [request.path for request in emulator.requests] == [batch_path]
        assert "30 delivered" in result.stderr
        again = run_sink("event-track", "\n".join(runs[:5]) + "\n" + runs[0].replace("backfill-0", "new"), env)
        assert again.code == 0, again
        assert len(emulator.events) == 31
        assert "5 skipped" in again.stderr


def test_backfill_from_manifest_files_and_the_index(run_sink, analytics, tmp_path):
    emulator, env = analytics("segment")
    index_lines = []
    for number in range(3):
        directory = tmp_path / f"peepshow-{number}"
        directory.mkdir()
        run = fixture("manifest.json")
        run["outputDir"] = str(directory)
        run["createdAt"] = f"2026-10-0{number + 1}T10:00:00.000Z"
        (directory / "manifest.json").write_text(json.dumps(run))
        index_lines.append(json.dumps({"runId": f"run-{number}", "outputDir": str(directory)}))
    index = tmp_path / "index.ndjson"
    index.write_text("\n".join(index_lines) + "\n")
    result = run_sink("event-track", b"", env, args=[str(tmp_path / "peepshow-0"), str(tmp_path / "peepshow-1")])
    assert result.code == 0, result
    assert sorted(event["timestamp"] for event in emulator.events) == [
        "2026-10-01T10:00:00.000Z",
        "2026-10-02T10:00:00.000Z",
    ]
    assert emulator.events[0]["properties"]["output_dir"].startswith(str(tmp_path))
    result = run_sink("event-track", b"", env, args=["--from-index", str(index)])
    assert result.code == 0, result
    assert len(emulator.events) == 3
    assert "2 skipped" in result.stderr
    missing = run_sink("event-track", b"", env, args=[str(tmp_path / "nowhere")])
    assert missing.code == 4 and "nowhere" in missing.stderr


def test_mixpanel_old_runs_go_to_import(run_sink, analytics):
    emulator, env = analytics("mixpanel")
    run = fixture("manifest.json")
    run["createdAt"] = "2025-01-01T00:00:00.000Z"  # /track would answer status 1 and silently drop it
    result = run_sink("event-track", run, env)
    assert result.code == 0, result
    assert emulator.requests[-1].path == "/import"
    assert emulator.requests[-1].query["strict"] == ["1"]
    assert len(emulator.events) == 1


def _three_runs():
    runs = []
    for number in range(3):
        run = fixture("manifest.json")
        run["outputDir"] = f"/tmp/peepshow-partial-{number}"
        runs.append(json.dumps(run))
    return "\n".join(runs)


def test_amplitude_partial_rejection_resends_the_others(run_sink, analytics):
    emulator, env = analytics("amplitude")
    emulator.fault(
        "status",
        status=400,
        body={"code": 400, "error": "Invalid field values on some events", "events_with_invalid_fields": {"time": [1]}},
    )
    result = run_sink("event-track", _three_runs(), env)
    assert result.code == 5, result
    assert len(emulator.events) == 2
    assert [len(request.json()["events"]) for request in emulator.requests] == [3, 2]
    assert "run peepshow-partial-1 rejected" in result.stderr
    assert "2 delivered, 1 rejected" in result.stderr


def test_mixpanel_failed_records_reject_only_the_named_runs(run_sink, analytics, spool):
    emulator, env = analytics("mixpanel")
    emulator.fault(
        "status",
        status=400,
        body={
            "code": 400,
            "error": "some data points in the request failed validation",
            "failed_records": [{"index": 2, "insert_id": "x", "field": "properties.time", "message": "too old"}],
            "num_records_imported": 2,
            "status": "Bad Request",
        },
    )
    result = run_sink("event-track", _three_runs(), env)
    assert result.code == 5, result
    assert "run peepshow-partial-2 rejected" in result.stderr and "properties.time" in result.stderr
    assert "2 delivered, 1 rejected" in result.stderr
    assert not list((spool / "event-track").glob("*.json"))  # rejected for good: not kept


@pytest.mark.skipif(WINDOWS, reason=NO_PTY)
def test_backfill_shows_progress_only_on_a_terminal(analytics, shiv_root, spool, run_sink):
    import pty

    emulator, env = analytics("segment")
    runs = [json.dumps(dict(fixture("manifest.json"), outputDir=f"/tmp/peepshow-tty-{n}")) for n in range(600)]
    terminal, stderr = pty.openpty()
    full_env = dict(env, PATH=os.environ["PATH"], HOME=str(spool.parent), SHIV_ROOT=shiv_root)
    full_env["PEEPSHOW_SINK_SPOOL_DIR"] = str(spool)
    completed = subprocess.run(
        [sys.executable, str(DIST / "event-track.pyz")],
        input="\n".join(runs).encode(),
        stdout=subprocess.PIPE,
        stderr=stderr,
        env=full_env,
        timeout=60,
        check=False,
    )
    os.close(stderr)
    shown = b""
    while True:
        try:
            chunk = os.read(terminal, 65536)
        except OSError:  # EIO: the other side is closed and everything was read
            break
        if not chunk:
            break
        shown += chunk
    os.close(terminal)
    assert completed.returncode == 0
    assert b"delivered so far" in shown and b"600 delivered" in shown
    piped = run_sink("event-track", "\n".join(runs).replace("tty", "pipe"), env)
    assert "so far" not in piped.stderr and piped.stderr.strip() == "event-track: 600 delivered"
    assert len(emulator.events) == 1200


@pytest.mark.skipif(WINDOWS, reason="preexec_fn is POSIX-only: a Windows child cannot be started without its fd 0")
def test_a_closed_stdin_reads_as_empty(analytics, shiv_root, spool):
    _, env = analytics("segment")
    full_env = dict(env, PATH=os.environ["PATH"], HOME=str(spool.parent), SHIV_ROOT=shiv_root)
    completed = subprocess.run(
        [sys.executable, str(DIST / "event-track.pyz")],
        env=full_env,
        capture_output=True,
        preexec_fn=lambda: os.close(0),  # the point of the test: a child without fd 0
        timeout=60,
        check=False,
    )
    assert completed.returncode == 4
    assert completed.stderr.decode().startswith("event-track: stdin is empty")


# -- rate limits ---------------------------------------------------------------------------------------------------


def _backfill(prefix, count):
    """`count` distinct manifests of one user, as NDJSON."""
    run = fixture("manifest.json")
    return "\n".join(json.dumps(dict(run, outputDir=f"/tmp/{prefix}-{number}")) for number in range(count))


def _sent(emulator, key):
    """Every event id the emulator received, 429s and resends included."""
    ids = []
    for request in emulator.requests:
        body = request.json()
        items = body["events"] if isinstance(body, dict) and "events" in body else body
        items = items.get("batch", [items]) if isinstance(items, dict) else items
        ids += [key(item) for item in items]
    return ids


def test_amplitude_backfill_paces_one_user_under_1000_events_per_second(run_sink, analytics):
    # The documented /batch limit, checked over 1-second windows: stricter than Amplitude's 30-second average, so a
    # sink that sends faster than 1000 events/s meets 429s here (and waits 15 s after each).
    emulator, env = analytics("amplitude")
    emulator.limit_rates(window=1.0)
    result = run_sink("event-track", _backfill("peepshow-paced", 5000), env)
    assert result.code == 0, result
    assert result.stderr.strip() == "event-track: 5000 delivered"
    assert {request.path for request in emulator.requests} == {"/batch"}
    assert len({event["insert_id"] for event in emulator.events}) == len(emulator.events) == 5000
    assert all(len(request.json()["events"]) <= 1000 for request in emulator.requests)
    assert sum(request.status == 429 for request in emulator.requests) <= 1
    assert result.elapsed >= 4.0, "5000 events of one user cannot go out faster than the limit allows"


def test_amplitude_429_pauses_then_sends_the_same_events_again(run_sink, analytics):
    emulator, env = analytics("amplitude", PEEPSHOW_SINK_TIMEOUT="3")
    emulator.throttle_user("peepshow-cli", times=1)
    result = run_sink("event-track", _backfill("peepshow-throttled", 3), env)
    assert result.code == 0, result
    first, again = emulator.requests
    assert (first.status, again.status) == (429, 200)
    assert first.body == again.body  # the same events, the same insert_ids: nothing lost, nothing doubled
    # Amplitude asks for 15 s and sends no Retry-After; the pause is cut to what the request's deadline leaves.
    assert 1.5 <= again.received_at - first.received_at <= 3
    assert len(emulator.events) == 3


def test_amplitude_throttled_past_the_deadline_keeps_the_runs(run_sink, analytics, spool):
    emulator, env = analytics("amplitude", PEEPSHOW_SINK_TIMEOUT="3")
    emulator.throttle_user("peepshow-cli", times=100)
    result = run_sink("event-track", _backfill("peepshow-throttled-long", 3), env)
    assert result.code == 5, result
    assert "HTTP 429" in result.stderr and "PEEPSHOW_SINK_TIMEOUT" in result.stderr
    assert len(emulator.requests) == 2  # a pause, one more try, then the runs wait in the spool: no storm
    assert len(list((spool / "event-track").glob("*.json"))) == 3
    emulator.reset()
    flushed = run_sink("event-track", b"", env, args=["--flush"])
    assert flushed.code == 0, flushed
    assert [request.path for request in emulator.requests] == ["/batch"]
    assert len(emulator.events) == 3


def test_amplitude_daily_quota_stops_the_users_events_and_keeps_them(run_sink, analytics, spool):
    emulator, env = analytics("amplitude")
    emulator.limit_daily(600)
    result = run_sink("event-track", _backfill("peepshow-quota", 1200), env)
    assert result.code == 5, result
    # 1000 events went in (the count was under the quota before each request), the next request met the quota,
    # and nothing more was sent.
    assert [request.status for request in emulator.requests] == [200, 200, 429]
    assert len(emulator.events) == 1000
    assert result.stderr.splitlines() == [
        "event-track: 1000 delivered, 200 kept",
        "event-track: stopped: Amplitude's daily quota for user_id 'peepshow-cli' is used up (1,000 events in the "
        "last 24 hours; the limit is 500,000 in a rolling 24 hours, and frees up hour by hour) "
        f"(200 run(s) kept in {spool / 'event-track'}: `event-track --flush` delivers them)",
    ]
    assert len(list((spool / "event-track").glob("*.json"))) == 200

    now = time.time()
    emulator.clock = lambda: now + 24 * 3600  # a day later the quota has freed up
    flushed = run_sink("event-track", b"", env, args=["--flush"])
    assert flushed.code == 0, flushed
    assert {request.path for request in emulator.requests} == {"/batch"}
    assert len({event["insert_id"] for event in emulator.events}) == len(emulator.events) == 1200


def test_mixpanel_backfill_within_its_limit_and_past_a_smaller_one(run_sink, analytics):
    emulator, env = analytics("mixpanel", PEEPSHOW_SINK_TIMEOUT="3")
    emulator.limit_rates(window=1.0)  # the documented 30,000 events/s and 2 GB/minute per project
    result = run_sink("event-track", _backfill("peepshow-mp", 3000), env)
    assert result.code == 0, result
    assert {request.status for request in emulator.requests} == {200}
    assert len(emulator.events) == 3000

    emulator.reset()
    emulator.limit_rates(window=1.0, events_per_second=600)
    result = run_sink("event-track", _backfill("peepshow-mp-small", 1000), env)  # two requests of 500 events
    assert result.code == 0, result
    assert [request.status for request in emulator.requests] == [200, 429, 200]
    assert emulator.requests[2].received_at - emulator.requests[1].received_at >= 1.0  # backed off, no Retry-After
    sent = _sent(emulator, lambda event: event["properties"]["$insert_id"])
    assert len(sent) == 1500 and len(set(sent)) == len(emulator.events) == 1000


def test_segment_backfill_within_its_limit_and_past_a_smaller_one(run_sink, analytics):
    emulator, env = analytics("segment", PEEPSHOW_SINK_TIMEOUT="3")
    emulator.limit_rates(window=1.0)  # the documented 1,000 requests/s per workspace
    result = run_sink("event-track", _backfill("peepshow-seg", 3000), env)
    assert result.code == 0, result
    assert {request.status for request in emulator.requests} == {200}
    assert len(emulator.events) == 3000  # past 1,000 events/s Segment queues, it does not refuse

    emulator.reset()
    emulator.limit_rates(window=1.0, requests_per_second=1)
    result = run_sink("event-track", _backfill("peepshow-seg-small", 1500), env)  # three requests of 500 events
    assert result.code == 0, result
    assert [request.status for request in emulator.requests] == [200, 429, 200, 429, 200]
    for throttled, again in ((1, 2), (3, 4)):  # Retry-After: 1, honoured
        assert emulator.requests[again].received_at - emulator.requests[throttled].received_at >= 0.95
    assert len({event["messageId"] for event in emulator.events}) == len(emulator.events) == 1500


# -- pacing and 429 advice (in-process) ----------------------------------------------------------------------------


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _schedule(limit, requests, events, size=0):
    """When each of `requests` requests of `events` events would go out, paced for `limit`, sent instantly."""
    clock = FakeClock()
    pace = event_track.Pace(limit, clock)
    times = []
    for _ in range(requests):
        clock.now += pace.book({"events": events, "bytes": size, "requests": 1})
        times.append(clock.now)
    return times


def _busiest(times, each, window=1.0):
    """The most any `window` seconds carry."""
    return max(sum(each for other in times if start <= other < start + window) for start in times)


def test_pace_keeps_amplitude_batch_under_1000_events_in_every_second():
    # a 10,000-run backfill in the sink's 500-event requests
    times = _schedule(event_track.AMPLITUDE_BATCH_LIMIT, 20, 500)
    assert _busiest(times, 500) <= 1000
    assert 9.0 <= times[-1] <= 1.5 * 10  # the floor is 10 s at 1000 events/s; the goal is within 1.5x of it


def test_pace_keeps_mixpanel_under_its_events_and_bytes():
    times = _schedule(event_track.MIXPANEL_LIMIT, 40, 2000, size=300_000)
    assert _busiest(times, 2000) <= 30_000
    # 2 GB a minute binds first for big events
    times = _schedule(event_track.MIXPANEL_LIMIT, 400, 2000, size=9 * 1024 * 1024)
    assert _busiest(times, 9 * 1024 * 1024, window=60.0) <= 2e9


def test_pace_slows_down_after_a_429_and_heeds_the_threshold():
    pace = event_track.Pace(event_track.AMPLITUDE_BATCH_LIMIT, FakeClock())
    pace.slow_down()
    assert pace.rates["events"] == 450
    pace.slow_down(threshold=300)  # the 429 body's eps_threshold: this project's own, lower limit
    assert pace.rates["events"] == 225
    for _ in range(10):
        pace.slow_down(threshold=300)
    assert pace.rates["events"] == 30  # never below a tenth of the limit


def _response(status=429, body=None, headers=None):
    return event_track.sink.Response(status, headers or {}, json.dumps(body or {}).encode())


def test_throttle_pause_prefers_retry_after_then_the_providers_advice():
    batch, live = event_track.AMPLITUDE_BATCH_LIMIT, event_track.AMPLITUDE_HTTP_LIMIT  # what the request counts against
    assert event_track.throttle_pause(batch, _response(headers={"Retry-After": "4"}), 1) == 4
    assert event_track.throttle_pause(event_track.SEGMENT_LIMIT, _response(headers={"X-RateLimit-Reset": "2"}), 1) == 2
    assert event_track.throttle_pause(batch, _response(), 1) == 15  # "for example, 15 seconds"
    assert event_track.throttle_pause(live, _response(), 1) == 30  # "a period of 30 seconds"
    assert 3 <= event_track.throttle_pause(event_track.MIXPANEL_LIMIT, _response(), 1) <= 7  # 2 s + 1-5 s jitter
    assert 61 <= event_track.throttle_pause(event_track.MIXPANEL_LIMIT, _response(), 9) <= 65  # capped at 60 s


def _config(provider):
    env = {"EVENT_TRACK_PROVIDER": provider, "EVENT_TRACK_TOKEN": "t0ken", "EVENT_TRACK_USER_ID": "peepshow-cli"}
    return event_track.read_config(env)


def test_daily_quota_is_read_from_the_429_body():
    config = _config("amplitude")
    users = _response(body={"code": 429, "exceeded_daily_quota_users": {"peepshow-cli": 500200}})
    error = event_track.daily_quota_error(config, users)
    assert error.transient and not error.refused
    assert "user_id 'peepshow-cli'" in error.message and "500,200 events" in error.message
    devices = _response(body={"code": 429, "exceeded_daily_quota_users": {}, "exceeded_daily_quota_devices": {"d1": 9}})
    assert "device_id 'd1'" in event_track.daily_quota_error(config, devices).message
    throttled = _response(body={"throttled_users": {"peepshow-cli": 1200}, "exceeded_daily_quota_users": {}})
    assert event_track.daily_quota_error(config, throttled) is None
    other = _response(body={"code": 429, "exceeded_daily_quota_users": {"someone-else": 600000}})
    assert event_track.daily_quota_error(config, other) is None
    assert event_track.daily_quota_error(_config("mixpanel"), users) is None


def test_amplitude_silenced_events_are_the_runs_own_failure():
    config = _config("amplitude")
    body = {"code": 400, "error": "Events silenced for device_id", "silenced_devices": ["d1"], "silenced_events": [1]}
    req = event_track.sink.request("POST", "/batch", rows=[0, 1])
    failures = event_track.parse_response(config, req, _response(400, body))
    assert list(failures) == [1]
    assert failures[1].refused and "silenced" in failures[1].message


def test_a_live_amplitude_run_throttled_is_kept_at_once_not_held_for_30_seconds(run_sink, analytics, spool):
    # peepshow waits for its sinks: Amplitude's advice to pause 30 s is for a backfill, not for one run.
    emulator, env = analytics("amplitude")
    emulator.throttle_user("peepshow-cli", times=1)
    result = run_sink("event-track", fixture_bytes("run-full.json"), env)
    assert result.code == 5 and result.elapsed < 5, result
    assert "HTTP 429" in result.stderr and "kept" in result.stderr
    assert [request.path for request in emulator.requests] == ["/2/httpapi"]
    assert len(list((spool / "event-track").glob("*.json"))) == 1
    # The next run delivers itself, then replays the kept one through /batch.
    assert run_sink("event-track", fixture_bytes("run-minimal.json"), env).code == 0
    assert [request.path for request in emulator.requests][1:] == ["/2/httpapi", "/batch"]
    assert len(emulator.events) == 2
