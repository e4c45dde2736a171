"""``wide-logging simulate``'s options, and the policy they (or the app's own logging
configuration) describe."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import orjson

from .._errors import ConfigurationError
from .._handler_options import sampler_from
from .._progress import progress_bar
from .access_logs import FIELD_DEFAULTS, parse_fields
from .request_logs import FORMATS, Requests
from .simulate import EventSizes, parse_budget, simulate, sizes_from
from .simulate_report import format_markdown, format_text

#: How a logging configuration names our handler (``class`` or dictConfig's ``()``).
HANDLER_CLASSES = ("wide_logging.WideEventHandler", "wide_logging.handler.WideEventHandler")


def add_arguments(simulate: argparse.ArgumentParser, rate: Callable[[str], float]) -> None:
    simulate.add_argument(
        "paths",
        nargs="+",
        help="our JSONL events or access logs (nginx, Apache, JSON lines; .gz too), "
        "folders of JSONL, globs, or - for stdin",
    )
    simulate.add_argument(
        "--format-in",
        choices=("auto", *FORMATS),
        default="auto",
        help="what the files hold (default: told from each file's first line)",
    )
    simulate.add_argument(
        "--field",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help=f"for JSON access logs: where a field is ({', '.join(FIELD_DEFAULTS)}), "
        "e.g. status=response.status; repeat for more",
    )
    simulate.add_argument(
        "--config",
        default=None,
        help="the app's logging configuration (dictConfig as .json or .yaml): the policy "
        "is its WideEventHandler's sampling; the options below override it (default: none)",
    )
    simulate.add_argument(
        "--handler",
        default=None,
        help="with --config: which handler, when it has several (default: the only one)",
    )
    simulate.add_argument(
        "--normal-rate",
        type=rate,
        default=None,
        help="share of normal requests kept (default: WIDE_LOGGING_NORMAL_RATE, else 0.02)",
    )
    simulate.add_argument(
        "--slow-ms",
        type=float,
        default=None,
        help="requests slower than this are kept (default: WIDE_LOGGING_SLOW_MS, else 1000)",
    )
    simulate.add_argument(
        "--critical-route",
        action="append",
        default=None,
        help="route glob always kept, repeat for more (default: none)",
    )
    simulate.add_argument(
        "--key",
        default=None,
        help="the deployment's sampling key, to decide as it does "
        "(default: WIDE_LOGGING_SAMPLING_KEY, else a key of this run's own)",
    )
    simulate.add_argument(
        "--budget",
        default=None,
        help="bytes per day to fit (5GB/day, 500MiB/day): find the highest normal rate "
        "(default: none, the rate given)",
    )
    simulate.add_argument(
        "--requests-per-day",
        type=float,
        default=None,
        help="the app's requests per day, to scale to a day by traffic rather than by the "
        "input's time span (default: the time span)",
    )
    simulate.add_argument(
        "--event-size-from",
        action="append",
        default=None,
        metavar="EVENTS",
        help="our JSONL events whose mean size estimates an access log's events "
        "(default: 1,000 bytes, 3,000 per error)",
    )
    simulate.add_argument(
        "--kept-out",
        default=None,
        help="write the lines of the requests kept to this file (default: none)",
    )
    simulate.add_argument("--no-progress", action="store_true", help="no progress bar")
    simulate.add_argument(
        "--format", choices=("text", "json", "markdown"), default="text", help="output"
    )


def run(args: argparse.Namespace) -> int:
    if args.budget is not None and args.kept_out is not None:
        msg = "--kept-out writes what one rate keeps: give --normal-rate, not --budget"
        raise ConfigurationError(msg)
    budget = parse_budget(args.budget) if args.budget is not None else None
    if args.requests_per_day is not None and not 1e-6 <= args.requests_per_day <= 1e15:
        msg = f"--requests-per-day must be between 1e-6 and 1e15, got {args.requests_per_day:g}"
        raise ConfigurationError(msg)
    options = dict(_sampling_of_config(args.config, args.handler)) if args.config else {}
    for name, value in (
        ("normal_rate", args.normal_rate),
        ("slow_ms", args.slow_ms),
        ("critical_routes", args.critical_route),
        ("key", args.key),
    ):
        if value is not None:
            options[name] = value
    sampler = sampler_from(options)
    fields = parse_fields(args.field)
    sizes = (
        sizes_from(Requests(args.event_size_from, "events"))
        if args.event_size_from
        else EventSizes()
    )
    requests = Requests(args.paths, args.format_in, fields)
    _refuse_to_overwrite_input(args.kept_out, requests)
    bar = progress_bar(requests.total_bytes, "reading", enabled=not args.no_progress)
    try:
        with bar as update, _kept(args) as out:
            requests.progress = update
            result = simulate(
                requests, sampler, sizes=sizes, kept_out=out, for_budget=budget is not None
            )
    except OSError as exc:  # a disk full under --kept-out, an input that cannot be read
        where = f" {exc.filename}" if exc.filename else (" --kept-out" if args.kept_out else "")
        msg = f"could not read or write{where}: {exc.strerror or exc}"
        raise ConfigurationError(msg) from None
    result.requests_per_day = args.requests_per_day
    if budget is not None:
        result = result.at_budget(budget)
    if args.format == "json":
        print(orjson.dumps(result.as_dict(), option=orjson.OPT_INDENT_2).decode())
    elif args.format == "markdown":
        print(format_markdown(result))
    else:
        print(format_text(result))
    return 0


def _refuse_to_overwrite_input(kept_out: str | None, requests: Requests) -> None:
    """``--kept-out`` naming one of the inputs would empty it before it is read."""
    if kept_out is None or not Path(kept_out).exists():
        return
    target = Path(kept_out).resolve()
    for source in requests.sources:
        if source is not None and (source.resolve() == target or os.path.samefile(source, target)):
            msg = (
                f"--kept-out {kept_out} is one of the inputs: it would be emptied before it is read"
            )
            raise ConfigurationError(msg)


def _sampling_of_config(path: str, name: str | None) -> Mapping[str, Any]:
    """The ``sampling`` options of the WideEventHandler in a dictConfig file (or in its
    ``LOGGING`` entry, as Django settings name it)."""
    config = _load(Path(path))
    if isinstance(config.get("LOGGING"), Mapping):
        config = config["LOGGING"]
    handlers = config.get("handlers")
    ours = {
        handler_name: entry
        for handler_name, entry in (handlers.items() if isinstance(handlers, Mapping) else ())
        if isinstance(entry, Mapping)
        and (entry.get("class") in HANDLER_CLASSES or entry.get("()") in HANDLER_CLASSES)
    }
    if name is not None:
        if name not in ours:
            msg = f"--handler {name!r}: no WideEventHandler of that name in {path}"
            raise ConfigurationError(msg)
        ours = {name: ours[name]}
    if len(ours) != 1:
        found = f"several ({', '.join(sorted(ours))}): name one with --handler" if ours else "none"
        msg = f"--config {path}: a WideEventHandler in 'handlers' is needed, found {found}"
        raise ConfigurationError(msg)
    sampling = next(iter(ours.values())).get("sampling") or {}
    if not isinstance(sampling, Mapping):
        msg = f"--config {path}: the handler's sampling must be a dict of options"
        raise ConfigurationError(msg)
    return sampling


def _load(path: Path) -> Mapping[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        msg = f"--config: cannot read {path} ({exc.strerror or exc})"
        raise ConfigurationError(msg) from None
    except UnicodeDecodeError:
        msg = f"--config: {path} is not UTF-8 text"
        raise ConfigurationError(msg) from None
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            msg = "--config: a YAML file needs PyYAML: pip install 'wide-logging[yaml]'"
            raise ConfigurationError(msg) from None
        try:
            config = yaml.safe_load(text)
        except (yaml.YAMLError, RecursionError) as exc:
            msg = f"--config: {path} is not valid YAML ({type(exc).__name__})"
            raise ConfigurationError(msg) from None
    else:
        try:
            config = json.loads(text)
        except (ValueError, RecursionError) as exc:
            msg = f"--config: {path} is not valid JSON ({type(exc).__name__}: {exc})"[:300]
            raise ConfigurationError(msg) from None
    if not isinstance(config, Mapping):
        msg = f"--config: {path} must hold a dictConfig dict"
        raise ConfigurationError(msg)
    return config


@contextlib.contextmanager
def _kept(args: argparse.Namespace) -> Iterator[IO[bytes] | None]:
    if args.kept_out is None:
        yield None
        return
    try:
        out = open(args.kept_out, "wb")  # noqa: SIM115 (closed below)
    except OSError as exc:
        msg = f"--kept-out: cannot write {args.kept_out} ({exc.strerror or exc})"
        raise ConfigurationError(msg) from None
    with out:
        yield out
