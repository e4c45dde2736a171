"""What an on-call engineer asks of an incident first, answered from the events themselves.

- **Templates**: its messages grouped by ``normalize_message`` — the normaliser its
  fingerprint is made with, so the grouping and the summary agree — with each variable part
  shown as ``<*>``, how many distinct values it took and the most frequent ones.
- **What is different**: the fields whose values are over-represented in the incident
  against the rest of the traffic of the period (``Baseline``), both sides re-weighted by
  ``1 / sampling.rate``: normal traffic is sampled, so an unweighted baseline would count
  a 2% request as one request instead of fifty.
- **Impact**: distinct users and tenants affected, where the events name them.

Cost is bounded: one pass over the events, at most ``MAX_FIELDS`` fields and
``MAX_VALUES`` values per field tracked (a field with more values than that — ids, paths,
addresses of a large crowd — says nothing about a cause and stops being counted).
"""

from __future__ import annotations

import functools
import math
import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .rules import MISSING, lookup, normalize_message

#: Fields tracked for "what is different", at most (the first seen are kept; a field
#: dropped for having too many values frees its place).
MAX_FIELDS = 128
#: Values tracked per field; a field with more is dropped from the comparison.
MAX_VALUES = 200
#: An event's fields looked at, at most, and how deep: bounded work per event whatever
#: keys an app (or a client, through a header or a query) puts in it.
MAX_LEAVES = 256
MAX_DEPTH = 8
#: Routes with a baseline of their own (then the other routes' requests share the whole).
MAX_ROUTES = 100
#: A route's own baseline is used when it holds at least this many other requests.
MIN_OTHERS = 30
#: Variable parts' values remembered per template part.
MAX_DISTINCT = 1000
#: What a live incident remembers: its first messages (cut as the normaliser cuts them),
#: and the users it affected.
MAX_MESSAGES = 500
MAX_AFFECTED = 10_000
MAX_TEXT = 2000
#: Fields that cannot explain a failure (ids, times, the outcome itself) or that are the
#: failure's description: never compared.
NOT_COMPARED = (
    "event_id", "timestamp", "kind", "request_id", "trace_id", "span_id", "message",
    "duration_ms", "timings", "sampling", "error", "logs", "log", "code", "url",
    "http.response", "user_agent.original", "process.pid", "user.id", "user_id",
    "enduser.id",
)  # fmt: skip
#: Where events name who was affected.
USER_FIELDS = ("user.id", "user_id", "enduser.id")
TENANT_FIELDS = ("tenant.id", "tenant_id", "user.tenant", "organization.id", "org.id")
#: A value is listed when its share of the incident and of the other requests differ by
#: at least this much, and by at least ``MIN_Z`` standard errors (not by chance).
MIN_GAP = 0.1
MIN_Z = 3.0
#: An incident of fewer events is not compared: one event is 100% of anything it has.
MIN_MEMBERS = 5
_PLACEHOLDER = re.compile(r"<(?:n|str|id|hex)>")


def _compared(path: str) -> bool:
    return not any(path == skip or path.startswith(skip + ".") for skip in NOT_COMPARED)


#: ``_compared`` of the paths seen so far (bounded: an app's dynamic keys stop being
#: remembered, not being answered).
_COMPARED: dict[str, bool] = {}
_SCALARS = (str, int, float, bool)


