from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from conftest import read_jsonl, wait_for
from servers import RedisServer
from wide_logging import ConfigurationError, WideEventHandler
from wide_logging.sinks import open_sink
from wide_logging.sinks.redis_stream import RedisStreamSink

pytestmark = pytest.mark.redis


def payloads(n: int, tag: str = "e") -> list[bytes]:
    return [orjson.dumps({"event_id": f"{tag}-{i}", "pad": "x" * 400}) for i in range(n)]


def stream_ids(server: RedisServer, stream: str = "wide_logging:events") -> list[str]:
    client = server.client()
    try:
        return [orjson.loads(fields[b"event"])["event_id"] for _, fields in client.xrange(stream)]
    finally:
        client.close()


def test_batch_is_xadded_in_order_with_the_documented_layout(
    redis_url: str, redis_server: RedisServer
) -> None:
    sink = open_sink(f"{redis_url}?stream=app:events")
    assert isinstance(sink, RedisStreamSink)
    sink.write(payloads(250))
    client = redis_server.client()
    entries = client.xrange("app:events")
    assert len(entries) == 250
    assert set(entries[0][1]) == {b"event"}
    assert [orjson.loads(f[b"event"])["event_id"] for _, f in entries] == [
        f"e-{i}" for i in range(250)
    ]
    sink.close()


def test_approximate_trimming_bounds_the_stream(redis_url: str, redis_server: RedisServer) -> None:
    sink = RedisStreamSink(redis_url, maxlen=100)
    for _ in range(20):
        sink.write(payloads(250))
    length = redis_server.client().xlen("wide_logging:events")
    assert 100 <= length < 1000  # "~": whole nodes are trimmed, never below maxlen
    sink.close()


def test_options_from_url_and_keywords(redis_url: str) -> None:
    sink = RedisStreamSink(f"{redis_url}?stream=s1&maxlen=5&socket_timeout=0.5")
    assert (sink.stream, sink.maxlen) == ("s1", 5)
    assert RedisStreamSink(redis_url, stream="s2").stream == "s2"
    with pytest.raises(ConfigurationError, match="unknown redis sink option"):
        RedisStreamSink(redis_url, colour="red")
    with pytest.raises(ConfigurationError, match="maxlen"):
        RedisStreamSink(f"{redis_url}?maxlen=-3")


def test_name_masks_the_password() -> None:
    sink = RedisStreamSink("redis://:s3cret@127.0.0.1:1/0?stream=x")
    assert "s3cret" not in sink.name
    assert sink.name == "redis://:***@127.0.0.1:1/0#x"
    sink.close()


def test_dead_redis_fails_fast(redis_binary: str, tmp_path: Path) -> None:
    server = RedisServer(redis_binary, tmp_path / "r")  # never started: nothing listens
    sink = RedisStreamSink(server.url, connect_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(Exception, match="onnect"):
        sink.write(payloads(3))
    assert time.monotonic() - started < 3


def test_redis_killed_mid_load_loses_no_event(own_redis: RedisServer, tmp_path: Path) -> None:
    spool = tmp_path / "spool" / "events.jsonl"
    handler = WideEventHandler(
        sink=f"{own_redis.url}?socket_timeout=0.5&connect_timeout=0.5",
        fallback=f"file:{spool}",
        sampling={"normal_rate": 1.0},
        batch_size=50,
        flush_interval=0.05,
        max_retries=1,
        retry_backoff=0.01,
        breaker_cooldown=0.2,
        queue_size=100_000,
    )
    total = 3000
    sent: list[str] = []
    outage_done = threading.Event()

    def load() -> None:
        for n in range(total):
            event = handler.new_event(request_id=f"load-{n}")
            handler.submit(event)
            sent.append(f"load-{n}")
            if n % 100 == 0:
                time.sleep(0.01)

    loader = threading.Thread(target=load)
    loader.start()
    wait_for(lambda: len(sent) > 600, what="load under way")
    own_redis.kill()
    wait_for(lambda: handler.metrics.get("spooled") > 0, what="events spooled while redis is down")
    own_redis.start()
    outage_done.set()
    loader.join(60)
    assert handler.flush(30)

    def stored() -> Counter[str]:
        in_stream = Counter(
            orjson.loads(f[b"event"])["request_id"]
            for _, f in own_redis.client().xrange("wide_logging:events")
        )
        return in_stream

    wait_for(
        lambda: set(stored()) == set(sent), timeout=30, what="every id in the stream after replay"
    )
    assert len(sent) == total
    assert read_jsonl(spool) == []  # replayed and removed
    snapshot = handler.metrics.snapshot()
    assert snapshot["replayed"] == snapshot["spooled"] > 0
    assert (
        sum(stored().values()) - total
        <= snapshot.get("retries." + handler.pipeline.links[0].sink.name, 0) * 50
    )
    handler.close()


def test_handler_sink_options_configure_the_stream(
    redis_url: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    handler = WideEventHandler(
        sink=redis_url,
        sink_options={"stream": "from-options", "maxlen": 10},
        fallback=f"file:{tmp_path}/spool.jsonl",
        sampling={"normal_rate": 1.0},
    )
    sink = handler.pipeline.links[0].sink
    assert isinstance(sink, RedisStreamSink)
    assert (sink.stream, sink.maxlen) == ("from-options", 10)
    handler.submit(handler.new_event(request_id="opt-1"))
    assert handler.flush(10)
    assert redis_server.client().xlen("from-options") == 1
    handler.close()
