"""Taking our own options out of a sink URL before the client library sees it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .._errors import ConfigurationError


def split_options(
    url: str, parsers: Mapping[str, Callable[[str], Any]]
) -> tuple[str, dict[str, Any]]:
    """Return ``url`` without the query options named in ``parsers``, and those options
    parsed. Other query options stay in the URL for the client library."""
    parts = urlsplit(url)
    ours: dict[str, Any] = {}
    theirs: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        parser = parsers.get(key)
        if parser is None:
            theirs.append((key, value))
            continue
        try:
            ours[key] = parser(value)
        except ValueError as exc:
            msg = f"sink option {key}={value!r} is not valid: {exc}"
            raise ConfigurationError(msg) from None
    query = urlencode(theirs)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment)), ours


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        number = int(value)
        if number < low:
            msg = f"must be >= {low}, got {number}"
            raise ValueError(msg)
        return number

    return parse


positive_int = _int_at_least(1)
non_negative_int = _int_at_least(0)


def positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        msg = f"must be > 0, got {number}"
        raise ValueError(msg)
    return number
