"""Benchmark of the built zipapps against the local emulators (`./build.sh bench`). Run by hand, never by pytest.

Prints, with every ratio taken against a baseline measured in the same run:
  (a) each warm zipapp's single-run wall time against `python -c 'import urllib3'` (target <= 1.15x), and what a
      steady-state single run costs: databricks statements, Data API HTTP requests (target: 1)
  (b) a 10,000-run backfill in one process against the one-process-per-run loop, timed on a sample
      (targets: >= 100x event-track and databricks, >= 50x cassandra over Stargate REST, >= 500x over the Data API)
  (c) peak RSS of one run carrying a 5 MiB transcript (target <= 40 MB), and of 10,000- and 100,000-run streams
      (target: at most 100 bytes more per run, the identities of the runs seen)
  (d) a 10,000-run backfill of one user per analytics provider against emulators that enforce the documented rate
      limits over every 1-second window: each run stored exactly once, and Amplitude's time against the floor the
      limit sets (10,000 runs at 1,000 events/s: 10 s; goal <= 1.5x)
  (e) the databricks zipapp each way in (personal access token, OAuth M2M, workload identity federation from an
      environment variable, a file and GitHub Actions, the Databricks CLI's login, an Entra ID service principal, the
      Azure CLI): HTTP requests
      per steady-state run, every emulator counted (goal: 1, as for a personal access token), and the median time
Options: --runs N (single-run repetitions, default 60), --backfill N (default 10000), --stream N (default 100000),
--sample N (runs timed one process each, default 40), --auth-runs N (steady-state runs per way in, default 20),
--parts abcde (which of the five to run).
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.emulators.amplitude import Amplitude  # noqa: E402
from tests.emulators.dataapi import DataAPI  # noqa: E402
from tests.emulators.databricks import DEFAULT_SERVICE_PRINCIPALS, Databricks  # noqa: E402
from tests.emulators.mixpanel import Mixpanel  # noqa: E402
from tests.emulators.segment import Segment  # noqa: E402
from tests.emulators.stargate import Stargate  # noqa: E402

PYTHON = os.path.realpath(sys.executable)  # the real interpreter, not a pyenv shim (~20 ms per start)
MANIFEST = json.loads((ROOT / "tests" / "fixtures" / "manifest.json").read_text())
MAXRSS = (
    "import resource, subprocess, sys\n"
    "with open(sys.argv[1], 'rb') as stdin:\n"
    "    code = subprocess.run(sys.argv[2:], stdin=stdin, stdout=subprocess.DEVNULL).returncode\n"
    "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


def manifests(count, offset=0, transcript=None, year=2026):
    """`count` distinct runs as NDJSON lines (what a backfill of peepshow's manifests looks like)."""
    for number in range(offset, offset + count):
        run = dict(MANIFEST, outputDir=f"/tmp/peepshow-bench-{number}", runId=f"bench-{number}")
        run["createdAt"] = f"{year}-{(number % 12) + 1:02d}-{(number % 28) + 1:02d}T09:14:03.{number % 1000:03d}Z"
        if transcript:
            run["audio"] = dict(run["audio"], transcript={"language": "en", "text": transcript})
        yield json.dumps(run) + "\n"


def write(path, lines):
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(lines)
    return path


def timed(command, env, stdin_path=None):
    with open(stdin_path or os.devnull, "rb") as stdin:
        started = time.perf_counter()
        completed = subprocess.run(command, env=env, stdin=stdin, capture_output=True, check=False)
        elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"{command[-1]} failed: exit {completed.returncode}: {completed.stderr.decode()[-400:]}")
    return elapsed


