"""Encoding events to JSON bytes: redaction, size caps, and a safe path for odd values.

Theory of operation
-------------------
User data enters an event in two places only: ``annotate()`` (and ``set()``) and log
records. Both pass through :meth:`Serializer.copy`, which returns a *copy* that is
JSON-safe: values under secret keys redacted, strings and collections capped, cycles cut,
unknown objects turned into their ``repr``. Because the copy is ours, the app can mutate
its own objects afterwards without changing the event.

Secrets *inside* text (a URL's password, ``token=...`` in a message, a bearer token) are
masked later, by :meth:`Serializer.scrub_strings`, when a kept event is built: scanning
text costs a few hundred nanoseconds a string, and most events are sampled out and never
need it. :meth:`Serializer.clean` does both steps at once.

When the event is finished, :meth:`Serializer.encode` runs orjson once (the fast path).
Anything orjson still rejects (lone surrogates, integers beyond 64 bits, keys of odd
types) sends the event through ``clean(strict=True)`` and a second encode. An event over
the byte cap is shrunk step by step, keeping its identity and error fields. Nothing here
raises: the worst case is a small event that says it was truncated.
"""

from __future__ import annotations

import decimal
import itertools
from typing import Any

import orjson

from ._clean import Cleaner
from ._secret_names import DEFAULT_REDACT_KEYS, DEFAULT_REDACT_PATTERN, REDACTED
from ._text import as_text, safe_repr
from .fields import CORE_FIELDS
from .typing import EventDict

__all__ = ["DEFAULT_REDACT_KEYS", "DEFAULT_REDACT_PATTERN", "REDACTED", "Serializer", "safe_repr"]


class Serializer(Cleaner):
    """Redacts, caps and encodes events. Configured once; safe to share between threads."""

    __slots__ = ("_encode_default",)

    def _configured(self) -> None:
        self._encode_default = self._default  # bound once, not per encoded event

    # -- encoding --------------------------------------------------------------------

    def encode(self, event: EventDict) -> bytes:
        """JSON bytes for ``event``; never raises, never exceeds ``max_event_bytes``."""
        try:
            # No OPT_NON_STR_KEYS here: it halves orjson's speed, and every key that came
            # through clean() is already a str. A stray one takes the strict path below.
            # orjson's own bytes, spare capacity and all: the pipeline compacts them only
            # when they have to wait in a backlog (pipeline.COMPACT_ABOVE).
            data = orjson.dumps(event, default=self._encode_default)
        except Exception:
            data = self._encode_strict(event)
        if len(data) > self.max_event_bytes:
            data = self._shrink(event, len(data))
        return data

    def _default(self, value: Any) -> Any:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return self.scrub(self._bytes_text(value, self.max_string))
        if isinstance(value, (set, frozenset)):
            return list(itertools.islice(value, self.max_items))
        if isinstance(value, decimal.Decimal):
            return str(value)
        return self.scrub(self.clip(safe_repr(value)))  # (a datetime subclass's own repr)

    def _encode_strict(self, event: Any, max_string: int | None = None) -> bytes:
        try:
            cleaned = self.clean(event, strict=True, max_string=max_string)
            return orjson.dumps(cleaned, default=self._encode_default)
        except Exception as exc:  # a bug of ours: the event keeps its identity all the same
            identity = {
                key: as_text(event.get(key), 64)
                for key in ("event_id", "kind", "request_id")
                if isinstance(event, dict) and key in event
            }
            return orjson.dumps({**identity, "encode_error": f"{type(exc).__name__}"})

    def _shrink(self, event: EventDict, original: int) -> bytes:
        # The marker first: the key cap of clean() must never cut what explains the cut.
        marker = {"original_bytes": original, "limit_bytes": self.max_event_bytes}
        smaller: EventDict = {"truncated": marker}
        smaller.update((key, value) for key, value in event.items() if key != "truncated")
        logs = smaller.get("logs")
        if isinstance(logs, list) and len(logs) > 10:
            smaller["logs"] = [*logs[:5], *logs[-5:]]
            dropped = smaller.get("logs_dropped")
            smaller["logs_dropped"] = (dropped if type(dropped) is int else 0) + len(logs) - 10
        data = self._encode_strict(smaller, max_string=1024)
        if len(data) <= self.max_event_bytes:
            return data
        core: EventDict = {"truncated": marker}
        core.update((key, event[key]) for key in CORE_FIELDS if key in event)
        if "error" in event:
            core["error"] = event["error"]
        data = self._encode_strict(core, max_string=256)
        if len(data) <= self.max_event_bytes:
            return data
        return orjson.dumps(  # pathological: even the core fields are too big
            {"truncated": marker}
            | {
                key: self.clean(event.get(key), strict=True, max_string=64)
                for key in ("event_id", "kind")
            }
        )
