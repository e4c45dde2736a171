"""The ``wide-logging`` command (also ``python -m wide_logging``)."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import urllib.error
from collections.abc import Sequence
from pathlib import Path

import orjson

from .. import __version__
from .._errors import WideLoggingError
from .._secrets import mask_credentials
from .._urls import mask_url


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

    from ..consumer import StreamConsumer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    rules = None
    if args.incidents:
        from ..incidents import DEFAULT_RULES, load_rules

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
    from ..replay import replay_files

    result = replay_files(
        [Path(p) for p in args.paths],
        args.sink,
        batch_size=args.batch_size,
        delete=args.delete,
        progress=not args.no_progress,
    )
    for path, position in result.resumed.items():
        print(
            f"{path}: resumed at byte {position}, where an interrupted replay stopped",
            file=sys.stderr,
        )
    print(
        f"replayed {result.events} events from {result.files} file(s) into {result.sink}; "
        f"{result.corrupt} unreadable line(s) skipped",
        file=sys.stderr,
    )
    if result.failed is not None:
        print(
            f"stopped: could not write to the sink ({result.failed}); the file stays",
            file=sys.stderr,
        )
        return 1
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from .simulate_cli import run

    return run(args)


def _report(args: argparse.Namespace) -> int:
    import time

    from ..incidents.sources import parse_since
    from ..report import build_report
    from ..report.html import write_html
    from ..report.text import format_markdown

    report = build_report(args.source, parse_since(args.since, time.time()))
    if args.format == "html":
        out = args.out or "briefing.html"
        write_html(report, out)
    else:
        if args.format == "json":
            text = orjson.dumps(report, option=orjson.OPT_INDENT_2).decode()
        else:
            text = format_markdown(report)
        if args.out is None:
            print(text)
            return 0
        out = args.out
        with open(out, "w", encoding="utf-8") as file:
            file.write(text + "\n")
    print(f"report written to {out}", file=sys.stderr)
    return 0


def _stats(args: argparse.Namespace) -> int:
    from .stats import format_table, from_events, from_metrics_endpoint, from_stream

    if sum(map(bool, (args.url, args.redis, args.events))) != 1:
        print(
            "give one of --events (files or a folder of events, e.g. the demo's wide-logs), "
            "--url (an app's /metrics) or --redis (a stream)",
            file=sys.stderr,
        )
        return 2
    if args.events:
        print(format_table(from_events(args.events), ("what", "name", "value")))
    elif args.url:
        rows = from_metrics_endpoint(args.url)
        print(format_table(rows, ("metric", "labels", "value")))
    else:
        rows = from_stream(args.redis, args.stream, args.group)
        print(format_table(rows, ("what", "name", "state")))
    return 0


def _incidents(args: argparse.Namespace) -> int:
    import time

    from ..incidents import DEFAULT_RULES, format_incidents, load_rules
    from ..incidents.sources import incidents_from, parse_since

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


class _HelpFormatter(argparse.HelpFormatter):
    """Each option's help ends with its default (unless it names it already), or says that
    the option is required."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if not action.option_strings or "default" in text:
            return text
        if action.required:
            return f"{text} (required)"
        if action.default in (None, False, argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    formatter = _HelpFormatter
    parser = argparse.ArgumentParser(
        prog="wide-logging",
        description="One sampled wide event per request, never lost.",
        formatter_class=formatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name, help=summary, description=summary, formatter_class=formatter
        )

    demo = command("demo", "run a shop app under mixed load in-process and report what was kept")
    demo.add_argument("--requests", type=_positive_int, default=20_000, help="requests to send")
    demo.add_argument(
        "--out",
        default="wide-logs",
        help="folder for the events (a previous run's move to <out>/previous)",
    )
    demo.add_argument(
        "--normal-rate", type=_rate, default=0.02, help="share of normal requests kept"
    )
    demo.add_argument(
        "--concurrency", type=_positive_int, default=16, help="requests in flight at once"
    )
    demo.add_argument("--seed", type=int, default=7, help="seed of the load mix")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    demo.set_defaults(func=_demo)

    consume = command(
        "consume", "move events from a Redis Stream into a sink (one consumer of a group)"
    )
    consume.add_argument(
        "--redis",
        required=True,
        help="the sink's URL: redis://... or redis+cluster://host:port,...?shards=N",
    )
    consume.add_argument("--sink", required=True, help="where to write: mongodb://..., file:...")
    consume.add_argument(
        "--stream",
        default=None,
        help="the stream to read (default: the URL's, else wide_logging:events)",
    )
    consume.add_argument(
        "--group", default="wide_logging", help="consumer group shared by all consumers"
    )
    consume.add_argument(
        "--consumer", default=None, help="this consumer's name (default: <host>-<pid>)"
    )
    consume.add_argument(
        "--batch-size", type=_positive_int, default=100, help="entries read and written at once"
    )
    consume.add_argument(
        "--block-ms", type=_positive_int, default=1000, help="longest wait for new entries, ms"
    )
    consume.add_argument(
        "--claim-idle-ms",
        type=_positive_int,
        default=60_000,
        help="take over entries another consumer left pending this long (within ~1 s more)",
    )
    consume.add_argument(
        "--max-deliveries",
        type=_positive_int,
        default=5,
        help="an entry delivered this often (consumers crashed on it) goes to the dead letters",
    )
    consume.add_argument(
        "--dead-letter-stream",
        default=None,
        help="where entries that cannot be written go (default: <stream>:dead, per shard)",
    )
    consume.add_argument(
        "--incidents",
        action="store_true",
        help="aggregate incidents live (kind: incident events to the sink and a logger)",
    )
    consume.add_argument(
        "--rules", default=None, help="incident rules file (default: the built-in rules)"
    )
    consume.set_defaults(func=_consume)

    replay = command("replay", "push spooled or archived JSONL files into a sink")
    replay.add_argument("paths", nargs="+", help="JSONL files (spool segments, archives)")
    replay.add_argument("--sink", required=True, help="redis://..., mongodb://..., file:...")
    replay.add_argument("--batch-size", type=_positive_int, default=500, help="events per write")
    replay.add_argument("--delete", action="store_true", help="delete each file once replayed")
    replay.add_argument("--no-progress", action="store_true", help="no progress bar")
    replay.set_defaults(func=_replay)

    simulate = command(
        "simulate",
        "what a sampling policy would keep of requests already logged "
        "(our JSONL, nginx, Apache or JSON access logs)",
    )
    from .simulate_cli import add_arguments

    add_arguments(simulate, _rate)
    simulate.set_defaults(func=_simulate)

    stats = command(
        "stats",
        "summarise stored events (--events), a running app's metrics (--url) or a stream (--redis)",
    )
    stats.add_argument(
        "--events",
        help="one of the three sources: a JSONL file, a folder of them (the demo's wide-logs) "
        "or a glob",
    )
    stats.add_argument(
        "--url",
        help="one of the three sources: an app's /metrics endpoint, e.g. http://app:8000/metrics",
    )
    stats.add_argument(
        "--redis", help="one of the three sources: the stream's redis:// or redis+cluster:// URL"
    )
    stats.add_argument(
        "--stream", default=None, help="with --redis: the stream (default: the URL's, else ours)"
    )
    stats.add_argument(
        "--group", default=None, help="with --redis: only this consumer group (default: all)"
    )
    stats.set_defaults(func=_stats)

    incidents = command(
        "incidents", "summarise incidents (error bursts, slow routes) from stored events"
    )
    _period_of_events(
        incidents,
        "file:PATH, redis://...?stream=NAME, redis+cluster://... or mongodb://...",
        ("text", "json", "markdown"),
    )
    incidents.add_argument(
        "--rules", default=None, help="rules file (.json, .toml, .yaml; default: built-in)"
    )
    incidents.set_defaults(func=_incidents)

    report = command(
        "report", "a briefing of a period: requests, errors, latency, routes, incidents, health"
    )
    _period_of_events(
        report,
        "file:PATH (a JSONL file, a folder, a glob; .gz too), redis://...?stream=NAME, "
        "redis+cluster://... or mongodb://...",
        ("html", "markdown", "json"),
    )
    report.add_argument(
        "--out",
        default=None,
        help="the file to write (default: briefing.html for html, standard output otherwise)",
    )
    report.set_defaults(func=_report)
    return parser


def _period_of_events(
    command: argparse.ArgumentParser, sources: str, formats: tuple[str, ...]
) -> None:
    """The options of a command that reads a period of stored events (incidents, report)."""
    command.add_argument("--source", required=True, help=sources)
    command.add_argument(
        "--since", default=None, help="e.g. 24h, 30m, 2d or an ISO time (default: everything)"
    )
    command.add_argument("--format", choices=formats, default=formats[0], help="output format")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
    except BrokenPipeError:  # `wide-logging ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except WideLoggingError as exc:  # a bad option or file: say so, no traceback
        parser.exit(2, f"wide-logging {args.command}: error: {exc}\n")
    except Exception as exc:
        if not _unreachable(exc):
            raise
        # A server that is down or a URL that does not answer: one line, no traceback.
        target = next(
            (value for name in _TARGETS if (value := getattr(args, name, None))), "the server"
        )
        reason = " ".join(mask_credentials(f"{type(exc).__name__}: {exc}").split())[:300]
        parser.exit(
            2,
            f"wide-logging {args.command}: error: could not reach {mask_url(target)} ({reason})\n",
        )
    return result


#: The options that name a server, in the order a failure is most likely theirs.
_TARGETS = ("source", "redis", "url", "sink")


def _unreachable(exc: BaseException) -> bool:
    """Connection trouble of any client we use (OS, urllib, redis-py, pymongo)."""
    if isinstance(exc, (ConnectionError, TimeoutError, socket.gaierror, urllib.error.URLError)):
        return True  # (not any OSError: a full disk or a bad file is no server's fault)
    kinds = {f"{k.__module__}.{k.__name__}" for k in type(exc).__mro__}
    return bool(
        kinds
        & {
            "redis.exceptions.ConnectionError",
            "redis.exceptions.TimeoutError",
            "redis.exceptions.RedisClusterException",  # no node of the cluster answers
            "pymongo.errors.ConnectionFailure",
            "pymongo.errors.ServerSelectionTimeoutError",
            "pymongo.errors.ConfigurationError",  # mongodb+srv:// whose name does not resolve
            "pymongo.errors.OperationFailure",  # refused: a wrong password, no rights
        }
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
