"""``wide-logging simulate``: what a sampling policy would keep of events already logged.

The input is our own JSONL, written keep-all (``normal_rate: 1.0``) or already sampled.
Each request event is decided again by ``TailSampler.decide_event`` — the policy's own code,
the one ``explain()`` uses for stored events — so that what is simulated is what will run.
With the deployment's sampling key (``--key`` or ``WIDE_LOGGING_SAMPLING_KEY``) the
decisions are the very ones the handler makes; without it, each run draws its own share of
normal traffic (the counts are then estimates, and the report says how good).

Input that was already sampled at rate ``r`` holds only the normal requests kept at ``r``:
a lower rate is simulated among them (with the same key, exactly: the hash threshold only
shrinks); a higher one cannot be, and the report says so. Lines that are not events are
counted and shown, never fatal. Files are streamed: memory stays flat in their size.
"""

from __future__ import annotations

import gzip
import math
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, cast

from ..fields import get_path
from ..sampling import TailSampler
from .event_files import event_files, parse_event

#: The rule whose events are sampled (the others are always kept).
NORMAL = "normal"


@dataclass
class Simulation:
    """What a policy keeps of the requests read (re-weighted where the input was sampled)."""

    normal_rate: float
    #: Decided with the deployment's key: the handler's very decisions, not a draw.
    keyed: bool = False
    events_in: int = 0
    events_kept: int = 0
    kept_by_rule: Counter[str] = field(default_factory=Counter)
    errors_in: int = 0
    errors_kept: int = 0
    bytes_in: int = 0
    bytes_kept: int = 0
    normal_in: int = 0
    normal_kept: int = 0
    #: Events of other kinds (logs, metrics, incidents): not simulated, counted apart.
    other_events: int = 0
    unparsed_lines: int = 0
    #: The lowest ``normal`` rate found in the input (1.0: keep-all input).
    input_normal_rate: float = 1.0
    first_seen: float | None = None
    last_seen: float | None = None

    @property
    def relative_error_total(self) -> float:
        """Expected relative error (one standard error) of the re-weighted request count:
        the always-kept rules are exact; the normal share is a binomial sample."""
        p = self.normal_rate / self.input_normal_rate
        if self.events_in == 0 or self.normal_in == 0 or p >= 1.0:
            return 0.0
        if p <= 0.0:
            return 1.0 if self.normal_in else 0.0
        return math.sqrt(self.normal_in * (1 - p) / p) / self.events_in

    @property
    def days(self) -> float | None:
        if self.first_seen is None or self.last_seen is None:
            return None
        span = self.last_seen - self.first_seen
        return span / 86400 if span > 0 else None

    def as_dict(self) -> dict[str, Any]:
        days = self.days
        return {
            "normal_rate": self.normal_rate,
            "input_normal_rate": self.input_normal_rate,
            "keyed": self.keyed,
            "exact": self.keyed and self.normal_rate <= self.input_normal_rate,
            "events_in": self.events_in,
            "events_kept": self.events_kept,
            "kept_by_rule": dict(sorted(self.kept_by_rule.items())),
            "errors_in": self.errors_in,
            "errors_kept": self.errors_kept,
            "bytes_in": self.bytes_in,
            "bytes_kept": self.bytes_kept,
            "cut": 1 - self.bytes_kept / self.bytes_in if self.bytes_in else 0.0,
            "bytes_kept_per_day": round(self.bytes_kept / days) if days else None,
            "relative_error_total": self.relative_error_total,
            "other_events": self.other_events,
            "unparsed_lines": self.unparsed_lines,
        }


def simulate(lines: Iterable[bytes], sampler: TailSampler) -> Simulation:
    """Decide every request event of ``lines`` (JSON lines) with ``sampler``."""
    result = Simulation(sampler.normal_rate, keyed=sampler.keyed)
    for line in lines:
        if not line.strip():
            continue
        event = parse_event(line)
        if event is None:
            result.unparsed_lines += 1
            continue
        if event.get("kind") != "http.request":
            result.other_events += 1
            continue
        _count(result, event, len(line) + (0 if line.endswith(b"\n") else 1), sampler)
    return result


