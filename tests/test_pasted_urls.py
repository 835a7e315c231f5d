"""Settings as users paste them (issue 19): every URL form a service's docs or portal prints either works or says in
one line what to change. Tables of forms against the pure resolvers; each form once end to end, from the built
zipapps, against the emulators (Astra's own host name: test_cassandra_dataapi.py)."""

import json
import os

import pytest

from tests.conftest import PATHS, TOKENS, assert_clean_failure, fixture, fixture_bytes, load_script
from tests.emulators.dataapi import DataAPI
from tests.emulators.stargate import PEEPSHOW_SCHEMA, Stargate

cassandra = load_script("cassandra")
event_track = load_script("event-track")
sink = cassandra.sink

ASTRA = "https://0f3a6c1e-9b7d-4e2a-8c55-1d2e3f4a5b6c-us-east1.apps.astra.datastax.com"
ASTRA_DEV = ASTRA.replace(".astra.", ".astra-dev.")  # astrapy's dev environment
COLUMNS = dict(PEEPSHOW_SCHEMA["columns"])


def backfill(count, prefix="pasted"):
    runs = []
    for number in range(count):
        run = fixture("run-minimal.json")
        run["outputDir"] = f"/tmp/{prefix}-{number}"
        runs.append(json.dumps(run))
    return "\n".join(runs)


