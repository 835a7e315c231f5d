"""What every emulator shares: a threaded HTTP/1.1 server on 127.0.0.1, a request log and fault switches.

An emulator subclasses `Emulator` and implements `handle(request) -> Reply`. Tests drive faults through
`emulator.fault(...)`; the stored state (events, rows) is the emulator's own attribute, asserted directly.

Faults (consumed one per request, oldest first; `times=None` keeps one forever):
  status   answer `status` with `body` (bytes, str or JSON-able) and `headers` instead of the real handler
  hang     read the request, then answer nothing until the server stops
  drop     read the request, then close the connection without a byte
  drop_mid send the status line, headers and half of a JSON body, then close
  drop_after  handle the request for real (store it), then close without answering: the ambiguous failure
              after which only the client's idempotency keeps the data single
  trickle  send the status line, then one header byte every `interval` seconds until the server stops
"""

import collections
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Request:
    def __init__(self, method, target, headers, body):
        parsed = urllib.parse.urlsplit(target)
        self.method = method
        self.target = target
        self.path = parsed.path
        self.query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        self.headers = {name.lower(): value for name, value in headers.items()}
        self.body = body
        self.received_at = time.time()
        self.status = None  # the status the emulator answered (None: no answer, a dropped connection)

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    @property
    def content_type(self):
        return (self.header("content-type") or "").split(";")[0].strip().lower()

    def json(self):
        """The body as JSON, or raise ValueError (emulators turn that into the service's 400)."""
        return json.loads(self.body.decode("utf-8"))

    def form(self):
        return urllib.parse.parse_qs(self.body.decode("utf-8"), keep_blank_values=True)


class Reply:
    def __init__(self, status, body=b"", headers=None, content_type=None):
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            content_type = content_type or "application/json"
        if isinstance(body, str):
            body = body.encode("utf-8")
        self.status = status
        self.body = body
        self.headers = dict(headers or {})
        if content_type and "Content-Type" not in self.headers:
            self.headers["Content-Type"] = content_type


class LoopbackServer:
    """The life cycle every test server shares: a ThreadingHTTPServer on 127.0.0.1 in a daemon thread."""

    name = "server"
    scheme = "http"

    def __init__(self):
        self.server = None
        self.stopping = threading.Event()

    def serve(self, handler_class, port=0):
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler_class)
        self.server.daemon_threads = True
        return self.server

    def run(self, poll_interval=0.5):
        thread = threading.Thread(target=self.server.serve_forever, args=(poll_interval,), name=self.name, daemon=True)
        thread.start()
        return self

    def stop(self):
        self.stopping.set()
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def __enter__(self):
        return self.start() if self.server is None else self

    def __exit__(self, *exc):
        self.stop()

    @property
    def port(self):
        return self.server.server_address[1]

    @property
    def url(self):
        return f"{self.scheme}://127.0.0.1:{self.port}"


