from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from conftest import ControlledSink, read_jsonl, wait_for
from wide_logging import ConfigurationError
from wide_logging.metrics import Metrics
from wide_logging.pipeline import COMPACT_ABOVE, EVENT_OVERHEAD, Pipeline
from wide_logging.sampling import Decision
from wide_logging.sinks import RotatingFileSink
from wide_logging.spool import Spool

#: Decisions as the sampler makes them: an always-keep one and a sampled one.
ERROR = Decision(True, "error", 1.0)
NORMAL = Decision(True, "normal", 0.02)


def ev(i: int | str, pad: int = 0, rule: str = "normal") -> bytes:
    return orjson.dumps({"event_id": str(i), "pad": "p" * pad, "sampling": {"rule": rule}})


def ids(events: list[dict[str, Any]]) -> list[str]:
    return [e["event_id"] for e in events]


@pytest.fixture
def spool_path(tmp_path: Path) -> Path:
    return tmp_path / "spool" / "events.jsonl"


@pytest.fixture
def build(spool_path: Path):  # type: ignore[no-untyped-def]
    made: list[Pipeline] = []

    def make(*sinks: Any, **options: Any) -> Pipeline:
        options.setdefault("flush_interval", 0.05)
        options.setdefault("retry_backoff", 0.001)
        options.setdefault("breaker_cooldown", 0.2)
        metrics = Metrics()
        pipeline = Pipeline(
            list(sinks), Spool(RotatingFileSink(spool_path), metrics), metrics=metrics, **options
        )
        made.append(pipeline)
        return pipeline

    yield make
    for pipeline in made:
        pipeline.close(timeout=1)


def test_batches_are_cut_at_batch_size(build) -> None:  # type: ignore[no-untyped-def]
    sink = ControlledSink()
    pipeline = build(sink, batch_size=10, flush_interval=60)
    for i in range(5):
        pipeline.put(ev(i), NORMAL)
    time.sleep(0.2)  # observation window: a partial batch must wait for the interval
    assert sink.batches == []
    for i in range(5, 10):
        pipeline.put(ev(i), NORMAL)
    wait_for(lambda: sink.batches, what="a full batch")
    assert [len(b) for b in sink.batches] == [10]
    for i in range(10, 45):
        pipeline.put(ev(i), NORMAL)
    assert pipeline.flush(5)
    assert all(len(b) <= 10 for b in sink.batches)
    assert ids(sink.events) == [str(i) for i in range(45)]


def test_partial_batch_is_written_after_the_interval(build) -> None:  # type: ignore[no-untyped-def]
    sink = ControlledSink()
    pipeline = build(sink, batch_size=1000, flush_interval=0.1)
    started = time.monotonic()
    for i in range(3):
        pipeline.put(ev(i), NORMAL)
    wait_for(lambda: sink.batches, timeout=5, what="the interval flush")
    assert time.monotonic() - started < 2
    assert [len(b) for b in sink.batches] == [3]


def test_full_queue_spools_always_keep_events_and_counts_dropped_ones(
    build, spool_path: Path
) -> None:  # type: ignore[no-untyped-def]
    sink = ControlledSink(local=True)  # a local sink that hangs blocks the writer itself
    sink.release.clear()
    pipeline = build(sink, batch_size=1, queue_size=5)
    pipeline.put(ev("first"), NORMAL)
    wait_for(lambda: sink.attempts == 1, what="the writer to block in the sink")
    for i in range(5):
        pipeline.put(ev(f"queued-{i}"), NORMAL)
    for i in range(3):
        pipeline.put(ev(f"error-{i}", rule="error"), ERROR)
        pipeline.put(ev(f"normal-{i}"), NORMAL)
    assert ids(read_jsonl(spool_path)) == ["error-0", "error-1", "error-2"]
    assert pipeline.metrics.get("dropped.queue_overflow") == 3
    assert pipeline.metrics.get("events.lost.normal") == 3  # by the rule that kept them
    assert pipeline.metrics.get("spooled.queue_overflow") == 3
    sink.release.set()
    assert pipeline.flush(5)
    assert ids(sink.events)[:6] == ["first"] + [f"queued-{i}" for i in range(5)]
    # the spooled errors are replayed once the sink is healthy: every kept id arrives
    wait_for(lambda: len(sink.events) == 9, what="spooled errors replayed")
    assert sorted(ids(sink.events)[6:]) == ["error-0", "error-1", "error-2"]


