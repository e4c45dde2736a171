"""Real faults, real processes, event ids counted end to end.

- a process SIGKILLed in the middle of an append must not cost another process's events
  (a file sink shared by consumers, a spool shared by gunicorn workers);
- a sink that accepts and never answers (redis-server SIGSTOPped) must lose nothing while
  the spool is writable, and deliver everything after SIGCONT;
- events given up are counted by the rule that kept them, so re-weighting stays honest;
- a consumer whose acknowledgement fails, or whose Redis restarts from its AOF, loses no
  count and waits for no claim timeout; a dead consumer's entries are claimed in bounded time.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from conftest import ControlledSink, read_jsonl, wait_for
from servers import RedisServer
from wide_logging import WideEventHandler
from wide_logging._config import PipelineOptions
from wide_logging.consumer import StreamConsumer
from wide_logging.metrics import Metrics
from wide_logging.sinks import RotatingFileSink
from wide_logging.spool import SegmentReader

pytestmark = pytest.mark.slow

# -- SIGKILL in the middle of an append --------------------------------------------------

BIG_WRITER = """
import sys
from wide_logging.sinks import RotatingFileSink
from wide_logging.spool import Spool
from wide_logging.metrics import Metrics

path, kind = sys.argv[1], sys.argv[2]
event = b'{"event_id":"victim","pad":"' + b"v" * 800 + b'"}'
batch = [event] * 10_000  # ~8 MB per write: a kill lands inside write() most of the time
sink = RotatingFileSink(path, max_bytes=2**40)
target = Spool(sink, Metrics()) if kind == "spool" else None
print("ready", flush=True)
while True:
    if target is None:
        sink.write(batch)
    else:
        target.write(batch, "sink_failure")
"""

SECOND_WRITER = """
import sys, orjson
from wide_logging.sinks import RotatingFileSink
from wide_logging.spool import Spool
from wide_logging.metrics import Metrics

path, kind, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
sink = RotatingFileSink(path, max_bytes=2**40)
events = [orjson.dumps({"event_id": f"innocent-{n}", "sampling": {"rule": "error"}}) for n in range(count)]
if kind == "spool":
    Spool(sink, Metrics()).write(events, "sink_failure")
else:
    sink.write(events)
