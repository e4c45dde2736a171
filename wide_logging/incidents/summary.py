"""Incident summaries of stored events: a rule's group is split into episodes wherever it
falls silent for ``quiet`` seconds, and an episode is an incident when some ``window`` of it
holds ``threshold`` events."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson

from .._errors import ConfigurationError
from .._markdown import cell, code
from .insight import (
    TENANT_FIELDS,
    USER_FIELDS,
    Baselines,
    affected,
    differences,
    members_of,
    templates,
)
from .rules import DEFAULT_RULES, MISSING, Rule, fingerprint, lookup

#: The stored fields a summary reads besides its rule's (``incidents.mongo`` keeps them).
SUMMARY_FIELDS = (
    "timestamp",
    "kind",
    "request_id",
    "duration_ms",
    "http.route",
    "http.response.status_code",
    "service.name",
    "error.type",
    "error.message",
    "sampling.rate",
    *USER_FIELDS,  # who was affected
    *TENANT_FIELDS,
)


# -- summaries -------------------------------------------------------------------------


#: The re-weighted requests on some routes from one time to another (both included).
TrafficOf = Callable[[Sequence[str], float, float], float]


@dataclass
class Incident:
    rule: str
    title: str
    fingerprint: str
    group: dict[str, Any]
    first_seen: str
    last_seen: str
    count: int
    weighted_count: float
    routes: dict[str, int] = field(default_factory=dict)
    status_codes: dict[str, int] = field(default_factory=dict)
    services: dict[str, int] = field(default_factory=dict)
    duration_p50_ms: float | None = None
    duration_p95_ms: float | None = None
    top_messages: list[tuple[str, int]] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)
    share_of_traffic: float | None = None
    #: The same group's errors per request in a span as long just before (None: unknown).
    share_before: float | None = None
    #: Its fingerprint was seen before this episode (earlier in the source).
    recurring: bool = False
    templates: list[dict[str, Any]] = field(default_factory=list)
    #: Field values whose share differs most between the incident and the other requests.
    differences: list[dict[str, Any]] = field(default_factory=list)
    #: What ``differences`` compared with: the other requests (on its route, when enough).
    compared_with: str = ""
    #: Distinct users / tenants affected, where events name them.
    affected: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def event_time(event: Mapping[str, Any]) -> float | None:
    """An event's time as Unix seconds (``seconds_of`` its ``timestamp``)."""
    return seconds_of(event.get("timestamp"))


def seconds_of(stamp: object) -> float | None:
    """A stored time (ISO text or a datetime) as Unix seconds; a time without a zone is
    UTC (as we write them, and as DuckDB and MongoDB read them), whatever the machine's own
    zone."""
    if isinstance(stamp, str):
        try:
            stamp = datetime.fromisoformat(stamp.replace("Z", "+00:00"))  # (3.10: no Z)
        except ValueError:
            return None
    if isinstance(stamp, datetime):
        moment = stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)
        return moment.timestamp()
    return None


#: Below this a stored rate is not believed (1e-300 would make one event 1e300 requests);
#: the report's SQL and MongoDB's expressions read it from here.
MIN_RATE = 1e-9


def event_weight(event: Mapping[str, Any]) -> float:
    """What one stored event stands for: ``1 / sampling.rate`` for a rate that is a number
    within (0, 1] (the report's SQL reads it alike), else itself."""
    rate = lookup(event, "sampling.rate")
    numeric = isinstance(rate, (int, float)) and not isinstance(rate, bool)
    return 1.0 / rate if numeric and MIN_RATE <= rate <= 1 else 1.0


