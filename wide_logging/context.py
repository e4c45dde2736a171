"""The current event, reachable from anywhere in the request's context.

A ``ContextVar`` holds the open event. asyncio tasks, ``run_in_threadpool`` and
``asyncio.to_thread`` copy the context, so they all see the *same* event object and
their annotations land on it.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any, TypeVar, cast

import wrapt

from ._errors import ConfigurationError
from .event import WideEvent

F = TypeVar("F", bound=Callable[..., Any])

_internal = logging.getLogger("wide_logging.internal")
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
        if type(event) is WideEvent:
            event.add_fields(fields)  # (not **fields: no second copy of the dict)
        else:  # a subclass's own annotate(), should it have one
            event.annotate(**fields)
    except Exception:  # a field we cannot take must not break the request
        return False
    return True


# For the middlewares, which call these once per request: the ContextVar's own methods,
# with no Python frame of ours around them.
#: Make an event the current one; returns a token for ``restore`` (or ``deactivate``).
activate = _current.set
#: Put back what was current before ``activate`` (in the same context: else ValueError).
restore = _current.reset
#: :func:`current_event`.
get_current = _current.get


def deactivate(token: Token[WideEvent | None]) -> None:
    """``restore``, also from another context than the one that activated."""
    try:
        _current.reset(token)
    except ValueError:
        # The token was made in another context (a WSGI server that iterates the body
        # elsewhere): clearing is the best we can do.
        _current.set(None)


class span:
    """Time a block or a function into ``timings.<name>_ms`` of the current event.

    Works as a context manager (``with span("db"): ...``) and as a decorator for sync and
    async functions and methods (``@span("render")``), keeping their signatures. Spans of
    the same name add up. ``errors=True`` (what :func:`instrument` gives) also records an
    exception passing through as ``<name>.error.{type,message}`` — details of that call,
    not the request's ``error``: the exception goes on, and if nothing handles it the
    middleware records it as the request's error.
    """

    __slots__ = ("_errors", "_key", "_starts", "name")

    def __init__(self, name: str, *, errors: bool = False) -> None:
        if not isinstance(name, str) or not name or "." in name:
            msg = f"span name must be a non-empty string without dots, got {name!r}"
            raise ConfigurationError(msg)
        self.name = name
        self._key = f"{name}_ms"
        self._errors = errors
        self._starts: list[int] = []

    def _record(self, start: int, exc: BaseException | None) -> None:
        """Never raises: the exception passing through is the app's, and it must reach
        the app unchanged whatever its ``str()`` or attributes do."""
        event = _current.get()
        if event is None:
            return
        try:
            event.add_timing(self._key, (_perf_ns() - start) / 1e6)
            if exc is not None and self._errors and isinstance(exc, Exception):
                event.record_call_error(self.name, exc)
        except Exception:
            _internal.exception("wide_logging could not record span %r", self.name)

    def __enter__(self) -> span:
        self._starts.append(_perf_ns())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._record(self._starts.pop(), exc)

    def __call__(self, func: F) -> F:
        record = self._record

        @wrapt.decorator
        def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            start = _perf_ns()
            try:
                result = wrapped(*args, **kwargs)
            except BaseException as exc:
                record(start, exc)
                raise
            record(start, None)
            return result

        @wrapt.decorator
        async def async_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            start = _perf_ns()
            try:
                result = await wrapped(*args, **kwargs)
            except BaseException as exc:
                record(start, exc)
                raise
            record(start, None)
            return result

        chosen = async_wrapper if inspect.iscoroutinefunction(func) else wrapper
        return cast(F, chosen(func))


def instrument(name: str) -> Callable[[F], F]:
    """Decorator for a dependency call (an LLM, a payment API): its duration goes to
    ``timings.<name>_ms`` and a failure to ``<name>.error``, on the current event.

    The same as ``span(name, errors=True)``. A name of its own because it says at the call
    site what it is for — a call to something outside the app, whose failures belong on
    the event — where a bare ``span`` times a block of the app's own code (an exception
    there is the request's error, recorded once by the middleware).
    Built on ``wrapt``: sync and async functions and methods, signatures intact.
    """
    return span(name, errors=True)
