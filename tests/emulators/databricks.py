"""Databricks emulator: the SQL Statement Execution API 2.0, one SQL warehouse read, one Unity Catalog read, and the
workspace's OAuth token endpoint.

    emulator = Databricks(tokens=("dapi-test-token",), warehouses=("wh-1",), catalogs={"main": ("default",)},
                          service_principals={client_id: oauth_secret})
    emulator.tables            # "catalog.schema.table" -> {"columns": [(name, TYPE)], "rows": [{name: value}],
                               #   "not_null": {lower-case names}, "defaults": {name: value}, "format": "DELTA"}
    emulator.create_table(full_name, columns, rows, not_null=(...), defaults={...}, data_source_format="PARQUET")
                               # a table made by hand: NOT NULL columns, DEFAULTs, another format
    emulator.rows(full_name)   # the rows of one table (str, int, float, bool, Decimal, date, UTC-aware datetime)
    emulator.statements        # every accepted POST: {"statement_id", "statement", "parameters", "warehouse_id", ...}
    emulator.cancels           # statement ids, one per accepted cancel request
    emulator.token_requests    # every token issued at the token endpoint: {"client_id", "grant_type", "scope", "auth"}
                               # (and, for a token exchange, "issuer" and "subject" of the subject token)
    emulator.refused_tokens    # every bearer token an API call was refused with (401/403)
    switches: cold_start(polls=N | seconds=S), pending_forever(), fail_next_statement(code, message),
              set_warehouse_state(id, state), expire_token(token), close_results(), strict_string_casts,
              drop_table(name), set_token_lifetime(seconds), expire_oauth_tokens(status), issue_token() (a U2M
              login's token), move_token_endpoint(path)
    identity: trust_issuer(issuer), add_federation_policy(client_id, issuer, subject, audiences=None),
              add_account_federation_policy(issuer, audiences=None), users, account_id, workspace_id,
              azure(entra, tenant) (an Azure Databricks workspace that accepts that Entra ID's tokens)

OAuth (no bearer token; errors are RFC 6749 {"error", "error_description"}):
  GET  /oidc/.well-known/oauth-authorization-server   the authorization server metadata, token_endpoint included
  POST /oidc/v1/token                        client credentials grant: a token for a service principal;
                                             token exchange (RFC 8693): a federated OIDC token for a Databricks one
  GET  /.well-known/databricks-config        the host's metadata: account and workspace ids, OIDC endpoint,
                                             the default audience of federation policies
  GET  /aad/auth                             Azure only: 302 to the tenant's Entra ID sign-in page

Endpoints (anything else is 404 ENDPOINT_NOT_FOUND; every one needs `Authorization: Bearer <token>`, a personal
access token or an OAuth token this emulator issued and that has not expired):
  POST /api/2.0/sql/statements               run a statement, validated like the real API
  GET  /api/2.0/sql/statements/{id}          poll: the statement's current state (and result once it is done)
  POST /api/2.0/sql/statements/{id}/cancel   200 {}; CANCELED unless already in a terminal state
  GET  /api/2.0/sql/warehouses/{id}          the warehouse and its state
  GET  /api/2.1/unity-catalog/tables/{c.s.t} Unity Catalog table info

SQL: a deliberately small subset, the statements the databricks sink sends (keywords case-insensitive; names are
`catalog`.`schema`.`table` with backticks, a doubled backtick inside, or bare [A-Za-z0-9_] parts, or IDENTIFIER(:p)):
  CREATE TABLE [IF NOT EXISTS] <t> (<col> <TYPE> [NOT NULL], ...) [USING DELTA|PARQUET|CSV|JSON|AVRO|ORC|TEXT]
  MERGE INTO <t> [[AS] t] USING (SELECT :m AS col, ... [UNION ALL SELECT :m2 AS col, ...]) [AS] s
      ON t.col = s.col [AND ...] WHEN NOT MATCHED [BY TARGET] THEN INSERT * | INSERT (col, ...) VALUES (s.col, ...)
  DESCRIBE [TABLE] <t>
The grammar has no literals at all, so SQL built from payload text fails with PARSE_SYNTAX_ERROR: values can only
arrive as named parameters, which is what these tests exist to prove.

Behaviour copied from the real service, with where each fact comes from:
- [SE] The Statement Execution API reference, as carried by databricks-sdk-py docs/workspace/sql/statement_execution.rst
  (the text of docs.databricks.com/api/workspace/statementexecution): wait_timeout is "Ns" with N 0 or 5..50, default
  10s; with 0s the call returns at once with PENDING; with 5..50 it waits and returns the result, or FAILED, or when
  the time runs out continues (CONTINUE) or cancels (CANCEL, state CANCELED); a statement the warehouse fails to
  execute is HTTP 200 with status.state FAILED, a request the API refuses is non-200; a parameter is {name, value,
  type}, an omitted or null value is NULL, an omitted type means STRING, a typed value must survive `cast` to its
  type; the query text is at most 16 MiB; INLINE results are JSON_ARRAY only; cancel answers an empty body, may lose
  the race against completion, and callers must poll for the final state; terminal states are CANCELED, CLOSED and
  FAILED besides SUCCEEDED; JSON_ARRAY values are strings or null.
- [SDK] databricks-sdk-py databricks/sdk/service/sql.py: StatementState, ServiceError{error_code, message} whose
  error_code is a ServiceErrorCode (BAD_REQUEST, NOT_FOUND, ...), the warehouse State enum. The SQL error class is
  not the error_code: it leads the message, "[TABLE_OR_VIEW_NOT_FOUND] ...", which is what databricks-labs lsql's
  StatementExecutionExt matches on. [API] docs.databricks.com/api/statement-execution/v1/get-statement-result adds
  status.sql_state, "only populated when the statement status is FAILED".
- [ERR] The Spark/Databricks error-conditions reference (sql-error-conditions.md): the class names, SQLSTATEs and
  texts of PARSE_SYNTAX_ERROR, UNBOUND_SQL_PARAMETER, TABLE_OR_VIEW_NOT_FOUND, TABLE_OR_VIEW_ALREADY_EXISTS,
  SCHEMA_NOT_FOUND, CAST_INVALID_INPUT, AMBIGUOUS_REFERENCE. The NO_SUCH_CATALOG_EXCEPTION,
  DELTA_MERGE_UNRESOLVED_EXPRESSION and INCOMPATIBLE_DATA_FOR_TABLE.CANNOT_SAFELY_CAST texts as quoted from live
  Databricks in public repositories.
- [DELTA] delta-io/delta (spark/src/main/scala/org/apache/spark/sql/delta/): MERGE writes each target column
  through UpdateExpressionsSupport.castIfNeeded, an ANSI Cast under the default storeAssignmentPolicy (so a STRING
  source goes into an INT, DATE, ... column and malformed text fails at run time with CAST_INVALID_INPUT, 22018; an
  integral overflow is CheckOverflowInTableWrite's DELTA_CAST_OVERFLOW_IN_TABLE_WRITE, 22003); plain INSERT refuses
  the same write with INCOMPATIBLE_DATA_FOR_TABLE.CANNOT_SAFELY_CAST (`strict_string_casts`). INSERT * resolves
  every target column in the source (ResolveDeltaMergeInto.resolveStar; a missing one is
  DELTA_MERGE_UNRESOLVED_EXPRESSION "Cannot resolve <col> in INSERT clause given columns <source columns>", 42601);
  an explicit INSERT (cols) VALUES (...) resolves each named column against the target (the same class, given the
  target's columns), refuses a column named twice (DELTA_DUPLICATE_COLUMNS_ON_INSERT, 42701), and fills every
  target column it leaves out with its DEFAULT, else NULL (PreprocessTableMerge, getDefaultValueExprOrNullLit). A
  NULL written into a NOT NULL column fails the statement at run time with DELTA_NOT_NULL_CONSTRAINT_VIOLATED "NOT
  NULL constraint violated for column: <col>." (23502, DeltaInvariantCheckerExec). A target that is not a Delta
  table fails with DELTA_UNSUPPORTED_SOURCE "MERGE destination only supports Delta sources.\n<plan>" (0AKDD,
  PreprocessTableMerge; the classes and SQLSTATEs are delta-error-classes.json's).
- [CAST] Apache Spark's Cast.canAnsiCast: which types an ANSI CAST converts at all (anything to and from STRING,
  numbers among themselves and to BOOLEAN and TIMESTAMP, TIMESTAMP to numbers, DATE/TIMESTAMP/TIMESTAMP_NTZ among
  themselves, never a number to a DATE); a cast it refuses fails analysis with DATATYPE_MISMATCH.* (42K09).
- [UC] databricks-sdk-py databricks/sdk/service/catalog.py: TableInfo.table_type (MANAGED, EXTERNAL, VIEW, ...),
  data_source_format (DELTA, PARQUET, CSV, JSON, AVRO, ORC, TEXT, ...), ColumnInfo.nullable ("Whether field may be
  Null (default: true)"), type_text, type_name (a ColumnTypeName: LONG for BIGINT), type_json (the Spark StructField
  as JSON: name, type, nullable, metadata, where Spark keeps a column DEFAULT as CURRENT_DEFAULT). A table of
  another format than Delta is an external table in Unity Catalog (docs.databricks.com, "Work with external tables").
- [AUTH] databricks/databricks-sdk-go issue 873: a bad token is 403 {"error_code": 403, "message": "Invalid access
  token."} (an integer error_code); an expired token gives the same 403 (DataThirstLtd/databricks.vsts.tools issues 24
  and 26). No credential is 401 "Credential was not sent or was of an unsupported type for this API." (quoted from
  live responses in several public repositories).
- [OAUTH] docs.databricks.com/dev-tools/auth/oauth-m2m (manual token generation) and databricks-sdk-py oauth.py
  (ClientCredentials, retrieve_token), databricks-sdk-go config/auth_m2m_test.go, databricks/cli
  libs/testserver/fake_oidc.go: POST {host}/oidc/v1/token, form body grant_type=client_credentials&scope=all-apis,
  the client id and secret as HTTP Basic (use_header=True); the answer {"access_token", "scope", "token_type":
  "Bearer", "expires_in": 3600}; the endpoint is also named by the discovery document
  {host}/oidc/.well-known/oauth-authorization-server ("token_endpoint"). Tokens last one hour. A wrong id or secret:
  {"error": "invalid_client", "error_description": "Client authentication failed"} (seen from Databricks on AWS,
  databricks-sql-nodejs issue 279). [RFC6749] RFC 6749 sections 2.3.1, 3.2, 5.1 and 5.2: one client authentication
  method per request, no repeated parameter, Cache-Control: no-store, error codes invalid_request, invalid_client
  (401, with WWW-Authenticate when Basic was used), unsupported_grant_type, invalid_scope.
- [WIF] docs.databricks.com "Authenticate access to Databricks using OAuth token federation", "Configure a federation
  policy" and "Enable workload identity federation for GitHub Actions"; databricks-sdk-py oidc.py and
  credentials_provider.py: the exchange is POST /oidc/v1/token, form grant_type=urn:ietf:params:oauth:grant-type:
  token-exchange, subject_token=<JWT>, subject_token_type=urn:ietf:params:oauth:token-type:jwt, scope, and the
  service principal's application id as client_id (none: account-wide federation, the token names a user); no
  client authentication. A service principal federation policy names an issuer, audiences (by default the account
  id), a subject and the claim holding it (sub). databricks-sdk-py oauth.py HostMetadata:
  /.well-known/databricks-config answers oidc_endpoint, account_id, workspace_id, cloud and
  token_federation_default_oidc_audiences. [RFC8693] section 2.2.2: a subject token that is invalid or that policy
  does not accept is an invalid_request error.
- [AZ] databricks-sdk-py config.py load_azure_tenant_id: an Azure workspace answers GET /aad/auth with a redirect to
  https://login.microsoftonline.com/<tenant id>/oauth2/authorize?…; azure.py: the SDK sends an Entra ID token of the
  service principal for the service-management resource as X-Databricks-Azure-SP-Management-Token, and
  X-Databricks-Azure-Workspace-Resource-Id when it knows the workspace's ARM resource id.
- [QT] databricks-sdk-py service/sql.py execute_statement and QueryTag: query_tags is an array of {key, value}; "A
  query tag consists of a non-empty key and, optionally, a value. To represent a NULL value, either omit the value
  field or manually set it to null or white space. ... Only one value per key will be recorded. A sequence in
  excess of 20 query tags will be coerced to 20." [UH] databricks-sdk-py config.py: DATABRICKS_WORKSPACE_ID travels
  as X-Databricks-Workspace-Id on workspace requests (recorded here, as a unified host reads it).
- [EXP] An expired OAuth token is refused with 403 (databricks-vscode issue 583 "Error 403 Token is expiring within
  30 seconds. (token expired)"; n8n issues 34147 and 34325: "Databricks returns HTTP 403 when OAuth tokens expire");
  databricks-sdk-go issue 1549 reports 401s at rotation too, so `expire_oauth_tokens(status=401)` switches.
- [TNF] A MERGE into a table that does not exist: HTTP 200, FAILED, error_code BAD_REQUEST, message
  "[TABLE_OR_VIEW_NOT_FOUND] The table or view `c`.`s`.`t` cannot be found. ... SQLSTATE: 42P01; line 1 pos 11"
  and status.sql_state 42P01 (live responses quoted in public test suites; the class is Spark's).
- [MAL] A body the request parser cannot read: 400 MALFORMED_REQUEST (databrickslabs/dbx 681, PrefectHQ/prefect 5836:
  "Could not parse request object: ..."; databricks-cli 615: "Invalid JSON given in the body of the request - expected
  a map"). [EP] An unknown path: "No API found for 'POST /sql/statements/execute'" (databricks-agent-skills 259).

Not verified, chosen to be strict and explicit: the texts of the 400 validation messages; that an unknown warehouse is
400 INVALID_PARAMETER_VALUE "<id> is not a valid endpoint id." (seen in third-party tests only); that a JSON number
as a parameter value is refused as MALFORMED_REQUEST; that a bad parameter `type` FAILS with UNSUPPORTED_DATATYPE
rather than being a 400; the 404 codes of the statement, warehouse and Unity Catalog reads (TABLE_DOES_NOT_EXIST is
what every public mock uses); that SQL failures all carry error_code BAD_REQUEST; the shape of a DDL statement's
manifest; UNION ALL type widening beyond "same type" and "numeric with numeric"; whether a cast to BIGINT accepts
"3.0" (refused here) and a TIMESTAMP more than 6 fractional digits (refused here); that a STRING parameter without
a value is a STRING NULL (so it too is refused for a BIGINT column in strict mode); the OAuth error descriptions
other than "Client authentication failed"; that a missing scope is invalid_scope (RFC 6749 also allows a default);
which scopes exist beyond all-apis, sql and offline_access; the answer to a GET of the token endpoint (405 here); the
message that comes with an expired OAuth token (the PAT's "Invalid access token." here); that Databricks SQL answers
a MERGE into a non-Delta table with Delta's DELTA_UNSUPPORTED_SOURCE (open-source Spark without Delta's rule would
say "MERGE INTO TABLE is not supported temporarily.") and the plan line after it; the sentence of
DATATYPE_MISMATCH.CAST_WITHOUT_SUGGESTION (Spark suggests functions or settings for some pairs); that a comparison
in the ON clause casts a STRING side to the other side's type (ANSI type coercion) and widens DATE to TIMESTAMP;
the error descriptions of a refused token exchange; how a unified host answers a request for a workspace it does
not serve; the query of the /aad/auth redirect.
"""

