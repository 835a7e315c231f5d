"""The DataStax Data API (tables) emulator: Astra's HTTP API, and the self-hosted stargate/data-api server.

    api = DataAPI()                                   # Astra: /api/json/v1/..., `Token: AstraCS:...`
    api = DataAPI(astra=False, users={"cassandra": "cassandra"})   # self-hosted: /v1/..., Cassandra:<b64>:<b64>
    api.rows("peepshow", "peepshow_runs")             # [{column: value}] in first-write order, every column
                                                      # present: None for unset or null, text str, bigint int,
                                                      # double float, timestamp an aware UTC datetime (ms)
    api.writes, api.commands                          # rows written; [(keyspace, table or None, command)]
    api.add_table(ks, name, columns, primary_key)     # a table made outside the sink (e.g. with a wrong type):
                                                      # columns {name: "text" | "map<text,text>" | {"type": ...}}
    api.command_error("TIMEOUT_WRITING_DATA", times=1, command="insertOne")   # HTTP 200 SERVER error
    api.row_error("TIMEOUT_WRITING_DATA", rows=2)     # the next 2 rows fail alone, the rest of the insert is written
    api.legacy = True                                 # pre-2026 error names and shapes

Every behaviour comes from the stargate/data-api sources (main of 2026-08); comments cite files under
src/main/java/io/stargate/sgv2/jsonapi/ as J/ and src/main/resources/errors.yaml as YAML. The request pipeline, in
the order the server applies it:
  1. Quarkus' body limit (application.yaml quarkus.http.limits.max-body-size 20M): 413, no body.
  2. Routing (J/api/v1/GeneralResource, KeyspaceResource, CollectionResource: `POST /v1`, `/v1/{keyspace}`,
     `/v1/{keyspace}/{table}`): any other path or method is a bare 404 (FrameworkExceptionMapper returns a
     NotFoundException as its status; the server's own HttpStatusCodeIntegrationTest notes that a GET gets 404,
     not 405, with Quarkus 3.24). Astra serves the same resources under `/api/json/v1` (astrapy's
     API_PATH_ENV_MAP), self-hosted under `/v1`.
  3. Authentication (J/api/security/HeaderBasedAuthenticationMechanism): a request without `Token` (or `token`,
     or the deprecated `X-Cassandra-Token`) header gets 401 MISSING_AUTHENTICATION_TOKEN
     (J/api/security/challenge/impl/ErrorChallengeSender). The token itself is only checked later, when the
     server opens a CQL session for it.
  4. Content-Type (@Consumes(APPLICATION_JSON)): another type is 415 UNSUPPORTED_CONTENT_TYPE with a JSON body.
  5. Jackson reads the body into exactly one command (@JsonTypeInfo WRAPPER_OBJECT): bad JSON or a duplicate
     key (STRICT_DUPLICATE_DETECTION) is REQUEST_NOT_JSON, a body that is not one single-key object is
     REQUEST_STRUCTURE_MISMATCH, an unknown command COMMAND_UNKNOWN (J/api/configuration/
     CommandObjectMapperHandler), an unknown field COMMAND_FIELD_UNKNOWN (FAIL_ON_UNKNOWN_PROPERTIES), options
     on insertOne COMMAND_ACCEPTS_NO_OPTIONS (J/api/model/command/NoOptionsCommand), a number longer than 100
     characters SHRED_DOC_LIMIT_VIOLATION; then bean validation: COMMAND_FIELD_VALUE_INVALID for a missing
     document, an empty or a 101-document insertMany (J/api/model/command/validation/MaxInsertManyDocuments,
     OperationsConfig maxDocumentInsertCount 100). All of these answer HTTP 200.
  6. The schema lookup opens the CQL session: an unknown token is 401 UNAUTHENTICATED_REQUEST (CqlSessionFactory),
     then UNKNOWN_KEYSPACE and UNKNOWN_COLLECTION_OR_TABLE (J/service/schema/SchemaObjectFactory), HTTP 200, scope
     SCHEMA. On Astra a token whose role cannot see the keyspace gets UNKNOWN_KEYSPACE too (`keyspace_access`).
  7. The command. insertOne/insertMany validate each row (J/service/operation/tables/WriteableTableRowBuilder:
     UNKNOWN_TABLE_COLUMNS, then INVALID_COLUMN_VALUES from the codecs of J/service/operation/filters/table/
     codecs/JSONCodecs.java, then MISSING_PRIMARY_KEY_COLUMNS), all scope DOCUMENT, then write every valid row as
     an upsert (unordered) or stop at the first failure and skip the rest (ordered). A write the token's role may
     not make is 401 UNAUTHORIZED_ACCESS (DefaultDriverExceptionHandler; YAML http-status-override 401).
     Results follow J/service/operation/InsertDBTaskPage: with returnDocumentResponses, status.documentResponses
     [{_id: [key values], status: OK|ERROR|SKIPPED, errorsIdx}] in document order, a refused row's _id being []
     (RowId.EMPTY_ROWID), errors de-duplicated; without it, insertedIds and one error per failed row.
     status.primaryKeySchema is {column: {type}} of the key.
Values (J/service/shredding/JsonNodeDecoder, USE_BIG_DECIMAL_FOR_FLOATS): text and ascii only from JSON strings;
bigint and int from integers in range or from decimals with no fraction (BigDecimal.longValueExact: 5.0 and 1e3
are accepted, strings are not); double from any number (an overflowing decimal becomes Infinity: the codec has no
bound check) or the strings "NaN", "Infinity", "-Infinity"; boolean from true/false; timestamp from a string
Instant.parse accepts (Java 21 ISO_INSTANT: case-insensitive, seconds required, 0 to 9 fraction digits, `Z` or
`+HH:MM[:SS]`; stored in milliseconds) or {"$date": <epoch ms>}; int, smallint and tinyint like bigint in their
ranges ("Overflow, value too big for INT"), varint any integer, decimal any number, float any number kept as a Java
float; date only from a string LocalDate.parse accepts (yyyy-MM-dd: "Text '2026-11-20T09:14:03.123Z' could not be
parsed, unparsed text found at index 10"); uuid from a string; map<text, V> only from a JSON object, list<V> and
set<V> only from a JSON array, each element through V's codec (DefaultJSONCodecRegistry.codecToCQL: any other JSON
value is "no codec matching value type"). Every codec failure is one INVALID_COLUMN_VALUES error for the row, scope
DOCUMENT, naming each bad column as "<name>(<cql type>) - Cause: <root cause>" (J/service/shredding/CqlNamedValue
checkCodecError); a column the table lacks is UNKNOWN_TABLE_COLUMNS, checked first (WriteableTableRowBuilder). null
unsets a column (a tombstone). listTables with explain describes each column in the long form (J/api/model/command/
serializer/ColumnDescSerializer): {"type": "text"}, {"type": "map", "keyType": "text", "valueType": "text"},
{"type": "list", "valueType": "int"}.

Where SPEC §4a and the server differ, or SPEC is silent, this emulator follows the server:
  - a wrong method gets 404 (not 405), and neither has a JSON body;
  - insertOne accepts `"options": {}` or null (NoOptionsCommand refuses only a non-empty value);
  - the token may also come as `token` or the deprecated `X-Cassandra-Token`; it is checked only after the
    command was read, so a malformed command with a bad token gets its HTTP 200 error, not 401;
  - a role without permission gets 401 UNAUTHORIZED_ACCESS, not 403;
  - a timestamp may carry 0 to 9 fraction digits, a lower-case t or z, and an offset with seconds;
  - bigint accepts a JSON decimal without a fraction (5.0, 1e3); double turns an overflowing number into
    Infinity (the codec has no bound check);
  - tables have no per-document size or string-length limit (DocumentShredder's 4 MB and 8,000 bytes are for
    collections): only the 20 MB body, and numbers of at most 100 characters;
  - identical row errors are listed once in `errors` (CommandError.nonIdentityMatcher), so rows may share an
    errorsIdx;
  - server errors have no HTTP status override any more (all HTTP 200); before 2026 (`legacy`) the driver
    timeout was 504 and "no node available" 502 with the JSON body (ThrowableToErrorMapper of v1.0.30);
  - UNKNOWN_KEYSPACE exists twice: scope SCHEMA (the keyspace is not in the metadata; what a sink meets) and
    scope DATABASE (family SERVER: the database lost it in between; "safe to retry").
Not verified, chosen as the closest reading and marked where they happen: the exact Jackson texts inside
REQUEST_NOT_JSON and REQUEST_STRUCTURE_MISMATCH, the timestamp parser's message (Java also names an index), that a
request without Content-Type is accepted, an empty Token header or a malformed `Cassandra:` token answered as
UNAUTHENTICATED_REQUEST, and the legacy messages and their errors having only `message` and `errorCode`.
"""

