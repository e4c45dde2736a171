"""The distributed pipeline as a whole: fallback chain, replay, and the request path."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from conftest import read_jsonl, wait_for
from servers import RedisServer
from wide_logging import WideEventHandler, WideEventMiddleware

pytestmark = [pytest.mark.redis, pytest.mark.mongo]


def submit(handler: WideEventHandler, ids: list[str]) -> None:
    for request_id in ids:
        handler.submit(handler.new_event(request_id=request_id))


def test_redis_down_goes_to_mongo_then_both_down_to_the_spool(
    redis_binary: str, mongo_store: Any, tmp_path: Path
) -> None:
    dead_redis = RedisServer(redis_binary, tmp_path / "never-started")
    spool = tmp_path / "spool" / "events.jsonl"
    handler = WideEventHandler(
        sink=f"{dead_redis.url}?connect_timeout=0.3",
        fallback=[mongo_store.url, f"file:{spool}"],
        sampling={"normal_rate": 1.0},
        flush_interval=0.05,
        max_retries=0,
        breaker_cooldown=60,
    )
    first = [f"a-{i}" for i in range(100)]
    submit(handler, first)
    assert handler.flush(20)
    stored = {doc["request_id"] for doc in mongo_store.collection.find()}
    assert stored == set(first)
    assert read_jsonl(spool) == []
    mongo_store.stop()  # now the second link is gone too
    second = [f"b-{i}" for i in range(100)]
    submit(handler, second)
    assert handler.flush(30)
    spooled = Counter(e["request_id"] for e in read_jsonl(spool))
    assert spooled == Counter(second)
    snapshot = handler.metrics.snapshot()
    assert snapshot[f"written.{handler.pipeline.links[1].sink.name}"] == 100
    assert "pw" not in str(snapshot)
    handler.close()


def replay(*args: str) -> subprocess.CompletedProcess[str]:
    """``wide-logging replay`` as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "wide_logging", "replay", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_replay_command_pushes_spooled_files_into_redis(
    redis_url: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    segment = tmp_path / "events.20261127T000000.000000-1.jsonl"
    lines = [orjson.dumps({"event_id": f"r-{i}", "request_id": f"r-{i}"}) for i in range(1200)]
    segment.write_bytes(b"\n".join([*lines[:600], b'{"torn', *lines[600:]]) + b"\n")
    result = replay(
        str(segment), "--sink", redis_url, "--no-progress", "--batch-size", "250", "--delete"
    )
    assert result.returncode == 0, result.stderr
    assert "replayed 1200 events from 1 file(s)" in result.stderr
    assert "1 unreadable line(s) skipped" in result.stderr
    entries = redis_server.client().xrange("wide_logging:events")
    assert [orjson.loads(f[b"event"])["event_id"] for _, f in entries] == [
        f"r-{i}" for i in range(1200)
    ]
    assert not segment.exists()


def test_replay_command_reports_a_dead_sink(tmp_path: Path, redis_binary: str) -> None:
    segment = tmp_path / "events.jsonl"
    segment.write_bytes(b'{"event_id": "x"}\n')
    dead = RedisServer(redis_binary, tmp_path / "dead")
    result = replay(str(segment), "--sink", f"{dead.url}?connect_timeout=0.3", "--no-progress")
    assert result.returncode == 1
    assert segment.exists()


def test_request_path_does_no_network_io_even_with_redis_hung(
    own_redis: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    socket_threads: list[str] = []
    lock = threading.Lock()
    for name in ("connect", "send", "sendall", "recv", "recv_into"):
        original = getattr(socket.socket, name)

        def recorder(
            self: socket.socket, *args: Any, _original: Any = original, _name: str = name
        ) -> Any:
            # Only traffic to Redis counts (event loops use local socketpairs to wake up).
            try:
                peer = args[0] if _name == "connect" else self.getpeername()
            except OSError:
                peer = None
            if isinstance(peer, tuple) and peer[1:2] == (own_redis.port,):
                with lock:
                    socket_threads.append(threading.current_thread().name)
            return _original(self, *args)

        monkeypatch.setattr(socket.socket, name, recorder)

    handler = WideEventHandler(
        sink=f"{own_redis.url}?socket_timeout=30",
        fallback=f"file:{tmp_path}/spool/events.jsonl",
        sampling={"normal_rate": 1.0},
        batch_size=10,
        flush_interval=0.05,
    )

    async def home(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/", home)])
    app.add_middleware(WideEventMiddleware, handler=handler)
    assert own_redis.process is not None
    own_redis.process.send_signal(signal.SIGSTOP)
    try:
        with TestClient(app) as client:
            for _ in range(20):
                assert client.get("/").status_code == 200
            # the sink thread is now stuck in a socket call to the frozen Redis ...
            wait_for(
                lambda: "wide_logging.sink" in socket_threads, what="the sink thread to hit redis"
            )
            # ... and requests still complete: nothing on their path waits for it
            for _ in range(200):
                assert client.get("/").status_code == 200
    finally:
        own_redis.process.send_signal(signal.SIGCONT)
    assert set(socket_threads) == {"wide_logging.sink"}
    assert handler.flush(30)
    handler.close()
