"""The library's own fields belong to the library; a batch with one bad event is not lost."""

from __future__ import annotations

import sys
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from conftest import ControlledSink, read_jsonl, wait_for
from wide_logging import WideEventHandler, WideEventMiddleware, annotate
from wide_logging.event import WideEvent
from wide_logging.fields import OWNED_FIELDS, REFUSED
from wide_logging.serialize import Serializer
from wide_logging.testing import MemorySink

RESOURCE = {"service": {"name": "svc"}, "host": {"name": "h"}, "process": {"pid": 1}}
SAMPLING = {"rule": "normal", "rate": 0.02}


def finished(event: WideEvent) -> dict[str, Any]:
    return orjson.loads(Serializer().encode(event.finalize(RESOURCE, SAMPLING)))


def request_event(serializer: Serializer | None = None) -> WideEvent:
    event = WideEvent(
        "http.request", serializer or Serializer(), request_id="req-1", trace_id="t" * 32
    )
    event.method, event.path, event.route, event.status = "POST", "/pay", "/pay", 500
    return event


def test_the_issues_forgeries_are_refused_and_kept_apart() -> None:
    refused_paths: list[str] = []
    event = request_event(Serializer(count_refused=refused_paths.append))
    event.annotate(
        http={"response": {"status_code": 200}, "request": {"body_size": 3}},
        request_id="x\r\ny",
        timestamp="yesterday",
        kind="audit",
        event_id="order-42",
        sampling={"rule": "error", "rate": 1.0},
        service={"name": "evil"},
        duration_ms=0,
        trace_id="forged",
        **{"url.path": "/elsewhere", "http.request.method": "GET"},
    )
    fields = finished(event)
    assert fields["http"] == {
        "request": {"method": "POST", "body_size": 3},  # the app may add beside ours
        "route": "/pay",
        "response": {"status_code": 500},
    }
    assert fields["request_id"] == "req-1"
    assert fields["trace_id"] == "t" * 32
    assert fields["kind"] == "http.request"
    assert fields["timestamp"] != "yesterday"
    assert len(fields["event_id"]) == 32
    assert fields["sampling"] == SAMPLING
    assert fields["service"] == {"name": "svc"}
    assert fields["url"] == {"path": "/pay"}
    assert fields[REFUSED] == {
        "http": {"response": {"status_code": 200}, "request": {"method": "GET"}},
        "request_id": "x\r\ny",
        "timestamp": "yesterday",
        "kind": "audit",
        "event_id": "order-42",
        "sampling": {"rule": "error", "rate": 1.0},
        "service": {"name": "evil"},
        "duration_ms": 0,
        "trace_id": "forged",
        "url": {"path": "/elsewhere"},
    }
    assert sorted(refused_paths) == sorted(
        [
            "http.response.status_code",
            "http.request.method",
            "request_id",
            "timestamp",
            "kind",
            "event_id",
            "sampling",
            "service",
            "duration_ms",
            "trace_id",
            "url.path",
        ]
    )


def test_a_string_for_an_object_the_library_owns_is_refused() -> None:
    event = request_event()
    event.annotate(url="https://shop/pay?coupon=x", http="POST /pay")
    fields = finished(event)
    assert fields["url"] == {"path": "/pay"}
    assert fields["http"]["response"] == {"status_code": 500}
    assert fields[REFUSED] == {"url": "https://shop/pay?coupon=x", "http": "POST /pay"}


def test_the_library_error_wins_and_the_apps_details_stay() -> None:
    event = request_event()
    event.annotate(error={"type": "Mine", "retryable": True})
    try:
        raise TimeoutError("upstream")
    except TimeoutError as exc:
        event.record_exception(exc)
    fields = finished(event)
    assert fields["error"]["type"] == "TimeoutError"
    assert fields["error"]["retryable"] is True
    assert fields[REFUSED] == {"error": {"type": "Mine"}}


