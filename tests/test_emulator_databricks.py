"""The Databricks emulator answers the way the Statement Execution API does (see tests/emulators/databricks.py)."""

import datetime
import json
import time

import pytest
import urllib3

from tests.emulators.databricks import DEFAULT_SERVICE_PRINCIPALS, Databricks

TOKEN = "dapi-test-token"
TABLE = "`main`.`default`.`peepshow_runs`"
FULL_NAME = "main.default.peepshow_runs"
COLUMNS = ("run_id", "title", "frames", "duration", "transcript", "thumbnail_url", "strategy", "tags", "created_at")
CREATE = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (run_id STRING, title STRING, frames BIGINT, duration DOUBLE, "
    "transcript STRING, thumbnail_url STRING, strategy STRING, tags STRING, created_at TIMESTAMP) USING DELTA"
)
CREATED_AT = "2026-11-20T09:14:03.123Z"
INSTANT = datetime.datetime(2026, 11, 20, 9, 14, 3, 123000, tzinfo=datetime.timezone.utc)


def merge_sql(rows=1, table=TABLE, star=False):
    """The sink's append: one SELECT of markers per row, numbered and joined by UNION ALL when there are several,
    inserted with the columns named (or with INSERT *)."""
    selects = []
    for number in range(1, rows + 1):
        suffix = f"_{number}" if rows > 1 else ""
        selects.append("SELECT " + ", ".join(f":{column}{suffix} AS {column}" for column in COLUMNS))
    named = "(" + ", ".join(COLUMNS) + ") VALUES (" + ", ".join("s." + column for column in COLUMNS) + ")"
    insert = "INSERT *" if star else "INSERT " + named
    return (
        f"MERGE INTO {table} AS t USING ({' UNION ALL '.join(selects)}) AS s "
        f"ON t.run_id = s.run_id AND t.created_at = s.created_at WHEN NOT MATCHED THEN {insert}"
    )


def run_parameters(run_id="run-1", suffix="", **overrides):
    """Typed parameters for one row; overrides are column=(value, TYPE), a None value being a typed NULL."""
    values = {
        "run_id": (run_id, "STRING"),
        "title": ("Demo", "STRING"),
        "frames": ("3", "BIGINT"),
        "duration": ("42.5", "DOUBLE"),
        "transcript": ('it\'s "quoted" -- not SQL', "STRING"),
        "thumbnail_url": (None, "STRING"),
        "strategy": ("scene", "STRING"),
        "tags": ('{"title":"Demo"}', "STRING"),
        "created_at": (CREATED_AT, "TIMESTAMP"),
    }
    values.update(overrides)
    parameters = []
    for name, (value, sql_type) in values.items():
        parameter = {"name": name + suffix, "type": sql_type}
        if value is not None:
            parameter["value"] = value
        parameters.append(parameter)
    return parameters


@pytest.fixture(scope="module")
def server():
    with Databricks().start() as emulator:
        yield emulator


@pytest.fixture
def db(server):
    server.reset()
    return server


class Api:
    """urllib3 with a fresh connection per request: a kept-alive connection to http.server stalls ~40 ms per
    request (Nagle against delayed ACK), which would make this file several times slower."""

    def __init__(self, emulator):
        self.url = emulator.url

    def request(self, method, path, body=None, token=TOKEN, raw=None):
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else None if body is None else json.dumps(body)
        with urllib3.PoolManager(retries=False, timeout=10) as pool:
            response = pool.request(method, self.url + path, body=data, headers=headers)
        return response.status, json.loads(response.data) if response.data else None

    def execute(self, statement, parameters=(), wait_timeout="5s", **fields):
        body = {"warehouse_id": "wh-1", "statement": statement, "parameters": list(parameters)}
        body.update({"wait_timeout": wait_timeout, "on_wait_timeout": "CONTINUE", **fields})
        status, answer = self.request("POST", "/api/2.0/sql/statements", body)
        assert status == 200, answer
        return answer

    def poll(self, statement_id):
        status, answer = self.request("GET", f"/api/2.0/sql/statements/{statement_id}")
        assert status == 200, answer
        return answer

    def create(self):
        assert self.execute(CREATE)["status"] == {"state": "SUCCEEDED"}


@pytest.fixture
def api(db):
    return Api(db)


def failure(answer):
    """(error message, sql_state) of a FAILED statement, which always comes with HTTP 200 and BAD_REQUEST."""
    assert answer["status"]["state"] == "FAILED", answer
    assert answer["status"]["error"]["error_code"] == "BAD_REQUEST"
    assert "manifest" not in answer and "result" not in answer
    return answer["status"]["error"]["message"], answer["status"]["sql_state"]


# -- authentication ----------------------------------------------------------------------------------------------


def test_missing_credentials_are_401_with_an_integer_error_code(api):
    assert api.request("POST", "/api/2.0/sql/statements", {}, token=None) == (
        401,
        {"error_code": 401, "message": "Credential was not sent or was of an unsupported type for this API."},
    )
    with urllib3.PoolManager(retries=False) as pool:
        basic = pool.request("GET", api.url + "/api/2.0/sql/warehouses/wh-1", headers={"Authorization": "Basic eDp5"})
    assert basic.status == 401