def test_queue_is_bounded_by_bytes(build) -> None:  # type: ignore[no-untyped-def]
    sink = ControlledSink(local=True)
    sink.release.clear()
    pipeline = build(sink, batch_size=1, queue_bytes=2048)
    pipeline.put(ev("first"), NORMAL)
    wait_for(lambda: sink.attempts == 1, what="the writer to block")
    for i in range(10):
        pipeline.put(ev(i, pad=450), NORMAL)
    fits = 2048 // (len(ev(0, pad=450)) + EVENT_OVERHEAD)  # each event with its object's cost
    assert fits == 3
    assert pipeline.queue_depth == fits
    assert pipeline.queued_bytes <= 2048
    assert pipeline.metrics.get("dropped.queue_overflow") == 10 - fits
    sink.release.set()
    assert pipeline.flush(5)
    assert pipeline.queued_bytes == 0


def test_a_backlog_holds_exact_size_copies(build) -> None:  # type: ignore[no-untyped-def]
    """orjson's bytes keep a 4 KiB buffer behind a small event; queued in a backlog, an
    event must cost about what queue_bytes counts for it."""
    import tracemalloc

    sink = ControlledSink(local=True)
    sink.release.clear()
    pipeline = build(sink, batch_size=1, queue_size=10_000, queue_bytes=10**8)
    pipeline.put(ev("first"), NORMAL)
    wait_for(lambda: sink.attempts == 1, what="the writer to block")
    tracemalloc.start()
    try:
        for i in range(2000):
            pipeline.put(ev(i, pad=300), NORMAL)
        allocated = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert pipeline.queue_depth == 2000  # "first" is with the writer
    # uncopied, 2,000 events hold ~8 MB; the first COMPACT_ABOVE bytes may stay uncopied
    assert allocated < pipeline.queued_bytes * 1.1 + COMPACT_ABOVE * 10
    sink.release.set()
    assert pipeline.flush(5)
    assert sorted(ids(sink.events)[1:], key=int) == [str(i) for i in range(2000)]


def test_failed_sink_retries_then_spools_then_breaker_skips_it(build, spool_path: Path) -> None:  # type: ignore[no-untyped-def]
    sink = ControlledSink()
    sink.failing = True
    pipeline = build(sink, batch_size=10, max_retries=2, breaker_cooldown=60)
    for i in range(10):
        pipeline.put(ev(i), ERROR)
    assert pipeline.flush(5)
    assert sink.attempts == 3  # 1 + max_retries
    assert pipeline.metrics.get("retries.controlled") == 2
    assert pipeline.links[0].breaker.state == "open"
    for i in range(10, 20):
        pipeline.put(ev(i), NORMAL)
    assert pipeline.flush(5)
    assert sink.attempts == 3  # circuit open: not tried again
    assert sorted(ids(read_jsonl(spool_path)), key=int) == [str(i) for i in range(20)]
    assert pipeline.metrics.get("spooled.sink_failure") == 20


