"""The one helper every peepshow sink shares: documents on stdin, the values of a run, configuration, HTTP, the
spool and its claims, the record of delivered runs, whose fault a failure is, and the command line.

A sink script defines
  NAME, HELP                        its name, and the top of its --help
  read_config(env)                  its configuration, resolved once into its own declared type (or a usage error)
  destination(config)               (label, identity) of where its runs land: what the spool and the record key by
  build_requests(runs, config)      the Requests that deliver `runs`, as --dry-run prints them
  deliver(runs, config, ctx)        one outcome per run: None when delivered, else a SinkError saying whose fault
and may define
  check(config, ctx, out)           --check: ok / FAIL / n/a lines written to `out`; returns the exit code
  print_schema(config)              --print-schema, with schema_config(env): the names it needs, read without a host
                                    or credential
  describe(config)                  which way in the configuration chose (an API, an auth method), for the operator
  planned_requests(runs, config, live)   what --dry-run prints when the requests depend on whether the runs are
                                    one live run, or on the clock
  legacy_destinations(config)       the identities older versions gave the same destination: their runs replay too
  unbound_destination(config)       what a run kept for a refused configuration stays tied to (event-track: its
                                    provider); nothing by default
  Session(config)                   what it keeps from one delivery to the next within an invocation (ctx.session)
then its main() is `return peepshow_sink.main(sys.modules[__name__])`. Exit codes (shared by every peepshow sink):
0 delivered, 2 usage or configuration, 3 missing dependency, 4 malformed stdin, 5 remote or network failure, 130 and
143 interrupted (the run kept).

Start-up matters (peepshow runs sinks one after another on every run): import only what a single run needs and
import the rest where it is used.
"""

import json
import os
import sys
import time

_version = None  # build.sh stamps pyproject.toml's version here in each zipapp's copy of this file

# -- exit codes and failures -------------------------------------------------------------------------------------------


EXIT_OK, EXIT_USAGE, EXIT_DEPENDENCY, EXIT_PAYLOAD, EXIT_REMOTE = 0, 2, 3, 4, 5


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


# Whose fault a failure is decides what becomes of the run (docs/reliability.md, "Whose fault").
TRANSIENT = "transient"  # passing (the network, a 5xx, a 429, the deadline): kept for this destination
DESTINATION = "destination"  # the destination refused the configuration (URL, credentials, grants, a missing
#                              keyspace, table or warehouse): kept for whichever configuration works next
REFUSED = "refused"  # the service refused what the request carried (a value, an event, its size)