# -- cassandra: which API, which base, which keyspace -------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "api", "base", "keyspace", "table"),
    [
        # Stargate REST: the docs' base, with or without its /v2, behind /api/rest, with the keyspace and table
        ("http://localhost:8082", "rest", "http://localhost:8082", "ks", "peepshow_runs"),
        ("http://localhost:8082/v2", "rest", "http://localhost:8082", "ks", "peepshow_runs"),
        ("http://localhost:8082/v2/keyspaces", "rest", "http://localhost:8082", "ks", "peepshow_runs"),
        ("http://localhost:8082/v2/keyspaces/ks", "rest", "http://localhost:8082", "ks", "peepshow_runs"),
        ("http://localhost:8082/v2/keyspaces/ks/runs", "rest", "http://localhost:8082", "ks", "runs"),
        ("https://gw.example/api/rest", "rest", "https://gw.example/api/rest", "ks", "peepshow_runs"),
        ("https://gw.example/api/rest/v2/", "rest", "https://gw.example/api/rest", "ks", "peepshow_runs"),
        ("https://gw.example/api/rest/v2/keyspaces/ks", "rest", "https://gw.example/api/rest", "ks", "peepshow_runs"),
        ("https://gw.example/db1/v2", "rest", "https://gw.example/db1", "ks", "peepshow_runs"),
        # the Data API: Astra-style /api/json[/v1[/<keyspace>[/<table>]]] anywhere, self-hosted /v1[/<keyspace>]
        ("http://localhost:8181/api/json", "data", "http://localhost:8181/api/json/v1", "ks", "peepshow_runs"),
        ("http://localhost:8181/api/json/v1", "data", "http://localhost:8181/api/json/v1", "ks", "peepshow_runs"),
        ("http://localhost:8181/api/json/v1/ks", "data", "http://localhost:8181/api/json/v1", "ks", "peepshow_runs"),
        ("http://localhost:8181/api/json/v1/ks/runs", "data", "http://localhost:8181/api/json/v1", "ks", "runs"),
        ("https://gw.example/db1/api/json/v1/ks", "data", "https://gw.example/db1/api/json/v1", "ks", "peepshow_runs"),
        ("http://localhost:8181/v1", "data", "http://localhost:8181/v1", "ks", "peepshow_runs"),
        ("http://localhost:8181/v1/ks/", "data", "http://localhost:8181/v1", "ks", "peepshow_runs"),
        ("http://localhost:8181/v1/ks/runs", "data", "http://localhost:8181/v1", "ks", "runs"),
        # Astra: the portal's endpoint, the seed's /api/rest (REST is gone there), the Data API docs' forms
        (ASTRA, "data", ASTRA + "/api/json/v1", "ks", "peepshow_runs"),
        (ASTRA + "/api/rest", "data", ASTRA + "/api/json/v1", "ks", "peepshow_runs"),
        (ASTRA + "/api/rest/v2", "data", ASTRA + "/api/json/v1", "ks", "peepshow_runs"),
        (ASTRA + "/api/rest/v2/keyspaces/ks", "data", ASTRA + "/api/json/v1", "ks", "peepshow_runs"),
        (ASTRA + "/api/json/v1/ks/runs", "data", ASTRA + "/api/json/v1", "ks", "runs"),
        (ASTRA_DEV, "data", ASTRA_DEV + "/api/json/v1", "ks", "peepshow_runs"),
    ],
)
def test_cassandra_url_forms(url, api, base, keyspace, table):
    """The keyspace and table in the URL fill in unset variables; set ones that agree are fine too."""
    config = cassandra.read_config({"CASSANDRA_URL": url, "CASSANDRA_TOKEN": "AstraCS:t", "CASSANDRA_KEYSPACE": "ks"})
    assert (config.api, config.base) == (api, base)
    assert (config.keyspace, config.table) == (keyspace, table)
    assert config.url == url.rstrip("/")  # what 0.1.0's spool keys were computed from
    if "/ks" in url:  # the URL alone names the keyspace
        config = cassandra.read_config({"CASSANDRA_URL": url, "CASSANDRA_TOKEN": "AstraCS:t"})
        assert config.keyspace == "ks"
        assert cassandra.destination(config)[1][1:] == ("ks", table)


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"CASSANDRA_URL": "http://localhost:8181/v1/other"}, "names keyspace other but CASSANDRA_KEYSPACE=ks"),
        ({"CASSANDRA_URL": "http://localhost:8181/v1/Ks"}, "names keyspace Ks but CASSANDRA_KEYSPACE=ks"),
        (
            {"CASSANDRA_URL": "http://localhost:8082/v2/keyspaces/ks/runs", "CASSANDRA_TABLE": "peepshow_runs"},
            "names table runs but CASSANDRA_TABLE=peepshow_runs",
        ),
        ({"CASSANDRA_URL": "http://localhost:8181/v1/ks", "CASSANDRA_API": "rest"}, "CASSANDRA_API=rest but"),
        ({"CASSANDRA_URL": "http://localhost:8082/v2", "CASSANDRA_API": "data"}, "CASSANDRA_API=data but"),
        ({"CASSANDRA_URL": ASTRA + "/graphql"}, "is not a path Astra serves: Astra's Data API is " + ASTRA),
        ({"CASSANDRA_URL": "http://localhost:8181/v1/" + "k" * 49, "CASSANDRA_KEYSPACE": None}, "not a Cassandra name"),
    ],
)
def test_cassandra_urls_that_say_what_to_change(env, words):
    env = {key: value for key, value in dict({"CASSANDRA_KEYSPACE": "ks"}, **env).items() if value is not None}
    with pytest.raises(sink.SinkError) as caught:
        cassandra.read_config(dict(env, CASSANDRA_TOKEN="AstraCS:t"))
    assert caught.value.code == 2 and words in caught.value.message and "\n" not in caught.value.message


def test_the_keyspace_is_required_when_the_url_names_none():
    with pytest.raises(sink.SinkError) as caught:
        cassandra.read_config({"CASSANDRA_URL": "http://localhost:8082/v2", "CASSANDRA_TOKEN": "AstraCS:t"})
    assert caught.value.code == 2 and "CASSANDRA_KEYSPACE is not set" in caught.value.message


# -- cassandra, end to end: each form reaches the very paths the service serves, never doubled ---------------------


@pytest.fixture(scope="module")
def gateway_server():
    """Stargate's REST API behind a gateway that serves it at /api/rest, as Astra did."""
    emulator = Stargate(mount="/api/rest").start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def hosted_server():
    emulator = DataAPI(astra=False, users={"peepshow": "pw-s3cret"}).start()
    yield emulator
    emulator.stop()


