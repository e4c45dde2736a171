"""The open pipelines of this process, and what is done to all of them at once: flushed
when a server shuts down, closed at exit, started afresh in a forked child."""

from __future__ import annotations

import contextlib
import time
import weakref
from typing import Any

from ._lifecycle import PIPELINES, after_fork_in_child, at_exit

#: Every open pipeline of this process (weakly: a pipeline nobody holds is not kept).
live_pipelines: weakref.WeakSet[Any] = weakref.WeakSet()


def flush_all(timeout: float = 5.0, *, spool_leftovers: bool = False) -> bool:
    """Flush every live pipeline of this process within ``timeout`` seconds in total.

    With ``spool_leftovers`` (a server shutting down), whatever is still queued when the
    time is up — and a batch stuck in a hung sink — goes to the spool before returning.
    """
    deadline = time.monotonic() + timeout
    ok = True
    for pipeline in list(live_pipelines):
        flushed = pipeline.flush(max(0.0, deadline - time.monotonic()))
        if not flushed and spool_leftovers:
            pipeline.spool_leftovers()
        ok = flushed and ok
    return ok


def _close_all_at_exit() -> None:
    for pipeline in list(live_pipelines):
        with contextlib.suppress(Exception):  # exiting: never a traceback
            pipeline.close()


def _after_fork_in_child() -> None:
    for pipeline in list(live_pipelines):
        pipeline.after_fork()


at_exit(_close_all_at_exit)
after_fork_in_child(PIPELINES, _after_fork_in_child)
