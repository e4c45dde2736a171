"""``wide-logging report``: a daily briefing — requests, errors, latency, routes, the error
types and incidents of a period, and the pipeline's health — as one self-contained HTML
file (``html.py``), markdown or JSON, all from the same numbers (``build_report``).

Counts are re-weighted by ``1 / sampling.rate`` and latency quantiles weighted alike
(``files.py`` says why). Needs the ``report`` extra (DuckDB, Plotly).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from .._errors import ConfigurationError
from .._urls import mask_url
from ..incidents import DEFAULT_RULES
from ..incidents.sources import stream_payloads
from ..incidents.summary import iso_time, summarize
from ..tools.event_files import event_files, read_events
from . import files
from .health import pipeline_health
from .mongo import MongoEvents

#: Routes in the table (the JSON has them all).
ROUTES_SHOWN = 25


def build_report(
    source: str, since: float | None = None, now: float | None = None
) -> dict[str, Any]:
    """The briefing's numbers for the events of ``source`` (``file:PATH``: a JSONL file and
    its rotated segments, a folder or a glob, gzipped or not; ``redis://...?stream=NAME``;
    ``mongodb://...``) from ``since`` (Unix seconds; None: everything) to ``now``. With
    ``since``, each route is compared with the period of the same length before it."""
    if source.startswith(("mongodb://", "mongodb+srv://")):
        from ..sinks.mongo import MongoSink

        sink = MongoSink(source)
        try:
            return _report(MongoEvents(sink.open_collection()), source, since, now)
        finally:
            sink.close()
    with tempfile.TemporaryDirectory(prefix="wide-logging-report-") as spill:
        paths = _files_of(source, since, now, Path(spill))
        connection = files.duckdb_connection(spill)
        try:
            files.load(connection, paths)
            return _report(FileEvents(connection, paths), source, since, now)
        except files.duckdb_errors() as exc:  # a broken .gz, a line beyond the memory limit
            reason = " ".join(str(exc).split())[:300]
            msg = f"could not read the events ({type(exc).__name__}: {reason})"
            raise ConfigurationError(msg) from None
        finally:
            connection.close()


class FileEvents:
    """What ``_report`` asks of a source, answered by DuckDB over the files (``files``)."""

    def __init__(self, connection: Any, paths: list[Path]) -> None:
        self.connection = connection
        self.paths = paths

    def span(self) -> tuple[float | None, float | None]:
        return files.span(self.connection)

    def totals(self, start: float, end: float) -> dict[str, Any]:
        return files.totals(self.connection, start, end)

    def by_service(self, start: float, end: float) -> list[dict[str, Any]]:
        return files.by_service(self.connection, start, end)

    def timeline(self, start: float, end: float, step: int) -> list[dict[str, Any]]:
        return files.timeline(self.connection, start, end, step)

    def routes(self, start: float, end: float) -> dict[str, dict[str, Any]]:
        return files.routes(self.connection, start, end)

    def error_types(self, start: float, end: float) -> list[dict[str, Any]]:
        return files.error_types(self.connection, start, end)

    def metrics_events(self, end: float) -> list[tuple[float, str, str]]:
        return files.metrics_events(self.connection, end)

    def incidents(self, start: float, end: float) -> list[dict[str, Any]]:
        return [
            incident.to_dict()
            for incident in summarize(
                read_events(self.paths, repeated=files.repeated_ids(self.connection)),
                DEFAULT_RULES,
                since=start,
                traffic_of=files.traffic(self.connection),
            )
            if incident.first_seen <= iso_time(end)
        ]


def _files_of(source: str, since: float | None, now: float | None, spill: Path) -> list[Path]:
    """The JSONL files that hold the source's events: a ``file:`` source's own, or the
    Redis stream's entries of the period (and of the one before, for the comparison) read
    by ranges into a file of the temporary folder, so that memory stays bounded."""
    if source.startswith("file:"):
        where = source[len("file:") :]
        if not where.strip():
            msg = "--source file: needs a path (a JSONL file, a folder or a glob)"
            raise ConfigurationError(msg)
        return event_files(where)
    if source.startswith(("redis://", "rediss://", "redis+cluster://")):
        start = None
        if since is not None:
            start = since - ((now if now is not None else time.time()) - since)
        copy = spill / "stream.jsonl"
        with open(copy, "wb") as out:
            for payload in stream_payloads(source, start):
                out.write(payload.replace(b"\n", b" ") + b"\n")
        return [copy]
    msg = (
        "--source must be file:PATH, redis://...?stream=NAME, redis+cluster://... "
        "or mongodb://..., "
        f"got {mask_url(source)!r}"
    )
    raise ConfigurationError(msg)


def _report(events: Any, source: str, since: float | None, now: float | None) -> dict[str, Any]:
    first, last = events.span()
    low, high = files.PLAUSIBLE
    if since is None:
        start, end = first or low, (last or low) + 1e-3
    else:  # (within the times believed: --since 99999999d is since 2000)
        start = min(max(since, low), high)
        end = min(max(now if now is not None else time.time(), start), high)
    step = files.step_for(end - start)
    return {
        "source": mask_url(source),
        "period": {"start": start, "end": end, "step_seconds": step},
        "generated_at": time.time(),
        "weighted": "counts re-weighted by 1 / sampling.rate; latency quantiles weighted alike",
        "totals": events.totals(start, end),
        "services": events.by_service(start, end),
        "timeline": events.timeline(start, end, step),
        "routes": _routes_with_change(events, start, end, since is not None),
        "errors": events.error_types(start, end),
        "incidents": events.incidents(start, end),
        "pipeline": pipeline_health(events.metrics_events(end), start),
    }


def _routes_with_change(
    events: Any, start: float, end: float, compare: bool
) -> list[dict[str, Any]]:
    """The routes, the most failing and then the slowest first; with ``compare``, each with
    its numbers in the period of the same length just before (``previous``)."""
    now = events.routes(start, end)
    before = events.routes(start - (end - start), start) if compare else {}
    rows = []
    for route, row in now.items():
        previous = before.get(route)
        row["previous"] = (
            {key: previous[key] for key in ("requests", "error_rate", "p95")} if previous else None
        )
        rows.append(row)
    rows.sort(key=lambda r: (-(r["errors"] or 0), -(r["p95"] or 0), r["route"]))
    return rows
