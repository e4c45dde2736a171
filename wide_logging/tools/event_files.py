"""Stored events on disk: finding the JSONL files a user points at, and reading them."""

from __future__ import annotations

import glob
import gzip
import re
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from .._errors import ConfigurationError

#: What the file sink adds to a rotated segment's name: ``events.20261130T101500.123456-42.jsonl``
_SEGMENT_STAMP = r"\.\d{8}T\d{6}\.\d{6}-\d+"


def event_files(spec: str) -> list[Path]:
    """The files ``spec`` names: a JSONL file with the segments the file sink rotated out of
    it (``events.<time>-<pid>.jsonl``, not any ``events.*.jsonl``); the ``*.jsonl`` files of
    a folder (not its subfolders: a spool is replayed to the sink, and the demo keeps an
    earlier run in ``previous/``); or a glob. An error when there is none."""
    path = Path(spec)
    if path.is_dir():
        files = sorted(
            p for p in path.iterdir() if p.is_file() and p.name.endswith((".jsonl", ".jsonl.gz"))
        )
    elif glob.has_magic(spec):
        files = sorted(Path(p) for p in glob.glob(spec) if Path(p).is_file())
    else:
        segment = re.compile(
            re.escape(path.name.split(".")[0]) + _SEGMENT_STAMP + re.escape(path.suffix)
        )
        parent = path.parent if path.parent.is_dir() else None
        rotated = [p for p in parent.iterdir() if segment.fullmatch(p.name)] if parent else []
        files = sorted(rotated) + ([path] if path.is_file() else [])
    if not files:
        msg = f"no event files at {spec!r} (a JSONL file, a folder of them, or a glob)"
        raise ConfigurationError(msg)
    return files


def parse_event(line: bytes) -> dict[str, Any] | None:
    """The event on one JSONL line; None for a line that holds none (a torn write, a
    stray line, JSON that is not an object)."""
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return event if type(event) is dict else None


def read_events(
    files: Sequence[Path],
    counts: Counter[str] | None = None,
    *,
    repeated: set[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Every event of ``files`` in order, each ``event_id`` once: a replay run twice or a
    retried write may have stored an event twice. ``counts`` (when given) gets the lines that
    are not events (``unreadable``: a torn write, a stray line) and the ``duplicates``.
    ``repeated``: the only ids that occur more than once, when the caller knows them (the
    report asks DuckDB): then only those are remembered, not every id read."""
    seen: set[str] = set()
    tally: Counter[str] = counts if counts is not None else Counter()
    for path in files:
        for line in lines_of(path, tally):
            if not line.strip():
                continue
            event = parse_event(line)
            if event is None:
                tally["unreadable"] += 1
                continue
            event_id = event.get("event_id")
            if isinstance(event_id, str) and (repeated is None or event_id in repeated):
                if event_id in seen:
                    tally["duplicates"] += 1
                    continue
                seen.add(event_id)
            yield event


def lines_of(path: Path, counts: Counter[str]) -> Iterator[bytes]:
    """The lines of a file, through gzip for a ``.gz``; one cut short (a truncated or
    broken archive) is read up to where it breaks, counted in ``counts["cut_short"]``."""
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as handle:
            yield from handle
    except (EOFError, zlib.error, gzip.BadGzipFile):
        counts["cut_short"] += 1