import argparse
import base64
import binascii
import datetime
import decimal
import json
import re
import struct
import urllib.parse
import uuid

from .base import Emulator, Reply, serve_forever

DEFAULT_TOKENS = ("AstraCS:test-token",)
DEFAULT_USERS = {"cassandra": "cassandra"}
MAX_BODY = 20 * 1024 * 1024  # quarkus.http.limits.max-body-size: 20M
MAX_INSERT = 100  # OperationsConfig.DEFAULT_MAX_DOCUMENT_INSERT_COUNT
MAX_NUMBER_LENGTH = 100  # DocumentLimitsConfig.DEFAULT_MAX_NUMBER_LENGTH (Jackson StreamReadConstraints)
LONG = (-(2**63), 2**63 - 1)
INT = (-(2**31), 2**31 - 1)
NAME = re.compile(r"[A-Za-z0-9_]{1,48}")  # J/service/schema/naming/NamingRules (TABLE, KEYSPACE)
# Primitive types a column may be created with, and what this emulator can store (a subset of ApiDataTypeDefs),
# and the collections of them (J/service/schema/tables/ApiMapType, ApiListType, ApiSetType).
TYPES = (
    "ascii",
    "bigint",
    "boolean",
    "date",
    "decimal",
    "double",
    "float",
    "int",
    "smallint",
    "text",
    "timestamp",
    "tinyint",
    "uuid",
    "varint",
)
COLLECTIONS = ("list", "map", "set")
CQL_SYNONYMS = {"varchar": "text"}
SMALLINT = (-(2**15), 2**15 - 1)
TINYINT = (-(2**7), 2**7 - 1)

KEYSPACE_COMMANDS = sorted(
    ["createCollection", "deleteCollection", "findCollections"]  # CollectionOnlyCommand
    + ["alterType", "createTable", "createType", "dropIndex", "dropTable", "dropType", "listTables", "listTypes"]
)
TABLE_COMMANDS = sorted(
    ["countDocuments", "deleteMany", "deleteOne", "estimatedDocumentCount", "findAndRerank", "find"]
    + ["findOneAndDelete", "findOneAndReplace", "findOneAndUpdate", "findOne", "insertMany", "insertOne"]
    + ["updateMany", "updateOne", "alterTable", "createIndex", "createTextIndex", "createVectorIndex", "listIndexes"]
)
GENERAL_COMMANDS = sorted(["createKeyspace", "dropKeyspace", "findKeyspaces", "findEmbeddingProviders"])

