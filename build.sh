#!/usr/bin/env bash
# Developer entry point. Every command first sets up .venv from requirements-dev.txt (once per change of it).
#
#   ./build.sh          build dist/<sink>.pyz and dist/peepshow-sink-<sink> for event-track, databricks, cassandra,
#                       and dist/SHA256SUMS of them (what a release attaches)
#   ./build.sh demo     build, then pipe a sample run through every sink into the local emulators
#   ./build.sh test     build, then lint the workflows, ruff check, ruff format --check, and the whole pytest suite
#                       with coverage
#   ./build.sh lint-workflows [FILE...]   actionlint and zizmor (offline) on .github/workflows/*.yml or FILEs
#   ./build.sh bench    build, then the benchmark of docs/performance.md (by hand; never part of the tests)
set -euo pipefail
cd "$(dirname "$0")"

read -r -a SINKS <<< "${SINKS:-event-track databricks cassandra}"
VENV=.venv
case "$(uname -s)" in
    MINGW* | MSYS* | CYGWIN*)
        # Git Bash on Windows: a venv keeps its programs in Scripts/, and Python is `python`. Arguments go to the
        # Windows programs as written: MSYS would rewrite shiv's '/usr/bin/env python3' into a C:/ path.
        BIN=$VENV/Scripts
        PYTHON=${PYTHON:-python}
        export MSYS_NO_PATHCONV=1 MSYS2_ARG_CONV_EXCL='*'
        # The tools and tests read and write their own files as UTF-8, not in the ANSI code page; the sinks run
        # without it, in the bare environments the tests give them.
        export PYTHONUTF8=1
        ;;
    *)
        BIN=$VENV/bin
        PYTHON=${PYTHON:-python3}
        ;;
esac

setup() {
    if [ ! -x "$BIN/python" ]; then
        # The tools need 3.11+ (coverage, zizmor; tomllib for the version); the zipapps they build run on 3.9+.
        if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
            echo "build.sh: the build and test tools need Python 3.11 or newer: set PYTHON=python3.11 (or later)" >&2
            exit 2
        fi
        "$PYTHON" -m venv "$VENV"
    fi
    local stamp
    stamp="$VENV/.installed-$(sha256sum requirements-dev.txt | cut -c1-16)"
    if [ ! -f "$stamp" ]; then
        "$BIN/python" -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
        touch "$stamp"
    fi
}

project_version() {
    # No newline: on Windows print() would end the line with a CR that $(...) keeps.
    "$BIN/python" -c 'import sys, tomllib; sys.stdout.write(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])'
}

