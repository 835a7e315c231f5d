"""The Mixpanel emulator answers the way the real /track and /import do (see tests/emulators/mixpanel.py)."""

import base64
import gzip
import json
import urllib.parse

import pytest
import urllib3

from tests.conftest import standalone_emulator
from tests.emulators.mixpanel import Mixpanel

TOKEN = "mp-token"
SECRET = "mp-secret"
NOW = 1_800_000_000  # seconds
DAY = 24 * 3600


@pytest.fixture(scope="module")
def server():
    with Mixpanel().start() as emulator:
        yield emulator


@pytest.fixture
def mp(server):
    server.reset()
    server.now = lambda: NOW
    server.reject_unknown_tokens = False
    return server


class FreshConnections:
    """urllib3 with a new connection per request. A kept-alive connection to http.server waits ~40 ms per request
    (Nagle against delayed ACK between the header and body writes), which would make this file several times slower."""

    def request(self, method, url, **kwargs):
        with urllib3.PoolManager(retries=False, timeout=5) as pool:
            return pool.request(method, url, **kwargs)


@pytest.fixture(scope="module")
def http():
    return FreshConnections()


def event(name="peepshow_run", insert_id="run-1", time=NOW * 1000, **properties):
    props = {"token": TOKEN, "distinct_id": "user-1", "time": time, "$insert_id": insert_id}
    props.update(properties)
    return {"event": name, "properties": {key: value for key, value in props.items() if value is not None}}


