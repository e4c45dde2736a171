from __future__ import annotations

import datetime
import dis
import enum
import itertools
import json
import logging
import math
import os
import re
import sys
import threading
import time
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wide_logging import _ids as ids_module
from wide_logging import fields as fields_module
from wide_logging._ids import (
    _hex_digits,
    match_request_id,
    new_request_id,
    trace_id_from_traceparent,
    uuid7,
    uuid7_ms,
)
from wide_logging._nesting import deep_merge, nest_dotted
from wide_logging.event import WideEvent
from wide_logging.fields import GUARDED_KEYS, iso_ms
from wide_logging.sampling import TailSampler
from wide_logging.serialize import REDACTED, Serializer

RESOURCE = {"service": {"name": "svc"}, "host": {"name": "h"}, "process": {"pid": 1}}
SAMPLING = {"rule": "normal", "rate": 0.02}


def make_event(**kw: object) -> WideEvent:
    return WideEvent("http.request", Serializer(), request_id="req-1", **kw)  # type: ignore[arg-type]


def record(
    level: int, msg: str, *args: object, exc: BaseException | None = None
) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("app.db", level, __file__, 1, msg, args, exc_info)


def test_finalize_builds_the_documented_fields() -> None:
    event = make_event(trace_id="0af7651916cd43dd8448eb211c80319c")
    event.method, event.path, event.route, event.status = "GET", "/u/7", "/u/{id}", 200
    event.client_address, event.user_agent = "10.0.0.1", "curl/8"
    event.annotate(user={"id": 7})
    fields = event.finalize(RESOURCE, SAMPLING)
    event_id = uuid.UUID(fields["event_id"])
    assert (event_id.version, len(fields["event_id"])) == (7, 32)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", fields["timestamp"])
    assert fields["kind"] == "http.request"
    assert fields["service"] == {"name": "svc"}
    assert fields["request_id"] == "req-1"
    assert fields["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert fields["http"] == {
        "request": {"method": "GET"},
        "route": "/u/{id}",
        "response": {"status_code": 200},
    }
    assert fields["url"] == {"path": "/u/7"}
    assert fields["client"] == {"address": "10.0.0.1"}
    assert fields["user_agent"] == {"original": "curl/8"}
    assert fields["duration_ms"] >= 0
    assert fields["sampling"] == SAMPLING
    assert fields["user"] == {"id": 7}
    assert "error" not in fields
    assert "logs" not in fields


def _encoded(event: WideEvent, serializer: Serializer) -> str:
    """The event as written, keys sorted: types count (``true`` is not ``1``)."""
    fields = orjson.loads(serializer.encode(event.finalize(RESOURCE, SAMPLING)))
    for key in ("event_id", "timestamp", "duration_ms"):  # this event's own
        del fields[key]
    return json.dumps(fields, sort_keys=True)


def _assert_shared_http_matches(
    serializer: Serializer,
    method: str,
    route: str | None,
    status: Any,
    annotations: dict[str, Any] | None = None,
) -> None:
    """A finished request event, written with the shared ``http`` objects and with a fresh
    one for every event (the cache off): the same bytes."""
    written = []
    for cache_size in (fields_module._HTTP_OBJECTS_MAX, 0):
        event = make_event()
        event.method, event.path, event.route, event.status = method, "/u/7", route, status
        event.annotate(**(annotations or {}))
        event.end()
        saved = fields_module._HTTP_OBJECTS_MAX, fields_module._http_objects
        if cache_size == 0:
            fields_module._HTTP_OBJECTS_MAX, fields_module._http_objects = 0, {}
        try:
            written.append(_encoded(event, serializer))
        finally:
            fields_module._HTTP_OBJECTS_MAX, fields_module._http_objects = saved
    assert written[0] == written[1]