def iso_time(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _episodes(times: list[float], quiet: float) -> list[tuple[int, int]]:
    """Index ranges [start, end) of runs without a gap of ``quiet`` seconds."""
    runs, start = [], 0
    for i in range(1, len(times)):
        if times[i] - times[i - 1] >= quiet:
            runs.append((start, i))
            start = i
    if times:
        runs.append((start, len(times)))
    return runs


def _has_burst(times: list[float], window: float, threshold: int) -> bool:
    """Whether some ``window`` seconds hold ``threshold`` of these (sorted) times."""
    left = 0
    for right in range(len(times)):
        while times[right] - times[left] > window:
            left += 1
        if right - left + 1 >= threshold:
            return True
    return False


def summarize(
    events: Iterable[Mapping[str, Any]],
    rules: Sequence[Rule] = DEFAULT_RULES,
    *,
    since: float | None = None,
    traffic_of: TrafficOf | None = None,
    compare: bool = True,
) -> list[Incident]:
    """Incident summaries for stored events (newest incident first).

    ``traffic_of(routes, first, last)`` (when given) answers the re-weighted number of
    requests on ``routes`` from ``first`` to ``last`` — what an incident is a share of — so
    that the events' times need not be held here (the report asks DuckDB). ``compare``:
    tell what is different about each incident's events (``insight``) — which needs every
    request of the period among ``events``, not only the rule's."""
    # (rule, the group's identity) -> (its values, its events with their times)
    groups: dict[
        tuple[str, bytes], tuple[tuple[Any, ...], list[tuple[float, Mapping[str, Any]]]]
    ] = {}
    traffic: dict[Any, list[tuple[float, float]]] = {}  # route -> (time, weight), all requests
    baselines = Baselines() if compare else None
    seen_before: set[tuple[str, bytes]] = set()  # groups that matched before ``since``
    failures: dict[str, list[tuple[float, float]]] = {}  # route -> failed requests' times
    for event in events:
        moment = event_time(event)
        if moment is None:
            continue
        if since is not None and moment < since:
            if len(seen_before) < 100_000:
                seen_before.update(
                    (rule.name, _group_key(rule.group_of(event)))
                    for rule in rules
                    if rule.matches(event)
                )
            continue
        if event.get("kind") == "http.request":
            weight = event_weight(event)
            if baselines is not None:
                baselines.add(event, weight)
            route = lookup(event, "http.route")
            if route is not MISSING:
                if traffic_of is None:
                    traffic.setdefault(str(route), []).append((moment, weight))
                if failed(event):
                    failures.setdefault(str(route), []).append((moment, weight))
        for rule in rules:
            if rule.matches(event):
                values = rule.group_of(event)
                group = groups.setdefault((rule.name, _group_key(values)), (values, []))
                group[1].append((moment, event))
    by_name = {rule.name: rule for rule in rules}

    def held(routes: Sequence[str], first: float, last: float) -> float:
        return sum(w for route in routes for t, w in traffic.get(route, ()) if first <= t <= last)

    incidents = []
    for (name, key), (group_values, members) in groups.items():
        rule = by_name[name]
        members.sort(key=lambda pair: pair[0])
        times = [moment for moment, _ in members]
        for start, end in _episodes(times, rule.quiet):
            if _has_burst(times[start:end], rule.window, rule.threshold):
                incident = _incident(
                    rule, group_values, members[start:end], traffic_of or held, baselines
                )
                incident.recurring = start > 0 or (name, key) in seen_before
                incident.share_before = _share_before(
                    failures, times[start], times[end - 1], incident, traffic_of or held
                )
                incidents.append(incident)
    incidents.sort(key=lambda incident: incident.last_seen, reverse=True)
    return incidents


def _group_key(values: tuple[Any, ...]) -> bytes:
    """Values' identity as a group: by their JSON, so ``true`` is not ``1`` (as on MongoDB)
    and objects group too; what JSON cannot hold (an integer beyond 64 bits) by its repr."""
    try:
        return orjson.dumps(values, default=str, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return repr(values).encode()


def _counts(events: Sequence[Mapping[str, Any]], path: str, top: int) -> Counter[str]:
    values = (lookup(event, path) for event in events)
    return Counter(dict(Counter(str(v) for v in values if v is not MISSING).most_common(top)))


def _incident(
    rule: Rule,
    group_values: tuple[Any, ...],
    members: list[tuple[float, Mapping[str, Any]]],
    traffic_of: TrafficOf,
    baselines: Baselines | None,
) -> Incident:
    events = [event for _, event in members]
    first, last = members[0][0], members[-1][0]
    durations = sorted(
        float(e["duration_ms"]) for e in events if isinstance(e.get("duration_ms"), (int, float))
    )
    routes = _counts(events, "http.route", 5)
    weighted = sum(event_weight(e) for e in events)
    # every request on the same routes in the same span, each standing for 1/rate requests
    total = traffic_of(list(routes), first, last)
    group = dict(zip(rule.group_by, group_values, strict=True))
    return Incident(
        rule=rule.name,
        title=rule.render_title(group),
        fingerprint=fingerprint(events[0]),
        group=group,
        first_seen=iso_time(first),
        last_seen=iso_time(last),
        count=len(events),
        weighted_count=round(weighted, 2),
        routes=dict(routes),
        status_codes=dict(_counts(events, "http.response.status_code", 5)),
        services=dict(_counts(events, "service.name", 5)),
        duration_p50_ms=round(statistics.median(durations), 3) if durations else None,
        duration_p95_ms=_percentile(durations, 0.95),
        top_messages=_counts(events, "error.message", 3).most_common(),
        examples=list(dict.fromkeys(str(e["request_id"]) for e in events if e.get("request_id")))[
            :5
        ],
        share_of_traffic=round(weighted / total, 4) if total else None,
        templates=templates(_messages(events)),
        **_compared(rule, events, list(routes), baselines),
        affected=affected(events),
    )


def _messages(events: Sequence[Mapping[str, Any]]) -> list[str]:
    found = (lookup(e, "error.message") for e in events)
    return [m for m in found if isinstance(m, str)]


def _compared(
    rule: Rule, events: Sequence[Mapping[str, Any]], routes: list[str], baselines: Baselines | None
) -> dict[str, Any]:
    if baselines is None:
        return {}
    found, against = differences(
        members_of(events, [event_weight(e) for e in events]),
        baselines,
        routes=routes,
        exclude=rule.group_by,
    )
    return {"differences": found, "compared_with": against}


def failed(event: Mapping[str, Any]) -> bool:
    """A request that failed: an error, or a 5xx (as the report counts them)."""
    status = lookup(event, "http.response.status_code")
    number = isinstance(status, (int, float)) and not isinstance(status, bool)
    return bool(event.get("error")) or (number and status >= 500)


def _share_before(
    failures: Mapping[str, Sequence[tuple[float, float]]],
    first: float,
    last: float,
    incident: Incident,
    traffic_of: TrafficOf,
) -> float | None:
    """The failed requests per request on the incident's routes, any failure, in the span
    as long as the incident's (at least a minute) just before it: was it failing already?"""
    span = max(last - first, 60.0)
    routes = list(incident.routes)
    before = sum(
        w for route in routes for t, w in failures.get(route, ()) if first - span <= t < first
    )
    total = traffic_of(routes, first - span, first - 0.001)  # (times are milliseconds)
    return round(before / total, 4) if total else None


def _percentile(ordered: list[float], share: float) -> float | None:
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * share))], 3) if ordered else None


