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

On a Redis Cluster (``redis+cluster://...?shards=N``, the sink's URL) the stream is N keys,
each with its own consumer group, pending lists and dead letters (``KEY:dead``, in the
key's slot). A turn takes one shard's batch, the shards in turn, so every consumer reads
every shard and the group of each shard shares its entries among them; when a look at every
shard finds nothing new, the consumer blocks on one shard at a time for a slice of
``block_ms`` (a blocking read cannot span slots) until one has entries, so a new entry
waits at most about ``block_ms`` and a quiet stream costs a few reads a second per shard.

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import orjson

from ._chain import failure_kind
from ._config import service_fields
from ._errors import ConfigurationError, check_number
from ._redis import ERRORS, EVENT_FIELD, connect, redis, stream_layout
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

_T = TypeVar("_T")

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


@dataclass
class Shard:
    """One stream key and what the consumer knows of it."""

    key: str
    dead_letters: str
    #: Read our own pending entries first (at start, and after a Redis error).
    pending_first: bool = True
    #: Not before this (monotonic) time look for a dead consumer's entries again.
    next_claim: float = 0.0
    #: Its stream and our group on it are known to exist.
    grouped: bool = False
    #: Redis errors on it in a row, and until when it rests (its node is down, failing
    #: over): the other shards go on meanwhile.
    failures: int = 0
    rest_until: float = 0.0


class StreamConsumer:
    """Reads ``stream`` as consumer ``consumer`` of ``group`` and writes to ``sink``.

    ``stream`` (and ``shards``, on a cluster) default to the URL's ``?stream=`` and
    ``?shards=``, then to the sink's defaults: give the consumer the sink's URL."""

    def __init__(
        self,
        redis_url: str,
        sink: str | Sink,
        *,
        stream: str | None = None,
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
        shards: int | None = None,
    ) -> None:
        for name, value in (
            ("batch_size", batch_size),
            ("block_ms", block_ms),
            ("claim_idle_ms", claim_idle_ms),
            ("max_deliveries", max_deliveries),
        ):
            check_number(name, value, 1, integer=True)
        if not group or stream == "":
            msg = "stream and group names must not be empty"
            raise ConfigurationError(msg)
        layout = stream_layout(redis_url, stream, shards)
        self.stream = layout.stream
        self.shards = [
            Shard(key, layout.dead_letter_key(key, dead_letter_stream)) for key in layout.keys
        ]
        self.group = group
        #: service/host/process of the events this consumer writes itself (incidents)
        self._resource = Resource(service_fields(service))
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.batch_size = batch_size
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.max_deliveries = max_deliveries
        self.retry_backoff = retry_backoff
        self.sink = open_sink(sink)
        self.metrics = Metrics()
        # The blocking read must outlast block_ms, or every idle read would time out.
        self._redis = connect(
            layout.url, socket_timeout=socket_timeout + block_ms / 1000, connect_timeout=5.0
        )
        where = (
            self.stream if len(self.shards) == 1 else f"{self.stream}:{{0..{len(self.shards) - 1}}}"
        )
        self.name = f"{mask_url(layout.url)}#{where}/{group}/{self.consumer}"
        #: Live incident aggregation over what this consumer writes (None: off). Window
        #: counters live in the same Redis, so every consumer of the group adds up.
        self.incidents = (
            IncidentAggregator(self._emit_incident, incident_rules, redis_url=layout.url)
            if incident_rules
            else None
        )
        self._stop = threading.Event()
        self._group_info: tuple[float, list[tuple[str, float]]] = (0.0, [])
        register_gauges(self)
        #: A batch the sink failed (its shard, entries, events), written again before
        #: anything new is read.
        self._retry: tuple[Shard, list[Entry], list[bytes]] | None = None
        #: The sink has taken a write: a refusal is then about the events, not the sink.
        self._sink_ok = False
        self._failures = 0
        self._turn = 0  # the shard a turn looks at first
        #: A look at every shard found nothing new: wait on one at a time until one has some.
        self._idle = False

    # -- control -----------------------------------------------------------------------

    def ensure_group(self, shards: Sequence[Shard] | None = None) -> None:
        """Create each shard's stream and group if missing (an existing group is fine)."""
        for shard in self.shards if shards is None else shards:
            try:
                self._redis.xgroup_create(shard.key, self.group, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            shard.grouped = True

    def stop(self) -> None:
        """Finish the batch in flight, then return from ``run()``."""
        self._stop.set()

    def run(self) -> None:
        """Consume until ``stop()``; Redis or sink outages are waited out, never fatal
        (a shard whose node is down rests, the others go on)."""
        while not self._stop.is_set():
            try:
                self.process_once()
                if self.incidents is not None:
                    self.incidents.tick()
            except ERRORS as exc:  # (the incident windows' Redis)
                self._failed(exc)
        self.sink.close()
        unregister_gauges(self)
        unregister_counters(self.metrics)
        self._redis.close()

    def _on_shard(self, shard: Shard, work: Callable[[], _T]) -> _T | None:
        """Do ``work`` (Redis commands on ``shard``), its stream and group made first if
        need be. A Redis error rests the shard and gives None: a node that is down or
        failing over holds up its own shards only."""
        try:
            if not shard.grouped:
                self.ensure_group([shard])
            result = work()
        except redis.ResponseError as exc:
            if "NOGROUP" in str(exc):  # its stream was deleted: made again next time
                shard.grouped = False
                return None
            self._shard_failed(shard, exc)
            return None
        except redis.exceptions.RedisClusterException as exc:  # no node answers at all
            self._shard_failed(shard, exc, peers=self.shards)
            return None
        except ERRORS as exc:
            self._shard_failed(shard, exc)
            return None
        shard.failures = 0
        return result

    def _shard_failed(
        self, shard: Shard, exc: Exception, peers: Sequence[Shard] | None = None
    ) -> None:
        """``shard`` failed: it rests, and so does every shard of the same node (``peers``
        when the caller knows them) — a node that does not answer costs a timeout per
        try, and trying its shards one after another held up the others."""
        shard.failures += 1
        pause = self._pause(shard.failures)
        if peers is None:
            node = self._node_of(shard)
            peers = [s for s in self.shards if node is not None and self._node_of(s) == node]
        for each in {id(s): s for s in (shard, *peers)}.values():
            # Redis restarted (from its AOF), or failed over: our own unacknowledged
            # entries are back in its pending list; take them first, not after the claim
            # idle time.
            each.pending_first = True
            each.failures = shard.failures
            each.rest_until = time.monotonic() + pause
        self.metrics.inc("consumer.errors")
        where = "" if len(self.shards) == 1 else f" (shard {shard.key})"
        _internal.warning(
            "consumer %s%s: %s: %s",
            self.name,
            where,
            type(exc).__name__,
            mask_credentials(str(exc))[:300],
        )

    def _node_of(self, shard: Shard) -> str | None:
        """The node (host:port) the cluster's slot map names for the shard's key; None on
        a single Redis (one shard), or when the map cannot say."""
        if len(self.shards) == 1:
            return None
        try:
            return str(self._redis.get_node_from_key(shard.key).name)
        except Exception:  # no map (yet), or the slot is not covered
            return None

    def _backoff(self) -> float:
        self._failures += 1
        return self._pause(self._failures)

    def _pause(self, failures: int) -> float:
        """How long to wait after ``failures`` failures in a row: doubling, at most 10 s."""
        return float(min(self.retry_backoff * 2 ** min(failures - 1, 6), 10.0))

    def _failed(self, exc: Exception) -> None:
        self.metrics.inc("consumer.errors")
        _internal.warning(
            "consumer %s: %s: %s", self.name, type(exc).__name__, mask_credentials(str(exc))[:300]
        )
        self._stop.wait(self._backoff())

    def gauges(self) -> list[tuple[str, float]]:
        """Pending entries and lag of the group (asked of Redis at most once a second)."""
        asked_at, cached = self._group_info
        if time.monotonic() - asked_at < 1.0:
            return cached
        pending = 0.0
        lag: float | None = None
        for shard in self.shards:
            try:
                groups = self._redis.xinfo_groups(shard.key)
            except ERRORS:  # not made yet, or its node is down: nothing to say of it now
                continue
            for group in groups:
                name = group["name"]
                if (name.decode() if isinstance(name, bytes) else name) == self.group:
                    pending += float(group["pending"])
                    if group.get("lag") is not None:  # Redis >= 7
                        lag = (lag or 0.0) + float(group["lag"])
        gauges = [("consumer.pending", pending)]
        if lag is not None:
            gauges.append(("consumer.lag", lag))
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
            shard, good, events = self._retry
            size = len(good)
        else:
            shard, entries = self._next_entries()
            if not entries:
                return 0
            size = len(entries)
            good, events, dead = self._sort(entries)
            if dead:  # (if that fails, they stay pending: read and sorted again later)
                self._on_shard(shard, lambda: self._dead_letter(shard, dead))
        if events:
            try:
                good, events = self._write(shard, good, events)
            except Exception as exc:
                self._retry = (shard, good, events)
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
                ids = [entry.entry_id for entry in good]
                self._on_shard(shard, lambda: self._redis.xack(shard.key, self.group, *ids))
            if self.incidents is not None:
                for data in events:
                    self.incidents.observe(orjson.loads(data))
        self._failures = 0
        return size

    def _write(
        self, shard: Shard, good: list[Entry], events: list[bytes]
    ) -> tuple[list[Entry], list[bytes]]:
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
                shard,
                [(good[i], f"refused by {self.sink.name}: {r}") for i, r in refused.items()],
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

    def _next_entries(self) -> tuple[Shard, list[Entry]]:
        """The next batch and its shard: our own pending entries first, then a dead
        consumer's, then new ones — each looked for on every shard that is not resting,
        from the one after the shard of the last turn, so that a busy shard does not
        starve the others."""
        rotated = self.shards[self._turn :] + self.shards[: self._turn]
        self._turn = (self._turn + 1) % len(self.shards)
        now = time.monotonic()
        order = [shard for shard in rotated if shard.rest_until <= now]
        if not order:  # every shard's node is down: wait for the first to be tried again
            self._stop.wait(min(shard.rest_until for shard in rotated) - now)
            return rotated[0], []
        for shard in order:
            if shard.pending_first:
                entries = self._on_shard(shard, partial(self._read, shard, b"0", None))
                if entries:
                    return shard, self._with_delivery_counts(shard, entries)
                if entries is not None:
                    shard.pending_first = False
        for shard in order:
            if now >= shard.next_claim and shard.rest_until <= now:
                shard.next_claim = now + min(self.claim_idle_ms / 1000 / 4, CLAIM_CHECK_EVERY)
                claimed = self._on_shard(shard, partial(self._claim, shard))
                if claimed:
                    self.metrics.inc("consumer.claimed", len(claimed))
                    return shard, self._with_delivery_counts(shard, claimed)
        if len(order) > 1 and not self._idle:
            for shard in order:
                if shard.rest_until <= now:
                    entries = self._on_shard(shard, partial(self._read, shard, b">", None))
                    if entries:
                        return shard, entries
            self._idle = True
        # Nothing anywhere (or nothing lately): wait on one shard, in turn, for a slice of
        # block_ms and never past the next look for a dead consumer's entries; what it
        # finds ends the idleness (the next turn looks at every shard again).
        ready = [shard for shard in order if shard.rest_until <= time.monotonic()]
        if not ready:  # (what was ready at the start of the turn failed since)
            return order[0], []
        shard = ready[0]
        slice_ms = max(10, self.block_ms // len(order))
        next_look = min(other.next_claim for other in order)
        until_claim = max(1, int((next_look - time.monotonic()) * 1000))
        block = min(slice_ms, until_claim)
        entries = self._on_shard(shard, lambda: self._read(shard, b">", block))
        self._idle = not entries
        return shard, entries or []

    def _read(self, shard: Shard, start: bytes, block: int | None) -> list[Entry]:
        reply = self._redis.xreadgroup(
            self.group, self.consumer, {shard.key: start}, count=self.batch_size, block=block
        )
        entries: list[Entry] = []
        for _stream, items in reply or ():
            entries.extend(Entry(entry_id, fields) for entry_id, fields in items)
        return entries

    def _claim(self, shard: Shard) -> list[Entry]:
        reply = self._redis.xautoclaim(
            shard.key,
            self.group,
            self.consumer,
            min_idle_time=self.claim_idle_ms,
            start_id="0-0",
            count=self.batch_size,
        )
        _next, claimed, *_deleted = reply  # Redis 6.2 sends 2 items, 7.0 sends 3
        return [Entry(entry_id, fields) for entry_id, fields in claimed]

    def _with_delivery_counts(self, shard: Shard, entries: list[Entry]) -> list[Entry]:
        """Ask Redis how often each of our pending entries was delivered (ids ascend); if
        it cannot say now, they count as delivered once more than it last said."""
        details = self._on_shard(shard, lambda: self._pending_details(shard, entries)) or []
        counts = {item["message_id"]: item["times_delivered"] for item in details}
        for entry in entries:
            entry.deliveries = counts.get(entry.entry_id, entry.deliveries)
        return entries

    def _pending_details(self, shard: Shard, entries: list[Entry]) -> list[dict[str, Any]]:
        details: list[dict[str, Any]] = self._redis.xpending_range(
            shard.key,
            self.group,
            min=entries[0].entry_id,
            max=entries[-1].entry_id,
            count=len(entries),
            consumername=self.consumer,
        )
        return details

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

    def _dead_letter(self, shard: Shard, dead: list[tuple[Entry, str]]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for entry, reason in dead:
            fields: dict[bytes | str, Any] = {
                "reason": reason,
                "source_stream": shard.key,
                "source_id": entry.entry_id,
                "deliveries": entry.deliveries,
                "consumer": self.consumer,
            }
            raw = (entry.fields or {}).get(EVENT_FIELD)
            if raw is not None and len(raw) <= MAX_ENTRY_BYTES:
                fields[EVENT_FIELD] = raw
            pipe.xadd(shard.dead_letters, fields)
        pipe.xack(shard.key, self.group, *(entry.entry_id for entry, _ in dead))
        pipe.execute()
        self.metrics.inc("consumer.dead_letters", len(dead))
        _internal.warning(
            "consumer %s: %d entries moved to %s (first: %s)",
            self.name,
            len(dead),
            shard.dead_letters,
            dead[0][1],
        )