@pytest.mark.parametrize(
    ("method", "route", "status", "annotations"),
    [
        ("GET", "/u/{id}", 200, {}),
        ("POST", None, 201, {"user": {"id": 7}}),
        ("GET", "/u/{id}", None, {}),
        ("DELETE", None, None, {"http": {"request": {"body_bytes": 12}}}),
        ("GET", "/u/{id}", 500, {"http.route_group": "users"}),
        ("PROPFIND" * 10, "/dav", 207, {}),  # too long to cache
        ("GET", "/\ud800x", 200, {}),  # a lone surrogate: not encodable as it is
        ("GET", "/u/{id}", [200], {}),  # a buggy app's unhashable status
    ],
)
def test_shared_http_objects_write_what_a_fresh_one_gives(
    method: str, route: str | None, status: Any, annotations: dict[str, Any]
) -> None:
    serializer = Serializer()
    for _ in range(2):  # the second time from the cache
        _assert_shared_http_matches(serializer, method, route, status, annotations)
    assert len(fields_module._http_objects) <= fields_module._HTTP_OBJECTS_MAX
    assert all(
        len(key[0]) <= fields_module._MAX_CACHED_METHOD for key in fields_module._http_objects
    )


def test_an_events_own_http_fields_never_reach_the_shared_object() -> None:
    plain = make_event()
    plain.method, plain.route, plain.status = "PATCH", "/shared/{id}", 204
    plain.finalize(RESOURCE, SAMPLING)  # caches the object for this combination
    annotated = make_event()
    annotated.method, annotated.route, annotated.status = "PATCH", "/shared/{id}", 204
    annotated.annotate(http={"request": {"body_bytes": 12}})
    built = annotated.finalize(RESOURCE, SAMPLING)
    assert built["http"]["request"] == {"method": "PATCH", "body_bytes": 12}
    assert fields_module.shared_http_object("PATCH", "/shared/{id}", 204) == {
        "request": {"method": "PATCH"},
        "route": "/shared/{id}",
        "response": {"status_code": 204},
    }


@settings(max_examples=300, deadline=None)
@given(
    method=st.one_of(st.sampled_from(["GET", "POST"]), st.text(max_size=40)),
    route=st.one_of(st.sampled_from([None, "/r"]), st.text(max_size=20)),
    status=st.one_of(
        st.none(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.booleans(),
        st.floats(allow_nan=False),
    ),
    annotations=st.dictionaries(
        st.sampled_from(["http", "http.extra", "user", "service"]),
        st.one_of(
            st.integers(), st.text(max_size=5), st.dictionaries(st.text(max_size=5), st.integers())
        ),
        max_size=2,
    ),
)
def test_encoder_path_equals_the_plain_dict_for_any_request(
    method: str, route: str | None, status: Any, annotations: dict[str, Any]
) -> None:
    _assert_shared_http_matches(Serializer(), method, route, status, annotations)


def test_equal_statuses_of_other_types_do_not_share_a_fragment() -> None:
    serializer = Serializer()
    for status in (1, True, 200, 200.0):  # True == 1 and 200.0 == 200 as dict keys
        _assert_shared_http_matches(serializer, "GET", "/eq", status)


def test_encoder_path_survives_the_strict_and_shrinking_fallbacks() -> None:
    serializer = Serializer(max_event_bytes=2048)
    event = make_event()
    event.method, event.path, event.route, event.status = "GET", "/x\ud800", "/x", 200
    event.annotate(blob="y" * 5000)  # over max_event_bytes: shrunk
    fields = orjson.loads(serializer.encode(event.finalize(RESOURCE, SAMPLING)))
    assert fields["http"] == {
        "request": {"method": "GET"},
        "route": "/x",
        "response": {"status_code": 200},
    }
    assert fields["url"]["path"].startswith("/x")
    assert "truncated" in fields


def test_the_shared_http_objects_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fields_module, "_http_objects", {})
    monkeypatch.setattr(fields_module, "_HTTP_OBJECTS_MAX", 3)
    objects = [fields_module.shared_http_object(f"M{n}", "/r", 200) for n in range(10)]
    assert len(fields_module._http_objects) == 3
    assert objects == [
        {"request": {"method": f"M{n}"}, "route": "/r", "response": {"status_code": 200}}
        for n in range(10)
    ]


