"""Django: one wide event per request, from ``settings.MIDDLEWARE``.

    MIDDLEWARE = [
        "wide_logging.django.WideEventMiddleware",  # first: it times everything after it
        "django.middleware.security.SecurityMiddleware",
        ...
    ]

A Django middleware, not a WSGI wrapper, so ``django.test.Client`` (which never goes
through ``wsgi.py``), ``runserver``, gunicorn and ASGI servers all see it. Sync and async
capable, as Django's middleware docs describe: under ASGI it stays async, under WSGI sync.
The route template comes from the resolver (``/orders/<int:order_id>/``; a ``re_path``
without its ``^`` and ``$``); a view's unhandled exception is the event's error even though
Django turns it into a 500 response; the request id is echoed. A streaming response's event
ends with its last chunk.

Options, in settings: ``WIDE_LOGGING_MIDDLEWARE = {"request_id_header": "X-Request-ID",
"echo_request_id": True}``. The events go to the configured ``WideEventHandler`` (put it in
``LOGGING``). When a WSGI/ASGI wide_logging middleware already opened the request's event,
this one only adds the route to it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextvars import Token
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

from ._errors import ConfigurationError, check_bool
from .context import activate, current_event, deactivate, restore
from .event import WideEvent
from .handler import WideEventHandler
from .middleware._common import (
    DEFAULT_REQUEST_ID_HEADER,
    HandlerRef,
    check_header_name,
    record_failure,
    status_code,
)

_internal = logging.getLogger("wide_logging.internal")
_OPTIONS = ("request_id_header", "echo_request_id")

GetResponse = Callable[[Any], Any]


class WideEventMiddleware:
    """Django middleware (``settings.MIDDLEWARE``); see the module docstring."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        from django.conf import settings

        self.get_response = get_response
        options = getattr(settings, "WIDE_LOGGING_MIDDLEWARE", {}) or {}
        if not isinstance(options, dict) or set(options) - set(_OPTIONS):
            msg = f"WIDE_LOGGING_MIDDLEWARE must be a dict with keys from {list(_OPTIONS)}"
            raise ConfigurationError(msg)
        header = check_header_name(options.get("request_id_header", DEFAULT_REQUEST_ID_HEADER))
        self._header = header
        self._meta_key = "HTTP_" + header.upper().replace("-", "_")
        self._echo = check_bool("echo_request_id", options.get("echo_request_id", True))
        self._handler = HandlerRef(None)
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)
        hook_django_signals()
        _warn_unless_first(getattr(settings, "MIDDLEWARE", None))

    def __call__(self, request: Any) -> Any:
        if self.async_mode:
            return self._async_call(request)
        opened = self._open(request)
        if opened is None:
            return self.get_response(request)
        try:
            response = self.get_response(request)
        except BaseException as exc:
            opened.fail(exc)
            raise
        return opened.respond(response)

    async def _async_call(self, request: Any) -> Any:
        opened = self._open(request)
        if opened is None:
            return await self.get_response(request)
        try:
            response = await self.get_response(request)
        except BaseException as exc:
            opened.fail(exc)
            raise
        return opened.respond(response)

    def process_exception(self, request: Any, exception: BaseException) -> None:
        """A view raised: Django will answer 500, the event keeps the error."""
        event = current_event()
        if event is not None:
            record_failure(event, exception)

    def _open(self, request: Any) -> _Request | None:
        outer = current_event()
        if outer is not None:  # a WSGI/ASGI middleware of ours owns it: add what we know
            return _Request(self, request, outer, None, None)
        try:
            handler = self._handler.get()
            meta = request.META
            event = handler.new_event(
                request_id=meta.get(self._meta_key), traceparent=meta.get("HTTP_TRACEPARENT")
            )
            event.method = request.method
            event.path = request.path
            event.client_address = meta.get("REMOTE_ADDR") or None
            event.user_agent = meta.get("HTTP_USER_AGENT") or None
        except Exception:  # our failure must not cost the request
            _internal.exception("wide_logging could not open an event")
            return None
        return _Request(self, request, event, handler, activate(event))