def peak_rss_mb(command, env, stdin_path):
    output = subprocess.run(
        [PYTHON, "-c", MAXRSS, str(stdin_path), *command], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    if output[0] != "0":
        raise SystemExit(f"{command[-1]} failed with exit {output[0]}")
    return int(output[1]) / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--backfill", type=int, default=10000)
    parser.add_argument("--stream", type=int, default=100000)
    parser.add_argument("--sample", type=int, default=40)
    parser.add_argument("--auth-runs", type=int, default=20)
    parser.add_argument("--parts", default="abcde")
    options = parser.parse_args()

    segment, databricks, stargate, dataapi = (
        Segment().start(),
        Databricks().start(),
        Stargate().start(),
        DataAPI().start(),
    )
    work = Path(tempfile.mkdtemp(prefix="peepshow-bench-"))
    base_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(work),
        "SHIV_ROOT": str(work / "shiv"),
        "PEEPSHOW_SINK_TIMEOUT": "60",
    }
    sinks = {
        "event-track": {
            "EVENT_TRACK_PROVIDER": "segment",
            "EVENT_TRACK_TOKEN": "seg-write-key",
            "EVENT_TRACK_USER_ID": "peepshow-cli",
            "EVENT_TRACK_ENDPOINT": segment.url + "/v1/track",
        },
        "databricks": {
            "DATABRICKS_HOST": databricks.url,
            "DATABRICKS_TOKEN": "dapi-test-token",
            "DATABRICKS_WAREHOUSE_ID": "wh-1",
        },
        "cassandra": {
            "CASSANDRA_URL": stargate.url,
            "CASSANDRA_KEYSPACE": "peepshow",
            "CASSANDRA_TOKEN": "AstraCS:test-token",
        },
        "cassandra-data": {  # the Data API, as on Astra: the first run creates the table, then one request a run
            "CASSANDRA_URL": dataapi.url + "/api/json/v1",
            "CASSANDRA_KEYSPACE": "peepshow",
            "CASSANDRA_TOKEN": "AstraCS:test-token",
        },
    }

    # Single runs only: the same zipapp another way in (its token is kept between runs: see (e) for every way in).
    client_id, secret = next(iter(DEFAULT_SERVICE_PRINCIPALS.items()))
    variants = {
        "databricks oauth-m2m": {
            "DATABRICKS_HOST": databricks.url,
            "DATABRICKS_CLIENT_ID": client_id,
            "DATABRICKS_CLIENT_SECRET": secret,
            "DATABRICKS_WAREHOUSE_ID": "wh-1",
        }
    }

    def env_for(name, spool):
        # A spool (and its record of delivered runs) per sink and variant: Stargate's and the Data API's emulators
        # share a host, which the sink takes for one database, so a run one delivered the other would skip.
        directory = work / f"{spool}-{name.replace(' ', '-')}"
        return dict(base_env, PEEPSHOW_SINK_SPOOL_DIR=str(directory), **{**sinks, **variants}[name])

    def command(name):
        return [PYTHON, str(ROOT / "dist" / f"{name.split()[0].split('-data')[0]}.pyz")]

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}")
    print(f"python: {platform.python_version()} ({PYTHON}); emulators on 127.0.0.1 in this process\n")

    single = write(work / "single.ndjson", manifests(1))
    for name in sinks:  # unpack each zipapp once: the figures below are warm starts
        timed(command(name), env_for(name, "warmup"), single)

    # What one run costs at the destination: each databricks statement is a warehouse query; the Data API is
    # counted in HTTP requests.
    count = lambda: len(databricks.statements)  # noqa: E731
    statements = {"databricks": count, "databricks oauth-m2m": count, "cassandra-data": lambda: len(dataapi.requests)}
    if "a" in options.parts:
        single_runs(options, work, base_env, [*sinks, *variants], env_for, command, statements, list(variants))
    if "b" in options.parts:
        backfills(options, work, sinks, env_for, command, statements)
    if "c" in options.parts:
        peak_memory(options, work, sinks, env_for, command)
    if "d" in options.parts:
        rate_limits(options, work, base_env, command)
    if "e" in options.parts:
        ways_in(options, work, base_env, command)
    for emulator in (segment, databricks, stargate, dataapi):
        emulator.stop()
    return 0


def unit(name):
    return "requests" if name == "cassandra-data" else "statements"


