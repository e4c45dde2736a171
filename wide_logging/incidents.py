"""Rule-based incident aggregation: group matching events, open an incident on a burst.

Theory of operation
-------------------
A :class:`Rule` says which events count (``match``: conditions on dotted paths, all must
hold), how they group (``group_by``: dotted paths, plus ``fingerprint`` for the normalised
error message), and when a group is an incident: ``threshold`` matching events within
``window`` seconds open it; ``quiet`` seconds without one resolve it.

After the fact, :func:`summarize` takes stored events and returns :class:`Incident`
summaries: a group's events are split into episodes wherever they fall silent for
``quiet`` seconds, and an episode becomes an incident when some ``window`` of it holds
``threshold`` events. Live, :class:`IncidentAggregator` applies the same rules to events as
they pass (in a stream consumer, or in the app's writer thread) and emits ``kind: incident``
events when an incident opens, escalates (its count doubles) and resolves. With a Redis URL
its window counters are shared by every instance, so a burst spread over four processes
still opens exactly one incident.
"""

from __future__ import annotations

import hashlib
import json
import re
import statistics
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ._errors import ConfigurationError
from .event import get_path
from .typing import EventDict

_MISSING = object()
_OPERATORS = ("exists", "missing", "==", "!=", ">=", "<=", ">", "<", "in", "matches")
_CONDITION = re.compile(
    r"^\s*(?P<path>[A-Za-z_][\w.]*)\s+(?P<op>exists|missing|==|!=|>=|<=|>|<|in|matches)"
    r"(?:\s+(?P<value>.+?))?\s*$"
)


# -- fingerprints ----------------------------------------------------------------------

_NORMALIZERS = (
    (re.compile(r"'[^']*'|\"[^\"]*\""), "<str>"),
    (re.compile(r"\b[0-9a-f]{8}(?:-?[0-9a-f]{4}){3}-?[0-9a-f]{12}\b", re.I), "<id>"),
    (re.compile(r"\b0x[0-9a-f]+\b|\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{6,}\b", re.I),
     "<hex>"),
    (re.compile(r"\d+(?:\.\d+)?"), "<n>"),
    (re.compile(r"\s+"), " "),
)  # fmt: skip


def normalize_message(message: str) -> str:
    """Strip what varies between occurrences of one failure: quoted values, ids, hex, numbers.

    ``"timeout after 31s for user 42"`` and ``"timeout after 17s for user 9"`` both become
    ``"timeout after <n>s for user <n>"``.
    """
    text = message[:2000]
    for pattern, replacement in _NORMALIZERS:
        text = pattern.sub(replacement, text)
    return text.strip()


def fingerprint(event: Mapping[str, Any]) -> str:
    """A short stable id of an event's failure: error type + normalised message."""
    error_type = get_path(event, "error.type", "")
    message = get_path(event, "error.message", "")
    material = f"{error_type}|{normalize_message(str(message))}"
    return hashlib.blake2b(material.encode(), digest_size=6).hexdigest()


