"""What the ASGI and WSGI middleware share: options and finding the handler."""

from __future__ import annotations

import logging
from typing import Any

from .._errors import ConfigurationError
from .._exception_info import is_control_flow
from ..event import WideEvent
from ..handler import WideEventHandler, resolve_handler

_internal = logging.getLogger("wide_logging.internal")

#: The request id header read, and echoed on the response as spelled here.
DEFAULT_REQUEST_ID_HEADER = "X-Request-ID"


class HandlerRef:
    """The handler a middleware submits to: the explicit one, else the active one.

    The active handler is looked up again when the cached one was closed, which is what
    ``dictConfig`` does to the old handlers when it is called a second time.
    """

    __slots__ = ("_cached", "_explicit")

    def __init__(self, handler: WideEventHandler | None) -> None:
        if handler is not None and not isinstance(handler, WideEventHandler):
            msg = f"handler must be a WideEventHandler, got {type(handler).__name__}"
            raise TypeError(msg)
        self._explicit = handler
        self._cached = handler

    def get(self) -> WideEventHandler:
        handler = self._cached
        if handler is None or (handler.closed and self._explicit is None):
            handler = self._cached = resolve_handler()
        return handler


_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def check_header_name(name: str) -> str:
    """``name`` if it is a valid HTTP header name (an RFC 9110 token), as given."""
    if not isinstance(name, str) or not name or not set(name) <= _TOKEN_CHARS:
        msg = f"request_id_header must be an HTTP header name (letters, digits, -), got {name!r}"
        raise ConfigurationError(msg)
    return name


def status_code(value: Any) -> int | None:
    """A response's status as the event keeps it: an ``int``, an ``IntEnum`` such as
    ``HTTPStatus.SERVICE_UNAVAILABLE`` as its number; anything else (a bool too) None."""
    if type(value) is int:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    return None


def record_failure(event: WideEvent, exc: BaseException) -> None:
    """An exception escaped the app: the event's error, and a 500 if nothing was sent.
    Never raises — the caller re-raises ``exc`` itself, so the server sees the app's own
    exception object whatever it does when read."""
    try:
        if event.status is None and not is_control_flow(exc):
            event.status = 500
        event.record_exception(exc)
    except BaseException as error:  # even a bug of ours must not replace the app's exception
        # No traceback: formatting it would read the app's exception again.
        _internal.error("wide_logging could not record an exception (%s)", type(error).__name__)
