"""Identifiers: event ids (UUIDv7, time-sortable), request ids and W3C trace context."""

from __future__ import annotations

import random
import re

# CPython reseeds the module-level generator in a forked child, so ids stay unique per
# process without any fork handling of ours.
_getrandbits = random.getrandbits

#: What we accept in an incoming X-Request-ID: printable, no spaces, no separators that
#: could forge log lines or headers.
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:@/+=-]+")
_TRACEPARENT_RE = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")
_ZERO_TRACE = "0" * 32


def uuid7(unix_seconds: float) -> str:
    """A UUIDv7 string for the given wall time: sorts by time, unique by 74 random bits."""
    value = (int(unix_seconds * 1000) & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7000 << 64 | _getrandbits(12) << 64  # version 7 + rand_a
    value |= 0b10 << 62 | _getrandbits(62)  # variant + rand_b
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_request_id() -> str:
    """128 random bits as 32 hex characters (the shape of a W3C trace id)."""
    return f"{_getrandbits(128):032x}"


def valid_request_id(value: str, max_length: int) -> bool:
    return 0 < len(value) <= max_length and _REQUEST_ID_RE.fullmatch(value) is not None


def trace_id_from_traceparent(value: str) -> str | None:
    """The trace id of a W3C ``traceparent`` header, or None when it is malformed."""
    match = _TRACEPARENT_RE.fullmatch(value.strip().lower())
    if match is None or value.startswith("ff") or match.group(1) == _ZERO_TRACE:
        return None
    return match.group(1)