def test_annotate_merges_nested_and_dotted_keys() -> None:
    event = make_event()
    event.annotate(user={"id": 1}, cart={"items": 2})
    event.annotate(**{"user.plan": "pro", "cart.items": 3})
    event.set("payment.provider", "acme")
    assert event.get("user") == {"id": 1, "plan": "pro"}
    assert event.get("cart.items") == 3
    assert event.get("payment.provider") == "acme"
    assert event.get("missing.path", "d") == "d"


def test_annotate_can_extend_request_fields() -> None:
    event = make_event()
    event.method = "POST"
    event.annotate(http={"request": {"body_size": 12}})
    fields = event.finalize(RESOURCE, SAMPLING)
    assert fields["http"]["request"] == {"method": "POST", "body_size": 12}


def test_annotations_are_copies_and_redacted() -> None:
    event = make_event()
    payload = {"name": "a", "password": "hunter2"}
    event.annotate(login=payload)
    payload["name"] = "changed later"
    assert event.get("login") == {"name": "a", "password": REDACTED}


class _Level(enum.IntEnum):
    HIGH = 3


class _Text(str):
    pass


_ANNOTATION_KEYS = st.one_of(
    st.sampled_from(
        [
            *("user", "item", "n", "name", "value", "password", "api_key", "x-api-key"),
            *("error", "http", "service", "url", "user.id", "http.extra", "force_keep"),
        ]
    ),
    st.text(max_size=8),
)
_ANNOTATION_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=40),  # beside max_string=16: some are clipped
    st.just(_Level.HIGH),
    st.builds(_Text, st.text(max_size=5)),
    st.binary(max_size=5),
)
_ANNOTATION_VALUES = st.recursive(
    _ANNOTATION_LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(_ANNOTATION_KEYS, children, max_size=4),
    ),
    max_leaves=8,
)


@given(calls=st.lists(st.dictionaries(_ANNOTATION_KEYS, _ANNOTATION_VALUES, max_size=4)))
@settings(max_examples=400, deadline=None)
def test_annotate_stores_what_copying_each_value_and_merging_gives(
    calls: list[dict[str, Any]],
) -> None:
    """annotate() inlines copy()'s first steps for the usual values (a number, a short
    string, a flat dict): whatever the app passes, the event holds what the general rule
    gives — each value through ``copy()``, redacted under a secret's name, dicts merged,
    the library's fields refused."""
    serializer = Serializer(max_string=16)
    event, expected = WideEvent("t", serializer), WideEvent("t", serializer)
    for fields in calls:
        event.annotate(**fields)
        # the rule as annotate() had it before its shortcuts
        rest = dict(fields)
        if "force_keep" in rest:
            expected.force_keep = rest.pop("force_keep") is True
        for key, value in rest.items():
            if key in GUARDED_KEYS or key == "error" or "." in key:
                expected._annotate_guarded(key, value)
                continue
            copied = REDACTED if serializer.is_secret(key) else serializer.copy(value)
            existing = expected._fields.get(key)
            if type(copied) is dict and type(existing) is dict:
                deep_merge(existing, copied)
            else:
                expected._fields[key] = copied
    assert event.force_keep == expected.force_keep
    assert _encoded(event, serializer) == _encoded(expected, serializer)


def test_force_keep_is_a_flag_not_a_field() -> None:
    event = make_event()
    event.annotate(force_keep=True)
    assert event.force_keep
    assert "force_keep" not in event.finalize(RESOURCE, SAMPLING)


def test_sealed_event_ignores_late_changes() -> None:
    event = make_event()
    event.finalize(RESOURCE, SAMPLING)
    event.annotate(late=True)
    event.add_timing("db_ms", 1.0)
    event.add_log(record(logging.ERROR, "late"))
    assert event.sealed
    assert event.get("late") is None
    assert event.error is None


def test_timings_of_the_same_name_add_up() -> None:
    event = make_event()
    event.add_timing("db_ms", 1.5)
    event.add_timing("db_ms", 2.25)
    assert event.finalize(RESOURCE, SAMPLING)["timings"] == {"db_ms": 3.75}