build() {
    rm -rf build/zipapp
    mkdir -p dist build/zipapp
    local urllib3_pin version name module stage
    urllib3_pin=$(grep -E '^urllib3==' requirements-dev.txt)
    version=$(project_version)
    if [[ ! "$version" =~ ^[0-9][0-9A-Za-z.+!-]*$ ]]; then
        echo "build.sh: pyproject.toml's version '$version' is not a version number" >&2
        exit 1
    fi
    for name in "${SINKS[@]}"; do
        # shiv packages importable modules: stage the script under a name that cannot shadow the `databricks`
        # or `cassandra` packages of other projects.
        module="peepshow_sink_${name//-/_}"
        stage="build/zipapp/$name"
        mkdir -p "$stage"
        # The version is stamped into the helper's copy, so a zipapp never looks for pyproject.toml.
        sed "s/^_version = None  #.*/_version = \"$version\"  # stamped by build.sh from pyproject.toml/" \
            lib/peepshow_sink.py > "$stage/peepshow_sink.py"
        if ! grep -q "^_version = \"$version\"" "$stage/peepshow_sink.py"; then
            echo "build.sh: lib/peepshow_sink.py lost its '_version = None  # ...' line: nowhere to stamp $version" >&2
            exit 1
        fi
        cp "bin/$name" "$stage/$module.py"
        # Python's own package metadata, for tools that look inside (importlib.metadata, SBOM scanners).
        mkdir -p "$stage/peepshow_sinks-$version.dist-info"
        printf 'Metadata-Version: 2.1\nName: peepshow-sinks\nVersion: %s\n' "$version" \
            > "$stage/peepshow_sinks-$version.dist-info/METADATA"
        # pip's --no-compile: otherwise the RECORD it writes for urllib3 lists __pycache__/*.cpython-3XX.pyc, and
        # builds by two Python versions (a release's, a user's) differ.
        SOURCE_DATE_EPOCH=315532800 "$BIN/shiv" --quiet --reproducible --compressed --compile-pyc \
            --python '/usr/bin/env python3' --entry-point "$module:main" \
            --site-packages "./$stage" --output-file "./build/zipapp/$name.pyz" \
            --no-deps --no-compile "$urllib3_pin" --disable-pip-version-check
        "$BIN/python" - "build/zipapp/$name.pyz" "$name" "$version" <<'PY'
# Replace shiv's __main__.py with one that survives a missing or read-only HOME: shiv unpacks the zipapp into
# ~/.shiv on first run and would die there with a traceback. Entries keep their order and timestamps, so the
# build stays byte-for-byte reproducible. The archive comment says what the file is without running it
# (`unzip -z`); shiv's environment.json cannot carry it: shiv's bootstrap rejects keys it does not know.
import json
import sys
import zipfile

archive, name, version = sys.argv[1:4]
with zipfile.ZipFile(archive) as source:
    environment = json.loads(source.read("environment.json"))
MAIN = f"""# -*- coding: utf-8 -*-
import os
import sys

# Warm start: once unpacked, go straight to the sink. shiv's bootstrap (zipfile, hashlib, subprocess, compileall)
# costs ~15 ms per run, a fifth of a run; it still does the first unpacking and every SHIV_* override.
_root = os.path.expanduser(os.environ.get("SHIV_ROOT") or os.path.join("~", ".shiv"))
_name = os.path.basename(os.path.realpath(sys.argv[0]))
_site = os.path.join(_root, _name + "_{environment['build_id']}", "site-packages")
if not _root.startswith("~") and os.path.isdir(_site) and not any(key.startswith("SHIV_") and key != "SHIV_ROOT" for key in os.environ):
    sys.path.insert(0, _site)
    from {environment['entry_point'].split(':')[0]} import main

    sys.exit(main())


def _usable(path):
    if path.startswith("~"):  # HOME unset and no passwd entry: never unpack into ./~ of the working directory
        return False
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK)


def _private(path):
    # The temp directory is shared: use a fallback only if this user made it and nobody else can write into it,
    # or whoever planted it first would have their code run as this user.
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        info = os.lstat(path)
    except OSError:
        return False
    # Windows has no uid and shows every folder as writable by all (0o777): no fallback passes there, and a run whose
    # profile is unusable unpacks into a new folder of its own (mkdtemp), slower but never another user's.
    owner = getattr(os, "getuid", lambda: info.st_uid)()
    return stat.S_ISDIR(info.st_mode) and info.st_uid == owner and not info.st_mode & 0o022


if not os.environ.get("SHIV_ROOT") and not _usable(_root):
    import stat
    import tempfile

    _fallback = os.path.join(tempfile.gettempdir(), "shiv-%s" % getattr(os, "getuid", lambda: "user")())
    os.environ["SHIV_ROOT"] = _fallback if _private(_fallback) else tempfile.mkdtemp(prefix="shiv-")
try:
    import _bootstrap

    _bootstrap.bootstrap()
except OSError as error:
    sys.stderr.write(
        "{name}: cannot unpack the zipapp into %s (%s): set SHIV_ROOT to a writable directory\\n"
        % (os.environ.get("SHIV_ROOT") or _root, error.strerror or error)
    )
    sys.exit(3)
"""
with open(archive, "rb") as handle:
    data = handle.read()
shebang = data[: data.index(b"PK")]
with zipfile.ZipFile(archive) as source:
    entries = [(info, source.read(info)) for info in source.infolist()]
with open(archive, "wb") as handle:
    handle.write(shebang)
    with zipfile.ZipFile(handle, "w") as target:
        target.comment = f"peepshow-sinks {version}: {name}".encode()
        for info, content in entries:
            if info.filename == "__main__.py":
                content = MAIN.encode("utf-8")
            if not info.is_dir():  # the builder's umask must not leak into the bytes (or into unpacked modes)
                info.external_attr = 0o100644 << 16
            target.writestr(info, content)
PY
        install -m 0755 "build/zipapp/$name.pyz" "dist/$name.pyz"
        install -m 0755 "build/zipapp/$name.pyz" "dist/peepshow-sink-$name"
    done
    write_checksums
}

write_checksums() {
    # What a release attaches, in `sha256sum -c` form: every zipapp in dist/, in a locale-independent order. Written
    # by Python: Git Bash's sha256sum marks the files '*' (binary) when its stdin is no terminal, so its lines would
    # depend on the system and on how the build was started.
    "$BIN/python" - <<'PY'
import glob
import hashlib
import os

os.chdir("dist")
names = sorted(glob.glob("*.pyz")) + sorted(glob.glob("peepshow-sink-*"))
with open("SHA256SUMS.tmp", "w", encoding="utf-8", newline="\n") as sums:
    for name in names:
        with open(name, "rb") as handle:
            sums.write(f"{hashlib.sha256(handle.read()).hexdigest()}  {name}\n")
os.replace("SHA256SUMS.tmp", "SHA256SUMS")
PY
}

lint_workflows() {
    # Offline, so a broken workflow fails here rather than on a tag; both linters always run, so one run shows every
    # finding. actionlint checks the run: scripts with the pinned shellcheck, and never with whatever pyflakes is
    # on PATH; zizmor audits security with its pedantic persona.
    local files=("$@") failed=0
    if [ ${#files[@]} -eq 0 ]; then
        files=(.github/workflows/*.yml)
    fi
    "$BIN/actionlint" -shellcheck "$BIN/shellcheck" -pyflakes= -- "${files[@]}" || failed=1
    "$BIN/zizmor" --offline --no-progress --color=never --persona=pedantic --strict-collection --quiet \
        -- "${files[@]}" || failed=1
    return "$failed"
}

command=${1:-build}
case "$command" in
    build)
        setup
        build
        ls -l dist
        ;;
    demo)
        setup
        build
        "$BIN/python" tests/demo.py
        ;;
    test)
        setup
        build
        lint_workflows
        "$BIN/ruff" check .
        "$BIN/ruff" format --check .
        rm -f .coverage .coverage.*
        "$BIN/python" -m coverage run -m pytest "${@:2}"
        # The zipapps run in subprocesses, measured too: combine, with their modules mapped back to bin/ and lib/.
        "$BIN/python" tests/coverage_combine.py
        "$BIN/python" -m coverage report
        ;;
    lint-workflows)
        setup
        lint_workflows "${@:2}"
        ;;
    bench)
        setup
        build
        "$BIN/python" tests/benchmark.py "${@:2}"
        ;;
    *)
        echo "usage: ./build.sh [build|demo|test|lint-workflows|bench]" >&2
        exit 2
        ;;
esac