import argparse
import datetime
import decimal
import json
import math
import re
import time
import urllib.parse
import uuid

from .base import Emulator, Reply, basic_credentials, serve_forever
from .identity import AZURE_DATABRICKS, AZURE_MANAGEMENT, TokenError, read_claims

DEFAULT_TOKENS = ("dapi-test-token",)
# A service principal's OAuth client id (its application id, a UUID) and OAuth secret ("dose…").
DEFAULT_SERVICE_PRINCIPALS = {"8a3b5c7d-1e2f-4a6b-9c8d-0e1f2a3b4c5d": "dose0123456789abcdef0123456789abcdef"}
DEFAULT_WAREHOUSES = ("wh-1",)
DEFAULT_CATALOGS = {"main": ("default",)}

MAX_PARAMETERS = 256  # the SPEC's limit for one statement
MAX_STATEMENT_BYTES = 16 * 1024 * 1024  # [SE] "The maximum query text size is 16 MiB"
DEFAULT_WAIT_TIMEOUT = "10s"  # [SE]
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELED", "CLOSED")  # [SDK] StatementState
WAREHOUSE_STATES = ("DELETED", "DELETING", "RUNNING", "STARTING", "STOPPED", "STOPPING")  # [SDK] State
UTC = datetime.timezone.utc
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=UTC)
OIDC_TOKEN_PATH = "/oidc/v1/token"  # [OAUTH]
OIDC_DISCOVERY_PATH = "/oidc/.well-known/oauth-authorization-server"
OAUTH_LIFETIME = 3600  # [OAUTH] "Each access token is valid for one hour"
OAUTH_SCOPES = ("all-apis", "sql", "offline_access")
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # [WIF]
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
HOST_METADATA_PATH = "/.well-known/databricks-config"  # [WIF]
DEFAULT_ACCOUNT_ID = "7f3c2a1b-5d4e-4f6a-8b9c-0d1e2f3a4b5c"
DEFAULT_WORKSPACE_ID = "1234567890123456"
MAX_QUERY_TAGS = 20  # [QT]


class ApiError(Exception):
    """A request the API refuses: a non-200 answer with the JSON body {error_code, message}."""

    def __init__(self, status, error_code, message):
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message

    def reply(self):
        return Reply(self.status, {"error_code": self.error_code, "message": self.message})


class SqlError(Exception):
    """A statement that fails while running: HTTP 200, state FAILED, message "[CLASS] text SQLSTATE: xxxxx"."""

    def __init__(self, error_class, text, sql_state, context=""):
        self.message = f"[{error_class}] {text} SQLSTATE: {sql_state}{context}"
        super().__init__(self.message)
        self.error_class = error_class
        self.sql_state = sql_state


# -- SQL types ---------------------------------------------------------------------------------------------------

# Databricks SQL type names, each followed by its synonyms; every spelling maps to the first.
_SYNONYMS = "STRING; BIGINT LONG; INT INTEGER; SMALLINT SHORT; TINYINT BYTE; DOUBLE; FLOAT REAL; BOOLEAN; DATE; " + (
    "TIMESTAMP TIMESTAMP_LTZ; TIMESTAMP_NTZ; DECIMAL DEC NUMERIC"
)
TYPE_ALIASES = {alias: group.split()[0] for group in _SYNONYMS.split(";") for alias in group.split()}
INTEGRAL_BITS = {"TINYINT": 8, "SMALLINT": 16, "INT": 32, "BIGINT": 64}
NUMERIC = (*INTEGRAL_BITS, "DOUBLE", "FLOAT", "DECIMAL")
DATETIME = ("DATE", "TIMESTAMP", "TIMESTAMP_NTZ")
# CREATE TABLE ... USING <format>: Delta, or a plain file format whose table Delta's DML refuses [UC].
FILE_FORMATS = ("DELTA", "PARQUET", "CSV", "JSON", "AVRO", "ORC", "TEXT")
# Unity Catalog's ColumnTypeName and the Spark JSON type name of each type (a DECIMAL's JSON name is "decimal(p,s)").
UC_TYPE_NAMES = {"BIGINT": "LONG", "INT": "INT", "SMALLINT": "SHORT", "TINYINT": "BYTE"}
JSON_TYPE_NAMES = {"BIGINT": "long", "INT": "integer", "SMALLINT": "short", "TINYINT": "byte"}


def canonical_type(text):
    """'bigint' -> 'BIGINT', 'decimal( 10 , 2 )' -> 'DECIMAL(10,2)', 'map<string, bigint>' -> 'MAP<STRING,BIGINT>';
    None for a type this emulator does not know. Collections hold no values here: no value casts to one (a table
    may be made with one, a MERGE into it fails at analysis)."""
    collection = re.fullmatch(r"\s*(ARRAY|MAP)\s*<(.*)>\s*", text, re.IGNORECASE)
    if collection:
        parts = [canonical_type(part) for part in collection.group(2).split(",")]
        if None in parts or len(parts) != (2 if collection.group(1).upper() == "MAP" else 1):
            return None
        return f"{collection.group(1).upper()}<{','.join(parts)}>"
    match = re.fullmatch(r"\s*([A-Za-z_]+)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?\s*", text)
    if not match or match.group(1).upper() not in TYPE_ALIASES:
        return None
    name = TYPE_ALIASES[match.group(1).upper()]
    if name != "DECIMAL":
        return None if match.group(2) else name
    precision = int(match.group(2) or 10)  # DECIMAL alone is DECIMAL(10,0)
    scale = int(match.group(3) or 0)
    if not 1 <= precision <= 38 or scale > precision:
        return None
    return f"DECIMAL({precision},{scale})"


def base_type(sql_type):
    return sql_type.split("(")[0].split("<")[0]


def decimal_spec(sql_type):
    precision, scale = sql_type[len("DECIMAL(") : -1].split(",")
    return int(precision), int(scale)


def fit_decimal(number, sql_type):
    """Round half up to the type's scale; None when the digits left of the point do not fit."""
    precision, scale = decimal_spec(sql_type)
    rounded = number.quantize(decimal.Decimal(1).scaleb(-scale), rounding=decimal.ROUND_HALF_UP)
    return rounded if abs(rounded) < decimal.Decimal(10) ** (precision - scale) else None


_INTEGER = re.compile(r"[+-]?\d+")
_DOUBLE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[dDfF]?")  # what Java's Double.parseDouble reads
_DOUBLE_WORDS = {
    "nan": math.nan,
    "inf": math.inf,
    "+inf": math.inf,
    "infinity": math.inf,
    "+infinity": math.inf,
    "-inf": -math.inf,
    "-infinity": -math.inf,
}
_BOOLEAN_WORDS = {"t": True, "true": True, "y": True, "yes": True, "1": True}
_BOOLEAN_WORDS.update({"f": False, "false": False, "n": False, "no": False, "0": False})
_DATE = re.compile(r"(\d{4})(?:-(\d{1,2})(?:-(\d{1,2})(?:[T ].*)?)?)?", re.DOTALL)
_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{1,2})-(\d{1,2})"
    r"(?:[T ](\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{0,6}))?)?)?"
    r"\s*(Z|UTC|[+-]\d{1,2}(?::?\d{2})?)?",
    re.IGNORECASE,
)


def parse_timestamp(text, with_zone):
    """ISO-8601 as Spark's string-to-timestamp cast reads it: date, optional T or space time with 0-6 fractional
    digits, optional Z / UTC / +hh[:mm]. A time without a zone is taken as UTC (the warehouse's session zone)."""
    match = _TIMESTAMP.fullmatch(text)
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    moment = datetime.datetime(
        int(year),
        int(month),
        int(day),
        int(hour or 0),
        int(minute or 0),
        int(second or 0),
        int((fraction or "").ljust(6, "0")),
    )
    if not with_zone:
        return moment if zone is None else None
    if zone is None or zone.upper() in ("Z", "UTC"):
        return moment.replace(tzinfo=UTC)
    sign = -1 if zone[0] == "-" else 1
    digits = zone[1:].replace(":", "")
    hours, minutes = (int(digits[:-2]), int(digits[-2:])) if len(digits) > 2 else (int(digits), 0)
    if hours > 18 or minutes > 59:
        return None
    offset = datetime.timezone(sign * datetime.timedelta(hours=hours, minutes=minutes))
    return moment.replace(tzinfo=offset).astimezone(UTC)


def _parse_integral(text, sql_type):
    if not _INTEGER.fullmatch(text):
        return None
    number = int(text)
    limit = 2 ** (INTEGRAL_BITS[sql_type] - 1)
    return number if -limit <= number < limit else None  # [SE] out of range fails the cast


