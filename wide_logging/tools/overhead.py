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
import contextlib
import gc
import inspect
import math
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

#: Passes over the requests in a round (fixed: a round's median, which pytest-benchmark
#: stores and compares between runs, is then the same amount of work every run).
PASSES = 20
#: Rounds needed to judge at all.
MIN_ROUNDS = 5


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
            request = spec
        elif isinstance(spec, str):
            request = cls(path=spec)
        elif isinstance(spec, tuple) and 1 <= len(spec) <= 4:
            request = cls(*spec)
        else:
            msg = (
                "a request is a path, a (method, path[, headers[, body]]) tuple or a "
                f"Request, got {type(spec).__name__}"
            )
            raise TypeError(msg)
        if not isinstance(request.path, str) or not isinstance(request.body, bytes):
            msg = f"a request's path is text and its body bytes: {request!r}"
            raise TypeError(msg)
        return request


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

    def describe(self, *, ratios: bool = False) -> str:
        low, high = _quartiles(self.ratios) if ratios else self.spread_us
        middle = f"{low:.3f} to {high:.3f}" if ratios else f"{low:+.1f} to {high:+.1f} µs"
        return (
            f"bare {self.bare_us:.1f} µs, instrumented {self.instrumented_us:.1f} µs per request: "
            f"{self.overhead_us:+.1f} µs, ratio {self.ratio:.3f} (rounds' middle half "
            f"{middle}; {self.rounds} rounds)"
        )

    def assert_within(self, *, us: float | None = None, percent: float | None = None) -> None:
        """Fail when wide_logging adds more than ``us`` µs (or ``percent`` %) per request;
        skip, saying so, when the rounds' spread straddles the limit."""
        import pytest

        if (us is None) == (percent is None):
            msg = "assert_within takes one limit: us=... or percent=..."
            raise ValueError(msg)
        limit_given = us if us is not None else percent
        assert limit_given is not None
        if not (math.isfinite(limit_given) and limit_given >= 0):
            msg = f"assert_within's limit must be a number >= 0, got {limit_given!r}"
            raise ValueError(msg)
        if not self.judged:
            return  # --benchmark-disable: the requests ran once, nothing was timed
        if us is not None:
            values, limit, unit = self.differences_us, us, f"{us:g} µs"
        else:
            assert percent is not None
            values, limit, unit = self.ratios, 1 + percent / 100, f"{percent:g}%"
        ratios = percent is not None
        if len(values) < MIN_ROUNDS:
            pytest.skip(
                f"too few rounds to judge against {unit} ({len(values)}, at least "
                f"{MIN_ROUNDS}): {self.describe(ratios=ratios)}"
            )
        low, high = _quartiles(values)
        if high <= limit:
            return
        if low > limit:
            pytest.fail(
                f"wide_logging adds more than {unit} per request: {self.describe(ratios=ratios)}"
            )
        pytest.skip(f"too noisy to judge against {unit}: {self.describe(ratios=ratios)}")


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
        passes: int = PASSES,
    ) -> Overhead:
        """Time ``requests`` through ``app`` and through ``instrumented`` (default: ``app``
        behind our middleware, with ``handler`` — a WideEventHandler, or a dict of its
        options — else a handler writing to a file in the test's temporary folder); each
        round sends them ``passes`` times through each. Once per test (pytest-benchmark
        times one thing per test)."""
        if isinstance(requests, (str, bytes)) or not requests:
            msg = "measure() takes a list of requests, e.g. ['/orders/9']"
            raise TypeError(msg)
        if not (isinstance(rounds, int) and 1 <= rounds <= 100_000):
            msg = f"rounds must be a whole number from 1 to 100,000, got {rounds!r}"
            raise ValueError(msg)
        if not (isinstance(passes, int) and 1 <= passes <= 100_000):
            msg = f"passes must be a whole number from 1 to 100,000, got {passes!r}"
            raise ValueError(msg)
        sending = [Request.of(spec) for spec in requests]
        own_handler = None
        if instrumented is None:
            instrumented, own_handler = self._instrument(app, handler)
        elif handler is not None:
            msg = "handler= configures the instrumentation measure() adds: not with instrumented="
            raise ValueError(msg)
        try:
            state: dict[str, Any] = {}  # the lifespan's state, shared as one server's
            with (
                served(app, state) as run_bare,
                served(instrumented, state, started_with=app) as run_instrumented,
            ):
                return self._measure(run_bare, run_instrumented, sending, rounds, passes)
        finally:
            if own_handler is not None:
                own_handler.close()

    def _instrument(self, app: Any, handler: Any) -> tuple[Any, Any]:
        from ..handler import WideEventHandler
        from ..middleware import WideEventMiddleware, WideEventWSGIMiddleware

        own = None
        if handler is None or isinstance(handler, Mapping):
            options = dict(handler or {})
            options.setdefault("sink", f"file:{self.folder}/wide-logs/events.jsonl")
            handler = own = WideEventHandler(**options)
        elif not isinstance(handler, WideEventHandler):
            msg = f"handler is a WideEventHandler or a dict of its options, got {handler!r}"
            raise TypeError(msg)
        middleware = WideEventMiddleware if is_asgi(app) else WideEventWSGIMiddleware
        return middleware(app, handler=handler), own

    def _measure(
        self,
        run_bare: Runner,
        run_instrumented: Runner,
        requests: list[Request],
        rounds: int,
        passes: int,
    ) -> Overhead:
        benchmark = self.benchmark
        benchmark.group = benchmark.group or "wide_logging overhead"
        if getattr(benchmark, "disabled", False):  # quick mode: each request once, untimed
            answers: list[list[int]] = []

            def bare_once() -> None:
                answers.append(run_bare(requests, 1))

            benchmark.pedantic(
                lambda: answers.append(run_instrumented(requests, 1)), setup=bare_once
            )
            _same_answers(*answers)
            return Overhead(0.0, 0.0, 0, [], [], judged=False)
        _same_answers(run_bare(requests, 1), run_instrumented(requests, 1))
        timer: Callable[[], float] = getattr(benchmark, "_timer", None) or time.perf_counter
        # the instrumented round runs without the garbage collector under
        # --benchmark-disable-gc: the bare one must too, or they are not alike
        no_gc = bool(getattr(benchmark, "_disable_gc", False))
        bare_times: list[float] = []

        def bare_round() -> None:
            collecting = gc.isenabled()
            if no_gc:
                gc.disable()
            try:
                start = timer()
                run_bare(requests, passes)
                bare_times.append(timer() - start)
            finally:
                if no_gc and collecting:
                    gc.enable()

        warmup = 2
        benchmark.pedantic(
            lambda: run_instrumented(requests, passes),
            setup=bare_round,
            rounds=rounds,
            warmup_rounds=warmup,
        )
        per_round = passes * len(requests)
        data = _round_times(benchmark)
        # the set-ups of the warm-up rounds come first (and --benchmark-cprofile adds one
        # after the timed rounds): round n's bare time is set-up warmup + n
        bare_times = bare_times[warmup : warmup + len(data)]
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


