"""Options: the pipeline's (declared once, in :class:`PipelineOptions`), those read from
the environment, and the ``service`` option every event carries.

Options given in code win; ``WIDE_LOGGING_*`` variables fill in what was not given; an
empty variable counts as not set. A value that cannot be used is a ``ConfigurationError``
naming the variable, raised where the handler (or consumer) is configured.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import ConfigurationError, check_number


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


@dataclass(frozen=True)
class PipelineOptions:
    """The pipeline's options, their defaults and their bounds: declared here once.

    ``WideEventHandler(batch_size=..., ...)`` and ``Pipeline(..., batch_size=...)`` take
    them as keywords; an unknown one, or a value out of bounds, is a ``ConfigurationError``
    naming it (docs/configuration.md describes each).
    """

    batch_size: int = 100
    flush_interval: float = 1.0
    queue_size: int = 10_000
    queue_bytes: int = 32 * 1024 * 1024
    max_retries: int = 3
    retry_backoff: float = 0.1
    breaker_cooldown: float = 5.0
    replay_rate: float = 10_000.0
    shutdown_timeout: float = 5.0
    sink_timeout: float = 5.0
    metrics_interval: float = 60.0

    def __post_init__(self) -> None:
        for name, (low, high, integer) in _PIPELINE_BOUNDS.items():
            check_number(name, getattr(self, name), low, high=high, integer=integer)

    @classmethod
    def from_keywords(cls, options: Mapping[str, Any]) -> PipelineOptions:
        unknown = sorted(set(options) - PIPELINE_OPTIONS)
        if unknown:
            msg = f"unknown option(s) {unknown}; see docs/configuration.md"
            raise ConfigurationError(msg)
        return cls(**options)


#: The names of the pipeline's options (its fields).
PIPELINE_OPTIONS = frozenset(field.name for field in dataclasses.fields(PipelineOptions))

#: (lowest, highest, whole number) of each pipeline option.
_PIPELINE_BOUNDS: dict[str, tuple[float, float, bool]] = {
    "batch_size": (1, 1_000_000, True),
    "flush_interval": (0.001, 3600, False),
    "queue_size": (1, 10**9, True),
    "queue_bytes": (1024, 2**50, True),
    "max_retries": (0, 100, True),
    "retry_backoff": (0, 60, False),
    "breaker_cooldown": (0, 86400, False),
    "replay_rate": (1, 10**9, False),
    "shutdown_timeout": (0, 3600, False),
    "sink_timeout": (0.01, 3600, False),
    "metrics_interval": (1, 86400, False),
}
