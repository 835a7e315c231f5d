"""What the sinks do differently on Windows, pinned on every system: each Windows branch called with the inputs it
meets there (issue 22). CI's Windows job runs the whole suite on Windows itself."""

import contextlib
import io
import os

import pytest

from tests.conftest import load_script

db = load_script("databricks")
sink = db.sink
PATHEXT = ".COM;.EXE;.BAT;.CMD"


@contextlib.contextmanager
def as_windows():
    """os.name as Windows has it, for the block only (pytest itself must not take this system for Windows)."""
    saved, os.name = os.name, "nt"
    try:
        yield
    finally:
        os.name = saved


# -- which program runs: PATHEXT ---------------------------------------------------------------------------------


def program(folder, name):
    path = folder / name
    path.write_text("@echo off\n")
    path.chmod(0o755)  # so that os.access(X_OK) holds here as it does for any file on Windows
    return str(path)


def test_the_azure_cli_is_az_cmd_not_the_shell_script_beside_it(tmp_path):
    # The Azure CLI's Windows install: wbin\az (a shell script for Git Bash and Cygwin) and wbin\az.cmd.
    program(tmp_path, "az")
    az_cmd = program(tmp_path, "az.cmd")
    with as_windows():
        found = db.find_program("az", {"PATH": str(tmp_path), "PATHEXT": PATHEXT})
    assert found == az_cmd


def test_a_given_path_takes_pathext_too(tmp_path):
    exe = program(tmp_path, "databricks.exe")
    program(tmp_path, "databricks")  # no extension: no program on Windows
    env = {"PATH": "", "PATHEXT": PATHEXT}
    with as_windows():
        assert db.find_program("databricks", env, given=str(tmp_path / "databricks")) == exe
        assert db.find_program("databricks", env, given=exe) == exe  # named with its extension: as it is
        assert db.find_program("databricks", env, given=str(tmp_path / "databricks.sh")) is None


def test_without_pathext_windows_defaults_count(tmp_path):
    program(tmp_path, "az")
    bat = program(tmp_path, "az.bat")
    with as_windows():
        assert db.find_program("az", {"PATH": str(tmp_path)}) == bat


# -- a batch file's arguments ----------------------------------------------------------------------------------------

AZ_CMD = r"C:\Program Files\Microsoft SDKs\Azure\CLI2\wbin\az.cmd"
TOKEN_COMMAND = [AZ_CMD, "account", "get-access-token", "--resource", "https://management.core.windows.net/"]


def test_the_arguments_the_sink_gives_az_pass_as_they_are():
    tenant = ["--tenant", "72f988bf-86f1-41af-91ab-2d7cd011db47", "--subscription", "0b1f6471-1bf0-4dda-aec3"]
    assert db.batch_unsafe([*TOKEN_COMMAND, "--output", "json", *tenant], windows=True) is None
    profile = [r"C:\tools\databricks.cmd", "auth", "token", "--profile", "my workspace", "--host", "https://x.net"]
    assert db.batch_unsafe(profile, windows=True) is None


@pytest.mark.parametrize("tenant", ["x&calc.exe", "x|more", "x>out", "%PATH%", 'x"y', "x^y", "x(y)", "x!y"])
def test_an_argument_cmd_exe_would_interpret_is_named(tenant):
    # The tenant can come from the workspace's answer (its /aad/auth redirect): cmd.exe must never read it.
    assert db.batch_unsafe([*TOKEN_COMMAND, "--tenant", tenant], windows=True) == tenant
    assert db.batch_unsafe([AZ_CMD.replace(".cmd", ".BAT"), "--tenant", tenant], windows=True) == tenant


def test_only_a_batch_file_on_windows_is_judged():
    command = [r"C:\tools\databricks.exe", "auth", "token", "--profile", "a&b"]  # an .exe gets its argv as it is
    assert db.batch_unsafe(command, windows=True) is None
    assert db.batch_unsafe([*TOKEN_COMMAND, "--tenant", "a&b"], windows=False) is None


# -- what peepshow reads: UTF-8, plain newlines ----------------------------------------------------------------------


def windows_pipe():
    """(bytes written, the text stream Python gives a pipe on Windows: the ANSI code page, CRLF newlines)."""
    raw = io.BytesIO()
    return raw, io.TextIOWrapper(raw, encoding="cp1252", newline="\r\n")


def test_output_on_windows_is_utf8_with_plain_newlines(monkeypatch):
    monkeypatch.delenv("PYTHONIOENCODING", raising=False)
    raw, stream = windows_pipe()
    with as_windows():
        sink._tolerant(stream)
    stream.write("databricks: SQL Warehouses → Connection details for « été »\n")
    stream.flush()
    assert raw.getvalue() == "databricks: SQL Warehouses → Connection details for « été »\n".encode()


def test_pythonioencoding_still_decides_on_windows(monkeypatch):
    monkeypatch.setenv("PYTHONIOENCODING", "cp1252")
    raw, stream = windows_pipe()
    with as_windows():
        sink._tolerant(stream)
    stream.write("été → x\n")
    stream.flush()
    assert raw.getvalue() == "été \\u2192 x\n".encode("cp1252")


# -- the home ------------------------------------------------------------------------------------------------------


def test_the_home_is_the_variable_expanduser_reads(monkeypatch, tmp_path):
    # USERPROFILE on Windows (where Python ignores HOME), HOME elsewhere: the spool and ~/.databrickscfg follow it.
    monkeypatch.setenv(sink.HOME_VARIABLE, str(tmp_path))
    assert os.path.expanduser("~") == str(tmp_path)
    spool = sink.spool_dir({sink.HOME_VARIABLE: str(tmp_path)}, "databricks")
    assert spool == os.path.join(str(tmp_path), ".peepshow", "spool", "databricks")
