"""Where a request's overhead goes: the middleware around a trivial ASGI app, and the
pieces of the kept path one by one.

1. The middleware alone (no framework): a bare ASGI app that sets a route and sends a
   two-header response, wrapped by ``WideEventMiddleware`` with the event dropped, kept
   and written to a sink that does nothing, and kept and written to the file sink.
   Variants alternated in rounds; the minimum per variant (the least disturbed round).
2. The kept path's steps, each timed alone (``timeit``, best of 7): building the event
   dict, encoding it, handing it off, and the parts of each.

    python benchmarks/breakdown.py [--rounds 9] [--requests 5000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import timeit
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from conftest import DirectClient  # the same requests as compare.py sends
from wide_logging import WideEventHandler, WideEventMiddleware
from wide_logging._ids import match_request_id, new_request_id, uuid7_ms
from wide_logging.fields import iso_ms

START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-length", b"2"), (b"content-type", b"text/plain")],
}
BODY = {"type": "http.response.body", "body": b"ok"}


class _Route:
    path = "/items/{item_id}"


ROUTE = _Route()


async def trivial_app(scope: Any, receive: Any, send: Any) -> None:
    scope["route"] = ROUTE
    await send(START)
    await send(BODY)


class NullSink:
    name = "null:"

    def write(self, batch: Sequence[bytes]) -> None:
        pass

    def close(self) -> None:
        pass


def middleware_rounds(rounds: int, requests: int, tmp: str) -> None:
    handlers: dict[str, WideEventHandler] = {}
    apps: dict[str, Any] = {"bare ASGI app": trivial_app}
    for name, rate, sink in (
        ("dropped", 0.0, None),
        ("kept, null sink", 1.0, NullSink()),
        ("kept, file sink", 1.0, None),
    ):
        handler = WideEventHandler(
            sink=sink or f"file:{tmp}/{rate}/events.jsonl",
            sampling={"normal_rate": rate},
            queue_size=10**7,
            queue_bytes=2**34,
        )
        handlers[name] = handler
        apps[name] = WideEventMiddleware(trivial_app, handler=handler)

    clients = {name: DirectClient(app) for name, app in apps.items()}
    best = {name: float("inf") for name in apps}
    for _ in range(rounds):
        for name, client in clients.items():
            started = time.perf_counter()
            client.run(requests)
            if name in handlers:
                handlers[name].flush(60)  # the writer's work counts
            best[name] = min(best[name], (time.perf_counter() - started) / requests * 1e6)
    for client in clients.values():
        client.close()
    base = best["bare ASGI app"]
    print(f"The middleware alone: {rounds} alternated rounds of {requests:,} requests, best round")
    for name, micros in best.items():
        print(f"  {name:<18} {micros:6.2f} µs/request   +{micros - base:5.2f}")
    for handler in handlers.values():
        handler.close()


def steps(tmp: str) -> None:
    handler = WideEventHandler(
        sink=f"file:{tmp}/steps/events.jsonl",
        sampling={"normal_rate": 1.0},
        queue_size=10**7,
        queue_bytes=2**34,
        batch_size=10**6,  # the writer stays asleep: hand-offs only
    )
    event = handler.new_event("http.request", "bench-123")
    event.method, event.path, event.route, event.status = "GET", "/items/42", ROUTE.path, 200
    event.client_address, event.user_agent = "127.0.0.1", "bench/1.0"
    decision = handler.sampler.decide("bench-123")
    resource = handler.resource()
    fields = event.finalize(resource, decision.fields)
    data = handler.serializer.encode(fields)
    pipeline = handler.pipeline
    pieces: list[tuple[str, Any]] = [
        ("open an event (id checked)", lambda: handler.new_event("http.request", "bench-1")),
        ("generate a request id", new_request_id),
        ("check an incoming id", lambda: match_request_id("bench-123")),
        ("sampling decision", lambda: handler.sampler.decide("bench-123", False, 200, 1.0)),
        (
            "build the event dict",
            lambda: event.finalize(resource, decision.fields),
        ),
        ("  of which: event id", lambda: uuid7_ms(1_764_236_000_123)),
        ("  of which: timestamp", lambda: iso_ms(1_764_236_000_123)),
        ("encode (orjson)", lambda: handler.serializer.encode(fields)),
        ("hand off (queue put)", lambda: pipeline.put(data, False)),
    ]
    print("\nThe kept path, step by step (best of 7 timeit runs)")
    for label, call in pieces:
        number = 20_000
        best = float("inf")
        for _ in range(7):
            best = min(best, timeit.timeit(call, number=number))
            handler.flush(60)  # the hand-offs' queue written out between runs
        print(f"  {label:<30} {best / number * 1e9:7.0f} ns")
    handler.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--requests", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        middleware_rounds(args.rounds, args.requests, tmp)
        steps(tmp)


if __name__ == "__main__":
    main()
