"""The event schema's owner: the fields that belong to the library, by dotted path, and
the one builder of the outer fields every kind of event carries (:func:`outer_fields`).

The library writes these and the app cannot: ``annotate()`` moves an app's value for any
of them under :data:`REFUSED` (and the handler counts it), because a forged ``event_id``,
status or timestamp would corrupt deduplication, sampling and expiry downstream. Fields
the library writes only sometimes (``error``, ``http.route``, ``client.address``,
``user_agent.original``, ``timings``) may be added by the app when the library has none;
when both exist, the library's value is kept and the app's is refused at ``finalize()``.
docs/events.md ("Fields the library owns") lists the same paths.
"""

from __future__ import annotations

import datetime
import functools
import socket
from collections.abc import Mapping
from typing import Any

from . import _lifecycle
from ._ids import uuid7_ms
from .typing import EventDict

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
#: Top-level keys holding library paths, and those paths below them.
OWNED_BELOW: dict[str, tuple[tuple[str, ...], ...]] = {}
for _path in OWNED_PATHS:
    OWNED_BELOW[_path[0]] = (*OWNED_BELOW.get(_path[0], ()), _path[1:])

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
    for part in _parts(path):
        # (a dict is checked by its type first: Mapping's isinstance is an ABC's, slow
        # when millions of stored events are read)
        if (type(node) is dict or isinstance(node, Mapping)) and part in node:
            node = node[part]
        else:
            return default
    return node


@functools.lru_cache(maxsize=1024)
def _parts(path: str) -> tuple[str, ...]:
    return tuple(path.split("."))


def outer_fields(kind: str, unix_ms: int, resource: Mapping[str, Any]) -> EventDict:
    """The fields every event starts with, whatever its kind (a request, a log record,
    metrics, an incident): ``event_id`` (a UUIDv7 of ``unix_ms``), ``timestamp`` (the same
    millisecond), ``kind``, then ``service``, ``host`` and ``process`` from ``resource``
    (:meth:`Resource.fields`)."""
    return {
        "event_id": uuid7_ms(unix_ms),
        "timestamp": iso_ms(unix_ms),
        "kind": kind,
        **resource,
    }


class Resource:
    """``service``, ``host`` and ``process``: what every event of this process says about
    where it comes from. Built once; ``process`` follows a fork (``_lifecycle.process``
    is a new dict in a forked child, so a stale copy is told apart by identity)."""

    __slots__ = ("_fields",)

    def __init__(self, service: Mapping[str, str]) -> None:
        self._fields: dict[str, Any] = {
            "service": dict(service),
            "host": {"name": socket.gethostname()},
            "process": _lifecycle.process,
        }

    @property
    def service(self) -> dict[str, str]:
        service: dict[str, str] = self._fields["service"]
        return service

    def fields(self) -> dict[str, Any]:
        """Shared by every event and never modified (``finalize()`` copies what
        annotations extend)."""
        fields = self._fields
        process = _lifecycle.process
        if fields["process"] is not process:
            fields = self._fields = {**fields, "process": process}
        return fields


_UTC = datetime.timezone.utc
_second_cache: tuple[int, str] = (-1, "")
_millisecond_cache: tuple[int, str] = (-1, "")
_MILLIS_SUFFIX = tuple(f".{millis:03d}Z" for millis in range(1000))


def iso_timestamp(unix_seconds: float) -> str:
    """``2026-11-27T09:26:31.123Z``; the formatted second is reused within that second."""
    return iso_ms(int(unix_seconds * 1000))


def iso_ms(unix_ms: int) -> str:
    """:func:`iso_timestamp` of integer milliseconds (the event id's own millisecond)."""
    global _second_cache, _millisecond_cache
    cached_ms, text = _millisecond_cache
    if unix_ms == cached_ms:  # under load many events share a millisecond
        return text
    second = unix_ms // 1000
    cached_second, prefix = _second_cache
    if second != cached_second:
        prefix = datetime.datetime.fromtimestamp(second, _UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second_cache = (second, prefix)
    text = prefix + _MILLIS_SUFFIX[unix_ms - second * 1000]
    _millisecond_cache = (unix_ms, text)
    return text


def http_object(method: str, route: str | None, status: int | None) -> dict[str, Any]:
    """The event's ``http`` field: request method, route template, response status."""
    http: dict[str, Any] = {"request": {"method": method}}
    if route is not None:
        http["route"] = route
    if status is not None:
        http["response"] = {"status_code": status}
    return http


#: ``http`` objects by (method, route, status), shared by the events that have the same:
#: a service answers few distinct combinations, and building three dicts per kept event
#: costs more than finding them. Never modified (an event whose app annotated ``http``
#: gets a fresh one to merge into). Bounded in count and in size: the method comes from
#: the client.
_http_objects: dict[tuple[str, str | None, int | None], dict[str, Any]] = {}
_HTTP_OBJECTS_MAX = 2048
_MAX_CACHED_METHOD = 32


def shared_http_object(method: str, route: str | None, status: int | None) -> dict[str, Any]:
    """:func:`http_object`, one shared dict per combination; never modify it."""
    if status is not None and type(status) is not int:
        # A buggy app's True or 200.0 would find the object of 1 or 200: equal keys,
        # other values. A fresh one holds what it was given.
        return http_object(method, route, status)
    key = (method, route, status)
    try:
        return _http_objects[key]
    except KeyError:
        pass
    http = http_object(method, route, status)
    if len(_http_objects) < _HTTP_OBJECTS_MAX and len(method) <= _MAX_CACHED_METHOD:
        _http_objects[key] = http
    return http


def path_for_rules(method: Any, route: str | None, path: str | None) -> str | None:
    """The raw path the sampling rules may match when there is no route template — none
    for an ``OPTIONS`` request that no route took: a CORS preflight, answered before
    routing for any path a client makes up (under a ``critical_routes`` glob, it would
    choose what is always kept)."""
    if route is None and method == "OPTIONS":
        return None
    return path


def is_error_value(value: Any) -> bool:
    """Whether an annotated ``error`` is one, by what it will be stored as: JSON's null,
    false, 0 and empty values are not; anything else is — an object of the app's whose
    own ``__bool__`` says False is still stored as its text, and an error."""
    if value is None or value is False:
        return False
    kind = type(value)
    if kind is dict or kind is list or kind is str or kind is tuple:
        return len(value) > 0
    if kind is int or kind is float:
        return bool(value != 0)
    return True
