"""The fields of an event that belong to the library, by dotted path.

The library writes these and the app cannot: ``annotate()`` moves an app's value for any
of them under :data:`REFUSED` (and the handler counts it), because a forged ``event_id``,
status or timestamp would corrupt deduplication, sampling and expiry downstream. Fields
the library writes only sometimes (``error``, ``http.route``, ``client.address``,
``user_agent.original``, ``timings``) may be added by the app when the library has none;
when both exist, the library's value is kept and the app's is refused at ``finalize()``.
docs/events.md ("Fields the library owns") lists the same paths.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Where refused annotations go, mirroring their paths: ``{"request_id": "x"}``.
REFUSED = "refused_annotations"

#: Top-level fields that only the library writes (whole subtrees).
OWNED_FIELDS = frozenset(
    {
        "event_id",
        "timestamp",
        "kind",
        "request_id",
        "trace_id",
        "sampling",
        "service",
        "host",
        "process",
        "duration_ms",
        "logs",
        "logs_dropped",
        "truncated",
        REFUSED,
    }
)
#: Paths inside objects the app may extend (``http.request.header.x``, ``url.full``).
OWNED_PATHS = (
    ("http", "request", "method"),
    ("http", "response", "status_code"),
    ("url", "path"),
)
#: Top-level keys that need a closer look when annotated: the owned ones, and those
#: holding owned paths (their value must stay an object).
GUARDED_KEYS = OWNED_FIELDS | {path[0] for path in OWNED_PATHS}

#: Fields that survive even the last-resort shrink of an oversized event.
CORE_FIELDS = (
    "event_id",
    "timestamp",
    "kind",
    "service",
    "host",
    "process",
    "request_id",
    "trace_id",
    "http",
    "url",
    "duration_ms",
    "sampling",
)

#: How the sampling decision looks in an encoded event (``sampling`` is written by us,
#: last but for the app's own fields; quotes inside strings are escaped, so app text
#: cannot fake it).
_RULE_MARK = b'"sampling":{"rule":"'


def sampling_rule_of(data: bytes) -> str:
    """The ``sampling.rule`` of an encoded event, read without decoding it ("unknown" when
    it has none): what lost events are counted by."""
    start = data.rfind(_RULE_MARK)
    if start == -1:
        return "unknown"
    start += len(_RULE_MARK)
    end = data.find(b'"', start, start + 64)
    if end == -1:
        return "unknown"
    return data[start:end].decode("ascii", "replace")


def get_path(node: Any, path: str, default: Any = None) -> Any:
    """The value at a dotted path (``"http.response.status_code"``) of nested mappings."""
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node