def _parse_double(text, sql_type):
    if text.lower() in _DOUBLE_WORDS:  # Spark's cast accepts NaN and Infinity spelled these ways
        return _DOUBLE_WORDS[text.lower()]
    return float(text.rstrip("dDfF")) if _DOUBLE.fullmatch(text) else None


def _parse_decimal(text, sql_type):
    if not _DOUBLE.fullmatch(text) or text[-1] in "dDfF":
        return None
    fitted = fit_decimal(decimal.Decimal(text), sql_type)
    if fitted is None:
        precision, scale = decimal_spec(sql_type)
        raise SqlError(
            "NUMERIC_VALUE_OUT_OF_RANGE",
            f"The value {text} cannot be represented as Decimal({precision}, {scale}).",  # this emulator's words
            "22003",
        )
    return fitted


def _parse_date(text, sql_type):
    match = _DATE.fullmatch(text)
    if not match:
        return None
    year, month, day = match.groups()
    return datetime.date(int(year), int(month or 1), int(day or 1))


CASTS = {
    **{name: _parse_integral for name in INTEGRAL_BITS},
    "DOUBLE": _parse_double,
    "FLOAT": _parse_double,
    "DECIMAL": _parse_decimal,
    "BOOLEAN": lambda text, sql_type: _BOOLEAN_WORDS.get(text.lower()),
    "DATE": _parse_date,
    "TIMESTAMP": lambda text, sql_type: parse_timestamp(text, with_zone=True),
    "TIMESTAMP_NTZ": lambda text, sql_type: parse_timestamp(text, with_zone=False),
}


def cast_string(text, sql_type):
    """CAST(text AS sql_type) under ANSI rules; malformed text fails the statement with CAST_INVALID_INPUT [ERR]."""
    if sql_type == "STRING":
        return text
    try:
        value = CASTS[base_type(sql_type)](text.strip(), sql_type)  # the cast ignores surrounding white space
    except (ValueError, OverflowError):  # a field out of range (month 13, 25:00, a year 0 after the offset)
        value = None
    if value is None:
        raise SqlError(
            "CAST_INVALID_INPUT",
            f'The value \'{text}\' of the type "STRING" cannot be cast to "{sql_type}" because it is malformed. '
            "Correct the value as per the syntax, or change its target type. "
            "Use `try_cast` to tolerate malformed input and return NULL instead.",
            "22018",
        )
    return value


def sql_text(value):
    """A typed value as CAST(value AS STRING) writes it (what a STRING column stores)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _double_text(value)
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    if isinstance(value, datetime.datetime):
        moment = value.astimezone(UTC) if value.tzinfo else value
        text = f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d} {moment:%H:%M:%S}"
        return text + (f".{moment.microsecond:06d}".rstrip("0") if moment.microsecond else "")
    if isinstance(value, datetime.date):
        return value.isoformat()
    return str(value)


def _double_text(number):
    """Java's Double.toString: 42.0, 0.001, 1.0E7, 1.5E-4, NaN, Infinity."""
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    if number == 0 or 1e-3 <= abs(number) < 1e7:
        text = repr(number)
        return text if "." in text else text + ".0"
    sign, digits, exponent = decimal.Decimal(repr(number)).normalize().as_tuple()
    fraction = "".join(map(str, digits[1:])) or "0"
    return f"{'-' if sign else ''}{digits[0]}.{fraction}E{len(digits) - 1 + exponent}"


def can_cast(source, target):
    """Spark's Cast.canAnsiCast over the types modelled here: what an ANSI CAST may convert at all [CAST]."""
    if "<" in source + target:
        return source == target
    source, target = base_type(source), base_type(target)
    if source == target or "STRING" in (source, target):
        return True
    if source in NUMERIC and target in NUMERIC:
        return True
    if "BOOLEAN" in (source, target):
        return (source if target == "BOOLEAN" else target) in NUMERIC
    if target == "TIMESTAMP":
        return source in ("DATE", "TIMESTAMP_NTZ") or source in NUMERIC
    if target == "TIMESTAMP_NTZ":
        return source in ("DATE", "TIMESTAMP")
    if target == "DATE":
        return source in ("TIMESTAMP", "TIMESTAMP_NTZ")
    return target in NUMERIC and source == "TIMESTAMP"


def can_store(source, target, strict):
    """Whether MERGE may write a `source` value into a `target` column (checked before any row is). Delta's MERGE
    casts with an ANSI CAST [DELTA], so anything `can_cast` allows; `strict` refuses strings into other types as
    Spark's INSERT does."""
    if strict and base_type(source) == "STRING" and base_type(target) != "STRING":
        return False
    return can_cast(source, target)


def store(value, source, target, column):
    """Convert one value for a target column as an ANSI CAST does; the pair has passed can_store."""
    if value is None:
        return None
    source_base, target_base = base_type(source), base_type(target)
    if source_base == "STRING" and target_base != "STRING":
        return cast_string(value, target)
    if target_base == "STRING":
        return sql_text(value)
    if isinstance(value, bool) and target_base in NUMERIC:
        value = int(value)
    if isinstance(value, datetime.datetime) and target_base in NUMERIC:
        seconds = (value - _EPOCH).total_seconds()  # TIMESTAMP -> number: seconds since the epoch
        value = seconds if target_base in ("DOUBLE", "FLOAT") else math.floor(seconds)
    if target_base == "BOOLEAN":
        return value != 0 if not isinstance(value, bool) else value
    if target_base in INTEGRAL_BITS:
        limit = 2 ** (INTEGRAL_BITS[target_base] - 1)
        if isinstance(value, float) and not math.isfinite(value) or not -limit <= int(value) < limit:
            raise _overflow(source, target, column)
        return int(value)  # fractions are cut toward zero, as CAST does
    if target_base in ("DOUBLE", "FLOAT"):
        return float(value)
    if target_base == "DECIMAL":
        number = decimal.Decimal(repr(value)) if isinstance(value, float) else decimal.Decimal(value)
        fitted = fit_decimal(number, target) if number.is_finite() else None
        if fitted is None:
            raise _overflow(source, target, column)
        return fitted
    if target_base == "DATE":
        if isinstance(value, datetime.datetime):
            return (value.astimezone(UTC) if value.tzinfo else value).date()
        return value
    if target_base == "TIMESTAMP":
        if isinstance(value, (int, float, decimal.Decimal)):
            return _EPOCH + datetime.timedelta(seconds=float(value))
        if not isinstance(value, datetime.datetime):
            return datetime.datetime.combine(value, datetime.time(), UTC)
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if target_base == "TIMESTAMP_NTZ":
        if not isinstance(value, datetime.datetime):
            return datetime.datetime.combine(value, datetime.time())
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    return value


def _overflow(source, target, column):
    # [DELTA] the class and its parameters come from ImplicitDMLCastingSuite; the sentence is this emulator's.
    return SqlError(
        "DELTA_CAST_OVERFLOW_IN_TABLE_WRITE",
        f'Failed to write a value of "{source}" type into the "{target}" type column `{column}` due to an overflow.',
        "22003",
    )


def wider_type(first, second):
    """The type UNION ALL gives a column whose inputs have these two types; None when they do not mix."""
    if first == second:
        return first
    pair = {base_type(first), base_type(second)}
    if pair <= set(INTEGRAL_BITS):
        return max(first, second, key=lambda name: INTEGRAL_BITS[name])
    if pair <= set(NUMERIC):
        return "DOUBLE" if pair & {"DOUBLE", "FLOAT"} else "DECIMAL(38,18)"
    if pair <= set(DATETIME):
        return "TIMESTAMP" if "TIMESTAMP" in pair else "TIMESTAMP_NTZ"
    return None


def comparison_type(first, second):
    """The type `a = b` compares in: the wider of two types that mix, else the other side's type when one is a
    STRING (the string is cast to it); None when the two do not compare."""
    wider = wider_type(first, second)
    if wider is not None:
        return wider
    if base_type(first) == "STRING":
        return second
    if base_type(second) == "STRING":
        return first
    return None


class _NeverEqual:
    """NULL in an ON clause: equal to nothing, itself included."""

    def __eq__(self, other):
        return False

    def __hash__(self):
        return id(self)


_NAN = object()


def _match_key(values):
    """A hashable key with `=`'s rules in an ON clause: NULL matches nothing, NaN matches NaN (Spark), timestamps
    compare instants (stored as aware UTC datetimes)."""
    key = []
    for value in values:
        if value is None:
            key.append(_NeverEqual())
        elif isinstance(value, float) and math.isnan(value):
            key.append(_NAN)
        else:
            key.append(value)
    return tuple(key)


def ordinal(number):
    words = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
    return words[number - 1] if number <= len(words) else f"{number}th"


def quote_name(parts):
    return ".".join("`" + part.replace("`", "``") + "`" for part in parts)


# -- SQL text ----------------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"(?P<skip>\s+|--[^\n]*|/\*.*?\*/)"
    r"|(?P<quoted>`(?:[^`]|``)*`)"
    r"|(?P<marker>:[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<word>[A-Za-z0-9_]+)"
    r"|(?P<literal>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")"  # recognised only so that it can be refused by name
    r"|(?P<punct>[(),.=*;])",
    re.DOTALL,
)


class Token:
    def __init__(self, kind, text, offset):
        self.kind = kind
        self.text = text
        self.offset = offset


def syntax_error(text, offset, near, expected):
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1)
    return SqlError(
        "PARSE_SYNTAX_ERROR",
        f"Syntax error at or near {near}: this emulator expected {expected}.",
        "42601",
        f" (line {line}, pos {column})",
    )


def tokenize(text):
    tokens, offset = [], 0
    while offset < len(text):
        match = _TOKEN.match(text, offset)
        if not match:
            raise syntax_error(text, offset, f"'{text[offset]}'", "a supported token")
        if match.lastgroup != "skip":
            tokens.append(Token(match.lastgroup, match.group(), offset))
        offset = match.end()
    return tokens