def test_recovery_replays_the_spool_and_loses_nothing(build, spool_path: Path) -> None:  # type: ignore[no-untyped-def]
    sink = ControlledSink()
    sink.failing = True
    pipeline = build(sink, batch_size=50, max_retries=0, breaker_cooldown=0.1)
    for i in range(500):
        pipeline.put(ev(i), ERROR if i % 2 == 0 else NORMAL)
    assert pipeline.flush(5)
    assert not sink.events
    sink.failing = False
    for i in range(500, 600):  # live traffic after recovery
        pipeline.put(ev(i), NORMAL)
    wait_for(lambda: len(sink.events) >= 600, timeout=15, what="replay of the spool")
    assert sorted(ids(sink.events), key=int) == [str(i) for i in range(600)]
    wait_for(lambda: not read_jsonl(spool_path), what="replayed segments removed")
    assert [p.name for p in spool_path.parent.iterdir()] == ["events.jsonl"]
    assert pipeline.metrics.get("replayed") == pipeline.metrics.get("spooled") >= 500
    assert pipeline.links[0].breaker.state == "closed"


def test_spool_left_by_an_earlier_run_is_replayed_at_start(build, spool_path: Path) -> None:  # type: ignore[no-untyped-def]
    spool_path.parent.mkdir(parents=True)
    spool_path.write_bytes(b"\n".join(ev(f"old-{i}") for i in range(30)) + b"\n")
    crashed = spool_path.with_name("events.20260101T000000.000000-999999.jsonl.replaying-999999")
    crashed.write_bytes(ev("orphan-0") + b"\n" + b'{"truncated' + b"\n" + ev("orphan-1") + b"\n")
    sink = ControlledSink()
    pipeline = build(sink, batch_size=10)
    pipeline.put(ev("live"), NORMAL)
    wait_for(lambda: len(sink.events) == 33, what="old spool replayed")
    assert set(ids(sink.events)) == {"live", "orphan-0", "orphan-1"} | {
        f"old-{i}" for i in range(30)
    }
    assert pipeline.metrics.get("dropped.corrupt_spool_line") == 1


def test_fallback_chain_takes_what_the_primary_cannot(build, spool_path: Path) -> None:  # type: ignore[no-untyped-def]
    primary, secondary = ControlledSink("primary"), ControlledSink("secondary")
    primary.failing = True
    pipeline = build(primary, secondary, max_retries=1)
    for i in range(5):
        pipeline.put(ev(i), NORMAL)
    assert pipeline.flush(5)
    assert ids(secondary.events) == [str(i) for i in range(5)]
    assert read_jsonl(spool_path) == []
    assert pipeline.metrics.get("written.secondary") == 5


def test_flush_times_out_and_close_spools_even_the_in_flight_batch(build, spool_path: Path) -> None:  # type: ignore[no-untyped-def]
    sink = ControlledSink()
    sink.release.clear()
    pipeline = build(sink, batch_size=5)
    for i in range(12):
        pipeline.put(ev(i), NORMAL)
    wait_for(lambda: sink.attempts == 1, what="the writer to hang")
    assert pipeline.flush(0.2) is False
    assert pipeline.close(timeout=0.3) is False
    assert sorted(ids(read_jsonl(spool_path)), key=int) == [str(i) for i in range(12)]
    sink.release.set()


def test_put_after_close_spools_errors_and_counts_the_rest(build, spool_path: Path) -> None:  # type: ignore[no-untyped-def]
    pipeline = build(ControlledSink())
    pipeline.close(timeout=1)
    pipeline.put(ev("late-error"), ERROR)
    pipeline.put(ev("late-normal"), NORMAL)
    assert ids(read_jsonl(spool_path)) == ["late-error"]
    assert pipeline.metrics.get("dropped.closed") == 1


def test_dead_spool_counts_events_as_dropped(build, spool_path: Path) -> None:  # type: ignore[no-untyped-def]
    sink = ControlledSink()
    sink.failing = True
    pipeline = build(sink, max_retries=0)
    spool_path.parent.rmdir()  # the disk goes away under a running process
    spool_path.parent.write_text("a file where the spool directory should be")
    pipeline.put(ev(1, rule="error"), ERROR)
    pipeline.put(ev(2), NORMAL)
    assert pipeline.flush(5)
    assert pipeline.metrics.get("dropped.spool_failure") == 2
    assert pipeline.metrics.get("events.lost.error") == 1
    assert pipeline.metrics.get("events.lost.normal") == 1


