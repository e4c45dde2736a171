from __future__ import annotations

import json
import logging
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from wide_logging import (
    ConfigurationError,
    TailSampler,
    WideEventHandler,
    WideEventMiddleware,
    explain,
)
from wide_logging.event import WideEvent
from wide_logging.sampling import ALWAYS_KEEP_RULES, RULES, Decision
from wide_logging.serialize import Serializer
from wide_logging.testing import MemorySink, fake_clock


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


KEY = "k" * 16 + "-deployment-secret"


def _decisions_in_a_new_process(hash_seed: str, key: str | None, count: int) -> str:
    code = (
        "from wide_logging import TailSampler\n"
        f"s = TailSampler(normal_rate=0.05, key={key!r})\n"
        f"print(''.join('1' if s.decide(f'req-{{n}}').keep else '0' for n in range({count})))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": hash_seed, "PATH": ""},
    ).stdout.strip()


def test_with_a_sampling_key_the_same_id_gets_the_same_decision_in_every_process() -> None:
    ids = [f"req-{n}" for n in range(3000)]
    sampler = TailSampler(normal_rate=0.05, key=KEY)
    local = "".join("1" if sampler.decide(i).keep else "0" for i in ids)
    outputs = {_decisions_in_a_new_process(seed, KEY, len(ids)) for seed in ("1", "2", "0")}
    assert outputs == {local}
    assert 50 < local.count("1") < 250


def test_without_a_key_each_process_decides_with_a_secret_of_its_own() -> None:
    # Hash randomisation on (seeds 1, 2) or off (0, then a random BLAKE2b key): nobody
    # outside the process can know which ids it keeps.
    outputs = [_decisions_in_a_new_process(seed, None, 3000) for seed in ("1", "2", "0", "0")]
    assert len(set(outputs)) == 4
    for output in outputs:
        assert 50 < output.count("1") < 250  # each still keeps its 5%


def test_a_client_cannot_pick_ids_that_are_kept_or_dropped() -> None:
    """What a client could compute without the key (the decisions of any other key, or of
    the unkeyed MurmurHash3 we used to use) says nothing about ours."""
    import mmh3

    attacker_guess = TailSampler(normal_rate=0.02, key="guessed-" + "x" * 16)
    candidates = (uuid.UUID(int=n).hex for n in range(10**6))
    chosen_kept = [i for i in candidates if attacker_guess.hit(i)][:5000]
    chosen_murmur = [
        f"m-{n}" for n in range(400_000) if mmh3.hash(f"m-{n}", 0, False) < 0.02 * 2**32
    ][:5000]
    chosen_dropped = [
        uuid.UUID(int=n).hex for n in range(5000) if not attacker_guess.hit(uuid.UUID(int=n).hex)
    ]
    sigma = (5000 * 0.02 * 0.98) ** 0.5
    for sampler in (TailSampler(normal_rate=0.02, key=KEY), TailSampler(normal_rate=0.02)):
        for chosen in (chosen_kept, chosen_murmur, chosen_dropped):
            kept = sum(sampler.hit(i) for i in chosen)
            assert abs(kept - len(chosen) * 0.02) < 5 * sigma, kept


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_id_gets_one_stable_decision(request_id: str) -> None:
    sampler = TailSampler(normal_rate=0.3, key=KEY)
    decision = sampler.decide(request_id)
    assert decision is sampler.decide(request_id)
    assert decision.keep == sampler.hit(request_id)
    assert TailSampler(normal_rate=0.3, key=KEY).decide(request_id).keep == decision.keep


def test_sampling_key_is_a_secret_of_some_length() -> None:
    with pytest.raises(ConfigurationError, match="at least 16") as raised:
        TailSampler(key="short-secret")
    assert "short-secret" not in str(raised.value)  # a secret is never echoed
    with pytest.raises(ConfigurationError):
        TailSampler(key=12345678901234567890)  # type: ignore[arg-type]


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
    assert "this process's random hash of 'abc'" in text
    assert "set sampling.key" in text
    assert "stands for 50" in text
    keyed = TailSampler(normal_rate=0.02, key=KEY).explain(normal)
    assert "the sampling key's hash of 'abc'" in keyed


def test_top_level_explain_accepts_a_stored_event_and_a_sampler() -> None:
    text = explain({"request_id": "r", "http": {"response": {"status_code": 502}}}, TailSampler())
    assert "server_error" in text


