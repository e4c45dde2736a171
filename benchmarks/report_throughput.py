"""``wide-logging report`` over a JSONL file of generated events: time and peak memory.

    python benchmarks/report_throughput.py [--events 1000000] [--runs 3]

Writes the events of ``incidents_throughput.generate`` (about 300 bytes each, 1% errors,
normal traffic stored at 2%) to a temporary directory, then runs the command as a user does
— a fresh ``python -m wide_logging report --source file:... --out ...`` per run — and prints
each run's time and peak memory (the child's own ``ru_maxrss``). Target: 1,000,000 events
to a report in 15 s on the reference 2-core machine, memory bounded.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from cli_run import run_cli
from incidents_throughput import generate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        events = Path(folder, "events.jsonl")
        generate(events, args.events)
        size = events.stat().st_size
        for _ in range(args.runs):
            out = str(Path(folder, "briefing.html"))
            elapsed, maxrss = run_cli("report", "--source", f"file:{events}", "--out", out)
            print(
                f"{args.events:,} events ({size / 1e6:.0f} MB): {elapsed:.2f} s, "
                f"{args.events / elapsed:,.0f} events/s, peak {maxrss / 1024:.0f} MB",
                flush=True,
            )


if __name__ == "__main__":
    main()
