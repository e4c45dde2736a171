"""Side-by-side: the bare app, wide_logging (dropped / default / keep-all) and the floor.

One Starlette app is called directly as ASGI (no HTTP) in one process; the variants are
alternated in rounds (A B C D A B C D ...) so machine noise hits them alike, and the
median µs per request of each is printed with its overhead over the bare app. "kept"
variants are timed until the writer thread has written every event (end to end), so the
worker's CPU is included.

Two groups, one after the other, each with its own bare app: our variants with the floor
and the standard library, then the other logging libraries (structlog, OpenTelemetry,
loguru) beside wide_logging keeping every event. With all ten alternated in the same
rounds, the light variants read higher and moved more on our 2-vCPU VM (keep-all +8.6 to
+12.0 µs against +8.5 to +9.9 in 24 of 27 grouped runs; docs/benchmarks.md).

    python benchmarks/compare.py [--rounds 15] [--requests 2000] [--json] [--ours-only]
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
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

sys.path.insert(0, str(Path(__file__).parent))
from conftest import DirectClient, starlette_app
from wide_logging import WideEventHandler

#: A client calling one app, and what to wait for after a round (its writer's last line).
Variant = tuple[DirectClient, Callable[[], None]]
BARE = "bare"
KEEP_ALL = "wide keep-all"
FLOOR_WITH_WRITER = "floor + orjson writer thread"


class FloorMiddleware:
    """The least a per-request event can cost: build a dict, hand it to ``record``
    (``SimpleQueue.put_nowait`` by default)."""

    def __init__(self, app: Any, sink: Any) -> None:
        self.app = app
        self.sink = sink

    def record(self, fields: dict[str, Any]) -> None:
        self.sink.put_nowait(fields)

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
        self.record(
            {"path": scope["path"], "status": status, "duration": time.perf_counter() - start}
        )


class StdlibMiddleware(FloorMiddleware):
    """The same fields as one log record through the standard library's queue."""

    def record(self, fields: dict[str, Any]) -> None:
        self.sink.info("request", extra=fields)


class _OrjsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return orjson.dumps(
            {
                "time": record.created,
                "message": record.getMessage(),
                "path": getattr(record, "path", None),
                "status": getattr(record, "status", None),
                "duration": getattr(record, "duration", None),
            }
        ).decode()


def _batching_writer(source: queue.Queue[dict[str, Any]], path: Path) -> None:
    with open(path, "ab") as out:
        while True:
            batch = [orjson.dumps(source.get())]
            while len(batch) < 100:
                try:
                    batch.append(orjson.dumps(source.get_nowait()))
                except queue.Empty:
                    break
            out.write(b"\n".join(batch) + b"\n")
            out.flush()
            for _ in batch:
                source.task_done()


def _lines(path: Path) -> int:
    return sum(p.read_bytes().count(b"\n") for p in path.parent.glob(path.stem + "*"))


class LoggerMiddleware(FloorMiddleware):
    """The same fields through any logger taking ``info(message, **fields)`` (structlog)."""

    def record(self, fields: dict[str, Any]) -> None:
        self.sink.info("request", **fields)


def _third_party_variants(tmp: Path) -> dict[str, Variant]:
    """structlog, OpenTelemetry logs and loguru, as their docs set them up for JSON lines.
    Each is skipped (with a note) when its package is not installed (the ``bench`` extra)."""
    variants: dict[str, Variant] = {}
    try:
        import structlog

        out = open(tmp / "structlog.jsonl", "wb")  # noqa: SIM115 - lives as long as the run
        structlog.configure(  # the "performance" recipe of structlog's docs
            cache_logger_on_first_use=True,
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.JSONRenderer(serializer=orjson.dumps),
            ],
            logger_factory=structlog.BytesLoggerFactory(out),
        )
        app = starlette_app(None)
        app.add_middleware(LoggerMiddleware, sink=structlog.get_logger())
        variants["structlog (perf recipe: orjson, BytesLogger, sync)"] = (
            DirectClient(app),
            out.flush,
        )
    except ImportError:
        print("structlog not installed: pip install -e '.[bench]'", file=sys.stderr)
    try:
        from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
        from opentelemetry.sdk._logs.export import (
            BatchLogRecordProcessor,
            ConsoleLogRecordExporter,
        )

        otel_out = open(tmp / "otel.jsonl", "w")  # noqa: SIM115
        provider = LoggerProvider()
        provider.add_log_record_processor(
            BatchLogRecordProcessor(
                ConsoleLogRecordExporter(
                    out=otel_out, formatter=lambda r: r.to_json(indent=None) + "\n"
                )
            )
        )
        otel_logger = logging.getLogger("bench.otel")
        otel_logger.propagate = False
        otel_logger.setLevel(logging.INFO)
        otel_logger.addHandler(LoggingHandler(logger_provider=provider))
        app = starlette_app(None)
        app.add_middleware(StdlibMiddleware, sink=otel_logger)

        def settle_otel() -> None:
            provider.force_flush()
            otel_out.flush()

        variants["OpenTelemetry logs SDK (batch)"] = (DirectClient(app), settle_otel)
    except ImportError:
        print("opentelemetry-sdk not installed: pip install -e '.[bench]'", file=sys.stderr)
    try:
        from loguru import logger as loguru_logger

        loguru_logger.remove()
        loguru_logger.add(tmp / "loguru.jsonl", enqueue=True, serialize=True)
        app = starlette_app(None)
        app.add_middleware(StdlibMiddleware, sink=loguru_logger.bind())
        variants["loguru (enqueue, serialize)"] = (DirectClient(app), loguru_logger.complete)
    except ImportError:
        print("loguru not installed: pip install -e '.[bench]'", file=sys.stderr)
    return variants


