"""Helpers for asserting on the wide events your own app produces, in your own tests.

    from wide_logging.testing import capture_events

    def test_checkout_records_the_cart(client):
        with capture_events() as events:
            client.post("/checkout", json={...})
        assert events[0]["cart"]["items"] == 3

While a capture is active, finished events go to it *instead of* the pipeline: nothing is
written, nothing waits for a writer thread. With ``keep_all=True`` (the default) events the
sampler would drop are captured too, marked ``sampling.sampled_out``; the decision is made
exactly as in production, so ``sampling.rule`` can be asserted on.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from . import context as _context
from . import event as _event
from ._registry import add_tap, remove_tap
from .fields import get_path
from .middleware import asgi as _asgi
from .sinks.memory import MemorySink
from .typing import Decision, EventDict


class CapturedEvents(list[EventDict]):
    """The captured events, oldest first, with helpers to find the ones a test wants."""

    def by_kind(self, kind: str) -> list[EventDict]:
        return [event for event in self if event.get("kind") == kind]

    def requests(self) -> list[EventDict]:
        return self.by_kind("http.request")

    def find(self, **fields: Any) -> list[EventDict]:
        """Events whose dotted paths equal the given values: ``find(**{"http.route": "/x"})``."""
        return [e for e in self if all(get_path(e, p) == want for p, want in fields.items())]


@contextmanager
def capture_events(*, keep_all: bool = True) -> Iterator[CapturedEvents]:
    """Capture every finished event (in all handlers) for the duration of the block."""
    captured = CapturedEvents()
    lock = threading.Lock()

    def tap(event: EventDict, decision: Decision) -> None:
        if keep_all or decision.keep:
            with lock:
                captured.append(event)

    add_tap(tap)
    try:
        yield captured
    finally:
        remove_tap(tap)


class FakeClock:
    """The clock that durations and spans are measured with, moved by the test.

    ``advance(ms=...)`` moves it (call it from a fake of your slow dependency);
    ``tick_ms`` moves it by that much at every reading, so that every request takes at
    least that long.
    """

    def __init__(self, tick_ms: float = 0.0) -> None:
        # Not 0: an event's end_ns of 0 means "still running" (only differences count).
        self._now_ns = 1_000_000_000
        self._tick_ns = int(tick_ms * 1_000_000)
        self._lock = threading.Lock()

    def advance(self, ms: float = 0.0, *, seconds: float = 0.0) -> None:
        with self._lock:
            self._now_ns += int(ms * 1_000_000 + seconds * 1_000_000_000)

    def __call__(self) -> int:
        with self._lock:
            now = self._now_ns
            self._now_ns += self._tick_ns
            return now


@contextmanager
def fake_clock(*, tick_ms: float = 0.0) -> Iterator[FakeClock]:
    """Measure durations with a :class:`FakeClock` for the duration of the block::

        def test_a_slow_checkout_is_kept(client):
            with fake_clock(tick_ms=1500), capture_events() as events:
                client.post("/checkout")
            assert events.requests()[0]["sampling"]["rule"] == "slow"

    Wall-clock time (the events' ``timestamp``) is left alone.
    """
    clock = FakeClock(tick_ms)
    # Every module that reads the monotonic clock for durations (the ASGI middleware
    # stops an event's clock itself, at the response's last chunk).
    saved = (_event._perf_ns, _context._perf_ns, _asgi._perf_ns)
    _event._perf_ns = _context._perf_ns = _asgi._perf_ns = clock
    try:
        yield clock
    finally:
        _event._perf_ns, _context._perf_ns, _asgi._perf_ns = saved


__all__ = ["CapturedEvents", "FakeClock", "MemorySink", "capture_events", "fake_clock"]
