"""How much of a middleware's cost is the wrapped app running slower beside it.

A timer around the app *inside* each layer (and one around the whole) splits a layer's
overhead into its own code and the app's extra time. The app is the second harness's
FastAPI app with its scopes; layers are alternated in rounds, medians printed. Besides our
dropped and keep-all paths: a pass-through layer, the floor, structlog's synchronous
recipe (the second harness's, three fields a line), and single steps of ours alone in
front of the app (opening an event; a loop of 40 additions, for comparison). The keeping
handler is flushed after each round, so its writer's backlog never runs into another
layer's round.

    python benchmarks/induced_cost.py [--rounds 12] [--requests 2000]

``--run LAYER N`` serves N requests through one layer and exits: for valgrind, e.g.
``valgrind --tool=cachegrind --cache-sim=yes --branch-sim=yes python
benchmarks/induced_cost.py --run dropped 700`` (and 200; the difference is N - 200 requests).
"""

from __future__ import annotations

import argparse
import asyncio
import queue
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import second_harness

from wide_logging import WideEventHandler, WideEventMiddleware
from wide_logging.middleware.asgi import _open_event

_ns = time.perf_counter_ns


class Timer:
    """A pass-through layer that adds up the time spent below it."""

    def __init__(self, app: Any) -> None:
        self.app, self.total = app, 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        started = _ns()
        await self.app(scope, receive, send)
        self.total += _ns() - started


class Before:
    """Runs ``step(scope)`` in front of the app, and keeps what it made until the app ends."""

    def __init__(self, app: Any, step: Callable[[Any], Any]) -> None:
        self.app, self.step = app, step

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        made = self.step(scope)
        await self.app(scope, receive, send)
        del made


def layers(
    handler: WideEventHandler, keeping: WideEventHandler, folder: Path
) -> dict[str, Callable[[Any], Any]]:
    """name -> a function wrapping the (timed) app in that layer (``handler`` drops every
    event, ``keeping`` keeps every one)."""

    def forty_additions(scope: Any) -> int:
        total = 0
        for n in range(40):
            total += n
        return total

    return {
        "bare": lambda app: app,
        "pass-through": Timer,
        "floor (dict into a queue)": lambda app: second_harness.Floor(app, queue.SimpleQueue()),
        "a loop of 40 additions": lambda app: Before(app, forty_additions),
        "opening an event only": lambda app: Before(
            app, lambda scope: _open_event(handler, scope, b"x-request-id")
        ),
        "wide_logging, dropped": lambda app: WideEventMiddleware(app, handler=handler),
        "wide_logging, keep-all": lambda app: WideEventMiddleware(app, handler=keeping),
        "structlog's recipe (three fields a line)": lambda app: second_harness.StructlogRecipe(
            app, folder / "structlog.jsonl"
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--run", nargs=2, metavar=("LAYER", "N"))
    args = parser.parse_args()
    folder = tempfile.mkdtemp()
    handler = WideEventHandler(sink=f"file:{folder}/events.jsonl", sampling={"normal_rate": 0.0})
    keeping = WideEventHandler(
        sink=f"file:{folder}/kept/events.jsonl",
        fallback=f"file:{folder}/kept/spool/events.jsonl",
        sampling={"normal_rate": 1.0},
        queue_size=10**6,
        queue_bytes=2**30,
    )
    scopes = second_harness.scopes()
    loop = asyncio.new_event_loop()
    made = layers(handler, keeping, Path(folder))
    if args.run:
        name = {
            "bare": "bare",
            "dropped": "wide_logging, dropped",
            "keep-all": "wide_logging, keep-all",
        }.get(args.run[0], args.run[0])
        app = made[name](second_harness.make_app())
        loop.run_until_complete(second_harness._run(app, 200, scopes))
        loop.run_until_complete(second_harness._run(app, int(args.run[1]), scopes))
        return
    timed = {}
    for name, wrap in made.items():
        inner = Timer(second_harness.make_app())
        timed[name] = (Timer(wrap(inner)), inner)
    totals: dict[str, list[float]] = {name: [] for name in timed}
    insides: dict[str, list[float]] = {name: [] for name in timed}
    for round_ in range(args.rounds + 2):  # two rounds of warming up
        for name, (outer, inner) in timed.items():
            outer.total = inner.total = 0
            loop.run_until_complete(second_harness._run(outer, args.requests, scopes))
            keeping.flush()  # (its writer's backlog must not run into the next layer's round)
            if round_ >= 2:
                totals[name].append(outer.total / args.requests / 1000)
                insides[name].append(inner.total / args.requests / 1000)
    bare, bare_inside = statistics.median(totals["bare"]), statistics.median(insides["bare"])
    print(f"FastAPI app, {args.requests} requests x {args.rounds} rounds; bare {bare:.2f} µs")
    print("| layer | overhead | of which the app took longer | the layer's own code |")
    print("|---|---:|---:|---:|")
    for name in timed:
        total, inside = statistics.median(totals[name]), statistics.median(insides[name])
        print(
            f"| {name} | +{total - bare:.2f} | +{inside - bare_inside:.2f} | {total - inside:.2f} |"
        )
    print("(the layer's own code includes the inner timer's ~0.4 µs; bare shows it alone)")


if __name__ == "__main__":
    main()
