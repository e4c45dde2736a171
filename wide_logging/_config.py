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


def _option(default: float, low: float, high: float, *, whole: bool = False) -> Any:
    """A pipeline option: its default and the bounds it is checked against."""
    return dataclasses.field(default=default, metadata={"bounds": (low, high, whole)})


@dataclass(frozen=True)
class PipelineOptions:
    """The pipeline's options, each declared here once: its default and its bounds.

    ``WideEventHandler(batch_size=..., ...)`` and ``Pipeline(..., batch_size=...)`` take
    them as keywords; an unknown one, or a value out of bounds, is a ``ConfigurationError``
    naming it (docs/configuration.md describes each).
    """

    batch_size: int = _option(100, 1, 1_000_000, whole=True)
    flush_interval: float = _option(1.0, 0.001, 3600)
    queue_size: int = _option(10_000, 1, 10**9, whole=True)
    queue_bytes: int = _option(32 * 1024 * 1024, 1024, 2**50, whole=True)
    max_retries: int = _option(3, 0, 100, whole=True)
    retry_backoff: float = _option(0.1, 0, 60)
    breaker_cooldown: float = _option(5.0, 0, 86400)
    replay_rate: float = _option(10_000.0, 1, 10**9)
    shutdown_timeout: float = _option(5.0, 0, 3600)
    sink_timeout: float = _option(5.0, 0.01, 3600)
    metrics_interval: float = _option(60.0, 1, 86400)

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            low, high, whole = field.metadata["bounds"]
            check_number(field.name, getattr(self, field.name), low, high=high, integer=whole)

    @classmethod
    def from_keywords(cls, options: Mapping[str, Any]) -> PipelineOptions:
        unknown = sorted(set(options) - PIPELINE_OPTIONS)
        if unknown:
            msg = f"unknown option(s) {unknown}; see docs/configuration.md"
            raise ConfigurationError(msg)
        return cls(**options)


#: The names of the pipeline's options (its fields).
PIPELINE_OPTIONS = frozenset(field.name for field in dataclasses.fields(PipelineOptions))
