"""The briefing as one self-contained HTML file: Plotly's JavaScript inline (no CDN, no
network when it is opened), charts with hover, tables that scroll on a phone, and a page
that prints.

Everything that comes from events (routes, error types, messages, ids, service names) is
escaped here — in the page and in the charts' labels, where Plotly would read some HTML —
so a request path such as ``/<script>...`` is shown as text, never run.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from .._errors import ConfigurationError
from ..incidents.summary import affected_text, difference_text

CSS = """
:root { --ink: #1f2933; --muted: #616e7c; --line: #d9e2ec; --bad: #b42318; --warn: #fff4e5; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--ink); margin: 0 auto; max-width: 1180px; padding: 16px; }
h1 { font-size: 1.5rem; margin: 0 0 4px; } h2 { font-size: 1.15rem; margin: 28px 0 8px; }
.meta, .note { color: var(--muted); font-size: .9rem; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(140px, 1fr)); gap: 10px;
         margin: 16px 0; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; }
.card .label { color: var(--muted); font-size: .8rem; text-transform: uppercase; }
.card .value { font-size: 1.45rem; font-weight: 600; }
.warning { background: var(--warn); border-left: 4px solid #f79009; padding: 10px 14px;
           margin: 12px 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line);
         vertical-align: top; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.bad { color: var(--bad); font-weight: 600; }
