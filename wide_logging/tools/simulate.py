"""``wide-logging simulate``: what a sampling policy would keep of requests already logged.

The input is our own JSONL (written keep-all, or already sampled) or an access log (nginx,
Apache, JSON lines: ``request_logs``). Each request is decided again by
``TailSampler.decide`` — the policy's own code, read from a stored event as from a live
one (``sampling.request_facts``) — so that what is simulated is what will run. With the
deployment's sampling key (``--key`` or ``WIDE_LOGGING_SAMPLING_KEY``) and the request ids
the app saw, the decisions are the very ones the handler makes; without them, each run
draws its own share of normal traffic (the counts are then estimates, and the report says
how good).

Input that was already sampled at rate ``r`` holds only the normal requests kept at ``r``:
a lower rate is simulated among them (with the same key, exactly: the hash threshold only
shrinks); a higher one cannot be, and the report says so. Lines that are not requests are
counted and shown, never fatal. Files are streamed: memory stays flat in their size (the
per-route figures stop adding routes at ``MAX_ROUTES``).

``--budget`` needs no second pass: every normal request's place in the hash space is
tallied in ``BUCKETS`` buckets (``TailSampler.position``), so the kept share at any rate
``k / BUCKETS`` is a sum — exact, because at those rates the threshold falls on a bucket's
edge.
"""

from __future__ import annotations

import itertools
import math
import re
from array import array
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import IO, Any

from .._errors import ConfigurationError
from ..sampling import HASH_SPACE, TailSampler
from .access_logs import OTHER, Observed
from .request_logs import Requests

