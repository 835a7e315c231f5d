"""Shared test harness: run a built zipapp the way peepshow does (payload on stdin, config in env)."""

import contextlib
import importlib.machinery
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"
FIXTURES = ROOT / "tests" / "fixtures"
FIXTURE_NAMES = sorted(path.name for path in FIXTURES.glob("*.json"))
# The Python that runs the zipapps: the one running the tests, unless CI sets another (its matrix runs the suite on
# Python 3.11+ and the zipapps on each Python from 3.9).
SINK_PYTHON = os.environ.get("PEEPSHOW_SINK_PYTHON") or sys.executable


def fixture_bytes(name):
    return (FIXTURES / name).read_bytes()


def fixture(name):
    return json.loads(fixture_bytes(name))


_scripts = {}


def load_script(name):
    """A sink script of bin/ imported as a module (once per session), for unit tests of its pure functions."""
    if name not in _scripts:
        loader = importlib.machinery.SourceFileLoader(f"sink_{name.replace('-', '_')}", str(ROOT / "bin" / name))
        spec = importlib.util.spec_from_loader(loader.name, loader)
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
        _scripts[name] = module
    return _scripts[name]


@contextlib.contextmanager
def standalone_emulator(module, *args, banners=1):
    """`python -m tests.emulators.<module> --port 0 …` as the demo or a user starts it; yields the URL(s) it prints."""
    process = subprocess.Popen(
        [sys.executable, "-m", f"tests.emulators.{module}", "--port", "0", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        urls = [process.stdout.readline().rsplit(" ", 1)[-1].strip() for _ in range(banners)]
        assert all(url.startswith("http://127.0.0.1:") for url in urls), urls
        yield urls[0] if banners == 1 else urls
    finally:
        process.terminate()
        process.wait(timeout=5)
        process.stdout.close()


class Result:
    def __init__(self, completed, elapsed):
        self.code = completed.returncode
        self.stdout = completed.stdout.decode("utf-8", "replace")
        self.stderr = completed.stderr.decode("utf-8", "replace")
        self.elapsed = elapsed

    def __repr__(self):
        return f"<exit {self.code} in {self.elapsed:.2f}s stdout={self.stdout!r} stderr={self.stderr!r}>"


@pytest.fixture(scope="session")
def shiv_root(tmp_path_factory):
    """One extraction of each zipapp for the whole session (users pay it once too)."""
    return str(tmp_path_factory.mktemp("shiv"))


@pytest.fixture
def spool(tmp_path):
    return tmp_path / "spool"


@pytest.fixture
def run_sink(shiv_root, spool, tmp_path):
    """run_sink(name, stdin=b"" | str | dict, env={...}, args=[...], timeout=60) -> Result.

    The environment starts empty but for PATH, a private HOME, the session's SHIV_ROOT and a per-test spool.
    """

    def run(name, stdin=b"", env=None, args=(), timeout=60, direct=False):
        if isinstance(stdin, dict):
            stdin = json.dumps(stdin).encode()
        elif isinstance(stdin, str):
            stdin = stdin.encode()
        home = tmp_path / "home"
        home.mkdir(exist_ok=True)
        full_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "SHIV_ROOT": shiv_root,
            "PEEPSHOW_SINK_SPOOL_DIR": str(spool),
        }
        full_env.update({key: value for key, value in (env or {}).items() if value is not None})
        zipapp = DIST / f"{name}.pyz"
        assert zipapp.exists(), f"{zipapp} is missing: run ./build.sh first"
        command = [str(zipapp)] if direct else [SINK_PYTHON, str(zipapp)]
        started = time.monotonic()
        completed = subprocess.run(
            [*command, *args], input=stdin, capture_output=True, env=full_env, timeout=timeout, check=False
        )
        return Result(completed, time.monotonic() - started)

    return run


def assert_clean_failure(result, code, *secrets):
    """The failure contract: the exit code, one line of reason on stderr, no traceback, no secret anywhere."""
    assert result.code == code, result
    assert "Traceback" not in result.stderr, result
    assert result.stderr.strip(), result
    assert len(result.stderr.strip().splitlines()) == 1, result
    for secret in secrets:
        assert secret not in result.stderr and secret not in result.stdout, result


def _emulator_fixture(name, factory):
    """A session-wide emulator `<name>_server`, and `<name>`: the same one, reset before the test."""

    @pytest.fixture(scope="session", name=f"{name}_server")
    def running():
        emulator = factory().start()
        yield emulator
        emulator.stop()

    @pytest.fixture(name=name)
    def fresh(request):
        emulator = request.getfixturevalue(f"{name}_server")
        emulator.reset()
        return emulator

    return running, fresh


def _mixpanel():
    from tests.emulators.mixpanel import Mixpanel

    return Mixpanel()


def _amplitude():
    from tests.emulators.amplitude import Amplitude

    return Amplitude()


def _segment():
    from tests.emulators.segment import Segment

    return Segment()


mixpanel_server_fixture, mixpanel_fixture = _emulator_fixture("mixpanel", _mixpanel)
amplitude_server_fixture, amplitude_fixture = _emulator_fixture("amplitude", _amplitude)
segment_server_fixture, segment_fixture = _emulator_fixture("segment", _segment)

TOKENS = {"mixpanel": "mp-token", "amplitude": "amp-api-key", "segment": "seg-write-key"}
PATHS = {"mixpanel": "/track", "amplitude": "/2/httpapi", "segment": "/v1/track"}


@pytest.fixture
def analytics(request, mixpanel, amplitude, segment):
    """analytics(provider) -> (emulator, env) with the provider's endpoint pointed at the emulator."""

    servers = {"mixpanel": mixpanel, "amplitude": amplitude, "segment": segment}

    def pick(provider, **overrides):
        emulator = servers[provider]
        env = {
            "EVENT_TRACK_PROVIDER": provider,
            "EVENT_TRACK_TOKEN": TOKENS[provider],
            "EVENT_TRACK_USER_ID": "peepshow-cli",
            "EVENT_TRACK_ENDPOINT": emulator.url + PATHS[provider],
        }
        env.update(overrides)
        return emulator, env

    return pick


@pytest.fixture
def unused_port():
    """A loopback port with nothing listening (connection refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _databricks():
    from tests.emulators.databricks import Databricks

    return Databricks()


def _stargate():
    from tests.emulators.stargate import Stargate

    return Stargate()


databricks_server_fixture, databricks_fixture = _emulator_fixture("databricks", _databricks)
stargate_server_fixture, stargate_fixture = _emulator_fixture("stargate", _stargate)