# -- output ----------------------------------------------------------------------------


def format_incidents(incidents: Sequence[Incident], fmt: str = "text") -> str:
    """The summaries as ``text`` (for a terminal), ``json`` or ``markdown`` (a table)."""
    if fmt not in ("text", "json", "markdown"):
        msg = f"format must be text, json or markdown, got {fmt!r}"
        raise ConfigurationError(msg)
    if fmt == "json":
        return json.dumps([i.to_dict() for i in incidents], indent=2, default=str)
    if not incidents:
        return "no incidents" if fmt == "text" else "_No incidents._"
    if fmt == "markdown":
        lines = [
            "| incident | rule | first seen | last seen | count | weighted | p95 ms | examples |",
            "|---|---|---|---|---:|---:|---:|---|",
        ]
        lines.extend(
            f"| {cell(i.title)} | {cell(i.rule)} | {i.first_seen} | {i.last_seen} | {i.count} "
            f"| {i.weighted_count:g} | {'' if i.duration_p95_ms is None else i.duration_p95_ms} "
            f"| {', '.join(cell(e) for e in i.examples[:3])} |"
            for i in incidents
        )
        for i in incidents:
            before = "" if i.share_before is None else f", {i.share_before:.1%} just before"
            lines += ["", f"**{cell(i.title)}** ({'recurring' if i.recurring else 'new'}{before})"]
            if i.differences:
                lines.append(f"- compared with {cell(i.compared_with)}:")
            lines += [f"  - {cell(difference_text(d))}" for d in i.differences[:5]]
            for template in i.templates[:3]:
                lines.append(f"- {template['count']} x {code(template['template'])}")
                lines += [f"  - {code(text)}" for text in variable_texts(template)]
            if i.affected:
                lines.append(f"- affected: {affected_text(i.affected)}")
        return "\n".join(lines)
    return "\n\n".join(_text_block(i) for i in incidents)


def _text_block(i: Incident) -> str:
    share = "" if i.share_of_traffic is None else f", {i.share_of_traffic:.1%} of its traffic"
    if i.share_before is not None:
        share += f"; {i.share_before:.1%} just before"
    lines = [
        f"{i.title}  [{i.rule}, {i.fingerprint}, {'recurring' if i.recurring else 'new'}]",
        f"  {i.first_seen} .. {i.last_seen}: {i.count} events"
        f" (~{i.weighted_count:g} weighted{share})",
        f"  routes {i.routes}  status {i.status_codes}  services {i.services}",
        f"  duration p50 {i.duration_p50_ms} ms, p95 {i.duration_p95_ms} ms",
    ]
    if i.affected:
        lines.append(f"  affected: {affected_text(i.affected)}")
    if i.differences:
        lines.append(f"  what is different (its requests vs {i.compared_with}):")
        lines += [f"    {difference_text(d)}" for d in i.differences[:5]]
    for template in i.templates[:3]:
        lines.append(f"  {template['count']:>5} x {template['template']}")
        lines += [f"          {part}" for part in variable_texts(template)]
    lines.append(f"  examples: {', '.join(i.examples)}")
    return "\n".join(lines)


def affected_text(affected: Mapping[str, int]) -> str:
    """``120 users, 3 tenants``."""
    return ", ".join(f"{n} {who}" for who, n in affected.items())


def difference_text(difference: Mapping[str, Any]) -> str:
    """``service.version = 1.4.2: 100% of the incident vs 48% of the others``."""
    return (
        f"{difference['field']} = {difference['value']}: {difference['incident']:.0%} of the "
        f"incident vs {difference['traffic']:.0%} of the others"
    )


def variable_texts(template: Mapping[str, Any]) -> list[str]:
    """Each variable part of a template: how many values, and the most frequent."""
    return [
        f"<*> #{n}: {part['distinct']} value(s), "
        + ", ".join(f"{value} ({count})" for value, count in part["top"])
        for n, part in enumerate(template["variables"], 1)
    ]
