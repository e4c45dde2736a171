"""``redis+cluster://``: events spread over the sharded streams of a real Redis Cluster
(three masters on loopback ports, started for the test, joined by redis-cli)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from servers import LocalRedisCluster
from wide_logging import ConfigurationError
from wide_logging.sinks import open_sink
from wide_logging.sinks.redis_cluster import shard_keys

pytestmark = [pytest.mark.redis, pytest.mark.slow]


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
        assert sink.failure_kind(failure.value) == "unavailable"  # (one master's: passed over)
        # the write's own timeout (~1 s): the slot map is asked for by the next write, and
        # a retry of its own made it 3-4 s once
        assert held < 1.6
    finally:
        client.close()
        sink.close()


def test_a_master_killed_under_load_loses_no_event(
    new_cluster: Callable[..., LocalRedisCluster], tmp_path: Path
) -> None:
    """SIGKILL one of three masters (no replicas) while events flow: a write to its shards
    fails, and the pipeline's retry goes to the next shard in turn (or, failing that, to the
    spool, replayed once the node is back) — every id in the cluster's streams, counted end
    to end, the dead master's own entries included once it is back."""
    from conftest import wait_for
    from wide_logging import WideEventHandler

    local = new_cluster(durable=True)  # a restart keeps what it had stored
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
    from conftest import wait_for

    """The batch goes straight to the master the client last knew for its slot; when the
    slot has moved (a resharding), the old master answers MOVED: what it did not take goes
    to the node it names, and the sink asks the cluster where the slots are before the next
    write — every event in the key once, and the next batches straight to the new master."""
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
        ids = _node_ids([source, target])
        slot = key_slot(key.encode())
        _start_moving(source, target, slot, ids, key)
        _finish_moving(cluster, source, target, slot, ids)
        send(50)  # the first batch meets MOVED at the old master
        assert cluster.master_of(key) is target
        stored = [orjson.loads(f[b"event"])["request_id"] for _, f in client.xrange(key)]
        assert sorted(stored) == sorted(sent)  # all there, once
        sink = handler.pipeline.links[0].sink
        wait_for(  # (asked for on a thread of its own, when the MOVED came)
            lambda: sink._client.get_node_from_key(key).port == target.port,
            what="the slot map asked for again",
        )
        send(5)
        stored = [orjson.loads(f[b"event"])["request_id"] for _, f in client.xrange(key)]
        assert sorted(stored) == sorted(sent)
    finally:
        handler.close()
        client.close()


def _node_ids(nodes: list[Any]) -> dict[int, str]:
    ids = {}
    for node in nodes:
        client = node.client()
        ids[node.port] = client.execute_command("CLUSTER MYID").decode()
        client.close()
    return ids


def test_a_key_moved_while_its_slot_is_migrating_is_followed_with_asking(
    cluster: LocalRedisCluster,
) -> None:
    """Mid-resharding: the slot is MIGRATING at the source, IMPORTING at the target, and
    the stream key has moved already — the source answers ASK. The sink sends what it did
    not take to the target, each XADD after ASKING: every event there once."""
    from redis.cluster import key_slot

    key = shard_keys("asking", 1)[0]
    sink = open_sink(f"{cluster.url}/?stream=asking&shards=1")
    client = cluster.client()
    slot = key_slot(key.encode())
    source = cluster.master_of(key)
    assert source is not None
    target = next(n for n in cluster.nodes if n is not source)
    ids = _node_ids([source, target])
    to = target.client()
    try:
        sink.write([orjson.dumps({"event_id": f"before-{n}"}) for n in range(20)])
        _start_moving(source, target, slot, ids, key)
        sink.write([orjson.dumps({"event_id": f"during-{n}"}) for n in range(30)])
        entries = to.execute_command("ASKING") and to.xrange(key)
        stored = sorted(orjson.loads(fields[b"event"])["event_id"] for _, fields in entries)
        expected = sorted([f"before-{n}" for n in range(20)] + [f"during-{n}" for n in range(30)])
        assert stored == expected
    finally:
        _finish_moving(cluster, source, target, slot, ids)  # (for the other tests)
        to.close()
        client.close()
        sink.close()