# YAML titles, and the message bodies the sink's paths meet (${vars} filled from the command).
TEMPLATES = {
    "COMMAND_ACCEPTS_NO_OPTIONS": (
        "REQUEST",
        "",
        "Command accepts no options",
        "Command '{command}' does not accept options but some were included.\n\nResend command without options.",
    ),
    "COMMAND_FIELD_VALUE_INVALID": (
        "REQUEST",
        "",
        "Command field value invalid",
        "Command field '{field}' value {value} not valid: {message}.\n\nResend command with valid value.",
    ),
    "COMMAND_FIELD_UNKNOWN": (
        "REQUEST",
        "",
        "Command field unknown",
        "Command field '{field}' not recognized: {message}.\n\nResend command with valid command fields.",
    ),
    "COMMAND_UNKNOWN": (
        "REQUEST",
        "",
        "Command is not recognized by Data API",
        "Command '{command}' is not a {commandType} recognized by Data API.\n\nData API supports following "
        "{commandType}s: {knownCommands}.\n\nResend using one of the supported commands.",
    ),
    "REQUEST_NOT_JSON": (
        "REQUEST",
        "",
        "Request not valid JSON",
        "Request not valid JSON, problem: {errorMessage}.\n\nResend request as valid JSON.",
    ),
    "REQUEST_STRUCTURE_MISMATCH": (
        "REQUEST",
        "",
        "Request structure not valid",
        "Request is valid JSON but has a structural mismatch: {errorMessage}.\n\nResend request with valid structure.",
    ),
    "UNSUPPORTED_CONTENT_TYPE": (
        "REQUEST",
        "",
        "Unsupported Content-Type",
        "Request sent with unsupported 'Content-Type' header value.\n\nThe API only supports content type: "
        "application/json\n\nResend with supported 'Content-Type' header.",
    ),
    "MISSING_AUTHENTICATION_TOKEN": (
        "REQUEST",
        "SECURITY",
        "Missing authorization token",
        "The command did not include an authorization token in the request headers.\n\nThe authorization header "
        "is: Token.\n\nResend the command using the correct authentication details.",
    ),
    "UNAUTHENTICATED_REQUEST": (
        "REQUEST",
        "SECURITY",
        "Authentication failed",
        "Authentication failed for request due to invalid token.\n\nResend with valid authentication token.",
    ),
    "UNAUTHORIZED_ACCESS": (
        "REQUEST",
        "SECURITY",
        "Unauthorized access to the database",
        "The command is not authorized to perform the action on the database. \n\nThe authentication details "
        "provided with the command do not allow it to perform the action is was attempting, such as reading or "
        "writing data. \n\nThe command used the keyspace and table or collection: {keyspace}.{table}.\n\nResend "
        "the command using the correct authentication details.",
    ),
    "MISSING_PRIMARY_KEY_COLUMNS": (
        "REQUEST",
        "DOCUMENT",
        "Primary key columns missing",
        "All primary key columns must be provided when inserting a document into a table. \n\nThe table "
        "{keyspace}.{table} defines the primary key columns: {primaryKeys}.\n\nThe command included values for "
        "primary key columns: {providedKeys}.\nThe command did not include values for primary key columns: "
        "{missingKeys}.\n\nResend the command including the missing primary key columns.",
    ),
    "SHRED_DOC_LIMIT_VIOLATION": (
        "REQUEST",
        "DOCUMENT",
        "Document size limitation violated",
        "Document size limitation violated: {errorMessage}.",
    ),
    "UNKNOWN_TABLE_COLUMNS": (
        "REQUEST",
        "DOCUMENT",
        "Columns in documents are not defined in the table schema",
        "Only columns defined in the table schema can be included when inserted a document into a table.\n\nThe "
        "table {keyspace}.{table} defines the columns: {allColumns}.\nThe command included the following unknown "
        "columns: {unknownColumns}.\n\nResend the command using only columns defined in the table schema.",
    ),
    "INVALID_COLUMN_VALUES": (
        "REQUEST",
        "DOCUMENT",
        "Column values in documents are not valid",
        "Only values that are supported by the column data type can be included when inserting a document into "
        "a table.\n\nThe table {keyspace}.{table} defines the columns: {allColumns}.\nThe command included the "
        "following columns that had invalid values: {invalidColumns}.\n\nResend the command using only supported "
        "column values.",
    ),
    "UNKNOWN_KEYSPACE": (
        "REQUEST",
        "SCHEMA",
        "Keyspace does not exist in the Database",
        "The command tried to use a Keyspace that does not exist in the Database.\n\nThe keyspace used by the "
        "command: {keyspace}.\n\nResend the command using a Keyspace that exists.",
    ),
    "UNKNOWN_COLLECTION_OR_TABLE": (
        "REQUEST",
        "SCHEMA",
        "Collection or Table does not exist in the Keyspace",
        "The command tried to get a Collection or Table {table} that does not exist in the Keyspace {keyspace}."
        "\n\nThe keyspace has the existing collections or tables: {allTables}.\n\nResend the command using a "
        "Collection or Table that exists.",
    ),
    "UNSUPPORTED_SCHEMA_NAME": (
        "REQUEST",
        "SCHEMA",
        "The used schema name is not supported",
        "The command attempted to create a {schemaType} with a name that is not supported.\n\nThe supported "
        "{schemaType} names must not be empty, more than 48 characters long, or contain "
        "non-alphanumeric-underscore characters.\nThe command used the unsupported {schemaType} name: "
        "'{name}'.\n\nResend the command using a supported {schemaType} name.",
    ),
    "UNKNOWN_PRIMITIVE_DATA_TYPE": (
        "REQUEST",
        "SCHEMA",
        "Primitive data type is unknown",
        "The column definition used the short hand for the data type, which only supports primitive data types."
        "\n\nThe supported primitive data types are: {supportedTypes}.\nThe command used the unsupported data "
        "type: {unsupportedType}.\n\nResend the command using a known primitive data type.",
    ),
    "MISSING_PARTITION_COLUMNS": (
        "REQUEST",
        "SCHEMA",
        "Partitioning keys are required for tables",
        "The table definition must have at least one partition key.\n\nThe table definition includes the "
        "columns: {tableColumns}.\n\nResend the command using at least one partition key. ",
    ),
    "UNKNOWN_PARTITION_COLUMNS": (
        "REQUEST",
        "SCHEMA",
        "Partition columns are not defined in the table schema",
        "The column used to partition by are not present in the table schema.\n\nThe table definition includes "
        "the columns: {tableColumns}.\nThe partition includes the unknown columns: {unknownColumns}.\n\nResend "
        "the command using only columns included in the table definition.",
    ),
    "CANNOT_ADD_EXISTING_TABLE": (
        "REQUEST",
        "SCHEMA",
        "Table with the same name exists in the keyspace schema",
        "The command attempted to add a table that already exists in the keyspace schema.\n\nThe command "
        "attempted to add the existing table: {table}.\n\nResend the command using a table name that does not "
        "exist in the keyspace.",
    ),
    "CANNOT_DROP_UNKNOWN_TABLE": (
        "REQUEST",
        "SCHEMA",
        "Dropped table is not defined in the keyspace schema",
        "The command attempted to drop a table that is not in the keyspace schema.\n\nThe command attempted to "
        "drop the unknown table: {table}.\n\nResend the command using a table that exists in the keyspace.",
    ),
    "INVALID_DATABASE_QUERY": (
        "SERVER",
        "DATABASE",
        "Invalid database query",
        "The Data API command generated a database query that while syntactically correct, was rejected as "
        "invalid by the database.  \n\nThe database error: {errorMessage}.\n\nRetrying the command will likely "
        "result in the same error.",
    ),
}
# The SERVER/DATABASE errors a test can inject (command_error); each says it is safe to retry (YAML).
SERVER_ERRORS = {
    "TIMEOUT_WRITING_DATA": "Timeout writing data",
    "UNAVAILABLE_DATABASE": "The database is unavailable",
    "FAILED_TO_CONNECT_TO_DATABASE": "Data API Failed to connect to the database",
    "FAILED_CONCURRENT_OPERATIONS": "Failed to complete concurrent operations on the database",
}
# Pre-2026 names (J/exception/ErrorCodeV1 of v1.0.30) and their messages ("<ErrorCodeV1 message>: <detail>").
LEGACY = {
    "UNKNOWN_COLLECTION_OR_TABLE": ("COLLECTION_NOT_EXIST", "Collection does not exist, collection name: {table}"),
    "UNKNOWN_KEYSPACE": ("KEYSPACE_DOES_NOT_EXIST", "The provided keyspace does not exist: {keyspace}"),
    "COMMAND_FIELD_VALUE_INVALID": (
        "COMMAND_FIELD_INVALID",
        "Request invalid: field '{field}' value {value} not valid. Problem: {message}.",
    ),
    "TIMEOUT_WRITING_DATA": ("SERVER_DRIVER_TIMEOUT", "Driver timeout"),
    "UNAVAILABLE_DATABASE": ("SERVER_NO_NODE_AVAILABLE", "No node was available to execute the query"),
}
LEGACY_STATUS = {"SERVER_DRIVER_TIMEOUT": 504, "SERVER_NO_NODE_AVAILABLE": 502}

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_INSTANT = re.compile(
    r"([+-]\d{4,}|\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{0,9}))?(Z|[+-]\d\d:\d\d(?::\d\d)?)",
    re.IGNORECASE | re.ASCII,
)


