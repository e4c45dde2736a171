"""A sampler of the app's own (``WideEventHandler(sampling=obj)``), as the handler uses it.

Its answers are checked: anything but a :class:`~wide_logging.Decision` is a failure, and
the handler then decides with the built-in policy (so a buggy sampler never costs an error
event). What it logs while deciding stays out of the handler: the handler would turn each
record into a ``kind: log`` event, decide on it with the same sampler, which logs again.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from .sampling import Decision
from .typing import Sampler


class _ThreadState(threading.local):
    #: True while a sampler of the app's own decides on this thread. (A class default:
    #: reading an attribute a thread never set must not raise inside, per log record.)
    deciding = False


#: Read by the handler for every log record: ``if state.deciding``.
state = _ThreadState()


def is_sampler(value: object) -> bool:
    """An object (not a class, not a mapping of options) with the three methods."""
    return (
        not isinstance(value, (type, Mapping))
        and isinstance(value, Sampler)
        and all(callable(getattr(value, name, None)) for name in ("decide", "decide_log"))
    )


class AppSampler:
    """Wraps the app's sampler: the same calls, answers checked, its logs kept out."""

    __slots__ = ("sampler",)

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler

    def decide(self, *args: Any) -> Decision:
        return self._checked("decide", self.sampler.decide, *args)

    def decide_log(self, key: str, *, error: bool) -> Decision:
        return self._checked("decide_log", self.sampler.decide_log, key, error=error)

    def explain(self, event: Mapping[str, Any]) -> str:
        return self.sampler.explain(event)

    def _checked(self, name: str, method: Any, *args: Any, **kwargs: Any) -> Decision:
        before = state.deciding
        state.deciding = True
        try:
            decision = method(*args, **kwargs)
        finally:
            state.deciding = before
        if not isinstance(decision, Decision):
            msg = (
                f"{type(self.sampler).__name__}.{name}() returned "
                f"{type(decision).__name__}, not a wide_logging.Decision"
            )
            raise TypeError(msg)
        return decision
