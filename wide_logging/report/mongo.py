"""The briefing's numbers from a MongoDB collection, worked out by the server: aggregation
pipelines that group and sum there, so that only a few hundred rows come back however many
events the period holds (a row per key and latency bucket at most).

Counts are exact (weights as ``summary.event_weight``: ``WEIGHT``). Latency quantiles come
from a histogram the server counts: each duration in a logarithmic bucket 1% wide
(``BUCKET``), each bucket's weight summed; a quantile is the geometric middle of the bucket
its cumulative weight reaches — within 0.5% of the exact weighted quantile a file's report
gives (tested).
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

import orjson

from ..incidents import DEFAULT_RULES
from ..incidents.insight import _SCALARS, value_text
from ..incidents.mongo import incidents_in
from ..incidents.mongo_insight import FAILED, HAS_ERROR, WEIGHT
from ..incidents.summary import iso_time
from .files import PLAUSIBLE, QUANTILES

#: Bucket width, as a log: 1%.
_STEP = math.log(1.01)
#: A duration's bucket (null without a number): floor(ln(max(ms, 0.001)) / ln(1.01)).
BUCKET = {
    "$cond": [
        {"$isNumber": "$duration_ms"},
        {"$floor": {"$divide": [{"$ln": {"$max": ["$duration_ms", 0.001]}}, _STEP]}},
        None,
    ]
}


def _when(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def _seconds(moment: Any) -> float | None:
    if not isinstance(moment, datetime):
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


class MongoEvents:
    """What ``report._report`` asks of a source, answered by a collection's server."""

    def __init__(self, collection: Any) -> None:
        self.collection = collection

    def _requests(self, start: float, end: float, **more: Any) -> dict[str, Any]:
        return {
            "kind": "http.request",
            "timestamp": {"$gte": _when(start), "$lt": _when(end)},
            **more,
        }

    def _aggregate(self, pipeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return list(self.collection.aggregate(pipeline, allowDiskUse=True))

    def span(self) -> tuple[float | None, float | None]:
        low, high = PLAUSIBLE
        rows = self._aggregate(
            [
                {
                    "$match": {
                        "$or": [
                            {"kind": "http.request"},
                            {"kind": "metrics", "metrics": {"$ne": None}},
                        ],
                        "timestamp": {"$gte": _when(low), "$lte": _when(high)},
                    }
                },
                {"$group": {"_id": None, "a": {"$min": "$timestamp"}, "b": {"$max": "$timestamp"}}},
            ]
        )
        if not rows:
            return None, None
        return _seconds(rows[0]["a"]), _seconds(rows[0]["b"])

    def _histogram(
        self, start: float, end: float, key: Any
    ) -> dict[Any, tuple[float, float, int, dict[int, float]]]:
        """Per ``key`` (an expression): requests, errors (weighted), events, and the
        weighted duration histogram."""
        rows = self._aggregate(
            [
                {"$match": self._requests(start, end)},
                {
                    "$group": {
                        "_id": {"k": key, "b": BUCKET},
                        "w": {"$sum": WEIGHT},
                        "e": {"$sum": {"$cond": [FAILED, WEIGHT, 0]}},
                        "n": {"$sum": 1},
                    }
                },
            ]
        )
        out: dict[Any, tuple[float, float, int, dict[int, float]]] = {}
        for row in rows:
            name, bucket = _hashable(row["_id"].get("k")), row["_id"].get("b")
            requests, errors, events, histogram = out.get(name, (0.0, 0.0, 0, {}))
            if bucket is not None:
                histogram[int(bucket)] = histogram.get(int(bucket), 0.0) + float(row["w"])
            out[name] = (
                requests + float(row["w"]),
                errors + float(row["e"]),
                events + int(row["n"]),
                histogram,
            )
        return out

    def totals(self, start: float, end: float) -> dict[str, Any]:
        found = self._histogram(start, end, None).get(None, (0.0, 0.0, 0, {}))
        requests, errors, events, histogram = found
        error_events = self._aggregate(
            [
                {"$match": self._requests(start, end)},
                {"$group": {"_id": None, "n": {"$sum": {"$cond": [FAILED, 1, 0]}}}},
            ]
        )
        return {
            "events": events,
            "requests": requests,
            "errors": errors,
            "error_events": int(error_events[0]["n"]) if error_events else 0,
            "error_rate": errors / requests if requests else None,
            **quantiles(histogram),
        }

    def by_service(self, start: float, end: float) -> list[dict[str, Any]]:
        rows = self._histogram(start, end, {"$ifNull": ["$service.name", "unknown"]})
        out = [
            {"service": name, "requests": n, "errors": e, "error_rate": e / n if n else None}
            for name, (n, e, _, _) in rows.items()
        ]
        return sorted(out, key=lambda row: -row["requests"])

    def timeline(self, start: float, end: float, step: int) -> list[dict[str, Any]]:
        # steps counted from the epoch, as a file's (a naive UTC datetime: as pymongo reads
        # dates back, and as mongomock subtracts)
        epoch = datetime(1970, 1, 1)
        key = {"$floor": {"$divide": [{"$subtract": ["$timestamp", epoch]}, step * 1000]}}
        rows = self._histogram(start, end, key)
        return [
            {
                "t": float(index * step),
                "requests": rows[index][0],
                "errors": rows[index][1],
                **quantiles(rows[index][3]),
            }
            for index in sorted(rows)
        ]

    def routes(self, start: float, end: float) -> dict[str, dict[str, Any]]:
        rows = self._histogram(start, end, {"$ifNull": ["$http.route", "(no route)"]})
        return {
            str(route): {
                "route": str(route),
                "requests": n,
                "errors": e,
                "events": events,
                "error_rate": e / n if n else None,
                **quantiles(histogram),
            }
            for route, (n, e, events, histogram) in rows.items()
        }

    def error_types(self, start: float, end: float, limit: int = 10) -> list[dict[str, Any]]:
        match = {"$match": {**self._requests(start, end), "$expr": FAILED}}
        key = {
            "t": {"$cond": [HAS_ERROR, {"$ifNull": ["$error.type", "error"]}, None]},
            "s": {"$ifNull": ["$http.response.status_code", None]},
        }
        rows = self._aggregate(
            [
                match,
                {
                    "$group": {
                        "_id": key,
                        "w": {"$sum": WEIGHT},
                        "n": {"$sum": 1},
                        "a": {"$min": "$timestamp"},
                        "b": {"$max": "$timestamp"},
                    }
                },
            ]
        )
        kinds: dict[str, dict[str, Any]] = {}
        for row in rows:
            kind = _label(row["_id"].get("t"), row["_id"].get("s"))
            entry = kinds.setdefault(
                str(kind), {"type": str(kind), "count": 0.0, "events": 0, "keys": []}
            )
            entry["count"] += float(row["w"])
            entry["events"] += int(row["n"])
            entry["keys"].append(row["_id"])
            for name, pick in (("first_seen", min), ("last_seen", max)):
                moment = _seconds(row["a" if name == "first_seen" else "b"])
                if moment is not None:
                    entry[name] = pick(entry.get(name, moment), moment)
        top = sorted(kinds.values(), key=lambda e: (-e["count"], e["type"]))[:limit]
        for entry in top:
            kind_of = {"$cond": [HAS_ERROR, {"$ifNull": ["$error.type", "error"]}, None]}
            either = [
                {
                    "$and": [
                        # ($literal: a value such as "$x" is a value, not a field)
                        {"$eq": [kind_of, {"$literal": k.get("t")}]},
                        {
                            "$eq": [
                                {"$ifNull": ["$http.response.status_code", None]},
                                {"$literal": k.get("s")},
                            ]
                        },
                    ]
                }
                for k in entry.pop("keys")
            ]
            own = {
                "$match": {
                    **self._requests(start, end),
                    "$expr": {"$and": [FAILED, {"$or": either}]},
                }
            }
            messages = self._aggregate(
                [own, {"$group": {"_id": "$error.message", "n": {"$sum": 1}}}]
            )
            texts = [m for m in messages if isinstance(m["_id"], str)]
            frequent = max(texts, key=lambda m: (m["n"], m["_id"])) if texts else None
            entry["message"] = frequent["_id"] if frequent else None
            latest = self._aggregate(
                [own, {"$sort": {"timestamp": -1}}, {"$limit": 3}, {"$project": {"request_id": 1}}]
            )
            entry["examples"] = [
                str(d["request_id"]) for d in latest if d.get("request_id") not in (None, "")
            ]
            entry.setdefault("first_seen", None)
            entry.setdefault("last_seen", None)
        return top

    def metrics_events(self, end: float) -> list[tuple[float, str, str]]:
        rows = []
        query = {"kind": "metrics", "timestamp": {"$gte": _when(PLAUSIBLE[0]), "$lt": _when(end)}}
        for document in self.collection.find(query).sort("timestamp", 1):
            moment = _seconds(document.get("timestamp"))
            numbers = document.get("metrics")
            if moment is None or not isinstance(numbers, dict):
                continue
            host = document.get("host")
            process = document.get("process")
            host = host.get("name", "") if isinstance(host, dict) else ""
            pid = process.get("pid", "") if isinstance(process, dict) else ""
            rows.append((moment, f"{host}:{pid}", orjson.dumps(numbers, default=str).decode()))
        return rows

    def incidents(self, start: float, end: float) -> list[dict[str, Any]]:
        return [
            incident.to_dict()
            for incident in incidents_in(self.collection, DEFAULT_RULES, start)
            if incident.first_seen <= iso_time(end)
        ]


def _hashable(value: Any) -> Any:
    """A group's key as the file's report names it: an object or a list as its JSON."""
    if isinstance(value, (dict, list)):
        return orjson.dumps(value, default=str).decode()
    return value


def _label(error_type: Any, status: Any) -> str:
    """An error's name: its type, else its status (as the file's report writes them)."""
    if error_type is not None:
        return (
            value_text(error_type)
            if isinstance(error_type, _SCALARS)
            else str(_hashable(error_type))
        )
    if isinstance(status, (int, float)) and not isinstance(status, bool):
        return f"HTTP {value_text(status)}"
    return "error"


def quantiles(histogram: dict[int, float]) -> dict[str, float | None]:
    """The weighted p50/p95/p99 of a duration histogram: each the geometric middle of the
    bucket where the cumulative weight reaches the share."""
    names = [f"p{round(q * 100)}" for q in QUANTILES]
    total = sum(histogram.values())
    if not total:
        return dict.fromkeys(names, None)
    out: dict[str, float | None] = {}
    ordered = sorted(histogram.items())
    for name, share in zip(names, QUANTILES, strict=True):
        seen = 0.0
        for bucket, weight in ordered:
            seen += weight
            if seen >= share * total:
                out[name] = float(f"{math.exp((bucket + 0.5) * _STEP):.6g}")
                break
    return out