def test_a_bad_or_expired_token_is_403(api, db):
    refused = (403, {"error_code": 403, "message": "Invalid access token."})
    assert api.request("GET", "/api/2.0/sql/warehouses/wh-1", token="dapi-wrong") == refused
    assert api.request("GET", "/api/2.0/sql/warehouses/wh-1")[0] == 200
    db.expire_token(TOKEN)
    assert api.request("GET", "/api/2.0/sql/warehouses/wh-1") == refused
    assert db.statements == []


def test_an_unknown_path_is_404_endpoint_not_found(api):
    assert api.request("POST", "/api/2.0/sql/statements/execute", {}) == (
        404,
        {"error_code": "ENDPOINT_NOT_FOUND", "message": "No API found for 'POST /sql/statements/execute'"},
    )


# -- request validation: refused with 400 before any statement exists ----------------------------------------------


def statement_body(**changes):
    body = {"warehouse_id": "wh-1", "statement": CREATE, "wait_timeout": "5s", "on_wait_timeout": "CONTINUE"}
    body.update(changes)
    return {key: value for key, value in body.items() if value is not None}


@pytest.mark.parametrize(
    ("body", "error_code", "fragment"),
    [
        (statement_body(warehouse_id=None), "INVALID_PARAMETER_VALUE", "warehouse_id"),
        (statement_body(warehouse_id="wh-404"), "INVALID_PARAMETER_VALUE", "wh-404 is not a valid endpoint id."),
        (statement_body(statement=None), "INVALID_PARAMETER_VALUE", "statement"),
        (statement_body(wait_timeout="3s"), "INVALID_PARAMETER_VALUE", "'3s'"),
        (statement_body(wait_timeout="51s"), "INVALID_PARAMETER_VALUE", "'51s'"),
        (statement_body(wait_timeout="10"), "INVALID_PARAMETER_VALUE", "'10'"),
        (statement_body(on_wait_timeout="WAIT"), "INVALID_PARAMETER_VALUE", "on_wait_timeout"),
        (statement_body(format="CSV"), "INVALID_PARAMETER_VALUE", "EXTERNAL_LINKS"),
        (statement_body(parameters=[{"name": "frames", "value": 3}]), "MALFORMED_REQUEST", "parameters[0].value"),
        (statement_body(parameters=[{"value": "3"}]), "INVALID_PARAMETER_VALUE", "parameters[0].name"),
        (statement_body(parameters={"frames": "3"}), "MALFORMED_REQUEST", "'parameters'"),
        (statement_body(wait_timeout=5), "MALFORMED_REQUEST", "'wait_timeout'"),
        ([CREATE], "MALFORMED_REQUEST", "expected a map"),
    ],
)
def test_invalid_requests_are_400(api, db, body, error_code, fragment):
    status, answer = api.request("POST", "/api/2.0/sql/statements", body)
    assert (status, answer["error_code"]) == (400, error_code)
    assert fragment in answer["message"]
    assert db.statements == []


def test_a_body_that_is_not_json_is_400_malformed_request(api):
    status, answer = api.request("POST", "/api/2.0/sql/statements", raw=b"{not json")
    assert (status, answer["error_code"]) == (400, "MALFORMED_REQUEST")


