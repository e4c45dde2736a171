"""``wide-logging simulate``: the policy run again over requests already logged decides as the
handler did — with the deployment's key, request by request."""

from __future__ import annotations

import gzip
import io
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from wide_logging import WideEventHandler, WideEventMiddleware
from wide_logging.tools.cli import main

KEY = "simulate-test-key-0123456789"


async def item(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def pay(request: Request) -> PlainTextResponse:
    raise RuntimeError("card declined")


def _request_id(n: int) -> str:
    return f"req-{n}"


def _serve(
    out: Path, normal_rate: float, requests: int = 600, request_id: Any = _request_id
) -> Path:
    """The same traffic (same request ids) through a real app and middleware."""
    handler = WideEventHandler(
        sink=f"file:{out}", sampling={"normal_rate": normal_rate, "key": KEY}
    )
    app = Starlette(routes=[Route("/items/{item_id}", item), Route("/pay", pay)])
    WideEventMiddleware.install(app, handler=handler)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            for n in range(requests):
                path = "/pay" if n % 50 == 0 else f"/items/{n}"
                client.get(path, headers={"X-Request-ID": request_id(n)})
        assert handler.flush(10)
    finally:
        handler.close()
    return out


def _simulate(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main(["simulate", *args, "--format", "json"]) == 0
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    return result


def _ids(path: Path) -> set[str]:
    return {json.loads(line)["request_id"] for line in path.read_text().splitlines()}


def test_simulating_a_rate_on_keep_all_traffic_keeps_what_the_handler_keeps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    everything = _serve(tmp_path / "all" / "events.jsonl", normal_rate=1.0)
    sampled = _serve(tmp_path / "sampled" / "events.jsonl", normal_rate=0.1)
    kept_out = tmp_path / "kept.jsonl"
    result = _simulate(
        capsys, str(everything), "--normal-rate", "0.1", "--key", KEY, "--kept-out", str(kept_out)
    )
    kept_live = _ids(sampled)
    assert result["events_in"] == 600
    assert result["events_kept"] == len(kept_live)
    assert result["errors_in"] == result["errors_kept"] == 12
    assert result["kept_by_rule"]["error"] == 12
    assert result["exact"] is True
    # the very requests: the ids simulate keeps of the file are those the handler kept
    assert _ids(kept_out) == kept_live
    assert result["bytes_kept"] == kept_out.stat().st_size
    # the bytes of the same events (sizes differ only in their durations' digits)
    size = sampled.stat().st_size
    assert abs(result["bytes_kept"] - size) / size < 0.01


def test_what_simulate_reports_of_mixed_and_broken_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [
        *(
            json.dumps(
                {
                    "kind": "http.request",
                    "request_id": f"r-{n}",
                    "timestamp": f"2026-11-30T00:{n // 60:02d}:{n % 60:02d}.000Z",
                    "http": {"response": {"status_code": 503 if n % 10 == 0 else 200}},
                    "url": {"path": f"/x/{n}"},
                    "sampling": {"rule": "normal", "rate": 1.0},
                }
            )
            for n in range(200)
        ),
        json.dumps({"kind": "log", "message": "outside a request"}),
        '{"kind": "http.request", "request_id": "torn',  # a torn write
        "[1, 2]",
        "",
    ]
    archive = tmp_path / "events.jsonl.gz"
    archive.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    result = _simulate(capsys, str(archive), "--normal-rate", "0", "--key", KEY)
    assert (result["events_in"], result["events_kept"]) == (200, 20)
    assert result["kept_by_rule"] == {"server_error": 20}
    assert (result["other_events"], result["unparsed_lines"]) == (1, 2)
    assert result["bytes_in"] == sum(len(line) + 1 for line in lines[:200])
    # from standard input, as text for a person
    monkeypatch.setattr(
        sys, "stdin", io.TextIOWrapper(io.BytesIO(gzip.decompress(archive.read_bytes())))
    )
    assert main(["simulate", "-", "--normal-rate", "0.5"]) == 0
    text = capsys.readouterr().out
    assert "requests in" in text
    assert re.search(r"errors kept\s+20 of 20  \(every one\)", text), text
    assert "without the deployment's sampling key" in text  # a draw of its own


def test_a_rate_above_the_inputs_own_is_said_to_be_out_of_reach(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sampled = _serve(tmp_path / "sampled" / "events.jsonl", normal_rate=0.1, requests=200)
    result = _simulate(capsys, str(sampled), "--normal-rate", "0.5", "--key", KEY)
    assert result["input_normal_rate"] == 0.1
    assert result["exact"] is False
    assert main(["simulate", str(sampled), "--normal-rate", "0.5"]) == 0
    assert "a higher rate cannot be simulated" in capsys.readouterr().out


def test_the_expected_error_of_the_reweighted_count_is_the_binomial_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    everything = _serve(tmp_path / "all" / "events.jsonl", normal_rate=1.0, requests=300)
    result = _simulate(capsys, str(everything), "--normal-rate", "0.02", "--key", KEY)
    normal = 300 - 6  # one /pay in 50 is an error
    expected = math.sqrt(normal * (1 - 0.02) / 0.02) / 300
    assert result["relative_error_total"] == pytest.approx(expected)
