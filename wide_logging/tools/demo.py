"""``wide-logging demo``: a small shop under mixed load, and what wide_logging kept of it.

Runs in-process (ASGI calls, no server, no network): a Starlette app with the middleware
and a handler configured through ``logging.config.dictConfig``, driven with normal, slow,
failing, critical-route and noisy-logging requests. Events go to ``./wide-logs/``; the
report reads them back and checks that every failed request's event is there.
"""

from __future__ import annotations

import asyncio
import logging
import logging.config
import random
import shutil
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .. import __version__
from .._errors import ConfigurationError
from ..handler import WideEventHandler, active_handler
from ..incidents import summarize
from .demo_shop import SLOW_MS, build_app

log = logging.getLogger("shop")

#: Share of each kind of request in the load, and whether the app fails it.
MIX: tuple[tuple[str, float], ...] = (
    ("normal", 0.86),
    ("not_found", 0.03),
    ("noisy", 0.04),
    ("failing", 0.03),
    ("critical", 0.03),
    ("slow", 0.01),
)

# -- driving it ---------------------------------------------------------------------------


@dataclass
class Outcome:
    sent: Counter[str] = field(default_factory=Counter)
    failed_ids: set[str] = field(default_factory=set)
    statuses: Counter[int] = field(default_factory=Counter)


def _request_for(kind: str, n: int, rng: random.Random) -> tuple[str, str, bytes]:
    if kind == "normal":
        return "GET", f"/products/{rng.randrange(1, 5000)}", b""
    if kind == "not_found":
        return "GET", f"/products/{10_000 + n}", b""
    if kind == "noisy":
        return "GET", "/search", b""
    if kind == "failing":
        return "GET", f"/orders/{n}", b""
    if kind == "critical":
        return "POST", "/checkout", orjson.dumps({"items": 1 + n % 5, "user": n % 300})
    return "GET", "/reports/daily", b""


async def call(app: Any, method: str, path: str, body: bytes, request_id: str) -> int:
    """One request as a direct ASGI call; returns the status (500 when the app raised)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"q=red+shoes" if path == "/search" else b"",
        "headers": [
            (b"host", b"shop.local"),
            (b"user-agent", b"wide-logging-demo"),
            (b"x-request-id", request_id.encode()),
            (b"content-type", b"application/json"),
        ],
        "client": ("10.0.0.7", 50000),
        "server": ("shop.local", 80),
    }
    status = 500
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            await asyncio.sleep(3600)
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    try:
        await app(scope, receive, send)
    except Exception:
        status = 500
    return status


async def drive(
    app: Any, total: int, run_id: str, concurrency: int, seed: int, tick: Callable[[], None]
) -> Outcome:
    rng = random.Random(seed)
    kinds = [kind for kind, _ in MIX]
    weights = [weight for _, weight in MIX]
    outcome = Outcome()
    semaphore = asyncio.Semaphore(concurrency)

    async def one(n: int, kind: str) -> None:
        method, path, body = _request_for(kind, n, rng)
        request_id = f"{run_id}-{n}"
        async with semaphore:
            status = await call(app, method, path, body, request_id)
        outcome.sent[kind] += 1
        outcome.statuses[status] += 1
        if kind == "failing":
            outcome.failed_ids.add(request_id)
        tick()

    plan = rng.choices(kinds, weights, k=total)
    await asyncio.gather(*(one(n, kind) for n, kind in enumerate(plan)))
    return outcome


def measure_overhead(rounds: int = 7, per_round: int = 400) -> tuple[float, float]:
    """Median µs per normal request: the bare app, then the same app with the middleware
    (and a handler of its own, writing to a scratch folder: the demo's output holds the
    demo's requests only)."""
    with tempfile.TemporaryDirectory() as scratch:
        handler = WideEventHandler(
            sink=f"file:{scratch}/events.jsonl",
            fallback=f"file:{scratch}/spool/events.jsonl",
            sampling={"normal_rate": 0.02, "slow_ms": SLOW_MS, "critical_routes": ["/checkout*"]},
        )
        try:
            return _alternated(
                build_app(instrumented=False),
                build_app(instrumented=True, handler=handler),
                rounds,
                per_round,
            )
        finally:
            handler.close()


def _alternated(bare: Any, instrumented: Any, rounds: int, per_round: int) -> tuple[float, float]:
    samples: dict[str, list[float]] = {"bare": [], "wide": []}

    async def run(app: Any, key: str) -> None:
        started = time.perf_counter()
        for n in range(per_round):
            await call(app, "GET", f"/products/{n % 5000}", b"", f"overhead-{key}-{n}")
        samples[key].append((time.perf_counter() - started) / per_round * 1e6)

    async def rounds_alternated() -> None:
        for _ in range(2):  # warm up
            await run(bare, "bare")
            await run(instrumented, "wide")
        samples["bare"].clear()
        samples["wide"].clear()
        for _ in range(rounds):
            await run(bare, "bare")
            await run(instrumented, "wide")

    asyncio.run(rounds_alternated())
    return statistics.median(samples["bare"]), statistics.median(samples["wide"])


# -- the report ---------------------------------------------------------------------------


def _events_of_run(out: Path, run_id: str) -> list[dict[str, Any]]:
    events = []
    for path in sorted(out.glob("events*.jsonl")):
        with open(path, "rb") as handle:
            for line in handle:
                if run_id.encode() in line:
                    event = orjson.loads(line)
                    if str(event.get("request_id", "")).startswith(run_id + "-"):
                        events.append(event)
    return events


def _configure_logging(out: Path, normal_rate: float) -> WideEventHandler:
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "wide": {
                    "class": "wide_logging.WideEventHandler",
                    "level": "INFO",
                    "sink": f"file:{out}/events.jsonl",
                    "service": {"name": "demo-shop", "version": __version__, "environment": "demo"},
                    "sampling": {
                        "normal_rate": normal_rate,
                        "slow_ms": SLOW_MS,
                        "critical_routes": ["/checkout*"],
                    },
                    "queue_size": 50_000,
                    # pipeline health for the briefing: a metrics event every second
                    "metrics_events": True,
                    "metrics_interval": 1,
                }
            },
            "loggers": {"shop": {"handlers": ["wide"], "level": "INFO", "propagate": False}},
        }
    )
    handler = active_handler()
    assert handler is not None
    return handler


