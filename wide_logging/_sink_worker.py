"""A thread per network sink, so the writer thread can stop waiting for a hung one.

A sink that accepts a connection and never answers holds its caller until the client's own
socket timeout — per attempt. If the writer thread were that caller, the queue would fill
behind it and normal events would be dropped (measured: 10% of them in a minute). So each
non-local sink runs its ``write`` on a worker thread of its own; the writer waits for the
result with a deadline, in short slices, and uses the slices to spill the queue to the
spool when it rises. A call that outlives the deadline is abandoned, not killed: the worker
stays *busy* until the client gives up, and the sink counts as down meanwhile.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from queue import SimpleQueue

from .typing import Sink


class _ThreadFlags(threading.local):
    #: A default on the class: ``getattr(local, "active", False)`` on a thread that never
    #: set it raises and catches AttributeError inside, ~10x slower — and this is asked
    #: for every log record the app writes.
    active = False


_local = _ThreadFlags()


def in_sink_thread() -> bool:
    """True on a pipeline's writer or sink thread (their log records must not loop back)."""
    return _local.active


def mark_sink_thread() -> None:
    _local.active = True


class SinkTimeout(Exception):
    """A sink did not answer within the batch's deadline."""


class SinkAborted(Exception):
    """A sink raised ``SystemExit``, ``KeyboardInterrupt`` or another ``BaseException``:
    a failed write (the sink's state, like a refused connection), not the writer's end."""


class SinkCall:
    """One ``sink.write`` handed to the worker. A lock, not a ``concurrent.futures.Future``:
    the hand-off happens once per batch, and waiting on a future costs the writer thread
    twice the CPU (a waiter object and two locks per wait)."""

    __slots__ = ("_finished", "batch", "done", "error")

    def __init__(self, batch: Sequence[bytes]) -> None:
        self.batch = batch
        self.done = False
        self.error: BaseException | None = None
        self._finished = threading.Lock()
        self._finished.acquire()  # released by the worker when the call ends

    def wait(self, timeout: float) -> bool:
        """True once the call has ended (within ``timeout`` seconds). One waiter only."""
        return self.done or self._finished.acquire(timeout=timeout)

    def end(self, error: BaseException | None = None) -> None:
        self.error = error
        self.done = True
        self._finished.release()


class SinkWorker:
    """Runs ``sink.write`` calls one at a time on a daemon thread, started on first use and
    again in a forked child."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self._pid = -1
        self._jobs: SimpleQueue[SinkCall | None] = SimpleQueue()
        self._current: SinkCall | None = None

    @property
    def busy(self) -> bool:
        """A call is still running (perhaps one the writer gave up waiting for)."""
        current = self._current
        return current is not None and not current.done and self._pid == os.getpid()

    def write(
        self, batch: Sequence[bytes], deadline: float, wait: Callable[[SinkCall, float], bool]
    ) -> None:
        """Write ``batch`` on the worker; ``wait(call, deadline)`` returns True once the
        call is done, False when the deadline passed first (``SinkTimeout``)."""
        if self.busy:
            msg = f"sink {self.sink.name} is still busy with an earlier batch"
            raise SinkTimeout(msg)
        if self._pid != os.getpid():  # first use, or a forked child: a thread of our own
            self._pid = os.getpid()
            self._jobs = SimpleQueue()
            threading.Thread(
                target=self._run, args=(self._jobs,), name="wide_logging.sink", daemon=True
            ).start()
        call = self._current = SinkCall(batch)
        self._jobs.put(call)
        if not wait(call, deadline):
            msg = f"sink {self.sink.name} did not answer in time"
            raise SinkTimeout(msg)
        if call.error is not None:
            raise call.error  # the sink's own exception

    def stop(self) -> None:
        if self._pid == os.getpid():
            self._jobs.put(None)

    def _run(self, jobs: SimpleQueue[SinkCall | None]) -> None:
        mark_sink_thread()
        while True:
            call = jobs.get()
            if call is None:
                return
            try:
                self.sink.write(call.batch)
            except BaseException as exc:  # handed to the writer, which decides
                call.end(exc)
            else:
                call.end()
