"""The Data API emulator answers like stargate/data-api and Astra (tests/emulators/dataapi.py)."""

import base64
import datetime
import decimal
import json
import threading

import pytest
import urllib3

from tests.conftest import standalone_emulator
from tests.emulators.dataapi import DataAPI
from tests.emulators.stargate import PEEPSHOW_SCHEMA

TOKEN = "AstraCS:test-token"
KEYSPACE = "/api/json/v1/peepshow"
TABLE = "/api/json/v1/peepshow/peepshow_runs"
UTC = datetime.timezone.utc
COLUMNS = dict(PEEPSHOW_SCHEMA["columns"])  # SPEC §4's table, as the Stargate tests know it
ROW = {"run_id": "run-1", "title": "Pilot", "frames": 12, "duration": 42.5, "created_at": "2026-11-20T09:14:03.123Z"}


def cassandra_token(user, password):
    return "Cassandra:" + ":".join(base64.b64encode(value.encode()).decode() for value in (user, password))


@pytest.fixture(scope="module")
def servers():
    astra = DataAPI().start()
    hosted = DataAPI(astra=False, users={"cassandra": "s3cret"}).start()
    yield {"astra": astra, "hosted": hosted}
    stoppers = [threading.Thread(target=emulator.stop) for emulator in (astra, hosted)]
    for stopper in stoppers:
        stopper.start()
    for stopper in stoppers:
        stopper.join()


@pytest.fixture
def api(servers):
    servers["astra"].reset()
    return servers["astra"]


@pytest.fixture
def hosted(servers):
    servers["hosted"].reset()
    return servers["hosted"]


@pytest.fixture
def table(api):
    api.add_table("peepshow", "peepshow_runs", COLUMNS)
    return api


def post(emulator, path, body, token=TOKEN, content_type="application/json", method="POST", header="Token"):
    headers = {}
    if content_type:
        headers["Content-Type"] = content_type
    if token is not None:
        headers[header] = token
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    with urllib3.PoolManager(retries=False, timeout=10) as pool:
        response = pool.request(method, emulator.url + path, body=body, headers=headers)
    return response.status, (json.loads(response.data) if response.data else None)


def only_error(answer):
    (error,) = answer["errors"]
    assert set(error) == {"id", "family", "scope", "errorCode", "title", "message"}, error
    return error


# -- HTTP level -----------------------------------------------------------------------------------------------------


def test_missing_token_is_401_before_anything_else(api):
    status, answer = post(api, TABLE, b"not json", token=None, content_type="text/plain")
    assert status == 401
    error = only_error(answer)
    assert (error["family"], error["scope"], error["errorCode"]) == (
        "REQUEST",
        "SECURITY",
        "MISSING_AUTHENTICATION_TOKEN",
    )
    assert "The authorization header is: Token." in error["message"]


@pytest.mark.parametrize("header", ["token", "X-Cassandra-Token"])
def test_other_token_headers_are_read(table, header):
    status, answer = post(table, TABLE, {"insertOne": {"document": ROW}}, header=header)
    assert status == 200 and answer["status"]["insertedIds"] == [["run-1"]]


def test_content_type_is_415_with_a_json_body(api):
    status, answer = post(api, TABLE, {"insertOne": {"document": ROW}}, content_type="text/plain")
    assert status == 415 and only_error(answer)["errorCode"] == "UNSUPPORTED_CONTENT_TYPE"


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", TABLE), ("PUT", TABLE), ("POST", "/v1/peepshow/peepshow_runs"), ("POST", "/api/json/v2/peepshow")]
    + [("POST", TABLE + "/extra"), ("POST", "/api/rest/v2/keyspaces/peepshow/peepshow_runs")],
)
def test_wrong_path_or_method_is_a_bare_404(api, method, path):
    status, answer = post(api, path, {"insertOne": {"document": ROW}}, method=method)
    assert status == 404 and answer is None