def per_run(counters, name, before, runs):
    """`   N statements per run` for a sink whose statements are counted, else nothing."""
    if name not in counters:
        return ""
    return f"   {(counters[name]() - before) / runs:.2f} {unit(name)} per run"


def single_runs(options, work, base_env, sinks, env_for, command, counters, variants=()):
    print(f"(a) single run, warm, median of {options.runs} interleaved runs")
    # The baseline imports the very urllib3 the zipapps carry (their unpacked copy), not whatever version the
    # interpreter happens to have installed.
    (bundled,) = (work / "shiv").glob("event-track.pyz_*/site-packages")
    baseline_env = dict(base_env, PYTHONPATH=str(bundled))
    baseline_command = [PYTHON, "-c", "import urllib3"]
    samples = {"baseline": []}
    sent = dict.fromkeys(counters, 0)
    for number in range(options.runs):
        samples["baseline"].append(timed(baseline_command, baseline_env))
        for index, name in enumerate(sinks):
            # A new run each time (different run ids) so the destination really writes.
            one = write(work / "one.json", manifests(1, offset=10**6 + number * len(sinks) + index))
            before = counters[name]() if name in counters else 0
            samples.setdefault(name, []).append(timed(command(name), env_for(name, "single"), one))
            if name in counters:
                sent[name] += counters[name]() - before
    baseline = statistics.median(samples["baseline"])
    print(f"    python -c 'import urllib3'  {baseline * 1000:7.1f} ms")
    for name in sinks:
        median = statistics.median(samples[name])
        statements = f"   {sent[name] / options.runs:.2f} {unit(name)} per run" if name in sent else ""
        target = "(target <= 1.15x)"
        print(f"    {name:<26}  {median * 1000:7.1f} ms   {median / baseline:.2f}x  {target}{statements}")


def backfills(options, work, sinks, env_for, command, counters):
    print(f"\n(b) backfill of {options.backfill} runs in one process vs one process per run ({options.sample} timed)")
    for name in sinks:
        before = counters[name]() if name in counters else None
        loop = [
            timed(
                command(name),
                env_for(name, f"loop-{name}"),
                write(work / "loop.json", manifests(1, offset=2 * 10**6 + i)),
            )
            for i in range(options.sample)
        ]
        statements = per_run(counters, name, before, options.sample)
        per_run_seconds = statistics.mean(loop)
        batch_file = write(work / f"backfill-{name}.ndjson", manifests(options.backfill, offset=3 * 10**6))
        batch = timed(command(name), env_for(name, f"backfill-{name}"), batch_file)
        target = {"cassandra": 50, "cassandra-data": 500}.get(name, 100)
        speedup = per_run_seconds * options.backfill / batch
        loop_total = per_run_seconds * options.backfill
        print(
            f"    {name:<14} loop {per_run_seconds * 1000:6.1f} ms/run (x{options.backfill} = {loop_total:7.1f} s)"
            f"   backfill {batch:6.2f} s   {speedup:6.0f}x  (target >= {target}x){statements}"
        )


