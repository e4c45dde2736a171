"""What one line of an access log says about a request (nginx and Apache ``combined``,
JSON lines), and what every format's reader gives ``wide-logging simulate``: an
:class:`Observed` request.

nginx: ``combined`` followed by ``$request_time`` (seconds, ``0.123``), bare or as
``rt=0.123`` / ``request_time=0.123``; a ``$request_id`` (32 hex digits, or any id of 16+
hex digits or a UUID) after the user agent is the request id. Apache: ``combined`` followed
by ``%D`` (microseconds, a whole number). JSON lines: status, path, duration, request id
and time from the fields ``--field name=path`` names, else from the usual names
(``FIELD_DEFAULTS``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from .._errors import ConfigurationError
from ..fields import get_path
from ..incidents.summary import seconds_of
from ..sampling import RequestFacts
from .event_files import parse_event

#: The usual names of each field in JSON access logs, first found wins; ``--field`` names
#: its own path instead (``--field status=response.status``).
FIELD_DEFAULTS: dict[str, tuple[str, ...]] = {
    "status": ("status", "status_code", "http.response.status_code", "response.status"),
    "path": ("path", "uri", "request_uri", "url.path", "url", "request.uri"),
    "route": ("route", "http.route"),
    "duration_s": ("request_time", "duration_s", "elapsed"),
    "duration_ms": ("duration_ms", "latency_ms", "response_time_ms"),
    "duration_us": ("duration_us", "duration_micros"),
    "request_id": ("request_id", "req_id", "requestId", "id"),
    "time": ("time", "timestamp", "time_iso8601", "time_local", "ts", "@timestamp"),
}

#: ``combined``: host, ident, user, [time], "request", status, bytes, "referer", "agent";
#: then whatever the log_format adds (request time, request id, upstream times).
#: A quoted field, escapes allowed (unrolled: an alternation per character is 5x slower).
_IN_QUOTES = rb'[^"\\]*(?:\\.[^"\\]*)*'
COMBINED = re.compile(
    rb'\s*\S+ \S+ \S+ \[([^\]]+)\] "('
    + _IN_QUOTES
    + rb')" (\d{3}) \S+ "'
    + _IN_QUOTES
    + rb'" "'
    + _IN_QUOTES
    + rb'"(.*)'
)
_TAIL_TOKEN = re.compile(rb'(?:(\w+)=)?"?([^"\s]*)"?')
SECONDS = re.compile(rb"\d+\.\d+")
_NUMBER = re.compile(rb"\d+(?:\.\d+)?")
_ID = re.compile(
    rb"[0-9a-fA-F]{16,64}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_DURATION_KEYS = (b"rt", b"request_time")
_ID_KEYS = (b"request_id", b"rid", b"req_id")
#: Path segments that are ids, not routes: numbers, UUIDs, long hex (``/orders/{id}``).
_ID_SEGMENT = re.compile(
    r"(?<=/)(?:\d+|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9a-fA-F]{16,})(?=/|$)"
)


class Observed(NamedTuple):
    """One logged request: what the policy reads, and what the report counts."""

    facts: RequestFacts
    #: Bytes of the stored event (our JSONL); None for an access log line (estimated).
    size: int | None
    #: Unix seconds, when the line says.
    moment: float | None
    #: What per-route figures group by: the route template, else the path with its ids
    #: replaced by ``{id}``.
    route: str
    #: The rate an already sampled normal request was kept at (our JSONL).
    stored_rate: float | None
    #: The sampling key is the request's id (else its place in the input: a draw).
    from_id: bool = True


#: A line of another kind of event (a log record, metrics) — counted, not simulated.
OTHER = "other"
Parsed = Observed | str | None
LineParser = Callable[[bytes, int], Parsed]


def parse_fields(specs: Iterable[str]) -> dict[str, str]:
    """``--field name=path`` options, checked: a name of ``FIELD_DEFAULTS`` and a path."""
    fields = {}
    for spec in specs:
        name, _, path = spec.partition("=")
        if name not in FIELD_DEFAULTS or not path:
            msg = (
                f"--field takes name=path with a name of {', '.join(FIELD_DEFAULTS)}; got {spec!r}"
            )
            raise ConfigurationError(msg)
        fields[name] = path
    return fields


def route_of_path(path: str) -> str:
    """A path's route as far as a log can tell: without its query, ids as ``{id}``."""
    return _ID_SEGMENT.sub("{id}", path.partition("?")[0])


# -- access logs --------------------------------------------------------------------------


