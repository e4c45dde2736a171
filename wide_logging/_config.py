"""Reading options from the environment, and the ``service`` option every event carries.

Options given in code win; ``WIDE_LOGGING_*`` variables fill in what was not given; an
empty variable counts as not set. A value that cannot be used is a ``ConfigurationError``
naming the variable, raised where the handler (or consumer) is configured.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

from ._errors import ConfigurationError


def env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else None


def env_float(name: str) -> float | None:
    value = env(name)
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        msg = f"environment variable {name} must be a finite number, got {value!r}"
        raise ConfigurationError(msg) from None
    return number


def service_fields(service: str | Mapping[str, Any] | None) -> dict[str, str]:
    """The ``service`` object: a name or a dict (name, version, environment), completed
    from ``WIDE_LOGGING_SERVICE`` (or OpenTelemetry's ``OTEL_SERVICE_NAME``),
    ``WIDE_LOGGING_SERVICE_VERSION`` and ``WIDE_LOGGING_ENVIRONMENT``."""
    if service is None:
        service = {}
    elif isinstance(service, str):
        service = {"name": service}
    elif not isinstance(service, Mapping):
        msg = f"service must be a name or a dict with name/version/environment, got {service!r}"
        raise ConfigurationError(msg)
    unknown = set(service) - {"name", "version", "environment"}
    if unknown:
        msg = f"unknown service field(s) {sorted(unknown)}; allowed: name, version, environment"
        raise ConfigurationError(msg)
    for key, value in service.items():
        if value is not None and (not isinstance(value, str) or not value):
            msg = f"service {key} must be a non-empty string, got {value!r}"
            raise ConfigurationError(msg)
    fields = {
        "name": service.get("name")
        or env("WIDE_LOGGING_SERVICE")
        or env("OTEL_SERVICE_NAME")
        or "unknown_service",
        "version": service.get("version") or env("WIDE_LOGGING_SERVICE_VERSION"),
        "environment": service.get("environment") or env("WIDE_LOGGING_ENVIRONMENT"),
    }
    return {key: value for key, value in fields.items() if value is not None}
