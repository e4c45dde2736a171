"""Encoding events to JSON bytes: redaction, size caps, and a safe path for odd values.

Theory of operation
-------------------
User data enters an event in two places only: ``annotate()`` (and ``set()``) and log
records. Both pass through :meth:`Serializer.clean`, which returns a *copy* that is
JSON-safe: secret keys redacted, strings and collections capped, cycles cut, unknown
objects turned into their ``repr``. Because the copy is ours, the app can mutate its own
objects afterwards without changing the event.

When the event is finished, :meth:`Serializer.encode` runs orjson once (the fast path).
Anything orjson still rejects (lone surrogates, integers beyond 64 bits, keys of odd
types) sends the event through ``clean(strict=True)`` and a second encode. An event over
the byte cap is shrunk step by step, keeping its identity and error fields. Nothing here
raises: the worst case is a small event that says it was truncated.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from ._errors import ConfigurationError, check_number
from .typing import EventDict

REDACTED = "[REDACTED]"

#: Header and field names that are always secrets, compared case-insensitively with
#: ``_`` and ``-`` treated alike.
DEFAULT_REDACT_KEYS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "apikey",
        "x-auth-token",
        "x-csrf-token",
    }
)
#: Any key containing one of these words is a secret too.
DEFAULT_REDACT_PATTERN = r"passw(?:or)?d|secret|token|api-?key|credential|private-?key"

_MAX_INT = 2**64 - 1
_MIN_INT = -(2**63)
#: Fields that survive even the last-resort shrink of an oversized event.
_CORE_FIELDS = (
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
_KEY_CACHE_LIMIT = 4096
#: Values that are already JSON-safe copies of themselves.
_PLAIN_SCALARS = frozenset({int, float, bool, type(None)})


def _normalize_key(key: str) -> str:
    return key.lower().replace("_", "-")


class Serializer:
    """Redacts, caps and encodes events. Configured once; safe to share between threads."""

    __slots__ = (
        "_encode_default",
        "_key_cache",
        "_redact_keys",
        "_redact_re",
        "max_depth",
        "max_event_bytes",
        "max_items",
        "max_string",
    )

    def __init__(
        self,
        *,
        redact: Iterable[str] = (),
        redact_pattern: str | None = DEFAULT_REDACT_PATTERN,
        max_string: int = 8192,
        max_items: int = 200,
        max_depth: int = 10,
        max_event_bytes: int = 256 * 1024,
    ) -> None:
        if isinstance(redact, str):
            msg = f"redact must be a list of key names, not the string {redact!r}"
            raise ConfigurationError(msg)
        extra = set()
        for key in redact:
            if not isinstance(key, str) or not key:
                msg = f"redact entries must be non-empty strings, got {key!r}"
                raise ConfigurationError(msg)
            extra.add(_normalize_key(key))
        check_number("max_string", max_string, 16, integer=True)
        check_number("max_items", max_items, 1, integer=True)
        check_number("max_depth", max_depth, 1, integer=True)
        check_number("max_event_bytes", max_event_bytes, 1024, integer=True)
        try:
            self._redact_re = re.compile(redact_pattern, re.IGNORECASE) if redact_pattern else None
        except re.error as exc:
            msg = f"redact_pattern is not a valid regular expression: {exc}"
            raise ConfigurationError(msg) from None
        self._redact_keys = DEFAULT_REDACT_KEYS | extra
        self._key_cache: dict[str, bool] = {}
        self._encode_default = self._default  # bound once, not per event
        self.max_string = max_string
        self.max_items = max_items
        self.max_depth = max_depth
        self.max_event_bytes = max_event_bytes

    # -- redaction -------------------------------------------------------------------

    def is_secret(self, key: str) -> bool:
        """True when values under ``key`` must never leave the process."""
        cached = self._key_cache.get(key)
        if cached is not None:
            return cached
        norm = _normalize_key(key)
        secret = norm in self._redact_keys or (
            self._redact_re is not None and self._redact_re.search(norm) is not None
        )
        if len(self._key_cache) < _KEY_CACHE_LIMIT:
            self._key_cache[key] = secret
        return secret

    # -- cleaning --------------------------------------------------------------------

    def clip(self, text: str, limit: int | None = None) -> str:
        limit = self.max_string if limit is None else limit
        if len(text) <= limit:
            return text
        return f"{text[:limit]}...[truncated {len(text) - limit} chars]"

    def clean(self, value: Any, *, strict: bool = False, max_string: int | None = None) -> Any:
        """A JSON-safe copy of ``value`` with secrets redacted and sizes capped.

        ``strict`` also repairs what only orjson would reject (lone surrogates, integers
        beyond 64 bits); it is the slow path used after a failed encode.
        """
        limit = max_string or self.max_string
        if not strict:  # the common annotations first: a number, a short string, a flat dict
            kind = type(value)
            if kind in _PLAIN_SCALARS or (kind is str and len(value) <= limit):
                return value
            if kind is dict:
                flat = self._clean_flat_dict(value, limit)
                if flat is not None:
                    return flat
        return self._clean(value, 0, set(), strict, limit)

    def _clean_flat_dict(self, value: dict[Any, Any], limit: int) -> dict[str, Any] | None:
        """``user={"id": 7, "plan": "pro"}`` copied without the recursive walk; None when
        any key or value needs the full treatment."""
        if len(value) > self.max_items:
            return None
        known_secret = self._key_cache
        out: dict[str, Any] = {}
        for key, item in value.items():
            kind = type(item)
            if type(key) is not str or (
                kind not in _PLAIN_SCALARS and (kind is not str or len(item) > limit)
            ):
                return None
            secret = known_secret.get(key)
            if secret is None:
                secret = self.is_secret(key)
            out[key] = REDACTED if secret else item
        return out

    def _clean(self, value: Any, depth: int, seen: set[int], strict: bool, limit: int) -> Any:
        kind = type(value)
        if kind is str:
            text = self.clip(value, limit)
            return _repair_text(text) if strict else text
        if value is None or kind is bool or kind is float:
            return value
        if kind is int:
            return value if not strict or _MIN_INT <= value <= _MAX_INT else str(value)
        if kind is dict or isinstance(value, Mapping):
            return self._clean_mapping(value, depth, seen, strict, limit)
        if kind is list or isinstance(value, (list, tuple, set, frozenset)):
            return self._clean_sequence(value, depth, seen, strict, limit)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return self.clip(bytes(value).decode("utf-8", "replace"), limit)
        if isinstance(value, str):  # str subclasses
            return self._clean(str(value), depth, seen, strict, limit)
        if isinstance(value, enum.Enum):
            return self._clean(value.value, depth, seen, strict, limit)
        if isinstance(value, int):  # int subclasses other than bool
            return self._clean(int(value), depth, seen, strict, limit)
        if isinstance(value, (datetime.datetime, datetime.date, datetime.time, uuid.UUID)):
            return value  # orjson encodes these natively
        if isinstance(value, decimal.Decimal):
            return str(value)
        if strict and kind is orjson.Fragment:
            # Re-encoding a finalized event: its pre-encoded parts are ours, valid JSON.
            # (An app's own Fragment never gets here: annotate() made it a repr.)
            return value
        return self.clip(safe_repr(value), limit)

    def _clean_mapping(
        self, value: Mapping[Any, Any], depth: int, seen: set[int], strict: bool, limit: int
    ) -> Any:
        if id(value) in seen:
            return "[cycle]"
        if depth >= self.max_depth:
            return "[max depth]"
        seen.add(id(value))
        try:
            out: dict[str, Any] = {}
            for index, (key, item) in enumerate(value.items()):
                if index >= self.max_items:
                    out["..."] = f"[{len(value) - index} more keys]"
                    break
                name = key if type(key) is str else _key_to_str(key)
                if strict:
                    name = _repair_text(name)
                if self.is_secret(name):
                    out[name] = REDACTED
                else:
                    out[name] = self._clean(item, depth + 1, seen, strict, limit)
            return out
        except Exception as exc:  # a broken Mapping must not break logging
            return f"[unreadable mapping: {type(exc).__name__}]"
        finally:
            seen.discard(id(value))

    def _clean_sequence(
        self, value: Iterable[Any], depth: int, seen: set[int], strict: bool, limit: int
    ) -> Any:
        if id(value) in seen:
            return "[cycle]"
        if depth >= self.max_depth:
            return "[max depth]"
        seen.add(id(value))
        try:
            items = list(value)
            out = [
                self._clean(item, depth + 1, seen, strict, limit)
                for item in items[: self.max_items]
            ]
            if len(items) > self.max_items:
                out.append(f"[{len(items) - self.max_items} more items]")
            return out
        finally:
            seen.discard(id(value))

    # -- encoding --------------------------------------------------------------------

    def encode(self, event: EventDict) -> bytes:
        """JSON bytes for ``event``; never raises, never exceeds ``max_event_bytes``."""
        try:
            # No OPT_NON_STR_KEYS here: it halves orjson's speed, and every key that came
            # through clean() is already a str. A stray one takes the strict path below.
            data = orjson.dumps(event, default=self._encode_default)
        except Exception:
            data = self._encode_strict(event)
        if len(data) > self.max_event_bytes:
            data = self._shrink(event, len(data))
        return data

    def _default(self, value: Any) -> Any:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return self.clip(bytes(value).decode("utf-8", "replace"))
        if isinstance(value, (set, frozenset)):
            return list(value)
        if isinstance(value, decimal.Decimal):
            return str(value)
        return self.clip(safe_repr(value))

    def _encode_strict(self, event: Any, max_string: int | None = None) -> bytes:
        try:
            return orjson.dumps(self.clean(event, strict=True, max_string=max_string))
        except Exception as exc:  # pragma: no cover - clean() output is always encodable
            return orjson.dumps({"encode_error": f"{type(exc).__name__}: {exc}"[:500]})

    def _shrink(self, event: EventDict, original: int) -> bytes:
        marker = {"original_bytes": original, "limit_bytes": self.max_event_bytes}
        smaller = dict(event)
        logs = smaller.get("logs")
        if isinstance(logs, list) and len(logs) > 10:
            smaller["logs"] = [*logs[:5], *logs[-5:]]
            smaller["logs_dropped"] = int(smaller.get("logs_dropped") or 0) + len(logs) - 10
        smaller["truncated"] = marker
        data = self._encode_strict(smaller, max_string=1024)
        if len(data) <= self.max_event_bytes:
            return data
        core: EventDict = {key: smaller[key] for key in _CORE_FIELDS if key in smaller}
        if "error" in smaller:
            core["error"] = smaller["error"]
        core["truncated"] = marker
        data = self._encode_strict(core, max_string=256)
        if len(data) <= self.max_event_bytes:
            return data
        return orjson.dumps(  # pathological: even the core fields are too big
            {
                key: self.clean(event.get(key), strict=True, max_string=64)
                for key in ("event_id", "kind")
            }
            | {"truncated": marker}
        )


def _repair_text(text: str) -> str:
    """Replace what UTF-8 cannot carry (lone surrogates) with visible escapes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _key_to_str(key: Any) -> str:
    if isinstance(key, (bytes, bytearray)):
        return bytes(key).decode("utf-8", "replace")
    if key is None or isinstance(key, (str, int, float)):
        return str(key)
    return safe_repr(key)


def safe_repr(value: Any) -> str:
    """``repr(value)``, or a placeholder when ``__repr__`` itself fails."""
    try:
        return repr(value)
    except Exception:
        return f"<unrepresentable {type(value).__name__}>"
