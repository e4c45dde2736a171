"""A process that keeps every event, at a steady rate, until it is killed.

    python tests/apps/keeping_process.py PATH RATE [BATCH_SIZE]

Events go to the file sink at PATH (default options but ``batch_size`` when given), with
request ids ``r-0``, ``r-1``, ... Every 20 events it prints how many it has handed off, so
whoever kills it knows which ids it owed (tests/test_faults.py, benchmarks/batch_size.py).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from wide_logging import WideEventHandler


def main() -> None:
    path, rate = sys.argv[1], int(sys.argv[2])
    options: dict[str, Any] = {"batch_size": int(sys.argv[3])} if len(sys.argv) > 3 else {}
    handler = WideEventHandler(sink=f"file:{path}", sampling={"normal_rate": 1.0}, **options)
    started, handed_off = time.monotonic(), 0
    while True:
        for _ in range(20):
            event = handler.new_event(request_id=f"r-{handed_off}")
            event.method, event.status = "GET", 200
            handler.submit(event)
            handed_off += 1
        print(handed_off, flush=True)  # every id below this has been handed off
        time.sleep(max(0.0, started + handed_off / rate - time.monotonic()))


if __name__ == "__main__":
    main()
