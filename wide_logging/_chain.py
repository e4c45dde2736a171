"""The chain of sinks a batch goes down: each link a sink behind its circuit breaker.

One write of a batch to one link (:meth:`SinkChain.write`): within ``sink_timeout``, with
up to ``max_retries`` retries and jittered exponential backoff; a failure is a *timeout*
(skipped at once), *unavailable* (retried, then the breaker opens) or *content* (the batch
is written in halves until the refused events are alone: dead letters). What the link did
not take is returned for the next one. The pipeline owns the waiting (so that it can spill
its queue meanwhile) and hears when a sink recovers (so that it replays the spool).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ._breaker import Breaker
from ._secrets import mask_credentials
from ._sink_worker import SinkAborted, SinkCall, SinkTimeout, SinkWorker
from .metrics import Metrics
from .spool import DeadLetters
from .typing import ClassifiesFailures, FailureKind, RejectedEvents, Sink

_internal = logging.getLogger("wide_logging.internal")


@dataclass
class Link:
    """One sink of the chain, behind its circuit breaker."""

    sink: Sink
    breaker: Breaker
    #: None: a local sink, written on the writer thread itself.
    worker: SinkWorker | None
    #: When the sink last took a write (monotonic): proof that it is up.
    last_success: float = field(default=-1.0)


class Waiter(Protocol):
    """What the chain asks of the pipeline while it writes."""

    #: The pipeline is shutting down: no retries, no more waiting than needed.
    @property
    def stopping(self) -> bool: ...

    def back_off(self, seconds: float) -> bool:
        """Back off for ``seconds`` (spilling the queue meanwhile); True when stopping."""
        ...

    def wait_for(self, call: SinkCall, deadline: float) -> bool:
        """Wait for a sink worker's ``call`` until ``deadline``; True when it is done."""
        ...

    def sink_recovered(self) -> None:
        """A sink whose breaker was open took a write."""
        ...


