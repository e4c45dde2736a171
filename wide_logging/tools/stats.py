"""``wide-logging stats``: stored events, a running app's metrics, or a stream's state, as
a table."""

from __future__ import annotations

import urllib.request
from collections import Counter
from collections.abc import Sequence
from typing import Any

from .._errors import ConfigurationError
from .._urls import mask_url
from .event_files import event_files, read_events

Row = tuple[str, str, str]


def from_metrics_endpoint(url: str, timeout: float = 5.0) -> list[Row]:
    """Rows (metric, labels, value) of the ``wide_logging_*`` samples served at ``url``."""
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError as exc:
        msg = "stats --url needs prometheus_client: pip install 'wide-logging[prometheus]'"
        raise ConfigurationError(msg) from exc
    if not url.startswith(("http://", "https://")):
        msg = f"--url must be an http(s) URL, got {mask_url(url)!r}"
        raise ConfigurationError(msg)
    with urllib.request.urlopen(url, timeout=timeout) as response:
        text = response.read().decode("utf-8")
    rows: list[Row] = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.startswith("wide_logging_") or sample.name.endswith("_created"):
                continue
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            rows.append((sample.name, labels, _number(sample.value)))
    return rows


def from_stream(redis_url: str, stream: str | None, group: str | None) -> list[Row]:
    """Rows describing the stream: length, groups (pending, lag), consumers, dead letters —
    per shard on a Redis Cluster, after a line of totals."""
    from .._redis import connect, redis, stream_layout

    layout = stream_layout(redis_url, stream)
    client = connect(layout.url, socket_timeout=5.0, connect_timeout=5.0)
    rows: list[Row] = []
    totals = Counter[str]()
    try:
        for key in layout.keys:
            length = client.xlen(key)
            totals["entries"] += length
            rows.append(("stream", key, f"{length} entries"))
            try:
                groups = client.xinfo_groups(key)
            except redis.ResponseError:  # no such key: nothing written to it yet
                groups = []
            for info in groups:
                name = _text(info["name"])
                if group is not None and name != group:
                    continue
                lag = info.get("lag")
                totals["pending"] += info["pending"]
                totals["lag"] += lag or 0
                rows.append(
                    (
                        "group",
                        f"{key}/{name}" if len(layout.keys) > 1 else name,
                        f"pending {info['pending']}, lag "
                        f"{'n/a (Redis < 7)' if lag is None else lag}, "
                        f"last delivered {_text(info['last-delivered-id'])}",
                    )
                )
                for consumer in client.xinfo_consumers(key, name):
                    rows.append(
                        (
                            "consumer",
                            f"{name}/{_text(consumer['name'])}",
                            f"pending {consumer['pending']}, idle {consumer['idle'] / 1000:.1f}s",
                        )
                    )
            dead = layout.dead_letter_key(key)
            dead_letters = client.xlen(dead)
            totals["dead"] += dead_letters
            rows.append(("dead letters", dead, f"{dead_letters} entries"))
    finally:
        client.close()
    if len(layout.keys) == 1:
        return rows
    summary = (
        "stream",
        f"{layout.stream}:{{0..{len(layout.keys) - 1}}}",
        f"{totals['entries']} entries in {len(layout.keys)} shards, pending "
        f"{totals['pending']}, lag {totals['lag']}, dead letters {totals['dead']}",
    )
    return [summary, *rows]


def from_events(spec: str) -> list[Row]:
    """Rows describing the events stored at ``spec``: what they are, what was kept by which
    rule, what they stand for once re-weighted, their size and time span."""
    files = event_files(spec)
    kinds: Counter[str] = Counter()
    rules: Counter[str] = Counter()
    rates: dict[str, float] = {}
    services: Counter[str] = Counter()
    estimated_requests = 0.0
    errors = 0
    first = last = ""
    skipped: Counter[str] = Counter()
    for event in read_events(files, skipped):
        kind = str(event.get("kind", "?"))
        kinds[kind] += 1
        stored = event.get("sampling")
        sampling: dict[str, Any] = stored if isinstance(stored, dict) else {}
        rule, rate = str(sampling.get("rule", "?")), sampling.get("rate")
        rules[rule] += 1
        if isinstance(rate, (int, float)) and rate > 0:
            rates[rule] = rate
            if kind == "http.request":
                estimated_requests += 1 / rate
        if event.get("error"):
            errors += 1
        service = event.get("service")
        if isinstance(service, dict):
            services[str(service.get("name", "?"))] += 1
        stamp = event.get("timestamp")
        if isinstance(stamp, str):
            first = stamp if not first or stamp < first else first
            last = max(last, stamp)
    size = sum(p.stat().st_size for p in files)
    rows: list[Row] = [
        ("files", spec, f"{len(files)} file(s), {_bytes(size)}"),
        ("events", "stored (each event_id once)", str(sum(kinds.values()))),
    ]
    if skipped["duplicates"]:
        rows.append(("lines", "the same event_id again (left out)", str(skipped["duplicates"])))
    if skipped["unreadable"]:
        rows.append(("lines", "not an event (left out)", str(skipped["unreadable"])))
    rows += [("events", f"kind {kind}", str(count)) for kind, count in kinds.most_common()]
    rows += [
        ("kept by rule", rule, f"{count} (rate {rates[rule]:g})" if rule in rates else str(count))
        for rule, count in rules.most_common()
    ]
    rows.append(("requests", "re-weighted (sum of 1/rate)", f"{estimated_requests:.0f}"))
    rows.append(("errors", "events with an error", str(errors)))
    rows += [("service", name, f"{count} events") for name, count in services.most_common()]
    if first:
        rows.append(("time span", f"{first} .. {last}", ""))
    return rows


def _bytes(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return str(size)


def format_table(rows: Sequence[Row], headers: Row) -> str:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"
