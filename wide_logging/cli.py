"""The ``wide-logging`` command (also ``python -m wide_logging``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__


def _demo(args: argparse.Namespace) -> int:
    try:
        from .demo import run_demo
    except ImportError as exc:  # starlette / tqdm are the demo extra
        print(
            f"the demo needs the 'demo' extra ({exc.name} is missing): "
            "pip install 'wide-logging[demo]'",
            file=sys.stderr,
        )
        return 2
    report = run_demo(
        requests=args.requests,
        out=args.out,
        normal_rate=args.normal_rate,
        concurrency=args.concurrency,
        seed=args.seed,
        progress=not args.no_progress,
    )
    return 0 if report["errors_kept"] == report["errors_sent"] else 1


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wide-logging", description="One sampled wide event per request, never lost."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo", help="run a shop app under mixed load in-process and report what was kept"
    )
    demo.add_argument("--requests", type=_positive_int, default=20_000, help="default: 20000")
    demo.add_argument("--out", default="wide-logs", help="event directory (default: wide-logs)")
    demo.add_argument("--normal-rate", type=_rate, default=0.02, help="default: 0.02")
    demo.add_argument("--concurrency", type=_positive_int, default=16, help="default: 16")
    demo.add_argument("--seed", type=int, default=7, help="load mix seed (default: 7)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