@pytest.mark.parametrize(
    ("where", "path", "keyspace"),
    [
        ("stargate", "/v2", "peepshow"),
        ("stargate", "/v2/", "peepshow"),
        ("stargate", "/v2/keyspaces/peepshow", None),
        ("stargate", "/v2/keyspaces/peepshow/peepshow_runs", None),
        ("gateway", "/api/rest", "peepshow"),
        ("gateway", "/api/rest/v2", "peepshow"),
        ("gateway", "/api/rest/v2/keyspaces/peepshow", None),
    ],
)
def test_stargate_rest_url_forms_deliver(run_sink, request, stargate, where, path, keyspace):
    emulator = stargate if where == "stargate" else request.getfixturevalue("gateway_server")
    emulator.reset()
    env = {
        "CASSANDRA_URL": emulator.url + path,
        "CASSANDRA_KEYSPACE": keyspace,
        "CASSANDRA_TOKEN": "AstraCS:test-token",
    }
    result = run_sink("cassandra", fixture_bytes("run-full.json"), env)
    assert (result.code, result.stderr) == (0, ""), result
    mount = "/api/rest" if where == "gateway" else ""
    assert [r.path for r in emulator.requests] == [mount + "/v2/keyspaces/peepshow/peepshow_runs"]
    assert len(emulator.rows("peepshow", "peepshow_runs")) == 1


@pytest.mark.parametrize(
    ("where", "path", "env", "sent_to"),
    [
        ("astra-style", "/api/json", {}, "/api/json/v1/peepshow/peepshow_runs"),
        ("astra-style", "/api/json/v1/", {}, "/api/json/v1/peepshow/peepshow_runs"),
        ("astra-style", "/api/json/v1/peepshow", {"CASSANDRA_KEYSPACE": None}, "/api/json/v1/peepshow/peepshow_runs"),
        ("astra-style", "/api/json/v1/peepshow/runs2", {"CASSANDRA_KEYSPACE": None}, "/api/json/v1/peepshow/runs2"),
        ("self-hosted", "/v1", {}, "/v1/peepshow/peepshow_runs"),
        ("self-hosted", "/v1/peepshow", {"CASSANDRA_KEYSPACE": None}, "/v1/peepshow/peepshow_runs"),
        ("self-hosted", "", {"CASSANDRA_API": "data"}, "/v1/peepshow/peepshow_runs"),
    ],
)
def test_data_api_url_forms_deliver(run_sink, request, dataapi, where, path, env, sent_to):
    emulator = dataapi if where == "astra-style" else request.getfixturevalue("hosted_server")
    emulator.reset()
    table = sent_to.rsplit("/", 1)[1]
    emulator.add_table("peepshow", table, COLUMNS)
    credentials = (
        {"CASSANDRA_TOKEN": "AstraCS:test-token"}
        if where == "astra-style"
        else {"CASSANDRA_USERNAME": "peepshow", "CASSANDRA_PASSWORD": "pw-s3cret"}
    )
    full = {"CASSANDRA_URL": emulator.url + path, "CASSANDRA_KEYSPACE": "peepshow", **credentials, **env}
    result = run_sink("cassandra", fixture_bytes("run-full.json"), full)
    assert (result.code, result.stderr) == (0, ""), result
    assert [r.path for r in emulator.requests] == [sent_to]
    assert len(emulator.rows("peepshow", table)) == 1


def test_a_keyspace_in_the_url_that_disagrees_is_one_line_and_sends_nothing(run_sink, dataapi):
    env = {"CASSANDRA_URL": dataapi.url + "/api/json/v1/other", "CASSANDRA_KEYSPACE": "peepshow"}
    result = run_sink("cassandra", fixture_bytes("run-full.json"), dict(env, CASSANDRA_TOKEN="AstraCS:test-token"))
    assert_clean_failure(result, 2, "AstraCS:test-token")
    assert "CASSANDRA_URL names keyspace other but CASSANDRA_KEYSPACE=peepshow" in result.stderr
    assert dataapi.requests == []


