"""The process the package runs in: who it is, what a forked child redoes, what exit saves.

One owner, so the order is visible in one place. In a forked child (gunicorn and uWSGI
workers, ``multiprocessing``), in this order:

1. ``IDS``: a new process part for event and request ids (no two workers share one);
2. ``PROCESS``: the ``process`` fields every event carries (its pid);
3. ``PIPELINES``: every pipeline drops the parent's queue and threads and resets its sinks
   (their clients hold the parent's sockets).

At exit, every pipeline is closed: what is queued is written or spooled. The other two
ways a process saves its queue — ``logging.shutdown()`` closing the handlers, an ASGI
server's lifespan shutdown — belong to logging and to the middleware;
``tests/test_exit_paths.py`` tests each of the three alone.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
from collections.abc import Callable
from typing import Any

IDS, PROCESS, PIPELINES = 0, 1, 2

_internal = logging.getLogger("wide_logging.internal")
_in_child: list[tuple[int, Callable[[], None]]] = []
_at_exit: list[Callable[[], None]] = []

#: The ``process`` fields of this process's events; a new dict in a forked child (so a
#: cached copy can tell it is stale by identity).
process: dict[str, Any] = {"pid": os.getpid()}


def after_fork_in_child(stage: int, hook: Callable[[], None]) -> None:
    """Run ``hook`` in every forked child, after the hooks of earlier stages."""
    _in_child.append((stage, hook))
    _in_child.sort(key=lambda entry: entry[0])  # stable: a stage keeps its order


def at_exit(hook: Callable[[], None]) -> None:
    """Run ``hook`` when the interpreter exits normally; its exceptions are suppressed."""
    _at_exit.append(hook)


def _new_process() -> None:
    global process
    process = {"pid": os.getpid()}


def _run_in_child() -> None:
    for _, hook in list(_in_child):
        try:
            hook()
        except Exception:  # the child must start whatever a hook of ours does
            _internal.exception("wide_logging could not reset after fork")


def _run_at_exit() -> None:
    for hook in list(_at_exit):
        with contextlib.suppress(Exception):  # exiting: never a traceback
            hook()


after_fork_in_child(PROCESS, _new_process)
atexit.register(_run_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_run_in_child)
