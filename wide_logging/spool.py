"""The spool: the last link of every fallback chain, and the source of replay.

Events that could not reach a sink are appended to a rotating JSONL file. To replay, the
current file is sealed into a segment and segments are *claimed* oldest first by renaming
them to ``<segment>.replaying-<pid>``: a rename is atomic, so of several processes sharing
a spool directory exactly one replays each segment. A claim whose process is gone (it
crashed mid-replay) is taken over by the next process that looks.

Beside the spool lives the dead-letter file (``dead-letters.jsonl``): events a sink refused
for good (it took the rest of their batch), each with the reason. They are not replayed;
an operator reads them, fixes the cause and replays them by hand.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO

import orjson

from .fields import sampling_rule_of
from .metrics import Metrics
from .sinks.file import RotatingFileSink

_internal = logging.getLogger("wide_logging.internal")
_CLAIM_RE = re.compile(r"(?P<segment>.+)\.replaying-(?P<pid>\d+)")
DEAD_LETTERS_NAME = "dead-letters.jsonl"


def count_lost(metrics: Metrics, reason: str, batch: Iterable[bytes]) -> int:
    """Events given up: ``dropped.<reason>``, and ``events.lost.<rule>`` by the rule that
    kept each one (so re-weighted counts can be corrected; docs/sampling.md). Returns how
    many there were."""
    rules = Counter(sampling_rule_of(data) for data in batch)
    total = sum(rules.values())
    metrics.inc(f"dropped.{reason}", total)
    for rule, count in rules.items():
        metrics.inc(f"events.lost.{rule}", count)
    return total


#: A disk that stays full fails every batch: one message per this many seconds, not one
#: per batch.
_REPORT_EVERY = 10.0


class Spool:
    def __init__(self, sink: RotatingFileSink, metrics: Metrics) -> None:
        self.sink = sink
        self.metrics = metrics
        sink.on_discard = self._count_discarded
        self._last_report = -_REPORT_EVERY
        self._unreported = 0

    def _report_failure(self, exc: Exception, lost: int) -> None:
        self._unreported += lost
        now = time.monotonic()
        if now - self._last_report < _REPORT_EVERY:
            return
        _internal.error(
            "spool %s failed (%s: %s); %d events dropped since the last report",
            self.name,
            type(exc).__name__,
            exc,
            self._unreported,
        )
        self._last_report, self._unreported = now, 0

    @property
    def name(self) -> str:
        return self.sink.name

    def write(self, batch: Sequence[bytes], reason: str, timeout: float | None = None) -> bool:
        """Append ``batch`` (waiting at most ``timeout`` s for the file's locks); True on
        success. On failure the events are counted as dropped, and the error logged — at
        most once every ``_REPORT_EVERY`` seconds, with how many failures it stands for."""
        try:
            self.sink.write(batch, timeout)
        except Exception as exc:
            lost = count_lost(self.metrics, "spool_failure", batch)
            self._report_failure(exc, lost)
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

    def checkpoint_for(self, claimed: Path) -> Path:
        """Where the replay position of a claimed segment is kept (named after the segment,
        so that whoever takes the claim over finds it; hidden from segment listings)."""
        match = _CLAIM_RE.fullmatch(claimed.name)
        segment = match.group("segment") if match is not None else claimed.name
        return claimed.with_name(f".{segment}.offset")

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
        lost = count_lost(self.metrics, "spool_full", _lines(segment))
        _internal.error(
            "spool is over its backups limit: deleting %s with %d unreplayed events",
            segment,
            lost,
        )


class SegmentReader:
    """Reads a claimed segment in batches; the unsent batch is kept until it is written.

    With a ``checkpoint`` file, the position after each batch sent is saved there, and a
    reader of the same segment (the next process, after a crash mid-replay) starts from it:
    a segment is not sent again from its start by every process that dies replaying it.
    """

    def __init__(
        self,
        path: Path,
        batch_size: int,
        metrics: Metrics,
        checkpoint: Path | None = None,
        until: int | None = None,
    ) -> None:
        self.path = path
        #: Read no further than this many bytes (what the file held when the reader began).
        self.until = until
        self.batch_size = batch_size
        self.metrics = metrics
        self.checkpoint = checkpoint
        self._file: IO[bytes] | None = open(path, "rb")  # noqa: SIM115 - kept across calls
        if checkpoint is not None:
            self._file.seek(_saved_position(checkpoint))
        self.pending: list[bytes] = []
        #: When the pending batch first failed (monotonic): a sink that takes other events
        #: since then is healthy, and what it still refuses here is the events' fault.
        self.failed_since: float | None = None

    def next_batch(self) -> list[bytes]:
        """The batch to send next (the pending one again after a failure); [] at the end."""
        if self.pending or self._file is None:
            return self.pending
        batch: list[bytes] = []
        for line in self._file:
            if self.until is not None and self._file.tell() > self.until:
                break  # written after the replay began (and maybe by it)
            line = line.rstrip(b"\n")
            if not line:
                continue
            try:
                is_event = type(orjson.loads(line)) is dict
            except orjson.JSONDecodeError:  # a torn write: a process was killed mid-line
                is_event = False
            if not is_event:  # (or a stray line: an event is a JSON object)
                count_lost(self.metrics, "corrupt_spool_line", [line])
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

    def sent(self, unwritten: Sequence[bytes] = ()) -> None:
        """The pending batch went out, all but ``unwritten`` (pending again, for later)."""
        self.metrics.inc("replayed", len(self.pending) - len(unwritten))
        self.pending = list(unwritten)
        if not unwritten:
            self.failed_since = None
            if self.checkpoint is not None:
                _save_position(self.checkpoint, self.position)

    def finish(self) -> None:
        """Close and delete the fully replayed segment (and its checkpoint)."""
        self.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        if self.checkpoint is not None:
            with contextlib.suppress(FileNotFoundError):
                self.checkpoint.unlink()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class Replay:
    """The spool's segments back into the primary sink: oldest first, one batch a call,
    each batch acknowledged (checkpointed) once written."""

    #: Look for segments left by other processes at least this often (seconds).
    RESCAN = 30.0

    def __init__(self, spool: Spool, batch_size: int, metrics: Metrics) -> None:
        self._spool = spool
        self._batch_size = batch_size
        self._metrics = metrics
        self._reader: SegmentReader | None = None
        #: Something may wait in the spool now: look at once, not at the next rescan.
        self.due = True  # segments left by an earlier run
        self._last_scan = 0.0

    def one_batch(self, write: Callable[[list[bytes], float | None], list[bytes]]) -> bool:
        """Send one batch through ``write(batch, failed_since)`` (which returns what it did
        not write); True if more may follow at once."""
        reader = self._reader
        if reader is None:
            now = time.monotonic()
            if not self.due and now - self._last_scan < self.RESCAN:
                return False
            self.due = False
            self._last_scan = now
            claimed = self._spool.claim()
            if claimed is None:
                return False
            reader = self._reader = SegmentReader(
                claimed, self._batch_size, self._metrics, self._spool.checkpoint_for(claimed)
            )
        batch = reader.next_batch()
        if not batch:
            reader.finish()
            self._reader = None
            self.due = True  # there may be more segments
            return True
        unwritten = write(batch, reader.failed_since)
        reader.sent(unwritten)
        if unwritten:
            if reader.failed_since is None:
                reader.failed_since = time.monotonic()
            return False
        return True

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()


def _saved_position(checkpoint: Path) -> int:
    try:
        return max(0, int(checkpoint.read_text()))
    except (OSError, ValueError):  # none yet, or unreadable: from the start (at least once)
        return 0


def _save_position(checkpoint: Path, position: int) -> None:
    """Atomically (a crash never leaves half a number): write beside, then rename."""
    temporary = checkpoint.with_name(checkpoint.name + ".tmp")
    try:
        temporary.write_text(str(position))
        os.replace(temporary, checkpoint)
    except OSError as exc:  # a lost checkpoint means only repeats after a crash
        _internal.warning("could not save replay position %s: %s", checkpoint, exc)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lines(path: Path) -> Iterator[bytes]:
    try:
        with open(path, "rb") as handle:
            yield from (line for line in handle if line.strip())
    except OSError:
        return


class DeadLetters:
    """Events a sink refused for good, one JSON line each: ``{"timestamp", "sink",
    "reason", "event"}`` (the event as it was, or as a string when it is not JSON)."""

    def __init__(self, sink: RotatingFileSink, metrics: Metrics) -> None:
        self.sink = sink
        self.metrics = metrics

    @classmethod
    def beside(cls, spool: Spool) -> DeadLetters:
        path = spool.sink.path.with_name(DEAD_LETTERS_NAME)
        sink = RotatingFileSink(path, max_bytes=spool.sink.max_bytes, backups=spool.sink.backups)
        letters = cls(sink, spool.metrics)
        sink.on_discard = letters._count_discarded
        return letters

    def _count_discarded(self, segment: Path) -> None:
        """Dead letters beyond ``backups`` files are deleted: counted and said, not silent."""
        deleted = sum(1 for _ in _lines(segment))
        self.metrics.inc("dropped.dead_letters_full", deleted)
        _internal.error(
            "dead-letter file is over its backups limit: deleting %s with %d events",
            segment,
            deleted,
        )

    def write(self, sink_name: str, refused: Sequence[tuple[bytes, str]]) -> None:
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
        lines = [
            orjson.dumps(
                {"timestamp": now, "sink": sink_name, "reason": reason, "event": _embedded(data)}
            )
            for data, reason in refused
        ]
        self.metrics.inc(f"dead_letters.{sink_name}", len(refused))
        for rule, count in Counter(sampling_rule_of(data) for data, _ in refused).items():
            self.metrics.inc(f"events.lost.{rule}", count)
        _internal.error(
            "sink %s refused %d event(s) for good (first: %s); kept in %s",
            sink_name,
            len(refused),
            refused[0][1][:300],
            self.sink.path,
        )
        try:
            self.sink.write(lines)
        except Exception as exc:
            count_lost(self.metrics, "dead_letter_failure", [data for data, _ in refused])
            _internal.error("dead-letter file %s failed: %s", self.sink.path, exc)

    def close(self) -> None:
        self.sink.close()


def _embedded(data: bytes) -> orjson.Fragment | str:
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError:
        return data.decode("utf-8", "replace")
    return orjson.Fragment(data)
