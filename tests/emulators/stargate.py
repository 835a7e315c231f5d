"""Stargate emulators: the REST data API (`Stargate`) and the token service on port 8081 (`StargateAuth`).

    stargate = Stargate(tokens=("AstraCS:test-token",), version=2)   # version=1: Stargate v1's REST API
    auth = StargateAuth(users={"cassandra": "cassandra"}, on_token=stargate.add_token)
    stargate.rows("peepshow", "peepshow_runs")  # [{column: value}] in first-write order, every column present:
                                                # None for null, text str, bigint int, double float, timestamp a
                                                # timezone-aware UTC datetime with millisecond precision
    stargate.writes                             # accepted POSTs
    stargate.add_table(ks, name, schema)        # a table made by hand (until reset): {"columns": [(name, CQL type)],
                                                # "partition_key": [...]}; v2 also int, varint, date, map<text, text>...
    stargate.expire_token(t), stargate.add_token(t), auth.minted, auth.expire_next()

Both versions serve the same paths (`POST /v2/keyspaces/{ks}/{table}`, `GET /v2/keyspaces/{ks}/{table}/{key}`,
`GET /v2/schemas/keyspaces/{ks}/tables/{table}`) from different code. Every behaviour comes from the
stargate/stargate sources; comments cite files with these prefixes:
  REST/    apis/sgv2-restapi/src/main/java/io/stargate/sgv2/restapi/   (v2, the `sgv2-restapi` service)
  COMMON/  apis/sgv2-quarkus-common/src/main/java/io/stargate/sgv2/api/common/
  BRIDGE/  bridge/src/main/java/io/stargate/bridge/                  (v2: the gRPC bridge in the coordinator)
  V1/      restapi/src/main/java/io/stargate/web/                     (v1)
  AUTH/    auth-api/src/main/java/io/stargate/auth/ and auth-table-based-service/src/main/java/io/stargate/auth/

The v2 request pipeline, in the order the service applies it: Quarkus checks that the X-Cassandra-Token header
exists (all of /v2/*), RESTEasy checks the Content-Type (@Consumes JSON), REST/service/resources/
Sgv2RowsResourceImpl.java parses the body, then asks the bridge for the table (this is where an unknown token
fails, BRIDGE/service/interceptors/NewConnectionInterceptor.java), converts every value
(REST/grpc/ToProtoConverter.java, REST/grpc/ToProtoValueCodecs.java) and sends an INSERT, which Cassandra can
still refuse. v1 (V1/resources/v2/RowsResource.java) checks the token first, then parses, then converts with
V1/resources/Converters.java.

Tables made by hand (v2 only; `add_table`): a column of another type than the sink's gets the value through that
type's codec (REST/grpc/ToProtoValueCodecs.java). A JSON string goes through protoValueFromStringified: Integer/
Short/Byte.valueOf, new BigInteger/BigDecimal, Float.valueOf, UUID.fromString and the boolean words refuse with
"Invalid String value ('<text>'): not valid representation/value for target protobuf type: TypeSpec.Basic.<X>";
LocalDate.parse's DateTimeParseException is not caught by the date codec, so its own message is the problem; a map
reads the text as a CQL map literal, {'key': 'value'}, under compactMapData=true (the default since 2023, REST/config/
RestApiConstants.java), and a list or set as [a, b] / {a, b} (REST/grpc/StringifiedValueUtil.java): JSON text such
as {"show":"Pilot"} fails with "Invalid Compact Map value ...". A JSON number goes through protoValueFromStrictlyTyped:
int, smallint and tinyint keep the low bits of Number.intValue/shortValue/byteValue with no bounds check ("!!! TODO:
bounds checks"), float is Number.floatValue, varint and decimal parse Number.toString. Every refusal is the 400
"Invalid path for row to create, problem: Failed to deserialize field '<table>.<column>', problem: <codec's words>"
(ToProtoConverter wraps any exception). The schema endpoint names the types as BridgeProtoTypeTranslator writes them
("int", "date", "map<text, text>").

Not verified, chosen as the closest reading of the sources and marked where they happen: the text of the
NumberFormatException that new BigInteger("42.5") throws (Java's "For input string" here), the exact Jackson and
Cassandra message texts (quoted from memory of those projects, not from Stargate), that a missing Content-Type is
accepted, the 4 MiB gRPC limit as the v2 body ceiling (inferred: the bridge sets no maxInboundMessageSize) and the
size it reports, the column order of the schema endpoint, `defaultTimeToLive` in v2 `tableOptions`, and the v1
texts for Cassandra-side failures and for bad primary-key paths.
"""

import argparse
import calendar
import datetime
import decimal
import json
import math
import re
import struct
import urllib.parse
import uuid

from .base import Emulator, Reply, serve_forever

PEEPSHOW_SCHEMA = {
    "columns": [
        ("run_id", "text"),
        ("title", "text"),
        ("frames", "bigint"),
        ("duration", "double"),
        ("transcript", "text"),
        ("thumbnail_url", "text"),
        ("strategy", "text"),
        ("tags", "text"),
        ("created_at", "timestamp"),
    ],
    "partition_key": ["run_id"],
    "clustering_key": [],
}

DEFAULT_TOKENS = ("AstraCS:test-token",)
DEFAULT_USERS = {"cassandra": "cassandra"}
TOKEN_HEADER = "X-Cassandra-Token"

LONG_MIN = -(2**63)
LONG_MAX = 2**63 - 1
# BRIDGE/impl/BridgeImpl.java builds its gRPC server without maxInboundMessageSize, so grpc-java's default of 4 MiB
# caps every INSERT the REST service sends to it; the bridge refuses with RESOURCE_EXHAUSTED (inferred, see above).
GRPC_MAX_MESSAGE = 4 * 1024 * 1024
# Quarkus' default quarkus.http.limits.max-body-size (REST's application.yaml keeps it): 413 before anything else.
HTTP_MAX_BODY = 10240 * 1024

# The CQL types the emulator models, by their canonical name (CQL's varchar is another name for text). Both versions
# model the sink's four; v2 also the ones a table made by hand may have instead (ToProtoValueCodecs has them all).
SUPPORTED_TYPES = {"text": "text", "varchar": "text", "bigint": "bigint", "double": "double", "timestamp": "timestamp"}
V2_ONLY_TYPES = ("boolean", "date", "decimal", "float", "int", "smallint", "tinyint", "uuid", "varint")

# REST/grpc/ToProtoValueCodecs.java names its codecs "TypeSpec.Basic.<X>" in error texts (bigint is the LONG codec),
# and its collection codecs "TypeSpec.Map", "TypeSpec.List", "TypeSpec.Set".
V2_TYPE_NAMES = {"text": "Basic.TEXT", "bigint": "Basic.LONG", "double": "Basic.DOUBLE", "timestamp": "Basic.TIMESTAMP"}
V2_TYPE_NAMES.update({kind: "Basic." + kind.upper() for kind in V2_ONLY_TYPES})
V2_TYPE_NAMES.update({"map": "Map", "list": "List", "set": "Set"})
# Number.intValue / shortValue / byteValue keep the low bits: no bounds check ("!!! TODO: bounds checks").
V2_INTEGER_BITS = {"int": 32, "smallint": 16, "tinyint": 8}
# V1/resources/Converters.java prints the Column.Type enum constant.
V1_TYPE_NAMES = {"text": "Text", "bigint": "Bigint", "double": "Double", "timestamp": "Timestamp"}

