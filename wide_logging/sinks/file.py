"""Rotating JSONL files: the embedded default sink and the spool behind every other sink.

Each batch is appended with one ``write`` on an ``O_APPEND`` descriptor while holding an
``flock`` on the file, so processes sharing a path (gunicorn workers) never interleave
lines and only one of them rotates. A file is rotated by renaming it to a time-stamped
segment, ``events.20261127T092631.123456-4242.jsonl``; every writer notices the rename
(the inode changes) and reopens. A failed write is cut back to where it began.

No wait is unbounded: the locks are taken with a deadline (``lock_timeout``, or the
``timeout`` of one write), and a writer that cannot get them in time raises
``TimeoutError`` — a frozen process holding the file lock, or a hung disk, must not hold
the writer (or a request thread spooling on overflow) for ever.

A process killed in the middle of a ``write`` (SIGKILL, the OOM killer) can leave a line
without its newline, and the kernel does not undo it. So a writer, under the lock, makes
sure the file ends with a newline before it appends: the fragment stays a line of its own
(readers skip it as corrupt and count it) and the next writer's events are intact.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .._errors import ConfigurationError, check_number

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows; locking is then per process only
    fcntl = None  # type: ignore[assignment]

_SEGMENT_STAMP = r"\d{8}T\d{6}\.\d{6}-\d+"
#: Seconds a write waits, by default, for another thread's or process's lock on the file.
LOCK_TIMEOUT = 5.0


class RotatingFileSink:
    """Appends events as JSON lines to ``path``; rotates at ``max_bytes``, keeps ``backups``.

    ``on_discard(segment)`` is called before a segment beyond ``backups`` is deleted; the
    spool uses it to count what it had to give up.
    """

    #: Written on the writer thread itself (see ``typing.Local``).
    local = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = 100 * 1024 * 1024,
        backups: int = 10,
        on_discard: Callable[[Path], None] | None = None,
        lock_timeout: float = LOCK_TIMEOUT,
    ) -> None:
        check_number("max_bytes", max_bytes, 1024, integer=True, what="file sink ")
        check_number("backups", backups, 0, integer=True, what="file sink ")
        self.path = Path(path)
        if self.path.is_dir() or not self.path.name:
            msg = f"file sink path must name a file, got a directory: {str(path)!r}"
            raise ConfigurationError(msg)
        _check_writable(self.path)
        self.name = f"file:{self.path}"
        self.max_bytes = max_bytes
        self.backups = backups
        self.on_discard = on_discard
        self.lock_timeout = lock_timeout
        suffix = self.path.suffix
        self._stem = self.path.name[: -len(suffix)] if suffix else self.path.name
        self._suffix = suffix
        self._segment_re = re.compile(
            rf"{re.escape(self._stem)}\.{_SEGMENT_STAMP}{re.escape(suffix)}"
        )
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._pid = os.getpid()
        #: (inode, size) of the file right after our last append: if it is still that, the
        #: file ends with our newline and need not be checked.
        self._after_last_write: tuple[int, int] = (-1, -1)
        self._inode = -1

    # -- Sink ------------------------------------------------------------------------

    def write(self, batch: Sequence[bytes], timeout: float | None = None) -> None:
        """Append ``batch`` as lines; ``TimeoutError`` when the locks are not free within
        ``timeout`` seconds (default ``lock_timeout``)."""
        if not batch:
            return
        data = b"\n".join([*batch, b""])  # the trailing newline without a second copy
        with self._locked(timeout) as (fd, deadline):
            fd, size = self._follow_rename(fd, deadline)
            if size and size + len(data) > self.max_bytes:
                fd, size = self._rotate_locked(fd, deadline)
            if (
                size
                and (self._inode, size) != self._after_last_write
                and os.pread(fd, 1, size - 1) != b"\n"  # a killed writer's torn line
            ):
                data = b"\n" + data
            _append(fd, data, size)
            self._after_last_write = (self._inode, size + len(data))

    @contextmanager
    def _locked(self, timeout: float | None) -> Iterator[tuple[int, float]]:
        """This file, locked against our threads and other processes, within a deadline."""
        deadline = time.monotonic() + (self.lock_timeout if timeout is None else timeout)
        if not self._lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            msg = f"{self.name} is busy (another thread of this process holds it)"
            raise TimeoutError(msg)
        try:
            fd = self._current_fd()
            _lock_file(fd, deadline, self.name)
            try:
                yield fd, deadline
            finally:
                _unlock_file(self._fd if self._fd is not None else fd)
        finally:
            self._lock.release()

    def close(self) -> None:
        # A writer stuck on another process's lock must not hold up the exit.
        if not self._lock.acquire(timeout=1.0):
            return
        try:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        finally:
            self._lock.release()

    def after_fork(self) -> None:
        # The lock may have been held by a thread that does not exist in the child.
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._after_last_write = (-1, -1)

    # -- segments (used by the spool) --------------------------------------------------

    def seal(self) -> None:
        """Rotate now if the current file holds anything, so it can be replayed."""
        with self._locked(None) as (fd, deadline):
            fd, size = self._follow_rename(fd, deadline)
            if size:
                self._rotate_locked(fd, deadline)

    def segments(self) -> list[Path]:
        """Sealed segments, oldest first."""
        try:
            names = os.listdir(self.path.parent)
        except FileNotFoundError:
            return []
        return [self.path.parent / n for n in sorted(names) if self.is_segment(n)]

    def is_segment(self, name: str) -> bool:
        """True when ``name`` is a sealed segment of this file."""
        return self._segment_re.fullmatch(name) is not None

    # -- internals --------------------------------------------------------------------

    def _current_fd(self) -> int:
        if self._fd is None:
            self._fd = self._open()
        return self._fd

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Readable too: the torn-line check reads the last byte (writes still append).
        return os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)

    def _follow_rename(self, fd: int, deadline: float) -> tuple[int, int]:
        """Reopen when another process (or a replay) renamed our file away; returns the
        descriptor and the file's size (from the same ``fstat``: one system call less)."""
        try:
            current = os.fstat(fd)
            same = os.stat(self.path).st_ino == current.st_ino
        except FileNotFoundError:
            same = False
        if same:
            self._inode = current.st_ino
            return fd, current.st_size
        _unlock_file(fd)
        os.close(fd)
        self._fd = None
        self._fd = fd = self._open()
        _lock_file(fd, deadline, self.name)
        return self._follow_rename(fd, deadline)

    def _rotate_locked(self, fd: int, deadline: float) -> tuple[int, int]:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%f")
        segment = self.path.with_name(f"{self._stem}.{stamp}-{os.getpid()}{self._suffix}")
        os.rename(self.path, segment)
        _unlock_file(fd)
        os.close(fd)
        self._fd = None
        self._fd = fd = self._open()
        _lock_file(fd, deadline, self.name)
        self._prune()
        return self._follow_rename(fd, deadline)

    def _prune(self) -> None:
        segments = self.segments()
        for old in segments[: max(0, len(segments) - self.backups)]:
            if self.on_discard is not None:
                self.on_discard(old)
            with contextlib.suppress(FileNotFoundError):
                old.unlink()


