"""The promises of the README and SPEC §1 that a new user met broken (issue 13), from the built zipapps.

null is not a run; `--check` ends a failure with its reason on stderr; a refused connection names the host, the port
and the variable to fix; every directory the sink creates for its spool is private.
"""

import json
import os

import pytest

from tests.conftest import REFUSED_TIMEOUT, WINDOWS, assert_clean_failure, fixture, fixture_bytes

SINKS = ("event-track", "databricks", "cassandra")


@pytest.fixture
def envs(segment, databricks, stargate):
    """A working configuration of each sink, against the emulators."""
    return {
        "event-track": {
            "EVENT_TRACK_PROVIDER": "segment",
            "EVENT_TRACK_TOKEN": "seg-write-key",
            "EVENT_TRACK_USER_ID": "peepshow-cli",
            "EVENT_TRACK_ENDPOINT": segment.url + "/v1/track",
        },
        "databricks": {
            "DATABRICKS_URL": databricks.url,
            "DATABRICKS_TOKEN": "dapi-test-token",
            "DATABRICKS_WAREHOUSE_ID": "wh-1",
        },
        "cassandra": {
            "CASSANDRA_URL": stargate.url,
            "CASSANDRA_KEYSPACE": "peepshow",
            "CASSANDRA_TOKEN": "AstraCS:test-token",
        },
    }


def writes(segment, databricks, stargate):
    """Every request that could have written something, across the three emulators."""
    return [r for emulator in (segment, databricks, stargate) for r in emulator.requests if r.method == "POST"]


# -- 1. JSON null (and every other non-object) is not a run -----------------------------------------------------


@pytest.mark.parametrize("sink", SINKS)
@pytest.mark.parametrize("document", [b"null", b"0", b"false", b'""', b"[]", b"{}"])
def test_a_document_that_is_not_a_run_exits_4_and_sends_nothing(
    run_sink, envs, sink, document, segment, databricks, stargate
):
    result = run_sink(sink, document + b"\n", envs[sink])
    assert_clean_failure(result, 4)
    assert "delivered" not in result.stderr
    assert writes(segment, databricks, stargate) == []


@pytest.mark.parametrize("sink", SINKS)
def test_null_inside_a_stream_is_one_malformed_document_among_the_others(run_sink, envs, sink):
    first, third = fixture("run-full.json"), fixture("run-minimal.json")
    stream = json.dumps(first) + "\nnull\n" + json.dumps(third) + "\n"
    result = run_sink(sink, stream, envs[sink])
    assert result.code == 4, result
    assert "document 2 on stdin holds null" in result.stderr, result
    assert "2 delivered" in result.stderr and "1 malformed" in result.stderr, result


def test_null_as_the_second_of_two_documents_is_not_dropped(run_sink, envs, segment):
    # "No second document" and "a second document that is null" were the same value once: the null was lost and
    # the first run sent as a single one.
    result = run_sink("event-track", fixture_bytes("run-full.json") + b"\nnull\n", envs["event-track"])
    assert result.code == 4, result
    assert "document 2 on stdin holds null" in result.stderr
    assert len(segment.events) == 1


# -- 2. --check: the reason on stderr, like every other failure -------------------------------------------------


def test_databricks_check_with_a_rejected_token_says_why_on_stderr(run_sink, envs):
    result = run_sink("databricks", b"", dict(envs["databricks"], DATABRICKS_TOKEN="dapi-revoked"), args=["--check"])
    assert_clean_failure(result, 5, "dapi-revoked")
    assert "DATABRICKS_TOKEN" in result.stderr
    assert "FAIL" in result.stdout  # the report itself stays on stdout


def test_databricks_check_with_an_unknown_warehouse_says_why_on_stderr(run_sink, envs):
    result = run_sink("databricks", b"", dict(envs["databricks"], DATABRICKS_WAREHOUSE_ID="wh-404"), args=["--check"])
    assert_clean_failure(result, 5, "dapi-test-token")
    assert "DATABRICKS_WAREHOUSE_ID" in result.stderr


@pytest.mark.parametrize("sink", SINKS)
def test_a_failed_check_ends_with_its_reason_on_stderr_in_every_sink(run_sink, envs, sink, unused_port):
    variable = {"event-track": "EVENT_TRACK_ENDPOINT", "databricks": "DATABRICKS_URL", "cassandra": "CASSANDRA_URL"}
    env = dict(envs[sink], PEEPSHOW_SINK_TIMEOUT="2")
    env[variable[sink]] = f"http://127.0.0.1:{unused_port}" + ("/v1/track" if sink == "event-track" else "")
    result = run_sink(sink, b"", env, args=["--check"])
    assert_clean_failure(result, 5)
    assert variable[sink] in result.stderr and f"127.0.0.1:{unused_port}" in result.stderr, result