_JAVA_TRIM = "".join(chr(code) for code in range(0x21))  # String.trim() drops every char <= U+0020
_JAVA_LONG = re.compile(r"[+-]?[0-9]+", re.ASCII)  # Long.valueOf
_JAVA_DOUBLE = re.compile(  # Double.valueOf, after its own trim
    r"[+-]?(?:NaN|Infinity|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[fFdD]?)", re.ASCII
)
_JAVA_HEX_DOUBLE = re.compile(r"[+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)[pP][+-]?[0-9]+[fFdD]?")
_DIGITS = re.compile(r"[0-9]+", re.ASCII)
_JAVA_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)  # new BigDecimal
_OFFSET_COLON = re.compile(r"([+-])([0-9]{2}):([0-9]{2})", re.ASCII)  # pattern letters XXX
_OFFSET_COMPACT = re.compile(r"([+-])([0-9]{2})([0-9]{2})?", re.ASCII)  # pattern letter X
_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


class _Fail(Exception):
    """Stops a request with the reply the real service gives at that point."""

    def __init__(self, reply):
        super().__init__(reply.status)
        self.reply = reply


class _BadValue(Exception):
    """A value the service's converter refuses; the message is the converter's own text."""


class _ServerError(Exception):
    """A Java exception that is not an IllegalArgumentException: the service answers 500."""


# -- error bodies ---------------------------------------------------------------------------------------------------


def _api_error(status, description, grpc_status=None):
    """v2 errors are COMMON/exception/model/dto/ApiError.java, a record serialised with its null fields."""
    return Reply(status, {"description": description, "code": status, "grpcStatus": grpc_status, "internalTxId": None})


_REASONS = {400: "Bad Request", 401: "Unauthorized", 500: "Internal Server Error"}


def _grpc_error(code, status, prefix, detail):
    """COMMON/exception/StatusRuntimeExceptionMapper.java: "%s (%s->%s): %s" with the gRPC code, the JAX-RS status
    (whose toString is its reason phrase) and the exception message, which gRPC spells "<CODE>: <description>"."""
    return _api_error(status, f"{prefix} ({code}->{_REASONS[status]}): {code}: {detail}", code)


def _v1_error(status, description):
    """v1 errors are V1/models/Error.java with NON_NULL inclusion: description and code only."""
    return Reply(status, {"description": description, "code": status})


def _jersey_error(status, message):
    """Dropwizard's own error body (unknown paths, unreadable JSON) on the v1 and auth services."""
    return Reply(status, {"code": status, "message": message})


# -- Java renderings of values (error texts and text columns show them) -------------------------------------------


def _java_double(number):
    """Double.toString: plain for 1e-3 <= |x| < 1e7, otherwise computerized scientific notation like 1.0E10."""
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    if number == 0:
        return "-0.0" if math.copysign(1.0, number) < 0 else "0.0"
    if 1e-3 <= abs(number) < 1e7:
        return repr(number)
    sign, digits, exponent = decimal.Decimal(repr(number)).normalize().as_tuple()
    mantissa = "".join(str(digit) for digit in digits)
    power = len(digits) - 1 + exponent
    return f"{'-' if sign else ''}{mantissa[0]}.{mantissa[1:] or '0'}E{power}"


