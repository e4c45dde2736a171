"""Progress bars of the command line (replay, simulate): bytes read, on a terminal."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def progress_bar(
    total: int | None, description: str, *, enabled: bool
) -> Iterator[Callable[[int], object]]:
    """A function to advance by a number of bytes: a bar on standard error when ``enabled``,
    standard error is a terminal (not a pipe, a log file or CI's output) and tqdm is
    installed (``pip install 'wide-logging[cli]'``); else a function doing nothing."""
    if not enabled or not sys.stderr.isatty():
        yield _nothing
        return
    try:
        from tqdm import tqdm
    except ImportError:
        print("(pip install 'wide-logging[cli]' for a progress bar)", file=sys.stderr)
        yield _nothing
        return
    with tqdm(total=total, unit="B", unit_scale=True, desc=description, mininterval=0.2) as bar:
        yield bar.update


def _nothing(_bytes: int) -> None:
    pass