def test_explain_reports_the_stored_decision_before_todays_policy() -> None:
    """A stored critical_route event, explained after the route left critical_routes: the
    stored decision first, and that today's policy would decide otherwise."""
    stored = {
        "request_id": "abc",
        "http": {"route": "/pay", "response": {"status_code": 200}},
        "sampling": {"rule": "critical_route", "rate": 1.0},
    }
    now = TailSampler(normal_rate=0.02, key=KEY).explain(stored)
    assert now.startswith("kept by rule 'critical_route' (rate 1.0) when decided; ")
    assert "today's policy would decide otherwise: " in now
    assert "by rule 'normal' (rate 0.02)" in now
    same = TailSampler(critical_routes=["/pay"]).explain(stored)
    assert same.startswith("kept by rule 'critical_route' (rate 1.0): its route matches")
    assert same.endswith("(the decision stored with it)")
    # captured with keep_all=True: the stored decision was to drop it
    dropped = {**stored, "sampling": {"rule": "normal", "rate": 0.0, "sampled_out": True}}
    assert TailSampler(normal_rate=0.0).explain(dropped).startswith("dropped by rule 'normal'")
    assert TailSampler(normal_rate=0.0).explain(dropped).endswith("(the decision stored with it)")


def test_always_keep_rules_are_everything_but_normal() -> None:
    assert set(RULES) - ALWAYS_KEEP_RULES == {"normal"}


