"""Shared test harness: run a built zipapp the way peepshow does (payload on stdin, config in env)."""

import contextlib
import importlib.machinery
import importlib.util
import json
import os
import shutil
import signal
import socket
import stat
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
WINDOWS = os.name == "nt"
# The checkout's venv, as build.sh makes it.
VENV_PYTHON = ROOT / ".venv" / ("Scripts/python.exe" if WINDOWS else "bin/python")


def bash_script(path, *args):
    """The command line that runs one of the repository's bash scripts (build.sh, .ci/*): the script itself on Linux
    and macOS (its shebang); on Windows, which knows no shebang, the bash on PATH (Git's: CreateProcess would look in
    System32 first, where bash.exe is WSL's) with the script's path in forward slashes, which its dirname reads."""
    if not WINDOWS:
        return [str(path), *map(str, args)]
    return [shutil.which("bash") or "bash", Path(path).as_posix(), *map(str, args)]


# PEEPSHOW_SINK_TIMEOUT for a test that needs the words "connection refused": Windows takes ~2 s to report a refused
# loopback connection (it sends the SYN again first, and Python cannot shorten that), so a short deadline ends the
# first attempt as "no answer" there; given time, all six attempts are refused (in 12 to 28 s).
REFUSED_TIMEOUT = "60" if WINDOWS else "2"
# Why the tests of what a terminal shows are Linux and macOS only.
NO_PTY = "pty is POSIX-only: the standard library cannot give a child a Windows console (ConPTY)"
# What no Windows process does without (Winsock needs SYSTEMROOT; tempfile, TEMP), kept in the tests' otherwise
# minimal environments.
WINDOWS_BASICS = ("SYSTEMROOT", "SYSTEMDRIVE", "WINDIR", "COMSPEC", "PATHEXT", "TEMP", "TMP")


def minimal_env(home=None, **extra):
    """A user's bare environment: PATH, the home `home` (unset when None: HOME, and USERPROFILE on Windows, where
    the sinks and Python read that one), on Windows what every process there needs, and `extra`."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    if WINDOWS:
        env.update({key: os.environ[key] for key in WINDOWS_BASICS if key in os.environ})
    if home is not None:
        env["HOME"] = str(home)
        if WINDOWS:
            env["USERPROFILE"] = str(home)
    env.update(extra)
    return env


# How a test stops a sink politely, and the exit code that says it was: SIGINT and SIGTERM on Linux and macOS. Windows
# delivers neither to one process (Popen.terminate is a kill, and Ctrl-C reaches every process of the console, pytest
# too): there it is Ctrl-Break, sent to the sink's own process group (OWN_GROUP), which the sink takes as SIGTERM.
if WINDOWS:
    POLITE_STOPS = {"CTRL_BREAK": (signal.CTRL_BREAK_EVENT, 128 + signal.SIGBREAK)}
    OWN_GROUP = subprocess.CREATE_NEW_PROCESS_GROUP
else:
    POLITE_STOPS = {"SIGINT": (signal.SIGINT, 130), "SIGTERM": (signal.SIGTERM, 143)}
    OWN_GROUP = 0


def assert_mode(path, mode):
    """`path` has the POSIX permission bits `mode` (0o600, 0o700). Windows has none to check: os.chmod sets only the
    read-only flag there, and a user's files are private by the access lists of the profile folders they are in."""
    if not WINDOWS:
        assert stat.S_IMODE(os.stat(path).st_mode) == mode, (path, oct(os.stat(path).st_mode))


def python_program(path, text):
    """A program made of the Python script `text` (its first line a shebang), as a user's PATH finds it; returns
    the path that a command line names. Linux and macOS start `path` by its shebang; Windows starts no script,
    so there a `<path>.cmd` beside it runs it, the way the Azure CLI and pip install programs there."""
    path.write_text(text)
    path.chmod(0o755)
    if not WINDOWS:
        return path
    wrapper = path.with_name(path.name + ".cmd")
    wrapper.write_text(f'@"{sys.executable}" "%~dp0{path.name}" %*\r\n@exit /b %ERRORLEVEL%\r\n', newline="")
    return wrapper


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


