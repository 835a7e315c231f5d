"""Branches of the three sinks that the coverage of the zipapp runs showed untested (issue 13), from the zipapps.

Each test is a situation a user meets: a database that times out on some rows of an insert, a pre-2026 Data API,
a role that may write but not create tables, a redirect, a config file that is not UTF-8, a Databricks CLI that
hangs, a Segment answer that reports failure, a provider that stops answering in the middle of a backfill.
"""

import json
import sys

import pytest

from tests.conftest import assert_clean_failure, fixture, fixture_bytes, python_program

TOKEN = "AstraCS:test-token"


def runs(prefix, count):
    """`count` distinct manifests as NDJSON, each with its own createdAt (a replay is recognised as the same run)."""
    lines = []
    for number in range(count):
        run = dict(fixture("manifest.json"), outputDir=f"/tmp/peepshow-{prefix}-{number}")
        run["createdAt"] = f"2026-11-{number % 28 + 1:02d}T09:14:03.{number % 1000:03d}Z"
        lines.append(json.dumps(run) + "\n")
    return "".join(lines).encode()


def kept(spool, sink):
    directory = spool / sink
    return sorted(directory.glob("*.json")) if directory.exists() else []


# -- cassandra over the Data API --------------------------------------------------------------------------------


@pytest.fixture
def data_env(dataapi):
    return {"CASSANDRA_URL": dataapi.url + "/api/json/v1", "CASSANDRA_KEYSPACE": "peepshow", "CASSANDRA_TOKEN": TOKEN}


def inserted_documents(dataapi):
    """How many documents each insert command carried, in order."""
    counts = []
    for request in dataapi.requests:
        body = request.json()
        if "insertMany" in body:
            counts.append(len(body["insertMany"]["documents"]))
        elif "insertOne" in body:
            counts.append(1)
    return counts


def test_rows_the_database_timed_out_on_are_sent_again_alone(run_sink, dataapi, data_env, spool):
    dataapi.row_error("TIMEOUT_WRITING_DATA", rows=2)
    result = run_sink("cassandra", runs("timeout", 5), data_env)
    assert result.code == 0, result
    assert len(dataapi.rows("peepshow", "peepshow_runs")) == 5
    # The first insertMany went in with the table creation in between; the retry carries the two rows alone.
    assert inserted_documents(dataapi)[-1] == 2
    assert kept(spool, "cassandra") == []


def test_a_pre_2026_data_api_answering_504_with_its_error_is_retried(run_sink, dataapi, data_env):
    dataapi.legacy = True
    dataapi.command_error("TIMEOUT_WRITING_DATA", times=1, command="insertOne")
    result = run_sink("cassandra", fixture_bytes("run-full.json"), data_env)
    assert result.code == 0, result
    assert [request.status for request in dataapi.requests if request.json().get("insertOne")][:1] == [504]
    assert len(dataapi.rows("peepshow", "peepshow_runs")) == 1


def test_a_role_that_may_not_create_the_table_is_told_how_to_create_it(run_sink, dataapi, data_env, spool):
    dataapi.read_only.add(TOKEN)
    result = run_sink("cassandra", fixture_bytes("run-full.json"), data_env)
    assert_clean_failure(result, 5, TOKEN)
    assert "UNAUTHORIZED_ACCESS" in result.stderr and "--print-schema" in result.stderr, result
    assert len(kept(spool, "cassandra")) == 1  # the destination's to fix: the run waits for it


def test_a_redirect_from_the_data_api_is_not_followed(run_sink, dataapi, data_env, spool):
    dataapi.fault("status", status=307, headers={"Location": "https://elsewhere.example/api/json/v1"}, times=None)
    result = run_sink("cassandra", fixture_bytes("run-full.json"), data_env)
    assert_clean_failure(result, 5, TOKEN)
    assert "redirected (HTTP 307) to https://elsewhere.example" in result.stderr and "CASSANDRA_URL" in result.stderr
    assert len(dataapi.requests) == 1 and len(kept(spool, "cassandra")) == 1


def test_an_answer_that_is_not_the_data_apis_keeps_the_run(run_sink, dataapi, data_env, spool):
    dataapi.fault("status", status=200, body={"status": {}}, times=None)
    result = run_sink("cassandra", fixture_bytes("run-full.json"), data_env)
    assert_clean_failure(result, 5, TOKEN)
    assert "unexpected answer from the Data API" in result.stderr
    assert len(kept(spool, "cassandra")) == 1


def test_check_fails_a_table_keyed_otherwise(run_sink, dataapi, data_env):
    columns = {"run_id": "text", "created_at": "timestamp", "title": "text", "frames": "bigint"}
    columns.update(duration="double", transcript="text", thumbnail_url="text", strategy="text", tags="text")
    dataapi.add_table("peepshow", "peepshow_runs", columns, primary_key=("run_id",), partition_sort=("created_at",))
    result = run_sink("cassandra", env=data_env, args=["--check"])
    assert_clean_failure(result, 5, TOKEN)
    assert "primary key is ['run_id', 'created_at'], expected run_id alone" in result.stdout, result
    assert "CASSANDRA_TABLE" in result.stderr
    assert dataapi.writes == 0


# -- databricks ----------------------------------------------------------------------------------------------------


