"""The Stargate emulators answer like stargate/stargate's REST API and auth service (tests/emulators/stargate.py)."""

import datetime
import decimal
import json
import threading
import uuid

import pytest
import urllib3

from tests.conftest import standalone_emulator
from tests.emulators.stargate import GRPC_MAX_MESSAGE, PEEPSHOW_SCHEMA, Stargate, StargateAuth

TOKEN = "AstraCS:test-token"
ROWS = "/v2/keyspaces/peepshow/peepshow_runs"
SCHEMA = "/v2/schemas/keyspaces/peepshow/tables/peepshow_runs"
UTC = datetime.timezone.utc
FULL_ROW = {
    "run_id": "run-1",
    "title": "Pilot",
    "frames": 12,
    "duration": 42.5,
    "transcript": "hello",
    "thumbnail_url": "https://frames.example/run-1/0001.jpg",
    "strategy": "scene",
    "tags": '{"show":"Pilot"}',
    "created_at": "2026-11-20T09:14:03.123Z",
}


@pytest.fixture(scope="module")
def servers():
    v2 = Stargate().start()
    v1 = Stargate(version=1).start()
    auth = StargateAuth(on_token=v2.add_token).start()
    yield {"v2": v2, "v1": v1, "auth": auth}
    # Each stop waits for its server's 0.5 s poll: stop them side by side.
    stoppers = [threading.Thread(target=emulator.stop) for emulator in (v2, v1, auth)]
    for stopper in stoppers:
        stopper.start()
    for stopper in stoppers:
        stopper.join()


@pytest.fixture
def v2(servers):
    servers["v2"].reset()
    servers["v2"].accept_micros = False  # configuration, which reset() leaves alone
    return servers["v2"]


@pytest.fixture
def v1(servers):
    servers["v1"].reset()
    return servers["v1"]


@pytest.fixture
def auth(servers, v2):
    servers["auth"].reset()
    return servers["auth"]


def request(method, url, body=None, token=TOKEN, content_type="application/json"):
    """One request on a fresh connection (a kept-alive one to http.server stalls ~40 ms per request on Nagle)."""
    headers = {}
    if content_type:
        headers["Content-Type"] = content_type
    if token is not None:
        headers["X-Cassandra-Token"] = token
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    with urllib3.PoolManager(retries=False, timeout=5) as pool:
        return pool.request(method, url, body=body, headers=headers)


def post_row(emulator, row, path=ROWS, **options):
    return request("POST", emulator.url + path, row, **options)


def answer(response):
    return json.loads(response.data)


def description(response):
    return answer(response)["description"]


def cql_text(value):
    """How a client keeps a text value intact on both versions: quoted, with every ' doubled."""
    return "'" + value.replace("'", "''") + "'"


def stored(emulator, column, run_id="run-1"):
    [row] = [row for row in emulator.rows("peepshow", "peepshow_runs") if row["run_id"] == run_id]
    return row[column]


# -- authentication ---------------------------------------------------------------------------------------------------


def test_v2_missing_token_is_refused_before_anything_else(v2):
    response = post_row(v2, b"not json", token=None, content_type="text/plain")
    assert response.status == 401
    assert answer(response) == {
        "description": "Role unauthorized for operation: Missing token, expecting one in the X-Cassandra-Token header.",
        "code": 401,
        "grpcStatus": None,
        "internalTxId": None,
    }
    assert v2.writes == 0


@pytest.mark.parametrize("token", ["AstraCS:wrong", ""])
def test_v2_unknown_token_is_the_bridges_invalid_token(v2, token):
    response = post_row(v2, FULL_ROW, token=token)
    assert response.status == 401
    assert answer(response) == {
        "description": "Unauthenticated gRPC operation (UNAUTHENTICATED->Unauthorized): UNAUTHENTICATED: Invalid token",
        "code": 401,
        "grpcStatus": "UNAUTHENTICATED",
        "internalTxId": None,
    }


def test_v2_parses_the_body_before_it_checks_the_token(v2):
    response = post_row(v2, b"{oops", token="AstraCS:wrong")
    assert response.status == 400
    assert description(response).startswith("Invalid JSON payload: ")


