from __future__ import annotations

import signal
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from conftest import ControlledSink, read_jsonl, wait_for
from servers import RedisServer, consume_process
from wide_logging import ConfigurationError, WideEventHandler
from wide_logging import consumer as consumer_module
from wide_logging.consumer import StreamConsumer

pytestmark = [pytest.mark.redis]

STREAM = "wide_logging:events"


def publish(url: str, n: int, tag: str = "ev") -> list[str]:
    """Events written to the stream by the real handler and its redis sink."""
    handler = WideEventHandler(
        sink=url, sampling={"normal_rate": 1.0}, flush_interval=0.05, queue_size=100_000
    )
    ids = []
    for i in range(n):
        event = handler.new_event(request_id=f"{tag}-{i}")
        handler.submit(event)
        ids.append(f"{tag}-{i}")
    assert handler.flush(30)
    handler.close()
    return ids


@pytest.fixture
def run_consumer() -> Iterator[Any]:
    started: list[tuple[StreamConsumer, threading.Thread]] = []

    def start(consumer: StreamConsumer) -> StreamConsumer:
        thread = threading.Thread(target=consumer.run, daemon=True)
        thread.start()
        started.append((consumer, thread))
        return consumer

    yield start
    for consumer, thread in started:
        consumer.stop()
        thread.join(10)


def request_ids(events: list[dict[str, Any]]) -> Counter[str]:
    return Counter(e["request_id"] for e in events)


def test_consumer_moves_every_event_once_and_acks(
    redis_url: str, redis_server: RedisServer, tmp_path: Path, run_consumer: Any
) -> None:
    out = tmp_path / "store" / "events.jsonl"
    consumer = run_consumer(StreamConsumer(redis_url, f"file:{out}", block_ms=100))
    ids = publish(redis_url, 1000)
    wait_for(lambda: len(read_jsonl(out)) >= 1000, timeout=20, what="events in the store")
    assert request_ids(read_jsonl(out)) == Counter(ids)
    client = redis_server.client()
    wait_for(lambda: client.xpending(STREAM, "wide_logging")["pending"] == 0, what="all acked")
    wait_for(lambda: consumer.metrics.get("consumer.written") == 1000, what="counted")


