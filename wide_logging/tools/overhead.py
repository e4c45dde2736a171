"""What wide_logging costs an app per request, measured in a test: the app called in
process bare and instrumented, alternated round by round, timed by pytest-benchmark.

Each round runs the requests through the bare app (pytest-benchmark's ``setup``, timed here
with the benchmark's own timer) and then through the instrumented one (the benchmarked
target: its statistics, history, ``--benchmark-autosave`` and ``--benchmark-compare`` are
pytest-benchmark's). The result is the median per request of each side, the overhead and
the ratio, and the spread of the per-round differences; ``assert_within`` judges it.

A machine that drifts while the test runs (a shared CI runner) makes the rounds disagree:
when the spread leaves the threshold inside it, the outcome is "too noisy to judge" (the
test is skipped and says why), not a failure that would pass when run again.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

#: A round lasts at least this long (requests are repeated to fill it).
ROUND_SECONDS = 0.002


@dataclass(frozen=True)
class Request:
    """One request to send: method, path (with its query), headers, body."""

    method: str = "GET"
    path: str = "/"
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @classmethod
    def of(cls, spec: Request | str | tuple[Any, ...]) -> Request:
        """``"/items/1"``, ``("POST", "/cart", {"x": "y"}, b"{}")`` or a Request."""
        if isinstance(spec, Request):
            return spec
        if isinstance(spec, str):
            return cls(path=spec)
        return cls(*spec)


@dataclass
class Overhead:
    """Per request, in µs: the bare app, the instrumented one, and what the rounds say."""

    bare_us: float
    instrumented_us: float
    rounds: int
    #: Per round, instrumented less bare (µs per request), and instrumented / bare.
    differences_us: list[float]
    ratios: list[float]
    judged: bool = True

    @property
    def overhead_us(self) -> float:
        return self.instrumented_us - self.bare_us

    @property
    def ratio(self) -> float:
        return self.instrumented_us / self.bare_us if self.bare_us else math.inf

    @property
    def spread_us(self) -> tuple[float, float]:
        """The middle half of the per-round differences (25th to 75th percentile)."""
        return _quartiles(self.differences_us)

    def describe(self) -> str:
        low, high = self.spread_us
        return (
            f"bare {self.bare_us:.1f} µs, instrumented {self.instrumented_us:.1f} µs per request: "
            f"+{self.overhead_us:.1f} µs, ratio {self.ratio:.3f} (rounds' middle half "
            f"+{low:.1f} to +{high:.1f} µs; {self.rounds} rounds)"
        )

    def assert_within(self, *, us: float | None = None, percent: float | None = None) -> None:
        """Fail when wide_logging adds more than ``us`` µs (or ``percent`` %) per request;
        skip, saying so, when the rounds' spread straddles the limit."""
        import pytest

        if (us is None) == (percent is None):
            msg = "assert_within takes one limit: us=... or percent=..."
            raise ValueError(msg)
        if not self.judged:
            return  # --benchmark-disable: the requests ran once, nothing was timed
        if us is not None:
            values, limit, unit = self.differences_us, us, f"{us:g} µs"
        else:
            assert percent is not None
            values, limit, unit = self.ratios, 1 + percent / 100, f"{percent:g}%"
        low, high = _quartiles(values)
        if high <= limit:
            return
        if low > limit:
            pytest.fail(f"wide_logging adds more than {unit} per request: {self.describe()}")
        pytest.skip(f"too noisy to judge against {unit}: {self.describe()}")