class _Answer(Exception):
    """Stops a request with a whole-command answer (errors, and the HTTP status of the first non-200 one)."""

    def __init__(self, reply):
        super().__init__(reply.status)
        self.reply = reply


class _RowError(Exception):
    """One row refused (a DOCUMENT-scope error, or the database's)."""

    def __init__(self, error):
        super().__init__(error["errorCode"])
        self.error = error


class _NumberTooLong(ValueError):
    pass


class _Table:
    def __init__(self, keyspace, name, columns, partition_by, partition_sort=()):
        self.keyspace = keyspace
        self.name = name
        self.columns = {column: cql_type(kind) for column, kind in columns.items()}
        self.partition_by = list(partition_by)
        self.partition_sort = list(partition_sort)
        for column in self.primary_key:
            if column not in self.columns:
                raise ValueError(f"key column {column!r} is not a column of {keyspace}.{name}")

    @property
    def primary_key(self):
        return self.partition_by + self.partition_sort

    def described(self, column):
        return f"{column}({self.columns[column]})"

    def all_columns(self):
        """errFmtColumnMetadata of the driver's columns: key columns first, then the others by name."""
        names = self.primary_key + sorted(name for name in self.columns if name not in self.primary_key)
        return ", ".join(self.described(name) for name in names)


class DataAPI(Emulator):
    """The Data API's table commands over an in-memory database. `astra` picks Astra's paths and tokens."""

    name = "dataapi"

    def __init__(self, tokens=DEFAULT_TOKENS, users=None, astra=True, keyspaces=("peepshow",), legacy=False):
        super().__init__()
        self.astra = astra
        self.prefix = "/api/json/v1" if astra else "/v1"
        self.legacy = legacy
        self.keyspace_access = {}  # token -> keyspaces it may see (Astra custom roles); absent: every keyspace
        self.read_only = set()  # tokens whose role may read but not write
        self._initial = (frozenset(tokens), dict(DEFAULT_USERS if users is None else users), tuple(keyspaces))
        self.tokens, self.users = set(tokens), dict(self._initial[1])
        self.keyspaces = {keyspace: {} for keyspace in keyspaces}
        self._rows = {}
        self._command_errors = []
        self._row_errors = []
        self.writes = 0
        self.commands = []

    # -- what tests use -------------------------------------------------------------------------------------------

    def reset(self):
        super().reset()
        with self.lock:
            self.tokens, self.users = set(self._initial[0]), dict(self._initial[1])
            self.keyspaces = {keyspace: {} for keyspace in self._initial[2]}
            self._rows.clear()
            self._command_errors.clear()
            self._row_errors.clear()
            self.keyspace_access.clear()
            self.read_only.clear()
            self.legacy = False
            self.writes = 0
            self.commands.clear()

    def add_table(self, keyspace, name, columns, primary_key=("run_id",), partition_sort=()):
        with self.lock:
            self.keyspaces.setdefault(keyspace, {})[name] = _Table(keyspace, name, columns, primary_key, partition_sort)

    def command_error(self, code, times=1, command=None):
        """The next `times` commands (of that name; None: every one) fail whole with the SERVER/DATABASE error
        `code` at HTTP 200,
        writing nothing (in legacy mode with its pre-2026 name and HTTP status)."""
        assert code in SERVER_ERRORS, code
        with self.lock:
            self._command_errors.append({"code": code, "times": times, "command": command})

    def row_error(self, code, rows=1):
        """The next `rows` valid rows of insert commands fail on their own with the SERVER/DATABASE error `code`
        (a write the database timed out on), unwritten, while the other rows of the command are written: each row
        of an unordered insertMany is its own CQL statement (J/service/operation/InsertDBTaskPage)."""
        assert code in SERVER_ERRORS, code
        with self.lock:
            self._row_errors.extend([code] * rows)

    def table(self, keyspace, name):
        return self.keyspaces.get(keyspace, {}).get(name)

    def rows(self, keyspace, name):
        table = self.keyspaces[keyspace][name]
        with self.lock:
            stored = [dict(row) for row in self._rows.get((keyspace, name), {}).values()]
        return [{column: _python(kind, row.get(column)) for column, kind in table.columns.items()} for row in stored]

    # -- the pipeline ---------------------------------------------------------------------------------------------

    def handle(self, request):
        try:
            return self._pipeline(request)
        except _Answer as answer:
            return answer.reply

    def _pipeline(self, request):
        if len(request.body) > MAX_BODY:
            return Reply(413)
        target = self._route(request)
        if target is None:
            return Reply(404)
        token = request.header("token", request.header("x-cassandra-token"))
        if token is None:
            return self._errors([self._error("MISSING_AUTHENTICATION_TOKEN")])
        if request.content_type and request.content_type != "application/json":
            return self._errors([self._error("UNSUPPORTED_CONTENT_TYPE")])
        keyspace, table_name = target
        kind = "General Command" if keyspace is None else "Keyspace Command" if table_name is None else None
        known = GENERAL_COMMANDS if keyspace is None else KEYSPACE_COMMANDS if table_name is None else TABLE_COMMANDS
        command, body = self._read_command(request.body, kind or "Collection Command", known)
        with self.lock:
            self.commands.append((keyspace, table_name, command))
        handler = getattr(self, "_" + command, None)
        if handler is None or keyspace is None:
            return Reply(501, {"emulator": f"{command} is not modelled by the Data API emulator"})
        arguments = self._arguments(command, body)
        self._authenticate(token)
        self._check_keyspace(token, keyspace)
        injected = self._take_command_error(command)
        if injected:
            return self._errors([injected])
        table = None
        if table_name is not None:
            table = self.table(keyspace, table_name)
            if table is None:
                existing = ", ".join(sorted(self.keyspaces[keyspace])) or "[None]"
                raise _Answer(
                    self._errors(
                        [
                            self._error(
                                "UNKNOWN_COLLECTION_OR_TABLE", keyspace=keyspace, table=table_name, allTables=existing
                            )
                        ]
                    )
                )
        return handler(token, keyspace, table, arguments)

    def _route(self, request):
        """(keyspace or None, table or None) for a POST to one of the three resources, else None."""
        if request.method != "POST" or not (request.path + "/").startswith(self.prefix + "/"):
            return None
        parts = [urllib.parse.unquote(part) for part in request.path[len(self.prefix) :].split("/")[1:]]
        if parts in ([], [""]):
            return None, None
        if len(parts) > 2 or not all(parts):
            return None
        return parts[0], (parts[1] if len(parts) == 2 else None)

    # -- reading the command --------------------------------------------------------------------------------------

    def _read_command(self, body, kind, known):
        try:
            document = json.loads(
                body.decode("utf-8"),
                object_pairs_hook=_no_duplicates,
                parse_float=_decimal,
                parse_int=_integer,
                parse_constant=_no_constant,
            )
        except _NumberTooLong as error:
            raise _Answer(self._errors([self._error("SHRED_DOC_LIMIT_VIOLATION", errorMessage=str(error))])) from None
        except (ValueError, UnicodeDecodeError) as error:
            # Jackson's own wording differs (not verified); the code is what clients match on.
            raise _Answer(self._errors([self._error("REQUEST_NOT_JSON", errorMessage=str(error))])) from None
        if not isinstance(document, dict) or len(document) != 1:
            problem = "need exactly one command: a JSON Object with a single field, the command name"
            raise _Answer(self._errors([self._error("REQUEST_STRUCTURE_MISMATCH", errorMessage=problem)]))
        ((command, body),) = document.items()
        if command not in known:
            names = "[" + ", ".join(known) + "]"
            raise _Answer(
                self._errors([self._error("COMMAND_UNKNOWN", command=command, commandType=kind, knownCommands=names)])
            )
        if body is None:
            body = {}
        if not isinstance(body, dict):
            problem = f"Cannot construct instance of `{command}` from a non-Object value"
            raise _Answer(self._errors([self._error("REQUEST_STRUCTURE_MISMATCH", errorMessage=problem)]))
        return command, body

    def _arguments(self, command, body):
        """The command's fields, checked as Jackson and bean validation check them."""
        fields = {
            "insertOne": ("document", "options"),
            "insertMany": ("documents", "options"),
            "createTable": ("name", "definition", "options"),
            "listTables": ("options",),
            "dropTable": ("name", "options"),
        }[command]
        options = {
            "insertMany": ("ordered", "returnDocumentResponses"),
            "createTable": ("ifNotExists",),
            "listTables": ("explain",),
            "dropTable": ("ifExists",),
        }.get(command)
        self._known_fields(body, fields)
        given = body.get("options")
        if command == "insertOne":
            if given is not None and given != {}:
                raise _Answer(self._errors([self._error("COMMAND_ACCEPTS_NO_OPTIONS", command=command)]))
        elif given is not None:
            if not isinstance(given, dict):
                self._mismatch(f"options of `{command}` must be a JSON Object")
            self._known_fields(given, options)
            for name, value in given.items():
                if value is not None and not isinstance(value, bool):
                    self._mismatch(f"Cannot deserialize value of type `boolean` from {type(value).__name__} ({name})")
        if command == "insertOne":
            self._not_null("command.document", body.get("document"))
            if not isinstance(body["document"], dict):
                self._mismatch("`document` must be a JSON Object")
        if command == "insertMany":
            documents = body.get("documents")
            self._not_null("command.documents", documents)
            if not isinstance(documents, list):
                self._mismatch("Cannot deserialize value of type `java.util.ArrayList` from Object value")
            if not documents:
                self._invalid("command.documents", documents, "must not be empty")
            if len(documents) > MAX_INSERT:
                message = f"amount of documents to insert is over the max limit ({len(documents)} vs {MAX_INSERT})"
                self._invalid("command.documents", documents, message)
        if command in ("createTable", "dropTable") and not isinstance(body.get("name", ""), (str, type(None))):
            self._mismatch("`name` must be a JSON String")
        if command == "createTable":
            self._not_null("command.definition", body.get("definition"))
            if not isinstance(body["definition"], dict):
                self._mismatch("`definition` must be a JSON Object")
            self._known_fields(body["definition"], ("columns", "primaryKey"))
        if command == "dropTable" and not body.get("name"):
            self._invalid("command.name", body.get("name"), "must not be empty")
        return {**body, "options": given or {}}

    def _known_fields(self, body, allowed):
        for name in body:
            if name not in allowed:
                known = ", ".join(f"'{field}'" for field in sorted(allowed))
                raise _Answer(
                    self._errors(
                        [self._error("COMMAND_FIELD_UNKNOWN", field=name, message=f"not one of known fields ({known})")]
                    )
                )

    def _not_null(self, field, value):
        if value is None:
            self._invalid(field, None, "must not be null")

    def _invalid(self, field, value, message):
        """FrameworkExceptionMapper.apiExceptionFor: a JSON value is shown by its length only."""
        shown = "`null`" if value is None else f"<JSON value of {len(json.dumps(value, default=str))} characters>"
        raise _Answer(
            self._errors([self._error("COMMAND_FIELD_VALUE_INVALID", field=field, value=shown, message=message)])
        )

    def _mismatch(self, problem):
        raise _Answer(self._errors([self._error("REQUEST_STRUCTURE_MISMATCH", errorMessage=problem)]))

    # -- authentication and the keyspace --------------------------------------------------------------------------

    def _authenticate(self, token):
        """CqlCredentialsFactory: `Cassandra:<b64 user>:<b64 password>` logs in as that user, anything else is a
        token. Astra knows its application tokens; a self-hosted server logs in with the credentials (a plain
        token becomes the user "token", which the emulator does not have)."""
        with self.lock:
            if self.astra:
                known = token in self.tokens
            else:
                credentials = _cassandra_credentials(token)
                known = credentials is not None and self.users.get(credentials[0]) == credentials[1]
        if not known:
            raise _Answer(self._errors([self._error("UNAUTHENTICATED_REQUEST")]))

    def _check_keyspace(self, token, keyspace):
        with self.lock:
            visible = keyspace in self.keyspaces and keyspace in self.keyspace_access.get(token, {keyspace})
        if not visible:
            raise _Answer(self._errors([self._error("UNKNOWN_KEYSPACE", keyspace=keyspace)]))

    def _check_write(self, token, keyspace, table):
        if token in self.read_only:
            raise _Answer(self._errors([self._error("UNAUTHORIZED_ACCESS", keyspace=keyspace, table=table)]))

    def _take_command_error(self, command):
        with self.lock:
            for spec in self._command_errors:
                if spec["command"] in (None, command):
                    if spec["times"] is not None:
                        spec["times"] -= 1
                        if spec["times"] <= 0:
                            self._command_errors.remove(spec)
                    return self._server_error(spec["code"])
        return None

    # -- errors -----------------------------------------------------------------------------------------------------

    def _error(self, code, **variables):
        """One CommandError as J/api/model/command/CommandError serialises it (id, family, scope, errorCode,
        title, message); `legacy` answers with the old name and the old, non-extended shape."""
        if self.legacy and code in LEGACY:
            old, message = LEGACY[code]
            return {"message": message.format(**variables), "errorCode": old}
        family, scope, title, body = TEMPLATES[code]
        return {
            "id": str(uuid.uuid4()),
            "family": family,
            "scope": scope,
            "errorCode": code,
            "title": title,
            "message": body.format(**variables),
        }

    def _server_error(self, code):
        if self.legacy and code in LEGACY:
            old, message = LEGACY[code]
            return {"message": message, "errorCode": old}
        return {
            "id": str(uuid.uuid4()),
            "family": "SERVER",
            "scope": "DATABASE",
            "errorCode": code,
            "title": SERVER_ERRORS[code],
            "message": f"{SERVER_ERRORS[code]}. The command used the keyspace and table or collection.\n\n"
            "It is safe to retry this request.",
        }

    @staticmethod
    def _errors(errors):
        """CommandResult.toRestResponse: HTTP 200 unless an error carries another status (the first one wins):
        401 for the SECURITY scope and 415 for the content type (YAML http-status-override), and before 2026
        504/502 for the driver's timeouts and missing nodes."""
        statuses = [_http_status(error) for error in errors]
        return Reply(next((status for status in statuses if status != 200), 200), {"errors": errors})

    # -- table commands -------------------------------------------------------------------------------------------

    def _insertOne(self, token, keyspace, table, arguments):
        return self._insert(token, table, [arguments["document"]], ordered=False, responses=False)

    def _insertMany(self, token, keyspace, table, arguments):
        options = arguments["options"]
        return self._insert(
            token,
            table,
            arguments["documents"],
            ordered=bool(options.get("ordered")),
            responses=bool(options.get("returnDocumentResponses")),
        )

    def _insert(self, token, table, documents, ordered, responses):
        self._check_write(token, table.keyspace, table.name)
        results = []  # (status, key or None, error or None) per document
        failed = False
        for document in documents:
            if failed and ordered:
                key = self._key_of(table, document)
                results.append(("SKIPPED", key, None))
                continue
            try:
                values = self._row(table, document)
            except _RowError as refused:
                failed = True
                results.append(("ERROR", [], refused.error))
                continue
            key = [_json_value(table.columns[c], values[c]) for c in table.primary_key]
            with self.lock:
                injected = self._row_errors.pop(0) if self._row_errors else None
            if injected is not None:
                failed = True
                results.append(("ERROR", key, self._server_error(injected)))
                continue
            self._store(table, values)
            results.append(("OK", key, None))
        key_schema = {column: {"type": table.columns[column]} for column in table.primary_key}
        if responses:
            errors, entries = [], []
            for status, key, error in results:
                entry = {"_id": key if key is not None else [], "status": status}
                if error is not None:
                    same = [i for i, seen in enumerate(errors) if _same_error(seen, error)]
                    if not same:
                        errors.append(error)
                    entry["errorsIdx"] = same[0] if same else len(errors) - 1
                entries.append(entry)
            status = {"primaryKeySchema": key_schema, "documentResponses": entries}
            return Reply(200, {"status": status, "errors": errors} if errors else {"status": status})
        inserted = [key for status, key, _ in results if status == "OK"]
        errors = [error for status, _, error in results if status == "ERROR"]
        body = {}
        if inserted:
            body["status"] = {"primaryKeySchema": key_schema, "insertedIds": inserted}
        if errors:
            body["errors"] = errors
        return Reply(200, body)

    def _key_of(self, table, document):
        """A skipped row's _id: its key values as sent (the row was built, so they are valid)."""
        try:
            values = self._row(table, document)
        except _RowError:
            return []
        return [_json_value(table.columns[column], values[column]) for column in table.primary_key]

    def _row(self, table, document):
        """WriteableTableRowBuilder.build: unknown columns, then codec errors, then missing key columns."""
        document = document if isinstance(document, dict) else {}
        names = {"keyspace": table.keyspace, "table": table.name, "allColumns": table.all_columns()}
        unknown = sorted(name for name in document if name not in table.columns)
        if unknown:
            raise _RowError(self._error("UNKNOWN_TABLE_COLUMNS", unknownColumns=", ".join(unknown), **names))
        values, invalid = {}, []
        for name in sorted(document):
            try:
                values[name] = _to_cql(table.columns[name], document[name])
            except ValueError as problem:
                invalid.append(f"{table.described(name)} - Cause: {problem}")
        if invalid:
            raise _RowError(self._error("INVALID_COLUMN_VALUES", invalidColumns=", ".join(invalid), **names))
        missing = [name for name in table.primary_key if values.get(name) is None]
        if missing:
            provided = [table.described(name) for name in table.primary_key if name not in missing]
            raise _RowError(
                self._error(
                    "MISSING_PRIMARY_KEY_COLUMNS",
                    primaryKeys=", ".join(table.described(name) for name in table.primary_key),
                    providedKeys=", ".join(provided) or "[None]",
                    missingKeys=", ".join(table.described(name) for name in missing),
                    **names,
                )
            )
        if len(table.partition_by) == 1 and values[table.partition_by[0]] == "":
            # Cassandra refuses an empty partition key at execution: the driver's InvalidQueryException becomes
            # INVALID_DATABASE_QUERY (DefaultDriverExceptionHandler), reported for that row.
            raise _RowError(self._error("INVALID_DATABASE_QUERY", errorMessage="Key may not be empty"))
        return values

    def _store(self, table, values):
        key = tuple(values[column] for column in table.primary_key)
        with self.lock:
            self._rows.setdefault((table.keyspace, table.name), {}).setdefault(key, {}).update(values)
            self.writes += 1

    # -- keyspace commands ----------------------------------------------------------------------------------------

    def _createTable(self, token, keyspace, table, arguments):
        name = arguments.get("name")
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise _Answer(self._errors([self._error("UNSUPPORTED_SCHEMA_NAME", schemaType="Table", name=name)]))
        definition = arguments["definition"]
        columns = {}
        for column, kind in (definition.get("columns") or {}).items():
            try:
                columns[column] = cql_type(kind)
            except ValueError:
                spelled = kind.get("type") if isinstance(kind, dict) else kind
                raise _Answer(
                    self._errors(
                        [
                            self._error(
                                "UNKNOWN_PRIMITIVE_DATA_TYPE", supportedTypes=", ".join(TYPES), unsupportedType=spelled
                            )
                        ]
                    )
                ) from None
        primary = definition.get("primaryKey")
        partition_by = [primary] if isinstance(primary, str) else (primary or {}).get("partitionBy") or []
        sort = list(((primary or {}).get("partitionSort") or {}) if isinstance(primary, dict) else [])
        described = ", ".join(f"{column}({kind})" for column, kind in columns.items())
        if not partition_by:
            raise _Answer(self._errors([self._error("MISSING_PARTITION_COLUMNS", tableColumns=described)]))
        unknown = [column for column in partition_by + sort if column not in columns]
        if unknown:
            raise _Answer(
                self._errors(
                    [
                        self._error(
                            "UNKNOWN_PARTITION_COLUMNS", tableColumns=described, unknownColumns=", ".join(unknown)
                        )
                    ]
                )
            )
        self._check_write(token, keyspace, name)
        with self.lock:
            if name in self.keyspaces[keyspace]:
                # CREATE TABLE IF NOT EXISTS compares nothing: an existing table of any shape is "ok".
                if not arguments["options"].get("ifNotExists"):
                    raise _Answer(self._errors([self._error("CANNOT_ADD_EXISTING_TABLE", table=name)]))
            else:
                self.keyspaces[keyspace][name] = _Table(keyspace, name, columns, partition_by, sort)
        return Reply(200, {"status": {"ok": 1}})

    def _dropTable(self, token, keyspace, table, arguments):
        name = arguments["name"]
        self._check_write(token, keyspace, name)
        with self.lock:
            if name not in self.keyspaces[keyspace]:
                if not arguments["options"].get("ifExists"):
                    raise _Answer(self._errors([self._error("CANNOT_DROP_UNKNOWN_TABLE", table=name)]))
            else:
                del self.keyspaces[keyspace][name]
                self._rows.pop((keyspace, name), None)
        return Reply(200, {"status": {"ok": 1}})

    def _listTables(self, token, keyspace, table, arguments):
        """ListTablesDBTask: names, or with `explain` ApiTableDef.getSchemaDescription: {name, definition:
        {columns: {name: {type}}, primaryKey: {partitionBy, partitionSort}}}."""
        with self.lock:
            tables = list(self.keyspaces[keyspace].values())
        if not arguments["options"].get("explain"):
            return Reply(200, {"status": {"tables": [table.name for table in tables]}})
        described = [
            {
                "name": table.name,
                "definition": {
                    "columns": {column: column_desc(kind) for column, kind in table.columns.items()},
                    "primaryKey": {
                        "partitionBy": table.partition_by,
                        "partitionSort": {column: 1 for column in table.partition_sort},
                    },
                },
            }
            for table in tables
        ]
        return Reply(200, {"status": {"tables": described}})


