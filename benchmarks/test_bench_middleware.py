"""Per-request cost of the middleware beside the bare app, called directly as ASGI.

Each round runs 100 requests; divide the reported times by 100 for µs per request.
``docs/benchmarks.md`` has the command and the recorded numbers.
"""

from __future__ import annotations

from typing import Any

import pytest

from conftest import DirectClient, starlette_app

REQUESTS_PER_ROUND = 100


@pytest.fixture
def bench_client(request: pytest.FixtureRequest, handler_factory: Any) -> Any:
    variant = request.param
    if variant == "bare":
        app = starlette_app(None)
    elif variant == "dropped":
        app = starlette_app(handler_factory(sampling={"normal_rate": 0.0}))
    elif variant == "default":
        app = starlette_app(handler_factory())
    else:  # kept: every event encoded, queued and written by the worker thread
        app = starlette_app(handler_factory(sampling={"normal_rate": 1.0}))
    client = DirectClient(app)
    client.run(200)  # warm up: routes compiled, writer thread started
    yield client
    client.close()


@pytest.mark.parametrize("bench_client", ["bare", "dropped", "default", "kept"], indirect=True)
def test_request(benchmark: Any, bench_client: DirectClient) -> None:
    benchmark.group = "asgi request x100"
    benchmark(bench_client.run, REQUESTS_PER_ROUND)