def test_replicas_asked_of_masters_without_any_refuse_before_writing(
    cluster: LocalRedisCluster, tmp_path: Path
) -> None:
    """replicas=1 on a cluster whose masters have none: nothing is written (a write that
    WAIT then finds unreplicated would be written again on every retry and replay), the
    events are spooled, each once, and replayed once a replica is there (not here)."""
    from conftest import read_jsonl
    from wide_logging import WideEventHandler
    from wide_logging.sinks.redis_cluster import NotEnoughReplicas

    url = f"{cluster.url}/?stream=lonely&shards=3&replicas=1&replicas_timeout=0.2"
    sink = open_sink(url)
    with pytest.raises(NotEnoughReplicas) as refused:
        sink.write([b'{"event_id": "x"}'])
    assert sink.failure_kind(refused.value) == "unavailable"
    sink.close()
    spool = tmp_path / "spool" / "events.jsonl"
    handler = WideEventHandler(
        sink=url, fallback=f"file:{spool}", sampling={"normal_rate": 1.0}, retry_backoff=0.01
    )
    sent = []
    for n in range(40):
        sent.append(f"lonely-{n}")
        handler.submit(handler.new_event(request_id=sent[-1]))
    assert handler.flush(20)
    time.sleep(0.5)  # (replay turns of the spool meanwhile: each must not add a copy)
    handler.close()
    client = cluster.client()
    try:
        assert sum(client.xlen(key) for key in shard_keys("lonely", 3)) == 0
    finally:
        client.close()
    assert sorted(e["request_id"] for e in read_jsonl(spool)) == sorted(sent)  # each once
    for bad in ("replicas_timeout=0.0001", "replicas_timeout=2", "replicas_timeout=3"):
        with pytest.raises(ConfigurationError, match="replicas_timeout"):
            open_sink(f"{cluster.url}/?replicas=1&{bad}")


def _start_moving(source: Any, target: Any, slot: int, ids: dict[int, str], key: str) -> None:
    """Mid-resharding: ``slot`` MIGRATING at the source, IMPORTING at the target, ``key``
    (one of the slot's keys) moved already."""
    to, frm = target.client(), source.client()
    to.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", ids[source.port])
    frm.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", ids[target.port])
    frm.execute_command("MIGRATE", "127.0.0.1", target.port, key, 0, 5000)
    to.close()
    frm.close()


def _finish_moving(
    cluster: LocalRedisCluster, source: Any, target: Any, slot: int, ids: dict[int, str]
) -> None:
    """The rest of the slot's keys (other tests' shard keys share the hash tag) moved, and
    every node told the slot's new owner."""
    frm = source.client()
    while keys := frm.execute_command("CLUSTER GETKEYSINSLOT", slot, 100):
        frm.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
    frm.close()
    for node in cluster.nodes:
        client = node.client()
        client.execute_command("CLUSTER SETSLOT", slot, "NODE", ids[target.port])
        client.close()


def test_a_frozen_master_is_passed_over_not_the_whole_cluster(
    new_cluster: Callable[..., LocalRedisCluster], tmp_path: Path
) -> None:
    """One of three masters frozen (SIGSTOP: it accepts connections, never answers) while
    events flow: after its first timeout its shards' turns go to the other masters, so the
    writes go on succeeding there instead of each costing a timeout that opens the sink's
    circuit and sends everything to the spool. Every event is stored or spooled."""
    import signal

    from conftest import read_jsonl
    from wide_logging import WideEventHandler

    local = new_cluster(extra=("--cluster-require-full-coverage", "no"))
    spool = tmp_path / "spool" / "events.jsonl"
    handler = WideEventHandler(
        sink=f"{local.url}/?stream=ice&shards=6&socket_timeout=0.5&connect_timeout=0.5",
        fallback=f"file:{spool}",
        sampling={"normal_rate": 1.0},
        breaker_cooldown=5.0,
        flush_interval=0.05,
        batch_size=20,
    )
    client = local.client()
    victim = local.master_of("ice:{0}")
    assert victim is not None
    assert victim.process is not None
    sent: list[str] = []
    try:
        handler.submit(handler.new_event(request_id="warm"))
        assert handler.flush(10)  # (the client made, the slots known)
        sent.append("warm")
        victim.process.send_signal(signal.SIGSTOP)
        for n in range(600):
            sent.append(f"ice-{n}")
            handler.submit(handler.new_event(request_id=sent[-1]))
            if n % 20 == 19:
                assert handler.flush(10)
        healthy = [k for k in shard_keys("ice", 6) if local.master_of(k) is not victim]
        stored = {
            orjson.loads(fields[b"event"])["request_id"]
            for key in healthy
            for _, fields in client.xrange(key)
        }
        spooled = {e["request_id"] for e in read_jsonl(spool)}
        assert stored | spooled >= set(sent) - {"warm"}  # none lost
        assert len(spooled) < 0.2 * len(sent), f"{len(spooled)} of {len(sent)} spooled"
    finally:
        victim.process.send_signal(signal.SIGCONT)
        handler.close()
        client.close()
        local.stop()


