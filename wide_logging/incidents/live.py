"""Incidents as events pass: rules applied to each event (in a stream consumer, or in the
app's writer thread), ``kind: incident`` events when an incident opens, escalates (its count
doubles) and resolves. With a Redis URL the window counters are shared by every instance, so
a burst spread over four processes still opens exactly one incident."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..typing import EventDict
from .insight import (
    MAX_AFFECTED,
    MAX_MESSAGES,
    MAX_TEXT,
    Member,
    RollingBaseline,
    affected_names,
    differences,
    members_of,
    templates,
)
from .rules import DEFAULT_RULES, Rule, lookup
from .summary import event_time, event_weight, failed, iso_time


class _MemoryWindows:
    """Per-process window counters and open-incident markers."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._times: dict[str, deque[float]] = {}
        self._open_until: dict[str, float] = {}
        self._clock = clock
        self._lock = threading.Lock()

    def add(self, key: str, now: float, window: float) -> int:
        with self._lock:
            times = self._times.setdefault(key, deque())
            times.append(now)
            while times and now - times[0] > window:
                times.popleft()
            return len(times)

    def claim(self, key: str, ttl: float) -> bool:
        """Mark ``key`` open unless it is (like Redis's ``SET NX``): one opener."""
        with self._lock:
            now = self._clock()
            if now < self._open_until.get(key, 0.0):
                return False
            self._open_until[key] = now + ttl
            return True

    def keep_open(self, key: str, ttl: float) -> None:
        self._open_until[key] = self._clock() + ttl

    def is_open(self, key: str) -> bool:
        return self._clock() < self._open_until.get(key, 0.0)


