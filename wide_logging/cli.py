"""The ``wide-logging`` command (also ``python -m wide_logging``)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from ._errors import WideLoggingError


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


def _consume(args: argparse.Namespace) -> int:
    import signal

    from .consumer import StreamConsumer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    rules = None
    if args.incidents:
        from .incidents import DEFAULT_RULES, load_rules

        rules = load_rules(args.rules) if args.rules else DEFAULT_RULES
    consumer = StreamConsumer(
        args.redis,
        args.sink,
        stream=args.stream,
        group=args.group,
        consumer=args.consumer,
        batch_size=args.batch_size,
        block_ms=args.block_ms,
        claim_idle_ms=args.claim_idle_ms,
        max_deliveries=args.max_deliveries,
        dead_letter_stream=args.dead_letter_stream,
        incident_rules=rules,
    )

    def stop(signum: int, _frame: object) -> None:
        logging.getLogger("wide_logging.cli").info(
            "signal %d: finishing the batch in flight, then stopping", signum
        )
        consumer.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logging.getLogger("wide_logging.cli").info(
        "consuming %s into %s", consumer.name, consumer.sink.name
    )
    consumer.run()
    counts = consumer.metrics.snapshot()
    print(
        f"written {counts.get('consumer.written', 0)}, "
        f"dead letters {counts.get('consumer.dead_letters', 0)}, "
        f"claimed {counts.get('consumer.claimed', 0)}",
        file=sys.stderr,
    )
    return 0


def _replay(args: argparse.Namespace) -> int:
    from .replay import replay_files

    result = replay_files(
        [Path(p) for p in args.paths],
        args.sink,
        batch_size=args.batch_size,
        delete=args.delete,
        progress=not args.no_progress,
    )
    print(
        f"replayed {result.events} events from {result.files} file(s) into {result.sink}; "
        f"{result.corrupt} unreadable line(s) skipped",
        file=sys.stderr,
    )
    return 0 if result.failed is None else 1


def _stats(args: argparse.Namespace) -> int:
    from .stats import format_table, from_metrics_endpoint, from_stream

    if bool(args.url) == bool(args.redis):
        print("give one of --url (an app's /metrics) or --redis (a stream)", file=sys.stderr)
        return 2
    if args.url:
        rows = from_metrics_endpoint(args.url)
        print(format_table(rows, ("metric", "labels", "value")))
    else:
        rows = from_stream(args.redis, args.stream, args.group)
        print(format_table(rows, ("what", "name", "state")))
    return 0


def _incidents(args: argparse.Namespace) -> int:
    import time

    from .incident_sources import incidents_from, parse_since
    from .incidents import DEFAULT_RULES, format_incidents, load_rules

    rules = load_rules(args.rules) if args.rules else DEFAULT_RULES
    found = incidents_from(args.source, rules, parse_since(args.since, time.time()))
    print(format_incidents(found, args.format))
    return 0


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

    consume = commands.add_parser(
        "consume", help="move events from a Redis Stream into a sink (one consumer of a group)"
    )
    consume.add_argument("--redis", required=True, help="redis:// URL of the stream")
    consume.add_argument("--sink", required=True, help="where to write: mongodb://..., file:...")
    consume.add_argument("--stream", default="wide_logging:events")
    consume.add_argument("--group", default="wide_logging")
    consume.add_argument("--consumer", default=None, help="default: <host>-<pid>")
    consume.add_argument("--batch-size", type=_positive_int, default=100)
    consume.add_argument("--block-ms", type=_positive_int, default=1000)
    consume.add_argument(
        "--claim-idle-ms",
        type=_positive_int,
        default=60_000,
        help="take over entries another consumer left pending this long (default 60000)",
    )
    consume.add_argument("--max-deliveries", type=_positive_int, default=5)
    consume.add_argument("--dead-letter-stream", default=None, help="default: <stream>:dead")
    consume.add_argument(
        "--incidents",
        action="store_true",
        help="aggregate incidents live (kind: incident events to the sink and a logger)",
    )
    consume.add_argument("--rules", default=None, help="incident rules file (default rules)")
    consume.set_defaults(func=_consume)

    replay = commands.add_parser("replay", help="push spooled or archived JSONL files into a sink")
    replay.add_argument("paths", nargs="+", help="JSONL files (spool segments, archives)")
    replay.add_argument("--sink", required=True, help="redis://..., mongodb://..., file:...")
    replay.add_argument("--batch-size", type=_positive_int, default=500)
    replay.add_argument("--delete", action="store_true", help="delete each file once replayed")
    replay.add_argument("--no-progress", action="store_true", help="no progress bar")
    replay.set_defaults(func=_replay)

    stats = commands.add_parser(
        "stats", help="show a running app's metrics (--url) or a stream's state (--redis)"
    )
    stats.add_argument("--url", help="an app's /metrics endpoint, e.g. http://app:8000/metrics")
    stats.add_argument("--redis", help="redis:// URL of the stream")
    stats.add_argument("--stream", default="wide_logging:events")
    stats.add_argument("--group", default=None, help="only this consumer group")
    stats.set_defaults(func=_stats)

    incidents = commands.add_parser(
        "incidents", help="summarise incidents (error bursts, slow routes) from stored events"
    )
    incidents.add_argument(
        "--source", required=True, help="file:PATH, redis://...?stream=NAME or mongodb://..."
    )
    incidents.add_argument("--since", default=None, help="e.g. 1h, 30m, 2d or an ISO time")
    incidents.add_argument("--rules", default=None, help="rules file (.json, .toml, .yaml)")
    incidents.add_argument("--format", choices=("text", "json", "markdown"), default="text")
    incidents.set_defaults(func=_incidents)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
    except WideLoggingError as exc:  # a bad option or file: say so, no traceback
        parser.exit(2, f"wide-logging {args.command}: error: {exc}\n")
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