class Emulator(LoopbackServer):
    name = "emulator"

    def __init__(self):
        super().__init__()
        self.lock = threading.RLock()
        self.requests = []
        self.faults = []

    # -- life cycle -------------------------------------------------------------------------------------------

    def start(self, port=0, tls=None):
        """Serve on 127.0.0.1:`port` (0: any free one); `tls=(certfile, keyfile)` serves HTTPS instead of HTTP."""
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; with Nagle on, delayed ACK holds the body ~40 ms per reply.
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def _serve(self):
                emulator._dispatch(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

        self.serve(Handler, port)
        if tls:
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            # The handshake waits for the first read, in the request's own thread: done in accept() it would let
            # one client that never speaks TLS (or rejects the certificate) stall the whole server loop.
            self.server.socket = context.wrap_socket(
                self.server.socket, server_side=True, do_handshake_on_connect=False
            )
            self.scheme = "https"
        return self.run()

    def reset(self):
        """Forget requests, faults and stored data (subclasses extend this for their own state)."""
        with self.lock:
            self.requests.clear()
            self.faults.clear()

    # -- faults -----------------------------------------------------------------------------------------------

    def fault(self, kind, times=1, status=503, body=None, headers=None, interval=0.5, path=None, match=None):
        """Queue a fault for the next `times` requests (None: every request) whose path contains `path` and whose
        body contains the bytes `match` (one request among several: the service refusing that one)."""
        assert kind in ("status", "hang", "drop", "drop_mid", "drop_after", "trickle"), kind
        spec = {
            "kind": kind,
            "times": times,
            "status": status,
            "body": body,
            "headers": headers or {},
            "interval": interval,
            "path": path,
            "match": match.encode() if isinstance(match, str) else match,
        }
        with self.lock:
            self.faults.append(spec)
        return self

    def _take_fault(self, request):
        with self.lock:
            for spec in self.faults:
                if spec["path"] and spec["path"] not in request.path:
                    continue
                if spec["match"] and spec["match"] not in request.body:
                    continue
                if spec["times"] is not None:
                    spec["times"] -= 1
                    if spec["times"] <= 0:
                        self.faults.remove(spec)
                return spec
        return None

    # -- request handling -------------------------------------------------------------------------------------

    def handle(self, request):  # pragma: no cover - every emulator overrides it
        raise NotImplementedError

    def _dispatch(self, handler):
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        request = Request(handler.command, handler.path, handler.headers, body)
        with self.lock:
            self.requests.append(request)
        spec = self._take_fault(request)
        try:
            if spec is None:
                reply = self.handle(request)
            elif spec["kind"] == "status":
                reply = Reply(spec["status"], spec["body"] if spec["body"] is not None else b"", spec["headers"])
            elif spec["kind"] == "drop_after":
                self.handle(request)
                handler.close_connection = True
                return
            else:
                self._misbehave(handler, spec)
                return
        except Exception as error:  # an emulator bug must show up as a 500 the test sees, not a hung client
            reply = Reply(500, {"emulator_error": repr(error)})
        request.status = reply.status
        self._write(handler, reply)

    def _write(self, handler, reply):
        handler.send_response(reply.status)
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(reply.body)))
        if handler.close_connection:  # say so, or a client reuses the socket the server is about to close
            handler.send_header("Connection", "close")
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(reply.body)

    def _misbehave(self, handler, spec):
        handler.close_connection = True
        if spec["kind"] == "hang":
            self.stopping.wait(300)
        elif spec["kind"] == "drop":
            pass
        elif spec["kind"] == "drop_mid":
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", "64")
            handler.end_headers()
            handler.wfile.write(b'{"status": ')
            handler.wfile.flush()
        elif spec["kind"] == "trickle":
            handler.wfile.write(b"HTTP/1.1 200 OK\r\n")
            deadline = time.monotonic() + 300
            while not self.stopping.is_set() and time.monotonic() < deadline:
                try:
                    handler.wfile.write(b"X")
                    handler.wfile.flush()
                except OSError:
                    break
                self.stopping.wait(spec["interval"])


def basic_credentials(request):
    """(user, password) from an `Authorization: Basic` header, or None when there is no usable one."""
    import base64
    import binascii

    scheme, _, encoded = (request.header("authorization") or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, _, password = decoded.partition(":")
    return user, password


def truncate_strings(value, limit, in_bytes=False):
    """A copy of `value` with every string, at any depth, cut to its first `limit` characters, or with `in_bytes`
    to its first `limit` bytes of UTF-8 (a character cut in two is dropped): how analytics services store long
    property values."""
    if isinstance(value, str):
        if in_bytes:
            return value.encode("utf-8")[:limit].decode("utf-8", "ignore")
        return value[:limit]
    if isinstance(value, list):
        return [truncate_strings(item, limit, in_bytes) for item in value]
    if isinstance(value, dict):
        return {key: truncate_strings(item, limit, in_bytes) for key, item in value.items()}
    return value


class RateWindow:
    """What was counted over the trailing `seconds` on `clock`: how the services measure a rate.

    Rate limits are switchable in every emulator and off by default. Tests switch them on with a short window: a
    sender that never puts more than rate x 1 s into any second never exceeds rate x 30 s in any 30 seconds either,
    so a short window is the stricter check and costs no real time.
    """

    def __init__(self, seconds, clock):
        self.seconds = seconds
        self.clock = clock
        self.entries = collections.deque()  # (when, amount), oldest first
        self.total = 0

    def current(self):
        """The amount counted in the window that ends now."""
        now = self.clock()
        while self.entries and self.entries[0][0] <= now - self.seconds:
            self.total -= self.entries.popleft()[1]
        return self.total

    def add(self, amount):
        self.entries.append((self.clock(), amount))
        self.total += amount

    def frees_in(self):
        """Seconds until the oldest counted amount leaves the window (0 when the window is empty)."""
        if not self.entries:
            return 0.0
        return max(0.0, self.entries[0][0] + self.seconds - self.clock())


def serve_forever(emulator, port):
    """Run one emulator in the foreground (used by `python -m tests.emulators.<name> --port N`)."""
    emulator.start(port)
    print(f"{emulator.name} emulator listening on {emulator.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        emulator.stop()