code { font-size: .85rem; word-break: break-all; }
.chart { break-inside: avoid; }
li, p, .note, code, b { overflow-wrap: anywhere; }
@media (max-width: 640px) { body { padding: 8px; } .card .value { font-size: 1.2rem; } }
@media print { .chart, section, tr { break-inside: avoid; } body { max-width: none; } }
"""


#: Incidents drawn and listed, the latest first (all of them in the JSON).
INCIDENTS_SHOWN = 20


def write_html(report: dict[str, Any], path: str) -> None:
    page = render(report)
    try:
        with open(path, "w", encoding="utf-8") as out:
            out.write(page)
    except OSError as exc:
        msg = f"cannot write the report to {path} ({exc.strerror or exc})"
        raise ConfigurationError(msg) from None


def render(report: dict[str, Any]) -> str:
    try:
        import plotly.graph_objects as go
        from plotly.offline import get_plotlyjs
    except ImportError:
        msg = "the report needs the 'report' extra: pip install 'wide-logging[report]'"
        raise ConfigurationError(msg) from None
    totals = report["totals"]
    period = report["period"]
    body = [
        "<header><h1>wide_logging briefing</h1>",
        f'<p class="meta">{_e(report["source"])} · {_when(period["start"])} to '
        f"{_when(period['end'])} UTC · generated {_when(report['generated_at'])} UTC</p>",
        f'<p class="note">{_e(report["weighted"])}.</p></header>',
    ]
    body += [f'<p class="warning" data-warning>{_e(w)}</p>' for w in report["pipeline"]["warnings"]]
    if not totals["events"]:
        body.append(
            '<p class="warning" data-empty>No requests in this period: nothing was logged '
            "between these times (check --since and the source).</p>"
        )
    body.append(_cards(totals))
    charts: list[Any] = []
    if totals["events"]:
        body.append("<section><h2>Requests and errors</h2>")
        charts.append(_traffic_chart(go, report["timeline"], period["step_seconds"]))
        body.append(_chart_slot(len(charts)))
        body.append("<h2>Latency (weighted p50, p95, p99)</h2>")
        charts.append(_latency_chart(go, report["timeline"]))
        body.append(_chart_slot(len(charts)) + "</section>")
    body.append(_routes_table(report["routes"]))
    body.append(_errors_table(report["errors"]))
    body.append("<section><h2>Incidents</h2>")
    if report["incidents"]:
        shown = report["incidents"][:INCIDENTS_SHOWN]
        charts.append(_incident_chart(go, shown))
        body.append(_chart_slot(len(charts)))
        body.append(_incident_list(shown))
        if len(report["incidents"]) > len(shown):
            more = len(report["incidents"]) - len(shown)
            body.append(f'<p class="note">{more} more incidents in --format json.</p>')
    else:
        body.append('<p class="note" data-no-incidents>No incident in this period.</p>')
    body.append("</section>")
    body.append(_health(report["pipeline"]))
    body.append(_services(report["services"]))
    html_charts = [
        figure.to_html(
            full_html=False,
            include_plotlyjs=False,
            config={"displaylogo": False, "responsive": True},
            default_height=340,
        )
        for figure in charts
    ]
    page = "\n".join(body)
    for number, chart in enumerate(html_charts, 1):
        page = page.replace(_chart_slot(number), f'<div class="chart">{chart}</div>', 1)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>wide_logging briefing</title><style>{CSS}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head>'
        f"<body>\n{page}\n</body></html>\n"
    )


# -- pieces ---------------------------------------------------------------------------


def _cards(totals: dict[str, Any]) -> str:
    cards = [
        ("requests", "Requests", _count(totals["requests"])),
        ("errors", "Errors", _count(totals["errors"])),
        ("error_rate", "Error rate", _share(totals["error_rate"])),
        ("p50", "p50", _ms(totals.get("p50"))),
        ("p95", "p95", _ms(totals.get("p95"))),
        ("p99", "p99", _ms(totals.get("p99"))),
    ]
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card"><div class="label">{label}</div>'
            f'<div class="value" data-metric="{key}">{value}</div></div>'
            for key, label, value in cards
        )
        + "</div>"
    )


def _traffic_chart(go: Any, timeline: Sequence[dict[str, Any]], step: int) -> Any:
    times = [_moment(point["t"]) for point in timeline]
    figure = go.Figure()
    figure.add_bar(
        x=times, y=[p["requests"] for p in timeline], name="requests", marker_color="#3e7cb1"
    )
    figure.add_bar(
        x=times, y=[p["errors"] for p in timeline], name="errors", marker_color="#d64545"
    )
    figure.update_layout(barmode="overlay", yaxis_title=f"per {_step_name(step)}", **_layout())
    return figure


def _latency_chart(go: Any, timeline: Sequence[dict[str, Any]]) -> Any:
    times = [_moment(point["t"]) for point in timeline]
    figure = go.Figure()
    for name, colour in (("p50", "#3e7cb1"), ("p95", "#f0a202"), ("p99", "#d64545")):
        figure.add_scatter(
            x=times,
            y=[p.get(name) for p in timeline],
            name=name,
            mode="lines+markers",
            line_color=colour,
        )
    figure.update_layout(yaxis_title="ms", **_layout())
    return figure


def _incident_chart(go: Any, incidents: Sequence[dict[str, Any]]) -> Any:
    figure = go.Figure()
    for number, incident in enumerate(incidents, 1):
        label = _label(f"{number}. {incident['title']}")
        figure.add_scatter(
            x=[incident["first_seen"], incident["last_seen"]],
            y=[label, label],
            mode="lines+markers",
            line_width=8,
            name=_label(incident["rule"]),
            hovertext=f"{incident['count']} events",
            showlegend=False,
        )
    figure.update_layout(height=120 + 40 * len(incidents), **_layout())
    return figure


def _routes_table(routes: Sequence[dict[str, Any]]) -> str:
    rows = []
    for row in routes[:25]:
        before = row.get("previous")
        change = (
            f"{_delta(row['requests'], before['requests'])} req, "
            f"p95 {_delta(row['p95'], before['p95'])}"
            if before
            else "—"
        )
        failing = ' class="n bad"' if (row["error_rate"] or 0) >= 0.01 else ' class="n"'
        rows.append(
            f'<tr data-route="{_e(row["route"])}"><td><code>{_e(row["route"])}</code></td>'
            f'<td class="n" data-requests>{_count(row["requests"])}</td>'
            f"<td{failing} data-error-rate>{_share(row['error_rate'])}</td>"
            f'<td class="n" data-p95>{_ms(row["p95"])}</td><td class="n">{change}</td></tr>'
        )
    more = (
        f'<p class="note">{len(routes) - 25} more routes in --format json.</p>'
        if len(routes) > 25
        else ""
    )
    return (
        '<section><h2>Routes (most failing, then slowest, first)</h2><div class="scroll">'
        '<table data-table="routes"><thead><tr><th>route</th><th class="n">requests</th>'
        '<th class="n">error rate</th><th class="n">p95</th>'
        '<th class="n">vs. previous period</th></tr></thead><tbody>'
        + "".join(rows)
        + f"</tbody></table></div>{more}</section>"
    )


def _errors_table(errors: Sequence[dict[str, Any]]) -> str:
    if not errors:
        return '<section><h2>Errors</h2><p class="note">No errors in this period.</p></section>'
    rows = "".join(
        f'<tr data-error-type="{_e(e["type"])}"><td><code>{_e(e["type"])}</code>'
        f'<div class="note">{_e((e["message"] or "")[:200])}</div></td>'
        f'<td class="n" data-count>{_count(e["count"])}</td>'
        f'<td class="n">{_when(e["first_seen"])}</td><td class="n">{_when(e["last_seen"])}</td>'
        f"<td>{'<br>'.join(f'<code>{_e(i)}</code>' for i in e['examples'])}</td></tr>"
        for e in errors
    )
    return (
        '<section><h2>Top errors</h2><div class="scroll"><table data-table="errors"><thead>'
        '<tr><th>type and message</th><th class="n">count</th><th class="n">first seen</th>'
        '<th class="n">last seen</th><th>example request ids</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></div></section>"
    )


def _incident_list(incidents: Sequence[dict[str, Any]]) -> str:
    items = []
    for number, i in enumerate(incidents, 1):
        details = [
            f"<li data-difference>{_e(difference_text(d))}</li>" for d in i["differences"][:3]
        ]
        details += [
            f"<li data-template><code>{t['count']} x {_e(t['template'])}</code></li>"
            for t in i["templates"][:2]
        ]
        if i["affected"]:
            details.append(f"<li>affected: {_e(affected_text(i['affected']))}</li>")
        items.append(
            f'<li data-incident="{_e(i["fingerprint"])}"><b>{number}. {_e(i["title"])}</b> '
            f'<span class="note">[{_e(i["rule"])}, {"recurring" if i["recurring"] else "new"}]'
            f" {i['count']} events, {_e(i['first_seen'])} to {_e(i['last_seen'])}</span>"
            f"<ul>{''.join(details)}</ul></li>"
        )
    return f"<ul>{''.join(items)}</ul>"


def _health(health: dict[str, Any]) -> str:
    if not health["metrics_events"]:
        return (
            '<section><h2>Pipeline health</h2><p class="note" data-no-metrics>No metrics '
            "events in this period: configure the handler with <code>metrics_events=True</code>"
            " to see retention, spooling and drops here.</p></section>"
        )
    retention = "".join(
        f'<tr><td>{_e(rule)}</td><td class="n" data-retention="{_e(rule)}">{_share(share)}'
        "</td></tr>"
        for rule, share in health["retention"].items()
    )
    numbers = [
        ("spooled", sum(health["spooled"].values())),
        ("replayed", health["replayed"]),
        ("dropped", sum(health["dropped"].values())),
        ("lost", sum(health["lost"].values())),
        ("queue depth (max)", health["queue_depth_max"]),
    ]
    facts = "".join(
        f'<tr><td>{name}</td><td class="n{" bad" if name in ("dropped", "lost") and value else ""}"'
        f' data-health="{name.split()[0]}">{_count(value)}</td></tr>'
        for name, value in numbers
    )
    caches = "".join(
        f'<tr><td>cache {_e(name)} hit rate</td><td class="n">{_share(c["hit_rate"])}</td></tr>'
        for name, c in health["caches"].items()
    )
    return (
        "<section><h2>Pipeline health</h2>"
        f'<p class="note">From {health["metrics_events"]} metrics events of '
        f'{health["processes"]} process(es).</p><div class="scroll"><table data-table="health">'
        f'<tr><th>retention by rule</th><th class="n">kept</th></tr>{retention}{facts}{caches}'
        "</table></div></section>"
    )


def _services(services: Sequence[dict[str, Any]]) -> str:
    rows = "".join(
        f'<tr><td>{_e(s["service"])}</td><td class="n">{_count(s["requests"])}</td>'
        f'<td class="n">{_share(s["error_rate"])}</td></tr>'
        for s in services
    )
    return (
        '<section><h2>Services</h2><div class="scroll"><table data-table="services"><thead>'
        '<tr><th>service</th><th class="n">requests</th><th class="n">error rate</th></tr>'
        f"</thead><tbody>{rows}</tbody></table></div></section>"
    )


# -- formatting -----------------------------------------------------------------------


def _layout() -> dict[str, Any]:
    return {
        "margin": {"l": 50, "r": 20, "t": 20, "b": 40},
        "legend": {"orientation": "h", "y": -0.2},
        "template": "plotly_white",
        "hovermode": "x unified",
    }


def _label(text: str, width: int = 80) -> str:
    """Text from events as a chart label: cut first, then ``&``, ``<`` and ``>`` escaped —
    all Plotly reads as markup (it shows ``&quot;`` as it is, so quotes stay quotes)."""
    clipped = text if len(text) <= width else text[: width - 1] + "…"
    return clipped.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _chart_slot(number: int) -> str:
    return f"<!--chart {number}-->"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def _when(seconds: float | None) -> str:
    return "—" if seconds is None else _moment(seconds).strftime("%Y-%m-%d %H:%M:%S")


def _count(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _share(value: float | None) -> str:
    return "—" if value is None else f"{value:.2%}"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f} ms"


def _delta(now: float | None, before: float | None) -> str:
    if now is None or not before:
        return "new" if now and before is not None else "—"
    return f"{(now - before) / before:+.0%}"


def _step_name(step: int) -> str:
    return {
        60: "minute",
        300: "5 minutes",
        900: "15 minutes",
        3600: "hour",
        21600: "6 hours",
        86400: "day",
    }.get(step, f"{step} s")