def track(http, mp, data, verbose=True, encode=json.dumps):
    fields = {"data": data if isinstance(data, str) else encode(data), "ip": "0"}
    if verbose:
        fields["verbose"] = "1"
    body = urllib.parse.urlencode(fields)
    response = http.request(
        "POST", mp.url + "/track", body=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status == 200  # /track answers 200 whatever it thinks of the events
    text = response.data.decode("utf-8")
    return json.loads(text) if verbose else text


def auth(user, password=""):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def import_(http, mp, body, user=TOKEN, strict=True, content_type="application/json", headers=None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
    sent = {"Content-Type": content_type}
    if user is not None:
        sent["Authorization"] = auth(user)
    sent.update(headers or {})
    path = "/import?strict=1" if strict else "/import"
    response = http.request("POST", mp.url + path, body=data, headers=sent)
    return response.status, json.loads(response.data.decode("utf-8"))


# -- /track -------------------------------------------------------------------------------------------------------


def test_track_accepts_an_event(http, mp):
    assert track(http, mp, event(codec="h264")) == {"status": 1, "error": None}
    assert mp.events == [
        {
            "event": "peepshow_run",
            "properties": {
                "token": TOKEN,
                "distinct_id": "user-1",
                "time": NOW * 1000,
                "$insert_id": "run-1",
                "codec": "h264",
            },
            "endpoint": "/track",
        }
    ]


def test_track_without_verbose_answers_a_bare_digit(http, mp):
    assert track(http, mp, event(), verbose=False) == "1"
    assert track(http, mp, event(token=""), verbose=False) == "0"


def test_track_takes_base64_data_and_get_requests(http, mp):
    encoded = base64.b64encode(json.dumps(event(insert_id="b64")).encode()).decode()
    assert track(http, mp, encoded) == {"status": 1, "error": None}
    query = urllib.parse.urlencode({"data": json.dumps(event(insert_id="get")), "verbose": "1"})
    response = http.request("GET", f"{mp.url}/track?{query}")
    assert json.loads(response.data) == {"status": 1, "error": None}
    assert [stored["properties"]["$insert_id"] for stored in mp.events] == ["b64", "get"]


def test_track_takes_a_list_of_events(http, mp):
    assert track(http, mp, [event(insert_id="a"), event(insert_id="b")])["status"] == 1
    assert len(mp.events) == 2


def test_track_missing_token(http, mp):
    assert track(http, mp, event(token=None)) == {"status": 0, "error": "token, missing or empty"}
    assert mp.events == []


def test_track_unknown_token_is_accepted_and_discarded(http, mp):
    assert track(http, mp, event(token="someone-else")) == {"status": 1, "error": None}
    assert mp.events == []
    assert mp.dropped[0]["reason"] == "unknown project token someone-else"


def test_track_unknown_token_can_be_refused(http, mp):
    mp.reject_unknown_tokens = True
    reply = track(http, mp, event(token="someone-else"))
    assert reply["status"] == 0
    assert "token" in reply["error"]
    assert "someone-else" in reply["error"]


def test_track_requires_an_event_name(http, mp):
    assert track(http, mp, event(name="")) == {"status": 0, "error": "event, missing or empty"}


@pytest.mark.parametrize("insert_id", ["x" * 37, "has space", "under_score", "", "null", 7])
def test_track_refuses_a_bad_insert_id(http, mp, insert_id):
    reply = track(http, mp, event(insert_id=insert_id))
    assert reply["status"] == 0
    assert reply["error"].startswith("$insert_id")
    assert mp.events == []


def test_track_accepts_a_36_character_insert_id(http, mp):
    assert track(http, mp, event(insert_id="a" * 35 + "-"))["status"] == 1


def test_track_refuses_undecodable_data(http, mp):
    assert track(http, mp, "not json!")["status"] == 0
    assert track(http, mp, "")["error"] == "data, missing or empty"


def test_track_drops_events_older_than_5_days_silently(http, mp):
    old = event(insert_id="old", time=(NOW - 5 * DAY - 60) * 1000)
    recent = event(insert_id="recent", time=NOW - 5 * DAY + 60)  # seconds work too
    assert track(http, mp, old) == {"status": 1, "error": None}
    assert track(http, mp, recent) == {"status": 1, "error": None}
    assert [stored["properties"]["$insert_id"] for stored in mp.events] == ["recent"]
    assert mp.dropped[0]["reason"].startswith("older than 5 days")


def test_track_replaces_a_future_time_with_now(http, mp):
    track(http, mp, event(time=(NOW + 3600) * 1000))
    assert mp.events[0]["properties"]["time"] == NOW * 1000


def test_track_cuts_strings_at_255_bytes(http, mp):
    track(http, mp, event(title="é" * 300, nested={"deep": ["y" * 256]}))
    properties = mp.events[0]["properties"]
    assert properties["title"] == "é" * 127  # two bytes each: the 128th would end past byte 255
    assert properties["nested"] == {"deep": ["y" * 255]}


def test_track_deduplicates_on_name_distinct_id_time_and_insert_id(http, mp):
    track(http, mp, event(time=NOW * 1000 + 250, attempt=1))
    track(http, mp, event(time=NOW, attempt=2))  # same second, other unit: the same event
    assert len(mp.events) == 1
    assert mp.events[0]["properties"]["attempt"] == 2  # the latest copy is the one kept
    track(http, mp, event(insert_id="run-2"))
    track(http, mp, event(distinct_id="user-2"))
    track(http, mp, event(name="other"))
    track(http, mp, event(time=(NOW - 1) * 1000))
    assert len(mp.events) == 5


# -- /import ------------------------------------------------------------------------------------------------------


def test_import_accepts_old_events_with_token_auth(http, mp):
    events = [event(insert_id="a", time=(NOW - 400 * DAY) * 1000), event(insert_id="b")]
    assert import_(http, mp, events) == (200, {"code": 200, "num_records_imported": 2, "status": "OK"})
    assert [stored["endpoint"] for stored in mp.events] == ["/import", "/import"]


def test_import_accepts_the_project_secret(http, mp):
    status, _ = import_(http, mp, [event()], user=SECRET)
    assert status == 200


@pytest.mark.parametrize("user", [None, "wrong", "mp-token:not-empty"])
def test_import_refuses_missing_or_bad_credentials(http, mp, user):
    headers = {}
    if user == "mp-token:not-empty":
        user, headers = None, {"Authorization": auth(TOKEN, "not-empty")}
    status, body = import_(http, mp, [event()], user=user, headers=headers)
    assert (status, body) == (401, {"code": 401, "error": "Invalid credentials", "status": "Unauthorized"})
    assert mp.events == []


def test_import_partial_failure_keeps_the_valid_events(http, mp):
    events = [
        event(insert_id="good-1"),
        event(insert_id="bad id!"),
        event(insert_id="good-2", time=NOW - 30 * DAY),
        event(insert_id="late", time=(NOW + 2 * 3600) * 1000),
        event(insert_id="anon", distinct_id="anonymous"),
        event(insert_id="noname", name=""),
        event(insert_id=None),
        event(insert_id="notime", time=None),
    ]
    status, body = import_(http, mp, events)
    assert status == 400
    assert body["code"] == 400
    assert body["error"] == "some data points in the request failed validation"
    assert body["status"] == "Bad Request"
    assert body["num_records_imported"] == 2
    failed = {record["index"]: record for record in body["failed_records"]}
    assert sorted(failed) == [1, 3, 4, 5, 6, 7]
    assert failed[1]["field"] == "properties.$insert_id"
    assert failed[1]["insert_id"] == "bad id!"
    assert failed[3]["field"] == "properties.time"
    assert failed[4]["field"] == "properties.distinct_id"
    assert failed[5]["field"] == "event"
    assert failed[6] == {
        "index": 6,
        "insert_id": None,
        "field": "properties.$insert_id",
        "message": "'properties.$insert_id' is required",
    }
    assert failed[7]["message"] == "'properties.time' is invalid: must be specified as seconds since epoch"
    assert [stored["properties"]["$insert_id"] for stored in mp.events] == ["good-1", "good-2"]


def test_import_allows_up_to_one_hour_ahead_and_an_empty_distinct_id(http, mp):
    status, _ = import_(http, mp, [event(time=(NOW + 3500) * 1000, distinct_id="")])
    assert status == 200


def test_import_without_strict_skips_invalid_events(http, mp):
    status, body = import_(http, mp, [event(), event(insert_id=None)], strict=False)
    assert (status, body) == (200, {"code": 200, "num_records_imported": 1, "status": "OK"})


def test_import_takes_ndjson_and_gzip(http, mp):
    lines = "\n".join(json.dumps(event(insert_id=f"n{i}")) for i in range(3)).encode()
    headers = {"Content-Encoding": "gzip"}
    status, _ = import_(http, mp, gzip.compress(lines), content_type="application/x-ndjson", headers=headers)
    assert status == 200
    assert len(mp.events) == 3


def test_import_refuses_a_body_that_is_not_json(http, mp):
    status, body = import_(http, mp, b"[{]")
    assert status == 400
    assert body["status"] == "Bad Request"


def test_import_more_than_2000_events_is_too_large(http, mp):
    status, body = import_(http, mp, [event(insert_id=f"e{i}") for i in range(2001)])
    assert status == 413
    assert body["status"] == "Request Entity Too Large"
    assert mp.events == []
    assert import_(http, mp, [event(insert_id=f"e{i}") for i in range(2000)])[0] == 200


def test_import_more_than_10_mb_is_too_large(http, mp):
    huge = json.dumps([event(padding="x" * (10 * 1024 * 1024))]).encode()
    status, body = import_(http, mp, huge)
    assert (status, body["code"]) == (413, 413)
    assert body["error"] == "request exceeds max limit of 10485760 bytes"


def test_import_and_track_share_the_dedup_store(http, mp):
    track(http, mp, event())
    import_(http, mp, [event()])
    assert len(mp.events) == 1
    assert mp.events[0]["endpoint"] == "/import"


# -- the documented rate limit (switched on) -------------------------------------------------------------------


class Clock:
    def __init__(self, now=NOW):
        self.now = now

    def __call__(self):
        return self.now


def test_import_past_the_project_rate_is_429_without_retry_after(http, mp):
    mp.now = clock = Clock()
    mp.limit_rates(window=1.0, events_per_second=3)
    assert import_(http, mp, [event(insert_id=f"run-{n}") for n in range(3)])[0] == 200
    response = http.request(
        "POST",
        mp.url + "/import?strict=1",
        body=json.dumps([event(insert_id="run-3")]).encode(),
        headers={"Content-Type": "application/json", "Authorization": auth(TOKEN)},
    )
    assert response.status == 429
    assert json.loads(response.data) == {
        "code": 429,
        "error": "Project exceeded rate limits. Please retry the request with exponential backoff.",
        "status": "Too Many Requests",
    }
    assert "Retry-After" not in response.headers
    assert len(mp.events) == 3
    clock.now += 1
    assert import_(http, mp, [event(insert_id="run-3")])[0] == 200


def test_the_documented_rate_is_30000_events_per_second(http, mp):
    mp.now = Clock()
    mp.limit_rates(window=1.0)
    batch = [event(insert_id=f"run-{n}") for n in range(2000)]
    for _ in range(15):
        assert import_(http, mp, batch)[0] == 200
    assert import_(http, mp, batch[:1])[0] == 429


def test_track_shares_the_limit_and_uncompressed_bytes_count(http, mp):
    mp.now = Clock()
    raw = json.dumps([event(insert_id="run-1")]).encode()
    mp.limit_rates(window=60.0, bytes_per_minute=len(raw) + 10)
    status, _ = import_(http, mp, gzip.compress(raw), headers={"Content-Encoding": "gzip"})
    assert status == 200
    body = urllib.parse.urlencode({"data": json.dumps(event(insert_id="run-2")), "verbose": "1"})
    response = http.request(
        "POST", mp.url + "/track", body=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status == 429
    assert len(mp.events) == 1


# -- plumbing -----------------------------------------------------------------------------------------------------


def test_unknown_path(http, mp):
    assert http.request("POST", mp.url + "/engage").status == 404


def test_faults_come_from_the_base_emulator(http, mp):
    mp.fault("status", status=503, body={"error": "busy"}, path="/track")
    response = http.request("POST", mp.url + "/track", body="data=x")
    assert (response.status, json.loads(response.data)) == (503, {"error": "busy"})
    assert track(http, mp, event())["status"] == 1


def test_reset_forgets_events_and_dedup_keys(http, mp):
    track(http, mp, event())
    track(http, mp, event(token="someone-else"))
    mp.reset()
    assert (mp.events, mp.dropped, mp.requests) == ([], [], [])
    track(http, mp, event())
    assert len(mp.events) == 1


def test_runs_standalone_with_its_own_tokens(http):
    with standalone_emulator("mixpanel", "--token", "cli-token") as url:
        body = urllib.parse.urlencode({"data": json.dumps(event(time=None, token="cli-token")), "verbose": "1"})
        response = http.request("POST", url + "/track", body=body)
        assert json.loads(response.data) == {"status": 1, "error": None}
