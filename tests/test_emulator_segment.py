"""The Segment emulator answers the way the real HTTP Tracking API does (see tests/emulators/segment.py)."""

import base64
import gzip
import json

import pytest
import urllib3

from tests.conftest import standalone_emulator
from tests.emulators.segment import Segment

KEY = "seg-write-key"
SUCCESS = (200, {"success": True})


class FreshConnections:
    """urllib3 with a new connection per request: a kept-alive connection to http.server waits ~40 ms per request
    (Nagle against delayed ACK between the header and body writes)."""

    def request(self, method, url, **kwargs):
        with urllib3.PoolManager(retries=False, timeout=5) as pool:
            return pool.request(method, url, **kwargs)


@pytest.fixture(scope="module")
def server():
    with Segment().start() as emulator:
        yield emulator


@pytest.fixture
def seg(server):
    server.reset()
    return server


@pytest.fixture(scope="module")
def http():
    return FreshConnections()


def message(message_id="msg-1", **fields):
    body = {
        "userId": "user-1",
        "event": "peepshow_run",
        "properties": {"frames": 12},
        "timestamp": "2026-11-20T09:14:03.123Z",
        "messageId": message_id,
        "context": {"library": {"name": "peepshow-sink-event-track", "version": "0.1.0"}},
    }
    body.update(fields)
    return {key: value for key, value in body.items() if value is not None}


def basic(key):
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def post(http, seg, body, path="/v1/track", key=KEY, content_type="application/json", headers=None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
    sent = {"Content-Type": content_type}
    if key is not None:
        sent["Authorization"] = basic(key)
    sent.update(headers or {})
    response = http.request("POST", seg.url + path, body=data, headers=sent)
    return response.status, json.loads(response.data.decode("utf-8"))


def batch(*items, sent_at="2026-11-20T09:14:05.000Z", **envelope):
    body = {"batch": [dict(item, type="track") for item in items], "sentAt": sent_at}
    body.update(envelope)
    return body


# -- accepted -----------------------------------------------------------------------------------------------------


def test_track_with_basic_auth_is_stored_as_received(http, seg):
    sent = message(sentAt="2026-11-20T09:14:04.500Z")
    assert post(http, seg, sent) == SUCCESS
    assert seg.events == [dict(sent, type="track")]


def test_write_key_in_the_body_is_enough(http, seg):
    assert post(http, seg, message(writeKey=KEY), key=None) == SUCCESS
    assert len(seg.events) == 1


def test_short_track_path_and_text_plain_like_analytics_js(http, seg):
    assert post(http, seg, message(), path="/v1/t", content_type="text/plain") == SUCCESS
    assert len(seg.events) == 1


def test_batch_stores_track_items_with_the_envelope_sent_at_and_context(http, seg):
    identify = {"type": "identify", "userId": "user-1", "traits": {"plan": "pro"}}
    body = batch(message("a"), message("b", sentAt="2026-11-20T09:14:04.000Z"), context={"ip": "10.0.0.1"})
    body["batch"].append(identify)
    assert post(http, seg, body, path="/v1/batch") == SUCCESS
    first, second = seg.events
    assert first["sentAt"] == "2026-11-20T09:14:05.000Z"
    assert second["sentAt"] == "2026-11-20T09:14:04.000Z"
    assert first["timestamp"] == "2026-11-20T09:14:03.123Z"
    assert first["context"] == {"ip": "10.0.0.1", "library": message()["context"]["library"]}


def test_anonymous_id_alone_is_an_identity(http, seg):
    assert post(http, seg, message(userId=None, anonymousId="anon-7")) == SUCCESS
    assert seg.events[0]["anonymousId"] == "anon-7"


def test_gzip_batch_like_analytics_python(http, seg):
    body = gzip.compress(json.dumps(batch(message(), writeKey=KEY)).encode())
    assert post(http, seg, body, path="/v1/batch", headers={"Content-Encoding": "gzip"}) == SUCCESS
    assert len(seg.events) == 1


def test_same_message_id_is_stored_once(http, seg):
    post(http, seg, message())
    post(http, seg, batch(message(sentAt=None)), path="/v1/batch")  # a retry with a fresh sentAt
    post(http, seg, message("msg-2"))
    assert [event["messageId"] for event in seg.events] == ["msg-1", "msg-2"]
    assert seg.discarded[0]["reason"] == "duplicate messageId"


# -- answered 200, never stored -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "reason"), [("not-a-real-key", "unknown write key"), (None, "no write key")], ids=["unknown", "missing"]
)
def test_write_key_problems_are_not_reported(http, seg, key, reason):
    assert post(http, seg, message(), key=key) == SUCCESS
    assert post(http, seg, batch(message("b")), path="/v1/batch", key=key) == SUCCESS
    assert seg.events == []
    assert [item["reason"] for item in seg.discarded] == [reason, reason]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"userId": None}, "no userId or anonymousId (no_user_anon_id)"),
        ({"userId": ""}, "no userId or anonymousId (no_user_anon_id)"),
        ({"event": None}, "track call without event"),
        ({"messageId": "m" * 100}, "messageId must be a string of fewer than 100 characters"),
    ],
    ids=["no-user", "empty-user", "no-event", "long-message-id"],
)
def test_invalid_messages_are_dropped_after_a_200(http, seg, fields, reason):
    assert post(http, seg, message(**fields)) == SUCCESS
    assert seg.events == []
    assert seg.discarded[0]["reason"] == reason


