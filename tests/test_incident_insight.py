"""Incident summaries that name the cause: templates of the messages, the field values
over-represented in the incident against the (re-weighted) rest of the traffic, who was
affected — on synthetic traffic whose failures have a known cause."""

from __future__ import annotations

import json
import random
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from wide_logging.incidents import DEFAULT_RULES
from wide_logging.incidents.insight import MAX_VALUES, Baseline, scalar_fields, templates
from wide_logging.incidents.sources import incidents_from
from wide_logging.tools.cli import main

START = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc).timestamp()


def _event(n: int, rng: random.Random, *, version: str, plan: str, rate: float) -> dict[str, Any]:
    return {
        "event_id": f"{n:032x}",
        "timestamp": datetime.fromtimestamp(START + n * 0.05, timezone.utc)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "kind": "http.request",
        "service": {"name": "shop", "version": version},
        "request_id": f"req-{n}",
        "http": {"route": "/pay", "response": {"status_code": 200}},
        "duration_ms": 5.0,
        "user": {"id": f"u{n % 97}", "plan": plan},
        "client": {"address": f"10.0.{rng.randrange(256)}.{rng.randrange(256)}"},  # noise
        "region": rng.choice(["eu", "us", "ap", "sa"]),  # noise
        "flags": {"new_checkout": rng.random() < 0.5},  # noise
        "sampling": {"rule": "normal" if rate < 1 else "slow", "rate": rate},
    }


def _traffic(path: Path) -> list[dict[str, Any]]:
    """Normal traffic stored at 2% (each stands for 50), slow requests all kept (mostly
    1.4.1 / pro, so that an unweighted baseline would be far off), and failures exactly
    when version 1.4.2 meets the free plan."""
    rng = random.Random(5)
    events = []
    for n in range(3000):
        version = rng.choice(["1.4.1", "1.4.2"])
        plan = "free" if rng.random() < 0.3 else "pro"
        if version == "1.4.2" and plan == "free" and n % 3 == 0:
            event = _event(n, rng, version=version, plan=plan, rate=1.0)
            event["http"]["response"]["status_code"] = 502
            event["sampling"]["rule"] = "error"
            event["error"] = {
                "type": "PaymentTimeout",
                "message": f"payment for order {n} failed after {n % 7 * 100}ms",
            }
        elif n % 5 == 0:  # slow, all kept
            event = _event(n, rng, version="1.4.1", plan="pro", rate=1.0)
            event["duration_ms"] = 3000.0
        elif rng.random() < 0.2:  # normal, stored at 2%
            event = _event(n, rng, version=version, plan=plan, rate=0.02)
        else:
            continue
        events.append(event)
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return events


def _weighted_share(events: list[dict[str, Any]], path: tuple[str, str], value: str) -> float:
    others = [e for e in events if "error" not in e]
    weight = {id(e): 1 / e["sampling"]["rate"] for e in others}
    having = sum(weight[id(e)] for e in others if e[path[0]][path[1]] == value)
    return having / sum(weight.values())


