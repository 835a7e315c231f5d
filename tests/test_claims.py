"""A claim on a spooled run ends with its process (issue 22): claims are held by an operating-system lock, never
judged by a process id, so a claim left by a dead flush is taken back whatever process now has its id."""

import os
import subprocess
import time

import pytest

from tests.conftest import DESTINATIONS
from tests.test_destination_failures import SCRIPTS, peepshow_sink, runs
from tests.test_ordinary_faults import wait_for_request


@pytest.fixture
def segment_spool(segment, spool):
    """(env, spool directory, put(documents) -> paths): runs spooled for the Segment emulator."""
    env = DESTINATIONS["segment"][2](segment)
    config = SCRIPTS["event-track"].read_config(env)
    label, material = SCRIPTS["event-track"].destination(config)
    directory, key = spool / "event-track", peepshow_sink.destination_key(material)

    def put(documents):
        return [
            peepshow_sink.spool_put(str(directory), key, peepshow_sink.derive(doc, env), label) for doc in documents
        ]

    return env, directory, put


@pytest.mark.parametrize("owner", ["1", str(os.getpid())], ids=["pid-1", "a-live-pid"])
def test_a_claim_named_after_a_live_process_id_is_taken_back_once(run_sink, segment, segment_spool, owner):
    # How 0.2.0 claimed (`.claimed-<pid>`): PID 1 is alive in every container, and so is the test's own process.
    env, directory, put = segment_spool
    (path,) = put(runs(f"pid-{owner}", 1))
    os.rename(path, f"{path}.claimed-{owner}")
    result = run_sink("event-track", b"", env, args=["--flush"])
    assert result.code == 0, result
    assert "delivered 1 spooled run(s)" in result.stdout and "; 0 left" in result.stdout
    again = run_sink("event-track", b"", env, args=["--flush"])
    assert again.code == 0 and "delivered 0 spooled run(s)" in again.stdout, again
    assert len(segment.events) == 1


def test_a_claim_whose_owner_holds_its_lock_is_reported_and_left_alone(run_sink, segment, segment_spool):
    env, directory, put = segment_spool
    paths = put(runs("held", 2))
    token = "4242xfeedbeef"
    lock = os.open(directory / f".owner-{token}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    assert peepshow_sink._try_lock(lock)  # this test process stands for a flush still delivering
    try:
        os.rename(paths[0], f"{paths[0]}.claimed-{token}")
        result = run_sink("event-track", b"", dict(env, PEEPSHOW_SINK_TIMEOUT="1"), args=["--flush"])
        assert result.code == 5, result
        assert "delivered 1 spooled run(s)" in result.stdout and "1 being delivered by another process" in result.stdout
        assert "being delivered by another process" in result.stderr
        assert os.path.exists(f"{paths[0]}.claimed-{token}")
    finally:
        os.close(lock)  # the owner ends: its claim is free
    result = run_sink("event-track", b"", env, args=["--flush"])
    assert result.code == 0 and "delivered 1 spooled run(s)" in result.stdout, result
    assert len(segment.events) == 2


def test_a_flush_killed_mid_way_has_its_claims_taken_back_at_once(run_sink, sink_process, segment, segment_spool):
    env, directory, put = segment_spool
    put(runs("sigkill", 30))
    segment.fault("hang", times=None)
    command, full_env = sink_process("event-track", dict(env, PEEPSHOW_SINK_TIMEOUT="20"), ["--flush"])
    process = subprocess.Popen(command, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_request(segment)
    assert any(".claimed-" in name for name in os.listdir(directory))
    process.kill()
    process.communicate(timeout=10)
    segment.faults.clear()
    started = time.monotonic()
    result = run_sink("event-track", b"", env, args=["--flush"])
    assert result.code == 0, result
    assert time.monotonic() - started < 5  # taken back at once, not after any timeout
    assert "delivered 30 spooled run(s)" in result.stdout and "; 0 left" in result.stdout
    assert len(segment.events) == 30
    assert not [name for name in os.listdir(directory) if ".claimed-" in name or name.startswith(".owner-")]
