"""The pytest plugin, as a user's test suite meets it: run by pytest itself (``pytester``)
in a subprocess, where the installed entry point loads it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from wide_logging.tools.overhead import Overhead

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.slow
DOCS = Path(__file__).parent.parent / "docs" / "testing.md"
_EXAMPLE = re.compile(r"<!-- plugin: ([\w-]+) -->\n```python\n(.*?)\n```", re.DOTALL)

APPS = """
import time

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def bare(scope, receive, send):
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def slow(scope, receive, send):  # an instrumented app that costs 300 µs a request
    deadline = time.perf_counter() + 0.0003
    while time.perf_counter() < deadline:
        pass
    await bare(scope, receive, send)


async def hello(request):
    return PlainTextResponse("hello")


shop = Starlette(routes=[Route("/hello", hello)])


def test_a_slow_instrumentation_fails(wide_logging_overhead):
    wide_logging_overhead.measure(bare, ["/"], instrumented=slow).assert_within(us=50)


def test_a_free_instrumentation_passes(wide_logging_overhead):
    wide_logging_overhead.measure(bare, ["/"], instrumented=bare).assert_within(us=50)


def test_our_middleware_on_a_starlette_app(wide_logging_overhead):
    result = wide_logging_overhead.measure(shop, ["/hello", "/missing"])
    result.assert_within(us=5000)
"""


def test_a_slow_instrumented_app_fails_with_both_timings_and_a_fast_one_passes(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_overhead=APPS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--benchmark-columns=median")
    result.assert_outcomes(passed=2, failed=1)
    output = result.stdout.str()
    failure = re.search(r"Failed: wide_logging adds more than 50 µs per request: (.*)", output)
    assert failure is not None, output
    message = failure.group(1)
    bare, instrumented, added = (float(x) for x in re.findall(r"([\d.]+) µs", message)[:3])
    assert instrumented - bare == pytest.approx(added, abs=0.15)
    assert added > 250  # the 300 µs it was made to cost
    assert re.search(
        r"ratio [\d.]+ \(rounds' middle half \+[\d.]+ to \+[\d.]+ µs; 30 rounds\)", message
    )
    assert "wide_logging overhead" in output  # pytest-benchmark's table, our group


def test_quick_mode_runs_the_requests_once_and_judges_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_overhead=APPS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--benchmark-disable")
    result.assert_outcomes(passed=3)


def test_the_results_are_kept_by_pytest_benchmark(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_overhead=APPS)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-k", "free", "--benchmark-json=out.json"
    )
    result.assert_outcomes(passed=1, deselected=2)
    import json

    [saved] = json.loads((pytester.path / "out.json").read_text())["benchmarks"]
    assert saved["group"] == "wide_logging overhead"
    assert set(saved["extra_info"]) >= {"bare_us", "instrumented_us", "overhead_us", "ratio"}
    # a round is the same work every run (what --benchmark-compare compares): 20 passes
    assert saved["extra_info"]["requests_per_round"] == 20


def test_wide_events_holds_the_tests_events(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_events="""
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from wide_logging import WideEventHandler, WideEventMiddleware, annotate


async def order(request):
    annotate(order={"id": 9})
    return PlainTextResponse("ok")


def test_events(wide_events, tmp_path):
    handler = WideEventHandler(sink=f"file:{tmp_path}/e.jsonl")
    app = Starlette(routes=[Route("/orders/9", order)])
    WideEventMiddleware.install(app, handler=handler)
    TestClient(app).get("/orders/9")
    handler.close()
    [event] = wide_events.requests()
    assert event["order"] == {"id": 9}
"""
    )
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


@pytest.mark.parametrize("name", ["fastapi", "flask", "django"])
def test_the_documented_examples_pass_as_printed(pytester: pytest.Pytester, name: str) -> None:
    examples = dict(_EXAMPLE.findall(DOCS.read_text()))
    pytester.makepyfile(**{f"test_{name}_overhead": examples[name]})
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def _overhead(differences: list[float]) -> Overhead:
    return Overhead(10.0, 10.0 + sorted(differences)[len(differences) // 2], len(differences),
                    differences, [1 + d / 10 for d in differences])  # fmt: skip


def test_rounds_straddling_the_limit_are_too_noisy_to_judge() -> None:
    noisy = _overhead([10, 40, 60, 90] * 5)  # middle half 40..60 µs, the limit 50 inside
    with pytest.raises(pytest.skip.Exception, match="too noisy to judge against 50 µs"):
        noisy.assert_within(us=50)
    _overhead([10, 20, 30] * 5).assert_within(us=50)
    with pytest.raises(pytest.fail.Exception, match="adds more than 50 µs"):
        _overhead([60, 70, 80] * 5).assert_within(us=50)
    with pytest.raises(pytest.fail.Exception, match="adds more than 100%"):
        _overhead([20, 30, 40] * 5).assert_within(percent=100)
    with pytest.raises(ValueError, match="one limit"):
        noisy.assert_within(us=1, percent=1)


USERS_APPS = """
import contextlib
import json

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route

