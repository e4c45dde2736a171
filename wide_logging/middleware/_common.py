"""What the ASGI and WSGI middleware share: options and finding the handler."""

from __future__ import annotations

import logging
from typing import Any, Generic, TypeVar

from .._errors import ConfigurationError, check_bool
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


App = TypeVar("App")


class Middleware(Generic[App]):
    """The options every middleware takes, checked where it is configured: ``handler``
    (default: the configured ``WideEventHandler``), ``request_id_header``
    (``X-Request-ID``), ``echo_request_id`` (True: the id is sent back on the response)."""

    def __init__(
        self,
        app: App,
        *,
        handler: WideEventHandler | None = None,
        request_id_header: str = DEFAULT_REQUEST_ID_HEADER,
        echo_request_id: bool = True,
    ) -> None:
        self.app = app
        self._handler = HandlerRef(handler)
        self._echo = check_bool("echo_request_id", echo_request_id)
        self._use_header(check_header_name(request_id_header))

    def _use_header(self, name: str) -> None:
        """Keep the request id header's name in the form this kind of server needs."""
        raise NotImplementedError


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
