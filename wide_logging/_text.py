"""App values as text, without ever raising: what the serializer falls back to for values
JSON cannot hold as they are (odd keys, enums, huge integers, broken ``repr``)."""

from __future__ import annotations

import enum
import reprlib
from collections.abc import Mapping
from typing import Any

#: Longest dict key kept as it is; longer ones are cut like values.
MAX_KEY = 256


def repair_text(text: str) -> str:
    """Replace what UTF-8 cannot carry (lone surrogates) with visible escapes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def plain_str(value: str, limit: int) -> str:
    """A ``str`` subclass as a plain, capped ``str``: read through ``str``'s own methods,
    so an override of ``__str__`` or ``__getitem__`` can neither raise nor cost a copy of
    a huge value."""
    size = str.__len__(value)
    head = str.__getitem__(value, slice(0, limit))
    return head if size <= limit else f"{head}...[truncated {size - limit} chars]"


def as_text(value: Any, limit: int) -> str:
    """``value`` as capped text: ``isoformat()`` for dates and times, else ``str()``, else
    its repr; never raises."""
    try:
        isoformat = getattr(value, "isoformat", None)
        text = isoformat() if callable(isoformat) else str(value)
        if type(text) is str:
            return text[:limit]
    except Exception:
        pass
    return safe_repr(value)[:limit]


def enum_value(value: enum.Enum) -> Any:
    try:
        return value.value
    except Exception:
        return safe_repr(value)


def int_text(value: int) -> str:
    """A big int as text; beyond Python's digit limit, its size only."""
    try:
        return str(value)
    except ValueError:
        return f"<int of {value.bit_length()} bits>"


def is_secret_pair(item: tuple[Any, ...] | list[Any], is_secret: Any) -> bool:
    """``(name, value, ...)`` whose name is a secret's: a header pair."""
    return (
        2 <= len(item) <= 8
        and isinstance(item[0], (str, bytes, bytearray))
        and is_secret(key_to_str(item[0]))
    )


def names_a_secret(mapping: Mapping[Any, Any], is_secret: Any) -> bool:
    """A ``{"name": ..., "value": ...}`` (or ``"key"``) entry whose name is a secret's."""
    for field in ("name", "key", "Name", "Key"):
        name = mapping.get(field)
        if isinstance(name, str) and is_secret(name):
            return True
    return False


#: A repr of a key that stops early (a tuple of a million items as a dict key).
_KEY_REPR = reprlib.Repr()
_KEY_REPR.maxstring = _KEY_REPR.maxother = MAX_KEY
_KEY_REPR.maxtuple = _KEY_REPR.maxset = _KEY_REPR.maxfrozenset = 20


def key_to_str(key: Any) -> str:
    if isinstance(key, str):
        return plain_str(key, MAX_KEY)
    if isinstance(key, (bytes, bytearray)):
        return bytes(key[: MAX_KEY * 4]).decode("utf-8", "replace")[:MAX_KEY]
    if key is None or type(key) in (int, float, bool):
        return str(key) if type(key) is not int or key.bit_length() < 64 else int_text(key)
    try:
        return _KEY_REPR.repr(key)[:MAX_KEY]
    except Exception:
        return f"<unrepresentable {type(key).__name__}>"


def safe_repr(value: Any) -> str:
    """``repr(value)``, or a placeholder when ``__repr__`` itself fails."""
    try:
        text = repr(value)
    except Exception:
        return f"<unrepresentable {type(value).__name__}>"
    return text if type(text) is str else f"<unrepresentable {type(value).__name__}>"
