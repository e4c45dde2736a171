"""The pipeline's own numbers: counters, gauges, and one registry per process.

Counters live in :class:`Metrics` objects (one per handler, one per consumer) as plain
integers behind one lock, exact when many threads count at once. The two that every
request bumps (its sampling outcome) are ``itertools.count`` objects instead: ``next()``
on one is a single C call under the GIL, so the request path takes no lock for them;
``events.seen`` is their sum. Counter names are dotted — the family, then a label value
when the family has one: ``events.kept.error``, ``dropped.queue_overflow``,
``written.<sink name>``.

Gauges (queue depth, circuit breakers, consumer lag) are read when asked for, from the
objects that own them. :func:`samples` merges everything of the process into one list,
:func:`snapshot` into a plain nested dict; ``wide_logging.prometheus`` exposes the same
samples to Prometheus. :data:`FAMILIES` is the catalogue (docs/metrics.md lists it).
"""

from __future__ import annotations

import functools
import itertools
import threading
import weakref
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Family:
    """One metric: its counter prefix, Prometheus name, kind, help and label."""

    prefix: str
    name: str
    kind: str  # "counter" or "gauge"
    help: str
    label: str | None = None
    #: Where it goes in ``snapshot()``; "{}" stands for the label value.
    path: tuple[str, ...] = ()
    scale: float = 1.0


FAMILIES: tuple[Family, ...] = (
    Family("events.seen", "events_seen_total", "counter",
           "Finished events put through the sampler.", path=("events", "seen")),
    Family("events.kept", "events_kept_total", "counter",
           "Events kept, by the sampling rule that kept them.", "rule", ("events", "kept", "{}")),
    Family("events.sampled_out", "events_sampled_out_total", "counter",
           "Events dropped by sampling, by rule.", "rule", ("events", "sampled_out", "{}")),
    Family("events.lost", "events_lost_total", "counter",
           "Kept events that will not reach the store (dropped or dead-lettered), by the rule "
           "that kept them: re-weighted counts of a rule are low by this many.",
           "rule", ("events", "lost", "{}")),
    Family("sampler_errors", "sampler_errors_total", "counter",
           "Events the configured sampler could not decide (it raised): the built-in "
           "policy decided them.", path=("sampler_errors",)),
    Family("annotations_refused", "annotations_refused_total", "counter",
           "App annotations refused because the field is the library's, by field.",
           "field", ("annotations_refused", "{}")),
    Family("written", "sink_written_events_total", "counter",
           "Events written, by sink.", "sink", ("sinks", "{}", "written")),
    Family("batches", "sink_batches_total", "counter",
           "Batches written, by sink.", "sink", ("sinks", "{}", "batches")),
    Family("write_us", "sink_write_seconds_total", "counter",
           "Time spent in successful batch writes, by sink (divide by batches for the mean).",
           "sink", ("sinks", "{}", "write_seconds"), scale=1e-6),
    Family("retries", "sink_retries_total", "counter",
           "Batch write retries, by sink.", "sink", ("sinks", "{}", "retries")),
    Family("write_failures", "sink_failed_batches_total", "counter",
           "Batches that failed every attempt on a sink.",
           "sink", ("sinks", "{}", "failed_batches")),
    Family("timeouts", "sink_timeouts_total", "counter",
           "Writes a sink did not answer within sink_timeout (the sink is then skipped).",
           "sink", ("sinks", "{}", "timeouts")),
    Family("dead_letters", "sink_dead_letters_total", "counter",
           "Events a sink refused for good, kept in the dead-letter file, by sink.",
           "sink", ("sinks", "{}", "dead_letters")),
    Family("circuit_open", "sink_circuit_open", "gauge",
           "1 while the sink's circuit breaker is open (the sink is skipped).",
           "sink", ("sinks", "{}", "circuit_open")),
    Family("spooled", "spooled_events_total", "counter",
           "Events appended to the spool, by reason.", "reason", ("spooled", "{}")),
    Family("replayed", "replayed_events_total", "counter",
           "Spooled events replayed into the primary sink.", path=("replayed",)),
    Family("dropped", "dropped_events_total", "counter",
           "Events given up, by reason.", "reason", ("dropped", "{}")),
    Family("queue.depth", "queue_events", "gauge",
           "Events waiting for the writer thread.", path=("queue", "depth")),
    Family("queue.capacity", "queue_capacity_events", "gauge",
           "Most events the queue holds (queue_size).", path=("queue", "capacity")),
    Family("queue.bytes", "queue_bytes", "gauge",
           "Memory of the events waiting for the writer thread (encoded bytes + per-event "
           "overhead).", path=("queue", "bytes")),
    Family("queue.capacity_bytes", "queue_capacity_bytes", "gauge",
           "Most memory the queue holds (queue_bytes).", path=("queue", "capacity_bytes")),
    Family("cache.hits", "cache_hits_total", "counter",
           "Cache lookups that found a value, by cache.", "cache", ("caches", "{}", "hits")),
    Family("cache.misses", "cache_misses_total", "counter",
           "Cache lookups that found nothing (or could not ask the store), by cache.",
           "cache", ("caches", "{}", "misses")),
    Family("cache.errors", "cache_errors_total", "counter",
           "Cache store calls that failed (the app saw a miss or a skipped write), by cache.",
           "cache", ("caches", "{}", "errors")),
    Family("consumer.written", "consumer_written_events_total", "counter",
           "Events a stream consumer wrote to its sink (counted when the sink took them; an "
           "entry written again after a failed acknowledgement counts again).",
           path=("consumer", "written")),
    Family("consumer.claimed", "consumer_claimed_entries_total", "counter",
           "Entries claimed from consumers that stopped acknowledging.",
           path=("consumer", "claimed")),
    Family("consumer.dead_letters", "consumer_dead_letters_total", "counter",
           "Entries moved to the dead-letter stream.", path=("consumer", "dead_letters")),
    Family("consumer.write_failures", "consumer_failed_batches_total", "counter",
           "Consumer batches the sink refused (retried later).",
           path=("consumer", "failed_batches")),
    Family("consumer.errors", "consumer_errors_total", "counter",
           "Consumer errors talking to Redis.", path=("consumer", "errors")),
    Family("consumer.pending", "consumer_pending_entries", "gauge",
           "Entries delivered to the consumer group and not yet acknowledged "
           "(all shards' on a Redis Cluster).",
           path=("consumer", "pending")),
    Family("consumer.lag", "consumer_lag_entries", "gauge",
           "Entries in the stream not yet delivered to the group (Redis >= 7; all "
           "shards' on a Redis Cluster).",
           path=("consumer", "lag")),
)  # fmt: skip
#: Longest prefix first, so ``events.kept`` wins over a shorter prefix of it.
_BY_PREFIX = sorted(FAMILIES, key=lambda f: len(f.prefix), reverse=True)

