"""The one helper every peepshow sink shares: stdin payloads, derived values, env config, HTTP, spool, CLI.

A sink script defines NAME, HELP, read_config(env), destination(config), build_requests(runs, config) (pure),
deliver(runs, config, ctx) and optionally check(config, ctx), print_schema(config) with schema_config(env) (the
names it needs, read without a host or credential), legacy_destinations(config) (older spool keys of the same
destination), describe(config) (which way in the configuration chose, shown by --help) and
planned_requests(runs, config, live) (for a sink whose requests depend on whether the runs are one live run, and
on the time: what --dry-run prints instead of build_requests); then its main() is
`return peepshow_sink.main(sys.modules[__name__])`. Exit codes (shared by every peepshow sink): 0 delivered,
2 usage or configuration, 3 missing dependency, 4 malformed stdin, 5 remote or network failure.

Start-up matters (peepshow runs sinks one after another on every run): import only what a single run needs and
import the rest where it is used.
"""

import json
import os
import sys
import time

_version = None  # build.sh stamps pyproject.toml's version here in each zipapp's copy of this file

EXIT_OK, EXIT_USAGE, EXIT_DEPENDENCY, EXIT_PAYLOAD, EXIT_REMOTE = 0, 2, 3, 4, 5
DEFAULT_TIMEOUT = 30.0
TRANSCRIPT_LIMIT = 1024 * 1024
MAX_DOCUMENT_BYTES = 256 * 1024 * 1024
READ_CHUNK = 1024 * 1024


def version():
    """The one version of all three sinks, pyproject.toml's: stamped into a zipapp, read once from a checkout."""
    global _version
    if _version is None:
        here = os.path.dirname(os.path.realpath(__file__))
        _version = _project_version(os.path.join(here, os.pardir, "pyproject.toml"))
    return _version


def _project_version(path):
    """`version` of pyproject.toml's [project] table, read by hand: tomllib is Python 3.11+ and costs an import."""
    section = None
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                line = line.strip()
                if line.startswith("["):
                    section = line
                    continue
                key, equals, value = line.partition("=")
                value = value.strip()
                end = value.find(value[:1], 1) if value[:1] in ("'", '"') else -1
                if section == "[project]" and equals and key.strip() == "version" and end > 0:
                    return value[1:end]
    except OSError:
        pass
    return "0+unknown"


class SinkError(Exception):
    """A one-line, user-facing failure; `code` is the exit code.

    Whose fault it is decides what happens to the run. `run` means the service pinned the failure on this run
    (a bad value, event or row): the run is rejected for good. Anything else is the destination's (wrong URL,
    credentials, permissions, a missing table) or passing (`transient`: the network, a 5xx): the run is kept in
    the spool, and a backfill or replay stops at the first one, since every later run would meet it too.
    """

    def __init__(self, code, message, transient=False, run=False):
        super().__init__(message)
        self.code = code
        self.message = message
        self.transient = transient
        self.run = run


def usage_error(message):
    return SinkError(EXIT_USAGE, message)


def remote_error(message, transient=False, run=False):
    return SinkError(EXIT_REMOTE, message, transient=transient, run=run)


# -- secrets -------------------------------------------------------------------------------------------------------

_secrets = set()


def register_secret(value):
    """Remember a credential so that `redact` hides it, and its common encodings, from everything shown."""
    import base64
    import urllib.parse

    if not value or len(value) < 4:
        return
    _secrets.add(value)
    _secrets.add(urllib.parse.quote(value, safe=""))
    _secrets.add(base64.b64encode(f"{value}:".encode()).decode())
    _secrets.add(base64.b64encode(value.encode()).decode().rstrip("="))


def redact(text):
    text = str(text)
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


# -- configuration -------------------------------------------------------------------------------------------------


def env_value(env, name, default=None):
    """The variable's value with surrounding whitespace removed; empty or unset gives `default`."""
    value = (env.get(name) or "").strip()
    return value or default


def require(env, name, hint):
    value = env_value(env, name)
    if value is None:
        raise usage_error(f"{name} is not set: {hint}")
    return value


def read_timeout(env):
    raw = env_value(env, "PEEPSHOW_SINK_TIMEOUT")
    if raw is None:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 3600:
        raise usage_error(f"PEEPSHOW_SINK_TIMEOUT={raw!r} is not a number of seconds between 0 and 3600")
    return seconds


def base_url(env, name, hint, keep_query=False):
    """A required http(s) URL with trailing slashes dropped.

    API paths are appended to a base URL, so its query and fragment go (Azure's portal hands out workspace URLs
    as https://adb-….net/?o=<id>); a full endpoint URL (`keep_query`) keeps its query.
    """
    import urllib.parse

    url = require(env, name, hint).rstrip("/")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise usage_error(f"{name}={url!r} is not an http(s) URL: {hint}")
    if keep_query:
        return url
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def is_loopback(host):
    """True for localhost and loopback addresses only (a DNS name such as 127.0.0.1.example.com is not)."""
    import ipaddress

    host = (host or "").strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def refuse_plain_http(url, variable):
    """Credentials never cross a network in clear text; loopback (emulators, a local Stargate) is fine."""
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise usage_error(
            f"{variable} uses plain http to {parts.hostname}: the credential would travel unencrypted; use https"
        )


# -- payload -------------------------------------------------------------------------------------------------------


def iter_documents(stream):
    """Yield each JSON value of a byte stream holding one or more documents (concatenated or one per line).

    Streams: holds the current document plus one read chunk, so memory stays flat over any number of runs.
    Raises SinkError(4) for bad UTF-8, bad JSON, or an empty stream.
    """
    import codecs
    import re

    decoder = json.JSONDecoder()
    utf8 = codecs.getincrementaldecoder("utf-8")()
    blank = re.compile(r"[ \t\r\n\ufeff]*")
    buffer, offset, eof, count = "", 0, False, 0
    while True:
        offset = blank.match(buffer, offset).end()
        if offset == len(buffer):
            if eof:
                break
            (buffer, eof), offset = _read_more(stream, utf8, ""), 0
            continue
        try:
            value, offset = decoder.raw_decode(buffer, offset)
        except json.JSONDecodeError as error:
            if not eof:
                (buffer, eof), offset = _read_more(stream, utf8, buffer[offset:]), 0
                if len(buffer) > MAX_DOCUMENT_BYTES:
                    raise SinkError(EXIT_PAYLOAD, "stdin: one document is larger than 256 MiB") from None
                continue
            what = "truncated" if error.pos >= len(buffer) - 1 else "not valid JSON"
            where = f"document {count + 1} on stdin" if count else "stdin"
            raise SinkError(
                EXIT_PAYLOAD,
                f"{where} is {what} ({error.msg} at character {error.pos - offset + 1}): "
                "pipe the output of `peepshow <video> --emit json`",
            ) from None
        count += 1
        yield value
    if count == 0:
        raise SinkError(EXIT_PAYLOAD, "stdin is empty: pipe the output of `peepshow <video> --emit json` into the sink")