def test_expired_token_is_refused_until_reset(v2):
    v2.expire_token(TOKEN)
    assert post_row(v2, FULL_ROW).status == 401
    v2.reset()
    assert post_row(v2, FULL_ROW).status == 201


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (None, "authorization failed - missing token"),
        ("AstraCS:wrong", "authorization failed - bad token"),
        (str(uuid.UUID(int=7)), "authorization failed"),
    ],
)
def test_v1_token_errors(v1, token, reason):
    response = post_row(v1, FULL_ROW, token=token)
    assert response.status == 401
    assert answer(response) == {"description": f"Role unauthorized for operation: {reason}", "code": 401}


# -- refused writes ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("/v2/keyspaces/nosuch/peepshow_runs", "Table 'peepshow_runs' not found (in keyspace nosuch)"),
        ("/v2/keyspaces/peepshow/nosuch", "Table 'nosuch' not found (in keyspace peepshow)"),
    ],
)
def test_v2_missing_keyspace_or_table_is_400(v2, path, text):
    response = post_row(v2, FULL_ROW, path=path)
    assert (response.status, description(response)) == (400, text)


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("/v2/keyspaces/nosuch/peepshow_runs", "Resource not found: keyspace 'nosuch' not found"),
        ("/v2/keyspaces/peepshow/nosuch", "Resource not found: table 'nosuch' not found"),
    ],
)
def test_v1_missing_keyspace_or_table_is_404(v1, path, text):
    response = post_row(v1, FULL_ROW, path=path)
    assert (response.status, answer(response)) == (404, {"description": text, "code": 404})


def test_unknown_column(v2, v1):
    row = dict(FULL_ROW, bogus="x")
    response = post_row(v2, row)
    assert response.status == 400
    assert description(response) == (
        "Invalid path for row to create, problem: Unknown field name 'bogus' (table 'peepshow_runs'); known fields: "
        "[run_id, created_at, duration, frames, strategy, tags, thumbnail_url, title, transcript]"
    )
    response = post_row(v1, row)
    assert (response.status, description(response)) == (400, "Bad request: Unknown field name 'bogus'.")
    assert v2.writes == v1.writes == 0


def test_unknown_column_with_null_gets_past_stargate_to_cassandra(v2):
    response = post_row(v2, dict(FULL_ROW, bogus=None))
    assert response.status == 400
    assert answer(response)["grpcStatus"] == "INVALID_ARGUMENT"
    assert description(response).endswith("INVALID_ARGUMENT: Undefined column name bogus")


@pytest.mark.parametrize(
    ("row", "text"),
    [
        ({"title": "no key"}, "Some partition key parts are missing: run_id"),
        ({"run_id": None}, "Invalid null value in condition for column run_id"),
        ({"run_id": "''"}, "Key may not be empty"),
    ],
)
def test_v2_primary_key_refusals_come_from_cassandra(v2, row, text):
    response = post_row(v2, row)
    assert response.status == 400
    assert description(response) == (
        f"Invalid argument for gRPC operation (INVALID_ARGUMENT->Bad Request): INVALID_ARGUMENT: {text}"
    )
    assert v2.rows("peepshow", "peepshow_runs") == []


@pytest.mark.parametrize(
    ("column", "value", "problem"),
    [
        (
            "frames",
            "12 frames",
            "Invalid String value ('12 frames'): not valid representation/value for target protobuf type: "
            "TypeSpec.Basic.LONG",
        ),
        ("frames", True, "Cannot coerce Boolean value (true) into expected protobuf type: TypeSpec.Basic.LONG"),
        (
            "duration",
            "fast",
            "Invalid String value ('fast'): not valid representation/value for target protobuf type: "
            "TypeSpec.Basic.DOUBLE",
        ),
        (
            "duration",
            {"s": 1},
            "Cannot coerce Java value of type java.util.LinkedHashMap into expected protobuf type: "
            "TypeSpec.Basic.DOUBLE",
        ),
        ("created_at", 1.5, "Cannot coerce Number 1.5 into expected protobuf type: TypeSpec.Basic.TIMESTAMP"),
    ],
)
def test_v2_bad_values(v2, column, value, problem):
    response = post_row(v2, dict(FULL_ROW, **{column: value}))
    assert response.status == 400
    assert description(response) == (
        f"Invalid path for row to create, problem: Failed to deserialize field 'peepshow_runs.{column}', "
        f"problem: {problem}"
    )


