"""Whole-process behaviour: exit with a full queue, and fork (gunicorn/uwsgi workers)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from conftest import read_jsonl

pytestmark = pytest.mark.slow

EXIT_SCRIPT = """
import os, sys
from wide_logging import WideEventHandler

sink = sys.argv[1]
handler = WideEventHandler(
    sink=sink,
    fallback="file:{spool}",
    sampling={{"normal_rate": 1.0}},
    queue_size=50_000,
    batch_size=100,
    flush_interval=30,          # nothing is written before exit unless batches fill
    max_retries=1,
    retry_backoff=0.01,
    shutdown_timeout=10,
)
if sys.argv[2] == "dead":  # the sink's disk goes away under the running process
    directory = os.path.dirname(sink[len("file:"):])
    os.rmdir(directory)
    with open(directory, "w") as blocker:
        blocker.write("a file where the sink directory should be")
for n in range({count}):
    event = handler.new_event(request_id=f"exit-{{n}}")
    event.method, event.path, event.status = "GET", "/x", 200
    handler.submit(event)
print(handler.pipeline.queue_depth, flush=True)
# no flush, no close: the interpreter exits with the events still queued
"""


@pytest.mark.parametrize("healthy", [True, False], ids=["healthy-sink", "dead-sink"])
def test_exit_with_thousands_of_queued_events_loses_none(tmp_path: Path, healthy: bool) -> None:
    count = 5000
    spool = tmp_path / "spool" / "events.jsonl"
    out = tmp_path / "out" / "events.jsonl"
    script = EXIT_SCRIPT.format(spool=spool, count=count)
    result = subprocess.run(
        [sys.executable, "-c", script, f"file:{out}", "healthy" if healthy else "dead"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert int(result.stdout.strip()) > 0  # events really were still queued at exit
    written = read_jsonl(out) if healthy else []
    spooled = read_jsonl(spool)
    ids = Counter(e["request_id"] for e in [*written, *spooled])
    assert set(ids) == {f"exit-{n}" for n in range(count)}
    assert max(ids.values()) == 1
    assert (len(spooled) == 0) if healthy else (len(written) == 0)


FORK_SCRIPT = """
import os, sys
from wide_logging import WideEventHandler, flush

handler = WideEventHandler(
    sink="file:{out}",
    fallback="file:{spool}",
    sampling={{"normal_rate": 1.0}},
    batch_size=10_000,
    flush_interval=60,   # the parent's events stay queued across the fork
)

def emit(prefix, n):
    for i in range(n):
        event = handler.new_event(request_id=f"{{prefix}}-{{i}}")
        handler.submit(event)

if {emit_before_fork}:
    emit("parent-before", 10)
pid = os.fork()
if pid == 0:
    emit("child", 100)
    ok = flush(10)
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
emit("parent-after", 10)
assert flush(10)
sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.parametrize("emit_before_fork", [True, False], ids=["started", "preload"])
def test_forked_child_events_arrive_and_inherited_queue_is_not_duplicated(
    tmp_path: Path, emit_before_fork: bool
) -> None:
    out, spool = tmp_path / "out" / "events.jsonl", tmp_path / "spool" / "events.jsonl"
    script = FORK_SCRIPT.format(out=out, spool=spool, emit_before_fork=emit_before_fork)
    subprocess.run([sys.executable, "-c", textwrap.dedent(script)], timeout=60, check=True)
    events = read_jsonl(out)
    ids = Counter(e["request_id"] for e in events)
    expected = {f"child-{i}" for i in range(100)} | {f"parent-after-{i}" for i in range(10)}
    if emit_before_fork:
        expected |= {f"parent-before-{i}" for i in range(10)}
    assert set(ids) == expected
    assert max(ids.values()) == 1
    pids = {e["process"]["pid"] for e in events if e["request_id"].startswith("child")}
    parent_pids = {e["process"]["pid"] for e in events if e["request_id"].startswith("parent")}
    assert len(pids) == 1
    assert pids.isdisjoint(parent_pids)
    assert read_jsonl(spool) == []


def test_a_forked_child_redoes_ids_process_and_pipelines_in_that_order() -> None:
    """One owner of the fork hooks (``_lifecycle``): the stages run in order whatever
    order they were registered in, and the child's events carry the child's pid."""
    import os

    from wide_logging import _lifecycle
    from wide_logging.testing import MemorySink

    calls: list[str] = []
    hooks = [
        (_lifecycle.PIPELINES, lambda: calls.append("pipelines")),
        (_lifecycle.IDS, lambda: calls.append("ids")),
        (_lifecycle.PROCESS, lambda: calls.append("process")),
    ]
    for stage, hook in hooks:
        _lifecycle.after_fork_in_child(stage, hook)
    from wide_logging import WideEventHandler

    handler = WideEventHandler(sink=MemorySink(), sampling={"normal_rate": 1.0})
    read, write = os.pipe()
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                event = handler.new_event()
                fields = event.finalize(handler.resource(), {"rule": "normal", "rate": 1.0})
                report = f"{','.join(calls)}|{fields['process']['pid']}|{os.getpid()}"
                os.write(write, report.encode())
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        order, event_pid, child_pid = os.read(read, 1000).decode().split("|")
    finally:
        os.close(read)
        os.close(write)
        for entry in [e for e in _lifecycle._in_child if e[1] in {h for _, h in hooks}]:
            _lifecycle._in_child.remove(entry)
        handler.close()
    assert order == "ids,process,pipelines"
    assert event_pid == child_pid != str(os.getpid())