class SinkChain:
    """The links, in order: the primary first, then the fallbacks."""

    def __init__(
        self,
        sinks: Sequence[Sink],
        waiter: Waiter,
        *,
        metrics: Metrics,
        dead_letters: DeadLetters,
        breaker_cooldown: float,
        max_retries: int,
        retry_backoff: float,
        sink_timeout: float,
    ) -> None:
        self.links = [
            Link(
                sink,
                Breaker(breaker_cooldown),
                None if getattr(sink, "local", False) else SinkWorker(sink),  # typing.Local
            )
            for sink in sinks
        ]
        self._waiter = waiter
        self.metrics = metrics
        self.dead_letters = dead_letters
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        self.sink_timeout = sink_timeout

    def close(self) -> None:
        """Stop the sink threads and close the sinks (one stuck in a call keeps its client)."""
        for link in self.links:
            if link.worker is not None:
                link.worker.stop()
            if link.worker is None or not link.worker.busy:
                close_quietly(link.sink)

    def _call(self, link: Link, batch: Sequence[bytes], deadline: float) -> None:
        try:
            if link.worker is None:
                link.sink.write(batch)
            else:
                link.worker.write(batch, deadline, self._waiter.wait_for)
        except Exception:
            raise
        except BaseException as exc:  # would end the writer thread, and every later write
            msg = f"sink {link.sink.name} raised {type(exc).__name__}"
            raise SinkAborted(msg) from exc

    def write(
        self, link: Link, batch: list[bytes], failed_since: float | None = None
    ) -> list[bytes]:
        """Write ``batch`` to one link; returns what it did not take (to the next link).

        ``failed_since``: when this batch first failed (a replayed one), so that a sink which
        has taken other events since can be told apart from a sink that is down.
        """
        breaker = link.breaker
        started = time.monotonic()
        if not breaker.allows(started):
            return batch
        if link.worker is not None and link.worker.busy:  # still stuck in an earlier call
            breaker.failed(started)
            return batch
        deadline = started + self.sink_timeout
        attempts = 1 if breaker.probing or self._waiter.stopping else 1 + self.max_retries
        error: BaseException | None = None
        tried = 0
        for attempt in range(attempts):
            if attempt:
                self.metrics.inc(f"retries.{link.sink.name}")
                delay = self.retry_backoff * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
                if time.monotonic() + delay >= deadline or self._waiter.back_off(delay):
                    break  # out of time, or shutting down: let the chain go on
            tried += 1
            try:
                refused = self._timed_write(link, batch, deadline)
            except Exception as exc:
                error, kind = exc, failure_kind(link.sink, exc)
                if kind == "content":
                    return self._isolate(link, batch, deadline, failed_since or started)
                if kind == "timeout":
                    self.metrics.inc(f"timeouts.{link.sink.name}")
                    break  # a hung sink is skipped at once, like a dead one
                continue
            if refused:
                self._dead_letter(link, batch, refused)
            return []
        self.metrics.inc(f"write_failures.{link.sink.name}")
        if breaker.failed(time.monotonic()) and error is not None:
            _internal.error(
                "sink %s failed after %d attempt(s) (%s: %s); circuit open for %.1fs",
                link.sink.name,
                tried,
                type(error).__name__,
                mask_credentials(str(error))[:500],
                breaker.cooldown,
            )
        return batch

    def _timed_write(self, link: Link, batch: Sequence[bytes], deadline: float) -> dict[int, str]:
        """One write; counts what was stored and closes the breaker. Returns the events
        the sink refused for good (``RejectedEvents``: it stored the rest)."""
        started = time.perf_counter()
        try:
            self._call(link, batch, deadline)
        except RejectedEvents as rejected:
            refused = rejected.reasons
        else:
            refused = {}
        link.last_success = time.monotonic()
        name = link.sink.name
        self.metrics.inc(f"written.{name}", len(batch) - len(refused))
        self.metrics.inc(f"batches.{name}")
        self.metrics.inc(f"write_us.{name}", int((time.perf_counter() - started) * 1e6))
        if link.breaker.succeeded():
            _internal.warning("sink %s recovered; replaying the spool", name)
            self._waiter.sink_recovered()
        return refused

    def _isolate(
        self, link: Link, batch: list[bytes], deadline: float, failed_since: float
    ) -> list[bytes]:
        """The sink refused ``batch`` for what is in it: write it in halves, down to the
        events it refuses alone. Those are dead-lettered once the sink has taken anything
        since ``failed_since`` (else it may simply be down: they go on down the chain).
        Returns what was not written."""
        unwritten: list[bytes] = []
        refused: dict[int, str] = {}  # the sink said which (RejectedEvents)
        suspects: dict[int, str] = {}  # alone, and still refused
        parts = [(0, batch)]
        while parts:
            offset, part = parts.pop()
            if time.monotonic() >= deadline:
                unwritten.extend(part)
                continue
            try:
                said = self._timed_write(link, part, deadline)
            except Exception as exc:
                if failure_kind(link.sink, exc) != "content":
                    unwritten.extend(part)
                elif len(part) > 1:
                    middle = len(part) // 2
                    parts += [(offset + middle, part[middle:]), (offset, part[:middle])]
                else:
                    suspects[offset] = f"{type(exc).__name__}: {mask_credentials(str(exc))[:500]}"
            else:
                refused.update({offset + index: reason for index, reason in said.items()})
        if suspects and link.last_success > failed_since:
            refused.update(suspects)
        else:
            unwritten.extend(batch[index] for index in suspects)
        if refused:
            self._dead_letter(link, batch, refused)
        return unwritten

    def _dead_letter(self, link: Link, batch: Sequence[bytes], reasons: dict[int, str]) -> None:
        refused = [
            (batch[i], reason) for i, reason in sorted(reasons.items()) if 0 <= i < len(batch)
        ]
        if refused:
            self.dead_letters.write(link.sink.name, refused)


def failure_kind(sink: Sink, error: BaseException) -> FailureKind:
    """What a failed write means (``typing.FailureKind``); the sink's own answer first (it
    knows its client); else a timeout or an OS error is the sink's state, anything else the
    batch's content."""
    if isinstance(error, (SinkTimeout, TimeoutError)):
        return "timeout"
    if isinstance(error, SinkAborted):
        return "unavailable"
    if isinstance(sink, ClassifiesFailures):
        try:
            kind = sink.failure_kind(error)
        except Exception:  # its own bug: decide from the exception's type below
            kind = None
        if kind in ("timeout", "unavailable", "content"):
            return kind
    if isinstance(error, OSError):
        return "unavailable"
    return "content"


def close_quietly(sink: Sink) -> None:
    try:
        sink.close()
    except Exception as exc:
        _internal.warning("closing sink %s failed: %s", sink.name, type(exc).__name__)
