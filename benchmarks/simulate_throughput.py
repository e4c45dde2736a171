"""``wide-logging simulate`` over nginx access logs: lines per second, and memory against
the file's size.

    python benchmarks/simulate_throughput.py [--lines 1000000] [--runs 3]

Writes two nginx logs (``combined`` + ``$request_time $request_id``, 1% 5xx, ids in the
paths) of N and 2N lines to a temporary directory, then runs the command as a user does —
a fresh ``python -m wide_logging simulate`` per run, alternating the sizes, keyed (the
deployment's key: the slower hash) with and without ``--budget`` — and prints each run's
time, lines/s and peak memory (the child's own ``ru_maxrss``). Memory is flat when the 2N
file's peak is the N file's.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from cli_run import run_cli

KEY = "benchmark-sampling-key-0123456789"


def generate(path: Path, count: int) -> None:
    rng = random.Random(3)
    paths = ("/products/%d", "/search", "/orders/%d", "/checkout", "/api/v1/users/%d/cart")
    agent = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0"
    with open(path, "w") as out:
        for n in range(count):
            route = paths[n % len(paths)]
            target = route % rng.randrange(100_000) if "%d" in route else route
            status = 500 if n % 97 == 0 else 404 if n % 53 == 0 else 200
            seconds = n // 100  # 100 requests a second
            stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(1_796_025_600 + seconds))
            out.write(
                f'10.0.{n % 200}.{n % 250} - - [{stamp}] "GET {target}?q=1 HTTP/1.1" {status} '
                f'512 "https://shop.example.com/" "{agent}" {rng.random() * 0.3:.3f} '
                f"{rng.getrandbits(128):032x}\n"
            )


def run(path: Path, *extra: str) -> tuple[float, int]:
    return run_cli("simulate", str(path), "--no-progress", "--format", "json", "--key", KEY, *extra)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        small, large = Path(folder, "n.log"), Path(folder, "2n.log")
        generate(small, args.lines)
        generate(large, 2 * args.lines)
        print(f"{'input':<10} {'options':<26} {'time':>8} {'lines/s':>10} {'peak MB':>8}")
        for _ in range(args.runs):
            for path, lines in ((small, args.lines), (large, 2 * args.lines)):
                for extra in ((), ("--budget", "1GB/day")):
                    elapsed, maxrss = run(path, *extra)
                    options = " ".join(extra) or "--normal-rate default"
                    print(
                        f"{lines:>10,} {options:<26} {elapsed:>7.2f}s {lines / elapsed:>10,.0f}"
                        f" {maxrss / 1024:>8.1f}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
