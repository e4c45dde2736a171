"""``redis+cluster://``: events spread over the sharded streams of a real Redis Cluster
(three masters on loopback ports, started for the test, joined by redis-cli)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from servers import LocalRedisCluster
from wide_logging import ConfigurationError
from wide_logging.sinks import open_sink
from wide_logging.sinks.redis_cluster import shard_keys

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(
    redis_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalRedisCluster]:
    local = LocalRedisCluster(redis_binary, tmp_path_factory.mktemp("cluster"))
    try:
        local.start()
        yield local
    finally:
        local.stop()


def _stored(client: Any, keys: list[str]) -> dict[str, list[str]]:
    return {
        key: [orjson.loads(fields[b"event"])["event_id"] for _, fields in client.xrange(key)]
        for key in keys
    }


def test_events_spread_over_the_shards_and_their_masters_every_one_once(
    cluster: LocalRedisCluster,
) -> None:
    sink = open_sink(f"{cluster.url}/?stream=spread&shards=6")
    sent = []
    try:
        for batch in range(12):
            events = [{"event_id": f"{batch}-{n}"} for n in range(50)]
            sent += [e["event_id"] for e in events]
            sink.write([orjson.dumps(e) for e in events])
    finally:
        sink.close()
    client = cluster.client()
    try:
        keys = shard_keys("spread", 6)
        stored = _stored(client, keys)
        masters = {client.get_node_from_key(key).port for key in keys}
    finally:
        client.close()
    ids = [i for per_shard in stored.values() for i in per_shard]
    assert sorted(ids) == sorted(sent)  # every one, once
    assert all(len(per_shard) == 100 for per_shard in stored.values())  # a batch per turn
    assert len(masters) > 1  # the hash tags place the shards on different masters


def test_a_cluster_url_is_checked_and_a_cluster_down_does_not_stop_an_app_starting(
    tmp_path: Path,
) -> None:
    for url, message in (
        ("redis+cluster://127.0.0.1:7000/?shards=0", "shards must be a whole number from 1"),
        ("redis+cluster://127.0.0.1:7000/?shards=1025", "from 1 to 1024"),
        ("redis+cluster://127.0.0.1/?stream=x", "not host:port"),
        ("redis+cluster://127.0.0.1:7000/?colour=red", "unknown"),
    ):
        with pytest.raises(ConfigurationError, match=message):
            open_sink(url)
    # nothing listens there: made now, failing at the first write (the pipeline's to handle)
    sink = open_sink("redis+cluster://127.0.0.1:1/?connect_timeout=0.2")
    with pytest.raises(Exception, match=r".") as failure:  # redis-py's own, whichever it is
        sink.write([b"{}"])
    assert sink.failure_kind(failure.value) == "unavailable"
    sink.close()


def test_options_are_checked_alike_and_a_url_with_a_space_is_refused_unechoed() -> None:
    url = "redis+cluster://127.0.0.1:7000/"
    for options, message in (
        ({"shards": "4x"}, "shards"),
        ({"maxlen": -5}, "maxlen"),
        ({"socket_timeout": "x"}, "socket_timeout"),
        ({"stream": ""}, "stream"),
        ({"colour": 1}, "unknown"),
    ):
        with pytest.raises(ConfigurationError, match=message):
            open_sink(url, options)
    assert open_sink(url, {"shards": "4"}).keys == shard_keys("wide_logging:events", 4)
    for spaced in ("redis+cluster://:my secret@127.0.0.1:1/", "redis://:my secret@h:1/0"):
        with pytest.raises(ConfigurationError) as refused:
            open_sink(spaced)
        assert "secret" not in str(refused.value)


def test_a_frozen_node_holds_a_write_one_timeout_not_several(cluster: LocalRedisCluster) -> None:
    import signal
    import time

    sink = open_sink(f"{cluster.url}/?stream=frozen&shards=1&socket_timeout=1")
    client = cluster.client()
    try:
        sink.write([b'{"event_id": "warm"}'])  # (the client made, the slots known)
        owner = client.get_node_from_key(shard_keys("frozen", 1)[0]).port
        [node] = [n for n in cluster.nodes if n.port == owner]
        assert node.process is not None
        node.process.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(Exception, match=r".") as failure:
                sink.write([b'{"event_id": "frozen"}'])
            held = time.monotonic() - started
        finally:
            node.process.send_signal(signal.SIGCONT)
        assert sink.failure_kind(failure.value) in ("timeout", "unavailable")
        # the write's timeout and the client's one refresh of the slots (~2 s); a retry of
        # its own on top made it 3-4 s
        assert held < 2.7
    finally:
        client.close()
        sink.close()


def test_a_master_killed_under_load_loses_no_event(redis_binary: str, tmp_path: Path) -> None:
    """SIGKILL one of three masters (no replicas) while events flow: a write to its shards
    fails, and the pipeline's retry goes to the next shard in turn (or, failing that, to the
    spool, replayed once the node is back) — every id in the cluster's streams, counted end
    to end, the dead master's own entries included once it is back."""
    from conftest import wait_for
    from wide_logging import WideEventHandler

    local = LocalRedisCluster(redis_binary, tmp_path / "cluster")
    for node in local.nodes:
        node.durable = True  # a restart keeps what it had stored
    local.start()
    handler = WideEventHandler(
        sink=f"{local.url}/?stream=kill&shards=6&socket_timeout=0.5&connect_timeout=0.5",
        fallback=f"file:{tmp_path}/spool/events.jsonl",
        sampling={"normal_rate": 1.0},
        breaker_cooldown=0.2,
        flush_interval=0.05,
    )
    client = local.client()
    sent: list[str] = []

    def send(count: int) -> None:
        for _ in range(count):
            sent.append(f"r-{len(sent)}")
            handler.submit(handler.new_event(request_id=sent[-1]))

    def stored() -> set[str]:
        found = set()
        for key in shard_keys("kill", 6):
            try:
                entries = client.xrange(key)
            except Exception:
                continue  # its master is down: not readable now
            found |= {orjson.loads(fields[b"event"])["request_id"] for _, fields in entries}
        return found

    try:
        send(300)
        wait_for(lambda: len(stored()) == 300, timeout=30, what="the first events stored")
        victim = local.nodes[0]
        victim.kill()
        failed = lambda: sum(  # noqa: E731
            value
            for name, value in handler.metrics.snapshot().items()
            if name.startswith(("retries.", "write_failures.", "spooled."))
        )
        while failed() == 0:  # until a batch has met the dead master (its shards' turn)
            send(50)
            assert handler.flush(30)
            assert len(sent) < 5000, "no write ever went to the dead master's shards"
        victim.start()
        send(300)
        assert handler.flush(30)
        wait_for(lambda: stored() >= set(sent), timeout=60, what="every event in the cluster")
        assert stored() == set(sent)  # none lost, none made up
    finally:
        handler.close()
        client.close()
        local.stop()