def self_signed_certificate(directory, common_name, alt_names):
    """(cert.pem, key.pem) in `directory`: a P-256 certificate for `alt_names` ("DNS:x", "IP:y"), by the openssl
    CLI, for an emulator that serves HTTPS."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        + ["-days", "2", "-subj", f"/CN={common_name}", "-addext", "subjectAltName=" + ",".join(alt_names)]
        + ["-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return str(cert), str(key)


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
def sink_process(shiv_root, spool, tmp_path):
    """sink_process(name, env={...}, args=[...], direct=False) -> (command, full environment) of a zipapp run.

    The environment starts empty but for PATH, a private HOME, the session's SHIV_ROOT, a per-test spool and
    coverage's settings (and on Windows what minimal_env keeps); a variable set to None in `env` is left out.
    """

    def prepare(name, env=None, args=(), direct=False):
        home = tmp_path / "home"
        home.mkdir(exist_ok=True)
        full_env = minimal_env(home, SHIV_ROOT=shiv_root, PEEPSHOW_SINK_SPOOL_DIR=str(spool))
        # coverage measures the zipapp too (pyproject's patch = ["subprocess"]): let its settings through, unless
        # the test sets them to None (a test of what the sink itself imports).
        full_env.update({key: value for key, value in os.environ.items() if key.startswith("COVERAGE_")})
        for key, value in (env or {}).items():
            if value is None:
                full_env.pop(key, None)
            else:
                full_env[key] = value
        zipapp = DIST / f"{name}.pyz"
        assert zipapp.exists(), f"{zipapp} is missing: run ./build.sh first"
        command = [str(zipapp)] if direct else [SINK_PYTHON, str(zipapp)]
        return [*command, *args], full_env

    return prepare


@pytest.fixture
def run_sink(sink_process):
    """run_sink(name, stdin=b"" | str | dict, env={...}, args=[...], timeout=60, cwd=None) -> Result (see
    sink_process)."""

    def run(name, stdin=b"", env=None, args=(), timeout=60, direct=False, cwd=None):
        if isinstance(stdin, dict):
            stdin = json.dumps(stdin).encode()
        elif isinstance(stdin, str):
            stdin = stdin.encode()
        command, full_env = sink_process(name, env, args, direct)
        started = time.monotonic()
        completed = subprocess.run(
            command, input=stdin, capture_output=True, env=full_env, timeout=timeout, check=False, cwd=cwd
        )
        return Result(completed, time.monotonic() - started)

    return run


def assert_delivered_as_predicted(run_sink, sink, env, deliveries, secret):
    """Deliver each fixture of `deliveries` ({fixture name: None when it must be delivered, else words its refusal
    must say}): what --check predicted for a table made by hand. Returns how many were delivered."""
    for name, refused in deliveries.items():
        result = run_sink(sink, fixture_bytes(name), env)
        if refused is None:
            assert (result.code, result.stderr) == (0, ""), result
        else:
            assert_clean_failure(result, 5, secret)
            assert refused in result.stderr, result
    return sum(refused is None for refused in deliveries.values())


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


# -- the five destinations, one fixture (the fault matrix of test_reliability and test_destination_failures) -------

DEADLINE = 3  # PEEPSHOW_SINK_TIMEOUT for the matrix: small, so hangs cost seconds, not minutes
GRACE = 2  # the bound: elapsed <= deadline + 2 s


def _analytics(provider, path, token):
    def env(emulator):
        return {
            "EVENT_TRACK_PROVIDER": provider,
            "EVENT_TRACK_TOKEN": token,
            "EVENT_TRACK_USER_ID": "peepshow-cli",
            "EVENT_TRACK_ENDPOINT": emulator.url + path,
        }

    return env


def _databricks_env(emulator):
    return {"DATABRICKS_URL": emulator.url, "DATABRICKS_TOKEN": "dapi-test-token", "DATABRICKS_WAREHOUSE_ID": "wh-1"}


def _stargate_env(emulator):
    return {"CASSANDRA_URL": emulator.url, "CASSANDRA_KEYSPACE": "peepshow", "CASSANDRA_TOKEN": "AstraCS:test-token"}


def _dataapi_env(emulator):
    """Astra's Data API (its emulator starts with the keyspace and no table: the first delivery creates it)."""
    return {
        "CASSANDRA_URL": emulator.url + "/api/json/v1",
        "CASSANDRA_KEYSPACE": "peepshow",
        "CASSANDRA_TOKEN": "AstraCS:test-token",
    }


def _dataapi_rows(emulator):
    return len(emulator.rows("peepshow", "peepshow_runs")) if emulator.table("peepshow", "peepshow_runs") else 0


def _dataapi_error(code, scope, message):
    return {"id": "0d8e7f6a-1b2c-4d3e-8f9a-0b1c2d3e4f5a", "family": "REQUEST", "scope": scope, "errorCode": code,
            "title": code.replace("_", " ").capitalize(), "message": message}  # fmt: skip


# The variable a credential failure must name, per destination.
CREDENTIAL_VARIABLE = {
    "mixpanel": "EVENT_TRACK_TOKEN",
    "amplitude": "EVENT_TRACK_TOKEN",
    "segment": "EVENT_TRACK_TOKEN",
    "databricks": "DATABRICKS_TOKEN",
    "stargate": "CASSANDRA_TOKEN",
    "dataapi": "CASSANDRA_TOKEN",
}