def peak_memory(options, work, sinks, env_for, command):
    print("\n(c) peak RSS")
    transcript = ("All work and no play makes a dull video. " * 140000)[: 5 * 1024 * 1024]
    big = write(work / "big.json", manifests(1, offset=4 * 10**6, transcript=transcript))
    for name in sinks:
        rss = peak_rss_mb(command(name), env_for(name, f"big-{name}"), big)
        print(f"    {name:<14} one run with a 5 MiB transcript   {rss:5.1f} MB  (target <= 40 MB)")
    small = write(work / "stream-small.ndjson", manifests(options.stream // 10, offset=5 * 10**6))
    large = write(work / "stream-large.ndjson", manifests(options.stream, offset=6 * 10**6))
    small_rss = peak_rss_mb(command("event-track"), env_for("event-track", "stream-small"), small)
    large_rss = peak_rss_mb(command("event-track"), env_for("event-track", "stream-large"), large)
    # A stream keeps one document and one read chunk, plus a small int per run it has seen (what makes a run the
    # stream repeats one copy): the growth per run is what the benchmark watches.
    per_run = (large_rss - small_rss) * 1024 * 1024 / (options.stream - options.stream // 10)
    print(
        f"    event-track  stream of {options.stream // 10:>6} runs  {small_rss:5.1f} MB;"
        f" of {options.stream:>6} runs  {large_rss:5.1f} MB  ({per_run:+.0f} bytes a run; target <= 100)"
    )


def rate_limits(options, work, base_env, command):
    count = options.backfill
    print(f"\n(d) rate limits: a {count}-run backfill of one user, emulators enforcing the documented limits per 1 s")
    providers = {
        # provider: (emulator with its limits on, single-event path, token, the dedup id of a stored event, limit)
        "amplitude": (Amplitude().limit_rates(window=1.0), "/2/httpapi", "amp-api-key", lambda e: e["insert_id"], ""),
        "mixpanel": (
            Mixpanel().limit_rates(window=1.0),
            "/track",
            "mp-token",
            lambda e: e["properties"]["$insert_id"],
            "30,000 events/s per project",
        ),
        "segment": (
            Segment().limit_rates(window=1.0),
            "/v1/track",
            "seg-write-key",
            lambda e: e["messageId"],
            "1,000 requests/s per workspace",
        ),
    }
    for offset, (provider, (emulator, path, token, dedup_id, limit)) in enumerate(providers.items()):
        emulator.start()
        env = dict(
            base_env,
            PEEPSHOW_SINK_TIMEOUT="30",  # the default: a 429 may pause as long as the provider asks
            PEEPSHOW_SINK_SPOOL_DIR=str(work / f"limits-{provider}"),
            EVENT_TRACK_PROVIDER=provider,
            EVENT_TRACK_TOKEN=token,
            EVENT_TRACK_USER_ID="peepshow-cli",
            EVENT_TRACK_ENDPOINT=emulator.url + path,
        )
        # Last year's runs: Mixpanel refuses events more than an hour in the future.
        year = time.gmtime().tm_year - 1
        runs = write(work / f"limits-{provider}.ndjson", manifests(count, offset=(7 + offset) * 10**6, year=year))
        elapsed = timed(command("event-track"), env, runs)
        stored = [dedup_id(event) for event in emulator.events]
        once = len(stored) == len(set(stored)) == count
        throttled = sum(request.status == 429 for request in emulator.requests)
        paths = sorted({request.path for request in emulator.requests})
        line = f"    {provider:<10} {','.join(paths):<10} {elapsed:6.2f} s   429s {throttled:<3}"
        line += f"  stored {len(set(stored))}/{count} {'exactly once' if once else 'NOT exactly once'}"
        if provider == "amplitude":
            floor = count / 1000
            line += f"   floor {floor:.1f} s (1,000 events/s per user)   {elapsed / floor:.2f}x  (goal <= 1.5x)"
        else:
            line += f"   ({limit})"
            if provider == "segment":
                line += f", {len(emulator.queued)} queued past 1,000 events/s"
        print(line)
        emulator.stop()


def ways_in(options, work, base_env, command):
    """(e): each way in after one run that signed in (and so filled the token cache), `--auth-runs` runs counted."""
    from tests.databricks_identity import FakeAz, azure_workspace
    from tests.emulators.identity import DEFAULT_APPLICATIONS, DEFAULT_TENANT, GitHubOidc, Issuer

    print(f"\n(e) databricks: HTTP requests per steady-state run by way in, {options.auth_runs} runs after a first one")
    databricks, github = Databricks().start(), GitHubOidc().start()
    gitlab = Issuer("https://gitlab.example.com")
    client_id, secret = next(iter(DEFAULT_SERVICE_PRINCIPALS.items()))
    subject = "project_path:group/project:ref_type:branch:ref:main"
    databricks.add_federation_policy(client_id, gitlab, subject)
    databricks.add_federation_policy(client_id, github.issuer, github.subject)
    oidc = gitlab.sign({"sub": subject, "aud": databricks.account_id}, lifetime=3600)
    (work / "oidc-token").write_text(oidc)
    (work / "az-bin").mkdir(exist_ok=True)
    az = FakeAz(work / "az-bin")
    # `databricks auth token` as the Databricks CLI prints it, for a login that lasts an hour.
    login = json.dumps(
        {"access_token": databricks.issue_token(), "token_type": "Bearer", "expiry": "2999-01-01T00:00:00Z"}
    )
    (work / "az-bin" / "databricks").write_text(f"#!/bin/sh\necho '{login}'\n")
    (work / "az-bin" / "databricks").chmod(0o755)
    target = {"DATABRICKS_HOST": databricks.url, "DATABRICKS_WAREHOUSE_ID": "wh-1"}
    job = {"ACTIONS_ID_TOKEN_REQUEST_URL": github.request_url, "ACTIONS_ID_TOKEN_REQUEST_TOKEN": github.request_token}
    app_id, app_secret = next(iter(DEFAULT_APPLICATIONS.items()))
    with azure_workspace(work / "azure") as azure:
        az.login(azure.entra)
        arm = {"ARM_CLIENT_ID": app_id, "ARM_CLIENT_SECRET": app_secret, "ARM_TENANT_ID": DEFAULT_TENANT}
        ways = {
            "pat": ({**target, "DATABRICKS_TOKEN": "dapi-test-token"}, [databricks]),
            "oauth-m2m": (
                {**target, "DATABRICKS_CLIENT_ID": client_id, "DATABRICKS_CLIENT_SECRET": secret},
                [databricks],
            ),
            "env-oidc": ({**target, "DATABRICKS_CLIENT_ID": client_id, "DATABRICKS_OIDC_TOKEN": oidc}, [databricks]),
            "file-oidc": (
                {
                    **target,
                    "DATABRICKS_CLIENT_ID": client_id,
                    "DATABRICKS_AUTH_TYPE": "file-oidc",
                    "DATABRICKS_OIDC_TOKEN_FILEPATH": str(work / "oidc-token"),
                },
                [databricks],
            ),  # fmt: skip
            "github-oidc": ({**target, "DATABRICKS_CLIENT_ID": client_id, **job}, [databricks, github]),
            "databricks-cli": (
                {**target, "PATH": f"{work / 'az-bin'}{os.pathsep}{base_env['PATH']}"},
                [databricks],
            ),
            "azure-client-secret": ({**azure.env, **arm}, [azure.workspace, azure.entra]),
            "azure-cli": (
                {**azure.env, "PATH": f"{work / 'az-bin'}{os.pathsep}{base_env['PATH']}"},
                [azure.workspace, azure.entra],
            ),
        }
        offset = 8 * 10**6
        for name, (way, emulators) in ways.items():
            env = dict(base_env, HOME=str(work / f"home-{name}"), PEEPSHOW_SINK_SPOOL_DIR=str(work / f"spool-{name}"))
            env.update(way)
            calls = len(az.calls())
            first = timed(command("databricks"), env, write(work / "one.json", manifests(1, offset=offset)))
            before = sum(len(emulator.requests) for emulator in emulators)
            samples = []
            for number in range(1, options.auth_runs + 1):
                one = write(work / "one.json", manifests(1, offset=offset + number))
                samples.append(timed(command("databricks"), env, one))
            sent = sum(len(emulator.requests) for emulator in emulators) - before
            offset += 10**5
            processes = f", {len(az.calls()) - calls} az runs in all" if name == "azure-cli" else ""
            print(
                f"    {name:<20} first run {first * 1000:6.1f} ms, then {statistics.median(samples) * 1000:6.1f} ms"
                f"   {sent / options.auth_runs:.2f} requests per run  (goal 1){processes}"
            )
    github.stop()
    databricks.stop()


if __name__ == "__main__":
    sys.exit(main())