def test_at_most_256_parameters(api, db):
    parameters = [{"name": f"p{number}", "value": "x"} for number in range(256)]
    assert api.execute(CREATE, parameters)["status"]["state"] == "SUCCEEDED"  # unused parameters are fine
    status, answer = api.request(
        "POST", "/api/2.0/sql/statements", statement_body(parameters=[*parameters, {"name": "p"}])
    )
    assert (status, answer["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    assert "at most 256" in answer["message"]
    assert len(db.statements) == 1


def test_the_statement_text_is_at_most_16_mib(api):
    padding = " " * (16 * 1024 * 1024 - len(CREATE))
    assert api.execute(CREATE + padding)["status"]["state"] == "SUCCEEDED"
    status, answer = api.request("POST", "/api/2.0/sql/statements", statement_body(statement=CREATE + padding + " "))
    assert (status, answer["error_code"]) == (400, "INVALID_PARAMETER_VALUE")


# -- writing rows ------------------------------------------------------------------------------------------------


def test_create_then_merge_stores_one_typed_row(api, db):
    api.create()
    assert db.tables[FULL_NAME]["columns"][2] == ("frames", "BIGINT")
    answer = api.execute(merge_sql(), run_parameters())
    assert answer["status"] == {"state": "SUCCEEDED"}
    assert answer["result"]["data_array"] == [["1", "0", "0", "1"]]
    assert [column["name"] for column in answer["manifest"]["schema"]["columns"]][-1] == "num_inserted_rows"
    assert db.rows(FULL_NAME) == [
        {
            "run_id": "run-1",
            "title": "Demo",
            "frames": 3,
            "duration": 42.5,
            "transcript": 'it\'s "quoted" -- not SQL',
            "thumbnail_url": None,
            "strategy": "scene",
            "tags": '{"title":"Demo"}',
            "created_at": INSTANT,
        }
    ]
    assert db.statements[1]["statement"] == merge_sql()
    assert db.statements[1]["parameters"][2] == {"name": "frames", "type": "BIGINT", "value": "3"}


def test_create_if_not_exists_is_idempotent(api, db):
    api.create()
    api.execute(merge_sql(), run_parameters())
    api.create()
    assert len(db.rows(FULL_NAME)) == 1
    message, sql_state = failure(api.execute(CREATE.replace(" IF NOT EXISTS", "")))
    assert message.startswith("[TABLE_OR_VIEW_ALREADY_EXISTS] Cannot create table or view `main`.`default`.")
    assert sql_state == "42P07"


def test_a_replayed_merge_inserts_nothing(api, db):
    api.create()
    api.execute(merge_sql(), run_parameters())
    replay = api.execute(merge_sql(), run_parameters(title=("Changed", "STRING")))
    assert replay["result"]["data_array"] == [["0", "0", "0", "0"]]
    assert [row["title"] for row in db.rows(FULL_NAME)] == ["Demo"]


def test_timestamps_match_on_the_instant_not_the_text(api, db):
    api.create()
    api.execute(merge_sql(), run_parameters())
    same_instant = run_parameters(created_at=("2026-11-20 10:14:03.123+01:00", "TIMESTAMP"))
    assert api.execute(merge_sql(), same_instant)["result"]["data_array"][0][-1] == "0"
    later = run_parameters(created_at=("2026-11-20T09:14:03.124Z", "TIMESTAMP"))
    assert api.execute(merge_sql(), later)["result"]["data_array"][0][-1] == "1"
    assert len(db.rows(FULL_NAME)) == 2


def test_multi_row_union_all_merge(api, db):
    api.create()
    api.execute(merge_sql(), run_parameters("run-2"))
    parameters = [
        *run_parameters("run-1", "_1"),
        *run_parameters("run-2", "_2"),
        *run_parameters("run-3", "_3", frames=("7", "BIGINT")),
    ]
    answer = api.execute(merge_sql(rows=3), parameters)
    assert answer["result"]["data_array"] == [["2", "0", "0", "2"]]
    assert [(row["run_id"], row["frames"]) for row in db.rows(FULL_NAME)] == [("run-2", 3), ("run-1", 3), ("run-3", 7)]


def test_typed_parameters_without_a_value_are_null(api, db):
    api.create()
    parameters = run_parameters(frames=(None, "BIGINT"), duration=(None, "DOUBLE"), transcript=(None, "STRING"))
    assert api.execute(merge_sql(), parameters)["status"]["state"] == "SUCCEEDED"
    row = db.rows(FULL_NAME)[0]
    assert (row["frames"], row["duration"], row["transcript"], row["thumbnail_url"]) == (None, None, None, None)


def test_hyphenated_and_doubled_backtick_names(api, db):
    db.add_schema("main", "peep-show")
    table = "`main`.`peep-show`.`runs-2`"
    api.execute(CREATE.replace(TABLE, table))
    assert api.execute(merge_sql(table=table), run_parameters())["status"]["state"] == "SUCCEEDED"
    assert len(db.rows("main.peep-show.runs-2")) == 1
    message, _ = failure(api.execute(CREATE.replace(TABLE, "main.peep-show.runs")))  # unquoted: '-' is an operator
    assert message.startswith("[PARSE_SYNTAX_ERROR] Syntax error at or near '-'")
    message, _ = failure(api.execute(CREATE.replace(TABLE, "`main`.`default`.`a``b`")))
    assert message.startswith("[INVALID_SCHEMA_OR_RELATION_NAME] `a`b` is not a valid name")


def test_the_table_name_may_be_bound_with_identifier(api, db):
    api.create()
    statement = merge_sql(table="IDENTIFIER(:table)")
    parameters = [*run_parameters(), {"name": "table", "value": FULL_NAME}]
    assert api.execute(statement, parameters)["status"]["state"] == "SUCCEEDED"
    assert len(db.rows(FULL_NAME)) == 1


def test_describe_table_lists_the_columns(api):
    api.create()
    answer = api.execute(f"describe table {TABLE}")
    assert answer["manifest"]["schema"]["column_count"] == 3
    assert answer["result"]["data_array"][2:4] == [["frames", "bigint", None], ["duration", "double", None]]
    assert answer["result"]["row_count"] == len(COLUMNS)


# -- statements that FAIL (HTTP 200) -----------------------------------------------------------------------------


def test_an_unbound_marker_fails(api, db):
    api.create()
    parameters = [parameter for parameter in run_parameters() if parameter["name"] != "title"]
    message, sql_state = failure(api.execute(merge_sql(), parameters))
    assert message.startswith("[UNBOUND_SQL_PARAMETER] Found the unbound parameter: title. ")
    assert sql_state == "42P02"
    assert db.rows(FULL_NAME) == []


def test_strict_mode_refuses_a_string_typed_value_for_a_bigint_column(api, db):
    api.create()
    db.strict_string_casts = True
    message, sql_state = failure(api.execute(merge_sql(), run_parameters(frames=("3", "STRING"))))
    assert message == (
        "[INCOMPATIBLE_DATA_FOR_TABLE.CANNOT_SAFELY_CAST] Cannot write incompatible data for the table "
        '`main`.`default`.`peepshow_runs`: Cannot safely cast `frames` "STRING" to "BIGINT". SQLSTATE: KD000'
    )
    assert sql_state == "KD000"
    untyped = [{key: value for key, value in parameter.items() if key != "type"} for parameter in run_parameters()]
    assert "Cannot safely cast `frames`" in failure(api.execute(merge_sql(), untyped))[0]
    assert db.rows(FULL_NAME) == []


def test_strings_are_cast_like_delta_merge_does(api, db):
    api.create()
    untyped = [{key: value for key, value in parameter.items() if key != "type"} for parameter in run_parameters()]
    assert api.execute(merge_sql(), untyped)["status"]["state"] == "SUCCEEDED"
    assert (db.rows(FULL_NAME)[0]["frames"], db.rows(FULL_NAME)[0]["created_at"]) == (3, INSTANT)
    malformed = run_parameters("run-2", frames=("three", "STRING"))
    message, sql_state = failure(api.execute(merge_sql(), malformed))
    assert message.startswith(
        """[CAST_INVALID_INPUT] The value 'three' of the type "STRING" cannot be cast to "BIGINT" """
    )
    assert sql_state == "22018"


@pytest.mark.parametrize(
    ("name", "value", "sql_type"),
    [
        ("frames", "abc", "BIGINT"),
        ("frames", "9223372036854775808", "BIGINT"),
        ("frames", "3.0", "BIGINT"),
        ("duration", "forty", "DOUBLE"),
        ("created_at", "2026-13-20T09:14:03Z", "TIMESTAMP"),
        ("created_at", "2026-11-20T09:14:03.1234567Z", "TIMESTAMP"),
        ("created_at", "yesterday", "TIMESTAMP"),
    ],
)
def test_a_value_its_type_cannot_parse_fails(api, db, name, value, sql_type):
    api.create()
    message, sql_state = failure(api.execute(merge_sql(), run_parameters(**{name: (value, sql_type)})))
    assert message.startswith(f"[CAST_INVALID_INPUT] The value '{value}' of the type \"STRING\" cannot be cast to ")
    assert sql_state == "22018"
    assert db.rows(FULL_NAME) == []


def test_typed_values_accept_the_iso_8601_variants_and_special_doubles(api, db):
    api.create()
    variants = [("1", "2026-11-20T09:14:03Z", "NaN"), ("2", "2026-11-20 09:14:03.123456", "-Infinity")]
    for run_id, created_at, duration in variants:
        parameters = run_parameters(run_id, created_at=(created_at, "TIMESTAMP"), duration=(duration, "DOUBLE"))
        assert api.execute(merge_sql(), parameters)["status"]["state"] == "SUCCEEDED"
    first, second = db.rows(FULL_NAME)
    assert first["created_at"] == INSTANT.replace(microsecond=0)
    assert second["created_at"] == INSTANT.replace(microsecond=123456)
    assert first["duration"] != first["duration"] and second["duration"] == float("-inf")


def test_an_unknown_table_fails(api):
    message, sql_state = failure(api.execute(merge_sql(), run_parameters()))
    assert message.startswith("[TABLE_OR_VIEW_NOT_FOUND] The table or view `main`.`default`.`peepshow_runs` cannot")
    assert message.endswith(" SQLSTATE: 42P01; line 1 pos 11")  # where the name starts in "MERGE INTO `main`…"
    assert sql_state == "42P01"


def test_a_dropped_table_is_gone_until_created_again(api, db):
    api.create()
    assert api.execute(merge_sql(), run_parameters())["status"]["state"] == "SUCCEEDED"
    db.drop_table(FULL_NAME)
    assert FULL_NAME not in db.tables
    assert failure(api.execute(merge_sql(), run_parameters()))[1] == "42P01"
    api.create()
    assert api.execute(merge_sql(), run_parameters())["status"]["state"] == "SUCCEEDED"
    assert len(db.rows(FULL_NAME)) == 1  # the run is stored again: the dropped rows left no trace in the MERGE


def test_a_missing_catalog_or_schema_fails_the_create(api, db):
    message, _ = failure(api.execute(CREATE.replace("`main`", "`nope`")))
    assert message.startswith("[NO_SUCH_CATALOG_EXCEPTION] Catalog 'nope' was not found.")
    message, sql_state = failure(api.execute(CREATE.replace("`default`", "`nope`")))
    assert message.startswith("[SCHEMA_NOT_FOUND] The schema `main`.`nope` cannot be found.")
    assert sql_state == "42704"
    assert db.tables == {}


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT 1",
        f"INSERT INTO {TABLE} VALUES ('it''s')",  # noqa: S608 - the literal is the point: it must be refused
        merge_sql().replace(":title AS title", "'Demo' AS title"),
        merge_sql(star=True).replace("INSERT *", "UPDATE SET *"),
        merge_sql().replace("VALUES (s.run_id", "VALUES ('x'"),
        CREATE + "; DROP TABLE x",
    ],
)
def test_statements_outside_the_subset_fail_with_parse_syntax_error(api, db, statement):
    api.create()
    message, sql_state = failure(api.execute(statement, run_parameters()))
    assert message.startswith("[PARSE_SYNTAX_ERROR] Syntax error at or near ")
    assert sql_state == "42601"
    assert db.rows(FULL_NAME) == []


