"""Apps for benchmarks/server_load.py: the same Starlette endpoint bare and with
wide_logging (sink, fallback and policy from WIDE_LOGGING_* environment variables)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from wide_logging import WideEventMiddleware, annotate


async def item(request: Request) -> PlainTextResponse:
    annotate(item={"id": request.path_params["item_id"]})
    return PlainTextResponse("ok")


bare = Starlette(routes=[Route("/items/{item_id}", item)])
wide = Starlette(routes=[Route("/items/{item_id}", item)])
wide.add_middleware(WideEventMiddleware)
# The same without echoing X-Request-ID: under h11 every response header costs a Python
# validation pass, so this shows what the echo itself costs.
wide_no_echo = Starlette(routes=[Route("/items/{item_id}", item)])
wide_no_echo.add_middleware(WideEventMiddleware, echo_request_id=False)
