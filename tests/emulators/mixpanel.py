"""Mixpanel ingestion emulator: `/track` (project token inside each event) and `/import` (HTTP Basic, strict checks).

    emulator = Mixpanel(tokens=("mp-token",), secrets=("mp-secret",), now=lambda: 1_800_000_000)
    emulator.events    # accepted events, deduplicated: {"event", "properties", "endpoint"}
    emulator.dropped   # events the service took with a success reply and then threw away: {"event", "reason"}
    emulator.limit_rates(window=60.0)  # enforce the project's ingestion rate limit (off by default; see below)

Behaviour copied from the real service, with where each fact comes from:
- Mixpanel OpenAPI spec (github.com/mixpanel/docs, openapi/src/ingestion.openapi.yaml):
  /track takes `data` form-encoded and `verbose=1` gives `{"status": 1|0, "error": ...}`, plain `1`/`0` otherwise,
  both with HTTP 200; `1` means one or more events were valid and "does not signify a valid project token".
  /track keeps the last 5 days only. /import takes a JSON array or NDJSON, at most 2000 events, needs event, time,
  distinct_id and $insert_id, rejects time before 1971-01-01 or more than 1 hour ahead, a list of placeholder
  distinct_ids (the same list is refused as $insert_id), and an $insert_id longer than 36 bytes or with characters
  other than alphanumerics and "-". Response bodies: 200 `{"code": 200, "num_records_imported": N, "status": "OK"}`,
  400 `{"code": 400, "error": "some data points in the request failed validation", "failed_records":
  [{"index", "insert_id", "field", "message"}], "num_records_imported": N, "status": "Bad Request"}` (the valid
  events are still ingested), 401 `{"code": 401, "error": "Invalid credentials", "status": "Unauthorized"}`,
  413 `{"code": 413, "error": "request exceeds max limit of … bytes", "status": "Request Entity Too Large"}`.
  All strings are truncated to 255 bytes of UTF-8 ("a character limit of 255 bytes": docs.mixpanel.com
  /docs/data-structure/property-reference/data-type). Gzip request bodies are accepted.
- docs.mixpanel.com: /reference/import-events (10MB uncompressed per request), /reference/event-deduplication
  (dedup key: event name, distinct_id, time, $insert_id), /troubleshooting/errors/{401-unauthorized (project token
  as Basic user name with an empty password, or the project secret), 413-payload-too-large (the 2000-event and
  10MB caps are separate 413 causes), historical-events-not-appearing (/track answers success and silently drops
  events older than 5 days)}; a /track time in the future is replaced by the ingestion time.
- Rate limit: docs.mixpanel.com/reference/rate-limits and /troubleshooting/errors/429-rate-limit-exceeded: per
  project, "2GB of uncompressed JSON/minute or ~30k events per second, measured on a rolling 1 minute basis", /track
  with "the same limits as /import"; past it a 429 with body `{"code": 429, "error": "Project exceeded rate limits.
  Please retry the request with exponential backoff.", "status": "Too Many Requests"}` and no Retry-After ("The API
  reference doesn't document a Retry-After header"). Modelled as a sliding window over the emulator's clock; one
  emulator is one project; a refused request counts for nothing (not verified); "2GB" is read as 2 * 10**9 bytes.
- Old `/track?data=<base64>` requests (mixpanel.com/api/docs/specification, the pre-requests mixpanel-python
  consumer) and GET with `data` in the query string.
- `{"status": 0, "error": "token, missing or empty"}` for a missing token: seen from the live API
  (github.com/agileseason/agileseason-v1 issue 530). An unknown token is accepted with status 1 and the event
  goes nowhere (mixpanel-node issue 59: the token is matched to a project outside the request cycle).

SPEC §2 names no Mixpanel rate limit and says to honour Retry-After; Mixpanel documents the per-project limit above,
sends no Retry-After, and advises backing off (2 s doubling to 60 s, plus 1-5 s of jitter) rather than pacing
requests with a fixed delay.

Not verified, chosen to be strict and explicit (each is marked where it happens): the other /track error texts,
whether /track refuses a malformed $insert_id, the /import error and message texts other than the ones quoted
above, what /import does without strict=1, and whether the dedup key compares time to the second or finer.
"""

import argparse
import base64
import binascii
import gzip
import json
import re
import time
import urllib.parse

from .base import Emulator, RateWindow, Reply, basic_credentials, serve_forever, truncate_strings

DEFAULT_TOKENS = ("mp-token",)
DEFAULT_SECRETS = ("mp-secret",)

