"""Hypothesis properties: whatever arrives on stdin, every sink ends with 0, 4 or 5, one clean line, no traceback.

In-process through each script's main() for volume (an internal error would surface as "internal error"), and a
smaller sample through the zipapps as peepshow runs them.
"""

import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import load_script

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], derandomize=True
)
ZIPAPP_SETTINGS = settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], derandomize=True
)


SINKS = {name: load_script(name) for name in ("event-track", "databricks", "cassandra")}

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
)
numberish = scalars | st.sampled_from(["12.5", "NaN", "Infinity", "-0", "1e400", "", " 3 ", "0x10"])
peepshow_like = st.fixed_dictionaries(
    {},
    optional={
        "outputDir": st.text(max_size=40) | scalars,
        "runId": st.text(max_size=20) | scalars,
        "createdAt": st.sampled_from(["2026-11-20T09:14:03.123Z", "2026-02-30T00:00:00Z", "yesterday"]) | scalars,
        "strategy": scalars,
        "frames": st.lists(st.fixed_dictionaries({}, optional={"path": scalars, "bytes": numberish}) | scalars),
        "video": st.fixed_dictionaries(
            {},
            optional={
                "durationSeconds": numberish,
                "width": numberish,
                "codec": scalars,
                "tags": st.dictionaries(st.text(max_size=10), scalars | st.text(max_size=300), max_size=6) | scalars,
            },
        )
        | scalars,
        "audio": st.fixed_dictionaries(
            {},
            optional={
                "durationSeconds": numberish,
                "silenceRatio": numberish,
                "transcript": st.fixed_dictionaries({}, optional={"text": scalars, "language": scalars}) | scalars,
            },
        )
        | scalars,
        "extraction": json_values,
        "input": st.fixed_dictionaries({}, optional={"filename": scalars}) | scalars,
    },
)
documents = json_values.map(lambda value: json.dumps(value).encode()) | peepshow_like.map(
    lambda value: json.dumps(value).encode()
)


@pytest.fixture
def environments(segment, databricks, stargate, tmp_path):
    shared = {"PEEPSHOW_SINK_SPOOL_DIR": str(tmp_path / "spool"), "PEEPSHOW_SINK_TIMEOUT": "5"}
    return {
        "event-track": dict(
            shared,
            EVENT_TRACK_PROVIDER="segment",
            EVENT_TRACK_TOKEN="seg-write-key",
            EVENT_TRACK_USER_ID="peepshow-cli",
            EVENT_TRACK_ENDPOINT=segment.url + "/v1/track",
        ),
        "databricks": dict(
            shared, DATABRICKS_URL=databricks.url, DATABRICKS_TOKEN="dapi-test-token", DATABRICKS_WAREHOUSE_ID="wh-1"
        ),
        "cassandra": dict(
            shared, CASSANDRA_URL=stargate.url, CASSANDRA_KEYSPACE="peepshow", CASSANDRA_TOKEN="AstraCS:test-token"
        ),
    }


def run_in_process(name, env, data):
    module = SINKS[name]
    stdout, stderr = io.StringIO(), io.StringIO()
    code = module.sink.main(module, argv=[], env=env, stdin=io.BytesIO(data), stdout=stdout, stderr=stderr)
    return code, stdout.getvalue(), stderr.getvalue()


def assert_contract(code, stderr):
    assert code in (0, 4, 5), (code, stderr)
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    if code:
        assert stderr.strip() and stderr.endswith("\n")


@pytest.mark.parametrize("name", sorted(SINKS))
@SETTINGS
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes(environments, name, data):
    code, _, stderr = run_in_process(name, environments[name], data)
    assert_contract(code, stderr)


@pytest.mark.parametrize("name", sorted(SINKS))
@SETTINGS
@given(data=documents)
def test_arbitrary_json(environments, name, data):
    code, _, stderr = run_in_process(name, environments[name], data)
    assert_contract(code, stderr)
    if code == 4:
        assert len(stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("name", sorted(SINKS))
@ZIPAPP_SETTINGS
@given(data=documents | st.binary(max_size=200))
def test_arbitrary_input_to_the_zipapp(run_sink, environments, name, data):
    result = run_sink(name, data, environments[name])
    assert_contract(result.code, result.stderr)
