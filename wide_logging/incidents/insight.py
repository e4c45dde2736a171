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
from collections import Counter
from collections.abc import Mapping, Sequence
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


class Baselines:
    """The whole period's baseline, and each route's (up to ``MAX_ROUTES``)."""

    def __init__(self) -> None:
        self.all = Baseline()
        self.by_route: dict[str, Baseline] = {}

    def add(self, event: Mapping[str, Any], weight: float) -> None:
        fields = scalar_fields(event)
        self.all.add(fields, weight)
        route = lookup(event, "http.route")
        if isinstance(route, str):
            baseline = self.by_route.get(route)
            if baseline is None and len(self.by_route) < MAX_ROUTES:
                baseline = self.by_route[route] = Baseline()
            if baseline is not None:
                baseline.add(fields, weight)


def differences(
    members: Sequence[Mapping[str, Any]],
    weights: Sequence[float],
    baselines: Baselines,
    *,
    routes: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> tuple[list[dict[str, Any]], str]:
    """The field values whose share differs most between ``members`` (the incident's
    events) and the other requests — those of its route when it has one with enough other
    requests (what is different about the failing requests to this endpoint), else the
    whole traffic's; both re-weighted. Over- and under-represented, the largest gap first;
    ``exclude``: the fields that define the incident (its rule's ``group_by``). Returns the
    differences and what they were compared with."""
    total = sum(weights)
    if not total:
        return [], ""
    # the incident's requests are in the baseline: taken out of "the other requests"
    requests = [
        (fields, weight)
        for event, weight in zip(members, weights, strict=True)
        for fields in (scalar_fields(event),)
        if event.get("kind") == "http.request"
    ]
    baseline, against = baselines.all, "the other requests"
    if len(routes) == 1 and routes[0] in baselines.by_route:
        own = baselines.by_route[routes[0]]
        if own.count - len(requests) >= MIN_OTHERS:
            baseline, against = own, f"the other requests on {routes[0]}"
    inside: dict[str, dict[str, float]] = {}
    taken_out: dict[str, dict[str, float]] = {}
    for event, weight in zip(members, weights, strict=True):
        for path, text in scalar_fields(event):
            if path in baseline.values:
                counts = inside.setdefault(path, {})
                counts[text] = counts.get(text, 0.0) + weight
    for fields, weight in requests:
        for path, text in fields:
            if path in baseline.values:
                counts = taken_out.setdefault(path, {})
                counts[text] = counts.get(text, 0.0) + weight
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
        for event in members
        for path, _ in scalar_fields(event)
        if path not in baseline.values and path not in baseline.too_many and path not in skip
    }
    if untracked:  # the field cap was full when they came: say so, never silently
        against += f" ({len(untracked)} of its fields not compared: at most {MAX_FIELDS} are)"
    return listed, against


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
