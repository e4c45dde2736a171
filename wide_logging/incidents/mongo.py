"""Incident rules on a MongoDB server: a condition as a query (the one translation of the
rule language), a rule as an aggregation pipeline that matches and groups there and keeps
exactly the fields the rule and its summary read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from .mongo_insight import WEIGHT, compare_on_server, members_of_incident
from .rules import FINGERPRINT, Condition, Rule
from .summary import SUMMARY_FIELDS, Incident, event_time, summarize

_COMPARISONS = {">": "$gt", ">=": "$gte", "<": "$lt", "<=": "$lte"}


def condition_query(condition: Condition) -> dict[str, Any]:
    """``condition`` as a MongoDB query on the same dotted path, meaning what
    ``Condition.holds`` means (see ``incidents.rules``)."""
    path, op, value = condition.path, condition.op, condition.value
    if op == "exists":
        return {path: {"$exists": True, "$ne": None}}
    if op == "missing":
        return {path: None}  # absent and null alike
    if op == "matches":
        return {path: {"$regex": value.pattern}}  # strings only, as there
    if op in _COMPARISONS:
        return {path: {_COMPARISONS[op]: value}}  # same type bracket only; absent: never
    # A bare {"$eq": null} / {"$ne": 5} / {"$in": [null]} would also take absent fields.
    operator = {"==": "$eq", "!=": "$ne", "in": "$in"}[op]
    return {path: {"$exists": True, operator: value}}


def rule_pipeline(rule: Rule, since: float | None) -> list[dict[str, Any]]:
    """Match a rule's events and group them by its keys on the server.

    ``fingerprint`` is not a stored field: it is left out of the server's matching and
    grouping and applied on the client, which sees each group's events with every field the
    rule and the summary read.
    """
    conditions = [condition_query(c) for c in rule.match if c.path != FINGERPRINT]
    if since is not None:
        conditions.append({"timestamp": {"$gte": datetime.fromtimestamp(since, timezone.utc)}})
    # absent and null group alike, as on the client (a missing key would be a group apart)
    keys = {
        f"k{n}": {"$ifNull": [f"${path}", None]}
        for n, path in enumerate(rule.group_by)
        if path != FINGERPRINT
    }
    return [
        {"$match": {"$and": conditions} if conditions else {}},
        {"$sort": {"timestamp": 1}},
        {"$project": dict.fromkeys(outermost((*SUMMARY_FIELDS, *rule.stored_paths)), 1)},
        {
            "$group": {
                "_id": keys or None,
                "count": {"$sum": 1},
                "events": {"$push": "$$ROOT"},
            }
        },
        {"$match": {"count": {"$gte": rule.threshold}}},  # smaller groups cannot burst
    ]


def outermost(paths: Sequence[str]) -> list[str]:
    """``paths`` without those inside another one (``error.type`` beside ``error``): a
    projection of both is an error on the server."""
    unique = sorted(set(paths))
    return [p for p in unique if not any(p.startswith(q + ".") for q in unique)]


def incidents_in(collection: Any, rules: Sequence[Rule], since: float | None) -> list[Incident]:
    """Incidents of the events in a pymongo ``collection`` (newest first)."""
    incidents: list[Incident] = []
    for rule in rules:
        conditions = [condition_query(c) for c in rule.match if c.path != FINGERPRINT]
        for group in collection.aggregate(rule_pipeline(rule, since), allowDiskUse=True):
            documents = group.get("events", [])
            events = [from_document(doc) for doc in documents]
            ids = [doc.get("_id") for doc in documents]
            for incident in summarize(events, [rule], since=since, compare=False):
                # The server sent only the rule's events: the traffic they are a share of,
                # and what they are compared with, are counted there too.
                incident.share_of_traffic = _share_of_traffic(collection, incident)
                members = members_of_incident(rule, incident, events, ids)
                compare_on_server(
                    collection, rule, conditions, incident, members, since, from_document
                )
                incidents.append(incident)
    incidents.sort(key=lambda incident: incident.last_seen, reverse=True)
    return incidents


def _share_of_traffic(collection: Any, incident: Incident) -> float | None:
    first, last = (event_time({"timestamp": t}) for t in (incident.first_seen, incident.last_seen))
    if first is None or last is None or not incident.routes:
        return None
    weight = WEIGHT
    totals = list(
        collection.aggregate([
            {"$match": {
                "kind": "http.request",
                "http.route": {"$in": list(incident.routes)},
                # stored timestamps are ms; the summary's are ms too: inclusive bounds
                "timestamp": {
                    "$gte": datetime.fromtimestamp(first, timezone.utc),
                    "$lte": datetime.fromtimestamp(last, timezone.utc),
                },
            }},
            {"$group": {"_id": None, "total": {"$sum": weight}}},
        ])
    )  # fmt: skip
    total = totals[0]["total"] if totals else 0
    return round(incident.weighted_count / total, 4) if total else None


def from_document(document: Mapping[str, Any]) -> dict[str, Any]:
    """A stored document as the event it was (``timestamp`` back to ISO text)."""
    event = {k: v for k, v in document.items() if k != "_id"}
    stamp = event.get("timestamp")
    if isinstance(stamp, datetime):  # pymongo returns naive UTC datetimes
        moment = stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)
        event["timestamp"] = moment.isoformat().replace("+00:00", "Z")
    return event
