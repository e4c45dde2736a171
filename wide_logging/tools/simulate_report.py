"""``wide-logging simulate``'s report: a table a person reads, or markdown for a chat or a
pull request — the same numbers as ``--format json`` (``Simulation.as_dict``)."""

from __future__ import annotations

import math
from typing import Any

from .._markdown import cell
from .simulate import POOR_ROUTE_ERROR, Simulation

#: Routes listed in the text and markdown reports (the JSON has them all).
ROUTES_SHOWN = 10


def format_text(result: Simulation) -> str:
    data = result.as_dict()
    rows = _rows(data)
    width = max(len(name) for name, _ in rows)
    lines = [*_preamble(data), *(f"{name:<{width}}  {value}" for name, value in rows)]
    routes = _routes_shown(data)
    if routes:
        lines += ["", f"{'route':<40} {'requests':>10} {'errors':>8} {'re-weighted':>12}"]
        lines += [
            f"{_clip(row['route'], 40):<40} {row['requests']:>10,} {row['errors']:>8,} "
            f"{'± ' + format(row['relative_error'], '.1%'):>12}" + ("  poor" if row["poor"] else "")
            for row in routes
        ]
    lines += [f"note: {note}" for note in _notes(data)]
    return "\n".join(lines)


def format_markdown(result: Simulation) -> str:
    data = result.as_dict()
    lines = [*_preamble(data), "", "| what | value |", "|---|---:|"]
    lines += [f"| {name.strip()} | {value} |" for name, value in _rows(data)]
    routes = _routes_shown(data)
    if routes:
        lines += ["", "| route | requests | errors | re-weighted ± |", "|---|---:|---:|---:|"]
        lines += [
            f"| {cell(row['route'])} | {row['requests']:,} | {row['errors']:,} | "
            f"{row['relative_error']:.1%}{' **poor**' if row['poor'] else ''} |"
            for row in routes
        ]
    lines += ["", *(f"> {note}" for note in _notes(data))]
    return "\n".join(lines).rstrip()


def _preamble(data: dict[str, Any]) -> list[str]:
    chosen = (
        f" — the highest that fits {_size(data['budget_bytes_per_day'])}/day"
        if data["budget_bytes_per_day"] is not None
        else ""
    )
    # rounded down: the rate printed must fit the budget too
    rate = math.floor(data["normal_rate"] * 10**6) / 10**6
    lines = [f"policy: normal_rate {rate:g}{chosen}"]
    formats = ", ".join(f"{name} ({n} file(s))" for name, n in data["formats_in"].items())
    lines.append(f"input: {formats or 'nothing'}")
    if data["input_normal_rate"] < 1:
        lines.append(
            f"input: already sampled at normal_rate {data['input_normal_rate']:g} "
            "(the counts are of the requests stored, not of all the traffic)"
        )
    return lines


def _rows(data: dict[str, Any]) -> list[tuple[str, str]]:
    events_in = data["events_in"]
    share = data["events_kept"] / events_in if events_in else 0.0
    every = data["errors_kept"] == data["errors_in"]
    rows = [
        ("requests in", f"{events_in:,}"),
        ("requests kept", f"{data['events_kept']:,}  ({share:.2%})"),
        *((f"  kept by rule {rule}", f"{n:,}") for rule, n in data["kept_by_rule"].items()),
        (
            "errors kept",
            f"{data['errors_kept']:,} of {data['errors_in']:,}"
            + ("  (every one)" if every else "  (NOT ALL)"),
        ),
        ("bytes in", _size(data["bytes_in"])),
        ("bytes kept", f"{_size(data['bytes_kept'])}  (cut {data['cut']:.1%})"),
    ]
    if data["days"] is not None:
        span = (
            "scaled by --requests-per-day"
            if data["days_from"] == "requests_per_day"
            else f"extrapolated from {data['days'] * 86400:,.0f} s"
        )
        rows.append(("in per day", f"{_size(data['bytes_in_per_day'])}  ({span})"))
        rows.append(("kept per day", _size(data["bytes_kept_per_day"])))
    rows.append(("re-weighted count", f"± {data['relative_error_total']:.2%} (one standard error)"))
    poor = sum(row["poor"] for row in data["routes"])
    rows.append(("routes", f"{len(data['routes']):,}, {poor:,} poor (± > {POOR_ROUTE_ERROR:.0%})"))
    rows.append(("other events", f"{data['other_events']:,} (logs, metrics: not simulated)"))
    unparsed = data["unparsed_lines"]
    where = f"  (first at {', '.join(data['unparsed_examples'])})" if unparsed else ""
    rows.append(("unparsed lines", f"{unparsed:,}{where}"))
    return rows


def _notes(data: dict[str, Any]) -> list[str]:
    notes = []
    if data["bytes_estimated_for"]:
        sizes = data["event_bytes"]
        source = {
            "sample": "the mean of the sample given with --event-size-from",
            "default": "the default (give --event-size-from events.jsonl for yours)",
        }[sizes["source"]]
        notes.append(
            f"bytes of {data['bytes_estimated_for']:,} access-log requests are estimated: "
            f"{sizes['normal']:,} per event, {sizes['error']:,} per error, {source}"
        )
    if not data["keyed"] or data["requests_without_id"]:
        why = (
            "without the deployment's sampling key"
            if not data["keyed"]
            else f"{data['requests_without_id']:,} requests have no request id, so"
        )
        notes.append(
            f"{why} this run draws its own share of normal requests; the counts vary from "
            "run to run by about the error shown"
        )
    if not data["events_in"]:
        notes.append(
            "no requests were read: is the input what --format-in says (or what its first "
            "lines look like)?"
        )
    if data["implausible_times"]:
        notes.append(
            f"{data['implausible_times']:,} requests have a time outside 2000-2100: left out "
            "of the time span"
        )
    notes += [f"read up to where it breaks: {where}" for where in data["files_cut_short"]]
    if data["normal_rate"] > data["input_normal_rate"]:
        notes.append(
            f"the input was sampled at normal_rate {data['input_normal_rate']:g}: a higher "
            "rate cannot be simulated from it (its dropped requests are not there)"
        )
    budget = data["budget_bytes_per_day"]
    if budget is not None and (data["bytes_kept_per_day"] or 0) > budget:
        notes.append(
            "even at normal_rate 0 the requests always kept (errors, slow, critical routes) "
            f"take {_size(data['bytes_kept_per_day'])}/day, more than the budget; errors "
            "are never dropped to fit"
        )
    if data["budget_capped_by_input"]:
        notes.append("the budget allows more than the input's own rate, the most it can judge")
    return notes


def _routes_shown(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The busiest routes, and every poor one among the first hundred."""
    routes: list[dict[str, Any]] = data["routes"]
    shown = routes[:ROUTES_SHOWN]
    shown += [row for row in routes[ROUTES_SHOWN:100] if row["poor"]][:ROUTES_SHOWN]
    return shown


def _size(size: int | None) -> str:
    if size is None:
        return "-"
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if size >= scale:
            return f"{size / scale:,.2f} {unit}"
    return f"{size:,} B"


def _clip(text: str, width: int) -> str:
    text = _printable(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def _printable(text: str) -> str:
    """A value from the input as it may reach a terminal: no control characters (an
    escape sequence would drive the terminal), no ``|`` or newline."""
    return "".join(c if c.isprintable() and c != "|" else "?" for c in text)