def test_insert_star_needs_every_table_column_from_the_source(api):
    api.create()
    statement = merge_sql(star=True).replace(", :tags AS tags", "")
    message, _ = failure(api.execute(statement, run_parameters()))
    assert message.startswith("[DELTA_MERGE_UNRESOLVED_EXPRESSION] Cannot resolve tags in INSERT clause given columns ")


# -- tables made by hand ------------------------------------------------------------------------------------------

SCHEMA = [
    ("run_id", "STRING"),
    ("title", "STRING"),
    ("frames", "BIGINT"),
    ("duration", "DOUBLE"),
    ("transcript", "STRING"),
    ("thumbnail_url", "STRING"),
    ("strategy", "STRING"),
    ("tags", "STRING"),
    ("created_at", "TIMESTAMP"),
]


def hand_made(db, changes=(), extra=(), **options):
    """The sink's table with some columns retyped ({name: TYPE}, None drops one) and `extra` columns added."""
    changes = dict(changes)
    columns = [(name, changes.get(name, kind)) for name, kind in SCHEMA if changes.get(name, kind) is not None]
    db.create_table(FULL_NAME, columns + list(extra), **options)


def test_named_insert_columns_leave_an_extra_column_null_where_insert_star_fails(api, db):
    hand_made(db, extra=[("notes", "STRING")])
    message, sql_state = failure(api.execute(merge_sql(star=True), run_parameters()))
    assert message == (
        "[DELTA_MERGE_UNRESOLVED_EXPRESSION] Cannot resolve notes in INSERT clause given columns "
        + ", ".join(f"s.{column}" for column in COLUMNS)
        + ". SQLSTATE: 42601"
    )
    assert sql_state == "42601" and db.rows(FULL_NAME) == []
    assert api.execute(merge_sql(), run_parameters())["status"]["state"] == "SUCCEEDED"
    (row,) = db.rows(FULL_NAME)
    assert row["notes"] is None and row["title"] == "Demo"


