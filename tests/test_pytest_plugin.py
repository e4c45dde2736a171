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


def test_our_middleware_on_a_starlette_app(wide_logging_overhead, wide_events):
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
