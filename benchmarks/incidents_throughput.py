"""Aggregation throughput: incident summaries over a JSONL file of generated events.

    python benchmarks/incidents_throughput.py [--events 1000000]

Writes the file to a temporary directory (about 300 bytes an event), then times
``wide-logging incidents``' work — reading, parsing and summarising with the default rules —
in-process, and prints events/s.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import orjson

from wide_logging.fields import iso_timestamp
from wide_logging.incidents import DEFAULT_RULES
from wide_logging.incidents.sources import incidents_from


def generate(path: Path, count: int) -> None:
    rng = random.Random(7)
    start = 1_795_000_000.0
    routes = ["/products/{id}", "/search", "/cart", "/orders/{id}", "/reports/daily"]
    with open(path, "wb") as out:
        for n in range(count):
            t = start + n * 0.01
            route = rng.choice(routes)
            event: dict[str, object] = {
                "event_id": f"{n:032x}",
                "timestamp": iso_timestamp(t),
                "kind": "http.request",
                "service": {"name": "shop"},
                "request_id": f"r{n}",
                "http": {"route": route, "response": {"status_code": 200}},
                "duration_ms": rng.uniform(5, 80),
                "sampling": {"rule": "normal", "rate": 0.02},
            }
            if rng.random() < 0.01:
                event["error"] = {"type": "UpstreamTimeout", "message": f"timeout after {n % 60}s"}
                event["http"] = {"route": route, "response": {"status_code": 500}}
                event["sampling"] = {"rule": "error", "rate": 1.0}
            out.write(orjson.dumps(event) + b"\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        generate(path, args.events)
        size = path.stat().st_size
        started = time.perf_counter()
        found = incidents_from(f"file:{path}", DEFAULT_RULES, None)
        elapsed = time.perf_counter() - started
    print(
        f"{args.events:,} events ({size / 1e6:.0f} MB) summarised in {elapsed:.1f} s: "
        f"{args.events / elapsed:,.0f} events/s, {len(found)} incidents"
    )


if __name__ == "__main__":
    main()
