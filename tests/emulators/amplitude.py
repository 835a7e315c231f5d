"""Amplitude emulator: the HTTP V2 API (`POST /2/httpapi`) and the Batch Event Upload API (`POST /batch`).

Sources, cited below by these short names:
  [v2-docs]   Amplitude "HTTP V2 API" reference: amplitude/amplitude-docs content/collections/api/en/http-v2.md
              (2024) and its predecessor Amplitude-Developer-Docs/amplitude-dev-center
              docs/analytics/apis/http-v2-api.md (2022)
  [v2-2026]   amplitude.com/docs/apis/analytics/http-v2 and .../http-api-batching-retries (2026 revisions)
  [batch-docs] amplitude.com/docs/apis/analytics/batch-event-upload, and its source in amplitude/amplitude-docs
              content/collections/api/en/batch-event-upload.md ("Code 429 explained", "EPDS and EPUS", "Daily limit")
  [py-sdk]    amplitude-analytics (Amplitude-Python) src/amplitude: http_client.py, processor.py, utils.py,
              constants.py
  [kotlin-105] github.com/amplitude/Amplitude-Kotlin/issues/105 (a real 400 body, captured request included)
  [ts-81]     github.com/amplitude/Amplitude-TypeScript/pull/81 (a real 400 body for a short device_id)
  [node-59]   github.com/amplitude/Amplitude-Node/issues/59 (a real 200 body for an empty events array)
  [node-63]   github.com/amplitude/Amplitude-Node/issues/63 (numeric ids are length-checked, not type-checked)

What a test uses:
  Amplitude(api_keys=("amp-api-key",), clock=time.time)
  .events          accepted events, as received after string truncation, duplicates removed
  .duplicates      accepted events that deduplication dropped (same insert_id, same device or user, 7 days)
  .throttle_user(user_id, times=1) / .throttle_device(device_id, times=1)
                   the next `times` requests that contain that id answer 429 and ingest nothing
  .limit_rates(window=30.0, thresholds=None)
                   enforce the documented events per second per user and per device, per endpoint (30 on
                   /2/httpapi, 1000 on /batch, or `thresholds` {path: eps}), averaged over `window` seconds
  .limit_daily(quota=500_000)
                   enforce the daily quota per user and per device: a rolling 24 hours counted by the hour
  .reset()         forgets requests, faults, events, switches (limits off) and the deduplication memory
  .clock           seconds since the epoch; replace it to move time (the 7-day window, server_upload_time, the
                   rate window and the daily quota)

Where SPEC §2 and the docs differ (the docs win here): SPEC says the per-user rates are "an average over a recent
window"; [batch-docs] names the window for /batch, 30 seconds, and tells callers not to measure the rate themselves
but to wait "a short period (for example, 15 seconds)" after a 429. /batch also caps a request at 2000 events, which
SPEC leaves out (it names only the 20 MB). The daily quota (500,000 events per id per rolling 24 hours) is not in
SPEC at all beyond the two body fields.

Run alone: python -m tests.emulators.amplitude --port N [--api-key K ...]
"""

import argparse
import gzip
import json
import math
import time
import zlib

from tests.emulators.base import Emulator, RateWindow, Reply, serve_forever, truncate_strings

HTTP_API_PATH = "/2/httpapi"
BATCH_PATH = "/batch"

# Request size: "under 1 MB" for /2/httpapi [v2-docs] and "must not exceed 20MB" for /batch [batch-docs]. Neither
# says whether a MB is 10^6 or 2^20 bytes; the decimal reading is the stricter one, so a sink that passes here
# passes there too.
MAX_BODY_BYTES = {HTTP_API_PATH: 1_000_000, BATCH_PATH: 20_000_000}

# "fewer than 2000 events per request ... you get a 413" [v2-docs]; "Up to 2,000 events", counted after a gzip body
# is decompressed [v2-2026]; /batch: "Payload size is too big (request size exceeds 20MB) ... The limit per batch is
# 2000 events" [batch-docs, its 413 row].
MAX_EVENTS_PER_REQUEST = 2000

