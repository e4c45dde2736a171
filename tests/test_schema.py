"""Every kind of event starts with the same outer fields, built in one place
(``fields.outer_fields``): docs/events.md says they are always present."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from wide_logging import WideEventHandler
from wide_logging.fields import iso_ms
from wide_logging.sinks.memory import MemorySink

OUTER = ("event_id", "timestamp", "kind", "service", "host", "process")


def _check_outer(event: dict[str, Any], kind: str) -> None:
    assert list(event)[: len(OUTER)] == list(OUTER)  # first, in this order
    assert event["kind"] == kind
    assert event["service"] == {"name": "shop", "version": "1.4.2"}
    assert event["process"] == {"pid": os.getpid()}
    assert isinstance(event["host"]["name"], str)
    event_id = uuid.UUID(event["event_id"])
    assert event_id.version == 7
    # the id and the timestamp come from one clock reading
    assert event["timestamp"] == iso_ms(int.from_bytes(event_id.bytes[:6], "big"))


def test_every_kind_of_event_a_handler_writes_has_the_outer_fields(
    make_handler: Callable[..., WideEventHandler],
) -> None:
    sink = MemorySink()
    handler = make_handler(
        sink=sink, service={"name": "shop", "version": "1.4.2"}, sampling={"normal_rate": 1.0}
    )
    handler.submit(handler.new_event(request_id="req-1"))
    logger = logging.getLogger("test_schema.outside")
    logger.addHandler(handler)
    try:
        logger.warning("outside any request")
    finally:
        logger.removeHandler(handler)
    metrics_event = orjson.loads(handler._metrics_event())
    assert handler.flush(5)
    by_kind = {event["kind"]: event for event in sink.events}
    _check_outer(by_kind["http.request"], "http.request")
    _check_outer(by_kind["log"], "log")
    _check_outer(metrics_event, "metrics")
    assert metrics_event["sampling"] == {"rule": "metrics", "rate": 1.0}
