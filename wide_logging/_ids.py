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
#: The id prefix (milliseconds + process part) of the last millisecond an id was made in.
_ms_prefix: tuple[int, str] = (-1, "")


def _hex_digits(value: int, digits: int) -> str:
    """``value`` as exactly ``digits`` lowercase hex digits (wrapping): ``hex()`` of the
    value with a leading 1 bit and the ``0x1`` cut off: cheaper than a format spec."""
    bit = 1 << (4 * digits)
    return hex(value & (bit - 1) | bit)[3:]


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
    global _ms_prefix
    last_ms, prefix = _ms_prefix
    if unix_ms != last_ms:  # under load many ids share a millisecond
        prefix = _hex_digits(unix_ms, 12) + _process_part_hex
        _ms_prefix = (unix_ms, prefix)
    return prefix + hex(next(_sequence) & 0xFFFF_FFFF | 0x1_0000_0000)[3:]  # _hex_digits, inlined


def _new_process_part() -> None:
    global _process_part_hex, _ms_prefix, _request_prefix
    _process_part_hex = _process_part()
    _ms_prefix = (-1, "")
    _request_prefix = _new_request_prefix()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_process_part)


def _new_request_prefix() -> str:
    return f"{_getrandbits(80):020x}"


_request_prefix = _new_request_prefix()
_request_sequence = itertools.count()


def new_request_id() -> str:
    """32 hex characters (the shape of a W3C trace id): 80 random bits drawn once per
    process (again after fork), then a 48-bit counter.

    Unique across processes and restarts like a fully random id, and about 3x cheaper —
    this runs for every request that arrives without an id. MurmurHash3 spreads
    consecutive ids evenly, so sampling by request id keeps its rate.
    """
    counter = next(_request_sequence) & 0xFFFF_FFFF_FFFF | 0x1_0000_0000_0000
    return _request_prefix + hex(counter)[3:]  # _hex_digits, inlined


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