def scalar_fields(event: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The event's scalar leaves that can tell a cause, as (dotted path, value as text):
    the first ``MAX_LEAVES``, ``MAX_DEPTH`` deep at most."""
    found: list[tuple[str, str]] = []
    _collect(event, "", found, 0)
    return found


def _collect(
    node: Mapping[str, Any], prefix: str, found: list[tuple[str, str]], depth: int
) -> None:
    # (runs for every stored event of a summary: one list, no generators, paths' answers
    # remembered, text values taken as they are)
    known = _COMPARED
    for key, value in node.items():
        path = prefix + key if type(key) is str else f"{prefix}{key}"
        compared = known.get(path)
        if compared is None:
            compared = _compared(path)
            if len(known) < 10_000:
                known[path] = compared
        if not compared:
            continue
        kind = type(value)
        if kind is str:
            found.append((path, value))
        elif kind is dict:
            if depth < MAX_DEPTH:
                _collect(value, path + ".", found, depth + 1)
        elif isinstance(value, _SCALARS):
            found.append((path, value_text(value)))
        else:
            continue
        if len(found) >= MAX_LEAVES:
            del found[MAX_LEAVES:]
            return


def value_text(value: str | int | float | bool) -> str:
    """A value as compared: JSON's true/false, 1.0 as 1 (the same number as stored by
    another client), text as it is."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class Baseline:
    """The weighted distribution of field values over the requests of a period."""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0
        self.values: dict[str, dict[str, float]] = {}
        #: Fields dropped for having more than MAX_VALUES values (never taken back).
        self.too_many: set[str] = set()
        #: Fields not tracked because MAX_FIELDS were: said in the summary.
        self.untracked: set[str] = set()
        #: MAX_FIELDS were tracked once: no field starts being tracked any more.
        self.full = False

    def add(self, fields: Sequence[tuple[str, str]], weight: float) -> None:
        self.total += weight
        self.count += 1
        values = self.values
        for path, text in fields:
            counts = values.get(path)
            if counts is None:
                if path in self.too_many:
                    continue
                if self.full or len(values) >= MAX_FIELDS:
                    # (and stays so: a field counted from the middle of the period on
                    # would have its share of the traffic wrong)
                    self.full = True
                    if len(self.untracked) < MAX_FIELDS:
                        self.untracked.add(path)
                    continue
                counts = values[path] = {}
            if text not in counts and len(counts) >= MAX_VALUES:
                del values[path]
                if len(self.too_many) < 10 * MAX_FIELDS:
                    self.too_many.add(path)
                continue
            counts[text] = counts.get(text, 0.0) + weight

    def merge(self, other: Baseline) -> None:
        """Add ``other``'s counts (a live baseline's time slots, merged to compare)."""
        self.total += other.total
        self.count += other.count
        for path, counts in other.values.items():
            mine = self.values.setdefault(path, {})
            for text, weight in counts.items():
                mine[text] = mine.get(text, 0.0) + weight
        self.too_many |= other.too_many
        self.untracked |= other.untracked
        self.full = self.full or other.full
        for path in self.too_many:  # dropped in one slot: its counts are partial, drop it
            self.values.pop(path, None)


class Baselines:
    """The whole period's baseline, and each route's (up to ``routes``)."""

    def __init__(self, routes: int = MAX_ROUTES) -> None:
        self.all = Baseline()
        self.by_route: dict[str, Baseline] = {}
        self.routes = routes

    def add(self, event: Mapping[str, Any], weight: float) -> None:
        fields = scalar_fields(event)
        self.all.add(fields, weight)
        route = lookup(event, "http.route")
        if isinstance(route, str):
            baseline = self.by_route.get(route)
            if baseline is None and len(self.by_route) < self.routes:
                baseline = self.by_route[route] = Baseline()
            if baseline is not None:
                baseline.add(fields, weight)


