"""``wide-logging simulate`` over access logs (nginx, Apache, JSON lines), with a budget,
and with the policy read from the app's own logging configuration."""

from __future__ import annotations

import gzip
import io
import json
import math
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_simulate import KEY, _ids, _serve, _simulate

from wide_logging.tools.access_logs import Observed, route_of_path
from wide_logging.tools.cli import main
from wide_logging.tools.request_logs import FORMATS, detect, parser
from wide_logging.tools.simulate import BUCKETS, MAX_ROUTES

START = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc).timestamp()


def _time_local(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%d/%b/%Y:%H:%M:%S +0000")


def _nginx_line(event: dict[str, Any], seconds: float) -> str:
    """What nginx's ``combined`` + ``$request_time $request_id`` writes for the request."""
    status = event["http"]["response"]["status_code"]
    return (
        f'127.0.0.1 - - [{_time_local(seconds)}] "GET {event["url"]["path"]}?page=2 HTTP/1.1" '
        f'{status} 17 "-" "Mozilla/5.0 (X11; Linux)" '
        f"{event['duration_ms'] / 1000:.3f} {event['request_id']}\n"
    )


def test_an_nginx_log_of_the_same_traffic_keeps_the_requests_the_handler_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def nginx_id(n: int) -> str:
        return f"{n * 7919:032x}"  # $request_id: 32 hex digits

    everything = _serve(tmp_path / "all" / "events.jsonl", 1.0, request_id=nginx_id)
    sampled = _serve(tmp_path / "sampled" / "events.jsonl", 0.1, request_id=nginx_id)
    events = [json.loads(line) for line in everything.read_text().splitlines()]
    access_log = tmp_path / "access.log"
    access_log.write_text("".join(_nginx_line(e, START + n) for n, e in enumerate(events)))
    kept_out = tmp_path / "kept.log"
    result = _simulate(
        capsys,
        str(access_log),
        *("--normal-rate", "0.1", "--key", KEY, "--kept-out", str(kept_out)),
        *("--event-size-from", str(everything)),
    )
    assert result["formats_in"] == {"nginx": 1}
    kept_ids = {line.split()[-1] for line in kept_out.read_text().splitlines()}
    assert kept_ids == _ids(sampled)
    assert result["events_in"] == 600
    assert result["errors_in"] == result["errors_kept"] == 12  # the 500s
    assert result["kept_by_rule"]["server_error"] == 12
    # sizes estimated from the real events: close to the sampled file's own size
    assert result["event_bytes"]["source"] == "sample"
    assert result["bytes_estimated_for"] == 600
    size = sampled.stat().st_size
    assert abs(result["bytes_kept"] - size) / size < 0.03
    # the ids in the path are not routes: /items/{id}, its query left out
    assert [r["route"] for r in result["routes"]] == ["/items/{id}", "/pay"]
    assert result["days"] == pytest.approx(599 / 86400)


def _combined(n: int, status: int, tail: str, path: str = "/a") -> str:
    return (
        f'10.0.0.{n % 250} - frank [{_time_local(START + n)}] "GET {path} HTTP/1.1" {status} 5 '
        f'"http://example.com/" "agent/1.0 (like \\"quotes\\")"{tail}\n'
    )


@pytest.mark.parametrize(
    ("tail", "format_in", "slow"),
    [
        (" 2.500", "nginx", True),  # $request_time, seconds
        (" 0.004 abcdef0123456789abcdef0123456789", "nginx", False),  # + $request_id
        (' "1.2.3.4, 5.6.7.8" rt=2.500 uct="0.000" urt="2.499"', "nginx", True),  # upstream
        (" 2500000", "apache", True),  # %D, microseconds
        (" 4000", "apache", False),
    ],
)
def test_nginx_and_apache_variants_are_told_apart_and_timed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tail: str, format_in: str, slow: bool
) -> None:
    log = tmp_path / "access.log.gz"
    log.write_bytes(gzip.compress("".join(_combined(n, 200, tail) for n in range(50)).encode()))
    result = _simulate(capsys, str(log), "--normal-rate", "0", "--slow-ms", "1000")
    assert result["formats_in"] == {format_in: 1}
    assert result["events_in"] == 50
    assert result["kept_by_rule"] == ({"slow": 50} if slow else {})


