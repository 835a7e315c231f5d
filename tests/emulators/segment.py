"""Segment HTTP Tracking API emulator: `POST /v1/track` (also `/v1/t`) and `POST /v1/batch`.

    emulator = Segment(write_keys=("seg-write-key",), clock=time.time)
    emulator.events     # accepted track messages, deduplicated by messageId, sentAt and timestamp as received
    emulator.discarded  # messages answered with 200 but never stored: {"message", "reason"}
    emulator.queued     # accepted messages over the workspace's events per second: stored, processed late
    emulator.limit_rates(window=1.0)  # enforce the workspace's rate limits (off by default; see below)

The real collector checks almost nothing while the request is open, and this one answers the same way:
- Every request gets 200 `{"success": true}` except invalid JSON and oversized payloads, which get 400
  (segment-docs, src/connections/sources/catalog/libraries/server/http-api/index.md, "Errors"; the success body as
  seen in analytics.js issue 625). A wrong write key is accepted with 200 too: the API is stateless and only queues
  the message (analytics-ruby issue 136, answered by Segment).
- Limits: 32KB per message (a single call, or each item of a batch) and 500KB per batch request, 400 beyond
  (same page, "Max request size"); the 32KB refusal reads "Exceed payload limit" (segment-docs PR 7422). A batch
  of more than 2500 messages is answered 200 and dropped whole (same page, "Errors").
- Messages without userId or anonymousId, track calls without `event`, and repeated messageIds are not accepted,
  silently (same page, "Errors"); messageId should have fewer than 100 characters (same page).
- Auth is HTTP Basic with the write key as user name and an empty password, or `writeKey` in the body (same page,
  "Authentication"); analytics-python 2.4.0 sends both, posts to /v1/batch with `sentAt` on the envelope, may gzip
  the body, and reads a non-2xx body as `{"code", "message"}` (segment/analytics/request.py). KB is taken as 1024
  bytes: that SDK's own cap is `32 << 10` (analytics.js uses 32 * 1000).
- The batch-level `context` is merged into each item's context (same page, "Batch").
- Rate limits, per workspace (one emulator is one workspace): "Segment recommends you to not exceed 1,000 requests
  per second with the HTTP API. If you exceed this, Segment reserves the right to queue any additional events ...
  Requests that exceed acceptable limits may be rejected with HTTP Status Code 429. When Segment rejects the
  requests, the response header contains `Retry-After` and `X-RateLimit-Reset` headers, which contains the number of
  seconds after which you can retry the request" (same page, "Rate limits"); and "If any sources send more than
  1,000 events per second in a workspace without prior arrangement, Segment reserves the right to queue any
  additional events and process those at a rate that doesn't exceed this limit" (src/connections/rate-limits.md).
  So requests past 1,000 per second get the 429 (both headers, in whole seconds), and events past 1,000 per second
  are accepted, stored and listed in `queued`. Not verified: the window (1 s here), the 429 body, and that a
  refused request counts for nothing.
- `/v1/t` is the short path analytics.js's Segment.io integration posts track calls to, with Content-Type
  text/plain (its source: `this.enqueue('/t', …)`, apiHost `api.segment.io/v1`), so text/plain is accepted too.

SPEC §2 names no Segment rate limit. Segment's own two pages differ: the HTTP API page says 1,000 requests per
second, the Product Limits page 1,000 events per second; both say the excess is queued, and only the HTTP API page
mentions 429s (with Retry-After). Both are modelled, as above.

Not verified, and marked where they happen: the 400 body's code strings, the answer to a Content-Type other than
JSON or text/plain (400 here), whether a messageId of 100 characters or more is dropped (it is here), whether
a message without userId/anonymousId gets a 400 on the single-call path (the docs say "responds with a
no_user_anon_id error" without a status; it gets 200 and is dropped here), and how long the dedup window is
(forever here).
"""

