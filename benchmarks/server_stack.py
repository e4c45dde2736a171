"""The whole server stack per request, without sockets or a load generator.

uvicorn's own HTTP protocol (h11, and httptools when installed) is fed raw HTTP/1.1
requests in this process through an in-memory transport, so each request goes through
the same parser, ASGI cycle, Starlette app and response writer as under ``uvicorn``; only
the socket calls and the event loop's polling are missing (the same for every variant).
On a noisy machine this is the steadiest way to see what the middleware costs a served
request; ``server_load.py`` measures the real thing.

Variants: the bare app (``server_apps.bare``), the app with ``WideEventMiddleware`` and
the default policy (``server_apps.wide``), and the same without echoing the request id
(``server_apps.wide_no_echo``: h11 validates every response header in Python).

    python benchmarks/server_stack.py [--rounds 15] [--requests 2000]
    python benchmarks/server_stack.py --instructions     # callgrind; needs valgrind
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from instructions import callgrind_instructions  # noqa: E402

#: Apps of server_apps.py measured by default; --apps picks others (the first is the base).
VARIANTS = ("bare", "wide", "wide_no_echo")
REQUEST = b"GET /items/42 HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench/1.0\r\nAccept: */*\r\n\r\n"


class MemoryTransport(asyncio.Transport):
    """Takes what the protocol writes; resolves ``done`` when a response body has ended."""

    def __init__(self) -> None:
        super().__init__()
        self.done: asyncio.Future[None] | None = None
        self._closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def write(self, data: bytes | bytearray | memoryview) -> None:
        # Every response of the bench app ends with its body, "ok"; keep-alive, no chunks.
        if bytes(data).endswith(b"ok") and self.done is not None and not self.done.done():
            self.done.set_result(None)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


class ServerDriver:
    """One keep-alive connection of a uvicorn protocol, driven request by request."""

    def __init__(self, app: Any, http: str, loop: asyncio.AbstractEventLoop | None = None) -> None:
        from uvicorn.config import Config
        from uvicorn.server import ServerState

        if http == "httptools":
            from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Protocol
        else:
            from uvicorn.protocols.http.h11_impl import H11Protocol as Protocol  # type: ignore[assignment]
        self.loop = loop or asyncio.new_event_loop()
        config = Config(app=app, lifespan="off", access_log=False, log_level="warning")
        config.load()
        self.protocol = Protocol(
            config=config, server_state=ServerState(), app_state={}, _loop=self.loop
        )
        self.transport = MemoryTransport()
        self.protocol.connection_made(self.transport)

    async def _requests(self, count: int) -> None:
        for _ in range(count):
            self.transport.done = self.loop.create_future()
            self.protocol.data_received(REQUEST)
            await self.transport.done

    def run(self, count: int) -> None:
        self.loop.run_until_complete(self._requests(count))


def protocols() -> list[str]:
    found = ["h11"]
    if importlib.util.find_spec("httptools") is not None:
        found.append("httptools")
    return found


def drivers(http: str, names: tuple[str, ...] = VARIANTS) -> dict[str, ServerDriver]:
    import server_apps

    return {name: ServerDriver(getattr(server_apps, name), http) for name in names}


def timed(rounds: int, requests: int, names: tuple[str, ...], collect: bool) -> None:
    for http in protocols():
        variants = drivers(http, names)
        for driver in variants.values():
            driver.run(300)  # warm up
        if not collect:
            gc.disable()  # to show the garbage collector is not what the difference is
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(rounds):
            for name, driver in variants.items():
                started = time.perf_counter()
                driver.run(requests)
                samples[name].append((time.perf_counter() - started) / requests * 1e6)
        gc.enable()
        bare = statistics.median(samples[names[0]])
        print(
            f"uvicorn ({http}), {rounds} alternated rounds of {requests:,} requests"
            + ("" if collect else ", garbage collector off")
        )
        for name, values in samples.items():
            median = statistics.median(values)
            print(
                f"  {name:<17} {median:8.2f} µs/request  +{median - bare:6.2f}  "
                f"throughput ratio {bare / median:.3f}"
            )


def _run_one(variant: str, http: str, requests: int) -> None:
    """A measured process (under callgrind): warm up, then ``requests`` requests."""
    driver = drivers(http, (variant,))[variant]
    driver.run(200)
    driver.run(requests)


def _instructions(variant: str, http: str, requests: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "WIDE_LOGGING_SINK": f"file:{tmp}/events.jsonl"}
        return callgrind_instructions([__file__, "--run", variant, http, str(requests)], env)


def instructions(names: tuple[str, ...]) -> None:
    for http in protocols():
        counts = {
            name: (_instructions(name, http, 1300) - _instructions(name, http, 300)) / 1000
            for name in names
        }
        bare = counts[names[0]]
        print(f"uvicorn ({http}), instructions per request (callgrind, 1,300 - 300 requests)")
        for name, count in counts.items():
            print(
                f"  {name:<17} {count:10,.0f}  +{count - bare:8,.0f}  "
                f"throughput ratio {bare / count:.3f}",
                flush=True,
            )


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--run":
        _run_one(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--instructions", action="store_true")
    parser.add_argument("--apps", default=",".join(VARIANTS), help="apps of server_apps.py")
    parser.add_argument("--no-gc", action="store_true", help="time with the collector off")
    args = parser.parse_args()
    names = tuple(args.apps.split(","))
    if args.instructions:
        instructions(names)
        return
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("WIDE_LOGGING_SINK", f"file:{tmp}/events.jsonl")
        timed(args.rounds, args.requests, names, collect=not args.no_gc)


if __name__ == "__main__":
    main()