def _progress(total: int, enabled: bool) -> tuple[Callable[[], None], Callable[[], None]]:
    if not enabled:
        return (lambda: None), (lambda: None)
    from tqdm import tqdm

    bar = tqdm(total=total, unit="req", desc="requests", mininterval=0.2)
    return (lambda: bar.update(1)), bar.close


def run_demo(
    *,
    requests: int = 20_000,
    out: str = "wide-logs",
    normal_rate: float = 0.02,
    concurrency: int = 16,
    seed: int = 7,
    progress: bool = True,
    print_: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the demo and print the report; returns the numbers it printed."""
    out_dir = Path(out)
    moved = _move_previous_run(out_dir)
    handler = _configure_logging(out_dir, normal_rate)
    run_id = f"demo{int(time.time())}{random.randrange(1000):03d}"
    tick, done = _progress(requests, progress)
    started = time.perf_counter()
    outcome = asyncio.run(
        drive(build_app(instrumented=True), requests, run_id, concurrency, seed, tick)
    )
    elapsed = time.perf_counter() - started
    done()
    handler.flush(30)
    counts = handler.metrics.snapshot()
    events = _events_of_run(out_dir, run_id)
    bare_us, wide_us = measure_overhead()

    stored_ids = {e["request_id"] for e in events if e.get("kind") == "http.request"}
    by_rule = Counter(e["sampling"]["rule"] for e in events if e.get("kind") == "http.request")
    errors_kept = len(outcome.failed_ids & stored_ids)
    normal_sent = outcome.sent["normal"] + outcome.sent["not_found"] + outcome.sent["noisy"]
    report = {
        "requests": requests,
        "seconds": round(elapsed, 2),
        "sent_by_kind": dict(outcome.sent),
        "kept_by_rule": dict(by_rule),
        "normal_retention": by_rule["normal"] / normal_sent if normal_sent else 0.0,
        "errors_sent": len(outcome.failed_ids),
        "errors_kept": errors_kept,
        "written": sum(v for k, v in counts.items() if k.startswith("written.")),
        "spooled": counts.get("spooled", 0),
        "dropped": {k.split(".", 1)[1]: v for k, v in counts.items() if k.startswith("dropped.")},
        "overhead_us": round(wide_us - bare_us, 2),
        "bare_us": round(bare_us, 2),
        "sink": handler.pipeline.links[0].sink.name,
        "incidents": [i.title for i in summarize(events)],
        "lines_in_output": _count_lines(out_dir),
        "out": str(out_dir),
        "previous_run": str(moved) if moved is not None else None,
    }
    print_(_format_report(report, outcome, events))
    handler.close()
    report["briefing"] = _write_briefing(out_dir, print_)
    return report


def _write_briefing(out: Path, print_: Callable[[str], None]) -> str | None:
    """The run's briefing (``wide-logging report``), beside its events."""
    from ..report import build_report
    from ..report.html import write_html

    path = out / "briefing.html"
    try:
        write_html(build_report(f"file:{out}/events.jsonl"), str(path))
    except ConfigurationError as exc:  # the report extra is missing
        print_(f"no briefing: {exc}")
        return None
    print_(f"the briefing (open it in a browser): {path}")
    return str(path)


def _move_previous_run(out: Path) -> Path | None:
    """An earlier run's events go to ``<out>/previous`` (replacing the one before), so that
    this run's output holds this run's events only: what the report says is what is there."""
    earlier = [p for p in out.glob("events*.jsonl") if p.is_file()] if out.is_dir() else []
    spool = out / "spool"
    if not earlier and not spool.exists():
        return None
    previous = out / "previous"
    shutil.rmtree(previous, ignore_errors=True)
    previous.mkdir(parents=True)
    for path in [*earlier, *([spool] if spool.exists() else [])]:
        shutil.move(str(path), previous / path.name)
    for name in ("dead-letters.jsonl",):
        if (out / name).exists():
            shutil.move(str(out / name), previous / name)
    return previous


def _count_lines(out: Path) -> int:
    return sum(
        sum(1 for line in open(path, "rb") if line.strip()) for path in out.glob("events*.jsonl")
    )


def _format_report(report: dict[str, Any], outcome: Outcome, events: list[dict[str, Any]]) -> str:
    lines = [
        "",
        "wide_logging demo report",
        "=" * 60,
        f"requests sent           {report['requests']:>8}   in {report['seconds']} s",
        "  by kind               "
        + ", ".join(f"{k} {v}" for k, v in sorted(outcome.sent.items(), key=lambda kv: -kv[1])),
        f"events kept             {sum(report['kept_by_rule'].values()):>8}",
    ]
    for rule, count in sorted(report["kept_by_rule"].items(), key=lambda kv: -kv[1]):
        lines.append(f"  rule {rule:<18} {count:>8}")
    share = report["errors_kept"] / report["errors_sent"] if report["errors_sent"] else 1.0
    lines += [
        f"normal traffic kept     {report['normal_retention']:>8.2%}   (policy: normal_rate)",
        f"failed requests kept    {share:>8.2%}   "
        f"({report['errors_kept']} of {report['errors_sent']})",
        f"events written          {report['written']:>8}   to {report['sink']} "
        f"({report['lines_in_output']} lines there)",
        f"events spooled          {report['spooled']:>8}",
        f"events dropped          {sum(report['dropped'].values()):>8}   {report['dropped'] or ''}",
        f"middleware overhead     {report['overhead_us']:>8.2f} µs/request "
        f"(bare app {report['bare_us']:.2f} µs, median of alternated rounds)",
    ]
    found = summarize(events)
    lines += ["", f"incidents found by the default rules: {len(found)}"]
    lines += [f"  {i.title}: {i.count} events, examples {', '.join(i.examples[:2])}" for i in found]
    sample = next((e for e in events if e.get("error") and e.get("logs")), None) or (
        events[0] if events else None
    )
    if sample is not None:
        if "stack" in sample.get("error", {}):
            sample["error"]["stack"] = "...\n" + "\n".join(
                sample["error"]["stack"].splitlines()[-2:]
            )
        lines += ["", "one kept event:", orjson.dumps(sample, option=orjson.OPT_INDENT_2).decode()]
    out = report["out"]
    lines += [
        "",
        f"the events are in {out}/events.jsonl"
        + (
            f" (the previous run's moved to {report['previous_run']})"
            if report["previous_run"]
            else ""
        ),
        "next:",
        f"  wide-logging stats --events {out}",
        f"  wide-logging incidents --source file:{out}/events.jsonl",
    ]
    return "\n".join(lines)