#: One measured value: family, label value (or None), value.
Sample = tuple[Family, "str | None", float]


@functools.lru_cache(maxsize=4096)  # names repeat at every scrape; bounded all the same
def family_of(name: str) -> tuple[Family, str | None] | None:
    """The family of a flat counter name and its label value; None when it has none."""
    for family in _BY_PREFIX:
        if name == family.prefix:
            # "spooled" alone is the sum of "spooled.<reason>": a labelled family skips it
            return None if family.label else (family, None)
        if family.label and name.startswith(family.prefix + "."):
            return family, name[len(family.prefix) + 1 :]
    return None


def _value(counter: itertools.count[int]) -> int:
    """The next value ``counter`` would give (= how often it was advanced), without advancing."""
    return int(repr(counter)[6:-1])  # repr is "count(N)"


def _first_use(counters: dict[str, itertools.count[int]], name: str) -> itertools.count[int]:
    """The counter ``name`` of ``counters``, created on its first use. ``setdefault`` is one
    step: two threads creating it at once get the same counter, no lock needed."""
    return counters.setdefault(name, itertools.count())


def _values(counters: dict[str, itertools.count[int]]) -> dict[str, int]:
    """What the counters of ``counters`` have counted, those above zero."""
    return {name: value for name, counter in list(counters.items()) if (value := _value(counter))}


class GaugeSource(Protocol):
    def gauges(self) -> Iterable[tuple[str, float]]:
        """Flat gauge names (``queue.depth``, ``circuit_open.<sink>``) and their values."""
        ...


