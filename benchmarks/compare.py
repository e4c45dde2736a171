"""Side-by-side: the bare app, wide_logging (dropped / default / keep-all) and the floor.

One Starlette app is called directly as ASGI (no HTTP) in one process; the variants are
alternated in rounds (A B C D A B C D ...) so machine noise hits them alike, and the
median µs per request of each is printed with its overhead over the bare app. "kept"
variants are timed until the writer thread has written every event (end to end), so the
worker's CPU is included.

    python benchmarks/compare.py [--rounds 15] [--requests 2000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from conftest import DirectClient, starlette_app
from wide_logging import WideEventHandler


class FloorMiddleware:
    """The least a per-request event can cost: build a dict, put it on a SimpleQueue."""

    def __init__(self, app: Any, sink: queue.SimpleQueue[dict[str, Any]]) -> None:
        self.app = app
        self.sink = sink

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def wrapped(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, wrapped)
        self.sink.put_nowait(
            {"path": scope["path"], "status": status, "duration": time.perf_counter() - start}
        )


def build_variants(tmp: Path) -> dict[str, tuple[DirectClient, Callable[[], None]]]:
    variants: dict[str, tuple[DirectClient, Callable[[], None]]] = {}
    nothing: Callable[[], None] = lambda: None  # noqa: E731
    variants["bare"] = (DirectClient(starlette_app(None)), nothing)

    floor_queue: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
    floor_app = starlette_app(None)
    floor_app.add_middleware(FloorMiddleware, sink=floor_queue)

    def drain_floor() -> None:
        while not floor_queue.empty():
            floor_queue.get_nowait()

    variants["floor (dict + SimpleQueue)"] = (DirectClient(floor_app), drain_floor)

    for name, rate in (
        ("wide dropped (rate 0)", 0.0),
        ("wide default (rate 0.02)", 0.02),
        ("wide keep-all", 1.0),
    ):
        handler = WideEventHandler(
            sink=f"file:{tmp}/{rate}/events.jsonl",
            sampling={"normal_rate": rate},
            queue_size=10**6,
            queue_bytes=2**30,
        )
        variants[name] = (DirectClient(starlette_app(handler)), lambda h=handler: h.flush(60))
    return variants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        variants = build_variants(Path(tmp))
        for client, settle in variants.values():  # warm up
            client.run(500)
            settle()
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, (client, settle) in variants.items():
                started = time.perf_counter()
                client.run(args.requests)
                settle()
                samples[name].append((time.perf_counter() - started) / args.requests * 1e6)
    bare = statistics.median(samples["bare"])
    rows = [
        {
            "variant": name,
            "median_us": round(statistics.median(values), 2),
            "overhead_us": round(statistics.median(values) - bare, 2),
        }
        for name, values in samples.items()
    ]
    if args.json:
        print(json.dumps({"python": sys.version.split()[0], "cpus": os.cpu_count(), "rows": rows}))
        return
    print(f"{'variant':<30} {'µs/request':>11} {'overhead µs':>12}")
    for row in rows:
        print(f"{row['variant']:<30} {row['median_us']:>11.2f} {row['overhead_us']:>12.2f}")


if __name__ == "__main__":
    main()