@pytest.mark.parametrize(
    ("column", "value", "text"),
    [
        ("frames", 2**63, "Invalid Bigint value '9223372036854775808': out of range"),
        ("frames", 1.5, "Invalid Bigint value '1.5': expected an integer or a string"),
        ("title", 42, "Invalid Text value '42': expected a string"),
        ("duration", "fast", "Invalid Double value 'fast': cannot parse"),
    ],
)
def test_v1_bad_values(v1, column, value, text):
    response = post_row(v1, dict(FULL_ROW, **{column: value}))
    assert (response.status, answer(response)) == (400, {"description": f"Bad request: {text}", "code": 400})


def test_v2_wants_json_content_type(v2):
    response = post_row(v2, json.dumps(FULL_ROW).encode(), content_type="text/plain")
    assert (response.status, description(response)) == (415, "HTTP 415 Unsupported Media Type")


@pytest.mark.parametrize(("body", "status"), [(b'{"run_id": NaN}', 400), (b"[]", 400), (b"", 400), (b"null", 500)])
def test_v2_unusable_bodies(v2, body, status):
    response = post_row(v2, body)
    assert response.status == status
    assert v2.writes == 0


def test_v2_body_beyond_the_grpc_limit_is_a_500(v2):
    response = post_row(v2, dict(FULL_ROW, transcript="x" * GRPC_MAX_MESSAGE))
    assert response.status == 500
    assert answer(response)["grpcStatus"] == "RESOURCE_EXHAUSTED"
    assert description(response).startswith(
        "Unhandled gRPC failure (RESOURCE_EXHAUSTED->Internal Server Error): RESOURCE_EXHAUSTED: gRPC message "
        "exceeds maximum size 4194304: "
    )
    assert v2.writes == 0


# -- timestamps -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-20T09:14:03Z", datetime.datetime(2026, 11, 20, 9, 14, 3, tzinfo=UTC)),
        ("2026-11-20T09:14:03.123Z", datetime.datetime(2026, 11, 20, 9, 14, 3, 123000, tzinfo=UTC)),
        ("2026-11-20T10:14:03.123+01:00", datetime.datetime(2026, 11, 20, 9, 14, 3, 123000, tzinfo=UTC)),
        ("2026-11-20T10:14:03.123+0100", datetime.datetime(2026, 11, 20, 9, 14, 3, 123000, tzinfo=UTC)),
        ("'2026-02-30T00:00:00Z'", datetime.datetime(2026, 2, 28, tzinfo=UTC)),  # quotes stripped, SMART clamp
        (1795166043123, datetime.datetime(2026, 11, 20, 9, 14, 3, 123000, tzinfo=UTC)),
    ],
)
def test_v2_accepted_timestamps(v2, text, expected):
    assert post_row(v2, dict(FULL_ROW, created_at=text)).status == 201
    assert stored(v2, "created_at") == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("2026-11-20T09:14:03.1Z", "could not be parsed, unparsed text found at index 19"),
        ("2026-11-20T09:14:03.12Z", "could not be parsed, unparsed text found at index 19"),
        ("2026-11-20T09:14:03.123456Z", "could not be parsed, unparsed text found at index 23"),
        ("2026-11-20 09:14:03.123Z", "could not be parsed at index 10"),
    ],
)
def test_v2_refuses_fraction_digits_other_than_0_or_3(v2, text, problem):
    response = post_row(v2, dict(FULL_ROW, created_at=text))
    assert response.status == 400
    assert description(response) == (
        "Invalid path for row to create, problem: Failed to deserialize field 'peepshow_runs.created_at', "
        f"problem: Text '{text}' {problem}"
    )


def test_v2_timestamp_without_offset_cannot_be_an_instant(v2):
    response = post_row(v2, dict(FULL_ROW, created_at="2026-11-20T09:14:00"))
    assert description(response).endswith(
        "problem: Text '2026-11-20T09:14:00' could not be parsed: Unable to obtain Instant from TemporalAccessor: "
        "{},ISO resolved to 2026-11-20T09:14 of type java.time.format.Parsed"
    )


