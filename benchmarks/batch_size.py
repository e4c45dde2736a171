"""What ``batch_size`` saves a kept request, and what it costs when a process is SIGKILLed.

Part 1, in one process: compare.py's Starlette route keeping every event, with each batch
size, beside the bare app and compare.py's floor with its writer thread, alternated in
rounds (each variant timed until its writer has written every event). Part 2: a process
keeping events at a steady rate (``--rate`` a second) with each batch size, SIGKILLed at a
random moment after its first second of writing; the ids it had handed off are counted
against the ids in its file.

    python benchmarks/batch_size.py [--sizes 100,512,1000] [--rounds 11] [--kills 8] [--rate 2000]
"""

from __future__ import annotations

import argparse
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from compare import BARE, FLOOR_WITH_WRITER, Variant, _nothing, floor_with_writer, measure  # noqa: E402
from conftest import DirectClient, starlette_app  # noqa: E402
from wide_logging import WideEventHandler  # noqa: E402

#: Keeps every event at a steady rate until killed (shared with tests/test_faults.py).
KEEPING_PROCESS = HERE.parent / "tests" / "apps" / "keeping_process.py"


def cost_per_kept_request(sizes: list[int], rounds: int, tmp: Path) -> None:
    variants: dict[str, Variant] = {BARE: (DirectClient(starlette_app(None)), _nothing)}
    variants[FLOOR_WITH_WRITER] = floor_with_writer(tmp / "floor.jsonl")
    for size in sizes:
        handler = WideEventHandler(
            sink=f"file:{tmp}/{size}/events.jsonl",
            sampling={"normal_rate": 1.0},
            queue_size=10**6,
            queue_bytes=2**30,
            batch_size=size,
        )
        variants[f"keep-all, batch_size {size}"] = (
            DirectClient(starlette_app(handler)),
            lambda handler=handler: handler.flush(60),
        )
    samples = measure(variants, rounds, 2000)
    bare = statistics.median(samples[BARE])
    floor = statistics.median(samples[FLOOR_WITH_WRITER]) - bare
    print(f"compare.py's route, {rounds} alternated rounds of 2,000 requests; bare {bare:.2f} µs")
    print("| variant | overhead µs | / floor + writer |\n|---|---:|---:|")
    for name, values in samples.items():
        if name != BARE:
            overhead = statistics.median(values) - bare
            print(f"| {name} | +{overhead:.2f} | {overhead / floor:.2f} |")


def _written_ids(path: Path) -> set[int]:
    """The ids in the file's whole lines (a SIGKILL may leave the last one torn)."""
    if not path.exists():
        return set()
    lines = path.read_bytes().split(b"\n")[:-1]
    return {int(orjson.loads(line)["request_id"][2:]) for line in lines}


def lost_to_a_sigkill(size: int, rate: int, tmp: Path) -> int:
    path = tmp / f"kill-{size}-{random.getrandbits(32)}" / "events.jsonl"
    child = subprocess.Popen(
        [sys.executable, str(KEEPING_PROCESS), str(path), str(rate), str(size)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    stdout = child.stdout
    reported: list[int] = []
    reader = threading.Thread(target=lambda: reported.extend(map(int, stdout)))
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while len(_written_ids(path)) < rate:  # its first second written
            if time.monotonic() > deadline:
                raise TimeoutError("the keeping process wrote nothing for a minute")
            time.sleep(0.05)
        time.sleep(random.uniform(0.0, 1.0))  # a random moment of the writer's cycle
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        reader.join(10)
    return len(set(range(reported[-1])) - _written_ids(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,512,1000")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--kills", type=int, default=8)
    parser.add_argument("--rate", type=int, default=2000)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        if args.rounds:
            cost_per_kept_request(sizes, args.rounds, Path(tmp))
        if args.kills:
            print(
                f"\nSIGKILLed while keeping {args.rate} events a second ({args.kills} kills each)"
            )
            print("| batch_size | events lost, each kill | median |\n|---|---|---:|")
            for size in sizes:
                lost = sorted(
                    lost_to_a_sigkill(size, args.rate, Path(tmp)) for _ in range(args.kills)
                )
                print(f"| {size} | {', '.join(map(str, lost))} | {statistics.median(lost):g} |")


if __name__ == "__main__":
    main()
