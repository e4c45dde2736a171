"""Instructions per request under valgrind/callgrind: a number that machine noise cannot move.

Runs each variant twice (N and N + 1000 requests) under callgrind and divides the difference
by 1000, which cancels interpreter start-up. Counts include every thread, so "kept" variants
include the writer thread's work. Needs ``valgrind`` (Debian package ``valgrind``); takes a
few minutes.

    python benchmarks/instructions.py [--variants bare,floor,dropped,kept]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
VARIANTS = ("bare", "floor", "floor+writer", "dropped", "kept")


def run_variant(variant: str, requests: int, tmp: str) -> None:
    """One measured process (called under callgrind)."""
    import queue
    import threading

    import orjson

    sys.path.insert(0, str(HERE))
    from compare import FloorMiddleware
    from conftest import DirectClient, starlette_app
    from wide_logging import WideEventHandler

    handler = None
    stop = object()
    floor_queue: queue.SimpleQueue[object] = queue.SimpleQueue()
    writer = None
    if variant in ("bare", "floor", "floor+writer"):
        app = starlette_app(None)
        if variant != "bare":
            app.add_middleware(FloorMiddleware, sink=floor_queue)
        if variant == "floor+writer":

            def write() -> None:
                fd = os.open(f"{tmp}/floor.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
                batch: list[bytes] = []
                while (item := floor_queue.get()) is not stop:
                    batch.append(orjson.dumps(item))
                    if len(batch) >= 100:
                        os.write(fd, b"\n".join(batch) + b"\n")
                        batch = []
                os.write(fd, b"\n".join(batch) + b"\n")

            writer = threading.Thread(target=write, daemon=True)
            writer.start()
    else:
        rate = 0.0 if variant == "dropped" else 1.0
        handler = WideEventHandler(
            sink=f"file:{tmp}/events.jsonl",
            sampling={"normal_rate": rate},
            queue_size=10**6,
            queue_bytes=2**30,
        )
        app = starlette_app(handler)
    client = DirectClient(app)
    client.run(200)
    client.run(requests)
    if writer is not None:
        floor_queue.put(stop)
        writer.join()
    if handler is not None:
        handler.flush(60)


def callgrind_instructions(script_args: list[str], env: dict[str, str] | None = None) -> int:
    """Instructions ``python *script_args`` executes under callgrind, every thread counted."""
    with tempfile.TemporaryDirectory() as tmp:
        out = f"{tmp}/callgrind.out"
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                *script_args,
            ],
            check=True,
            capture_output=True,
            env=env,
        )
        text = Path(out).read_text()
    match = re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)
    if match is None:
        raise RuntimeError("no instruction total in callgrind output")
    return int(match.group(1))


def measure(variant: str, requests: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        return callgrind_instructions([__file__, "--run", variant, str(requests), tmp])


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--run":
        run_variant(sys.argv[2], int(sys.argv[3]), sys.argv[4])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    per_request = {}
    for variant in args.variants.split(","):
        small, large = measure(variant, 300), measure(variant, 1300)
        per_request[variant] = (large - small) / 1000
        print(f"{variant:<14} {per_request[variant]:>10,.0f} instructions/request", flush=True)
    if "bare" in per_request:
        bare = per_request["bare"]
        print()
        for variant, count in per_request.items():
            print(
                f"{variant:<14} overhead {count - bare:>8,.0f}  ({(count - bare) / bare:.0%} of bare)"
            )


if __name__ == "__main__":
    main()