class OverheadMeter:
    """What the ``wide_logging_overhead`` fixture gives a test (see docs/testing.md)."""

    def __init__(self, benchmark: Any, folder: Path) -> None:
        self.benchmark = benchmark
        self.folder = folder

    def measure(
        self,
        app: Any,
        requests: Sequence[Request | str | tuple[Any, ...]],
        *,
        instrumented: Any = None,
        handler: Any = None,
        rounds: int = 30,
    ) -> Overhead:
        """Time ``requests`` through ``app`` and through ``instrumented`` (default: ``app``
        behind our middleware, with ``handler`` — a WideEventHandler, or a dict of its
        options — else a handler writing to a file in the test's temporary folder)."""
        if not requests:
            msg = "measure() needs at least one request"
            raise ValueError(msg)
        sending = [Request.of(spec) for spec in requests]
        own_handler = None
        if instrumented is None:
            instrumented, own_handler = self._instrument(app, handler)
        try:
            return self._measure(app, instrumented, sending, rounds)
        finally:
            if own_handler is not None:
                own_handler.close()

    def _instrument(self, app: Any, handler: Any) -> tuple[Any, Any]:
        from ..handler import WideEventHandler
        from ..middleware import WideEventMiddleware, WideEventWSGIMiddleware

        own = None
        if not isinstance(handler, WideEventHandler):
            options = dict(handler or {})
            options.setdefault("sink", f"file:{self.folder}/wide-logs/events.jsonl")
            handler = own = WideEventHandler(**options)
        middleware = WideEventMiddleware if is_asgi(app) else WideEventWSGIMiddleware
        return middleware(app, handler=handler), own

    def _measure(
        self, bare: Any, instrumented: Any, requests: list[Request], rounds: int
    ) -> Overhead:
        run_bare, run_instrumented = caller(bare, requests), caller(instrumented, requests)
        timer: Callable[[], float] = getattr(self.benchmark, "_timer", None) or _perf_counter()
        statuses = run_bare(1), run_instrumented(1)
        if statuses[0] != statuses[1]:
            msg = f"the apps answered differently: bare {statuses[0]}, instrumented {statuses[1]}"
            raise AssertionError(msg)
        repeat = _repeat_to_fill(run_bare, timer)
        bare_times: list[float] = []

        def bare_round() -> None:
            start = timer()
            run_bare(repeat)
            bare_times.append(timer() - start)

        benchmark = self.benchmark
        benchmark.group = benchmark.group or "wide_logging overhead"
        benchmark.pedantic(
            lambda: run_instrumented(repeat), setup=bare_round, rounds=rounds, warmup_rounds=2
        )
        per_round = repeat * len(requests)
        data = _round_times(benchmark)
        if not data:  # --benchmark-disable: ran once, untimed
            return Overhead(0.0, 0.0, 0, [], [], judged=False)
        bare_times = bare_times[-len(data) :]  # (the warm-up rounds' set-ups are not kept)
        bare = [t / per_round * 1e6 for t in bare_times]
        wide = [t / per_round * 1e6 for t in data]
        result = Overhead(
            statistics.median(bare),
            statistics.median(wide),
            len(data),
            [w - b for w, b in zip(wide, bare, strict=True)],
            [w / b for w, b in zip(wide, bare, strict=True) if b > 0],
        )
        benchmark.extra_info.update(
            {
                "requests_per_round": per_round,
                "bare_us": round(result.bare_us, 3),
                "instrumented_us": round(result.instrumented_us, 3),
                "overhead_us": round(result.overhead_us, 3),
                "ratio": round(result.ratio, 4),
                "spread_us": [round(v, 3) for v in result.spread_us],
            }
        )
        return result


def is_asgi(app: Any) -> bool:
    """An ASGI app is a coroutine function (or has one as ``__call__``); else WSGI."""
    return inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(type(app).__call__)


def caller(app: Any, requests: list[Request]) -> Callable[[int], list[int]]:
    """A function sending every request ``n`` times through ``app``; it returns the
    statuses of the last pass."""
    if is_asgi(app):
        loop = asyncio.new_event_loop()

        async def all_of(times: int) -> list[int]:
            statuses: list[int] = []
            for _ in range(times):
                statuses = [await asgi_call(app, r) for r in requests]
            return statuses

        return lambda times: loop.run_until_complete(all_of(times))

    def wsgi_all(times: int) -> list[int]:
        statuses: list[int] = []
        for _ in range(times):
            statuses = [wsgi_call(app, r) for r in requests]
        return statuses

    return wsgi_all


async def asgi_call(app: Any, request: Request) -> int:
    path, _, query = request.path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in request.headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    status = 500
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": request.body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])

    await app(scope, receive, send)
    return status


def wsgi_call(app: Any, request: Request) -> int:
    import io

    path, _, query = request.path.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "CONTENT_LENGTH": str(len(request.body)),
        "wsgi.input": io.BytesIO(request.body),
    }
    for name, value in request.headers.items():
        key = name.upper().replace("-", "_")
        environ[key if key == "CONTENT_TYPE" else f"HTTP_{key}"] = value
    setup_testing_defaults(environ)
    status = [500]

    def start_response(line: str, headers: Any, exc_info: Any = None) -> Any:
        status[0] = int(line.split()[0])
        return lambda _data: None

    body = app(environ, start_response)
    try:
        for _ in body:
            pass
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return status[0]


def _repeat_to_fill(run: Callable[[int], list[int]], timer: Callable[[], float]) -> int:
    """How many passes over the requests make a round of at least ``ROUND_SECONDS``."""
    start = timer()
    run(1)
    once = max(timer() - start, 1e-7)
    return max(1, math.ceil(ROUND_SECONDS / once))


def _round_times(benchmark: Any) -> list[float]:
    stats = getattr(getattr(benchmark, "stats", None), "stats", None)
    return list(getattr(stats, "data", None) or [])


def _quartiles(values: Sequence[float]) -> tuple[float, float]:
    if len(values) < 2:
        only = values[0] if values else 0.0
        return only, only
    low, _, high = statistics.quantiles(values, n=4)
    return low, high


def _perf_counter() -> Callable[[], float]:
    import time

    return time.perf_counter
