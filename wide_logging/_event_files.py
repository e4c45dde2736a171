"""Stored events on disk: finding the JSONL files a user points at, and reading them."""

from __future__ import annotations

import glob
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from ._errors import ConfigurationError


def event_files(spec: str) -> list[Path]:
    """A JSONL file, the ``*.jsonl`` files of a folder (rotated segments included; not its
    subfolders: a spool is replayed to the sink, and the demo keeps an earlier run in
    ``previous/``), or a glob. An error when there is none."""
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.glob("*.jsonl*") if p.is_file() and p.suffix != ".offset")
    elif path.is_file():
        files = [path]
    else:
        files = sorted(Path(p) for p in glob.glob(spec) if Path(p).is_file())
    if not files:
        msg = f"no event files at {spec!r} (a JSONL file, a folder of them, or a glob)"
        raise ConfigurationError(msg)
    return files


def read_events(files: Sequence[Path]) -> Iterator[dict[str, Any] | None]:
    """Every event of ``files`` in order; None for a line that is not a JSON object (a torn
    write, a stray line), so that a caller can count them. Blank lines are skipped."""
    for path in files:
        with open(path, "rb") as handle:
            for line in handle:
                if not line.strip():
                    continue
                try:
                    event = orjson.loads(line)
                except orjson.JSONDecodeError:
                    yield None
                    continue
                yield event if isinstance(event, dict) else None
