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
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
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
            count_lost(self.metrics, "spool_failure", batch)
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
        lost = count_lost(self.metrics, "spool_full", _lines(segment))
        _internal.error(
            "spool is over its backups limit: deleting %s with %d unreplayed events",
            segment,
            lost,
        )


class SegmentReader:
    """Reads a claimed segment in batches; the unsent batch is kept until it is written."""

    def __init__(self, path: Path, batch_size: int, metrics: Metrics) -> None:
        self.path = path
        self.batch_size = batch_size
        self.metrics = metrics
        self._file: IO[bytes] | None = open(path, "rb")  # noqa: SIM115 - kept across calls
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
            line = line.rstrip(b"\n")
            if not line:
                continue
            try:
                orjson.loads(line)
            except orjson.JSONDecodeError:  # a torn write: a process was killed mid-line
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
        return cls(RotatingFileSink(path, max_bytes=spool.sink.max_bytes, backups=2), spool.metrics)

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