def test_the_summary_names_the_combination_that_fails_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = _traffic(tmp_path / "events.jsonl")
    failures = [e for e in events if "error" in e]
    [incident] = [
        i
        for i in incidents_from(f"file:{tmp_path / 'events.jsonl'}", DEFAULT_RULES, None)
        if i.rule == "error_burst"
    ]
    first_two = {(d["field"], d["value"]) for d in incident.differences[:2]}
    assert first_two == {("service.version", "1.4.2"), ("user.plan", "free")}
    by_field = {d["field"]: d for d in incident.differences}
    assert by_field["service.version"]["incident"] == 1.0
    # the rest of the traffic, re-weighted: a 2% request stands for 50
    expected = _weighted_share(events, ("service", "version"), "1.4.2")
    assert by_field["service.version"]["traffic"] == pytest.approx(expected, abs=1e-4)
    others = [e for e in events if "error" not in e]
    unweighted = sum(e["service"]["version"] == "1.4.2" for e in others) / len(others)
    assert abs(unweighted - expected) > 0.2  # (what a baseline without weights would say)
    assert by_field["user.plan"]["traffic"] == pytest.approx(
        _weighted_share(events, ("user", "plan"), "free"), abs=1e-4
    )
    assert "client.address" not in by_field  # too many values to say anything
    # messages: one template, counted exactly, its variable parts described
    [template] = incident.templates
    assert template["template"] == "payment for order <*> failed after <*>ms"
    assert template["count"] == len(failures)
    orders, delays = template["variables"]
    assert orders["distinct"] == len(failures)
    assert delays["distinct"] == len({e["error"]["message"].split()[-1] for e in failures})
    assert incident.affected == {"users": len({e["user"]["id"] for e in failures})}
    assert incident.recurring is False
    assert main(["incidents", "--source", f"file:{tmp_path / 'events.jsonl'}"]) == 0
    text = capsys.readouterr().out
    assert "service.version = 1.4.2: 100% of the incident vs" in text
    assert f"{len(failures)} x payment for order <*> failed after <*>ms" in text
    assert (
        main(["incidents", "--source", f"file:{tmp_path / 'events.jsonl'}", "--format", "json"])
        == 0
    )
    [data] = [i for i in json.loads(capsys.readouterr().out) if i["rule"] == "error_burst"]
    assert data["differences"][:2] == incident.differences[:2]


