"""The Amplitude emulator answers the way the real HTTP V2 / Batch API does (see tests/emulators/amplitude.py)."""

import gzip
import json

import pytest
import urllib3

from tests.conftest import standalone_emulator
from tests.emulators.amplitude import Amplitude

KEY = "amp-api-key"


class Clock:
    """A hand-moved clock, so the 7-day deduplication window takes no real time."""

    def __init__(self, now=1_800_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture(scope="module")
def server():
    with Amplitude().start() as emulator:
        yield emulator


@pytest.fixture
def amp(server):
    server.reset()
    server.clock = Clock()
    return server


def event(user_id="user-12345", **fields):
    body = {"user_id": user_id, "event_type": "peepshow_run", "time": 1_800_000_000_000}
    body.update(fields)
    return body


def request(url, body, headers):
    # One connection per request: the server writes a reply's headers and body in two segments, and on a kept-alive
    # connection Nagle's algorithm and the client's delayed ACK hold the second one back ~40 ms.
    with urllib3.PoolManager(retries=False, timeout=5) as http:
        return http.request("POST", url, body=body, headers=headers)


def post(amp, body, path="/2/httpapi", content_type="application/json", headers=None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
    sent = {"Content-Type": content_type} if content_type else {}
    sent.update(headers or {})
    response = request(amp.url + path, data, sent)
    return response.status, json.loads(response.data.decode("utf-8")), response


# -- success ------------------------------------------------------------------------------------------------------


def test_accepts_an_event_and_reports_the_upload(amp):
    body = {"api_key": KEY, "events": [event(insert_id="run-1", event_properties={"frames": 3})]}
    raw = json.dumps(body).encode("utf-8")

    status, reply, response = post(amp, raw)

    assert status == 200
    assert reply == {
        "code": 200,
        "events_ingested": 1,
        "payload_size_bytes": len(raw),
        "server_upload_time": 1_800_000_000_000,
    }
    assert response.headers["Content-Type"] == "application/json"
    assert amp.events == body["events"]


def test_content_type_with_charset_is_json(amp):
    status, _, _ = post(amp, {"api_key": KEY, "events": [event()]}, content_type="application/json; charset=UTF-8")
    assert status == 200


def test_batch_endpoint_takes_the_same_body(amp):
    status, reply, _ = post(amp, {"api_key": KEY, "events": [event(), event("user-67890")]}, path="/batch")
    assert (status, reply["events_ingested"]) == (200, 2)
    assert [stored["user_id"] for stored in amp.events] == ["user-12345", "user-67890"]


def test_gzip_body_is_decompressed(amp):
    raw = gzip.compress(json.dumps({"api_key": KEY, "events": [event()]}).encode("utf-8"))
    status, reply, _ = post(amp, raw, headers={"Content-Encoding": "gzip"})
    assert (status, reply["payload_size_bytes"]) == (200, len(raw))
    assert len(amp.events) == 1


def test_empty_events_array_ingests_nothing(amp):
    status, reply, _ = post(amp, {"api_key": KEY, "events": []})
    assert (status, reply["events_ingested"]) == (200, 0)


# -- request-level 400s -------------------------------------------------------------------------------------------


def test_refuses_a_body_that_is_not_declared_json(amp):
    form = b"data=%7B%7D"
    status, reply, _ = post(amp, form, content_type="application/x-www-form-urlencoded")
    assert (status, reply["code"]) == (400, 400)
    assert "application/json" in reply["error"]
    assert amp.events == []


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"", "Missing request body"),
        (b"{not json", "Invalid JSON request body"),
        (b"[1, 2]", "Invalid JSON request body"),
    ],
)
def test_unreadable_bodies(amp, raw, error):
    status, reply, _ = post(amp, raw)
    assert (status, reply) == (400, {"code": 400, "error": error})


def test_missing_api_key(amp):
    status, reply, _ = post(amp, {"events": [event()]})
    assert (status, reply) == (
        400,
        {"code": 400, "error": "Request missing required field", "missing_field": "api_key"},
    )


def test_unknown_api_key_is_echoed(amp):
    status, reply, _ = post(amp, {"api_key": "wrong-key-123", "events": [event()]})
    assert (status, reply) == (400, {"code": 400, "error": "Invalid API key: wrong-key-123"})


def test_missing_events(amp):
    status, reply, _ = post(amp, {"api_key": KEY})
    assert (status, reply["missing_field"]) == (400, "events")


def test_events_must_be_objects(amp):
    status, reply, _ = post(amp, {"api_key": KEY, "events": ["peepshow_run"]})
    assert (status, reply) == (400, {"code": 400, "error": "Invalid event JSON"})


