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
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from .rules import MISSING, lookup, normalize_message

#: Fields tracked for "what is different", at most (the first seen are kept).
MAX_FIELDS = 64
#: Values tracked per field; a field with more is dropped from the comparison.
MAX_VALUES = 50
#: Variable parts' values remembered per template part.
MAX_DISTINCT = 1000
#: What a live incident remembers: its first messages, and the users it affected.
MAX_MESSAGES = 500
MAX_AFFECTED = 10_000
#: Fields that cannot explain a failure (ids, times, the outcome itself) or that are the
#: failure's description: never compared.
NOT_COMPARED = (
    "event_id", "timestamp", "kind", "request_id", "trace_id", "span_id", "message",
    "duration_ms", "timings", "sampling", "error", "logs", "log", "code", "url",
    "http.response", "user_agent.original", "process.pid",
)  # fmt: skip
#: Where events name who was affected.
USER_FIELDS = ("user.id", "user_id", "enduser.id")
TENANT_FIELDS = ("tenant.id", "tenant_id", "user.tenant", "organization.id", "org.id")
#: An over-representation is listed when the value's share of the incident exceeds its
#: share of the rest of the traffic by at least this much.
MIN_LIFT = 0.2
_PLACEHOLDER = re.compile(r"<(?:n|str|id|hex)>")


@functools.lru_cache(maxsize=4096)
def _compared(path: str) -> bool:
    return not any(path == skip or path.startswith(skip + ".") for skip in NOT_COMPARED)


_SCALARS = (str, int, float, bool)


def scalar_fields(event: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The event's scalar leaves that can tell a cause, as (dotted path, value)."""
    found: list[tuple[str, Any]] = []
    _collect(event, "", found)
    return found


def _collect(node: Mapping[str, Any], prefix: str, found: list[tuple[str, Any]]) -> None:
    # (runs for every stored event of a summary: one list, no generators, cached paths)
    for key, value in node.items():
        path = prefix + key if type(key) is str else f"{prefix}{key}"
        if not _compared(path):
            continue
        if type(value) is dict:
            _collect(value, path + ".", found)
        elif isinstance(value, _SCALARS):
            found.append((path, value))


class Baseline:
    """The weighted distribution of field values over all the requests of a period."""

    def __init__(self) -> None:
        self.total = 0.0
        self.values: dict[str, dict[str, float]] = {}
        self.too_many: set[str] = set()

    def add(self, event: Mapping[str, Any], weight: float) -> None:
        self.total += weight
        values, too_many = self.values, self.too_many
        for path, value in scalar_fields(event):
            counts = values.get(path)
            if counts is None:
                if path in too_many or len(values) + len(too_many) >= MAX_FIELDS:
                    continue
                counts = values[path] = {}
            text = str(value)
            if text not in counts and len(counts) >= MAX_VALUES:
                del values[path]
                too_many.add(path)
                continue
            counts[text] = counts.get(text, 0.0) + weight


def differences(
    members: Sequence[Mapping[str, Any]], weights: Sequence[float], baseline: Baseline
) -> list[dict[str, Any]]:
    """The field values most over-represented among ``members`` (the incident's events)
    against the rest of the baseline's traffic, most over-represented first."""
    total = sum(weights)
    if not total:
        return []
    inside: dict[str, dict[str, float]] = {}
    for event, weight in zip(members, weights, strict=True):
        for path, value in scalar_fields(event):
            if path in baseline.values:
                counts = inside.setdefault(path, {})
                counts[str(value)] = counts.get(str(value), 0.0) + weight
    rest_total = baseline.total - total
    found: list[tuple[float, str, str, float, float]] = []
    for path, counts in inside.items():
        for value, weight in counts.items():
            share = weight / total
            elsewhere = baseline.values[path].get(value, 0.0) - weight
            rest = max(0.0, elsewhere / rest_total) if rest_total > 0 else 0.0
            if share - rest >= MIN_LIFT:
                found.append((rest - share, path, value, share, rest))
    found.sort()
    return [
        {"field": path, "value": value, "incident": round(share, 4), "traffic": round(rest, 4)}
        for _, path, value, share, rest in found[:8]
    ]


def templates(messages: Sequence[str], top: int = 3) -> list[dict[str, Any]]:
    """The messages grouped by their template, the most frequent first: each with its
    count and, per variable part (``<*>``), how many distinct values and the top ones."""
    grouped: dict[str, list[str]] = {}
    for message in messages:
        grouped.setdefault(normalize_message(message), []).append(message)
    out = []
    for normal, texts in sorted(grouped.items(), key=lambda item: (-len(item[1]), item[0])):
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
    return out[:5]


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
