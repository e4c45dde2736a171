"""The briefing's numbers from JSONL files, computed by DuckDB (gzipped files too).

Every count is re-weighted by ``1 / sampling.rate`` (a normal request kept at 2% stands for
50), and every latency quantile is a weighted one: normal traffic is sampled while every
slow request is kept, so an unweighted percentile would be pulled up towards the slow ones.
A weighted quantile ``q`` is the smallest duration whose cumulative weight reaches ``q`` of
the total.

Columns are read as JSON and cast here (``try_cast``): one event with a field of another
type must not make the reader drop it, or all of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .._errors import ConfigurationError
from ..incidents.summary import MIN_RATE

#: Columns read from each line (as JSON: cast below, so an odd value is a NULL, not a
#: rejected line); everything else in an event is not read at all.
_COLUMNS = (
    "{event_id: 'VARCHAR', timestamp: 'JSON', kind: 'JSON', service: 'JSON', host: 'JSON',"
    " process: 'JSON', request_id: 'JSON', http: 'JSON', duration_ms: 'JSON', error: 'JSON',"
    " sampling: 'JSON', metrics: 'JSON'}"
)
QUANTILES = (0.5, 0.95, 0.99)
#: JSON's number types, as DuckDB's json_type names them.
_NUMBERS = "('UBIGINT', 'BIGINT', 'DOUBLE', 'HUGEINT')"
#: Chart steps: the first whose number of points over the span stays under ~200.
STEPS = (1, 5, 15, 60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400, 365 * 86400)
#: Request times believed: 2000-01-01 to 2100-01-01 UTC (a broken clock's event is left
#: out, not allowed to stretch the charts over decades).
PLAUSIBLE = (946_684_800.0, 4_102_444_800.0)


#: DuckDB's memory, at most: beyond it, it spills to a temporary folder.
MEMORY_LIMIT = "256MB"


def duckdb_errors() -> tuple[type[Exception], ...]:
    """What DuckDB raises when it cannot read the events (a broken .gz, a line beyond the
    memory limit): the report says it in a line."""
    import duckdb

    return (duckdb.Error,)


def duckdb_connection(spill: str) -> Any:
    """An in-memory DuckDB, bounded to ``MEMORY_LIMIT``, spilling into ``spill``."""
    try:
        import duckdb
    except ImportError:
        msg = "the report needs the 'report' extra: pip install 'wide-logging[report]'"
        raise ConfigurationError(msg) from None
    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")
    # Tables in any order (queries sort what they show) take less memory to build.
    connection.execute("SET preserve_insertion_order = false")
    connection.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
    connection.execute(f"SET temp_directory = '{_quoted(spill)}'")
    return connection


def load(connection: Any, files: Sequence[Path]) -> None:
    """Read ``files`` into two tables: ``requests`` (typed, each event once) and
    ``metrics`` (the ``kind: metrics`` events). Only the typed columns are kept: the
    events' JSON is never held in memory as a whole."""
    source = (
        f"read_json({_list([str(path) for path in files])}, format = 'newline_delimited',"
        f" ignore_errors = true, columns = {_COLUMNS})"
    )
    connection.execute(
        f"""
        CREATE TEMP TABLE requests AS
        WITH typed AS (
          SELECT
            event_id,
            epoch(try_cast(timestamp ->> '$' AS TIMESTAMPTZ)) AS ts,
            coalesce(service ->> '$.name', 'unknown') AS service,
            coalesce(http ->> '$.route', '(no route)') AS route,
            -- numbers only, as summary.failed and the MongoDB source read them
            CASE WHEN json_type(http -> '$.response.status_code') IN {_NUMBERS}
                 THEN try_cast(http -> '$.response.status_code' AS DOUBLE) END AS status,
            CASE WHEN json_type(duration_ms) IN {_NUMBERS}
                 THEN try_cast(duration_ms AS DOUBLE) END AS duration,
            -- an error Python reads as true (summary.failed)
            error IS NOT NULL AND json_type(error) <> 'NULL'
              AND error::VARCHAR NOT IN ('false', '""', '0', '0.0', '{{}}', '[]') AS has_error,
            coalesce(error ->> '$.type', 'error') AS error_type,
            error ->> '$.message' AS error_message,
            request_id ->> '$' AS request_id,
            CASE WHEN json_type(sampling -> '$.rate') IN ('DOUBLE', 'UBIGINT', 'BIGINT')
                 THEN try_cast(sampling -> '$.rate' AS DOUBLE) END AS rate
          FROM {source} WHERE kind ->> '$' = 'http.request'
        )
        SELECT * EXCLUDE (rate, error_type),
               CASE WHEN has_error THEN error_type END AS error_type,
               has_error OR coalesce(status >= 500, false) AS failed,
               -- as incidents.summary.event_weight: a rate read as a number, within (0, 1]
               CASE WHEN rate >= {MIN_RATE!r} AND rate <= 1 THEN 1.0 / rate ELSE 1.0 END
                 AS weight
        FROM typed WHERE ts BETWEEN {PLAUSIBLE[0]!r} AND {PLAUSIBLE[1]!r}
        """
    )
    connection.execute(
        "CREATE TEMP TABLE repeated AS SELECT event_id FROM requests "
        "WHERE event_id IS NOT NULL GROUP BY event_id HAVING count(*) > 1"
    )
    if repeated_ids(connection):  # a replay run twice: each event once (rare: only then)
        connection.execute(
            """
            CREATE OR REPLACE TEMP TABLE requests AS SELECT * FROM requests
            QUALIFY event_id IS NULL OR row_number() OVER (PARTITION BY event_id) = 1
            """
        )
    connection.execute(
        f"""
        CREATE TEMP TABLE metrics AS
        SELECT epoch(try_cast(timestamp ->> '$' AS TIMESTAMPTZ)) AS ts,
               coalesce(host ->> '$.name', '') || ':' || coalesce(process ->> '$.pid', '')
                 AS process,
               metrics::VARCHAR AS numbers
        FROM {source} WHERE kind ->> '$' = 'metrics' AND json_type(metrics) = 'OBJECT'
          AND epoch(try_cast(timestamp ->> '$' AS TIMESTAMPTZ))
              BETWEEN {PLAUSIBLE[0]!r} AND {PLAUSIBLE[1]!r}
        QUALIFY event_id IS NULL OR row_number() OVER (PARTITION BY event_id) = 1
        """
    )


