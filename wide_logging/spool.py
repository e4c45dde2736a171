"""The spool: the last link of every fallback chain, and the source of replay.

Events that could not reach a sink are appended to a rotating JSONL file. To replay, the
current file is sealed into a segment and segments are *claimed* oldest first by renaming
them to ``<segment>.replaying-<pid>``: a rename is atomic, so of several processes sharing
a spool directory exactly one replays each segment. A claim whose process is gone (it
crashed mid-replay) is taken over by the next process that looks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import orjson

from .metrics import Metrics
from .sinks.file import RotatingFileSink

_internal = logging.getLogger("wide_logging.internal")
_CLAIM_RE = re.compile(r"(?P<segment>.+)\.replaying-(?P<pid>\d+)")


class Spool:
    def __init__(self, sink: RotatingFileSink, metrics: Metrics) -> None:
        self.sink = sink
        self.metrics = metrics
        sink.on_discard = self._count_discarded

    @property
    def name(self) -> str:
        return self.sink.name

    def write(self, batch: Sequence[bytes], reason: str) -> bool:
        """Append ``batch``; True on success. On failure the events are counted as dropped."""
        try:
            self.sink.write(batch)
        except Exception as exc:
            self.metrics.inc("dropped.spool_failure", len(batch))
            _internal.error(
                "spool %s failed (%s: %s); %d events dropped",
                self.name,
                type(exc).__name__,
                exc,
                len(batch),
            )
            return False
        self.metrics.inc("spooled", len(batch))
        self.metrics.inc(f"spooled.{reason}", len(batch))
        return True

    def claim(self) -> Path | None:
        """Seal the current file and claim the oldest segment for replay, if any."""
        try:
            self.sink.seal()
        except OSError as exc:
            _internal.warning("could not seal spool %s: %s", self.name, exc)
        orphan = self._orphaned_claim()
        if orphan is not None:
            return orphan
        for segment in self.sink.segments():
            claimed = segment.with_name(f"{segment.name}.replaying-{os.getpid()}")
            try:
                os.rename(segment, claimed)
            except FileNotFoundError:
                continue  # another process claimed it first
            return claimed
        return None

    def _orphaned_claim(self) -> Path | None:
        directory = self.sink.path.parent
        try:
            names = sorted(os.listdir(directory))
        except FileNotFoundError:
            return None
        for name in names:
            match = _CLAIM_RE.fullmatch(name)
            if match is None or not self.sink.is_segment(match.group("segment")):
                continue
            pid = int(match.group("pid"))
            if pid != os.getpid() and _alive(pid):
                continue
            claimed = directory / f"{match.group('segment')}.replaying-{os.getpid()}"
            try:
                os.rename(directory / name, claimed)
            except FileNotFoundError:
                continue
            return claimed
        return None

    def _count_discarded(self, segment: Path) -> None:
        lines = _count_lines(segment)
        self.metrics.inc("dropped.spool_full", lines)
        _internal.error(
            "spool is over its backups limit: deleting %s with %d unreplayed events",
            segment,
            lines,
        )


class SegmentReader:
    """Reads a claimed segment in batches; the unsent batch is kept until it is written."""

    def __init__(self, path: Path, batch_size: int, metrics: Metrics) -> None:
        self.path = path
        self.batch_size = batch_size
        self.metrics = metrics
        self._file: IO[bytes] | None = open(path, "rb")  # noqa: SIM115 - kept across calls
        self.pending: list[bytes] = []

    def next_batch(self) -> list[bytes]:
        """The batch to send next (the pending one again after a failure); [] at the end."""
        if self.pending or self._file is None:
            return self.pending
        batch: list[bytes] = []
        for line in self._file:
            line = line.rstrip(b"\n")
            if not line:
                continue
            try:
                orjson.loads(line)
            except orjson.JSONDecodeError:
                self.metrics.inc("dropped.corrupt_spool_line")
                continue
            batch.append(line)
            if len(batch) >= self.batch_size:
                break
        self.pending = batch
        return batch

    @property
    def position(self) -> int:
        """Bytes of the file read so far."""
        return self._file.tell() if self._file is not None else 0

    def sent(self) -> None:
        self.metrics.inc("replayed", len(self.pending))
        self.pending = []

    def finish(self) -> None:
        """Close and delete the fully replayed segment."""
        self.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as handle:
            return sum(1 for line in handle if line.strip())
    except OSError:
        return 0