def test_json_access_logs_with_the_usual_names_or_fields_named_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    usual = tmp_path / "usual.jsonl"
    usual.write_text(
        "".join(
            json.dumps(
                {
                    "time_iso8601": f"2026-11-30T08:00:{n:02d}+00:00",
                    "status": str(500 if n == 3 else 200),
                    "request_uri": f"/users/{n}?x=1",
                    "request_time": "0.012",
                }
            )
            + "\n"
            for n in range(40)
        )
    )
    result = _simulate(capsys, str(usual), "--normal-rate", "0")
    assert result["formats_in"] == {"json": 1}
    assert (result["events_in"], result["kept_by_rule"]) == (40, {"server_error": 1})
    assert result["routes"][0]["route"] == "/users/{id}"
    nested = tmp_path / "nested.jsonl"
    nested.write_text(
        "".join(
            json.dumps({"res": {"code": 200}, "req": {"url": "/b"}, "took_us": 3_000_000}) + "\n"
            for _ in range(10)
        )
    )
    result = _simulate(
        capsys,
        str(nested),
        *("--field", "status=res.code", "--field", "path=req.url"),
        *("--field", "duration_us=took_us", "--normal-rate", "0"),
    )
    assert result["kept_by_rule"] == {"slow": 10}


def test_a_bad_field_option_and_lines_of_another_format_are_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "access.log"
    log.write_text(_combined(1, 200, " 0.001") + "not a request\n" + _combined(2, 404, " 0.001"))
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", str(log), "--field", "colour=x"])
    assert exit_info.value.code == 2
    assert "--field takes name=path" in capsys.readouterr().err
    result = _simulate(capsys, str(log), "--normal-rate", "1")
    assert (result["events_in"], result["unparsed_lines"]) == (2, 1)
    assert result["unparsed_examples"] == [f"{log}:2"]


def _keep_all_day(path: Path, requests: int = 4000) -> Path:
    """A day of keep-all events: 1 error in 100, sizes that vary."""
    with path.open("w") as out:
        for n in range(requests):
            event: dict[str, Any] = {
                "kind": "http.request",
                "request_id": f"day-{n}",
                "timestamp": datetime.fromtimestamp(
                    START + n * 86400 / (requests - 1), timezone.utc
                )
                .isoformat()
                .replace("+00:00", "Z"),
                "http": {"response": {"status_code": 200}, "route": f"/r{n % 7}"},
                "url": {"path": f"/r{n % 7}"},
                "duration_ms": 3.0,
                "padding": "x" * (n % 500),
                "sampling": {"rule": "normal", "rate": 1.0},
            }
            if n % 100 == 0:
                event["error"] = {"type": "Boom", "message": "y" * 2000}
            out.write(json.dumps(event) + "\n")
    return path