class Parser:
    """Recursive descent over the supported subset; any other input raises PARSE_SYNTAX_ERROR."""

    def __init__(self, text):
        self.text = text
        self.tokens = tokenize(text)
        self.position = 0
        self.markers = [token for token in self.tokens if token.kind == "marker"]

    # -- token helpers

    def peek(self, ahead=0):
        index = self.position + ahead
        return self.tokens[index] if index < len(self.tokens) else None

    def position_text(self):
        """Where the next token starts, as Databricks appends it to an error: "; line 1 pos 11"."""
        offset = self.peek().offset if self.peek() is not None else len(self.text)
        line = self.text.count("\n", 0, offset) + 1
        column = offset - (self.text.rfind("\n", 0, offset) + 1)
        return f"; line {line} pos {column}"

    def fail(self, expected):
        token = self.peek()
        if token is None:
            raise syntax_error(self.text, len(self.text), "end of input", expected)
        raise syntax_error(self.text, token.offset, f"'{token.text}'", expected)

    def at_word(self, *words):
        token = self.peek()
        return token is not None and token.kind == "word" and token.text.upper() in words

    def accept(self, *words):
        if self.at_word(*words):
            self.position += 1
            return True
        return False

    def keyword(self, *words):
        if not self.accept(*words):
            self.fail(" or ".join(words))

    def accept_punct(self, symbol):
        token = self.peek()
        if token is not None and token.kind == "punct" and token.text == symbol:
            self.position += 1
            return True
        return False

    def punct(self, symbol):
        if not self.accept_punct(symbol):
            self.fail(f"'{symbol}'")

    def identifier(self):
        token = self.peek()
        if token is None or token.kind not in ("quoted", "word"):
            self.fail("an identifier")
        self.position += 1
        return token.text[1:-1].replace("``", "`") if token.kind == "quoted" else token.text

    def marker(self):
        token = self.peek()
        if token is None or token.kind != "marker":
            self.fail("a :parameter marker")
        self.position += 1
        return token.text[1:]

    # -- grammar

    def statement(self):
        if self.at_word("CREATE"):
            tree = self.create()
        elif self.at_word("MERGE"):
            tree = self.merge()
        elif self.at_word("DESCRIBE", "DESC"):
            tree = self.describe()
        else:
            self.fail("CREATE TABLE, MERGE INTO or DESCRIBE TABLE")
        self.accept_punct(";")
        if self.peek() is not None:
            self.fail("the end of the statement")
        return tree

    def name(self):
        parts = [self.identifier()]
        while self.accept_punct("."):
            parts.append(self.identifier())
        if len(parts) > 3:
            raise syntax_error(self.text, self.peek(-1).offset, f"'{parts[-1]}'", "at most catalog.schema.table")
        return parts

    def table(self):
        """A table name, or IDENTIFIER(:param) whose STRING value is the name."""
        following = self.peek(1)
        if self.at_word("IDENTIFIER") and following is not None and following.text == "(":
            self.position += 2
            marker = self.marker()
            self.punct(")")
            return ("parameter", marker)
        return ("name", self.name())

    def create(self):
        self.keyword("CREATE")
        self.keyword("TABLE")
        if_not_exists = self.accept("IF")
        if if_not_exists:
            self.keyword("NOT")
            self.keyword("EXISTS")
        table = self.table()
        self.punct("(")
        columns = [self.column_definition()]
        while self.accept_punct(","):
            columns.append(self.column_definition())
        self.punct(")")
        data_source_format = "DELTA"
        if self.accept("USING"):
            token = self.peek()
            if token is None or token.kind != "word" or token.text.upper() not in FILE_FORMATS:
                self.fail(" or ".join(FILE_FORMATS))
            self.position += 1
            data_source_format = token.text.upper()
        return {
            "kind": "create",
            "table": table,
            "if_not_exists": if_not_exists,
            "columns": columns,
            "format": data_source_format,
        }

    def column_definition(self):
        """name TYPE [NOT NULL]: (name, TYPE, nullable)."""
        name, sql_type = self.identifier(), self.data_type()
        if self.accept("NOT"):
            self.keyword("NULL")
            return name, sql_type, False
        return name, sql_type, True

    def data_type(self):
        token = self.peek()
        if token is None or token.kind != "word":
            self.fail("a data type")
        self.position += 1
        if not self.accept_punct("("):
            return token.text
        arguments = [self.number()]
        while self.accept_punct(","):
            arguments.append(self.number())
        self.punct(")")
        return f"{token.text}({','.join(arguments)})"

    def number(self):
        token = self.peek()
        if token is None or token.kind != "word" or not token.text.isdigit():
            self.fail("a number")
        self.position += 1
        return token.text

    def merge(self):
        self.keyword("MERGE")
        self.keyword("INTO")
        table_at = self.position_text()
        table = self.table()
        alias = self.alias(before="USING")
        self.keyword("USING")
        self.punct("(")
        selects = [self.select()]
        while self.accept("UNION"):
            self.keyword("ALL")
            selects.append(self.select())
        self.punct(")")
        source_alias = self.alias(before="ON")
        if source_alias is None:
            self.fail("an alias for the USING subquery")
        self.keyword("ON")
        conditions = [self.equality()]
        while self.accept("AND"):
            conditions.append(self.equality())
        self.keyword("WHEN")
        self.keyword("NOT")
        self.keyword("MATCHED")
        if self.accept("BY"):
            self.keyword("TARGET")
        self.keyword("THEN")
        self.keyword("INSERT")
        insert = None if self.accept_punct("*") else self.insert_columns()
        return {
            "kind": "merge",
            "table": table,
            "table_at": table_at,
            "alias": alias,
            "selects": selects,
            "source_alias": source_alias,
            "on": conditions,
            "insert": insert,  # None for INSERT *, else [(target column, (qualifier or None, source column))]
        }

    def insert_columns(self):
        """(col, ...) VALUES ([s.]col, ...): column references only, as there are no literals here."""
        self.punct("(")
        columns = [self.identifier()]
        while self.accept_punct(","):
            columns.append(self.identifier())
        self.punct(")")
        self.keyword("VALUES")
        values_at = self.peek().offset if self.peek() is not None else len(self.text)
        self.punct("(")
        values = [self.value_reference()]
        while self.accept_punct(","):
            values.append(self.value_reference())
        self.punct(")")
        if len(values) != len(columns):
            raise syntax_error(self.text, values_at, "'VALUES'", f"{len(columns)} values, one for each column")
        return list(zip(columns, values))

    def value_reference(self):
        first = self.identifier()
        if self.accept_punct("."):
            return first, self.identifier()
        return None, first

    def alias(self, before):
        if self.accept("AS"):
            return self.identifier()
        token = self.peek()
        if token is not None and (token.kind == "quoted" or token.kind == "word" and not self.at_word(before)):
            return self.identifier()
        return None

    def select(self):
        """SELECT :marker [AS] column, ...: the only source a MERGE may have here (no literals, no FROM)."""
        self.keyword("SELECT")
        items = [self.select_item()]
        while self.accept_punct(","):
            items.append(self.select_item())
        return items

    def select_item(self):
        """:marker [[AS] column]. Without an alias the column is named after the marker, so it matches no table
        column (the later SELECTs of a UNION ALL may leave their aliases out: the first one names the columns)."""
        marker = self.marker()
        if self.accept("AS"):
            return (marker, self.identifier())
        token = self.peek()
        if token is not None and (token.kind == "quoted" or token.kind == "word" and not self.at_word("UNION")):
            return (marker, self.identifier())
        return (marker, f":{marker}")

    def equality(self):
        left = self.column_reference()
        self.punct("=")
        return (left, self.column_reference())

    def column_reference(self):
        qualifier = self.identifier()
        self.punct(".")
        return (qualifier, self.identifier())

    def describe(self):
        self.keyword("DESCRIBE", "DESC")
        self.accept("TABLE")
        table_at = self.position_text()
        return {"kind": "describe", "table": self.table(), "table_at": table_at}


# -- statements ----------------------------------------------------------------------------------------------------


class Statement:
    """One submitted statement and where it is in PENDING -> (RUNNING) -> terminal."""

    def __init__(self, statement_id, body, warehouse_id):
        self.id = statement_id
        self.body = body
        self.warehouse_id = warehouse_id
        self.state = "PENDING"
        self.error = None
        self.sql_state = None
        self.manifest = None
        self.result = None
        self.forced_failure = None  # fail_next_statement's {"error_code", "message", "sql_state"}
        self.forever = False  # pending_forever(): never leaves PENDING unless canceled
        self.pending_polls = 0  # cold start: GET polls still to answer PENDING
        self.ready_at = None  # cold start in seconds: time.monotonic() when the warehouse is up
        self.show_running = False  # cold start: answer RUNNING once before the final state