def test_stream_missing_and_group_existing_are_fine(
    redis_url: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    first = StreamConsumer(redis_url, f"file:{tmp_path}/a.jsonl", stream="fresh")
    first.ensure_group()  # creates the stream
    second = StreamConsumer(redis_url, f"file:{tmp_path}/b.jsonl", stream="fresh")
    second.ensure_group()  # BUSYGROUP is not an error
    assert redis_server.client().xinfo_groups("fresh")[0]["name"] == b"wide_logging"
    assert first.process_once() == 0


def test_bad_entries_go_to_the_dead_letter_stream_with_a_reason(
    redis_url: str, redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumer_module, "MAX_ENTRY_BYTES", 1000)
    client = redis_server.client()
    consumer = StreamConsumer(redis_url, f"file:{tmp_path}/out.jsonl", block_ms=100)
    consumer.ensure_group()
    client.xadd(STREAM, {"event": orjson.dumps({"event_id": "ok-1", "request_id": "ok-1"})})
    client.xadd(STREAM, {"event": b"{not json"})
    client.xadd(STREAM, {"payload": b"{}"})
    client.xadd(STREAM, {"event": b"[1, 2]"})
    client.xadd(STREAM, {"event": b'{"pad": "' + b"x" * 2000 + b'"}'})
    client.xadd(STREAM, {"event": orjson.dumps({"event_id": "ok-2", "request_id": "ok-2"})})
    assert consumer.process_once() == 6
    assert [e["request_id"] for e in read_jsonl(tmp_path / "out.jsonl")] == ["ok-1", "ok-2"]
    dead = client.xrange(f"{STREAM}:dead")
    reasons = [fields[b"reason"].decode() for _, fields in dead]
    assert len(reasons) == 4
    assert reasons[0].startswith("event is not valid JSON")
    assert reasons[1] == "entry has no 'event' field"
    assert reasons[2] == "event is not a JSON object"
    assert reasons[3].startswith("event of 2011 bytes is over 1000")
    assert dead[0][1][b"event"] == b"{not json"
    assert client.xpending(STREAM, "wide_logging")["pending"] == 0
    assert consumer.metrics.get("consumer.dead_letters") == 4


def test_a_sink_outage_keeps_entries_pending_and_never_dead_letters_them(
    redis_url: str, redis_server: RedisServer
) -> None:
    """Retried from memory, not read again: a sink down for many retries does not use up
    max_deliveries (an outage of ~8 s used to send healthy entries to the dead letters)."""
    sink = ControlledSink("flaky")
    sink.failing = True
    consumer = StreamConsumer(redis_url, sink, block_ms=50, max_deliveries=3, retry_backoff=0.001)
    consumer.ensure_group()
    ids = publish(redis_url, 5)
    client = redis_server.client()
    for _ in range(10):  # ten failed writes: still pending, delivered once, not lost
        consumer.process_once()
        assert client.xpending(STREAM, "wide_logging")["pending"] == 5
    assert client.xlen(f"{STREAM}:dead") == 0
    details = client.xpending_range(STREAM, "wide_logging", min="-", max="+", count=10)
    assert {d["times_delivered"] for d in details} == {1}
    sink.failing = False
    consumer.process_once()
    assert request_ids(sink.events) == Counter(ids)
    assert client.xpending(STREAM, "wide_logging")["pending"] == 0


def test_entries_delivered_too_often_go_to_the_dead_letters(
    redis_url: str, redis_server: RedisServer
) -> None:
    """Redelivered again and again (consumers that crash on an entry): dead-lettered."""
    consumer = StreamConsumer(
        redis_url, ControlledSink("store"), block_ms=50, max_deliveries=3, consumer="c1"
    )
    consumer.ensure_group()
    ids = publish(redis_url, 5)
    client = redis_server.client()
    read = client.xreadgroup("wide_logging", "c1", {STREAM: ">"}, count=10)
    entry_ids = [entry_id for entry_id, _ in read[0][1]]
    client.xclaim(STREAM, "wide_logging", "c1", 0, entry_ids, retrycount=3)  # 3 crashes
    consumer.process_once()  # reads its pending list: the 4th delivery
    dead = client.xrange(f"{STREAM}:dead")
    assert [f[b"reason"] for _, f in dead] == [b"delivered 4 times"] * 5
    assert sorted(orjson.loads(f[b"event"])["request_id"] for _, f in dead) == sorted(ids)
    assert client.xpending(STREAM, "wide_logging")["pending"] == 0


def test_an_entry_the_sink_refuses_alone_is_dead_lettered_and_the_rest_stored(
    redis_url: str, redis_server: RedisServer
) -> None:
    class Picky(ControlledSink):
        def write(self, batch: Any) -> None:
            if any(b"bad-2" in data for data in batch):
                raise ValueError("document failed validation")
            super().write(batch)

    sink = Picky("picky")
    consumer = StreamConsumer(redis_url, sink, block_ms=50, retry_backoff=0.001)
    consumer.ensure_group()
    ids = publish(redis_url, 5, tag="bad")
    consumer.process_once()
    assert sorted(request_ids(sink.events)) == sorted(set(ids) - {"bad-2"})
    client = redis_server.client()
    [(_, letter)] = client.xrange(f"{STREAM}:dead")
    assert orjson.loads(letter[b"event"])["request_id"] == "bad-2"
    assert b"document failed validation" in letter[b"reason"]
    assert client.xpending(STREAM, "wide_logging")["pending"] == 0


def test_recovering_sink_gets_the_pending_entries(
    redis_url: str, redis_server: RedisServer
) -> None:
    sink = ControlledSink("flaky")
    sink.failing = True
    consumer = StreamConsumer(redis_url, sink, block_ms=50, retry_backoff=0.001)
    consumer.ensure_group()
    ids = publish(redis_url, 20)
    consumer.process_once()
    sink.failing = False
    consumer.process_once()
    assert request_ids(sink.events) == Counter(ids)


def test_two_consumers_share_the_load(
    redis_url: str, redis_server: RedisServer, tmp_path: Path, run_consumer: Any
) -> None:
    outs = [tmp_path / f"c{i}" / "events.jsonl" for i in range(2)]
    consumers = [
        run_consumer(
            StreamConsumer(redis_url, f"file:{out}", consumer=f"c{i}", batch_size=20, block_ms=50)
        )
        for i, out in enumerate(outs)
    ]
    ids = publish(redis_url, 2000)
    wait_for(lambda: sum(len(read_jsonl(o)) for o in outs) >= 2000, timeout=30, what="all consumed")
    per_consumer = [request_ids(read_jsonl(o)) for o in outs]
    assert per_consumer[0] + per_consumer[1] == Counter(ids)
    wait_for(
        lambda: sum(c.metrics.get("consumer.written") for c in consumers) == 2000, what="counted"
    )
    assert all(c.metrics.get("consumer.written") > 0 for c in consumers)  # both took a share


def test_invalid_options() -> None:
    with pytest.raises(ConfigurationError, match="batch_size"):
        StreamConsumer("redis://127.0.0.1:1/0", "memory:", batch_size=0)
    with pytest.raises(ConfigurationError, match="stream and group"):
        StreamConsumer("redis://127.0.0.1:1/0", "memory:", stream="")


@pytest.mark.mongo
@pytest.mark.slow
def test_sigkilled_consumer_mid_batch_is_taken_over_and_every_id_stored_once(
    redis_url: str, mongo_store: Any
) -> None:
    ids = publish(redis_url, 300)
    mongo_store.hold.clear()  # the store keeps inserts but answers late
    first = consume_process(
        redis_url, mongo_store.url, "--consumer", "first", "--batch-size", "100"
    )
    try:
        assert mongo_store.inserts_seen.wait(30), "the first consumer never wrote"
        first.send_signal(signal.SIGKILL)  # stored, not acknowledged: mid-batch
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    mongo_store.hold.set()
    assert 0 < len(mongo_store.ids()) < 300
    second = consume_process(
        redis_url,
        mongo_store.url,
        "--consumer",
        "second",
        "--claim-idle-ms",
        "300",
        "--block-ms",
        "100",
    )
    try:
        wait_for(lambda: len(mongo_store.ids()) == 300, timeout=30, what="every id in the store")
    finally:
        second.send_signal(signal.SIGTERM)
        _out, err = second.communicate(timeout=20)
    assert second.returncode == 0, err
    assert Counter(mongo_store.ids()) == Counter(  # exactly once, by _id
        doc["_id"] for doc in mongo_store.collection.find()
    )
    assert sorted(doc["request_id"] for doc in mongo_store.collection.find()) == sorted(ids)
    assert "claimed" in err


@pytest.mark.mongo
@pytest.mark.slow
def test_sigterm_finishes_the_batch_in_flight(
    redis_url: str, redis_server: RedisServer, mongo_store: Any
) -> None:
    publish(redis_url, 50)
    mongo_store.hold.clear()
    process = consume_process(redis_url, mongo_store.url, "--block-ms", "100")
    try:
        assert mongo_store.inserts_seen.wait(30)
        process.send_signal(signal.SIGTERM)  # while the batch is being written
        mongo_store.hold.set()
        _out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert len(mongo_store.ids()) == 50
    assert redis_server.client().xpending(STREAM, "wide_logging")["pending"] == 0  # acked
    assert "written 50" in err


@pytest.mark.mongo
def test_consumer_into_mongodb_stores_each_event_once(
    redis_url: str, mongo_target: Any, run_consumer: Any
) -> None:
    ids = publish(redis_url, 500)
    consumer = run_consumer(StreamConsumer(redis_url, mongo_target.url, block_ms=100))
    wait_for(lambda: len(mongo_target.ids()) >= 500, timeout=30, what="events in MongoDB")
    stored = list(mongo_target.collection.find())
    assert Counter(doc["request_id"] for doc in stored) == Counter(ids)
    assert all(doc["_id"] == doc["event_id"] for doc in stored)
    # counted once the write returned and the batch was acknowledged
    wait_for(lambda: consumer.metrics.get("consumer.written") == 500, what="the last ack")
    # replaying the same events (a crashed consumer's batch) changes nothing
    sink = consumer.sink
    entries = [
        orjson.dumps({k: v for k, v in doc.items() if k != "_id"}, default=str)
        for doc in stored[:50]
    ]
    sink.write(entries)
    assert len(mongo_target.ids()) == 500


def test_consumer_numbers_in_metrics_and_the_stats_table(
    redis_url: str, redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from wide_logging import metrics
    from wide_logging.tools.cli import main

    metrics._counter_sources.clear()
    metrics._gauge_sources.clear()
    sink = ControlledSink("flaky")
    sink.failing = True
    consumer = StreamConsumer(redis_url, sink, block_ms=50, retry_backoff=0.001, consumer="c-1")
    consumer.ensure_group()
    publish(redis_url, 10)
    redis_server.client().xadd(STREAM, {"event": b"not json"})
    consumer.process_once()  # 10 fail to write, 1 dead-lettered
    snap = metrics.snapshot()["consumer"]
    assert snap["pending"] == 10
    assert snap["failed_batches"] == 1
    assert snap["dead_letters"] == 1
    if "lag" in snap:  # Redis >= 7 reports it
        assert snap["lag"] == 0
    sink.failing = False
    consumer.process_once()
    consumer._group_info = (0.0, [])  # the gauges are cached for a second
    snap = metrics.snapshot()["consumer"]
    assert (snap["pending"], snap["written"]) == (0, 10)

    assert main(["stats", "--redis", redis_url]) == 0
    table = capsys.readouterr().out
    assert "stream        wide_logging:events" in table
    assert "11 entries" in table
    assert "pending 0" in table
    assert "wide_logging/c-1" in table
    assert "wide_logging:events:dead  1 entries" in table