# Events per second per user or device before a 429: 30 on /2/httpapi ("measured as an average over a recent time
# window"; the 2024 docs, older revisions said 10) and 1000 on /batch [v2-docs, batch-docs]. Amplitude calls these
# rates EPUS and EPDS, "both averaged over a period of 30 seconds": "to reach an EPDS limit of 1000, a device must
# send 30,000 events in a 30-second period" [batch-docs]. Modelled as a sliding window per project (API key), per
# endpoint, per user_id and per device_id. Not documented, and chosen here: the events of a refused request do not
# count; the two endpoints count apart; an event without device_id counts for its user only (Amplitude sets such an
# event's device_id to a hash of the user_id [batch-docs], which would count the same events again under one id).
EPS_THRESHOLD = {HTTP_API_PATH: 30, BATCH_PATH: 1000}
RATE_WINDOW_SECONDS = 30.0

# "After a user or device has hit the 500,000 event daily limit for a particular project, Amplitude rejects batches
# that contain the user or device ID ... a 429 response with a body indicating exceeded_daily_quota_users or
# exceeded_daily_quota_devices"; "The 24 hour rolling period applies in one-hour intervals" [batch-docs]. The real
# service starts counting only once it "determines that a user/device is spamming the system"; when switched on
# here, it counts from the start. Each id's value in the body is its count of the last 24 hours [batch-docs].
DAILY_QUOTA = 500_000

# "Device IDs and User IDs must be strings with a length of 5 characters or more ... Override the default minimum
# length of 5 characters by passing the `min_id_length` option" [v2-docs].
DEFAULT_MIN_ID_LENGTH = 5

# "All string values, like `user_id`, event, or user property values, have a character limit of 1024 characters"
# [v2-docs]. The SDK cuts every string, at any depth, to its first 1024 characters before sending
# (utils.truncate with MAX_STRING_LENGTH = 1024 [py-sdk]); the server is emulated as doing the same on storage.
MAX_STRING_LENGTH = 1024

# "Amplitude ignores subsequent events sent with the same `insert_id` on the same `device_id` (if the event has a
# `device_id` value) in each app within the past 7 days" [v2-docs].
DEDUP_WINDOW_SECONDS = 7 * 24 * 60 * 60

# "Invalid IDs that result in a 400 error" [v2-docs], for user_id and device_id alike. The list is written in lower
# case yet holds "lmy47d", an Android build id that appears in the wild as "LMY47D", so matching ignores case.
# '""' is the docs' entry of two double-quote characters.
BLOCKED_IDS = frozenset(
    {
        "anonymous",
        "nil",
        "none",
        "null",
        "n/a",
        "na",
        "undefined",
        "unknown",
        '""',
        "00000000-0000-0000-0000-000000000000",
        "{}",
        "lmy47d",
        "0",
        "-1",
    }
)

# "The following event names are reserved for Amplitude use" [v2-docs]; the API validates event_type against them.
RESERVED_EVENT_TYPES = frozenset(
    {
        "[Amplitude] Start Session",
        "[Amplitude] End Session",
        "[Amplitude] Revenue",
        "[Amplitude] Revenue (Verified)",
        "[Amplitude] Revenue (Unverified)",
        "[Amplitude] Merged User",
    }
)

# Fields whose documented type is an integer (`time`: "must be number of milliseconds since the start of epoch time
# ... Any other format (such as ISO format) results in a 400"; `event_id`, `session_id`: Integer / Long) or an
# object (`event_properties`, `user_properties`) [v2-docs]. A float `time` is refused too: the V2 API accepts
# "only ... type of long, i.e. integer" (changelog of the community `amplitude` npm package, 5.0.2).
INTEGER_FIELDS = ("time", "event_id", "session_id")
OBJECT_FIELDS = ("event_properties", "user_properties", "group_properties", "groups")

# The `error` strings the real service uses [v2-docs, kotlin-105, ts-81].
MISSING_FIELD = "Request missing required field"
INVALID_FIELDS = "Invalid field values on some events"
INVALID_ID_LENGTHS = "Invalid id length for user_id or device_id"


def _error(status, message, **fields):
    """The real service's error body: `code` repeats the HTTP status, `error` says why [v2-docs]."""
    body = {"code": status, "error": message}
    body.update(fields)
    return Reply(status, body)


def _is_integer(value):
    return isinstance(value, int) and not isinstance(value, bool)


