"""``memory:``: a sink that keeps what it is given, for tests (``wide_logging.testing``
exports it)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import orjson

from ..typing import EventDict


class MemorySink:
    """A sink that keeps what it is given: ``WideEventHandler(sink=MemorySink())``.

    Unlike ``capture_events`` this goes through the real pipeline (sampling, queue,
    batching, writer thread); call ``handler.flush()`` before asserting.
    """

    name = "memory:"
    local = True  # no I/O: written on the writer thread itself

    def __init__(self) -> None:
        self.batches: list[list[bytes]] = []
        self._lock = threading.Lock()
        self.closed = False

    def write(self, batch: Sequence[bytes]) -> None:
        with self._lock:
            self.batches.append(list(batch))

    @property
    def events(self) -> list[EventDict]:
        with self._lock:
            return [orjson.loads(line) for batch in self.batches for line in batch]

    def close(self) -> None:
        self.closed = True
