"""Incidents from generated traffic with known failure modes; noise alone opens none."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from mockupdb import MockupDB, OpMsg

from conftest import read_jsonl
from servers import RedisServer
from wide_logging import ConfigurationError
from wide_logging.consumer import StreamConsumer
from wide_logging.incidents import (
    DEFAULT_RULES,
    Condition,
    IncidentAggregator,
    Rule,
    fingerprint,
    format_incidents,
    load_rules,
    normalize_message,
    summarize,
)
from wide_logging.incidents.mongo import rule_pipeline
from wide_logging.incidents.sources import incidents_from, parse_since
from wide_logging.sinks.redis_stream import RedisStreamSink

T0 = 1_795_000_000.0  # a fixed start: 2026-11-18


def iso(seconds: float) -> str:
    from wide_logging.fields import iso_timestamp

    return iso_timestamp(seconds)


def request(
    t: float,
    route: str,
    *,
    status: int = 200,
    duration: float = 20.0,
    error: dict[str, str] | None = None,
    rate: float = 1.0,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": uuid.uuid4().hex,
        "timestamp": iso(t),
        "kind": "http.request",
        "service": {"name": "shop"},
        "request_id": f"req-{uuid.uuid4().hex[:12]}",
        "http": {"route": route, "response": {"status_code": status}},
        "duration_ms": duration,
        "sampling": {"rule": "error" if error else "normal", "rate": rate},
    }
    if error:
        event["error"] = error
    return event


def traffic(seed: int = 3, minutes: int = 60) -> list[dict[str, Any]]:
    """An hour of normal traffic (sampled at 2%) with scattered, unrelated errors."""
    rng = random.Random(seed)
    events = []
    for second in range(0, minutes * 60, 2):
        route = rng.choice(["/products/{id}", "/search", "/cart"])
        events.append(request(T0 + second, route, duration=rng.uniform(5, 80), rate=0.02))
    for n in range(8):  # one-off errors, far apart: never a burst
        events.append(
            request(
                T0 + 400 * n,
                "/cart",
                status=500,
                error={"type": "KeyError", "message": f"'sku-{n}'"},
            )
        )
    return events


def inject_failures(events: list[dict[str, Any]]) -> None:
    # mode 1: a burst of one failure, messages differing only in numbers
    for n in range(12):
        events.append(
            request(
                T0 + 1000 + 10 * n,
                "/orders/{id}",
                status=500,
                duration=310.0 + n,
                error={
                    "type": "UpstreamTimeout",
                    "message": f"timeout after {30 + n}s for user {n * 7}",
                },
            )
        )
    # mode 2: the reports route turns slow for a few minutes
    for n in range(15):
        events.append(request(T0 + 2000 + 12 * n, "/reports/daily", duration=2500.0 + n))


def test_fingerprint_ignores_what_varies() -> None:
    assert normalize_message("timeout after 31s for user 42") == "timeout after <n>s for user <n>"
    assert normalize_message("user 'bob' not found") == "user <str> not found"
    assert (
        normalize_message("order 3f2b9c1d-aaaa-bbbb-cccc-0123456789ab failed")
        == "order <id> failed"
    )
    assert normalize_message("bad token deadbeef99 at 0x7ffe") == "bad token <hex> at <hex>"
    a = {"error": {"type": "T", "message": "timeout after 31s for user 42"}}
    b = {"error": {"type": "T", "message": "timeout after 17s for user 9"}}
    c = {"error": {"type": "U", "message": "timeout after 17s for user 9"}}
    assert fingerprint(a) == fingerprint(b) != fingerprint(c)


def test_injected_failures_are_found_with_counts_and_examples() -> None:
    events = traffic()
    inject_failures(events)
    random.Random(1).shuffle(events)
    incidents = summarize(events)
    assert [(i.rule, i.title) for i in incidents] == [
        ("latency_degradation", "slow requests on /reports/daily"),
        ("error_burst", "UpstreamTimeout on /orders/{id}"),
    ]
    slow, burst = incidents
    assert burst.count == 12
    assert burst.weighted_count == 12
    assert burst.first_seen == iso(T0 + 1000)
    assert burst.last_seen == iso(T0 + 1110)
    assert burst.routes == {"/orders/{id}": 12}
    assert burst.status_codes == {"500": 12}
    assert burst.services == {"shop": 12}
    assert len(burst.examples) == 5
    assert burst.duration_p50_ms == pytest.approx(315.5, abs=1)
    assert burst.top_messages[0][1] == 1  # every message differs in its numbers ...
    assert (
        len({fingerprint(e) for e in events if e.get("error", {}).get("type") == "UpstreamTimeout"})
        == 1
    )
    assert slow.count == 15
    assert slow.duration_p95_ms is not None
    assert slow.duration_p95_ms >= 2500


def test_noise_alone_opens_nothing() -> None:
    assert summarize(traffic()) == []


def test_share_of_traffic_uses_the_sampling_rates() -> None:
    events = [request(T0 + n, "/pay", rate=0.02) for n in range(10)]  # ~500 requests
    events += [
        request(T0 + n, "/pay", status=500, error={"type": "E", "message": "x"}) for n in range(10)
    ]
    [incident] = summarize(events)
    assert incident.weighted_count == 10
    assert incident.share_of_traffic == pytest.approx(10 / (10 * 50 + 10), rel=1e-3)


def test_episodes_split_on_quiet_periods_and_need_a_burst_each() -> None:
    rule = Rule.from_dict(
        {
            "name": "r",
            "match": "error exists",
            "group_by": ["http.route"],
            "window": 60,
            "threshold": 3,
            "quiet": 300,
        }
    )
    events = [request(T0 + t, "/x", error={"type": "E", "message": "m"}) for t in (0, 10, 20)]
    events += [
        request(T0 + t, "/x", error={"type": "E", "message": "m"}) for t in (1000, 1100, 1200)
    ]
    events += [
        request(T0 + t, "/x", error={"type": "E", "message": "m"}) for t in (5000, 5001, 5002)
    ]
    found = summarize(events, [rule])
    # the middle episode has 3 events but never 3 within 60 s: no incident
    assert [(i.first_seen, i.count) for i in found] == [(iso(T0 + 5000), 3), (iso(T0), 3)]


def test_since_filters_old_events() -> None:
    events = traffic()
    inject_failures(events)
    assert [i.rule for i in summarize(events, since=T0 + 1500)] == ["latency_degradation"]


def test_formats() -> None:
    events = traffic()
    inject_failures(events)
    incidents = summarize(events)
    text = format_incidents(incidents, "text")
    assert "UpstreamTimeout on /orders/{id}  [error_burst," in text
    assert "examples: req-" in text
    markdown = format_incidents(incidents, "markdown")
    assert markdown.splitlines()[0].startswith("| incident | rule |")
    assert len([line for line in markdown.splitlines() if line.startswith("| ")]) == 3
    assert "- 12 x `timeout after <*>s for user <*>`" in markdown  # then each one's details
    decoded = json.loads(format_incidents(incidents, "json"))
    assert decoded[1]["count"] == 12
    assert format_incidents([], "text") == "no incidents"
    with pytest.raises(ConfigurationError):
        format_incidents(incidents, "html")


def test_rules_from_files_and_their_errors(tmp_path: Path) -> None:
    spec = {
        "name": "pay_errors",
        "match": ['http.route == "/pay"', "error exists"],
        "group_by": ["error.type"],
        "window": 60,
        "threshold": 2,
        "quiet": 120,
    }
    (tmp_path / "r.json").write_text(json.dumps({"rules": [spec]}))
    (tmp_path / "r.yaml").write_text(
        "rules:\n  - name: pay_errors\n    match: ['http.route == \"/pay\"', 'error exists']\n"
        "    group_by: [error.type]\n    window: 60\n    threshold: 2\n    quiet: 120\n"
    )
    (tmp_path / "r.toml").write_text(
        '[[rules]]\nname = "pay_errors"\nmatch = [\'http.route == "/pay"\', "error exists"]\n'
        'group_by = ["error.type"]\nwindow = 60\nthreshold = 2\nquiet = 120\n'
    )
    loaded = {load_rules(tmp_path / name) for name in ("r.json", "r.yaml", "r.toml")}
    assert len(loaded) == 1
    [rule] = loaded.pop()
    assert rule.match[0] == Condition("http.route", "==", "/pay")
    for bad, message in [
        ({"name": "x"}, "lacks the field 'match'"),
        ({"name": "x", "match": "status >>= 3"}, "is not '<dotted.path> <op>"),
        ({"name": "x", "match": "error exists 3"}, "takes no value"),
        ({"name": "x", "match": "a > 1", "threshold": 0}, "threshold from 1"),
        ({"name": "x", "match": "a > 1", "threshold": 10**20}, "threshold from 1"),
        ({"name": "x", "match": "a > 1", "window": float("nan")}, "window and quiet finite"),
        ({"name": "x", "match": "a > 1", "threshold": "many"}, "whole number"),
        ({"name": "x", "match": "a > 1", "group_by": "http.route"}, "list of field paths"),
        ({"name": "x", "match": "a > 1", "group_by": [5]}, "dotted field paths"),
        ({"name": "x", "match": "a > 1", "group_by": ["$x"]}, "dotted field paths"),
        ({"name": "x", "match": "a > 1", "group_by": ["a..b"]}, "dotted field paths"),
        ({"name": "x", "match": "a > 1", "group_by": ["timestamp"]}, "not timestamp"),
        ({"name": "x", "match": 5}, "match takes a condition"),
        ({"name": "x", "match": 'timestamp >= "2026"'}, "--since"),
        ({"name": "x", "match": "a == 99999999999999999999"}, "64 bits"),
        ("a string", "a rule is a table"),
        ({"name": "x", "match": "a > 1", "colour": "red"}, "unknown rule field"),
    ]:
        with pytest.raises(ConfigurationError, match=message):
            Rule.from_dict(bad)
    (tmp_path / "bad.txt").write_text("")
    with pytest.raises(ConfigurationError, match=r"\.json, \.toml or \.yaml"):
        load_rules(tmp_path / "bad.txt")
    for name, text, message in [
        ("syntax.json", '{"rules": [', "not valid JSON"),
        ("syntax.toml", "[[rules]\nname =", "not valid TOML"),
        ("syntax.yaml", "rules: [a, b", "not valid YAML"),
        ("latin1.json", None, "UnicodeDecodeError"),
        ("missing.json", "", "FileNotFoundError"),
    ]:
        path = tmp_path / name
        if text is None:
            path.write_bytes(b'{"rules": "caf\xe9"}')
        elif name != "missing.json":
            path.write_text(text)
        with pytest.raises(ConfigurationError, match=message):
            load_rules(path)
    # a pattern is taken as written, not as JSON
    assert Condition.parse("msg matches true").holds({"msg": "true"})
    assert Condition.parse("msg matches 1.50").holds({"msg": "1.50"})
    assert Condition.parse('msg matches "a\\\\d"').holds({"msg": "a7"})


def test_conditions_compare_safely() -> None:
    event = {"http": {"response": {"status_code": 503}}, "route": "/x", "n": "text"}
    assert Condition.parse("http.response.status_code >= 500").holds(event)
    assert not Condition.parse("n > 3").holds(event)  # str vs int: no match, no error
    assert Condition.parse('route in ["/x", "/y"]').holds(event)
    assert Condition.parse("route matches ^/x").holds(event)
    assert Condition.parse("nothing missing").holds(event)


def test_parse_since() -> None:
    assert parse_since("1h", 10_000.0) == 6400.0
    assert parse_since("90s", 100.0) == 10.0
    midnight = datetime(2026, 11, 18, tzinfo=timezone.utc).timestamp()
    assert parse_since("2026-11-18T00:00:00Z", midnight + 1) == midnight
    assert parse_since("2026-11-18T00:00:00", midnight) == midnight  # (no zone: UTC)
    assert parse_since(None, 5.0) is None
    with pytest.raises(ConfigurationError, match="--since"):
        parse_since("yesterday", 0)


def test_cli_on_a_file_source_end_to_end(tmp_path: Path) -> None:
    events = traffic()
    inject_failures(events)
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "wide_logging",
            "incidents",
            "--source",
            f"file:{path}",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    found = json.loads(result.stdout)
    assert [(i["rule"], i["count"]) for i in found] == [
        ("latency_degradation", 15),
        ("error_burst", 12),
    ]


# -- live ------------------------------------------------------------------------------


def test_live_aggregator_opens_escalates_and_resolves() -> None:
    now = [T0]
    emitted: list[dict[str, Any]] = []
    rule = Rule.from_dict(
        {
            "name": "burst",
            "match": "error exists",
            "group_by": ["http.route"],
            "window": 60,
            "threshold": 3,
            "quiet": 30,
        }
    )
    aggregator = IncidentAggregator(emitted.append, [rule], clock=lambda: now[0])
    for n in range(12):
        now[0] = T0 + n
        aggregator.observe(request(now[0], "/x", error={"type": "E", "message": "m"}))
        aggregator.tick()
    now[0] = T0 + 11 + 29
    aggregator.tick()
    assert [e["incident"]["status"] for e in emitted] == ["opened", "escalated", "escalated"]
    now[0] = T0 + 11 + 31
    aggregator.tick()
    statuses = [(e["incident"]["status"], e["incident"]["count"]) for e in emitted]
    assert statuses == [("opened", 3), ("escalated", 6), ("escalated", 12), ("resolved", 12)]
    assert emitted[0]["kind"] == "incident"
    assert emitted[0]["incident"]["title"] == "burst: http.route=/x"
    assert len(emitted[0]["incident"]["examples"]) == 1


def _burst_worker(redis_url: str, out: str, worker: int) -> None:
    rule = Rule.from_dict(
        {
            "name": "shared",
            "match": "error exists",
            "group_by": ["http.route"],
            "window": 60,
            "threshold": 5,
            "quiet": 60,
        }
    )
    lines: list[dict[str, Any]] = []
    aggregator = IncidentAggregator(lines.append, [rule], redis_url=redis_url)
    import time

    for _ in range(2):  # 4 workers x 2 events: no process alone reaches 5
        aggregator.observe(request(time.time(), "/split", error={"type": "E", "message": "m"}))
        time.sleep(0.05 * worker)
    Path(out).write_text(json.dumps(lines))


@pytest.mark.redis
def test_a_burst_split_over_four_processes_opens_one_incident(
    redis_url: str, tmp_path: Path
) -> None:
    ctx = multiprocessing.get_context("spawn")
    outs = [tmp_path / f"w{n}.json" for n in range(4)]
    workers = [
        ctx.Process(target=_burst_worker, args=(redis_url, str(o), n)) for n, o in enumerate(outs)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    announced = [e for o in outs for e in json.loads(o.read_text())]
    assert [e["incident"]["status"] for e in announced] == ["opened"]


@pytest.mark.redis
def test_consumer_announces_incidents_into_its_sink(
    redis_url: str, redis_server: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sink = RedisStreamSink(redis_url)
    import time

    burst = [
        request(time.time(), "/pay", status=500, error={"type": "Declined", "message": f"card {n}"})
        for n in range(6)
    ]
    sink.write([orjson.dumps(e) for e in burst])
    out = tmp_path / "store" / "events.jsonl"
    consumer = StreamConsumer(
        redis_url,
        f"file:{out}",
        block_ms=50,
        incident_rules=DEFAULT_RULES,
        service={"name": "log-consumer", "version": "2.1"},
    )
    consumer.ensure_group()
    consumer.process_once()
    stored = read_jsonl(out)
    incidents = [e for e in stored if e["kind"] == "incident"]
    assert len(stored) == 7
    # the outer fields every event carries (docs/events.md): those of the consumer
    assert set(incidents[0]) >= {"event_id", "timestamp", "kind", "service", "host", "process"}
    assert incidents[0]["service"] == {"name": "log-consumer", "version": "2.1"}
    assert incidents[0]["process"] == {"pid": os.getpid()}
    assert uuid.UUID(incidents[0]["event_id"]).version == 7
    assert incidents[0]["incident"]["status"] == "opened"
    assert incidents[0]["incident"]["title"] == "Declined on /pay"
    assert "incident opened: Declined on /pay" in caplog.text


@pytest.mark.mongo
def test_mongo_source_groups_on_the_server(tmp_path: Path) -> None:
    server = MockupDB(auto_ismaster={"ismaster": True, "minWireVersion": 0, "maxWireVersion": 21})
    server.autoresponds("ping")
    server.run()
    url = (
        f"mongodb://127.0.0.1:{server.port}/shop?retryWrites=false"
        "&serverSelectionTimeoutMS=3000&socketTimeoutMS=5000"
    )
    rule = DEFAULT_RULES[0]
    burst = [
        request(T0 + n, "/orders/{id}", status=500, error={"type": "E", "message": f"m {n}"})
        for n in range(6)
    ]
    try:
        with ThreadPoolExecutor(1) as pool:
            future = pool.submit(incidents_from, url, [rule], T0 - 60)
            aggregate = server.receives(OpMsg("aggregate", "events"))
            stages = aggregate.doc["pipeline"]
            assert [next(iter(stage)) for stage in stages] == [
                "$match",
                "$sort",
                "$project",
                "$group",
                "$match",
            ]
            assert stages[0]["$match"]["$and"][:2] == [
                {"kind": {"$exists": True, "$eq": "http.request"}},
                {"error": {"$exists": True, "$ne": None}},
            ]
            # the fields the rule and the summary read, none inside another
            assert {"error", "http.route", "service.name", "timestamp"} <= set(
                stages[2]["$project"]
            )
            assert "error.type" not in stages[2]["$project"]
            assert set(stages[3]["$group"]["_id"]) == {"k0", "k1", "k2"}  # fingerprint: client-side
            assert stages[4] == {"$match": {"count": {"$gte": rule.threshold}}}
            aggregate.ok(
                cursor={
                    "id": 0,
                    "ns": "shop.events",
                    "firstBatch": [
                        {
                            "_id": {"k0": "shop", "k1": "/orders/{id}", "k2": "E"},
                            "count": 6,
                            "events": burst,
                        }
                    ],
                }
            )
            # then the requests on the incident's routes in its span, counted there too
            traffic = server.receives(OpMsg("aggregate", "events"))
            assert traffic.doc["pipeline"][0]["$match"]["http.route"] == {"$in": ["/orders/{id}"]}
            traffic.ok(cursor={"id": 0, "ns": "shop.events", "firstBatch": [{"total": 60.0}]})
            # what is different: the incident's events whole, then the route's other
            # requests counted per field in one $facet, then the failures just before,
            # then whether the group matched earlier — each asked of the server
            whole = server.receives(OpMsg("find", "events"))
            whole.ok(cursor={"id": 0, "ns": "shop.events", "firstBatch": burst})
            counted = server.receives(OpMsg("aggregate", "events"))
            [facet] = [stage["$facet"] for stage in counted.doc["pipeline"] if "$facet" in stage]
            assert counted.doc["pipeline"][0]["$match"]["http.route"] == "/orders/{id}"
            answer = {name: [] for name in facet}
            answer["total"] = [{"_id": None, "w": 60.0, "n": 60}]
            counted.ok(cursor={"id": 0, "ns": "shop.events", "firstBatch": [answer]})
            before = server.receives(OpMsg("aggregate", "events"))
            before.ok(
                cursor={
                    "id": 0,
                    "ns": "shop.events",
                    "firstBatch": [{"total": 50.0, "failed": 5.0}],
                }
            )
            earlier = server.receives(OpMsg("find", "events"))
            earlier.ok(cursor={"id": 0, "ns": "shop.events", "firstBatch": []})
            [incident] = future.result(timeout=20)
    finally:
        server.stop()
    assert (incident.rule, incident.count, incident.share_of_traffic) == ("error_burst", 6, 0.1)
    assert (incident.share_before, incident.recurring) == (0.1, False)
    assert incident.compared_with == "the other requests on /orders/{id}"
    assert rule_pipeline(rule, None)[0]["$match"]["$and"][-1] == {
        "error": {"$exists": True, "$ne": None}
    }


def test_the_summary_reports_the_median_and_the_95th_percentile_apart() -> None:
    """Durations 1..100 ms: the median is 50.5, the 95th percentile the 96th value."""
    rule = Rule.from_dict({"name": "slow", "match": "duration_ms > 0", "threshold": 3})
    events = [request(T0 + n / 100, "/r", duration=float(n)) for n in range(1, 101)]
    [incident] = summarize(events, [rule])
    assert (incident.duration_p50_ms, incident.duration_p95_ms) == (50.5, 96.0)


def test_the_live_aggregator_under_threads_opens_once_counts_every_event_in_order() -> None:
    """16 threads released together on one burst, many rounds, the interpreter switching
    threads as often as it can: one "opened", first; the resolved count is every event."""
    import sys
    import threading

    rule = Rule.from_dict({
        "name": "burst", "match": ["error exists"], "group_by": ["error.type"],
        "window": 1e6, "threshold": 5, "quiet": 10,
    })  # fmt: skip
    threads, per_thread = 16, 20
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(40):
            now = [1000.0]
            out: list[dict[str, Any]] = []
            aggregator = IncidentAggregator(
                lambda e, out=out: out.append(e["incident"]),
                [rule],
                clock=lambda now=now: now[0],
            )
            start = threading.Barrier(threads)

            def worker(k: int, aggregator: IncidentAggregator = aggregator,
                       start: threading.Barrier = start) -> None:  # fmt: skip
                start.wait(timeout=10)
                for i in range(per_thread):
                    aggregator.observe({"request_id": f"r{k}-{i}", "error": {"type": "Boom"}})

            workers = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
            for thread in workers:
                thread.start()
            for thread in workers:
                thread.join(timeout=30)
                assert not thread.is_alive()
            now[0] += 11
            aggregator.tick()
            statuses = [incident["status"] for incident in out]
            assert statuses[0] == "opened"
            assert statuses.count("opened") == 1
            assert statuses[-1] == "resolved"
            assert out[-1]["count"] == threads * per_thread
    finally:
        sys.setswitchinterval(interval)


def test_groups_by_value_true_apart_from_one_objects_and_huge_numbers_too() -> None:
    rule = Rule.from_dict({
        "name": "x", "match": "error exists", "group_by": ["user.n", "user.o"], "threshold": 2,
    })  # fmt: skip

    def event(second: int, n: Any) -> dict[str, Any]:
        return {
            "timestamp": iso(T0 + second), "kind": "http.request", "error": {"type": "E"},
            "user": {"n": n, "o": {"a": 1}},
        }  # fmt: skip

    events = [event(1, 2**70), event(2, 2**70), event(3, True), event(4, 1), event(5, None)]
    events.append({**event(6, None), "user": {"o": {"a": 1}}})  # absent: null's group
    found = {(str(i.group["user.n"]), i.count) for i in summarize(events, [rule])}
    assert found == {(str(2**70), 2), ("None", 2)}


def test_a_title_shows_a_missing_or_null_value_as_a_question_mark() -> None:
    rule = DEFAULT_RULES[0]  # "{error.type} on {http.route}"
    assert rule.render_title({"error.type": None, "http.route": "/x"}) == "? on /x"
    assert rule.render_title({"http.route": "/x"}) == "? on /x"
    assert rule.render_title({"error.type": "E", "http.route": "/x"}) == "E on /x"
