"""Rule-based incident aggregation: group matching events, open an incident on a burst.

Theory of operation
-------------------
A :class:`Rule` says which events count (``match``: conditions on dotted paths, all must
hold), how they group (``group_by``: dotted paths, plus ``fingerprint`` for the normalised
error message), and when a group is an incident: ``threshold`` matching events within
``window`` seconds open it; ``quiet`` seconds without one resolve it.

- ``rules``: the rule language (conditions, rules, the shipped ``DEFAULT_RULES``, files);
- ``summary``: :func:`summarize` turns stored events into :class:`Incident` summaries;
- ``live``: :class:`IncidentAggregator` applies the rules to events as they pass;
- ``mongo``: the same rules as MongoDB queries and aggregation pipelines;
- ``sources``: where ``wide-logging incidents`` reads (file, Redis stream, MongoDB).
"""

from __future__ import annotations

from .live import IncidentAggregator
from .rules import (
    DEFAULT_RULES,
    Condition,
    Rule,
    fingerprint,
    load_rules,
    lookup,
    normalize_message,
)
from .summary import Incident, format_incidents, summarize

__all__ = [
    "DEFAULT_RULES",
    "Condition",
    "Incident",
    "IncidentAggregator",
    "Rule",
    "fingerprint",
    "format_incidents",
    "load_rules",
    "lookup",
    "normalize_message",
    "summarize",
]