def _nothing() -> None:
    pass


def floor_with_writer(path: Path) -> Variant:
    """The floor with a real writer: a thread encoding with orjson, batching to ``path``."""
    writer_queue: queue.Queue[dict[str, Any]] = queue.Queue()
    writer_app = starlette_app(None)
    writer_app.add_middleware(FloorMiddleware, sink=writer_queue)
    threading.Thread(target=_batching_writer, args=(writer_queue, path), daemon=True).start()
    return DirectClient(writer_app), writer_queue.join


def build_variants(tmp: Path) -> dict[str, Variant]:
    """Our group: the bare app, the floors, the standard library and wide_logging."""
    variants: dict[str, Variant] = {}
    variants[BARE] = (DirectClient(starlette_app(None)), _nothing)

    floor_queue: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
    floor_app = starlette_app(None)
    floor_app.add_middleware(FloorMiddleware, sink=floor_queue)

    def drain_floor() -> None:
        while not floor_queue.empty():
            floor_queue.get_nowait()

    variants["floor (dict + SimpleQueue)"] = (DirectClient(floor_app), drain_floor)

    variants[FLOOR_WITH_WRITER] = floor_with_writer(tmp / "floor.jsonl")

    # what the standard library offers: QueueHandler -> QueueListener -> one JSON line
    std_queue: queue.Queue[logging.LogRecord] = queue.Queue()
    file_handler = logging.FileHandler(tmp / "stdlib.jsonl")
    file_handler.setFormatter(_OrjsonFormatter())
    listener = logging.handlers.QueueListener(std_queue, file_handler)
    listener.start()
    std_logger = logging.getLogger("bench.stdlib")
    std_logger.propagate = False
    std_logger.addHandler(logging.handlers.QueueHandler(std_queue))
    std_logger.setLevel(logging.INFO)
    std_app = starlette_app(None)
    std_app.add_middleware(StdlibMiddleware, sink=std_logger)
    variants["stdlib QueueHandler + orjson line"] = (DirectClient(std_app), std_queue.join)

    for name, rate in (
        ("wide dropped (rate 0)", 0.0),
        ("wide default (rate 0.02)", 0.02),
        (KEEP_ALL, 1.0),
    ):
        handler = WideEventHandler(
            sink=f"file:{tmp}/{rate}/events.jsonl",
            sampling={"normal_rate": rate},
            queue_size=10**6,
            queue_bytes=2**30,
        )
        variants[name] = (DirectClient(starlette_app(handler)), lambda h=handler: h.flush(60))
    return variants


def build_groups(tmp: Path) -> list[dict[str, Variant]]:
    """Our group, then the other libraries beside the same bare app and keep-all."""
    ours = build_variants(tmp)
    libraries = _third_party_variants(tmp)
    if not libraries:
        return [ours]
    return [ours, {BARE: ours[BARE], **libraries, KEEP_ALL: ours[KEEP_ALL]}]


def measure(variants: dict[str, Variant], rounds: int, requests: int) -> dict[str, list[float]]:
    """µs per request of each variant in each round, the variants alternated."""
    for client, settle in variants.values():  # warm up
        client.run(500)
        settle()
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, (client, settle) in variants.items():
            started = time.perf_counter()
            client.run(requests)
            settle()
            samples[name].append((time.perf_counter() - started) / requests * 1e6)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--ours-only", action="store_true", help="only the first group (ours, floor, stdlib)"
    )
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        groups = [build_variants(Path(tmp))] if args.ours_only else build_groups(Path(tmp))
        runs = {name: 0 for group in groups for name in group}
        for number, variants in enumerate(groups, 1):
            samples = measure(variants, args.rounds, args.requests)
            bare = statistics.median(samples[BARE])
            for name, values in samples.items():
                runs[name] += 1
                rows.append(
                    {
                        "group": number,
                        "variant": name,
                        "median_us": round(statistics.median(values), 2),
                        "overhead_us": round(statistics.median(values) - bare, 2),
                    }
                )
        # every writer wrote one line per request: check, so no variant wins by losing lines
        for label, path in (
            (FLOOR_WITH_WRITER, Path(tmp) / "floor.jsonl"),
            ("stdlib QueueHandler + orjson line", Path(tmp) / "stdlib.jsonl"),
            ("structlog (perf recipe: orjson, BytesLogger, sync)", Path(tmp) / "structlog.jsonl"),
            ("OpenTelemetry logs SDK (batch)", Path(tmp) / "otel.jsonl"),
            ("loguru (enqueue, serialize)", Path(tmp) / "loguru.jsonl"),
            (KEEP_ALL, Path(tmp) / "1.0" / "events.jsonl"),
        ):
            expected = runs.get(label, 0) * (500 + args.rounds * args.requests)
            if label in runs and _lines(path) != expected:
                sys.exit(f"{label} wrote {_lines(path)} lines, expected {expected}")
    if args.json:
        print(json.dumps({"python": sys.version.split()[0], "cpus": os.cpu_count(), "rows": rows}))
        return
    for number in sorted({row["group"] for row in rows}):
        title = "our variants" if number == 1 else "other libraries, in rounds of their own"
        print(f"\n{title}\n{'variant':<52} {'µs/request':>11} {'overhead µs':>12}")
        for row in rows:
            if row["group"] == number:
                print(f"{row['variant']:<52} {row['median_us']:>11.2f} {row['overhead_us']:>12.2f}")


if __name__ == "__main__":
    main()
