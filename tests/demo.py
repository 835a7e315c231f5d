"""The main job, end to end: every built zipapp delivers a sample run into the local emulators.

Run by `./build.sh demo` (after the build). Prints what each emulator stored; exits non-zero if any sink failed.
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import minimal_env  # noqa: E402
from tests.emulators.amplitude import Amplitude  # noqa: E402
from tests.emulators.dataapi import DataAPI  # noqa: E402
from tests.emulators.databricks import DEFAULT_SERVICE_PRINCIPALS, Databricks  # noqa: E402
from tests.emulators.mixpanel import Mixpanel  # noqa: E402
from tests.emulators.segment import Segment  # noqa: E402
from tests.emulators.stargate import Stargate  # noqa: E402

SAMPLE = ROOT / "tests" / "fixtures" / "run-full.json"
SERVICE_PRINCIPAL = next(iter(DEFAULT_SERVICE_PRINCIPALS.items()))


def show(value, limit=160):
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def run(zipapp, env, workdir, case):
    home = os.path.expanduser("~")
    full_env = {
        **minimal_env(home if home != "~" else workdir),
        # A spool (and record of delivered runs) per case: Stargate's and the Data API's emulators listen on one
        # host, which the sink takes for one database (the two APIs of one Cassandra), and the sample run is one
        # run: the second would be skipped as delivered already.
        "PEEPSHOW_SINK_SPOOL_DIR": os.path.join(workdir, f"spool-{case}"),
        "PEEPSHOW_FRAME_BASE_URL": "https://frames.example.com/runs",
        **env,
    }
    with SAMPLE.open("rb") as stdin:
        completed = subprocess.run(
            [sys.executable, str(ROOT / "dist" / zipapp)],
            stdin=stdin,
            capture_output=True,
            env=full_env,
            timeout=60,
            check=False,
        )
    return completed.returncode, completed.stderr.decode("utf-8", "replace").strip()


def main():
    mixpanel, amplitude, segment = Mixpanel().start(), Amplitude().start(), Segment().start()
    databricks, stargate, dataapi = Databricks().start(), Stargate().start(), DataAPI().start()
    analytics = [  # provider, emulator, API path, token, where the emulator keeps an event's properties
        ("Mixpanel", mixpanel, "/track", "mp-token", "properties"),
        ("Amplitude", amplitude, "/2/httpapi", "amp-api-key", "event_properties"),
        ("Segment", segment, "/v1/track", "seg-write-key", "properties"),
    ]
    cases = [
        (
            f"event-track → {provider}",
            "event-track.pyz",
            {
                "EVENT_TRACK_PROVIDER": provider.lower(),
                "EVENT_TRACK_TOKEN": token,
                "EVENT_TRACK_USER_ID": "peepshow-cli",
                "EVENT_TRACK_ENDPOINT": emulator.url + path,
            },
            lambda emulator=emulator, key=key: [event[key] for event in emulator.events],
        )
        for provider, emulator, path, token, key in analytics
    ]
    cases += [
        (
            "databricks (OAuth M2M, a service principal) → Delta table main.default.peepshow_runs",
            "databricks.pyz",
            {
                "DATABRICKS_HOST": databricks.url,
                "DATABRICKS_CLIENT_ID": SERVICE_PRINCIPAL[0],
                "DATABRICKS_CLIENT_SECRET": SERVICE_PRINCIPAL[1],
                "DATABRICKS_WAREHOUSE_ID": "wh-1",
            },
            lambda: databricks.rows("main.default.peepshow_runs"),
        ),
        (
            "cassandra → Stargate peepshow.peepshow_runs",
            "cassandra.pyz",
            {
                "CASSANDRA_URL": stargate.url,
                "CASSANDRA_KEYSPACE": "peepshow",
                "CASSANDRA_TOKEN": "AstraCS:test-token",
            },
            lambda: stargate.rows("peepshow", "peepshow_runs"),
        ),
        (
            # Astra's Data API, as its emulator serves it: the sink creates the table, then inserts the row.
            "cassandra → Data API (Astra) peepshow.peepshow_runs",
            "cassandra.pyz",
            {
                "CASSANDRA_URL": dataapi.url + "/api/json/v1",
                "CASSANDRA_KEYSPACE": "peepshow",
                "CASSANDRA_TOKEN": "AstraCS:test-token",
            },
            lambda: dataapi.rows("peepshow", "peepshow_runs") if dataapi.table("peepshow", "peepshow_runs") else [],
        ),
    ]
    print(f"Sample run: {SAMPLE.relative_to(ROOT)}\n")
    failures = 0
    with tempfile.TemporaryDirectory() as workdir:
        for case, (title, zipapp, env, stored) in enumerate(cases):
            code, stderr = run(zipapp, env, workdir, case)
            records = stored()
            status = "delivered" if code == 0 else f"FAILED (exit {code}): {stderr}"
            print(f"{title}: {status}; the emulator stored {len(records)} record(s)")
            for record in records:
                for key, value in record.items():
                    # Mixpanel keeps the project token inside each event: never print a credential, even a demo one.
                    print(f"    {key:<20} {'***' if key == 'token' else show(value)}")
            print()
            failures += code != 0 or len(records) != 1
    for emulator in (mixpanel, amplitude, segment, databricks, stargate, dataapi):
        emulator.stop()
    print("all sinks delivered the sample run" if not failures else f"{failures} sink(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
