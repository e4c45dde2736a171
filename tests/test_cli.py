from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from conftest import read_jsonl
from wide_logging.cli import main

pytestmark = pytest.mark.slow


def test_demo_runs_end_to_end_and_keeps_every_failed_request(tmp_path: Path) -> None:
    command = shutil.which("wide-logging") or ""
    args = [command] if command else [sys.executable, "-m", "wide_logging"]
    out = tmp_path / "logs"
    result = subprocess.run(
        [*args, "demo", "--requests", "3000", "--out", str(out), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    report = result.stdout
    kept = re.search(r"failed requests kept\s+([\d.]+)%\s+\((\d+) of (\d+)\)", report)
    assert kept is not None, report
    assert kept.group(1) == "100.00"
    assert kept.group(2) == kept.group(3) != "0"
    written = int(re.search(r"events written\s+(\d+)", report).group(1))  # type: ignore[union-attr]
    assert "events dropped                 0" in report
    assert "middleware overhead" in report
    assert '"event_id"' in report  # the pretty-printed sample
    # the demo's two failure modes come out as the two incidents, and nothing else does
    assert "incidents found by the default rules: 2" in report
    assert "OutOfStock on /orders/{order_id:int}" in report
    assert "LoggedError on /orders/{order_id:int}" in report

    events = [e for e in read_jsonl(out / "events.jsonl") if e["request_id"].startswith("demo")]
    rules = Counter(e["sampling"]["rule"] for e in events)
    assert len(events) == written
    assert set(rules) >= {"error", "critical_route", "slow", "normal"}
    # normal traffic is sampled near 2%: of ~2800 candidates roughly 56 (wide 5-sigma band)
    assert 15 <= rules["normal"] <= 110
    secrets = [e["user"]["password"] for e in events if "user" in e]
    assert secrets
    assert set(secrets) == {"[REDACTED]"}


def test_python_dash_m_and_argument_errors(capsys: pytest.CaptureFixture[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wide_logging", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert result.stdout.startswith("wide-logging ")
    with pytest.raises(SystemExit) as info:
        main(["demo", "--normal-rate", "3"])
    assert info.value.code == 2
    assert "between 0 and 1" in capsys.readouterr().err


def test_configuration_errors_are_one_line_not_a_traceback(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["incidents", "--source", "ftp://x", "--since", "1h"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("wide-logging incidents: error: --source must be")
    assert "Traceback" not in err
    with pytest.raises(SystemExit):
        main(["incidents", "--source", f"file:{tmp_path}/x.jsonl", "--since", "someday"])
    assert "--since takes a duration" in capsys.readouterr().err
