"""Copies of what the app gives an event: JSON-safe, secrets under their keys redacted,
sizes capped, cycles cut (see ``serialize`` for the whole way of a value)."""

from __future__ import annotations

import collections.abc
import datetime
import decimal
import enum
import itertools
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson

from ._errors import ConfigurationError, check_number
from ._secret_names import DEFAULT_REDACT_PATTERN, REDACTED, SecretNames
from ._secrets import scrub_text
from ._text import (
    MAX_KEY,
    as_text,
    enum_value,
    int_text,
    is_secret_pair,
    key_to_str,
    names_a_secret,
    plain_str,
    repair_text,
    safe_repr,
)

_MAX_INT = 2**64 - 1
_MIN_INT = -(2**63)
#: Values that are already JSON-safe copies of themselves.
PLAIN_SCALARS = frozenset({int, float, bool, type(None)})
#: Collections we read (up to the cap) rather than repr: they can be iterated again, so
#: reading them takes nothing from the app. Iterators and generators are left alone.
_READABLE_COLLECTIONS = (
    list,
    tuple,
    set,
    frozenset,
    collections.abc.MappingView,
    collections.abc.Sequence,
    collections.abc.Set,
)
#: Most dict keys whose scrubbed form is remembered.
_KEY_CACHE_LIMIT = 4096


