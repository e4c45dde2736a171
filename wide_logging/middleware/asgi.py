"""Pure ASGI middleware: one wide event per HTTP request (no Starlette import needed).

Per-request state lives in locals and the wrapped ``send``, never on ``self``.
``websocket`` and ``lifespan`` scopes pass straight through.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from .._errors import ConfigurationError
from .._pipelines import flush_all
from ..context import activate, get_current, restore
from ..event import WideEvent
from ..handler import WideEventHandler, active_handler
from ._common import Middleware, record_failure, status_code

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_internal = logging.getLogger("wide_logging.internal")
_perf_ns = time.perf_counter_ns


class WideEventMiddleware(Middleware[ASGIApp]):
    """Wrap an ASGI app; for Starlette and FastAPI, ``WideEventMiddleware.install(app)``.

    Options: ``handler`` (default: the configured ``WideEventHandler``),
    ``request_id_header`` (``X-Request-ID``), ``echo_request_id`` (True: the id is sent
    back on the response under that name, lowercased as ASGI requires of header names).
    """

    @classmethod
    def install(cls, app: Any, **options: Any) -> Any:
        """Put the middleware around a Starlette or FastAPI app's *whole* stack, outside
        Starlette's ``ServerErrorMiddleware``, and return ``app``.

        ``app.add_middleware()`` can only place it inside that middleware, whose 500 for an
        unhandled exception then bypasses ours: no request id on exactly the response a
        user needs to correlate. Installed this way the 500 carries it, the app's own
        exception handlers (a custom 500 handler too) still run, and route templates are
        still read. Routes, dependencies and ``add_middleware()`` keep working before and
        after. Any other ASGI app: wrap it, ``app = WideEventMiddleware(app)``.
        """
        build = getattr(app, "build_middleware_stack", None)
        if not callable(build):
            msg = (
                f"install() needs a Starlette or FastAPI app, got {type(app).__name__}; "
                "wrap other ASGI apps: app = WideEventMiddleware(app)"
            )
            raise ConfigurationError(msg)
        if getattr(build, "wide_logging_installed", False):
            msg = "WideEventMiddleware.install() was called on this app already"
            raise ConfigurationError(msg)
        middleware = cls(app, **options)  # checks the options now

        def build_with_wide_events() -> ASGIApp:
            middleware.app = build()
            return middleware

        build_with_wide_events.wide_logging_installed = True  # type: ignore[attr-defined]
        app.build_middleware_stack = build_with_wide_events
        app.middleware_stack = None  # built again, with us outside, on the next request
        return app

    def _use_header(self, name: str) -> None:
        # ASGI header names are lowercase, in the request and (the spec requires it) in the
        # response too; WSGI echoes the name as configured. HTTP names ignore case.
        self._header_name = name.lower().encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                send = _flush_before_shutdown_completes(send)
            await self.app(scope, receive, send)
            return
        if get_current() is not None:
            # Another WideEventMiddleware outside this one (installed on the app and on a
            # mounted sub-app) owns the request's event: one event, its request id.
            await self.app(scope, receive, send)
            return
        try:
            handler = self._handler.get()
            event = _open_event(handler, scope, self._header_name)
        except Exception:  # our failure must not cost the request
            _internal.exception("wide_logging could not open an event")
            await self.app(scope, receive, send)
            return
        request_id = (event.request_id or "").encode("latin-1")
        echo = (self._header_name, request_id) if self._echo else None
        entry_root_path = scope.get("root_path", "")

        # A plain function returning the server's awaitable: no coroutine of our own per
        # message (two per request), which is measurable under a real server. The end is
        # stamped and the usual headers (a dict with a list) go straight to the appending:
        # beside a big app every step of ours costs several times what it costs alone
        # (docs/benchmarks.md).
        def send_wrapper(message: Message) -> Awaitable[None]:
            try:  # (free in 3.11 unless it raises: cheaper than .get())
                kind = message["type"]
                if kind == "http.response.start":
                    status = message["status"]
                else:
                    if (
                        kind == "http.response.body"
                        and not message.get("more_body")
                        and not event.end_ns
                    ):
                        event.end_ns = _perf_ns()  # a streaming response ends with its last chunk
                    status = _NOT_START
            except Exception:  # not an ASGI message: the server's to refuse, as it was sent
                return send(message)
            if status is _NOT_START:
                return send(message)
            if type(status) is int:  # (the usual, without a call)
                event.status = status
            elif (code := status_code(status)) is not None:
                event.status = code  # HTTPStatus.SERVICE_UNAVAILABLE, an IntEnum
            if echo is not None:  # (what the app's own header iterable raises reaches it)
                if type(message) is dict and type(headers := message.get("headers")) is list:
                    message = _with_header_added(message, headers, echo)
                else:
                    message = _with_header(message, echo)
            return send(message)

        token = activate(event)
        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException as exc:
            record_failure(event, exc)  # never raises: the server gets exc itself
            raise
        finally:
            restore(token)
            # The route is read when something needs it (handler.submit): not for a
            # request the policy drops without looking at routes.
            handler.submit(event, lambda: _route_template(scope, entry_root_path))


def _open_event(handler: WideEventHandler, scope: Scope, request_id_header: bytes) -> WideEvent:
    # One C-level pass over the headers beats a Python loop comparing each name three
    # times; a repeated header keeps its last value either way.
    headers = dict(scope.get("headers") or ())
    request_id = headers.get(request_id_header)
    traceparent = headers.get(b"traceparent")
    user_agent = headers.get(b"user-agent")
    event = handler.new_event(
        "http.request",
        None if request_id is None else request_id.decode("latin-1"),
        None if traceparent is None else traceparent.decode("latin-1"),
    )
    event.method = scope.get("method")
    event.path = scope.get("path")
    client = scope.get("client")
    if client:
        event.client_address = client[0]
    if user_agent is not None:  # capped in finalize(), only for kept events
        event.user_agent = user_agent.decode("latin-1")
    return event


def _flush_before_shutdown_completes(send: Send) -> Send:
    """Wrap a lifespan ``send``: write out the queues before the server is told it may exit.

    Some servers (uvicorn >= 0.29) end the process by re-raising SIGTERM after shutdown,
    which skips ``atexit``: this is the last moment our events can be saved.
    """

    async def lifespan_send(message: Message) -> None:
        if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(None, _flush_at_shutdown)
            except Exception:  # never stand between the server and its exit
                _internal.exception("wide_logging could not flush at shutdown")
        await send(message)

    return lifespan_send


def _flush_at_shutdown() -> None:
    handler = active_handler()
    timeout = handler.pipeline.options.shutdown_timeout if handler is not None else 5.0
    flush_all(timeout, spool_leftovers=True)


def _with_header(message: Message, header: tuple[bytes, bytes]) -> Message:
    """``message`` plus ``header`` unless the app set it; a copy, never the app's list.
    Any mapping with any iterable of headers (``send_wrapper`` takes the usual dict and
    list to ``_with_header_added`` itself)."""
    try:
        headers = message.get("headers") or ()
        kind = type(headers)
        iterator = iter(headers) if kind is not list and kind is not tuple else None
    except (AttributeError, TypeError):  # not headers at all: the server's to refuse
        return message
    if iterator is not None:
        # Any iterable is allowed: read it once, and send what was read. What the app's
        # own iterable raises is the app's, and reaches it as it would from the server.
        headers = list(iterator)
        message = {**message, "headers": headers}
    return _with_header_added(message, headers, header)


def _with_header_added(
    message: Message, headers: Sequence[Any], header: tuple[bytes, bytes]
) -> Message:
    """``message`` (whose headers are ``headers``) with ``header`` appended, unless the app
    set it. A copy: the app's response object (dict and list) may be sent again."""
    name = header[0]
    try:
        for existing, _ in headers:
            if existing == name:  # ASGI response header names are lowercase
                return message
    except (TypeError, ValueError):  # not pairs: the server will refuse them, not us
        return message
    message = {**message}  # (a plain copy, then one key: cheaper than a merged literal)
    message["headers"] = [*headers, header]
    return message


