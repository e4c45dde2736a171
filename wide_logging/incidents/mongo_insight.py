"""What is different about an incident found on a MongoDB server, asked of the server: the
rule's pipeline sends only the rule's events, so the traffic they are compared with is
counted there — one ``$facet`` of ``$group`` stages, a field each, weighted by
``1 / sampling.rate`` (``WEIGHT``, read as ``summary.event_weight`` reads it).

The incident's own events are read whole (by their ids: the rule's pipeline sent them
projected), and only their fields are compared: a field none of them has is not looked at
(a file's summary looks at every field of the baseline, so it can also name a value the
incident lacks of such a field).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from .insight import (
    _SCALARS,
    MAX_FIELDS,
    MAX_VALUES,
    MIN_OTHERS,
    Baseline,
    Baselines,
    differences,
    members_of,
    scalar_fields,
    value_text,
)
from .rules import FINGERPRINT, Rule, fingerprint
from .summary import MIN_RATE, Incident, event_time, event_weight, iso_time

#: ``summary.event_weight`` as a MongoDB expression: ``1 / sampling.rate`` for a rate that
#: is a number within (0, 1], else 1.
WEIGHT = {
    "$cond": [
        {
            "$and": [
                {"$isNumber": "$sampling.rate"},
                {"$gte": ["$sampling.rate", MIN_RATE]},
                {"$lte": ["$sampling.rate", 1]},
            ]
        },
        {"$divide": [1, "$sampling.rate"]},
        1,
    ]
}


#: An event that carries an error Python reads as true (``has_error``) — as an expression.
HAS_ERROR: dict[str, Any] = {
    # ($cond, not $not: the same on a server and on mongomock, whose $not misreads a list)
    "$cond": [{"$in": [{"$ifNull": ["$error", None]}, [None, False, "", 0, {}, []]]}, False, True]
}

#: ``summary.failed`` as a MongoDB expression: an error, or a status number >= 500.
FAILED = {
    "$or": [
        HAS_ERROR,
        {
            "$and": [
                {"$isNumber": "$http.response.status_code"},
                {"$gte": ["$http.response.status_code", 500]},
            ]
        },
    ]
}


def _when(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def members_of_incident(
    rule: Rule, incident: Incident, events: Sequence[Mapping[str, Any]], ids: Sequence[Any]
) -> list[Any]:
    """The stored ids of the incident's events among its group's (as the client split the
    group: by fingerprint, and in time)."""
    first, last = incident.first_seen, incident.last_seen
    grouped = FINGERPRINT in rule.group_by
    return [
        stored_id
        for event, stored_id in zip(events, ids, strict=True)
        if (moment := event_time(event)) is not None
        and first <= iso_time(moment) <= last
        and (not grouped or fingerprint(event) == incident.fingerprint)
    ]


def compare_on_server(
    collection: Any,
    rule: Rule,
    conditions: Sequence[Mapping[str, Any]],
    incident: Incident,
    members: Sequence[Any],
    since: float | None,
    from_document: Any,
) -> None:
    """Fill ``incident``'s ``differences``, ``compared_with``, ``share_before`` and
    ``recurring`` from the server. ``conditions``: the rule's match as queries; ``members``:
    the stored ids of its events."""
    first = event_time({"timestamp": incident.first_seen})
    last = event_time({"timestamp": incident.last_seen})
    if first is None or last is None:
        return
    events = _whole(collection, members, from_document)
    compared = members_of(events, [event_weight(e) for e in events])
    routes = list(incident.routes)
    period: dict[str, Any] = {"kind": "http.request"}
    if since is not None:
        period["timestamp"] = {"$gte": _when(since)}
    fields = sorted(_fields_of(events) - set(rule.group_by))[:MAX_FIELDS]
    baselines = Baselines(routes=0)
    requests = sum(1 for _, _, request in compared if request)
    if len(routes) == 1:
        on_route = _baseline(collection, {**period, "http.route": routes[0]}, fields)
        if on_route.count - requests >= MIN_OTHERS:
            baselines.by_route[routes[0]] = on_route
    if not baselines.by_route:
        baselines.all = _baseline(collection, period, fields)
    incident.differences, incident.compared_with = differences(
        compared, baselines, routes=routes, exclude=rule.group_by
    )
    incident.share_before = _share_before(collection, routes, first, last, since)
    if since is not None and not incident.recurring:  # (after since: the group's episodes)
        group = [
            {path: {"$eq": incident.group.get(path)}}
            for path in rule.group_by
            if path != FINGERPRINT
        ]
        own = {"$and": [*conditions, *group]} if conditions or group else {}
        incident.recurring = _seen_before(collection, own, since, incident, rule, from_document)


def _whole(collection: Any, ids: Sequence[Any], from_document: Any) -> list[dict[str, Any]]:
    """The incident's events as stored, whole (by their ids, a thousand a query)."""
    events = []
    for start in range(0, len(ids), 1000):
        chunk = list(ids[start : start + 1000])
        events += [from_document(doc) for doc in collection.find({"_id": {"$in": chunk}})]
    return events