def test_logs_are_capped_with_an_overflow_counter() -> None:
    event = WideEvent("http.request", Serializer(max_logs=3), request_id="r")
    for n in range(10):
        event.add_log(record(logging.INFO, "line %d", n))
    fields = event.finalize(RESOURCE, SAMPLING)
    assert [entry["message"] for entry in fields["logs"]] == ["line 0", "line 1", "line 2"]
    assert fields["logs_dropped"] == 7
    assert fields["logs"][0]["logger"] == "app.db"
    assert fields["logs"][0]["level"] == "INFO"
    assert fields["logs"][0]["offset_ms"] >= 0


def test_error_record_marks_the_event_and_first_error_wins() -> None:
    event = make_event()
    event.add_log(record(logging.WARNING, "not an error"))
    assert not event.has_error
    event.add_log(record(logging.ERROR, "payment failed for %s", "order-9"))
    assert event.error == {
        "type": "LoggedError",
        "message": "payment failed for order-9",
        "logger": "app.db",
    }
    event.add_log(record(logging.ERROR, "a second logged error"))
    assert event.error["message"] == "payment failed for order-9"  # the first wins
    # an exception replaces an error that was only logged (a handler logs, then it escapes)
    event.record_exception(ValueError("the cause"))
    assert event.error["type"] == "ValueError"
    event.record_exception(KeyError("later"))
    assert event.error["type"] == "ValueError"  # between exceptions the first wins


def test_error_record_with_exception_records_type_and_stack() -> None:
    try:
        raise KeyError("sku-1")
    except KeyError as exc:
        caught = exc
    event = make_event()
    event.add_log(record(logging.ERROR, "lookup failed", exc=caught))
    assert event.error is not None
    assert event.error["type"] == "KeyError"
    assert "raise KeyError" in event.error["stack"]


def test_record_with_bad_format_args_never_raises() -> None:
    event = make_event()
    event.add_log(record(logging.INFO, "%d items", "not-a-number"))
    fields = event.finalize(RESOURCE, SAMPLING)
    assert fields["logs"][0]["message"].startswith("%d items")


def test_exception_code_attribute_becomes_error_code() -> None:
    class PaymentError(Exception):
        code = "card_declined"

    event = make_event()
    event.record_exception(PaymentError("declined"))
    assert event.error is not None
    assert event.error["code"] == "card_declined"
    assert event.error["type"].endswith("PaymentError")


def test_duration_stops_at_end() -> None:
    event = make_event()
    time.sleep(0.01)
    event.end()
    first = event.duration_ms
    time.sleep(0.01)
    event.end()
    assert event.duration_ms == first >= 10


def test_uuid7_is_time_sortable_and_unique() -> None:
    ids = [uuid7(1_700_000_000.0 + n / 1000) for n in range(1000)]
    assert ids == sorted(ids)
    assert len({uuid7(1.0) for _ in range(10_000)}) == 10_000


def test_event_ids_and_timestamps_are_exact_within_and_across_milliseconds() -> None:
    # both are cached per millisecond (and per second): walk over both boundaries
    start = 1_764_236_399_998  # 2025-11-27T09:39:59.998Z
    for unix_ms in (start, start, start + 1, start + 2, start + 2, start + 1001, 0, 999):
        expected = datetime.datetime.fromtimestamp(unix_ms / 1000, datetime.timezone.utc)
        assert iso_ms(unix_ms) == expected.strftime("%Y-%m-%dT%H:%M:%S.") + (
            f"{unix_ms % 1000:03d}Z"
        )
        event_id = uuid7_ms(unix_ms)
        parsed = uuid.UUID(event_id)
        assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
        assert int(event_id[:12], 16) == unix_ms
    same_ms = [uuid7_ms(start) for _ in range(1000)]
    assert same_ms == sorted(same_ms)
    assert len(set(same_ms)) == 1000
    # the counter's last two digits are looked up, the six above them cached: it still
    # counts by one across each 256 boundary
    counters = [int(event_id[24:], 16) for event_id in same_ms]
    assert [b - a for a, b in itertools.pairwise(counters)] == [1] * 999
    assert _hex_digits(0, 8) == "00000000"
    assert _hex_digits(0xABC, 4) == "0abc"
    assert _hex_digits(2**32 + 5, 8) == "00000005"  # wraps, never grows