class RollingBaseline:
    """The traffic of the last ``slots`` slots of ``slot_seconds`` as it passes (a live
    incident's baseline): one ``Baselines`` per time slot, the oldest dropped as time moves
    on; the whole traffic only (no route of its own), and per route the requests and the
    failed ones (what was failing just before): its memory is bounded by its slots."""

    def __init__(self, slot_seconds: float = 600.0, slots: int = 6) -> None:
        self.slot_seconds = slot_seconds
        self.slots = slots
        self._slots: dict[int, Baselines] = {}
        #: slot -> route -> [requests, failed requests], weighted (MAX_ROUTES routes)
        self._routes: dict[int, dict[str, list[float]]] = {}
        self._lock = threading.Lock()

    def add(self, event: Mapping[str, Any], weight: float, moment: float, failed: bool) -> None:
        index = int(moment // self.slot_seconds)
        route = lookup(event, "http.route")
        with self._lock:
            slot = self._slots.get(index)
            if slot is None:
                slot = self._slots[index] = Baselines(routes=0)
                self._routes[index] = {}
                for old in [i for i in self._slots if i <= index - self.slots]:
                    del self._slots[old], self._routes[old]
                while len(self._slots) > self.slots:  # (a clock that went back, too)
                    oldest = min(self._slots)
                    del self._slots[oldest], self._routes[oldest]
                if index not in self._slots:
                    return  # older than every slot kept
            slot.add(event, weight)
            if isinstance(route, str):
                counts = self._routes[index].get(route)
                if counts is None and len(self._routes[index]) < MAX_ROUTES:
                    counts = self._routes[index][route] = [0.0, 0.0]
                if counts is not None:
                    counts[0] += weight
                    counts[1] += weight if failed else 0.0

    def merged(self) -> Baselines:
        out = Baselines(routes=0)
        with self._lock:
            for slot in self._slots.values():
                out.all.merge(slot.all)
        return out

    def failing_before(self, routes: Sequence[str], moment: float) -> float | None:
        """Failed requests per request on ``routes`` in the slot before the one of
        ``moment`` (None: no traffic there)."""
        with self._lock:
            counts = self._routes.get(int(moment // self.slot_seconds) - 1, {})
            total = sum(counts[r][0] for r in routes if r in counts)
            failed = sum(counts[r][1] for r in routes if r in counts)
        return round(failed / total, 4) if total else None


#: One event of an incident as compared: its fields, its weight, whether it is a request
#: (and so counted in the baseline too).
Member = tuple[list[tuple[str, str]], float, bool]


def members_of(events: Sequence[Mapping[str, Any]], weights: Sequence[float]) -> list[Member]:
    return [
        (scalar_fields(event), weight, event.get("kind") == "http.request")
        for event, weight in zip(events, weights, strict=True)
    ]


def differences(
    members: Sequence[Member],
    baselines: Baselines,
    *,
    routes: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> tuple[list[dict[str, Any]], str]:
    """The field values whose share differs most between ``members`` (the incident's
    events, ``members_of``) and the other requests — those of its route when it has one
    with enough other requests (what is different about the failing requests to this
    endpoint), else the whole traffic's; both re-weighted. Over- and under-represented,
    the largest gap first; ``exclude``: the fields that define the incident (its rule's
    ``group_by``). Returns the differences and what they were compared with."""
    total = sum(weight for _, weight, _ in members)
    if not total:
        return [], ""
    if len(members) < MIN_MEMBERS:
        return [], f"nothing yet ({len(members)} of its events: at least {MIN_MEMBERS} needed)"
    requests = [(fields, weight) for fields, weight, request in members if request]
    baseline, against = baselines.all, "the other requests"
    if len(routes) == 1 and routes[0] in baselines.by_route:
        own = baselines.by_route[routes[0]]
        if own.count - len(requests) >= MIN_OTHERS:
            baseline, against = own, f"the other requests on {routes[0]}"
    # the incident's requests are in the baseline: taken out of "the other requests"
    inside = _tally(((fields, weight) for fields, weight, _ in members), baseline)
    taken_out = _tally(requests, baseline)
    rest_total = baseline.total - sum(weight for _, weight in requests)
    rest_count = baseline.count - len(requests)
    if rest_total <= 0 or rest_count <= 0:
        return [], against
    skip = set(exclude)
    found: list[tuple[float, str, str, float, float]] = []
    for path, counts in baseline.values.items():
        if path in skip:
            continue
        here = inside.get(path, {})
        out = taken_out.get(path, {})
        best: tuple[float, str, str, float, float] | None = None
        for text in sorted(set(here) | set(counts)):
            share = here.get(text, 0.0) / total
            rest = max(0.0, counts.get(text, 0.0) - out.get(text, 0.0)) / rest_total
            gap = share - rest
            if abs(gap) < MIN_GAP or _z(share, len(members), rest, rest_count) < MIN_Z:
                continue
            # one line per field: its most over-represented value (the cause is more often
            # a value present than one missing), else its most under-represented
            rank = (gap <= 0, -abs(gap))
            if best is None or rank < (best[0] <= 0, -abs(best[0])):
                best = (gap, path, text, share, rest)
        if best is not None:
            found.append((-abs(best[0]), *best[1:]))
    found.sort()
    listed = [
        {"field": path, "value": text, "incident": round(share, 4), "traffic": round(rest, 4)}
        for _, path, text, share, rest in found[:8]
    ]
    untracked = {
        path
        for fields, _, _ in members
        for path, _ in fields
        if path not in baseline.values and path not in baseline.too_many and path not in skip
    }
    if untracked:  # the field cap was full when they came: say so, never silently
        against += f" ({len(untracked)} of its fields not compared: at most {MAX_FIELDS} are)"
    return listed, against


def _tally(
    members: Iterable[tuple[list[tuple[str, str]], float]], baseline: Baseline
) -> dict[str, dict[str, float]]:
    """The weights of the tracked fields' values among ``members``."""
    out: dict[str, dict[str, float]] = {}
    for fields, weight in members:
        for path, text in fields:
            if path in baseline.values:
                counts = out.setdefault(path, {})
                counts[text] = counts.get(text, 0.0) + weight
    return out


def _z(p1: float, n1: int, p2: float, n2: int) -> float:
    """How many standard errors apart two shares are (two-proportion test, pooled)."""
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    error = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return abs(p1 - p2) / error if error else math.inf


def templates(messages: Sequence[str], top: int = 3) -> list[dict[str, Any]]:
    """The messages grouped by their template, the most frequent first: each with its
    count and, per variable part (``<*>``), how many distinct values and the top ones."""
    grouped: dict[str, list[str]] = {}
    for message in messages:
        grouped.setdefault(normalize_message(message), []).append(message)
    out = []
    shown = sorted(grouped.items(), key=lambda item: (-len(item[1]), item[0]))[:5]
    for normal, texts in shown:
        parts: list[Counter[str]] = [Counter() for _ in _PLACEHOLDER.findall(normal)]
        pattern = _template_pattern(normal)
        for text in texts:
            found = pattern.fullmatch(_spaced(text))
            if found is None:
                continue
            for counter, value in zip(parts, found.groups(), strict=True):
                if value in counter or len(counter) < MAX_DISTINCT:
                    counter[value] += 1
        out.append(
            {
                "template": _PLACEHOLDER.sub("<*>", normal),
                "count": len(texts),
                "variables": [{"distinct": len(c), "top": c.most_common(top)} for c in parts],
            }
        )
    return out


def affected_names(event: Mapping[str, Any]) -> dict[str, set[str]]:
    """The users and tenants one event names (``USER_FIELDS``, ``TENANT_FIELDS``)."""
    out: dict[str, set[str]] = {}
    for who, paths in (("users", USER_FIELDS), ("tenants", TENANT_FIELDS)):
        names = {
            str(value)
            for path in paths
            if (value := lookup(event, path)) is not MISSING and value is not None
        }
        if names:
            out[who] = names
    return out


def affected(members: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Distinct users and tenants among the incident's events, where they are named."""
    seen: dict[str, set[str]] = {}
    for event in members:
        for who, names in affected_names(event).items():
            seen.setdefault(who, set()).update(names)
    return {who: len(names) for who, names in seen.items()}


@functools.lru_cache(maxsize=256)
def _template_pattern(normal: str) -> re.Pattern[str]:
    """A regular expression matching the messages of a template, a group per variable."""
    pieces = _PLACEHOLDER.split(normal)
    return re.compile("(.+?)".join(re.escape(piece) for piece in pieces), re.DOTALL)


def _spaced(message: str) -> str:
    """The message as the normaliser sees it: cut, its whitespace runs one space."""
    return re.sub(r"\s+", " ", message[:2000]).strip()