calls = {"bare": 0, "instrumented": 0}


async def counted(kind, scope, receive, send):
    if scope["type"] != "http":
        return  # no lifespan here: served without, as uvicorn's "auto" does
    calls[kind] += 1
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def bare(scope, receive, send):
    await counted("bare", scope, receive, send)


async def instrumented(scope, receive, send):
    await counted("instrumented", scope, receive, send)


@contextlib.asynccontextmanager
async def lifespan(app):
    yield {"db": "connected"}


async def from_state(request):
    return PlainTextResponse(request.state.db)


async def streamed(request):
    async def chunks():
        for n in range(3):
            yield f"chunk {n}".encode()

    return StreamingResponse(chunks())


shop = Starlette(routes=[Route("/db", from_state), Route("/stream", streamed)], lifespan=lifespan)


def test_quick_mode_sends_each_request_once(wide_logging_overhead):
    wide_logging_overhead.measure(bare, ["/"], instrumented=instrumented)
    assert calls == {"bare": 1, "instrumented": 1}


def test_lifespan_state_and_streaming(wide_logging_overhead):
    result = wide_logging_overhead.measure(shop, ["/db", "/stream"], rounds=5, passes=2)
    result.assert_within(us=100_000)


def test_same_app_both_sides(wide_logging_overhead):
    result = wide_logging_overhead.measure(bare, ["/"], instrumented=bare)
    assert 0.6 < result.ratio < 1.6  # the same work on both sides, whatever the flags


@pytest.mark.anyio
async def test_from_an_async_test(wide_logging_overhead):
    with pytest.raises(RuntimeError, match="call it from a non-async test"):
        wide_logging_overhead.measure(shop, ["/db"])


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.parametrize("requests", ["/orders", [{"path": "/"}], [b"/x"]])
def test_requests_of_the_wrong_shape(wide_logging_overhead, requests):
    with pytest.raises(TypeError, match="request"):
        wide_logging_overhead.measure(bare, requests)
"""


def test_what_users_meet_lifespan_streaming_flags_and_mistakes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_users=USERS_APPS)
    # (-W error: an unclosed event loop or socket would be a ResourceWarning; a test whose
    # measure() refused its arguments left pytest-benchmark's fixture unused: said, not an error)
    unused = "ignore::pytest_benchmark.logger.PytestBenchmarkWarning"
    strict = ("-p", "no:cacheprovider", "-W", "error", "-W", unused, "-k")
    # quick mode runs each request once through each app, and nothing leaks
    quick = pytester.runpytest_subprocess(*strict, "quick", "--benchmark-disable")
    quick.assert_outcomes(passed=1, deselected=6)
    timed = pytester.runpytest_subprocess(*strict, "not quick", "--benchmark-disable-gc")
    timed.assert_outcomes(passed=6, deselected=1)
    # --benchmark-only keeps the tests that measure (it picks by the fixtures named)
    only = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-k", "lifespan", "--benchmark-only"
    )
    only.assert_outcomes(passed=1, deselected=6)


def test_judging_needs_enough_rounds_and_a_sensible_limit() -> None:
    few = _overhead([1.0, 2.0])
    with pytest.raises(pytest.skip.Exception, match="too few rounds to judge"):
        few.assert_within(us=50)
    no_ratios = Overhead(0.0, 5.0, 10, [5.0] * 10, [])
    with pytest.raises(pytest.skip.Exception, match="too few rounds"):
        no_ratios.assert_within(percent=10)
    for bad in (float("nan"), -1.0):
        with pytest.raises(ValueError, match="limit"):
            _overhead([1.0] * 10).assert_within(us=bad)
