"""A second, independent harness for the per-request goals: another app, another scope.

compare.py times one Starlette route with a three-header scope; a layout can flatter one
number. This harness shares none of its code: a FastAPI app (path parameter, dependency,
JSON response), called directly as ASGI with a richer scope — eleven scope keys, seven
headers (cookie and authorization among them, a traceparent and an incoming request id on
every other request), 1,000 different paths — and its own variants and timing loop. Variants
are alternated in rounds; writers are timed until they have written every event.

Goals (issue "Performance"), printed as ratios of overheads over the bare app:
dropped <= floor with writer; default <= 1.1 x dropped; keep-all <= 2 x floor with writer,
and below structlog's synchronous recipe.

    python benchmarks/second_harness.py [--rounds 15] [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import queue
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from fastapi import Depends, FastAPI

from wide_logging import WideEventHandler, WideEventMiddleware

PATHS = 1000


def make_app() -> FastAPI:
    app = FastAPI()

    async def tenant() -> str:  # (a sync one would run on a thread: ~150 µs of hops)
        return "acme"

    @app.get("/api/orders/{order_id}")
    async def order(order_id: int, who: str = Depends(tenant)) -> dict[str, Any]:
        return {"order": order_id, "tenant": who, "items": [1, 2, 3], "total": 42.5}

    return app


def scopes() -> list[dict[str, Any]]:
    made = []
    for n in range(PATHS):
        headers = [
            (b"host", b"shop.example"),
            (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) harness/2"),
            (b"accept", b"application/json"),
            (b"accept-encoding", b"gzip, br"),
            (b"cookie", f"session=s{n}; theme=dark".encode()),
            (b"authorization", b"Bearer not-a-real-token"),
        ]
        if n % 2:
            headers.append((b"x-request-id", f"req-{n:06d}".encode()))
        else:
            trace = f"00-{n:032x}-{n:016x}-01".encode()
            headers.append((b"traceparent", trace))
        made.append(
            {
                "type": "http",
                "asgi": {"version": "3.0", "spec_version": "2.3"},
                "http_version": "1.1",
                "scheme": "https",
                "method": "GET",
                "path": f"/api/orders/{n}",
                "raw_path": f"/api/orders/{n}".encode(),
                "root_path": "",
                "query_string": b"expand=items",
                "headers": headers,
                "client": ("10.1.2.3", 40000 + n % 1000),
                "server": ("10.0.0.1", 443),
                "state": {},
            }
        )
    return made


class Floor:
    """The least a per-request event can cost: a dict into a queue (and, with a writer, a
    thread encoding with orjson and writing batches of 100 to a file)."""

    def __init__(self, app: Any, sink: Any) -> None:
        self.app, self.sink = app, sink

    def record(self, fields: dict[str, Any]) -> None:
        self.sink.put_nowait(fields)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        started, status = time.perf_counter(), 0

        async def wrapped(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, wrapped)
        self.record({"path": scope["path"], "status": status, "ms": time.perf_counter() - started})


def floor_writer(source: queue.Queue[Any], path: Path) -> None:
    with open(path, "ab") as out:
        batch: list[bytes] = []
        while True:
            item = source.get()
            if item is None:
                return
            batch.append(orjson.dumps(item))
            if len(batch) >= 100 or source.empty():
                out.write(b"\n".join(batch) + b"\n")
                out.flush()
                for _ in batch:
                    source.task_done()
                batch = []


class StructlogRecipe(Floor):
    """structlog's performance recipe, one line per request, synchronous, to a file."""

    def __init__(self, app: Any, path: Path) -> None:
        import structlog

        log = structlog.wrap_logger(
            structlog.BytesLogger(open(path, "wb")),  # noqa: SIM115 - for the run's life
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.JSONRenderer(serializer=orjson.dumps),
            ],
            cache_logger_on_first_use=True,
        )
        super().__init__(app, log)

    def record(self, fields: dict[str, Any]) -> None:
        self.sink.info("request", **fields)


