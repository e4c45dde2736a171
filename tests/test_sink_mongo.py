"""The MongoDB writer through pymongo against MockupDB (MongoDB's wire-protocol test server),
and against a real mongod when WIDE_LOGGING_TEST_MONGO_URL is set."""

from __future__ import annotations

import datetime
import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import orjson
import pytest
from mockupdb import MockupDB, OpMsg
from pymongo.errors import AutoReconnect, BulkWriteError, PyMongoError

from wide_logging import ConfigurationError
from wide_logging.sinks import open_sink
from wide_logging.sinks.mongo import INDEXES, MongoSink, to_document
from wide_logging.typing import RejectedEvents

pytestmark = pytest.mark.mongo

FAST = "retryWrites=false&serverSelectionTimeoutMS=3000&connectTimeoutMS=3000&socketTimeoutMS=1500"


def events(n: int, tag: str = "m") -> list[bytes]:
    return [
        orjson.dumps(
            {
                "event_id": f"{tag}-{i}",
                "timestamp": "2026-11-27T09:26:31.123Z",
                "kind": "http.request",
                "http": {"route": "/x/{id}"},
            }
        )
        for i in range(n)
    ]


@pytest.fixture
def mockup() -> Iterator[MockupDB]:
    server = MockupDB(auto_ismaster={"ismaster": True, "minWireVersion": 0, "maxWireVersion": 21})
    server.autoresponds("ping")
    server.run()
    yield server
    server.stop()


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(1) as executor:
        yield executor


def sink_for(server: MockupDB, **options: Any) -> MongoSink:
    return MongoSink(f"mongodb://127.0.0.1:{server.port}/shop?{FAST}", **options)


def answer_indexes(server: MockupDB) -> list[dict[str, Any]]:
    specs = []
    for _ in INDEXES:
        request = server.receives(OpMsg("createIndexes", "events"))
        specs.extend(request.doc["indexes"])
        request.ok()
    return specs


def test_documents_received_are_exactly_the_events(
    mockup: MockupDB, pool: ThreadPoolExecutor
) -> None:
    sink = sink_for(mockup)
    batch = events(3)
    future: Future[None] = pool.submit(sink.write, batch)
    specs = answer_indexes(mockup)
    assert [list(spec["key"]) for spec in specs] == [[path] for path in INDEXES]
    insert = mockup.receives(OpMsg("insert", "events", namespace="shop"))
    assert insert.doc["ordered"] is False
    documents = insert.doc["documents"]
    assert [d["_id"] for d in documents] == ["m-0", "m-1", "m-2"]
    assert all(d["_id"] == d["event_id"] for d in documents)
    assert documents[0]["timestamp"] == datetime.datetime(2026, 11, 27, 9, 26, 31, 123000)
    assert documents[0]["http"] == {"route": "/x/{id}"}
    insert.ok(n=3)
    future.result(timeout=10)
    # indexes are created once: the next batch goes straight to insert
    future = pool.submit(sink.write, events(1, tag="n"))
    mockup.receives(OpMsg("insert", "events")).ok(n=1)
    future.result(timeout=10)
    sink.close()


def test_retention_days_creates_a_ttl_index(mockup: MockupDB, pool: ThreadPoolExecutor) -> None:
    sink = sink_for(mockup, retention_days=30)
    future = pool.submit(sink.write, events(1))
    specs = answer_indexes(mockup)
    ttl = [spec for spec in specs if "expireAfterSeconds" in spec]
    assert [(list(spec["key"]), spec["expireAfterSeconds"]) for spec in ttl] == [
        (["timestamp"], 30 * 86400)
    ]
    mockup.receives(OpMsg("insert", "events")).ok(n=1)
    future.result(timeout=10)
    sink.close()


def test_duplicate_keys_on_retry_are_success(mockup: MockupDB, pool: ThreadPoolExecutor) -> None:
    sink = sink_for(mockup)
    future = pool.submit(sink.write, events(3))
    answer_indexes(mockup)
    mockup.receives(OpMsg("insert", "events")).ok(
        n=1,
        writeErrors=[
            {"index": 0, "code": 11000, "errmsg": "E11000 duplicate key"},
            {"index": 2, "code": 11000, "errmsg": "E11000 duplicate key"},
        ],
    )
    assert future.result(timeout=10) is None
    sink.close()


def test_a_refused_document_is_named_and_the_rest_counts_as_stored(
    mockup: MockupDB, pool: ThreadPoolExecutor
) -> None:
    sink = sink_for(mockup)
    future = pool.submit(sink.write, events(3))
    answer_indexes(mockup)
    mockup.receives(OpMsg("insert", "events")).ok(
        n=1,
        writeErrors=[
            {"index": 0, "code": 11000, "errmsg": "dup"},
            {"index": 2, "code": 121, "errmsg": "Document failed validation"},
        ],
    )
    with pytest.raises(RejectedEvents) as raised:
        future.result(timeout=10)
    assert raised.value.reasons == {2: "MongoDB error 121: Document failed validation"}
    sink.close()