class _Request:
    """One request's event: finished with the response, or with a streaming body's end."""

    __slots__ = ("done", "event", "middleware", "owner", "request", "token")

    def __init__(
        self,
        middleware: WideEventMiddleware,
        request: Any,
        event: WideEvent,
        owner: WideEventHandler | None,
        token: Token[WideEvent | None] | None,
    ) -> None:
        self.middleware = middleware
        self.request = request
        self.event = event
        self.owner = owner  # None: an outer middleware finishes the event
        self.token = token
        self.done = False

    def fail(self, exc: BaseException) -> None:
        record_failure(self.event, exc)
        self.finish()

    def respond(self, response: Any) -> Any:
        event = self.event
        try:
            event.route = route_of(getattr(self.request, "resolver_match", None))
            if self.owner is None:
                return response
            status = status_code(getattr(response, "status_code", None))
            if status is not None:
                event.status = status
            middleware = self.middleware
            if (
                middleware._echo
                and event.request_id
                and not response.has_header(middleware._header)
            ):
                response[middleware._header] = event.request_id
            if getattr(response, "streaming", False):
                content = response.streaming_content
                response.streaming_content = (
                    _AsyncBody(self, content)
                    if hasattr(content, "__aiter__")
                    else _Body(self, content)
                )
                # The body runs later, with the event active for each chunk only: a body
                # never read (a test that only looks at the status) must not leave this
                # request's event active for the next request on the thread.
                self.release()
                return response
        except Exception:
            _internal.exception("wide_logging could not finish an event")
        self.finish()
        return response

    def release(self) -> None:
        """The event stops being the thread's (or task's) current one."""
        if self.owner is not None and self.token is not None:
            if current_event() is self.event:
                deactivate(self.token)
            self.token = None

    def finish(self) -> None:
        if self.done or self.owner is None:
            return
        self.done = True
        self.release()
        event = self.event
        event.end()
        self.owner.submit(event)


class _Chunk:
    """One chunk of a streaming body being made: the request's event active meanwhile; the
    event finished when the body ends (``end``: StopIteration or StopAsyncIteration), or
    failed when making it raises."""

    __slots__ = ("end", "request", "token")

    def __init__(self, request: _Request, end: type[BaseException]) -> None:
        self.request = request
        self.end = end

    def __enter__(self) -> None:
        self.token = activate(self.request.event)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _: Any) -> None:
        try:
            if kind is not None and issubclass(kind, self.end):
                self.request.finish()
            elif exc is not None:
                self.request.fail(exc)
        finally:
            restore(self.token)


class _Body:
    """A streaming response's content: each chunk made with the request's event active; the
    event finished at the end, on an error, or when Django closes the response (read or
    not: a body never started has no ``finally`` to run)."""

    __slots__ = ("chunk", "content", "request")

    def __init__(self, request: _Request, content: Iterator[bytes]) -> None:
        self.request = request
        self.content = iter(content)
        self.chunk = _Chunk(request, StopIteration)

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        with self.chunk:
            return next(self.content)

    def close(self) -> None:
        self.request.finish()


class _AsyncBody:
    """The same for an async streaming response (served under ASGI)."""

    __slots__ = ("chunk", "content", "request")

    def __init__(self, request: _Request, content: AsyncIterator[bytes]) -> None:
        self.request = request
        self.content = content.__aiter__()
        self.chunk = _Chunk(request, StopAsyncIteration)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        with self.chunk:
            return await self.content.__anext__()

    def close(self) -> None:
        self.request.finish()


def _warn_unless_first(middleware: Any) -> None:
    """Placed after another middleware, the event misses what that one answers by itself
    (CommonMiddleware's APPEND_SLASH redirect is stored as the 404 it avoided): say so."""
    if not isinstance(middleware, (list, tuple)) or not middleware:
        return
    ours = f"{__name__}.WideEventMiddleware"
    if ours in middleware and middleware[0] != ours:
        _internal.warning(
            "%s is not first in settings.MIDDLEWARE (after %s): responses that the middleware "
            "before it sends (redirects, 403s) get no event of their own, or one with the "
            "wrong status. Put it first.",
            ours,
            middleware[0],
        )


def route_of(match: Any) -> str | None:
    """The route template of a Django ``ResolverMatch``: ``/orders/<int:order_id>/``, or a
    ``re_path`` pattern without its anchors (``/legacy/(?P<slug>[a-z]+)/``)."""
    route = getattr(match, "route", None)
    if not isinstance(route, str):
        return None
    route = route.removeprefix("^")
    if route.endswith("$") and not route.endswith("\\$"):
        route = route[:-1]
    return "/" + route.lstrip("/")


_signals_hooked = False


def hook_django_signals() -> None:
    """Record exceptions Django turns into 500 responses anywhere (``got_request_exception``),
    once per process."""
    global _signals_hooked
    if _signals_hooked:
        return
    from django.core.signals import got_request_exception

    def record_exception(sender: Any, request: Any = None, **_: Any) -> None:
        event = current_event()
        exc = sys.exc_info()[1]
        if event is not None and exc is not None:
            record_failure(event, exc)

    got_request_exception.connect(record_exception, weak=False, dispatch_uid="wide_logging")
    _signals_hooked = True


def wsgi_route_resolver() -> Callable[[dict[str, Any]], str | None]:
    """For ``WideEventWSGIMiddleware`` around Django's ``WSGIHandler``: the route of a
    finished request, from the resolver (and the signal hook above)."""
    from django.urls import Resolver404, resolve

    hook_django_signals()

    def resolve_route(environ: dict[str, Any]) -> str | None:
        try:
            return route_of(resolve(environ.get("PATH_INFO") or "/"))
        except Resolver404:
            return None

    return resolve_route


__all__ = ["WideEventMiddleware", "route_of"]