class Databricks(Emulator):
    """The Databricks emulator (see the module docstring). `catalogs` maps catalog -> schema names; None means
    {"main": ("default",)}. Unqualified names resolve against the request's catalog/schema, else main.default.

    strict_string_casts (default False, restored by reset): Delta's MERGE casts a STRING value headed for a column of
    another type with an ANSI CAST [DELTA], so "3" lands in a BIGINT column and "abc" fails with CAST_INVALID_INPUT.
    True refuses such a value at analysis with INCOMPATIBLE_DATA_FOR_TABLE.CANNOT_SAFELY_CAST, Spark's rule for
    INSERT, which is not what Databricks does for MERGE: it proves that a client binds its values with explicit
    parameter types.
    """

    name = "databricks"
    default_catalog = "main"
    default_schema = "default"

    def __init__(self, tokens=DEFAULT_TOKENS, warehouses=DEFAULT_WAREHOUSES, catalogs=None, service_principals=None):
        super().__init__()
        self.tokens = frozenset(tokens)
        self.service_principals = dict(DEFAULT_SERVICE_PRINCIPALS if service_principals is None else service_principals)
        self.warehouse_ids = tuple(warehouses)
        # Unity Catalog names are case-insensitive and kept in lower case.
        configured = DEFAULT_CATALOGS if catalogs is None else catalogs
        self._catalog_config = {
            name.lower(): [schema.lower() for schema in schemas] for name, schemas in configured.items()
        }
        self._clear()

    def _clear(self):
        self._match_indexes = {}  # (table, ON columns) -> (rows indexed, keys): see _match_index
        self.catalogs = {name: set(schemas) for name, schemas in self._catalog_config.items()}
        self.tables = {}
        self.statements = []
        self.cancels = []
        self.expired_tokens = set()
        self.oauth_tokens = {}  # access token -> {"client_id", "scope", "expires_at" (time.time())}
        self.token_requests = []  # every POST to the token endpoint: {"client_id", "grant_type", "scope", "auth"}
        self.refused_tokens = []  # every bearer token an API call was refused with
        self.token_lifetime = OAUTH_LIFETIME
        self.expired_token_status = 403
        self.token_path = OIDC_TOKEN_PATH
        self.account_id, self.workspace_id = DEFAULT_ACCOUNT_ID, DEFAULT_WORKSPACE_ID
        self.trusted_issuers = {}  # iss -> identity.Issuer: whose tokens a federation policy may accept
        self.federation_policies = {}  # service principal application id -> [{"issuer", "audiences", "subject"}]
        self.account_policies = []  # account-wide federation: [{"issuer", "audiences"}], the subject names a user
        self.users = {"user@example.com"}
        self.entra, self.azure_tenant = None, None
        self.strict_string_casts = False
        self.warehouses = {warehouse_id: "RUNNING" for warehouse_id in self.warehouse_ids}
        self._table_meta = {}
        self._by_id = {}
        self._start_delay = {"polls": 1, "seconds": None}  # what starting a stopped warehouse costs
        self._forever = False
        self._failures = []

    def reset(self):
        with self.lock:
            super().reset()
            self._clear()

    # -- switches and helpers for tests ------------------------------------------------------------------------------

    def cold_start(self, polls=None, seconds=None):
        """Stop every warehouse. The next statement starts its warehouse: it answers PENDING for `polls` GET polls
        (or until `seconds` have passed), RUNNING for one poll, then its final state. Once the warehouse is up,
        later statements run at once, as on a warm warehouse. With `seconds`, a POST with wait_timeout 5s-50s
        really waits (up to its wait_timeout) and returns the final state if the start finished in time; with
        `polls` nothing can change during the wait, so the POST answers PENDING (or CANCELED) at once.
        cold_start() alone means cold_start(polls=2)."""
        assert polls is None or seconds is None, "polls or seconds, not both"
        with self.lock:
            self._start_delay = {"polls": 2 if polls is None and seconds is None else polls or 0, "seconds": seconds}
            for warehouse_id in self.warehouses:
                self.warehouses[warehouse_id] = "STOPPED"

    def pending_forever(self):
        """Statements submitted from now on never finish: PENDING until canceled. A POST with wait_timeout 5s-50s
        answers at once, as if its wait had run out (use the base `hang` fault for a POST that does not answer)."""
        with self.lock:
            self._forever = True

    def fail_next_statement(self, error_code="BAD_REQUEST", message="[INTERNAL_ERROR] Forced failure.", sql_state=None):
        """The next submitted statement ends FAILED with this error (HTTP 200) and runs nothing. Queue several."""
        with self.lock:
            self._failures.append({"error_code": error_code, "message": message, "sql_state": sql_state})

    def set_warehouse_state(self, warehouse_id, state):
        """A statement sent to a warehouse that is not RUNNING starts it: PENDING for one poll (or what cold_start
        set), RUNNING for one, then done."""
        assert state in WAREHOUSE_STATES, state
        with self.lock:
            self.warehouses[warehouse_id] = state

    def expire_token(self, token):
        """The token stays known but is refused from now on, as an expired personal access token is [AUTH]."""
        with self.lock:
            self.expired_tokens.add(token)

    def set_token_lifetime(self, seconds):
        """OAuth tokens issued from now on last `seconds` (and say so in expires_in): expiry without an hour's wait."""
        with self.lock:
            self.token_lifetime = int(seconds)

    def expire_oauth_tokens(self, status=None):
        """Every OAuth token issued so far is expired now; refused with `status` (403 unless given: [EXP])."""
        with self.lock:
            for token in self.oauth_tokens.values():
                token["expires_at"] = min(token["expires_at"], time.time())
            if status is not None:
                self.expired_token_status = status

    def issue_token(self, client_id="user@example.com", lifetime=None):
        """An OAuth token as `databricks auth login` obtains one for a user (U2M), accepted by every API."""
        with self.lock:
            return self._issue(client_id, "all-apis offline_access", lifetime or self.token_lifetime)["access_token"]

    def move_token_endpoint(self, path):
        """Serve the token endpoint at `path` instead (the discovery document names it): a client that only
        knows /oidc/v1/token gets 404 there."""
        with self.lock:
            self.token_path = path

    def trust_issuer(self, issuer):
        """Accept JWTs of `issuer` (an identity.Issuer) where a federation policy names its iss [WIF]."""
        with self.lock:
            self.trusted_issuers[issuer.iss] = issuer

    def add_federation_policy(self, client_id, issuer, subject, audiences=None):
        """A service principal federation policy: tokens of `issuer` whose sub is `subject` and whose aud is one of
        `audiences` (the account id when None, as Databricks defaults it) sign in as `client_id` [WIF]."""
        with self.lock:
            self.trusted_issuers[issuer.iss] = issuer
            policy = {"issuer": issuer.iss, "audiences": list(audiences or [self.account_id]), "subject": subject}
            self.federation_policies.setdefault(client_id, []).append(policy)

    def add_account_federation_policy(self, issuer, audiences=None):
        """An account-wide federation policy: a token of `issuer` signs in as the user its sub names [WIF]."""
        with self.lock:
            self.trusted_issuers[issuer.iss] = issuer
            self.account_policies.append({"issuer": issuer.iss, "audiences": list(audiences or [self.account_id])})

    def azure(self, entra, tenant):
        """Be an Azure Databricks workspace of `tenant`: accept that Entra ID's tokens for Azure Databricks, and
        answer /aad/auth with the tenant's sign-in page [AZ]. Undone by reset()."""
        with self.lock:
            self.entra, self.azure_tenant = entra, tenant

    def management_token_ok(self, request):
        """Whether a request's X-Databricks-Azure-SP-Management-Token is an Entra ID token for the management
        resource (None when the request carries none) [AZ]."""
        token = request.header("x-databricks-azure-sp-management-token")
        if token is None:
            return None
        return self.entra is not None and self.entra.verify(token, AZURE_MANAGEMENT) is not None

    def drop_table(self, full_name):
        """DROP TABLE, as an administrator might between two runs (the SQL subset has no DROP)."""
        with self.lock:
            key = full_name.lower()
            self.tables.pop(key, None)
            self._table_meta.pop(key, None)
            self._match_indexes = {slot: value for slot, value in self._match_indexes.items() if slot[0] != key}

    def close_results(self):
        """Every SUCCEEDED statement becomes CLOSED, as results do an hour after success [SE]."""
        with self.lock:
            for statement in self._by_id.values():
                if statement.state == "SUCCEEDED":
                    statement.state = "CLOSED"

    def add_schema(self, catalog, schema):
        """Make a catalog and schema exist (until reset) besides the ones given to the constructor."""
        with self.lock:
            self.catalogs.setdefault(catalog.lower(), set()).add(schema.lower())

    def rows(self, full_name):
        with self.lock:
            return list(self.tables[full_name.lower()]["rows"])

    def create_table(self, full_name, columns, rows=(), not_null=(), defaults=None, data_source_format="DELTA"):
        """Seed a table as a user makes one by hand: columns [(name, TYPE)], the names of its NOT NULL columns,
        column DEFAULTs {name: typed value}, its format (DELTA, PARQUET, CSV, ...), rows [{name: value}] (values
        already typed)."""
        columns = [(name, canonical_type(sql_type)) for name, sql_type in columns]
        assert all(sql_type for _, sql_type in columns), columns
        assert data_source_format in FILE_FORMATS, data_source_format
        names = {name.lower() for name, _ in columns}
        assert {name.lower() for name in [*not_null, *(defaults or {})]} <= names, (not_null, defaults)
        with self.lock:
            key = full_name.lower()
            self._store_table(key, columns, not_null, defaults, data_source_format)
            self.tables[key]["rows"].extend(dict(row) for row in rows)

    def _store_table(self, key, columns, not_null=(), defaults=None, data_source_format="DELTA"):
        self.tables[key] = {
            "columns": columns,
            "rows": [],
            "not_null": {name.lower() for name in not_null},
            "defaults": {name.lower(): value for name, value in (defaults or {}).items()},
            "format": data_source_format,
        }
        self._table_meta[key] = {"table_id": str(uuid.uuid4()), "created_at": int(time.time() * 1000)}

    # -- routing ---------------------------------------------------------------------------------------------------

    ROUTES = (
        ("POST", re.compile(r"/api/2\.0/sql/statements/?"), "_post_statement"),
        ("GET", re.compile(r"/api/2\.0/sql/statements/([^/]+)/?"), "_get_statement"),
        ("POST", re.compile(r"/api/2\.0/sql/statements/([^/]+)/cancel/?"), "_cancel_statement"),
        ("GET", re.compile(r"/api/2\.0/sql/warehouses/([^/]+)/?"), "_get_warehouse"),
        ("GET", re.compile(r"/api/2\.1/unity-catalog/tables/([^/]+)/?"), "_get_table"),
    )

    def handle(self, request):
        if request.path in (OIDC_DISCOVERY_PATH, self.token_path):  # OAuth: no bearer token, its own error shape
            return self._oidc_metadata(request) if request.path == OIDC_DISCOVERY_PATH else self._oidc_token(request)
        if request.path == HOST_METADATA_PATH and request.method == "GET":
            return self._host_metadata()
        if request.path == "/aad/auth" and request.method == "GET" and self.azure_tenant:
            return self._aad_redirect()
        try:
            if request.path.startswith("/oidc/"):  # the OAuth server's own paths take no bearer token
                raise ApiError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{request.method} {request.path}'")
            self._authenticate(request)
            for method, pattern, handler in self.ROUTES:
                match = pattern.fullmatch(request.path)
                if match and request.method == method:
                    arguments = [urllib.parse.unquote(group) for group in match.groups()]
                    return getattr(self, handler)(request, *arguments)
            route = re.sub(r"^/api/\d+\.\d+", "", request.path)  # [EP] the message drops the /api/2.x prefix
            raise ApiError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{request.method} {route}'")
        except ApiError as error:
            return error.reply()

    def _authenticate(self, request):
        scheme, _, token = (request.header("authorization") or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, 401, "Credential was not sent or was of an unsupported type for this API.")
        with self.lock:
            issued = self.oauth_tokens.get(token)
            if issued is not None and token not in self.expired_tokens and time.time() < issued["expires_at"]:
                return
            if self.entra is not None and token not in self.expired_tokens:
                if self.entra.verify(token, AZURE_DATABRICKS) is not None:
                    return
                issued = issued or _entra_claims(token)  # an Entra ID token, expired or revoked
            if token not in self.tokens or token in self.expired_tokens:
                self.refused_tokens.append(token)
                status = self.expired_token_status if issued is not None else 403
                raise ApiError(status, status, "Invalid access token.")

    # -- OAuth: discovery and the token endpoint ---------------------------------------------------------------------

    def _oidc_metadata(self, request):
        """The workspace's OAuth authorization server metadata (RFC 8414) [OAUTH]; no credential needed."""
        if request.method != "GET":
            return Reply(405, {"error": "invalid_request", "error_description": "Use GET."}, {"Allow": "GET"})
        base = f"{self.url}/oidc"
        return Reply(
            200,
            {
                "issuer": base,
                "authorization_endpoint": f"{base}/v1/authorize",
                "token_endpoint": self.url + self.token_path,
                "jwks_uri": f"{base}/jwks.json",
                "scopes_supported": list(OAUTH_SCOPES),
                "response_types_supported": ["code", "id_token"],
                "grant_types_supported": ["client_credentials", "authorization_code", "refresh_token"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
                "code_challenge_methods_supported": ["S256"],
                "subject_types_supported": ["public"],
            },
        )

    def _oidc_token(self, request):
        """POST the client credentials grant [OAUTH] [RFC6749]: a form body, the client authenticated once (HTTP Basic
        or client_id + client_secret in the form), grant_type client_credentials, a scope. Or the token exchange
        grant [WIF]: see _exchange."""
        if request.method != "POST":
            return _oauth_error(405, "invalid_request", "Use POST.", {"Allow": "POST"})
        if request.content_type != "application/x-www-form-urlencoded":
            return _oauth_error(400, "invalid_request", "Content-Type must be application/x-www-form-urlencoded.")
        try:
            form = request.form()
        except UnicodeDecodeError:
            return _oauth_error(400, "invalid_request", "The request body is not valid form data.")
        repeated = sorted(name for name, values in form.items() if len(values) > 1)
        if repeated:  # [RFC6749] 3.2: "Request and response parameters MUST NOT be included more than once."
            return _oauth_error(400, "invalid_request", f"Parameter {repeated[0]} is included more than once.")
        form = {name: values[0] for name, values in form.items()}
        if form.get("grant_type") == TOKEN_EXCHANGE:
            return self._exchange(form)
        basic = basic_credentials(request)
        if basic is not None and "client_secret" in form:
            return _oauth_error(400, "invalid_request", "Use only one client authentication method.")
        client_id, secret = basic if basic is not None else (form.get("client_id"), form.get("client_secret"))
        with self.lock:
            known = self.service_principals.get(client_id) if client_id else None
            if known is None or not secret or secret != known:
                headers = {"WWW-Authenticate": 'Basic realm="oidc"'} if basic is not None else {}
                return _oauth_error(401, "invalid_client", "Client authentication failed", headers)
            grant_type = form.get("grant_type")
            if not grant_type:
                return _oauth_error(400, "invalid_request", "Missing required parameter: grant_type.")
            if grant_type != "client_credentials":
                return _oauth_error(400, "unsupported_grant_type", f"Unsupported grant_type: {grant_type}.")
            scope = " ".join(form.get("scope", "").split())
            unknown = [name for name in scope.split() if name not in OAUTH_SCOPES]
            if not scope or unknown:
                return _oauth_error(400, "invalid_scope", f"Invalid scope: {' '.join(unknown) or 'none given'}.")
            self.token_requests.append(
                {"client_id": client_id, "grant_type": grant_type, "scope": scope, "auth": "basic" if basic else "post"}
            )
            answer = self._issue(client_id, scope, self.token_lifetime)
        return Reply(200, answer, {"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _exchange(self, form):
        """The token exchange [WIF] [RFC8693]: the subject token must be a JWT of a trusted issuer, unexpired, and
        accepted by a federation policy: the service principal's (client_id) or the account's (no client_id, the
        token's sub names a user). The client does not authenticate otherwise."""
        subject_token = form.get("subject_token")
        if not subject_token:
            return _oauth_error(400, "invalid_request", "Missing required parameter: subject_token.")
        if form.get("subject_token_type") != JWT_TOKEN_TYPE:
            kind = form.get("subject_token_type") or "none"
            return _oauth_error(400, "invalid_request", f"Unsupported subject_token_type: {kind}.")
        scope = " ".join(form.get("scope", "").split())
        unknown = [name for name in scope.split() if name not in OAUTH_SCOPES]
        if not scope or unknown:
            return _oauth_error(400, "invalid_scope", f"Invalid scope: {' '.join(unknown) or 'none given'}.")
        client_id = form.get("client_id")
        with self.lock:
            try:
                claims = read_claims(subject_token)
                issuer = self.trusted_issuers.get(claims.get("iss"))
                if issuer is None:
                    raise TokenError(f"no federation policy trusts the issuer {claims.get('iss')}")
                claims = issuer.verify(subject_token)
            except TokenError as error:
                return _oauth_error(400, "invalid_request", f"Token exchange failed: {error}.")
            if client_id and client_id not in self.service_principals and client_id not in self.federation_policies:
                return _oauth_error(401, "invalid_client", "Client authentication failed")
            audiences = claims.get("aud") if isinstance(claims.get("aud"), list) else [claims.get("aud")]
            if client_id:
                policies = self.federation_policies.get(client_id, [])
                principal = client_id
            else:
                policies = self.account_policies
                principal = claims.get("sub") if claims.get("sub") in self.users else None
            accepted = [
                policy
                for policy in policies
                if policy["issuer"] == claims["iss"]
                and policy.get("subject", claims.get("sub")) == claims.get("sub")
                and set(policy["audiences"]) & set(audiences)
            ]
            if not accepted or principal is None:
                whom = f"service principal {client_id}" if client_id else "the account"
                return _oauth_error(
                    400,
                    "invalid_request",
                    f"Token exchange failed: no federation policy of {whom} accepts a token with iss={claims['iss']}, "
                    f"sub={claims.get('sub')}, aud={claims.get('aud')}.",
                )
            self.token_requests.append(
                {
                    "client_id": principal,
                    "grant_type": TOKEN_EXCHANGE,
                    "scope": scope,
                    "auth": "none",
                    "issuer": claims["iss"],
                    "subject": claims.get("sub"),
                }
            )
            answer = self._issue(principal, scope, self.token_lifetime)
        return Reply(200, answer, {"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _host_metadata(self):
        """/.well-known/databricks-config [WIF]: no credential needed."""
        with self.lock:
            return Reply(
                200,
                {
                    "oidc_endpoint": f"{self.url}/oidc",
                    "account_id": self.account_id,
                    "workspace_id": self.workspace_id,
                    "cloud": "AZURE" if self.azure_tenant else "AWS",
                    "token_federation_default_oidc_audiences": [self.account_id],
                },
            )

    def _aad_redirect(self):
        """What an Azure workspace's /aad/auth answers: a redirect to its tenant's sign-in page [AZ]."""
        query = urllib.parse.urlencode({"client_id": AZURE_DATABRICKS, "response_type": "code"})
        location = f"https://login.microsoftonline.com/{self.azure_tenant}/oauth2/authorize?{query}"
        return Reply(302, b"", {"Location": location})

    def _issue(self, client_id, scope, lifetime):
        """A JWT-shaped access token (header.claims.signature) that the APIs accept until it expires."""
        now = int(time.time())
        claims = {"iss": f"{self.url}/oidc", "sub": client_id, "client_id": client_id, "scope": scope}
        claims.update(iat=now, exp=now + lifetime, jti=str(uuid.uuid4()))
        parts = ({"alg": "RS256", "typ": "JWT"}, claims, uuid.uuid4().hex)
        token = ".".join(_base64url(part if isinstance(part, str) else json.dumps(part)) for part in parts)
        self.oauth_tokens[token] = {"client_id": client_id, "scope": scope, "expires_at": time.time() + lifetime}
        return {"access_token": token, "scope": scope, "token_type": "Bearer", "expires_in": lifetime}

    # -- POST /api/2.0/sql/statements ---------------------------------------------------------------------------------

    def _post_statement(self, request):
        try:
            body = request.json()
        except ValueError:
            body = None
        with self.lock:
            options = self._validate(body)
            statement = self._submit(body)
        if options["wait"] == 0:
            # [SE] asynchronous mode answers PENDING at once, even when the warehouse was quick enough to finish.
            with self.lock:
                return Reply(200, self._view(statement, shown="PENDING"))
        deadline = time.monotonic() + options["wait"]
        while True:
            with self.lock:
                self._tick()
                if statement.state == "PENDING" and self._started(statement):
                    self._finish(statement)  # the warehouse came up within the wait: it ran server-side
                timing_out = time.monotonic() >= deadline or statement.ready_at is None
                if statement.state in TERMINAL or timing_out or self.stopping.is_set():
                    if statement.state not in TERMINAL and options["on_wait_timeout"] == "CANCEL":
                        statement.state = "CANCELED"
                    return Reply(200, self._view(statement))
            # Only a cold start counted in seconds can end during the wait. One counted in polls, or a statement
            # that never finishes, cannot, so its wait is treated as over at once (above) rather than slept through.
            self.stopping.wait(0.01)

    def _validate(self, body):
        """Refuse what the API refuses before it creates a statement [SE][MAL]; returns the wait options."""
        if not isinstance(body, dict):
            raise ApiError(400, "MALFORMED_REQUEST", "Invalid JSON given in the body of the request - expected a map")
        for field in ("statement", "warehouse_id", "wait_timeout", "on_wait_timeout", "catalog", "schema"):
            _expect(body.get(field), str, field)
        for field in ("disposition", "format"):
            _expect(body.get(field), str, field)
        for field in ("row_limit", "byte_limit"):
            _expect(body.get(field), int, field)
        statement = body.get("statement")
        if not statement:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "Missing required field: statement")
        size = len(statement.encode("utf-8"))
        if size > MAX_STATEMENT_BYTES:
            raise ApiError(
                400, "INVALID_PARAMETER_VALUE", f"The statement is {size} bytes; the maximum query text size is 16 MiB."
            )
        warehouse_id = body.get("warehouse_id")
        if not warehouse_id:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "Missing required field: warehouse_id")
        if warehouse_id not in self.warehouses:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"{warehouse_id} is not a valid endpoint id.")
        wait_text = body.get("wait_timeout") or DEFAULT_WAIT_TIMEOUT
        match = re.fullmatch(r"(\d{1,3})s", wait_text)
        wait = int(match.group(1)) if match else -1
        if not (wait == 0 or 5 <= wait <= 50):  # [SE] "0 or a value between 5 and 50"
            raise ApiError(
                400,
                "INVALID_PARAMETER_VALUE",
                f"wait_timeout must be 0s or between 5s and 50s (as 'Ns'), got '{wait_text}'.",
            )
        on_wait_timeout = body.get("on_wait_timeout") or "CONTINUE"
        _expect_choice(on_wait_timeout, ("CONTINUE", "CANCEL"), "on_wait_timeout")
        disposition = body.get("disposition") or "INLINE"
        _expect_choice(disposition, ("INLINE", "EXTERNAL_LINKS"), "disposition")
        result_format = body.get("format") or "JSON_ARRAY"
        _expect_choice(result_format, ("JSON_ARRAY", "ARROW_STREAM", "CSV"), "format")
        if disposition == "INLINE" and result_format != "JSON_ARRAY":  # [SE]
            raise ApiError(
                400, "INVALID_PARAMETER_VALUE", f"The format {result_format} requires disposition EXTERNAL_LINKS."
            )
        self._validate_parameters(body.get("parameters"))
        _validate_query_tags(body.get("query_tags"))
        return {"wait": wait, "on_wait_timeout": on_wait_timeout}

    def _validate_parameters(self, parameters):
        _expect(parameters, list, "parameters")
        parameters = parameters or []
        if len(parameters) > MAX_PARAMETERS:
            raise ApiError(
                400,
                "INVALID_PARAMETER_VALUE",
                f"A statement takes at most {MAX_PARAMETERS} parameters, got {len(parameters)}.",
            )
        names = set()
        for index, parameter in enumerate(parameters):
            _expect(parameter, dict, f"parameters[{index}]")
            for key in ("name", "value", "type"):
                # A number, boolean or object as `value` is refused here: values travel as JSON strings [SE].
                _expect(parameter.get(key), str, f"parameters[{index}].{key}")
            name = parameter.get("name")
            if not name:
                raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Missing required field: parameters[{index}].name")
            if name in names:
                raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Duplicate parameter name: {name}")
            names.add(name)

    def _submit(self, body):
        statement = Statement(str(uuid.uuid4()), body, body["warehouse_id"])
        self._by_id[statement.id] = statement
        self.statements.append(
            {
                "statement_id": statement.id,
                "statement": body["statement"],
                "parameters": [dict(parameter) for parameter in body.get("parameters") or []],
                "warehouse_id": body["warehouse_id"],
                "wait_timeout": body.get("wait_timeout"),
                "on_wait_timeout": body.get("on_wait_timeout"),
                "catalog": body.get("catalog"),
                "schema": body.get("schema"),
                "query_tags": _recorded_query_tags(body.get("query_tags")),
            }
        )
        if self._failures:
            statement.forced_failure = self._failures.pop(0)
        if self._forever:
            statement.forever = True
        elif self.warehouses[statement.warehouse_id] != "RUNNING":
            # The statement starts its warehouse [SE] "PENDING: waiting for warehouse".
            self.warehouses[statement.warehouse_id] = "STARTING"
            statement.pending_polls = self._start_delay["polls"] or 0
            if self._start_delay["seconds"] is not None:
                statement.ready_at = time.monotonic() + self._start_delay["seconds"]
            statement.show_running = True
        else:
            self._finish(statement)  # a warm warehouse runs it at once, whatever the client does next
        return statement

    # -- GET /api/2.0/sql/statements/{id} and cancel ----------------------------------------------------------------

    def _get_statement(self, request, statement_id):
        with self.lock:
            statement = self._statement(statement_id)
            self._tick()
            if statement.state == "PENDING" and statement.pending_polls > 0:
                statement.pending_polls -= 1
            elif statement.state == "PENDING" and self._started(statement):
                self._warm(statement.warehouse_id)
                if statement.show_running:
                    statement.state = "RUNNING"
                    statement.show_running = False
                else:
                    self._finish(statement)
            elif statement.state == "RUNNING":
                self._finish(statement)
            return Reply(200, self._view(statement))

    def _cancel_statement(self, request, statement_id):
        with self.lock:
            statement = self._statement(statement_id)
            self.cancels.append(statement_id)
            if statement.state not in TERMINAL:  # [SE] a cancel that arrives after completion changes nothing
                statement.state = "CANCELED"
            return Reply(200, {})

    def _statement(self, statement_id):
        if statement_id not in self._by_id:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Statement {statement_id} does not exist.")
        return self._by_id[statement_id]

    def _started(self, statement):
        """A PENDING statement whose warehouse is up (or never was down)."""
        return not statement.forever and statement.pending_polls == 0 and statement.ready_at is None

    def _tick(self):
        """Seconds-based starts: a warehouse whose start time has passed is up."""
        now = time.monotonic()
        for statement in list(self._by_id.values()):
            if statement.state == "PENDING" and statement.ready_at is not None and now >= statement.ready_at:
                self._warm(statement.warehouse_id)

    def _warm(self, warehouse_id):
        """The warehouse is up: every statement waiting for it may run."""
        self.warehouses[warehouse_id] = "RUNNING"
        for statement in self._by_id.values():
            if statement.warehouse_id == warehouse_id and statement.state == "PENDING":
                statement.pending_polls = 0
                statement.ready_at = None

    def _finish(self, statement):
        if statement.forced_failure is not None:
            failure = statement.forced_failure
            statement.state, statement.sql_state = "FAILED", failure["sql_state"]
            statement.error = {"error_code": failure["error_code"], "message": failure["message"]}
            return
        try:
            statement.manifest, statement.result = self._run(statement.body)
        except SqlError as error:
            statement.state, statement.sql_state = "FAILED", error.sql_state
            statement.error = {"error_code": "BAD_REQUEST", "message": error.message}
        else:
            statement.state = "SUCCEEDED"

    def _view(self, statement, shown=None):
        """The StatementResponse [SDK]: the result only once SUCCEEDED, the error only when FAILED."""
        state = shown or statement.state
        status = {"state": state}
        body = {"statement_id": statement.id, "status": status}
        if state == "FAILED":
            status["error"] = dict(statement.error)
            if statement.sql_state:
                status["sql_state"] = statement.sql_state  # [API]
        elif state == "SUCCEEDED":
            body["manifest"] = statement.manifest
            body["result"] = statement.result
        return body

    # -- running SQL -------------------------------------------------------------------------------------------------

    def _run(self, body):
        text = body["statement"]
        parser = Parser(text)
        tree = parser.statement()
        parameters = {parameter["name"]: parameter for parameter in body.get("parameters") or []}
        for marker in parser.markers:
            if marker.text[1:] not in parameters:
                line = text.count("\n", 0, marker.offset) + 1
                column = marker.offset - (text.rfind("\n", 0, marker.offset) + 1)
                raise SqlError(
                    "UNBOUND_SQL_PARAMETER",
                    f"Found the unbound parameter: {marker.text[1:]}. Please, fix `args` and provide a mapping of the "
                    "parameter to either a SQL literal or collection constructor functions such as `map()`, "
                    "`array()`, `struct()`.",
                    "42P02",
                    f"; line {line} pos {column}",
                )
        scope = self._scope(body)

        def bind(name):
            """A parameter as a typed value: (value, TYPE) [SE]."""
            parameter = parameters[name]
            declared = parameter.get("type") or "STRING"
            sql_type = canonical_type(declared)
            if sql_type is None:
                raise SqlError("UNSUPPORTED_DATATYPE", f'Unsupported data type "{declared}".', "0A000")
            value = parameter.get("value")
            return (None if value is None else cast_string(value, sql_type)), sql_type

        run = {"create": self._create, "merge": self._merge, "describe": self._describe}[tree["kind"]]
        return run(tree, scope, bind)

    def _scope(self, body):
        """The request's catalog and schema act like USE CATALOG / USE SCHEMA [SE]."""
        catalog, schema = body.get("catalog") or None, body.get("schema") or None
        if catalog is not None and catalog.lower() not in self.catalogs:
            raise _no_such_catalog(catalog)
        catalog = catalog or self.default_catalog
        if schema is not None and schema.lower() not in self.catalogs.get(catalog.lower(), ()):
            raise _schema_not_found(catalog, schema)
        return catalog, schema or self.default_schema

    def _table_name(self, table, scope, bind):
        kind, value = table
        if kind == "parameter":
            name, sql_type = bind(value)
            if name is None or sql_type != "STRING":
                raise SqlError(
                    "NOT_A_CONSTANT_STRING.WRONG_TYPE",
                    f"The expression `:{value}` used for IDENTIFIER must be a constant STRING which is NOT NULL.",
                    "42601",
                )
            parser = Parser(name)
            value = parser.name()
            if parser.peek() is not None:
                parser.fail("a table name")
        return [*scope[: 3 - len(value)], *value]

    def _existing_table(self, parts, where=""):
        key = ".".join(parts).lower()
        if key not in self.tables:
            raise SqlError(
                "TABLE_OR_VIEW_NOT_FOUND",
                f"The table or view {quote_name(parts)} cannot be found. Verify the spelling and correctness of the "
                "schema and catalog.\nIf you did not qualify the name with a schema, verify the current_schema() "
                "output, or qualify the name with the correct schema and catalog.\nTo tolerate the error on drop "
                "use DROP VIEW IF EXISTS or DROP TABLE IF EXISTS.",
                "42P01",
                where,
            )
        return self.tables[key]

    def _create(self, tree, scope, bind):
        parts = self._table_name(tree["table"], scope, bind)
        for part in parts:
            # Unity Catalog refuses '.', spaces, '/' and control characters even when quoted (SPEC section 3); the
            # class is Spark's, the sentence this emulator's.
            if not re.fullmatch(r"[A-Za-z0-9_-]+", part):
                raise SqlError(
                    "INVALID_SCHEMA_OR_RELATION_NAME",
                    f"`{part}` is not a valid name for tables/schemas. Valid names only contain alphabet characters, "
                    "numbers, _ and -.",
                    "42602",
                )
        catalog, schema, _ = (part.lower() for part in parts)
        if catalog not in self.catalogs:
            raise _no_such_catalog(parts[0])
        if schema not in self.catalogs[catalog]:
            raise _schema_not_found(parts[0], parts[1])
        columns, seen, not_null = [], set(), []
        for column, declared, nullable in tree["columns"]:
            sql_type = canonical_type(declared)
            if sql_type is None:
                raise SqlError("UNSUPPORTED_DATATYPE", f'Unsupported data type "{declared}".', "0A000")
            if column.lower() in seen:
                raise SqlError(
                    "COLUMN_ALREADY_EXISTS",
                    f"The column `{column}` already exists. Choose another name or rename the existing column.",
                    "42711",
                )
            seen.add(column.lower())
            columns.append((column, sql_type))
            if not nullable:
                not_null.append(column)
        key = ".".join(parts).lower()
        if key in self.tables:
            if tree["if_not_exists"]:
                return _result([], [])
            raise SqlError(
                "TABLE_OR_VIEW_ALREADY_EXISTS",
                f"Cannot create table or view {quote_name(parts)} because it already exists.\nChoose a different "
                "name, drop or replace the existing object, or add the IF NOT EXISTS clause to tolerate pre-existing "
                "objects.",
                "42P07",
            )
        self._store_table(key, columns, not_null, data_source_format=tree["format"])
        return _result([], [])

    def _describe(self, tree, scope, bind):
        table = self._existing_table(self._table_name(tree["table"], scope, bind), tree["table_at"])
        rows = [[name, sql_type.lower(), None] for name, sql_type in table["columns"]]
        return _result([("col_name", "STRING"), ("data_type", "STRING"), ("comment", "STRING")], rows)

    def _merge(self, tree, scope, bind):
        """MERGE ... WHEN NOT MATCHED THEN INSERT * | INSERT (columns) VALUES (s.columns): analysis first (format,
        names, columns, types), then the rows no stored row matches are converted and checked, and only then is
        anything written, so a failing statement leaves the table as it was."""
        parts = self._table_name(tree["table"], scope, bind)
        table = self._existing_table(parts, tree["table_at"])
        if table["format"] != "DELTA":
            # [DELTA] PreprocessTableMerge: a target that is not a Delta table; the plan line is this emulator's.
            described = ", ".join(name for name, _ in table["columns"])
            raise SqlError(
                "DELTA_UNSUPPORTED_SOURCE",
                f"MERGE destination only supports Delta sources.\nRelation {'.'.join(parts)}[{described}] "
                f"{table['format'].lower()}\n",
                "0AKDD",
            )
        selects = tree["selects"]
        names = [column for _, column in selects[0]]  # UNION ALL takes its column names from the first SELECT
        for number, select in enumerate(selects[1:], start=2):
            if len(select) != len(names):
                raise SqlError(
                    "NUM_COLUMNS_MISMATCH",
                    f"UNION ALL can only be performed on inputs with the same number of columns, but the first input "
                    f"has {len(names)} columns and the {ordinal(number)} input has {len(select)} columns.",
                    "42826",
                )
        source = [[bind(marker) for marker, _ in select] for select in selects]
        types = [self._union_type(source, index) for index in range(len(names))]
        feeds = self._insert_feeds(tree, parts, table, names)
        keys = [self._on_pair(condition, tree, parts, table, names) for condition in tree["on"]]

        for column, column_type in table["columns"]:
            if column in feeds and not can_store(types[feeds[column]], column_type, self.strict_string_casts):
                raise self._cannot_write(parts, column, tree["source_alias"], types[feeds[column]], column_type)
        compared = []
        for column, column_type, index in keys:
            common = comparison_type(column_type, types[index])
            if common is None or not (can_cast(column_type, common) and can_cast(types[index], common)):
                raise SqlError(
                    "DATATYPE_MISMATCH.BINARY_OP_DIFF_TYPES",
                    f'Cannot resolve "({column} = {tree["source_alias"]}.{names[index]})" due to data type mismatch: '
                    "the left and right operands of the binary operator have incompatible types "
                    f'("{column_type}" and "{types[index]}").',
                    "42K09",
                )
            compared.append((column, column_type, index, common))

        # MERGE matches against the table as it was when the statement began; a hash of the ON columns keeps a
        # 10,000-run backfill linear (comparing every source row with every stored row made it quadratic).
        existing = self._match_index(parts, table, [(column, kind, common) for column, kind, _, common in compared])
        inserted = []
        for values in source:
            match = [store(*values[index], common, column) for column, _, index, common in compared]
            if _match_key(match) in existing:
                continue
            # [DELTA] an ANSI CAST of each value, then the NOT NULL invariants of the row that is written.
            row = {}
            for column, column_type in table["columns"]:
                if column in feeds:
                    row[column] = store(*values[feeds[column]], column_type, column)
                else:
                    row[column] = table["defaults"].get(column.lower())
            for column, _ in table["columns"]:
                if column.lower() in table["not_null"] and row[column] is None:
                    raise SqlError(
                        "DELTA_NOT_NULL_CONSTRAINT_VIOLATED",
                        f"NOT NULL constraint violated for column: {column}.",
                        "23502",
                    )
            inserted.append(row)
        table["rows"].extend(inserted)
        counts = [("num_affected_rows", len(inserted)), ("num_updated_rows", 0), ("num_deleted_rows", 0)]
        counts.append(("num_inserted_rows", len(inserted)))
        return _result([(name, "BIGINT") for name, _ in counts], [[str(count) for _, count in counts]])

    def _insert_feeds(self, tree, parts, table, names):
        """{target column: index of the source column written into it}; target columns left out are absent.

        INSERT * sets every target column from the source column of the same name, and a target column the source
        lacks is an error (Delta without schema evolution). An explicit list names target columns, each fed by a
        source column; the target columns it leaves out get their DEFAULT, else NULL [DELTA]."""
        source_alias = tree["source_alias"]
        given = ", ".join(f"{source_alias}.{name}" for name in names)

        def unresolved(what, columns):
            return SqlError(
                "DELTA_MERGE_UNRESOLVED_EXPRESSION",
                f"Cannot resolve {what} in INSERT clause given columns {columns}.",
                "42601",
            )

        def source_index(column):
            found = [index for index, name in enumerate(names) if name.lower() == column.lower()]
            if len(found) > 1:
                candidates = ", ".join(quote_name([source_alias, names[index]]) for index in found)
                raise SqlError(
                    "AMBIGUOUS_REFERENCE", f"Reference `{column}` is ambiguous, could be: [{candidates}].", "42704"
                )
            return found[0] if found else None

        feeds = {}
        if tree["insert"] is None:
            for column, _ in table["columns"]:
                index = source_index(column)
                if index is None:
                    raise unresolved(column, given)
                feeds[column] = index
            return feeds
        target_alias = tree["alias"] or parts[-1]
        listed = [target for target, _ in tree["insert"]]
        if len({target.lower() for target in listed}) < len(listed):
            raise SqlError("DELTA_DUPLICATE_COLUMNS_ON_INSERT", "Duplicate column names in INSERT clause", "42701")
        for target, (qualifier, column) in tree["insert"]:
            found = [name for name, _ in table["columns"] if name.lower() == target.lower()]
            if not found:
                raise unresolved(target, ", ".join(f"{target_alias}.{name}" for name, _ in table["columns"]))
            index = source_index(column) if qualifier in (None, source_alias) else None
            if index is None:
                raise unresolved(f"{qualifier}.{column}" if qualifier else column, given)
            feeds[found[0]] = index
        return feeds

    def _cannot_write(self, parts, column, source_alias, source, target):
        if self.strict_string_casts and can_cast(source, target):
            return _cannot_safely_cast(parts, column, source, target)
        # [CAST] Cast.typeCheckFailureMessage with the ANSI fallback suggestion left out.
        return SqlError(
            "DATATYPE_MISMATCH.CAST_WITHOUT_SUGGESTION",
            f'Cannot resolve "CAST({source_alias}.{column} AS {target})" due to data type mismatch: cannot cast '
            f'"{source}" to "{target}".',
            "42K09",
        )

    def _match_index(self, parts, table, keys):
        """The set of ON-column keys of the stored rows, each value as the ON clause compares it, kept up to date
        as rows are appended. `keys`: [(column, its type, the type it is compared in)]."""
        cache = self._match_indexes
        slot = (".".join(parts).lower(), tuple(keys))
        seen, found = cache.get(slot, (0, set()))
        rows = table["rows"]
        if seen > len(rows):  # the table was replaced or emptied: start over
            seen, found = 0, set()
        for row in rows[seen:]:
            found.add(_match_key([store(row.get(column), kind, common, column) for column, kind, common in keys]))
        cache[slot] = (len(rows), found)
        return found

    @staticmethod
    def _union_type(source, index):
        current = source[0][index][1]
        for number, values in enumerate(source[1:], start=2):
            wider = wider_type(current, values[index][1])
            if wider is None:
                raise SqlError(
                    "INCOMPATIBLE_COLUMN_TYPE",
                    f"UNION ALL can only be performed on tables with compatible column types. The {ordinal(index + 1)} "
                    f'column of the {ordinal(number)} table is "{values[index][1]}" type which is not compatible with '
                    f'"{current}" at the same column of the first table..',
                    "42825",
                )
            current = wider
        return current

    def _on_pair(self, condition, tree, parts, table, names):
        """t.col = s.col (either way round) -> (target column, its type, source column index)."""
        target_alias = (tree["alias"] or parts[-1]).lower()
        source_alias = tree["source_alias"].lower()
        resolved = {}
        for qualifier, column in condition:
            if qualifier.lower() == target_alias:
                found = [(name, sql_type) for name, sql_type in table["columns"] if name.lower() == column.lower()]
                side, value = "target", found[0] if found else None
            elif qualifier.lower() == source_alias:
                found = [index for index, name in enumerate(names) if name.lower() == column.lower()]
                side, value = "source", found[0] if len(found) == 1 else None
            else:
                side, value = "unknown", None
            if value is None:
                known = [quote_name([tree["alias"] or parts[-1], name]) for name, _ in table["columns"]]
                known += [quote_name([tree["source_alias"], name]) for name in names]
                raise SqlError(
                    "UNRESOLVED_COLUMN.WITH_SUGGESTION",
                    f"A column, variable, or function parameter with name {quote_name([qualifier, column])} cannot "
                    f"be resolved. Did you mean one of the following? [{', '.join(known)}].",
                    "42703",
                )
            if side in resolved:  # t.a = t.b is SQL, but not the subset emulated here
                raise SqlError(
                    "PARSE_SYNTAX_ERROR",
                    "Syntax error at or near 'ON': this emulator expected t.column = s.column, one side from each "
                    "table.",
                    "42601",
                )
            resolved[side] = value
        (column, column_type), index = resolved["target"], resolved["source"]
        return column, column_type, index

    # -- GET /api/2.0/sql/warehouses/{id} ----------------------------------------------------------------------------

    def _get_warehouse(self, request, warehouse_id):
        with self.lock:
            self._tick()
            if warehouse_id not in self.warehouses:
                raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"SQL warehouse {warehouse_id} does not exist.")
            state = self.warehouses[warehouse_id]
        # The fields of GetWarehouseResponse [SDK] a client may look at; the values are plausible, not meaningful.
        return Reply(
            200,
            {
                "id": warehouse_id,
                "name": f"emulated warehouse {warehouse_id}",
                "state": state,
                "cluster_size": "2X-Small",
                "min_num_clusters": 1,
                "max_num_clusters": 1,
                "num_clusters": 1 if state == "RUNNING" else 0,
                "num_active_sessions": 0,
                "auto_stop_mins": 10,
                "warehouse_type": "PRO",
                "enable_serverless_compute": True,
                "enable_photon": True,
                "creator_name": "emulator@example.com",
                "health": {"status": "HEALTHY"},
                "odbc_params": {
                    "hostname": "127.0.0.1",
                    "path": f"/sql/1.0/warehouses/{warehouse_id}",
                    "port": self.port,
                    "protocol": "http",
                },
            },
        )

    # -- GET /api/2.1/unity-catalog/tables/{full_name} ---------------------------------------------------------------

    def _get_table(self, request, full_name):
        parts = full_name.lower().split(".")
        if len(parts) != 3 or not all(parts):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Invalid table full name '{full_name}'.")
        catalog, schema, name = parts
        with self.lock:
            if catalog not in self.catalogs:
                raise ApiError(404, "CATALOG_DOES_NOT_EXIST", f"Catalog '{catalog}' does not exist.")
            if schema not in self.catalogs[catalog]:
                raise ApiError(404, "SCHEMA_DOES_NOT_EXIST", f"Schema '{catalog}.{schema}' does not exist.")
            key = ".".join(parts)
            if key not in self.tables:
                raise ApiError(404, "TABLE_DOES_NOT_EXIST", f"Table '{key}' does not exist.")
            table = self.tables[key]
            columns = [
                _uc_column(
                    position, name, sql_type, name.lower() not in table["not_null"], table["defaults"].get(name.lower())
                )
                for position, (name, sql_type) in enumerate(table["columns"])
            ]
            data_source_format = table["format"]
            meta = dict(self._table_meta[key])
        # [UC] a table made with CREATE TABLE ... USING <file format> in Unity Catalog is an EXTERNAL one (a LOCATION
        # is required); managed tables are Delta.
        managed = data_source_format == "DELTA"
        return Reply(
            200,
            {
                "name": name,
                "catalog_name": catalog,
                "schema_name": schema,
                "full_name": key,
                "table_type": "MANAGED" if managed else "EXTERNAL",
                "data_source_format": data_source_format,
                "columns": columns,
                "table_id": meta["table_id"],
                "created_at": meta["created_at"],
                "updated_at": meta["created_at"],
                "owner": "emulator@example.com",
                "created_by": "emulator@example.com",
                "storage_location": (
                    f"s3://emulated-metastore/tables/{meta['table_id']}"
                    if managed
                    else f"s3://emulated-external/{schema}/{name}"
                ),
                "properties": {},
            },
        )


def _validate_query_tags(tags):
    """query_tags [QT]: an array of {key, value}, each key a non-empty string, each value a string or null."""
    _expect(tags, list, "query_tags")
    for index, tag in enumerate(tags or []):
        _expect(tag, dict, f"query_tags[{index}]")
        _expect(tag.get("key"), str, f"query_tags[{index}].key")
        _expect(tag.get("value"), str, f"query_tags[{index}].value")
        if not (tag.get("key") or "").strip():
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"query_tags[{index}].key must be a non-empty string.")