def repeated_ids(connection: Any) -> set[str]:
    """The ids of request events stored more than once (a replay run twice), found when
    loading: the only ones a reader of the files must look out for — usually none, so
    nothing is held."""
    return {row[0] for row in connection.execute("SELECT event_id FROM repeated").fetchall()}


def span(connection: Any) -> tuple[float | None, float | None]:
    """The first and last times of the requests and metrics events."""
    first, last = connection.execute(
        "SELECT min(ts), max(ts) FROM (SELECT ts FROM requests UNION ALL SELECT ts FROM metrics)"
    ).fetchone()
    return first, last


def step_for(seconds: float) -> int:
    return next((step for step in STEPS if seconds / step <= 200), STEPS[-1])


def _where(start: float, end: float) -> str:
    return f"ts >= {start!r} AND ts < {end!r}"


def totals(connection: Any, start: float, end: float) -> dict[str, Any]:
    row = connection.execute(
        f"""
        SELECT count(*), sum(weight), sum(weight) FILTER (WHERE failed),
               count(*) FILTER (WHERE failed)
        FROM requests WHERE {_where(start, end)}
        """
    ).fetchone()
    events, requests, errors, error_events = row
    quantiles = weighted_quantiles(connection, "'all'", _where(start, end)).get("all", {})
    return {
        "events": events,
        "requests": requests or 0.0,
        "errors": errors or 0.0,
        "error_events": error_events,
        "error_rate": (errors or 0.0) / requests if requests else None,
        **quantiles,
    }


def weighted_quantiles(connection: Any, key: str, where: str) -> dict[Any, dict[str, float]]:
    """``{group: {"p50": ms, "p95": ms, "p99": ms}}`` of the durations grouped by ``key``
    (an SQL expression), each weighted by its event's weight."""
    picks = ", ".join(
        f"min(duration) FILTER (WHERE cum >= {q!r} * total) AS p{round(q * 100)}" for q in QUANTILES
    )
    rows = connection.execute(
        f"""
        WITH ordered AS (
          SELECT {key} AS k, duration,
                 sum(weight) OVER (PARTITION BY {key} ORDER BY duration
                                   ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS cum,
                 sum(weight) OVER (PARTITION BY {key}) AS total
          FROM requests WHERE duration IS NOT NULL AND {where}
        )
        SELECT k, {picks} FROM ordered GROUP BY k
        """
    ).fetchall()
    names = [f"p{round(q * 100)}" for q in QUANTILES]
    return {row[0]: dict(zip(names, row[1:], strict=True)) for row in rows}


