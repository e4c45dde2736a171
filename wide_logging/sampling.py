"""Tail-aware sampling: keep every error, slow and critical request, and a share of the rest.

Pure: no I/O, no clock. The share of normal traffic is decided by a keyed hash of the
request's id, so that a client that sends its own ``X-Request-ID`` cannot choose to be kept
(and amplify storage) or dropped (and hide)::

    keep  <=>  hash_K(request_id) < normal_rate * 2**64 - 2**63

(a signed 64-bit hash, the range Python's ``hash()`` gives, so the common case compares
its result with no arithmetic.)

With ``key`` (the deployment's secret, ``WIDE_LOGGING_SAMPLING_KEY``) ``hash_K`` is a
BLAKE2b keyed with it: every process and service sharing the key decides alike for one id.
Without it, the key is this process's own random one (Python's SipHash ``hash()``, or a
random BLAKE2b key when hash randomisation is off): decisions cannot be steered or
predicted, but another process may decide differently for the same id.

Rules are tried in a fixed order; the first that matches decides and is recorded on the
event as ``sampling.rule`` with its ``sampling.rate`` (1.0 for the always-keep rules), so
stored counts can be re-weighted by ``1 / rate``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from ._errors import ConfigurationError
from .fields import get_path, path_for_rules
from .typing import Decision as AnyDecision

#: Rule names for requests, in the order they are tried.
RULES = ("error", "server_error", "slow", "critical_route", "force_keep", "normal")
#: The rules that keep an event whatever the rate.
ALWAYS_KEEP_RULES = frozenset(RULES[:-1])
#: Log records outside any request: errors by ``error``, the rest by ``log`` at ``log_rate``.
LOG_RULE = "log"
#: Hashes are signed 64-bit integers, uniform over [-2**63, 2**63).
_SPACE = 2**64
#: The size of the hash space normal traffic is decided in (``TailSampler.position``).
HASH_SPACE = _SPACE
_LOWEST = -(2**63)
#: Shortest sampling key accepted: 128 bits of a random hex or base64 string.
MIN_KEY_LENGTH = 16
_OPTIONS = ("normal_rate", "slow_ms", "critical_routes", "log_rate", "key")
#: Statuses that say no route matched: ``critical_routes`` do not keep them.
NO_ROUTE_MATCHED = frozenset({404, 405})


def keyed_hash(key: bytes) -> Callable[[str], int]:
    """A signed 64-bit BLAKE2b of a string, keyed with ``key``: unpredictable without the
    key."""
    keyed = hashlib.blake2b(key=key, digest_size=8)  # copied per call: the key set up once
    from_bytes = int.from_bytes

    def sampling_hash(value: str) -> int:
        digest = keyed.copy()
        digest.update(value.encode("utf-8", "surrogatepass"))
        return from_bytes(digest.digest(), "little", signed=True)

    return sampling_hash


def _process_hash() -> Callable[[str], int]:
    """This process's own keyed hash: SipHash with the interpreter's random secret (the
    cheapest keyed hash there is, cached on the string), else a random BLAKE2b key — when
    hash randomisation is off, or its seed was fixed (``PYTHONHASHSEED=42``: public)."""
    seed = os.environ.get("PYTHONHASHSEED", "random")
    if sys.flags.hash_randomization and seed == "random":
        return hash
    return keyed_hash(os.urandom(32))


class Decision:
    """A sampling verdict. The policy builds one per rule and outcome, and shares it."""

    __slots__ = ("always_keep", "counter", "fields", "keep", "rate", "rule")

    def __init__(self, keep: bool, rule: str, rate: float) -> None:
        self.keep = keep
        self.rule = rule
        self.rate = rate
        #: True for the rules that keep whatever the rate (the queue-overflow priority).
        self.always_keep = rule in ALWAYS_KEEP_RULES
        #: ``sampling.*`` of a kept event. Shared by every event with this decision (a
        #: plain dict so orjson encodes it): never modify it.
        self.fields: dict[str, Any] = {"rule": rule, "rate": rate}
        #: The metrics counter this decision increments.
        self.counter = f"events.{'kept' if keep else 'sampled_out'}.{rule}"

    def __repr__(self) -> str:
        return f"Decision(keep={self.keep}, rule={self.rule!r}, rate={self.rate})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Decision):
            return NotImplemented
        return (self.keep, self.rule, self.rate) == (other.keep, other.rule, other.rate)

    def __hash__(self) -> int:
        return hash((self.keep, self.rule, self.rate))


class TailSampler:
    """The sampling policy. Configure once; ``decide`` is called for every finished event."""

    __slots__ = (
        "_critical_re",
        "_hash",
        "_keep_critical",
        "_keep_error",
        "_keep_forced",
        "_keep_server_error",
        "_keep_slow",
        "_log_drop",
        "_log_keep",
        "_log_threshold",
        "_normal_drop",
        "_normal_keep",
        "_threshold",
        "critical_routes",
        "keyed",
        "log_rate",
        "normal_rate",
        "slow_ms",
    )

    def __init__(
        self,
        *,
        normal_rate: float = 0.02,
        slow_ms: float = 1000.0,
        critical_routes: Iterable[str] = (),
        log_rate: float = 1.0,
        key: str | None = None,
    ) -> None:
        for name, rate in (("normal_rate", normal_rate), ("log_rate", log_rate)):
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
                msg = f"sampling {name} must be a number between 0 and 1, got {rate!r}"
                raise ConfigurationError(msg)
        if (
            isinstance(slow_ms, bool)
            or not isinstance(slow_ms, (int, float))
            or not math.isfinite(slow_ms)
            or slow_ms < 0
        ):
            msg = f"sampling slow_ms must be a finite number of milliseconds >= 0, got {slow_ms!r}"
            raise ConfigurationError(msg)
        if isinstance(critical_routes, str):
            critical_routes = [critical_routes]
        if not isinstance(critical_routes, (list, tuple, set, frozenset)):
            msg = (
                "sampling critical_routes must be a list of glob patterns, "
                f"got {type(critical_routes).__name__}"
            )
            raise ConfigurationError(msg)
        if key is not None and (not isinstance(key, str) or len(key) < MIN_KEY_LENGTH):
            msg = (
                f"sampling key must be a secret string of at least {MIN_KEY_LENGTH} characters "
                "(e.g. `openssl rand -hex 16`)"  # never the value itself: it is a secret
            )
            raise ConfigurationError(msg)
        patterns = list(critical_routes)
        for pattern in patterns:
            if not isinstance(pattern, str) or not pattern:
                msg = f"sampling critical_routes must be glob patterns (strings), got {pattern!r}"
                raise ConfigurationError(msg)
        self.normal_rate = float(normal_rate)
        self.slow_ms = float(slow_ms)
        self.critical_routes = tuple(patterns)
        self._critical_re = (
            re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))
            if patterns
            else None
        )
        self.log_rate = float(log_rate)
        #: True when decisions are reproducible: the same key gives the same decision in
        #: every process that has it.
        self.keyed = key is not None
        self._hash = keyed_hash(key.encode("utf-8")) if key is not None else _process_hash()
        self._threshold = _LOWEST + int(self.normal_rate * _SPACE)
        self._log_threshold = _LOWEST + int(self.log_rate * _SPACE)
        # Decisions are immutable, so each rule's is built once and shared.
        self._keep_error = Decision(True, "error", 1.0)
        self._keep_server_error = Decision(True, "server_error", 1.0)
        self._keep_slow = Decision(True, "slow", 1.0)
        self._keep_critical = Decision(True, "critical_route", 1.0)
        self._keep_forced = Decision(True, "force_keep", 1.0)
        self._normal_keep = Decision(True, "normal", self.normal_rate)
        self._normal_drop = Decision(False, "normal", self.normal_rate)
        self._log_keep = Decision(True, LOG_RULE, self.log_rate)
        self._log_drop = Decision(False, LOG_RULE, self.log_rate)

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> TailSampler:
        """Build from the ``sampling`` dict of the handler configuration."""
        if config is None:
            return cls()
        if not isinstance(config, Mapping):
            msg = f"sampling must be a dict of options, got {type(config).__name__}"
            raise ConfigurationError(msg)
        unknown = set(config) - set(_OPTIONS)
        if unknown:
            msg = f"unknown sampling option(s) {sorted(unknown)}; allowed: {', '.join(_OPTIONS)}"
            raise ConfigurationError(msg)
        return cls(**config)

    def hit(self, key: str) -> bool:
        """True when ``key`` falls in the kept share of normal traffic."""
        return self._hash(key) < self._threshold

    def decide(
        self,
        key: str,
        error: bool = False,
        status: int | None = None,
        duration_ms: float = 0.0,
        route: str | None = None,
        force_keep: bool = False,
        path: str | None = None,
    ) -> Decision:
        """The decision for a finished request. ``critical_routes`` match ``route`` (the
        framework's template), or without one the raw ``path``; never for a 404 or 405:
        a client can make those at will — a made-up ``/admin/...`` path, or one below a
        mounted sub-app whose route is the mount's prefix — and would otherwise choose
        what is always kept (and amplify storage)."""
        if error:
            return self._keep_error
        if status is not None and status >= 500:
            return self._keep_server_error
        if duration_ms > self.slow_ms:
            return self._keep_slow
        critical = self._critical_re
        if critical is not None:  # (the route is looked at only when a rule needs it)
            if route is None:
                route = path
            if (
                route is not None
                and critical.match(route)
                and status not in NO_ROUTE_MATCHED  # (asked only of a match: rare)
            ):
                return self._keep_critical
        if force_keep:
            return self._keep_forced
        # self.hit(key), inlined: this line runs for every request
        return self._normal_keep if self._hash(key) < self._threshold else self._normal_drop

    def decide_log(self, key: str, *, error: bool) -> Decision:
        """The decision for a log record outside any request."""
        if error:
            return self._keep_error
        keep = self._hash(key) < self._log_threshold
        return self._log_keep if keep else self._log_drop

    def decide_event(self, event: Mapping[str, Any]) -> Decision:
        """The decision for a finished event given as a dict (stored or captured)."""
        return self.decide(*request_facts(event))

    def position(self, key: str) -> int:
        """Where ``key``'s hash falls in the hash space, from 0 to 2**64: a normal request
        is kept when it is below ``normal_rate * 2**64`` (``HASH_SPACE``). What lets
        ``wide-logging simulate`` find the highest rate a budget allows in one pass."""
        return self._hash(key) - _LOWEST

    def explain(self, event: Mapping[str, Any]) -> str:
        """Say which rule decided for ``event``, and why.

        A stored event carries the decision that kept it (``sampling.rule``/``rate``): that
        is reported first, and today's policy only said too when it would decide otherwise
        (a critical route removed since, another rate)."""
        stored = event.get("sampling")
        if not isinstance(stored, Mapping):
            return self.why(event, self.decide_event(event))
        rule, rate = stored.get("rule"), stored.get("rate")
        # (force_keep: decide_event() reads it from the stored rule, so today agrees)
        if isinstance(rule, str) and rule != "force_keep":
            kept = stored.get("sampled_out") is not True  # capture_events(keep_all=True)
            today = self.decide_event(event)
            said = f"{'kept' if kept else 'dropped'} by rule '{rule}' (rate {rate}) when decided"
            if (today.keep, today.rule, today.rate) == (kept, rule, rate):
                return f"{self.why(event, today)} (the decision stored with it)"
            return f"{said}; today's policy would decide otherwise: {self.why(event, today)}"
        return self.why(event, self.decide_event(event))

    def why(self, event: Mapping[str, Any], decision: AnyDecision) -> str:
        """The reason for ``decision`` about ``event`` (its quoted fields: error, duration,
        the sampling key), in words."""
        reasons = {
            "error": f"it carries an error ({_error_type(event.get('error'))})",
            "server_error": "its response status is 5xx",
            "slow": f"duration_ms {event.get('duration_ms')} > slow_ms {self.slow_ms:g}",
            "critical_route": "its route matches one of critical_routes "
            f"{list(self.critical_routes)}",
            "force_keep": "the app called annotate(force_keep=True)",
        }
        if decision.rule in reasons:
            return f"kept by rule '{decision.rule}' (rate 1.0): {reasons[decision.rule]}"
        if decision.rule == LOG_RULE:
            return (
                f"{'kept' if decision.keep else 'dropped'} by rule 'log' (rate {self.log_rate:g})"
            )
        key = sampling_key(event)
        verdict = "kept" if decision.keep else "dropped"
        which = "the sampling key's hash" if self.keyed else "this process's random hash"
        caveat = (
            ""
            if self.keyed
            else " (another process may decide otherwise for this id: set sampling.key "
            "to make decisions the same everywhere)"
        )
        return (
            f"{verdict} by rule 'normal' (rate {self.normal_rate:g}): no always-keep rule "
            f"matched, and {which} of {key!r} is {self._hash(key)}, "
            f"{'<' if decision.keep else '>='} {self._threshold} (normal_rate * 2**64 - 2**63); "
            f"each kept normal event stands for "
            f"{1 / self.normal_rate if self.normal_rate else 0:g}{caveat}"
        )


class RequestFacts(NamedTuple):
    """What the policy reads of a finished request: ``TailSampler.decide``'s arguments."""

    key: str
    error: bool
    status: int | None
    duration_ms: float
    route: str | None
    force_keep: bool
    path: str | None


def request_facts(event: Mapping[str, Any]) -> RequestFacts:
    """The policy's reading of a request event given as a dict (stored or captured)."""
    route = get_path(event, "http.route")
    route = route if isinstance(route, str) else None
    path = get_path(event, "url.path")
    path = path_for_rules(get_path(event, "http.request.method"), route, path)
    status = get_path(event, "http.response.status_code")
    duration = get_path(event, "duration_ms")
    return RequestFacts(
        sampling_key(event),
        error=bool(event.get("error")),
        status=status if isinstance(status, int) else None,
        duration_ms=float(duration) if isinstance(duration, (int, float)) else 0.0,
        route=route,
        force_keep=get_path(event, "sampling.rule") == "force_keep",
        path=path if isinstance(path, str) else None,
    )


def sampling_key(event: Mapping[str, Any]) -> str:
    """The key whose hash decides normal traffic.

    The request id; a request that arrives without ``X-Request-ID`` but with a W3C
    ``traceparent`` takes the trace id as its request id, so every service in a trace
    decides alike. Events outside requests fall back to their event id.
    """
    return str(event.get("request_id") or event.get("trace_id") or event.get("event_id") or "")


def _error_type(error: object) -> str:
    """What an event's ``error`` is called in a reason: its ``type`` when it has one (an
    app may annotate a text, ``True`` or a list as its error)."""
    kind = error.get("type") if isinstance(error, Mapping) else None
    return str(kind)[:200] if kind else "error"
