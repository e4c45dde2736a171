"""Which handler a middleware uses when given none, and who watches finished events.

The active handler is the most recently created one that is still open (weakly held: a
handler nobody keeps is not kept alive here). Taps are the test helpers' view of every
finished event (``wide_logging.testing.capture_events``); production code adds none.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from .typing import Decision, EventDict

#: Called with every finished event while a ``wide_logging.testing`` capture is active.
Tap = Callable[[EventDict, Decision], None]
#: The taps now active; ``submit()`` asks ``if taps:`` per event (an empty list: no cost).
taps: list[Tap] = []


def add_tap(tap: Tap) -> None:
    taps.append(tap)


def remove_tap(tap: Tap) -> None:
    with contextlib.suppress(ValueError):
        taps.remove(tap)


class _Closable(Protocol):
    closed: bool


H = TypeVar("H", bound=_Closable)


class Registry(Generic[H]):
    """Handlers in the order they were created."""

    def __init__(self) -> None:
        self._refs: list[weakref.ref[H]] = []
        self._lock = threading.Lock()

    def register(self, handler: H) -> None:
        with self._lock:
            self._refs.append(weakref.ref(handler))

    def active(self) -> H | None:
        """The most recently registered handler that is still open."""
        with self._lock:
            for ref in reversed(self._refs):
                handler = ref()
                if handler is not None and not handler.closed:
                    return handler
            self._refs[:] = [ref for ref in self._refs if ref() is not None]
        return None

    def clear(self) -> None:
        """Forget every handler (tests start from none)."""
        with self._lock:
            self._refs.clear()