def test_a_column_left_out_gets_its_default(api, db):
    hand_made(db, extra=[("source", "STRING")], not_null=["source"], defaults={"source": "peepshow"})
    assert api.execute(merge_sql(), run_parameters())["status"]["state"] == "SUCCEEDED"
    assert db.rows(FULL_NAME)[0]["source"] == "peepshow"
    status, table = api.request("GET", f"/api/2.1/unity-catalog/tables/{FULL_NAME}")
    assert table["columns"][9]["nullable"] is False
    assert json.loads(table["columns"][9]["type_json"]) == {
        "name": "source",
        "type": "string",
        "nullable": False,
        "metadata": {"CURRENT_DEFAULT": "'peepshow'", "EXISTS_DEFAULT": "'peepshow'"},
    }


def test_a_null_into_a_not_null_column_fails_the_merge(api, db):
    hand_made(db, extra=[("notes", "STRING")], not_null=["notes"])
    message, sql_state = failure(api.execute(merge_sql(), run_parameters()))
    assert (
        message
        == "[DELTA_NOT_NULL_CONSTRAINT_VIOLATED] NOT NULL constraint violated for column: notes. SQLSTATE: 23502"
    )
    assert sql_state == "23502" and db.rows(FULL_NAME) == []


def test_not_null_fails_only_the_runs_that_leave_the_column_empty(api, db):
    statement = CREATE.replace("transcript STRING,", "transcript STRING NOT NULL,")
    assert api.execute(statement)["status"]["state"] == "SUCCEEDED"
    assert db.tables[FULL_NAME]["not_null"] == {"transcript"}
    assert api.execute(merge_sql(), run_parameters())["status"]["state"] == "SUCCEEDED"
    message, sql_state = failure(api.execute(merge_sql(), run_parameters("run-2", transcript=(None, "STRING"))))
    assert "NOT NULL constraint violated for column: transcript." in message and sql_state == "23502"
    # A replay of a run already stored inserts nothing, so nothing is checked.
    assert api.execute(merge_sql(), run_parameters())["status"]["state"] == "SUCCEEDED"
    assert len(db.rows(FULL_NAME)) == 1


@pytest.mark.parametrize("data_source_format", ["PARQUET", "CSV", "JSON"])
def test_a_table_of_another_format_refuses_the_merge(api, db, data_source_format):
    assert api.execute(f"{CREATE[: -len('DELTA')]}{data_source_format}")["status"]["state"] == "SUCCEEDED"
    message, sql_state = failure(api.execute(merge_sql(), run_parameters()))
    assert message.startswith("[DELTA_UNSUPPORTED_SOURCE] MERGE destination only supports Delta sources.\n")
    assert sql_state == "0AKDD" and db.rows(FULL_NAME) == []
    status, table = api.request("GET", f"/api/2.1/unity-catalog/tables/{FULL_NAME}")
    assert (table["data_source_format"], table["table_type"]) == (data_source_format, "EXTERNAL")


def test_text_into_an_int_column_is_cast_and_fails_when_it_is_not_a_number(api, db):
    hand_made(db, {"title": "INT"})
    message, sql_state = failure(api.execute(merge_sql(), run_parameters()))
    assert message.startswith(
        """[CAST_INVALID_INPUT] The value 'Demo' of the type "STRING" cannot be cast to "INT" because it is """
        "malformed."
    )
    assert sql_state == "22018"
    assert api.execute(merge_sql(), run_parameters(title=("42", "STRING")))["status"]["state"] == "SUCCEEDED"
    assert db.rows(FULL_NAME)[0]["title"] == 42