def _recorded_query_tags(tags):
    """{key: value} as Query History records the tags [QT]: trimmed, a blank value NULL, one value per key (the
    last), the first 20 tags."""
    recorded = {}
    for tag in (tags or [])[:MAX_QUERY_TAGS]:
        value = (tag.get("value") or "").strip()
        recorded[tag["key"].strip()] = value or None
    return recorded


def _entra_claims(token):
    """The claims of what looks like an Entra ID token (it names a tenant), unverified; None otherwise."""
    try:
        claims = read_claims(token)
    except TokenError:
        return None
    return claims if claims.get("tid") else None


def _oauth_error(status, error, description, headers=None):
    """An OAuth error [RFC6749] 5.2: {"error", "error_description"}, never cached."""
    return Reply(
        status, {"error": error, "error_description": description}, {"Cache-Control": "no-store", **(headers or {})}
    )


def _base64url(text):
    import base64

    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _uc_column(position, name, sql_type, nullable=True, default=None):
    """A Unity Catalog ColumnInfo [UC]: type_text is the lower-case SQL type, type_name the ColumnTypeName,
    type_json the Spark StructField (a DEFAULT travels in its metadata as CURRENT_DEFAULT, the SQL text)."""
    base = base_type(sql_type)
    json_name = json_type(sql_type)
    metadata = (
        {} if default is None else {"CURRENT_DEFAULT": sql_literal(default), "EXISTS_DEFAULT": sql_literal(default)}
    )
    column = {
        "name": name,
        "type_text": sql_type.lower(),
        "type_name": UC_TYPE_NAMES.get(base, base),
        "type_json": json.dumps(
            {"name": name, "type": json_name, "nullable": nullable, "metadata": metadata}, separators=(",", ":")
        ),
        "position": position,
        "nullable": nullable,
    }
    if base == "DECIMAL":
        column["type_precision"], column["type_scale"] = decimal_spec(sql_type)
    return column