TRACK_MAX_AGE_SECONDS = 5 * 24 * 3600
IMPORT_FUTURE_TOLERANCE_SECONDS = 3600
EARLIEST_EVENT_TIME = 31536000  # 1971-01-01T00:00:00Z
IMPORT_MAX_EVENTS = 2000
IMPORT_MAX_BYTES = 10 * 1024 * 1024
MAX_STRING_BYTES = 255

RATE_WINDOW_SECONDS = 60.0
RATE_EVENTS_PER_SECOND = 30_000
RATE_BYTES_PER_MINUTE = 2 * 10**9
RATE_LIMITED = {
    "code": 429,
    "error": "Project exceeded rate limits. Please retry the request with exponential backoff.",
    "status": "Too Many Requests",
}

# Mixpanel accepts `time` in seconds or milliseconds and does not say how it tells them apart. 1e11 seconds is the
# year 5138 while 1e11 milliseconds is 1973, so any plausible event time falls clearly on one side.
MILLISECONDS_FROM = 1e11

INSERT_ID = re.compile(r"[A-Za-z0-9-]{1,36}")

# The OpenAPI spec's list of refused distinct_id values (also refused as $insert_id). Whether the comparison
# ignores case is not documented; it does here, which is the stricter reading.
PLACEHOLDER_IDS = frozenset(
    [
        "00000000-0000-0000-0000-000000000000",
        "anon",
        "anonymous",
        "nil",
        "none",
        "null",
        "n/a",
        "na",
        "undefined",
        "unknown",
        "<nil>",
        "0",
        "-1",
        "true",
        "false",
        "[]",
        "{}",
    ]
)


