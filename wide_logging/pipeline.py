"""The hand-off queue and the writer thread behind it.

Theory of operation
-------------------
Request threads call :meth:`Pipeline.put` with an already encoded event. ``put`` does no
I/O: it appends to a deque under a short lock, bounded by count *and* bytes, and wakes the
writer only when a full batch is waiting. When the queue is full, an event kept by an
always-keep rule (an error, a slow request, ...) is appended to the spool file right there
— the one, rare, bounded piece of I/O a request may do — and any other event is dropped
and counted as ``dropped.queue_overflow`` (and ``events.lost.<rule>``).

The writer thread (started lazily, restarted in a forked child) wakes every
``flush_interval`` or when a batch is full, and drains the queue in batches of
``batch_size``. Each batch goes down the chain of sinks (``_chain``: the primary, then the
fallbacks, each behind its circuit breaker, with retries, a deadline per link and dead
letters for the events a sink refuses); what no link takes is appended to the spool.
While the writer waits on a network sink (each runs on a thread of its own,
``_sink_worker``), it spills the queue to the spool whenever the queue passes half its
capacity, so a hung sink costs no events. While the primary is healthy, spooled segments
are replayed into it (``spool.Replay``), oldest first, one batch per turn after the live
traffic, at most ``replay_rate`` events a second.

Every event therefore ends up written, spooled, dead-lettered, or counted in
``dropped.<reason>``.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from ._chain import SinkChain, close_quietly
from ._config import PipelineOptions
from ._errors import ConfigurationError
from ._pipelines import live_pipelines
from ._sink_worker import (
    SinkCall,
    in_sink_thread,
    mark_sink_thread,
)
from .metrics import Metrics, register_gauges, unregister_gauges
from .spool import DeadLetters, Replay, Spool
from .typing import Decision, ForkAware, Sink

_internal = logging.getLogger("wide_logging.internal")
#: The queue spills to the spool, while the writer waits on a sink, above this share of
#: its capacity (count or bytes).
HIGH_WATER = 0.5
#: How often the writer looks at the queue while it waits on a sink.
_WAIT_SLICE = 0.02
#: The longest a request thread waits for the spool's lock when the queue is full (then the
#: event is counted as lost): the app must not wait on another process's lock.
REQUEST_SPOOL_WAIT = 0.05
#: What a queued event costs beyond its encoded bytes: the bytes object's header and the
#: deque's pointer, rounded up for the allocator. Counted in ``queue_bytes``, so that the
#: option bounds the memory really held (measured: benchmarks/queue_memory.py).
EVENT_OVERHEAD = sys.getsizeof(b"") + 16
#: orjson's bytes keep their spare capacity (a 400-byte event holds 4 KiB). Once the queue
#: holds more than this, events are queued as exact-size copies, so that ``queue_bytes``
#: bounds the memory really held give or take ~10 times this much. Below it (the writer
#: keeping up) the copy would only cost the request time.
COMPACT_ABOVE = 32 * 1024

in_writer_thread = in_sink_thread


class Pipeline:
    """Bounded, non-blocking hand-off to a writer thread that batches, retries and spools."""

    def __init__(
        self,
        sinks: Sequence[Sink],
        spool: Spool,
        *,
        metrics: Metrics,
        tick: Callable[[], bytes] | None = None,
        options: PipelineOptions | None = None,
        **keywords: Any,
    ) -> None:
        """``options`` (``_config.PipelineOptions``), or its fields as ``keywords``."""
        if options is None:
            options = PipelineOptions.from_keywords(keywords)
        elif keywords:
            msg = f"give the pipeline options or keywords, not both: {sorted(keywords)}"
            raise ConfigurationError(msg)
        self.options = options_ = options
        if not sinks:
            msg = "a pipeline needs at least one sink"
            raise ConfigurationError(msg)
        self.spool = spool
        self.dead_letters = DeadLetters.beside(spool)
        self.metrics = metrics
        self.chain = SinkChain(
            sinks,
            self,
            metrics=metrics,
            dead_letters=self.dead_letters,
            breaker_cooldown=options_.breaker_cooldown,
            max_retries=options_.max_retries,
            retry_backoff=options_.retry_backoff,
            sink_timeout=options_.sink_timeout,
        )
        self.links = self.chain.links
        # read by put() for every kept event: one attribute away, not two
        self._queue_size = options_.queue_size
        self._queue_bytes = options_.queue_bytes
        #: Called by the writer every ``metrics_interval`` s; its event joins the queue.
        self.tick = tick
        self._high_water = (
            int(options_.queue_size * HIGH_WATER),
            int(options_.queue_bytes * HIGH_WATER),
        )
        self._wake_at = max(1, min(options_.batch_size, self._high_water[0]))
        self._init_process_state()
        live_pipelines.add(self)
        register_gauges(self)

    def _init_process_state(self) -> None:
        """Everything that belongs to one process: made anew in a forked child."""
        self._pid = os.getpid()
        self._lock = threading.Lock()
        # Plain bytes, not tuples: bytes are not tracked by the garbage collector, so a
        # full queue does not make every collection (and the requests it pauses) slower.
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._progress = threading.Condition(threading.Lock())
        self._in_flight: Sequence[bytes] = ()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._replay = Replay(self.spool, self.options.batch_size, self.metrics)
        self._next_tick = time.monotonic() + self.options.metrics_interval

    # -- request thread ----------------------------------------------------------------

    def put(self, data: bytes, decision: Decision) -> None:
        """Hand one encoded event to the writer. Never blocks on I/O, never raises."""
        # A forked child gets fresh state from the after-fork hook below (_lifecycle).
        if self._thread is None and not self._closed:
            self._start()
        size = len(data) + EVENT_OVERHEAD
        if self._queued_bytes > COMPACT_ABOVE:  # a backlog: hold exact-size copies
            data = memoryview(data).tobytes()
        lock = self._lock
        lock.acquire()  # not ``with``: in CPython 3.11 it costs twice as much
        try:
            queue = self._queue
            accepted = (
                not self._closed
                and len(queue) < self._queue_size
                and self._queued_bytes + size <= self._queue_bytes
            )
            if accepted:
                queue.append(data)
                self._queued_bytes += size
                depth = len(queue)
        finally:
            lock.release()
        if accepted:
            # Event.set() takes a lock: only the put that completes a batch pays for it.
            # (_wake_at: a full batch, or the high-water mark when that comes first, so that
            # a writer backing off from a sink spills at once instead of at its next look)
            if depth >= self._wake_at and not self._wake.is_set():
                self._wake.set()
            return
        reason = "closed" if self._closed else "queue_overflow"
        if decision.always_keep:
            self.spool.write([data], reason, timeout=REQUEST_SPOOL_WAIT)
        else:
            self.metrics.inc(f"dropped.{reason}")
            self.metrics.inc(f"events.lost.{decision.rule}")

    # -- control -----------------------------------------------------------------------

    def gauges(self) -> list[tuple[str, float]]:
        """Queue fill and circuit breakers, for ``wide_logging.metrics``."""
        gauges: list[tuple[str, float]] = [
            ("queue.depth", len(self._queue)),
            ("queue.capacity", self.options.queue_size),
            ("queue.bytes", self._queued_bytes),
            ("queue.capacity_bytes", self.options.queue_bytes),
        ]
        gauges.extend(
            (f"circuit_open.{link.sink.name}", float(link.breaker.state != "closed"))
            for link in self.links
        )
        return gauges

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def queued_bytes(self) -> int:
        return self._queued_bytes

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything handed off so far is written or spooled; False on timeout."""
        timeout = self.options.shutdown_timeout if timeout is None else timeout
        thread = self._thread
        if self._closed or thread is None or not thread.is_alive() or self._pid != os.getpid():
            return not self._queue  # closed: close() already waited (logging.shutdown asks again)
        deadline = time.monotonic() + timeout
        with self._progress:
            while self._queue or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._wake.set()
                self._progress.wait(min(remaining, 0.05))
        return True

    def close(self, timeout: float | None = None) -> bool:
        """Flush within ``timeout``, stop the writer, spool what is left, close the sinks.

        Returns False when the deadline forced events into the spool instead of the sinks.
        An in-flight batch still stuck in a hung sink is spooled too, so it may be stored
        twice; stores dedupe on ``event_id``.
        """
        if self._closed:
            return True
        timeout = self.options.shutdown_timeout if timeout is None else timeout
        flushed = self.flush(timeout)
        with self._lock:
            self._closed = True
        self._stopping.set()  # a writer waiting on a hung sink gives up now
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.1, min(timeout, 1.0)))
        if self.spool_leftovers(include_in_flight=thread is not None and thread.is_alive()):
            flushed = False
        self._replay.close()
        self.chain.close()
        close_quietly(self.spool.sink)
        self.dead_letters.close()
        live_pipelines.discard(self)
        unregister_gauges(self)
        return flushed

    def spool_leftovers(self, *, include_in_flight: bool = True) -> bool:
        """Move what is still queued (and the batch in flight) to the spool; True if any.

        For a process about to end: an in-flight batch may then be stored twice, which
        beats losing it (stores dedupe on ``event_id``).
        """
        leftovers = self._drain_queue()
        if include_in_flight:
            leftovers.extend(self._in_flight)
        if leftovers:
            self.spool.write(leftovers, "shutdown")
        return bool(leftovers)

    # -- writer thread -----------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            if sys.is_finalizing():  # no new thread can start now: take what comes as closed
                self._closed = True
                return
            self._thread = threading.Thread(
                target=self._run, name="wide_logging.writer", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        mark_sink_thread()
        options = self.options
        # a replayed batch a turn: at most replay_rate events a second
        replay_turn = min(options.flush_interval, options.batch_size / options.replay_rate)
        timeout = options.flush_interval
        while True:
            self._wake.wait(timeout)
            self._wake.clear()
            stopping = self._stopping.is_set()
            try:
                self._tick_if_due()
                self._write_queued()
                timeout = options.flush_interval
                if not stopping and self._replay_one_batch():
                    timeout = replay_turn
            except Exception:  # a bug of ours must not kill the writer
                _internal.exception("wide_logging writer error")
            with self._progress:
                self._progress.notify_all()
            if stopping:
                return

    def _tick_if_due(self) -> None:
        if self.tick is None or time.monotonic() < self._next_tick:
            return
        self._next_tick = time.monotonic() + self.options.metrics_interval
        self.put(self.tick(), _METRICS_DECISION)

    def _drain_queue(self, limit: int | None = None) -> list[bytes]:
        with self._lock:
            queue = self._queue
            if limit is None or limit >= len(queue):
                items = list(queue)  # everything: one copy, no per-item pops
                queue.clear()
            else:
                items = [queue.popleft() for _ in range(limit)]
            self._queued_bytes -= sum(map(len, items)) + EVENT_OVERHEAD * len(items)
        return items

    def _write_queued(self) -> None:
        while self._queue:
            batch = self._drain_queue(self.options.batch_size)
            self._in_flight = batch
            try:
                self._deliver(batch)
            finally:
                self._in_flight = ()
                with self._progress:
                    self._progress.notify_all()

    def _deliver(self, batch: list[bytes]) -> None:
        for link in self.links:
            batch = self.chain.write(link, batch)
            if not batch:
                return
        self.spool.write(batch, "sink_failure")
        self._replay.due = True

    def _spill_if_high(self) -> None:
        """While a sink keeps the writer waiting, a queue past its high-water mark goes to
        the spool (replayed later) instead of overflowing."""
        high_count, high_bytes = self._high_water
        if len(self._queue) >= high_count or self._queued_bytes >= high_bytes:
            spilled = self._drain_queue()
            if spilled:
                self.spool.write(spilled, "backpressure")
                self._replay.due = True

    # -- what the chain asks while it writes (_chain.Waiter) ----------------------------

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def back_off(self, seconds: float) -> bool:
        """A retry's backoff, spilling the queue meanwhile; True when shutting down."""
        until = time.monotonic() + seconds
        while (remaining := until - time.monotonic()) > 0:
            # woken by close() (stopping) or by put() at the high-water mark
            self._wake.wait(min(remaining, _WAIT_SLICE))
            self._wake.clear()
            if self._stopping.is_set():
                return True
            self._spill_if_high()
        return False

    def wait_for(self, call: SinkCall, deadline: float) -> bool:
        """Wait for a sink's call, spilling the queue meanwhile; True when it is done."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self._stopping.is_set() and self._closed):
                return call.done
            if call.wait(min(remaining, _WAIT_SLICE)):
                return True
            self._spill_if_high()

    def sink_recovered(self) -> None:
        self._replay.due = True

    def _replay_one_batch(self) -> bool:
        """Replay one spooled batch into the primary; True if more remain.

        With the primary's circuit open this waits for the cooldown, and the replayed batch
        is then the probe: recovery does not depend on live traffic arriving.
        """
        primary = self.links[0]
        if not primary.breaker.allows(time.monotonic()):
            return False
        return self._replay.one_batch(lambda batch, since: self.chain.write(primary, batch, since))

    # -- fork --------------------------------------------------------------------------

    def after_fork(self) -> None:
        """In a forked child: the parent's queue and threads dropped, the sinks reset."""
        # The parent's queued events are the parent's to write; the child starts empty,
        # with fresh locks (a lock held by a parent thread would never be released here).
        self._init_process_state()
        self._replay.due = False
        self.metrics.reset()
        for sink in (*(link.sink for link in self.links), self.spool.sink, self.dead_letters.sink):
            if isinstance(sink, ForkAware):
                try:
                    sink.after_fork()
                except Exception:  # one sink's bug must not keep the others' parent handles
                    _internal.exception("sink %s could not reset after fork", sink.name)


class _MetricsDecision:
    """The decision a ``kind: metrics`` event carries into the queue: always kept."""

    keep = True
    rule = "metrics"
    rate = 1.0
    always_keep = True
    counter = "events.kept.metrics"

    def __init__(self) -> None:
        self.fields: dict[str, Any] = {"rule": self.rule, "rate": self.rate}


_METRICS_DECISION = _MetricsDecision()