class Metrics:
    """The counters of one handler or consumer; registered with the process registry."""

    __slots__ = ("__weakref__", "_counts", "_decisions", "_lock", "_tallies")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._decisions: dict[str, itertools.count[int]] = {}
        self._tallies: dict[str, itertools.count[int]] = {}
        _counter_sources.add(self)

    def inc(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def tally(self, name: str) -> None:
        """``inc(name)`` without any lock, for counts taken where the app's code runs
        (``annotate()``, from a signal handler too: it must never wait on a lock that its
        own thread holds, one level down the stack)."""
        try:
            next(self._tallies[name])
        except KeyError:
            next(_first_use(self._tallies, name))

    def record_decision(self, counter: str) -> None:
        """One sampled event: the decision's own counter goes up (and so ``events.seen``).
        Lock-free as ``tally()``: it runs for every request."""
        try:
            next(self._decisions[counter])
        except KeyError:
            next(_first_use(self._decisions, counter))

    def get(self, name: str) -> int:
        return self.snapshot().get(name, 0)

    def snapshot(self) -> dict[str, int]:
        """These counters, flat: ``{"events.seen": 10, "written.file:...": 7, ...}``."""
        with self._lock:
            values = dict(self._counts)
        decisions = _values(self._decisions)
        values.update(decisions)
        if decisions:  # every event gets exactly one decision
            values["events.seen"] = sum(decisions.values())
        for name, value in _values(self._tallies).items():
            values[name] = values.get(name, 0) + value
        return values

    def reset(self) -> None:
        """Start from zero (a forked child is a new process with its own numbers)."""
        self._lock = threading.Lock()
        self._counts = Counter()
        self._decisions = {}
        self._tallies = {}


_counter_sources: weakref.WeakSet[Metrics] = weakref.WeakSet()
_gauge_sources: weakref.WeakSet[Any] = weakref.WeakSet()


def unregister_counters(source: Metrics) -> None:
    """Leave the process registry (a closed handler's numbers stop being reported)."""
    _counter_sources.discard(source)


def register_gauges(source: GaugeSource) -> None:
    """Have ``source.gauges()`` read whenever the process's metrics are collected."""
    _gauge_sources.add(source)


def unregister_gauges(source: GaugeSource) -> None:
    _gauge_sources.discard(source)


def samples() -> list[Sample]:
    """Every metric of this process: counters summed over handlers and consumers, gauges
    summed over their owners (queues) or reported per label (circuit breakers)."""
    totals: dict[tuple[Family, str | None], float] = {}
    for metrics in list(_counter_sources):
        for name, value in metrics.snapshot().items():
            found = family_of(name)
            if found is not None:
                totals[found] = totals.get(found, 0) + value
    for source in list(_gauge_sources):
        try:
            gauges = list(source.gauges())
        except Exception:  # a gauge that cannot be read now is left out, never fatal
            continue
        for name, value in gauges:
            found = family_of(name)
            if found is not None:
                totals[found] = totals.get(found, 0) + value
    return [(family, label, value * family.scale) for (family, label), value in totals.items()]


def snapshot() -> dict[str, Any]:
    """All of this process's metrics as a plain nested dict (see docs/metrics.md)."""
    out: dict[str, Any] = {
        "events": {"seen": 0, "kept": {}, "sampled_out": {}, "lost": {}},
        "queue": {"depth": 0, "capacity": 0, "bytes": 0, "capacity_bytes": 0},
        "sinks": {},
        "spooled": {},
        "replayed": 0,
        "dropped": {},
    }
    for family, label, value in samples():
        path = [label if part == "{}" else part for part in family.path]
        node = out
        for part in path[:-1]:
            node = node.setdefault(str(part), {})
        node[str(path[-1])] = value if family.scale != 1.0 else int(value)
    events = out["events"]
    kept, dropped = events["kept"].get("normal", 0), events["sampled_out"].get("normal", 0)
    events["normal_retention"] = kept / (kept + dropped) if kept + dropped else None
    # What to multiply a rule's re-weighted count from the store by, when some of its
    # kept events never got there (docs/sampling.md, "When events were lost").
    events["correction"] = {
        rule: events["kept"][rule] / (events["kept"][rule] - lost)
        for rule, lost in events["lost"].items()
        if lost and events["kept"].get(rule, 0) > lost
    }
    for numbers in out.get("caches", {}).values():
        lookups = numbers.get("hits", 0) + numbers.get("misses", 0)
        numbers["hit_rate"] = numbers.get("hits", 0) / lookups if lookups else None
    return out