def test_unknown_path(amp):
    status, reply, _ = post(amp, {"api_key": KEY, "events": [event()]}, path="/httpapi")
    assert (status, reply["error"]) == (400, "Invalid request path")


# -- event-level 400s: the whole request is refused ---------------------------------------------------------------


def test_missing_event_fields_reject_the_whole_request(amp):
    bad = [event(), {"user_id": "user-12345"}, {"event_type": "peepshow_run"}]
    status, reply, _ = post(amp, {"api_key": KEY, "events": bad})
    assert (status, reply) == (
        400,
        {
            "code": 400,
            "error": "Request missing required field",
            "events_with_missing_fields": {"event_type": [1], "user_id": [2], "device_id": [2]},
        },
    )
    assert amp.events == []


def test_time_must_be_integer_milliseconds(amp):
    bad = [event(time="2026-11-20T09:14:03.123Z"), event(), event(time=1.8e12), event(session_id="abc")]
    status, reply, _ = post(amp, {"api_key": KEY, "events": bad})
    assert (status, reply) == (
        400,
        {
            "code": 400,
            "error": "Invalid field values on some events",
            "events_with_invalid_fields": {"time": [0, 2], "session_id": [3]},
        },
    )
    assert amp.events == []


@pytest.mark.parametrize("event_type", ["", 42, "[Amplitude] Revenue"])
def test_bad_event_types(amp, event_type):
    status, reply, _ = post(amp, {"api_key": KEY, "events": [event(event_type=event_type)]})
    assert (status, reply["events_with_invalid_fields"]) == (400, {"event_type": [0]})


def test_short_ids_are_refused_even_next_to_a_good_one(amp):
    bad = [event("u1", device_id="device-12345"), event(device_id="d2")]
    status, reply, _ = post(amp, {"api_key": KEY, "events": bad})
    assert (status, reply) == (
        400,
        {
            "code": 400,
            "error": "Invalid id length for user_id or device_id",
            "events_with_invalid_id_lengths": {"user_id": [0], "device_id": [1]},
        },
    )
    assert amp.events == []


def test_min_id_length_option_allows_short_ids(amp):
    body = {"api_key": KEY, "events": [event("u1"), event(1234)], "options": {"min_id_length": 1}}
    status, _, _ = post(amp, body)
    assert status == 200
    assert [stored["user_id"] for stored in amp.events] == ["u1", 1234]


def test_numeric_ids_are_length_checked(amp):
    status, reply, _ = post(amp, {"api_key": KEY, "events": [event(1234)]})
    assert (status, reply["events_with_invalid_id_lengths"]) == (400, {"user_id": [0]})
    status, _, _ = post(amp, {"api_key": KEY, "events": [event(123456)]})
    assert status == 200


@pytest.mark.parametrize(
    "placeholder", ["0", "-1", "null", "None", "nil", "UNDEFINED", "unknown", "Anonymous", "n/a", "na", "LMY47D"]
)
def test_placeholder_ids_are_refused_whatever_min_id_length(amp, placeholder):
    body = {"api_key": KEY, "events": [event(placeholder)], "options": {"min_id_length": 1}}
    status, reply, _ = post(amp, body)
    assert (status, reply) == (
        400,
        {"code": 400, "error": "Invalid field values on some events", "events_with_invalid_fields": {"user_id": [0]}},
    )
    assert amp.events == []


def test_all_zero_device_id_is_refused(amp):
    body = {"api_key": KEY, "events": [event(device_id="00000000-0000-0000-0000-000000000000")]}
    status, reply, _ = post(amp, body)
    assert (status, reply["events_with_invalid_fields"]) == (400, {"device_id": [0]})


# -- limits -------------------------------------------------------------------------------------------------------


def test_more_than_2000_events_is_too_large(amp):
    status, reply, _ = post(amp, {"api_key": KEY, "events": [event()] * 2001})
    assert (status, reply) == (413, {"code": 413, "error": "Payload too large"})
    assert amp.events == []
    status, reply, _ = post(amp, {"api_key": KEY, "events": [event()] * 2000})
    assert (status, reply["events_ingested"]) == (200, 2000)


def test_more_than_1_mb_is_too_large(amp):
    body = {"api_key": KEY, "events": [event(event_properties={"pad": "x" * 1000}) for _ in range(1000)]}
    status, reply, _ = post(amp, body)
    assert (status, reply) == (413, {"code": 413, "error": "Payload too large"})
    status, _, _ = post(amp, body, path="/batch")  # the Batch API takes up to 20 MB
    assert status == 200