def test_a_spool_directory_that_cannot_be_made_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "spool").write_text("a file where the spool directory should be")
    with pytest.raises(ConfigurationError, match="cannot be created"):
        RotatingFileSink(tmp_path / "spool" / "events.jsonl")


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("batch_size", 0),
        ("queue_size", 1.5),
        ("flush_interval", 0),
        ("max_retries", -1),
        ("queue_bytes", True),
    ],
)
def test_invalid_options_are_rejected(build, option: str, value: object) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigurationError, match=option):
        build(ControlledSink(), **{option: value})


def test_no_writer_thread_is_started_after_close_or_during_interpreter_shutdown(
    build, spool_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """An event finished at exit (a response body a test client never closed, collected
    while the interpreter shuts down) must not start the writer then: a thread started
    during finalisation never runs, and the process hung."""
    closed_first = build(ControlledSink())
    closed_first.close(timeout=1)
    closed_first.put(ev("late", rule="error"), ERROR)
    closed_first.put(ev("late-normal"), NORMAL)
    assert closed_first._thread is None
    assert ids(read_jsonl(spool_path)) == ["late"]
    assert closed_first.metrics.get("dropped.closed") == 1

    monkeypatch.setattr(sys, "is_finalizing", lambda: True)
    finalizing = build(ControlledSink())
    finalizing.put(ev("at-exit", rule="error"), ERROR)
    assert finalizing._thread is None
    assert "at-exit" in ids(read_jsonl(spool_path))


@pytest.mark.parametrize("local", [False, True], ids=["sink-thread", "writer-thread"])
@pytest.mark.parametrize("raised", [SystemExit, KeyboardInterrupt, GeneratorExit])
def test_a_sink_raising_a_base_exception_is_a_failed_write_not_the_writers_end(
    build, spool_path: Path, local: bool, raised: type[BaseException]
) -> None:  # type: ignore[no-untyped-def]
    class Aborting(ControlledSink):
        def write(self, batch: Any) -> None:
            if self.failing:
                self.attempts += 1
                raise raised("from inside the client")
            super().write(batch)

    sink = Aborting(local=local)
    sink.failing = True
    pipeline = build(sink, batch_size=10, max_retries=0, breaker_cooldown=0.1)
    for i in range(10):
        pipeline.put(ev(i), ERROR)
    assert pipeline.flush(5)
    assert sink.attempts >= 1
    assert pipeline.metrics.get("spooled.sink_failure") == 10  # unavailable: not dead letters
    sink.failing = False
    for i in range(10, 20):
        pipeline.put(ev(i), NORMAL)
    # the writer lives on: later events are written and the spool replayed
    wait_for(lambda: len(sink.events) >= 20, timeout=15, what="writes after the abort")
    assert sorted(ids(sink.events), key=int) == [str(i) for i in range(20)]


@pytest.mark.parametrize("answer", ["raises", "nonsense"])
def test_a_sinks_broken_failure_kind_falls_back_to_the_exceptions_type(
    build, spool_path: Path, answer: str
) -> None:  # type: ignore[no-untyped-def]
    class Confused(ControlledSink):
        def failure_kind(self, error: BaseException) -> Any:
            if answer == "raises":
                raise RuntimeError("a bug in the sink's own classifier")
            return "maybe"

    sink = Confused()
    sink.failing = True  # ControlledSink raises ConnectionError: unavailable, not content
    pipeline = build(sink, batch_size=10, max_retries=0, breaker_cooldown=60)
    for i in range(10):
        pipeline.put(ev(i), ERROR)
    assert pipeline.flush(5)
    assert sorted(ids(read_jsonl(spool_path)), key=int) == [str(i) for i in range(10)]
    assert pipeline.metrics.get("dead_letters.controlled") == 0  # not taken for content
    assert pipeline.metrics.get("spooled.sink_failure") == 10