def test_self_hosted_serves_v1_not_api_json(hosted):
    token = cassandra_token("cassandra", "s3cret")
    assert post(hosted, "/api/json/v1/peepshow", {"listTables": {}}, token=token)[0] == 404
    assert post(hosted, "/v1/peepshow", {"listTables": {}}, token=token) == (200, {"status": {"tables": []}})


def test_body_over_20_mb_is_413(api):
    status, answer = post(api, TABLE, b" " * (20 * 1024 * 1024 + 1))
    assert status == 413 and answer is None


# -- reading the command --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "REQUEST_NOT_JSON"),
        (b'{"insertOne": {"document": {"run_id": "a", "run_id": "b"}}}', "REQUEST_NOT_JSON"),
        (b'{"insertOne": {"document": {"duration": NaN, "run_id": "a"}}}', "REQUEST_NOT_JSON"),
        (b"[]", "REQUEST_STRUCTURE_MISMATCH"),
        (b"{}", "REQUEST_STRUCTURE_MISMATCH"),
        (
            b'{"insertOne": {"document": {"run_id": "a"}}, "insertMany": {"documents": []}}',
            "REQUEST_STRUCTURE_MISMATCH",
        ),
        (b'{"insertOne": {"document": {"run_id": "a"}, "options": {"x": 1}}}', "COMMAND_ACCEPTS_NO_OPTIONS"),
        (b'{"insertOne": {"document": {"run_id": "a"}, "extra": 1}}', "COMMAND_FIELD_UNKNOWN"),
        (b'{"insertMany": {"documents": [{"run_id": "a"}], "options": {"upsert": true}}}', "COMMAND_FIELD_UNKNOWN"),
        (b'{"insertOne": {}}', "COMMAND_FIELD_VALUE_INVALID"),
        (b'{"insertMany": {"documents": []}}', "COMMAND_FIELD_VALUE_INVALID"),
        (b'{"insertRow": {"document": {}}}', "COMMAND_UNKNOWN"),
        (b'{"insertOne": {"document": {"run_id": "a", "frames": 1' + b"0" * 100 + b"}}}", "SHRED_DOC_LIMIT_VIOLATION"),
    ],
)
def test_commands_are_read_strictly(table, body, code):
    status, answer = post(table, TABLE, body)
    assert status == 200 and only_error(answer)["errorCode"] == code
    assert table.writes == 0


def test_unknown_command_lists_the_known_ones(api):
    error = only_error(post(api, KEYSPACE, {"createCollections": {}})[1])
    assert "is not a Keyspace Command recognized by Data API" in error["message"]
    assert "createTable, createType, deleteCollection, dropIndex, dropTable" in error["message"]


def test_insert_many_takes_at_most_100_documents(table):
    documents = [dict(ROW, run_id=f"run-{number}") for number in range(101)]
    error = only_error(post(table, TABLE, {"insertMany": {"documents": documents}})[1])
    assert error["errorCode"] == "COMMAND_FIELD_VALUE_INVALID"
    assert "'command.documents'" in error["message"] and "(101 vs 100)" in error["message"]
    assert post(table, TABLE, {"insertMany": {"documents": documents[:100]}})[0] == 200
    assert len(table.rows("peepshow", "peepshow_runs")) == 100


def test_a_bad_command_is_refused_before_the_token_is_checked(table):
    status, answer = post(table, TABLE, {"insertOne": {"document": ROW, "x": 1}}, token="AstraCS:wrong")
    assert status == 200 and only_error(answer)["errorCode"] == "COMMAND_FIELD_UNKNOWN"


# -- credentials, keyspaces and tables ------------------------------------------------------------------------------


def test_unknown_astra_token_is_401(table):
    status, answer = post(table, TABLE, {"insertOne": {"document": ROW}}, token="AstraCS:wrong")
    assert status == 401 and only_error(answer)["errorCode"] == "UNAUTHENTICATED_REQUEST"