def test_a_count_past_an_int_column_overflows(api, db):
    hand_made(db, {"frames": "INT"})
    message, sql_state = failure(api.execute(merge_sql(), run_parameters(frames=("3000000000", "BIGINT"))))
    assert message.startswith(
        '[DELTA_CAST_OVERFLOW_IN_TABLE_WRITE] Failed to write a value of "BIGINT" type into the "INT" type column '
    )
    assert sql_state == "22003"
    assert api.execute(merge_sql(), run_parameters())["status"]["state"] == "SUCCEEDED"


def test_a_date_column_keeps_the_day_and_loses_the_replay(api, db):
    hand_made(db, {"created_at": "DATE"})
    assert api.execute(merge_sql(), run_parameters())["status"]["state"] == "SUCCEEDED"
    assert db.rows(FULL_NAME)[0]["created_at"] == datetime.date(2026, 11, 20)
    # t.created_at = s.created_at compares the stored day at midnight with the instant: never equal again.
    assert api.execute(merge_sql(), run_parameters())["status"]["state"] == "SUCCEEDED"
    assert len(db.rows(FULL_NAME)) == 2


def test_a_type_no_cast_reaches_fails_the_analysis(api, db):
    hand_made(db, {"frames": "DATE"})
    message, sql_state = failure(api.execute(merge_sql(), run_parameters()))
    assert message.startswith('[DATATYPE_MISMATCH.CAST_WITHOUT_SUGGESTION] Cannot resolve "CAST(s.frames AS DATE)"')
    assert sql_state == "42K09"


def test_a_wider_column_takes_the_value(api, db):
    hand_made(db, {"frames": "DECIMAL(20,0)"})
    assert api.execute(merge_sql(), run_parameters())["status"]["state"] == "SUCCEEDED"
    assert db.rows(FULL_NAME)[0]["frames"] == 3


def test_a_named_column_the_table_lacks_fails_every_merge(api, db):
    hand_made(db, {"transcript": None})
    message, sql_state = failure(api.execute(merge_sql(), run_parameters(transcript=(None, "STRING"))))
    assert message.startswith(
        "[DELTA_MERGE_UNRESOLVED_EXPRESSION] Cannot resolve transcript in INSERT clause given columns t.run_id, "
    )
    assert sql_state == "42601"


def test_a_column_named_twice_is_refused(api, db):
    api.create()
    statement = merge_sql().replace("INSERT (run_id,", "INSERT (title,")
    message, sql_state = failure(api.execute(statement, run_parameters()))
    assert message.startswith("[DELTA_DUPLICATE_COLUMNS_ON_INSERT] Duplicate column names in INSERT clause")
    assert sql_state == "42701"


def test_fail_next_statement_forces_one_failure(api, db):
    db.fail_next_statement("BAD_REQUEST", "[DELTA_CONCURRENT_APPEND] Files were added.")
    answer = api.execute(CREATE)
    assert answer["status"] == {
        "state": "FAILED",
        "error": {"error_code": "BAD_REQUEST", "message": "[DELTA_CONCURRENT_APPEND] Files were added."},
    }
    assert db.tables == {}
    api.create()


# -- asynchronous execution --------------------------------------------------------------------------------------


def test_a_cold_warehouse_is_pending_then_running_then_succeeded(api, db):
    db.cold_start(polls=2)
    assert api.request("GET", "/api/2.0/sql/warehouses/wh-1")[1]["state"] == "STOPPED"
    submitted = api.execute(CREATE, wait_timeout="0s")
    assert submitted["status"] == {"state": "PENDING"}
    assert api.request("GET", "/api/2.0/sql/warehouses/wh-1")[1]["state"] == "STARTING"
    states = [api.poll(submitted["statement_id"])["status"]["state"] for _ in range(3)]
    assert states == ["PENDING", "PENDING", "RUNNING"]
    assert db.tables == {}  # nothing has run yet
    assert api.poll(submitted["statement_id"])["status"] == {"state": "SUCCEEDED"}
    assert FULL_NAME in db.tables
    assert api.request("GET", "/api/2.0/sql/warehouses/wh-1")[1]["state"] == "RUNNING"
    assert api.execute(merge_sql(), run_parameters())["status"]["state"] == "SUCCEEDED"  # warm now


def test_wait_timeout_zero_answers_pending_even_on_a_warm_warehouse(api, db):
    submitted = api.execute(CREATE, wait_timeout="0s")
    assert submitted["status"] == {"state": "PENDING"}
    assert api.poll(submitted["statement_id"])["status"] == {"state": "SUCCEEDED"}


def test_a_wait_covers_a_short_cold_start(api, db):
    db.cold_start(seconds=0.2)
    started = time.monotonic()
    assert api.execute(CREATE, wait_timeout="5s")["status"] == {"state": "SUCCEEDED"}
    assert 0.15 < time.monotonic() - started < 2


