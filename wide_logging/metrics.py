"""Counters of the pipeline itself, one registry per process.

Counters are plain integers behind one lock, exact when many threads count at once. The
two that every request bumps (``events.seen`` and its sampling outcome) are
``itertools.count`` objects instead: ``next()`` on one is a single C call under the GIL,
so the request path takes no lock for them. Names are dotted: ``events.kept.error``,
``dropped.queue_overflow``, ``written.file:...``.
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter


def _value(counter: itertools.count[int]) -> int:
    """The next value ``counter`` would give (= how often it was advanced), without advancing."""
    return int(repr(counter)[6:-1])  # repr is "count(N)"


class Metrics:
    __slots__ = ("_counts", "_decisions", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._decisions: dict[str, itertools.count[int]] = {"events.seen": itertools.count()}

    def inc(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def record_decision(self, counter: str) -> None:
        """One sampled event: ``events.seen`` and the decision's own counter go up."""
        decisions = self._decisions
        next(decisions["events.seen"])
        try:
            next(decisions[counter])
        except KeyError:
            with self._lock:  # first use of this counter: create it once
                decisions.setdefault(counter, itertools.count())
            next(decisions[counter])

    def get(self, name: str) -> int:
        return self.snapshot().get(name, 0)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            values = dict(self._counts)
        for name, counter in list(self._decisions.items()):
            value = _value(counter)
            if value:
                values[name] = value
        return values

    def reset(self) -> None:
        """Start from zero (a forked child is a new process with its own numbers)."""
        self._lock = threading.Lock()
        self._counts = Counter()
        self._decisions = {"events.seen": itertools.count()}