# -- event-track: the endpoint as users paste it ---------------------------------------------------------------


MP, AMP, SEG = "https://api-eu.mixpanel.com", "https://api2.amplitude.com", "https://events.eu1.segmentapis.com"
MOCK = "http://127.0.0.1:8080"


@pytest.mark.parametrize(
    ("provider", "given", "single", "batch"),
    [
        ("mixpanel", MP, MP + "/track", MP + "/import"),
        ("mixpanel", MP + "/", MP + "/track", MP + "/import"),
        ("mixpanel", MP + "/track", MP + "/track", MP + "/import"),
        ("mixpanel", MP + "/import?strict=1", MP + "/track", MP + "/import"),  # the sink adds strict=1 itself
        ("amplitude", AMP, AMP + "/2/httpapi", AMP + "/batch"),
        ("amplitude", AMP + "/batch", AMP + "/2/httpapi", AMP + "/batch"),
        ("segment", SEG, SEG + "/v1/track", SEG + "/v1/batch"),
        ("segment", SEG + "/v1/", SEG + "/v1/track", SEG + "/v1/batch"),  # as Segment's HTTP API page names it
        ("segment", SEG + "/v1/batch", SEG + "/v1/track", SEG + "/v1/batch"),
        # elsewhere (a proxy, a mock) a path is the single-event API as given, its batch beside it
        ("segment", MOCK + "/seg/v1/track", MOCK + "/seg/v1/track", MOCK + "/seg/v1/batch"),
        ("amplitude", MOCK + "/amp/2/httpapi", MOCK + "/amp/2/httpapi", MOCK + "/batch"),
        ("mixpanel", MOCK + "/mp/track?x=1", MOCK + "/mp/track?x=1", MOCK + "/mp/import?x=1"),
    ],
)
def test_event_track_endpoint_forms(provider, given, single, batch):
    env = {
        "EVENT_TRACK_PROVIDER": provider,
        "EVENT_TRACK_TOKEN": TOKENS[provider],
        "EVENT_TRACK_USER_ID": "peepshow-cli",
        "EVENT_TRACK_ENDPOINT": given,
    }
    config = event_track.read_config(env)
    assert (config.endpoint, config.batch_endpoint) == (single, batch)


@pytest.mark.parametrize(
    ("provider", "given", "words"),
    [
        ("mixpanel", "https://api.mixpanel.com/engage", "is not one of mixpanel's event APIs"),
        ("amplitude", "https://api2.amplitude.com/2/usersearch", "is not one of amplitude's event APIs"),
        (
            "mixpanel",
            "https://api2.amplitude.com/2/httpapi",
            "is Amplitude's host but EVENT_TRACK_PROVIDER is mixpanel",
        ),
        ("segment", "https://api-eu.mixpanel.com", "is Mixpanel's host but EVENT_TRACK_PROVIDER is segment"),
        ("segment", "api.segment.io/v1/track", "is not an http(s) URL"),
    ],
)
def test_event_track_endpoints_that_say_what_to_change(provider, given, words):
    env = {"EVENT_TRACK_PROVIDER": provider, "EVENT_TRACK_TOKEN": "t0ken", "EVENT_TRACK_USER_ID": "peepshow-cli"}
    with pytest.raises(sink.SinkError) as caught:
        event_track.read_config(dict(env, EVENT_TRACK_ENDPOINT=given))
    assert caught.value.code == 2 and words in caught.value.message and "EVENT_TRACK_ENDPOINT" in caught.value.message


BATCH_PATHS = {"mixpanel": "/import", "amplitude": "/batch", "segment": "/v1/batch"}