#: The rule whose requests are sampled (the others are always kept).
NORMAL = "normal"
ERROR_RULES = frozenset({"error", "server_error"})
#: Bytes of one stored request event when an access log is the input and no sample of real
#: events is given (``--event-size-from``): the demo's events average 620 bytes, 1,670 for
#: an error; an app that annotates user, cart and feature flags writes more, and a stack
#: trace of a deep framework more again (docs/sampling.md, "Choosing the rate").
DEFAULT_EVENT_BYTES = {"normal": 1_000, "error": 3_000}
#: Routes tracked one by one; later ones are counted together as ``OTHER_ROUTES``.
MAX_ROUTES = 1_000
OTHER_ROUTES = "(other routes)"
#: A route's re-weighted count is flagged when its expected relative error is above this.
POOR_ROUTE_ERROR = 0.10
#: How finely ``--budget`` can choose a rate: 1 / 65,536 (0.0015%).
BUCKETS = 2**16
_BUCKET_SHIFT = (HASH_SPACE // BUCKETS).bit_length() - 1
#: Request times believed: 2000-01-01 to 2100-01-01 UTC.
_PLAUSIBLE = (946_684_800.0, 4_102_444_800.0)


@dataclass
class EventSizes:
    """The bytes a request's stored event takes: measured where the input is our JSONL,
    else the mean of a sample of real events (per kind), else ``DEFAULT_EVENT_BYTES``."""

    normal: int = DEFAULT_EVENT_BYTES["normal"]
    error: int = DEFAULT_EVENT_BYTES["error"]
    source: str = "default"

    def of(self, rule: str) -> int:
        return self.error if rule in ERROR_RULES else self.normal


@dataclass
class RouteCounts:
    requests: int = 0
    errors: int = 0
    normal: int = 0


@dataclass
class Simulation:
    """What a policy keeps of the requests read (re-weighted where the input was sampled)."""

    normal_rate: float
    #: Decided with the deployment's key: the handler's very decisions, not a draw.
    keyed: bool = False
    sizes: EventSizes = field(default_factory=EventSizes)
    formats: Counter[str] = field(default_factory=Counter)
    events_in: int = 0
    events_kept: int = 0
    kept_by_rule: Counter[str] = field(default_factory=Counter)
    errors_in: int = 0
    errors_kept: int = 0
    bytes_in: int = 0
    bytes_kept: int = 0
    normal_in: int = 0
    normal_kept: int = 0
    normal_kept_bytes: int = 0
    #: Requests whose size was estimated (access logs), not read.
    estimated_sizes: int = 0
    #: Requests without a request id: their sampling key is their place in the input, so
    #: whether one is kept is this run's draw, not the handler's decision.
    without_id: int = 0
    #: Times outside 2000-2100 (a broken clock, a unit mixed up): not used for the span.
    implausible_times: int = 0
    #: Files that ended in the middle (``Requests.cut_short``).
    cut_short: list[str] = field(default_factory=list)
    #: Events of other kinds (logs, metrics, incidents): not simulated, counted apart.
    other_events: int = 0
    unparsed_lines: int = 0
    #: Where the first unparsed lines are (file and line number), to look at them.
    unparsed_examples: list[str] = field(default_factory=list)
    #: The lowest ``normal`` rate found in the input (1.0: keep-all input).
    input_normal_rate: float = 1.0
    first_seen: float | None = None
    last_seen: float | None = None
    routes: dict[str, RouteCounts] = field(default_factory=dict)
    #: Normal requests (and their bytes) by their place in the hash space (``BUCKETS``).
    hash_counts: array[int] = field(default_factory=lambda: array("q", bytes(8 * BUCKETS)))
    hash_bytes: array[int] = field(default_factory=lambda: array("q", bytes(8 * BUCKETS)))
    #: The app's requests per day (``--requests-per-day``), when the span should not say.
    requests_per_day: float | None = None
    #: Tally normal requests by their place in the hash space, for ``at_budget()``.
    for_budget: bool = False
    #: Set when the rate was chosen by ``--budget`` (bytes per day): what it asked.
    budget: int | None = None
    #: The budget allowed more than the input's own rate, the most that can be judged.
    budget_capped: bool = False

    def add(self, seen: Observed, sampler: TailSampler) -> bool:
        """Decide one request and count it; True when the policy keeps it."""
        facts = seen.facts
        decision = sampler.decide(*facts)
        rule = decision.rule
        if seen.size is None:
            size = self.sizes.of(rule)
            self.estimated_sizes += 1
        else:
            size = seen.size
        self.events_in += 1
        self.bytes_in += size
        error = rule in ERROR_RULES
        self.errors_in += error
        route = self.routes.get(seen.route)
        if route is None:
            name = seen.route if len(self.routes) < MAX_ROUTES else OTHER_ROUTES
            route = self.routes.setdefault(name, RouteCounts())
        route.requests += 1
        route.errors += error
        if rule == NORMAL:
            self.normal_in += 1
            self.normal_kept += decision.keep
            route.normal += 1
            if self.for_budget:  # (a second hash of the key: only when it is needed)
                bucket = sampler.position(facts.key) >> _BUCKET_SHIFT
                self.hash_counts[bucket] += 1
                self.hash_bytes[bucket] += size
            if seen.stored_rate is not None and 0 < seen.stored_rate < self.input_normal_rate:
                self.input_normal_rate = seen.stored_rate
        if decision.keep:
            self.events_kept += 1
            self.bytes_kept += size
            self.kept_by_rule[rule] += 1
            self.errors_kept += error
            if rule == NORMAL:
                self.normal_kept_bytes += size
        self.without_id += not seen.from_id
        moment = seen.moment
        if moment is not None and not _PLAUSIBLE[0] <= moment < _PLAUSIBLE[1]:
            self.implausible_times += 1
        elif moment is not None:
            if self.first_seen is None or moment < self.first_seen:
                self.first_seen = moment
            if self.last_seen is None or moment > self.last_seen:
                self.last_seen = moment
        return decision.keep

    @property
    def exact(self) -> bool:
        """The decisions are the handler's own: its key, the requests' ids, and a rate the
        input can show."""
        return self.keyed and not self.without_id and self.normal_rate <= self.input_normal_rate

    @property
    def always_kept_bytes(self) -> int:
        """Bytes of the requests kept whatever the rate (errors, slow, critical routes)."""
        return self.bytes_kept - self.normal_kept_bytes

    @property
    def sampled_share(self) -> float:
        """The share of the input's normal requests the rate keeps."""
        return min(1.0, self.normal_rate / self.input_normal_rate)

    def relative_error(self, requests: int, normal: int) -> float:
        """Expected relative error (one standard error) of a re-weighted count of
        ``requests``, ``normal`` of them sampled: the always-kept rules are exact; the
        normal share is a binomial sample."""
        p = self.sampled_share
        if requests == 0 or normal == 0 or p >= 1.0:
            return 0.0
        if p <= 0.0:
            return 1.0
        return math.sqrt(normal * (1 - p) / p) / requests

    @property
    def relative_error_total(self) -> float:
        return self.relative_error(self.events_in, self.normal_in)

    @property
    def days(self) -> float | None:
        """How many days of traffic the input is: its time span, or its (re-weighted)
        requests over ``requests_per_day`` when that is given."""
        if self.requests_per_day is not None:
            requests = self.events_in - self.normal_in + self.normal_in / self.input_normal_rate
            return requests / self.requests_per_day if requests else None
        if self.first_seen is None or self.last_seen is None:
            return None
        span = self.last_seen - self.first_seen
        return span / 86400 if span > 0 else None

    def at_budget(self, bytes_per_day: int) -> Simulation:
        """The same requests at the highest normal rate whose kept bytes per day fit
        ``bytes_per_day`` (0 when the always-kept requests alone do not: errors are never
        dropped to fit). The input's own rate bounds it: a higher one cannot be judged."""
        if not self.for_budget:
            msg = "at_budget() needs a simulation run with for_budget=True"
            raise ValueError(msg)
        days = self.days
        if days is None:
            msg = "--budget needs the requests' times (the input has no time span to extrapolate)"
            raise ConfigurationError(msg)
        allowed = bytes_per_day * days
        always_bytes = self.always_kept_bytes
        reachable = min(BUCKETS, math.floor(self.input_normal_rate * BUCKETS))
        spent = itertools.accumulate(self.hash_bytes[:reachable], initial=always_bytes)
        buckets = sum(1 for total in itertools.islice(spent, 1, None) if total <= allowed)
        # (accumulate only grows: the buckets that fit are a prefix)
        normal_kept = sum(self.hash_counts[:buckets])
        normal_bytes = sum(self.hash_bytes[:buckets])
        kept_by_rule = Counter(self.kept_by_rule)
        kept_by_rule[NORMAL] = normal_kept
        return replace(
            self,
            normal_rate=buckets / BUCKETS,
            normal_kept=normal_kept,
            events_kept=self.events_kept - self.kept_by_rule[NORMAL] + normal_kept,
            bytes_kept=always_bytes + normal_bytes,
            normal_kept_bytes=normal_bytes,
            kept_by_rule=+kept_by_rule,
            budget=bytes_per_day,
            budget_capped=buckets == reachable and reachable < BUCKETS,
        )

    def route_rows(self) -> list[dict[str, Any]]:
        """Each route's requests, errors, sampled (normal) requests and the expected
        relative error of its re-weighted count; the busiest first."""
        rows = []
        for name, counts in sorted(self.routes.items(), key=lambda i: (-i[1].requests, i[0])):
            error = self.relative_error(counts.requests, counts.normal)
            rows.append(
                {
                    "route": name,
                    "requests": counts.requests,
                    "errors": counts.errors,
                    "normal": counts.normal,
                    "relative_error": error,
                    "poor": error > POOR_ROUTE_ERROR,
                }
            )
        return rows

    def as_dict(self) -> dict[str, Any]:
        days = self.days
        return {
            "normal_rate": self.normal_rate,
            "input_normal_rate": self.input_normal_rate,
            "keyed": self.keyed,
            "exact": self.exact,
            "formats_in": dict(self.formats),
            "events_in": self.events_in,
            "events_kept": self.events_kept,
            "kept_by_rule": dict(sorted(self.kept_by_rule.items())),
            "errors_in": self.errors_in,
            "errors_kept": self.errors_kept,
            "bytes_in": self.bytes_in,
            "bytes_kept": self.bytes_kept,
            "bytes_estimated_for": self.estimated_sizes,
            "event_bytes": {
                "normal": self.sizes.normal,
                "error": self.sizes.error,
                "source": self.sizes.source,
            },
            "cut": 1 - self.bytes_kept / self.bytes_in if self.bytes_in else 0.0,
            "days": days,
            "days_from": "requests_per_day" if self.requests_per_day else "time span",
            "bytes_in_per_day": _per_day(self.bytes_in, days),
            "bytes_kept_per_day": _per_day(self.bytes_kept, days),
            "budget_bytes_per_day": self.budget,
            "relative_error_total": self.relative_error_total,
            "routes": self.route_rows(),
            "budget_capped_by_input": self.budget_capped,
            "requests_without_id": self.without_id,
            "implausible_times": self.implausible_times,
            "files_cut_short": self.cut_short,
            "other_events": self.other_events,
            "unparsed_lines": self.unparsed_lines,
            "unparsed_examples": self.unparsed_examples,
        }


def simulate(
    requests: Requests,
    sampler: TailSampler,
    *,
    sizes: EventSizes | None = None,
    kept_out: IO[bytes] | None = None,
    for_budget: bool = False,
) -> Simulation:
    """Decide every request read with ``sampler``; ``kept_out`` gets the lines of those
    kept, as they were."""
    result = Simulation(
        sampler.normal_rate,
        keyed=sampler.keyed,
        sizes=sizes or EventSizes(),
        formats=requests.formats,
        for_budget=for_budget,
    )
    result.cut_short = requests.cut_short
    for where, number, line, seen in requests:
        if seen is None:
            result.unparsed_lines += 1
            if len(result.unparsed_examples) < 5:
                result.unparsed_examples.append(f"{where}:{number}")
        elif seen == OTHER:
            result.other_events += 1
        elif isinstance(seen, Observed) and result.add(seen, sampler) and kept_out:
            kept_out.write(line if line.endswith(b"\n") else line + b"\n")
    return result


def _per_day(size: int, days: float | None) -> int | None:
    if not days:
        return None
    per_day = size / days
    return round(per_day) if math.isfinite(per_day) else None


def sizes_from(requests: Requests) -> EventSizes:
    """The mean bytes of the request events in a sample of our JSONL (``--event-size-from``),
    errors (an exception or a 5xx) apart from the rest; a kind the sample lacks keeps its
    default."""
    totals = {"normal": [0, 0], "error": [0, 0]}
    for _, _, _, seen in requests:
        if isinstance(seen, Observed) and seen.size is not None:
            facts = seen.facts
            failed = facts.error or (facts.status is not None and facts.status >= 500)
            total = totals["error" if failed else "normal"]
            total[0] += seen.size
            total[1] += 1
    if not any(count for _, count in totals.values()):
        msg = "--event-size-from: no request events (kind http.request) in the sample"
        raise ConfigurationError(msg)
    normal, error = (
        round(size / count) if count else DEFAULT_EVENT_BYTES[kind]
        for kind, (size, count) in totals.items()
    )
    return EventSizes(normal, error, "sample")


_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_BUDGET = re.compile(
    r"\s*(\d+(?:\.\d+)?(?:e\d+)?)\s*([a-z]*)\s*(?:/\s*(?:day|d))?\s*", re.IGNORECASE
)


def parse_budget(text: str) -> int:
    """``5GB/day``, ``500 MiB/day``, ``2e9``... as bytes per day (GB = 10**9, GiB = 2**30)."""
    match = _BUDGET.fullmatch(text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        msg = f"--budget takes a size per day such as 5GB/day or 500MiB/day, got {text!r}"
        raise ConfigurationError(msg)
    number = float(match.group(1)) * _UNITS[unit]
    size = round(number) if math.isfinite(number) else 0
    if not 0 < size < 2**62:
        msg = f"--budget must be between 1 byte and 4 EB per day, got {text!r}"
        raise ConfigurationError(msg)
    return size
