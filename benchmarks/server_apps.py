"""Apps for benchmarks/server_load.py and server_stack.py: the same Starlette endpoint bare
and with wide_logging (sink, fallback and policy from WIDE_LOGGING_* environment variables),
plus the pieces that explain the difference."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from wide_logging import WideEventHandler, WideEventMiddleware, annotate
from wide_logging.context import activate, deactivate


async def item(request: Request) -> PlainTextResponse:
    annotate(item={"id": request.path_params["item_id"]})  # a no-op without the middleware
    return PlainTextResponse("ok")


async def plain_item(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def app(endpoint: Any = item, middleware: Any = None, **options: Any) -> Starlette:
    built = Starlette(routes=[Route("/items/{item_id}", endpoint)])
    if middleware is not None:
        built.add_middleware(middleware, **options)
    return built


class ContextOnlyMiddleware:
    """The least any per-request context middleware does: set a context variable and wrap
    ``send``. No event, no id, no sampling."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        def send_wrapper(message: Any) -> Any:
            return send(message)

        token = activate(None)  # type: ignore[arg-type]
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            deactivate(token)


class IdleWriterMiddleware:
    """Passes requests through untouched, after starting a wide_logging writer thread once:
    what an idle pipeline in the process costs the app."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.handler: WideEventHandler | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.handler is None and scope["type"] == "http":
            self.handler = WideEventHandler()
            self.handler.pipeline.put(b'{"kind":"bench"}', False)  # starts the writer
        await self.app(scope, receive, send)


bare = app()
wide = app(middleware=WideEventMiddleware)
# Without echoing X-Request-ID: under h11 every response header costs a Python validation
# pass, so this shows what the echo itself costs.
wide_no_echo = app(middleware=WideEventMiddleware, echo_request_id=False)
# Without the endpoint's annotate() call: the middleware alone.
wide_plain = app(plain_item, WideEventMiddleware)
context_only = app(middleware=ContextOnlyMiddleware)
bare_with_writer = app(middleware=IdleWriterMiddleware)