def _java_str(value):
    """String.valueOf of what Jackson binds a JSON value to (Map, List, Integer/Long/BigInteger, Double, ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _java_double(value)
    if isinstance(value, list):
        return "[" + ", ".join(_java_str(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}={_java_str(item)}" for key, item in value.items()) + "}"
    return value


def _java_value_desc(value):
    """ToProtoCodecBase.javaValueDesc in REST/grpc/ToProtoValueCodecs.java."""
    if isinstance(value, bool):
        return f"Boolean value ({_java_str(value)})"
    if isinstance(value, (int, float)):
        return f"Number {_java_str(value)}"
    if isinstance(value, dict):
        return "Java value of type java.util.LinkedHashMap"
    if isinstance(value, list):
        return "Java value of type java.util.ArrayList"
    return f"String value '{value}'"


def _is_integer(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _java_long(text):
    """Long.valueOf, or None where Java throws NumberFormatException."""
    if _JAVA_LONG.fullmatch(text) and LONG_MIN <= int(text) <= LONG_MAX:
        return int(text)
    return None


def _java_double_value_of(text):
    """Double.valueOf (it trims first, takes NaN/Infinity, a type suffix and hex floats), or None on failure."""
    text = text.strip(_JAVA_TRIM)
    plain = text[:-1] if text[-1:] in ("f", "F", "d", "D") else text
    if _JAVA_DOUBLE.fullmatch(text):
        return float(plain)
    if _JAVA_HEX_DOUBLE.fullmatch(text):
        return float.fromhex(plain)
    return None


def _wrap_long(number):
    """Number.longValue() of a BigInteger keeps the low 64 bits: Stargate v2 wraps out-of-range integers silently."""
    return (number - LONG_MIN) % 2**64 + LONG_MIN


def _double_to_long(number):
    """(long) d in Java: NaN becomes 0, out-of-range values saturate, the rest truncate toward zero."""
    if math.isnan(number):
        return 0
    if number >= 2**63:
        return LONG_MAX
    if number <= LONG_MIN:
        return LONG_MIN
    return int(number)


def _int_to_double(number):
    """Number.doubleValue() of a JSON integer; a BigInteger too large for a double becomes an infinity."""
    try:
        return float(number)
    except OverflowError:
        return math.copysign(math.inf, number)


def _strip_single_quotes(value):
    """REST/grpc/StringifiedValueUtil.java handleSingleQuotes, applied by ToProtoConverter to every JSON string: when
    the text is at least 2 chars and both starts and ends with ', drop those two and turn each '' inside into '."""
    if len(value) >= 2 and value[0] == "'" and value[-1] == "'":
        return value[1:-1].replace("''", "'")
    return value


# -- timestamps -----------------------------------------------------------------------------------------------------


def _civil_from_days(days):
    """(year, month, day) of a day count from 1970-01-01 in the proleptic Gregorian calendar, for any year."""
    days += 719468  # shift the epoch to 0000-03-01 so that leap days end each 400/100/4-year cycle
    era = days // 146097
    day_of_era = days - era * 146097
    year_of_era = (day_of_era - day_of_era // 1460 + day_of_era // 36524 - day_of_era // 146096) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    month_index = (5 * day_of_year + 2) // 153  # 0 = March
    day = day_of_year - (153 * month_index + 2) // 5 + 1
    month = month_index + 3 if month_index < 10 else month_index - 9
    return year_of_era + era * 400 + (month <= 2), month, day


def _java_instant(millis):
    """Instant.ofEpochMilli(ms).toString() (REST/grpc/FromProtoValueCodecs.java TimestampCodec): seconds always,
    the fraction only when non-zero (3 digits for milliseconds), a '+' before years past 9999."""
    seconds, fraction = divmod(millis, 1000)
    days, seconds = divmod(seconds, 86400)
    year, month, day = _civil_from_days(days)
    if year > 9999:
        year_text = f"+{year}"
    elif year < 0:
        year_text = f"-{-year:04d}"
    else:
        year_text = f"{year:04d}"
    hours, rest = divmod(seconds, 3600)
    text = f"{year_text}-{month:02d}-{day:02d}T{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
    return text + (f".{fraction:03d}" if fraction else "") + "Z"


def _java_local_time(hour, minute, second, nanos):
    """LocalTime.toString: HH:mm, then :ss and a 3/6/9-digit fraction only when needed."""
    text = f"{hour:02d}:{minute:02d}"
    if second or nanos:
        text += f":{second:02d}"
    if nanos:
        if nanos % 1_000_000 == 0:
            text += f".{nanos // 1_000_000:03d}"
        elif nanos % 1000 == 0:
            text += f".{nanos // 1000:06d}"
        else:
            text += f".{nanos:09d}"
    return text


def _epoch_millis(year, month, day, hour, minute, second, nanos, offset_seconds, extra_days=0):
    days = datetime.date(year, month, day).toordinal() - _EPOCH_ORDINAL + extra_days
    seconds = days * 86400 + hour * 3600 + minute * 60 + second - offset_seconds
    return seconds * 1000 + nanos // 1_000_000  # Instant.toEpochMilli drops sub-millisecond digits


def _read_date_time(text, fail_at, separators):
    """The fixed-width yyyy-MM-dd'T'HH:mm:ss prefix both versions share; returns (fields, position).

    A year of more than 4 digits fails at index 0 (appendValue(YEAR, 4, ..., EXCEEDS_PAD) in strict parsing wants
    a sign before extra digits); any other mismatch fails where the element starts."""
    fields = []
    position = 0
    for width, separator in zip((4, 2, 2, 2, 2, 2), separators):
        digits = text[position : position + width]
        if not _DIGITS.fullmatch(digits) or len(digits) != width:
            raise fail_at(position)
        if width == 4 and _DIGITS.fullmatch(text[4:5]):
            raise fail_at(0)
        fields.append(int(digits))
        position += width
        if separator:
            found = text[position : position + 1]
            if not found or found not in separator:
                raise fail_at(position)
            position += 1
    return fields, position


def _match_offset(pattern, text, position):
    """An offset at `position` ('Z' or the pattern), as (seconds, end), or None."""
    if text.startswith("Z", position):
        return 0, position + 1
    found = pattern.match(text, position)
    if not found:
        return None
    hours, minutes = int(found.group(2)), int(found.group(3) or 0)
    if hours > 18 or minutes > 59:
        return None
    seconds = hours * 3600 + minutes * 60
    return (-seconds if found.group(1) == "-" else seconds), found.end()


def _parse_timestamp_v2(text, accept_micros):
    """ToProtoValueCodecs.TimestampCodec: ISO_OFFSET_DATE_TIME_OPTIONAL_COLON.parse(value, Instant::from).

    Stargate 2.0.2 to 2.0.17 use the pattern "yyyy-MM-dd'T'HH:mm:ss[.SSS][XXX][X]": the fraction is optional but,
    when present, exactly 3 digits, so ".1" or ".123456" stay unparsed and fail. Later releases
    (`accept_micros=True`) build the same formatter with appendFraction(MICRO_OF_SECOND, 0, 6, true). Parsing is
    strict, resolving is SMART (a day past the month's end is clamped, 24:00:00 is the next midnight). The failure
    is a DateTimeParseException, which the codec does not catch: its message reaches the client as is."""

    def fail_at(index):
        return _BadValue(f"Text '{text}' could not be parsed at index {index}")

    def invalid(message):
        return _BadValue(f"Text '{text}' could not be parsed: {message}")

    (year, month, day, hour, minute, second), position = _read_date_time(text, fail_at, ("-", "-", "T", ":", ":", None))
    nanos = 0
    if accept_micros:
        if text.startswith(".", position):
            digits = re.compile(r"[0-9]{0,6}").match(text, position + 1).group()
            nanos = int(digits.ljust(9, "0"))
            position += 1 + len(digits)
    elif re.compile(r"\.[0-9]{3}").match(text, position):
        nanos = int(text[position + 1 : position + 4]) * 1_000_000
        position += 4
    offset = None
    for pattern in (_OFFSET_COLON, _OFFSET_COMPACT):  # the optional sections [XXX] then [X]
        found = _match_offset(pattern, text, position)
        if found:
            if offset is not None and found[0] != offset:
                raise invalid(f"Conflict found: OffsetSeconds {offset} differs from OffsetSeconds {found[0]}")
            offset, position = found
    if position != len(text):
        raise _BadValue(f"Text '{text}' could not be parsed, unparsed text found at index {position}")

    if year < 1:
        raise invalid(f"Invalid value for YearOfEra (valid values 1 - 999999999/1000000000): {year}")
    if not 1 <= month <= 12:
        raise invalid(f"Invalid value for MonthOfYear (valid values 1 - 12): {month}")
    if not 1 <= day <= 31:
        raise invalid(f"Invalid value for DayOfMonth (valid values 1 - 28/31): {day}")
    day = min(day, calendar.monthrange(year, month)[1])
    extra_days = 0
    if minute > 59:
        raise invalid(f"Invalid value for MinuteOfHour (valid values 0 - 59): {minute}")
    if hour == 24 and minute == 0 and second == 0 and nanos == 0:
        hour, extra_days = 0, 1
    elif hour > 23:
        raise invalid(f"Invalid value for HourOfDay (valid values 0 - 23): {hour}")
    if second > 59:
        raise invalid(f"Invalid value for SecondOfMinute (valid values 0 - 59): {second}")
    if offset is None:
        resolved = datetime.date.fromordinal(datetime.date(year, month, day).toordinal() + extra_days).isoformat()
        resolved += "T" + _java_local_time(hour, minute, second, nanos)
        raise invalid(
            f"Unable to obtain Instant from TemporalAccessor: {{}},ISO resolved to {resolved} of type "
            "java.time.format.Parsed"
        )
    return _epoch_millis(year, month, day, hour, minute, second, nanos, offset, extra_days)


def _parse_timestamp_v1(text):
    """V1/resources/Converters.java: Instant.parse (ISO_INSTANT on the Java 8 runtime of Stargate v1).

    Case-insensitive, any 0-9 fraction digits, 'Z' only (no numeric offset). Out-of-range fields are caught inside
    the instant parser, which then reports the error at index 0; 24:00:00 and 23:59:60 are accepted."""

    def fail_at(index):
        return _BadValue(f"Invalid Timestamp value: Text '{text}' could not be parsed at index {index}")

    (year, month, day, hour, minute, second), position = _read_date_time(
        text, fail_at, ("-", "-", "Tt", ":", ":", None)
    )
    nanos = 0
    if text.startswith(".", position):
        digits = re.compile(r"[0-9]{0,9}").match(text, position + 1).group()
        nanos = int(digits.ljust(9, "0"))
        position += 1 + len(digits)
    if text[position : position + 1] not in ("Z", "z"):
        raise fail_at(position)
    position += 1
    if position != len(text):
        raise _BadValue(
            f"Invalid Timestamp value: Text '{text}' could not be parsed, unparsed text found at index {position}"
        )
    extra_days = 0
    if hour == 24 and minute == 0 and second == 0 and nanos == 0:
        hour, extra_days = 0, 1
    elif hour == 23 and minute == 59 and second == 60:
        second = 59  # a leap second is read as the second before it
    try:
        return _epoch_millis(year, month, day, hour, minute, second, nanos, 0, extra_days)
    except ValueError:
        raise fail_at(0) from None


def canonical_type(cql_type, column=""):
    """A column's CQL type as the schema endpoint spells it (BridgeProtoTypeTranslator): "text", "map<text, text>";
    ValueError for a type the emulator does not model."""
    text = "".join(cql_type.lower().split())
    container, _, inner = text.partition("<")
    if inner and inner.endswith(">"):
        parts = [canonical_type(part, column) for part in inner[:-1].split(",")]
        if container == "map" and len(parts) == 2 and "<" not in parts[0] + parts[1]:
            return f"map<{parts[0]}, {parts[1]}>"
        if container in ("list", "set") and len(parts) == 1 and "<" not in parts[0]:
            return f"{container}<{parts[0]}>"
    elif not inner and (text in SUPPORTED_TYPES or text in V2_ONLY_TYPES):
        return SUPPORTED_TYPES.get(text, text)
    raise ValueError(f"the Stargate emulator does not model CQL type {cql_type!r} (column {column!r})")


def _parse_stringified(kind, text):
    """Long/Integer/Short/Byte.valueOf, Double/Float.valueOf, new BigInteger/BigDecimal, UUID.fromString and the
    boolean codec's words, on the text of a JSON string; None where Java refuses it."""
    if kind == "bigint":
        return _java_long(text)
    if kind in V2_INTEGER_BITS:
        number = _java_long(text)
        limit = 2 ** (V2_INTEGER_BITS[kind] - 1)
        return number if number is not None and -limit <= number < limit else None
    if kind == "varint":
        return int(text) if _JAVA_LONG.fullmatch(text) else None
    if kind in ("double", "float"):
        number = _java_double_value_of(text)
        return None if number is None else _java_float(number) if kind == "float" else number
    if kind == "decimal":
        return decimal.Decimal(text) if _JAVA_DECIMAL.fullmatch(text) else None
    if kind == "boolean":
        return {"true": True, "false": False}.get(text.lower())
    if kind == "uuid":
        try:
            return str(uuid.UUID(text)) if re.fullmatch(r"[0-9a-fA-F-]{1,36}", text) else None
        except ValueError:
            return None
    return None


def _java_float(number):
    """(float) of a double: the nearest 32-bit float (infinite past its range)."""
    try:
        return struct.unpack("<f", struct.pack("<f", number))[0]
    except OverflowError:
        return math.copysign(math.inf, number)


def _local_date(text):
    """LocalDate.parse (ISO_LOCAL_DATE, strict); _BadValue with DateTimeParseException's message otherwise."""
    match = re.match(r"([+-][0-9]{4,}|[0-9]{4})-([0-9]{2})-([0-9]{2})", text)
    if not match:
        raise _BadValue(f"Text '{text}' could not be parsed at index 0")
    try:
        date = datetime.date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        raise _BadValue(f"Text '{text}' could not be parsed: Invalid date") from None
    if match.end() != len(text):
        raise _BadValue(f"Text '{text}' could not be parsed, unparsed text found at index {match.end()}")
    return date


def _is_blank(char):
    return char in " \t\n"


def _skip_spaces(text, index):
    while index < len(text) and _is_blank(text[index]):
        index += 1
    return index


def _skip_cql_value(text, index):
    """REST/grpc/StringifiedValueUtil.java skipCqlValue: where the CQL value starting at `index` ends (a quoted
    string, a bracketed group, or a run of identifier characters); -1 when none starts there."""
    if index >= len(text) or _is_blank(text[index]):
        return -1
    depth = {"{": 0, "[": 0, "(": 0}
    closing = {"}": "{", "]": "[", ")": "("}
    in_string = False
    while index < len(text):
        char = text[index]
        if in_string:
            if char == "'" and text[index + 1 : index + 2] == "'":
                index += 1  # an escaped quote
            elif char == "'":
                in_string = False
                if not any(depth.values()):
                    return index + 1
        elif char == "'":
            in_string = True
        elif char in depth:
            depth[char] += 1
        elif char in closing:
            if depth[closing[char]] == 0:
                return index
            depth[closing[char]] -= 1
            if not any(depth.values()):
                return index + 1
        elif not any(depth.values()) and (
            _is_blank(char) or not (char.isascii() and (char.isalnum() or char in "-+._&"))
        ):
            return index
        index += 1
    return -1 if in_string or any(depth.values()) else index


def _stringified_compact_map(text, key_codec, value_codec):
    """StringifiedValueUtil.decodeStringifiedCompactMap: {key: value, ...} with CQL values ('text' quoted)."""

    def fail(detail):
        return _BadValue(f"Invalid Compact Map value '{text}': {detail}")

    index = _skip_spaces(text, 0)
    if index >= len(text):
        raise fail(f"at character {index} expecting '{{' but got EOF")
    if text[index] != "{":
        raise fail(f"at character {index + 1} expecting '{{' but got '{text[index + 1 : index + 2]}'")
    index = _skip_spaces(text, index + 1)
    if index >= len(text):
        raise fail(f"at character {index} expecting element or '}}' but got EOF")
    result = {}
    if text[index] == "}":
        return result
    while index < len(text):
        end = _skip_cql_value(text, index)
        if end < 0:
            raise fail(f"invalid CQL value at character {index}")
        key = key_codec(text[index:end])
        index = _skip_spaces(text, end)
        if index >= len(text):
            raise fail(f"at character {index} expecting ':' but got EOF")
        if text[index] != ":":
            raise fail(f"at character {index} expecting ':' but got '{text[index]}'")
        index = _skip_spaces(text, index + 1)
        end = _skip_cql_value(text, index)
        if end < 0:
            raise fail(f"invalid CQL value at character {index}")
        result[key] = value_codec(text[index:end])
        index = _skip_spaces(text, end)
        if index >= len(text):
            raise fail(f"at character {index} expecting ',' or '}}' but got EOF")
        if text[index] == "}":
            return result
        if text[index] != ",":
            raise fail(f"at character {index + 1} expecting ',' but got '{text[index + 1 : index + 2]}'")
        index = _skip_spaces(text, index + 1)
    raise fail("missing closing '}'")


def _stringified_collection(text, container, element_codec):
    """StringifiedValueUtil.decodeStringifiedCollection: [a, b] for a list, {a, b} for a set."""
    kind, opening, closing = ("List", "[", "]") if container == "list" else ("Set", "{", "}")

    def fail(detail):
        return _BadValue(f"Invalid {kind} value '{text}': {detail}")

    index = _skip_spaces(text, 0)
    if index >= len(text):
        raise fail(f"at character {index} expecting '{opening}' but got EOF")
    if text[index] != opening:
        raise fail(f"at character {index + 1} expecting '{opening}' but got '{text[index]}'")
    index = _skip_spaces(text, index + 1)
    if index >= len(text):
        raise fail(f"at character {index} expecting element or '{closing}' but got EOF")
    items = []
    if text[index] == closing:
        return items
    while index < len(text):
        end = _skip_cql_value(text, index)
        if end < 0:
            raise fail(f"invalid CQL value at character {index}")
        items.append(element_codec(text[index:end]))
        index = _skip_spaces(text, end)
        if index >= len(text):
            raise fail(f"at character {index} expecting ',' or '{closing}' but got EOF")
        if text[index] == closing:
            return items
        if text[index] != ",":
            raise fail(f"at character {index + 1} expecting ',' but got '{text[index + 1 : index + 2]}'")
        index = _skip_spaces(text, index + 1)
    raise fail(f"missing closing '{closing}'")


# -- tables ---------------------------------------------------------------------------------------------------------


class _Table:
    def __init__(self, keyspace, name, schema):
        self.keyspace = keyspace
        self.name = name
        self.columns = []
        for column, cql_type in schema["columns"]:
            self.columns.append((column, canonical_type(cql_type, column)))
        self.types = dict(self.columns)
        self.partition_key = list(schema["partition_key"])
        self.clustering_key = list(schema.get("clustering_key") or [])
        for column in self.primary_key:
            if column not in self.types:
                raise ValueError(f"key column {column!r} is not a column of {keyspace}.{name}")

    @property
    def primary_key(self):
        return self.partition_key + self.clustering_key

    def column_order(self):
        """Key columns as declared, then the others by name: the order of Cassandra's SELECT *. REST/grpc/
        BridgeProtoValueConverters.java lists its converters (the "known fields" of an error) key columns first,
        then the bridge's regular columns, taken here to be in the same order (not verified)."""
        return self.primary_key + sorted(name for name, _ in self.columns if name not in self.primary_key)


# -- the REST data API ----------------------------------------------------------------------------------------------


class Stargate(Emulator):
    """Stargate's REST API (v2 paths) over an in-memory Cassandra; `version` picks the v2 or the v1 code base."""

    name = "stargate"

    def __init__(
        self, tokens=DEFAULT_TOKENS, keyspaces=None, version=2, require_token=True, accept_micros=False, mount=""
    ):
        """`mount`: a path the REST API sits under, as behind a gateway (Astra served it at /api/rest); requests
        outside it get the 404 of an unknown path."""
        super().__init__()
        self.mount = mount.rstrip("/")
        if version not in (1, 2):
            raise ValueError(f"version must be 1 or 2, not {version!r}")
        if keyspaces is None:
            keyspaces = {"peepshow": {"peepshow_runs": PEEPSHOW_SCHEMA}}
        self.version = version
        self.require_token = require_token
        self.accept_micros = accept_micros  # v2 timestamp fractions: False = 0 or 3 digits (2.0.2-2.0.17), True = 0-6
        self._rows = {}  # (keyspace, table) -> {primary key tuple: {column: stored value}}
        self._initial_tables = {keyspace: dict(tables) for keyspace, tables in keyspaces.items()}
        self.tables = {}
        for keyspace, tables in keyspaces.items():
            for name, schema in tables.items():
                self.add_table(keyspace, name, schema)
        self._initial_tokens = frozenset(tokens)
        self._tokens = set(tokens)
        self.writes = 0

    # -- what tests use ---------------------------------------------------------------------------------------------

    def add_table(self, keyspace, name, schema):
        """Make (or replace) a table, as cqlsh would, until reset: schema {"columns": [(name, CQL type)],
        "partition_key": [...], "clustering_key": [...]}. v2 models more types than the sink's four (a table made by
        hand: int, varint, date, map<text, text>, ...); v1 only those four."""
        table = _Table(keyspace, name, schema)
        extra = [kind for _, kind in table.columns if kind not in SUPPORTED_TYPES.values()]
        if self.version == 1 and extra:
            raise ValueError(f"the Stargate v1 emulator models only text, bigint, double and timestamp, not {extra}")
        with self.lock:
            self.tables.setdefault(keyspace, {})[name] = table
            self._rows.pop((keyspace, name), None)

    def add_token(self, token):
        """Accept `token` from now on (StargateAuth's `on_token` callback)."""
        with self.lock:
            self._tokens.add(token)

    def expire_token(self, token):
        """Refuse `token` from now on, as the service does once a token's 30 idle minutes are over."""
        with self.lock:
            self._tokens.discard(token)

    def rows(self, keyspace, table):
        """The stored rows in first-write order, each with every column (None where null or never written)."""
        definition = self.tables[keyspace][table]
        with self.lock:
            stored = [dict(row) for row in self._rows.get((keyspace, table), {}).values()]
        return [{name: _python_value(kind, row.get(name)) for name, kind in definition.columns} for row in stored]

    def reset(self):
        super().reset()
        with self.lock:
            self._rows.clear()
            self.writes = 0
            self._tokens = set(self._initial_tokens)
            self.tables = {
                keyspace: {name: _Table(keyspace, name, schema) for name, schema in tables.items()}
                for keyspace, tables in self._initial_tables.items()
            }

    # -- routing ----------------------------------------------------------------------------------------------------

    def handle(self, request):
        try:
            return self._route(request)
        except _Fail as failure:
            return failure.reply

    def _route(self, request):
        if self.version == 2 and len(request.body) > HTTP_MAX_BODY:
            return Reply(413)
        path = request.path
        if self.mount:
            if path != self.mount and not path.startswith(self.mount + "/"):
                return _api_error(404, "HTTP 404 Not Found")
            path = path[len(self.mount) :]
        parts = [urllib.parse.unquote(part) for part in path.split("/")[1:]]
        if self.version == 2 and parts[:1] == ["v2"]:
            self._require_header(request)
        if parts[:2] == ["v2", "keyspaces"] and len(parts) >= 4 and all(parts[2:]):
            keyspace, table, key = parts[2], parts[3], parts[4:]
            if request.method == "POST" and not key:
                return self._create_row(request, keyspace, table)
            if request.method == "GET" and key == ["rows"]:
                return self._get_all_rows(request, keyspace, table)
            if request.method == "GET" and key:
                return self._get_rows(request, keyspace, table, key)
            raise _Fail(self._error(501, f"{request.method} {request.path} is not modelled by the emulator"))
        if len(parts) == 6 and parts[:3] == ["v2", "schemas", "keyspaces"] and parts[4] == "tables":
            if request.method == "GET":
                return self._get_table(request, parts[3], parts[5])
            raise _Fail(self._error(501, f"{request.method} {request.path} is not modelled by the emulator"))
        if self.version == 1:
            return _jersey_error(404, "HTTP 404 Not Found")
        return _api_error(404, "HTTP 404 Not Found")

    def _error(self, status, description):
        return _api_error(status, description) if self.version == 2 else _v1_error(status, description)

    # -- authentication ---------------------------------------------------------------------------------------------

    def _require_header(self, request):
        """v2: Quarkus refuses a request without the header before any resource runs; the body is written by
        COMMON/security/challenge/impl/ApiErrorChallengeSender.java. An empty header counts as present."""
        if self.require_token and request.header(TOKEN_HEADER) is None:
            message = f"Role unauthorized for operation: Missing token, expecting one in the {TOKEN_HEADER} header."
            raise _Fail(_api_error(401, message))

    def _check_token(self, request):
        if not self.require_token:
            return
        token = request.header(TOKEN_HEADER)
        with self.lock:
            known = token in self._tokens
        if known:
            return
        if self.version == 2:
            # BRIDGE/service/interceptors/NewConnectionInterceptor.java closes the call with UNAUTHENTICATED
            # "Invalid token" whatever the reason (unknown, expired, empty).
            raise _Fail(_grpc_error("UNAUTHENTICATED", 401, "Unauthenticated gRPC operation", "Invalid token"))
        # V1/resources/RequestHandler.java prefixes the auth service's reason
        # (AUTH/table/AuthnTableBasedService.java validateToken): no token, not a UUID, or not in the token table.
        if not token:
            reason = "authorization failed - missing token"
        else:
            try:
                uuid.UUID(token)
                reason = "authorization failed"
            except ValueError:
                reason = "authorization failed - bad token"
        raise _Fail(_v1_error(401, f"Role unauthorized for operation: {reason}"))

    # -- table lookups ----------------------------------------------------------------------------------------------

    def _find_table(self, keyspace, table):
        return self.tables.get(keyspace, {}).get(table)

    def _data_table(self, keyspace, table):
        """The table a row operation works on."""
        found = self._find_table(keyspace, table)
        if found is not None:
            return found
        if self.version == 2:
            # REST/service/resources/RestResourceBase.java queryWithTableAsync: a missing keyspace reads as a
            # missing table (MISSING_KEYSPACE yields null), both 400.
            raise _Fail(_api_error(400, f"Table '{table}' not found (in keyspace {keyspace})"))
        raise _Fail(self._v1_not_found(keyspace, table))

    def _v1_not_found(self, keyspace, table):
        """V1/resources/AuthenticatedDB.java getTable throws NotFoundException, RequestHandler makes it a 404."""
        if keyspace not in self.tables:
            return _v1_error(404, f"Resource not found: keyspace '{keyspace}' not found")
        return _v1_error(404, f"Resource not found: table '{table}' not found")

    # -- POST /v2/keyspaces/{ks}/{table} ------------------------------------------------------------------------------

    def _create_row(self, request, keyspace, table_name):
        if self.version == 1:
            self._check_token(request)  # V1 RowsResource.createRow: getDataStoreForToken comes first
        elif request.content_type and request.content_type != "application/json":
            # REST/service/resources/Sgv2RowsResourceApi.java is @Consumes(APPLICATION_JSON): RESTEasy answers 415
            # and COMMON/exception/WebApplicationExceptionMapper.java wraps the exception's message. A request
            # without Content-Type is let through (not verified).
            raise _Fail(_api_error(415, "HTTP 415 Unsupported Media Type"))
        payload = self._parse_payload(request.body)
        if self.version == 2:
            self._check_token(request)
        table = self._data_table(keyspace, table_name)
        if payload is None:
            # The JSON literal null parses to a null Map, which the next line of Java dereferences.
            if self.version == 2:
                raise _Fail(_api_error(500, 'Cannot invoke "java.util.Map.size()" because "payloadMap" is null'))
            raise _Fail(_v1_error(500, "Server error: null"))
        values = self._convert_v2(table, payload) if self.version == 2 else self._convert_v1(table, payload)
        self._check_insert(table, values)
        if self.version == 2:
            self._check_message_size(table, values)
        self._store(table, values)
        if self.version == 2:
            # Sgv2RowsResourceImpl.createRow: RestResponse.status(CREATED, payloadAsString), the request body as is.
            return Reply(201, request.body, content_type="application/json")
        # V1 RowsResource.createRow: the primary key columns, with the values as they came in the request.
        return Reply(201, {name: payload.get(name) for name in table.primary_key})

    def _parse_payload(self, body):
        """Jackson's ObjectMapper.readValue(body, Map.class): trailing content after the first JSON value is ignored
        (FAIL_ON_TRAILING_TOKENS is off by default); NaN and Infinity are not JSON. Jackson's exact message texts
        are approximated. v2: Sgv2RowsResourceImpl.invalidPayloadException; v1: RequestHandler's
        JsonProcessingException branch."""
        prefix = "Invalid JSON payload: " if self.version == 2 else "Unable to process JSON: "
        try:
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise _Fail(self._error(400, f"{prefix}Invalid UTF-8 start byte 0x{body[error.start]:02x}")) from None
        text = text.lstrip(" \t\r\n")
        if not text:
            raise _Fail(self._error(400, f"{prefix}No content to map due to end-of-input"))
        decoder = json.JSONDecoder(parse_constant=_refuse_non_numeric)
        try:
            payload, _ = decoder.raw_decode(text)
        except ValueError as error:
            raise _Fail(self._error(400, f"{prefix}{error}")) from None
        if payload is not None and not isinstance(payload, dict):
            kind = {list: "Array", str: "String", bool: "Boolean"}.get(type(payload), "Number")
            target = "`java.util.LinkedHashMap<java.lang.Object,java.lang.Object>`"
            raise _Fail(self._error(400, f"{prefix}Cannot deserialize value of type {target} from {kind} value"))
        return payload

    def _convert_v2(self, table, payload):
        """Sgv2RowsResourceImpl.buildAddRowQuery: every entry through ToProtoConverter.protoValueFromLooselyTyped,
        whose failures become 400 "Invalid path for row to create, problem: ..."."""
        values = {}
        for column, value in payload.items():
            if value is None:
                values[column] = None  # null short-circuits before the column is even looked up
                continue
            kind = table.types.get(column)
            if kind is None:
                known = ", ".join(table.column_order())
                problem = f"Unknown field name '{column}' (table '{table.name}'); known fields: [{known}]"
                raise _Fail(_api_error(400, f"Invalid path for row to create, problem: {problem}"))
            try:
                values[column] = self._decode_v2(kind, value)
            except _BadValue as bad:
                problem = f"Failed to deserialize field '{table.name}.{column}', problem: {bad}"
                raise _Fail(_api_error(400, f"Invalid path for row to create, problem: {problem}")) from None
        return values

    def _decode_v2(self, kind, value):
        """One value, as REST/grpc/ToProtoConverter.java and the codecs of ToProtoValueCodecs.java read it."""
        container = kind.partition("<")[0]
        if isinstance(value, str):
            # Any JSON string takes the "stringified" path, after handleSingleQuotes, whatever the column type.
            return self._stringified_v2(kind, _strip_single_quotes(value))
        if kind == "text":
            return _java_str(value)  # TextCodec: String.valueOf(value), so 42 becomes "42" and {} becomes "{}"
        if kind == "bigint" and _is_integer(value):
            return _wrap_long(value)
        if kind == "bigint" and isinstance(value, float):
            return _double_to_long(value)
        if kind in V2_INTEGER_BITS and isinstance(value, (int, float)) and not isinstance(value, bool):
            whole = _wrap_long(value) if _is_integer(value) else _double_to_long(value)
            bits = V2_INTEGER_BITS[kind]
            return (whole + 2 ** (bits - 1)) % 2**bits - 2 ** (bits - 1)  # the low bits, as Java's narrowing keeps
        if kind in ("double", "float") and isinstance(value, (int, float)) and not isinstance(value, bool):
            number = _int_to_double(value) if _is_integer(value) else value
            return _java_float(number) if kind == "float" else number
        if kind in ("varint", "decimal") and isinstance(value, (int, float)) and not isinstance(value, bool):
            # new BigInteger(n.toString()) / new BigDecimal(n.toString()): a double's text has a ".0" BigInteger
            # refuses with NumberFormatException, which reaches the client as its message.
            text = _java_str(value)
            if kind == "varint" and not _is_integer(value):
                raise _BadValue(f'For input string: "{text}"')
            return int(value) if kind == "varint" else decimal.Decimal(text.replace("E", "e"))
        if kind == "boolean" and isinstance(value, bool):
            return value
        if kind == "timestamp" and _is_integer(value) and LONG_MIN <= value <= LONG_MAX:
            return value  # epoch milliseconds; only Integer and Long qualify, not BigInteger or Double
        if container == "map" and isinstance(value, dict):  # compactMapData (the default): a JSON object
            key_kind, value_kind = kind[4:-1].split(", ")
            return {self._decode_v2(key_kind, key): self._decode_v2(value_kind, item) for key, item in value.items()}
        if container in ("list", "set") and isinstance(value, list):
            items = [self._decode_v2(kind[len(container) + 1 : -1], item) for item in value]
            return items if container == "list" else sorted(set(items), key=repr)
        raise _BadValue(
            f"Cannot coerce {_java_value_desc(value)} into expected protobuf type: "
            f"TypeSpec.{V2_TYPE_NAMES[container or kind]}"
        )

    def _stringified_v2(self, kind, text):
        """protoValueFromStringified of the column's codec: each type's own parser of the text."""
        container = kind.partition("<")[0]
        if kind == "text":
            return text
        if kind == "timestamp":
            return _parse_timestamp_v2(text, self.accept_micros)
        if kind == "date":
            return _local_date(text)  # LocalDate.parse's DateTimeParseException is no IAE: its message goes out as is
        if container == "map":
            key_kind, value_kind = kind[4:-1].split(", ")
            return _stringified_compact_map(
                text, lambda part: self._decode_v2(key_kind, part), self._map_value(value_kind)
            )
        if container in ("list", "set"):
            element = kind[len(container) + 1 : -1]
            items = _stringified_collection(text, container, lambda part: self._decode_v2(element, part))
            return items if container == "list" else sorted(set(items), key=repr)
        parsed = _parse_stringified(kind, text)
        if parsed is None:
            raise _BadValue(
                f"Invalid String value ('{text}'): not valid representation/value for target protobuf type: "
                f"TypeSpec.{V2_TYPE_NAMES[kind]}"
            )
        return parsed

    def _map_value(self, value_kind):
        return lambda part: self._decode_v2(value_kind, part)

    def _convert_v1(self, table, payload):
        """V1 RowsResource.createRow maps every entry through Converters.colToValue; RequestHandler turns an
        IllegalArgumentException into 400 "Bad request: ..." and anything else into 500 "Server error: ..."."""
        values = {}
        for column, value in payload.items():
            kind = table.types.get(column)
            if kind is None:
                raise _Fail(_v1_error(400, f"Bad request: Unknown field name '{column}'."))
            try:
                values[column] = self._decode_v1(kind, value)
            except _BadValue as bad:
                raise _Fail(_v1_error(400, f"Bad request: {bad}")) from None
            except _ServerError as error:
                raise _Fail(_v1_error(500, f"Server error: {error}")) from None
        return values

    @staticmethod
    def _decode_v1(kind, value):
        """V1/resources/Converters.java toCqlValue, for the String and the JSON-typed overloads."""
        name = V1_TYPE_NAMES[kind]
        if value is None:
            return None
        if isinstance(value, str):
            text = value.strip(_JAVA_TRIM)  # value.trim() first, for every type
            if text.startswith("'") and text.endswith("'"):
                if len(text) == 1:
                    # substring(1, 0) on the Java 8 runtime: StringIndexOutOfBoundsException, not an IAE.
                    raise _ServerError("String index out of range: -1")
                text = text[1:-1].replace("''", "'")
            if kind == "text":
                return text
            if kind == "timestamp":
                return _parse_timestamp_v1(text)
            number = _java_long(text) if kind == "bigint" else _java_double_value_of(text)
            if number is None:
                raise _BadValue(f"Invalid {name} value '{text}': cannot parse")
            return number
        shown = _java_str(value)
        if kind == "text":
            raise _BadValue(f"Invalid {name} value '{shown}': expected a string")
        if kind == "bigint" and _is_integer(value):
            if not LONG_MIN <= value <= LONG_MAX:
                raise _BadValue(f"Invalid {name} value '{shown}': out of range")  # v1 range-checks, v2 wraps
            return value
        if kind == "bigint":
            raise _BadValue(f"Invalid {name} value '{shown}': expected an integer or a string")
        if kind == "double" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return _int_to_double(value) if _is_integer(value) else value
        if kind == "double":
            raise _BadValue(f"Invalid {name} value '{shown}': expected a number or a string")
        if _is_integer(value) and LONG_MIN <= value <= LONG_MAX:
            return value  # a timestamp as Integer or Long: epoch milliseconds
        raise _BadValue(f"Invalid {name} value '{shown}': expected an integer or a string")

    def _check_insert(self, table, values):
        """What Cassandra refuses in the INSERT: v2 gets it back from the bridge as INVALID_ARGUMENT
        (BRIDGE/service/ExceptionHandler.java), v1 as an ExecutionException around InvalidRequestException
        (V1 RequestHandler). The Cassandra texts are quoted from memory, not verified."""
        for column in values:
            if column not in table.types:  # only reachable with a null value, see _convert_v2
                raise _Fail(self._cql_error(f"Undefined column name {column}"))
        missing = [name for name in table.partition_key if name not in values]
        if missing:
            raise _Fail(self._cql_error("Some partition key parts are missing: " + ", ".join(missing)))
        missing = [name for name in table.clustering_key if name not in values]
        if missing:
            raise _Fail(self._cql_error("Some clustering keys are missing: " + ", ".join(missing)))
        for name in table.primary_key:
            if values[name] is None:
                raise _Fail(self._cql_error(f"Invalid null value in condition for column {name}"))
        if len(table.partition_key) == 1 and values[table.partition_key[0]] == "":
            raise _Fail(self._cql_error("Key may not be empty"))

    def _cql_error(self, message):
        if self.version == 2:
            return _grpc_error("INVALID_ARGUMENT", 400, "Invalid argument for gRPC operation", message)
        return _v1_error(
            400, f"Bad request: org.apache.cassandra.stargate.exceptions.InvalidRequestException: {message}"
        )

    def _check_message_size(self, table, values):
        """The bridge refuses a query message over 4 MiB with RESOURCE_EXHAUSTED, which StatusRuntimeExceptionMapper
        does not list: 500 "Unhandled gRPC failure". The size is estimated from the CQL text and the values."""
        # "INSERT INTO ks.table (c1, c2) VALUES (?, ?)", query parameters and framing: a few dozen bytes.
        size = 64 + len(table.keyspace) + len(table.name) + sum(len(column) + 5 for column in values)
        for value in values.values():
            if isinstance(value, str):
                size += len(value.encode("utf-8", "surrogatepass")) + 6
            else:
                size += 11
        if size > GRPC_MAX_MESSAGE:
            detail = f"gRPC message exceeds maximum size {GRPC_MAX_MESSAGE}: {size}"
            raise _Fail(_grpc_error("RESOURCE_EXHAUSTED", 500, "Unhandled gRPC failure", detail))

    def _store(self, table, values):
        """An INSERT is an upsert: the columns it names are overwritten (null writes a tombstone), others stay."""
        key = tuple(values[name] for name in table.primary_key)
        with self.lock:
            rows = self._rows.setdefault((table.keyspace, table.name), {})
            rows.setdefault(key, {}).update(values)
            self.writes += 1

    # -- GET /v2/keyspaces/{ks}/{table}/{key...} and /rows -------------------------------------------------------------

    def _get_rows(self, request, keyspace, table_name, key):
        """Sgv2RowsResourceImpl.getRows: the path segments are the primary key values, read like JSON strings
        (protoValueFromStringified, with handleSingleQuotes); a prefix of the primary key selects several rows."""
        self._check_token(request)
        table = self._data_table(keyspace, table_name)
        try:
            if len(key) < len(table.partition_key):
                raise _BadValue(
                    f"Number of key values provided ({len(key)}) less than number of partition keys "
                    f"({len(table.partition_key)})"
                )
            if len(key) > len(table.primary_key):
                raise _BadValue(
                    f"Number of key values provided ({len(key)}) exceeds number of partition keys "
                    f"({len(table.partition_key)}) and clustering keys ({len(table.clustering_key)})"
                )
            wanted = []
            for name, text in zip(table.primary_key, key):
                try:
                    if self.version == 2:
                        wanted.append(self._decode_v2(table.types[name], text))
                    else:
                        wanted.append(self._decode_v1(table.types[name], text))
                except _BadValue as bad:
                    raise _BadValue(f"Failed to deserialize field '{table.name}.{name}', problem: {bad}") from None
                except _ServerError as error:
                    raise _Fail(_v1_error(500, f"Server error: {error}")) from None
        except _BadValue as bad:
            if self.version == 2:
                raise _Fail(_api_error(400, f"Invalid path for row to find, problem: {bad}")) from None
            # V1 RowsResource.getRows catches the IllegalArgumentException of buildWhereForPath (text not verified).
            raise _Fail(_v1_error(400, f"not enough partition keys provided: {bad}")) from None
        with self.lock:
            stored = [
                dict(row)
                for row_key, row in self._rows.get((keyspace, table_name), {}).items()
                if list(row_key[: len(wanted)]) == wanted
            ]
        return self._rows_reply(request, table, stored)

    def _get_all_rows(self, request, keyspace, table_name):
        """Sgv2RowsResourceImpl.getAllRows runs SELECT * without looking the table up first, so v2 reports a missing
        table with Cassandra's words; v1 (RowsResource.getAllRows) looks it up and answers 404."""
        self._check_token(request)
        table = self._find_table(keyspace, table_name)
        if table is None and self.version == 2:
            if keyspace not in self.tables:
                raise _Fail(self._cql_error(f"Keyspace {keyspace} does not exist"))
            raise _Fail(self._cql_error(f"unconfigured table {table_name}"))
        if table is None:
            raise _Fail(self._v1_not_found(keyspace, table_name))
        with self.lock:
            stored = [dict(row) for row in self._rows.get((keyspace, table_name), {}).values()]
        return self._rows_reply(request, table, stored)

    def _rows_reply(self, request, table, stored):
        """{"count", "data"} (REST/service/models/Sgv2GetResponse.java, pageState left out when null), or the bare
        list with raw=true. Values as REST/grpc/FromProtoValueCodecs.java writes them; v1's Converters.toJsonValue
        writes a bigint as a JSON string instead."""
        rows = []
        for row in stored:
            rows.append({name: self._json_value(table.types[name], row.get(name)) for name in table.column_order()})
        if _flag(request, "raw"):
            return Reply(200, rows)
        return Reply(200, {"count": len(rows), "data": rows})

    def _json_value(self, kind, value):
        if value is None:
            return None
        if kind == "date":
            return value.isoformat()
        if kind == "decimal":
            return float(value)
        if kind == "timestamp":
            return _java_instant(value)
        if kind == "bigint" and self.version == 1:
            return str(value)
        if kind == "double" and not math.isfinite(value):
            return _java_double(value)  # Jackson quotes non-finite numbers: "NaN", "Infinity"
        return value

    # -- GET /v2/schemas/keyspaces/{ks}/tables/{table} -----------------------------------------------------------------

    def _get_table(self, request, keyspace, table_name):
        """REST/service/resources/schemas/Sgv2TablesResourceImpl.java getOneTable (404 through
        RestResourceBase.getTableAsyncCheckExistence) and V1/resources/v2/schemas/TablesResource.java. v2 names
        text columns "text" (REST/grpc/BridgeProtoTypeTranslator.java maps VARCHAR to it), v1 prints the type's
        cqlDefinition, "varchar"."""
        self._check_token(request)
        table = self._find_table(keyspace, table_name)
        if table is None and self.version == 2:
            raise _Fail(_api_error(404, f"Table '{table_name}' not found (keyspace '{keyspace}')"))
        if table is None:
            raise _Fail(self._v1_not_found(keyspace, table_name))
        text_name = "text" if self.version == 2 else "varchar"
        definition = {
            "name": table.name,
            "keyspace": table.keyspace,
            "columnDefinitions": [
                {
                    "name": name,
                    "typeDefinition": text_name if table.types[name] == "text" else table.types[name],
                    "static": False,
                }
                for name in table.column_order()
            ],
            "primaryKey": {"partitionKey": table.partition_key, "clusteringKey": table.clustering_key},
            # v1 hard-codes a TTL of 0; v2 reads the table's "ttl" option (0 here, not verified).
            "tableOptions": {
                "defaultTimeToLive": 0,
                "clusteringExpression": [{"column": name, "order": "ASC"} for name in table.clustering_key],
            },
        }
        return Reply(200, definition if _flag(request, "raw") else {"data": definition})


def _flag(request, name):
    """A JAX-RS boolean query parameter: "true" in any case is true, anything else false."""
    return request.query.get(name, ["false"])[0].lower() == "true"


def _refuse_non_numeric(token):
    raise ValueError(f"Non-standard token '{token}': enable `JsonReadFeature.ALLOW_NON_NUMERIC_NUMBERS` to allow")


def _python_value(kind, value):
    """Stored values for tests: timestamps become aware UTC datetimes (milliseconds kept) when Python can hold them."""
    if kind == "timestamp" and value is not None:
        try:
            return _EPOCH + datetime.timedelta(milliseconds=value)
        except OverflowError:
            return value
    return value


# -- the auth service -----------------------------------------------------------------------------------------------


class StargateAuth(Emulator):
    """POST /v1/auth {"username", "password"} -> 201 {"authToken": "<uuid>"} (AUTH/api/resources/AuthResource.java
    with the table-based service, AUTH/table/AuthnTableBasedService.java)."""

    name = "stargate-auth"

    # AuthResource's Cache-Control: JAX-RS CacheControl starts with no-transform; max-age is the 1800 s token TTL
    # minus 10 on success, 0 with no-store on failure.
    CACHE_OK = "no-transform, max-age=1790, s-maxage=1790"
    CACHE_NO_STORE = "no-store, no-transform, max-age=0, s-maxage=0"

    def __init__(self, users=None, on_token=None):
        super().__init__()
        self.users = dict(DEFAULT_USERS if users is None else users)
        self.on_token = on_token
        self.minted = []  # every token handed out, in order
        self._born_expired = 0

    def expire_next(self, times=1):
        """The next `times` tokens are handed out but never registered: their first use gets a 401."""
        with self.lock:
            self._born_expired += times

    def reset(self):
        super().reset()
        with self.lock:
            self.minted.clear()
            self._born_expired = 0

    def _refuse(self, status, description):
        return Reply(status, {"description": description}, {"Cache-Control": self.CACHE_NO_STORE})

    def handle(self, request):
        if request.path != "/v1/auth":
            return _jersey_error(404, "HTTP 404 Not Found")
        if request.method != "POST":
            return _jersey_error(405, "HTTP 405 Method Not Allowed")
        if request.content_type and request.content_type != "application/json":
            return _jersey_error(415, "HTTP 415 Unsupported Media Type")  # AuthResource is @Consumes(JSON)
        try:
            credentials = _read_credentials(request.body)
        except ValueError:
            # Dropwizard's JsonProcessingExceptionMapper, as seen from a real server in stargate/stargate issue 746.
            return _jersey_error(400, "Unable to process JSON")
        if credentials is None:
            return self._refuse(400, "Must provide a body to the request")
        username, password = credentials
        if not username:
            return self._refuse(400, "Must provide username in request")
        if not password:
            return self._refuse(400, "Must provide password in request")
        if username not in self.users or self.users[username] != password:
            reason = f"Provided username {username} and/or password are incorrect"
            return self._refuse(401, f"Failed to create token: {reason}")
        token = str(uuid.uuid4())  # AuthnTableBasedService.createToken: UUID.randomUUID()
        with self.lock:
            self.minted.append(token)
            born_expired = self._born_expired > 0
            if born_expired:
                self._born_expired -= 1
        if self.on_token is not None and not born_expired:
            self.on_token(token)
        return Reply(201, {"authToken": token}, {"Cache-Control": self.CACHE_OK})


def _read_credentials(body):
    """(username, password) from the Credentials JSON, None for an empty body or the literal null; ValueError when
    Jackson cannot bind it. Jackson binds any JSON scalar to a String field as its text."""
    if not body.strip():
        return None
    document = json.loads(body.decode("utf-8"), parse_constant=_refuse_non_numeric)
    if document is None:
        return None
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    fields = []
    for name in ("username", "password"):
        value = document.get(name)
        if isinstance(value, (dict, list)):
            raise ValueError(name)
        fields.append(None if value is None else _java_str(value))
    return tuple(fields)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Stargate REST API emulator (and its auth service)")
    parser.add_argument("--port", type=int, required=True, help="REST API port (8082 in real deployments)")
    parser.add_argument("--auth-port", type=int, help="also serve /v1/auth here (8081 in real deployments)")
    parser.add_argument("--stargate-version", type=int, choices=(1, 2), default=2)
    args = parser.parse_args(argv)
    stargate = Stargate(version=args.stargate_version)
    if args.auth_port is not None:
        auth = StargateAuth(on_token=stargate.add_token).start(args.auth_port)
        print(f"{auth.name} emulator listening on {auth.url}", flush=True)
    serve_forever(stargate, args.port)


if __name__ == "__main__":
    main()