class SinkError(Exception):
    """A one-line, user-facing failure.

    code     the exit code
    message  the one line shown (redacted when printed)
    fault    TRANSIENT, DESTINATION or REFUSED: whose fault it is, and so what becomes of the runs it concerns
    pinned   for REFUSED: the service named this run (a row, an event index); an unpinned refusal names only the
             request, which may have carried several runs, and is narrowed down before it is judged
    reason   the service's own error code (or "HTTP <status>"): two refusals with the same reason are alike
    kind     what a sink's own code branches on, when more than whose fault it is: CONFLICT (a concurrent writer
             won: the idempotent write may be sent again at once), MISSING_TABLE (create it, then write again)
    """

    def __init__(self, code, message, fault=DESTINATION, pinned=False, reason=None, kind=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.fault = fault
        self.pinned = pinned
        self.reason = reason
        self.kind = kind

    @property
    def transient(self):
        """A replay of the same request can succeed as it is."""
        return self.fault == TRANSIENT

    @property
    def refused(self):
        """The service refused what the request carried: the other requests of a delivery still go out."""
        return self.fault == REFUSED


CONFLICT, MISSING_TABLE = "conflict", "missing table"


def usage_error(message):
    return SinkError(EXIT_USAGE, message)


def remote_error(message, transient=False, refused=False, pinned=None, reason=None, kind=None):
    """A failure of the remote side: passing (`transient`), a refusal of what was sent (`refused`; `pinned` when
    the service named the run, which is the default), else the destination's."""
    fault = TRANSIENT if transient else REFUSED if refused else DESTINATION
    return SinkError(EXIT_REMOTE, message, fault, refused if pinned is None else pinned, reason, kind)


# -- secrets -----------------------------------------------------------------------------------------------------------


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


# -- configuration -----------------------------------------------------------------------------------------------------


DEFAULT_TIMEOUT = 30.0


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


# -- documents on stdin ------------------------------------------------------------------------------------------------


MAX_DOCUMENT_BYTES = 256 * 1024 * 1024
READ_CHUNK = 1024 * 1024


def _read_more(stream, utf8, pending):
    """(`pending` plus the next chunk of the stream, decoded; whether the stream has ended)."""
    chunk = stream.read(READ_CHUNK)
    try:
        return pending + utf8.decode(chunk or b"", final=not chunk), not chunk
    except UnicodeDecodeError as error:
        raise SinkError(
            EXIT_PAYLOAD, f"stdin is not valid UTF-8 ({error.reason}): peepshow writes UTF-8 JSON"
        ) from None


def iter_documents(stream):
    """Yield each JSON value of a byte stream holding one or more documents (concatenated or one per line), and
    in place of one that is not JSON a SinkError(4) naming it: the stream goes on at the next line that starts a
    document (NDJSON resumes at the next line). Raises SinkError(4) for bad UTF-8 or an empty stream.

    Streams: holds the current document plus one read chunk, so memory stays flat over any number of runs.
    """
    import codecs
    import re

    decoder = json.JSONDecoder()
    utf8 = codecs.getincrementaldecoder("utf-8")()
    blank = re.compile(r"[ \t\r\n\ufeff]*")
    buffer, offset, eof, count = "", 0, False, 0
    line, counted = 1, 0  # the line number at buffer[counted]
    while True:
        offset = blank.match(buffer, offset).end()
        if offset == len(buffer):
            if eof:
                break
            line += buffer.count("\n", counted)
            (buffer, eof), offset, counted = _read_more(stream, utf8, ""), 0, 0
            continue
        line += buffer.count("\n", counted, offset)
        counted = offset
        try:
            value, offset = decoder.raw_decode(buffer, offset)
        except json.JSONDecodeError as error:
            # A document cannot hold a line that starts with "{" (JSON text puts nested objects after a key or
            # an indent): one that does means this document broke off and the next one began there.
            resume = buffer.find("\n{", offset)
            if resume < 0 and not eof:
                (buffer, eof), offset, counted = _read_more(stream, utf8, buffer[offset:]), 0, 0
                if len(buffer) > MAX_DOCUMENT_BYTES:
                    raise SinkError(EXIT_PAYLOAD, "stdin: one document is larger than 256 MiB") from None
                continue
            count += 1
            alone = count == 1 and resume < 0
            where = "stdin" if alone else f"document {count} on stdin (line {line})"
            what = "truncated" if error.pos >= len(buffer) - 1 else "not valid JSON"
            yield SinkError(
                EXIT_PAYLOAD,
                f"{where} is {what} ({error.msg} at character {error.pos - offset + 1})"
                + (": pipe the output of `peepshow <video> --emit json`" if alone else ": skipped"),
            )
            if resume < 0:
                break
            offset = resume + 1
            continue
        count += 1
        yield value
    if count == 0:
        raise SinkError(EXIT_PAYLOAD, "stdin is empty: pipe the output of `peepshow <video> --emit json` into the sink")


# -- a run: the values every sink writes -------------------------------------------------------------------------------


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


# The instants every destination can carry: RFC 3339 needs four digits of year, and Delta, Cassandra and the
# analytics APIs refuse or misread anything else. [1000-01-01T00:00:00Z, 10000-01-01T00:00:00Z) in epoch seconds.
EARLIEST_CREATED, LATEST_CREATED = -30610224000.0, 253402300800.0


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


def iso_millis(epoch_seconds):
    """RFC 3339 in UTC with milliseconds and a four-digit year (strftime's %Y drops leading zeros on some C
    libraries: 0999 would come out as 999)."""
    import datetime

    moment = datetime.datetime.fromtimestamp(epoch_seconds, datetime.timezone.utc)
    return f"{moment.year:04d}-" + moment.strftime("%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def table_duration(seconds):
    """What tables store for `duration`: the number as a double, 0 when unknown or not a finite double
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


def utf8_length(value):
    return len(value.encode("utf-8"))


def cut_text(value, limit, measure=None):
    """`value` cut to at most `limit` by `measure` (default UTF-8 bytes, never inside a character)."""
    if measure is None or measure is utf8_length:
        return cut_utf8(value, limit)
    return value[:limit]


def fit_json(values, limit, measure=None):
    """Compact JSON of the object `values` at most `limit` long (UTF-8 bytes; `measure` counts otherwise): the
    longest string values are shortened first (ending in "…"), entries dropped only when no string is left to
    shorten. The JSON itself is never cut, so whatever stores the text can still parse it."""
    measure = measure or utf8_length
    encoded = json.dumps(values, ensure_ascii=False, separators=(",", ":"))
    if len(encoded) * 4 <= limit or measure(encoded) <= limit:  # what nearly every run's tags take: no search
        return encoded
    import heapq

    values = dict(values)

    def size(key):
        return measure(json.dumps({key: values[key]}, ensure_ascii=False, separators=(",", ":"))) - 2

    sizes = {key: size(key) for key in values}
    total = 2 + sum(sizes.values()) + max(0, len(values) - 1)
    longest = [(-measure(value), key) for key, value in values.items() if isinstance(value, str) and value]
    heapq.heapify(longest)
    while total > limit and values:
        if longest:
            _, key = heapq.heappop(longest)
            value = values[key]
            keep = measure(value) - (total - limit) - measure("…")
            values[key] = cut_text(value, keep, measure) + "…" if keep > 0 else ""
        else:  # only non-strings (numbers, objects) left: drop the largest entry
            key = max(sizes, key=sizes.get)
            del values[key]
            total -= sizes.pop(key) + (1 if values else 0)
            continue
        before, sizes[key] = sizes[key], size(key)
        total += sizes[key] - before
    return json.dumps(values, ensure_ascii=False, separators=(",", ":"))


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


def created_at_of(value, source):
    """Epoch seconds of a payload's createdAt; None when it is missing or no date-time (the sink's own time is
    used then). A date-time outside years 1000-9999 in UTC cannot be carried: the document is unusable."""
    import re

    seconds = parse_iso(value)
    year = re.match(r"\s*(\d{4})-", value) if isinstance(value, str) else None
    too_early = year is not None and int(year.group(1)) < 1000  # year 0000 is no date for datetime either
    if too_early or (seconds is not None and not EARLIEST_CREATED <= seconds < LATEST_CREATED):
        raise SinkError(
            EXIT_PAYLOAD,
            f"{source}: createdAt {value.strip()!r} is outside the years 1000-9999 (UTC) that every destination "
            "can store: fix the manifest's createdAt",
        )
    return seconds


def digest(algorithm, data):
    """SHA-1 (UUIDv5 ids, not secrets) or SHA-256 of `data`.

    hashlib loads OpenSSL's libcrypto on import (~3 ms, a few percent of a whole run); CPython's own built-in
    modules compute the same digests without it. hashlib stays the fallback for builds without them. The
    constructor found is kept: looking for a module that is not there searches the whole path, every time.
    """
    constructor = _DIGESTS.get(algorithm)
    if constructor is None:
        for module in {"sha1": ("_sha1",), "sha256": ("_sha2", "_sha256")}[algorithm]:
            try:
                constructor = getattr(__import__(module), algorithm)
                break
            except (ImportError, AttributeError):
                continue
        else:
            import hashlib

            constructor = getattr(hashlib, algorithm)
        _DIGESTS[algorithm] = constructor
    return constructor(data).digest()


_DIGESTS = {}
# What identifies a run: what its extraction produced. A manifest.json adds bookkeeping (runId, createdAt, input,
# host, ...) to the document `--emit json` printed for the same run, so only the fields both carry count, and a
# live run, a re-piped copy of it and its manifest in a later backfill are one run. A run folder reused by another
# extraction holds other frames, probes or audio: another run.
IDENTITY_FIELDS = ("outputDir", "strategy", "frames", "video", "extraction", "audio")


def run_identity(payload):
    """32 hex digits naming the run (IDENTITY_FIELDS; the manifest's runId only when there is no outputDir)."""
    material = {key: payload.get(key) for key in IDENTITY_FIELDS}
    if not text(payload.get("outputDir")):
        material["runId"] = payload.get("runId")
    audio = material["audio"]
    spoken = audio.get("transcript") if isinstance(audio, dict) else None
    if isinstance(spoken, dict):
        # A transcript can be megabytes: its text counts by its own digest (no second copy of it in the JSON below),
        # and its segments, the same words again, not at all.
        words = spoken.get("text")
        if isinstance(words, str):
            words = digest("sha256", words.encode("utf-8", "surrogatepass")).hex()
        spoken = {key: value for key, value in spoken.items() if key not in ("text", "segments")}
        material["audio"] = dict(audio, transcript=dict(spoken, text=words))
    encoded = json.dumps(material, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return digest("sha256", encoded.encode("utf-8", "surrogatepass"))[:16].hex()


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


TRANSCRIPT_LIMIT = 1024 * 1024
# Every other text a table stores is bounded too, so that no run is refused for its size: the tag bag like the
# transcript (as JSON that stays whole), the title, strategy and thumbnail URL well below any row limit.
TAGS_LIMIT = 1024 * 1024
COLUMN_LIMIT = 64 * 1024


class Fields:
    """A value with declared fields (its __slots__), made with the fields named: `Run(run_id=..., title=...)`. A
    field left out is None (what one kind alone has, the others leave out); a field not declared is an error."""

    __slots__ = ()

    def __init__(self, **fields):
        unknown = set(fields) - set(self.__slots__)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {', '.join(sorted(unknown))}")
        for name in self.__slots__:
            setattr(self, name, fields.get(name))


class Run(Fields):
    """One run as the sinks write it, every value computed once (derive).

    run_id         the output folder's name, else the manifest's runId: what a table keys the row by
    title          the title tag, else the show tag, the input's file name, the run_id (at most 64 KiB)
    frames         how many frames the run extracted
    duration       the video's length in seconds, or None when unknown
    transcript     the transcript's text cut to 1 MiB of UTF-8, or None
    thumbnail_url  PEEPSHOW_FRAME_BASE_URL + "/" + the first frame's file name, or None
    strategy       scene, fps (whatever the run says), or None
    tags           the tag bag as compact JSON text that always parses, at most 1 MiB
    created_at     RFC 3339 in UTC with milliseconds: the payload's createdAt, else when the sink first saw the run
    identity       32 hex digits naming the run across invocations (run_identity)
    payload        the payload as the spool keeps it (the transcript cut, its segments dropped)
    """

    __slots__ = (
        "run_id",
        "title",
        "frames",
        "duration",
        "transcript",
        "thumbnail_url",
        "strategy",
        "tags",
        "created_at",
        "identity",
        "payload",
    )


def derive(payload, env, now=None, source="stdin", identity=None):
    """The values every sink writes, computed once per run. Raises SinkError(4) for an unusable run,
    naming `source` (where the document came from).

    `created_at` comes from the payload's `createdAt` (manifests, and runs replayed from the spool, carry it),
    else from `now`: the sink stores it with a spooled run so a replay is recognised as the same delivery.
    `identity` names the run across invocations (run_identity); a spooled run passes the one it was kept under.
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
    created = created_at_of(payload.get("createdAt"), source)
    transcript = text(field(payload, "audio", "transcript", "text"))
    if transcript:
        transcript = cut_utf8(transcript, TRANSCRIPT_LIMIT)
    identity = identity or run_identity(payload)
    payload = _without_bulk(payload, transcript)
    title = text(tags.get("title")) or text(tags.get("show")) or text(field(payload, "input", "filename")) or run_id
    strategy = text(payload.get("strategy")) or text(field(payload, "extraction", "strategy"))
    thumbnail = thumbnail_url(payload, env)
    return Run(
        run_id=run_id,
        title=cut_utf8(title, COLUMN_LIMIT),
        frames=frame_count(payload),
        duration=number(field(payload, "video", "durationSeconds")),
        transcript=transcript,
        thumbnail_url=thumbnail if thumbnail is None or len(thumbnail) <= COLUMN_LIMIT else None,
        strategy=strategy and cut_utf8(strategy, COLUMN_LIMIT),
        tags=fit_json(tags, TAGS_LIMIT),
        created_at=iso_millis(created if created is not None else (now if now is not None else time.time())),
        identity=identity,
        payload=payload,
    )


# -- HTTP --------------------------------------------------------------------------------------------------------------


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


# Connections kept per host: more than any sink has requests in flight at once (cassandra's backfills send 8).
POOL_SIZE = 10


class HttpClient:
    """The invocation's connections: `direct` (a urllib3 PoolManager), `proxies` (scheme -> ProxyManager, from
    HTTPS_PROXY/HTTP_PROXY), `no_proxy` (NO_PROXY's value) and `urllib3`, the module itself."""

    __slots__ = ("direct", "proxies", "no_proxy", "urllib3")

    def __init__(self, direct, proxies, no_proxy, urllib3):
        self.direct, self.proxies, self.no_proxy, self.urllib3 = direct, proxies, no_proxy, urllib3


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


def _pool_for(client, url):
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    proxy = client.proxies.get(parts.scheme)
    if proxy is None or _bypass_proxy(parts.hostname or "", parts.port, client.no_proxy):
        return client.direct
    return proxy


def http_client(env):
    """One urllib3 pool manager for the invocation, through HTTPS_PROXY/HTTP_PROXY unless NO_PROXY says not."""
    urllib3 = load_urllib3()
    options = {"maxsize": POOL_SIZE, "retries": False, "block": False}
    ca_file = env_value(env, "SSL_CERT_FILE")
    if ca_file:
        options["ca_certs"] = ca_file
    proxies, no_proxy = {}, None
    for scheme in ("https", "http"):
        proxy = env_value(env, f"{scheme.upper()}_PROXY") or env_value(env, f"{scheme}_proxy")
        if proxy:
            proxies[scheme] = _proxy_manager(urllib3, proxy, f"{scheme.upper()}_PROXY", options)
            no_proxy = env_value(env, "NO_PROXY") or env_value(env, "no_proxy") or ""
    return HttpClient(urllib3.PoolManager(**options), proxies, no_proxy, urllib3)


class Response:
    """A complete answer: `status`, `headers`, `body` (bytes), and `throttled`, the seconds `send` spent waiting
    out 429s before this answer (a message can then say how long the service held the request back)."""

    __slots__ = ("status", "headers", "body", "throttled")

    def __init__(self, status, headers, body, throttled=0.0):
        self.status, self.headers, self.body, self.throttled = status, headers, body, throttled

    def json(self):
        """The body as a JSON value, or None when it is not JSON (HTML error pages, proxies, truncation)."""
        try:
            return json.loads(self.body.decode("utf-8"))
        except ValueError:
            return None

    def text(self, limit=300):
        return " ".join(self.body.decode("utf-8", "replace").split())[:limit]


def to_json(value):
    """Compact UTF-8 JSON as every request body here is written: no NaN or Infinity (no service reads them)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


class Request:
    """One HTTP request as plain data: what builders return, --dry-run prints and `send` sends.

    method, url  as sent
    headers      a dict of header name -> value
    body         bytes, or None
    rows         the positions, among the runs a delivery was given, of the runs this request carries (empty for a
                 request that carries none: a token, a poll, a CREATE TABLE)
    rebuild      None, or a function of an attempt's deadline (a time.monotonic() value) returning the body to send
                 on that attempt, for a field that must be fresh on every attempt (Segment's sentAt, Databricks'
                 wait_timeout); `body` is what --dry-run shows
    """

    __slots__ = ("method", "url", "headers", "body", "rows", "rebuild")

    def __init__(self, method, url, headers=None, body=None, rows=(), rebuild=None):
        self.method, self.url, self.headers = method, url, dict(headers or {})
        self.body = body.encode("utf-8") if isinstance(body, str) else body
        self.rows, self.rebuild = list(rows), rebuild

    def replace(self, **changes):
        """A copy with some fields changed (`headers` replaces the whole dict)."""
        fields = {name: getattr(self, name) for name in self.__slots__}
        fields.update(changes)
        return Request(**fields)


def request(method, url, headers=None, body=None, rows=(), rebuild=None):
    return Request(method, url, headers, body, rows, rebuild)


def json_request(method, url, payload, headers=None, rows=(), rebuild=None):
    return Request(
        method, url, {"Content-Type": "application/json", **(headers or {})}, to_json(payload), rows, rebuild
    )


def describe_request(req):
    """The request as --dry-run shows it: exact bytes, credentials redacted."""
    lines = [f"{req.method} {req.url}"]
    lines += [f"{name}: {value}" for name, value in req.headers.items()]
    body = req.body.decode("utf-8") if req.body else ""
    return redact("\n".join(lines) + ("\n\n" + body if body else "") + "\n")


class Invocation:
    """What one invocation of a sink knows beyond its configuration: passed to every delivery and request.

    name           the sink's name, for messages and the User-Agent
    env            the environment the configuration was read from
    timeout        PEEPSHOW_SINK_TIMEOUT, in seconds
    verbose        --verbose: narrate retries and replays on stderr
    session        what the sink keeps from one delivery to the next in this invocation (held tokens, rate-limit
                   paces, tables created): its own Session(config), or None for a sink that keeps nothing
    http           the HttpClient, once the invocation sends anything
    deadline       when one run is delivered as it happens, its deadline (a time.monotonic() value); else None, and
                   every request of a backfill or --flush gets `timeout` of its own
    live           True while that one run itself is being delivered (not a backfill, --flush, nor the replay that
                   follows a live run): a sink may take the single-run API then
    accepted       whether the destination took any run in this invocation: what makes a refusal the run's own
    refused_alike  the refusal a whole request met in every part, once one did: later requests refused alike are
                   not narrowed down again
    on_interrupt   what the delivery in flight registered to undo if a signal comes (cancel a running statement)
    """

    __slots__ = (
        "name",
        "env",
        "timeout",
        "verbose",
        "session",
        "http",
        "deadline",
        "live",
        "accepted",
        "refused_alike",
        "on_interrupt",
    )

    def __init__(self, name, env, timeout, verbose=False, session=None):
        self.name, self.env, self.timeout, self.verbose, self.session = name, env, timeout, verbose, session
        self.http, self.deadline, self.refused_alike = None, None, None
        self.live = self.accepted = False
        self.on_interrupt = []


def request_deadline(ctx):
    """The run's deadline (one run per invocation) or a fresh one per request (backfill, --flush)."""
    return ctx.deadline or time.monotonic() + ctx.timeout


def log(ctx, message):
    if ctx.verbose:
        print(redact(f"{ctx.name}: {message}"), file=sys.stderr, flush=True)


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


MAX_ATTEMPTS = 6  # per request, not counting the answers that were 429s: those are waited out while time allows
MAX_BODY = 64 * 1024 * 1024


def _attempt(urllib3, pool, req, left, deadline):
    timeout = urllib3.Timeout(connect=min(10.0, left), read=left)
    raw = pool.urlopen(
        req.method,
        req.url,
        body=req.rebuild(deadline) if req.rebuild else req.body,
        headers=req.headers,
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
                raise urllib3.exceptions.ReadTimeoutError(None, req.url, "response too slow or too large")
        return Response(raw.status, raw.headers, b"".join(chunks))
    except BaseException:
        raw.close()  # half-read: the connection must not go back to the pool for the next request
        raise
    finally:
        raw.release_conn()


def send(ctx, req, retry_statuses, deadline=None, what=None, variable=None):
    """Send `req`, retrying connection failures and the sink's `retry_statuses` (what its service answers when
    the same request may succeed later) until it succeeds or time runs out.

    Returns the last Response whatever its status (the sink's parse_response judges it). Raises a transient
    SinkError(5) when no response could be had, naming `what` (the service), the host and port, and `variable`
    (the setting that points there). Waits honour Retry-After (seconds or HTTP date) but never past the deadline;
    otherwise exponential backoff with full jitter. A 429 says "later", not "broken": it does not count against
    MAX_ATTEMPTS, and is waited out for as long as the deadline allows. urllib3's own Retry is not used for the
    loop because it cannot stop at an overall deadline; its Retry-After parser is.
    """
    import random

    urllib3 = ctx.http.urllib3
    if "User-Agent" not in req.headers:  # every request names the sink and its release
        req = req.replace(headers={"User-Agent": f"peepshow-sink-{ctx.name}/{version()}", **req.headers})
    deadline = deadline or request_deadline(ctx)
    where = f"{what} at {host_port(req.url)}" if what else host_port(req.url)
    fix = f": check {variable}" if variable else ""
    pool = _pool_for(ctx.http, req.url)
    attempt = failures = 0
    throttled_since = None
    while True:
        attempt += 1
        left = deadline - time.monotonic()
        if left <= 0.05:
            raise remote_error(f"no answer from {where} within {ctx.timeout:g}s (PEEPSHOW_SINK_TIMEOUT)", True)
        problem = None
        try:
            response = _attempt(urllib3, pool, req, left, deadline)
        except urllib3.exceptions.HTTPError as error:
            problem, retryable = _network_reason(urllib3, error, where, fix)
            if not retryable:
                raise remote_error(problem, transient=True) from None
            response = None
        if response is not None and throttled_since is not None:
            response.throttled = time.monotonic() - throttled_since
        if response is not None and response.status not in retry_statuses:
            return response
        if response is not None and response.status == 429:
            throttled_since = throttled_since or time.monotonic()
        else:
            failures += 1
        if response is not None:
            problem = f"{where} answered HTTP {response.status}"
            wait = _retry_after(urllib3, response)
        else:
            wait = None
        if wait is None:
            wait = random.uniform(0, min(8.0, 0.25 * 2 ** min(attempt, 8)))  # noqa: S311 - jitter, not a secret
        left = deadline - time.monotonic()
        if failures >= MAX_ATTEMPTS or wait >= left - 0.1:
            if response is not None:
                return response
            raise remote_error(problem, transient=True)
        log(ctx, f"{problem}; retrying in {wait:.1f}s (attempt {attempt + 1})")
        time.sleep(wait)


def redirect_error(response, what, variable):
    location = response.headers.get("Location", "elsewhere")
    return remote_error(
        f"{what} redirected (HTTP {response.status}) to {location}: set {variable} to the final URL "
        "(the sink never follows a redirect with credentials)"
    )


def throttled_error(what, response, detail=""):
    """The failure of a request the service still throttled (HTTP 429) when its deadline came: passing, saying for
    how long, so that nobody reads it as a timeout."""
    said = f": {detail}" if detail else ""
    return remote_error(
        f"{what} throttled the request (HTTP 429{said}) for {response.throttled:.0f}s, all the time "
        "PEEPSHOW_SINK_TIMEOUT left it",
        transient=True,
    )


def send_renewing(ctx, req, credential, attach, refused_statuses=(401,), **send_options):
    """Send `req` with the current credential; when the service refuses it (one of `refused_statuses`: an expired
    or revoked token), send it once more with a renewed one. `credential` has current(ctx) -> a value and
    renewed(ctx, refused_value) -> a new value, or None when there is none worth trying (none to be had, or the same
    one again); `attach(req, value)` is the request carrying it. Returns the last Response (send's options apply
    to each sending)."""
    used = credential.current(ctx)
    response = send(ctx, attach(req, used), **send_options)
    if response.status in refused_statuses:
        fresh = credential.renewed(ctx, used)
        if fresh is not None:
            what = send_options.get("what") or host_port(req.url)
            log(ctx, f"{what} answered HTTP {response.status} to the credential held: sending again with a new one")
            response = send(ctx, attach(req, fresh), **send_options)
    return response


# -- what every sink's delivery shares ---------------------------------------------------------------------------------


def chunked(sizes, most_items, most_bytes):
    """Lists of consecutive indices, each what one request may carry: at most `most_items` items and `most_bytes`
    of their `sizes` (an item larger than `most_bytes` alone gets a list of its own)."""
    chunk, total = [], 0
    for index, size in enumerate(sizes):
        if chunk and (len(chunk) >= most_items or total + size > most_bytes):
            yield chunk
            chunk, total = [], 0
        chunk.append(index)
        total += size
    if chunk:
        yield chunk


def deliver_each(requests, count, send_one, concurrency=1):
    """Per-run outcomes (None: delivered) of the `count` runs `requests` carry: `send_one(req)` returns one outcome
    per entry of req.rows, or raises a SinkError meaning all of them. After the first failure that is not a
    refusal (the destination's, or a passing one) no request not yet sent is sent, since every one would meet it
    too: their runs get that failure. With `concurrency` above 1, that many requests are in flight at once."""
    outcomes = [None] * count
    stopped = []

    def one(req):
        if stopped:
            results = [stopped[0]] * len(req.rows)
        else:
            try:
                results = send_one(req)
            except SinkError as error:
                results = [error] * len(req.rows)
        for index, outcome in zip(req.rows, results):
            outcomes[index] = outcome
            if outcome is not None and not outcome.refused and not stopped:
                stopped.append(outcome)

    if concurrency <= 1 or len(requests) <= 1:
        for req in requests:
            one(req)
        return outcomes
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(concurrency, len(requests))) as pool:
        list(pool.map(one, requests))
    return outcomes


class CreateOnce:
    """What a delivery creates when it finds it missing (a table), at most once per invocation: the first request
    that needs it creates it with `create(ctx, *args)`, concurrent requests wait for that, and its failure is every
    later asker's failure. `created` tells whether it was made (or found made)."""

    __slots__ = ("create", "tried", "created", "failure", "lock")

    def __init__(self, create):
        import threading

        self.create, self.tried, self.created, self.failure = create, False, False, None
        self.lock = threading.Lock()

    def ensure(self, ctx, *args):
        with self.lock:
            if not self.tried:
                self.tried = True
                try:
                    self.create(ctx, *args)
                    self.created = True
                except SinkError as error:
                    self.failure = error
            if self.failure is not None:
                raise self.failure


def column_problems(columns, found, missing, retyped, extra=None):
    """--check's verdict on a table's columns against the `columns` a sink writes ((name, type) pairs): a list of
    one-line problems, each with its fix, worded by the sink in its API's own terms. `found` maps each of the
    table's columns (by the name the sink writes it under) to what the API reports of it; `missing(name, kind)`
    words a column the table lacks, `retyped(name, kind, column)` what holds a written value otherwise, `extra(name,
    column)`, when given, a column the sink does not write. Each returns a problem, a list of them (a column can be
    both retyped and NOT NULL), or None when there is nothing to say."""

    def listed(problem):
        return problem if isinstance(problem, list) else [problem] if problem else []

    problems = []
    for name, kind in columns:
        column = found.get(name)
        problems += listed(missing(name, kind) if column is None else retyped(name, kind, column))
    written = dict(columns)
    if extra is not None:
        for name, column in found.items():
            if name not in written:
                problems += listed(extra(name, column))
    return problems


# -- the spool: runs waiting for a destination -------------------------------------------------------------------------
#
# <spool root>/<sink>/ holds one file per run that was not delivered:
#   <key>-<run>.json                   waiting. <key> names the destination the run is kept for (destination_key),
#                                      or the sink's unbound key: a run whose destination refused its configuration
#                                      goes to whichever configuration of the sink works next
#   <key>-<run>.json.claimed-<owner>   being delivered by the process that holds .owner-<owner>.lock
#   <key>-<run>.rejected               refused by the service; `--flush --retry-rejected` queues it again
#   <name>.unreadable                  a file that could not be read: set aside and named, never deleted
#   delivered-<key>.txt                the record of the runs delivered there (what a backfill skips)
# <run> is the run's identity (run_identity); 0.2.0 named runs by run_key, and kept them under keys that
# legacy_destinations still gives: those replay too.


# The variable that names the user's home: USERPROFILE on Windows, as Python's expanduser, the Databricks CLI and its
# SDKs read it there (a HOME that a Unix-like shell sets on Windows is that shell's), HOME everywhere else.
HOME_VARIABLE = "USERPROFILE" if os.name == "nt" else "HOME"
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
    home = env_value(env, HOME_VARIABLE)
    if home and (root == "~" or root[:2] in ("~" + os.sep, "~" + (os.altsep or os.sep))):
        root = home + root[1:]
    return os.path.join(os.path.abspath(os.path.expanduser(root)), name)


def destination_key(material):
    """A short, non-reversible name for a destination (its identity may include a token: never in a file name)."""
    return digest("sha256", "\x1f".join(material).encode("utf-8")).hex()[:16]


def run_key(row):
    """How 0.2.0 named a spooled run (its runs are still read; new ones are named by their identity)."""
    return destination_key((row.run_id, row.created_at))


class Spool:
    """One invocation's place in the spool.

    directory  the sink's spool directory; None when PEEPSHOW_SINK_SPOOL=off
    key        this destination's key: runs kept for a passing failure, and the record of delivered runs
    keys       every key whose runs this destination takes: `key`, older spellings of it, and `unbound`
    unbound    the key of runs whose destination refused the configuration (the next one that works takes them)
    label      the destination as messages name it
    owner      this process's claim lock (Owner), made at its first claim
    """

    __slots__ = ("directory", "key", "keys", "unbound", "label", "owner")

    def __init__(self, directory, key, older, unbound, label):
        self.directory, self.key, self.unbound, self.label = directory, key, unbound, label
        self.keys = tuple(dict.fromkeys((key, *older, unbound)))
        self.owner = None


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


def write_private(path, data, durable=True):
    """Write `data` to `path` atomically (temp file + rename), readable by its owner only. `durable` waits for
    the disk: without it the file survives the process (killed, crashed), not the machine."""
    directory = os.path.dirname(path)
    _private_dir(directory)
    temporary = os.path.join(directory, f".tmp-{os.getpid()}-{os.path.basename(path)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


# -- claims: a spooled run being delivered belongs to a live process ---------------------------------------------------
# A process claims a run by renaming its file to `.claimed-<owner>` while it holds an operating-system lock on
# `.owner-<owner>.lock`. The kernel drops the lock when the process ends, however it ends (killed, crashed, a
# container stopped), so a claim whose owner's lock is free is taken back by the next flush or delivery. No
# process id is ever probed: ids are reused (PID 1 in every container) and on Windows a probe by os.kill ends the
# process.


class Owner:
    """This process's claim lock: `token` (in claimed file names), the lock file's `path`, its open `descriptor`."""

    __slots__ = ("token", "path", "descriptor")

    def __init__(self, token, path, descriptor):
        self.token, self.path, self.descriptor = token, path, descriptor


def _try_lock(descriptor):
    """Lock an open file for this process without waiting; False when another process holds the lock."""
    try:
        if os.name == "nt":
            import msvcrt

            msvcrt.locking(descriptor, msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _unlock(descriptor):
    try:
        if os.name == "nt":
            import msvcrt

            os.lseek(descriptor, 0, os.SEEK_SET)
            msvcrt.locking(descriptor, msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(descriptor, fcntl.LOCK_UN)
    except OSError:
        pass


def claim_owner(spool):
    """This process's Owner, made (and locked) at its first claim."""
    if spool.owner is None:
        _private_dir(spool.directory)
        token = f"{os.getpid()}x{os.urandom(4).hex()}"  # unique even when a process id comes back
        path = os.path.join(spool.directory, f".owner-{token}.lock")
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        _try_lock(descriptor)
        spool.owner = Owner(token, path, descriptor)
    return spool.owner


def release_owner(spool):
    """At exit: drop the claim lock (what the kernel would do anyway) and its file."""
    owner, spool.owner = spool.owner, None
    if owner is not None:
        _unlock(owner.descriptor)
        os.close(owner.descriptor)
        _remove_quietly(owner.path)


def _remove_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _rename_quietly(source, target):
    try:
        os.replace(source, target)
        return True
    except OSError:
        return False


def _owner_alive(directory, token):
    """Whether the process that claimed runs as `token` still runs: its lock file is there and locked."""
    path = os.path.join(directory, f".owner-{token}.lock")
    try:
        descriptor = os.open(path, os.O_RDWR)
    except OSError:
        return False  # no lock file: its process is gone (0.2.0 named claims by process id and made none)
    try:
        if not _try_lock(descriptor):
            return True
        _unlock(descriptor)
    finally:
        os.close(descriptor)
    _remove_quietly(path)  # a dead owner's file: nobody will lock it again
    return False


def _spool_names(directory, keys=None):
    """The spool's file names (of this destination's `keys`, or all), sorted; no temporary or lock files."""
    prefixes = tuple(key + "-" for key in keys) if keys else ""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return sorted(name for name in names if name.startswith(prefixes) and name[0] != ".")


def _claimed_by(name):
    return name.rsplit(".claimed-", 1)[1] if ".claimed-" in name else None


def _entry(row, label):
    payload = dict(row.payload)
    payload["createdAt"] = row.created_at
    entry = {"destination": label, "identity": row.identity, "run": payload}
    return json.dumps(entry, ensure_ascii=False).encode("utf-8")


def spool_put(directory, key, row, label, durable=True, suffix=".json"):
    """Keep an undelivered run under `key` (`suffix` ".rejected": set aside at once). The stored payload carries
    created_at, and the entry the run's identity, so a replay reuses every derived id and is recognised as the
    same run."""
    path = os.path.join(directory, f"{key}-{row.identity}{suffix}")
    write_private(path, _entry(row, label), durable)
    return path


def spool_hold(spool, row):
    """Write a live run down before it is sent, already claimed by this process: a run the process does not
    live to settle (a signal, a kill) is taken back by the next flush. Returns the claimed path."""
    owner = claim_owner(spool)
    path = os.path.join(spool.directory, f"{spool.key}-{row.identity}.json.claimed-{owner.token}")
    write_private(path, _entry(row, spool.label), durable=False)  # the page cache outlives the process
    return path


def spool_claim_path(spool, path):
    """Claim one spooled file (waiting, or abandoned by a dead process); (claimed path, entry) or None."""
    owner = claim_owner(spool)
    target = f"{path.rsplit('.claimed-', 1)[0]}.claimed-{owner.token}"
    if not _rename_quietly(path, target):
        return None
    try:
        with open(target, encoding="utf-8") as handle:
            entry = json.load(handle)
        if not isinstance(entry, dict) or not isinstance(entry.get("run"), dict):
            raise ValueError("no run")
    except (OSError, ValueError, UnicodeDecodeError):
        _rename_quietly(target, target.rsplit(".claimed-", 1)[0] + ".unreadable")
        return target, None
    return target, entry


def spool_find(spool, identity):
    """A spooled copy of the run `identity` for this destination: ("waiting", path), ("busy", path) when a live
    process is delivering it, or None."""
    for name in _spool_names(spool.directory, spool.keys):
        if f"-{identity}.json" not in name:
            continue
        owner = _claimed_by(name)
        path = os.path.join(spool.directory, name)
        if owner is None and name.endswith(".json"):
            return "waiting", path
        if owner is not None:
            if _owner_alive(spool.directory, owner):
                return "busy", path
            return "waiting", path
    return None


class Claims:
    """The claimable runs of a flush or replay, listed once: a flush of 20,000 runs lists the spool once, not
    once per group. `busy` counts the runs live processes hold."""

    __slots__ = ("spool", "names", "busy")

    def __init__(self, spool):
        self.spool = spool
        self.names = []
        self.busy = 0
        alive = {}
        for name in _spool_names(spool.directory, spool.keys):
            owner = _claimed_by(name)
            if owner is None:
                if name.endswith(".json"):
                    self.names.append(name)
                continue
            if spool.owner is not None and owner == spool.owner.token:
                continue
            if owner not in alive:
                alive[owner] = _owner_alive(spool.directory, owner)
            if alive[owner]:
                self.busy += 1
            else:
                self.names.append(name)  # left by a process that died mid-delivery: taken back

    def take(self, limit):
        """Claim up to `limit` runs: [(claimed path, entry or None when unreadable)]."""
        claimed = []
        while self.names and len(claimed) < limit:
            name = self.names.pop(0)
            found = spool_claim_path(self.spool, os.path.join(self.spool.directory, name))
            if found is not None:
                claimed.append(found)
        return claimed


def spool_release(claimed_path, outcome, key=None):
    """Settle a claimed run: "delivered" removes it, "rejected" sets it aside, "kept" puts it back in the queue,
    under `key` when the failure changed whose it is (a refused configuration: unbound). False when the file could
    not be renamed (a kept run is then still claimed, and the next flush takes it back)."""
    original = claimed_path.rsplit(".claimed-", 1)[0]
    if outcome == "delivered":
        _remove_quietly(claimed_path)
        return True
    if key is not None:
        folder, name = os.path.split(original)
        original = os.path.join(folder, key + name[name.index("-") :])
    if outcome == "rejected":
        return _rename_quietly(claimed_path, original[: -len(".json")] + ".rejected")
    try:  # a live run was written without waiting for the disk: it is kept now, so make it durable first
        descriptor = os.open(claimed_path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    except OSError:
        pass
    return _rename_quietly(claimed_path, original)


def release_claims(spool):
    """Put back every run this process still claims (an interrupted flush or replay)."""
    if spool.owner is None:
        return
    suffix = f".claimed-{spool.owner.token}"
    for name in _spool_names(spool.directory, spool.keys):
        if name.endswith(suffix):
            spool_release(os.path.join(spool.directory, name), "kept")


def spool_count(directory, keys=None, suffix=".json"):
    """Runs waiting for this destination (every destination when `keys` is None); `.rejected` ones with `suffix`."""
    return sum(1 for name in _spool_names(directory, keys) if name.endswith(suffix))


def spool_requeue_rejected(directory, keys):
    """Put this destination's rejected runs back in the queue (the user fixed the cause); returns how many."""
    names = [name for name in _spool_names(directory, keys) if name.endswith(".rejected")]
    for name in names:
        path = os.path.join(directory, name)
        _rename_quietly(path, path[: -len(".rejected")] + ".json")
    return len(names)


# -- the record of delivered runs --------------------------------------------------------------------------------------
# One line per run delivered to a destination, so that a backfill skips what a live run (whose payload carries no
# createdAt, so no shared dedup id) already delivered: {"id": identity, "run": run_id, "dir": outputDir, "runId":
# the manifest's runId}. 0.2.0 wrote the run_id alone (a JSON string's inside), which a backfill still honours.


class Record:
    """What the record says was delivered: `ids` (identities), `run_ids` (manifest runIds), `dirs` (output
    folders), and `names`: the run_ids 0.2.0 recorded, which named folders only."""

    __slots__ = ("ids", "run_ids", "dirs", "names")

    def __init__(self):
        self.ids, self.run_ids, self.dirs, self.names = set(), set(), set(), set()

    def has(self, row):
        return row.identity in self.ids or row.run_id in self.names


def delivered_runs(directory, keys):
    """The Record of the runs delivered to this destination (under any of its keys)."""
    record = Record()
    for key in keys:
        try:
            handle = open(os.path.join(directory, f"delivered-{key}.txt"), encoding="utf-8")  # noqa: SIM115
        except OSError:
            continue
        with handle:
            for line in handle:
                try:
                    if line.startswith("{"):
                        entry = json.loads(line)
                        record.ids.add(entry["id"])
                        if entry.get("runId"):
                            record.run_ids.add(entry["runId"])
                        if entry.get("dir"):
                            record.dirs.add(entry["dir"])
                    else:
                        record.names.add(json.loads('"' + line.rstrip("\n") + '"'))
                except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                    continue
    return record


def is_recorded(directory, keys, identity):
    """Whether the record lists `identity`: one search through the file, for a live run (no parsing)."""
    needle = f'"id":"{identity}"'.encode()
    for key in keys:
        try:
            with open(os.path.join(directory, f"delivered-{key}.txt"), "rb") as handle:
                if needle in handle.read():
                    return True
        except OSError:
            continue
    return False


def record_delivered(directory, key, rows):
    if not rows:
        return
    _private_dir(directory)
    lines = []
    for row in rows:
        entry = {"id": row.identity, "run": row.run_id}
        payload = row.payload
        if text(payload.get("outputDir")):
            entry["dir"] = payload["outputDir"]
        if text(payload.get("runId")):
            entry["runId"] = payload["runId"]
        lines.append(json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n")
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_BINARY", 0)
    descriptor = os.open(os.path.join(directory, f"delivered-{key}.txt"), flags, 0o600)
    try:
        os.write(descriptor, "".join(lines).encode("utf-8"))
    finally:
        os.close(descriptor)


# -- judging a delivery: whose fault each failure is -------------------------------------------------------------------
# A refusal the service pins on nothing but the request (a bare 400 or 413, Segment's "Exceed payload limit", a
# statement failing on some value) is narrowed down before it is judged: the request's runs are sent again in
# halves (their dedup ids make that harmless) until the refusal follows single runs, or every part is refused
# alike. A refusal that follows one run is that run's once the destination took another run in this invocation;
# before that, nothing shows that the destination itself works, so the runs stay queued and the sending stops. A
# destination that refuses everything alike costs about 2 x log2(n) requests to recognise, not n.


def _deliver_rows(sink, config, ctx, rows):
    """Per-row outcomes of one delivery: None (delivered) or a SinkError (one for the whole call applies to all)."""
    try:
        outcomes = list(sink.deliver(rows, config, ctx))
    except SinkError as error:
        outcomes = [error] * len(rows)
    if any(outcome is None for outcome in outcomes):
        ctx.accepted = True
    return outcomes


def _alike(outcome, refusal):
    if outcome is None or refusal is None or outcome.fault not in (REFUSED, DESTINATION):
        return False
    if outcome.reason is not None or refusal.reason is not None:
        return outcome.reason == refusal.reason
    return outcome.message == refusal.message


def _refused_alike(refusal):
    return SinkError(refusal.code, refusal.message, DESTINATION, False, refusal.reason)


def _narrow(sink, config, ctx, rows, refusal):
    """Outcomes for `rows`, refused as a whole by `refusal`: the first half narrowed down (depth first), then the
    second half; when both halves are refused alike, the refusal follows no run: the destination's."""
    middle = len(rows) // 2
    first = deliver_judged(sink, config, ctx, rows[:middle])
    if all(_alike(outcome, refusal) for outcome in first):
        second = _deliver_rows(sink, config, ctx, rows[middle:])
        if all(_alike(outcome, refusal) for outcome in second):
            ctx.refused_alike = refusal
            return [_refused_alike(refusal)] * len(rows)
        second = _narrow_refusals(sink, config, ctx, rows[middle:], second)
    else:
        second = deliver_judged(sink, config, ctx, rows[middle:])
    return first + second


def _narrow_refusals(sink, config, ctx, rows, outcomes):
    shared = {}  # rows refused together in one request share its SinkError
    for index, outcome in enumerate(outcomes):
        if outcome is not None and outcome.fault == REFUSED and not outcome.pinned:
            shared.setdefault(id(outcome), []).append(index)
    for indices in shared.values():
        if len(indices) < 2:
            continue
        refusal = outcomes[indices[0]]
        if _alike(refusal, ctx.refused_alike):  # the destination already refused every part of a request so
            narrowed = [_refused_alike(refusal)] * len(indices)
        else:
            narrowed = _narrow(sink, config, ctx, [rows[index] for index in indices], refusal)
        for index, outcome in zip(indices, narrowed):
            outcomes[index] = outcome
    return outcomes


def deliver_judged(sink, config, ctx, rows):
    """Per-row outcomes, each refusal that named no run narrowed down to the runs it follows."""
    return _narrow_refusals(sink, config, ctx, rows, _deliver_rows(sink, config, ctx, rows))


def _verdict(outcome, accepted):
    """What becomes of a run that was not delivered: "rejected" (set aside: the service refused it while it took
    another run), "kept" (queued for this destination: a passing failure) or "unbound" (queued for whichever
    configuration works next: the destination refused the configuration, or everything it was sent)."""
    if outcome.fault == REFUSED and accepted:
        return "rejected"
    return "kept" if outcome.fault == TRANSIENT else "unbound"


def _why_kept(outcome, sink):
    """The clause a message adds about runs kept after `outcome`."""
    if outcome.fault == TRANSIENT:
        return ""
    if outcome.fault == REFUSED or outcome.reason is not None:  # a refusal that no run was shown to deserve
        check = (
            f"`{sink.NAME} --check` compares it with what the sink writes; " if hasattr(sink, "print_schema") else ""
        )
        return (
            "the destination took no run in this invocation and refused them alike, so the cause is more likely "
            f"the destination (a table made otherwise) than the runs: {check}once it is fixed, "
        )
    return "once that is fixed, "


# -- what an invocation says -------------------------------------------------------------------------------------------


def _say(stream, name, message):
    try:
        stream.write(f"{name}: {redact(' '.join(str(message).split()))}\n")
        stream.flush()
    except (OSError, ValueError):
        pass


class Progress:
    """What a backfill or flush says on stderr: its running count, on a terminal only, in one line rewritten in
    place and cleared before any message, so that the two never share a line."""

    __slots__ = ("stream", "name", "live", "shown")

    def __init__(self, stream, name):
        self.stream, self.name = stream, name
        self.live = bool(stream) and hasattr(stream, "isatty") and stream.isatty()
        self.shown = ""

    def show(self, text):
        if self.live:
            self.shown = text
            self._write(f"\r{self.name}: {text}\x1b[K")

    def say(self, message):
        if self.stream is None:
            return
        if self.shown:
            self._write("\r\x1b[K")
        _say(self.stream, self.name, message)
        if self.shown:
            self._write(f"\r{self.name}: {self.shown}\x1b[K")

    def clear(self):
        if self.shown:
            self._write("\r\x1b[K")
            self.shown = ""

    def _write(self, text):
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass


class Tally:
    """What an invocation did with its runs, as its last line says it."""

    __slots__ = ("delivered", "rejected", "kept", "not_kept", "skipped", "duplicates", "gone", "malformed")

    def __init__(self):
        for name in self.__slots__:
            setattr(self, name, 0)

    def summary(self):
        parts = [f"{self.delivered} delivered"]
        words = (
            (self.rejected, "rejected (set aside as *.rejected)"),
            (self.kept, "kept"),
            (self.not_kept, "not kept"),
            (self.skipped, "skipped as already delivered"),
            (self.duplicates, "skipped as repeated in the input"),
            (self.gone, "skipped as gone (their files no longer exist)"),
            (self.malformed, "malformed"),
        )
        return ", ".join(parts + [f"{count} {what}" for count, what in words if count])


# -- one run, as it happens --------------------------------------------------------------------------------------------


class Interrupted(BaseException):
    """SIGTERM (and Windows' SIGBREAK), raised in the main thread as SIGINT raises KeyboardInterrupt; `code` is the
    exit code."""

    def __init__(self, code):
        super().__init__(code)
        self.code = code


def _undo(ctx):
    """On a signal: what the delivery in flight registered to undo (cancel a running statement), briefly."""
    for undo in list(ctx.on_interrupt):
        try:
            undo()
        except Exception as error:  # noqa: BLE001 - a failed undo must not hide the interruption
            log(ctx, f"on interruption: {error}")


def _hold(ctx, spool, row):
    """(claimed path, row) of the live run written down before sending: a kept copy of the same run when there
    is one (its stored created_at), else a new one. (None, row) when the spool cannot be written (the run is
    still sent); (None, None) when another live process is delivering this very run."""
    found = spool_find(spool, row.identity)
    try:
        if found is not None and found[0] == "busy":
            log(ctx, f"run {row.run_id} is being delivered by another process: not sent twice")
            return None, None
        if found is not None:
            claimed = spool_claim_path(spool, found[1])
            if claimed is not None and claimed[1] is not None:
                log(ctx, f"run {row.run_id} was kept earlier: sending the kept copy")
                return claimed[0], derive(claimed[1]["run"], ctx.env, identity=row.identity)
        return spool_hold(spool, row), row
    except (OSError, SinkError) as error:
        log(ctx, f"cannot write the run down before sending it ({getattr(error, 'strerror', None) or error})")
        return None, row


def _keep_run(spool, held, row, key):
    """Queue a live run under `key`: the copy written down before sending (`held`) when there is one, else a new
    one. Raises OSError when it cannot be kept."""
    if not held:
        spool_put(spool.directory, key, row, spool.label)
    elif not spool_release(held, "kept", key):
        raise OSError(f"cannot rename {held}")


def _keep_live(sink, spool, held, row, outcome):
    """Keep a live run that was not delivered; the text to append to the failure message."""
    if not spool.directory:
        return " (not kept: PEEPSHOW_SINK_SPOOL=off)"
    key = spool.key if _verdict(outcome, False) == "kept" else spool.unbound
    try:
        _keep_run(spool, held, row, key)
    except OSError as error:
        return f" (and the run could not be kept in {spool.directory}: {error.strerror or error})"
    return (
        f" (the run was kept in {spool.directory}: {_why_kept(outcome, sink)}`{sink.NAME} --flush` or the next "
        "successful delivery replays it)"
    )


def _interrupted(sink, ctx, spool, held, row, state, code, stderr):
    """A signal during a live run: undo what is in flight (a running statement), keep the run, say so."""
    ctx.deadline = time.monotonic()  # whatever the worker does next gives up at once
    _undo(ctx)
    signal_name = {130: "SIGINT", 143: "SIGTERM"}.get(code, "SIGBREAK")  # 149: Ctrl-Break, on Windows
    if state.get("live", "unsettled") is None:
        if held:
            spool_release(held, "delivered")
        message = f"interrupted ({signal_name}) after the run was delivered"
    elif not spool.directory:
        message = f"interrupted ({signal_name}): the run was not kept (PEEPSHOW_SINK_SPOOL=off)"
    else:
        try:
            _keep_run(spool, held, row, spool.key)
            message = (
                f"interrupted ({signal_name}): the run was kept in {spool.directory}: `{sink.NAME} --flush` or the "
                "next successful delivery replays it"
            )
        except OSError as error:
            message = f"interrupted ({signal_name}): the run could not be kept ({error.strerror or error})"
    _say(stderr, sink.NAME, message)
    return code


def _deliver_live(sink, config, ctx, spool, row, stderr):
    """Deliver the run peepshow just made, within its deadline; keep it when it cannot be delivered.

    The run is written to the spool, claimed by this process, before it is sent: a signal, a kill or a crash at
    any instant leaves it for the next flush. The same run piped again (peepshow re-firing a sink) is the same
    run: delivered already, it is not sent again; kept, its stored copy is sent, with the same created_at.
    """
    import threading

    held = None
    if spool.directory:
        if is_recorded(spool.directory, spool.keys[:-1], row.identity):
            log(ctx, f"run {row.run_id} was delivered to {spool.label} already: not sent again")
            return EXIT_OK
        held, row = _hold(ctx, spool, row)
        if held is None and row is None:
            return EXIT_OK
    state = {}

    def work():
        ctx.live = True
        state["live"] = deliver_judged(sink, config, ctx, [row])[0]
        ctx.live = False  # what follows is a replay of older runs, however few
        if state["live"] is None and spool.directory and spool_count(spool.directory, spool.keys):
            _replay(sink, config, ctx, spool, Progress(None, sink.NAME), until=ctx.deadline - 1.0)

    def guarded():
        try:
            work()
        except BaseException as error:  # noqa: BLE001 - handed to the main thread, which reports it
            state.setdefault("live", error)

    # The hard stop: whatever the server does (trickles header bytes, hangs in DNS), peepshow gets control back
    # by the deadline. The worker is a daemon thread and is abandoned at exit; runs it had claimed for a replay go
    # back to the queue with this process's claim lock.
    worker = threading.Thread(target=guarded, name="deliver", daemon=True)
    worker.start()
    try:
        # In slices: on Windows a signal does not interrupt a wait for a thread (Python runs its handler only once
        # the wait is over), so one long join would hold Ctrl-C or Ctrl-Break until the deadline.
        stop = ctx.deadline + 0.25
        while worker.is_alive() and time.monotonic() < stop:
            worker.join(min(0.1, max(0.0, stop - time.monotonic())))
    except (KeyboardInterrupt, Interrupted) as interrupt:
        code = interrupt.code if isinstance(interrupt, Interrupted) else 130
        return _interrupted(sink, ctx, spool, held, row, state, code, stderr)
    outcome = state.get("live", "timeout")
    if outcome == "timeout":
        outcome = remote_error(
            f"gave up after {ctx.timeout:g}s without an answer from the destination (PEEPSHOW_SINK_TIMEOUT)", True
        )
    if outcome is None:
        if held:
            spool_release(held, "delivered")
        if spool.directory:
            try:
                record_delivered(spool.directory, spool.key, [row])
            except OSError:
                pass  # the record only spares a later backfill a duplicate; the run itself is delivered
        return EXIT_OK
    if not isinstance(outcome, SinkError):
        raise outcome
    _say(stderr, sink.NAME, outcome.message + _keep_live(sink, spool, held, row, outcome))
    return outcome.code


# -- the spool, replayed (after a live run, and --flush) ---------------------------------------------------------------


REPLAY_RUNS = 100


def _claimed_runs(ctx, spool, claimed, record, tally, progress):
    """[(row, [claimed paths])] to deliver from `claimed`: unreadable files are set aside and named; runs the
    record says were delivered (a backfill took them meanwhile) are dropped; two files of one run (kept under two
    keys) are sent once."""
    runs = {}
    for path, entry in claimed:
        name = os.path.basename(path).rsplit(".claimed-", 1)[0]
        if entry is None:
            tally.malformed += 1
            progress.say(f"spooled run {name} is unreadable and was set aside as {name}.unreadable")
            continue
        try:
            identity = entry.get("identity") if isinstance(entry.get("identity"), str) else None
            row = derive(entry["run"], ctx.env, identity=identity)
        except SinkError as error:
            spool_release(path, "rejected")
            tally.rejected += 1
            progress.say(f"spooled run {name} is unusable and was set aside: {error.message}")
            continue
        if record.has(row):
            spool_release(path, "delivered")
            continue
        if row.identity in runs:
            runs[row.identity][1].append(path)
        else:
            runs[row.identity] = (row, [path])
    return list(runs.values())


def _replay(sink, config, ctx, spool, progress, until=None, tally=None, record=None):
    """Deliver this destination's spooled runs, a group at a time, until `until` (monotonic) or the spool is empty.

    Returns (tally, failure, busy): `failure` is the one that stopped the replay (not a run's own: the
    destination's, or a passing one), after which every run not delivered stays queued; `busy` counts the runs
    other live processes were delivering. A run the service refuses while it takes others is set aside as
    `*.rejected` and named through `progress`.
    """
    tally = tally or Tally()
    record = delivered_runs(spool.directory, spool.keys) if record is None else record
    claims = Claims(spool)
    failure = None
    while not failure and (until is None or time.monotonic() < until):
        claimed = claims.take(REPLAY_RUNS)
        if not claimed:
            break
        runs = _claimed_runs(ctx, spool, claimed, record, tally, progress)
        rows = [row for row, _ in runs]
        delivered = []
        for (row, paths), outcome in zip(runs, deliver_judged(sink, config, ctx, rows) if rows else []):
            verdict = "delivered" if outcome is None else _verdict(outcome, ctx.accepted)
            if verdict == "delivered":
                delivered.append(row)
            elif verdict == "rejected":
                progress.say(f"spooled run {row.run_id} rejected: {outcome.message}")
            else:
                failure = failure or outcome
            for path in paths:
                spool_release(
                    path, "kept" if verdict == "unbound" else verdict, spool.unbound if verdict == "unbound" else None
                )
            tally.delivered += verdict == "delivered"
            tally.rejected += verdict == "rejected"
        record_delivered(spool.directory, spool.key, delivered)
        progress.show(f"{tally.delivered} delivered so far")
        log(ctx, f"replayed {tally.delivered} spooled run(s)")
    return tally, failure, claims.busy


def _flush(sink, config, ctx, spool, stdout, stderr, retry_rejected):
    if not spool.directory:
        raise usage_error("PEEPSHOW_SINK_SPOOL=off: there is no spool to flush")
    directory, keys = spool.directory, spool.keys
    requeued = spool_requeue_rejected(directory, keys) if retry_rejected else 0
    progress = Progress(stderr, sink.NAME)
    record = delivered_runs(directory, keys)
    tally, failure, busy = _replay(sink, config, ctx, spool, progress, record=record)
    # Runs another live process holds (a flush started at the same time) are waited for, within the timeout: it
    # delivers them, or puts them back and this flush takes them.
    waiting_until = time.monotonic() + ctx.timeout
    while busy and not failure and time.monotonic() < waiting_until:
        time.sleep(0.2)
        tally, failure, busy = _replay(sink, config, ctx, spool, progress, tally=tally, record=record)
    progress.clear()
    left = spool_count(directory, keys)
    line = f"{sink.NAME}: delivered {tally.delivered} spooled run(s) to {spool.label}; {left} left"
    if busy:
        line += f" and {busy} being delivered by another process"
    if requeued:
        line += f" ({requeued} rejected run(s) were queued again)"
    if tally.rejected:
        line += f"; {tally.rejected} rejected by this flush"
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
        why = _why_kept(failure, sink)
        raise SinkError(
            failure.code,
            f"{failure.message} ({left} run(s) still in the spool: {why}`{sink.NAME} --flush` delivers them)",
            failure.fault,
        )
    if left or busy:
        waiting = f"{left} spooled run(s) still undelivered" if left else "no run left here"
        raise remote_error(f"{waiting}; {busy} being delivered by another process right now", True)
    if tally.rejected:
        raise remote_error(
            f"this flush rejected {tally.rejected} run(s), each named above; they are kept in {directory}"
        )
    return EXIT_OK


# -- backfill: many runs in one process --------------------------------------------------------------------------------


GROUP_RUNS = 500
GROUP_BYTES = 16 * 1024 * 1024
SKIPPED, GONE = object(), object()


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
    """(where, document) for each document of a stream on stdin (a malformed one is a SinkError in its place)."""
    for number_, document in enumerate(documents, 1):
        yield f"document {number_} on stdin", document


def _manifest_sources(options, stdin, record):
    """(where, document) for the runs named on the command line (manifest.json files, run directories, `-`) and
    in peepshow's run index. In place of a document: a SinkError when it cannot be read, SKIPPED when the record
    says the run was delivered (checked before its files are read), GONE when an indexed run's files are gone."""
    for path in options.paths:
        if path == "-":
            yield from _on_stdin(iter_documents(stdin or _stdin()))
        else:
            yield _load_manifest(path)
    if options.from_index:
        try:
            index = open(options.from_index, "rb")  # noqa: SIM115 - streamed line by line below
        except OSError as error:
            raise usage_error(f"cannot read the run index {options.from_index}: {error.strerror}") from None
        with index:
            for number_, line in enumerate(index, 1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    entry = None
                entry = entry if isinstance(entry, dict) else {}
                directory, run_id = entry.get("outputDir"), entry.get("runId")
                where = f"{options.from_index} line {number_}"
                if not isinstance(directory, str) or not directory:
                    yield where, SinkError(EXIT_PAYLOAD, f"{where}: no outputDir")
                elif record is not None and isinstance(run_id, str) and run_id in record.run_ids:
                    yield where, SKIPPED
                elif not os.path.exists(os.path.join(directory, "manifest.json")):
                    delivered = record is not None and directory in record.dirs
                    yield where, SKIPPED if delivered else GONE
                else:
                    yield _load_manifest(directory)


class Backfill:
    """One backfill: the runs read into the current `group` (and its `size` in bytes), the runs `seen` so far (by
    their identity's first 64 bits: about 70 bytes a run), the `record` of delivered runs (None: send everything),
    its `tally`, the failure that `stopped` the sending, and its `progress` line."""

    __slots__ = (
        "sink",
        "config",
        "ctx",
        "spool",
        "record",
        "dry_run",
        "stdout",
        "progress",
        "tally",
        "stopped",
        "group",
        "size",
        "seen",
    )

    def __init__(self, sink, config, ctx, spool, record, dry_run, stdout, progress):
        self.sink, self.config, self.ctx, self.spool, self.record = sink, config, ctx, spool, record
        self.dry_run, self.stdout, self.progress = dry_run, stdout, progress
        self.tally = Tally()
        self.stopped = None
        self.group, self.size, self.seen = [], 0, set()

    def take(self, where, document):
        """Add one source document to the group (delivering the group when it is full); a run the record says
        was delivered, a repeat, a gone or malformed document is counted instead."""
        if document is SKIPPED or document is GONE:
            self.tally.skipped += document is SKIPPED
            self.tally.gone += document is GONE
            return
        try:
            if isinstance(document, SinkError):
                raise document
            row = derive(document, self.ctx.env, source=where)
        except SinkError as error:
            self.tally.malformed += 1
            self.progress.say(error.message)
            return
        seen = int(row.identity[:16], 16)  # 64 bits of it: a small int per run, not a string, kept all along
        if self.record is not None and self.record.has(row):
            self.tally.skipped += 1
        elif seen in self.seen:
            self.tally.duplicates += 1
        else:
            self.seen.add(seen)
            self.group.append(row)
            self.size += len(row.transcript or "") + len(row.tags) + 1024
            if len(self.group) >= GROUP_RUNS or self.size >= GROUP_BYTES:
                self.settle()

    def settle(self):
        """Deliver the group (or, once stopped, keep it), and account for every run of it."""
        group, self.group, self.size = self.group, [], 0
        if not group:
            return
        if self.dry_run:
            _print_requests(self.sink, group, self.config, False, self.stdout)
            return
        if self.stopped:
            self.keep(group, self.stopped)
            return
        delivered = []
        for row, outcome in zip(group, deliver_judged(self.sink, self.config, self.ctx, group)):
            verdict = "delivered" if outcome is None else _verdict(outcome, self.ctx.accepted)
            if verdict == "delivered":
                delivered.append(row)
            elif verdict == "rejected":
                self.progress.say(f"run {row.run_id} rejected: {outcome.message}")
                self.set_aside(row)
            else:
                self.stopped = self.stopped or outcome
                self.keep([row], outcome)
        self.tally.delivered += len(delivered)
        if self.spool.directory and delivered:
            record_delivered(self.spool.directory, self.spool.key, delivered)
        self.progress.show(f"{self.tally.delivered} delivered so far")

    def keep(self, rows, failure):
        """Queue runs that were not delivered: for this destination after a passing failure, else unbound."""
        key = self.spool.key if failure.fault == TRANSIENT else self.spool.unbound
        for row in rows:
            try:
                if not self.spool.directory:
                    raise OSError("PEEPSHOW_SINK_SPOOL=off")
                spool_put(self.spool.directory, key, row, self.spool.label)
                self.tally.kept += 1
            except OSError:
                self.tally.not_kept += 1

    def set_aside(self, row):
        """A run the service refused: kept as `*.rejected`, never deleted."""
        self.tally.rejected += 1
        if self.spool.directory:
            try:
                spool_put(self.spool.directory, self.spool.key, row, self.spool.label, suffix=".rejected")
            except OSError:
                pass

    def finish(self):
        """The summary line, the stop reason, and the exit code."""
        tally, spool, name = self.tally, self.spool, self.sink.NAME
        if self.dry_run:
            return EXIT_OK if not tally.malformed else EXIT_PAYLOAD
        if tally.delivered and not self.stopped and spool.directory and spool_count(spool.directory, spool.keys):
            _, self.stopped, _ = _replay(self.sink, self.config, self.ctx, spool, self.progress, tally=tally)
        self.progress.clear()
        _say(self.progress.stream, name, tally.summary())
        if tally.rejected and spool.directory:
            _say(
                self.progress.stream,
                name,
                f"the rejected runs are kept in {spool.directory}: once their cause is fixed, "
                f"`{name} --flush --retry-rejected` delivers them",
            )
        if self.stopped:
            if tally.kept:
                where = f"{tally.kept} run(s) kept in {spool.directory}: {_why_kept(self.stopped, self.sink)}"
                where += f"`{name} --flush` delivers them"
            else:
                where = "nothing more was sent"
            if tally.not_kept:
                where += f"; {tally.not_kept} run(s) not kept (PEEPSHOW_SINK_SPOOL=off or the spool unwritable)"
            _say(self.progress.stream, name, f"stopped: {self.stopped.message} ({where})")
            return self.stopped.code
        if tally.rejected:
            return EXIT_REMOTE
        return EXIT_PAYLOAD if tally.malformed else EXIT_OK


def _backfill(sink, config, ctx, spool, sources, record, dry_run, stdout, stderr):
    """Many runs in one process: grouped, batched by the sink, each request bounded by PEEPSHOW_SINK_TIMEOUT.

    A run the service refuses while it takes others is set aside (`*.rejected`) and named, and the backfill goes
    on. The first failure that is not a run's own (the destination's, a passing one, or everything refused alike)
    ends the sending: the runs of that group and every run read after it go to the spool for `--flush`, and the
    last line says why.
    """
    backfill = Backfill(sink, config, ctx, spool, record, dry_run, stdout, Progress(stderr, sink.NAME))
    try:
        for where, document in sources:
            backfill.take(where, document)
    except SinkError as error:  # a stream that cannot be read on (not UTF-8) ends the reading, not the delivery
        backfill.tally.malformed += 1
        backfill.progress.say(error.message)
    backfill.settle()
    return backfill.finish()


# -- the command line every sink shares --------------------------------------------------------------------------------


COMMON_HELP = """
Register with peepshow:
  peepshow sinks add-cmd ~/bin/{name}.pyz                after every extraction
  peepshow ./clip.mp4 --sink {name}                      with dist/peepshow-sink-{name} copied onto PATH
  peepshow sinks add {name} --when extension=mp4,mov     only for matching videos

Input:
  stdin            one run: the JSON that `peepshow <video> --emit json` prints (peepshow pipes it in);
                   several runs, concatenated or one per line, are a backfill (a malformed one is named and
                   skipped, and the exit code is 4 at the end)
  PATH ...         manifest.json files or run directories (their manifest.json) to backfill
  --from-index [PATH]
                   backfill every run in peepshow's index (default ~/.peepshow/runs/index.ndjson); runs
                   already delivered and runs whose files are gone are counted and skipped

Options:
  --dry-run        print the exact request(s) delivery would send for the input, credentials redacted;
                   send nothing
  --flush          replay the runs kept in the spool (reads no stdin); exit 0 only when none is left and
                   none was rejected
  --retry-rejected with --flush: queue the runs the service rejected (*.rejected) again, once you fixed
                   the cause (a column type, a bad value)
  --resend         with a backfill: send runs the record says were delivered too (after the table was
                   dropped); dedup ids, MERGE and primary keys still keep one copy of each
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
  5 remote or network failure, 130 / 143 interrupted (SIGINT / SIGTERM; 149: Ctrl-Break on Windows; the run is
  kept). A run that was not delivered is kept in the spool; one the service refused while it took others is set
  aside as *.rejected.
"""
PRINT_SCHEMA_HELP = "  --print-schema   print the table definition (no host or credential needed)\n"
# "No (further) document": JSON null is a document, so None cannot mean that.
_END = object()


class Options:
    """The command line, parsed.

    paths           manifest.json files or run directories to backfill ("-": documents on stdin)
    from_index      peepshow's run index to backfill from, or None
    dry_run         print the requests, send nothing
    flush           replay the spool
    retry_rejected  with flush: queue the rejected runs again first
    resend          with a backfill: send what the record says was delivered too
    check           verify configuration and reachability, write nothing
    print_schema    print the table definition
    verbose         narrate retries and replays
    help, version   print them and exit
    """

    FLAGS = ("dry_run", "flush", "retry_rejected", "resend", "check", "print_schema", "verbose", "help", "version")
    __slots__ = ("paths", "from_index", *FLAGS)

    def __init__(self):
        self.paths, self.from_index = [], None
        for flag in self.FLAGS:
            setattr(self, flag, False)


def parse_args(argv):
    options = Options()
    flags = {"--" + flag.replace("_", "-"): flag for flag in Options.FLAGS}
    flags["-h"] = "help"
    index = 0
    while index < len(argv):
        arg = argv[index]
        index += 1
        if arg in flags:
            setattr(options, flags[arg], True)
        elif arg == "--from-index" or arg.startswith("--from-index="):
            value = arg.partition("=")[2]
            if not value and index < len(argv) and not argv[index].startswith("--"):
                value = argv[index]
                index += 1
            options.from_index = value or os.path.join(os.path.expanduser("~"), ".peepshow", "runs", "index.ndjson")
        elif arg == "--":
            options.paths += argv[index:]
            break
        elif arg.startswith("-") and arg != "-":
            raise usage_error(f"unknown option {arg}: see --help")
        else:
            options.paths.append(arg)
    if options.retry_rejected and not options.flush:
        raise usage_error("--retry-rejected goes with --flush: `<sink> --flush --retry-rejected`")
    if options.dry_run and options.flush:  # --flush would send: a dry run must never
        raise usage_error("--dry-run does not go with --flush, which sends the spooled runs: drop one of the two")
    return options


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


def _print_requests(sink, rows, config, live, stdout):
    """--dry-run: the requests delivery would send for `rows` (`live`: one run delivered as it happens, not a
    backfill's group, however small)."""
    plan = getattr(sink, "planned_requests", None)
    for req in plan(rows, config, live) if plan else sink.build_requests(rows, config):
        stdout.write(describe_request(req))


def _spool(sink, config, env):
    label, material = sink.destination(config)
    older = sink.legacy_destinations(config) if hasattr(sink, "legacy_destinations") else []
    family = sink.unbound_destination(config) if hasattr(sink, "unbound_destination") else ()
    return Spool(
        spool_dir(env, sink.NAME),
        destination_key(material),
        [destination_key(identity) for identity in older],
        destination_key(("unbound", *family)),
        label,
    )


def _on_sigterm():
    """SIGTERM (a cancelled CI job, `timeout`, a stopped container) interrupts like Ctrl-C, so the run is kept.

    Windows delivers no SIGTERM from outside (Popen.terminate, taskkill /F and Task Manager end a process as SIGKILL
    does): a console program's polite stop there is Ctrl-Break (CTRL_BREAK_EVENT, SIGBREAK), which interrupts the
    same way (exit 149)."""
    import signal

    def interrupt(number, frame):
        raise Interrupted(128 + number)

    try:
        signal.signal(signal.SIGTERM, interrupt)
        if os.name == "nt":
            signal.signal(signal.SIGBREAK, interrupt)
    except (ValueError, OSError):  # not the main thread (an embedding caller): keep its handlers
        pass


def _tolerant(stream):
    """The stream, writing what its encoding cannot hold as escapes (`\\xe9`) instead of failing: a terminal or
    PYTHONIOENCODING set to ASCII must not turn a run's non-ASCII title into a crash or a lost error message.

    On Windows Python writes a pipe in the ANSI code page and every newline as CRLF: the stream is made UTF-8 (unless
    PYTHONIOENCODING says otherwise) with plain newlines, so that what peepshow reads, --dry-run's exact requests and
    --print-schema's table are the same bytes on every system."""
    if stream is not None and hasattr(stream, "reconfigure"):
        options = {"errors": "backslashreplace", "newline": "\n"}
        if os.name == "nt" and not os.environ.get("PYTHONIOENCODING"):
            options["encoding"] = "utf-8"
        try:
            stream.reconfigure(**options)
        except (ValueError, OSError):  # a closed or detached stream: writing to it fails anyway, and is caught
            pass
    return stream


def _dispatch(sink, config, ctx, spool, options, stdin, stdout, stderr, started):
    env = ctx.env
    if options.flush:
        ctx.http = http_client(env)
        return _flush(sink, config, ctx, spool, stdout, stderr, options.retry_rejected)
    record = None
    if spool.directory and not options.dry_run and not options.resend:
        record = delivered_runs(spool.directory, spool.keys)
    if options.paths or options.from_index:
        sources = _manifest_sources(options, stdin, record)
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
            if isinstance(first, SinkError):
                raise first
            single = first
        else:
            sources = _on_stdin(_chain([first, second], documents))
            single = _END

    if options.dry_run and hasattr(sink, "describe"):
        stdout.write(redact(f"# {sink.NAME}: {sink.describe(config)}\n"))  # which way in, before the requests
    if single is not _END:
        row = derive(single, env)
        single = first = None  # the row keeps what delivery needs; let the full document go
        if options.dry_run:
            _print_requests(sink, [row], config, True, stdout)
            return EXIT_OK
        ctx.deadline = started + ctx.timeout
        ctx.http = http_client(env)
        return _deliver_live(sink, config, ctx, spool, row, stderr)
    ctx.http = http_client(env)
    return _backfill(sink, config, ctx, spool, sources, record, options.dry_run, stdout, stderr)


def _run(sink, argv, env, stdin, stdout, stderr, started):
    options = parse_args(argv)
    if options.help:
        schema = PRINT_SCHEMA_HELP if hasattr(sink, "print_schema") else ""
        common = COMMON_HELP.format(name=sink.NAME, print_schema=schema)
        stdout.write(sink.HELP.strip() + "\n" + _this_environment(sink, env) + common)
        return EXIT_OK
    if options.version:
        stdout.write(f"{sink.NAME} {version()}\n")
        return EXIT_OK
    if options.print_schema:
        if not hasattr(sink, "print_schema"):
            raise usage_error(f"{sink.NAME} writes no table: there is no schema to print")
        # The table's definition is fixed: only its names come from the environment, never a host or credential.
        stdout.write(sink.print_schema(sink.schema_config(env)).rstrip("\n") + "\n")
        return EXIT_OK
    timeout = read_timeout(env)
    config = sink.read_config(env)
    session = sink.Session(config) if hasattr(sink, "Session") else None
    ctx = Invocation(sink.NAME, env, timeout, options.verbose, session)
    spool = _spool(sink, config, env)
    if options.check:
        ctx.http = http_client(env)
        report = CheckReport(stdout)
        code = sink.check(config, ctx, report)
        if code != EXIT_OK:
            _say(stderr, sink.NAME, report.reason())
        return code
    _on_sigterm()
    try:
        return _dispatch(sink, config, ctx, spool, options, stdin, stdout, stderr, started)
    except (KeyboardInterrupt, Interrupted) as interrupt:
        _undo(ctx)
        if spool.directory:
            release_claims(spool)
        raise interrupt from None
    finally:
        if spool.directory:
            release_owner(spool)


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
    except Interrupted as interrupt:
        _say(stderr, sink.NAME, "interrupted")
        return interrupt.code
    except Exception as error:  # noqa: BLE001 - the last line of defence: never a traceback, never a secret
        _say(stderr, sink.NAME, f"internal error ({type(error).__name__}: {error}); please report it")
        return EXIT_REMOTE
