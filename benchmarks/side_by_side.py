"""This tree's wide_logging beside an earlier commit's, in ONE interpreter, alternated.

``before_after.py`` runs each side in its own processes; on this VM two processes of the
same code differ by several percent (memory layout, the moment's neighbours), more than a
round of optimisation gains. Here the earlier commit's package is imported a second time
under another name (``baseline_wide_logging``: the package imports itself only relatively),
both wrap the same app in the same process, and rounds alternate (in reverse order every
other round), so what differs is the code.

Apps: ``starlette`` (compare.py's one-route app and scope), ``uvicorn`` / ``uvicorn-h11``
(the same app served by uvicorn's own protocol, httptools or h11, requests fed through
memory as in ``server_stack.py``), ``fastapi`` (the second
harness's app, scopes and 1,000 paths) or ``annotated`` (compare.py's route with an
endpoint that does what apps do: calls ``annotate()`` three times and logs two lines, one
with ``extra=``; each side's app calls its own package's ``annotate()`` and logs to a
logger of its own with that side's handler; the bare app calls the new package's, where
it does nothing, and logs to a logger without handlers). Prints the overheads over the
bare app, medians of the rounds, and new/baseline ratios.

    python benchmarks/side_by_side.py --baseline HEAD~1 [--app fastapi|annotated|uvicorn] [--rounds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import wide_logging  # noqa: E402  (this tree's)

BASELINE_NAME = "baseline_wide_logging"
VARIANTS = (("dropped", 0.0), ("default", 0.02), ("keep-all", 1.0))


def import_baseline(rev: str, into: Path) -> ModuleType:
    """The package as it was at ``rev``, imported as ``baseline_wide_logging``."""
    archive = subprocess.run(
        ["git", "archive", rev, "wide_logging"], cwd=ROOT, check=True, capture_output=True
    )
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    package = into / "wide_logging"
    spec = importlib.util.spec_from_file_location(
        BASELINE_NAME, package / "__init__.py", submodule_search_locations=[str(package)]
    )
    if spec is None or spec.loader is None:
        sys.exit(f"cannot import the package extracted from {rev}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[BASELINE_NAME] = module
    spec.loader.exec_module(module)
    return module


def app_and_runner(
    kind: str,
) -> tuple[Callable[[ModuleType, logging.Logger], Any], Callable[[Any, int], Awaitable[None]]]:
    """A factory of fresh apps (given the package whose ``annotate()`` the endpoint calls
    and the logger it logs to), and what runs ``n`` requests through one."""
    if kind == "fastapi":
        import second_harness

        scopes = second_harness.scopes()

        async def run_fastapi(app: Any, n: int) -> None:
            await second_harness._run(app, n, scopes)

        return lambda package, log: second_harness.make_app(), run_fastapi
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from conftest import DirectClient, item

    clients: dict[int, DirectClient] = {}

    async def run_starlette(app: Any, n: int) -> None:
        client = clients.setdefault(id(app), DirectClient(app))
        await client._many(n)

    def make_app(package: ModuleType, log: logging.Logger) -> Any:
        if kind != "annotated":
            return Starlette(routes=[Route("/items/{item_id}", item)])
        annotate = package.annotate

        async def annotated_item(request: Request) -> PlainTextResponse:
            item_id = request.path_params["item_id"]
            annotate(item={"id": item_id})
            log.info("loading item %s", item_id)
            annotate(user={"id": 42, "plan": "pro"}, cart_items=3)
            annotate(feature_flags={"new_checkout": True})
            log.info("priced", extra={"price_cents": 1299})
            return PlainTextResponse("ok")

        return Starlette(routes=[Route("/items/{item_id}", annotated_item)])

    if kind.startswith("uvicorn"):  # the same app, served by uvicorn's own protocol
        return make_app, _served(http="h11" if kind == "uvicorn-h11" else "httptools")
    return make_app, run_starlette


def _served(http: str) -> Callable[[Any, int], Awaitable[None]]:
    """Runs requests through uvicorn's protocol (``http``: its parser), fed through memory
    as in ``server_stack.py``: one connection per app, on the running loop."""
    from server_stack import ServerDriver

    servers: dict[int, ServerDriver] = {}

    async def run_served(app: Any, n: int) -> None:
        server = servers.get(id(app))
        if server is None:
            server = servers[id(app)] = ServerDriver(app, http, asyncio.get_running_loop())
        await server._requests(n)

    return run_served


def _logger(name: str, handler: logging.Handler | None) -> logging.Logger:
    """A logger of one variant's own, at INFO, with only ``handler`` (no other variant's
    handler sees its records)."""
    log = logging.getLogger(f"side_by_side.{name}")
    log.setLevel(logging.INFO)
    log.propagate = False
    if handler is not None:
        log.addHandler(handler)
    return log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="HEAD~1", help="a git revision (default HEAD~1)")
    parser.add_argument(
        "--app",
        choices=("starlette", "fastapi", "annotated", "uvicorn", "uvicorn-h11"),
        default="starlette",
    )
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    make_app, run = app_and_runner(args.app)
    with tempfile.TemporaryDirectory() as folder:
        baseline = import_baseline(args.baseline, Path(folder) / "tree")
        made: dict[str, tuple[Any, Callable[[], object]]] = {
            "bare": (make_app(wide_logging, _logger("bare", None)), lambda: None)
        }
        for side, package in (("baseline", baseline), ("new", wide_logging)):
            for name, rate in VARIANTS:
                handler = package.WideEventHandler(
                    sink=f"file:{folder}/{side}-{name}/events.jsonl",
                    fallback=f"file:{folder}/{side}-{name}/spool/events.jsonl",
                    sampling={"normal_rate": rate},
                    queue_size=10**6,
                    queue_bytes=2**30,
                )
                log = _logger(f"{side}.{name}", handler)
                app = package.WideEventMiddleware(make_app(package, log), handler=handler)
                made[f"{name} {side}"] = (app, handler.flush)
        loop = asyncio.new_event_loop()
        for app, settle in made.values():  # warm up: imports, caches, the writer threads
            loop.run_until_complete(run(app, 500))
            settle()
        timings: dict[str, list[float]] = {name: [] for name in made}
        names = list(made)
        for round_ in range(args.rounds):
            for name in names if round_ % 2 == 0 else names[::-1]:
                app, settle = made[name]
                started = time.perf_counter()
                loop.run_until_complete(run(app, args.requests))
                settle()
                timings[name].append((time.perf_counter() - started) / args.requests * 1e6)
        loop.close()
    median = {name: statistics.median(values) for name, values in timings.items()}
    bare = median["bare"]
    print(
        f"{args.app} app, {args.requests} requests x {args.rounds} alternated rounds, "
        f"one process; baseline {args.baseline}; bare {bare:.2f} µs"
    )
    print("| variant | baseline overhead µs | new overhead µs | new / baseline |")
    print("|---|---:|---:|---:|")
    for name, _ in VARIANTS:
        before, after = median[f"{name} baseline"] - bare, median[f"{name} new"] - bare
        print(f"| {name} | +{before:.2f} | +{after:.2f} | {after / before:.2f} |")


if __name__ == "__main__":
    main()
