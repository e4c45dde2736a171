"""The rule language means the same on a MongoDB server as in Python: the two evaluators
(``Condition.holds`` and ``incidents.mongo.condition_query``) agree on every event, and a
MongoDB source finds the incidents a file source finds.

The referee is mongomock (MongoDB's query language in Python) and, when
WIDE_LOGGING_TEST_MONGO_URL is set, a real mongod. mongomock departs from MongoDB in two
places, so its events and paths avoid them: it takes ``true`` for ``1`` in ``$eq``/``$in``,
and a ``null`` query on a path through a scalar (``a.b`` where ``a`` is 5 or null) does not
match there.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mongomock
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wide_logging.fields import iso_timestamp
from wide_logging.incidents import Condition, Rule
from wide_logging.incidents.mongo import condition_query, incidents_in
from wide_logging.incidents.sources import incidents_from
from wide_logging.sinks.mongo import MongoSink, to_document

REAL = os.environ.get("WIDE_LOGGING_TEST_MONGO_URL")
KEYS = ("a", "b", "c")
PATHS = ("a", "b", "a.b", "a.c", "b.a")
DEEP_PATHS = (*PATHS, "c.a.b")  # through a value that may be a scalar: not for mongomock
OPERATORS = ("exists", "missing", "==", "!=", ">", ">=", "<", "<=", "in", "matches")

_text = st.text(alphabet="ab1 .", max_size=4)
_number = st.one_of(
    st.integers(min_value=-3, max_value=3),
    st.floats(min_value=-3, max_value=3, allow_nan=False).map(lambda x: round(x, 1)),
)


def _scalars(with_bools: bool) -> st.SearchStrategy[Any]:
    choices = [st.none(), _number, _text]
    return st.one_of(*choices, st.booleans()) if with_bools else st.one_of(*choices)


def _documents(with_bools: bool, scalar_parents: bool) -> st.SearchStrategy[dict[str, Any]]:
    leaf = _scalars(with_bools)
    inner = st.dictionaries(st.sampled_from(KEYS), leaf, max_size=3)
    value = st.one_of(leaf, inner) if scalar_parents else inner
    nested = st.dictionaries(st.sampled_from(KEYS), st.one_of(leaf, inner), max_size=3)
    top = st.one_of(value, nested)
    return st.dictionaries(st.sampled_from(KEYS), top, max_size=3)


def _conditions(with_bools: bool, paths: tuple[str, ...]) -> st.SearchStrategy[Condition]:
    def build(path: str, op: str, value: Any, options: list[Any], pattern: str) -> Condition:
        if op in ("exists", "missing"):
            return Condition.parse(f"{path} {op}")
        if op == "matches":
            return Condition.parse(f"{path} matches {pattern}")
        if op == "in":
            return Condition.parse(f"{path} in {json.dumps(options)}")
        if value is None and op in (">", ">=", "<", "<="):
            value = 0
        return Condition.parse(f"{path} {op} {json.dumps(value)}")

    return st.builds(
        build,
        st.sampled_from(paths),
        st.sampled_from(OPERATORS),
        _scalars(with_bools),
        st.lists(_scalars(with_bools), min_size=1, max_size=3),
        st.sampled_from(["^a", "b$", "1", "a.b", "^$", "a*1"]),
    )


def _agree(collection: Any, documents: list[dict[str, Any]], condition: Condition) -> None:
    expected = {n for n, document in enumerate(documents) if condition.holds(document)}
    found = {doc["_id"] for doc in collection.find(condition_query(condition), {"_id": 1})}
    assert found == expected, (condition, [documents[n] for n in found ^ expected])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(_documents(with_bools=False, scalar_parents=False), min_size=1, max_size=8),
    st.lists(_conditions(with_bools=False, paths=PATHS), min_size=1, max_size=4),
)
def test_python_and_mongodb_evaluators_agree(
    documents: list[dict[str, Any]], conditions: list[Condition]
) -> None:
    collection = mongomock.MongoClient().db.events
    collection.insert_many([{"_id": n, **document} for n, document in enumerate(documents)])
    for condition in conditions:
        _agree(collection, documents, condition)


@pytest.mark.skipif(not REAL, reason="set WIDE_LOGGING_TEST_MONGO_URL to run against a real mongod")
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(_documents(with_bools=True, scalar_parents=True), min_size=1, max_size=8),
    st.lists(_conditions(with_bools=True, paths=DEEP_PATHS), min_size=1, max_size=4),
)
def test_python_and_a_real_mongod_agree(
    documents: list[dict[str, Any]], conditions: list[Condition]
) -> None:  # pragma: no cover - needs a server
    sink = MongoSink(str(REAL), database=f"wide_logging_test_{uuid.uuid4().hex[:8]}")
    collection = sink.open_collection()
    try:
        collection.insert_many([{"_id": n, **document} for n, document in enumerate(documents)])
        for condition in conditions:
            _agree(collection, documents, condition)
    finally:
        collection.database.client.drop_database(collection.database.name)
        sink.close()


def test_bools_are_not_numbers_and_absent_fields_are_not_null() -> None:
    """The cases where Python's own rules differ from MongoDB's, decided MongoDB's way."""
    flag, one, null, nested = {"a": True}, {"a": 1}, {"a": None}, {"a": {"b": 1}}
    assert Condition.parse("a == 1").holds(one)
    assert not Condition.parse("a == 1").holds(flag)
    assert not Condition.parse("a in [1, 2]").holds(flag)
    assert not Condition.parse("a > 0").holds(flag)
    assert Condition.parse("a == null").holds(null)
    assert not Condition.parse("a == null").holds({})
    assert not Condition.parse("a != 1").holds({})  # absent: only 'missing' holds
    assert Condition.parse("a != 1").holds(nested)
    assert not Condition.parse("a matches 1").holds(one)  # strings only
    for bad in ("a > null", "a in 5", "a == [1]", 'a == {"b": 1}'):
        with pytest.raises(Exception, match="condition"):
            Condition.parse(bad)


