"""The pieces on the request path, one at a time."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from wide_logging import TailSampler, annotate, metrics
from wide_logging.context import activate, deactivate
from wide_logging.metrics import Metrics
from wide_logging.serialize import Serializer

SAMPLER = TailSampler(normal_rate=0.02, slow_ms=1000, critical_routes=["/checkout*"])


def test_sampler_decide(benchmark: Any) -> None:
    benchmark.group = "hot paths"
    benchmark(
        SAMPLER.decide,
        "0af7651916cd43dd8448eb211c80319c",
        status=200,
        duration_ms=3.2,
        route="/items/{id}",
    )


def test_sampler_decide_keyed(benchmark: Any) -> None:
    """The same with a deployment sampling key (BLAKE2b) instead of the process's hash()."""
    benchmark.group = "hot paths"
    try:
        sampler = TailSampler(normal_rate=0.02, key="bench-deployment-key-0123")
    except TypeError:  # an older package without sampling keys (benchmarks/before_after.py)
        pytest.skip("no sampling keys in this package")
    benchmark(sampler.decide, "0af7651916cd43dd8448eb211c80319c", status=200, duration_ms=3.2)


def test_new_event(benchmark: Any, handler_factory: Any) -> None:
    benchmark.group = "hot paths"
    handler = handler_factory()
    benchmark(handler.new_event, request_id="req-123")


def test_submit_dropped(benchmark: Any, handler_factory: Any) -> None:
    benchmark.group = "hot paths"
    handler = handler_factory(sampling={"normal_rate": 0.0})

    def open_and_submit() -> None:
        handler.submit(handler.new_event(request_id="req-123"))

    benchmark(open_and_submit)


def test_annotate(benchmark: Any, handler_factory: Any) -> None:
    benchmark.group = "hot paths"
    event = handler_factory().new_event()
    benchmark(event.annotate, user={"id": 42, "plan": "pro"}, cart_items=3)


def test_annotate_current(benchmark: Any, handler_factory: Any) -> None:
    """What apps call: the module's ``annotate()``, onto the current event."""
    benchmark.group = "hot paths"
    event = handler_factory().new_event()
    token = activate(event)
    try:
        benchmark(annotate, item={"id": "42"})
    finally:
        deactivate(token)


def test_annotate_text(benchmark: Any, handler_factory: Any) -> None:
    """Strings: annotate() copies them; the scan for secrets inside text waits until the
    event is kept (test_scrub_kept_text)."""
    benchmark.group = "hot paths"
    event = handler_factory().new_event()
    benchmark(
        event.annotate,
        note="checkout completed for user 42 in 3 steps",
        referrer="https://shop.example.com/cart/view",
    )


@contextlib.contextmanager
def _logging_into_an_event(handler_factory: Any, name: str) -> Iterator[logging.Logger]:
    """A logger with a fresh handler, and an event current that takes every record."""
    handler = handler_factory()
    # no cap: every record attached (the cap is the serializer's since the redesign)
    if hasattr(type(handler.serializer), "max_logs"):
        handler.serializer.max_logs = 10**9
    else:  # an older package (benchmarks/before_after.py)
        handler.max_logs = 10**9
    token = activate(handler.new_event())
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield logger
    finally:
        deactivate(token)
        logger.removeHandler(handler)


def test_handler_attach_record(benchmark: Any, handler_factory: Any) -> None:
    benchmark.group = "hot paths"
    with _logging_into_an_event(handler_factory, "bench.attach") as logger:
        benchmark(logger.info, "cart has %d items", 3)


def test_handler_attach_record_with_extra(benchmark: Any, handler_factory: Any) -> None:
    benchmark.group = "hot paths"
    with _logging_into_an_event(handler_factory, "bench.attach_extra") as logger:
        benchmark(logger.info, "priced", extra={"price_cents": 1299})


def test_encode_kept_event(benchmark: Any, handler_factory: Any) -> None:
    benchmark.group = "hot paths"
    handler = handler_factory()
    event = handler.new_event()
    event.method, event.path, event.route, event.status = "GET", "/items/42", "/items/{id}", 200
    event.annotate(user={"id": 42, "plan": "pro"}, cart={"items": 3, "total": 99.5})
    fields = event.finalize(handler.resource(), {"rule": "normal", "rate": 0.02})
    benchmark(handler.serializer.encode, fields)


def test_redact_clean(benchmark: Any) -> None:
    """What annotate() pays for a nested value: a copy, values under secret keys redacted."""
    benchmark.group = "hot paths"
    serializer = Serializer()
    payload = {"user": {"id": 1, "email": "a@b.c", "password": "x"}, "items": [1, 2, 3]}
    # (in an older package, clean() was this copy; text was not scanned at all)
    benchmark(getattr(serializer, "copy", serializer.clean), payload)


def test_scrub_kept_text(benchmark: Any) -> None:
    """The scan for secrets inside text, once per kept event: annotations without any."""
    benchmark.group = "hot paths"
    serializer = Serializer()
    if not hasattr(serializer, "scrub_strings"):
        pytest.skip("no scan of text in this package")
    fields = {
        "user": {"id": 42, "plan": "pro", "email": "ada@example.com"},
        "note": "checkout completed for user 42 in 3 steps",
        "referrer": "https://shop.example.com/cart/view",
        "cart": {"items": 3, "total": 99.5, "coupon": "WINTER-10"},
    }
    benchmark(serializer.scrub_strings, fields)


def test_metrics_record_decision(benchmark: Any) -> None:
    """The per-request counting: two itertools.count steps, no lock."""
    benchmark.group = "hot paths"
    counters = Metrics()
    benchmark(counters.record_decision, "events.sampled_out.normal")


def test_metrics_inc_locked(benchmark: Any) -> None:
    """A locked counter (dropped.*, written.*): never per request on the happy path."""
    benchmark.group = "hot paths"
    counters = Metrics()
    benchmark(counters.inc, "dropped.queue_overflow")


def test_metrics_snapshot(benchmark: Any, handler_factory: Any) -> None:
    """What a Prometheus scrape or a metrics event costs (off the request path)."""
    benchmark.group = "hot paths"
    handler = handler_factory()
    for n in range(100):
        handler.submit(handler.new_event(request_id=f"m-{n}"))
    benchmark(metrics.snapshot)