def lookup(event: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path; ``fingerprint`` is computed; absent: a sentinel."""
    if path == "fingerprint":
        return fingerprint(event)
    return get_path(event, path, _MISSING)


# -- rules -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    path: str
    op: str
    value: Any = None

    @classmethod
    def parse(cls, text: str) -> Condition:
        """``"http.response.status_code >= 500"``, ``"error exists"``, ``"x in [1, 2]"``."""
        found = _CONDITION.match(text)
        if found is None:
            msg = (
                f"condition {text!r} is not '<dotted.path> <op> [value]' "
                f"with op one of {', '.join(_OPERATORS)}"
            )
            raise ConfigurationError(msg)
        op, raw = found.group("op"), found.group("value")
        unary = op in ("exists", "missing")
        if unary != (raw is None):
            msg = f"condition {text!r}: '{op}' takes {'no' if unary else 'a'} value"
            raise ConfigurationError(msg)
        value: Any = None
        if raw is not None:
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw.strip("'\"")
            if op == "matches":
                try:
                    value = re.compile(str(value))
                except re.error as exc:
                    msg = f"condition {text!r}: bad regular expression: {exc}"
                    raise ConfigurationError(msg) from None
        return cls(found.group("path"), op, value)

    def holds(self, event: Mapping[str, Any]) -> bool:
        actual = lookup(event, self.path)
        if self.op == "exists":
            return actual is not _MISSING and actual is not None
        if self.op == "missing":
            return actual is _MISSING or actual is None
        if actual is _MISSING:
            return False
        try:
            if self.op == "==":
                return bool(actual == self.value)
            if self.op == "!=":
                return bool(actual != self.value)
            if self.op == ">":
                return bool(actual > self.value)
            if self.op == ">=":
                return bool(actual >= self.value)
            if self.op == "<":
                return bool(actual < self.value)
            if self.op == "<=":
                return bool(actual <= self.value)
            if self.op == "in":
                return actual in self.value
            return self.value.search(str(actual)) is not None  # matches
        except TypeError:  # comparing a string with a number, say: not a match
            return False


@dataclass(frozen=True)
class Rule:
    """Which events count, how they group, and when a group is an incident."""

    name: str
    match: tuple[Condition, ...]
    group_by: tuple[str, ...]
    window: float = 300.0
    threshold: int = 5
    quiet: float = 600.0
    title: str = ""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z_][\w-]*", self.name):
            msg = f"rule name must be a word, got {self.name!r}"
            raise ConfigurationError(msg)
        if not self.match:
            msg = f"rule {self.name!r} needs at least one match condition"
            raise ConfigurationError(msg)
        if self.threshold < 1 or self.window <= 0 or self.quiet <= 0:
            msg = f"rule {self.name!r}: threshold >= 1, window > 0 and quiet > 0 are required"
            raise ConfigurationError(msg)

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Rule:
        unknown = set(spec) - {"name", "match", "group_by", "window", "threshold", "quiet", "title"}
        if unknown:
            msg = f"unknown rule field(s) {sorted(unknown)} in {spec.get('name', spec)!r}"
            raise ConfigurationError(msg)
        try:
            match = spec["match"]
            conditions = tuple(
                Condition.parse(c) for c in ([match] if isinstance(match, str) else match)
            )
            return cls(
                name=str(spec["name"]),
                match=conditions,
                group_by=tuple(spec.get("group_by", ())),
                window=float(spec.get("window", 300)),
                threshold=int(spec.get("threshold", 5)),
                quiet=float(spec.get("quiet", 600)),
                title=str(spec.get("title", "")),
            )
        except KeyError as exc:
            msg = f"rule {spec!r} lacks the field {exc.args[0]!r}"
            raise ConfigurationError(msg) from None

    def matches(self, event: Mapping[str, Any]) -> bool:
        return all(condition.holds(event) for condition in self.match)

    def group_of(self, event: Mapping[str, Any]) -> tuple[Any, ...]:
        values = (lookup(event, path) for path in self.group_by)
        return tuple(None if v is _MISSING else v for v in values)

    def render_title(self, group: Mapping[str, Any]) -> str:
        if not self.title:
            shown = ", ".join(f"{k}={v}" for k, v in group.items() if v is not None)
            return f"{self.name}: {shown}" if shown else self.name
        return re.sub(r"\{([\w.]+)\}", lambda m: str(group.get(m.group(1), "?")), self.title)


#: The rules that ship: error bursts per route and error type, 5xx bursts, slow routes.
DEFAULT_RULES: tuple[Rule, ...] = (
    Rule.from_dict({
        "name": "error_burst",
        "match": ["kind == \"http.request\"", "error exists"],
        "group_by": ["service.name", "http.route", "error.type", "fingerprint"],
        "window": 300, "threshold": 5, "quiet": 600,
        "title": "{error.type} on {http.route}",
    }),
    Rule.from_dict({
        "name": "server_errors",
        "match": ["kind == \"http.request\"", "error missing", "http.response.status_code >= 500"],
        "group_by": ["service.name", "http.route", "http.response.status_code"],
        "window": 300, "threshold": 10, "quiet": 600,
        "title": "HTTP {http.response.status_code} on {http.route}",
    }),
    Rule.from_dict({
        "name": "latency_degradation",
        "match": ["kind == \"http.request\"", "duration_ms > 1000"],
        "group_by": ["service.name", "http.route"],
        "window": 300, "threshold": 10, "quiet": 600,
        "title": "slow requests on {http.route}",
    }),
)  # fmt: skip


def load_rules(path: str | Path) -> tuple[Rule, ...]:
    """Rules from a ``.json``, ``.toml`` or ``.yaml`` file: a list under ``rules``."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        data = json.loads(text)
    elif path.suffix == ".toml":
        try:
            import tomllib  # type: ignore[import-not-found,unused-ignore]
        except ModuleNotFoundError as exc:  # Python 3.10
            msg = "TOML rule files need Python >= 3.11 (or use .json / .yaml)"
            raise ConfigurationError(msg) from exc
        data = tomllib.loads(text)
    elif path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as exc:
            msg = "YAML rule files need PyYAML: pip install pyyaml (or use .json / .toml)"
            raise ConfigurationError(msg) from exc
        data = yaml.safe_load(text)
    else:
        msg = f"rules file must be .json, .toml or .yaml, got {path.name!r}"
        raise ConfigurationError(msg)
    specs = data.get("rules") if isinstance(data, Mapping) else data
    if not isinstance(specs, list) or not specs:
        msg = f"{path}: expected a non-empty list of rules (top level, or under 'rules')"
        raise ConfigurationError(msg)
    return tuple(Rule.from_dict(spec) for spec in specs)


# -- summaries -------------------------------------------------------------------------


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

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _time(event: Mapping[str, Any]) -> float | None:
    stamp = event.get("timestamp")
    if isinstance(stamp, datetime):
        moment = stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)
        return moment.timestamp()
    if isinstance(stamp, str):
        try:
            return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def _weight(event: Mapping[str, Any]) -> float:
    rate = lookup(event, "sampling.rate")
    return 1.0 / rate if isinstance(rate, (int, float)) and rate > 0 else 1.0