def _count(result: Simulation, event: dict[str, Any], size: int, sampler: TailSampler) -> None:
    result.events_in += 1
    result.bytes_in += size
    stored_rule = get_path(event, "sampling.rule")
    stored_rate = get_path(event, "sampling.rate")
    if stored_rule == NORMAL and isinstance(stored_rate, (int, float)) and 0 < stored_rate < 1:
        result.input_normal_rate = min(result.input_normal_rate, float(stored_rate))
    decision = sampler.decide_event(event)
    error = decision.rule in ("error", "server_error")
    result.errors_in += error
    if decision.rule == NORMAL:
        result.normal_in += 1
        result.normal_kept += decision.keep
    if decision.keep:
        result.events_kept += 1
        result.bytes_kept += size
        result.kept_by_rule[decision.rule] += 1
        result.errors_kept += error
    moment = _seconds(event.get("timestamp"))
    if moment is not None:
        if result.first_seen is None or moment < result.first_seen:
            result.first_seen = moment
        if result.last_seen is None or moment > result.last_seen:
            result.last_seen = moment


def _seconds(stamp: object) -> float | None:
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def lines_of(specs: Iterable[str]) -> Iterator[bytes]:
    """The lines of every file ``specs`` name (a JSONL file and its rotated segments, a
    folder, a glob; ``.gz`` files are read through gzip; ``-`` is standard input)."""
    for spec in specs:
        if spec == "-":
            yield from sys.stdin.buffer
            continue
        for path in event_files(spec):
            with _open(path) as handle:
                yield from handle


def _open(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return cast(IO[bytes], gzip.open(path, "rb"))
    return open(path, "rb")


def format_text(result: Simulation) -> str:
    """The report as a table a person reads."""
    data = result.as_dict()
    kept_share = data["events_kept"] / data["events_in"] if data["events_in"] else 0.0
    rows = [
        ("requests in", f"{data['events_in']:,}"),
        ("requests kept", f"{data['events_kept']:,}  ({kept_share:.2%})"),
        *((f"  kept by rule {rule}", f"{n:,}") for rule, n in data["kept_by_rule"].items()),
        (
            "errors kept",
            f"{data['errors_kept']:,} of {data['errors_in']:,}"
            + ("  (every one)" if data["errors_kept"] == data["errors_in"] else "  (NOT ALL)"),
        ),
        ("bytes in", f"{data['bytes_in']:,}"),
        ("bytes kept", f"{data['bytes_kept']:,}  (cut {data['cut']:.1%})"),
    ]
    days = result.days
    if data["bytes_kept_per_day"] is not None and days is not None:
        rows.append(
            (
                "bytes kept per day",
                f"{data['bytes_kept_per_day']:,}  (extrapolated from {days * 86400:,.0f} s)",
            )
        )
    rows.append(("re-weighted count", f"± {data['relative_error_total']:.2%} (one standard error)"))
    rows.append(("other events", f"{data['other_events']:,} (logs, metrics: not simulated)"))
    rows.append(("unparsed lines", f"{data['unparsed_lines']:,}"))
    width = max(len(name) for name, _ in rows)
    lines = [f"policy: normal_rate {data['normal_rate']:g}"]
    if data["input_normal_rate"] < 1:
        lines.append(
            f"input: already sampled at normal_rate {data['input_normal_rate']:g} "
            "(the counts are of the events stored, not of all the traffic)"
        )
    lines += [f"{name:<{width}}  {value}" for name, value in rows]
    if not data["keyed"]:
        lines.append(
            "note: without the deployment's sampling key this run draws its own share of "
            "normal requests; the counts vary from run to run by about the error shown"
        )
    if data["normal_rate"] > data["input_normal_rate"]:
        lines.append(
            f"note: the input was sampled at normal_rate {data['input_normal_rate']:g}: a higher "
            "rate cannot be simulated from it (its dropped requests are not there)"
        )
    return "\n".join(lines)


def format_markdown(result: Simulation) -> str:
    data = result.as_dict()
    rows = [(key, value) for key, value in data.items() if key != "kept_by_rule"]
    rows += [(f"kept_by_rule.{rule}", n) for rule, n in data["kept_by_rule"].items()]
    return "\n".join(
        ["| what | value |", "|---|---:|", *(f"| {key} | {value} |" for key, value in rows)]
    )