@pytest.mark.parametrize("provider", ["mixpanel", "amplitude", "segment"])
def test_a_bare_host_delivers_single_runs_and_backfills_on_the_standard_paths(run_sink, analytics, provider):
    emulator, env = analytics(provider)
    env["EVENT_TRACK_ENDPOINT"] = emulator.url  # the host alone
    result = run_sink("event-track", fixture_bytes("run-full.json"), env)
    assert (result.code, result.stderr) == (0, ""), result
    result = run_sink("event-track", backfill(2), env)
    assert result.code == 0, result
    assert [r.path for r in emulator.requests] == [PATHS[provider], BATCH_PATHS[provider]]
    assert len(emulator.events) == 3


@pytest.mark.parametrize(("provider", "pasted"), [("mixpanel", "/import"), ("amplitude", "/batch"), ("segment", "/v1")])
def test_a_pasted_batch_or_base_url_delivers_a_single_run_to_its_sibling(run_sink, analytics, provider, pasted):
    emulator, env = analytics(provider)
    env["EVENT_TRACK_ENDPOINT"] = emulator.url + pasted
    result = run_sink("event-track", fixture_bytes("run-full.json"), env)
    assert (result.code, result.stderr) == (0, ""), result
    assert [r.path for r in emulator.requests] == [PATHS[provider]]
    assert len(emulator.events) == 1


# -- PEEPSHOW_SINK_SPOOL_DIR and PEEPSHOW_SINK_SPOOL --------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("relspool", "{cwd}/relspool/cassandra"),
        ("./a/../spool2/", "{cwd}/spool2/cassandra"),
        ("~/spool3", "{home}/spool3/cassandra"),
        ("~", "{home}/cassandra"),
        ("/abs/spool", "/abs/spool/cassandra"),
        (None, "{home}/.peepshow/spool/cassandra"),
    ],
)
def test_spool_dir_is_absolute_whatever_was_typed(tmp_path, monkeypatch, value, expected):
    monkeypatch.chdir(tmp_path)
    # The home is USERPROFILE on Windows, where an absolute path also gains the current drive and backslashes.
    env = (
        {sink.HOME_VARIABLE: "/home/ana", "PEEPSHOW_SINK_SPOOL_DIR": value}
        if value
        else {sink.HOME_VARIABLE: "/home/ana"}
    )
    assert sink.spool_dir(env, "cassandra") == os.path.abspath(expected.format(cwd=tmp_path, home="/home/ana"))


@pytest.mark.parametrize(("switch", "on"), [("off", False), ("OFF", False), ("0", False), ("no", False), ("on", True)])
def test_the_spool_switch(switch, on):
    assert (sink.spool_dir({"PEEPSHOW_SINK_SPOOL": switch, "HOME": "/h"}, "x") is not None) is on


def test_a_path_in_the_spool_switch_says_which_variable_moves_the_spool():
    with pytest.raises(sink.SinkError) as caught:
        sink.spool_dir({"PEEPSHOW_SINK_SPOOL": "/var/spool/peepshow"}, "x")
    assert caught.value.code == 2 and "set PEEPSHOW_SINK_SPOOL_DIR" in caught.value.message


def test_relative_and_home_spool_dirs_keep_runs_where_the_message_says(run_sink, tmp_path, unused_port):
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    env = {
        "CASSANDRA_URL": f"http://127.0.0.1:{unused_port}",
        "CASSANDRA_KEYSPACE": "peepshow",
        "PEEPSHOW_SINK_TIMEOUT": "1",
    }
    for value, root in (("relspool", work / "relspool"), ("~/spool3", home / "spool3")):
        result = run_sink(
            "cassandra", fixture_bytes("run-full.json"), dict(env, PEEPSHOW_SINK_SPOOL_DIR=value), cwd=work
        )
        assert_clean_failure(result, 5)
        assert f"the run was kept in {root / 'cassandra'}:" in result.stderr, result
        assert len(list((root / "cassandra").glob("*.json"))) == 1
    result = run_sink("cassandra", fixture_bytes("run-full.json"), dict(env, PEEPSHOW_SINK_SPOOL=str(work)), cwd=work)
    assert_clean_failure(result, 2)
    assert "PEEPSHOW_SINK_SPOOL=" in result.stderr and "PEEPSHOW_SINK_SPOOL_DIR" in result.stderr
