"""The one exception base of the package."""

from __future__ import annotations


class WideLoggingError(Exception):
    """Base of every error wide_logging raises (only ever at configuration time)."""


class ConfigurationError(WideLoggingError, ValueError):
    """An option has a value that is not allowed; the message says what is."""


def check_number(
    name: str, value: object, low: float, *, integer: bool = False, what: str = ""
) -> None:
    """Raise ``ConfigurationError`` unless ``value`` is a number (an int if ``integer``)
    >= ``low``. ``bool`` is refused although it is an ``int``: ``batch_size=True`` is a bug."""
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value < low:  # type: ignore[operator]
        kind = "an integer" if integer else "a number"
        msg = f"{what}{name} must be {kind} >= {low:g}, got {value!r}"
        raise ConfigurationError(msg)
