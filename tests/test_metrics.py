"""Metrics after known traffic: every number checked, and the Prometheus view of them."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from conftest import ControlledSink, wait_for
from wide_logging import WideEventHandler, WideEventMiddleware, metrics
from wide_logging.prometheus import metrics_asgi_app, metrics_wsgi_app, register
from wide_logging.testing import MemorySink


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    """Only this test's handlers count (other tests' may linger until collected)."""
    metrics._counter_sources.clear()
    metrics._gauge_sources.clear()
    yield
    metrics._counter_sources.clear()
    metrics._gauge_sources.clear()


async def ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def fail(request: Request) -> PlainTextResponse:
    raise RuntimeError("boom")


async def slow(request: Request) -> PlainTextResponse:
    await asyncio.sleep(0.15)  # well past slow_ms: a busy machine can stretch /ok requests
    return PlainTextResponse("slow")


def app_for(handler: WideEventHandler) -> Starlette:
    app = Starlette(
        routes=[
            Route("/ok", ok),
            Route("/fail", fail),
            Route("/slow", slow),
            Route("/pay", ok),
            Mount("/metrics", metrics_asgi_app(CollectorRegistry())),
        ]
    )
    app.add_middleware(WideEventMiddleware, handler=handler)
    return app


def test_every_number_after_known_traffic(make_handler: Callable[..., WideEventHandler]) -> None:
    sink = MemorySink()
    handler = make_handler(
        sink=sink,
        sampling={"normal_rate": 0.3, "slow_ms": 100, "critical_routes": ["/pay"]},
        batch_size=25,
        queue_size=5000,
    )
    ids = [f"known-{n}" for n in range(150)]
    expected_normal_kept = sum(handler.sampler.hit(i) for i in ids)
    with TestClient(app_for(handler), raise_server_exceptions=False) as client:
        for request_id in ids:
            client.get("/ok", headers={"x-request-id": request_id})
        for n in range(7):
            client.get("/fail", headers={"x-request-id": f"fail-{n}"})
        for n in range(4):
            client.get("/slow", headers={"x-request-id": f"slow-{n}"})
        for n in range(5):
            client.get("/pay", headers={"x-request-id": f"pay-{n}"})
    assert handler.flush(10)
    snap = metrics.snapshot()
    kept = expected_normal_kept + 7 + 4 + 5
    assert snap["events"] == {
        "seen": 166,
        "kept": {"normal": expected_normal_kept, "error": 7, "slow": 4, "critical_route": 5},
        "sampled_out": {"normal": 150 - expected_normal_kept},
        "lost": {},
        "normal_retention": expected_normal_kept / 150,
        "correction": {},
    }
    assert snap["queue"] == {
        "depth": 0,
        "capacity": 5000,
        "bytes": 0,
        "capacity_bytes": 32 * 1024 * 1024,
    }
    [(name, sink_numbers)] = snap["sinks"].items()
    assert name == "memory:"
    assert sink_numbers["written"] == kept == len(sink.events)
    assert sink_numbers["batches"] == len(sink.batches)
    assert sink_numbers["circuit_open"] == 0
    assert sink_numbers["write_seconds"] >= 0
    assert "retries" not in sink_numbers
    assert (snap["spooled"], snap["replayed"], snap["dropped"]) == ({}, 0, {})


def test_failures_retries_breaker_spool_and_replay_are_counted(
    make_handler: Callable[..., WideEventHandler],
) -> None:
    sink = ControlledSink("flaky")
    sink.failing = True
    handler = make_handler(
        sink=sink,
        sampling={"normal_rate": 1.0},
        batch_size=10,
        max_retries=2,
        retry_backoff=0.001,
        breaker_cooldown=0.3,
    )
    for n in range(10):
        handler.submit(handler.new_event(request_id=f"f-{n}"))
    assert handler.flush(10)
    snap = metrics.snapshot()
    assert snap["sinks"]["flaky"] == {"retries": 2, "failed_batches": 1, "circuit_open": 1}
    assert snap["spooled"] == {"sink_failure": 10}
    sink.failing = False
    wait_for(lambda: metrics.snapshot()["replayed"] == 10, what="replay after recovery")
    snap = metrics.snapshot()
    assert snap["sinks"]["flaky"]["written"] == 10
    assert snap["sinks"]["flaky"]["circuit_open"] == 0


def test_queue_overflow_is_counted_and_the_gauges_show_the_queue(
    make_handler: Callable[..., WideEventHandler],
) -> None:
    sink = ControlledSink("stuck")
    sink.release.clear()
    handler = make_handler(sink=sink, sampling={"normal_rate": 1.0}, batch_size=1, queue_size=5)
    handler.submit(handler.new_event(request_id="first"))
    wait_for(lambda: sink.attempts == 1, what="the writer to block")
    for n in range(8):
        handler.submit(handler.new_event(request_id=f"q-{n}"))
    snap = metrics.snapshot()
    assert snap["queue"]["depth"] == 5
    assert snap["queue"]["bytes"] > 0
    assert snap["dropped"] == {"queue_overflow": 3}
    sink.release.set()
    assert handler.flush(10)


def prometheus_values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_prometheus_output_matches_the_snapshot(
    make_handler: Callable[..., WideEventHandler],
) -> None:
    handler = make_handler(sink=MemorySink(), sampling={"normal_rate": 0.5})
    for n in range(60):
        handler.submit(handler.new_event(request_id=f"p-{n}"))
    handler.submit(handler.new_event(request_id="one-more"))
    assert handler.flush(10)
    registry = CollectorRegistry()
    register(registry)
    register(registry)  # idempotent
    values = prometheus_values(generate_latest(registry).decode())
    snap = metrics.snapshot()
    assert values[("wide_logging_events_seen_total", ())] == snap["events"]["seen"] == 61
    for rule, count in snap["events"]["kept"].items():
        assert values[("wide_logging_events_kept_total", (("rule", rule),))] == count
    for rule, count in snap["events"]["sampled_out"].items():
        assert values[("wide_logging_events_sampled_out_total", (("rule", rule),))] == count
    assert (
        values[("wide_logging_sink_written_events_total", (("sink", "memory:"),))]
        == (snap["sinks"]["memory:"]["written"])
    )
    assert values[("wide_logging_queue_capacity_events", ())] == 10_000
    assert values[("wide_logging_replayed_events_total", ())] == 0
    assert values[("wide_logging_sink_circuit_open", (("sink", "memory:"),))] == 0
    assert values[("wide_logging_normal_retention_ratio", ())] == pytest.approx(
        snap["events"]["normal_retention"]
    )


def test_metrics_endpoints_for_asgi_and_wsgi(make_handler: Callable[..., WideEventHandler]) -> None:
    handler = make_handler(sink=MemorySink(), sampling={"normal_rate": 1.0})
    with TestClient(app_for(handler)) as client:
        client.get("/ok")
        handler.flush(5)
        response = client.get("/metrics/")
    assert response.status_code == 200
    values = prometheus_values(response.text)
    assert values[("wide_logging_events_seen_total", ())] >= 1

    from flask import Flask
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    flask_app = Flask("m")
    flask_app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        flask_app.wsgi_app, {"/metrics": metrics_wsgi_app(CollectorRegistry())}
    )
    text = flask_app.test_client().get("/metrics").get_data(as_text=True)
    assert prometheus_values(text)[("wide_logging_events_seen_total", ())] >= 1


def test_periodic_metrics_event_goes_through_the_pipeline(
    make_handler: Callable[..., WideEventHandler],
) -> None:
    sink = MemorySink()
    handler = make_handler(
        sink=sink, sampling={"normal_rate": 1.0}, metrics_events=True, metrics_interval=1
    )
    handler.submit(handler.new_event(request_id="before-tick"))
    event = wait_for(
        lambda: next((e for e in sink.events if e["kind"] == "metrics"), None),
        what="a kind: metrics event",
    )
    assert event["sampling"] == {"rule": "metrics", "rate": 1.0}
    assert event["metrics"]["events"]["seen"] >= 1
    assert event["metrics"]["sinks"][0]["name"] == "memory:"
    assert event["service"]["name"]


def test_metrics_events_are_off_by_default_and_validated(
    make_handler: Callable[..., WideEventHandler],
) -> None:
    assert make_handler(sink=MemorySink()).pipeline.tick is None
    with pytest.raises(ValueError, match="metrics_interval"):
        make_handler(sink=MemorySink(), metrics_events=True, metrics_interval=0)


def test_closed_handler_leaves_the_registry(make_handler: Callable[..., WideEventHandler]) -> None:
    handler = make_handler(sink=MemorySink(), sampling={"normal_rate": 1.0})
    handler.submit(handler.new_event())
    assert metrics.snapshot()["events"]["seen"] == 1
    handler.close()
    assert metrics.snapshot()["events"]["seen"] == 0
    assert metrics.snapshot()["sinks"] == {}


WORKER = """
import os, sys, time
from wide_logging import WideEventHandler
from wide_logging.prometheus import start_multiprocess_sync
handler = WideEventHandler(sink="memory:", sampling={{"normal_rate": 1.0}})
for n in range({count}):
    handler.submit(handler.new_event(request_id=f"w{{os.getpid()}}-{{n}}"))
