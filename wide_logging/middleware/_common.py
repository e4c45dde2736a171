"""What the ASGI and WSGI middleware share: options and finding the handler."""

from __future__ import annotations

from .._errors import ConfigurationError
from ..handler import WideEventHandler, resolve_handler


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


def check_header_name(name: str) -> str:
    if not isinstance(name, str) or not name or not name.isascii() or " " in name:
        msg = f"request_id_header must be an ASCII header name, got {name!r}"
        raise ConfigurationError(msg)
    return name.lower()
