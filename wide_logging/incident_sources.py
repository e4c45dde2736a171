"""Where ``wide-logging incidents`` reads stored events: a JSONL file, a Redis stream, or
MongoDB — there the matching and grouping run on the server as aggregation pipelines."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import orjson

from ._errors import ConfigurationError
from ._event_files import event_files, read_events
from .incidents import Condition, Incident, Rule, summarize
from .sinks import mask_url

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str | None, now: float) -> float | None:
    """``"1h"``, ``"30m"``, ``"2d"`` before ``now``, or an ISO-8601 time; None: everything."""
    if not text:
        return None
    found = _DURATION.match(text.strip())
    if found:
        return now - float(found.group(1)) * _UNITS[found.group(2)]
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        msg = f"--since takes a duration like 90s, 30m, 1h, 2d or an ISO time, got {text!r}"
        raise ConfigurationError(msg) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def incidents_from(source: str, rules: Sequence[Rule], since: float | None) -> list[Incident]:
    if source.startswith("file:"):
        files = event_files(source[len("file:") :])  # a file (and its segments), folder, glob
        return summarize(read_events(files), rules, since=since)
    if source.startswith(("redis://", "rediss://")):
        return summarize(_stream_events(source, since), rules, since=since)
    if source.startswith(("mongodb://", "mongodb+srv://")):
        return _mongo_incidents(source, rules, since)
    msg = f"--source must be file:PATH, redis://... or mongodb://..., got {mask_url(source)!r}"
    raise ConfigurationError(msg)


def _stream_events(url: str, since: float | None) -> Iterator[dict[str, Any]]:
    """Entries of the stream (``?stream=``, default ``wide_logging:events``) since a time:
    stream ids start with milliseconds, so the range starts there."""
    from .sinks._url import split_options
    from .sinks.redis_stream import DEFAULT_STREAM, EVENT_FIELD, connect

    clean, options = split_options(url, {"stream": str})
    stream = options.get("stream", DEFAULT_STREAM)
    client = connect(clean, socket_timeout=10.0, connect_timeout=5.0)
    start = f"{int(since * 1000)}-0" if since else "-"
    try:
        while True:
            entries = client.xrange(stream, min=start, max="+", count=1000)
            for _entry_id, fields in entries:
                try:
                    event = orjson.loads(fields.get(EVENT_FIELD, b""))
                except orjson.JSONDecodeError:
                    continue
                if isinstance(event, dict):
                    yield event
            if len(entries) < 1000:
                return
            start = "(" + entries[-1][0].decode()  # exclusive: after the last one read
    finally:
        client.close()


# -- MongoDB: server-side matching and grouping ----------------------------------------

_MONGO_OPS = {
    "==": "$eq",
    "!=": "$ne",
    ">": "$gt",
    ">=": "$gte",
    "<": "$lt",
    "<=": "$lte",
    "in": "$in",
}
#: What the client needs of each grouped event to finish a summary.
_FIELDS = ("timestamp", "request_id", "duration_ms", "error", "http", "service", "sampling", "kind")


def mongo_match(condition: Condition) -> dict[str, Any]:
    """A rule condition as a MongoDB query on the same dotted path."""
    if condition.op == "exists":
        return {condition.path: {"$exists": True, "$ne": None}}
    if condition.op == "missing":
        return {condition.path: None}  # matches absent and null alike
    if condition.op == "matches":
        return {condition.path: {"$regex": condition.value.pattern}}
    return {condition.path: {_MONGO_OPS[condition.op]: condition.value}}


def mongo_pipeline(rule: Rule, since: float | None) -> list[dict[str, Any]]:
    """Match a rule's events and group them by its keys on the server.

    ``fingerprint`` is not a stored field: it is left out of the server's grouping and
    refined on the client, which sees each group's (projected) events.
    """
    match: dict[str, Any] = {
        "$and": [mongo_match(c) for c in rule.match if c.path != "fingerprint"]
    }
    if since is not None:
        match["$and"].append({"timestamp": {"$gte": datetime.fromtimestamp(since, timezone.utc)}})
    keys = {f"k{n}": f"${path}" for n, path in enumerate(rule.group_by) if path != "fingerprint"}
    return [
        {"$match": match},
        {"$sort": {"timestamp": 1}},
        {"$project": dict.fromkeys(_FIELDS, 1)},
        {
            "$group": {
                "_id": keys or None,
                "count": {"$sum": 1},
                "first_seen": {"$min": "$timestamp"},
                "last_seen": {"$max": "$timestamp"},
                "events": {"$push": "$$ROOT"},
            }
        },
        {"$match": {"count": {"$gte": rule.threshold}}},  # smaller groups cannot burst
    ]


def _mongo_incidents(url: str, rules: Sequence[Rule], since: float | None) -> list[Incident]:
    from .sinks.mongo import MongoSink

    sink = MongoSink(url)
    collection = sink._collection()
    try:
        incidents: list[Incident] = []
        for rule in rules:
            grouped = collection.aggregate(mongo_pipeline(rule, since), allowDiskUse=True)
            for group in grouped:
                events = [_from_mongo(doc) for doc in group.get("events", [])]
                incidents.extend(summarize(events, [rule], since=since))
        incidents.sort(key=lambda incident: incident.last_seen, reverse=True)
        return incidents
    finally:
        sink.close()


def _from_mongo(document: Mapping[str, Any]) -> dict[str, Any]:
    event = {k: v for k, v in document.items() if k != "_id"}
    stamp = event.get("timestamp")
    if isinstance(stamp, datetime):  # pymongo returns naive UTC datetimes
        moment = stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)
        event["timestamp"] = moment.isoformat().replace("+00:00", "Z")
    return event
