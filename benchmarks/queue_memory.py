"""What queued events really cost in memory, against what ``queue_bytes`` accounts for.

Fills the queue with N kept events while the sink hangs (nothing leaves the queue), then
reports the memory Python allocated for them (tracemalloc), the process RSS growth, and the
queue's own byte count. Run it against an earlier commit's package with ``PYTHONPATH`` to
compare:

    python benchmarks/queue_memory.py [--events 10000]
    PYTHONPATH=/path/to/old/checkout python benchmarks/queue_memory.py
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import threading
import tracemalloc
from collections.abc import Sequence

from wide_logging import WideEventHandler


class HangingSink:
    """Blocks the writer until released: every event stays queued."""

    name = "hanging"
    local = True

    def __init__(self) -> None:
        self.release = threading.Event()

    def write(self, batch: Sequence[bytes]) -> None:
        self.release.wait()

    def close(self) -> None:
        self.release.set()


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    args = parser.parse_args()
    sink = HangingSink()
    with tempfile.TemporaryDirectory() as tmp:
        handler = WideEventHandler(
            sink=sink,
            fallback=f"file:{tmp}/spool/events.jsonl",
            sampling={"normal_rate": 1.0},
            queue_size=args.events + 1000,
            batch_size=1,
        )
        # one event reaches the hanging sink; the rest wait in the queue
        event = handler.new_event(request_id="first")
        handler.submit(event)
        gc.collect()
        rss_before = rss_bytes()
        tracemalloc.start()
        for n in range(args.events):
            event = handler.new_event(request_id=f"bench-{n:08d}")
            event.method, event.path, event.route, event.status = (
                "GET",
                "/items/42",
                "/items/{id}",
                200,
            )
            event.client_address, event.user_agent = "10.0.0.7", "Mozilla/5.0 (X11; Linux x86_64)"
            event.annotate(user={"id": n, "plan": "pro"}, cart={"items": 3, "total": 99.5})
            handler.submit(event)
        gc.collect()
        traced, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss_after = rss_bytes()
        queued = handler.pipeline.queued_bytes
        depth = handler.pipeline.queue_depth
        print(f"events queued            {depth:>12,}")
        print(f"queue_bytes accounts     {queued:>12,} bytes ({queued / depth:,.0f} per event)")
        print(f"tracemalloc (allocated)  {traced:>12,} bytes ({traced / depth:,.0f} per event)")
        print(f"RSS growth               {rss_after - rss_before:>12,} bytes")
        print(f"allocated / accounted    {traced / queued:>12.2f}")
        sink.release.set()
        handler.close()


if __name__ == "__main__":
    main()