def test_event_id_counter_wraps_at_32_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ids_module, "_sequence", itertools.count(2**32 - 2))
    suffixes = [uuid7_ms(1_764_236_399_998)[24:] for _ in range(3)]
    assert suffixes == ["fffffffe", "ffffffff", "00000000"]


def test_request_ids_are_unique_and_differ_in_a_forked_child() -> None:
    ids = [new_request_id() for _ in range(10_000)]
    assert len(set(ids)) == 10_000
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a fresh per-process prefix
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert re.fullmatch(r"[0-9a-f]{32}", child)
    assert child[:20] != ids[0][:20]
    assert child not in ids


def test_request_ids_and_traceparent_parsing() -> None:
    assert re.fullmatch(r"[0-9a-f]{32}", new_request_id())
    assert match_request_id("abc-123_x.y:z")
    assert match_request_id("x" * 128)
    for bad in ("", "a b", "x" * 129, "evil\nheader", 'quote"'):
        assert match_request_id(bad) is None
    good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert trace_id_from_traceparent(good) == "0af7651916cd43dd8448eb211c80319c"
    assert trace_id_from_traceparent("00-" + "0" * 32 + "-b7ad6b7169203331-01") is None
    assert trace_id_from_traceparent("garbage") is None
    assert (
        trace_id_from_traceparent("ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01") is None
    )


def test_nest_dotted() -> None:
    assert nest_dotted({"a.b": 1, "a.c": 2, "d": 3}) == {"a": {"b": 1, "c": 2}, "d": 3}


def test_path_and_logger_names_are_capped_too() -> None:
    event = make_event()
    event.method, event.path = "GET", "/" + "p" * 5000
    event.add_log(logging.LogRecord("l" * 5000, logging.INFO, __file__, 1, "m", None, None))
    fields = event.finalize(RESOURCE, SAMPLING)
    assert len(fields["url"]["path"]) < 1100
    assert len(fields["logs"][0]["logger"]) < 300


def test_a_log_record_whose_message_cannot_be_built_is_kept_as_text() -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

        __repr__ = __str__

    event = make_event()
    event.add_log(record(logging.ERROR, Unprintable(), 1))  # type: ignore[arg-type]
    fields = event.finalize(RESOURCE, SAMPLING)
    assert fields["logs"][0]["message"].startswith("<unrepresentable Unprintable>")
    assert fields["error"]["type"] == "LoggedError"


@pytest.mark.parametrize("created", [math.nan, math.inf, -math.inf, 1e300, -5.0])
def test_a_log_record_with_an_odd_creation_time_is_still_attached(created: float) -> None:
    """A filter of the app's may set ``record.created`` to anything a float holds: the
    record is attached all the same, its offset null when it is not a number."""
    event = make_event()
    odd = record(logging.INFO, "dated oddly")
    odd.created = created
    event.add_log(odd)
    logs = orjson.loads(Serializer().encode(event.finalize(RESOURCE, SAMPLING)))["logs"]
    assert [entry["message"] for entry in logs] == ["dated oddly"]
    offset = logs[0]["offset_ms"]
    assert offset is None if not math.isfinite(created) else isinstance(offset, float)


def test_short_paths_with_secrets_are_scrubbed_too() -> None:
    event = make_event()
    event.method, event.path = "GET", "/a;sid=PathPW3z"
    assert "PathPW3z" not in json.dumps(event.finalize(RESOURCE, SAMPLING))


def test_the_start_is_dated_when_the_event_opened_not_when_it_is_read() -> None:
    """``start_time``, the timestamp and the event id say when the event opened, however
    long before the kept event is built."""
    before = time.time()
    event = make_event()
    opened = time.time()
    deadline = time.monotonic() + 5
    while time.time() - opened < 0.05 and time.monotonic() < deadline:
        pass  # the request takes 50 ms before anything reads the start
    start = event.start_time
    assert before - 0.001 <= start <= opened + 0.001
    assert event.start_time == start  # stable once read
    fields = event.finalize(RESOURCE, SAMPLING)
    unix_ms = int(start * 1000)
    assert fields["timestamp"] == iso_ms(unix_ms)
    assert fields["duration_ms"] >= 49
    # An explicit start (a log record's own time) is kept as given.
    given_start = WideEvent("log", Serializer(), start_time=1234.5)
    assert given_start.start_time == 1234.5


