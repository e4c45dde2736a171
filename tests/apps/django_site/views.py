from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

from django.http import FileResponse, HttpResponse, JsonResponse, StreamingHttpResponse

from wide_logging import annotate

log = logging.getLogger("shop")


def order(request: Any, order_id: int) -> JsonResponse:
    annotate(order={"id": order_id})
    log.info("order viewed", extra={"order_id": order_id})
    return JsonResponse({"id": order_id})


def checkout(request: Any) -> JsonResponse:
    annotate(cart=json.loads(request.body))
    return JsonResponse({"ok": True})


def legacy(request: Any, slug: str) -> HttpResponse:
    return HttpResponse(slug)


def explode(request: Any) -> HttpResponse:
    return HttpResponse(str(1 / 0))


def stream(request: Any) -> StreamingHttpResponse:
    def rows() -> Iterator[bytes]:
        for n in range(3):
            time.sleep(0.05)
            log.info("row %d", n)
            yield f"row {n}\n".encode()

    return StreamingHttpResponse(rows())


async def async_view(request: Any, n: int) -> JsonResponse:
    await asyncio.sleep(0)
    annotate(async_view={"n": n})
    return JsonResponse({"n": n})


def item(request: Any, item_id: int) -> JsonResponse:
    return JsonResponse({"item": item_id})


def download(request: Any) -> FileResponse:
    import io

    return FileResponse(io.BytesIO(b"report body\n" * 100), filename="report.txt")