def timeline(connection: Any, start: float, end: float, step: int) -> list[dict[str, Any]]:
    """Requests, errors and weighted latency quantiles per ``step`` seconds."""
    bucket = f"floor(ts / {step}) * {step}"
    where = _where(start, end)
    counts = connection.execute(
        f"""
        SELECT {bucket} AS t, sum(weight), coalesce(sum(weight) FILTER (WHERE failed), 0)
        FROM requests WHERE {where} GROUP BY t ORDER BY t
        """
    ).fetchall()
    quantiles = weighted_quantiles(connection, bucket, where)
    return [
        {"t": t, "requests": requests, "errors": errors, **quantiles.get(t, {})}
        for t, requests, errors in counts
    ]


def by_service(connection: Any, start: float, end: float) -> list[dict[str, Any]]:
    rows = connection.execute(
        f"""
        SELECT service, sum(weight), coalesce(sum(weight) FILTER (WHERE failed), 0)
        FROM requests WHERE {_where(start, end)} GROUP BY service ORDER BY 2 DESC
        """
    ).fetchall()
    return [
        {"service": name, "requests": n, "errors": e, "error_rate": e / n if n else None}
        for name, n, e in rows
    ]


def routes(connection: Any, start: float, end: float) -> dict[str, dict[str, Any]]:
    """Per route: requests, errors, error rate and weighted p50/p95/p99."""
    where = _where(start, end)
    rows = connection.execute(
        f"""
        SELECT route, sum(weight), coalesce(sum(weight) FILTER (WHERE failed), 0), count(*)
        FROM requests WHERE {where} GROUP BY route
        """
    ).fetchall()
    quantiles = weighted_quantiles(connection, "route", where)
    return {
        route: {
            "route": route,
            "requests": n,
            "errors": e,
            "events": events,
            "error_rate": e / n if n else None,
            **quantiles.get(route, {"p50": None, "p95": None, "p99": None}),
        }
        for route, n, e, events in rows
    }


def error_types(connection: Any, start: float, end: float, limit: int = 10) -> list[dict[str, Any]]:
    """The most frequent errors (their type, else the status), with when they were first
    and last seen, their most frequent message and the three latest request ids."""
    rows = connection.execute(
        f"""
        WITH failed AS (
          SELECT *, coalesce(error_type, 'HTTP ' || CASE WHEN status = floor(status)
                      THEN CAST(status AS BIGINT)::VARCHAR ELSE status::VARCHAR END,
                      'error') AS kind  -- 5xx
          FROM requests WHERE failed AND {_where(start, end)}
        ),
        -- the most frequent message, ties to the greatest text (as the MongoDB source):
        -- mode() would pick any of them, and the same events could read differently
        messages AS (
          SELECT kind, error_message, count(*) AS n FROM failed
          WHERE error_message IS NOT NULL GROUP BY kind, error_message
        ),
        top AS (
          SELECT kind, first(error_message ORDER BY n DESC, error_message DESC) AS message
          FROM messages GROUP BY kind
        )
        SELECT failed.kind, sum(weight), count(*), min(ts), max(ts), any_value(top.message),
               max_by(request_id, ts, 3) FILTER (WHERE request_id IS NOT NULL)
        FROM failed LEFT JOIN top USING (kind)
        GROUP BY failed.kind ORDER BY 2 DESC, failed.kind LIMIT {int(limit)}
        """
    ).fetchall()
    return [
        {
            "type": kind,
            "count": weighted,
            "events": events,
            "first_seen": first,
            "last_seen": last,
            "message": message,
            "examples": (ids or [])[:3],
        }
        for kind, weighted, events, first, last, message, ids in rows
    ]


def metrics_events(connection: Any, end: float) -> list[tuple[float, str, str]]:
    """Every metrics event up to ``end``: (time, process, its numbers as JSON)."""
    rows: list[tuple[float, str, str]] = connection.execute(
        f"SELECT ts, process, numbers FROM metrics WHERE ts < {end!r} ORDER BY ts"
    ).fetchall()
    return rows


def traffic(connection: Any) -> Callable[[Sequence[str], float, float], float]:
    """What ``incidents.summarize`` asks an incident's share of: the re-weighted requests
    on some routes from one time to another, answered here instead of held in Python."""

    def requests_on(routes: Sequence[str], first: float, last: float) -> float:
        row = connection.execute(
            "SELECT coalesce(sum(weight), 0) FROM requests "
            "WHERE list_contains(?, route) AND ts BETWEEN ? AND ?",
            [list(routes), first - 1e-6, last + 1e-6],  # (times in µs: a float's last bit)
        ).fetchone()
        return float(row[0])

    return requests_on


def _list(paths: Sequence[str]) -> str:
    """A list of paths as an SQL literal (DuckDB takes no parameters in a table function
    of a CREATE statement)."""
    return "[" + ", ".join(f"'{_quoted(path)}'" for path in paths) + "]"


def _quoted(text: str) -> str:
    return text.replace("'", "''")


def finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