_ERROR_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-1, 1),
    st.text(max_size=3),
    st.dictionaries(st.sampled_from(["type", "message"]), st.text(max_size=3), max_size=2),
)
_ERROR_WRITES = st.lists(
    st.one_of(
        st.tuples(st.just("annotate"), _ERROR_VALUES),
        st.tuples(st.just("dotted"), _ERROR_VALUES),
        st.tuples(st.just("set"), _ERROR_VALUES),
        st.tuples(st.just("log_error"), st.none()),
        st.tuples(st.just("exception"), st.none()),
    ),
    max_size=6,
)


@given(writes=_ERROR_WRITES)
@settings(max_examples=300, deadline=None)
def test_has_error_always_says_what_the_event_holds(writes: list[tuple[str, Any]]) -> None:
    """After any sequence of writes, has_error (and so the sampler) says whether the
    stored event carries an error — the library's, or one the app annotated."""
    event = make_event()
    for how, value in writes:
        if how == "annotate":
            event.annotate(error=value)
        elif how == "dotted":
            event.annotate(**{"error.type": value})
        elif how == "set":
            event.set("error", value)
        elif how == "log_error":
            event.add_log(record(logging.ERROR, "failed"))
        else:
            event.record_exception(ValueError("boom"))
    stored = orjson.loads(Serializer().encode(event.finalize(RESOURCE, SAMPLING)))
    assert event.has_error is bool(stored.get("error"))


def _error_while_paused_at(offset: int) -> WideEvent:
    """Thread A annotates ``error=None``; it is paused just before the instruction at
    ``offset`` of ``_annotate_guarded`` while thread B logs an ERROR on the same event."""
    event = WideEvent("http.request", Serializer(), request_id="r")
    paused, resume = threading.Event(), threading.Event()
    target = WideEvent._annotate_guarded.__code__

    def tracer(frame: Any, what: str, arg: Any) -> Any:
        if frame.f_code is not target:
            return None
        frame.f_trace_opcodes = True

        def on_opcode(frame: Any, what: str, arg: Any) -> Any:
            if what == "opcode" and frame.f_lasti == offset and not paused.is_set():
                paused.set()
                resume.wait(5)
            return on_opcode

        return on_opcode

    def annotate_none() -> None:
        sys.settrace(tracer)
        try:
            event.annotate(error=None)
        finally:
            sys.settrace(None)
            paused.set()  # the offset was not reached: B need not wait

    worker = threading.Thread(target=annotate_none)
    worker.start()
    assert paused.wait(5)
    event.add_log(record(logging.ERROR, "payment provider failed"))
    resume.set()
    worker.join(5)
    assert not worker.is_alive()
    return event


def test_an_error_recorded_while_another_thread_annotates_error_none_is_kept() -> None:
    """Thread B records the request's error while thread A, annotating ``error=None`` (a
    result object's field), is paused before each instruction of the annotation in turn:
    every interleaving the interpreter may choose. The error must decide, whatever A
    writes after."""
    sampler = TailSampler(normal_rate=0.0)
    offsets = [ins.offset for ins in dis.get_instructions(WideEvent._annotate_guarded)]
    assert len(offsets) > 50
    missed = [
        offset
        for offset in offsets
        if (event := _error_while_paused_at(offset)).decide(sampler).rule != "error"
        or not event.has_error
    ]
    assert missed == []


class _FalsyDate(datetime.date):
    def __bool__(self) -> bool:
        return False


def test_an_annotated_error_counts_by_what_is_stored_not_by_its_own_bool() -> None:
    """An app's object whose ``__bool__`` says False is stored as its text: an error."""
    event = make_event()
    event.annotate(error=_FalsyDate(2026, 1, 2))
    stored = orjson.loads(Serializer().encode(event.finalize(RESOURCE, SAMPLING)))
    assert stored["error"]
    assert event.has_error
    assert event.decide(TailSampler(normal_rate=0.0)).rule == "error"