class Cleaner:
    """Redacts and caps what the app gives an event. Configured once; safe to share
    between threads. (:class:`~wide_logging.serialize.Serializer` adds the encoding.)"""

    __slots__ = (
        "_names",
        "_scrubbed_keys",
        "count_refused",
        "known_secret",
        "max_depth",
        "max_event_bytes",
        "max_items",
        "max_logs",
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
        max_logs: int = 50,
        count_refused: Callable[[str], object] | None = None,
    ) -> None:
        if isinstance(redact, (str, bytes, Mapping)) or not isinstance(redact, Iterable):
            msg = f"redact must be a list of key names, got {redact!r}"
            raise ConfigurationError(msg)
        extra = list(redact)
        for key in extra:
            if not isinstance(key, str) or not key:
                msg = f"redact entries must be non-empty strings, got {key!r}"
                raise ConfigurationError(msg)
        check_number("max_string", max_string, 16, high=10**7, integer=True)
        check_number("max_items", max_items, 1, high=10**5, integer=True)
        check_number("max_depth", max_depth, 1, high=100, integer=True)
        check_number("max_event_bytes", max_event_bytes, 1024, high=16 * 1024**2, integer=True)
        check_number("max_logs", max_logs, 0, integer=True)
        if redact_pattern is not None and (
            not isinstance(redact_pattern, str) or not redact_pattern
        ):
            msg = (
                "redact_pattern must be a regular expression, or null to turn it off, "
                f"got {redact_pattern!r}"
            )
            raise ConfigurationError(msg)
        try:
            pattern = re.compile(redact_pattern, re.IGNORECASE) if redact_pattern else None
        except re.error as exc:
            msg = f"redact_pattern is not a valid regular expression: {exc}"
            raise ConfigurationError(msg) from None
        self._names = SecretNames(extra, pattern)
        #: Decisions of ``is_secret`` so far, by key: a lookup here (None: not decided yet)
        #: saves the call on the request path.
        self.known_secret = self._names.known
        self._scrubbed_keys: dict[str, str] = {}
        self.max_string = max_string
        self.max_items = max_items
        self.max_depth = max_depth
        self.max_event_bytes = max_event_bytes
        #: Log records attached to one event; the rest are counted in ``logs_dropped``.
        self.max_logs = max_logs
        #: Called with the dotted path of each annotation refused because the library owns
        #: that field (the handler counts them by path).
        self.count_refused = count_refused if count_refused is not None else _ignore
        self._configured()

    def _configured(self) -> None:
        """Called at the end of ``__init__``: what a subclass derives from the options."""

    # -- redaction -------------------------------------------------------------------

    def is_secret(self, key: str) -> bool:
        """True when values under ``key`` (or any dotted part of it) must never leave the
        process."""
        cached = self.known_secret.get(key)  # the names' own cache, one call sooner
        return cached if cached is not None else self._names(key)

    def scrub(self, text: str) -> str:
        """``text`` with secrets it names masked (see ``_secrets.scrub_text``); ordinary
        text comes back as it is, after one cheap check."""
        return scrub_text(text, self._names)

    def scrub_strings(self, value: Any) -> Any:
        """``value`` (the output of :meth:`copy`) with every string in it, dict keys
        included, passed through :meth:`scrub`.

        Dicts and lists come back as new containers, always: the event's own ones may still
        get a late ``annotate()`` from another thread, and what is encoded must be exactly
        what was scanned."""
        kind = type(value)
        if kind is str:
            return scrub_text(value, self._names)
        if kind is dict:
            out: dict[Any, Any] = {}
            scrub_key = self._scrub_key
            # .copy(): one step in C, so another thread's writes cannot interleave
            for key, item in value.copy().items():
                out[scrub_key(key) if type(key) is str else key] = (
                    item if type(item) in PLAIN_SCALARS else self.scrub_strings(item)
                )
            return out
        if kind is list:
            return [
                item if type(item) in PLAIN_SCALARS else self.scrub_strings(item)
                for item in value[:]
            ]
        return value

    def _scrub_key(self, key: str) -> str:
        """A dict key scrubbed like text (``{"postgres://app:pw@db": 10}``); keys repeat,
        so the answers are remembered (up to a bound)."""
        known = self._scrubbed_keys.get(key)
        if known is None:
            known = scrub_text(key, self._names)
            if len(self._scrubbed_keys) < _KEY_CACHE_LIMIT:
                self._scrubbed_keys[key] = known
        return known

    # -- cleaning --------------------------------------------------------------------

    def clip(self, text: str, limit: int | None = None) -> str:
        limit = self.max_string if limit is None else limit
        if len(text) <= limit:
            return text
        cut = limit
        if not text[limit].isspace():
            # A word cut in half goes too: a secret cut before what makes it recognisable
            # (the "@" after a URL's password) would otherwise be stored as it is.
            window = max(0, limit - 256)
            word = max(text.rfind(" ", window, limit), text.rfind("\n", window, limit))
            scheme = text.rfind("://", max(word, window), limit)  # a URL inside a long word
            stop = max(scheme - 16, word, 0)  # (a scheme name is short)
            while scheme > stop and (text[scheme - 1].isalnum() or text[scheme - 1] in "+.-"):
                scheme -= 1
            cut = max(word, scheme, 0) or limit
        return f"{text[:cut]}...[truncated {len(text) - cut} chars]"

    def clean(self, value: Any, *, strict: bool = False, max_string: int | None = None) -> Any:
        """A JSON-safe copy of ``value`` with secrets redacted (under secret keys and inside
        text) and sizes capped: :meth:`copy`, then :meth:`scrub_strings`.

        ``strict`` also repairs what only orjson would reject (lone surrogates, integers
        beyond 64 bits); it is the slow path used after a failed encode.
        """
        return self.scrub_strings(self.copy(value, strict=strict, max_string=max_string))

    def copy(self, value: Any, *, strict: bool = False, max_string: int | None = None) -> Any:
        """A JSON-safe copy of ``value``: values under secret keys redacted, sizes capped,
        cycles cut. Text is not scanned for secrets yet (:meth:`scrub_strings` does that
        for the events that are kept)."""
        limit = max_string or self.max_string
        if not strict:  # the common annotations first: a number, a short string, a flat dict
            kind = type(value)
            if kind in PLAIN_SCALARS or (kind is str and len(value) <= limit):
                return value
            if kind is dict:
                flat = self.copy_flat_dict(value, limit)
                if flat is not None:
                    return flat
        return self._clean(value, 0, set(), strict, limit)

    def copy_walked(self, value: Any, limit: int) -> Any:
        """:meth:`copy` by the full walk, for a caller that has tried the shortcuts above
        itself (``WideEvent.add_fields``): a nested dict is not tried as a flat one twice."""
        return self._clean(value, 0, set(), False, limit)

    def copy_flat_dict(self, value: dict[Any, Any], limit: int) -> dict[str, Any] | None:
        """``user={"id": 7, "plan": "pro"}`` copied without the recursive walk; None when
        any key or value needs the full treatment (a nested value, a long string, a key
        that names a secret or has not been looked at yet)."""
        if len(value) > self.max_items:
            return None
        # Copied first (one step in C), then checked: what is checked is what is returned,
        # even while another thread of the app changes ``value``.
        copied = value.copy()
        known_secret = self.known_secret
        for key, item in copied.items():
            kind = type(item)
            if (
                type(key) is not str
                or (kind not in PLAIN_SCALARS and (kind is not str or len(item) > limit))
                or known_secret.get(key) is not False  # a secret's name, or not asked yet
            ):
                return None
        if "value" in copied and names_a_secret(copied, self.is_secret):
            return None  # {"name": "Authorization", "value": ...}: redacted the long way
        return copied

    def _clean(self, value: Any, depth: int, seen: set[int], strict: bool, limit: int) -> Any:
        kind = type(value)
        if kind is str:
            text = self.clip(value, limit)
            return repair_text(text) if strict else text
        if value is None or kind is bool or kind is float:
            return value
        if kind is int:
            return value if not strict or _MIN_INT <= value <= _MAX_INT else int_text(value)
        if kind is dict or isinstance(value, Mapping):
            return self._clean_mapping(value, depth, seen, strict, limit)
        if kind is list or kind is tuple:  # the common ones, before the slower checks below
            return self._clean_sequence(value, depth, seen, strict, limit)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return self._bytes_text(value, limit)
        if isinstance(value, str):  # a subclass: its own methods may raise or lie
            text = plain_str(value, limit)
            return repair_text(text) if strict else text
        if isinstance(value, enum.Enum):
            return self._clean(enum_value(value), depth, seen, strict, limit)
        if isinstance(value, int):  # int subclasses other than bool
            return self._clean(int.__int__(value), depth, seen, strict, limit)
        if isinstance(value, (datetime.datetime, datetime.date, datetime.time, uuid.UUID)):
            # orjson encodes these natively, but not an aware time or a subclass
            return as_text(value, limit) if strict else value
        if isinstance(value, decimal.Decimal):
            return self.clip(str(value), limit)
        if strict and kind is orjson.Fragment:
            # Re-encoding a finalized event: its pre-encoded parts are ours, valid JSON.
            # (An app's own Fragment never gets here: annotate() made it a repr.)
            return value
        if isinstance(value, _READABLE_COLLECTIONS):
            return self._clean_sequence(value, depth, seen, strict, limit)
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
            known_secret = self.known_secret
            for index, (key, item) in enumerate(value.items()):
                if index >= self.max_items:
                    out["..."] = f"[{len(value) - index} more keys]"
                    break
                name = key if type(key) is str and len(key) <= MAX_KEY else key_to_str(key)
                # strict re-encodes a finished event: the app's parts were redacted by name
                # when they came in, and the library's (timings.auth_ms) must stay
                if strict:
                    out[repair_text(name)] = self._clean(item, depth + 1, seen, strict, limit)
                    continue
                secret = known_secret.get(name)
                if secret is None:
                    secret = self.is_secret(name)
                out[name] = (
                    REDACTED if secret else self._clean(item, depth + 1, seen, strict, limit)
                )
            if (
                not strict
                and "value" in out
                # the names as given too: a short max_string clips "Proxy-Authorization"
                and (names_a_secret(out, self.is_secret) or names_a_secret(value, self.is_secret))
            ):
                out["value"] = REDACTED  # {"name": "Authorization", "value": ...} (HAR, AWS)
            return out
        except Exception as exc:  # a broken Mapping must not break logging
            return f"[unreadable mapping: {type(exc).__name__}]"
        finally:
            seen.discard(id(value))

    def _clean_sequence(
        self, value: Any, depth: int, seen: set[int], strict: bool, limit: int
    ) -> Any:
        if id(value) in seen:
            return "[cycle]"
        if depth >= self.max_depth:
            return "[max depth]"
        seen.add(id(value))
        cap = self.max_items
        try:
            # Never more than the cap (+1 to know there is more): a list of 10**7 items
            # costs what a list of 200 does.
            kind = type(value)
            items = (
                value[: cap + 1]
                if kind is list or kind is tuple
                else list(itertools.islice(value, cap + 1))
            )
            if not strict and kind is tuple and is_secret_pair(value, self.is_secret):
                # a lone ("X-Api-Key", value)
                return [self._clean(value[0], depth + 1, seen, strict, limit)] + [REDACTED] * (
                    len(value) - 1
                )
            out = [self._clean_item(item, depth, seen, strict, limit) for item in items[:cap]]
            if len(items) > cap:
                total = len(value) if isinstance(value, collections.abc.Sized) else None
                more = f"{total - cap}" if total is not None else "more than 0"
                out.append(f"[{more} more items]")
            return out
        except Exception as exc:  # a broken collection must not break logging
            return f"[unreadable {type(value).__name__}: {type(exc).__name__}]"
        finally:
            seen.discard(id(value))

    def _clean_item(self, item: Any, depth: int, seen: set[int], strict: bool, limit: int) -> Any:
        """One item of a list. A ``(name, value, ...)`` pair whose name is a secret's (a
        header list: ``request.headers.items()``, ASGI's ``scope["headers"]``) keeps its name
        only."""
        if type(item) in PLAIN_SCALARS and not strict:  # (strict: ints beyond 64 bits)
            return item
        if not strict and isinstance(item, (tuple, list)) and is_secret_pair(item, self.is_secret):
            return [self._clean(item[0], depth + 2, seen, strict, limit)] + [REDACTED] * (
                len(item) - 1
            )
        return self._clean(item, depth + 1, seen, strict, limit)

    def _bytes_text(self, value: bytes | bytearray | memoryview, limit: int) -> str:
        """Bytes as text, decoding at most what the cap can show (4 bytes per character)."""
        total = value.nbytes if isinstance(value, memoryview) else len(value)
        head = bytes(value[: limit * 4])
        text = head.decode("utf-8", "replace")
        if len(head) == total and len(text) <= limit:
            return text
        return f"{text[:limit]}...[truncated, {total} bytes in all]"


def _ignore(path: str) -> None:
    """No one counts refused annotations (a Serializer outside a handler)."""