@pytest.mark.parametrize("sink", SINKS)
def test_a_passing_check_keeps_stderr_silent(run_sink, envs, sink):
    result = run_sink(sink, b"", envs[sink], args=["--check"])
    assert (result.code, result.stderr) == (0, ""), result


# -- 3. a refused connection names what refused it and what to fix ----------------------------------------------


@pytest.mark.parametrize(
    ("sink", "variable", "path"),
    [
        ("event-track", "EVENT_TRACK_ENDPOINT", "/v1/track"),
        ("databricks", "DATABRICKS_URL", ""),
        ("cassandra", "CASSANDRA_URL", ""),
    ],
)
def test_a_refused_connection_names_host_port_and_variable(run_sink, envs, sink, variable, path, unused_port):
    env = dict(envs[sink], PEEPSHOW_SINK_TIMEOUT=REFUSED_TIMEOUT)
    env[variable] = f"http://127.0.0.1:{unused_port}{path}"
    result = run_sink(sink, fixture_bytes("run-full.json"), env)
    assert_clean_failure(result, 5)
    assert f"127.0.0.1:{unused_port} (connection refused): check {variable}" in result.stderr, result


def test_a_refused_token_service_names_the_auth_url(run_sink, stargate, unused_port):
    env = {
        "CASSANDRA_URL": stargate.url,
        "CASSANDRA_KEYSPACE": "peepshow",
        "CASSANDRA_USERNAME": "peepshow",
        "CASSANDRA_PASSWORD": "pw-s3cret",
        "CASSANDRA_AUTH_URL": f"http://127.0.0.1:{unused_port}",
        "PEEPSHOW_SINK_TIMEOUT": REFUSED_TIMEOUT,
    }
    result = run_sink("cassandra", fixture_bytes("run-full.json"), env)
    assert_clean_failure(result, 5, "pw-s3cret")
    assert f"auth service at 127.0.0.1:{unused_port} (connection refused): check CASSANDRA_AUTH_URL" in result.stderr


# -- 4. every directory the sink creates for its spool is private -----------------------------------------------


@pytest.mark.skipif(WINDOWS, reason="Windows has no POSIX modes nor umask: os.chmod sets only the read-only flag there")
def test_a_spool_root_the_sink_creates_is_0700_whatever_the_umask(run_sink, envs, tmp_path, unused_port):
    parent = tmp_path / "shared"
    parent.mkdir(mode=0o755)
    root = parent / "not" / "yet" / "there"
    env = dict(envs["cassandra"], CASSANDRA_URL=f"http://127.0.0.1:{unused_port}", PEEPSHOW_SINK_SPOOL_DIR=str(root))
    env["PEEPSHOW_SINK_TIMEOUT"] = "1"
    previous = os.umask(0o022)
    try:
        result = run_sink("cassandra", fixture_bytes("run-full.json"), env)
    finally:
        os.umask(previous)
    assert result.code == 5 and "kept" in result.stderr, result
    for directory in (parent / "not", parent / "not" / "yet", root, root / "cassandra"):
        assert directory.stat().st_mode & 0o777 == 0o700, directory
    assert parent.stat().st_mode & 0o777 == 0o755  # a directory that was there is not the sink's to change
    (entry,) = (root / "cassandra").glob("*.json")
    assert entry.stat().st_mode & 0o777 == 0o600


@pytest.mark.skipif(WINDOWS, reason="Windows has no POSIX modes nor umask: os.chmod sets only the read-only flag there")
def test_the_delivered_run_record_is_created_private_too(run_sink, envs, tmp_path):
    root = tmp_path / "fresh-root"
    previous = os.umask(0o000)
    try:
        result = run_sink(
            "event-track", fixture_bytes("run-full.json"), dict(envs["event-track"], PEEPSHOW_SINK_SPOOL_DIR=str(root))
        )
    finally:
        os.umask(previous)
    assert result.code == 0, result
    assert root.stat().st_mode & 0o777 == 0o700
    (record,) = (root / "event-track").glob("delivered-*.txt")
    assert record.stat().st_mode & 0o777 == 0o600