def test_write_errors_about_the_server_fail_the_whole_batch(
    mockup: MockupDB, pool: ThreadPoolExecutor
) -> None:
    sink = sink_for(mockup)
    future = pool.submit(sink.write, events(2))
    answer_indexes(mockup)
    mockup.receives(OpMsg("insert", "events")).ok(
        n=1, writeErrors=[{"index": 1, "code": 91, "errmsg": "shutdown in progress"}]
    )
    with pytest.raises(BulkWriteError) as raised:
        future.result(timeout=10)
    assert sink.failure_kind(raised.value) == "unavailable"
    sink.close()


def test_command_error_fails_the_batch(mockup: MockupDB, pool: ThreadPoolExecutor) -> None:
    sink = sink_for(mockup)
    future = pool.submit(sink.write, events(2))
    answer_indexes(mockup)
    mockup.receives(OpMsg("insert", "events")).command_err(code=13, errmsg="not authorized")
    with pytest.raises(PyMongoError, match="not authorized"):
        future.result(timeout=10)
    sink.close()


def test_hung_server_times_out(mockup: MockupDB, pool: ThreadPoolExecutor) -> None:
    sink = sink_for(mockup)
    started = time.monotonic()
    future = pool.submit(sink.write, events(2))
    answer_indexes(mockup)
    mockup.receives(OpMsg("insert", "events"))  # ...and never answer
    with pytest.raises(AutoReconnect):  # NetworkTimeout is an AutoReconnect
        future.result(timeout=20)
    assert time.monotonic() - started < 10
    sink.close()


def test_closed_connection_fails_the_batch(mockup: MockupDB, pool: ThreadPoolExecutor) -> None:
    sink = sink_for(mockup)
    future = pool.submit(sink.write, events(2))
    answer_indexes(mockup)
    mockup.receives(OpMsg("insert", "events")).hangup()
    with pytest.raises(AutoReconnect):
        future.result(timeout=20)
    sink.close()


def test_index_conflict_is_logged_not_fatal(
    mockup: MockupDB, pool: ThreadPoolExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    sink = sink_for(mockup)
    future = pool.submit(sink.write, events(1))
    mockup.receives(OpMsg("createIndexes", "events")).command_err(
        code=85, errmsg="Index with name: wide_timestamp already exists with different options"
    )
    mockup.receives(OpMsg("insert", "events")).ok(n=1)
    future.result(timeout=10)
    assert "could not create indexes" in caplog.text
    sink.close()


def test_url_options_and_masking() -> None:
    sink = open_sink(
        "mongodb://app:pw@db1:27017,db2:27017/logs?collection=wide&retention_days=7&authSource=admin"
    )
    assert isinstance(sink, MongoSink)
    assert (sink.database, sink.collection, sink.retention_days) == ("logs", "wide", 7)
    assert "pw" not in sink.name
    assert sink.name == "mongodb://app:***@db1:27017,db2:27017/logs?authSource=admin#logs.wide"
    assert MongoSink("mongodb://localhost").database == "wide_logging"
    with pytest.raises(ConfigurationError, match="unknown mongodb sink option"):
        MongoSink("mongodb://localhost", shard="x")
    with pytest.raises(ConfigurationError, match="invalid mongodb URL"):
        MongoSink("mongodb://u:p@")


def test_to_document_keeps_odd_timestamps() -> None:
    assert to_document(b'{"event_id":"a","timestamp":"yesterday"}') == {
        "_id": "a",
        "event_id": "a",
        "timestamp": "yesterday",
    }


REAL = os.environ.get("WIDE_LOGGING_TEST_MONGO_URL")


@pytest.mark.skipif(not REAL, reason="set WIDE_LOGGING_TEST_MONGO_URL to run against a real mongod")
def test_real_mongod_is_idempotent_on_event_id() -> None:  # pragma: no cover - needs a server
    database = f"wide_logging_test_{uuid.uuid4().hex[:8]}"
    sink = MongoSink(str(REAL), database=database, timeout_ms=5000)
    try:
        sink.write(events(50))
        sink.write(events(60))  # 50 duplicates and 10 new
        collection = sink.open_collection()
        assert collection.count_documents({}) == 60
        names = {index["name"] for index in collection.list_indexes()}
        assert {f"wide_{path}" for path in INDEXES} <= names
    finally:
        if sink._client is not None:
            sink._client.drop_database(database)
        sink.close()