def test_a_slot_moved_to_another_master_is_followed(cluster: LocalRedisCluster) -> None:
    """The batch goes straight to the master the client last knew for its slot; when the
    slot has moved (a resharding), that write meets MOVED, is retried, and the sink asks
    the cluster where the slots are before the next write — every event in the key once."""
    from redis.cluster import key_slot

    from wide_logging import WideEventHandler

    key = shard_keys("moving", 1)[0]
    handler = WideEventHandler(
        sink=f"{cluster.url}/?stream=moving&shards=1",
        sampling={"normal_rate": 1.0},
        retry_backoff=0.01,
        flush_interval=0.05,
    )
    sent: list[str] = []

    def send(count: int) -> None:
        for _ in range(count):
            sent.append(f"m-{len(sent)}")
            handler.submit(handler.new_event(request_id=sent[-1]))
        assert handler.flush(20)

    client = cluster.client()
    try:
        send(50)
        source = cluster.master_of(key)
        target = next(n for n in cluster.nodes if n is not source)
        assert source is not None
        ids = {
            n.port: n.client().execute_command("CLUSTER MYID").decode()
            for n in (source, target)
        }
        slot = key_slot(key.encode())
        to, frm = target.client(), source.client()
        to.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", ids[source.port])
        frm.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", ids[target.port])
        frm.execute_command("MIGRATE", "127.0.0.1", target.port, key, 0, 5000)
        for node in cluster.nodes:
            c = node.client()
            c.execute_command("CLUSTER SETSLOT", slot, "NODE", ids[target.port])
            c.close()
        to.close()
        frm.close()
        send(50)  # the first batch meets MOVED at the old master
        assert cluster.master_of(key) is target
        stored = [orjson.loads(f[b"event"])["request_id"] for _, f in client.xrange(key)]
        assert sorted(stored) == sorted(sent)  # all there, once
        assert any(
            k.startswith("retries.") and v for k, v in handler.metrics.snapshot().items()
        ), "no write met the moved slot"
    finally:
        handler.close()
        client.close()