def variants(tmp: Path) -> dict[str, tuple[Any, Callable[[], None]]]:
    """name -> (ASGI app, what to wait for after a round)."""

    def nothing() -> None:
        pass

    made: dict[str, tuple[Any, Callable[[], None]]] = {"bare": (make_app(), nothing)}
    floor_queue: queue.Queue[Any] = queue.Queue()
    plain_queue: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def drain() -> None:  # (after the round: what a writer would have taken)
        while not plain_queue.empty():
            plain_queue.get_nowait()

    made["floor"] = (Floor(make_app(), plain_queue), drain)
    threading.Thread(
        target=floor_writer, args=(floor_queue, tmp / "floor.jsonl"), daemon=True
    ).start()
    made["floor + writer"] = (Floor(make_app(), floor_queue), floor_queue.join)
    for name, rate in (("wide dropped", 0.0), ("wide default", 0.02), ("wide keep-all", 1.0)):
        handler = WideEventHandler(
            sink=f"file:{tmp}/{rate}/events.jsonl",
            fallback=f"file:{tmp}/{rate}/spool/events.jsonl",
            sampling={"normal_rate": rate},
            queue_size=10**6,
            queue_bytes=2**30,
        )
        made[name] = (WideEventMiddleware(make_app(), handler=handler), handler.flush)
    try:
        made["structlog recipe"] = (StructlogRecipe(make_app(), tmp / "structlog.jsonl"), nothing)
    except ImportError:
        print("(structlog is not installed: its row is left out)", file=sys.stderr)
    return made


async def _run(app: Any, requests: int, all_scopes: list[dict[str, Any]]) -> None:
    body = {"type": "http.request", "body": b"", "more_body": False}

    async def receive() -> dict[str, Any]:
        return body

    async def send(message: Any) -> None:
        pass

    for n in range(requests):
        scope = dict(all_scopes[n % PATHS])  # (the app may write into its scope)
        scope["headers"] = list(scope["headers"])
        scope["state"] = {}
        await app(scope, receive, send)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    all_scopes = scopes()
    loop = asyncio.new_event_loop()
    with tempfile.TemporaryDirectory() as folder:
        made = variants(Path(folder))
        for app, settle in made.values():  # warm up: imports, caches, the writer threads
            loop.run_until_complete(_run(app, 500, all_scopes))
            settle()
        timings: dict[str, list[float]] = {name: [] for name in made}
        for _ in range(args.rounds):
            for name, (app, settle) in made.items():
                started = time.perf_counter()
                loop.run_until_complete(_run(app, args.requests, all_scopes))
                settle()
                timings[name].append((time.perf_counter() - started) / args.requests * 1e6)
    loop.close()
    median = {name: statistics.median(values) for name, values in timings.items()}
    bare = median["bare"]
    print(f"{args.requests} requests x {args.rounds} alternated rounds, pid {os.getpid()}")
    print("| variant | µs/request | overhead |\n|---|---:|---:|")
    for name, value in median.items():
        extra = "—" if name == "bare" else f"+{value - bare:.2f}"
        print(f"| {name} | {value:.2f} | {extra} |")
    over = {name: value - bare for name, value in median.items()}
    floor_writer_over = over["floor + writer"]
    print()
    print(
        f"dropped / floor+writer        {over['wide dropped'] / floor_writer_over:.2f}  (goal <= 1)"
    )
    print(
        f"default / dropped             {over['wide default'] / over['wide dropped']:.2f}  (goal <= 1.1)"
    )
    print(
        f"keep-all / floor+writer       {over['wide keep-all'] / floor_writer_over:.2f}  (goal <= 2)"
    )
    if "structlog recipe" in over:
        print(
            f"keep-all / structlog recipe   {over['wide keep-all'] / over['structlog recipe']:.2f}"
            "  (goal < 1)"
        )


if __name__ == "__main__":
    main()
