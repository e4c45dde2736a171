"""``wide-logging report``: the numbers are the events' own (re-weighted, weighted
quantiles) and the page shows them — checked in a real headless Chromium, as a person
would open the file."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from servers import required
from wide_logging.tools.cli import main

pytestmark = pytest.mark.slow
START = datetime(2026, 11, 29, 9, 0, tzinfo=timezone.utc).timestamp()
XSS_ROUTE = "/<img src=x onerror=window.__xss=1>"


def _iso(seconds: float) -> str:
    return (
        datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds")[:-6] + "Z"
    )


def _request(n: int, *, route: str, duration: float, rate: float, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": f"{n:032x}",
        "timestamp": _iso(START + n * 3.0),
        "kind": "http.request",
        "service": {"name": "shop"},
        "host": {"name": "h"},
        "process": {"pid": 1},
        "request_id": f"req-{n}",
        "http": {"route": route, "response": {"status_code": extra.pop("status", 200)}},
        "duration_ms": duration,
        "sampling": {"rule": "normal" if rate < 1 else "slow", "rate": rate},
        **extra,
    }


def _traffic(path: Path) -> list[dict[str, Any]]:
    """Normal requests stored at 2% (each stands for 50), every slow one kept, errors of
    two types, a route an attacker named, and two metrics events that saw drops."""
    events = []
    for n in range(600):
        if n % 37 == 0:
            events.append(
                _request(
                    n,
                    route="/orders/{id}",
                    duration=30.0,
                    rate=1.0,
                    status=500,
                    error={"type": "KeyError" if n % 2 else "TimeoutError", "message": f"m{n}"},
                )
            )
        elif n % 3:  # slow: all kept, two in three of the events stored
            events.append(_request(n, route="/search", duration=900.0 + n, rate=1.0))
        else:
            events.append(_request(n, route="/items/{id}", duration=5.0 + n % 7, rate=0.02))
    events.append(_request(601, route=XSS_ROUTE, duration=1.0, rate=1.0))
    for n, dropped in ((700, 0), (800, 4)):
        events.append(
            {
                "event_id": f"m{n:031x}",
                "timestamp": _iso(START + n),
                "kind": "metrics",
                "host": {"name": "h"},
                "process": {"pid": 1},
                "metrics": {
                    "events": {"kept": {"normal": 10 + n}, "sampled_out": {"normal": 490 + n}},
                    "dropped": {"queue_full": dropped},
                    "queue": {"depth": n // 100},
                },
            }
        )
    path.write_text("".join(json.dumps(e) + "\n" for e in events) + '{"torn": \n')
    return events


def _weighted_quantile(pairs: list[tuple[float, float]], q: float) -> float:
    total = sum(w for _, w in pairs)
    seen = 0.0
    for value, weight in sorted(pairs):
        seen += weight
        if seen >= q * total:
            return value
    raise AssertionError("empty")


def _expected(events: list[dict[str, Any]]) -> dict[str, Any]:
    requests = [e for e in events if e["kind"] == "http.request"]
    weight = {e["event_id"]: 1 / e["sampling"]["rate"] for e in requests}
    failed = [e for e in requests if "error" in e or e["http"]["response"]["status_code"] >= 500]
    pairs = [(e["duration_ms"], weight[e["event_id"]]) for e in requests]
    return {
        "requests": sum(weight.values()),
        "errors": sum(weight[e["event_id"]] for e in failed),
        **{f"p{round(q * 100)}": _weighted_quantile(pairs, q) for q in (0.5, 0.95, 0.99)},
        "unweighted_p50": _weighted_quantile([(d, 1.0) for d, _ in pairs], 0.5),
    }


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_binary = shutil.which("chromedriver")
    if chromium is None or driver_binary is None:
        required("chromium", "apt-get install -y chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,2000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(driver_binary)))
    try:
        yield driver
    finally:
        driver.quit()


def _open(browser: Any, page: Path, charts: int, width: int = 1280) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    browser.set_window_size(width, 2000)
    browser.get(page.as_uri())
    WebDriverWait(browser, 30).until(
        lambda d: d.execute_script("return document.querySelectorAll('.main-svg').length") >= charts
    )


def _console_errors(browser: Any) -> list[str]:
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def _text(browser: Any, selector: str) -> str:
    from selenium.webdriver.common.by import By

    return str(browser.find_element(By.CSS_SELECTOR, selector).text)


def test_the_briefing_shows_the_events_own_weighted_numbers_in_a_browser(
    browser: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = _traffic(tmp_path / "events.jsonl")
    expected = _expected(events)
    # the weighting matters: unweighted, the median would be a slow request's
    assert expected["unweighted_p50"] >= 900 > expected["p50"]
    page = tmp_path / "briefing.html"
    source = f"file:{tmp_path / 'events.jsonl'}"
    assert main(["report", "--source", source, "--out", str(page)]) == 0
    _open(browser, page, charts=3)
    browser.save_screenshot(str(tmp_path / "briefing.png"))
    assert _console_errors(browser) == []
    assert browser.execute_script("return window.__xss") is None  # shown, never run
    # every chart drew its data (Plotly's traces have paths)
    drawn = browser.execute_script(
        "return [...document.querySelectorAll('.js-plotly-plot')].map("
        "p => p.querySelectorAll('.trace path, .point path, .bars path').length)"
    )
    assert len(drawn) == 3
    assert all(n > 0 for n in drawn), drawn
    assert _text(browser, '[data-metric="requests"]') == f"{expected['requests']:,.0f}"
    assert _text(browser, '[data-metric="errors"]') == f"{expected['errors']:,.0f}"
    for q in ("p50", "p95", "p99"):
        assert _text(browser, f'[data-metric="{q}"]') == f"{expected[q]:,.1f} ms"
    assert _text(browser, '[data-metric="error_rate"]') == (
        f"{expected['errors'] / expected['requests']:.2%}"
    )
    # routes: the failing one first, the attacker's route shown as text
    routes = browser.execute_script(
        "return [...document.querySelectorAll('[data-table=routes] tbody tr')]"
        ".map(r => r.dataset.route)"
    )
    assert routes[0] == "/orders/{id}"
    assert XSS_ROUTE in routes
    assert "events were dropped: 4 queue_full" in _text(browser, "[data-warning]")
    assert _text(browser, '[data-health="dropped"]') == "4"
    errors = browser.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('[data-error-type]')]"
        ".map(r => [r.dataset.errorType, r.querySelector('[data-count]').textContent]))"
    )
    kinds = [e["error"]["type"] for e in events if "error" in e]
    assert errors == {kind: str(kinds.count(kind)) for kind in set(kinds)}
    # the same numbers as data and as markdown
    assert main(["report", "--source", source, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["totals"]["requests"] == pytest.approx(expected["requests"])
    assert data["totals"]["p95"] == expected["p95"]
    assert main(["report", "--source", source, "--format", "markdown"]) == 0
    markdown = capsys.readouterr().out
    assert f"**Requests** {expected['requests']:,.0f}" in markdown
    assert "**Warning:** events were dropped" in markdown


def test_on_a_phone_the_page_fits_its_width(browser: Any, tmp_path: Path) -> None:
    _traffic(tmp_path / "events.jsonl")
    page = tmp_path / "briefing.html"
    assert (
        main(["report", "--source", f"file:{tmp_path / 'events.jsonl'}", "--out", str(page)]) == 0
    )
    _open(browser, page, charts=3, width=390)
    width = browser.execute_script("return window.innerWidth")
    wide = browser.execute_script(
        "return [...document.querySelectorAll('body *')].filter(e => "
        "e.getBoundingClientRect().right > window.innerWidth + 1 && !e.closest('.scroll'))"
        ".slice(0, 5).map(e => e.tagName + '.' + e.className)"
    )
    assert wide == []
    assert browser.execute_script("return document.documentElement.scrollWidth") <= width
    browser.save_screenshot(str(tmp_path / "phone.png"))


def test_an_empty_period_and_a_source_of_only_errors_say_so(browser: Any, tmp_path: Path) -> None:
    _traffic(tmp_path / "events.jsonl")  # all of it in 2026-11-29, long before "the last hour"
    empty = tmp_path / "empty.html"
    source = f"file:{tmp_path / 'events.jsonl'}"
    since = datetime.fromtimestamp(time.time() - 3600, timezone.utc).isoformat()
    assert main(["report", "--source", source, "--since", since, "--out", str(empty)]) == 0
    _open(browser, empty, charts=0)
    assert "No requests in this period" in _text(browser, "[data-empty]")
    assert _text(browser, '[data-metric="requests"]') == "0"
    assert _console_errors(browser) == []

    only_errors = tmp_path / "errors.jsonl"
    only_errors.write_text(
        "".join(
            json.dumps(
                _request(
                    n,
                    route="/pay",
                    duration=3.0,
                    rate=1.0,
                    status=503,
                    error={"type": "Boom", "message": "x"},
                )
            )
            + "\n"
            for n in range(5)
        )
    )
    page = tmp_path / "errors.html"
    assert main(["report", "--source", f"file:{only_errors}", "--out", str(page)]) == 0
    _open(browser, page, charts=2)
    assert _text(browser, '[data-metric="error_rate"]') == "100.00%"
    assert _text(browser, '[data-error-type="Boom"] [data-count]') == "5"
    assert _console_errors(browser) == []


def test_a_source_it_cannot_read_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for source, message in (
        (f"file:{tmp_path}/nothing.jsonl", "no event files"),
        ("mongodb://user:secret@127.0.0.1:1/logs?serverSelectionTimeoutMS=300", "could not reach"),
    ):
        with pytest.raises(SystemExit):
            main(["report", "--source", source])
        err = capsys.readouterr().err
        assert message in err
        assert "secret" not in err


def test_the_reports_incidents_are_wide_logging_incidents_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from wide_logging.incidents import DEFAULT_RULES
    from wide_logging.incidents.sources import incidents_from

    events = [
        _request(n, route="/orders/{id}", duration=4.0, rate=0.1) for n in range(0, 400, 2)
    ] + [
        _request(
            n,
            route="/orders/{id}",
            duration=50.0,
            rate=1.0,
            status=502,
            error={"type": "UpstreamTimeout", "message": f"timed out after {n}s"},
        )
        for n in range(1, 120, 2)
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    assert main(["report", "--source", f"file:{path}", "--format", "json"]) == 0
    reported = json.loads(capsys.readouterr().out)["incidents"]
    own = [i.to_dict() for i in incidents_from(f"file:{path}", DEFAULT_RULES, None)]
    assert reported
    assert reported == json.loads(json.dumps(own))  # (tuples as lists, as in the JSON)
    assert reported[0]["share_of_traffic"] is not None


def test_events_stored_twice_count_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    once = tmp_path / "once.jsonl"
    events = _traffic(once)
    twice = tmp_path / "twice" / "events.jsonl"
    twice.parent.mkdir()
    twice.write_text(once.read_text() * 2)  # a replay run twice
    reports = []
    for path in (once, twice):
        assert main(["report", "--source", f"file:{path}", "--format", "json"]) == 0
        reports.append(json.loads(capsys.readouterr().out))
    assert reports[0]["totals"] == reports[1]["totals"]
    assert reports[0]["totals"]["requests"] == pytest.approx(_expected(events)["requests"])
    assert reports[0]["incidents"] == reports[1]["incidents"]
    assert (
        reports[0]["pipeline"]["dropped"]
        == reports[1]["pipeline"]["dropped"]
        == {"queue_full": 4.0}
    )


def _report_of(capsys: pytest.CaptureFixture[str], path: Path, *extra: str) -> dict[str, Any]:
    assert main(["report", "--source", f"file:{path}", "--format", "json", *extra]) == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


def _burst(n: int, **extra: Any) -> dict[str, Any]:
    return _request(
        n,
        route="/b",
        duration=5.0,
        rate=1.0,
        status=500,
        error={"type": "Boom", "message": f"boom {n}"},
        **extra,
    )


def test_a_gzipped_source_has_its_incidents_and_a_broken_one_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import gzip

    text = "".join(json.dumps(_burst(n)) + "\n" for n in range(40))
    plain = tmp_path / "plain" / "events.jsonl"
    plain.parent.mkdir()
    plain.write_text(text)
    packed = tmp_path / "packed" / "events.jsonl.gz"
    packed.parent.mkdir()
    packed.write_bytes(gzip.compress(text.encode()))
    (packed.parent / "old.jsonl.bz2").write_bytes(b"BZh9 not ours")  # logrotate's: not read
    expected = _report_of(capsys, plain)["incidents"]
    assert expected
    assert _report_of(capsys, packed)["incidents"] == expected
    assert _report_of(capsys, packed.parent)["incidents"] == expected
    packed.write_bytes(gzip.compress(text.encode())[:200])  # cut short
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "--source", f"file:{packed}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "could not read the events" in err
    assert "Traceback" not in err


def test_odd_rates_times_and_errors_are_read_alike_by_the_counts_and_the_incidents(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = [_burst(n) for n in range(30)]
    for n, rate in enumerate((1e-320, 1e-300, "0.5", 2, 0, -1, None)):
        events.append(_request(100 + n, route="/b", duration=1.0, rate=1.0))
        events[-1]["sampling"]["rate"] = rate
    events.append(_request(200, route="/b", duration=1.0, rate=1.0))
    events[-1]["timestamp"] = "9999-12-31T23:59:59.999Z"  # a broken clock: left out
    events.append(_request(201, route="/b", duration=1.0, rate=1.0))
    events[-1]["timestamp"] = events[0]["timestamp"][:-1]  # no zone: UTC
    events.append(_request(202, route="/e", duration=1.0, rate=1.0, error={"message": "x"}))
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    data = _report_of(capsys, path)
    assert data["totals"]["requests"] == 30 + 7 + 1 + 1  # every odd rate weighs 1
    assert data["totals"]["errors"] == 31
    [incident] = data["incidents"]
    assert incident["weighted_count"] == 30
    assert {e["type"] for e in data["errors"]} == {"Boom", "error"}  # not "HTTP 200"
    assert main(["report", "--source", f"file:{path}", "--out", str(tmp_path / "r.html")]) == 0
    assert (
        main(["report", "--source", f"file:{path}", "--since", "99999999d", "--format", "markdown"])
        == 0
    )


def test_pipeline_health_counts_across_a_restart(tmp_path: Path) -> None:
    from wide_logging.report.health import pipeline_health

    def row(moment: float, kept: int, dropped: int) -> tuple[float, str, str]:
        numbers = {"events": {"kept": {"normal": kept}}, "dropped": {"queue_full": dropped}}
        return moment, "h:1", json.dumps(numbers)

    rows = [row(10, 100, 1), row(20, 150, 2), row(30, 20, 0), row(40, 25, 3)]
    health = pipeline_health(rows, start=15)
    assert health["kept"] == {"normal": 50 + 20 + 5}  # 100 -> 150, restart, 0 -> 20 -> 25
    assert health["dropped"] == {"queue_full": 1 + 0 + 3}


def test_markdown_makes_no_html_or_link_of_what_events_say(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile = "<img src=x onerror=alert(1)> [click](javascript:alert(1)) a|b\rc"
    events = [_burst(n) for n in range(30)]
    for event in events:
        event["error"]["message"] = hostile
        event["http"]["route"] = hostile
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    assert main(["report", "--source", f"file:{path}", "--format", "markdown"]) == 0
    markdown = capsys.readouterr().out
    outside_code = re.sub(r"`[^`\n]*`", "", markdown)  # (a code span shows HTML as text)
    assert "<img" not in outside_code
    assert "[click](javascript" not in outside_code  # (only as escaped text: \\[click\\](...)
    assert "\r" not in markdown
    [row] = [line for line in markdown.splitlines() if line.startswith("| &lt;img")]
    assert len(re.findall(r"(?<!\\)\|", row)) == 6  # five cells: the a|b stays in its cell


def test_many_incidents_and_a_long_span_keep_the_page_small(browser: Any, tmp_path: Path) -> None:
    events = []
    for burst in range(40):  # 40 incidents, one a month for years
        for n in range(12):
            event = _burst(burst * 100 + n)
            event["timestamp"] = _iso(START - burst * 30 * 86400 + n)
            event["error"]["type"] = f"Kind{burst}" + "x" * 200  # long titles
            events.append(event)
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    page = tmp_path / "many.html"
    assert main(["report", "--source", f"file:{path}", "--out", str(page)]) == 0
    _open(browser, page, charts=3, width=390)
    assert (
        browser.execute_script("return document.querySelectorAll('[data-incident]').length") == 20
    )
    bars = browser.execute_script(
        "return document.querySelectorAll('.js-plotly-plot')[0].querySelectorAll('.point').length"
    )
    assert 0 < bars <= 2 * 200
    width = browser.execute_script("return window.innerWidth")
    assert browser.execute_script("return document.documentElement.scrollWidth") <= width
    assert _console_errors(browser) == []


def test_out_writes_the_json_and_markdown_forms_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--out names the file for every format (it used to be ignored but for html): the
    file holds what standard output shows without it."""
    events = tmp_path / "events.jsonl"
    _traffic(events)
    for form in ("json", "markdown"):
        assert main(["report", "--source", f"file:{events}", "--format", form]) == 0
        shown = capsys.readouterr().out
        out = tmp_path / f"briefing.{form}"
        assert (
            main(["report", "--source", f"file:{events}", "--format", form, "--out", str(out)]) == 0
        )
        captured = capsys.readouterr()
        assert captured.out == ""
        assert f"report written to {out}" in captured.err
        written = out.read_text(encoding="utf-8")
        if form == "json":  # (the same numbers; generated_at is the time of each run)
            first, second = json.loads(shown), json.loads(written)
            assert first.pop("generated_at") <= second.pop("generated_at")
            assert first == second
        else:
            assert written.splitlines()[1:] == shown.splitlines()[1:]


