"""A small forward proxy for the tests: plain-HTTP forwarding of absolute-URI requests and `CONNECT` tunnels.

    proxy = Proxy().start()          # 127.0.0.1, a free port; also a context manager
    env = {"HTTPS_PROXY": proxy.url}
    proxy.seen                       # request lines as received: "CONNECT 127.0.0.1:8443 HTTP/1.1", ...
    proxy.headers                    # the headers of each of those requests, lower-case names
    proxy.stop()

It exists so tests can prove the sink went through a proxy (or did not), so it records before it forwards and
keeps every connection short: a forwarded request goes upstream with `Connection: close` and the answer is relayed
until the upstream closes; a tunnel is relayed both ways until either side closes or the proxy stops. With
`auth=(user, password)` it answers 407 to requests without the matching `Proxy-Authorization: Basic`.
"""

import base64
import select
import socket
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler

from tests.emulators.base import LoopbackServer

HOP_BY_HOP = {"connection", "proxy-connection", "proxy-authorization", "keep-alive", "te", "trailer", "upgrade"}
RELAY_CHUNK = 65536


class Proxy(LoopbackServer):
    name = "proxy"

    def __init__(self, auth=None):
        super().__init__()
        self.auth = auth
        self.lock = threading.Lock()
        self.seen = []
        self.headers = []

    # -- life cycle -------------------------------------------------------------------------------------------

    def start(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_CONNECT(self):
                if proxy._admit(self):
                    proxy._tunnel(self)

            def _forward(self):
                if proxy._admit(self):
                    proxy._forward(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _forward

        self.serve(Handler)
        return self.run(poll_interval=0.05)  # a short poll keeps stop() quick: each test has its own proxy

    def reset(self):
        with self.lock:
            self.seen.clear()
            self.headers.clear()

    # -- handling ---------------------------------------------------------------------------------------------

    def _admit(self, handler):
        """Record the request; False (after answering 407) when it lacks the proxy credentials."""
        with self.lock:
            self.seen.append(handler.requestline)
            self.headers.append({name.lower(): value for name, value in handler.headers.items()})
        if self.auth is None:
            return True
        expected = "Basic " + base64.b64encode(":".join(self.auth).encode()).decode()
        if handler.headers.get("Proxy-Authorization") == expected:
            return True
        handler.close_connection = True
        handler.send_response(407)
        handler.send_header("Proxy-Authenticate", 'Basic realm="tests"')
        handler.send_header("Content-Length", "0")
        handler.send_header("Connection", "close")
        handler.end_headers()
        return False

    def _connect(self, handler, host, port):
        try:
            return socket.create_connection((host, port), timeout=5)
        except OSError:
            handler.close_connection = True
            handler.send_response(502)
            handler.send_header("Content-Length", "0")
            handler.send_header("Connection", "close")
            handler.end_headers()
            return None

    def _tunnel(self, handler):
        host, _, port = handler.path.rpartition(":")
        upstream = self._connect(handler, host.strip("[]"), int(port or 443))
        if upstream is None:
            return
        handler.close_connection = True
        handler.send_response(200, "Connection established")
        handler.end_headers()
        handler.wfile.flush()
        self._relay(handler.connection, upstream)

    def _forward(self, handler):
        target = urllib.parse.urlsplit(handler.path)
        if target.scheme != "http" or not target.hostname:
            handler.send_error(400, "a proxy needs an absolute http:// URI")
            return
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        upstream = self._connect(handler, target.hostname, target.port or 80)
        if upstream is None:
            return
        path = urllib.parse.urlunsplit(("", "", target.path or "/", target.query, ""))
        lines = [f"{handler.command} {path} HTTP/1.1"]
        lines += [f"{name}: {value}" for name, value in handler.headers.items() if name.lower() not in HOP_BY_HOP]
        lines.append("Connection: close")  # so the relayed answer ends when the upstream closes
        upstream.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        handler.close_connection = True
        self._relay(handler.connection, upstream)

    def _relay(self, client, upstream):
        """Copy bytes both ways until one side closes or the proxy stops (bounded: the tests never wait on it)."""
        sockets = [client, upstream]
        try:
            while not self.stopping.is_set():
                readable, _, broken = select.select(sockets, [], sockets, 0.2)
                if broken:
                    return
                for source in readable:
                    data = source.recv(RELAY_CHUNK)
                    if not data:
                        return
                    (upstream if source is client else client).sendall(data)
        except OSError:
            return
        finally:
            upstream.close()
