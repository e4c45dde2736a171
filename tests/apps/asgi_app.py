"""A FastAPI app and a Starlette app as users deploy them: logging from dictConfig, the
sink and the policy from WIDE_LOGGING_* environment variables (the Kubernetes recipe)."""

from __future__ import annotations

import asyncio
import logging
import logging.config

from fastapi import FastAPI, Request
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from wide_logging import WideEventMiddleware, annotate

logging.config.dictConfig(
    {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "wide": {
                "class": "wide_logging.WideEventHandler",
                "level": "INFO",
                "service": {"name": "shop-api", "version": "1.0.0"},
            }
        },
        "loggers": {"shop": {"handlers": ["wide"], "level": "INFO", "propagate": False}},
    }
)
log = logging.getLogger("shop")

app = FastAPI()
app.add_middleware(WideEventMiddleware)


@app.get("/ok")
async def fastapi_ok(request: Request) -> dict[str, str]:
    marker = request.headers.get("x-marker", "")
    annotate(marker=marker)
    log.info("handled %s", marker)
    delay = float(request.query_params.get("delay", "0"))
    if delay:
        await asyncio.sleep(delay)
    return {"marker": marker}


@app.get("/fail")
async def fastapi_fail() -> None:
    raise RuntimeError("planned failure")


async def ok(request: Request) -> PlainTextResponse:
    marker = request.headers.get("x-marker", "")
    annotate(marker=marker)
    delay = float(request.query_params.get("delay", "0"))
    if delay:
        await asyncio.sleep(delay)
    return PlainTextResponse(marker)


async def fail(request: Request) -> JSONResponse:
    raise RuntimeError("planned failure")


starlette_app = Starlette(routes=[Route("/ok", ok), Route("/fail", fail)])
starlette_app.add_middleware(WideEventMiddleware)