def _iso(seconds: float) -> str:
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
) -> list[Incident]:
    """Incident summaries for stored events (newest incident first)."""
    groups: dict[tuple[str, tuple[Any, ...]], list[tuple[float, Mapping[str, Any]]]] = {}
    traffic: dict[Any, list[tuple[float, float]]] = {}  # route -> (time, weight), all requests
    for event in events:
        moment = _time(event)
        if moment is None or (since is not None and moment < since):
            continue
        route = lookup(event, "http.route")
        if event.get("kind") == "http.request" and route is not _MISSING:
            traffic.setdefault(str(route), []).append((moment, _weight(event)))
        for rule in rules:
            if rule.matches(event):
                groups.setdefault((rule.name, rule.group_of(event)), []).append((moment, event))
    by_name = {rule.name: rule for rule in rules}
    incidents = []
    for (name, group_values), members in groups.items():
        rule = by_name[name]
        members.sort(key=lambda pair: pair[0])
        times = [moment for moment, _ in members]
        for start, end in _episodes(times, rule.quiet):
            if _has_burst(times[start:end], rule.window, rule.threshold):
                incidents.append(_incident(rule, group_values, members[start:end], traffic))
    incidents.sort(key=lambda incident: incident.last_seen, reverse=True)
    return incidents


def _counts(events: Sequence[Mapping[str, Any]], path: str, top: int) -> Counter[str]:
    values = (lookup(event, path) for event in events)
    return Counter(dict(Counter(str(v) for v in values if v is not _MISSING).most_common(top)))


