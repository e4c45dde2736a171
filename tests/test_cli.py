from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest

from conftest import read_jsonl
from servers import free_port
from wide_logging.tools.cli import main

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
    # what the report says is what the output holds, and it says what to run next
    assert f"({written} lines there)" in report
    assert len(read_jsonl(out / "events.jsonl")) == written
    assert f"wide-logging stats --events {out}" in report
    stats = subprocess.run(
        [*args, "stats", "--events", str(out)], capture_output=True, text=True, timeout=60
    )
    assert stats.returncode == 0, stats.stderr
    assert re.search(rf"events\s+stored \(each event_id once\)\s+{written}\n", stats.stdout)
    for rule, count in rules.items():
        assert re.search(rf"kept by rule\s+{rule}\s+{count} \(rate", stats.stdout), rule

    # a second run: its own output only; the first one's events moved aside
    again = subprocess.run(
        [*args, "demo", "--requests", "300", "--out", str(out), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert again.returncode == 0, again.stderr
    second = int(re.search(r"events written\s+(\d+)", again.stdout).group(1))  # type: ignore[union-attr]
    assert f"({second} lines there)" in again.stdout
    assert len(read_jsonl(out / "events.jsonl")) == second
    assert f"the previous run's moved to {out / 'previous'}" in again.stdout
    assert len(read_jsonl(out / "previous" / "events.jsonl")) == written


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


def run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wide_logging", *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )


def write_events(path: Path, count: int, prefix: str = "e") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as out:
        for n in range(count):
            out.write(f'{{"event_id": "{prefix}-{n}", "kind": "log"}}\n')


def test_replay_refuses_to_read_its_own_sink(tmp_path: Path) -> None:
    source = tmp_path / "events.jsonl"
    write_events(source, 3)
    (tmp_path / "hard.jsonl").hardlink_to(source)
    for spelling in (
        f"file:{source}",
        f"file:{tmp_path}/./events.jsonl",
        f"file:{tmp_path}/hard.jsonl",
    ):
        result = run_cli("replay", "--sink", spelling, str(source), "--no-progress")
        assert result.returncode == 2
        assert "it would read its own output" in result.stderr
        assert "Traceback" not in result.stderr
    assert len(read_jsonl(source)) == 3  # untouched


def test_replay_reads_what_the_files_held_when_it_began(tmp_path: Path) -> None:
    """A file something appends to meanwhile (its own output under another name, an app
    still writing) is read up to its size at the start, not followed."""
    from wide_logging.metrics import Metrics
    from wide_logging.spool import SegmentReader

    source = tmp_path / "events.jsonl"
    write_events(source, 5, "before")
    reader = SegmentReader(source, 2, Metrics(), until=source.stat().st_size)
    seen: list[bytes] = []
    while batch := reader.next_batch():
        write_events(source, 2, f"during-{len(seen)}")  # appended while it reads
        seen += batch
        reader.sent()
    reader.close()
    assert [line.decode() for line in seen] == [
        f'{{"event_id": "before-{n}", "kind": "log"}}' for n in range(5)
    ]


def test_replay_to_an_unreachable_sink_says_why(tmp_path: Path) -> None:
    source = tmp_path / "events.jsonl"
    write_events(source, 2)
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    result = run_cli("replay", "--sink", url, str(source), "--no-progress")
    assert result.returncode == 1
    assert "replayed 0 events" in result.stderr
    assert "stopped: could not write to the sink" in result.stderr
    assert "Connection refused" in result.stderr
    assert "hunter2" not in result.stderr
    assert source.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ("stats", "--redis", "redis://:hunter2@127.0.0.1:{port}/0"),
        ("stats", "--url", "http://127.0.0.1:{port}/metrics?token=hunter2"),
        ("incidents", "--source", "redis://:hunter2@127.0.0.1:{port}/0?stream=s"),
        (
            "incidents",
            "--source",
            "mongodb://app:hunter2@127.0.0.1:{port}/logs?serverSelectionTimeoutMS=500",
        ),
        ("stats", "--redis", "redis+cluster://:hunter2@127.0.0.1:{port}/?shards=4"),
        ("report", "--source", "redis+cluster://:hunter2@127.0.0.1:{port}/"),
    ],
    ids=[
        "stats-redis",
        "stats-url",
        "incidents-redis",
        "incidents-mongodb",
        "stats-redis-cluster",
        "report-redis-cluster",
    ],
)
def test_an_unreachable_server_is_one_masked_line_and_exit_2(argv: tuple[str, ...]) -> None:
    port = free_port()
    result = run_cli(*(arg.replace("{port}", str(port)) for arg in argv))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"wide-logging {argv[0]}: error: could not reach ")
    assert f"127.0.0.1:{port}" in result.stderr  # names what failed
    assert result.stderr.count("\n") == 1
    assert "hunter2" not in result.stderr
    assert "Traceback" not in result.stderr


def test_incidents_from_a_missing_file_is_an_error(tmp_path: Path) -> None:
    result = run_cli("incidents", "--source", f"file:{tmp_path}/missing.jsonl")
    assert result.returncode == 2
    assert "no event files at" in result.stderr
    write_events(tmp_path / "there.jsonl", 1)
    assert run_cli("incidents", "--source", f"file:{tmp_path}/there.jsonl").returncode == 0