def _fields_of(events: Sequence[Mapping[str, Any]]) -> set[str]:
    """The compared fields of ``events`` that a server can address: a path made of keys
    without dots, without a leading ``$`` and not empty. A path that a flat ``"user.plan"``
    key also spells is left out (the server would read only the nested one), as is one
    a logged ``{"$gt": ...}`` makes (the server would refuse it)."""
    found: set[str] = set()
    ambiguous: set[str] = set()
    for event in events:
        safe = {(path, value_text(value)) for path, value in _addressable(event, "", 0)
                if isinstance(value, _SCALARS)}  # fmt: skip
        for pair in scalar_fields(event):
            (found if pair in safe else ambiguous).add(pair[0])
    return found - ambiguous


def _addressable(node: Mapping[str, Any], prefix: str, depth: int) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in node.items():
        if not isinstance(key, str) or not key or "." in key or key.startswith("$"):
            continue
        if isinstance(value, Mapping) and depth < 8:
            out += _addressable(value, f"{prefix}{key}.", depth + 1)
        else:
            out.append((prefix + key, value))
    return out


def _baseline(collection: Any, match: Mapping[str, Any], fields: Sequence[str]) -> Baseline:
    """The weighted values of ``fields`` among the requests ``match`` selects, counted by
    the server in one ``$facet``."""
    facets: dict[str, Any] = {
        f"f{n}": [
            {"$group": {"_id": f"${path}", "w": {"$sum": WEIGHT}}},
            {"$match": {"_id": {"$ne": None}}},  # (events without it are no value)
            {"$limit": MAX_VALUES + 1},
        ]
        for n, path in enumerate(fields)
    }
    facets["total"] = [{"$group": {"_id": None, "w": {"$sum": WEIGHT}, "n": {"$sum": 1}}}]
    [result] = list(collection.aggregate([{"$match": dict(match)}, {"$facet": facets}]))
    baseline = Baseline()
    if result["total"]:
        baseline.total = float(result["total"][0]["w"])
        baseline.count = int(result["total"][0]["n"])
    for n, path in enumerate(fields):
        groups = [g for g in result[f"f{n}"] if isinstance(g["_id"], _SCALARS)]
        if len(groups) > MAX_VALUES:
            baseline.too_many.add(path)
            continue
        counts: dict[str, float] = {}
        for g in groups:
            text = value_text(g["_id"])
            counts[text] = counts.get(text, 0.0) + float(g["w"])
        baseline.values[path] = counts
    return baseline


def _share_before(
    collection: Any, routes: Sequence[str], first: float, last: float, since: float | None
) -> float | None:
    """Failed requests per request on ``routes`` in a span as long as the incident (at
    least a minute) just before it, counted by the server (as ``summary._share_before``)."""
    if not routes:
        return None
    span = max(last - first, 60.0)
    start = first - span if since is None else max(first - span, since)  # (as a file's)
    totals = list(
        collection.aggregate(
            [
                {
                    "$match": {
                        "kind": "http.request",
                        "http.route": {"$in": list(routes)},
                        "timestamp": {"$gte": _when(start), "$lt": _when(first)},
                    }
                },
                {
                    "$group": {
                        "_id": None,
                        "total": {"$sum": WEIGHT},
                        "failed": {"$sum": {"$cond": [FAILED, WEIGHT, 0]}},
                    }
                },
            ]
        )
    )
    if not totals or not totals[0]["total"]:
        return None
    return round(float(totals[0]["failed"]) / float(totals[0]["total"]), 4)


def _seen_before(
    collection: Any,
    own: Mapping[str, Any],
    since: float,
    incident: Incident,
    rule: Rule,
    from_document: Any,
) -> bool:
    """The same group matched before ``since`` (the latest thousand looked at)."""
    query = {"$and": [own, {"timestamp": {"$lt": _when(since)}}]}
    for document in collection.find(query).sort("timestamp", -1).limit(1000):
        event = from_document(document)
        if FINGERPRINT not in rule.group_by or fingerprint(event) == incident.fingerprint:
            return True
    return False