@pytest.mark.redis
def test_a_redis_stream_is_read_by_ranges_into_the_same_report(
    redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from wide_logging.incidents import sources
    from wide_logging.sinks import open_sink

    events = _traffic(tmp_path / "events.jsonl")
    sink = open_sink(f"{redis_url}?stream=report-test")
    try:
        sink.write([json.dumps(e).encode() for e in events])
    finally:
        sink.close()
    from_file = _report_of(capsys, tmp_path / "events.jsonl")
    original = sources.RANGE
    sources.RANGE = 64  # several ranges
    try:
        assert (
            main(["report", "--source", f"{redis_url}?stream=report-test", "--format", "json"]) == 0
        )
    finally:
        sources.RANGE = original
    from_stream = json.loads(capsys.readouterr().out)
    for part in ("totals", "routes", "errors", "timeline", "incidents", "pipeline"):
        assert from_stream[part] == from_file[part], part
    unreachable = "redis://user:hunter2@127.0.0.1:1/0?stream=x"
    with pytest.raises(SystemExit):
        main(["report", "--source", unreachable])
    err = capsys.readouterr().err
    assert "could not reach" in err
    assert "hunter2" not in err


@pytest.mark.mongo
def test_a_mongodb_collection_gives_the_same_briefing_worked_out_by_the_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import mongomock
    import orjson

    from wide_logging.report import _report
    from wide_logging.report.mongo import MongoEvents
    from wide_logging.sinks.mongo import to_document

    events = _traffic(tmp_path / "events.jsonl")
    collection = mongomock.MongoClient().db.events
    collection.insert_many([to_document(orjson.dumps(e)) for e in events])
    from_file = _report_of(capsys, tmp_path / "events.jsonl")
    on_server = json.loads(
        json.dumps(_report(MongoEvents(collection), "mongodb://x", None, None), default=str)
    )
    for key in ("events", "requests", "errors", "error_events", "error_rate"):
        assert on_server["totals"][key] == pytest.approx(from_file["totals"][key]), key
    for q in ("p50", "p95", "p99"):  # a histogram's 1% buckets: within half a percent
        assert on_server["totals"][q] == pytest.approx(from_file["totals"][q], rel=0.005), q
    assert [r["route"] for r in on_server["routes"]] == [r["route"] for r in from_file["routes"]]
    for mine, theirs in zip(on_server["routes"], from_file["routes"], strict=True):
        assert (mine["requests"], mine["errors"]) == (theirs["requests"], theirs["errors"])
        assert mine["p95"] == pytest.approx(theirs["p95"], rel=0.005)
    assert [(e["type"], e["count"], e["examples"]) for e in on_server["errors"]] == [
        (e["type"], e["count"], e["examples"]) for e in from_file["errors"]
    ]
    assert on_server["incidents"] == from_file["incidents"]
    assert on_server["pipeline"] == from_file["pipeline"]
    assert [p["requests"] for p in on_server["timeline"]] == [
        p["requests"] for p in from_file["timeline"]
    ]


@pytest.mark.mongo
def test_odd_events_read_alike_from_mongodb_and_from_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import mongomock
    import orjson

    from wide_logging.report import _report
    from wide_logging.report.mongo import MongoEvents
    from wide_logging.sinks.mongo import to_document

    odd = []
    for n in range(40):
        event = _request(n, route="/a", duration=3.0 + n, rate=1.0)
        event["timestamp"] = _iso(START + 37 + n * 7)  # not on a step's boundary
        if n % 5 == 0:  # an exception before any response: no status
            del event["http"]["response"]
            event["error"] = {
                "type": "$http.route" if n % 10 else "KeyError",
                "message": f"m{n % 3}",
            }
        if n == 3:
            event["http"]["route"] = {"weird": 1}
        if n == 4:
            event["error"] = ""  # not an error, as Python reads it
        if n == 6:
            event["http"]["response"]["status_code"] = "500"  # text: not a status number
        odd.append(event)
    odd.append({"event_id": "m" * 32, "timestamp": _iso(START + 100), "kind": "metrics",
                "process": 7, "metrics": {"dropped": {"queue_full": 1}}})  # fmt: skip
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in odd))
    collection = mongomock.MongoClient().db.events
    collection.insert_many([to_document(orjson.dumps(e)) for e in odd])
    from_file = _report_of(capsys, path)
    on_server = json.loads(json.dumps(_report(MongoEvents(collection), "mongodb://x", None, None)))
    assert on_server["totals"]["errors"] == from_file["totals"]["errors"] == 8
    assert [(p["t"], p["requests"]) for p in on_server["timeline"]] == [
        (p["t"], p["requests"]) for p in from_file["timeline"]
    ]
    assert [(e["type"], e["count"], e["message"], e["examples"]) for e in on_server["errors"]] == [
        (e["type"], e["count"], e["message"], e["examples"]) for e in from_file["errors"]
    ]
    assert sorted(r["route"] for r in on_server["routes"]) == sorted(
        r["route"] for r in from_file["routes"]
    )