def test_long_strings_are_truncated_to_1024_characters(amp):
    props = {"tags": "t" * 1500, "exact": "e" * 1024, "nested": {"list": ["é" * 2000, 7]}}
    status, _, _ = post(amp, {"api_key": KEY, "events": [event(event_properties=props)]})
    assert status == 200
    stored = amp.events[0]["event_properties"]
    assert stored == {"tags": "t" * 1024, "exact": "e" * 1024, "nested": {"list": ["é" * 1024, 7]}}


# -- throttling ---------------------------------------------------------------------------------------------------


def test_throttled_user_gets_429_without_retry_after(amp):
    amp.throttle_user("user-12345", times=2)
    body = {"api_key": KEY, "events": [event("other-user"), event(), event()]}

    for _ in range(2):
        status, reply, response = post(amp, body)
        assert (status, reply) == (
            429,
            {
                "code": 429,
                "error": "Too many requests for some devices and users",
                "eps_threshold": 30,
                "throttled_devices": {},
                "throttled_users": {"user-12345": 31},
                "throttled_events": [1, 2],
            },
        )
        assert "Retry-After" not in response.headers
    assert amp.events == []

    status, _, _ = post(amp, body)
    assert status == 200
    assert len(amp.events) == 3


def test_throttle_spares_other_users(amp):
    amp.throttle_user("user-12345")
    status, _, _ = post(amp, {"api_key": KEY, "events": [event("other-user")]})
    assert status == 200
    status, _, _ = post(amp, {"api_key": KEY, "events": [event()]})
    assert status == 429


def test_throttled_device(amp):
    amp.throttle_device("device-12345")
    status, reply, _ = post(amp, {"api_key": KEY, "events": [event(device_id="device-12345")]}, path="/batch")
    assert (status, reply["eps_threshold"], reply["throttled_devices"]) == (429, 1000, {"device-12345": 1001})


def test_batch_takes_at_most_2000_events_too(amp):
    status, reply, _ = post(amp, {"api_key": KEY, "events": [event()] * 2001}, path="/batch")
    assert (status, reply) == (413, {"code": 413, "error": "Payload too large"})


# -- documented rate limits (switched on) --------------------------------------------------------------------------


def test_batch_throttles_a_user_past_1000_events_per_second(amp):
    amp.limit_rates(window=1.0)
    status, _, _ = post(amp, {"api_key": KEY, "events": [event()] * 1000}, path="/batch")
    assert status == 200

    status, reply, response = post(amp, {"api_key": KEY, "events": [event("other-user"), event()]}, path="/batch")
    assert (status, reply) == (
        429,
        {
            "code": 429,
            "error": "Too many requests for some devices and users",
            "eps_threshold": 1000,
            "throttled_devices": {},
            "throttled_users": {"user-12345": 1001},
            "exceeded_daily_quota_users": {},
            "exceeded_daily_quota_devices": {},
            "throttled_events": [1],
        },
    )
    assert "Retry-After" not in response.headers
    assert len(amp.events) == 1000  # the refused request ingested nothing, not even the other user's event

    amp.clock.now += 1.0
    status, _, _ = post(amp, {"api_key": KEY, "events": [event()] * 1000}, path="/batch")
    assert status == 200


def test_the_rate_is_a_30_second_average(amp):
    amp.limit_rates()  # the documented window: 30,000 events of one user in 30 s reach 1000 events per second
    for _ in range(15):
        status, _, _ = post(amp, {"api_key": KEY, "events": [event()] * 2000}, path="/batch")
        assert status == 200
    status, reply, _ = post(amp, {"api_key": KEY, "events": [event()]}, path="/batch")
    assert (status, reply["throttled_users"]) == (429, {"user-12345": 1001})
    amp.clock.now += 29.9
    assert post(amp, {"api_key": KEY, "events": [event()]}, path="/batch")[0] == 429
    amp.clock.now += 0.1
    assert post(amp, {"api_key": KEY, "events": [event()]}, path="/batch")[0] == 200


def test_http_api_allows_30_events_per_second_and_counts_apart_from_batch(amp):
    amp.limit_rates()
    status, _, _ = post(amp, {"api_key": KEY, "events": [event()] * 900})
    assert status == 200
    status, reply, _ = post(amp, {"api_key": KEY, "events": [event()]})
    assert (status, reply["eps_threshold"], reply["throttled_users"]) == (429, 30, {"user-12345": 31})
    assert "exceeded_daily_quota_users" not in reply  # not in the documented /2/httpapi 429
    assert post(amp, {"api_key": KEY, "events": [event()]}, path="/batch")[0] == 200