"""


def _torn_file(path: Path, kind: str, attempts: int = 20) -> None:
    """Run the big writer and SIGKILL it until the file ends in the middle of a line."""
    for _ in range(attempts):
        path.unlink(missing_ok=True)
        child = subprocess.Popen(
            [sys.executable, "-c", BIG_WRITER, str(path), kind],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        wait_for(lambda: path.exists() and path.stat().st_size > 0, what="the first write")
        time.sleep(random.uniform(0.0, 0.02))
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            return
    pytest.fail(f"no torn write in {attempts} SIGKILLs")


@pytest.mark.parametrize("kind", ["file-sink", "spool"])
def test_a_write_torn_by_sigkill_costs_no_other_process_its_events(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "shared" / "events.jsonl"
    _torn_file(path, kind)
    torn_at = path.stat().st_size
    subprocess.run(
        [sys.executable, "-c", SECOND_WRITER, str(path), kind, "500"], check=True, timeout=60
    )
    data = path.read_bytes()
    assert data[torn_at : torn_at + 1] == b"\n"  # the fragment was ended, not appended to
    lines = data.split(b"\n")
    innocent = [orjson.loads(line)["event_id"] for line in lines if b"innocent" in line]
    assert innocent == [f"innocent-{n}" for n in range(500)]
    # A reader (replay) skips the fragment, counts it, and keeps the line after it.
    metrics = Metrics()
    reader = SegmentReader(path, 1000, metrics)
    replayed = []
    while batch := reader.next_batch():
        replayed += [orjson.loads(line)["event_id"] for line in batch]
        reader.sent()
    reader.close()
    assert [i for i in replayed if i.startswith("innocent")] == innocent
    assert metrics.get("dropped.corrupt_spool_line") == 1


def test_a_torn_line_left_by_a_killed_writer_is_ended_by_the_next(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    sink = RotatingFileSink(path)
    sink.write([b'{"event_id":"a"}'])
    with open(path, "ab") as raw:  # what a SIGKILL inside write() leaves behind
        raw.write(b'{"event_id":"half-writ')
    other = RotatingFileSink(path)
    other.write([b'{"event_id":"b"}'])
    sink.write([b'{"event_id":"c"}'])  # the first writer notices the file changed too
    assert path.read_bytes().split(b"\n") == [
        b'{"event_id":"a"}',
        b'{"event_id":"half-writ',
        b'{"event_id":"b"}',
        b'{"event_id":"c"}',
        b"",
    ]


# -- SIGKILL of a busy process: what it may lose ---------------------------------------

KEEPING_PROCESS = Path(__file__).parent / "apps" / "keeping_process.py"


def test_a_sigkill_costs_a_busy_process_only_its_last_flush_interval(tmp_path: Path) -> None:
    """docs/operations.md: a SIGKILL loses the queued events — at most the last
    ``flush_interval`` of kept events — and the batch being written; nothing older. Here
    with the default ``batch_size`` and ``flush_interval``, keeping 2,000 events a second
    (how many a kill takes at each batch size: docs/deployment.md, "Keeping many events")."""
    rate, path = 2000, tmp_path / "events.jsonl"
    child = subprocess.Popen(
        [sys.executable, str(KEEPING_PROCESS), str(path), str(rate)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    reported: list[int] = []
    reader = threading.Thread(target=lambda: reported.extend(map(int, child.stdout)))
    reader.start()
    try:
        wait_for(
            lambda: len(read_jsonl(path)) >= 2 * rate,
            timeout=30,
            what="two seconds' events written",
        )
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        reader.join(10)
    handed_off = reported[-1]
    written = {int(event["request_id"][2:]) for event in read_jsonl(path)}
    missing = set(range(handed_off)) - written
    defaults = PipelineOptions()  # the last flush_interval's events, and the batch in flight
    window = rate * defaults.flush_interval + defaults.batch_size
    assert not {n for n in missing if n < handed_off - window}, "an older event was lost"
    assert len(written) >= handed_off - window


# -- a sink that accepts and never answers --------------------------------------------


def _stream_ids(server: RedisServer, stream: str = "wide_logging:events") -> Counter[str]:
    client = server.client()
    ids: Counter[str] = Counter()
    last = "-"
    while True:
        entries = client.xrange(stream, min=last, max="+", count=5000)
        if last != "-":
            entries = entries[1:]
        if not entries:
            break
        for _, fields in entries:
            ids[orjson.loads(fields[b"event"])["request_id"]] += 1
        last = entries[-1][0].decode()
    client.close()
    return ids


def test_a_hung_redis_loses_nothing_and_gets_everything_after_sigcont(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    """redis-server SIGSTOPped under load with every event kept: nothing dropped while the
    spool is writable (the queue spills to it), everything in the stream after SIGCONT."""
    handler = WideEventHandler(
        sink=own_redis.url,  # the default 2 s socket timeout, as deployed
        fallback=f"file:{tmp_path}/spool/events.jsonl",
        sampling={"normal_rate": 1.0},
        queue_size=2000,  # small, so that an outage of seconds overflows it without spilling
        breaker_cooldown=1.0,
        flush_interval=0.05,
    )
    sent: list[str] = []
    stop = threading.Event()

    def load() -> None:  # ~4,000 kept events a second
        n = 0
        while not stop.is_set():
            for _ in range(40):
                request_id = f"hung-{n}"
                handler.submit(handler.new_event(request_id=request_id))
                sent.append(request_id)
                n += 1
            time.sleep(0.01)

    loader = threading.Thread(target=load)
    loader.start()
    try:
        time.sleep(1.0)
        assert own_redis.process is not None
        own_redis.process.send_signal(signal.SIGSTOP)
        time.sleep(6.0)  # longer than sink_timeout and the socket timeout, several cooldowns
        own_redis.process.send_signal(signal.SIGCONT)
        time.sleep(1.0)
        stop.set()
        loader.join(10)
        assert handler.flush(30)
        wait_for(lambda: set(_stream_ids(own_redis)) >= set(sent), timeout=60, what="all streamed")
        snapshot = handler.metrics.snapshot()
    finally:
        stop.set()
        loader.join(10)
        if own_redis.process is not None:
            own_redis.process.send_signal(signal.SIGCONT)
        handler.close()
    dropped = {name: n for name, n in snapshot.items() if name.startswith("dropped.")}
    assert len(sent) > 20_000
    assert dropped == {}
    assert snapshot.get("spooled.backpressure", 0) > 0  # the queue really spilled
    assert snapshot.get(f"timeouts.{handler.pipeline.links[0].sink.name}", 0) >= 1
    stored = _stream_ids(own_redis)
    assert set(stored) == set(sent)
    # At least once: a batch in flight when Redis froze may be stored twice (the stuck
    # XADD completes after SIGCONT, and the spooled copy is replayed).
    assert sum(stored.values()) - len(stored) <= 2 * handler.pipeline.options.batch_size


# -- re-weighting stays honest ------------------------------------------------------------


def test_every_missing_normal_event_is_counted_as_lost_by_its_rule(tmp_path: Path) -> None:
    sink = ControlledSink("slow", local=True)  # blocks the writer itself: the queue overflows
    sink.release.clear()
    handler = WideEventHandler(
        sink=sink,
        fallback=f"file:{tmp_path}/spool/events.jsonl",
        sampling={"normal_rate": 1.0},
        queue_size=100,
        batch_size=10,
        flush_interval=0.05,
    )
    try:
        for n in range(2000):
            event = handler.new_event(request_id=f"w-{n}")
            if n % 10 == 0:
                event.annotate(force_keep=True)  # an always-keep rule: spooled, never lost
            handler.submit(event)
        sink.release.set()
        assert handler.flush(30)
        always_kept = {f"w-{n}" for n in range(0, 2000, 10)}
        # (the spool file empties when its segment is claimed, before the segment is sent)
        wait_for(
            lambda: always_kept <= {e["request_id"] for e in sink.events},
            timeout=30,
            what="every always-keep event written, the spooled ones replayed",
        )
        stored = {e["request_id"] for e in sink.events}
        snapshot = handler.metrics.snapshot()
    finally:
        handler.close()
    missing = {f"w-{n}" for n in range(2000)} - stored
    assert missing  # the queue did overflow
    assert all(int(rid.split("-")[1]) % 10 for rid in missing)  # only normal events
    assert snapshot["events.lost.normal"] == len(missing)
    assert snapshot["dropped.queue_overflow"] == len(missing)
    assert "events.lost.force_keep" not in snapshot
    kept_normal = snapshot["events.kept.normal"]
    assert kept_normal - snapshot["events.lost.normal"] == len(stored) - 200


def test_the_metrics_snapshot_offers_the_correction() -> None:
    from wide_logging import metrics

    before = metrics.snapshot()["events"]  # other handlers of this process count too
    counters = Metrics()
    for _ in range(100):
        counters.record_decision("events.kept.normal")
    counters.inc("events.lost.normal", 20)
    try:
        events = metrics.snapshot()["events"]
        kept = before["kept"].get("normal", 0) + 100
        lost = before["lost"].get("normal", 0) + 20
        assert events["lost"]["normal"] == lost
        assert events["correction"]["normal"] == pytest.approx(kept / (kept - lost))
    finally:
        metrics.unregister_counters(counters)


# -- the consumer ---------------------------------------------------------------------------


def _publish(url: str, ids: Sequence[str]) -> None:
    handler = WideEventHandler(sink=url, sampling={"normal_rate": 1.0}, flush_interval=0.05)
    for request_id in ids:
        handler.submit(handler.new_event(request_id=request_id))
    assert handler.flush(30)
    handler.close()


class KillsRedisOnFirstWrite(ControlledSink):
    """Stores the batch, then SIGKILLs Redis before the consumer can acknowledge it."""

    def __init__(self, server: RedisServer) -> None:
        super().__init__("store")
        self.server = server
        self.kill_started = False
        self.killed = False

    def write(self, batch: Sequence[bytes]) -> None:
        super().write(batch)
        if not self.kill_started:
            self.kill_started = True
            self.server.kill()
            # Only now: the test restarts the server when it sees this, and a restart
            # while kill() still ran had its new process handle overwritten with None
            # (the new server then outlived the test) or found the port still taken.
            self.killed = True


def test_a_failed_ack_is_counted_and_redis_restart_rereads_our_pending_at_once(
    own_redis: RedisServer,
) -> None:
    ids = [f"ack-{n}" for n in range(300)]
    _publish(own_redis.url, ids)
    sink = KillsRedisOnFirstWrite(own_redis)
    consumer = StreamConsumer(
        own_redis.url,
        sink,
        block_ms=100,
        batch_size=100,
        claim_idle_ms=600_000,  # a claim would take ten minutes: only re-reading helps
        retry_backoff=0.05,
    )
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: sink.killed, what="the first batch stored and Redis killed")
        own_redis.start()  # from its AOF: our read-but-unacknowledged entries are pending
        client = own_redis.client()
        wait_for(
            lambda: (
                client.xinfo_groups("wide_logging:events")[0]["pending"] == 0
                and {e["request_id"] for e in sink.events} == set(ids)
            ),
            timeout=30,
            what="everything stored and acknowledged without waiting for a claim",
        )
    finally:
        consumer.stop()
        thread.join(10)
    written = consumer.metrics.get("consumer.written")
    stored = Counter(e["request_id"] for e in sink.events)
    assert written == sum(stored.values())  # every write counted, the repeated one too
    assert sum(stored.values()) - len(stored) <= 100  # only the unacknowledged batch again


def test_a_dead_consumers_entries_are_claimed_within_idle_plus_a_second(
    redis_url: str, redis_server: RedisServer
) -> None:
    _publish(redis_url, [f"claim-{n}" for n in range(50)])
    client = redis_server.client()
    client.xgroup_create("wide_logging:events", "wide_logging", id="0", mkstream=True)
    # "dead" reads everything and dies without acknowledging
    client.xreadgroup("wide_logging", "dead", {"wide_logging:events": ">"}, count=100)
    read_at = time.monotonic()
    sink = ControlledSink("store")
    idle_ms = 3000
    consumer = StreamConsumer(redis_url, sink, block_ms=5000, claim_idle_ms=idle_ms)
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(sink.events) == 50, timeout=20, what="the dead consumer's entries")
        taken = time.monotonic() - read_at
    finally:
        consumer.stop()
        thread.join(10)
    assert idle_ms / 1000 <= taken <= idle_ms / 1000 + 1.5, taken


# -- the echoed request id header -------------------------------------------------------------


def test_both_middlewares_echo_the_configured_header(make_handler: Any) -> None:
    import asyncio

    from wide_logging import WideEventMiddleware, WideEventWSGIMiddleware

    make_handler(sink=ControlledSink())
    sent: list[Any] = []

    async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [(b"x-trace-id", b"t-1")]}
    middleware = WideEventMiddleware(asgi_app, request_id_header="X-Trace-Id")
    asyncio.run(middleware(scope, None, send))
    assert (b"x-trace-id", b"t-1") in sent[0]["headers"]  # ASGI: lowercase, as the spec asks

    headers: list[tuple[str, str]] = []

    def wsgi_app(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b""]

    wsgi = WideEventWSGIMiddleware(wsgi_app, request_id_header="X-Trace-Id")
    body = wsgi(
        {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "HTTP_X_TRACE_ID": "t-2"},
        lambda status, hdrs, exc_info=None: headers.extend(hdrs),
    )
    list(body)
    assert ("X-Trace-Id", "t-2") in headers  # WSGI: as configured


# -- the crash-tester's findings ---------------------------------------------------------

LOCK_HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT | os.O_APPEND)
fcntl.flock(fd, fcntl.LOCK_EX)  # a frozen worker, or a hung NFS server, holding the lock
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


def _hold_lock(path: Path, seconds: float) -> subprocess.Popen[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(path), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_request_never_waits_long_for_another_process_holding_the_spool(
    tmp_path: Path,
) -> None:
    """Queue full, an always-keep event spooled from the request thread, and another
    process holds the spool's lock: the request waits a bounded moment (it waited 14.75 s),
    and the event is counted as lost, never silently."""
    spool = tmp_path / "spool" / "events.jsonl"
    sink = ControlledSink("stuck", local=True)
    sink.release.clear()  # the writer is stuck: the queue fills
    handler = WideEventHandler(
        sink=sink,
        fallback=f"file:{spool}",
        sampling={"normal_rate": 1.0},
        queue_size=10,
        batch_size=1,
        flush_interval=0.05,
    )
    holder = _hold_lock(spool, 30)
    try:
        for n in range(12):
            handler.submit(handler.new_event(request_id=f"fill-{n}"))
        slowest = 0.0
        for n in range(20):
            event = handler.new_event(request_id=f"err-{n}")
            event.annotate(force_keep=True)
            started = time.monotonic()
            handler.submit(event)
            slowest = max(slowest, time.monotonic() - started)
        assert slowest < 0.5, slowest
        lost = handler.metrics.get("events.lost.force_keep")
        assert lost == handler.metrics.get("dropped.spool_failure")
        assert lost >= 18  # all that found the queue full (one or two may have fitted)
    finally:
        holder.kill()
        holder.wait(10)
        sink.release.set()
        handler.close()


def test_exit_does_not_wait_for_another_process_holding_the_sink_file(tmp_path: Path) -> None:
    """A file sink whose lock another process holds for ever: the batch times out and is
    spooled, and close() returns (it waited as long as the lock was held)."""
    out = tmp_path / "out" / "events.jsonl"
    holder = _hold_lock(out, 60)
    try:
        handler = WideEventHandler(
            sink=f"file:{out}",
            fallback=f"file:{tmp_path}/spool/events.jsonl",
            sampling={"normal_rate": 1.0},
            flush_interval=0.05,
            shutdown_timeout=2,
        )
        for n in range(30):
            handler.submit(handler.new_event(request_id=f"x-{n}"))
        started = time.monotonic()
        handler.close()
        assert time.monotonic() - started < 12
        spooled = read_jsonl(tmp_path / "spool" / "events.jsonl")
        assert {e["request_id"] for e in spooled} == {f"x-{n}" for n in range(30)}
    finally:
        holder.kill()
        holder.wait(10)


def test_the_queue_spills_while_a_refused_sink_is_retried(tmp_path: Path) -> None:
    """Retries back off for seconds: the queue must spill meanwhile, not overflow (1,110
    normal events were dropped during a Redis restart)."""
    sink = ControlledSink("refusing")
    sink.failing = True  # refused at once (ConnectionError): retried with backoff
    handler = WideEventHandler(
        sink=sink,
        fallback=f"file:{tmp_path}/spool/events.jsonl",
        sampling={"normal_rate": 1.0},
        queue_size=200,
        batch_size=50,
        max_retries=3,
        retry_backoff=0.5,
        flush_interval=0.05,
    )
    try:
        for n in range(3000):
            handler.submit(handler.new_event(request_id=f"r-{n}"))
            if n % 100 == 0:
                time.sleep(0.01)  # a steady stream over the backoffs
        assert handler.flush(60)
        snapshot = handler.metrics.snapshot()
    finally:
        handler.close()
    assert not {k: v for k, v in snapshot.items() if k.startswith("dropped.")}
    assert snapshot.get("spooled.backpressure", 0) > 0


def test_dead_letters_beyond_the_files_kept_are_counted(tmp_path: Path) -> None:
    class RefusesBad(ControlledSink):
        def write(self, batch: Sequence[bytes]) -> None:
            if any(b'"bad"' in data for data in batch):
                raise ValueError("refused")
            super().write(batch)

    handler = WideEventHandler(
        sink=RefusesBad("refuses-bad", local=True),
        fallback=f"file:{tmp_path}/spool/events.jsonl?max_bytes=4096&backups=2",
        sampling={"normal_rate": 1.0},
        batch_size=10,
        flush_interval=0.05,
    )
    try:
        for n in range(400):
            event = handler.new_event(request_id=f"e-{n}")
            event.annotate(kind_of="bad" if n % 2 else "good", pad="p" * 200)
            handler.submit(event)
        assert handler.flush(30)
        snapshot = handler.metrics.snapshot()
    finally:
        handler.close()
    on_disk = read_jsonl(tmp_path / "spool" / "dead-letters.jsonl")
    assert snapshot["dead_letters.refuses-bad"] == 200
    assert len(on_disk) + snapshot["dropped.dead_letters_full"] == 200
    assert snapshot["dropped.dead_letters_full"] > 0


REPLAYER = """
import sys, time
from wide_logging import WideEventHandler
handler = WideEventHandler(
    sink="file:" + sys.argv[1], fallback="file:" + sys.argv[2],
    sampling={"normal_rate": 1.0}, batch_size=200, flush_interval=0.01, replay_rate=20000,
)
handler.submit(handler.new_event(request_id="wake"))  # starts the writer, and so the replay
time.sleep(600)
"""


def test_a_replay_killed_mid_segment_resumes_where_it_was(tmp_path: Path) -> None:
    """Each process that died replaying a segment used to send it again from its start
    (20,600 duplicates after 5 kills); now the next one resumes from a checkpoint."""
    out, spool = tmp_path / "out" / "events.jsonl", tmp_path / "spool" / "events.jsonl"
    spool.parent.mkdir(parents=True)
    lines = [orjson.dumps({"event_id": f"e{n}", "request_id": f"s-{n}"}) for n in range(30_000)]
    spool.write_bytes(b"\n".join(lines) + b"\n")
    kills = 0
    for _ in range(4):
        child = subprocess.Popen([sys.executable, "-c", REPLAYER, str(out), str(spool)])
        target = len(read_jsonl(out)) + 2000
        wait_for(lambda t=target: len(read_jsonl(out)) > t, timeout=60, what="replay progress")
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        kills += 1
        if len({e["request_id"] for e in read_jsonl(out)}) > 30_000:
            break
    child = subprocess.Popen([sys.executable, "-c", REPLAYER, str(out), str(spool)])
    try:
        wanted = {f"s-{n}" for n in range(30_000)}
        wait_for(
            lambda: wanted <= {e["request_id"] for e in read_jsonl(out)}, timeout=120, what="all"
        )
    finally:
        child.kill()
        child.wait(10)
    stored = Counter(e["request_id"] for e in read_jsonl(out) if e["request_id"] != "wake")
    duplicates = sum(stored.values()) - len(stored)
    assert duplicates <= kills * 200, duplicates  # at most the batch in flight per kill


def test_a_full_disk_is_reported_once_in_a_while_not_per_batch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sink = ControlledSink("down")
    sink.failing = True
    handler = WideEventHandler(
        sink=sink,
        fallback=f"file:{tmp_path}/spool/events.jsonl",
        sampling={"normal_rate": 1.0},
        batch_size=10,
        max_retries=0,
        breaker_cooldown=60,
        flush_interval=0.05,
    )
    (tmp_path / "spool").rmdir()
    (tmp_path / "spool").write_text("the disk is gone")
    try:
        for n in range(500):
            handler.submit(handler.new_event(request_id=f"f-{n}"))
        assert handler.flush(30)
        assert handler.metrics.get("dropped.spool_failure") == 500
    finally:
        handler.close()
    reports = [
        r for r in caplog.records if "spool" in r.getMessage() and "failed" in r.getMessage()
    ]
    assert 1 <= len(reports) <= 2, [r.getMessage() for r in reports]