@pytest.mark.parametrize(
    ("token", "status"),
    [
        (cassandra_token("cassandra", "s3cret"), 200),
        (cassandra_token("cassandra", "s3cret").replace("=", ""), 200),  # Java's decoder takes unpadded base64
        (cassandra_token("cassandra", "wrong"), 401),
        ("Cassandra:not base64!:x", 401),
        (TOKEN, 401),
        ("", 401),
    ],
)
def test_self_hosted_credentials(hosted, token, status):
    assert post(hosted, "/v1/peepshow", {"listTables": {}}, token=token)[0] == status


def test_unknown_keyspace(api):
    error = only_error(post(api, "/api/json/v1/nope/peepshow_runs", {"insertOne": {"document": ROW}})[1])
    assert (error["family"], error["scope"], error["errorCode"]) == ("REQUEST", "SCHEMA", "UNKNOWN_KEYSPACE")
    assert "The keyspace used by the command: nope." in error["message"]


def test_a_token_without_access_to_the_keyspace_is_told_it_does_not_exist(table):
    table.keyspace_access[TOKEN] = {"other"}
    assert only_error(post(table, TABLE, {"insertOne": {"document": ROW}})[1])["errorCode"] == "UNKNOWN_KEYSPACE"


def test_unknown_table(api):
    error = only_error(post(api, TABLE, {"insertOne": {"document": ROW}})[1])
    assert (error["scope"], error["errorCode"]) == ("SCHEMA", "UNKNOWN_COLLECTION_OR_TABLE")
    assert "The keyspace has the existing collections or tables: [None]." in error["message"]


def test_a_read_only_token_may_not_write(table):
    table.read_only.add(TOKEN)
    status, answer = post(table, TABLE, {"insertOne": {"document": ROW}})
    assert status == 401 and only_error(answer)["errorCode"] == "UNAUTHORIZED_ACCESS"


def test_create_table_if_not_exists_compares_nothing(api):
    definition = {"columns": COLUMNS, "primaryKey": "run_id"}
    command = {"createTable": {"name": "peepshow_runs", "definition": definition, "options": {"ifNotExists": True}}}
    assert post(api, KEYSPACE, command) == (200, {"status": {"ok": 1}})
    other = {"columns": {"run_id": "text", "frames": "int"}, "primaryKey": {"partitionBy": ["run_id"]}}
    assert post(api, KEYSPACE, dict(command, createTable=dict(command["createTable"], definition=other)))[0] == 200
    assert api.table("peepshow", "peepshow_runs").columns == COLUMNS
    again = {"createTable": {"name": "peepshow_runs", "definition": definition}}
    assert only_error(post(api, KEYSPACE, again)[1])["errorCode"] == "CANNOT_ADD_EXISTING_TABLE"


@pytest.mark.parametrize(
    ("definition", "code"),
    [
        ({"columns": {"run_id": "text"}, "primaryKey": "id"}, "UNKNOWN_PARTITION_COLUMNS"),
        ({"columns": {"run_id": "texte"}, "primaryKey": "run_id"}, "UNKNOWN_PRIMITIVE_DATA_TYPE"),
        ({"columns": {"run_id": "text"}}, "MISSING_PARTITION_COLUMNS"),
        ({"columns": {"run_id": "text"}, "primaryKey": "run_id", "ttl": 1}, "COMMAND_FIELD_UNKNOWN"),
    ],
)
def test_create_table_refuses_bad_definitions(api, definition, code):
    answer = post(api, KEYSPACE, {"createTable": {"name": "runs", "definition": definition}})[1]
    assert only_error(answer)["errorCode"] == code and api.table("peepshow", "runs") is None


def test_list_tables_with_and_without_explain(table):
    assert post(table, KEYSPACE, {"listTables": {}})[1] == {"status": {"tables": ["peepshow_runs"]}}
    (described,) = post(table, KEYSPACE, {"listTables": {"options": {"explain": True}}})[1]["status"]["tables"]
    assert described == {
        "name": "peepshow_runs",
        "definition": {
            "columns": {name: {"type": kind} for name, kind in COLUMNS.items()},
            "primaryKey": {"partitionBy": ["run_id"], "partitionSort": {}},
        },
    }