def test_an_incident_seen_in_an_earlier_period_is_recurring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = _traffic(tmp_path / "events.jsonl")
    midpoint = datetime.fromisoformat(events[len(events) // 2]["timestamp"].replace("Z", "+00:00"))
    assert main(
        [
            "incidents", "--source", f"file:{tmp_path / 'events.jsonl'}",
            "--since", midpoint.isoformat(), "--format", "json",
        ]
    ) == 0  # fmt: skip
    later = [i for i in json.loads(capsys.readouterr().out) if i["rule"] == "error_burst"]
    assert later
    assert all(i["recurring"] for i in later)


def test_a_field_with_too_many_values_stops_being_tracked() -> None:
    baseline = Baseline()
    for n in range(MAX_VALUES + 1):
        event = {"client": {"address": f"10.0.{n // 256}.{n % 256}"}, "user": {"plan": "free"}}
        baseline.add(scalar_fields(event), 1.0)
    assert "client.address" not in baseline.values
    assert "client.address" in baseline.too_many
    assert baseline.values["user.plan"] == {"free": MAX_VALUES + 1.0}


def test_templates_group_messages_as_the_fingerprint_does() -> None:
    found = templates(
        [
            "timeout after 31s for user 42",
            "timeout after 17s for user 9",
            "card 'abc' declined",
            "timeout after 31s for user 7",
        ]
    )
    assert [(t["template"], t["count"]) for t in found] == [
        ("timeout after <*>s for user <*>", 3),
        ("card <*> declined", 1),
    ]
    assert found[0]["variables"][0] == {"distinct": 2, "top": [("31", 2), ("17", 1)]}


def test_a_live_incident_event_carries_its_templates_and_who_it_affected() -> None:
    from wide_logging.incidents import IncidentAggregator
    from wide_logging.incidents.rules import Rule

    now = [START]
    emitted: list[dict[str, Any]] = []
    rule = Rule.from_dict(
        {"name": "burst", "match": "error exists", "group_by": ["http.route"],
         "window": 60, "threshold": 3, "quiet": 30}
    )  # fmt: skip
    aggregator = IncidentAggregator(emitted.append, [rule], clock=lambda: now[0])
    rng = random.Random(1)
    for n in range(12):
        now[0] = START + n
        event = _event(n, rng, version="1.4.2", plan="free", rate=1.0)
        event["error"] = {"type": "E", "message": f"payment for order {n} failed"}
        aggregator.observe(event)
    now[0] = START + 60
    aggregator.tick()
    resolved = emitted[-1]["incident"]
    assert resolved["status"] == "resolved"
    # since it opened (at the third event): ten messages, one template
    assert resolved["templates"][0]["template"] == "payment for order <*> failed"
    assert resolved["templates"][0]["count"] == 10
    assert resolved["affected"] == {"users": 10}
    # what a live incident holds is cut as the normaliser cuts: a huge message costs 2 kB
    [opened] = aggregator._open.values() if aggregator._open else [None]
    assert opened is None  # resolved: nothing held any more
    held = aggregator_holding_a_huge_message()
    assert max(len(m) for m in held.messages) == 2000


def aggregator_holding_a_huge_message() -> Any:
    from wide_logging.incidents import IncidentAggregator
    from wide_logging.incidents.rules import Rule

    rule = Rule.from_dict({"name": "b", "match": "error exists", "threshold": 1})
    aggregator = IncidentAggregator(lambda _event: None, [rule], clock=lambda: START)
    event = _failing(_stream(1), message="x" * 200_000)
    aggregator.observe(event)
    [incident] = aggregator._open.values()
    return incident


def _stream(n: int, **fields: Any) -> dict[str, Any]:
    event = _event(n, random.Random(n), version="1.4.1", plan="pro", rate=1.0)
    for path, value in fields.items():
        node = event
        *parents, leaf = path.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return event


def _summaries(events: list[dict[str, Any]], **options: Any) -> list[Any]:
    from wide_logging.incidents.summary import summarize

    return summarize(events, DEFAULT_RULES, **options)


def _failing(event: dict[str, Any], message: str = "declined") -> dict[str, Any]:
    event["http"]["response"]["status_code"] = 502
    event["error"] = {"type": "Declined", "message": message}
    return event


def test_what_differs_within_the_failing_route_comes_before_the_route_itself() -> None:
    events = []
    for n in range(2000):
        route = "/checkout" if n % 4 == 0 else "/items"
        version = "1.4.3" if n % 8 == 0 else "1.4.1"  # half the checkouts run 1.4.3
        event = _stream(n, service__version=version, http__route=route)
        event["http"]["request"] = {"method": "POST" if route == "/checkout" else "GET"}
        if route == "/checkout" and version == "1.4.3":
            _failing(event)
        events.append(event)
    [incident] = [i for i in _summaries(events) if i.rule == "error_burst"]
    assert incident.compared_with == "the other requests on /checkout"
    first = incident.differences[0]
    assert (first["field"], first["value"], first["incident"]) == ("service.version", "1.4.3", 1.0)
    assert all(
        d["field"] not in ("http.route", "http.request.method") for d in incident.differences
    )


def test_a_cause_on_most_of_the_fleet_is_still_named() -> None:
    events = []
    for n in range(3000):  # 1.5.0 on 85% of requests, and every failure on it
        version = "1.4.9" if n % 20 < 3 else "1.5.0"
        event = _stream(n, service__version=version)
        events.append(_failing(event) if version == "1.5.0" and n % 10 == 0 else event)
    [incident] = [i for i in _summaries(events) if i.rule == "error_burst"]
    [found] = [d for d in incident.differences if d["field"] == "service.version"]
    assert (found["value"], found["incident"]) == ("1.5.0", 1.0)
    assert found["traffic"] == pytest.approx(0.83, abs=0.02)


def test_odd_events_neither_crash_nor_hide_the_cause_silently() -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(1000):
        node = node.setdefault("x", {})
    junk = {f"h{k}": k for k in range(300)}  # one early event with many fields
    events = [_stream(0, deep=deep, headers=junk)]
    for n in range(1, 600):
        event = _stream(n, db__shard=f"s{n % 6}")
        events.append(_failing(event) if n % 6 == 5 else event)
    [incident] = [i for i in _summaries(events) if i.rule == "error_burst"]
    # the first 128 fields seen were the junk: the cause could not be compared, and it says so
    assert "not compared: at most 128 are" in incident.compared_with


def _at(event: dict[str, Any], seconds: float) -> dict[str, Any]:
    moment = datetime.fromtimestamp(START + seconds, timezone.utc)
    event["timestamp"] = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return event


def test_recurring_and_the_rate_just_before_read_the_same_group_and_route() -> None:
    events = []
    for n in range(400):  # /x fails now and then in the first hour, then bursts
        seconds = n * 18.0
        event = _at(_stream(n, http__route="/x" if n % 2 else "/y"), seconds)
        if n % 2 and ((n < 100 and n % 10 == 1) or n >= 300):
            _failing(event)
        events.append(event)
    bursts = sorted(
        (i for i in _summaries(events) if i.rule == "error_burst"), key=lambda i: i.first_seen
    )
    assert bursts[-1].recurring is True  # an earlier episode of the same group
    since = START + 250 * 18.0
    [later] = [i for i in _summaries(events, since=since) if i.rule == "error_burst"]
    assert later.recurring is True  # the same group before --since
    elsewhere = [_failing(_at(_stream(n, http__route="/z"), n * 18.0)) for n in range(300, 340)]
    [fresh] = [
        i for i in _summaries(events[:100] + elsewhere, since=since) if i.rule == "error_burst"
    ]
    assert fresh.recurring is False  # the same message on another route: another group
    # just before the burst, /x was healthy: 0 failures in the span before it
    assert later.share_before == 0.0


def test_markdown_of_incidents_stays_a_table_and_makes_no_html() -> None:
    from wide_logging.incidents.summary import format_incidents

    events = [
        _failing(_stream(n, http__route="/a|b\n# Injected"), message="<img src=x onerror=alert(1)>")
        for n in range(30)
    ]
    markdown = format_incidents(_summaries(events), "markdown")
    outside_code = re.sub(r"`[^`\n]*`", "", markdown)
    assert "<img" not in outside_code
    assert "\n# Injected" not in markdown
    rows = [line for line in markdown.splitlines() if line.startswith("| ") and "Declined" in line]
    assert all(len(re.findall(r"(?<!\\)\|", row)) == 9 for row in rows)


def test_values_are_compared_as_json_says_them() -> None:
    from wide_logging.incidents.insight import value_text

    assert value_text(1.0) == value_text(1) == "1"
    assert value_text(True) == "true"
    assert value_text("True") == "True"


def test_the_rate_just_before_counts_any_failure_on_the_route() -> None:
    events = []
    for n in range(200):  # /x: a tenth fail with a timeout for ten minutes, then declines burst
        event = _at(_stream(n, http__route="/x"), n * 6.0)
        if n < 100 and n % 10 == 0:
            event = _failing(event, message="upstream timed out")
            event["error"]["type"] = "Timeout"
        elif n >= 100 and n % 2 == 0:
            event = _failing(event)
        events.append(event)
    [declines] = [i for i in _summaries(events) if i.title.startswith("Declined")]
    # the span as long as the burst (588 s) before it: requests 2..99, of which 9 timed out
    assert declines.share_before == pytest.approx(9 / 98, abs=1e-4)


def test_a_live_incident_says_what_is_different_against_the_recent_traffic(
    tmp_path: Path,
) -> None:
    from wide_logging.incidents import IncidentAggregator

    events = _traffic(tmp_path / "events.jsonl")
    emitted: list[dict[str, Any]] = []
    now = [START]
    aggregator = IncidentAggregator(emitted.append, DEFAULT_RULES, clock=lambda: now[0])
    for event in events:
        aggregator.observe(event)
    now[0] = START + 3600
    aggregator.tick()
    [resolved] = [
        e["incident"]
        for e in emitted
        if e["incident"]["rule"] == "error_burst" and e["incident"]["status"] == "resolved"
    ]
    first_two = {(d["field"], d["value"]) for d in resolved["differences"][:2]}
    assert first_two == {("service.version", "1.4.2"), ("user.plan", "free")}
    assert resolved["compared_with"] == "the other requests"
    assert resolved["recurring"] is False
    # the same failures an hour later: the same incident opens again, recurring
    for event in events:
        if "error" in event:
            moved = dict(
                event, timestamp=_at(dict(event), 3700 + events.index(event) * 0.05)["timestamp"]
            )
            aggregator.observe(moved)
    reopened = [e["incident"] for e in emitted if e["incident"]["status"] == "opened"][-1]
    assert reopened["recurring"] is True
    # just before it (the previous ten minutes) /pay was healthy: nothing failed
    assert reopened["share_before"] in (0.0, None)


@pytest.mark.mongo
def test_mongodb_names_the_same_cause_counted_by_the_server(tmp_path: Path) -> None:
    import mongomock
    import orjson

    from wide_logging.incidents.mongo import incidents_in
    from wide_logging.sinks.mongo import to_document

    events = _traffic(tmp_path / "events.jsonl")
    collection = mongomock.MongoClient().db.events
    collection.insert_many([to_document(orjson.dumps(e)) for e in events])
    [on_server] = [
        i for i in incidents_in(collection, DEFAULT_RULES, None) if i.rule == "error_burst"
    ]
    [from_file] = [
        i
        for i in incidents_from(f"file:{tmp_path / 'events.jsonl'}", DEFAULT_RULES, None)
        if i.rule == "error_burst"
    ]
    first_two = {(d["field"], d["value"]) for d in on_server.differences[:2]}
    assert first_two == {("service.version", "1.4.2"), ("user.plan", "free")}
    assert on_server.differences[:2] == from_file.differences[:2]
    assert on_server.compared_with == from_file.compared_with
    assert (on_server.share_before, on_server.recurring) == (from_file.share_before, False)


@pytest.mark.mongo
def test_on_mongodb_a_long_incident_is_compared_whole_and_odd_keys_are_left_out(
    tmp_path: Path,
) -> None:
    import mongomock
    import orjson

    from wide_logging.incidents.mongo import incidents_in
    from wide_logging.sinks.mongo import to_document

    events = []
    for n in range(4000):  # 1,500 failures: the first 500 from eu, the rest from us and ap
        event = _stream(n, http__route="/pay")
        event["region"] = ["eu", "us", "ap"][n % 3]
        if n % 8 < 3:
            failing = len([e for e in events if "error" in e])
            event["region"] = "eu" if failing < 500 else ["us", "ap"][n % 2]
            event = _failing(event)
        event["user.plan"] = "free"  # a flat key with a dot: a server reads another field
        events.append(event)
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    collection = mongomock.MongoClient().db.events
    collection.insert_many([to_document(orjson.dumps(e)) for e in events])
    [on_server] = [
        i for i in incidents_in(collection, DEFAULT_RULES, None) if i.rule == "error_burst"
    ]
    [from_file] = [
        i for i in incidents_from(f"file:{path}", DEFAULT_RULES, None) if i.rule == "error_burst"
    ]
    assert on_server.count == 1500
    regions = [d for d in on_server.differences if d["field"] == "region"]
    assert regions == [d for d in from_file.differences if d["field"] == "region"]
    assert all(d["field"] != "user.plan" for d in on_server.differences)


def test_live_comparison_survives_odd_clocks_and_needs_enough_events() -> None:
    from wide_logging.incidents.insight import RollingBaseline, differences, members_of

    rolling = RollingBaseline(slot_seconds=600, slots=6)
    for n in range(60):
        rolling.add(_stream(n, region="eu"), 1.0, START + n * 60, False)
    before = rolling.merged().all.count
    rolling.add(_stream(999, region="eu"), 1.0, START + 59 * 60 + 1, False)
    assert rolling.merged().all.count == before + 1  # by arrival, not the event's own time
    for n in range(10):  # a clock that went back: no slot beyond the six
        rolling.add(_stream(n), 1.0, START - n * 3600, False)
    assert len(rolling._slots) <= 6
    [one] = members_of([_failing(_stream(1))], [1.0])
    found, against = differences([one], rolling.merged())
    assert found == []
    assert against.startswith("nothing yet")
