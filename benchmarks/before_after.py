"""Before / after: the same benchmarks against this tree's package and an earlier commit's,
alternated in one run so the VM's drift hits both alike.

Each round runs, once per package (order alternating between rounds), the pytest-benchmark
hot paths (``test_bench_hot_paths.py``, ``test_bench_middleware.py``) and ``compare.py``, in
fresh interpreters whose ``PYTHONPATH`` puts that package first. The benchmark code is this
tree's for both. Prints, per benchmark, the median of each side and the ratio after/before
for every round, then the median ratio.

    python benchmarks/before_after.py --baseline HEAD~3 [--rounds 5] [--compare-rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BENCH_FILES = ["benchmarks/test_bench_hot_paths.py", "benchmarks/test_bench_middleware.py"]


def extract(ref: str, into: Path) -> Path:
    archive = subprocess.run(["git", "archive", ref], cwd=ROOT, check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def run_side(tree: Path, compare_rounds: int, requests: int) -> dict[str, float]:
    """Medians in µs of every benchmark, with the package of ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    imported = subprocess.run(
        [sys.executable, "-P", "-c", "import wide_logging; print(wide_logging.__file__)"],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    if not imported.startswith(str(tree)):
        sys.exit(f"the package imported is {imported}, not the one in {tree}")
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "bench.json"
        # -P: the current directory (this tree) must not come before PYTHONPATH's package
        subprocess.run(
            [sys.executable, "-P", "-m", "pytest", *BENCH_FILES, "-q", "-p", "no:cacheprovider",
             "--benchmark-only", f"--benchmark-json={report}"],
            cwd=ROOT, env=env, check=True, capture_output=True,
        )  # fmt: skip
        for bench in json.loads(report.read_text())["benchmarks"]:
            results[bench["name"]] = bench["stats"]["median"] * 1e6
    out = subprocess.run(
        [sys.executable, "-P", "benchmarks/compare.py", "--rounds", str(compare_rounds),
         "--requests", str(requests), "--json", "--ours-only"],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    for row in json.loads(out.stdout)["rows"]:
        results[f"compare.py: {row['variant']} (overhead)"] = row["overhead_us"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True, help="git ref of the 'before' package")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--compare-rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        before_tree = extract(args.baseline, Path(scratch))
        sides = {"before": before_tree, "after": ROOT}
        runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
        for round_number in range(args.rounds):
            order = ["before", "after"] if round_number % 2 == 0 else ["after", "before"]
            for side in order:
                runs[side].append(run_side(sides[side], args.compare_rounds, args.requests))
            print(f"round {round_number + 1}/{args.rounds} done", file=sys.stderr)
    names = sorted(set(runs["before"][0]) & set(runs["after"][0]))
    print(f"{'benchmark':58} {'before µs':>10} {'after µs':>10} {'ratio':>6}  per round")
    for name in names:
        before = [run[name] for run in runs["before"]]
        after = [run[name] for run in runs["after"]]
        ratios = [a / b if b else float("nan") for a, b in zip(after, before, strict=True)]
        print(
            f"{name:58} {statistics.median(before):10.3f} {statistics.median(after):10.3f} "
            f"{statistics.median(ratios):6.3f}  " + " ".join(f"{r:.3f}" for r in ratios)
        )


if __name__ == "__main__":
    main()