def _incident(
    rule: Rule,
    group_values: tuple[Any, ...],
    members: list[tuple[float, Mapping[str, Any]]],
    traffic: Mapping[str, list[tuple[float, float]]],
) -> Incident:
    events = [event for _, event in members]
    first, last = members[0][0], members[-1][0]
    durations = sorted(
        float(e["duration_ms"]) for e in events if isinstance(e.get("duration_ms"), (int, float))
    )
    routes = _counts(events, "http.route", 5)
    weighted = sum(_weight(e) for e in events)
    # every request on the same routes in the same span, each standing for 1/rate requests
    total = sum(w for route in routes for t, w in traffic.get(route, ()) if first <= t <= last)
    group = dict(zip(rule.group_by, group_values, strict=True))
    return Incident(
        rule=rule.name,
        title=rule.render_title(group),
        fingerprint=fingerprint(events[0]),
        group=group,
        first_seen=_iso(first),
        last_seen=_iso(last),
        count=len(events),
        weighted_count=round(weighted, 2),
        routes=dict(routes),
        status_codes=dict(_counts(events, "http.response.status_code", 5)),
        services=dict(_counts(events, "service.name", 5)),
        duration_p50_ms=round(statistics.median(durations), 3) if durations else None,
        duration_p95_ms=_percentile(durations, 0.95),
        top_messages=_counts(events, "error.message", 3).most_common(),
        examples=[str(e["request_id"]) for e in events if e.get("request_id")][:5],
        share_of_traffic=round(weighted / total, 4) if total else None,
    )


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
            f"| {i.title} | {i.rule} | {i.first_seen} | {i.last_seen} | {i.count} "
            f"| {i.weighted_count:g} | {'' if i.duration_p95_ms is None else i.duration_p95_ms} "
            f"| {', '.join(i.examples[:3])} |"
            for i in incidents
        )
        return "\n".join(lines)
    return "\n\n".join(_text_block(i) for i in incidents)


def _text_block(i: Incident) -> str:
    share = "" if i.share_of_traffic is None else f", {i.share_of_traffic:.1%} of its traffic"
    lines = [
        f"{i.title}  [{i.rule}, {i.fingerprint}]",
        f"  {i.first_seen} .. {i.last_seen}: {i.count} events"
        f" (~{i.weighted_count:g} weighted{share})",
        f"  routes {i.routes}  status {i.status_codes}  services {i.services}",
        f"  duration p50 {i.duration_p50_ms} ms, p95 {i.duration_p95_ms} ms",
        *(f"  {n:>5} x {m}" for m, n in i.top_messages),
        f"  examples: {', '.join(i.examples)}",
    ]
    return "\n".join(lines)


# -- live ------------------------------------------------------------------------------


