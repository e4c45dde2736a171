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
draws its own share of normal requests, as a server generating its ids would. The access
logs' lines are read by ``access_logs``; this module finds the files, tells their formats
and reads our own events.
"""

from __future__ import annotations

import contextlib
import gzip
import itertools
import sys
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from .._errors import ConfigurationError
from ..fields import get_path
from ..sampling import request_facts
from .access_logs import (
    COMBINED,
    OTHER,
    SECONDS,
    CombinedParser,
    JsonParser,
    LineParser,
    Observed,
    Parsed,
    moment_of,
    route_of_path,
    tail_of,
)
from .event_files import event_files, parse_event

FORMATS = ("events", "nginx", "apache", "json")
#: The kinds of event we write: a JSON line with one of them (or an ``event_id``) is ours.
OUR_KINDS = frozenset({"http.request", "log", "metrics", "incident"})
#: Lines held to tell a file's format, at most (a stray first line must not decide).
DETECT_LINES = 100


def detect(line: bytes) -> tuple[str | None, bool]:
    """The format a line is in (None: none of them), and whether that is certain: a
    ``combined`` line without a duration could be nginx's or Apache's."""
    if line.lstrip().startswith(b"{"):
        event = parse_event(line)
        if event is None:
            return None, False
        ours = "event_id" in event or event.get("kind") in OUR_KINDS
        return ("events" if ours and "kind" in event else "json"), True
    match = COMBINED.match(line)
    if match is None:
        return None, False
    duration, _ = tail_of(match.group(4))
    if duration is None:
        return "nginx", False
    return ("nginx" if SECONDS.fullmatch(duration) else "apache"), True


def parser(format_in: str, fields: Mapping[str, str] | None = None) -> LineParser:
    """The parser of one format (``fields``: the ``--field`` mapping, for ``json``)."""
    if format_in == "events":
        return _event_line
    if format_in in ("nginx", "apache"):
        return CombinedParser(seconds=format_in == "nginx")
    if format_in == "json":
        return JsonParser(fields or {})
    msg = f"--format-in must be one of {', '.join(FORMATS)}, got {format_in!r}"
    raise ConfigurationError(msg)


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
        moment_of(event.get("timestamp")),
        facts.route or route_of_path(facts.path or "") or "(none)",
        float(rate) if stored else None,
    )