def _route_template(scope: Scope, entry_root_path: str) -> str | None:
    """The matched route's template (Starlette/FastAPI set ``scope["route"]``)."""
    route = scope.get("route")
    if route is None:
        return None
    path = getattr(route, "path", None)
    route_type = type(route)
    kind = _route_kinds.get(route_type)  # asked every request: cached per type
    if kind is None:
        kind = _route_kinds[route_type] = (
            _MOUNT
            if hasattr(route_type, "routes") or route_type.__name__ == "Mount"
            else _FASTAPI_ROUTE
            if str(getattr(route_type, "__module__", "")).startswith("fastapi")
            else _ROUTE
        )
    mount = kind == _MOUNT
    if kind == _FASTAPI_ROUTE:
        fastapi = scope.get("fastapi")
        if type(fastapi) is dict and "effective_route_context" in fastapi:
            # FastAPI >= 0.16x keeps included routers as they are: the route's own path
            # lacks the prefixes of the routers above it; the effective context has them.
            effective = getattr(fastapi["effective_route_context"], "path", None)
            if isinstance(effective, str):
                path = effective
    if not isinstance(path, str):
        return None
    root_path = scope.get("root_path", "")
    if root_path == entry_root_path and not mount:
        return path
    # Mounted apps: the router extends root_path by the mount point.
    prefix = root_path[len(entry_root_path) :] if root_path.startswith(entry_root_path) else ""
    if mount:
        return prefix or path  # the mount itself matched (static files, a sub-app)
    return prefix + path


#: What send_wrapper holds as the status of a message that does not start the response.
_NOT_START = object()

#: Kinds of route: a plain one, one that hands over to a sub-app, one of FastAPI's.
_ROUTE, _MOUNT, _FASTAPI_ROUTE = 0, 1, 2
_route_kinds: dict[type, int] = {}