def test_drop_table(table):
    assert post(table, KEYSPACE, {"dropTable": {"name": "peepshow_runs"}}) == (200, {"status": {"ok": 1}})
    assert only_error(post(table, KEYSPACE, {"dropTable": {"name": "peepshow_runs"}})[1])["errorCode"] == (
        "CANNOT_DROP_UNKNOWN_TABLE"
    )


# -- rows -----------------------------------------------------------------------------------------------------------


def test_insert_one_answers_the_key_and_its_schema(table):
    assert post(table, TABLE, {"insertOne": {"document": ROW}}) == (
        200,
        {"status": {"primaryKeySchema": {"run_id": {"type": "text"}}, "insertedIds": [["run-1"]]}},
    )
    (row,) = table.rows("peepshow", "peepshow_runs")
    assert row["created_at"] == datetime.datetime(2026, 11, 20, 9, 14, 3, 123000, tzinfo=UTC)
    assert row["frames"] == 12 and row["duration"] == 42.5 and row["transcript"] is None


@pytest.mark.parametrize(
    ("column", "value", "stored"),
    [
        ("frames", 5, 5),
        ("frames", 5.0, 5),  # BigDecimal.longValueExact: no fraction, no problem
        ("frames", 1e3, 1000),
        ("frames", 2**63 - 1, 2**63 - 1),
        ("duration", 7, 7.0),
        ("duration", "NaN", "nan"),
        ("duration", "-Infinity", float("-inf")),
        ("title", "'quoted' as is", "'quoted' as is"),
        ("created_at", "2026-11-20T09:14:03Z", datetime.datetime(2026, 11, 20, 9, 14, 3, tzinfo=UTC)),
        ("created_at", "2026-11-20t09:14:03.1z", datetime.datetime(2026, 11, 20, 9, 14, 3, 100000, tzinfo=UTC)),
        (
            "created_at",
            "2026-11-20T10:14:03.123456+01:00",
            datetime.datetime(2026, 11, 20, 9, 14, 3, 123000, tzinfo=UTC),
        ),
        ("created_at", {"$date": 1795000000123}, datetime.datetime(2026, 11, 18, 11, 6, 40, 123000, tzinfo=UTC)),
        ("title", None, None),
    ],
)
def test_values_the_codecs_accept(table, column, value, stored):
    status, answer = post(table, TABLE, {"insertOne": {"document": dict(ROW, **{column: value})}})
    assert status == 200 and "errors" not in answer, answer
    (row,) = table.rows("peepshow", "peepshow_runs")
    assert str(row[column]) == str(stored) if stored == "nan" else row[column] == stored


@pytest.mark.parametrize(
    ("column", "value", "cause"),
    [
        ("frames", "5", "no codec matching value type"),
        ("frames", 5.5, "Rounding necessary"),
        ("frames", 2**63, "BigInteger out of long range"),
        ("frames", True, "no codec matching value type"),
        ("duration", "nan", 'only "NaN", "Infinity" and "-Infinity" supported'),
        ("duration", "1.5", 'only "NaN"'),
        ("title", 42, "no codec matching value type"),
        ("title", ["a"], "no codec matching value type"),
        ("created_at", "2026-11-20 09:14:03Z", "could not be parsed"),
        ("created_at", "2026-11-20T09:14Z", "could not be parsed"),
        ("created_at", "2026-11-20T09:14:03", "could not be parsed"),
        ("created_at", "2026-02-30T09:14:03Z", "could not be parsed"),
        ("created_at", 1795000000123, "no codec matching value type"),
    ],
)
def test_values_the_codecs_refuse(table, column, value, cause):
    error = only_error(post(table, TABLE, {"insertOne": {"document": dict(ROW, **{column: value})}})[1])
    assert (error["family"], error["scope"], error["errorCode"]) == ("REQUEST", "DOCUMENT", "INVALID_COLUMN_VALUES")
    assert f"following columns that had invalid values: {column}({COLUMNS[column]}) - Cause: " in error["message"]
    assert cause in error["message"]
    assert table.writes == 0