def test_a_budget_finds_the_highest_rate_that_fits_and_reports_it_as_simulated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    day = _keep_all_day(tmp_path / "day.jsonl")
    everything = _simulate(capsys, str(day), "--normal-rate", "1", "--key", KEY)
    budget = everything["bytes_kept"] // 5  # the span is one day: bytes per day = bytes
    fitted = _simulate(capsys, str(day), "--budget", f"{budget}B/day", "--key", KEY)
    rate = fitted["normal_rate"]
    assert fitted["budget_bytes_per_day"] == budget
    assert 0 < rate < 1
    assert fitted["bytes_kept_per_day"] <= budget
    assert fitted["errors_kept"] == fitted["errors_in"] == 40
    # what the budget reports is what that rate keeps, decided request by request
    direct = _simulate(capsys, str(day), "--normal-rate", repr(rate), "--key", KEY)
    for key in ("events_kept", "bytes_kept", "kept_by_rule", "relative_error_total"):
        assert fitted[key] == direct[key], key
    # and one step higher no longer fits
    above = _simulate(capsys, str(day), "--normal-rate", repr(rate + 1 / BUCKETS), "--key", KEY)
    assert above["bytes_kept_per_day"] > budget
    # a budget the errors alone exceed: rate 0, every error still kept, and said
    assert main(["simulate", str(day), "--budget", "1kB/day"]) == 0
    text = capsys.readouterr().out
    assert "policy: normal_rate 0 — the highest that fits" in text
    assert "errors are never dropped to fit" in text
    assert "40 of 40  (every one)" in text


@pytest.mark.parametrize(
    ("budget", "message"),
    [("lots", "--budget takes a size per day"), ("0GB/day", "between 1 byte"), ("5XB", "size per")],
)
def test_a_budget_that_is_not_a_size_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], budget: str, message: str
) -> None:
    day = _keep_all_day(tmp_path / "day.jsonl", requests=10)
    with pytest.raises(SystemExit):
        main(["simulate", str(day), "--budget", budget])
    assert message in capsys.readouterr().err


def test_the_policy_comes_from_the_apps_own_logging_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    day = _keep_all_day(tmp_path / "day.jsonl", requests=700)
    handler = {
        "class": "wide_logging.WideEventHandler",
        "sampling": {"normal_rate": 0.0, "critical_routes": ["/r3"], "key": KEY},
    }
    config = tmp_path / "logging.yaml"
    config.write_text(
        "version: 1\nhandlers:\n  console: {class: logging.StreamHandler}\n"
        f"  wide: {json.dumps(handler)}\n"
    )
    result = _simulate(capsys, str(day), "--config", str(config))
    assert result["kept_by_rule"] == {"critical_route": 99, "error": 7}
    assert result["keyed"] is True
    # an option given on the command line wins over the file's
    result = _simulate(capsys, str(day), "--config", str(config), "--normal-rate", "1")
    assert result["events_kept"] == 700
    # Django's settings.LOGGING, as JSON, with two of our handlers: one must be named
    django = tmp_path / "logging.json"
    django.write_text(json.dumps({"LOGGING": {"handlers": {"a": handler, "b": handler}}}))
    with pytest.raises(SystemExit):
        main(["simulate", str(day), "--config", str(django)])
    assert "name one with --handler" in capsys.readouterr().err
    result = _simulate(capsys, str(day), "--config", str(django), "--handler", "b")
    assert result["kept_by_rule"]["critical_route"] == 99


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("handlers: {}\n", "found none"),
        ("handlers: [\n", "not valid YAML"),
        (
            "handlers: {w: {class: wide_logging.WideEventHandler, sampling: {rate: 1}}}\n",
            "unknown sampling option",
        ),
    ],
)
def test_a_configuration_without_a_usable_handler_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    config = tmp_path / "logging.yml"
    config.write_text(text)
    day = _keep_all_day(tmp_path / "day.jsonl", requests=5)
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", str(day), "--config", str(config)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_each_routes_reweighted_count_has_its_binomial_error_and_poor_ones_are_flagged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    day = _keep_all_day(tmp_path / "day.jsonl", requests=1400)
    result = _simulate(capsys, str(day), "--normal-rate", "0.05", "--key", KEY)
    for row in result["routes"]:
        expected = math.sqrt(row["normal"] * 0.95 / 0.05) / row["requests"]
        assert row["relative_error"] == pytest.approx(expected)
        assert row["poor"] is (expected > 0.10)
        assert (row["requests"], row["errors"]) == (200, 2)
    assert any(row["poor"] for row in result["routes"])
    main(["simulate", str(day), "--normal-rate", "0.05", "--format", "markdown"])
    markdown = capsys.readouterr().out
    assert "| /r0 | 200 | 2 |" in markdown
    assert "**poor**" in markdown