# -- values ---------------------------------------------------------------------------------------------------------


def _http_status(error):
    code = error["errorCode"]
    if error.get("scope") == "SECURITY" or code == "UNAUTHENTICATED_REQUEST":
        return 401
    if code == "UNSUPPORTED_CONTENT_TYPE":
        return 415
    return LEGACY_STATUS.get(code, 200)


def _no_duplicates(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"Duplicate field '{key}'")
        seen[key] = value
    return seen


def _decimal(text):
    if len(text) > MAX_NUMBER_LENGTH:
        raise _NumberTooLong(f"Number value length ({len(text)}) exceeds the maximum allowed ({MAX_NUMBER_LENGTH})")
    return decimal.Decimal(text)


def _integer(text):
    if len(text) > MAX_NUMBER_LENGTH:
        raise _NumberTooLong(f"Number value length ({len(text)}) exceeds the maximum allowed ({MAX_NUMBER_LENGTH})")
    return int(text)


def _no_constant(name):
    raise ValueError(f"Non-standard token '{name}': enable `JsonReadFeature.ALLOW_NON_NUMERIC_NUMBERS` to allow")


def _same_error(one, other):
    """CommandError.nonIdentityMatcher: the same error but for its id."""
    return all(one.get(key) == other.get(key) for key in ("family", "scope", "errorCode", "title", "message"))