@pytest.mark.parametrize(
    ("document", "code"),
    [
        (dict(ROW, rating=5), "UNKNOWN_TABLE_COLUMNS"),
        ({"title": "no key"}, "MISSING_PRIMARY_KEY_COLUMNS"),
        (dict(ROW, run_id=None), "MISSING_PRIMARY_KEY_COLUMNS"),
    ],
)
def test_rows_the_table_refuses(table, document, code):
    error = only_error(post(table, TABLE, {"insertOne": {"document": document}})[1])
    assert (error["scope"], error["errorCode"]) == ("DOCUMENT", code)


# -- tables made by hand: other column types, a missing column -------------------------------------------------------

SINK_ROW = dict(ROW, transcript="Hello.", tags='{"title":"Pilot"}')


@pytest.mark.parametrize(
    ("column", "kind", "cause"),
    [
        ("tags", "map<text,text>", "no codec matching value type"),
        ("tags", {"type": "map", "keyType": "text", "valueType": "text"}, "no codec matching value type"),
        ("created_at", "date", "Text '2026-11-20T09:14:03.123Z' could not be parsed, unparsed text found at index 10"),
        ("title", "int", "no codec matching value type"),
        ("frames", "date", "no codec matching value type"),
        ("duration", "int", "Rounding necessary"),
        ("run_id", "uuid", "Invalid UUID string: run-1"),
        ("tags", "list<text>", "no codec matching value type"),
    ],
)
def test_a_hand_made_column_type_refuses_the_sinks_value(api, column, kind, cause):
    api.add_table("peepshow", "peepshow_runs", dict(COLUMNS, **{column: kind}))
    error = only_error(post(api, TABLE, {"insertOne": {"document": SINK_ROW}})[1])
    assert (error["family"], error["scope"], error["errorCode"]) == ("REQUEST", "DOCUMENT", "INVALID_COLUMN_VALUES")
    described = api.table("peepshow", "peepshow_runs").columns[column]
    assert f"following columns that had invalid values: {column}({described}) - Cause: {cause}" in error["message"]
    assert api.writes == 0


@pytest.mark.parametrize(
    ("column", "kind", "stored"),
    [
        ("frames", "int", 12),
        ("frames", "varint", 12),
        ("frames", "decimal", 12),
        ("frames", "smallint", 12),
        ("duration", "decimal", decimal.Decimal("42.5")),
        ("duration", "float", 42.5),
    ],
)
def test_a_hand_made_column_type_that_takes_the_sinks_value(api, column, kind, stored):
    api.add_table("peepshow", "peepshow_runs", dict(COLUMNS, **{column: kind}))
    status, answer = post(api, TABLE, {"insertOne": {"document": SINK_ROW}})
    assert status == 200 and "errors" not in answer, answer
    (row,) = api.rows("peepshow", "peepshow_runs")
    assert row[column] == stored


def test_narrow_integers_refuse_what_they_cannot_hold(api):
    api.add_table("peepshow", "peepshow_runs", dict(COLUMNS, frames="tinyint"))
    error = only_error(post(api, TABLE, {"insertOne": {"document": dict(SINK_ROW, frames=200)}})[1])
    assert "frames(tinyint) - Cause: Overflow, value too big for TINYINT" in error["message"]
    api.add_table("peepshow", "peepshow_runs", dict(COLUMNS, frames="int"))
    error = only_error(post(api, TABLE, {"insertOne": {"document": dict(SINK_ROW, frames=3_000_000_000)}})[1])
    assert "frames(int) - Cause: Overflow, value too big for INT" in error["message"]


def test_a_float_column_keeps_a_java_float(api):
    api.add_table("peepshow", "peepshow_runs", dict(COLUMNS, duration="float"))
    assert "errors" not in post(api, TABLE, {"insertOne": {"document": dict(SINK_ROW, duration=42.1)}})[1]
    stored = api.rows("peepshow", "peepshow_runs")[0]["duration"]
    assert stored != 42.1 and abs(stored - 42.1) < 1e-5


