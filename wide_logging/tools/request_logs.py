"""Requests already logged, read line by line for ``wide-logging simulate``.

Four formats, told apart by a file's first line (or named with ``--format-in``):

- ``events``: our own JSONL, each ``kind: http.request`` event read as the policy reads a
  live one (``sampling.request_facts``); other kinds (logs, metrics) are counted apart.
- ``nginx``: the ``combined`` format with ``$request_time`` (seconds, ``0.123``) after it,
  bare or as ``rt=0.123`` / ``request_time=0.123``; a ``$request_id`` (32 hex digits, or any
  id of 16+ hex digits or a UUID) anywhere after the user agent is the request id.
- ``apache``: ``combined`` with ``%D`` (microseconds, a whole number) after it.
- ``json``: JSON-lines access logs (nginx ``escape=json``, Caddy, app servers): status,
  path, duration, request id and time from the fields ``--field name=path`` names, else from
  the usual names (``FIELD_DEFAULTS``).

Without a request id the line's place in the input is the sampling key: each run then
draws its own share of normal requests, as a server generating its ids would.
"""

from __future__ import annotations

import contextlib
import gzip
import itertools
import math
import re
import sys
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from .._errors import ConfigurationError
from ..fields import get_path
from ..sampling import RequestFacts, request_facts
from .event_files import event_files, parse_event

FORMATS = ("events", "nginx", "apache", "json")
#: The kinds of event we write: a JSON line with one of them (or an ``event_id``) is ours.
OUR_KINDS = frozenset({"http.request", "log", "metrics", "incident"})
#: Lines held to tell a file's format, at most (a stray first line must not decide).
DETECT_LINES = 100

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
_COMBINED = re.compile(
    rb'\s*\S+ \S+ \S+ \[([^\]]+)\] "('
    + _IN_QUOTES
    + rb')" (\d{3}) \S+ "'
    + _IN_QUOTES
    + rb'" "'
    + _IN_QUOTES
    + rb'"(.*)'
)
_TAIL_TOKEN = re.compile(rb'(?:(\w+)=)?"?([^"\s]*)"?')
_SECONDS = re.compile(rb"\d+\.\d+")
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


def detect(line: bytes) -> tuple[str | None, bool]:
    """The format a line is in (None: none of them), and whether that is certain: a
    ``combined`` line without a duration could be nginx's or Apache's."""
    if line.lstrip().startswith(b"{"):
        event = parse_event(line)
        if event is None:
            return None, False
        ours = "event_id" in event or event.get("kind") in OUR_KINDS
        return ("events" if ours and "kind" in event else "json"), True
    match = _COMBINED.match(line)
    if match is None:
        return None, False
    duration, _ = _tail(match.group(4))
    if duration is None:
        return "nginx", False
    return ("nginx" if _SECONDS.fullmatch(duration) else "apache"), True


def parser(format_in: str, fields: Mapping[str, str] | None = None) -> LineParser:
    """The parser of one format (``fields``: the ``--field`` mapping, for ``json``)."""
    if format_in == "events":
        return _event_line
    if format_in in ("nginx", "apache"):
        return _CombinedParser(seconds=format_in == "nginx")
    if format_in == "json":
        return _JsonParser(fields or {})
    msg = f"--format-in must be one of {', '.join(FORMATS)}, got {format_in!r}"
    raise ConfigurationError(msg)


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