def test_on_wait_timeout_cancel_cancels_an_unfinished_statement(api, db):
    db.cold_start(polls=3)
    answer = api.execute(CREATE, wait_timeout="5s", on_wait_timeout="CANCEL")
    assert answer["status"] == {"state": "CANCELED"}
    assert api.poll(answer["statement_id"])["status"] == {"state": "CANCELED"}
    assert db.tables == {}


def test_cancel_a_statement_that_never_finishes(api, db):
    db.pending_forever()
    submitted = api.execute(CREATE, wait_timeout="0s")
    statement_id = submitted["statement_id"]
    assert [api.poll(statement_id)["status"]["state"] for _ in range(3)] == ["PENDING"] * 3
    path = f"/api/2.0/sql/statements/{statement_id}/cancel"
    assert api.request("POST", path) == (200, {})
    assert api.poll(statement_id)["status"] == {"state": "CANCELED"}
    assert db.cancels == [statement_id]
    assert db.tables == {}


def test_cancel_loses_the_race_against_completion(api, db):
    statement_id = api.execute(CREATE)["statement_id"]
    assert api.request("POST", f"/api/2.0/sql/statements/{statement_id}/cancel") == (200, {})
    assert api.poll(statement_id)["status"] == {"state": "SUCCEEDED"}
    assert db.cancels == [statement_id]