class _RedisWindows:
    """Window counters shared by every instance: 10 buckets per window, INCR + EXPIRE."""

    def __init__(self, url: str) -> None:
        from .._redis import connect

        self._client = connect(url, socket_timeout=1.0, connect_timeout=1.0)

    def add(self, key: str, now: float, window: float) -> int:
        width = window / 10
        bucket = int(now // width)
        pipe = self._client.pipeline(transaction=False)
        pipe.incr(f"{key}:{bucket}")
        pipe.expire(f"{key}:{bucket}", int(window * 2) + 1)
        for old in range(bucket - 9, bucket):
            pipe.get(f"{key}:{old}")
        results = pipe.execute()
        return int(results[0]) + sum(int(v) for v in results[2:] if v is not None)

    def claim(self, key: str, ttl: float) -> bool:
        return bool(self._client.set(f"{key}:open", "1", nx=True, px=int(ttl * 1000)))

    def keep_open(self, key: str, ttl: float) -> None:
        self._client.pexpire(f"{key}:open", int(ttl * 1000))

    def is_open(self, key: str) -> bool:
        return bool(self._client.exists(f"{key}:open"))


@dataclass
class _Open:
    rule: Rule
    group: dict[str, Any]
    first_seen: float
    last_seen: float
    count: int
    announced: int
    examples: list[str]
    #: The first ``MAX_MESSAGES`` error messages since it opened (its templates).
    messages: list[str] = field(default_factory=list)
    #: Distinct users (or tenants) named by its events, up to ``MAX_AFFECTED``.
    affected: dict[str, set[str]] = field(default_factory=dict)
    #: Its latest ``MAX_MESSAGES`` events as compared with the traffic (what is different:
    #: the latest, so that a long incident is compared with the hour it is in).
    members: deque[Member] = field(default_factory=lambda: deque(maxlen=MAX_MESSAGES))
    #: When it opened, by the aggregator's clock (the slot before is "just before").
    opened_at: float = 0.0
    #: The same incident (rule and group) opened before in this aggregator's life.
    recurring: bool = False
    routes: set[str] = field(default_factory=set)

    def add(self, event: Mapping[str, Any]) -> None:
        route = lookup(event, "http.route")
        if isinstance(route, str) and len(self.routes) < 5:
            self.routes.add(route)
        self.members.extend(members_of([event], [event_weight(event)]))
        message = lookup(event, "error.message")
        if isinstance(message, str) and len(self.messages) < MAX_MESSAGES:
            self.messages.append(message[:MAX_TEXT])  # (all the normaliser reads)
        for who, names in affected_names(event).items():
            seen = self.affected.setdefault(who, set())
            if len(seen) < MAX_AFFECTED:
                seen.update(name[:200] for name in names)


class IncidentAggregator:
    """Applies rules to events as they pass and emits ``kind: incident`` events.

    ``emit`` receives each incident event (a dict): when an incident opens, when its count
    reaches twice the last announced count (escalates), and when ``quiet`` seconds pass
    without a matching event (resolves; checked by :meth:`tick`). ``redis_url`` shares the
    window counters between processes; only the process that opened an incident announces
    its escalations and resolution.
    """

    def __init__(
        self,
        emit: Callable[[EventDict], None],
        rules: Sequence[Rule] = DEFAULT_RULES,
        *,
        redis_url: str | None = None,
        namespace: str = "wide_logging:incidents",
        clock: Callable[[], float] = time.time,
        compare: bool = True,
    ) -> None:
        self.emit = emit
        self.rules = tuple(rules)
        self.namespace = namespace
        self.clock = clock
        self._windows: _MemoryWindows | _RedisWindows = (
            _RedisWindows(redis_url) if redis_url else _MemoryWindows(clock)
        )
        self._open: dict[str, _Open] = {}
        #: Incidents opened before (their keys): an incident opening again is recurring.
        self._opened_before: set[str] = set()
        #: The recent traffic each incident is compared with (what is different); None:
        #: not compared (``compare=False`` saves ~4 µs of each request event).
        self._baseline = RollingBaseline() if compare else None
        # One lock per stripe of incidents: one incident's Redis calls wait for no other's.
        self._locks = tuple(threading.Lock() for _ in range(64))
        # Announcements leave one at a time, in order (reentrant: an emit that observes).
        self._emitting = threading.RLock()

    def observe(self, event: Mapping[str, Any]) -> None:
        now = event_time(event) or self.clock()
        if self._baseline is not None and event.get("kind") == "http.request":
            # (slotted by when it passes, not by its own time: a client's clock ahead or
            # behind must not empty the baseline, nor open slots without end)
            self._baseline.add(event, event_weight(event), self.clock(), failed(event))
        for rule in self.rules:
            if not rule.matches(event):
                continue
            group_values = rule.group_of(event)
            digest = hashlib.blake2b(repr(group_values).encode(), digest_size=8).hexdigest()
            key = f"{self.namespace}:{rule.name}:{digest}"
            # An incident's state moves under its lock, its window and marker included:
            # done outside it, an event between a claim and the open incident, or a tick
            # between an event and its keep_open, lost or double-counted events or left a
            # marker with no incident. Announcements go out in the order their states
            # were reached, outside it.
            with self._locks[hash(key) % len(self._locks)]:
                count = self._windows.add(key, now, rule.window)
                announcement = self._advance(key, rule, group_values, count, now, event)
                if announcement is None:
                    continue
                self._emitting.acquire()  # before the state lock is released: in order
            try:
                self.emit(announcement)
            finally:
                self._emitting.release()

    def _advance(
        self,
        key: str,
        rule: Rule,
        group_values: tuple[Any, ...],
        count: int,
        now: float,
        event: Mapping[str, Any],
    ) -> EventDict | None:
        """The incident's next state after one more matching event; what to announce."""
        request_id = str(event["request_id"]) if event.get("request_id") else None
        current = self._open.get(key)
        if current is not None:
            current.add(event)
            current.count += 1
            current.last_seen = now
            if len(current.examples) < 5 and request_id:
                current.examples.append(request_id)
            self._windows.keep_open(key, rule.quiet)
            if count >= 2 * current.announced:  # the shared window count doubled
                current.announced = count
                return _incident_event("escalated", current, self._baseline)
            return None
        if count < rule.threshold:
            return None
        if not self._windows.claim(key, rule.quiet):
            self._windows.keep_open(key, rule.quiet)  # another process opened it
            return None
        group = dict(zip(rule.group_by, group_values, strict=True))
        opened = _Open(rule, group, now, now, count, count, [request_id] if request_id else [])
        opened.add(event)
        opened.recurring = key in self._opened_before
        opened.opened_at = self.clock()
        if len(self._opened_before) < 100_000:
            self._opened_before.add(key)
        self._open[key] = opened
        return _incident_event("opened", opened, self._baseline)

    def tick(self) -> None:
        """Resolve incidents that have been quiet long enough (call every few seconds)."""
        for key in list(self._open):
            with self._locks[hash(key) % len(self._locks)]:
                incident = self._open.get(key)
                # the marker every matching event (in any process) keeps alive for `quiet`
                if incident is None or self._windows.is_open(key):
                    continue
                del self._open[key]
                self._emitting.acquire()
            try:
                self.emit(_incident_event("resolved", incident, self._baseline))
            finally:
                self._emitting.release()


def _incident_event(status: str, incident: _Open, baseline: RollingBaseline | None) -> EventDict:
    found, against = (
        differences(list(incident.members), baseline.merged(), exclude=incident.rule.group_by)
        if baseline is not None
        else ([], "")
    )
    return {
        "kind": "incident",
        "incident": {
            "status": status,
            "rule": incident.rule.name,
            "title": incident.rule.render_title(incident.group),
            "group": incident.group,
            "first_seen": iso_time(incident.first_seen),
            "last_seen": iso_time(incident.last_seen),
            "count": incident.count,
            "examples": list(incident.examples),
            # (of the events since it opened: the first MAX_MESSAGES messages)
            "templates": templates(incident.messages),
            "affected": {who: len(names) for who, names in incident.affected.items()},
            # (its first events since it opened, against the last hour's traffic)
            "differences": found,
            "compared_with": against,
            "recurring": incident.recurring,
            "share_before": (
                baseline.failing_before(sorted(incident.routes), incident.opened_at)
                if baseline is not None
                else None
            ),
        },
    }