def test_ids_a_client_picked_to_be_kept_are_kept_at_the_normal_rate(tmp_path: Any) -> None:
    """Through a real app: a client sends X-Request-ID values that the unkeyed MurmurHash3
    (what we used to use, and what anyone can compute) would keep; they are kept at the
    normal rate, not all of them."""
    import mmh3
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from wide_logging import WideEventHandler, WideEventMiddleware
    from wide_logging.testing import capture_events

    picked = [f"p-{n}" for n in range(60_000) if mmh3.hash(f"p-{n}", 0, False) < 0.05 * 2**32]
    assert len(picked) > 2000
    handler = WideEventHandler(
        sink=f"file:{tmp_path}/e.jsonl",
        fallback=f"file:{tmp_path}/s/e.jsonl",
        sampling={"normal_rate": 0.05},
    )

    async def home(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/", home)])
    app.add_middleware(WideEventMiddleware, handler=handler)
    try:
        with TestClient(app) as client, capture_events(keep_all=False) as events:
            for request_id in picked[:2000]:
                client.get("/", headers={"X-Request-ID": request_id})
    finally:
        handler.close()
    sigma = (2000 * 0.05 * 0.95) ** 0.5
    assert abs(len(events) - 100) < 5 * sigma, len(events)  # not 2000


def test_a_fixed_hash_seed_is_not_used_as_the_secret() -> None:
    """PYTHONHASHSEED=42 keeps hash randomisation "on" but makes hash() public: decisions
    must then come from a random key, different in each process."""
    outputs = {_decisions_in_a_new_process("42", None, 3000) for _ in range(3)}
    assert len(outputs) == 3


def test_made_up_paths_that_match_no_route_are_not_critical() -> None:
    """With no route template, critical_routes match the raw path — but not on a 404/405,
    where a client could make any made-up /admin/... path always kept."""
    sampler = TailSampler(normal_rate=0.0, critical_routes=["/admin/*"])
    event = {"request_id": "r", "url": {"path": "/admin/anything"}}
    assert sampler.decide_event({**event, "http": {"response": {"status_code": 200}}}).keep
    for status in (404, 405):
        decision = sampler.decide_event({**event, "http": {"response": {"status_code": status}}})
        assert (decision.keep, decision.rule) == (False, "normal")


def test_a_cors_preflight_to_a_made_up_path_under_a_critical_glob_is_not_critical(
    tmp_path: Path,
) -> None:
    """Starlette's CORSMiddleware answers a preflight (OPTIONS with Origin and
    Access-Control-Request-Method) with 200 before routing, for any path: no route, so the
    raw path would match critical_routes, and a client could choose what is always kept.
    A request a route took still matches by its template, and stored events decide alike."""
    from starlette.middleware.cors import CORSMiddleware

    from wide_logging.testing import capture_events

    handler = WideEventHandler(
        sink=f"file:{tmp_path}/e.jsonl",
        sampling={"normal_rate": 0.0, "critical_routes": ["/admin/*"]},
    )

    async def panel(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/admin/panel", panel, methods=["GET", "OPTIONS"])])
    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["*"])
    WideEventMiddleware.install(app, handler=handler)
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    try:
        with TestClient(app) as client, capture_events(keep_all=True) as events:
            for n in range(5):
                response = client.options(f"/admin/made-up-{n}", headers=preflight)
                assert response.status_code == 200  # answered by CORS, for any path
            assert client.get("/admin/panel").status_code == 200
    finally:
        handler.close()
    decided = [(e["url"]["path"], e["sampling"]["rule"]) for e in events]
    assert decided[:5] == [(f"/admin/made-up-{n}", "normal") for n in range(5)]
    assert decided[5] == ("/admin/panel", "critical_route")
    sampler = TailSampler(normal_rate=0.0, critical_routes=["/admin/*"])
    stored = {"request_id": "r", "url": {"path": "/admin/x"},
              "http": {"request": {"method": "OPTIONS"}, "response": {"status_code": 200}}}  # fmt: skip
    assert sampler.decide_event(stored).rule == "normal"
    stored["http"]["request"]["method"] = "GET"  # (a plain ASGI app: no route templates)
    assert sampler.decide_event(stored).rule == "critical_route"


def test_decide_matches_the_raw_path_only_without_a_route_and_only_when_a_route_matched() -> None:
    """decide() takes the path beside the route: the rule reads it only when it needs it,
    and a live request (handler.submit) decides as its stored dict (decide_event) does."""
    sampler = TailSampler(normal_rate=0.0, critical_routes=["/admin/*"])
    assert sampler.decide("r", status=200, path="/admin/x").rule == "critical_route"
    assert sampler.decide("r", status=None, path="/admin/x").rule == "critical_route"
    assert sampler.decide("r", status=404, path="/admin/x").rule == "normal"
    assert sampler.decide("r", status=405, path="/admin/x").rule == "normal"
    # a route template, when there is one, is what the rule matches: not the raw path
    assert sampler.decide("r", status=200, route="/users/{id}", path="/admin/x").rule == "normal"
    assert sampler.decide("r", status=200, route="/admin/{p}", path="/x").rule == "critical_route"
    # a 404/405 never: below a mount the route is the mount's prefix, whatever the path
    assert sampler.decide("r", status=404, route="/admin", path="/admin/made-up").rule == "normal"
    assert sampler.decide("r", status=405, route="/admin/{p}", path="/x").rule == "normal"
    # a stored route that is not a string (a hand-written event) is no route at all
    stored = {"request_id": "r", "http": {"route": 5}, "url": {"path": "/admin/x"}}
    assert sampler.decide_event(stored).rule == "critical_route"


@pytest.mark.parametrize("status", [200, 404, None])
def test_the_handler_decides_a_request_as_its_stored_dict_would_be(
    tmp_path: Path, status: int | None
) -> None:
    handler = WideEventHandler(
        sink=f"file:{tmp_path}/e.jsonl",
        sampling={"normal_rate": 0.0, "critical_routes": ["/admin/*"]},
    )
    try:
        event = handler.new_event(request_id="req-1")
        event.path = "/admin/panel"
        event.status = status
        decision = handler.submit(event)
        assert decision is not None
        stored = {"request_id": "req-1", "url": {"path": "/admin/panel"}}
        if status is not None:
            stored["http"] = {"response": {"status_code": status}}
        assert decision == handler.sampler.decide_event(stored)
        assert decision.keep is (status != 404)
    finally:
        handler.close()


def test_explain_of_a_live_event_is_what_submit_decides_and_leaves_its_clock_running(
    tmp_path: Path,
) -> None:
    handler = WideEventHandler(
        sink=f"file:{tmp_path}/e.jsonl", sampling={"normal_rate": 0.0, "slow_ms": 100}
    )
    try:
        with fake_clock() as clock:
            event = handler.new_event(request_id="req-1")
            clock.advance(ms=50)
            assert explain(event, handler.sampler).startswith("dropped by rule 'normal'")
            clock.advance(ms=100)  # explain() above must not have stopped the clock
            text = explain(event, handler.sampler)
            assert text.startswith("kept by rule 'slow'"), text
            assert "duration_ms 150" in text
            decision = handler.submit(event)
        assert decision is not None
        assert decision.rule == "slow"
        errored = handler.new_event(request_id="req-2")
        errored.annotate(error={"type": "Declined"})
        assert "Declined" in explain(errored)  # the active handler's policy
        assert handler.submit(errored) == handler.sampler.decide("req-2", error=True)
    finally:
        handler.close()


class EveryThird:
    """A sampler of the app's own, through the ``typing.Sampler`` protocol."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.keep = Decision(True, "every_third", 1 / 3)
        self.drop = Decision(False, "every_third", 1 / 3)

    def decide(self, key: str, error: bool = False, *args: Any, **kwargs: Any) -> Decision:
        self.asked.append(key)
        return self.keep if error or len(self.asked) % 3 == 0 else self.drop

    def decide_log(self, key: str, *, error: bool) -> Decision:
        return self.keep

    def explain(self, event: Any) -> str:
        return "every third one"


def test_a_sampler_object_of_the_apps_own_decides(tmp_path: Path) -> None:
    sampler = EveryThird()
    handler = WideEventHandler(sink=f"file:{tmp_path}/e.jsonl", sampling=sampler)
    try:
        assert handler.sampler is sampler
        decisions = [handler.submit(handler.new_event(request_id=f"r-{n}")) for n in range(6)]
        assert [d.keep for d in decisions if d is not None] == [False, False, True] * 2
        assert sampler.asked == [f"r-{n}" for n in range(6)]
        assert handler.metrics.get("events.kept.every_third") == 2
        assert explain(handler.new_event(), sampler).startswith("dropped by rule 'every_third'")
        assert handler.flush(5)
        kept = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
        assert [e["sampling"] for e in kept] == [{"rule": "every_third", "rate": 1 / 3}] * 2
    finally:
        handler.close()


@pytest.mark.parametrize("sampling", [object(), "0.5", 0.5, ["normal_rate"]])
def test_a_sampling_option_that_is_neither_a_dict_nor_a_sampler_is_refused(
    tmp_path: Path, sampling: Any
) -> None:
    with pytest.raises(ConfigurationError, match="sampling must be a dict of options or a sampler"):
        WideEventHandler(sink=f"file:{tmp_path}/e.jsonl", sampling=sampling)


class Broken(EveryThird):
    def decide(self, key: str, error: bool = False, *args: Any, **kwargs: Any) -> Decision:
        raise RuntimeError("the sampler's own bug")


def test_a_sampler_that_raises_never_costs_an_error_event(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    handler = WideEventHandler(sink=f"file:{tmp_path}/e.jsonl", sampling=Broken())
    try:
        ids = [f"err-{n}" for n in range(20)]
        for request_id in ids:
            event = handler.new_event(request_id=request_id)
            event.record_exception(ValueError("boom"))
            decision = handler.submit(event)
            assert decision is not None
            assert (decision.keep, decision.rule) == (True, "error")
        assert handler.metrics.get("sampler_errors") == 20
        assert caplog.text.count("the sampler Broken raised") == 1
        assert handler.flush(5)
        stored = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
        assert sorted(e["request_id"] for e in stored) == sorted(ids)
    finally:
        handler.close()


def test_made_up_paths_below_a_mounted_app_are_not_always_kept() -> None:
    """A mounted sub-app's 404: its route is the mount's prefix (``/checkout``), which a
    ``/checkout*`` rule matches — a client must not be able to choose what is kept."""

    async def pay(request: Request) -> PlainTextResponse:
        return PlainTextResponse("paid")

    app = Starlette(routes=[Mount("/checkout", routes=[Route("/pay", pay, methods=["POST"])])])
    sink = MemorySink()
    handler = WideEventHandler(
        sink=sink, sampling={"normal_rate": 0.0, "critical_routes": ["/checkout*"]}
    )
    WideEventMiddleware.install(app, handler=handler)
    try:
        with TestClient(app) as client:
            for n in range(50):
                assert client.get(f"/checkout/made-up-{n}").status_code == 404
            for _ in range(5):
                assert client.post("/checkout/pay").status_code == 200
        assert handler.flush(5)
        assert [e["http"]["route"] for e in sink.events] == ["/checkout/pay"] * 5
        assert handler.metrics.get("events.sampled_out.normal") == 50
    finally:
        handler.close()


class ReturnsNone(EveryThird):
    """A sampler of the app's own with a bug: it forgets to return."""

    def decide(self, key: str, error: bool = False, *args: Any, **kwargs: Any) -> Any:
        return None


class PlainVerdict:
    def __init__(self, keep: bool, rule: str, rate: float) -> None:
        self.keep, self.rule, self.rate = keep, rule, rate


class ReturnsItsOwnVerdict(EveryThird):
    def decide(self, key: str, error: bool = False, *args: Any, **kwargs: Any) -> Any:
        return PlainVerdict(True, "mine", 1.0)


@pytest.mark.parametrize("sampler", [ReturnsNone(), ReturnsItsOwnVerdict()])
def test_a_sampler_that_answers_something_else_than_a_decision_falls_back(
    tmp_path: Path, sampler: Any
) -> None:
    handler = WideEventHandler(sink=f"file:{tmp_path}/e.jsonl", sampling=sampler)
    try:
        event = handler.new_event(request_id="r-500")
        event.method, event.path, event.status = "POST", "/pay", 500
        decision = handler.submit(event)
        assert decision is not None
        assert (decision.keep, decision.rule) == (True, "server_error")
        assert handler.metrics.get("sampler_errors") == 1
        assert handler.metrics.get("dropped.internal_error") == 0
        assert handler.flush(5)
        stored = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
        assert [e["request_id"] for e in stored] == ["r-500"]
    finally:
        handler.close()


class AttrDict(dict[str, Any]):
    """addict-style options: any attribute exists (an empty AttrDict when missing)."""

    def __getattr__(self, name: str) -> Any:
        return self[name] if name in self else AttrDict()


def test_a_sampler_class_is_refused_and_options_in_a_mapping_stay_options(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigurationError, match="the class TailSampler"):
        WideEventHandler(sink=f"file:{tmp_path}/e.jsonl", sampling=TailSampler)
    handler = WideEventHandler(sink=f"file:{tmp_path}/e.jsonl", sampling=AttrDict(normal_rate=1.0))
    try:
        assert isinstance(handler.sampler, TailSampler)
        assert handler.sampler.normal_rate == 1.0
    finally:
        handler.close()


class LoggingSampler:
    """A sampler that logs what it decides (the README's root -> wide handler setup)."""

    def __init__(self) -> None:
        self.inner = TailSampler(normal_rate=1.0)
        self.calls = 0
        self.log = logging.getLogger("myapp.sampling")

    def decide(self, key: str, *args: Any) -> Decision:
        self.calls += 1
        self.log.info("deciding for %s", key)
        return self.inner.decide(key, *args)

    def decide_log(self, key: str, *, error: bool) -> Decision:
        self.calls += 1
        self.log.info("deciding for a log record")
        return self.inner.decide_log(key, error=error)

    def explain(self, event: Any) -> str:
        return self.inner.explain(event)


def test_what_a_sampler_logs_while_deciding_is_not_decided_on_again(tmp_path: Path) -> None:
    sampler = LoggingSampler()
    handler = WideEventHandler(sink=f"file:{tmp_path}/e.jsonl", sampling=sampler)
    root = logging.getLogger()
    saved_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        handler.submit(handler.new_event(request_id="r-1"))
        logging.getLogger("myapp").info("outside any request")  # a log event: decided once
        assert handler.flush(5)
        stored = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
        assert sorted(e["kind"] for e in stored) == ["http.request", "log"]
        assert sampler.calls == 2
        assert handler.metrics.get("sampler_errors") == 0
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_level)
        handler.close()


@pytest.mark.parametrize("error", ["payment declined", True, ["a", "b"], {"code": 7}])
def test_explain_names_an_error_that_is_not_an_object_with_a_type(error: Any) -> None:
    text = explain({"request_id": "abc", "error": error}, TailSampler())
    assert text.startswith("kept by rule 'error'"), text
    event = WideEvent("http.request", Serializer(), request_id="abc")
    event.annotate(error=error)
    assert "it carries an error (error)" in explain(event, TailSampler())


def test_an_environment_variable_out_of_bounds_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WIDE_LOGGING_NORMAL_RATE", "1.5")
    with pytest.raises(ConfigurationError, match="WIDE_LOGGING_NORMAL_RATE"):
        WideEventHandler(sink=f"file:{tmp_path}/e.jsonl")