def test_fields_the_library_did_not_set_may_be_added() -> None:
    event = WideEvent("http.request", Serializer(), request_id="r")
    event.method, event.path = "GET", "/x"  # no route: nothing matched
    event.annotate(http={"route": "/x/{id}"}, error={"type": "Handled"}, client={"address": "1"})
    fields = finished(event)
    assert fields["http"]["route"] == "/x/{id}"
    assert fields["error"] == {"type": "Handled"}
    assert REFUSED not in fields


_owned_or_not = st.sampled_from(
    [
        *sorted(OWNED_FIELDS),
        "http",
        "url",
        "error",
        "user",
        "http.route",
        "http.response.status_code",
    ]
)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["status_code", "method", "path", "x"]), children, max_size=3
        )
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_owned_or_not, _json, max_size=6))
def test_no_annotation_changes_a_field_the_library_wrote(annotations: dict[str, Any]) -> None:
    plain = request_event()
    annotated = request_event()
    annotated.annotate(**annotations)
    expected, got = finished(plain), finished(annotated)
    for key in ("request_id", "trace_id", "kind", "sampling", "service", "host", "process"):
        assert got[key] == expected[key]
    assert got["http"]["request"]["method"] == "POST"
    assert got["http"]["response"]["status_code"] == 500
    assert got["http"]["route"] == "/pay"
    assert got["url"]["path"] == "/pay"
    assert isinstance(got["duration_ms"], float)


def test_refusals_are_counted_by_field(make_handler: Callable[..., WideEventHandler]) -> None:
    handler = make_handler(sink=MemorySink(), sampling={"normal_rate": 1.0})
    for n in range(3):
        event = handler.new_event(request_id=f"r-{n}")
        event.annotate(event_id="forged", **{"http.response.status_code": 201})
        handler.submit(event)
    assert handler.flush(5)
    assert handler.metrics.get("annotations_refused.event_id") == 3
    assert handler.metrics.get("annotations_refused.http.response.status_code") == 3
    assert len({e["event_id"] for e in handler.pipeline.links[0].sink.events}) == 3  # type: ignore[attr-defined]