def test_devices_are_throttled_on_their_own(amp):
    amp.limit_rates(window=1.0, thresholds={"/batch": 2})
    shared = [event("user-aaaaa", device_id="device-12345"), event("user-bbbbb", device_id="device-12345")]
    assert post(amp, {"api_key": KEY, "events": shared}, path="/batch")[0] == 200
    status, reply, _ = post(amp, {"api_key": KEY, "events": [event("user-ccccc", device_id="device-12345")]}, "/batch")
    assert (status, reply["throttled_devices"], reply["throttled_users"]) == (429, {"device-12345": 3}, {})


def test_daily_quota_refuses_a_user_for_a_rolling_24_hours(amp):
    amp.limit_daily(5)
    assert post(amp, {"api_key": KEY, "events": [event()] * 5}, path="/batch")[0] == 200
    status, reply, _ = post(amp, {"api_key": KEY, "events": [event("other-user"), event()]}, path="/batch")
    assert (status, reply["exceeded_daily_quota_users"], reply["throttled_users"], reply["throttled_events"]) == (
        429,
        {"user-12345": 5},
        {},
        [1],
    )
    assert post(amp, {"api_key": KEY, "events": [event()]})[0] == 429  # every endpoint
    amp.clock.now += 23 * 3600
    assert post(amp, {"api_key": KEY, "events": [event()]}, path="/batch")[0] == 429
    amp.clock.now += 3600  # the hour the events were counted in has left the rolling 24 hours
    assert post(amp, {"api_key": KEY, "events": [event()]}, path="/batch")[0] == 200


def test_reset_switches_the_limits_off(amp):
    amp.limit_rates(window=1.0, thresholds={"/batch": 1}).limit_daily(1)
    amp.reset()
    assert post(amp, {"api_key": KEY, "events": [event()] * 3}, path="/batch")[0] == 200
    assert post(amp, {"api_key": KEY, "events": [event()] * 3}, path="/batch")[0] == 200


# -- deduplication ------------------------------------------------------------------------------------------------


def test_same_insert_id_is_stored_once_per_user(amp):
    body = {"api_key": KEY, "events": [event(insert_id="run-1"), event(insert_id="run-1")]}
    status, reply, _ = post(amp, body)
    assert (status, reply["events_ingested"]) == (200, 2)
    status, _, _ = post(amp, body)  # a retry of the same request
    assert status == 200
    assert len(amp.events) == 1
    assert len(amp.duplicates) == 3

    post(amp, {"api_key": KEY, "events": [event("user-67890", insert_id="run-1")]})
    assert len(amp.events) == 2  # another user's run-1 is another event


def test_device_id_decides_when_present(amp):
    first = event("user-12345", device_id="device-12345", insert_id="run-1")
    second = event("user-67890", device_id="device-12345", insert_id="run-1")
    post(amp, {"api_key": KEY, "events": [first, second]})
    assert amp.events == [first]


def test_insert_id_is_forgotten_after_7_days(amp):
    body = {"api_key": KEY, "events": [event(insert_id="run-1")]}
    post(amp, body)
    amp.clock.now += 7 * 24 * 3600 - 1
    post(amp, body)
    assert len(amp.events) == 1
    amp.clock.now += 1
    post(amp, body)
    assert len(amp.events) == 2


def test_reset_forgets_events_switches_and_insert_ids(amp):
    body = {"api_key": KEY, "events": [event(insert_id="run-1")]}
    post(amp, body)
    amp.throttle_user("user-12345", times=5)
    amp.fault("status", status=503)

    amp.reset()

    assert (amp.events, amp.duplicates, amp.requests, amp.faults) == ([], [], [], [])
    status, _, _ = post(amp, body)
    assert status == 200
    assert len(amp.events) == 1


def test_other_api_keys_are_other_projects(amp, monkeypatch):
    monkeypatch.setattr(amp, "api_keys", {"key-one", "key-two"})
    for key in ("key-one", "key-two"):
        status, _, _ = post(amp, {"api_key": key, "events": [event(insert_id="run-1")]})
        assert status == 200
    assert len(amp.events) == 2
    status, _, _ = post(amp, {"api_key": KEY, "events": [event()]})
    assert status == 400


# -- standalone ---------------------------------------------------------------------------------------------------


def test_runs_standalone_with_its_own_keys():
    with standalone_emulator("amplitude", "--api-key", "cli-key-1") as url:
        body = json.dumps({"api_key": "cli-key-1", "events": [event()]}).encode("utf-8")
        response = request(url + "/2/httpapi", body, {"Content-Type": "application/json"})
        assert response.status == 200