def test_a_missing_column_refuses_only_the_rows_that_carry_it(api):
    api.add_table("peepshow", "peepshow_runs", {name: kind for name, kind in COLUMNS.items() if name != "transcript"})
    documents = [SINK_ROW, dict(ROW, run_id="run-2")]  # the second has no transcript: nothing unknown in it
    answer = post(api, TABLE, many(documents, ordered=False, returnDocumentResponses=True))[1]
    responses = answer["status"]["documentResponses"]
    assert [entry["status"] for entry in responses] == ["ERROR", "OK"]
    error = answer["errors"][responses[0]["errorsIdx"]]
    assert (error["scope"], error["errorCode"]) == ("DOCUMENT", "UNKNOWN_TABLE_COLUMNS")
    assert "The command included the following unknown columns: transcript." in error["message"]
    assert [row["run_id"] for row in api.rows("peepshow", "peepshow_runs")] == ["run-2"]


def test_every_row_refused_alike_has_its_own_error(api):
    api.add_table("peepshow", "peepshow_runs", dict(COLUMNS, created_at="date"))
    documents = [dict(SINK_ROW, run_id=f"run-{number}") for number in range(3)]
    answer = post(api, TABLE, many(documents, ordered=False, returnDocumentResponses=True))[1]
    responses = answer["status"]["documentResponses"]
    assert [entry["status"] for entry in responses] == ["ERROR"] * 3 and [entry["_id"] for entry in responses] == [
        []
    ] * 3
    # The three messages are identical (the value is the same), so the errors are listed once.
    assert {entry["errorsIdx"] for entry in responses} == {0} and len(answer["errors"]) == 1
    assert answer["errors"][0]["errorCode"] == "INVALID_COLUMN_VALUES" and api.writes == 0


def test_explain_describes_collections_in_the_long_form(api):
    definition = {"columns": dict(COLUMNS, tags={"type": "map", "keyType": "text", "valueType": "text"})}
    definition["columns"]["labels"] = {"type": "set", "valueType": "text"}
    definition["primaryKey"] = "run_id"
    answer = post(api, KEYSPACE, {"createTable": {"name": "peepshow_runs", "definition": definition}})[1]
    assert answer == {"status": {"ok": 1}}
    (described,) = post(api, KEYSPACE, {"listTables": {"options": {"explain": True}}})[1]["status"]["tables"]
    columns = described["definition"]["columns"]
    assert columns["tags"] == {"type": "map", "keyType": "text", "valueType": "text"}
    assert columns["labels"] == {"type": "set", "valueType": "text"} and columns["frames"] == {"type": "bigint"}
    status, answer = post(api, TABLE, {"insertOne": {"document": dict(ROW, tags={"title": "Pilot"}, labels=["a"])}})
    assert status == 200 and "errors" not in answer, answer
    assert api.rows("peepshow", "peepshow_runs")[0]["tags"] == {"title": "Pilot"}


def test_an_empty_key_is_refused_by_the_database(table):
    error = only_error(post(table, TABLE, {"insertOne": {"document": dict(ROW, run_id="")}})[1])
    assert (error["family"], error["scope"], error["errorCode"]) == ("SERVER", "DATABASE", "INVALID_DATABASE_QUERY")


def test_insert_is_an_upsert_and_null_unsets(table):
    post(table, TABLE, {"insertOne": {"document": dict(ROW, transcript="hello")}})
    post(table, TABLE, {"insertOne": {"document": {"run_id": "run-1", "title": "Again", "transcript": None}}})
    (row,) = table.rows("peepshow", "peepshow_runs")
    assert (row["title"], row["frames"], row["transcript"]) == ("Again", 12, None)


def many(documents, **options):
    return {"insertMany": {"documents": documents, "options": options}}


