"""Combine the coverage data of the test run, zipapp subprocesses included (`./build.sh test` runs it).

A zipapp runs its sink as `peepshow_sink_<name>.py` and the helper as `peepshow_sink.py`, unpacked under
<SHIV_ROOT>/<zipapp>_<id>/site-packages/: coverage's own [paths] can move a directory but not rename a file, so
the files are mapped back to bin/<name> and lib/peepshow_sink.py here, and the figure is that of the whole run.
"""

import glob
import os
import re
import sys

from coverage import CoverageData

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNPACKED = re.compile(r".*[/\\]site-packages[/\\](peepshow_sink(?:_(\w+))?)\.py$")


def source_of(path):
    match = UNPACKED.match(path)
    if not match:
        return path
    if match.group(2) is None:
        return os.path.join(ROOT, "lib", "peepshow_sink.py")
    return os.path.join(ROOT, "bin", match.group(2).replace("_", "-"))


def main():
    parts = sorted(glob.glob(os.path.join(ROOT, ".coverage.*")))
    if not parts:
        print("coverage_combine: no coverage data to combine", file=sys.stderr)
        return 1
    combined = CoverageData(basename=os.path.join(ROOT, ".coverage"))
    combined.erase()
    from_zipapps = 0
    for part in parts:
        data = CoverageData(basename=part)
        data.read()
        from_zipapps += any(UNPACKED.match(path) for path in data.measured_files())
        combined.update(data, map_path=source_of)
        data.erase()
    combined.write()
    print(f"coverage: {len(parts)} processes measured, {from_zipapps} of them zipapp runs (mapped to bin/, lib/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