def _databricks_rows(emulator):
    table = emulator.tables.get("main.default.peepshow_runs")
    return len(table["rows"]) if table else 0


# name -> (sink, emulator fixture, env(emulator), stored(emulator), secret, auth failure, bad request)
DESTINATIONS = {
    "mixpanel": (
        "event-track",
        "mixpanel",
        _analytics("mixpanel", "/track", "mp-token"),
        lambda emulator: len(emulator.events),
        "mp-token",
        {"status": 401, "body": {"code": 401, "error": "Invalid credentials", "status": "Unauthorized"}},
        {"status": 400, "body": {"code": 400, "error": "invalid request", "status": "Bad Request"}},
    ),
    "amplitude": (
        "event-track",
        "amplitude",
        _analytics("amplitude", "/2/httpapi", "amp-api-key"),
        lambda emulator: len(emulator.events),
        "amp-api-key",
        {"status": 400, "body": {"code": 400, "error": "Invalid API key: amp-api-key"}},
        {"status": 400, "body": {"code": 400, "error": "Invalid event JSON"}},
    ),
    "segment": (
        "event-track",
        "segment",
        _analytics("segment", "/v1/track", "seg-write-key"),
        lambda emulator: len(emulator.events),
        "seg-write-key",
        {"status": 401, "body": {"code": "unauthorized", "message": "Unauthorized"}},
        {"status": 400, "body": {"code": "invalid_request", "message": "Invalid JSON"}},
    ),
    "databricks": (
        "databricks",
        "databricks",
        _databricks_env,
        _databricks_rows,
        "dapi-test-token",
        {"status": 403, "body": {"error_code": 403, "message": "Invalid access token."}},
        {"status": 400, "body": {"error_code": "INVALID_PARAMETER_VALUE", "message": "bad request"}},
    ),
    "stargate": (
        "cassandra",
        "stargate",
        _stargate_env,
        lambda emulator: len(emulator.rows("peepshow", "peepshow_runs")),
        "AstraCS:test-token",
        {"status": 401, "body": {"description": "Missing token", "code": 401}},
        {"status": 400, "body": {"description": "Bad request: unknown field", "code": 400}},
    ),
    "dataapi": (
        "cassandra",
        "dataapi",
        _dataapi_env,
        _dataapi_rows,
        "AstraCS:test-token",
        {
            "status": 401,
            "body": {"errors": [_dataapi_error("UNAUTHENTICATED_REQUEST", "SECURITY", "Authentication failed.")]},
        },
        {
            "status": 200,
            "body": {"errors": [_dataapi_error("COMMAND_FIELD_UNKNOWN", "", "Command field 'x' not recognized.")]},
        },
    ),
}


@pytest.fixture(params=sorted(DESTINATIONS))
def destination(request, run_sink, sink_process, spool):
    sink, emulator_name, make_env, stored, secret, auth, bad = DESTINATIONS[request.param]
    emulator = request.getfixturevalue(emulator_name)
    env = dict(make_env(emulator), PEEPSHOW_SINK_TIMEOUT=str(DEADLINE))

    class Destination:
        name = request.param

        def run(self, stdin=None, args=(), **overrides):
            payload = fixture_bytes("run-full.json") if stdin is None else stdin
            return run_sink(sink, payload, dict(env, **overrides), args=args)

        def start(self, stdin=None, args=(), **overrides):
            """The sink as a running process (to signal or kill), its payload already written to its stdin. On
            Windows it has a process group of its own, which Ctrl-Break can reach alone (see POLITE_STOPS)."""
            payload = fixture_bytes("run-full.json") if stdin is None else stdin
            command, full_env = sink_process(sink, dict(env, **overrides), args)
            process = subprocess.Popen(
                command,
                env=full_env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                creationflags=OWN_GROUP,
            )
            process.stdin.write(payload)
            process.stdin.close()
            process.stdin = None  # written and closed: communicate() has nothing left to send
            return process

        def stored(self):
            return stored(self.emulator)

        def spooled(self):
            directory = spool / sink
            if not directory.is_dir():
                return []
            return sorted(path for path in directory.iterdir() if path.suffix == ".json" and path.name[0] != ".")

    destination = Destination()
    destination.emulator, destination.secret = emulator, secret
    destination.auth, destination.bad = auth, bad
    destination.data_requests = lambda: [
        request for request in emulator.requests if request.method == "POST" and "/cancel" not in request.path
    ]
    return destination


def _dataapi():
    from tests.emulators.dataapi import DataAPI

    return DataAPI()


dataapi_server_fixture, dataapi_fixture = _emulator_fixture("dataapi", _dataapi)
