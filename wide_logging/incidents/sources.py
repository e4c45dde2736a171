"""Where ``wide-logging incidents`` reads stored events: a JSONL file, a Redis stream, or
MongoDB — there the matching and grouping run on the server (``incidents.mongo``)."""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from typing import Any

import orjson

from .._errors import ConfigurationError
from .._urls import mask_url
from ..tools.event_files import event_files, read_events
from .rules import Rule
from .summary import Incident, summarize

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
    since = (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()
    if since > now:  # (an empty period said as one: a wrong year or zone, most likely)
        msg = f"--since {text!r} is in the future: it would select nothing"
        raise ConfigurationError(msg)
    return since


def incidents_from(source: str, rules: Sequence[Rule], since: float | None) -> list[Incident]:
    if source.startswith("file:"):
        files = event_files(source[len("file:") :])  # a file (and its segments), folder, glob
        return summarize(read_events(files), rules, since=since)
    if source.startswith(("redis://", "rediss://", "redis+cluster://")):
        return summarize(_stream_events(source, since), rules, since=since)
    if source.startswith(("mongodb://", "mongodb+srv://")):
        return _mongo_incidents(source, rules, since)
    msg = (
        "--source must be file:PATH, redis://..., redis+cluster://... or mongodb://..., "
        f"got {mask_url(source)!r}"
    )
    raise ConfigurationError(msg)


def _stream_events(url: str, since: float | None) -> Iterator[dict[str, Any]]:
    for payload in stream_payloads(url, since):
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError:
            continue
        if isinstance(event, dict):
            yield event


def stream_payloads(url: str, since: float | None) -> Iterator[bytes]:
    """The events of the stream (``?stream=``, default ``wide_logging:events``; every shard
    of a cluster's, merged in the order of their ids) since a time, as stored (JSON bytes),
    read by ranges of ``RANGE`` entries: stream ids start with milliseconds, so the first
    range starts there."""
    from .._redis import connect, stream_layout

    layout = stream_layout(url)
    client = connect(layout.url, socket_timeout=10.0, connect_timeout=5.0)
    try:
        shards = [_shard_entries(client, key, since) for key in layout.keys]
        for _order, payload in heapq.merge(*shards):
            yield payload
    finally:
        client.close()


def _shard_entries(
    client: Any, key: str, since: float | None
) -> Iterator[tuple[tuple[int, int], bytes]]:
    from .._redis import EVENT_FIELD

    start = f"{int(since * 1000)}-0" if since else "-"
    while True:
        entries = client.xrange(key, min=start, max="+", count=RANGE)
        for entry_id, fields in entries:
            payload = fields.get(EVENT_FIELD)
            if isinstance(payload, bytes):
                millis, _, sequence = entry_id.partition(b"-")
                yield (int(millis), int(sequence or 0)), payload
        if len(entries) < RANGE:
            return
        start = "(" + entries[-1][0].decode()  # exclusive: after the last one read


#: Stream entries read at once.
RANGE = 1000


def _mongo_incidents(url: str, rules: Sequence[Rule], since: float | None) -> list[Incident]:
    from ..sinks.mongo import MongoSink
    from .mongo import incidents_in

    sink = MongoSink(url)
    try:
        return incidents_in(sink.open_collection(), rules, since)
    finally:
        sink.close()
