"""Taking our own options out of a sink URL before the client library sees it."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .._errors import ConfigurationError
from .._urls import mask_url


def split_options(
    url: str, parsers: Mapping[str, Callable[[str], Any]]
) -> tuple[str, dict[str, Any]]:
    """Return ``url`` without the query options named in ``parsers``, and those options
    parsed. Other query options stay in the URL for the client library."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # "Invalid IPv6 URL", a port out of range
        msg = f"invalid sink URL {mask_url(url)!r}: {exc}"
        raise ConfigurationError(msg) from None
    ours: dict[str, Any] = {}
    theirs: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        parser = parsers.get(key)
        if parser is None:
            theirs.append((key, value))
            continue
        if key in ours:  # (two readers of one URL must not take different ones)
            msg = f"sink option {key}= is given twice"
            raise ConfigurationError(msg)
        try:
            ours[key] = parser(value)
        except ValueError as exc:
            msg = f"sink option {key}={value!r} is not valid: {exc}"
            raise ConfigurationError(msg) from None
    query = urlencode(theirs)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment)), ours


def parse_options(
    options: Mapping[str, Any], parsers: Mapping[str, Callable[[str], Any]], sink: str
) -> dict[str, Any]:
    """Keyword options (``sink_options``) checked by the same parsers as the URL's query:
    numbers may come as numbers or strings, anything else is refused now, not at the first
    write."""
    unknown = set(options) - set(parsers)
    if unknown:
        msg = f"unknown {sink} sink option(s) {sorted(unknown)}; allowed: {sorted(parsers)}"
        raise ConfigurationError(msg)
    parsed: dict[str, Any] = {}
    for key, value in options.items():
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            msg = f"{sink} sink option {key} must be a string or a number, got {value!r}"
            raise ConfigurationError(msg)
        try:
            parsed[key] = parsers[key](str(value))
        except ValueError as exc:
            msg = f"{sink} sink option {key}={value!r} is not valid: {exc}"
            raise ConfigurationError(msg) from None
    return parsed


def non_empty(value: str) -> str:
    if not value:
        msg = "must not be empty"
        raise ValueError(msg)
    return value


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
    if not (number > 0 and math.isfinite(number)):
        msg = f"must be a finite number > 0, got {number}"
        raise ValueError(msg)
    return number