def test_routes_stop_being_tracked_one_by_one_at_the_cap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "access.log"
    log.write_text("".join(_combined(n, 200, " 0.001", path=f"/p{n}") for n in range(1200)))
    result = _simulate(capsys, str(log), "--normal-rate", "1")
    assert len(result["routes"]) == MAX_ROUTES + 1
    other = next(r for r in result["routes"] if r["route"] == "(other routes)")
    assert other["requests"] == 1200 - MAX_ROUTES


def test_path_ids_become_placeholders() -> None:
    assert route_of_path("/orders/123/items/9?x=1") == "/orders/{id}/items/{id}"
    assert route_of_path("/u/0b8e5c9a-6a8e-4c5b-9f3e-2b1d8c7a6e5f") == "/u/{id}"
    assert route_of_path("/blob/deadbeefdeadbeef00") == "/blob/{id}"
    assert route_of_path("/v1/users") == "/v1/users"


@settings(max_examples=300, deadline=None)
@given(line=st.binary(max_size=300), format_in=st.sampled_from(FORMATS))
def test_no_line_breaks_a_parser(line: bytes, format_in: str) -> None:
    detect(line)
    parsed = parser(format_in)(line, 1)
    assert parsed is None or parsed == "other" or isinstance(parsed, Observed)


@settings(max_examples=200, deadline=None)
@given(
    status=st.integers(100, 599),
    path=st.text(
        st.characters(blacklist_characters=' "\n\r\\', blacklist_categories=("Cs",)),
        min_size=1,
        max_size=40,
    ),
    seconds=st.floats(0, 10_000, allow_nan=False),
    agent=st.text(
        st.characters(blacklist_characters='"\n\r\\', blacklist_categories=("Cs",)), max_size=30
    ),
)
def test_whatever_the_request_an_nginx_line_reads_back(
    status: int, path: str, seconds: float, agent: str
) -> None:
    line = (
        f'1.2.3.4 - - [30/Nov/2026:08:00:00 +0000] "GET /{path} HTTP/1.1" {status} 0 "-" '
        f'"{agent}" {seconds:.3f}\n'
    ).encode()
    assert detect(line) == ("nginx", True)
    parsed = parser("nginx")(line, 1)
    assert isinstance(parsed, Observed)
    assert parsed.facts.status == status
    assert parsed.facts.duration_ms == pytest.approx(float(f"{seconds:.3f}") * 1000)
    assert parsed.moment == START


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_progress_bar_and_a_pipe_does_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "access.log"
    log.write_text("".join(_combined(n, 200, " 0.001") for n in range(10_000)))
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["simulate", str(log), "--format", "json"]) == 0
    assert "reading" in terminal.getvalue()
    assert f"{log.stat().st_size / 1e6:.2f}M/{log.stat().st_size / 1e6:.2f}M" in terminal.getvalue()
    terminal.truncate(0)
    assert main(["simulate", str(log), "--format", "json", "--no-progress"]) == 0
    assert terminal.getvalue() == ""
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal
    assert main(["simulate", str(log), "--format", "json"]) == 0
    assert sys.stderr.getvalue() == ""