# -- a custom rule from a file and from MongoDB ----------------------------------------


def _events() -> Iterator[dict[str, Any]]:
    """Checkout failures for pro users (a burst), free users (too few), other paths."""
    t0 = 1_795_000_000.0
    for n in range(40):
        plan = "pro" if n % 4 else "free"
        path = "/checkout" if n % 5 else "/home"
        yield {
            "event_id": uuid.uuid4().hex,
            "timestamp": iso_timestamp(t0 + n),
            "kind": "http.request",
            "request_id": f"req-{n}",
            "duration_ms": 10.0 + n,
            "service": {"name": "shop"},
            "url": {"path": path},
            "user": {"plan": plan, "id": n},
            "http": {"route": path, "response": {"status_code": 402}},
            "error": {"type": "PaymentDeclined", "message": f"card declined for order {n}"},
            "sampling": {"rule": "error", "rate": 1.0},
        }


CUSTOM = Rule.from_dict({
    "name": "checkout_by_plan",
    "match": ['url.path == "/checkout"', "error exists"],
    "group_by": ["user.plan", "fingerprint"],
    "window": 60, "threshold": 10, "quiet": 300,
    "title": "checkout failing for {user.plan} users",
})  # fmt: skip


def test_a_custom_rule_finds_the_same_incidents_in_a_file_and_in_mongodb(tmp_path: Path) -> None:
    events = list(_events())
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(event) + b"\n" for event in events))
    collection = mongomock.MongoClient().db.events
    collection.insert_many([to_document(orjson.dumps(event)) for event in events])

    from_file = incidents_from(f"file:{path}", [CUSTOM], since=None)
    from_mongo = incidents_in(collection, [CUSTOM], since=None)

    assert [i.title for i in from_file] == ["checkout failing for pro users"]
    # what is different, the rate before and recurrence too: counted by the server
    assert [i.to_dict() for i in from_mongo] == [i.to_dict() for i in from_file]
    assert from_mongo[0].differences
    assert from_file[0].count == 24  # the pro users' checkout failures, every one
