"""``explain()``: which sampling rule decides for an event, and why, in words."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .event import WideEvent
from .handler import active_handler
from .sampling import TailSampler
from .typing import Sampler


def explain(event: WideEvent | Mapping[str, Any], sampler: Sampler | None = None) -> str:
    """Which sampling rule decides for ``event`` (a live event or a stored dict), and why.

    Uses the active handler's policy unless ``sampler`` is given. A live event is decided
    as ``submit()`` will decide it (``WideEvent.decide``), without stopping its clock.
    """
    if sampler is None:
        handler = active_handler()
        sampler = handler.sampler if handler is not None else TailSampler()
    if not isinstance(event, WideEvent):
        return sampler.explain(event)
    decision = event.decide(sampler, final=False)
    if not isinstance(sampler, TailSampler):  # a sampler of the app's own: its verdict
        return f"{'kept' if decision.keep else 'dropped'} by rule {decision.rule!r}"
    # what the reasons quote (the decision itself is already made)
    quoted = {
        "request_id": event.request_id,
        "trace_id": event.trace_id,
        "duration_ms": round(event.duration_ms, 3),
        "error": event.error or event.get("error"),
    }
    return sampler.why(quoted, decision)