def test_requests_per_day_scale_by_traffic_instead_of_the_time_span(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    day = _keep_all_day(tmp_path / "day.jsonl", requests=400)
    by_span = _simulate(capsys, str(day), "--normal-rate", "0.5")
    assert by_span["days"] == pytest.approx(1.0)
    by_traffic = _simulate(capsys, str(day), "--normal-rate", "0.5", "--requests-per-day", "800")
    assert by_traffic["days"] == pytest.approx(0.5)
    assert by_traffic["bytes_in_per_day"] == 2 * by_traffic["bytes_in"]
    for wrong in (["--requests-per-day", "0"], ["--budget", "1GB", "--kept-out", "x"]):
        with pytest.raises(SystemExit):
            main(["simulate", str(day), *wrong])
        assert "error:" in capsys.readouterr().err


def _error_of(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_kept_out_never_overwrites_an_input_and_write_errors_are_said_as_such(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "access.log"
    log.write_text("".join(_combined(n, 200, " 0.001") for n in range(20)))
    size = log.stat().st_size
    assert "one of the inputs" in _error_of(capsys, str(log), "--kept-out", str(log))
    assert log.stat().st_size == size
    full = _error_of(capsys, str(log), "--normal-rate", "1", "--kept-out", "/dev/full")
    assert "could not read or write --kept-out" in full
    assert "could not reach" not in full


def test_odd_inputs_are_read_as_far_as_they_go_and_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = "".join(_combined(n, 200, f" rt=0.001 request_id=\u00e9t\u00e9{n}") for n in range(30))
    archive = tmp_path / "cut.log.gz"
    archive.write_bytes(gzip.compress(lines.encode())[:-30])  # a compressed file cut short
    result = _simulate(capsys, str(archive), "--normal-rate", "1")
    assert 0 < result["events_in"] < 30
    assert result["files_cut_short"]
    # a stray first line does not decide the format; a file named twice is read once
    log = tmp_path / "access.log"
    log.write_text("garbage that is no request\n" + lines)
    result = _simulate(capsys, str(log), str(log), f"{tmp_path}/*.log", "--normal-rate", "1")
    assert result["formats_in"] == {"nginx": 1}
    assert (result["events_in"], result["unparsed_lines"]) == (30, 1)
    assert result["unparsed_examples"] == [f"{log}:1"]
    # a JSON access log whose lines have a "kind" of their own is an access log
    kinds = tmp_path / "kinds.jsonl"
    kinds.write_text(
        "".join(
            json.dumps({"kind": "access", "status": 503 if n < 3 else 200, "path": "/a"}) + "\n"
            for n in range(10)
        )
    )
    result = _simulate(capsys, str(kinds), "--normal-rate", "0")
    assert (result["formats_in"], result["errors_kept"]) == ({"json": 1}, 3)


def test_a_duration_named_with_field_wins_over_the_usual_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "d.jsonl"
    log.write_text(json.dumps({"elapsed": 5, "took": 100, "status": 200, "path": "/"}) + "\n")
    result = _simulate(capsys, str(log), "--field", "duration_us=took", "--normal-rate", "0")
    assert result["kept_by_rule"] == {}  # 100 µs is not slow; 5 s (elapsed) would be


def test_without_request_ids_a_keyed_run_is_still_a_draw(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "access.log"
    log.write_text("".join(_combined(n, 200, " 0.001") for n in range(20)))
    result = _simulate(capsys, str(log), "--key", KEY)
    assert (result["keyed"], result["exact"], result["requests_without_id"]) == (True, False, 20)
    main(["simulate", str(log), "--key", KEY])
    assert "20 requests have no request id" in capsys.readouterr().out


def test_a_budget_above_the_inputs_own_rate_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sampled = _serve(tmp_path / "s" / "events.jsonl", normal_rate=0.1, requests=300)
    main(["simulate", str(sampled), "--key", KEY, "--budget", "5TB/day", "--requests-per-day", "1"])
    assert "the budget allows more than the input's own rate" in capsys.readouterr().out


@pytest.mark.parametrize(
    "content", [b"\xff\xfe not utf-8", b"[" * 100_000, b"a: " + b"[" * 100_000]
)
def test_a_broken_config_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    day = _keep_all_day(tmp_path / "day.jsonl", requests=5)
    config = tmp_path / ("c.yaml" if content.startswith(b"a:") else "c.json")
    config.write_bytes(content)
    assert "--config" in _error_of(capsys, str(day), "--config", str(config))
