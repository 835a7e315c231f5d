"""The Data API emulator driven by DataStax's own Python client (astrapy): the requests it makes must be
accepted and the answers must parse the way it expects. Dev-only: astrapy needs Python 3.10+, so
requirements-dev.txt installs it there and this module is skipped elsewhere."""

import datetime

import pytest

astrapy = pytest.importorskip("astrapy")

from astrapy import DataAPIClient  # noqa: E402
from astrapy.authentication import UsernamePasswordTokenProvider  # noqa: E402
from astrapy.exceptions import DataAPIResponseException, TableInsertManyException  # noqa: E402

from tests.emulators.dataapi import DataAPI  # noqa: E402

UTC = datetime.timezone.utc
DEFINITION = {
    "columns": {
        "run_id": {"type": "text"},
        "title": {"type": "text"},
        "frames": {"type": "bigint"},
        "duration": {"type": "double"},
        "created_at": {"type": "timestamp"},
    },
    "primaryKey": {"partitionBy": ["run_id"], "partitionSort": {}},
}


@pytest.fixture(scope="module")
def server():
    emulator = DataAPI(astra=False, users={"cassandra": "cassandra"}).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def database(server):
    server.reset()
    client = DataAPIClient(environment="hcd")
    return client.get_database(
        server.url, token=UsernamePasswordTokenProvider("cassandra", "cassandra"), keyspace="peepshow"
    )


def row(number, **changes):
    values = {
        "run_id": f"run-{number}",
        "title": f"Run {number}",
        "frames": number,
        "duration": 1.5,
        "created_at": datetime.datetime(2026, 11, 20, 9, 14, 3, 123000, tzinfo=UTC),
    }
    values.update(changes)
    return values


def test_create_list_insert_and_drop(database, server):
    table = database.create_table("peepshow_runs", definition=DEFINITION, if_not_exists=True)
    database.create_table("peepshow_runs", definition=DEFINITION, if_not_exists=True)  # {"ok": 1} again
    assert database.list_table_names() == ["peepshow_runs"]
    (described,) = database.list_tables()
    assert described.name == "peepshow_runs"
    assert described.definition.primary_key.partition_by == ["run_id"]
    assert set(described.definition.columns) == set(DEFINITION["columns"])

    result = table.insert_one(row(1))
    assert result.inserted_id == {"run_id": "run-1"} and result.inserted_id_tuple == ("run-1",)
    many = table.insert_many([row(number) for number in range(2, 130)], chunk_size=50, concurrency=4)
    assert len(many.inserted_ids) == 128
    (stored,) = [item for item in server.rows("peepshow", "peepshow_runs") if item["run_id"] == "run-1"]
    assert stored["created_at"] == datetime.datetime(2026, 11, 20, 9, 14, 3, 123000, tzinfo=UTC)
    assert len(server.rows("peepshow", "peepshow_runs")) == 129

    database.drop_table("peepshow_runs")
    assert database.list_table_names() == []


def test_partial_insert_many_is_parsed_by_position(database, server):
    table = database.create_table("peepshow_runs", definition=DEFINITION)
    with pytest.raises(TableInsertManyException) as caught:
        table.insert_many([row(1), row(2, frames="many"), row(3)], ordered=False)
    assert sorted(key["run_id"] for key in caught.value.inserted_ids) == ["run-1", "run-3"]
    (error,) = caught.value.exceptions
    assert isinstance(error, DataAPIResponseException)
    assert error.error_descriptors[0].error_code == "INVALID_COLUMN_VALUES"
    assert error.error_descriptors[0].scope == "DOCUMENT"


def test_errors_at_http_200_become_astrapy_exceptions(database):
    table = database.get_table("peepshow_runs")
    with pytest.raises(DataAPIResponseException) as caught:
        table.insert_one(row(1))
    descriptor = caught.value.error_descriptors[0]
    assert (descriptor.error_code, descriptor.family, descriptor.scope) == (
        "UNKNOWN_COLLECTION_OR_TABLE",
        "REQUEST",
        "SCHEMA",
    )