def json_type(sql_type):
    """The Spark JSON name of a type: "long", "decimal(10,2)", {"type": "map", "keyType": ..., ...}."""
    base = base_type(sql_type)
    if base in ("ARRAY", "MAP"):
        inner = [json_type(part) for part in sql_type[len(base) + 1 : -1].split(",")]
        if base == "ARRAY":
            return {"type": "array", "elementType": inner[0], "containsNull": True}
        return {"type": "map", "keyType": inner[0], "valueType": inner[1], "valueContainsNull": True}
    return sql_type.lower() if base == "DECIMAL" else JSON_TYPE_NAMES.get(base, base.lower())


def sql_literal(value):
    """A typed value as SQL text: 'it''s', 42, 1.5, true, TIMESTAMP'2026-11-20 09:14:03'."""
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime.datetime):
        return f"TIMESTAMP'{sql_text(value)}'"
    if isinstance(value, datetime.date):
        return f"DATE'{value.isoformat()}'"
    return sql_text(value)


def _result(columns, rows):
    """manifest and result of an INLINE JSON_ARRAY statement: every value a string or null [SE]."""
    schema = {
        "column_count": len(columns),
        "columns": [
            {"name": name, "type_text": sql_type, "type_name": UC_TYPE_NAMES.get(sql_type, sql_type), "position": i}
            for i, (name, sql_type) in enumerate(columns)
        ],
    }
    chunks = [{"chunk_index": 0, "row_offset": 0, "row_count": len(rows)}] if columns else []
    manifest = {
        "format": "JSON_ARRAY",
        "schema": schema,
        "total_chunk_count": len(chunks),
        "chunks": chunks,
        "total_row_count": len(rows),
        "truncated": False,
    }
    result = {"chunk_index": 0, "row_offset": 0, "row_count": len(rows), "data_array": rows} if columns else {}
    return manifest, result


