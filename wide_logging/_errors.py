"""The one exception base of the package, and the checks that raise it."""

from __future__ import annotations

import math


class WideLoggingError(Exception):
    """Base of every error wide_logging raises (only ever at configuration time)."""


class ConfigurationError(WideLoggingError, ValueError):
    """An option has a value that is not allowed; the message says what is."""


def check_number(
    name: str,
    value: object,
    low: float,
    *,
    high: float | None = None,
    integer: bool = False,
    what: str = "",
) -> None:
    """Raise ``ConfigurationError`` unless ``value`` is a finite number (an int if
    ``integer``) between ``low`` and ``high``.

    ``bool`` is refused although it is an ``int`` (``batch_size=True`` is a bug), and so are
    NaN and infinity: ``NaN < low`` is False, so a plain comparison would let NaN through
    to a writer thread that then spins or dies.
    """
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    number = value if isinstance(value, kinds) and not isinstance(value, bool) else None
    if (
        number is None
        or not math.isfinite(number)  # type: ignore[arg-type]
        or number < low  # type: ignore[operator]
        or (high is not None and number > high)  # type: ignore[operator]
    ):
        kind = "an integer" if integer else "a number"
        bounds = f">= {low:g}" if high is None else f"between {low:g} and {high:g}"
        msg = f"{what}{name} must be {kind} {bounds}, got {value!r}"
        raise ConfigurationError(msg)


def check_bool(name: str, value: object, *, what: str = "") -> bool:
    """``value`` if it is a real bool; a string such as ``"false"`` is an error, because
    ``bool("false")`` is True and the option would silently mean its opposite."""
    if not isinstance(value, bool):
        msg = f"{what}{name} must be true or false (a boolean), got {value!r}"
        raise ConfigurationError(msg)
    return value
