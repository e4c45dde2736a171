"""Replaying JSONL files (spool segments, archives) into a sink by hand.

Lines that are not JSON objects are skipped and counted; a batch the sink refuses stops the
replay, leaving that file in place (and, with ``delete``, every file not yet replayed).
Each file is read up to its size when the replay began, and the position reached is saved
beside it after every batch: a replay killed half way resumes there when run again.
Replaying twice is safe where the store dedupes on ``event_id`` (MongoDB, the consumer's
writes).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ._errors import ConfigurationError
from ._progress import progress_bar
from ._secrets import mask_credentials
from .metrics import Metrics
from .sinks import RotatingFileSink, open_sink
from .spool import SegmentReader
from .typing import Sink


@dataclass
class ReplayResult:
    sink: str
    files: int = 0
    events: int = 0
    corrupt: int = 0
    failed: str | None = None
    #: Files an earlier, interrupted replay into the same sink had started: where it resumed.
    resumed: dict[str, int] = field(default_factory=dict)


def replay_files(
    paths: Sequence[Path],
    sink: str | Sink,
    *,
    batch_size: int = 500,
    delete: bool = False,
    progress: bool = True,
) -> ReplayResult:
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        msg = f"not a file: {', '.join(missing)}"
        raise ConfigurationError(msg)
    target = open_sink(sink)
    if isinstance(target, RotatingFileSink) and any(_same_file(p, target.path) for p in paths):
        target.close()
        msg = f"the sink {target.name} is one of the files to replay: it would read its own output"
        raise ConfigurationError(msg)
    # Only what the files hold now: a file something appends to meanwhile is not followed.
    sizes = {path: path.stat().st_size for path in paths}
    result = ReplayResult(sink=target.name)
    metrics = Metrics()
    try:
        with progress_bar(sum(sizes.values()), "replay", enabled=progress) as advance:
            for path in paths:
                checkpoint = _checkpoint(path, target.name, sizes[path], result)
                reader = SegmentReader(path, batch_size, metrics, checkpoint, until=sizes[path])
                done = reader.position
                advance(done)
                while batch := reader.next_batch():
                    try:
                        target.write(batch)
                    except Exception as exc:
                        reader.close()
                        result.failed = (
                            f"{path}: {type(exc).__name__}: {mask_credentials(str(exc))}"
                        )
                        return result
                    reader.sent()
                    result.events += len(batch)
                    advance(reader.position - done)
                    done = reader.position
                if delete:
                    reader.finish()  # the checkpoint too
                else:
                    reader.close()
                    checkpoint.unlink(missing_ok=True)
                result.files += 1
    finally:
        result.corrupt = metrics.get("dropped.corrupt_spool_line")
        target.close()
    return result


def _same_file(path: Path, other: Path) -> bool:
    """The same file, by any name: a symlink, ``./``, a hard link."""
    try:
        return path.resolve() == other.resolve() or os.path.samefile(path, other)
    except OSError:  # the sink's file does not exist yet
        return False


def _checkpoint(path: Path, sink_name: str, size: int, result: ReplayResult) -> Path:
    """Where the replay of ``path`` into this sink saves how far it got, after each batch
    written: run again after a crash (SIGKILL), it resumes there, sending at most one batch
    twice. Removed once the file is done. A position beyond the file's size (a file
    replaced since) starts it over."""
    digest = hashlib.blake2b(sink_name.encode(), digest_size=4).hexdigest()
    checkpoint = path.with_name(f".{path.name}.replay-{digest}.offset")
    try:
        position = int(checkpoint.read_text())
    except (OSError, ValueError):
        return checkpoint
    if 0 < position <= size:
        result.resumed[str(path)] = position
    else:
        checkpoint.unlink(missing_ok=True)
    return checkpoint
