"""Incident summaries that name the cause: templates of the messages, the field values
over-represented in the incident against the (re-weighted) rest of the traffic, who was
affected — on synthetic traffic whose failures have a known cause."""

from __future__ import annotations

import json
import random
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from wide_logging.incidents import DEFAULT_RULES
from wide_logging.incidents.insight import MAX_VALUES, Baseline, templates
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
        baseline.add({"client": {"address": f"10.0.0.{n}"}, "user": {"plan": "free"}}, 1.0)
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