def _read_more(stream, utf8, pending):
    """(`pending` plus the next chunk of the stream, decoded; whether the stream has ended)."""
    chunk = stream.read(READ_CHUNK)
    try:
        return pending + utf8.decode(chunk or b"", final=not chunk), not chunk
    except UnicodeDecodeError as error:
        raise SinkError(
            EXIT_PAYLOAD, f"stdin is not valid UTF-8 ({error.reason}): peepshow writes UTF-8 JSON"
        ) from None


def clean_text(value):
    """A str safe to encode as UTF-8: JSON allows lone surrogates (\\ud83d), UTF-8 does not."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        import re

        return re.sub("[\ud800-\udfff]", "\ufffd", value)
    return value


def text(value):
    """A non-empty string, or None."""
    if isinstance(value, str) and value.strip():
        return clean_text(value)
    return None


def number(value):
    """A finite int or float from a number or a numeric string; None for anything else (bool included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, str):
        try:
            parsed = float(value.strip())
        except ValueError:
            return None
        if parsed != parsed or parsed in (float("inf"), float("-inf")):
            return None
        return int(parsed) if parsed.is_integer() and "." not in value and "e" not in value.lower() else parsed
    return None


def field(payload, *path):
    """payload[a][b]… or None when any step is missing or not an object."""
    for key in path:
        if not isinstance(payload, dict):
            return None
        payload = payload.get(key)
    return payload


def basename(path):
    """Last component of a POSIX or Windows path, trailing separators ignored."""
    return path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def iso_millis(epoch_seconds):
    import datetime

    moment = datetime.datetime.fromtimestamp(epoch_seconds, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_iso(value):
    """Epoch seconds (float) of an ISO-8601 date-time with any fraction and a Z or ±hh:mm offset; else None."""
    import datetime
    import re

    if not isinstance(value, str):
        return None
    match = re.fullmatch(
        r"\s*(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d)(?::(\d\d)(?:[.,](\d+))?)?\s*(Z|z|[+-]\d\d:?\d\d)?\s*", value
    )
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = datetime.datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second or 0), tzinfo=datetime.timezone.utc
        )
    except ValueError:
        return None
    seconds = moment.timestamp() + (int(fraction[:6].ljust(6, "0")) / 1e6 if fraction else 0)
    if zone and zone not in "Zz":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        seconds -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return seconds


def table_duration(seconds):
    """What tables store for `duration`: the number as a double, 0 when unknown (SPEC §1) or not a finite double
    (an integer too large for one)."""
    try:
        seconds = float(seconds) if seconds is not None else 0.0
    except OverflowError:
        return 0.0
    return seconds if seconds - seconds == 0 else 0.0


def cut_utf8(value, limit):
    """`value` cut to at most `limit` bytes of UTF-8, never in the middle of a character."""
    encoded = value.encode("utf-8")
    if len(encoded) <= limit:
        return value
    return encoded[:limit].decode("utf-8", "ignore")


def thumbnail_url(payload, env):
    import urllib.parse

    base = env_value(env, "PEEPSHOW_FRAME_BASE_URL")
    frames = payload.get("frames")
    if not base or not isinstance(frames, list) or not frames:
        return None
    first = frames[0]
    path = text(first.get("path")) if isinstance(first, dict) else text(first)
    if not path or not basename(path):
        return None
    return base.rstrip("/") + "/" + urllib.parse.quote(basename(path).encode("utf-8"), safe="-._~")


def derive(payload, env, now=None, source="stdin"):
    """The values every sink writes (SPEC §1), computed once per run. Raises SinkError(4) for an unusable run,
    naming `source` (where the document came from).

    `created_at` comes from the payload's `createdAt` (manifests, and runs replayed from the spool, carry it),
    else from `now`: the sink stores it with a spooled run so a replay is recognised as the same delivery.
    """
    if not isinstance(payload, dict):
        kinds = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
        kind = kinds.get(type(payload), "a number")
        raise SinkError(EXIT_PAYLOAD, f"{source} holds {kind}, not a JSON object: pipe peepshow's --emit json output")
    output_dir = text(payload.get("outputDir"))
    run_id = basename(output_dir) if output_dir else None
    run_id = run_id or text(payload.get("runId"))
    if not run_id:
        raise SinkError(
            EXIT_PAYLOAD,
            f"{source}: the run has no outputDir (nor a manifest runId) to name it: is this peepshow output?",
        )
    tags = field(payload, "video", "tags")
    tags = {str(k): tag_text(v) for k, v in tags.items()} if isinstance(tags, dict) else {}
    tags = json.loads(clean_text(json.dumps(tags, ensure_ascii=False)))
    created = parse_iso(payload.get("createdAt"))
    transcript = text(field(payload, "audio", "transcript", "text"))
    if transcript:
        transcript = cut_utf8(transcript, TRANSCRIPT_LIMIT)
    payload = _without_bulk(payload, transcript)
    return {
        "run_id": run_id,
        "title": text(tags.get("title"))
        or text(tags.get("show"))
        or text(field(payload, "input", "filename"))
        or run_id,
        "frames": frame_count(payload),
        "duration": number(field(payload, "video", "durationSeconds")),
        "transcript": transcript,
        "thumbnail_url": thumbnail_url(payload, env),
        "strategy": text(payload.get("strategy")) or text(field(payload, "extraction", "strategy")),
        "tags": json.dumps(tags, ensure_ascii=False, separators=(",", ":")),
        "tag_values": tags,
        "created_at": iso_millis(created if created is not None else (now if now is not None else time.time())),
        "payload": payload,
    }