class Requests:
    """The requests of every file ``specs`` name (a JSONL file and its rotated segments, a
    folder of JSONL files, a glob, any file; ``.gz`` read through gzip; ``-`` is standard
    input; a file named twice is read once), each file's format told from its first lines
    unless ``format_in`` names one. Iterating gives ``(where, line number in that file,
    line, Observed | OTHER | None)``; ``progress`` (when given) is called with the bytes
    read since its last call. A compressed file cut short is read up to where it breaks,
    and said in ``cut_short``."""

    def __init__(
        self,
        specs: Sequence[str],
        format_in: str = "auto",
        fields: Mapping[str, str] | None = None,
        progress: Callable[[int], object] | None = None,
    ) -> None:
        if format_in != "auto":
            parser(format_in)  # a name it does not know is an error now, not at a line
        self.format_in = format_in
        self.fields = fields or {}
        self.progress = progress
        #: Files (or stdin) read, by format.
        self.formats: Counter[str] = Counter()
        #: Files that ended in the middle (a truncated .gz): "path: reason".
        self.cut_short: list[str] = []
        found = [path for spec in specs for path in ([None] if spec == "-" else event_files(spec))]
        unique = {None if path is None else path.resolve(): path for path in found}
        self.sources: list[Path | None] = list(unique.values())

    @property
    def total_bytes(self) -> int | None:
        """What there is to read (None when standard input is among it)."""
        if None in self.sources:
            return None
        return sum(path.stat().st_size for path in self.sources if path is not None)

    def __iter__(self) -> Iterator[tuple[str, int, bytes, Parsed]]:
        number = 0  # across files: a key made of it is unique in the whole input
        for source in self.sources:
            where = "-" if source is None else str(source)
            with _opened(source) as (lines, position):
                reported = 0
                try:
                    numbered = self._parsed(_numbered(lines), number)
                    for line_number, line, parse, key_number in numbered:
                        number = key_number
                        yield where, line_number, line, parse(line, number)
                        if self.progress is not None and number % 4096 == 0:
                            now = position()
                            self.progress(now - reported)
                            reported = now
                except (EOFError, OSError, zlib.error) as exc:  # BadGzipFile is an OSError
                    self.cut_short.append(f"{where}: {type(exc).__name__}: {exc}"[:300])
                if self.progress is not None:
                    self.progress(position() - reported)

    def _parsed(
        self, lines: Iterator[tuple[int, bytes]], number: int
    ) -> Iterator[tuple[int, bytes, LineParser, int]]:
        """Each line with its parser: the first ``DETECT_LINES`` are held until one of them
        says which format the file is in (a stray first line, or a combined line without
        a duration, does not decide)."""
        held: list[tuple[int, bytes]] = []
        name = self.format_in if self.format_in != "auto" else None
        if name is None:
            for line_number, line in lines:
                held.append((line_number, line))
                found, sure = detect(line)
                if sure:
                    name = found
                    break
                name = name or found
                if len(held) >= DETECT_LINES:
                    break
        name = name or "events"
        self.formats[name] += 1
        parse = parser(name, self.fields)
        for line_number, line in itertools.chain(held, lines):
            number += 1
            yield line_number, line, parse, number


def _numbered(lines: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    """The lines that are not blank, with their number in the file."""
    for line_number, line in enumerate(lines, 1):
        if line and not line.isspace():  # (isspace: no copy of the line)
            yield line_number, line


@contextlib.contextmanager
def _opened(source: Path | None) -> Iterator[tuple[Iterable[bytes], Callable[[], int]]]:
    """A file's lines, and how far into the file (its bytes as stored) they have got."""
    if source is None:
        yield sys.stdin.buffer, lambda: 0
        return
    with open(source, "rb") as raw:
        if source.suffix == ".gz":
            with gzip.GzipFile(fileobj=raw) as unpacked:
                yield unpacked, raw.tell
        else:
            yield raw, raw.tell


# -- our JSONL ----------------------------------------------------------------------------


def _event_line(line: bytes, number: int) -> Parsed:
    event = parse_event(line)
    if event is None:
        return None
    if event.get("kind") != "http.request":
        return OTHER
    facts = request_facts(event)
    rate = get_path(event, "sampling.rate")
    stored = get_path(event, "sampling.rule") == "normal" and isinstance(rate, (int, float))
    return Observed(
        facts,
        len(line) + (0 if line.endswith(b"\n") else 1),
        _moment(event.get("timestamp")),
        facts.route or route_of_path(facts.path or "") or "(none)",
        float(rate) if stored else None,
    )


# -- access logs --------------------------------------------------------------------------


class _CombinedParser:
    """nginx/Apache ``combined`` lines; ``seconds``: the duration is nginx's
    ``$request_time`` (seconds), else Apache's ``%D`` (microseconds)."""

    def __init__(self, *, seconds: bool) -> None:
        self.scale = 1000.0 if seconds else 0.001
        self._times = _TimeCache()

    def __call__(self, line: bytes, number: int) -> Parsed:
        match = _COMBINED.match(line)
        if match is None:
            return None
        time, request, status, tail = match.groups()
        parts = request.split(b" ")
        target = parts[1] if len(parts) > 1 else parts[0]
        path = target.partition(b"?")[0].decode("utf-8", "replace")
        duration, request_id = _tail(tail)
        try:
            duration_ms = float(duration) * self.scale if duration is not None else 0.0
        except ValueError:
            return None
        key = request_id.decode("utf-8", "replace") if request_id else f"line:{number}"
        facts = RequestFacts(key, False, int(status), duration_ms, None, False, path)
        route = _ID_SEGMENT.sub("{id}", path)
        return Observed(facts, None, self._times.seconds(time), route, None, bool(request_id))


def _tail(tail: bytes) -> tuple[bytes | None, bytes | None]:
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
class _JsonParser:
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
            return _moment(value) or self._times.seconds(value.encode("ascii", "replace"))
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


def _moment(stamp: object) -> float | None:
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