class _MemoryWindows:
    """Per-process window counters and open-incident markers."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._times: dict[str, deque[float]] = {}
        self._open_until: dict[str, float] = {}
        self._clock = clock
        self._lock = threading.Lock()

    def add(self, key: str, now: float, window: float) -> int:
        with self._lock:
            times = self._times.setdefault(key, deque())
            times.append(now)
            while times and now - times[0] > window:
                times.popleft()
            return len(times)

    def claim(self, key: str, ttl: float) -> bool:
        self._open_until[key] = self._clock() + ttl  # alone in the process: ours
        return True

    def keep_open(self, key: str, ttl: float) -> None:
        self._open_until[key] = self._clock() + ttl

    def is_open(self, key: str) -> bool:
        return self._clock() < self._open_until.get(key, 0.0)


class _RedisWindows:
    """Window counters shared by every instance: 10 buckets per window, INCR + EXPIRE."""

    def __init__(self, url: str) -> None:
        from .sinks.redis_stream import connect

        self._client = connect(url, socket_timeout=1.0, connect_timeout=1.0)

    def add(self, key: str, now: float, window: float) -> int:
        width = window / 10
        bucket = int(now // width)
        pipe = self._client.pipeline(transaction=False)
        pipe.incr(f"{key}:{bucket}")
        pipe.expire(f"{key}:{bucket}", int(window * 2) + 1)
        for old in range(bucket - 9, bucket):
            pipe.get(f"{key}:{old}")
        results = pipe.execute()
        return int(results[0]) + sum(int(v) for v in results[2:] if v is not None)

    def claim(self, key: str, ttl: float) -> bool:
        return bool(self._client.set(f"{key}:open", "1", nx=True, px=int(ttl * 1000)))

    def keep_open(self, key: str, ttl: float) -> None:
        self._client.pexpire(f"{key}:open", int(ttl * 1000))

    def is_open(self, key: str) -> bool:
        return bool(self._client.exists(f"{key}:open"))


@dataclass
class _Open:
    rule: Rule
    group: dict[str, Any]
    first_seen: float
    last_seen: float
    count: int
    announced: int
    examples: list[str]


class IncidentAggregator:
    """Applies rules to events as they pass and emits ``kind: incident`` events.

    ``emit`` receives each incident event (a dict): when an incident opens, when its count
    reaches twice the last announced count (escalates), and when ``quiet`` seconds pass
    without a matching event (resolves; checked by :meth:`tick`). ``redis_url`` shares the
    window counters between processes; only the process that opened an incident announces
    its escalations and resolution.
    """

    def __init__(
        self,
        emit: Callable[[EventDict], None],
        rules: Sequence[Rule] = DEFAULT_RULES,
        *,
        redis_url: str | None = None,
        namespace: str = "wide_logging:incidents",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.emit = emit
        self.rules = tuple(rules)
        self.namespace = namespace
        self.clock = clock
        self._windows: _MemoryWindows | _RedisWindows = (
            _RedisWindows(redis_url) if redis_url else _MemoryWindows(clock)
        )
        self._open: dict[str, _Open] = {}
        self._lock = threading.Lock()

    def observe(self, event: Mapping[str, Any]) -> None:
        now = _time(event) or self.clock()
        for rule in self.rules:
            if not rule.matches(event):
                continue
            group_values = rule.group_of(event)
            digest = hashlib.blake2b(repr(group_values).encode(), digest_size=8).hexdigest()
            key = f"{self.namespace}:{rule.name}:{digest}"
            count = self._windows.add(key, now, rule.window)
            with self._lock:
                current = self._open.get(key)
                if current is not None:
                    current.count += 1
                    current.last_seen = now
                    if len(current.examples) < 5 and event.get("request_id"):
                        current.examples.append(str(event["request_id"]))
                    self._windows.keep_open(key, rule.quiet)
                    if count >= 2 * current.announced:  # the shared window count doubled
                        current.announced = count
                        self._announce("escalated", current)
                    continue
                if count < rule.threshold:
                    continue
                if not self._windows.claim(key, rule.quiet):
                    self._windows.keep_open(key, rule.quiet)  # another process opened it
                    continue
                group = dict(zip(rule.group_by, group_values, strict=True))
                opened = _Open(
                    rule,
                    group,
                    now,
                    now,
                    count,
                    count,
                    [str(event["request_id"])] if event.get("request_id") else [],
                )
                self._open[key] = opened
                self._announce("opened", opened)

    def tick(self) -> None:
        """Resolve incidents that have been quiet long enough (call every few seconds)."""
        with self._lock:
            for key, incident in list(self._open.items()):
                # the marker every matching event (in any process) keeps alive for `quiet`
                if not self._windows.is_open(key):
                    del self._open[key]
                    self._announce("resolved", incident)

    def _announce(self, status: str, incident: _Open) -> None:
        self.emit({
            "kind": "incident",
            "incident": {
                "status": status,
                "rule": incident.rule.name,
                "title": incident.rule.render_title(incident.group),
                "group": incident.group,
                "first_seen": _iso(incident.first_seen),
                "last_seen": _iso(incident.last_seen),
                "count": incident.count,
                "examples": list(incident.examples),
            },
        })  # fmt: skip
