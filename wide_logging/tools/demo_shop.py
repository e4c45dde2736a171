"""The demo's shop: a small Starlette app whose routes annotate, log, fail and run slow,
each in the way ``wide-logging demo`` drives it."""

from __future__ import annotations

import asyncio
import logging

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .. import annotate, span
from ..handler import WideEventHandler
from ..middleware import WideEventMiddleware

log = logging.getLogger("shop")

#: The report route takes longer than this, so the demo's policy keeps it as slow.
SLOW_MS = 50


class OutOfStock(Exception):
    code = "out_of_stock"


async def product(request: Request) -> Response:
    product_id = int(request.path_params["product_id"])
    if product_id >= 10_000:
        return JSONResponse({"error": "no such product"}, status_code=404)
    annotate(product={"id": product_id, "category": ("books", "games", "tools")[product_id % 3]})
    with span("db"):
        await asyncio.sleep(0)
    return JSONResponse({"id": product_id, "price": product_id % 97})


async def search(request: Request) -> Response:
    query = request.query_params.get("q", "")
    log.info("search started for %r", query)
    for shard in range(4):
        log.info("shard %d answered", shard)
    log.warning("search index is %d minutes stale", 7)
    annotate(search={"query": query, "results": len(query) * 3})
    return JSONResponse({"results": []})


async def order(request: Request) -> Response:
    order_id = int(request.path_params["order_id"])
    # the cause an incident summary should find: only the south warehouse runs out
    annotate(inventory={"warehouse": "south" if order_id % 2 else "north"})
    if order_id % 2:
        raise OutOfStock(f"sku {order_id % 50} is out of stock")
    log.error("payment provider timed out after %ds for order %d", 30, order_id)
    return PlainTextResponse("payment provider unavailable", status_code=503)


async def checkout(request: Request) -> Response:
    body = await request.json()
    annotate(cart={"items": body.get("items", 0)}, user={"id": body.get("user"), "password": "x"})
    return JSONResponse({"status": "paid"})


async def report(request: Request) -> Response:
    with span("render"):
        await asyncio.sleep((SLOW_MS + 15) / 1000)
    return PlainTextResponse("report")


def build_app(*, instrumented: bool, handler: WideEventHandler | None = None) -> Starlette:
    app = Starlette(
        routes=[
            Route("/products/{product_id:int}", product),
            Route("/search", search),
            Route("/orders/{order_id:int}", order),
            Route("/checkout", checkout, methods=["POST"]),
            Route("/reports/daily", report),
        ]
    )
    if instrumented:
        app.add_middleware(WideEventMiddleware, handler=handler)
    return app
