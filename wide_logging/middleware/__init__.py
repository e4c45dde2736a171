"""ASGI and WSGI middleware that open one wide event per HTTP request."""

from __future__ import annotations

from .asgi import WideEventMiddleware
from .wsgi import WideEventWSGIMiddleware

__all__ = ["WideEventMiddleware", "WideEventWSGIMiddleware"]