class CombinedParser:
    """nginx/Apache ``combined`` lines; ``seconds``: the duration is nginx's
    ``$request_time`` (seconds), else Apache's ``%D`` (microseconds)."""

    def __init__(self, *, seconds: bool) -> None:
        self.scale = 1000.0 if seconds else 0.001
        self._times = _TimeCache()

    def __call__(self, line: bytes, number: int) -> Parsed:
        match = COMBINED.match(line)
        if match is None:
            return None
        time, request, status, tail = match.groups()
        parts = request.split(b" ")
        target = parts[1] if len(parts) > 1 else parts[0]
        path = target.partition(b"?")[0].decode("utf-8", "replace")
        duration, request_id = tail_of(tail)
        try:
            duration_ms = float(duration) * self.scale if duration is not None else 0.0
        except ValueError:
            return None
        key = request_id.decode("utf-8", "replace") if request_id else f"line:{number}"
        facts = RequestFacts(key, False, int(status), duration_ms, None, False, path)
        route = _ID_SEGMENT.sub("{id}", path)
        return Observed(facts, None, self._times.seconds(time), route, None, bool(request_id))


def tail_of(tail: bytes) -> tuple[bytes | None, bytes | None]:
    """The duration and the request id among what follows the user agent: named
    (``rt=``, ``request_time=``; ``request_id=``, ``rid=``) or, unnamed, the first number
    and the last token that looks like an id."""
    duration = request_id = None
    if b'"' not in tail and b"=" not in tail:  # the common case, bare values: faster
        for value in tail.split():
            if duration is None and _NUMBER.fullmatch(value):
                duration = value
            elif _ID.fullmatch(value):
                request_id = value
        return duration, request_id
    named_duration = False
    for key, value in _TAIL_TOKEN.findall(tail):
        if not value or value == b"-":
            continue
        if key in _DURATION_KEYS:
            duration, named_duration = value, True
        elif key in _ID_KEYS:
            request_id = value
        elif key:
            continue  # another variable of the log_format (uct=, urt=, ...)
        elif duration is None and not named_duration and _NUMBER.fullmatch(value):
            duration = value
        elif _ID.fullmatch(value):
            request_id = value
    return duration, request_id


class _TimeCache:
    """``10/Oct/2026:13:55:36 +0000`` as Unix seconds; a log holds the same second many
    times, so each is parsed once."""

    def __init__(self) -> None:
        self._text = b""
        self._seconds: float | None = None

    def seconds(self, text: bytes) -> float | None:
        if text != self._text:
            self._text = text
            try:
                parsed = datetime.strptime(text.decode("ascii"), "%d/%b/%Y:%H:%M:%S %z")
                self._seconds = parsed.timestamp()
            except (ValueError, UnicodeDecodeError):
                self._seconds = None
        return self._seconds


@dataclass
class JsonParser:
    fields: Mapping[str, str]

    def __post_init__(self) -> None:
        self._times = _TimeCache()
        units = (("duration_ms", 1.0), ("duration_s", 1000.0), ("duration_us", 0.001))
        named = [(name, scale) for name, scale in units if name in self.fields]
        #: The duration fields looked at: those --field names, else every usual one.
        self._durations = named or list(units)

    def _field(self, line: dict[str, Any], name: str) -> Any:
        given = self.fields.get(name)
        for path in (given,) if given else FIELD_DEFAULTS[name]:
            value = line.get(path) if path in line else get_path(line, path)
            if value is not None and value != "" and value != "-":
                return value
        return None

    def __call__(self, raw: bytes, number: int) -> Parsed:
        line = parse_event(raw)
        if line is None:
            return None
        status = _number(self._field(line, "status"))
        path = self._field(line, "path")
        if status is None or not isinstance(path, str):
            return None
        duration_ms = 0.0
        for name, scale in self._durations:
            value = _number(self._field(line, name))
            if value is not None:
                duration_ms = value * scale
                break
        request_id = self._field(line, "request_id")
        route = self._field(line, "route")
        path = path.partition("?")[0]
        facts = RequestFacts(
            str(request_id) if request_id is not None else f"line:{number}",
            False,
            int(status),
            duration_ms,
            route if isinstance(route, str) else None,
            False,
            path,
        )
        moment = self._field(line, "time")
        return Observed(
            facts,
            None,
            self._moment(moment),
            facts.route or route_of_path(path),
            None,
            request_id is not None,
        )

    def _moment(self, value: object) -> float | None:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value / 1000 if value > 1e11 else float(value)  # ms or seconds
        if isinstance(value, str):
            return moment_of(value) or self._times.seconds(value.encode("ascii", "replace"))
        return None


def _number(value: object) -> float | None:
    """A finite number from a JSON value (a number, or a number as text)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def moment_of(stamp: object) -> float | None:
    """An ISO time of a line as Unix seconds, as every reader of stored events reads it."""
    return seconds_of(stamp) if isinstance(stamp, str) else None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
