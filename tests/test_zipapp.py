"""Packaging: the built event-track zipapp as users get it (SPEC §5).

A zipapp copied alone anywhere runs on every supported Python with no install step, is found on PATH under the
name peepshow looks for, survives a missing or unwritable HOME, rebuilds byte for byte, and imports at start-up
only what the run needs. Runs use a private HOME and leave SHIV_ROOT unset, as a user's shell would.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from tests.conftest import DIST, ROOT, SINK_PYTHON, TOKENS, VENV_PYTHON, WINDOWS, Result, fixture_bytes, minimal_env

NAME = "event-track"
ZIPAPP = DIST / f"{NAME}.pyz"
RUN = fixture_bytes("run-full.json")
SUPPORTED = ("3.9", "3.10", "3.11", "3.12", "3.13")
VERSION_LINE = re.compile(r"event-track \d+\.\d+\.\d+\n")
CONFIG = {
    "EVENT_TRACK_PROVIDER": "segment",
    "EVENT_TRACK_TOKEN": TOKENS["segment"],
    "EVENT_TRACK_USER_ID": "peepshow-cli",
    "EVENT_TRACK_ENDPOINT": "http://127.0.0.1:9/v1/track",  # --dry-run never connects
}


def pyenv_root():
    try:
        answer = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        answer = None
    if answer is not None and answer.returncode == 0 and answer.stdout.strip():
        return Path(answer.stdout.strip())
    return Path.home() / ".pyenv"


def find_pythons():
    """{"3.9": path, …}: the newest patch release of each supported minor version under pyenv, else `python3.X`
    on PATH (where CI's setup-python puts them)."""
    found = {}
    for python in (pyenv_root() / "versions").glob("*/bin/python"):
        match = re.fullmatch(r"3\.(\d+)\.(\d+)", python.parent.parent.name)  # skips 3.13.0t, pypy, -dev
        if not match:
            continue
        minor, patch = f"3.{match[1]}", int(match[2])
        if minor in SUPPORTED and patch >= found.get(minor, (-1, None))[0]:
            found[minor] = (patch, python)
    pythons = {minor: python for minor, (_, python) in found.items()}
    for minor in SUPPORTED:
        on_path = shutil.which(f"python{minor}")
        if minor not in pythons and on_path:
            pythons[minor] = Path(on_path)
    # And the Pythons this run has for sure (on Windows, where neither pyenv nor python3.X is usual, the only ones).
    for python in (sys.executable, SINK_PYTHON):
        answer = subprocess.run(
            [python, "-c", "import sys; sys.stdout.write('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        if answer.stdout in SUPPORTED and answer.stdout not in pythons:
            pythons[answer.stdout] = Path(python)
    return pythons


PYTHONS = find_pythons()


def build_id(zipapp):
    with zipfile.ZipFile(zipapp) as archive:
        return json.loads(archive.read("environment.json"))["build_id"]


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run(command, home=None, stdin=b"", cwd=None, extra=None, timeout=60):
    """Run a command the way a user's shell would: PATH and HOME (None: unset), no SHIV_ROOT."""
    env = minimal_env(home, PEEPSHOW_SINK_SPOOL="off", **(extra or {}))
    started = time.monotonic()
    completed = subprocess.run(
        [str(part) for part in command],
        input=stdin,
        capture_output=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
        check=False,
    )
    return Result(completed, time.monotonic() - started)


def assert_clean_success(result):
    assert result.code == 0, result
    assert result.stderr == "", result


@pytest.fixture(scope="module")
def alone(tmp_path_factory):
    """The zipapp copied into an otherwise empty directory: no checkout, no lib/, no venv beside it."""
    assert ZIPAPP.exists(), f"{ZIPAPP} is missing: run ./build.sh first"
    directory = tmp_path_factory.mktemp("alone")
    shutil.copy2(ZIPAPP, directory)
    return directory / ZIPAPP.name


@pytest.fixture
def home(tmp_path):
    path = tmp_path / "home"
    path.mkdir()
    return path


# -- any directory, any supported Python -----------------------------------------------------------------------------


def test_a_supported_python_is_installed():
    assert PYTHONS, f"no Python {', '.join(SUPPORTED)} under {pyenv_root()}/versions or on PATH: nothing to test below"


@pytest.mark.parametrize("version", SUPPORTED)
def test_runs_alone_on_every_supported_python(alone, home, tmp_path, segment, version):
    python = PYTHONS.get(version)
    if python is None:
        pytest.skip(f"Python {version} is neither under {pyenv_root()}/versions nor on PATH")
    cwd = alone.parent

    result = run([python, alone, "--version"], home, cwd=cwd, extra={"TMPDIR": str(tmp_path)})
    assert_clean_success(result)
    assert VERSION_LINE.fullmatch(result.stdout), result
    assert (home / ".shiv").is_dir()  # unpacked where a user's own runs would be

    result = run([python, alone, "--help"], home, cwd=cwd)
    assert_clean_success(result)
    assert "EVENT_TRACK_PROVIDER" in result.stdout and "Exit codes" in result.stdout

    result = run([python, alone, "--dry-run"], home, RUN, cwd=cwd, extra=CONFIG)
    assert_clean_success(result)
    which, request = result.stdout.split("\n", 1)
    assert which.startswith("# event-track: segment: single runs to http://127.0.0.1:9/v1/track"), result
    assert request.startswith("POST http://127.0.0.1:9/v1/track\n"), result
    assert TOKENS["segment"] not in result.stdout

    # --dry-run never imports urllib3: deliver once too, so the bundled urllib3 is imported on this Python.
    config = dict(CONFIG, EVENT_TRACK_ENDPOINT=segment.url + "/v1/track")
    result = run([python, alone], home, RUN, cwd=cwd, extra=config)
    assert_clean_success(result)
    assert len(segment.events) == 1


def test_starts_with_its_shebang(alone):
    # Built under Git Bash on Windows too, where MSYS would turn /usr/bin/env into a C:/ path if build.sh let it.
    assert alone.read_bytes().startswith(b"#!/usr/bin/env python3\n")


@pytest.mark.skipif(WINDOWS, reason="Windows starts no file by its shebang: a zipapp runs there as `python x.pyz`")
def test_runs_through_its_shebang(alone, home):
    assert os.access(alone, os.X_OK)
    result = run(["./" + alone.name, "--version"], home, cwd=alone.parent)
    assert_clean_success(result)
    assert VERSION_LINE.fullmatch(result.stdout), result


@pytest.mark.skipif(WINDOWS, reason="Windows finds commands on PATH by PATHEXT's extensions: none has no extension")
def test_the_sink_name_on_path_is_the_same_zipapp(home):
    # peepshow's `--sink event-track` runs `peepshow-sink-event-track` from PATH.
    command = DIST / f"peepshow-sink-{NAME}"
    assert command.read_bytes() == ZIPAPP.read_bytes()
    path = f"{DIST}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"
    assert shutil.which(command.name, path=path) == str(command)
    result = run([command.name, "--version"], home, extra={"PATH": path})
    assert_clean_success(result)
    assert VERSION_LINE.fullmatch(result.stdout), result


# -- HOME: missing, unwritable -----------------------------------------------------------------------------------


def assert_works_or_names_shiv_root(result):
    """SPEC §5: a missing or read-only HOME gives a working run or one clear line, never a traceback."""
    assert "Traceback" not in result.stderr, result
    if result.code == 0:
        assert VERSION_LINE.fullmatch(result.stdout), result
        assert result.stderr == "", result
    else:
        assert result.code == 3, result
        assert len(result.stderr.strip().splitlines()) == 1, result
        assert "SHIV_ROOT" in result.stderr, result


def test_home_that_does_not_exist(alone, tmp_path):
    result = run([SINK_PYTHON, alone, "--version"], tmp_path / "gone", extra={"TMPDIR": str(tmp_path)})
    assert_works_or_names_shiv_root(result)


def test_home_unset(alone, tmp_path):
    if WINDOWS:  # no USERPROFILE, HOMEDRIVE or HOMEPATH: expanduser has no home to give, the real one is safe
        result = run([SINK_PYTHON, alone, "--version"], None, extra={"TMPDIR": str(tmp_path)})
        assert_works_or_names_shiv_root(result)
        return
    # Python falls back to the passwd entry's home, so this run may unpack into the real ~/.shiv: undo what
    # it adds there (and only that).
    import pwd

    shiv = Path(pwd.getpwuid(os.getuid()).pw_dir) / ".shiv"
    unpacked = shiv / f"{alone.name}_{build_id(alone)}"
    lock = shiv / f".{unpacked.name}_lock"
    had_shiv, had_unpacked, had_lock = shiv.exists(), unpacked.exists(), lock.exists()
    try:
        result = run([SINK_PYTHON, alone, "--version"], None, extra={"TMPDIR": str(tmp_path)})
    finally:
        if not had_unpacked:
            shutil.rmtree(unpacked, ignore_errors=True)
        if not had_lock and lock.exists():
            lock.unlink()
        if not had_shiv and shiv.is_dir() and not any(shiv.iterdir()):
            shiv.rmdir()
    assert_works_or_names_shiv_root(result)


@pytest.mark.skipif(WINDOWS, reason="Windows ignores a folder's read-only flag: the test below stands for it there")
@pytest.mark.skipif(getattr(os, "geteuid", int)() == 0, reason="root writes into a 0555 directory anyway (see below)")
def test_home_read_only(alone, tmp_path):
    home = tmp_path / "read-only"
    home.mkdir()
    home.chmod(0o555)
    try:
        result = run([SINK_PYTHON, alone, "--version"], home, extra={"TMPDIR": str(tmp_path)})
    finally:
        home.chmod(0o755)
    assert_works_or_names_shiv_root(result)
    assert not (home / ".shiv").exists()


def test_home_that_nobody_can_create(alone, tmp_path):
    # A path under a regular file cannot be created, not even by root: the stand-in for a read-only HOME.
    (tmp_path / "file").write_text("not a directory")
    result = run([SINK_PYTHON, alone, "--version"], tmp_path / "file" / "home", extra={"TMPDIR": str(tmp_path)})
    assert_works_or_names_shiv_root(result)


def test_nowhere_to_unpack_is_one_line_naming_shiv_root(alone, tmp_path):
    (tmp_path / "file").write_text("not a directory")
    unusable = tmp_path / "file" / "shiv"
    result = run([SINK_PYTHON, alone, "--version"], tmp_path, extra={"SHIV_ROOT": str(unusable)})
    assert result.code == 3, result
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result
    assert "SHIV_ROOT" in result.stderr and str(unusable) in result.stderr


def test_the_shared_fallback_cannot_be_planted(alone, tmp_path):
    # With HOME unusable the zipapp falls back to $TMPDIR/shiv-<uid>, usually in /tmp, which every user shares:
    # whatever is already unpacked there must not run unless this user made it and only this user can write it.
    shared = tmp_path / "shared-tmp"  # what /tmp is on a multi-user machine
    planted = shared / f"shiv-{getattr(os, 'getuid', lambda: 'user')()}"  # as the zipapp names it (Windows: no uid)
    unpacked = planted / f"{alone.name}_{build_id(alone)}"
    (unpacked / "site-packages").mkdir(parents=True)
    (unpacked / "site-packages" / "peepshow_sink_event_track.py").write_text(
        "def main():\n    print('planted code ran')\n    return 0\n"
    )
    for directory in (planted, unpacked, unpacked / "site-packages"):
        directory.chmod(0o777)  # as another user would leave them for us: world-writable
    (tmp_path / "file").write_text("not a directory")
    result = run([SINK_PYTHON, alone, "--version"], tmp_path / "file" / "home", extra={"TMPDIR": str(shared)})
    assert "planted code ran" not in result.stdout, result
    assert_works_or_names_shiv_root(result)


# -- reproducible build ----------------------------------------------------------------------------------------------


STAMPED_VERSION = re.compile(rb"^_version = .*$", re.MULTILINE)  # the one line build.sh changes in the helper


def stale_sources():
    """The sources that dist/event-track.pyz does not carry as they are now (a comparison would mean nothing)."""
    expected = {
        "site-packages/peepshow_sink.py": ROOT / "lib" / "peepshow_sink.py",
        "site-packages/peepshow_sink_event_track.py": ROOT / "bin" / NAME,
    }
    with zipfile.ZipFile(ZIPAPP) as archive:
        return [
            str(path)
            for name, path in expected.items()
            if STAMPED_VERSION.sub(b"", archive.read(name), 1) != STAMPED_VERSION.sub(b"", path.read_bytes(), 1)
        ]


def build_copy(directory, umask="022", timeout=120):
    """./build.sh of the copy in `directory`, event-track only, from another directory and time zone."""
    env = dict(os.environ, SINKS=NAME, PYTHON=str(VENV_PYTHON), TZ="Pacific/Kiritimati")
    env.pop("SOURCE_DATE_EPOCH", None)
    completed = subprocess.run(
        [shutil.which("bash") or "bash", "-c", f'umask {umask} && exec "$0"', "./build.sh"],  # Git's bash on Windows
        cwd=directory,
        env=env,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr.decode("utf-8", "replace")[-2000:]
    return directory / "dist" / f"{NAME}.pyz"


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory):
    """A copy of the repository's build inputs (no .git, no dist), built once: (copy, sha256)."""
    assert not stale_sources(), f"dist/ is older than {stale_sources()}: run ./build.sh first"
    copy = tmp_path_factory.mktemp("rebuild")
    for directory in ("bin", "lib"):
        shutil.copytree(ROOT / directory, copy / directory)
    for name in ("build.sh", "requirements-dev.txt", "pyproject.toml"):
        shutil.copy2(ROOT / name, copy / name)
    # The same pinned tools (the checkout's .venv, which build.sh finds set up): what must not matter is where,
    # when and under which umask and time zone the build runs.
    (copy / ".venv").symlink_to(ROOT / ".venv", target_is_directory=True)
    return copy, sha256(build_copy(copy))


@pytest.mark.slow
def test_a_rebuild_is_byte_identical(rebuilt):
    copy, digest = rebuilt
    assert digest == sha256(ZIPAPP)
    assert (copy / "dist" / f"peepshow-sink-{NAME}").read_bytes() == ZIPAPP.read_bytes()
    # and so is what a release publishes about it
    sums = (copy / "dist" / "SHA256SUMS").read_text().splitlines()
    assert sums == [f"{digest}  {NAME}.pyz", f"{digest}  peepshow-sink-{NAME}"]
    assert set(sums) <= set((DIST / "SHA256SUMS").read_text().splitlines())


@pytest.mark.slow
def test_a_rebuild_does_not_depend_on_the_umask(rebuilt):
    # File modes go into the zip: a builder with umask 077 (or a checkout of 0600 files) must not change the bytes.
    copy, _ = rebuilt
    assert sha256(build_copy(copy, umask="077")) == sha256(ZIPAPP)


# -- start-up hygiene ------------------------------------------------------------------------------------------------

# What our code could import and a single run never needs (the CLI is parsed by hand, dedup ids are hashlib, a
# run is one request): none of it may load, whatever the run.
NEVER = ("argparse", "asyncio", "concurrent.futures", "http.cookiejar", "multiprocessing", "platform")
NEVER += ("urllib.request", "uuid")
# Nothing of the network stack before a request is actually sent (urllib3 brings ssl, socket, email, logging).
NO_NETWORK = ("urllib3", "ssl", "socket", "http.client", "email", "logging", "random")
# shiv's own bootstrap imports these. They count only when the zipapp's __main__.py skips that bootstrap on a warm
# start (then they are ours to avoid), and not for a delivery (urllib3 itself imports pathlib, zipfile, typing).
SHIV_BOOTSTRAP = ("compileall", "pathlib", "shutil", "subprocess", "threading", "typing", "zipfile")


def profiled(stderr):
    """Module names from PYTHONPROFILEIMPORTTIME's lines on stderr ("import time: self | cumulative | name")."""
    lines = [line for line in stderr.splitlines() if line.startswith("import time:") and "|" in line]
    return {line.rsplit("|", 1)[1].strip() for line in lines}


def imported(result):
    names = profiled(result.stderr)
    assert "peepshow_sink" in names, result  # the profile did cover our code
    return names


@pytest.fixture(scope="module")
def any_zipapp_imports(tmp_path_factory):
    """What the interpreter imports to run any zipapp at all (Python 3.9's runpy brings typing): not ours to avoid."""
    source = tmp_path_factory.mktemp("empty-zipapp")
    (source / "__main__.py").write_text("")
    empty = source.parent / "empty.pyz"
    subprocess.run([sys.executable, "-m", "zipapp", str(source), "-o", str(empty)], check=True, timeout=60)
    env = minimal_env(PYTHONPROFILEIMPORTTIME="1")
    result = subprocess.run([SINK_PYTHON, str(empty)], env=env, capture_output=True, text=True, timeout=60, check=True)
    names = profiled(result.stderr)
    assert "zipimport" in names or "runpy" in names, result.stderr  # the profile covered the interpreter's start
    return names


@pytest.mark.parametrize(
    ("args", "stdin", "avoidable"),
    [
        (["--version"], b"", NEVER + NO_NETWORK + ("datetime", "base64", "hashlib", "urllib.parse")),
        (["--dry-run"], RUN, NEVER + NO_NETWORK),
        ([], RUN, NEVER),
    ],
    ids=["version", "dry-run", "delivery"],
)
def test_start_up_imports_only_what_the_run_needs(run_sink, analytics, any_zipapp_imports, args, stdin, avoidable):
    emulator, env = analytics("segment")
    # The first run of a build unpacks it (shiv's compileall may start a process pool): a one-off, not start-up.
    assert run_sink(NAME, args=["--version"]).code == 0
    result = run_sink(NAME, stdin, dict(env, PYTHONPROFILEIMPORTTIME="1", COVERAGE_PROCESS_CONFIG=None), args=args)
    assert result.code == 0, result
    names = imported(result) - any_zipapp_imports
    if args and "_bootstrap" not in names:
        avoidable += SHIV_BOOTSTRAP
    assert sorted(set(avoidable) & names) == []
    if not args:
        assert len(emulator.events) == 1


def test_no_urllib3_warning_under_libressl(run_sink, analytics, tmp_path):
    # macOS's /usr/bin/python3 is 3.9 linked against LibreSSL: urllib3 2 warns NotOpenSSLWarning on import, and
    # peepshow shows a sink's stderr as its failure reason. Pretend to be that Python before urllib3 is imported.
    (tmp_path / "sitecustomize.py").write_text("import ssl\nssl.OPENSSL_VERSION = 'LibreSSL 2.8.3'\n")
    without_filter = subprocess.run(
        [sys.executable, "-c", "import urllib3"], env={"PYTHONPATH": str(tmp_path)}, capture_output=True, text=True
    )
    assert "NotOpenSSLWarning" in without_filter.stderr  # the stand-in really triggers urllib3's warning
    emulator, env = analytics("segment", PYTHONPATH=str(tmp_path))
    result = run_sink("event-track", RUN, env)
    assert result.code == 0, result
    assert result.stderr == ""
    assert len(emulator.events) == 1
