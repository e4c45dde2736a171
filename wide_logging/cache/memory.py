"""In-process cache stores: thread-safe, with expiry and an LRU bound on entries."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from .._errors import check_number


class _Expiring:
    """An LRU-bounded dict whose entries expire; ``clock`` is injectable for tests."""

    def __init__(self, max_entries: int, clock: Callable[[], float]) -> None:
        check_number("max_entries", max_entries, 1, integer=True)
        self._entries: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()

    def get(self, key: str) -> Any:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            expires, value = found
            if expires <= self._clock():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return value

    def put(self, key: str, value: Any, ttl: float) -> None:
        with self._lock:
            self._entries[key] = (self._clock() + ttl, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)  # least recently used

    def update(self, key: str, ttl: float, change: Callable[[Any], Any]) -> None:
        """Replace the live value (None when absent) by ``change(value)``, refreshing TTL."""
        with self._lock:
            found = self._entries.get(key)
            current = found[1] if found is not None and found[0] > self._clock() else None
            self._entries[key] = (self._clock() + ttl, change(current))
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def delete(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


class MemoryKeyValueStore:
    name = "memory://"

    def __init__(self, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self._data = _Expiring(max_entries, clock)

    def get(self, key: str) -> bytes | None:
        value: bytes | None = self._data.get(key)
        return value

    def set(self, key: str, value: bytes, ttl: float) -> None:
        self._data.put(key, value, ttl)

    def delete(self, key: str) -> None:
        self._data.delete(key)


class MemorySessionStore:
    name = "memory://"

    def __init__(self, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self._data = _Expiring(max_entries, clock)

    def append(self, key: str, message: bytes, ttl: float, max_messages: int) -> None:
        def add(history: deque[bytes] | None) -> deque[bytes]:
            kept = deque(history or (), maxlen=max_messages)
            kept.append(message)
            return kept

        self._data.update(key, ttl, add)

    def last(self, key: str, count: int) -> list[bytes]:
        history: deque[bytes] | None = self._data.get(key)
        return list(history)[-count:] if history else []

    def delete(self, key: str) -> None:
        self._data.delete(key)