def test_threads_failing_on_one_master_at_once_rest_it_once(cluster: LocalRedisCluster) -> None:
    sink = open_sink(f"{cluster.url}/?stream=rest")
    for _ in range(6):  # six writes in flight to it when it froze: one failure
        sink._rest("127.0.0.1:1")
    assert sink._resting["127.0.0.1:1"][1] == 1.0
    sink._resting["127.0.0.1:1"] = (0.0, 1.0)  # its rest over, and it fails again
    sink._rest("127.0.0.1:1")
    assert sink._resting["127.0.0.1:1"][1] == 2.0
    sink.close()


def test_a_write_is_bounded_by_its_timeout_even_with_every_node_frozen(
    cluster: LocalRedisCluster,
) -> None:
    """Asking the cluster for its slot map after a failure tries the startup nodes one by
    one, a socket timeout each when they are frozen: it runs on a thread of its own, so no
    write waits for it (one write took 4x socket_timeout, past the pipeline's sink_timeout)."""
    import signal

    sink = open_sink(f"{cluster.url}/?stream=allfrozen&shards=3&socket_timeout=0.5")
    sink.write([b'{"event_id": "warm"}'])
    held = []
    for node in cluster.nodes:
        assert node.process is not None
        node.process.send_signal(signal.SIGSTOP)
    try:
        for _ in range(4):
            started = time.monotonic()
            with pytest.raises(Exception, match=r"."):
                sink.write([b'{"event_id": "frozen"}'])
            held.append(time.monotonic() - started)
    finally:
        for node in cluster.nodes:
            assert node.process is not None
            node.process.send_signal(signal.SIGCONT)
        sink.close()
    assert max(held) < 1.0, held


def test_an_ask_target_that_does_not_answer_is_the_one_passed_over(
    cluster: LocalRedisCluster,
) -> None:
    import signal

    from redis.cluster import key_slot

    key = shard_keys("askfrozen", 1)[0]
    sink = open_sink(f"{cluster.url}/?stream=askfrozen&shards=1&socket_timeout=0.5")
    slot = key_slot(key.encode())
    source = cluster.master_of(key)
    assert source is not None
    target = next(n for n in cluster.nodes if n is not source)
    assert target.process is not None
    ids = _node_ids([source, target])
    try:
        sink.write([b'{"event_id": "before"}'])
        _start_moving(source, target, slot, ids, key)
        target.process.send_signal(signal.SIGSTOP)
        with pytest.raises(Exception, match=r"."):
            sink.write([b'{"event_id": "during"}'])  # ASK to the frozen target
        resting = set(sink._resting)
        assert f"127.0.0.1:{target.port}" in resting
        assert f"127.0.0.1:{source.port}" not in resting
    finally:
        target.process.send_signal(signal.SIGCONT)
        _finish_moving(cluster, source, target, slot, ids)
        sink.close()


def test_a_stalled_replica_makes_its_master_passed_over_not_written_again_and_again(
    new_cluster: Callable[..., LocalRedisCluster], tmp_path: Path
) -> None:
    """replicas=1 and one replica frozen (it still counts as connected): a batch its master
    took is not replicated in time and is written again elsewhere — once; the master is
    then passed over, not written to at every turn (17% of the events were stored twice or
    three times in six seconds)."""
    import signal
    from collections import Counter

    from wide_logging import WideEventHandler

    local = new_cluster(replicas=1)
    url = f"{local.url}/?stream=stall&shards=6&socket_timeout=1&replicas=1&replicas_timeout=0.2"
    handler = WideEventHandler(
        sink=url,
        fallback=f"file:{tmp_path}/spool/events.jsonl",
        sampling={"normal_rate": 1.0},
        flush_interval=0.05,
        batch_size=20,
        retry_backoff=0.01,
    )
    master = local.master_of("stall:{0}")
    assert master is not None
    client = local.client()
    replica = next(
        n
        for n in local.nodes
        if n is not master and n.client().info("replication").get("master_port") == master.port
    )
    assert replica.process is not None
    sent: list[str] = []
    try:
        replica.process.send_signal(signal.SIGSTOP)
        for n in range(600):
            sent.append(f"s-{n}")
            handler.submit(handler.new_event(request_id=sent[-1]))
            if n % 20 == 19:
                assert handler.flush(10)
        copies = Counter(
            orjson.loads(fields[b"event"])["request_id"]
            for key in shard_keys("stall", 6)
            for _, fields in client.xrange(key)
        )
        twice = sum(1 for count in copies.values() if count > 1)
        assert twice <= 3 * 20, f"{twice} of {len(sent)} stored more than once"
    finally:
        replica.process.send_signal(signal.SIGCONT)
        handler.close()
        client.close()
        local.stop()