def test_unknown_statements_are_404(api):
    for method, path in (("GET", "/api/2.0/sql/statements/nope"), ("POST", "/api/2.0/sql/statements/nope/cancel")):
        status, answer = api.request(method, path)
        assert (status, answer["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")


def test_close_results_turns_succeeded_into_closed(api, db):
    statement_id = api.execute(CREATE)["statement_id"]
    db.close_results()
    assert api.poll(statement_id) == {"statement_id": statement_id, "status": {"state": "CLOSED"}}


# -- the read endpoints ------------------------------------------------------------------------------------------


def test_warehouse_endpoint(api, db):
    status, warehouse = api.request("GET", "/api/2.0/sql/warehouses/wh-1")
    assert (status, warehouse["id"], warehouse["state"]) == (200, "wh-1", "RUNNING")
    db.set_warehouse_state("wh-1", "STOPPED")
    assert api.request("GET", "/api/2.0/sql/warehouses/wh-1")[1]["state"] == "STOPPED"
    status, answer = api.request("GET", "/api/2.0/sql/warehouses/wh-2")
    assert (status, answer["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")


def test_unity_catalog_table_endpoint(api):
    status, answer = api.request("GET", f"/api/2.1/unity-catalog/tables/{FULL_NAME}")
    assert (status, answer) == (
        404,
        {"error_code": "TABLE_DOES_NOT_EXIST", "message": f"Table '{FULL_NAME}' does not exist."},
    )
    api.create()
    status, table = api.request("GET", f"/api/2.1/unity-catalog/tables/{FULL_NAME}")
    assert status == 200
    assert (table["full_name"], table["table_type"], table["data_source_format"]) == (FULL_NAME, "MANAGED", "DELTA")
    assert [column["name"] for column in table["columns"]] == list(COLUMNS)
    assert table["columns"][2] == {
        "name": "frames",
        "type_text": "bigint",
        "type_name": "LONG",
        "type_json": '{"name":"frames","type":"long","nullable":true,"metadata":{}}',
        "position": 2,
        "nullable": True,
    }
    assert table["columns"][8]["type_name"] == "TIMESTAMP"


def test_reset_forgets_tables_statements_and_switches(api, db):
    api.create()
    db.cold_start(polls=5)
    db.fail_next_statement()
    db.expire_token(TOKEN)
    db.issue_token()
    db.set_token_lifetime(1)
    db.move_token_endpoint("/elsewhere")
    db.reset()
    assert (db.tables, db.statements, db.cancels, db.requests) == ({}, [], [], [])
    assert (db.oauth_tokens, db.token_requests, db.refused_tokens) == ({}, [], [])
    assert (db.token_lifetime, db.token_path, db.expired_token_status) == (3600, "/oidc/v1/token", 403)
    assert api.execute(CREATE)["status"] == {"state": "SUCCEEDED"}


# -- OAuth: discovery and the token endpoint ----------------------------------------------------------------------

CLIENT_ID, CLIENT_SECRET = next(iter(DEFAULT_SERVICE_PRINCIPALS.items()))
FORM = "application/x-www-form-urlencoded"


def oauth(api, body="grant_type=client_credentials&scope=all-apis", user=CLIENT_ID, password=CLIENT_SECRET, **extra):
    """POST the token endpoint as the SDKs do (HTTP Basic, a form body); (status, JSON, headers)."""
    headers = {"Content-Type": FORM, **extra}
    if user is not None:
        headers.update(urllib3.make_headers(basic_auth=f"{user}:{password}"))
    with urllib3.PoolManager(retries=False, timeout=10) as pool:
        response = pool.request("POST", api.url + "/oidc/v1/token", body=body, headers=headers)
    return response.status, json.loads(response.data), response.headers


def test_the_discovery_document_names_the_token_endpoint(api):
    with urllib3.PoolManager(retries=False, timeout=10) as pool:
        response = pool.request("GET", api.url + "/oidc/.well-known/oauth-authorization-server")
    assert response.status == 200
    document = json.loads(response.data)
    assert document["token_endpoint"] == api.url + "/oidc/v1/token"
    assert document["authorization_endpoint"] == api.url + "/oidc/v1/authorize"
    assert "client_secret_basic" in document["token_endpoint_auth_methods_supported"]
    assert "client_credentials" in document["grant_types_supported"]


def test_client_credentials_give_an_hour_token_the_apis_accept(api, db):
    status, answer, headers = oauth(api)
    assert status == 200 and headers["Cache-Control"] == "no-store"
    assert set(answer) == {"access_token", "scope", "token_type", "expires_in"}
    assert (answer["token_type"], answer["scope"], answer["expires_in"]) == ("Bearer", "all-apis", 3600)
    assert answer["access_token"].count(".") == 2  # JWT-shaped, as Databricks' are
    assert api.request("GET", "/api/2.0/sql/warehouses/wh-1", token=answer["access_token"])[0] == 200
    assert db.token_requests == [
        {"client_id": CLIENT_ID, "grant_type": "client_credentials", "scope": "all-apis", "auth": "basic"}
    ]


def test_the_secret_may_travel_in_the_form_instead(api, db):
    body = f"grant_type=client_credentials&scope=all-apis&client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}"
    assert oauth(api, body, user=None)[0] == 200
    assert db.token_requests[0]["auth"] == "post"


@pytest.mark.parametrize(
    ("user", "password"), [(CLIENT_ID, "dose-wrong"), ("00000000-0000-0000-0000-000000000000", CLIENT_SECRET)]
)
def test_a_wrong_client_id_or_secret_is_401_invalid_client(api, db, user, password):
    status, answer, headers = oauth(api, user=user, password=password)
    assert (status, answer) == (401, {"error": "invalid_client", "error_description": "Client authentication failed"})
    assert headers["WWW-Authenticate"].startswith("Basic")
    assert db.token_requests == [] and db.oauth_tokens == {}


@pytest.mark.parametrize(
    ("body", "content_type", "status", "error"),
    [
        ("grant_type=client_credentials&scope=all-apis", "application/json", 400, "invalid_request"),
        ("scope=all-apis", FORM, 400, "invalid_request"),
        ("grant_type=password&scope=all-apis", FORM, 400, "unsupported_grant_type"),
        ("grant_type=client_credentials", FORM, 400, "invalid_scope"),
        ("grant_type=client_credentials&scope=everything", FORM, 400, "invalid_scope"),
        ("grant_type=client_credentials&scope=all-apis&scope=sql", FORM, 400, "invalid_request"),
        (f"grant_type=client_credentials&scope=all-apis&client_secret={CLIENT_SECRET}", FORM, 400, "invalid_request"),
    ],
    ids=["json-body", "no-grant", "other-grant", "no-scope", "unknown-scope", "repeated", "two-auth-methods"],
)
def test_malformed_token_requests(api, db, body, content_type, status, error):
    answer = oauth(api, body, **{"Content-Type": content_type})
    assert (answer[0], answer[1]["error"]) == (status, error)
    assert db.oauth_tokens == {}


def test_no_client_authentication_is_401(api):
    assert oauth(api, user=None)[:2] == (
        401,
        {"error": "invalid_client", "error_description": "Client authentication failed"},
    )


def test_short_lifetimes_and_expiry(api, db):
    db.set_token_lifetime(41)
    token = oauth(api)[1]
    assert token["expires_in"] == 41
    assert api.request("GET", "/api/2.0/sql/warehouses/wh-1", token=token["access_token"])[0] == 200
    db.expire_oauth_tokens()
    refused = (403, {"error_code": 403, "message": "Invalid access token."})
    assert api.request("GET", "/api/2.0/sql/warehouses/wh-1", token=token["access_token"]) == refused
    db.expire_oauth_tokens(status=401)
    assert api.request("GET", "/api/2.0/sql/warehouses/wh-1", token=token["access_token"])[0] == 401
    assert db.refused_tokens == [token["access_token"]] * 2
    fresh = oauth(api)[1]["access_token"]
    assert api.request("GET", "/api/2.0/sql/warehouses/wh-1", token=fresh)[0] == 200


def test_a_user_login_token_is_accepted(api, db):
    token = db.issue_token()
    assert api.request("GET", "/api/2.0/sql/warehouses/wh-1", token=token)[0] == 200
    assert db.token_requests == []  # issued as `databricks auth login` would get it, not at the token endpoint


def test_a_moved_token_endpoint_is_found_through_discovery(api, db):
    db.move_token_endpoint("/oidc/v2/token")
    assert oauth(api)[0] == 404
    with urllib3.PoolManager(retries=False, timeout=10) as pool:
        document = json.loads(pool.request("GET", api.url + "/oidc/.well-known/oauth-authorization-server").data)
        assert document["token_endpoint"] == api.url + "/oidc/v2/token"
        moved = pool.request(
            "POST",
            document["token_endpoint"],
            body="grant_type=client_credentials&scope=all-apis",
            headers={"Content-Type": FORM, **urllib3.make_headers(basic_auth=f"{CLIENT_ID}:{CLIENT_SECRET}")},
        )
    assert moved.status == 200
