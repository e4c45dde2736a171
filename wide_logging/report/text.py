"""The briefing as markdown (for a chat or a ticket): the numbers of the HTML page."""

from __future__ import annotations

from typing import Any

from .._markdown import cell as _cell
from .._markdown import code
from ..incidents.summary import difference_text
from .html import INCIDENTS_SHOWN, _count, _delta, _ms, _share, _when

ROUTES_SHOWN = 10


def format_markdown(report: dict[str, Any]) -> str:
    totals, period = report["totals"], report["period"]
    lines = [
        f"# wide_logging briefing: {_when(period['start'])} to {_when(period['end'])} UTC",
        "",
        f"Source `{report['source']}`; {report['weighted']}.",
        "",
        f"**Requests** {_count(totals['requests'])} · **errors** {_count(totals['errors'])} "
        f"({_share(totals['error_rate'])}) · **p50** {_ms(totals.get('p50'))} · "
        f"**p95** {_ms(totals.get('p95'))} · **p99** {_ms(totals.get('p99'))}",
    ]
    lines += [f"\n> **Warning:** {warning}" for warning in report["pipeline"]["warnings"]]
    if not totals["events"]:
        lines.append("\n> No requests in this period.")
    lines += [
        "",
        "## Routes",
        "",
        "| route | requests | error rate | p95 | vs. previous period |",
        "|---|---:|---:|---:|---|",
    ]
    for row in report["routes"][:ROUTES_SHOWN]:
        before = row.get("previous")
        change = (
            f"{_delta(row['requests'], before['requests'])} requests, "
            f"p95 {_delta(row['p95'], before['p95'])}"
            if before
            else "—"
        )
        lines.append(
            f"| {_cell(row['route'])} | {_count(row['requests'])} | "
            f"{_share(row['error_rate'])} | {_ms(row['p95'])} | {change} |"
        )
    lines += ["", "## Top errors", ""]
    if report["errors"]:
        lines += ["| error | count | first seen | last seen | examples |", "|---|---:|---|---|---|"]
        lines += [
            f"| {_cell(e['type'])}: {_cell((e['message'] or '')[:120])} | {_count(e['count'])} "
            f"| {_when(e['first_seen'])} | {_when(e['last_seen'])} | "
            f"{', '.join(_cell(i) for i in e['examples'])} |"
            for e in report["errors"]
        ]
    else:
        lines.append("No errors in this period.")
    lines += ["", "## Incidents", ""]
    for i in report["incidents"][:INCIDENTS_SHOWN]:
        lines.append(
            f"- **{_cell(i['title'])}** [{_cell(i['rule'])}, "
            f"{'recurring' if i['recurring'] else 'new'}] {i['count']} events, "
            f"{i['first_seen']} to {i['last_seen']}"
        )
        lines += [f"  - {_cell(difference_text(d))}" for d in i["differences"][:3]]
        lines += [f"  - {t['count']} x {code(t['template'])}" for t in i["templates"][:2]]
    if not report["incidents"]:
        lines.append("No incident in this period.")
    if len(report["incidents"]) > INCIDENTS_SHOWN:
        lines.append(f"- … {len(report['incidents']) - INCIDENTS_SHOWN} more in --format json")
    health = report["pipeline"]
    lines += ["", "## Pipeline health", ""]
    if health["metrics_events"]:
        retention = ", ".join(f"{rule} {_share(s)}" for rule, s in health["retention"].items())
        lines.append(
            f"Retention by rule: {retention or '—'}; spooled "
            f"{_count(sum(health['spooled'].values()))}, replayed {_count(health['replayed'])}, "
            f"dropped {_count(sum(health['dropped'].values()))}, lost "
            f"{_count(sum(health['lost'].values()))}; queue depth at most "
            f"{_count(health['queue_depth_max'])}."
        )
    else:
        lines.append("No metrics events in this period (`metrics_events=True` writes them).")
    return "\n".join(lines)