def test_later_v2_releases_take_up_to_6_fraction_digits(v2):
    v2.accept_micros = True
    assert post_row(v2, dict(FULL_ROW, created_at="2026-11-20T09:14:03.1Z")).status == 201
    assert post_row(v2, dict(FULL_ROW, run_id="run-2", created_at="2026-11-20T09:14:03.123456Z")).status == 201
    assert stored(v2, "created_at") == datetime.datetime(2026, 11, 20, 9, 14, 3, 100000, tzinfo=UTC)
    assert stored(v2, "created_at", "run-2") == datetime.datetime(2026, 11, 20, 9, 14, 3, 123000, tzinfo=UTC)
    response = post_row(v2, dict(FULL_ROW, created_at="2026-11-20T09:14:03.1234567Z"))
    assert description(response).endswith("could not be parsed, unparsed text found at index 26")


def test_v1_takes_any_fraction_but_only_z(v1):
    assert post_row(v1, dict(FULL_ROW, created_at="2026-11-20T09:14:03.123456z")).status == 201
    assert stored(v1, "created_at") == datetime.datetime(2026, 11, 20, 9, 14, 3, 123000, tzinfo=UTC)
    response = post_row(v1, dict(FULL_ROW, created_at="2026-11-20T10:14:03+01:00"))
    assert description(response) == (
        "Bad request: Invalid Timestamp value: Text '2026-11-20T10:14:03+01:00' could not be parsed at index 19"
    )


# -- values that are stored -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("'abc'", "abc"),
        ("'it''s'", "it's"),
        ("it's", "it's"),
        ("'", "'"),
        ("'a'b'", "a'b"),
        ("  'abc'  ", "  'abc'  "),
        (42, "42"),
        (1e10, "1.0E10"),
    ],
)
def test_v2_text_values(v2, sent, kept):
    assert post_row(v2, dict(FULL_ROW, title=sent)).status == 201
    assert stored(v2, "title") == kept


@pytest.mark.parametrize("value", ["it's", "'quoted'", "", "''", "  padded  ", "a''b", '{"k": "v\'"}'])
def test_doubled_and_quoted_text_survives_both_versions(v2, v1, value):
    for emulator in (v2, v1):
        assert post_row(emulator, dict(FULL_ROW, title=cql_text(value))).status == 201
        assert stored(emulator, "title") == value


def test_v1_trims_before_it_strips_quotes(v1):
    assert post_row(v1, dict(FULL_ROW, title="  'abc'  ", strategy="  scene ")).status == 201
    assert (stored(v1, "title"), stored(v1, "strategy")) == ("abc", "scene")
    response = post_row(v1, dict(FULL_ROW, title="'"))
    assert (response.status, description(response)) == (500, "Server error: String index out of range: -1")


@pytest.mark.parametrize(
    ("sent", "kept"),
    [(2**63, -(2**63)), (2**64 + 5, 5), (-(2**63) - 1, 2**63 - 1), (3.9, 3), ("42", 42), ("'-7'", -7)],
)
def test_v2_bigint_wraps_silently(v2, sent, kept):
    assert post_row(v2, dict(FULL_ROW, frames=sent)).status == 201
    assert stored(v2, "frames") == kept


def test_null_writes_a_tombstone_and_absent_columns_are_kept(v2):
    assert post_row(v2, FULL_ROW).status == 201
    assert post_row(v2, {"run_id": "run-1", "title": None, "frames": 7}).status == 201
    [row] = v2.rows("peepshow", "peepshow_runs")
    assert row == {
        "run_id": "run-1",
        "title": None,
        "frames": 7,
        "duration": 42.5,
        "transcript": "hello",
        "thumbnail_url": "https://frames.example/run-1/0001.jpg",
        "strategy": "scene",
        "tags": '{"show":"Pilot"}',
        "created_at": datetime.datetime(2026, 11, 20, 9, 14, 3, 123000, tzinfo=UTC),
    }
    assert v2.writes == 2


def test_v2_echoes_the_body_and_ignores_trailing_content(v2):
    body = b'{ "run_id" : "\'run-1\'",  "frames": 3 }  trailing words Jackson never reads'
    response = post_row(v2, body)
    assert (response.status, response.data) == (201, body)
    assert stored(v2, "frames") == 3