class Amplitude(Emulator):
    name = "amplitude"

    def __init__(self, api_keys=("amp-api-key",), clock=time.time):
        super().__init__()
        self.api_keys = set(api_keys)
        self.clock = clock
        self.events = []
        self.duplicates = []
        self.throttled_users = {}  # user_id -> requests left to answer 429
        self.throttled_devices = {}  # device_id -> requests left to answer 429
        self.rate_window = None  # seconds the events per second are averaged over; None: rates not enforced
        self.eps_threshold = dict(EPS_THRESHOLD)
        self.daily_quota = None  # events per id in a rolling 24 hours; None: not enforced
        self._seen = {}  # (api_key, "device"/"user", id, insert_id) -> when it was first accepted
        self._rates = {}  # (api_key, path, "user"/"device", id) -> RateWindow of its events
        self._daily = {}  # (api_key, "user"/"device", id) -> {hour since the epoch: events}

    def reset(self):
        with self.lock:
            super().reset()
            self.events.clear()
            self.duplicates.clear()
            self.throttled_users.clear()
            self.throttled_devices.clear()
            self.rate_window = None
            self.eps_threshold = dict(EPS_THRESHOLD)
            self.daily_quota = None
            self._seen.clear()
            self._rates.clear()
            self._daily.clear()

    # -- switches ---------------------------------------------------------------------------------------------

    def throttle_user(self, user_id, times=1):
        """Answer 429 to the next `times` requests that carry an event of `user_id`."""
        with self.lock:
            self.throttled_users[str(user_id)] = times
        return self

    def throttle_device(self, device_id, times=1):
        """Answer 429 to the next `times` requests that carry an event of `device_id`."""
        with self.lock:
            self.throttled_devices[str(device_id)] = times
        return self

    def limit_rates(self, window=RATE_WINDOW_SECONDS, thresholds=None):
        """Refuse (429) a request that takes a user's or a device's events per second, averaged over `window`
        seconds, past its endpoint's threshold (`thresholds` {path: eps} replaces the documented ones)."""
        with self.lock:
            self.rate_window = window
            self.eps_threshold = dict(EPS_THRESHOLD, **(thresholds or {}))
            self._rates.clear()
        return self

    def limit_daily(self, quota=DAILY_QUOTA):
        """Refuse (429) every request with a user or device that has `quota` events in the last 24 hours."""
        with self.lock:
            self.daily_quota = quota
            self._daily.clear()
        return self

    # -- request handling -------------------------------------------------------------------------------------

    def handle(self, request):
        # "Invalid request path" is one of the documented 400 `error` values [v2-docs].
        if request.method != "POST" or request.path not in MAX_BODY_BYTES:
            return _error(400, "Invalid request path")
        if len(request.body) > MAX_BODY_BYTES[request.path]:
            # The documented 413 body, exactly [v2-docs].
            return _error(413, "Payload too large")
        # "Validation on Content-type header (must be set to application/json)" [v2-docs]. The body the real service
        # sends back is not documented; this wording is the emulator's own. (Amplitude's browser SDK posts the same
        # JSON with navigator.sendBeacon as a plain string, i.e. text/plain, so the live check may be laxer than the
        # docs; the emulator holds senders to the documented rule.)
        if request.content_type != "application/json":
            return _error(400, "Invalid Content-Type header, expected application/json")

        body, failure = self._parse(request)
        if failure:
            return failure

        # "Request missing required field" with `missing_field` naming the request-level field [v2-docs].
        api_key = body.get("api_key")
        if api_key is None or api_key == "":
            return _error(400, MISSING_FIELD, missing_field="api_key")
        if not isinstance(api_key, str) or api_key not in self.api_keys:
            # The real service echoes the key it refused (Amplitude-Kotlin#215, braintree-web-drop-in#937,
            # Amplitude-Swift#260); the SDK recognises the case by this prefix [py-sdk processor.py].
            return _error(400, f"Invalid API key: {api_key}")
        # The docs ask for "events array of at least one event", yet a real `"events": []` drew a 200 with
        # `events_ingested: 0` [node-59]; only an absent array is refused here.
        if "events" not in body or body["events"] is None:
            return _error(400, MISSING_FIELD, missing_field="events")
        events = body["events"]
        if not isinstance(events, list) or not all(isinstance(event, dict) for event in events):
            return _error(400, "Invalid event JSON")
        if len(events) > MAX_EVENTS_PER_REQUEST:
            return _error(413, "Payload too large")

        options = body.get("options")
        min_id_length = options.get("min_id_length") if isinstance(options, dict) else None
        if not _is_integer(min_id_length) or min_id_length < 0:
            min_id_length = DEFAULT_MIN_ID_LENGTH

        rejection = self._validate(events, min_id_length)
        if rejection:
            return rejection

        stored = [truncate_strings(event, MAX_STRING_LENGTH) for event in events]
        with self.lock:
            throttled = self._throttle(api_key, request.path, stored)
            if throttled:
                return throttled
            self._ingest(api_key, stored)
        # The success body [v2-docs]. `payload_size_bytes` is the size of the body as sent: a real reply to
        # `{"api_key":"<32 characters>","events":[]}` reported 58 [node-59]. `events_ingested` counts every event
        # the request carried, duplicates included: deduplication is documented as Amplitude "ignoring" repeats
        # later, not as a smaller count in the reply (not confirmed against the live service).
        return Reply(
            200,
            {
                "code": 200,
                "events_ingested": len(events),
                "payload_size_bytes": len(request.body),
                "server_upload_time": int(self.clock() * 1000),
            },
        )

    def _parse(self, request):
        """(body, None) for a JSON object, else (None, the 400 the real service answers)."""
        raw = request.body
        if not raw:
            return None, _error(400, "Missing request body")  # a documented `error` value [v2-docs]
        # A gzip-encoded body is accepted: limits are counted "after it decompresses a gzip-encoded body" [v2-2026].
        if (request.header("content-encoding") or "").strip().lower() == "gzip":
            try:
                raw = gzip.decompress(raw)
            except (OSError, EOFError, zlib.error):
                return None, _error(400, "Invalid JSON request body")
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None, _error(400, "Invalid JSON request body")  # documented wording [v2-docs]
        if not isinstance(body, dict):
            return None, _error(400, "Invalid JSON request body")
        return body, None

    def _validate(self, events, min_id_length):
        """The 400 for a request with any bad event, or None.

        One bad event rejects the whole request and nothing is ingested: the SDK retries every event the 400 does
        not name and drops only the named ones [py-sdk processor.py], a captured request shows a whole batch refused
        for one short user_id [kotlin-105], and the docs tell callers to "remove those events and resend the rest"
        [v2-2026]. The maps list every offending index, as in the 2022 docs' example (`"time": [3, 4, 7]`); the 2024
        text says only the first index is listed, which no captured response confirms.
        """
        missing, invalid, short = {}, {}, {}

        def note(table, field, index):
            table.setdefault(field, []).append(index)

        for index, event in enumerate(events):
            event_type = event.get("event_type")
            if event_type is None:
                note(missing, "event_type", index)
            elif not isinstance(event_type, str) or not event_type or event_type in RESERVED_EVENT_TYPES:
                note(invalid, "event_type", index)

            ids = {field: event.get(field) for field in ("user_id", "device_id") if event.get(field) is not None}
            if not ids:
                # Neither id: the real body's field name for this case is not documented; both are named here.
                note(missing, "user_id", index)
                note(missing, "device_id", index)
            for field, value in ids.items():
                # Numbers are accepted and length-checked like strings: a numeric user_id of 4 digits was refused
                # as too short, longer ones were accepted [node-63], and a numeric device_id 1 drew the
                # invalid-id-length 400 [ts-81]. Placeholders are refused whatever `min_id_length` says.
                text = value if isinstance(value, str) else str(value) if _is_integer(value) else None
                if text is None or text.lower() in BLOCKED_IDS:
                    note(invalid, field, index)
                elif len(text) < min_id_length:
                    # A short id is refused even when the other id is fine [kotlin-105]; the docs' "the ID value is
                    # removed from the event" is not what the V2 endpoint does.
                    note(short, field, index)

            for field in INTEGER_FIELDS:
                if event.get(field) is not None and not _is_integer(event[field]):
                    note(invalid, field, index)
            for field in OBJECT_FIELDS:
                if event.get(field) is not None and not isinstance(event[field], dict):
                    note(invalid, field, index)

        if not (missing or invalid or short):
            return None
        # A body that carries several maps leads with the missing fields, as the docs' example and Amplitude-Kotlin's
        # tests do (`events_with_missing_fields` and `events_with_invalid_fields` under "Request missing required
        # field").
        if missing:
            message = MISSING_FIELD
        elif invalid:
            message = INVALID_FIELDS
        else:
            message = INVALID_ID_LENGTHS
        fields = {}
        if missing:
            fields["events_with_missing_fields"] = missing
        if invalid:
            fields["events_with_invalid_fields"] = invalid
        if short:
            fields["events_with_invalid_id_lengths"] = short
        return _error(400, message, **fields)

    def _throttle(self, api_key, path, events):
        """The 429 for a request that carries a throttled user or device, or one over its daily quota; else None,
        and the request's events are counted. Call with the lock held.

        The body follows the documented 429 [v2-docs, batch-docs]: `throttled_users` / `throttled_devices` map each
        id to its current events per second, the daily-quota maps each id to its count of the last 24 hours, and
        `throttled_events` lists the indexes of the events of all of them. The real service sends no Retry-After, and
        the whole request is refused: the SDK waits 30 s before retrying the throttled events, retries the others
        at once and drops the ones over the daily quota [py-sdk processor.py].
        """
        threshold = self.eps_threshold[path]
        ids = {}  # ("user"/"device", id) -> indexes of its events in this request
        for index, event in enumerate(events):
            for kind in ("user", "device"):
                if event.get(f"{kind}_id") is not None:
                    ids.setdefault((kind, str(event[f"{kind}_id"])), []).append(index)
        throttled = {"user": {}, "device": {}}
        over_quota = {"user": {}, "device": {}}
        switched = []
        for (kind, value), indexes in ids.items():
            switch = self.throttled_users if kind == "user" else self.throttled_devices
            if switch.get(value, 0) > 0:
                throttled[kind][value] = threshold + 1
                switched.append((switch, value))
            elif self.rate_window:
                window = self._rates.setdefault((api_key, path, kind, value), RateWindow(self.rate_window, self.clock))
                rate = (window.current() + len(indexes)) / self.rate_window
                if rate > threshold:
                    throttled[kind][value] = math.ceil(rate)
            if self.daily_quota is not None:
                used = self._daily_count(api_key, kind, value)
                if used >= self.daily_quota:
                    over_quota[kind][value] = used
        refused = sorted(
            {
                index
                for (kind, value), indexes in ids.items()
                if value in throttled[kind] or value in over_quota[kind]
                for index in indexes
            }
        )
        if not refused:
            self._count(api_key, path, ids)
            return None
        for switch, value in switched:
            switch[value] -= 1
            if switch[value] <= 0:
                del switch[value]
        fields = {
            "eps_threshold": threshold,
            "throttled_devices": throttled["device"],
            "throttled_users": throttled["user"],
        }
        # /batch documents its 429 with both daily-quota maps; /2/httpapi's example has neither.
        if path == BATCH_PATH or over_quota["user"] or over_quota["device"]:
            fields["exceeded_daily_quota_users"] = over_quota["user"]
            fields["exceeded_daily_quota_devices"] = over_quota["device"]
        fields["throttled_events"] = refused
        return _error(429, "Too many requests for some devices and users", **fields)

    def _count(self, api_key, path, ids):
        """Count an accepted request's events in the rate windows and the daily quota. Call with the lock held."""
        hour = int(self.clock() // 3600)
        for (kind, value), indexes in ids.items():
            if self.rate_window:
                self._rates[(api_key, path, kind, value)].add(len(indexes))
            if self.daily_quota is not None:
                hours = self._daily.setdefault((api_key, kind, value), {})
                hours[hour] = hours.get(hour, 0) + len(indexes)

    def _daily_count(self, api_key, kind, value):
        """Events of this id in the rolling 24 hours, which move by the hour. Call with the lock held."""
        hour = int(self.clock() // 3600)
        hours = self._daily.get((api_key, kind, value), {})
        for old in [counted for counted in hours if counted <= hour - 24]:
            del hours[old]
        return sum(hours.values())

    def _ingest(self, api_key, events):
        """Store events, dropping those whose insert_id this device (or, without a device_id, this user) sent in
        the past 7 days, in this project. Call with the lock held."""
        now = self.clock()
        for event in events:
            insert_id = event.get("insert_id")
            if insert_id is None:
                self.events.append(event)
                continue
            if event.get("device_id") is not None:
                key = (api_key, "device", str(event["device_id"]), str(insert_id))
            else:
                key = (api_key, "user", str(event["user_id"]), str(insert_id))
            first_seen = self._seen.get(key)
            if first_seen is not None and now - first_seen < DEDUP_WINDOW_SECONDS:
                self.duplicates.append(event)
                continue
            self._seen[key] = now
            self.events.append(event)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Amplitude HTTP V2 / Batch API emulator")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument(
        "--api-key", action="append", dest="api_keys", help="an accepted API key (repeatable; default amp-api-key)"
    )
    args = parser.parse_args(argv)
    serve_forever(Amplitude(api_keys=args.api_keys or ("amp-api-key",)), args.port)


if __name__ == "__main__":
    main()