class PausedRepr:
    """A value whose ``repr`` (which cleaning calls) waits for a signal: it holds a thread
    inside ``annotate()``, past its "is the event sealed?" check."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.go = threading.Event()

    def __repr__(self) -> str:
        self.entered.set()
        self.go.wait(5)
        return "paused"


def test_a_thread_annotating_after_the_request_never_costs_the_event(
    make_handler: Callable[..., WideEventHandler],
) -> None:
    """The issue lost 2 of 300 events to "dictionary changed size during iteration": a
    thread still annotating while the event was finalized. Here every one of 300 events
    has a thread caught inside annotate() that adds keys the moment finalize() runs."""
    handler = make_handler(sink=MemorySink(), sampling={"normal_rate": 1.0})
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # hand the GIL over as often as possible
    try:
        for n in range(300):
            event = handler.new_event(request_id=f"late-{n}")
            event.annotate(**{f"early_{i}": i for i in range(300)}, nested={"k": 0})
            paused = PausedRepr()
            late = {"blocker": paused, **{f"late_{i}": i for i in range(300)}}
            thread = threading.Thread(target=lambda e=event, f=late: e.annotate(**f))
            thread.start()
            assert paused.entered.wait(5)
            paused.go.set()  # the thread resumes inside annotate() ...
            handler.submit(event)  # ... while this finalizes the event
            thread.join(5)
    finally:
        sys.setswitchinterval(interval)
    assert handler.flush(10)
    written = handler.pipeline.links[0].sink.events  # type: ignore[attr-defined]
    odd = [e for e in written if "finalize_error" in e or "request_id" not in e]
    assert not odd, [(e.get("finalize_error"), sorted(e)[:12]) for e in odd]
    assert sorted(e["request_id"] for e in written) == sorted(f"late-{n}" for n in range(300))
    assert handler.metrics.get("dropped.internal_error") == 0


# -- a request, end to end, into MongoDB's wire protocol -----------------------------------


def test_five_requests_annotating_one_event_id_store_five_documents(
    mongo_store: Any, tmp_path: Path
) -> None:
    handler = WideEventHandler(
        sink=mongo_store.url,
        fallback=f"file:{tmp_path}/spool/events.jsonl",
        sampling={"normal_rate": 1.0},
        flush_interval=0.05,
    )

    async def order(request: Request) -> PlainTextResponse:
        annotate(event_id="order-42")
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/order", order)])
    app.add_middleware(WideEventMiddleware, handler=handler)
    try:
        with TestClient(app) as client:
            for _ in range(5):
                client.get("/order")
        assert handler.flush(10)
        documents = list(mongo_store.collection.find())
        assert len(documents) == 5
        assert {d[REFUSED]["event_id"] for d in documents} == {"order-42"}
        assert handler.metrics.get(f"written.{handler.pipeline.links[0].sink.name}") == 5
    finally:
        handler.close()


# -- one bad event in a batch -------------------------------------------------------------


class PickySink(ControlledSink):
    """Refuses a whole batch when any event in it holds ``poison`` (as a store with a schema
    does): the pipeline must find the event and write the rest."""

    def write(self, batch: Sequence[bytes]) -> None:
        if any(b"poison" in data for data in batch):
            with self._lock:
                self.attempts += 1
            raise ValueError("document failed validation: field 'x' must be a string")
        super().write(batch)


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


def picky_handler(
    make_handler: Callable[..., WideEventHandler], sink: ControlledSink, spool_dir: Path, **kw: Any
) -> WideEventHandler:
    return make_handler(
        sink=sink,
        fallback=f"file:{spool_dir}/events.jsonl",
        sampling={"normal_rate": 1.0},
        batch_size=50,
        **kw,
    )


def dead_letters(spool_dir: Path) -> list[dict[str, Any]]:
    path = spool_dir / "dead-letters.jsonl"
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


def test_one_bad_event_is_dead_lettered_and_the_rest_of_its_batch_written(
    make_handler: Callable[..., WideEventHandler], spool_dir: Path
) -> None:
    sink = PickySink("picky")
    handler = picky_handler(make_handler, sink, spool_dir)
    for n in range(50):
        event = handler.new_event(request_id=f"b-{n}")
        event.annotate(payload="poison" if n == 17 else "fine")
        handler.submit(event)
    assert handler.flush(10)
    assert sorted(e["request_id"] for e in sink.events) == sorted(
        f"b-{n}" for n in range(50) if n != 17
    )
    [letter] = dead_letters(spool_dir)
    assert letter["event"]["request_id"] == "b-17"
    assert letter["sink"] == "picky"
    assert "document failed validation" in letter["reason"]
    assert handler.metrics.get("dead_letters.picky") == 1
    assert handler.metrics.get("events.lost.normal") == 1  # re-weighting knows
    assert handler.metrics.get("written.picky") == 49
    assert handler.pipeline.links[0].breaker.state == "closed"  # the sink is fine
    assert read_jsonl(spool_dir / "events.jsonl") == []


def test_a_poisoned_spool_is_replayed_without_looping(
    make_handler: Callable[..., WideEventHandler], spool_dir: Path
) -> None:
    """The issue's case: a bad event spooled during an outage made replay fail forever, so
    later healthy events stayed in the spool. Now it is dead-lettered, and everything else
    arrives."""
    sink = PickySink("picky")
    sink.failing = True  # an outage: everything goes to the spool, the poison too
    handler = picky_handler(make_handler, sink, spool_dir, max_retries=0, breaker_cooldown=0.1)
    for n in range(120):
        event = handler.new_event(request_id=f"s-{n}")
        event.annotate(payload="poison" if n in (5, 77) else "fine")
        handler.submit(event)
    assert handler.flush(10)
    assert len(read_jsonl(spool_dir / "events.jsonl")) == 120
    sink.failing = False  # recovery: replay starts, and live traffic goes on
    for n in range(120, 1110):
        event = handler.new_event(request_id=f"s-{n}")
        event.annotate(payload="fine")
        handler.submit(event)
    wanted = {f"s-{n}" for n in range(1110)} - {"s-5", "s-77"}
    wait_for(
        lambda: {e["request_id"] for e in sink.events} >= wanted, timeout=30, what="all replayed"
    )
    stored = Counter(e["request_id"] for e in sink.events)
    assert set(stored) == wanted
    assert {letter["event"]["request_id"] for letter in dead_letters(spool_dir)} == {"s-5", "s-77"}
    wait_for(lambda: not read_jsonl(spool_dir / "events.jsonl"), what="the spool emptied")


def test_a_sink_that_is_down_is_not_mistaken_for_bad_events(
    make_handler: Callable[..., WideEventHandler], spool_dir: Path
) -> None:
    """A sink whose failures look like content errors, but that takes nothing at all, must
    not have its events dead-lettered: they are spooled."""

    class Broken(ControlledSink):
        def write(self, batch: Sequence[bytes]) -> None:
            raise ValueError("everything is refused")

    handler = picky_handler(make_handler, Broken("broken"), spool_dir)
    for n in range(20):
        handler.submit(handler.new_event(request_id=f"d-{n}"))
    assert handler.flush(10)
    handler.close()  # no replay renaming segments while they are read
    assert dead_letters(spool_dir) == []
    assert len(read_jsonl(spool_dir / "events.jsonl")) == 20


def test_a_document_mongodb_refuses_is_dead_lettered_and_the_rest_stored(
    mongo_store: Any, tmp_path: Path
) -> None:
    mongo_store.refuse = lambda document: document.get("payload") == "bad"
    handler = WideEventHandler(
        sink=mongo_store.url,
        fallback=f"file:{tmp_path}/spool/events.jsonl",
        sampling={"normal_rate": 1.0},
        flush_interval=0.05,
        batch_size=20,
    )
    try:
        for n in range(20):
            event = handler.new_event(request_id=f"m-{n}")
            event.annotate(payload="bad" if n == 3 else "good")
            handler.submit(event)
        assert handler.flush(10)
        stored = {d["request_id"] for d in mongo_store.collection.find()}
        assert stored == {f"m-{n}" for n in range(20)} - {"m-3"}
        [letter] = dead_letters(tmp_path / "spool")
        assert letter["event"]["request_id"] == "m-3"
        assert "121" in letter["reason"]
    finally:
        handler.close()


class SneakyKey(str):
    """A key that hashes and compares unlike the owned name it spells."""

    def __hash__(self) -> int:
        return 7

    def __eq__(self, other: object) -> bool:
        return False


def test_keys_that_only_pretend_to_be_other_keys_are_still_refused() -> None:
    event = request_event()
    event.annotate(**{SneakyKey("event_id"): "forged", SneakyKey("request_id"): "forged"})
    event.annotate(http={"response.status_code": 299, "request.method": "FAKE"})
    fields = finished(event)
    assert fields["request_id"] == "req-1"
    assert fields["event_id"] != "forged"
    assert fields["http"]["response"] == {"status_code": 500}
    assert fields["http"]["request"] == {"method": "POST"}
    assert "response.status_code" not in fields["http"]
    assert fields[REFUSED]["event_id"] == "forged"


def test_odd_keys_and_paths_cost_little_and_never_raise() -> None:
    event = request_event()
    event.annotate(**{"a." * 200 + "z": 1})  # a very deep dotted key
    depth, node = 0, event.get("a")
    while isinstance(node, dict):
        depth, node = depth + 1, next(iter(node.values()))
    assert depth <= Serializer().max_depth
    event.set(1, "a non-str path")  # type: ignore[arg-type]
    event.annotate(index={tuple(range(10**6)): "a huge tuple as a key"})
    fields = finished(event)
    [key] = fields["index"]
    assert len(key) <= 256