def test_v1_returns_the_key_columns_as_sent(v1):
    response = post_row(v1, dict(FULL_ROW, run_id="'run-1'"))
    assert (response.status, answer(response)) == (201, {"run_id": "'run-1'"})


# -- reading back -----------------------------------------------------------------------------------------------------


def test_get_row_by_primary_key(v2, v1):
    for emulator in (v2, v1):
        post_row(emulator, dict(FULL_ROW, created_at="2026-11-20T09:14:00Z"))
    response = request("GET", v2.url + ROWS + "/run-1")
    [row] = answer(response)["data"]
    assert answer(response)["count"] == 1
    assert (row["frames"], row["created_at"], row["title"]) == (12, "2026-11-20T09:14:00Z", "Pilot")
    assert answer(request("GET", v2.url + ROWS + "/'run-1'?raw=true")) == [row]
    assert answer(request("GET", v2.url + ROWS + "/run-2")) == {"count": 0, "data": []}
    [row] = answer(request("GET", v1.url + ROWS + "/run-1"))["data"]
    assert row["frames"] == "12"  # v1 writes bigints as JSON strings


def test_schema_endpoint(v2, v1):
    data = answer(request("GET", v2.url + SCHEMA))["data"]
    assert (data["name"], data["keyspace"]) == ("peepshow_runs", "peepshow")
    assert data["primaryKey"] == {"partitionKey": ["run_id"], "clusteringKey": []}
    assert data["tableOptions"] == {"defaultTimeToLive": 0, "clusteringExpression": []}
    v2_types = {column["name"]: column["typeDefinition"] for column in data["columnDefinitions"]}
    assert v2_types == {name: kind for name, kind in PEEPSHOW_SCHEMA["columns"]}
    assert all(column["static"] is False for column in data["columnDefinitions"])
    raw = answer(request("GET", v1.url + SCHEMA + "?raw=true"))
    v1_types = {column["name"]: column["typeDefinition"] for column in raw["columnDefinitions"]}
    assert (v1_types["title"], v1_types["frames"], v1_types["created_at"]) == ("varchar", "bigint", "timestamp")
    response = request("GET", v2.url + "/v2/schemas/keyspaces/peepshow/tables/nosuch")
    assert (response.status, description(response)) == (404, "Table 'nosuch' not found (keyspace 'peepshow')")


# -- tables made by hand (v2): other column types --------------------------------------------------------------------

TEXT_COLUMNS = ("run_id", "title", "transcript", "thumbnail_url", "strategy", "tags")
# The row as the cassandra sink sends it: every text value quoted, so that Stargate's quote stripping keeps it whole.
SINK_ROW = {name: cql_text(value) if name in TEXT_COLUMNS else value for name, value in FULL_ROW.items()}


def retyped(emulator, **types):
    columns = [(name, types.get(name, kind)) for name, kind in PEEPSHOW_SCHEMA["columns"]]
    emulator.add_table("peepshow", "peepshow_runs", dict(PEEPSHOW_SCHEMA, columns=columns))


@pytest.mark.parametrize(
    ("column", "kind", "problem"),
    [
        (
            "title",
            "int",
            "Invalid String value ('Pilot'): not valid representation/value for target protobuf type: "
            "TypeSpec.Basic.INT",
        ),
        ("created_at", "date", "Text '2026-11-20T09:14:03.123Z' could not be parsed, unparsed text found at index 10"),
        (
            "tags",
            "map<text, text>",
            """Invalid Compact Map value '{"show":"Pilot"}': at character 1 expecting ':' but got '"'""",
        ),
        ("tags", "list<text>", """Invalid List value '{"show":"Pilot"}': at character 1 expecting '[' but got '{'"""),
        ("frames", "date", "Cannot coerce Number 12 into expected protobuf type: TypeSpec.Basic.DATE"),
        ("duration", "varint", 'For input string: "42.5"'),
        (
            "run_id",
            "uuid",
            "Invalid String value ('run-1'): not valid representation/value for target protobuf type: "
            "TypeSpec.Basic.UUID",
        ),
    ],
)
def test_v2_a_hand_made_column_type_refuses_the_sinks_value(v2, column, kind, problem):
    retyped(v2, **{column: kind})
    response = post_row(v2, SINK_ROW)
    assert (response.status, description(response)) == (
        400,
        f"Invalid path for row to create, problem: Failed to deserialize field 'peepshow_runs.{column}', "
        f"problem: {problem}",
    )
    assert v2.writes == 0


