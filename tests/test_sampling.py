from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from wide_logging import ConfigurationError, TailSampler, explain
from wide_logging.sampling import ALWAYS_KEEP_RULES, RULES


def test_rule_precedence_first_matching_rule_decides() -> None:
    sampler = TailSampler(normal_rate=0.0, slow_ms=100, critical_routes=["/pay/*"])
    everything = {
        "error": True,
        "status": 503,
        "duration_ms": 500.0,
        "route": "/pay/{id}",
        "force_keep": True,
    }
    order = []
    for drop in ["error", "status", "duration_ms", "route", "force_keep"]:
        decision = sampler.decide("k", **everything)
        order.append(decision.rule)
        assert decision.keep
        assert decision.rate == 1.0
        assert decision.always_keep
        everything[drop] = {"error": False, "status": 200, "duration_ms": 1.0, "route": "/x"}.get(
            drop, False
        )
    assert order == list(RULES[:-1])
    last = sampler.decide("k", **everything)
    assert (last.keep, last.rule, last.rate) == (False, "normal", 0.0)


def test_status_below_500_and_fast_requests_are_normal() -> None:
    sampler = TailSampler(normal_rate=0.0)
    assert sampler.decide("k", status=404, duration_ms=999.0).rule == "normal"
    assert sampler.decide("k", status=500).rule == "server_error"
    assert sampler.decide("k", duration_ms=1000.0).rule == "normal"  # strictly greater
    assert sampler.decide("k", duration_ms=1000.001).rule == "slow"


def test_rate_accuracy_on_100k_ids() -> None:
    for rate in (0.01, 0.02, 0.05, 0.5):
        sampler = TailSampler(normal_rate=rate)
        kept = sum(sampler.decide(uuid.uuid4().hex).keep for _ in range(100_000))
        # binomial standard deviation at p=0.02 is ~44 events; 5 sigma margins
        sigma = (100_000 * rate * (1 - rate)) ** 0.5
        assert abs(kept - 100_000 * rate) < 5 * sigma, (rate, kept)


def test_rate_edges_keep_nothing_and_everything() -> None:
    ids = [uuid.uuid4().hex for _ in range(2000)]
    assert not any(TailSampler(normal_rate=0.0).decide(i).keep for i in ids)
    assert all(TailSampler(normal_rate=1.0).decide(i).keep for i in ids)


def test_same_id_same_decision_across_interpreter_processes() -> None:
    ids = [f"req-{n}" for n in range(3000)]
    local = "".join("1" if TailSampler(normal_rate=0.05).decide(i).keep else "0" for i in ids)
    code = (
        "from wide_logging import TailSampler\n"
        "s = TailSampler(normal_rate=0.05)\n"
        f"print(''.join('1' if s.decide(f'req-{{n}}').keep else '0' for n in range({len(ids)})))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert outputs == {local}
    assert 50 < local.count("1") < 250


def test_critical_routes_are_globs_on_route_or_path() -> None:
    sampler = TailSampler(normal_rate=0.0, critical_routes=["/checkout*", "/admin/*/delete"])
    assert sampler.decide("k", route="/checkout").rule == "critical_route"
    assert sampler.decide("k", route="/checkout/{id}").rule == "critical_route"
    assert sampler.decide("k", route="/admin/users/delete").rule == "critical_route"
    assert sampler.decide("k", route="/admin/users/view").rule == "normal"
    assert sampler.decide("k", route=None).rule == "normal"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"normal_rate": 1.5}, "normal_rate"),
        ({"normal_rate": -0.1}, "normal_rate"),
        ({"normal_rate": "0.1"}, "normal_rate"),
        ({"normal_rate": True}, "normal_rate"),
        ({"slow_ms": -1}, "slow_ms"),
        ({"critical_routes": [3]}, "critical_routes"),
        ({"log_rate": 2}, "log_rate"),
    ],
)
def test_invalid_policy_is_rejected_with_a_clear_message(options: dict, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        TailSampler(**options)


def test_from_config_rejects_unknown_options() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown sampling option.*normal_rat"):
        TailSampler.from_config({"normal_rat": 0.1})
    with pytest.raises(ConfigurationError, match="dict"):
        TailSampler.from_config([("normal_rate", 0.1)])  # type: ignore[arg-type]


def test_log_records_outside_requests_use_log_rate() -> None:
    sampler = TailSampler(normal_rate=0.0, log_rate=1.0)
    assert sampler.decide_log("x", error=False).rule == "log"
    assert sampler.decide_log("x", error=False).keep
    assert sampler.decide_log("x", error=True).rule == "error"
    assert not TailSampler(log_rate=0.0).decide_log("x", error=False).keep


def test_explain_names_the_rule_and_the_reason() -> None:
    sampler = TailSampler(normal_rate=0.02, slow_ms=250, critical_routes=["/pay"])
    err = {"request_id": "a", "error": {"type": "ValueError"}}
    assert "rule 'error'" in sampler.explain(err)
    assert "ValueError" in sampler.explain(err)
    slow = {"request_id": "a", "duration_ms": 300}
    assert "300 > slow_ms 250" in sampler.explain(slow)
    critical = {"request_id": "a", "http": {"route": "/pay"}}
    assert "critical_routes" in sampler.explain(critical)
    normal = {"request_id": "abc", "http": {"response": {"status_code": 200}}}
    text = sampler.explain(normal)
    decision = sampler.decide("abc")
    assert text.startswith("kept" if decision.keep else "dropped")
    assert "mmh3('abc')" in text
    assert "stands for 50" in text


def test_top_level_explain_accepts_a_stored_event_and_a_sampler() -> None:
    text = explain({"request_id": "r", "http": {"response": {"status_code": 502}}}, TailSampler())
    assert "server_error" in text


def test_always_keep_rules_are_everything_but_normal() -> None:
    assert set(RULES) - ALWAYS_KEEP_RULES == {"normal"}
