"""Replaying JSONL files (spool segments, archives) into a sink by hand.

Lines that are not JSON objects are skipped and counted; a batch the sink refuses stops the
replay, leaving that file in place (and, with ``delete``, every file not yet replayed).
Replaying twice is safe where the store dedupes on ``event_id`` (MongoDB, the consumer's
writes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ._errors import ConfigurationError
from .metrics import Metrics
from .pipeline import mask_credentials
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
    if isinstance(target, RotatingFileSink) and any(
        p.resolve() == target.path.resolve() for p in paths
    ):
        target.close()
        msg = f"the sink {target.name} is one of the files to replay: it would read its own output"
        raise ConfigurationError(msg)
    # Only what the files hold now: a file something appends to meanwhile is not followed.
    sizes = {path: path.stat().st_size for path in paths}
    result = ReplayResult(sink=target.name)
    metrics = Metrics()
    advance, finish = _progress_bar(sum(p.stat().st_size for p in paths), progress)
    try:
        for path in paths:
            reader = SegmentReader(path, batch_size, metrics, until=sizes[path])
            done = 0
            while batch := reader.next_batch():
                try:
                    target.write(batch)
                except Exception as exc:
                    reader.close()
                    result.failed = f"{path}: {type(exc).__name__}: {mask_credentials(str(exc))}"
                    return result
                reader.sent()
                result.events += len(batch)
                advance(reader.position - done)
                done = reader.position
            if delete:
                reader.finish()
            else:
                reader.close()
            result.files += 1
    finally:
        finish()
        result.corrupt = metrics.get("dropped.corrupt_spool_line")
        target.close()
    return result


def _progress_bar(total: int, enabled: bool) -> tuple[Callable[[int], object], Callable[[], None]]:
    if enabled:
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            bar = tqdm(total=total, unit="B", unit_scale=True, desc="replay")
            return bar.update, bar.close
    return (lambda _n: None), (lambda: None)