def _cassandra_credentials(token):
    """UsernamePasswordCredentials.fromToken: "Cassandra:" + base64(user) + ":" + base64(password), split on ':'
    (Java drops trailing empty parts, so an empty password cannot be sent this way)."""
    if not token.startswith("Cassandra:"):
        return None
    parts = token.split(":")
    while parts and parts[-1] == "":
        parts.pop()
    if len(parts) != 3:
        return None
    try:
        return tuple(base64.b64decode(part + "=" * (-len(part) % 4), validate=True).decode() for part in parts[1:])
    except (binascii.Error, UnicodeDecodeError):
        return None


def cql_type(spec):
    """A column definition as createTable takes it ("text", {"type": "map", "keyType": "text", "valueType": "int"})
    or as CQL spells it ("map<text,int>"), as the driver's asCql writes it: "map<text, int>". ValueError for a type
    the emulator does not model."""
    if isinstance(spec, dict):
        kind = str(spec.get("type") or "").lower()
        if kind == "map":
            return f"map<{cql_type(spec.get('keyType'))}, {cql_type(spec.get('valueType'))}>"
        if kind in ("list", "set"):
            return f"{kind}<{cql_type(spec.get('valueType'))}>"
        return cql_type(kind)
    text = "".join(str(spec).lower().split())
    container, _, inner = text.partition("<")
    if inner:
        parts = [cql_type(part) for part in inner[:-1].split(",")] if inner.endswith(">") else []
        if container == "map" and len(parts) == 2 and parts[0] in ("text", "ascii") and "<" not in parts[1]:
            return f"map<{parts[0]}, {parts[1]}>"
        if container in ("list", "set") and len(parts) == 1 and "<" not in parts[0]:
            return f"{container}<{parts[0]}>"
        raise ValueError(f"the emulator does not model type {spec!r}")
    text = CQL_SYNONYMS.get(text, text)
    if text not in TYPES:
        raise ValueError(f"the emulator does not model type {spec!r}")
    return text