def event_seconds(value):
    """An event `time` as epoch seconds, or None when it is not a number (bool is not a number here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value / 1000.0 if value >= MILLISECONDS_FROM else float(value)


def valid_insert_id(value):
    return isinstance(value, str) and INSERT_ID.fullmatch(value) is not None and value.lower() not in PLACEHOLDER_IDS


def request_body(request):
    """The body with any `Content-Encoding: gzip` undone (both endpoints accept gzip); ValueError if it is corrupt."""
    if (request.header("content-encoding") or "").strip().lower() != "gzip":
        return request.body
    try:
        return gzip.decompress(request.body)
    except (OSError, EOFError) as error:
        raise ValueError("request body is not valid gzip") from error


def decode_track_data(data):
    """The events in a /track `data` value: JSON, or base64 of JSON (the old SDKs' form); one event or a list."""
    if not data:
        # Not verified: the wording copies the one /track error text seen from the live API.
        raise ValueError("data, missing or empty")
    try:
        decoded = json.loads(data)
    except ValueError:
        try:
            decoded = json.loads(base64.b64decode(data, validate=True).decode("utf-8"))
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise ValueError("data, not valid JSON or base64-encoded JSON") from None
    return decoded if isinstance(decoded, list) else [decoded]


def parse_import_body(body, content_type):
    """The events of an /import body: a JSON array (or one object) or NDJSON; ValueError when it does not parse."""
    text = body.decode("utf-8")
    if content_type == "application/x-ndjson":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    decoded = json.loads(text)
    return decoded if isinstance(decoded, list) else [decoded]


def import_error(status, phrase, error):
    return Reply(status, {"code": status, "error": error, "status": phrase})


class Mixpanel(Emulator):
    name = "mixpanel"

    def __init__(self, tokens=DEFAULT_TOKENS, now=None, secrets=DEFAULT_SECRETS, reject_unknown_tokens=False):
        """`now` returns epoch seconds (default time.time) and drives the 5-day and 1-hour rules.

        The real /track accepts an unknown token and discards the event; `reject_unknown_tokens=True` answers
        status 0 instead, for tests that want that failure shape without building a missing-token request.
        """
        super().__init__()
        self.tokens = frozenset(tokens)
        self.secrets = frozenset(secrets)
        self.now = now or time.time
        self.reject_unknown_tokens = reject_unknown_tokens
        self.events = []
        self.dropped = []
        self._index = {}  # dedup key -> position in self.events
        self._rates = None  # {"events": RateWindow, "bytes": RateWindow, "limits": {...}} while limits are on

    def reset(self):
        super().reset()
        with self.lock:
            self.events.clear()
            self.dropped.clear()
            self._index.clear()
            self._rates = None

    def limit_rates(
        self,
        window=RATE_WINDOW_SECONDS,
        events_per_second=RATE_EVENTS_PER_SECOND,
        bytes_per_minute=RATE_BYTES_PER_MINUTE,
    ):
        """Refuse (429) a request that takes the project past `events_per_second` or `bytes_per_minute` of
        uncompressed JSON over the trailing `window` seconds (documented: 30,000 events/s, 2 GB/minute, 60 s)."""
        with self.lock:
            self._rates = {
                "events": RateWindow(window, self.now),
                "bytes": RateWindow(window, self.now),
                "limits": {"events": events_per_second * window, "bytes": bytes_per_minute * window / 60},
            }
        return self

    def _over_rate(self, events, size):
        """True when `events` events of `size` uncompressed bytes would exceed the project's rate limit; else they
        are counted. Call with self.lock held."""
        if self._rates is None:
            return False
        amounts = {"events": events, "bytes": size}
        limits = self._rates["limits"]
        if any(self._rates[what].current() + amount > limits[what] for what, amount in amounts.items()):
            return True
        for what, amount in amounts.items():
            self._rates[what].add(amount)
        return False

    def handle(self, request):
        path = request.path.rstrip("/")
        if path == "/track" and request.method in ("GET", "POST"):
            return self._track(request)
        if path == "/import" and request.method == "POST":
            return self._import(request)
        return Reply(404, {"error": f"no such endpoint: {request.method} {request.path}"})

    # -- storage ----------------------------------------------------------------------------------------------

    def _store(self, event, endpoint):
        """Keep one copy per (event, distinct_id, time, $insert_id); the latest one wins, as queries show it.

        Call with self.lock held. Events without $insert_id are never deduplicated. Time is compared to the second
        (not verified: Mixpanel only says "time"); the unit it was sent in does not matter.
        """
        properties = truncate_strings(event["properties"], MAX_STRING_BYTES, in_bytes=True)
        stored = {"event": event["event"], "properties": properties, "endpoint": endpoint}
        insert_id = properties.get("$insert_id")
        if insert_id is None:
            self.events.append(stored)
            return
        key = (stored["event"], properties.get("distinct_id"), int(event_seconds(properties["time"])), insert_id)
        if key in self._index:
            self.events[self._index[key]] = stored
        else:
            self._index[key] = len(self.events)
            self.events.append(stored)

    # -- /track -----------------------------------------------------------------------------------------------

    def _track(self, request):
        params = {name: values[-1] for name, values in request.query.items()}
        try:
            body = request_body(request)
            if request.content_type == "application/json":
                # The current reference page also shows a bare JSON array posted to /track.
                params["data"] = body.decode("utf-8")
            elif body:
                form = urllib.parse.parse_qs(body.decode("utf-8"), keep_blank_values=True)
                params.update({name: values[-1] for name, values in form.items()})
            events = decode_track_data(params.get("data"))
        except (ValueError, UnicodeDecodeError) as error:
            return self._track_reply(params, str(error))

        now = self.now()
        accepted, first_error = 0, None
        with self.lock:
            if self._over_rate(len(events), len((params.get("data") or "").encode("utf-8"))):
                return Reply(429, RATE_LIMITED)
            for raw in events:
                error = self._track_event(raw, now)
                if error is None:
                    accepted += 1
                elif first_error is None:
                    first_error = error
        # "1 - One or more objects provided are valid": a batch with any valid event counts as a success.
        return self._track_reply(params, None if accepted else first_error or "data, no events")

    def _track_event(self, raw, now):
        """Store, drop or refuse one /track event (self.lock held); the error text when it is refused."""
        if not isinstance(raw, dict) or not isinstance(raw.get("properties", {}), dict):
            return "event, not a JSON object with a properties object"  # not verified
        properties = dict(raw.get("properties") or {})
        token = properties.get("token")
        if not isinstance(token, str) or not token:
            return "token, missing or empty"
        if token not in self.tokens and self.reject_unknown_tokens:
            return f"token, not a known project token: {token}"  # not verified: the real API accepts it (see top)
        name = raw.get("event")
        if not isinstance(name, str) or not name:
            return "event, missing or empty"  # not verified
        if "$insert_id" in properties and not valid_insert_id(properties["$insert_id"]):
            # Not verified for /track (the rule is /import's); refused here so a bad id never slips through.
            return "$insert_id, must be 1 to 36 characters of A-Z, a-z, 0-9 or '-'"
        if "time" in properties:
            seconds = event_seconds(properties["time"])
            if seconds is None:
                return "time, must be a number of seconds or milliseconds since epoch"  # not verified
            if seconds > now:
                properties["time"] = int(now * 1000) if properties["time"] >= MILLISECONDS_FROM else int(now)
            elif seconds < now - TRACK_MAX_AGE_SECONDS:
                self.dropped.append({"event": raw, "reason": "older than 5 days (/track keeps the last 5 days)"})
                return None
        else:
            properties["time"] = int(now)  # stamped with the ingestion time (assumed, not verified)
        if token not in self.tokens:
            self.dropped.append({"event": raw, "reason": f"unknown project token {token}"})
            return None
        self._store({"event": name, "properties": properties}, "/track")
        return None

    @staticmethod
    def _track_reply(params, error):
        if params.get("verbose") == "1":
            return Reply(200, {"status": 0 if error else 1, "error": error})
        return Reply(200, "0" if error else "1", content_type="text/plain")

    # -- /import ----------------------------------------------------------------------------------------------

    def _import(self, request):
        credentials = basic_credentials(request)
        if credentials is None or credentials[1] or credentials[0] not in self.tokens | self.secrets:
            # Token or secret as the user name with an empty password; service accounts are not emulated.
            return import_error(401, "Unauthorized", "Invalid credentials")
        try:
            body = request_body(request)
        except ValueError as error:
            return import_error(400, "Bad Request", str(error))  # not verified
        if len(body) > IMPORT_MAX_BYTES:
            return import_error(
                413, "Request Entity Too Large", f"request exceeds max limit of {IMPORT_MAX_BYTES} bytes"
            )
        try:
            events = parse_import_body(body, request.content_type)
        except (ValueError, UnicodeDecodeError):
            return import_error(400, "Bad Request", "unable to parse request body as JSON")  # not verified
        if len(events) > IMPORT_MAX_EVENTS:
            # Not verified: the wording mirrors the byte-limit message.
            return import_error(
                413, "Request Entity Too Large", f"request exceeds max limit of {IMPORT_MAX_EVENTS} records"
            )

        now = self.now()
        failed = []
        with self.lock:
            if self._over_rate(len(events), len(body)):
                return Reply(429, RATE_LIMITED)
            for index, raw in enumerate(events):
                problem = self._import_problem(raw, now)
                if problem is None:
                    self._store(raw, "/import")
                    continue
                field, message = problem
                properties = raw.get("properties") if isinstance(raw, dict) else None
                insert_id = properties.get("$insert_id") if isinstance(properties, dict) else None
                failed.append({"index": index, "insert_id": insert_id, "field": field, "message": message})
        imported = len(events) - len(failed)
        # Not verified: without strict=1 invalid events are assumed to be skipped silently.
        if failed and request.query.get("strict", ["0"])[-1] == "1":
            return Reply(
                400,
                {
                    "code": 400,
                    "error": "some data points in the request failed validation",
                    "failed_records": failed,
                    "num_records_imported": imported,
                    "status": "Bad Request",
                },
            )
        return Reply(200, {"code": 200, "num_records_imported": imported, "status": "OK"})

    @staticmethod
    def _import_problem(raw, now):
        """(field, message) for the first /import rule an event breaks, or None. Texts other than the time one
        quoted in the docs are not verified."""
        if not isinstance(raw, dict) or not isinstance(raw.get("properties"), dict):
            return "properties", "'properties' is invalid: must be a JSON object"
        name = raw.get("event")
        if not isinstance(name, str) or not name:
            return "event", "'event' is invalid: must be a non-empty string"
        properties = raw["properties"]

        seconds = event_seconds(properties.get("time"))
        if seconds is None or seconds < EARLIEST_EVENT_TIME:
            return "properties.time", "'properties.time' is invalid: must be specified as seconds since epoch"
        if seconds > now + IMPORT_FUTURE_TOLERANCE_SECONDS:
            return "properties.time", "'properties.time' is invalid: must not be more than 1 hour in the future"

        if "distinct_id" not in properties:
            return "properties.distinct_id", "'properties.distinct_id' is required"
        distinct_id = properties["distinct_id"]
        if isinstance(distinct_id, bool) or not isinstance(distinct_id, (str, int)):
            return "properties.distinct_id", "'properties.distinct_id' is invalid: must be a string"
        if str(distinct_id).lower() in PLACEHOLDER_IDS:
            return "properties.distinct_id", "'properties.distinct_id' is invalid: a placeholder value"

        if "$insert_id" not in properties:
            return "properties.$insert_id", "'properties.$insert_id' is required"
        if not valid_insert_id(properties["$insert_id"]):
            return (
                "properties.$insert_id",
                "'properties.$insert_id' is invalid: must be at most 36 characters of A-Z, a-z, 0-9 or '-'",
            )
        return None


def main(argv=None):
    parser = argparse.ArgumentParser(description="Run the Mixpanel emulator in the foreground.")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--token", action="append", help="a known project token (repeatable; default mp-token)")
    parser.add_argument("--secret", action="append", help="a known project secret (repeatable; default mp-secret)")
    args = parser.parse_args(argv)
    serve_forever(Mixpanel(tokens=args.token or DEFAULT_TOKENS, secrets=args.secret or DEFAULT_SECRETS), args.port)


if __name__ == "__main__":
    main()
