"""The consumer, ``stats``, ``incidents`` and ``report`` on a real Redis Cluster's sharded
streams (started for the test: three masters on loopback ports, with replicas where a
master is killed), ids counted end to end."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from conftest import read_jsonl, wait_for
from servers import LocalRedisCluster, MongoStore, consume_process
from wide_logging import ConfigurationError, WideEventHandler
from wide_logging.consumer import StreamConsumer
from wide_logging.incidents import sources
from wide_logging.sinks import open_sink
from wide_logging.sinks.redis_cluster import shard_keys
from wide_logging.tools.cli import main
from wide_logging.tools.stats import from_stream

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def _write(url: str, batches: int, size: int = 50, prefix: str = "e") -> list[str]:
    """Events through the cluster sink (a batch per shard in turn); their ids."""
    sink = open_sink(url)
    sent: list[str] = []
    try:
        for batch in range(batches):
            events = [{"event_id": f"{prefix}{batch}-{n}"} for n in range(size)]
            sink.write([orjson.dumps(e) for e in events])
            sent += [e["event_id"] for e in events]
    finally:
        sink.close()
    return sent


def _running(consumer: StreamConsumer) -> threading.Thread:
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    return thread


def test_consumers_share_every_shard_and_dead_letters_stay_on_their_shard(
    cluster: LocalRedisCluster, tmp_path: Path
) -> None:
    url = f"{cluster.url}/?stream=share&shards=4"
    sent = _write(url, 8)  # 100 entries on each shard
    client = cluster.client()
    client.xadd("share:{1}", {"event": b"not json"})
    client.xadd("share:{3}", {"other": b"no event field"})
    outs = [tmp_path / f"c{n}" / "events.jsonl" for n in range(2)]
    consumers = [
        StreamConsumer(url, f"file:{out}", consumer=f"c{n}", batch_size=20, block_ms=100)
        for n, out in enumerate(outs)
    ]
    threads = [_running(c) for c in consumers]
    keys = shard_keys("share", 4)

    def dead_letters() -> int:
        return sum(client.xlen(f"{key}:dead") for key in keys)

    try:
        # both: the two bad entries come last on their shards, and may still be on their
        # way to the dead letters when every good event is written
        wait_for(
            lambda: len(read_jsonl(*outs)) >= len(sent) and dead_letters() >= 2,
            timeout=30,
            what="every event written and both bad entries dead-lettered",
        )
    finally:
        for consumer in consumers:
            consumer.stop()
        for thread in threads:
            thread.join(15)
    written = [event["event_id"] for event in read_jsonl(*outs)]
    assert sorted(written) == sorted(sent)  # every one, once (no consumer died)
    for key in keys:
        names = {c["name"] for c in client.xinfo_consumers(key, "wide_logging")}
        assert names == {b"c0", b"c1"}, key  # each consumer reads every shard
        assert client.xpending(key, "wide_logging")["pending"] == 0, key
    dead = {key: client.xrange(f"{key}:dead") for key in keys}
    assert [len(entries) for entries in dead.values()] == [0, 1, 0, 1]
    [(_, bad_json)] = dead["share:{1}"]
    assert bad_json[b"source_stream"] == b"share:{1}"
    assert b"not valid JSON" in bad_json[b"reason"]
    [(_, no_field)] = dead["share:{3}"]
    assert b"no 'event' field" in no_field[b"reason"]
    # the dead letters sit on their shard's node (moved there and acked in one pipeline)
    assert all(client.keyslot(f"{key}:dead") == client.keyslot(key) for key in keys)  # the hash tag
    rows = from_stream(url, None, None)
    assert rows[0][:2] == ("stream", "share:{0..3}")
    assert rows[0][2] == "402 entries in 4 shards, pending 0, lag 0, dead letters 2"
    assert [row[1] for row in rows if row[0] == "stream"][1:] == keys
    client.close()


def test_a_dead_consumers_entries_are_claimed_on_every_shard(
    cluster: LocalRedisCluster, tmp_path: Path
) -> None:
    url = f"{cluster.url}/?stream=claim&shards=3"
    sent = _write(url, 6, size=20)
    client = cluster.client()
    for key in shard_keys("claim", 3):  # a consumer that read everything, then died
        client.xgroup_create(key, "wide_logging", id="0", mkstream=True)
        client.xreadgroup("wide_logging", "dead", {key: ">"}, count=1000)
    out = tmp_path / "out" / "events.jsonl"
    consumer = StreamConsumer(url, f"file:{out}", consumer="heir", claim_idle_ms=300)
    thread = _running(consumer)
    started = time.monotonic()
    try:
        wait_for(lambda: len(read_jsonl(out)) >= len(sent), timeout=20, what="claimed")
    finally:
        consumer.stop()
        thread.join(15)
    assert time.monotonic() - started < 0.3 + 1.0 + 2.0  # idle time, a look a second, slack
    assert sorted(e["event_id"] for e in read_jsonl(out)) == sorted(sent)
    assert consumer.metrics.snapshot()["consumer.claimed"] == len(sent)
    for key in shard_keys("claim", 3):
        assert client.xpending(key, "wide_logging")["pending"] == 0
    client.close()


def test_an_idle_consumer_waits_on_one_shard_at_a_time_and_still_sees_a_new_entry_soon(
    cluster: LocalRedisCluster, tmp_path: Path
) -> None:
    url = f"{cluster.url}/?stream=idle&shards=4"
    out = tmp_path / "out" / "events.jsonl"
    consumer = StreamConsumer(url, f"file:{out}", block_ms=400)  # a slice of 100 ms a shard
    thread = _running(consumer)

    def reads() -> int:
        total = 0
        for node in cluster.nodes:
            client = node.client()
            stats = client.info("commandstats")
            total += stats.get("cmdstat_xreadgroup", {}).get("calls", 0)
            client.close()
        return total

    try:
        time.sleep(0.5)  # (settle into idleness: nothing is written)
        before = reads()
        time.sleep(2.0)
        per_second = (reads() - before) / 2.0
        # one blocking read per 100 ms slice; a look at every shard each turn would be 50
        assert per_second < 20, per_second
        _write(url, 1, size=1, prefix="late")  # lands on shard {0}: 3 slices away at most
        started = time.monotonic()
        wait_for(lambda: read_jsonl(out), timeout=5, what="the new entry written")
        assert time.monotonic() - started < 0.4 + 0.5  # block_ms, and the write to the file
    finally:
        consumer.stop()
        thread.join(15)


def test_the_layout_comes_from_the_sinks_url_and_is_checked(cluster: LocalRedisCluster) -> None:
    consumer = StreamConsumer(f"{cluster.url}/?stream=s&shards=5&maxlen=100", "file:/dev/null")
    assert [shard.key for shard in consumer.shards] == shard_keys("s", 5)
    assert [shard.dead_letters for shard in consumer.shards][:1] == ["s:{0}:dead"]
    named = StreamConsumer(cluster.url, "file:/dev/null", stream="n", dead_letter_stream="bad")
    assert len(named.shards) == 16  # the sink's default
    assert named.shards[2].dead_letters == "bad:{2}"  # in its shard's slot
    for url, message in (
        (f"{cluster.url}/?shards=0", "shards"),
        (f"{cluster.url}/?shards=1025", "from 1 to 1024"),
        (f"{cluster.url}/?colour=red", "unknown"),
        (f"{cluster.url}/3?stream=x", "no databases"),
        ("redis+cluster://127.0.0.1:99999/", "host:port"),
        ("redis://127.0.0.1:1/0?shards=4", "redis\\+cluster"),
        # what a writer and a reader could read differently, or that defeats the layout
        (f"{cluster.url}/?stream=a&stream=b", "twice"),
        ("redis://127.0.0.1:1/0?stream=a&stream=b", "twice"),
        (f"{cluster.url}/?stream=app{{tenant}}", "braces"),
    ):
        with pytest.raises(ConfigurationError, match=message):
            StreamConsumer(url, "file:/dev/null")
        if "shards=4" not in url:  # (a single Redis sink has no shards= of its own)
            with pytest.raises(ConfigurationError, match=message):
                open_sink(url)
    for keywords, message in (
        ({"shards": 0}, "shards"),
        ({"shards": -1}, "shards"),
        ({"shards": 20000}, "shards"),
        ({"shards": True}, "shards"),
        ({"stream": ""}, "empty"),
        ({"stream": "s", "dead_letter_stream": "s"}, "differ"),
        ({"dead_letter_stream": "dl{x}"}, "braces"),
    ):
        with pytest.raises(ConfigurationError, match=message):
            StreamConsumer(cluster.url, "file:/dev/null", **keywords)


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://admin:S3cr3tPW#1@127.0.0.1:7000/",  # "#" ends the netloc
        "redis+cluster://admin:S3cr3tPW?x@127.0.0.1:7000/",  # "?" starts the query
        "redis+cluster://admin:S3cr3t/PW@127.0.0.1:7000/",  # "/" starts the path
        "redis+cluster://admin:S3cr3t PW@127.0.0.1:7000/",  # a space ends it for masking
        "redis://admin:S3cr3tPW#1@127.0.0.1:7000/0",
        "redis://admin:S3cr3t PW@127.0.0.1:7000/0",
    ],
)
def test_a_password_that_breaks_the_url_is_never_shown(url: str) -> None:
    for make in (lambda: open_sink(url), lambda: StreamConsumer(url, "file:/dev/null")):
        with pytest.raises(ConfigurationError) as refused:
            make()
        assert "S3cr3t" not in str(refused.value)
        assert "percent-encode" in str(refused.value)


def test_a_dead_master_holds_up_its_own_shards_only(
    new_cluster: Callable[..., LocalRedisCluster], tmp_path: Path
) -> None:
    """A cluster that serves the slots it still has (cluster-require-full-coverage no), one
    master SIGKILLed: the consumer goes on with the shards of the others."""
    local = new_cluster(extra=("--cluster-require-full-coverage", "no"))
    out = tmp_path / "out" / "events.jsonl"
    url = f"{local.url}/?stream=half&shards=6"
    consumer = StreamConsumer(url, f"file:{out}", block_ms=200, retry_backoff=0.2)
    consumer.ensure_group()
    thread = _running(consumer)
    client = local.client()
    try:
        victim = local.master_of("half:{0}")
        assert victim is not None
        victim.kill()
        healthy = [key for key in shard_keys("half", 6) if local.master_of(key) is not None]
        assert 0 < len(healthy) < 6
        sent = []
        for key in healthy:
            for n in range(20):
                event_id = f"{key}-{n}"
                sent.append(event_id)
                client.xadd(key, {"event": orjson.dumps({"event_id": event_id})})
        wait_for(lambda: len(read_jsonl(out)) >= len(sent), timeout=30, what="healthy shards")
        assert sorted(e["event_id"] for e in read_jsonl(out)) == sorted(sent)
    finally:
        consumer.stop()
        thread.join(30)
        client.close()
        local.stop()


def test_incidents_and_the_report_read_every_shard(
    cluster: LocalRedisCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_report import _report_of, _traffic

    events = _traffic(tmp_path / "events.jsonl")
    url = f"{cluster.url}/?stream=briefing&shards=3"
    sink = open_sink(url)
    try:
        for start in range(0, len(events), 37):
            sink.write([json.dumps(e).encode() for e in events[start : start + 37]])
    finally:
        sink.close()
    original = sources.RANGE
    sources.RANGE = 16  # several ranges per shard
    try:
        payloads = list(sources.stream_payloads(url, None))
        from_file = _report_of(capsys, tmp_path / "events.jsonl")
        assert main(["report", "--source", url, "--format", "json"]) == 0
        from_cluster = json.loads(capsys.readouterr().out)
        assert main(["incidents", "--source", url, "--format", "json"]) == 0
        incidents = json.loads(capsys.readouterr().out)
        source = f"file:{tmp_path / 'events.jsonl'}"
        assert main(["incidents", "--source", source, "--format", "json"]) == 0
        file_incidents = json.loads(capsys.readouterr().out)
    finally:
        sources.RANGE = original
    read = [orjson.loads(p)["event_id"] for p in payloads]
    assert sorted(read) == sorted(e["event_id"] for e in events)  # every shard, each once
    for part in ("totals", "routes", "errors", "timeline", "incidents", "pipeline"):
        assert from_cluster[part] == from_file[part], part
    assert incidents == file_incidents
    assert incidents  # (the traffic has some)


def test_live_incident_windows_are_shared_on_a_cluster(cluster: LocalRedisCluster) -> None:
    from test_incidents import request

    from wide_logging.incidents import IncidentAggregator, Rule

    rule = Rule.from_dict(
        {"name": "shared", "match": "error exists", "group_by": ["http.route"],
         "window": 60, "threshold": 6, "quiet": 60}
    )  # fmt: skip
    announced: list[dict[str, Any]] = []
    aggregators = [
        IncidentAggregator(announced.append, [rule], redis_url=cluster.url) for _ in range(2)
    ]
    for n in range(6):  # three each: only the count shared in the cluster reaches 6
        error = {"type": "E", "message": "m"}
        aggregators[n % 2].observe(request(time.time(), "/split", error=error))
    assert [a["incident"]["status"] for a in announced] == ["opened"]


def test_a_master_killed_under_load_fails_over_to_its_replica_nothing_lost_or_twice(
    new_cluster: Callable[..., LocalRedisCluster], tmp_path: Path
) -> None:
    """Three masters with a replica each; events flow from a handler (spool as fallback)
    through two consumer processes into a MongoDB store, and the master of a shard is
    SIGKILLed: its replica takes over. Every request is in the store once."""
    local = new_cluster(replicas=1)
    store = MongoStore()
    store.start()
    url = f"{local.url}/?stream=fo&shards=6"
    handler = WideEventHandler(
        sink=f"{url}&socket_timeout=0.5&connect_timeout=0.5&replicas=1&replicas_timeout=0.3",
        fallback=f"file:{tmp_path}/spool/events.jsonl",
        sampling={"normal_rate": 1.0},
        breaker_cooldown=0.2,
        flush_interval=0.05,
    )
    options = ("--block-ms", "200", "--claim-idle-ms", "2000", "--batch-size", "50")
    consumers = [
        consume_process(url, store.url, "--consumer", name, *options, log=tmp_path / name)
        for name in ("a", "b")
    ]
    sent: list[str] = []
    sending = threading.Event()

    def send() -> None:  # a steady load: 20 requests every 10 ms until told to stop
        while sending.is_set():
            for _ in range(20):
                sent.append(f"r-{len(sent)}")
                handler.submit(handler.new_event(request_id=sent[-1]))
            time.sleep(0.01)

    def stored() -> list[str]:
        return [d["request_id"] for d in store.collection.find({}, {"request_id": 1})]

    sending.set()
    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        wait_for(lambda: len(stored()) >= 1000, timeout=30, what="the first events stored")
        victim = local.master_of("fo:{0}")
        assert victim is not None
        victim.kill()  # under load
        wait_for(lambda: local.master_of("fo:{0}") is not None, timeout=30, what="failover")
        assert local.master_of("fo:{0}") is not victim
        before = len(sent)
        wait_for(lambda: len(sent) > before + 1000, timeout=30, what="load after the failover")
        sending.clear()
        sender.join(10)
        assert handler.flush(30)
        wait_for(lambda: len(stored()) >= len(sent), timeout=90, what="every request stored")
        ids = stored()
        assert sorted(set(ids)) == sorted(set(sent))  # none lost, none made up
        assert len(ids) == len(set(ids))  # none twice
        failures = handler.metrics.snapshot()
        assert any(k.startswith(("retries.", "spooled")) and v for k, v in failures.items())
    finally:
        sending.clear()
        handler.close()
        for process in consumers:
            process.terminate()
            process.wait(15)
        store.stop()
        local.stop()


def test_a_frozen_master_holds_up_its_own_shards_only(
    new_cluster: Callable[..., LocalRedisCluster], tmp_path: Path
) -> None:
    """A master that accepts connections and never answers (SIGSTOP) costs a timeout per
    try: its shards rest together, so the consumer tries the node once per rest, not once
    per shard, and the other masters' entries keep flowing."""
    import signal

    local = new_cluster(extra=("--cluster-require-full-coverage", "no"))
    out = tmp_path / "out" / "events.jsonl"
    url = f"{local.url}/?stream=frozen&shards=16"
    consumer = StreamConsumer(url, f"file:{out}", block_ms=200, socket_timeout=1.0)
    consumer.ensure_group()
    client = local.client()
    victim = local.master_of("frozen:{0}")
    assert victim is not None
    assert victim.process is not None
    healthy = [key for key in shard_keys("frozen", 16) if local.master_of(key) is not victim]
    assert 0 < len(healthy) < 16
    thread = _running(consumer)
    victim.process.send_signal(signal.SIGSTOP)
    try:
        time.sleep(1.5)  # (the consumer meets the frozen node, and keeps meeting it)
        sent = []
        for key in healthy:
            for n in range(5):
                sent.append(f"{key}-{n}")
                client.xadd(key, {"event": orjson.dumps({"event_id": sent[-1]})})
        started = time.monotonic()
        wait_for(lambda: len(read_jsonl(out)) >= len(sent), timeout=60, what="healthy shards")
        # a try of the frozen node (timeout 1 s + block 0.2 s) at most every rest; trying
        # each of its shards in turn took over 6 s here
        assert time.monotonic() - started < 3.5
        assert sorted(e["event_id"] for e in read_jsonl(out)) == sorted(sent)
    finally:
        victim.process.send_signal(signal.SIGCONT)
        consumer.stop()
        thread.join(30)
        client.close()
        local.stop()