def _check_writable(path: Path) -> None:
    """Fail at configuration time, not at the first write: create the directory, and make
    sure this process may write there (a read-only mount, another user's file)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        msg = f"file sink directory {str(path.parent)!r} cannot be created: {exc.strerror or exc}"
        raise ConfigurationError(msg) from None
    if not os.access(path.parent, os.W_OK | os.X_OK) or (
        path.exists() and not os.access(path, os.W_OK)
    ):
        msg = f"file sink {str(path)!r} is not writable by this process"
        raise ConfigurationError(msg)


def _append(fd: int, data: bytes, size_before: int) -> None:
    """Write all of ``data`` or, on failure, cut the file back to ``size_before``."""
    view = memoryview(data)
    try:
        while view:
            written = os.write(fd, view)
            view = view[written:]
    except OSError:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, size_before)
        raise


def _lock_file(fd: int, deadline: float, name: str) -> None:
    """``flock`` the file, waiting at most until ``deadline`` (polling: ``flock`` has no
    timeout of its own)."""
    if fcntl is None:
        return
    pause = 0.0001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                msg = f"{name}: another process has held its lock too long"
                raise TimeoutError(msg) from None
            time.sleep(pause)
            pause = min(pause * 2, 0.005)


def _unlock_file(fd: int) -> None:
    if fcntl is not None:
        # OSError: already closed after a failed reopen, and closing released the lock.
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