def _no_such_catalog(catalog):
    return SqlError(
        "NO_SUCH_CATALOG_EXCEPTION",
        f"Catalog '{catalog}' was not found. Please verify the catalog name and then retry the query or command again.",
        "42704",
    )


def _schema_not_found(catalog, schema):
    return SqlError(
        "SCHEMA_NOT_FOUND",
        f"The schema {quote_name([catalog, schema])} cannot be found. Verify the spelling and correctness of the "
        "schema and catalog.\nIf you did not qualify the name with a catalog, verify the current_schema() output, or "
        "qualify the name with the correct catalog.\nTo tolerate the error on drop use DROP SCHEMA IF EXISTS.",
        "42704",
    )


def _cannot_safely_cast(parts, column, source, target):
    return SqlError(
        "INCOMPATIBLE_DATA_FOR_TABLE.CANNOT_SAFELY_CAST",
        f'Cannot write incompatible data for the table {quote_name(parts)}: Cannot safely cast `{column}` "{source}" '
        f'to "{target}".',
        "KD000",
    )


_JSON_KINDS = {str: "a string", int: "a number", list: "an array", dict: "an object"}


def _expect(value, kind, field):
    """A field of the wrong JSON type is refused by the request parser, before any validation [MAL]."""
    wrong = value is not None and (not isinstance(value, kind) or isinstance(value, bool) and kind is int)
    if wrong:
        got = "a boolean" if isinstance(value, bool) else _JSON_KINDS.get(type(value), "a number")
        raise ApiError(
            400,
            "MALFORMED_REQUEST",
            f"Could not parse request object: expected {_JSON_KINDS[kind]} for field '{field}', got {got}.",
        )


def _expect_choice(value, choices, field):
    if value not in choices:
        raise ApiError(
            400, "INVALID_PARAMETER_VALUE", f"Invalid {field} '{value}'; it must be one of {', '.join(choices)}."
        )


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.emulators.databricks", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free port)")
    parser.add_argument("--token", action="append", help="an accepted bearer token (repeatable)")
    parser.add_argument("--warehouse", action="append", help="a known warehouse id (repeatable)")
    parser.add_argument(
        "--service-principal", action="append", metavar="ID:SECRET", help="an OAuth client id and secret (repeatable)"
    )
    args = parser.parse_args(argv)
    principals = dict(item.split(":", 1) for item in args.service_principal) if args.service_principal else None
    emulator = Databricks(
        tokens=tuple(args.token or DEFAULT_TOKENS),
        warehouses=tuple(args.warehouse or DEFAULT_WAREHOUSES),
        service_principals=principals,
    )
    serve_forever(emulator, args.port)


if __name__ == "__main__":
    main()