def test_every_option_of_every_command_has_help_and_shows_its_default() -> None:
    import argparse

    from wide_logging.tools.cli import build_parser

    parser = build_parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(commands.choices) == {
        "demo",
        "consume",
        "replay",
        "stats",
        "incidents",
        "simulate",
        "report",
    }
    for name, command in commands.choices.items():
        text = command.format_help()
        for action in command._actions:
            if isinstance(action, argparse._HelpAction) or not action.option_strings:
                continue
            option = action.option_strings[0]
            assert action.help, f"{name} {option} has no help"
            options = text[text.index("\noptions:") :]
            shown = options[options.index(f"\n  {option}") + 1 :]
            shown = shown[: shown.index("\n  -") if "\n  -" in shown else len(shown)]
            if isinstance(action, argparse._StoreTrueAction) or "one of the" in shown:
                continue  # a flag (off unless given); one of several sources
            said = "default" in shown or "(required)" in shown
            assert said, f"{name} {option} shows neither its default nor that it is required"
        assert "(default: None)" not in text
        assert "(default: False)" not in text


def test_a_replay_killed_half_way_resumes_where_it_stopped(tmp_path: Path) -> None:
    """SIGKILL a replay mid-file, run it again: every event arrives, and at most one batch
    twice (ids counted end to end)."""
    import os
    import signal
    import time

    source = tmp_path / "archive.jsonl"
    total = 300_000
    with open(source, "w") as out:
        for n in range(total):
            out.write(f'{{"event_id": "r-{n}", "kind": "log", "pad": "{"x" * 40}"}}\n')
    target = tmp_path / "out" / "events.jsonl"
    argv = [sys.executable, "-m", "wide_logging", "replay", str(source)]
    argv += ["--sink", f"file:{target}", "--batch-size", "500", "--no-progress"]
    first = subprocess.Popen(argv, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and first.poll() is None:
        if target.exists() and target.stat().st_size > 200_000:
            os.kill(first.pid, signal.SIGKILL)
            break
        time.sleep(0.002)
    assert first.wait(30) == -signal.SIGKILL, "the replay ended before it could be killed"
    again = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "resumed at byte" in again.stderr
    # A SIGKILL inside a write can leave a line without its end; the next writer starts a
    # new line after it (sinks/file.py), and readers skip it: at most that one fragment.
    lines = target.read_bytes().split(b"\n")
    assert lines[-1] == b""
    parsed, fragments = [], []
    for line in lines[:-1]:
        try:
            parsed.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            fragments.append(line)
    assert len(fragments) <= 1, fragments[:3]
    ids = Counter(e["event_id"] for e in parsed)
    assert set(ids) == {f"r-{n}" for n in range(total)}  # nothing lost
    assert sum(ids.values()) - total <= 500  # at most one batch twice
    assert not list(tmp_path.glob(".*.offset"))  # the checkpoint is gone once done


def test_stats_and_incidents_count_each_event_once_and_only_the_sinks_segments(
    tmp_path: Path,
) -> None:
    """A replay run twice stores events twice: the readers count each event_id once. A
    file's rotated segments are read with it; a backup beside it is not."""
    folder = tmp_path / "logs"
    lines = [
        f'{{"event_id": "e-{n}", "kind": "http.request", "sampling": {{"rule": "error", '
        f'"rate": 1.0}}, "http": {{"route": "/pay", "response": {{"status_code": 500}}}}, '
        f'"error": {{"type": "Declined"}}, "timestamp": "2026-11-30T00:00:0{n}.000Z"}}\n'
        for n in range(6)
    ]
    folder.mkdir()
    (folder / "events.20261130T000000.000000-7.jsonl").write_text("".join(lines[:3]))
    (folder / "events.jsonl").write_text("".join(lines[2:]) + "".join(lines[:2]) + "[1, 2]\n")
    (folder / "events.backup.jsonl").write_text("".join(lines))
    stats = run_cli("stats", "--events", str(folder / "events.jsonl"))
    assert stats.returncode == 0, stats.stderr
    assert re.search(r"stored \(each event_id once\)\s+6\n", stats.stdout), stats.stdout
    assert re.search(r"the same event_id again \(left out\)\s+3\n", stats.stdout)
    assert re.search(r"not an event \(left out\)\s+1\n", stats.stdout)
    incidents = run_cli("incidents", "--source", f"file:{folder}/events.jsonl", "--format", "json")
    assert incidents.returncode == 0, incidents.stderr
    [incident] = json.loads(incidents.stdout)
    assert incident["count"] == 6  # not 12 (duplicates), nor 18 (the backup)
    folder_wide = run_cli("incidents", "--source", f"file:{folder}", "--format", "json")
    assert folder_wide.returncode == 0, folder_wide.stderr  # a folder, as stats takes it
    assert json.loads(folder_wide.stdout)[0]["count"] == 6


@pytest.mark.parametrize("command", ["report", "incidents"])
def test_a_since_in_the_future_is_an_error_not_an_empty_period(
    command: str, tmp_path: Path
) -> None:
    source = tmp_path / "events.jsonl"
    write_events(source, 3)
    result = run_cli(command, "--source", f"file:{source}", "--since", "2999-01-01T00:00:00Z")
    assert result.returncode == 2, result.stderr
    assert "is in the future" in result.stderr
    assert "Traceback" not in result.stderr