def column_desc(kind):
    """How listTables explain describes a column (J/api/model/command/serializer/ColumnDescSerializer): the long
    form, {"type": ...}, the key and value types of a collection in the short form."""
    container, _, inner = kind.partition("<")
    if not inner:
        return {"type": kind}
    parts = inner[:-1].split(", ")
    if container == "map":
        return {"type": "map", "keyType": parts[0], "valueType": parts[1]}
    return {"type": container, "valueType": parts[0]}


def _to_cql(kind, value):
    """One value through JSONCodecs; ValueError carries the codec's root-cause text."""
    if value is None:
        return None
    container, _, inner = kind.partition("<")
    if inner:
        # DefaultJSONCodecRegistry.codecToCQL(MapType | ListType | SetType): a map from a JSON object only, a list
        # or set from a JSON array only; then every element through its own codec.
        parts = inner[:-1].split(", ")
        if container == "map":
            if not isinstance(value, dict):
                raise ValueError("no codec matching value type")
            return {key: _to_cql(parts[1], item) for key, item in value.items()}
        if not isinstance(value, list):
            raise ValueError("no codec matching value type")
        items = [_to_cql(parts[0], item) for item in value]
        return items if container == "list" else sorted(set(items), key=repr)
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)).startswith("$"):
        ((key, inner),) = value.items()
        if kind == "timestamp" and key == "$date":
            if isinstance(inner, bool) or not isinstance(inner, (int, decimal.Decimal)):
                raise ValueError("Unsupported JSON value type in EJSON $date wrapper: only NUMBER allowed")
            return int(inner) if LONG[0] <= int(inner) <= LONG[1] else int(inner) % 2**64
        raise ValueError("no codec matching value type")
    if kind in ("text", "ascii"):
        if not isinstance(value, str):
            raise ValueError("no codec matching value type")
        if kind == "ascii":
            for index, char in enumerate(value):
                if ord(char) > 0x7F:
                    raise ValueError(f"String contains non-ASCII character at index #{index} (length={len(value)})")
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise ValueError("no codec matching value type")
        return value
    if kind in ("bigint", "int", "smallint", "tinyint", "varint"):
        if isinstance(value, bool) or not isinstance(value, (int, decimal.Decimal)):
            raise ValueError("no codec matching value type")
        if isinstance(value, decimal.Decimal) and value != value.to_integral_value():
            raise ValueError("Rounding necessary")
        if kind == "varint":  # BigInteger: any size
            return int(value)
        low, high = {"bigint": LONG, "int": INT, "smallint": SMALLINT, "tinyint": TINYINT}[kind]
        if not low <= int(value) <= high:
            if kind != "bigint" and isinstance(value, int) and LONG[0] <= value <= LONG[1]:
                # safeLongToInt / safeLongToSmallint / safeLongToTinyint
                size = kind.upper()
                raise ValueError(
                    f"Overflow, value too big for {size}" if value > 0 else f"Underflow, value too small for {size}"
                )
            raise ValueError(f"BigInteger out of {'long' if kind == 'bigint' else kind} range")
        return int(value)
    if kind == "decimal":  # DECIMAL_FROM_BIG_DECIMAL / _BIG_INTEGER / _LONG: any JSON number, exactly
        if isinstance(value, bool) or not isinstance(value, (int, decimal.Decimal)):
            raise ValueError("no codec matching value type")
        return decimal.Decimal(value)
    if kind == "date":  # DATE_FROM_STRING: LocalDate.parse, ISO yyyy-MM-dd
        if not isinstance(value, str):
            raise ValueError("no codec matching value type")
        return _local_date(value)
    if kind == "uuid":  # UUID_FROM_STRING: UUID.fromString
        if not isinstance(value, str):
            raise ValueError("no codec matching value type")
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise ValueError(f"Invalid UUID string: {value}") from None
    if kind in ("double", "float"):
        if isinstance(value, str):
            if value in ("NaN", "Infinity", "-Infinity"):
                return float(value.replace("Infinity", "inf"))
            raise ValueError('Unsupported String value: only "NaN", "Infinity" and "-Infinity" supported')
        if isinstance(value, bool) or not isinstance(value, (int, decimal.Decimal)):
            raise ValueError("no codec matching value type")
        try:
            number = float(value)
        except OverflowError:
            number = float("inf") if value > 0 else float("-inf")
        # A float column keeps a Java float (BigDecimal.floatValue): 42.1 is stored as 42.099998474121094.
        return struct.unpack("<f", struct.pack("<f", number))[0] if kind == "float" and abs(number) < 3.4e38 else number
    if kind == "timestamp":
        if not isinstance(value, str):
            raise ValueError("no codec matching value type")
        millis = _instant_millis(value)
        if millis is None:
            # Java's DateTimeParseException also names an index; not reproduced (not verified).
            raise ValueError(f"Invalid String value for type `TIMESTAMP`; problem: Text '{value}' could not be parsed")
        return millis
    raise ValueError(f"the emulator does not model type {kind}")


