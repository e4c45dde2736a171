"""StreamConsumer: moves events from a Redis Stream into a sink (MongoDB, a file, ...).

Theory of operation
-------------------
Consumers join a Redis consumer group, so any number of them share one stream: each entry
is delivered to one consumer. A turn of the loop takes, in this order of preference:

1. this consumer's own pending entries, after a failed write or at start
   (``XREADGROUP ... 0``): what it read but never acknowledged;
2. entries another consumer has left pending for ``claim_idle_ms`` — it crashed —
   claimed with ``XAUTOCLAIM``, looked for at least every second (and a blocking read
   never waits past the next look), so they are taken within ``claim_idle_ms`` + ~1 s;
3. new entries (``XREADGROUP ... >``, blocking up to ``block_ms``).

After any Redis error (a restart from its AOF, a failover) the consumer reads its own
pending list again first: what it had read but not acknowledged is written at once, not
after ``claim_idle_ms``.

Entries are parsed; the batch is written to the sink and acknowledged (``XACK``) only after
the sink succeeded. An entry that cannot be parsed, has no ``event`` field, or has been
delivered ``max_deliveries`` times goes to the dead-letter stream with the reason, and is
acknowledged there. Delivery is at least once: a consumer killed between writing and
acknowledging leaves entries that are written again — stores dedupe on ``event_id`` (the
MongoDB sink's ``_id``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from ._chain import failure_kind
from ._config import service_fields
from ._errors import ConfigurationError, check_number
from ._redis import DEFAULT_STREAM, EVENT_FIELD, connect
from ._secrets import mask_credentials
from ._urls import mask_url
from .fields import Resource, outer_fields
from .incidents import IncidentAggregator, Rule
from .metrics import Metrics, register_gauges, unregister_counters, unregister_gauges
from .sinks import open_sink
from .typing import EventDict, RejectedEvents, Sink

_internal = logging.getLogger("wide_logging.internal")
#: Incident announcements, for alerting (a handler on this logger can page someone).
_incident_log = logging.getLogger("wide_logging.incidents")

DEFAULT_GROUP = "wide_logging"
#: Entries larger than this are not parsed: they go to the dead letters.
MAX_ENTRY_BYTES = 16 * 1024 * 1024
#: Longest wait between two looks for a dead consumer's entries (seconds).
CLAIM_CHECK_EVERY = 1.0


@dataclass
class Entry:
    entry_id: bytes
    fields: dict[bytes, bytes] | None
    deliveries: int = 1


class StreamConsumer:
    """Reads ``stream`` as consumer ``consumer`` of ``group`` and writes to ``sink``."""

    def __init__(
        self,
        redis_url: str,
        sink: str | Sink,
        *,
        stream: str = DEFAULT_STREAM,
        group: str = DEFAULT_GROUP,
        consumer: str | None = None,
        batch_size: int = 100,
        block_ms: int = 1000,
        claim_idle_ms: int = 60_000,
        max_deliveries: int = 5,
        dead_letter_stream: str | None = None,
        retry_backoff: float = 0.5,
        socket_timeout: float = 5.0,
        incident_rules: Sequence[Rule] | None = None,
        service: str | Mapping[str, Any] | None = None,
    ) -> None:
        for name, value in (
            ("batch_size", batch_size),
            ("block_ms", block_ms),
            ("claim_idle_ms", claim_idle_ms),
            ("max_deliveries", max_deliveries),
        ):
            check_number(name, value, 1, integer=True)
        if not stream or not group:
            msg = "stream and group names must not be empty"
            raise ConfigurationError(msg)
        self.stream = stream
        self.group = group
        #: service/host/process of the events this consumer writes itself (incidents)
        self._resource = Resource(service_fields(service))
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.batch_size = batch_size
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.max_deliveries = max_deliveries
        self.dead_letter_stream = dead_letter_stream or f"{stream}:dead"
        self.retry_backoff = retry_backoff
        self.sink = open_sink(sink)
        self.metrics = Metrics()
        # The blocking read must outlast block_ms, or every idle read would time out.
        self._redis = connect(
            redis_url, socket_timeout=socket_timeout + block_ms / 1000, connect_timeout=5.0
        )
        self.name = f"{mask_url(redis_url)}#{stream}/{group}/{self.consumer}"
        #: Live incident aggregation over what this consumer writes (None: off). Window
        #: counters live in the same Redis, so every consumer of the group adds up.
        self.incidents = (
            IncidentAggregator(self._emit_incident, incident_rules, redis_url=redis_url)
            if incident_rules
            else None
        )
        self._stop = threading.Event()
        self._group_info: tuple[float, list[tuple[str, float]]] = (0.0, [])
        register_gauges(self)
        self._pending_first = True  # at start, finish what an earlier run of us left
        #: A batch the sink failed, written again before anything new is read.
        self._retry: tuple[list[Entry], list[bytes]] | None = None
        #: The sink has taken a write: a refusal is then about the events, not the sink.
        self._sink_ok = False
        self._next_claim = 0.0
        self._failures = 0

    # -- control -----------------------------------------------------------------------

    def ensure_group(self) -> None:
        """Create the stream and the group if missing (an existing group is fine)."""
        import redis

        try:
            self._redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def stop(self) -> None:
        """Finish the batch in flight, then return from ``run()``."""
        self._stop.set()

    def run(self) -> None:
        """Consume until ``stop()``; Redis or sink outages are waited out, never fatal."""
        import redis

        while not self._stop.is_set():
            try:
                self.ensure_group()
                break
            except redis.RedisError as exc:
                _internal.warning("consumer %s cannot reach redis: %s", self.name, exc)
                self._stop.wait(self._backoff())
        while not self._stop.is_set():
            try:
                self.process_once()
                if self.incidents is not None:
                    self.incidents.tick()
            except redis.ResponseError as exc:
                if "NOGROUP" in str(exc):  # the stream was deleted: start over
                    self.ensure_group()
                    continue
                self._failed(exc)
            except redis.RedisError as exc:
                # Redis restarted (from its AOF), or failed over: our own unacknowledged
                # entries are back in its pending list; take them first, not after the
                # claim idle time.
                self._pending_first = True
                self._failed(exc)
        self.sink.close()
        unregister_gauges(self)
        unregister_counters(self.metrics)
        self._redis.close()

    def _backoff(self) -> float:
        self._failures += 1
        return float(min(self.retry_backoff * 2 ** min(self._failures - 1, 6), 10.0))

    def _failed(self, exc: Exception) -> None:
        self.metrics.inc("consumer.errors")
        _internal.warning("consumer %s: %s: %s", self.name, type(exc).__name__, exc)
        self._stop.wait(self._backoff())

    def gauges(self) -> list[tuple[str, float]]:
        """Pending entries and lag of the group (asked of Redis at most once a second)."""
        asked_at, cached = self._group_info
        if time.monotonic() - asked_at < 1.0:
            return cached
        gauges: list[tuple[str, float]] = []
        for group in self._redis.xinfo_groups(self.stream):
            name = group["name"]
            if (name.decode() if isinstance(name, bytes) else name) == self.group:
                gauges.append(("consumer.pending", float(group["pending"])))
                if group.get("lag") is not None:  # Redis >= 7
                    gauges.append(("consumer.lag", float(group["lag"])))
        self._group_info = (time.monotonic(), gauges)
        return gauges

    # -- one turn ----------------------------------------------------------------------

    def process_once(self) -> int:
        """Take one batch (pending, claimed or new), write it, ack it. Returns its size.

        A batch the sink failed is kept and written again on the next turn (not read again
        from Redis: that would count a delivery per retry, and a sink outage of a few
        retries would send healthy entries to the dead letters). Entries the sink refuses
        for their content are found and dead-lettered with the reason."""
        if self._retry is not None:
            good, events = self._retry
            size = len(good)
        else:
            entries = self._next_entries()
            if not entries:
                return 0
            size = len(entries)
            good, events, dead = self._sort(entries)
            if dead:
                self._dead_letter(dead)
        if events:
            try:
                good, events = self._write(good, events)
            except Exception as exc:
                self._retry = (good, events)
                self.metrics.inc("consumer.write_failures")
                _internal.warning(
                    "consumer %s: sink %s failed (%s: %s); will retry",
                    self.name,
                    self.sink.name,
                    type(exc).__name__,
                    mask_credentials(str(exc))[:300],
                )
                self._stop.wait(self._backoff())
                return 0
            self._retry = None
            # Counted once the sink has them: an XACK that fails below leaves them pending,
            # written again later (the store dedupes), and counted again then.
            self.metrics.inc("consumer.written", len(events))
            if good:
                self._redis.xack(self.stream, self.group, *(entry.entry_id for entry in good))
            if self.incidents is not None:
                for data in events:
                    self.incidents.observe(orjson.loads(data))
        self._failures = 0
        return size

    def _write(self, good: list[Entry], events: list[bytes]) -> tuple[list[Entry], list[bytes]]:
        """Write ``events``; returns the entries and events stored, after dead-lettering any
        the sink refuses for good. Raises when the sink is unavailable."""
        refused: dict[int, str] = {}
        try:
            self.sink.write(events)
        except RejectedEvents as rejected:  # the sink named them, and stored the rest
            refused = rejected.reasons
        except Exception as exc:
            alone_and_unproven = len(events) == 1 and not self._sink_ok
            if failure_kind(self.sink, exc) != "content" or alone_and_unproven:
                raise
            refused = self._isolate(events, exc)
        self._sink_ok = True
        if refused:
            self._dead_letter(
                [(good[i], f"refused by {self.sink.name}: {r}") for i, r in refused.items()]
            )
            good = [entry for i, entry in enumerate(good) if i not in refused]
            events = [data for i, data in enumerate(events) if i not in refused]
        return good, events

    def _isolate(self, events: list[bytes], error: Exception) -> dict[int, str]:
        """The sink refused the batch for what is in it: write the events one by one; those
        it refuses alone, while it takes others, are the bad ones. Raises when it takes none
        (then it is down, whatever it says)."""
        refused: dict[int, str] = {}
        for index, data in enumerate(events):
            try:
                self.sink.write([data])
            except Exception as exc:
                if failure_kind(self.sink, exc) != "content":
                    raise
                refused[index] = f"{type(exc).__name__}: {mask_credentials(str(exc))[:300]}"
        if len(refused) == len(events) and not self._sink_ok:
            raise error
        return refused

    def _emit_incident(self, incident: EventDict) -> None:
        """An incident opened, escalated or resolved: to the sink, and to a logger."""
        event = outer_fields("incident", int(time.time() * 1000), self._resource.fields())
        event["incident"] = incident["incident"]
        event["sampling"] = {"rule": "incident", "rate": 1.0}
        details = incident["incident"]
        _incident_log.warning(
            "incident %s: %s (%d events since %s)",
            details["status"],
            details["title"],
            details["count"],
            details["first_seen"],
        )
        try:
            self.sink.write([orjson.dumps(event, default=str)])
        except Exception as exc:
            _internal.warning("consumer %s: could not store an incident: %s", self.name, exc)

    def _next_entries(self) -> list[Entry]:
        if self._pending_first:
            entries = self._read(b"0", block=None)
            if entries:
                return self._with_delivery_counts(entries)
            self._pending_first = False
        now = time.monotonic()
        if now >= self._next_claim:
            self._next_claim = now + min(self.claim_idle_ms / 1000 / 4, CLAIM_CHECK_EVERY)
            claimed = self._claim()
            if claimed:
                self.metrics.inc("consumer.claimed", len(claimed))
                return self._with_delivery_counts(claimed)
        until_claim = max(1, int((self._next_claim - time.monotonic()) * 1000))
        return self._read(b">", block=min(self.block_ms, until_claim))

    def _read(self, start: bytes, block: int | None) -> list[Entry]:
        reply = self._redis.xreadgroup(
            self.group, self.consumer, {self.stream: start}, count=self.batch_size, block=block
        )
        entries: list[Entry] = []
        for _stream, items in reply or ():
            entries.extend(Entry(entry_id, fields) for entry_id, fields in items)
        return entries

    def _claim(self) -> list[Entry]:
        reply = self._redis.xautoclaim(
            self.stream,
            self.group,
            self.consumer,
            min_idle_time=self.claim_idle_ms,
            start_id="0-0",
            count=self.batch_size,
        )
        _next, claimed, *_deleted = reply  # Redis 6.2 sends 2 items, 7.0 sends 3
        return [Entry(entry_id, fields) for entry_id, fields in claimed]

    def _with_delivery_counts(self, entries: list[Entry]) -> list[Entry]:
        """Ask Redis how often each of our pending entries was delivered (ids ascend)."""
        details = self._redis.xpending_range(
            self.stream,
            self.group,
            min=entries[0].entry_id,
            max=entries[-1].entry_id,
            count=len(entries),
            consumername=self.consumer,
        )
        counts = {item["message_id"]: item["times_delivered"] for item in details}
        for entry in entries:
            entry.deliveries = counts.get(entry.entry_id, entry.deliveries)
        return entries

    def _sort(
        self, entries: Sequence[Entry]
    ) -> tuple[list[Entry], list[bytes], list[tuple[Entry, str]]]:
        """Split a batch into (entries to ack after writing, their events, dead letters with
        reasons)."""
        good: list[Entry] = []
        events: list[bytes] = []
        dead: list[tuple[Entry, str]] = []
        for entry in entries:
            if entry.deliveries > self.max_deliveries:
                dead.append((entry, f"delivered {entry.deliveries} times"))
                continue
            if not entry.fields:
                dead.append((entry, "entry has no fields (deleted or trimmed)"))
                continue
            data = entry.fields.get(EVENT_FIELD)
            if data is None:
                dead.append((entry, "entry has no 'event' field"))
                continue
            if len(data) > MAX_ENTRY_BYTES:
                dead.append((entry, f"event of {len(data)} bytes is over {MAX_ENTRY_BYTES}"))
                continue
            try:
                parsed = orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                dead.append((entry, f"event is not valid JSON: {exc}"))
                continue
            if not isinstance(parsed, dict):
                dead.append((entry, "event is not a JSON object"))
                continue
            good.append(entry)
            events.append(data)
        return good, events, dead

    def _dead_letter(self, dead: list[tuple[Entry, str]]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for entry, reason in dead:
            fields: dict[bytes | str, Any] = {
                "reason": reason,
                "source_stream": self.stream,
                "source_id": entry.entry_id,
                "deliveries": entry.deliveries,
                "consumer": self.consumer,
            }
            raw = (entry.fields or {}).get(EVENT_FIELD)
            if raw is not None and len(raw) <= MAX_ENTRY_BYTES:
                fields[EVENT_FIELD] = raw
            pipe.xadd(self.dead_letter_stream, fields)
        pipe.xack(self.stream, self.group, *(entry.entry_id for entry, _ in dead))
        pipe.execute()
        self.metrics.inc("consumer.dead_letters", len(dead))
        _internal.warning(
            "consumer %s: %d entries moved to %s (first: %s)",
            self.name,
            len(dead),
            self.dead_letter_stream,
            dead[0][1],
        )