def test_batch_items_need_a_type(http, seg):
    body = {"batch": [message()], "writeKey": KEY}
    assert post(http, seg, body, path="/v1/batch") == SUCCESS
    assert seg.discarded[0]["reason"] == "batch item without type"


def test_more_than_2500_messages_drops_the_whole_batch(http, seg):
    items = [{"userId": "u", "event": "e", "messageId": str(i)} for i in range(2501)]
    assert post(http, seg, batch(*items), path="/v1/batch") == SUCCESS
    assert seg.events == []
    assert len(seg.discarded) == 2501


# -- 400 ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/track", "/v1/batch"])
def test_malformed_json_is_a_400(http, seg, path):
    status, body = post(http, seg, b'{"userId": ', path=path)
    assert status == 400
    assert body == {"code": "invalid_request", "message": "Invalid JSON"}


def test_content_type_must_be_json(http, seg):
    status, body = post(http, seg, message(), content_type="application/x-www-form-urlencoded")
    assert status == 400
    assert "Content-Type" in body["message"]
    assert seg.events == []


def test_track_over_32_kb_is_a_400(http, seg):
    status, body = post(http, seg, message(properties={"blob": "x" * (32 * 1024)}))
    assert (status, body["message"]) == (400, "Exceed payload limit")
    assert post(http, seg, message(properties={"blob": "x" * (32 * 1024 - 400)})) == SUCCESS


def test_batch_item_over_32_kb_refuses_the_batch(http, seg):
    body = batch(message("small"), message("big", properties={"blob": "x" * (32 * 1024)}))
    status, reply = post(http, seg, body, path="/v1/batch")
    assert (status, reply["message"]) == (400, "Exceed payload limit")
    assert seg.events == []


def test_batch_over_500_kb_is_a_400(http, seg):
    items = [message(str(i), properties={"blob": "x" * (30 * 1024)}) for i in range(17)]
    status, reply = post(http, seg, batch(*items), path="/v1/batch")
    assert (status, reply["message"]) == (400, "Exceed payload limit")
    assert post(http, seg, batch(*items[:16]), path="/v1/batch") == SUCCESS
    assert len(seg.events) == 16


# -- plumbing -----------------------------------------------------------------------------------------------------


def test_unknown_path_and_method(http, seg):
    assert post(http, seg, message(), path="/v1/import")[0] == 404
    assert http.request("GET", seg.url + "/v1/track").status == 404


def test_faults_come_from_the_base_emulator(http, seg):
    seg.fault("status", status=429, headers={"Retry-After": "3"}, body={"code": "rate_limit", "message": "slow"})
    response = http.request("POST", seg.url + "/v1/track", body=b"{}", headers={"Content-Type": "application/json"})
    assert (response.status, response.headers["Retry-After"]) == (429, "3")
    assert post(http, seg, message()) == SUCCESS


def test_reset_forgets_events_and_message_ids(http, seg):
    post(http, seg, message())
    post(http, seg, message(), key="nope")
    seg.reset()
    assert (seg.events, seg.discarded, seg.requests) == ([], [], [])
    assert post(http, seg, message()) == SUCCESS
    assert len(seg.events) == 1


def test_runs_standalone_with_its_own_write_key(http):
    with standalone_emulator("segment", "--token", "cli-key") as url:
        body = json.dumps(message(writeKey="cli-key")).encode()
        response = http.request("POST", url + "/v1/track", body=body, headers={"Content-Type": "application/json"})
        assert (response.status, json.loads(response.data)) == SUCCESS


# -- the documented rate limits (switched on) -----------------------------------------------------------------------


class Clock:
    def __init__(self, now=1_800_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


def test_requests_past_the_workspace_rate_get_429_with_retry_after(http, seg):
    seg.clock = clock = Clock()
    seg.limit_rates(window=1.0, requests_per_second=2)
    for number in range(2):
        assert post(http, seg, message(f"msg-{number}")) == SUCCESS
    response = http.request(
        "POST",
        seg.url + "/v1/batch",
        body=json.dumps(batch(message("msg-2"))).encode(),
        headers={"Content-Type": "application/json", "Authorization": basic(KEY)},
    )
    assert response.status == 429
    assert (response.headers["Retry-After"], response.headers["X-RateLimit-Reset"]) == ("1", "1")
    assert len(seg.events) == 2
    clock.now += 1.0
    assert post(http, seg, batch(message("msg-2")), path="/v1/batch") == SUCCESS


def test_events_past_the_workspace_rate_are_queued_not_refused(http, seg):
    seg.clock = Clock()
    seg.limit_rates(window=1.0, events_per_second=3)
    sent = batch(*(message(f"msg-{number}") for number in range(5)))
    assert post(http, seg, sent, path="/v1/batch") == SUCCESS
    assert len(seg.events) == 5
    assert [item["messageId"] for item in seg.queued] == ["msg-3", "msg-4"]


def test_reset_switches_the_limits_off(http, seg):
    seg.clock = Clock()
    seg.limit_rates(window=1.0, requests_per_second=1)
    seg.reset()
    for number in range(3):
        assert post(http, seg, message(f"msg-{number}")) == SUCCESS
