"""The current event, reachable from anywhere in the request's context.

A ``ContextVar`` holds the open event. asyncio tasks, ``run_in_threadpool`` and
``asyncio.to_thread`` copy the context, so they all see the *same* event object and
their annotations land on it.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any, TypeVar, cast

import wrapt

from ._errors import ConfigurationError
from .event import WideEvent

F = TypeVar("F", bound=Callable[..., Any])

_current: ContextVar[WideEvent | None] = ContextVar("wide_logging_event", default=None)
_perf_ns = time.perf_counter_ns


def current_event() -> WideEvent | None:
    """The event of the request (or job) running in this context, if any."""
    return _current.get()


def annotate(**fields: Any) -> bool:
    """Add fields to the current event; returns False when there is none (a no-op).

    Nested dicts and dotted keys are both accepted: ``annotate(user={"id": 7})`` and
    ``annotate(**{"user.id": 7})`` are the same. ``annotate(force_keep=True)`` keeps the
    event whatever the sampling rate. Never raises.
    """
    event = _current.get()
    if event is None:
        return False
    try:
        event.annotate(**fields)
    except Exception:  # a field we cannot take must not break the request
        return False
    return True


def activate(event: WideEvent) -> Token[WideEvent | None]:
    return _current.set(event)


def deactivate(token: Token[WideEvent | None]) -> None:
    try:
        _current.reset(token)
    except ValueError:
        # The token was made in another context (a WSGI server that iterates the body
        # elsewhere): clearing is the best we can do.
        _current.set(None)


class span:
    """Time a block or a function into ``timings.<name>_ms`` of the current event.

    Works as a context manager (``with span("db"): ...``) and as a decorator for sync and
    async functions (``@span("render")``). Spans of the same name add up.
    """

    __slots__ = ("_key", "_starts", "name")

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            msg = f"span name must be a non-empty string, got {name!r}"
            raise ConfigurationError(msg)
        self.name = name
        self._key = f"{name}_ms"
        self._starts: list[int] = []

    def __enter__(self) -> span:
        self._starts.append(_perf_ns())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        elapsed = _perf_ns() - self._starts.pop()
        event = _current.get()
        if event is not None:
            event.add_timing(self._key, elapsed / 1e6)

    def __call__(self, func: F) -> F:
        key = self._key

        def record(start: int) -> None:
            event = _current.get()
            if event is not None:
                event.add_timing(key, (_perf_ns() - start) / 1e6)

        if inspect.iscoroutinefunction(func):

            @wrapt.decorator
            async def async_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
                start = _perf_ns()
                try:
                    return await wrapped(*args, **kwargs)
                finally:
                    record(start)

            return cast(F, async_wrapper(func))

        @wrapt.decorator
        def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            start = _perf_ns()
            try:
                return wrapped(*args, **kwargs)
            finally:
                record(start)

        return cast(F, wrapper(func))