import argparse
import gzip
import json
import math
import time

from .base import Emulator, RateWindow, Reply, basic_credentials, serve_forever

DEFAULT_WRITE_KEYS = ("seg-write-key",)

MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
MAX_BATCH_MESSAGES = 2500
MAX_MESSAGE_ID_CHARS = 99  # "fewer than 100 characters"

SINGLE_TRACK_PATHS = ("/v1/track", "/v1/t")
BATCH_PATH = "/v1/batch"
ACCEPTED_CONTENT_TYPES = ("application/json", "text/plain")

SUCCESS = {"success": True}

RATE_WINDOW_SECONDS = 1.0
RATE_REQUESTS_PER_SECOND = 1000
RATE_EVENTS_PER_SECOND = 1000
RATE_LIMITED = {"code": "rate_limited", "message": "Too Many Requests"}  # not verified


def bad_request(code, message):
    # Not verified beyond the shape analytics-python reads and the "Exceed payload limit" text.
    return Reply(400, {"code": code, "message": message})


def compact_size(message):
    """A message's size as the compact JSON the limits are about (its share of the request body)."""
    return len(json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


class Segment(Emulator):
    name = "segment"

    def __init__(self, write_keys=DEFAULT_WRITE_KEYS, clock=time.time):
        super().__init__()
        self.write_keys = frozenset(write_keys)
        self.clock = clock
        self.events = []
        self.discarded = []
        self.queued = []
        self._message_ids = set()
        self._rates = None  # {"requests": RateWindow, "events": RateWindow, "limits": {...}} while limits are on

    def reset(self):
        super().reset()
        with self.lock:
            self.events.clear()
            self.discarded.clear()
            self.queued.clear()
            self._message_ids.clear()
            self._rates = None

    def limit_rates(
        self, window=RATE_WINDOW_SECONDS, requests_per_second=RATE_REQUESTS_PER_SECOND, events_per_second=None
    ):
        """Refuse (429) requests past `requests_per_second` over the trailing `window` seconds, and queue the
        messages past `events_per_second` (default: the documented 1,000 of each)."""
        with self.lock:
            self._rates = {
                "requests": RateWindow(window, self.clock),
                "events": RateWindow(window, self.clock),
                "limits": {
                    "requests": requests_per_second * window,
                    "events": (events_per_second or RATE_EVENTS_PER_SECOND) * window,
                },
            }
        return self

    def _rate_limited(self):
        """The 429 for a request past the workspace's request rate, or None (the request is counted)."""
        if self._rates is None:
            return None
        with self.lock:
            requests = self._rates["requests"]
            if requests.current() + 1 <= self._rates["limits"]["requests"]:
                requests.add(1)
                return None
            wait = str(max(1, math.ceil(requests.frees_in())))
        return Reply(429, RATE_LIMITED, {"Retry-After": wait, "X-RateLimit-Reset": wait})

    def _over_event_rate(self, count):
        """How many of `count` accepted messages go past the workspace's events per second (self.lock held)."""
        if self._rates is None:
            return 0
        events = self._rates["events"]
        over = max(0, events.current() + count - int(self._rates["limits"]["events"]))
        events.add(count)
        return min(count, over)

    def handle(self, request):
        path = request.path.rstrip("/")
        if request.method != "POST" or (path not in SINGLE_TRACK_PATHS and path != BATCH_PATH):
            return Reply(404, {"code": "not_found", "message": f"{request.method} {request.path}"})  # not verified
        if request.content_type not in ACCEPTED_CONTENT_TYPES:
            return bad_request("invalid_request", "Content-Type must be application/json")  # not verified
        limited = self._rate_limited()
        if limited:
            return limited

        body = request.body
        if (request.header("content-encoding") or "").strip().lower() == "gzip":
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError):
                return bad_request("invalid_request", "Invalid gzip body")  # not verified
        limit = MAX_BATCH_BYTES if path == BATCH_PATH else MAX_MESSAGE_BYTES
        if len(body) > limit:
            return bad_request("payload_too_large", "Exceed payload limit")
        try:
            payload = json.loads(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return bad_request("invalid_request", "Invalid JSON")
        if not isinstance(payload, dict):
            return bad_request("invalid_request", "Invalid JSON: the body must be an object")

        # "Include a colon before encoding … encoding the write key without a colon might work": accept both.
        write_key = (basic_credentials(request) or (None,))[0] or payload.get("writeKey")
        if path == BATCH_PATH:
            return self._batch(payload, write_key)
        # The single-call path names the type; a body that says otherwise is still a track call here.
        self._accept([dict(payload, type="track")], write_key)
        return Reply(200, SUCCESS)

    def _batch(self, payload, write_key):
        items = payload.get("batch")
        if not isinstance(items, list):
            return bad_request("invalid_request", "Invalid JSON: batch must be an array")  # not verified
        for item in items:
            if isinstance(item, dict) and compact_size(item) > MAX_MESSAGE_BYTES:
                return bad_request("payload_too_large", "Exceed payload limit")
        if len(items) > MAX_BATCH_MESSAGES:
            with self.lock:
                self.discarded.extend({"message": item, "reason": "batch of more than 2500"} for item in items)
            return Reply(200, SUCCESS)

        envelope_context = payload.get("context") if isinstance(payload.get("context"), dict) else {}
        messages = []
        for item in items:
            if not isinstance(item, dict):
                with self.lock:
                    self.discarded.append({"message": item, "reason": "batch item is not an object"})
                continue
            message = dict(item)
            if "sentAt" not in message and "sentAt" in payload:
                message["sentAt"] = payload["sentAt"]  # analytics-python puts sentAt on the envelope only
            if envelope_context:
                own = message.get("context") if isinstance(message.get("context"), dict) else {}
                message["context"] = dict(envelope_context, **own)
            messages.append(message)
        self._accept(messages, write_key)
        return Reply(200, SUCCESS)

    def _accept(self, messages, write_key):
        """Store the track messages that would reach the workspace; everything else is answered 200 all the same."""
        with self.lock:
            late = self._over_event_rate(len(messages))
            self.queued.extend(messages[len(messages) - late :] if late else [])
            for message in messages:
                reason = self._refusal(message, write_key)
                if reason:
                    self.discarded.append({"message": message, "reason": reason})
                    continue
                if message.get("type") != "track":
                    continue  # identify, page, … are valid but not what this emulator records
                if "messageId" in message:
                    self._message_ids.add(message["messageId"])
                self.events.append(message)

    def _refusal(self, message, write_key):
        """Why Segment would drop this message after answering 200, or None (self.lock held)."""
        if write_key not in self.write_keys:
            return "unknown write key" if write_key else "no write key"
        if not message.get("type"):
            return "batch item without type"  # "Each call must have a type property"
        if not message.get("userId") and not message.get("anonymousId"):
            return "no userId or anonymousId (no_user_anon_id)"
        if message.get("type") == "track" and not message.get("event"):
            return "track call without event"
        message_id = message.get("messageId")
        if message_id is not None:
            if not isinstance(message_id, str) or len(message_id) > MAX_MESSAGE_ID_CHARS:
                return "messageId must be a string of fewer than 100 characters"  # consequence not verified
            if message_id in self._message_ids:
                return "duplicate messageId"
        return None


def main(argv=None):
    parser = argparse.ArgumentParser(description="Run the Segment emulator in the foreground.")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument(
        "--token",
        "--write-key",
        dest="write_keys",
        action="append",
        help="a known write key (repeatable; default seg-write-key)",
    )
    args = parser.parse_args(argv)
    serve_forever(Segment(write_keys=args.write_keys or DEFAULT_WRITE_KEYS), args.port)


if __name__ == "__main__":
    main()
