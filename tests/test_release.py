"""Releases (issue 14): one version everywhere, checksums a user can verify, workflows that lint clean.

The version lives in pyproject.toml alone: a checkout reads it, build.sh stamps it into each zipapp, whose archive
comment and package metadata carry it too, and every request's User-Agent names it. dist/SHA256SUMS is what a
release publishes beside the zipapps. Both GitHub workflows pass actionlint and zizmor, and a broken one does not.
"""

import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest
import tomllib

from tests.conftest import DIST, ROOT, SINK_PYTHON, bash_script, fixture_bytes, minimal_env
from tests.emulators.stargate import StargateAuth

SINKS = ("event-track", "databricks", "cassandra")
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
RUN = fixture_bytes("run-full.json")


def run(command, timeout=120, **options):
    return subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=timeout, **options)


# -- one version, read from pyproject.toml ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", SINKS)
def test_each_zipapp_says_pyprojects_version(run_sink, name):
    result = run_sink(name, args=["--version"])
    assert (result.code, result.stdout, result.stderr) == (0, f"{name} {VERSION}\n", ""), result


@pytest.mark.parametrize("name", SINKS)
def test_a_checkout_says_pyprojects_version(name, tmp_path):
    result = run([sys.executable, ROOT / "bin" / name, "--version"], cwd=tmp_path, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{name} {VERSION}\n", "")


@pytest.mark.parametrize("name", SINKS)
def test_the_zipapp_file_names_its_version(name):
    zipapp = DIST / f"{name}.pyz"
    with zipfile.ZipFile(zipapp) as archive:
        assert archive.comment == f"peepshow-sinks {VERSION}: {name}".encode()  # what `unzip -z` shows
    info = zipfile.Path(zipapp, at=f"site-packages/peepshow_sinks-{VERSION}.dist-info/")
    distribution = importlib.metadata.PathDistribution(info)
    assert (distribution.metadata["Name"], distribution.version) == ("peepshow-sinks", VERSION)


@pytest.mark.slow
def test_changing_pyproject_changes_every_place(tmp_path):
    # A copy of the build inputs with another version, built with the project's own .venv (nothing to install).
    copy = tmp_path / "copy"
    for directory in ("bin", "lib"):
        shutil.copytree(ROOT / directory, copy / directory)
    for name in ("build.sh", "requirements-dev.txt"):
        shutil.copy2(ROOT / name, copy / name)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert pyproject.count(f'\nversion = "{VERSION}"\n') == 1
    (copy / "pyproject.toml").write_text(pyproject.replace(f'\nversion = "{VERSION}"\n', '\nversion = "9.8.7rc1"\n'))
    (copy / ".venv").symlink_to(ROOT / ".venv", target_is_directory=True)
    built = run(bash_script("./build.sh"), cwd=copy, env=dict(os.environ, SINKS="event-track"), check=False)
    assert built.returncode == 0, built.stderr[-2000:]

    zipapp = copy / "dist" / "event-track.pyz"
    env = minimal_env(tmp_path, SHIV_ROOT=str(tmp_path / "shiv"))
    assert run([SINK_PYTHON, zipapp, "--version"], env=env, check=True).stdout == "event-track 9.8.7rc1\n"
    checkout = run([sys.executable, copy / "bin" / "event-track", "--version"], check=True)
    assert checkout.stdout == "event-track 9.8.7rc1\n"
    with zipfile.ZipFile(zipapp) as archive:
        assert archive.comment == b"peepshow-sinks 9.8.7rc1: event-track"
        assert "site-packages/peepshow_sinks-9.8.7rc1.dist-info/METADATA" in archive.namelist()


def test_the_helper_reads_pyproject_only_when_asked():
    # Start-up must not pay for the version: importing the helper leaves it unread, the first read caches it.
    script = (
        "import sys; sys.path.insert(0, 'lib'); import peepshow_sink as sink\n"
        "assert sink._version is None\n"
        "print(sink.version(), sink._version)\n"
    )
    assert run([sys.executable, "-c", script], cwd=ROOT, check=True).stdout == f"{VERSION} {VERSION}\n"


# -- every request names the sink and its release -------------------------------------------------------------------


def assert_user_agent(emulator, name, sdk_parts=""):
    agents = {request.header("user-agent") for request in emulator.requests}
    assert agents == {f"peepshow-sink-{name}/{VERSION}{sdk_parts}"}


@pytest.mark.parametrize("provider", ["mixpanel", "amplitude", "segment"])
def test_event_track_user_agent(run_sink, analytics, provider):
    emulator, env = analytics(provider)
    result = run_sink("event-track", RUN, env)
    assert result.code == 0, result
    assert_user_agent(emulator, "event-track")


def test_databricks_user_agent(run_sink, databricks):
    env = {"DATABRICKS_URL": databricks.url, "DATABRICKS_TOKEN": "dapi-test-token", "DATABRICKS_WAREHOUSE_ID": "wh-1"}
    result = run_sink("databricks", RUN, env)
    assert result.code == 0, result
    # After the sink's name/version, what the Databricks SDKs send after theirs (SPEC §3b): python, os, auth method.
    python = ".".join(map(str, sys.version_info[:3]))
    system = "windows" if sys.platform in ("win32", "cygwin") else sys.platform.rstrip("0123456789")
    assert_user_agent(databricks, "databricks", f" python/{python} os/{system} auth/pat")


@pytest.fixture
def stargate_auth(stargate):
    auth = StargateAuth(users={"peepshow": "pw-s3cret"}, on_token=stargate.add_token).start()
    yield auth
    auth.stop()


def test_cassandra_user_agent_also_when_minting_a_token(run_sink, stargate, stargate_auth):
    env = {
        "CASSANDRA_URL": stargate.url,
        "CASSANDRA_KEYSPACE": "peepshow",
        "CASSANDRA_USERNAME": "peepshow",
        "CASSANDRA_PASSWORD": "pw-s3cret",
        "CASSANDRA_AUTH_URL": stargate_auth.url,
    }
    result = run_sink("cassandra", RUN, env)
    assert result.code == 0, result
    assert len(stargate_auth.minted) == 1
    assert_user_agent(stargate_auth, "cassandra")
    assert_user_agent(stargate, "cassandra")


# -- checksums, and the README's download ----------------------------------------------------------------------------


def test_sha256sums_covers_every_zipapp_under_both_names():
    lines = (DIST / "SHA256SUMS").read_text().splitlines()
    names = sorted(f"{name}.pyz" for name in SINKS) + sorted(f"peepshow-sink-{name}" for name in SINKS)
    assert lines == [f"{hashlib.sha256((DIST / name).read_bytes()).hexdigest()}  {name}" for name in names]


@pytest.mark.parametrize("name", SINKS)
def test_the_bytes_do_not_depend_on_the_building_python(name):
    # A release is built by CI's Python, a user's build by theirs: nothing may name the builder's version, such as
    # the __pycache__/*.cpython-3XX.pyc entries pip lists in a RECORD when it compiles what it installs.
    with zipfile.ZipFile(DIST / f"{name}.pyz") as archive:
        for entry in archive.namelist():
            assert ".pyc" not in entry and "cpython-3" not in archive.read(entry).decode("utf-8", "replace"), entry


def test_the_readme_download_is_verified(tmp_path):
    # What a user who never clones does: download the README's files into a directory and check them.
    readme = (ROOT / "README.md").read_text()
    downloads = set(re.findall(r"/releases/latest/download/([\w.-]+)", readme))
    assert {"databricks.pyz", "SHA256SUMS"} <= downloads
    for name in downloads:
        shutil.copy2(DIST / name, tmp_path / name)  # a README name that no build makes fails here
    # the Linux form, and the macOS one where Perl's shasum is at hand
    checks = [["sha256sum", "-c", "--ignore-missing", "SHA256SUMS"]]
    checks += [["shasum", "-a", "256", "-c", "--ignore-missing", "SHA256SUMS"]] if shutil.which("shasum") else []
    for command in checks:
        check = run(command, cwd=tmp_path, check=False)
        assert check.returncode == 0, check
        assert "databricks.pyz: OK" in check.stdout

    with (tmp_path / "databricks.pyz").open("ab") as zipapp:
        zipapp.write(b"\0")
    for command in checks:
        check = run(command, cwd=tmp_path, check=False)
        assert check.returncode != 0 and "databricks.pyz: FAILED" in check.stdout


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0"])
def test_release_notes_come_from_the_changelog(version):
    notes = run(bash_script(ROOT / ".ci" / "release-notes", version), check=True).stdout
    assert notes.strip(), notes
    assert "## [" not in notes  # one section, not the next one too


def test_release_notes_refuse_a_version_without_a_section():
    result = run(bash_script(ROOT / ".ci" / "release-notes", "99.0.0"), check=False)
    assert result.returncode == 1 and result.stdout == ""
    assert "no '## [99.0.0]" in result.stderr


def test_the_version_has_its_changelog_section():
    # The release workflow refuses a tag without one: bump pyproject.toml and CHANGELOG.md together.
    assert run(bash_script(ROOT / ".ci" / "release-notes", VERSION), check=False).returncode == 0


# -- the macOS job's check -------------------------------------------------------------------------------------------


def test_the_macos_check_passes_under_libressl(tmp_path):
    # CI's macOS job runs `.ci/check-zipapps` with /usr/bin/python3; here a sitecustomize makes this Python look
    # like LibreSSL to urllib3, which then warns on import unless the sinks keep it quiet.
    (tmp_path / "sitecustomize.py").write_text("import ssl\nssl.OPENSSL_VERSION = 'LibreSSL 2.8.3'\n")
    env = minimal_env(tmp_path, PYTHONPATH=str(tmp_path))
    result = run([SINK_PYTHON, ROOT / ".ci" / "check-zipapps", DIST], env=env, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "LibreSSL 2.8.3" in result.stdout
    assert result.stdout.count(": exit 0\n") == 4 * len(SINKS)


def test_the_macos_check_fails_on_a_warning(tmp_path):
    # A zipapp that does its job but writes a warning on stderr must fail the check.
    source = tmp_path / "source"
    source.mkdir()
    (source / "__main__.py").write_text(
        "import sys\n"
        "sys.stderr.write('NotOpenSSLWarning: urllib3 v2 only supports OpenSSL 1.1.1+\\n')\n"
        f"print('event-track {VERSION}')\n"
    )
    dist = tmp_path / "dist"
    dist.mkdir()
    for name in SINKS:
        shutil.copy2(DIST / f"{name}.pyz", dist)
    run([sys.executable, "-m", "zipapp", source, "-o", dist / "event-track.pyz"], check=True)
    env = minimal_env(tmp_path)
    result = run([SINK_PYTHON, ROOT / ".ci" / "check-zipapps", dist], env=env, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL event-track --version: exit 0" in result.stderr and "NotOpenSSLWarning" in result.stderr
    assert "FAIL databricks" not in result.stderr and "FAIL cassandra" not in result.stderr


# -- the workflows pass the linters, and a broken one does not -------------------------------------------------------

WORKFLOWS = ROOT / ".github" / "workflows"


def lint(*files):
    """`./build.sh lint-workflows`, the very command `./build.sh test` runs before pytest."""
    result = run(bash_script(ROOT / "build.sh", "lint-workflows", *files), cwd=ROOT, check=False)
    return result.returncode, result.stdout + result.stderr


def test_both_workflows_pass_the_linters():
    assert {"ci.yml", "release.yml"} <= {path.name for path in WORKFLOWS.iterdir()}
    assert {path.suffix for path in WORKFLOWS.iterdir()} == {".yml"}  # all of them are in the linters' glob
    code, output = lint()
    assert code == 0, output


CHECKOUT = "actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1"


@pytest.mark.parametrize(
    ("workflow", "old", "new", "reported"),
    [
        # zizmor: an action by tag, credentials left in .git, a write token for every job, untrusted text in a script
        ("ci.yml", CHECKOUT, "actions/checkout@v7", ["unpinned-uses"]),
        ("ci.yml", "        with:\n          persist-credentials: false\n", "", ["artipacked"]),
        ("release.yml", "permissions:\n  contents: read\n", "permissions: write-all\n", ["excessive-permissions"]),
        (
            "release.yml",
            "run: sha256sum -c SHA256SUMS",
            'run: echo "${{ github.event.head_commit.message }}"',
            ["template-injection", "potentially untrusted"],  # both linters see this one
        ),
        # actionlint: a misspelt key, a step that does not exist, a shell bug (through shellcheck)
        ("ci.yml", "runs-on: macos-latest", "run-on: macos-latest", ['unexpected key "run-on"']),
        ("ci.yml", "steps.sinks.outputs", "steps.sink.outputs", ['property "sink" is not defined']),
        ("release.yml", "cmp build/first-build.sha256 dist/SHA256SUMS", "cmp $FIRST dist/SHA256SUMS", ["SC2086"]),
    ],
    ids=["unpinned", "credentials", "permissions", "injection", "key", "expression", "shell"],
)
def test_a_broken_workflow_fails_the_linters(tmp_path, workflow, old, new, reported):
    text = (WORKFLOWS / workflow).read_text()
    assert old in text  # the breakage still applies to the workflow as it is now
    broken = tmp_path / workflow
    broken.write_text(text.replace(old, new, 1))
    code, output = lint(broken)
    assert code != 0, output
    for finding in reported:
        assert finding in output