def tag_text(value):
    """A tag value as text when it is a number: container tags are text, yet a run can carry one as a JSON number
    (a year, a track number), and a numeric title is still the title. Anything else is kept as it came."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return json.dumps(value)
    return value


def frame_count(payload):
    """`frames[]`'s length; when the run lists no frames (peepshow 0.8 can leave the list out), the count it
    reports in `extraction.framesEmitted`; else 0."""
    frames = payload.get("frames")
    if isinstance(frames, list):
        return len(frames)
    emitted = number(field(payload, "extraction", "framesEmitted"))
    if emitted is not None and emitted >= 0 and emitted == int(emitted):
        return int(emitted)
    return 0


def _without_bulk(payload, transcript):
    """The payload as a row keeps it (for the spool and the sinks' own fields): the transcript's text already cut
    and its segments dropped. No sink reads them, and a backfill holding hundreds of runs would otherwise keep
    every full transcript twice over."""
    audio = payload.get("audio")
    spoken = audio.get("transcript") if isinstance(audio, dict) else None
    if not isinstance(spoken, dict):
        return payload
    spoken = {key: value for key, value in spoken.items() if key != "segments"}
    if transcript is not None:
        spoken["text"] = transcript
    return dict(payload, audio=dict(audio, transcript=spoken))


def stable_id(*parts):
    """A UUIDv5-shaped id of the parts: the same run always gets the same dedup id, retries and replays alike."""
    name = "\x1f".join(parts).encode("utf-8", "surrogatepass")
    digest = bytearray(_digest("sha1", name)[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    hexed = digest.hex()
    return f"{hexed[:8]}-{hexed[8:12]}-{hexed[12:16]}-{hexed[16:20]}-{hexed[20:]}"


# -- HTTP ----------------------------------------------------------------------------------------------------------


def load_urllib3():
    import warnings

    # macOS's /usr/bin/python3 links LibreSSL; urllib3 2 warns about it on import. The sinks work there, and
    # peepshow shows a sink's stderr as its failure reason, so keep it clean.
    warnings.filterwarnings("ignore", message=".*urllib3 v2 only supports OpenSSL.*")
    try:
        import urllib3
    except ImportError:
        raise SinkError(
            EXIT_DEPENDENCY, "urllib3 is not installed: use the .pyz zipapp, or `pip install urllib3`"
        ) from None
    return urllib3


def http_client(env, pool_size=4):
    """One urllib3 pool manager for the invocation, through HTTPS_PROXY/HTTP_PROXY unless NO_PROXY says not."""
    urllib3 = load_urllib3()
    options = {"maxsize": pool_size, "retries": False, "block": False}
    ca_file = env_value(env, "SSL_CERT_FILE")
    if ca_file:
        options["ca_certs"] = ca_file
    proxies = {
        scheme: env_value(env, f"{scheme.upper()}_PROXY") or env_value(env, f"{scheme}_proxy")
        for scheme in ("https", "http")
    }
    client = {"direct": urllib3.PoolManager(**options), "proxies": {}, "no_proxy": None, "urllib3": urllib3}
    for scheme, proxy in proxies.items():
        if proxy:
            client["proxies"][scheme] = _proxy_manager(urllib3, proxy, f"{scheme.upper()}_PROXY", options)
            client["no_proxy"] = env_value(env, "NO_PROXY") or env_value(env, "no_proxy") or ""
    return client


def _proxy_manager(urllib3, proxy, variable, options):
    import urllib.parse

    if "://" not in proxy:
        proxy = "http://" + proxy
    parts = urllib.parse.urlsplit(proxy)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise usage_error(f"{variable} must be an http:// or https:// proxy URL (socks and others are not supported)")
    headers = None
    if parts.username is not None:
        # urllib3 does not read credentials from the proxy URL: send them as Proxy-Authorization.
        credentials = urllib.parse.unquote(parts.username) + ":" + urllib.parse.unquote(parts.password or "")
        register_secret(credentials)
        register_secret(parts.password or "")
        headers = urllib3.make_headers(proxy_basic_auth=credentials)
        proxy = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    return urllib3.ProxyManager(proxy, proxy_headers=headers, **options)


def _pool_for(client, url):
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    proxy = client["proxies"].get(parts.scheme)
    if proxy is None or _bypass_proxy(parts.hostname or "", parts.port, client["no_proxy"]):
        return client["direct"]
    return proxy


def _bypass_proxy(host, port, no_proxy):
    if no_proxy.strip() == "*":
        return True
    host = host.lower().strip("[]")
    for entry in no_proxy.replace(" ", ",").split(","):
        entry = entry.strip().lower().lstrip(".")
        if not entry:
            continue
        name, _, entry_port = entry.partition(":")
        if entry_port and str(port) != entry_port:
            continue
        if host == name or host.endswith("." + name):
            return True
    return False


class Response:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        """The body as a JSON value, or None when it is not JSON (HTML error pages, proxies, truncation)."""
        try:
            return json.loads(self.body.decode("utf-8"))
        except ValueError:
            return None

    def text(self, limit=300):
        return " ".join(self.body.decode("utf-8", "replace").split())[:limit]


def request(method, url, headers=None, body=None):
    """A request as plain data: what builders return, --dry-run prints and `send` sends."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    return {"method": method, "url": url, "headers": dict(headers or {}), "body": body}


def json_request(method, url, payload, headers=None):
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return request(method, url, {"Content-Type": "application/json", **(headers or {})}, body)


def describe_request(req):
    """The request as --dry-run shows it: exact bytes, credentials redacted."""
    lines = [f"{req['method']} {req['url']}"]
    lines += [f"{name}: {value}" for name, value in req["headers"].items()]
    body = req["body"].decode("utf-8") if req["body"] else ""
    return redact("\n".join(lines) + ("\n\n" + body if body else "") + "\n")


RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MAX_ATTEMPTS = 6
MAX_BODY = 64 * 1024 * 1024


def send(ctx, req, retry_statuses=RETRY_STATUSES, deadline=None, what=None, variable=None):
    """Send `req`, retrying connection failures and `retry_statuses` until it succeeds or time runs out.

    Returns the last Response whatever its status (the sink's parse_response judges it). Raises a transient
    SinkError(5) when no response could be had, naming `what` (the service), the host and port, and `variable`
    (the setting that points there). Waits honour Retry-After (seconds or HTTP date) but never past the deadline;
    otherwise exponential backoff with full jitter. urllib3's own Retry is not used for the loop because it
    cannot stop at an overall deadline; its Retry-After parser is.
    """
    import random

    urllib3 = ctx["http"]["urllib3"]
    if "User-Agent" not in req["headers"]:  # every request names the sink and its release
        req = dict(req, headers={"User-Agent": f"peepshow-sink-{ctx['name']}/{version()}", **req["headers"]})
    deadline = deadline or request_deadline(ctx)
    where = f"{what} at {host_port(req['url'])}" if what else host_port(req["url"])
    fix = f": check {variable}" if variable else ""
    pool = _pool_for(ctx["http"], req["url"])
    attempt = 0
    while True:
        attempt += 1
        left = deadline - time.monotonic()
        if left <= 0.05:
            raise remote_error(f"no answer from {where} within {ctx['timeout']:g}s (PEEPSHOW_SINK_TIMEOUT)", True)
        problem = None
        try:
            response = _attempt(urllib3, pool, req, left, deadline)
        except urllib3.exceptions.HTTPError as error:
            problem, retryable = _network_reason(urllib3, error, where, fix)
            if not retryable:
                raise remote_error(problem, transient=True) from None
            response = None
        if response is not None and response.status not in retry_statuses:
            return response
        if response is not None:
            problem = f"{where} answered HTTP {response.status}"
            wait = _retry_after(urllib3, response)
        else:
            wait = None
        if wait is None:
            wait = random.uniform(0, min(8.0, 0.25 * 2**attempt))  # noqa: S311 - jitter, not a secret
        left = deadline - time.monotonic()
        if attempt >= MAX_ATTEMPTS or wait >= left - 0.1:
            if response is not None:
                return response
            raise remote_error(problem, transient=True)
        log(ctx, f"{problem}; retrying in {wait:.1f}s (attempt {attempt + 1})")
        time.sleep(wait)


def _attempt(urllib3, pool, req, left, deadline):
    timeout = urllib3.Timeout(connect=min(10.0, left), read=left)
    raw = pool.urlopen(
        req["method"],
        req["url"],
        body=req["refresh"](req["body"]) if req.get("refresh") else req["body"],
        headers=req["headers"],
        timeout=timeout,
        retries=False,
        redirect=False,
        preload_content=False,
    )
    try:
        chunks, size = [], 0
        # A server that trickles the body would defeat the per-read timeout: check the deadline per chunk.
        for chunk in raw.stream(65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_BODY or time.monotonic() > deadline:
                raise urllib3.exceptions.ReadTimeoutError(None, req["url"], "response too slow or too large")
        return Response(raw.status, raw.headers, b"".join(chunks))
    except BaseException:
        raw.close()  # half-read: the connection must not go back to the pool for the next request
        raise
    finally:
        raw.release_conn()


def _retry_after(urllib3, response):
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, urllib3.Retry(0).parse_retry_after(value))
    except urllib3.exceptions.InvalidHeader:
        return None


def _network_reason(urllib3, error, where, fix):
    """(the one-line reason, whether another attempt in this invocation can help)."""
    import ssl

    reason = getattr(error, "reason", None) or error
    if isinstance(error, urllib3.exceptions.ProxyError):
        if "407" in str(reason):  # wrong proxy credentials fail the same way on every attempt
            return "the proxy refused its credentials (HTTP 407): fix user:password in HTTPS_PROXY/HTTP_PROXY", False
        return f"cannot reach {where} through the proxy ({reason}): check HTTPS_PROXY, HTTP_PROXY and NO_PROXY", True
    if isinstance(error, urllib3.exceptions.SSLError):
        chain, verify = error, False
        while chain is not None and not verify:
            verify = isinstance(chain, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(chain)
            chain = chain.__cause__ or chain.__context__
        if verify:  # the same certificate will fail the same way until the trust store changes
            return f"TLS certificate of {where} not trusted: set SSL_CERT_FILE to the CA bundle that signs it", False
        return f"TLS failed with {where} ({reason}){fix}", True
    name_error = getattr(urllib3.exceptions, "NameResolutionError", ())  # urllib3 2; 1.26 words it in the reason
    if isinstance(error, name_error) or isinstance(reason, name_error) or "Name or service not known" in str(reason):
        return f"cannot resolve the host of {where} (DNS lookup failed){fix}", True
    # urllib3 makes NewConnectionError a kind of ConnectTimeoutError: ask for the narrower one first.
    new_connection = urllib3.exceptions.NewConnectionError
    if isinstance(error, new_connection) or isinstance(reason, new_connection):
        refused = "refused" in str(reason).lower()
        return f"cannot connect to {where} ({'connection refused' if refused else 'unreachable'}){fix}", True
    connect_timeout = urllib3.exceptions.ConnectTimeoutError
    if isinstance(error, connect_timeout) or isinstance(reason, connect_timeout):
        return f"cannot connect to {where} (no answer to the connection attempt){fix}", True
    if isinstance(error, (urllib3.exceptions.TimeoutError, urllib3.exceptions.ReadTimeoutError)):
        return f"{where} did not answer in time (PEEPSHOW_SINK_TIMEOUT allows more)", True
    if isinstance(error, urllib3.exceptions.ProtocolError):
        return f"{where} dropped the connection", True
    return f"network error talking to {where}: {type(reason).__name__}{fix}", True


def host_port(url):
    """`host:port` of a URL, the scheme's default port spelled out (what a refused connection went to)."""
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or url
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{host}:{port or (443 if parts.scheme == 'https' else 80)}"


def request_deadline(ctx):
    """The run's deadline (one run per invocation) or a fresh one per request (backfill, --flush)."""
    return ctx["deadline"] or time.monotonic() + ctx["timeout"]


def redirect_error(response, what, variable):
    location = response.headers.get("Location", "elsewhere")
    return remote_error(
        f"{what} redirected (HTTP {response.status}) to {location}: set {variable} to the final URL "
        "(the sink never follows a redirect with credentials)"
    )


def log(ctx, message):
    if ctx.get("verbose"):
        print(redact(f"{ctx['name']}: {message}"), file=sys.stderr, flush=True)


# -- spool and delivered-run record --------------------------------------------------------------------------------


SPOOL_SWITCH = {"off": False, "0": False, "false": False, "no": False, "on": True, "1": True, "true": True, "yes": True}


def spool_dir(env, name):
    """`<PEEPSHOW_SINK_SPOOL_DIR or ~/.peepshow/spool>/<sink>` as an absolute path, or None when
    PEEPSHOW_SINK_SPOOL=off.

    The directory is resolved once, here: a relative or `~` value typed into a shell profile must mean the same
    place whatever directory peepshow runs the sink from.
    """
    switch = env_value(env, "PEEPSHOW_SINK_SPOOL")
    if switch is not None and switch.lower() not in SPOOL_SWITCH:
        raise usage_error(
            f"PEEPSHOW_SINK_SPOOL={switch!r} is an on/off switch (off, 0, false or no turns the spool off): to move "
            "the spool, set PEEPSHOW_SINK_SPOOL_DIR to a directory instead"
        )
    if switch is not None and not SPOOL_SWITCH[switch.lower()]:
        return None
    root = env_value(env, "PEEPSHOW_SINK_SPOOL_DIR") or os.path.join("~", ".peepshow", "spool")
    home = env_value(env, "HOME")
    if home and (root == "~" or root.startswith("~" + os.sep)):
        root = home + root[1:]
    return os.path.join(os.path.abspath(os.path.expanduser(root)), name)


def destination_key(material):
    """A short, non-reversible name for a destination (its identity may include a token: never in a file name)."""
    return _digest("sha256", "\x1f".join(material).encode("utf-8")).hex()[:16]


def _digest(algorithm, data):
    """SHA-1 (UUIDv5 ids, not secrets) or SHA-256 of `data`.

    hashlib loads OpenSSL's libcrypto on import (~3 ms, a few percent of a whole run); CPython's own built-in
    modules compute the same digests without it. hashlib stays the fallback for builds without them.
    """
    modules = {"sha1": ("_sha1",), "sha256": ("_sha2", "_sha256")}[algorithm]
    for module in modules:
        try:
            return getattr(__import__(module), algorithm)(data).digest()
        except (ImportError, AttributeError):
            continue
    import hashlib

    return hashlib.new(algorithm, data).digest()


def run_key(row):
    return destination_key((row["run_id"], row["created_at"]))


def _private_dir(path):
    """Create `path` and each missing parent 0700 whatever the umask (the spool holds whole runs: transcripts,
    file names); a directory that already existed keeps its mode, except the sink's own, `path` itself."""
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            continue  # another sink made it meanwhile
        os.chmod(directory, 0o700)
    os.chmod(missing[0] if missing else path, 0o700)


def write_private(path, data):
    """Write `data` to `path` atomically (temp file + rename), readable by its owner only."""
    directory = os.path.dirname(path)
    _private_dir(directory)
    temporary = os.path.join(directory, f".tmp-{os.getpid()}-{os.path.basename(path)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


# A spool holds `<key>-<run>.json` files; `keys` name one destination: the key of today's identity first, then the
# keys older versions gave the same destination (their runs replay too). `.rejected` files are runs the service
# refused; `.claimed-<pid>` ones are being replayed by that process.


def spool_put(directory, key, row, label):
    """Keep an undelivered run; the stored payload carries created_at so a replay reuses every derived id."""
    payload = dict(row["payload"])
    payload["createdAt"] = row["created_at"]
    entry = {"destination": label, "run": payload}
    path = os.path.join(directory, f"{key}-{run_key(row)}.json")
    write_private(path, json.dumps(entry, ensure_ascii=False).encode("utf-8"))
    return path


def _spool_names(directory, keys=None, suffix=".json"):
    """This destination's spool files ending in `suffix` (every destination's when `keys` is None)."""
    prefixes = tuple(key + "-" for key in keys) if keys else ""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return sorted(name for name in names if name.startswith(prefixes) and name.endswith(suffix) and name[0] != ".")


def spool_claim(directory, keys, limit=None):
    """Claim this destination's spooled runs by renaming them; a rename succeeds for one process only.

    Returns [(claimed_path, payload)]. Claims left by a process that died are taken back first.
    """
    for name in _spool_names(directory, keys, suffix=""):
        if ".claimed-" in name:
            owner = name.rsplit(".claimed-", 1)[1]
            if owner.isdigit() and not _alive(int(owner)):
                path = os.path.join(directory, name)
                _rename_quietly(path, path.rsplit(".claimed-", 1)[0])
    claimed = []
    for name in _spool_names(directory, keys):
        path = os.path.join(directory, name)
        target = f"{path}.claimed-{os.getpid()}"
        if not _rename_quietly(path, target):
            continue
        try:
            with open(target, encoding="utf-8") as handle:
                claimed.append((target, json.load(handle)["run"]))
        except (OSError, ValueError, KeyError, TypeError):
            _rename_quietly(target, path + ".unreadable")
        if limit and len(claimed) >= limit:
            break
    return claimed


def spool_release(claimed_path, outcome):
    """Settle a claimed run: "delivered" removes it, "rejected" sets it aside, "kept" puts it back in the queue."""
    original = claimed_path.rsplit(".claimed-", 1)[0]
    if outcome == "delivered":
        os.unlink(claimed_path)
    elif outcome == "rejected":
        _rename_quietly(claimed_path, original[: -len(".json")] + ".rejected")
    else:
        _rename_quietly(claimed_path, original)


def spool_count(directory, keys=None, suffix=".json"):
    """Runs waiting for this destination (every destination when `keys` is None); `.rejected` ones with `suffix`."""
    return len(_spool_names(directory, keys, suffix))


def spool_requeue_rejected(directory, keys):
    """Put this destination's rejected runs back in the queue (the user fixed the cause); returns how many."""
    names = _spool_names(directory, keys, ".rejected")
    for name in names:
        path = os.path.join(directory, name)
        _rename_quietly(path, path[: -len(".rejected")] + ".json")
    return len(names)


def _rename_quietly(source, target):
    try:
        os.rename(source, target)
        return True
    except OSError:
        return False


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def delivered_runs(directory, keys):
    """Run ids already delivered to this destination (backfills skip them: a live run carried no createdAt)."""
    done = set()
    for key in keys:
        try:
            with open(os.path.join(directory, f"delivered-{key}.txt"), encoding="utf-8") as handle:
                for line in handle:
                    try:
                        done.add(json.loads('"' + line.rstrip("\n") + '"'))  # a line is the inside of a JSON string
                    except ValueError:
                        continue
        except OSError:
            continue
    return done


def record_delivered(directory, key, run_ids):
    if not run_ids:
        return
    _private_dir(directory)
    data = "".join(json.dumps(run_id)[1:-1] + "\n" for run_id in run_ids).encode("utf-8")
    descriptor = os.open(os.path.join(directory, f"delivered-{key}.txt"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(descriptor, data)
    finally:
        os.close(descriptor)


# -- the command line every sink shares ----------------------------------------------------------------------------

COMMON_HELP = """
Register with peepshow:
  peepshow sinks add-cmd ~/bin/{name}.pyz                after every extraction
  peepshow ./clip.mp4 --sink {name}                      with dist/peepshow-sink-{name} copied onto PATH
  peepshow sinks add {name} --when extension=mp4,mov     only for matching videos

Input:
  stdin            one run: the JSON that `peepshow <video> --emit json` prints (peepshow pipes it in);
                   several runs, concatenated or one per line, are a backfill
  PATH ...         manifest.json files or run directories (their manifest.json) to backfill
  --from-index [PATH]
                   backfill every run in peepshow's index (default ~/.peepshow/runs/index.ndjson)

Options:
  --dry-run        print the exact request(s) delivery would send for the input, credentials redacted;
                   send nothing
  --flush          replay the runs kept in the spool (reads no stdin); exit 0 only when none is left and
                   none was rejected; it stops at the first failure of the destination itself
  --retry-rejected with --flush: queue the runs the service rejected (*.rejected) again, once you fixed
                   the cause (a column type, a bad value)
  --check          verify the configuration, and ask the service a question that writes nothing: its
                   answer is judged as delivery would judge it
{print_schema}  --verbose        narrate retries and replays on stderr
  --version, --help

Shared environment:
  PEEPSHOW_SINK_TIMEOUT    seconds one run may take, retries and polling included (default 30);
                           for a backfill, the bound of each request
  PEEPSHOW_SINK_SPOOL_DIR  the directory where undelivered runs are kept (default ~/.peepshow/spool; ~ and
                           relative paths allowed); one file per run, 0600, in directories the sink creates 0700
  PEEPSHOW_SINK_SPOOL      a switch: off (or 0, false, no) keeps no undelivered run; default on
  HTTPS_PROXY, HTTP_PROXY, NO_PROXY, SSL_CERT_FILE   honoured

Exit codes: 0 delivered, 2 usage or configuration, 3 missing dependency, 4 malformed stdin,
  5 remote or network failure. A run is kept in the spool unless the service refused that run itself
  (a bad value or event): a down, misconfigured or unauthorised destination never costs a run.
"""

PRINT_SCHEMA_HELP = "  --print-schema   print the table definition (no host or credential needed)\n"

GROUP_RUNS = 500
# "No (further) document": JSON null is a document, so None cannot mean that.
_END = object()
GROUP_BYTES = 16 * 1024 * 1024


def main(sink, argv=None, env=None, stdin=None, stdout=None, stderr=None):
    """Run `sink` as a command; returns the exit code. Every failure is one redacted line on stderr."""
    started = time.monotonic()
    argv = sys.argv[1:] if argv is None else argv
    env = os.environ if env is None else env
    stdout = stdout or _tolerant(sys.stdout)
    stderr = stderr or _tolerant(sys.stderr)
    try:
        return _run(sink, argv, env, stdin, stdout, stderr, started)
    except SinkError as error:
        _say(stderr, sink.NAME, error.message)
        return error.code
    except KeyboardInterrupt:
        _say(stderr, sink.NAME, "interrupted")
        return 130
    except Exception as error:  # noqa: BLE001 - the last line of defence: never a traceback, never a secret
        _say(stderr, sink.NAME, f"internal error ({type(error).__name__}: {error}); please report it")
        return EXIT_REMOTE


def _tolerant(stream):
    """The stream, writing what its encoding cannot hold as escapes (`\\xe9`) instead of failing: a terminal or
    PYTHONIOENCODING set to ASCII must not turn a run's non-ASCII title into a crash or a lost error message."""
    if stream is not None and hasattr(stream, "reconfigure"):
        try:
            stream.reconfigure(errors="backslashreplace")
        except (ValueError, OSError):  # a closed or detached stream: writing to it fails anyway, and is caught
            pass
    return stream


def _say(stream, name, message):
    try:
        stream.write(f"{name}: {redact(' '.join(str(message).split()))}\n")
        stream.flush()
    except (OSError, ValueError):
        pass


def parse_args(argv):
    options = {"paths": [], "from_index": None}
    flags = {
        "--dry-run",
        "--flush",
        "--retry-rejected",
        "--check",
        "--print-schema",
        "--verbose",
        "--help",
        "-h",
        "--version",
    }
    index = 0
    while index < len(argv):
        arg = argv[index]
        index += 1
        if arg in flags:
            options["help" if arg == "-h" else arg[2:].replace("-", "_")] = True
        elif arg == "--from-index" or arg.startswith("--from-index="):
            value = arg.partition("=")[2]
            if not value and index < len(argv) and not argv[index].startswith("--"):
                value = argv[index]
                index += 1
            options["from_index"] = value or os.path.join(os.path.expanduser("~"), ".peepshow", "runs", "index.ndjson")
        elif arg == "--":
            options["paths"] += argv[index:]
            break
        elif arg.startswith("-") and arg != "-":
            raise usage_error(f"unknown option {arg}: see --help")
        else:
            options["paths"].append(arg)
    if options.get("retry_rejected") and not options.get("flush"):
        raise usage_error("--retry-rejected goes with --flush: `<sink> --flush --retry-rejected`")
    if options.get("dry_run") and options.get("flush"):  # --flush would send: a dry run must never
        raise usage_error("--dry-run does not go with --flush, which sends the spooled runs: drop one of the two")
    return options


def _run(sink, argv, env, stdin, stdout, stderr, started):
    options = parse_args(argv)
    if options.get("help"):
        schema = PRINT_SCHEMA_HELP if hasattr(sink, "print_schema") else ""
        common = COMMON_HELP.format(name=sink.NAME, print_schema=schema)
        stdout.write(sink.HELP.strip() + "\n" + _this_environment(sink, env) + common)
        return EXIT_OK
    if options.get("version"):
        stdout.write(f"{sink.NAME} {version()}\n")
        return EXIT_OK
    if options.get("print_schema"):
        if not hasattr(sink, "print_schema"):
            raise usage_error(f"{sink.NAME} writes no table: there is no schema to print")
        # The table's definition is fixed: only its names come from the environment, never a host or credential.
        stdout.write(sink.print_schema(sink.schema_config(env)).rstrip("\n") + "\n")
        return EXIT_OK
    timeout = read_timeout(env)
    config = sink.read_config(env)
    # deadline: the run's, when one run is delivered as it happens (else each request gets its own); live: the rows
    # being delivered are that run (not a backfill or a replay of the spool).
    ctx = {"name": sink.NAME, "env": env, "timeout": timeout, "deadline": None, "live": False}
    ctx["verbose"] = options.get("verbose")
    ctx["stderr"] = stderr
    label, material = sink.destination(config)
    older = sink.legacy_destinations(config) if hasattr(sink, "legacy_destinations") else []
    keys = tuple(dict.fromkeys(destination_key(identity) for identity in [material, *older]))
    spool = {"dir": spool_dir(env, sink.NAME), "keys": keys, "label": label}
    if options.get("check"):
        ctx["http"] = http_client(env)
        report = CheckReport(stdout)
        code = sink.check(config, ctx, report)
        if code != EXIT_OK:
            _say(stderr, sink.NAME, report.reason())
        return code
    if options.get("flush"):
        ctx["http"] = http_client(env, getattr(sink, "CONCURRENCY", 1) + 1)
        return _flush(sink, config, ctx, spool, stdout, stderr, options.get("retry_rejected"))

    if options["paths"] or options["from_index"]:
        documents = _manifest_documents(options, stdin)
        single = _END
    else:
        stream = stdin or _stdin()
        if hasattr(stream, "isatty") and stream.isatty():
            raise usage_error(
                f"reads a peepshow run on stdin: `peepshow <video> --emit json | {sink.NAME}` (see --help)"
            )
        documents = iter_documents(stream)
        first = next(documents)
        second = next(documents, _END)
        if second is _END:
            single = first
        else:
            documents = _on_stdin(_chain([first, second], documents))
            single = _END

    if options.get("dry_run") and hasattr(sink, "describe"):
        stdout.write(redact(f"# {sink.NAME}: {sink.describe(config)}\n"))  # which way in, before the requests
    if single is not _END:
        row = derive(single, env)
        single = first = None  # the row keeps what delivery needs; let the full document go
        if options.get("dry_run"):
            _print_requests(sink, [row], config, True, stdout)
            return EXIT_OK
        ctx["deadline"] = started + timeout
        ctx["http"] = http_client(env)
        return _deliver_single(sink, config, ctx, spool, row, stderr)
    ctx["http"] = http_client(env, getattr(sink, "CONCURRENCY", 1) + 1)
    return _backfill(sink, config, ctx, spool, documents, options.get("dry_run"), stdout, stderr)


def _print_requests(sink, rows, config, live, stdout):
    """--dry-run: the requests delivery would send for `rows` (`live`: one run delivered as it happens, not a
    backfill's group, however small)."""
    plan = getattr(sink, "planned_requests", None)
    for req in plan(rows, config, live) if plan else sink.build_requests(rows, config):
        stdout.write(describe_request(req))


def _this_environment(sink, env):
    """For --help: the way in that the current environment resolves to (an API, an auth method), when the sink
    has more than one; never a secret, nothing sent."""
    if not hasattr(sink, "describe"):
        return ""
    try:
        what = sink.describe(sink.read_config(env))
    except SinkError as error:
        what = f"not configured yet ({error.message})"
    return redact(f"\nThis environment: {what}.\n")


class CheckReport:
    """--check's stdout, passed through line by line; it remembers the FAIL lines, so that a failed check ends,
    like every other failure, with its one-line reason on stderr."""

    def __init__(self, out):
        self.out = out
        self.failures = []

    def write(self, text):
        text = redact(text)  # the report quotes services, and some echo the credential they refused
        for line in text.splitlines():
            if line.startswith("FAIL"):
                self.failures.append(line[4:].strip())
            elif line.startswith("fix:") and self.failures:
                self.failures[-1] += f"; fix: {line[4:].strip()}"
        self.out.write(text)

    def reason(self):
        if not self.failures:
            return "--check failed: see the report on stdout"
        more = len(self.failures) - 1
        return self.failures[0] + (f" (and {more} more problem(s): see the report on stdout)" if more else "")


def _stdin():
    """The binary stdin; a closed one (`sink <&-`) reads as empty rather than crashing."""
    if sys.stdin is None:
        import io

        return io.BytesIO()
    return sys.stdin.buffer


def _chain(head, tail):
    yield from head
    yield from tail


def _on_stdin(documents):
    """(where, document) for each document of a stream on stdin."""
    for number_, document in enumerate(documents, 1):
        yield f"document {number_} on stdin", document


def _deliver_rows(sink, config, ctx, rows):
    """Per-row outcomes: None when delivered, else the SinkError (a failure of the whole call applies to all)."""
    try:
        outcomes = sink.deliver(rows, config, ctx)
    except SinkError as error:
        return [error] * len(rows)
    return list(outcomes)


def _deliver_single(sink, config, ctx, spool, row, stderr):
    import threading

    state = {}

    def work():
        ctx["live"] = True
        state["live"] = _deliver_rows(sink, config, ctx, [row])[0]
        ctx["live"] = False  # what follows is a replay of older runs, however few
        if state["live"] is None and spool["dir"] and spool_count(spool["dir"], spool["keys"]):
            _replay(sink, config, ctx, spool, None, until=ctx["deadline"] - 1.0)

    def guarded():
        try:
            work()
        except BaseException as error:  # noqa: BLE001 - handed to the main thread, which reports it
            state.setdefault("live", error)

    # The hard stop: whatever the server does (trickles header bytes, hangs in DNS), peepshow gets control back
    # by the deadline. The worker is a daemon thread and is abandoned at exit; an unfinished replay leaves its
    # claimed spool files, which the next run takes back.
    worker = threading.Thread(target=guarded, name="deliver", daemon=True)
    worker.start()
    worker.join(max(0.0, ctx["deadline"] - time.monotonic()) + 0.25)
    outcome = state.get("live", "timeout")
    if outcome == "timeout":
        outcome = remote_error(
            f"gave up after {ctx['timeout']:g}s without an answer from the destination (PEEPSHOW_SINK_TIMEOUT)", True
        )
    if outcome is None:
        if spool["dir"]:
            try:
                record_delivered(spool["dir"], spool["keys"][0], [row["run_id"]])
            except OSError:
                pass  # the record only spares a later backfill a duplicate; the run itself is delivered
        return EXIT_OK
    if not isinstance(outcome, SinkError):
        raise outcome
    message = outcome.message
    if not outcome.run:
        message += _keep(spool, row, sink.NAME, outcome)
    _say(stderr, sink.NAME, message)
    return outcome.code


def _keep(spool, row, name, failure):
    """Spool a run the destination did not take; the text to append to the failure message."""
    if not spool["dir"]:
        return " (not kept: PEEPSHOW_SINK_SPOOL=off)"
    try:
        spool_put(spool["dir"], spool["keys"][0], row, spool["label"])
    except OSError as error:
        return f" (and the run could not be kept in {spool['dir']}: {error.strerror or error})"
    when = "" if failure.transient else "once that is fixed, "
    return f" (the run was kept in {spool['dir']}: {when}`{name} --flush` or the next successful delivery replays it)"


def _replay(sink, config, ctx, spool, stderr, until=None):
    """Deliver this destination's spooled runs, a group at a time, until `until` (monotonic) or the spool is empty.

    Returns (delivered, rejected, failure). `failure` is the first failure that was not a run's own: the
    destination's (its runs would all meet it) or a passing one; the replay stops there and every run not
    delivered stays in the spool. A run the service refuses is set aside as `*.rejected`, and said on `stderr`
    (a live run's replay passes None: on success the sink stays silent, --verbose tells).
    """
    delivered = rejected = 0
    done = delivered_runs(spool["dir"], spool["keys"])

    def set_aside(path, reason):
        nonlocal rejected
        spool_release(path, "rejected")
        rejected += 1
        if stderr:
            _say(stderr, sink.NAME, f"spooled run {reason}")
        else:
            log(ctx, f"spooled run {reason}")

    while until is None or time.monotonic() < until:
        claimed = spool_claim(spool["dir"], spool["keys"], limit=getattr(sink, "REPLAY_GROUP", 100))
        if not claimed:
            break
        rows, paths = [], []
        for path, payload in claimed:
            try:
                row = derive(payload, ctx["env"])
            except SinkError as error:
                set_aside(path, f"{os.path.basename(path)} is unusable and was set aside: {error.message}")
                continue
            if row["run_id"] in done:  # a backfill delivered it meanwhile, under its manifest's created_at
                spool_release(path, "delivered")
                continue
            rows.append(row)
            paths.append(path)
        failure, good = None, []
        for path, row, outcome in zip(paths, rows, _deliver_rows(sink, config, ctx, rows) if rows else []):
            if outcome is None:
                good.append(row["run_id"])
                spool_release(path, "delivered")
            elif outcome.run:
                set_aside(path, f"{row['run_id']} rejected: {outcome.message}")
            else:
                failure = failure or outcome
                spool_release(path, "kept")
        record_delivered(spool["dir"], spool["keys"][0], good)
        delivered += len(good)
        log(ctx, f"replayed {len(good)} spooled run(s)")
        if failure:
            return delivered, rejected, failure
    return delivered, rejected, None


def _flush(sink, config, ctx, spool, stdout, stderr, retry_rejected):
    if not spool["dir"]:
        raise usage_error("PEEPSHOW_SINK_SPOOL=off: there is no spool to flush")
    directory, keys = spool["dir"], spool["keys"]
    requeued = spool_requeue_rejected(directory, keys) if retry_rejected else 0
    delivered, rejected, failure = _replay(sink, config, ctx, spool, stderr)
    left = spool_count(directory, keys)
    line = f"{sink.NAME}: delivered {delivered} spooled run(s) to {spool['label']}; {left} left"
    if requeued:
        line += f" ({requeued} rejected run(s) were queued again)"
    if rejected:
        line += f"; {rejected} rejected by this flush"
    set_aside = spool_count(directory, keys, ".rejected")
    if set_aside:
        line += (
            f"; {set_aside} rejected run(s) kept as *.rejected in {directory} "
            f"(`{sink.NAME} --flush --retry-rejected` queues them again once the cause is fixed)"
        )
    elsewhere = spool_count(directory) - left
    if elsewhere:
        line += f"; {elsewhere} more kept for other destinations (flushed when the sink runs with their settings)"
    stdout.write(redact(line) + "\n")
    if failure:
        raise SinkError(failure.code, f"{failure.message} ({left} run(s) still in the spool for `{sink.NAME} --flush`)")
    if left:
        raise remote_error(f"{left} spooled run(s) still undelivered (another --flush may be replaying them)", True)
    if rejected:
        raise remote_error(f"this flush rejected {rejected} run(s), each named above; they are kept in {directory}")
    return EXIT_OK


def _manifest_documents(options, stdin):
    """(where, document) for the runs named on the command line (manifest.json files, run directories, `-`) and
    in peepshow's run index; a document that cannot be read is a SinkError in its place."""
    for path in options["paths"]:
        if path == "-":
            yield from _on_stdin(iter_documents(stdin or _stdin()))
        else:
            yield _load_manifest(path)
    if options["from_index"]:
        try:
            index = open(options["from_index"], "rb")  # noqa: SIM115 - streamed line by line below
        except OSError as error:
            raise usage_error(f"cannot read the run index {options['from_index']}: {error.strerror}") from None
        with index:
            for number_, line in enumerate(index, 1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                    directory = entry.get("outputDir") if isinstance(entry, dict) else None
                except ValueError:
                    directory = None
                if not isinstance(directory, str) or not directory:
                    where = f"{options['from_index']} line {number_}"
                    yield where, SinkError(EXIT_PAYLOAD, f"{where}: no outputDir")
                    continue
                yield _load_manifest(directory)


def _load_manifest(path):
    if os.path.isdir(path):
        path = os.path.join(path, "manifest.json")
    try:
        with open(path, "rb") as handle:
            return path, json.loads(handle.read().decode("utf-8"))
    except OSError as error:
        return path, SinkError(EXIT_PAYLOAD, f"{path}: {error.strerror or error}")
    except ValueError as error:
        return path, SinkError(EXIT_PAYLOAD, f"{path}: not a peepshow manifest ({error})")


def _backfill(sink, config, ctx, spool, documents, dry_run, stdout, stderr):
    """Many runs in one process: grouped, batched by the sink, each request bounded by PEEPSHOW_SINK_TIMEOUT.

    The first failure that is not a run's own (the destination's, or one that outlasted the retries) ends the
    sending: that run, and every run read after it, goes to the spool for `--flush`, with one line that says what
    is wrong. A run the service refuses is reported on its own line and the backfill goes on.
    """
    done = set() if dry_run or not spool["dir"] else delivered_runs(spool["dir"], spool["keys"])
    counts = {"delivered": 0, "skipped": 0, "rejected": 0, "kept": 0, "not kept": 0, "malformed": 0}
    progress = hasattr(stderr, "isatty") and stderr.isatty()
    stopped = None  # the failure that ended the sending

    def set_aside(rows):
        for row in rows:
            try:
                if not spool["dir"]:
                    raise OSError("PEEPSHOW_SINK_SPOOL=off")
                spool_put(spool["dir"], spool["keys"][0], row, spool["label"])
                counts["kept"] += 1
            except OSError:
                counts["not kept"] += 1

    def settle(group):
        nonlocal stopped
        if not group:
            return
        if dry_run:
            _print_requests(sink, group, config, False, stdout)
            return
        if stopped:
            set_aside(group)
            return
        good, undelivered = [], []
        for row, outcome in zip(group, _deliver_rows(sink, config, ctx, group)):
            if outcome is None:
                good.append(row["run_id"])
            elif outcome.run:
                counts["rejected"] += 1
                _say(stderr, sink.NAME, f"run {row['run_id']} rejected: {outcome.message}")
            else:
                stopped = stopped or outcome
                undelivered.append(row)
        set_aside(undelivered)
        counts["delivered"] += len(good)
        if spool["dir"] and good:
            record_delivered(spool["dir"], spool["keys"][0], good)
        if progress:
            stderr.write(f"\r{sink.NAME}: {counts['delivered']} delivered so far\x1b[K")
            stderr.flush()

    group, size = [], 0
    try:
        for where, document in documents:
            try:
                if isinstance(document, SinkError):
                    raise document
                row = derive(document, ctx["env"], source=where)
            except SinkError as error:
                counts["malformed"] += 1
                _say(stderr, sink.NAME, error.message)
                continue
            if row["run_id"] in done:
                counts["skipped"] += 1
                continue
            group.append(row)
            size += len(row["transcript"] or "") + len(row["tags"]) + 1024
            if len(group) >= GROUP_RUNS or size >= GROUP_BYTES:
                settle(group)
                group, size = [], 0
    except SinkError as error:  # malformed input stops the reading, not the delivery of what was read
        counts["malformed"] += 1
        _say(stderr, sink.NAME, error.message)
    settle(group)
    if dry_run:
        return EXIT_OK if not counts["malformed"] else EXIT_PAYLOAD
    if counts["delivered"] and not stopped and spool["dir"] and spool_count(spool["dir"], spool["keys"]):
        replayed, rejected, stopped = _replay(sink, config, ctx, spool, stderr)
        counts["delivered"] += replayed
        counts["rejected"] += rejected
    if progress:
        stderr.write("\r\x1b[K")
    summary = ", ".join(f"{count} {what}" for what, count in counts.items() if count or what == "delivered")
    _say(stderr, sink.NAME, summary + (" (already delivered)" if counts["skipped"] else ""))
    if stopped:
        if counts["kept"]:
            where = f"{counts['kept']} run(s) kept in {spool['dir']}: `{sink.NAME} --flush` delivers them"
            where = f"{where} once that is fixed" if not stopped.transient else where
        else:
            where = "nothing more was sent"
        if counts["not kept"]:
            where += f"; {counts['not kept']} run(s) not kept (PEEPSHOW_SINK_SPOOL=off or the spool unwritable)"
        _say(stderr, sink.NAME, f"stopped: {stopped.message} ({where})")
        return stopped.code
    if counts["rejected"]:
        return EXIT_REMOTE
    return EXIT_PAYLOAD if counts["malformed"] else EXIT_OK
