"""Each way a process's queued events are saved at exit, tested alone: the others are
switched off in the child, the sink is slow and more events are queued than one batch.

- our ``atexit`` hook closes every pipeline (a pipeline no logging handler owns);
- ``logging.shutdown()`` (logging's own ``atexit``) closes the handler, and with it the
  pipeline;
- an ASGI server's lifespan shutdown flushes before the server may end the process without
  running ``atexit`` (uvicorn >= 0.29 re-raises SIGTERM).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import read_jsonl

pytestmark = pytest.mark.slow

COUNT = 250  # two and a half batches of 100

SLOW_SINK = """
import atexit, logging, os, sys, time, orjson
import wide_logging._lifecycle

class SlowFile:
    name = "slow-file:"
    local = True
    def __init__(self, path):
        self.path = path
    def write(self, batch):
        time.sleep(0.05)
        with open(self.path, "ab") as out:
            out.write(b"".join(line + b"\\n" for line in batch))
    def close(self):
        pass

def event(n):
    return orjson.dumps({"event_id": f"exit-{n}", "kind": "test"})

out, count = sys.argv[1], int(sys.argv[3])
"""

ATEXIT_ONLY = (
    SLOW_SINK
    + """
from wide_logging.metrics import Metrics
from wide_logging.pipeline import Pipeline
from wide_logging.sampling import Decision
from wide_logging.sinks import RotatingFileSink
from wide_logging.spool import Spool

metrics = Metrics()
spool = Spool(RotatingFileSink(sys.argv[2]), metrics)
pipeline = Pipeline([SlowFile(out)], spool, metrics=metrics, batch_size=100, flush_interval=60)
for n in range(count):
    pipeline.put(event(n), Decision(True, "normal", 1.0))
"""
)

LOGGING_SHUTDOWN_ONLY = (
    SLOW_SINK
    + """
from wide_logging import WideEventHandler

atexit.unregister(wide_logging._lifecycle._run_at_exit)
handler = WideEventHandler(
    sink=SlowFile(out), fallback="file:" + sys.argv[2], batch_size=100, flush_interval=60
)
for n in range(count):
    handler.pipeline.put(event(n), handler.sampler.decide("x", error=True))
"""
)

LIFESPAN_ONLY = (
    SLOW_SINK
    + """
import asyncio
from wide_logging import WideEventHandler, WideEventMiddleware

atexit.unregister(wide_logging._lifecycle._run_at_exit)
handler = WideEventHandler(
    sink=SlowFile(out), fallback="file:" + sys.argv[2], batch_size=100, flush_interval=60
)
logging._handlerList.clear()  # logging.shutdown() will not see it either

async def app(scope, receive, send):
    assert (await receive())["type"] == "lifespan.startup"
    await send({"type": "lifespan.startup.complete"})
    for n in range(count):
        handler.pipeline.put(event(n), handler.sampler.decide("x", error=True))
    assert (await receive())["type"] == "lifespan.shutdown"
    await send({"type": "lifespan.shutdown.complete"})

async def serve():
    messages = asyncio.Queue()
    for kind in ("lifespan.startup", "lifespan.shutdown"):
        messages.put_nowait({"type": kind})
    async def send(message):
        pass
    await WideEventMiddleware(app, handler=handler)({"type": "lifespan"}, messages.get, send)

asyncio.run(serve())
sys.stdout.flush()
os._exit(0)  # as uvicorn does after shutdown: no atexit, no logging.shutdown()
"""
)


@pytest.mark.parametrize(
    "script",
    [ATEXIT_ONLY, LOGGING_SHUTDOWN_ONLY, LIFESPAN_ONLY],
    ids=["atexit", "logging-shutdown", "asgi-lifespan"],
)
def test_each_exit_path_alone_saves_every_queued_event(tmp_path: Path, script: str) -> None:
    out = tmp_path / "out.jsonl"
    spool = tmp_path / "spool" / "events.jsonl"
    subprocess.run(
        [sys.executable, "-c", script, str(out), str(spool), str(COUNT)],
        check=True,
        timeout=60,
        capture_output=True,
    )
    written = [event["event_id"] for event in read_jsonl(out)] if out.exists() else []
    spooled = [event["event_id"] for event in read_jsonl(spool)] if spool.exists() else []
    assert sorted([*written, *spooled]) == sorted(f"exit-{n}" for n in range(COUNT))
    assert len(written) == COUNT  # a healthy, slow sink: written, not spooled


@pytest.mark.parametrize(
    ("script", "switched_off"),
    [
        (ATEXIT_ONLY, "atexit.unregister(wide_logging._lifecycle._run_at_exit)\n"),
        (LOGGING_SHUTDOWN_ONLY, "logging._handlerList.clear()\n"),
        (LIFESPAN_ONLY.replace("WideEventMiddleware(app, handler=handler)", "app"), ""),
    ],
    ids=["atexit", "logging-shutdown", "asgi-lifespan"],
)
def test_without_that_path_the_events_are_lost(
    tmp_path: Path, script: str, switched_off: str
) -> None:
    """The tests above are not passing by another path: with the one path under test
    switched off too, the queued events are lost."""
    out = tmp_path / "out.jsonl"
    spool = tmp_path / "spool" / "events.jsonl"
    subprocess.run(
        [sys.executable, "-c", script + switched_off, str(out), str(spool), str(COUNT)],
        check=True,
        timeout=60,
        capture_output=True,
    )
    saved = (read_jsonl(out) if out.exists() else []) + (
        read_jsonl(spool) if spool.exists() else []
    )
    assert len(saved) < COUNT