def test_a_config_file_that_is_not_utf8_is_a_configuration_error(run_sink, databricks, tmp_path):
    config = tmp_path / "databrickscfg"
    config.write_bytes(b"[peepshow]\nhost = \xff\n")
    env = {"DATABRICKS_CONFIG_FILE": str(config), "DATABRICKS_CONFIG_PROFILE": "peepshow"}
    result = run_sink("databricks", fixture_bytes("run-full.json"), env)
    assert_clean_failure(result, 2)
    assert f"cannot read {config}" in result.stderr
    assert databricks.requests == []


def test_a_host_with_a_port_that_is_not_a_number_is_refused(run_sink, databricks):
    env = {"DATABRICKS_HOST": "https://adb-1.2.azuredatabricks.net:44x", "DATABRICKS_TOKEN": "dapi-test-token"}
    result = run_sink("databricks", fixture_bytes("run-full.json"), dict(env, DATABRICKS_WAREHOUSE_ID="wh-1"))
    assert_clean_failure(result, 2, "dapi-test-token")
    assert "DATABRICKS_HOST" in result.stderr and "is not a workspace URL" in result.stderr


def test_a_databricks_cli_that_hangs_cannot_hold_the_run(run_sink, databricks, tmp_path, spool):
    # On Windows a batch file that runs Python: the tree of cmd.exe and its child must go at the deadline.
    cli = python_program(tmp_path / "databricks", f"#!{sys.executable}\nimport time\ntime.sleep(30)\n")
    env = {
        "DATABRICKS_HOST": databricks.url,
        "DATABRICKS_WAREHOUSE_ID": "wh-1",
        "DATABRICKS_AUTH_TYPE": "databricks-cli",
        "DATABRICKS_CLI_PATH": str(cli),
        "PEEPSHOW_SINK_TIMEOUT": "2",
    }
    result = run_sink("databricks", fixture_bytes("run-full.json"), env)
    assert_clean_failure(result, 5)
    assert result.elapsed < 2 + 2, result
    assert "gave no token within" in result.stderr, result
    assert len(kept(spool, "databricks")) == 1 and databricks.statements == []


def test_check_with_the_unity_catalog_api_disabled_says_the_table_is_not_verified(run_sink, databricks):
    body = {"error_code": "FEATURE_DISABLED", "message": "Unity Catalog is not enabled for this workspace."}
    databricks.fault("status", status=400, body=body, path="/unity-catalog/")
    env = {"DATABRICKS_HOST": databricks.url, "DATABRICKS_TOKEN": "dapi-test-token", "DATABRICKS_WAREHOUSE_ID": "wh-1"}
    result = run_sink("databricks", env=env, args=["--check"])
    assert result.code == 0, result
    assert "n/a   table: not verified (the Unity Catalog API answered: Unity Catalog is not enabled" in result.stdout


def test_check_names_a_redirect_of_the_warehouse_api(run_sink, databricks):
    databricks.fault("status", status=302, headers={"Location": "https://login.example/"}, path="/sql/warehouses/")
    env = {"DATABRICKS_HOST": databricks.url, "DATABRICKS_TOKEN": "dapi-test-token", "DATABRICKS_WAREHOUSE_ID": "wh-1"}
    result = run_sink("databricks", env=env, args=["--check"])
    assert_clean_failure(result, 5, "dapi-test-token")
    assert "redirected (HTTP 302) to https://login.example/" in result.stderr


# -- event-track ---------------------------------------------------------------------------------------------------


def test_a_request_the_provider_finds_too_large_keeps_the_run(run_sink, analytics, spool):
    emulator, env = analytics("mixpanel")
    emulator.fault("status", status=413, body={"code": 413, "error": "request too large", "status": "Bad Request"})
    result = run_sink("event-track", fixture_bytes("run-full.json"), env)
    assert_clean_failure(result, 5, "mp-token")
    assert "too large (HTTP 413)" in result.stderr and len(emulator.requests) == 1
    assert len(kept(spool, "event-track")) == 1


def test_segment_reporting_failure_in_its_body_is_a_failure(run_sink, analytics, spool):
    emulator, env = analytics("segment")
    emulator.fault("status", status=200, body={"success": False, "message": "invalid write key"})
    result = run_sink("event-track", fixture_bytes("run-full.json"), env)
    assert_clean_failure(result, 5, "seg-write-key")
    assert "invalid write key" in result.stderr and "EVENT_TRACK_TOKEN" in result.stderr
    assert len(kept(spool, "event-track")) == 1


def test_a_retry_after_that_is_no_time_falls_back_to_backoff(run_sink, analytics):
    emulator, env = analytics("segment", PEEPSHOW_SINK_TIMEOUT="10")
    emulator.fault("status", status=429, headers={"Retry-After": "soon"}, path="/v1/batch")
    result = run_sink("event-track", runs("retry-after", 3), env)
    assert result.code == 0, result
    assert [request.status for request in emulator.requests] == [429, 200]
    assert len(emulator.events) == 3


def test_a_provider_that_stops_answering_mid_backfill_gets_no_further_request(run_sink, analytics, spool):
    # 600 runs are two /batch requests for Amplitude (500 events each at most): after the first one fails for
    # good, the second is not sent, and all 600 wait in the spool.
    emulator, env = analytics("amplitude", PEEPSHOW_SINK_TIMEOUT="1")
    emulator.fault("status", status=503, body={"code": 503, "error": "unavailable"}, times=None)
    result = run_sink("event-track", runs("outage", 600), env)
    assert result.code == 5, result
    sent = {len(request.json()["events"]) for request in emulator.requests}
    assert sent == {500}, sent  # only the first request, retried; never the second
    assert len(kept(spool, "event-track")) == 600
    assert "stopped: " in result.stderr.strip().splitlines()[-1]