def test_unordered_insert_many_writes_every_valid_row(table):
    documents = [dict(ROW, run_id="a"), dict(ROW, run_id="b", frames="x"), dict(ROW, run_id="c")]
    status, answer = post(table, TABLE, many(documents, ordered=False, returnDocumentResponses=True))
    assert status == 200
    assert answer["status"]["documentResponses"] == [
        {"_id": ["a"], "status": "OK"},
        {"_id": [], "status": "ERROR", "errorsIdx": 0},
        {"_id": ["c"], "status": "OK"},
    ]
    assert answer["status"]["primaryKeySchema"] == {"run_id": {"type": "text"}}
    assert only_error(answer)["errorCode"] == "INVALID_COLUMN_VALUES"
    assert sorted(row["run_id"] for row in table.rows("peepshow", "peepshow_runs")) == ["a", "c"]


def test_ordered_insert_many_stops_at_the_first_failure(table):
    documents = [dict(ROW, run_id="a"), dict(ROW, run_id="b", rating=1), dict(ROW, run_id="c")]
    answer = post(table, TABLE, many(documents, ordered=True, returnDocumentResponses=True))[1]
    assert [entry["status"] for entry in answer["status"]["documentResponses"]] == ["OK", "ERROR", "SKIPPED"]
    assert answer["status"]["documentResponses"][2]["_id"] == ["c"]
    assert [row["run_id"] for row in table.rows("peepshow", "peepshow_runs")] == ["a"]


def test_identical_row_errors_are_listed_once(table):
    documents = [dict(ROW, run_id="a", frames="x"), dict(ROW, run_id="b", frames="y"), dict(ROW, run_id="c")]
    answer = post(table, TABLE, many(documents, returnDocumentResponses=True))[1]
    assert [entry.get("errorsIdx") for entry in answer["status"]["documentResponses"]] == [0, 0, None]
    assert len(answer["errors"]) == 1


def test_without_document_responses_the_ids_and_each_error(table):
    documents = [dict(ROW, run_id="a", frames="x"), dict(ROW, run_id="b", frames="y"), dict(ROW, run_id="c")]
    answer = post(table, TABLE, many(documents))[1]
    assert answer["status"]["insertedIds"] == [["c"]] and len(answer["errors"]) == 2


# -- faults ---------------------------------------------------------------------------------------------------------


def test_an_injected_server_error_is_http_200_and_writes_nothing(table):
    table.command_error("TIMEOUT_WRITING_DATA", command="insertOne")
    status, answer = post(table, TABLE, {"insertOne": {"document": ROW}})
    error = only_error(answer)
    assert status == 200 and (error["family"], error["scope"]) == ("SERVER", "DATABASE")
    assert table.writes == 0
    assert post(table, TABLE, {"insertOne": {"document": ROW}})[0] == 200 and table.writes == 1


def test_legacy_names_and_statuses(table):
    table.legacy = True
    table.command_error("TIMEOUT_WRITING_DATA")
    status, answer = post(table, TABLE, {"insertOne": {"document": ROW}})
    assert status == 504 and answer == {"errors": [{"message": "Driver timeout", "errorCode": "SERVER_DRIVER_TIMEOUT"}]}
    answer = post(table, "/api/json/v1/peepshow/runs", {"insertOne": {"document": ROW}})[1]
    assert answer["errors"][0]["errorCode"] == "COLLECTION_NOT_EXIST"
    answer = post(table, "/api/json/v1/nope/runs", {"insertOne": {"document": ROW}})[1]
    assert answer["errors"][0]["errorCode"] == "KEYSPACE_DOES_NOT_EXIST"


def test_runs_standalone_like_the_demo_starts_it():
    with standalone_emulator("dataapi", "--self-hosted") as url:
        with urllib3.PoolManager(retries=False, timeout=10) as pool:
            response = pool.request(
                "POST",
                url + "/v1/peepshow",
                body=b'{"listTables": {}}',
                headers={"Content-Type": "application/json", "Token": cassandra_token("cassandra", "cassandra")},
            )
        assert response.status == 200 and json.loads(response.data) == {"status": {"tables": []}}
