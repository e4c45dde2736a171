"""Identifiers: event ids (UUIDv7, time-sortable), request ids and W3C trace context."""

from __future__ import annotations

import itertools
import os
import random
import re

# CPython reseeds the module-level generator in a forked child, so random ids differ
# between parent and child.
_getrandbits = random.getrandbits

#: What we accept in an incoming X-Request-ID: printable, no spaces, no separators that
#: could forge log lines or headers.
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:@/+=-]+")
_TRACEPARENT_RE = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")
_ZERO_TRACE = "0" * 32


def _process_part() -> str:
    """The middle 12 hex digits of this process's ids: version 7, 12 random bits (rand_a),
    the variant bits and 30 more random bits (top of rand_b). New after fork."""
    bits = _getrandbits(42)
    value = 0x7 << 44 | (bits >> 30) << 32 | 0b10 << 30 | (bits & 0x3FFF_FFFF)
    return f"{value:012x}"


_process_part_hex = _process_part()
_sequence = itertools.count()


def uuid7(unix_seconds: float) -> str:
    """A UUIDv7 for the given wall time (RFC 9562, method 1 counter), as 32 hex digits.

    48 bits of milliseconds, then 42 random bits drawn once per process and a 32-bit
    counter: ids sort by time and never collide within a process or across processes, at
    a fraction of the cost of fresh random bits per id. The 32-digit form without dashes
    (``uuid.UUID(event_id)`` parses it) is cheaper to build and the same bytes.
    """
    return uuid7_ms(int(unix_seconds * 1000))


def uuid7_ms(unix_ms: int) -> str:
    """:func:`uuid7` for a time already in integer milliseconds."""
    counter = next(_sequence) & 0xFFFF_FFFF
    return f"{unix_ms & 0xFFFF_FFFF_FFFF:012x}{_process_part_hex}{counter:08x}"


def _new_process_part() -> None:
    global _process_part_hex
    _process_part_hex = _process_part()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_process_part)


def new_request_id() -> str:
    """128 random bits as 32 hex characters (the shape of a W3C trace id)."""
    return f"{_getrandbits(128):032x}"


#: Longer incoming ids are replaced: they would bloat every event and index.
MAX_REQUEST_ID_LENGTH = 128


def valid_request_id(value: str) -> bool:
    return len(value) <= MAX_REQUEST_ID_LENGTH and _REQUEST_ID_RE.fullmatch(value) is not None


def trace_id_from_traceparent(value: str) -> str | None:
    """The trace id of a W3C ``traceparent`` header, or None when it is malformed."""
    match = _TRACEPARENT_RE.fullmatch(value.strip().lower())
    if match is None or value.startswith("ff") or match.group(1) == _ZERO_TRACE:
        return None
    return match.group(1)
