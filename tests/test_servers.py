"""Real servers, real HTTP: uvicorn and gunicorn run the test apps as subprocesses on free
loopback ports; events are counted by id in the sink after a graceful stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from conftest import read_jsonl, wait_for
from servers import consume_process, free_port
from wide_logging import TailSampler

pytestmark = pytest.mark.slow
TESTS = Path(__file__).parent


class AppServer:
    """One server process (and its workers), started and stopped like in production."""

    def __init__(self, argv: list[str], tmp: Path, **env: str) -> None:
        self.port = free_port()
        self.tmp = tmp
        self.events = tmp / "events" / "events.jsonl"
        self.spool = tmp / "spool" / "events.jsonl"
        self.argv = [a.replace("{port}", str(self.port)) for a in argv]
        self.env = {
            **os.environ,
            "PYTHONPATH": str(TESTS),
            "WIDE_LOGGING_SINK": f"file:{self.events}",
            "WIDE_LOGGING_FALLBACK": f"file:{self.spool}",
            "WIDE_LOGGING_NORMAL_RATE": "1.0",
            **env,
        }
        self.log = tmp / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> AppServer:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp
            )
        wait_for(self._listening, timeout=30, what=f"{self.argv[2]} to listen")
        return self

    def _listening(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            pytest.fail(f"server exited early:\n{self.log.read_text()[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
        except OSError:
            return False
        return True

    def get(self, path: str, marker: str = "", request_id: str = "") -> tuple[int, str]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}")
        if marker:
            request.add_header("X-Marker", marker)
        if request_id:
            request.add_header("X-Request-ID", request_id)
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"server did not stop within {timeout}s:\n{self.log.read_text()[-3000:]}")

    def stored(self) -> list[dict[str, Any]]:
        return [e for e in read_jsonl(self.events, self.spool) if e["kind"] == "http.request"]


def load(server: AppServer, ok: int, fail: int, tag: str, delay: float = 0.0) -> dict[str, int]:
    """ok + fail requests from 8 threads, each on a new connection; returns id -> status."""
    plan = [(f"/ok?delay={delay}", f"{tag}-ok-{n}") for n in range(ok)]
    plan += [("/fail", f"{tag}-fail-{n}") for n in range(fail)]
    with ThreadPoolExecutor(8) as pool:
        statuses = pool.map(lambda p: server.get(p[0], marker=p[1], request_id=p[1])[0], plan)
        return dict(zip((rid for _, rid in plan), statuses, strict=True))


def by_id(events: list[dict[str, Any]]) -> Counter[str]:
    return Counter(e["request_id"] for e in events)


def uvicorn(app: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--log-level",
        "warning",
    ]


def gunicorn(app: str, *options: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        app,
        "-b",
        "127.0.0.1:{port}",
        "--graceful-timeout",
        "20",
        "--log-level",
        "warning",
        *options,
    ]


def test_fastapi_under_uvicorn_keeps_every_error_and_exactly_the_sampled_share(
    tmp_path: Path,
) -> None:
    key = "test-deployment-key-0123456789"
    server = AppServer(
        uvicorn("apps.asgi_app:app"),
        tmp_path,
        WIDE_LOGGING_NORMAL_RATE="0.2",
        WIDE_LOGGING_SAMPLING_KEY=key,  # the deployment's key: decisions we can predict
    ).start()
    statuses = load(server, ok=300, fail=25, tag="uv")
    # uvicorn >= 0.29 ends by re-raising SIGTERM (no atexit): the lifespan flush saves us
    assert server.stop() in (0, -signal.SIGTERM)
    assert Counter(statuses.values()) == {200: 300, 500: 25}
    stored = by_id(server.stored())
    fails = {rid for rid in statuses if "-fail-" in rid}
    sampler = TailSampler(normal_rate=0.2, key=key)
    expected_normal = {rid for rid in statuses if "-ok-" in rid and sampler.hit(rid)}
    assert set(stored) == fails | expected_normal  # deterministic: exactly the hashed share
    assert max(stored.values()) == 1
    assert 30 <= len(expected_normal) <= 90
    events = server.stored()
    assert {e["http"]["route"] for e in events} <= {"/ok", "/fail"}
    assert all(e["error"]["type"] == "RuntimeError" for e in events if "-fail-" in e["request_id"])


def test_starlette_under_gunicorn_uvicorn_workers(tmp_path: Path) -> None:
    server = AppServer(
        gunicorn("apps.asgi_app:starlette_app", "-w", "2", "-k", "uvicorn.workers.UvicornWorker"),
        tmp_path,
    ).start()
    statuses = load(server, ok=200, fail=20, tag="gu", delay=0.01)
    assert server.stop() == 0
    events = server.stored()
    assert by_id(events) == Counter(statuses.keys())  # keep-all: every request exactly once
    assert len({e["process"]["pid"] for e in events}) == 2  # both workers wrote


@pytest.mark.parametrize("preload", [False, True], ids=["fork-then-import", "preload"])
def test_flask_under_gunicorn_sync_workers(tmp_path: Path, preload: bool) -> None:
    options = ["-w", "3", *(["--preload"] if preload else [])]
    server = AppServer(gunicorn("apps.wsgi_app:app", *options), tmp_path).start()
    statuses = load(server, ok=240, fail=24, tag="fl", delay=0.01)
    assert server.stop() == 0
    events = server.stored()
    assert by_id(events) == Counter(statuses.keys())
    assert len({e["process"]["pid"] for e in events}) == 3
    failed = [e for e in events if "-fail-" in e["request_id"]]
    assert {e["http"]["response"]["status_code"] for e in failed} == {500}
    assert {e["error"]["type"] for e in failed} == {"RuntimeError"}
    assert {e["http"]["route"] for e in events} == {"/ok", "/fail"}


def test_flask_streaming_is_timed_to_its_last_chunk_under_gunicorn(tmp_path: Path) -> None:
    server = AppServer(gunicorn("apps.wsgi_app:app", "-w", "1"), tmp_path).start()
    status, body = server.get("/export", request_id="fl-export")
    assert (status, body) == (200, "row 0\nrow 1\nrow 2\n")
    assert server.stop() == 0
    [event] = [e for e in server.stored() if e.get("request_id") == "fl-export"]
    assert event["http"]["route"] == "/export"
    assert event["duration_ms"] >= 150  # three chunks, 50 ms apart
    assert [entry["message"] for entry in event["logs"]] == ["row 0", "row 1", "row 2"]


def test_gthread_workers_never_mix_requests(tmp_path: Path) -> None:
    server = AppServer(
        gunicorn("apps.wsgi_app:app", "-w", "2", "-k", "gthread", "--threads", "8"), tmp_path
    ).start()
    statuses = load(server, ok=400, fail=0, tag="th")
    assert server.stop() == 0
    events = server.stored()
    assert by_id(events) == Counter(statuses.keys())
    for event in events:
        marker = event["request_id"]
        assert event["marker"] == marker
        assert [log["message"] for log in event["logs"]] == [f"start {marker}", f"end {marker}"]


SERVERS = {
    "uvicorn": (uvicorn("apps.asgi_app:app"), 2),
    "gunicorn-uvicorn-workers": (
        gunicorn("apps.asgi_app:starlette_app", "-w", "2", "-k", "uvicorn.workers.UvicornWorker"),
        2,
    ),
    "gunicorn-sync": (gunicorn("apps.wsgi_app:app", "-w", "2"), 2),
}


@pytest.mark.parametrize("sink", ["healthy", "dead"], ids=["healthy-sink", "dead-sink-spools"])
@pytest.mark.parametrize("kind", list(SERVERS))
def test_sigterm_with_requests_in_flight_loses_nothing(
    tmp_path: Path, kind: str, sink: str
) -> None:
    argv, in_flight = SERVERS[kind]
    env = {}
    if sink == "dead":  # nothing listens there: every write fails, the spool takes it all
        env["WIDE_LOGGING_SINK"] = f"redis://127.0.0.1:{free_port()}/0?connect_timeout=0.2"
    server = AppServer(argv, tmp_path, **env).start()
    with ThreadPoolExecutor(12) as pool:
        quick = [pool.submit(server.get, "/ok", f"q-{n}", f"q-{n}") for n in range(60)]
        for future in quick:
            assert future.result()[0] == 200
        # requests inside the server when SIGTERM lands (for sync workers one per worker:
        # more would wait in the listen backlog, which a stopping server resets)
        slow_ids = [f"s-{n}" for n in range(in_flight)]
        slow = [pool.submit(server.get, "/ok?delay=1.5", rid, rid) for rid in slow_ids]
        time.sleep(0.5)
        started = time.monotonic()
        assert server.stop() in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM
        assert time.monotonic() - started < 15  # graceful, bounded: no hang
        assert [f.result()[0] for f in slow] == [200] * in_flight  # in flight: completed
    stored = by_id(server.stored())
    assert stored == Counter([*(f"q-{n}" for n in range(60)), *slow_ids])
    if sink == "dead":
        assert read_jsonl(server.events) == []
        assert len(read_jsonl(server.spool)) == 60 + in_flight


@pytest.mark.redis
@pytest.mark.mongo
@pytest.mark.parametrize("store", ["mongo-wire", "file"])
def test_three_apps_one_stream_two_consumers_through_a_redis_outage(
    own_redis: Any, mongo_store: Any, tmp_path: Path, store: str
) -> None:
    redis_url = f"{own_redis.url}?connect_timeout=0.3&socket_timeout=1"
    apps = [
        AppServer(
            uvicorn("apps.asgi_app:starlette_app"),
            tmp_path / f"app{n}",
            WIDE_LOGGING_SINK=redis_url,
            WIDE_LOGGING_FALLBACK=f"file:{tmp_path}/app{n}/spool/events.jsonl",
        )
        for n in range(3)
    ]
    for app in apps:
        app.tmp.mkdir()
        app.start()
    store_file = tmp_path / "store" / "events.jsonl"
    target = mongo_store.url if store == "mongo-wire" else f"file:{store_file}"
    consumers = [
        consume_process(
            own_redis.url,
            target,
            "--consumer",
            f"c{n}",
            "--block-ms",
            "100",
            "--claim-idle-ms",
            "2000",
            log=tmp_path / f"consumer-c{n}.log",
        )
        for n in range(2)
    ]

    def stored_events() -> list[dict[str, Any]]:
        if store == "mongo-wire":
            return list(mongo_store.collection.find())
        return read_jsonl(store_file)

    sent: list[str] = []

    def phase(tag: str) -> None:
        for n, app in enumerate(apps):
            statuses = load(app, ok=40, fail=5, tag=f"{tag}-app{n}")
            assert set(statuses.values()) == {200, 500}
            sent.extend(statuses)

    try:
        phase("before")
        own_redis.kill()
        phase("during")  # Redis is down: the apps spool locally, requests do not notice
        time.sleep(2)  # "a few seconds" of outage
        own_redis.start()
        phase("after")
        wait_for(
            lambda: {e["request_id"] for e in stored_events()} >= set(sent),
            timeout=90,
            what="every id stored",
        )
    finally:
        for app in apps:
            app.stop()
        for consumer in consumers:
            consumer.send_signal(signal.SIGTERM)
            consumer.wait(30)
    events = stored_events()
    assert len(sent) == 3 * 3 * 45
    if store == "mongo-wire":  # exactly once: the store dedupes on event_id
        assert Counter(e["request_id"] for e in events) == Counter(sent)
    else:  # at least once; a copy (a batch half-written when Redis died) is the same event
        assert {e["request_id"] for e in events} == set(sent)
        event_ids: dict[str, set[str]] = {}
        for event in events:
            event_ids.setdefault(event["request_id"], set()).add(event["event_id"])
        assert all(len(ids) == 1 for ids in event_ids.values())
    spooled = sum(len(read_jsonl(app.spool)) for app in apps)
    assert spooled == 0  # every spooled event was replayed and its segment removed
    logs = "".join(app.log.read_text() for app in apps)
    assert "failed after" in logs  # the outage really hit the apps' writers ...
    assert "recovered; replaying the spool" in logs  # ... and they came back by themselves
