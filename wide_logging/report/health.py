"""The pipeline's health in a period, from the ``kind: metrics`` events its processes wrote
(``metrics_events=True``): what each rule retained, what was spooled, replayed, dropped or
lost, how deep the queue got, and the caches' hit rates.

A metrics event holds a process's counters since it started, so what happened in the
period is, per process, what they grew by from each of its metrics events to the next
(from its last one before the period; from zero when it started within, or again). Gauges
(the queue) are the highest seen.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from ..metrics import FAMILIES

Counters = dict[str, float]
#: Numbers of a metrics event that are levels or ratios, not counts: never summed — the
#: gauges of ``metrics.FAMILIES``, and the ratios ``metrics.snapshot()`` works out.
LEVELS = (
    *sorted(
        {
            ".".join(itertools.takewhile(lambda part: part != "{}", family.path))
            for family in FAMILIES
            if family.kind == "gauge"
        }
    ),
    "events.normal_retention",
    "events.correction.",
)


def pipeline_health(rows: Iterable[tuple[float, str, str]], start: float) -> dict[str, Any]:
    """``rows``: (time, process, numbers as JSON) in time order, up to the period's end.

    Per process, what its counters grew by from one metrics event to the next; a counter
    lower than before means the process started again (a container's pid 1 restarted):
    it counts from zero."""
    previous: dict[str, Counters] = {}
    totals: Counters = defaultdict(float)
    processes: set[str] = set()
    queue_depth = 0.0
    events = 0
    for moment, process, text in rows:
        try:
            flat = _flatten(orjson.loads(text))
        except orjson.JSONDecodeError:
            continue
        earlier = previous.get(process, {})
        previous[process] = flat
        if moment < start:
            continue
        events += 1
        processes.add(process)
        queue_depth = max(queue_depth, flat.get("queue.depth", 0.0))
        for name, value in flat.items():
            if name.startswith(LEVELS):
                continue
            before = earlier.get(name, 0.0)
            totals[name] += value - before if value >= before else value
    return _summary(totals, events, len(processes), queue_depth)


def _summary(totals: Counters, events: int, processes: int, queue_depth: float) -> dict[str, Any]:
    kept = _under(totals, "events.kept.")
    sampled_out = _under(totals, "events.sampled_out.")
    retention = {
        rule: kept.get(rule, 0.0) / (kept.get(rule, 0.0) + sampled_out.get(rule, 0.0))
        for rule in sorted(set(kept) | set(sampled_out))
        if kept.get(rule, 0.0) + sampled_out.get(rule, 0.0) > 0
    }
    caches = {}
    for name in sorted({key.split(".")[1] for key in totals if key.startswith("caches.")}):
        hits = totals.get(f"caches.{name}.hits", 0.0)
        misses = totals.get(f"caches.{name}.misses", 0.0)
        caches[name] = {
            "hits": hits,
            "misses": misses,
            "errors": totals.get(f"caches.{name}.errors", 0.0),
            "hit_rate": hits / (hits + misses) if hits + misses else None,
        }
    dropped = _under(totals, "dropped.")
    lost = _under(totals, "events.lost.")
    warnings = []
    if sum(dropped.values()):
        reasons = ", ".join(f"{n:,.0f} {reason}" for reason, n in sorted(dropped.items()) if n)
        warnings.append(f"events were dropped: {reasons}")
    if sum(lost.values()):
        warnings.append(
            f"{sum(lost.values()):,.0f} kept events will not reach the store: re-weighted "
            "counts of their rules are low by that many (docs/sampling.md)"
        )
    return {
        "metrics_events": events,
        "processes": processes,
        "seen": totals.get("events.seen", 0.0),
        "kept": kept,
        "sampled_out": sampled_out,
        "retention": retention,
        "spooled": _under(totals, "spooled."),
        "replayed": totals.get("replayed", 0.0),
        "dropped": dropped,
        "lost": lost,
        "queue_depth_max": queue_depth,
        "caches": caches,
        "warnings": warnings,
    }


def _flatten(node: Any, prefix: str = "") -> Counters:
    flat: Counters = {}
    if isinstance(node, Mapping):
        for key, value in node.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        flat[prefix[:-1]] = float(node)
    return flat


def _under(totals: Counters, prefix: str) -> Counters:
    return {name[len(prefix) :]: value for name, value in totals.items() if name.startswith(prefix)}
