"""What is different about an incident found on a MongoDB server, asked of the server: the
rule's pipeline sends only the rule's events, so the traffic they are compared with is
counted there — one ``$facet`` of ``$group`` stages, a field each, weighted by
``1 / sampling.rate`` (``WEIGHT``, read as ``summary.event_weight`` reads it).

The incident's own events are read whole (up to ``MAX_MESSAGES``), and only their fields
are compared: a field none of them has is not looked at (a file's summary looks at every
field of the baseline, so it can also name a value the incident lacks of such a field).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from .insight import (
    _SCALARS,
    MAX_FIELDS,
    MAX_MESSAGES,
    MAX_VALUES,
    MIN_OTHERS,
    Baseline,
    Baselines,
    differences,
    members_of,
    value_text,
)
from .rules import FINGERPRINT, Rule, fingerprint
from .summary import MIN_RATE, Incident, event_time, event_weight

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


def _when(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def compare_on_server(
    collection: Any,
    rule: Rule,
    conditions: Sequence[Mapping[str, Any]],
    incident: Incident,
    since: float | None,
    from_document: Any,
) -> None:
    """Fill ``incident``'s ``differences``, ``compared_with``, ``share_before`` and
    ``recurring`` from the server. ``conditions``: the rule's match as queries."""
    first = event_time({"timestamp": incident.first_seen})
    last = event_time({"timestamp": incident.last_seen})
    if first is None or last is None:
        return
    group = [{path: incident.group.get(path)} for path in rule.group_by if path != FINGERPRINT]
    own = {"$and": [*conditions, *group]} if conditions or group else {}
    events = _of_incident(collection, own, first, last, incident, rule, from_document)
    members = members_of(events, [event_weight(e) for e in events])
    routes = list(incident.routes)
    period: dict[str, Any] = {"kind": "http.request"}
    if since is not None:
        period["timestamp"] = {"$gte": _when(since)}
    fields = sorted({path for found, _, _ in members for path, _ in found} - set(rule.group_by))[
        :MAX_FIELDS
    ]
    baselines = Baselines(routes=0)
    requests = sum(1 for _, _, request in members if request)
    if len(routes) == 1:
        on_route = _baseline(collection, {**period, "http.route": routes[0]}, fields)
        if on_route.count - requests >= MIN_OTHERS:
            baselines.by_route[routes[0]] = on_route
    if not baselines.by_route:
        baselines.all = _baseline(collection, period, fields)
    incident.differences, incident.compared_with = differences(
        members, baselines, routes=routes, exclude=rule.group_by
    )
    incident.share_before = _share_before(collection, routes, first, last)
    incident.recurring = incident.recurring or _seen_before(
        collection, own, first, incident, rule, from_document
    )


def _of_incident(
    collection: Any,
    own: Mapping[str, Any],
    first: float,
    last: float,
    incident: Incident,
    rule: Rule,
    from_document: Any,
) -> list[dict[str, Any]]:
    """The incident's events, whole (the first ``MAX_MESSAGES``)."""
    query = {"$and": [own, {"timestamp": {"$gte": _when(first), "$lte": _when(last)}}]}
    events = []
    for document in collection.find(query).sort("timestamp", 1).limit(4 * MAX_MESSAGES):
        event = from_document(document)
        if FINGERPRINT in rule.group_by and fingerprint(event) != incident.fingerprint:
            continue
        events.append(event)
        if len(events) >= MAX_MESSAGES:
            break
    return events


def _baseline(collection: Any, match: Mapping[str, Any], fields: Sequence[str]) -> Baseline:
    """The weighted values of ``fields`` among the requests ``match`` selects, counted by
    the server in one ``$facet``."""
    facets: dict[str, Any] = {
        f"f{n}": [
            {"$group": {"_id": f"${path}", "w": {"$sum": WEIGHT}}},
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
    collection: Any, routes: Sequence[str], first: float, last: float
) -> float | None:
    """Failed requests per request on ``routes`` in a span as long as the incident (at
    least a minute) just before it, counted by the server (as ``summary._share_before``)."""
    if not routes:
        return None
    span = max(last - first, 60.0)
    failed = {
        "$or": [
            {"$and": [{"$ne": [{"$ifNull": ["$error", None]}, None]}, {"$ne": ["$error", False]}]},
            {
                "$and": [
                    {"$isNumber": "$http.response.status_code"},
                    {"$gte": ["$http.response.status_code", 500]},
                ]
            },
        ]
    }
    totals = list(
        collection.aggregate(
            [
                {
                    "$match": {
                        "kind": "http.request",
                        "http.route": {"$in": list(routes)},
                        "timestamp": {"$gte": _when(first - span), "$lt": _when(first)},
                    }
                },
                {
                    "$group": {
                        "_id": None,
                        "total": {"$sum": WEIGHT},
                        "failed": {"$sum": {"$cond": [failed, WEIGHT, 0]}},
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
    first: float,
    incident: Incident,
    rule: Rule,
    from_document: Any,
) -> bool:
    """The same group matched before the incident (an earlier episode, or before
    ``--since``)."""
    query = {"$and": [own, {"timestamp": {"$lt": _when(first)}}]}
    for document in collection.find(query).limit(1000):
        event = from_document(document)
        if FINGERPRINT not in rule.group_by or fingerprint(event) == incident.fingerprint:
            return True
    return False