def _local_date(text):
    """LocalDate.parse (DateTimeFormatter.ISO_LOCAL_DATE, strict); ValueError with Java's message otherwise."""
    match = re.match(r"([+-]\d{4,}|\d{4})-(\d\d)-(\d\d)", text, re.ASCII)
    if not match:
        raise ValueError(f"Text '{text}' could not be parsed at index 0")
    try:
        date = datetime.date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        raise ValueError(f"Text '{text}' could not be parsed: Invalid date") from None
    if match.end() != len(text):
        raise ValueError(f"Text '{text}' could not be parsed, unparsed text found at index {match.end()}")
    return date


def _instant_millis(text):
    """Instant.parse on Java 21 (DateTimeFormatter.ISO_INSTANT, strict, case-insensitive), in epoch ms."""
    match = _INSTANT.fullmatch(text)
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    extra_days, leap = 0, False
    hour, minute, second = int(hour), int(minute), int(second)
    if hour == 24 and minute == 0 and second == 0 and not int(fraction or 0):
        hour, extra_days = 0, 1
    if second == 60 and hour == 23 and minute == 59:
        second, leap = 59, True
    if hour > 23 or minute > 59 or second > 59:
        return None
    try:
        date = datetime.date(int(year), int(month), int(day))
    except ValueError:
        return None
    seconds = (date.toordinal() - _EPOCH.date().toordinal() + extra_days) * 86400 + hour * 3600 + minute * 60 + second
    if offset.upper() != "Z":
        parts = [int(part) for part in offset[1:].split(":")]
        if parts[0] > 18 or parts[1] > 59 or (len(parts) == 3 and parts[2] > 59):
            return None
        shift = parts[0] * 3600 + parts[1] * 60 + (parts[2] if len(parts) == 3 else 0)
        seconds -= shift if offset[0] == "+" else -shift
    nanos = int((fraction or "").ljust(9, "0")) if not leap else 999_999_999
    return seconds * 1000 + nanos // 1_000_000


def _json_value(kind, value):
    """How the Data API writes a stored value back as JSON (the _id of a row, find results)."""
    if value is None:
        return None
    if kind == "timestamp":
        return (
            (_EPOCH + datetime.timedelta(milliseconds=value)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        )
    if kind == "date":
        return value.isoformat()
    if kind == "double" and value != value:
        return "NaN"
    if kind == "double" and value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _python(kind, value):
    if kind == "timestamp" and value is not None:
        return _EPOCH + datetime.timedelta(milliseconds=value)
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(description="DataStax Data API (tables) emulator")
    parser.add_argument("--port", type=int, required=True, help="port (8181 for a self-hosted Data API)")
    parser.add_argument("--self-hosted", action="store_true", help="serve /v1 with Cassandra:<b64>:<b64> tokens")
    args = parser.parse_args(argv)
    serve_forever(DataAPI(astra=not args.self_hosted), args.port)


if __name__ == "__main__":
    main()