@pytest.mark.parametrize(
    ("column", "kind", "sent", "kept"),
    [
        ("tags", "map<text, text>", "'{}'", {}),  # a run without tags: the empty map reads fine
        ("tags", "map<text, text>", "'{''show'': ''Pilot''}'", {"show": "Pilot"}),
        ("frames", "int", 12, 12),
        ("frames", "int", 3_000_000_000, -1_294_967_296),  # Number.intValue: no bounds check, silently wrapped
        ("frames", "varint", 12, 12),
        ("frames", "smallint", 70_000, 4464),
        ("duration", "decimal", 42.5, decimal.Decimal("42.5")),
        ("duration", "float", 42.1, 42.099998474121094),
        ("title", "boolean", "'true'", True),
        ("created_at", "date", "'2026-11-20'", datetime.date(2026, 11, 20)),
    ],
)
def test_v2_a_hand_made_column_type_that_takes_a_value(v2, column, kind, sent, kept):
    retyped(v2, **{column: kind})
    response = post_row(v2, dict(SINK_ROW, **{column: sent}))
    assert response.status == 201, description(response)
    assert stored(v2, column) == kept


def test_v2_schema_names_the_hand_made_types(v2, v1):
    retyped(v2, tags="map<text,text>", frames="int", created_at="date")
    data = answer(request("GET", v2.url + SCHEMA))["data"]
    types = {column["name"]: column["typeDefinition"] for column in data["columnDefinitions"]}
    assert (types["tags"], types["frames"], types["created_at"]) == ("map<text, text>", "int", "date")
    with pytest.raises(ValueError, match="models only text, bigint, double and timestamp"):
        retyped(v1, frames="int")


def test_a_hand_made_table_is_gone_after_reset(v2):
    retyped(v2, title="int")
    v2.reset()
    assert post_row(v2, SINK_ROW).status == 201


# -- the auth service -------------------------------------------------------------------------------------------------


def mint(auth, body):
    return request("POST", auth.url + "/v1/auth", body, token=None)


def test_minted_token_is_accepted_by_the_linked_stargate(auth, v2):
    response = mint(auth, {"username": "cassandra", "password": "cassandra"})
    assert response.status == 201
    token = answer(response)["authToken"]
    assert str(uuid.UUID(token)) == token
    assert auth.minted == [token]
    assert post_row(v2, FULL_ROW, token=token).status == 201


@pytest.mark.parametrize(
    ("body", "status", "reply"),
    [
        (
            {"username": "cassandra", "password": "nope"},
            401,
            {"description": "Failed to create token: Provided username cassandra and/or password are incorrect"},
        ),
        ({"password": "cassandra"}, 400, {"description": "Must provide username in request"}),
        ({"username": "cassandra", "password": ""}, 400, {"description": "Must provide password in request"}),
        (b"", 400, {"description": "Must provide a body to the request"}),
        (b"{nope", 400, {"code": 400, "message": "Unable to process JSON"}),
    ],
)
def test_auth_refusals(auth, body, status, reply):
    response = mint(auth, body)
    assert (response.status, answer(response)) == (status, reply)
    assert auth.minted == []


def test_expired_mint_forces_a_second_one(auth, v2):
    auth.expire_next()
    first = answer(mint(auth, {"username": "cassandra", "password": "cassandra"}))["authToken"]
    assert post_row(v2, FULL_ROW, token=first).status == 401
    second = answer(mint(auth, {"username": "cassandra", "password": "cassandra"}))["authToken"]
    assert post_row(v2, FULL_ROW, token=second).status == 201
    assert auth.minted == [first, second]


def test_runs_standalone_with_its_auth_service():
    with standalone_emulator("stargate", "--auth-port", "0", banners=2) as (auth_url, rest_url):
        token = answer(request("POST", auth_url + "/v1/auth", {"username": "cassandra", "password": "cassandra"}))
        response = request("POST", rest_url + ROWS, FULL_ROW, token=token["authToken"])
        assert (response.status, answer(response)) == (201, FULL_ROW)