def _same_answers(bare: list[int], instrumented: list[int]) -> None:
    if bare != instrumented:
        msg = f"the apps answered differently: bare {bare}, instrumented {instrumented}"
        raise AssertionError(msg)


def is_asgi(app: Any) -> bool:
    """An ASGI app is a coroutine function (or has one as ``__call__``); else WSGI."""
    return inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(type(app).__call__)


Runner = Callable[[list[Request], int], list[int]]


@contextlib.contextmanager
def served(app: Any, state: dict[str, Any], started_with: Any = None) -> Iterator[Runner]:
    """A function sending requests ``passes`` times through ``app`` (returning the statuses
    of the last pass). An ASGI app gets an event loop of its own, and its lifespan started
    and stopped around it as a server would (unless it wraps ``started_with``, already
    started); a WSGI app is called as it is."""
    if not is_asgi(app):

        def wsgi_all(requests: list[Request], passes: int) -> list[int]:
            statuses: list[int] = []
            for _ in range(passes):
                statuses = [wsgi_call(app, r) for r in requests]
            return statuses

        yield wsgi_all
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        msg = "measure() runs the app in an event loop of its own: call it from a non-async test"
        raise RuntimeError(msg)
    loop = asyncio.new_event_loop()
    try:
        shares = started_with is not None and getattr(app, "app", None) is started_with
        lifespan = None if shares else loop.run_until_complete(_start(app, state))

        async def asgi_all(requests: list[Request], passes: int) -> list[int]:
            statuses: list[int] = []
            for _ in range(passes):
                statuses = [await asgi_call(app, r, state) for r in requests]
            return statuses

        yield lambda requests, passes: loop.run_until_complete(asgi_all(requests, passes))
        if lifespan is not None:
            loop.run_until_complete(_stop(*lifespan))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


Lifespan = tuple[
    "asyncio.Task[Any]", "asyncio.Queue[dict[str, Any]]", "asyncio.Queue[dict[str, Any]]"
]


async def _start(app: Any, state: dict[str, Any]) -> Lifespan | None:
    """The app's lifespan startup, as uvicorn's "auto" mode: an app that does not take the
    lifespan scope (it raises, or returns without answering) is served without."""
    to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": state}
    task = asyncio.ensure_future(app(scope, to_app.get, from_app.put))
    await to_app.put({"type": "lifespan.startup"})
    answer = asyncio.ensure_future(from_app.get())
    await asyncio.wait({answer, task}, return_when=asyncio.FIRST_COMPLETED)
    if not answer.done():  # the app ended without a word: no lifespan
        answer.cancel()
        if not task.cancelled():
            task.exception()  # (retrieved: an app without lifespan raises here)
        return None
    message = answer.result()
    if message["type"] == "lifespan.startup.failed":
        msg = f"the app's lifespan startup failed: {message.get('message', '')}"
        raise RuntimeError(msg)
    return task, to_app, from_app


async def _stop(
    task: asyncio.Task[Any],
    to_app: asyncio.Queue[dict[str, Any]],
    from_app: asyncio.Queue[dict[str, Any]],
) -> None:
    await to_app.put({"type": "lifespan.shutdown"})
    try:
        await asyncio.wait_for(from_app.get(), timeout=10)
    finally:
        if not task.done():
            task.cancel()


async def asgi_call(app: Any, request: Request, state: dict[str, Any] | None = None) -> int:
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
        "state": dict(state or {}),
    }
    status: int | None = None
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:  # the client stays connected, as a server's would until it has the answer
            await asyncio.Event().wait()
        sent = True
        return {"type": "http.request", "body": request.body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])

    await app(scope, receive, send)
    if status is None:
        msg = f"the app sent no response to {request.method} {request.path}"
        raise AssertionError(msg)
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


def _round_times(benchmark: Any) -> list[float]:
    stats = getattr(getattr(benchmark, "stats", None), "stats", None)
    return list(getattr(stats, "data", None) or [])


def _quartiles(values: Sequence[float]) -> tuple[float, float]:
    if len(values) < 2:
        only = values[0] if values else 0.0
        return only, only
    low, _, high = statistics.quantiles(values, n=4)
    return low, high