handler.flush(10)
stop = start_multiprocess_sync(interval=0.05)
time.sleep(0.2)
stop.set()
time.sleep(0.2)
"""


@pytest.mark.slow
def test_multiprocess_mode_adds_up_the_workers(tmp_path: Path) -> None:
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    for count in (30, 12):
        subprocess.run(
            [sys.executable, "-c", textwrap.dedent(WORKER.format(count=count))],
            env=env,
            check=True,
            timeout=60,
            cwd=tmp_path,
        )
    reader = textwrap.dedent(
        """
        from prometheus_client import CollectorRegistry, generate_latest, multiprocess
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        print(generate_latest(registry).decode())
        """
    )
    text = subprocess.run(
        [sys.executable, "-c", reader], env=env, check=True, capture_output=True, text=True
    ).stdout
    values = prometheus_values(text)
    assert values[("wide_logging_events_seen_total", ())] == 42
    assert values[("wide_logging_events_kept_total", (("rule", "normal"),))] == 42


def test_stats_command_reads_a_live_metrics_endpoint(
    make_handler: Callable[..., WideEventHandler],
) -> None:
    handler = make_handler(sink=MemorySink(), sampling={"normal_rate": 1.0})
    for n in range(9):
        handler.submit(handler.new_event(request_id=f"s-{n}"))
    handler.flush(5)

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = make_server("127.0.0.1", 0, metrics_wsgi_app(CollectorRegistry()), handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        import contextlib
        import io

        from wide_logging.tools.cli import main

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["stats", "--url", f"http://127.0.0.1:{server.server_port}/metrics"]) == 0
    finally:
        server.shutdown()
    table = out.getvalue()
    assert "wide_logging_events_seen_total" in table
    line = next(r for r in table.splitlines() if r.startswith("wide_logging_events_seen_total"))
    assert line.split()[-1] == "9"


def test_a_refused_annotation_from_a_signal_handler_never_waits_on_a_lock() -> None:
    """The app's signal handler annotates a library field (refused, counted) while its
    own thread is inside a counter's first increment, holding the metrics lock: refusals
    are tallied without any lock, so the thread goes on."""
    script = textwrap.dedent(
        """
        import os, signal, sys
        from wide_logging import WideEventHandler
        from wide_logging.testing import MemorySink
        handler = WideEventHandler(sink=MemorySink(), sampling={"normal_rate": 1.0})
        event = handler.new_event(request_id="a" * 32)
        signal.signal(signal.SIGUSR1, lambda *a: event.annotate(kind="timeout"))
        def tracer(frame, what, arg):
            if what == "call" and frame.f_code.co_name == "__missing__":
                sys.settrace(None)
                signal.raise_signal(signal.SIGUSR1)  # arrives while inc() holds the lock
        sys.settrace(tracer)
        handler.metrics.inc("dropped.queue_overflow")  # a counter's first increment
        sys.settrace(None)
        print(handler.metrics.get("annotations_refused.kind"), flush=True)
        os._exit(0)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "1", result.stderr
