"""The one exception base of the package."""

from __future__ import annotations


class WideLoggingError(Exception):
    """Base of every error wide_logging raises (only ever at configuration time)."""


class ConfigurationError(WideLoggingError, ValueError):
    """An option has a value that is not allowed; the message says what is."""
