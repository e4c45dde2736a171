"""A handler's options, resolved once: what was given in code, then the ``WIDE_LOGGING_*``
variables, then the defaults — checked here, so a handler is either fully configured or
not built at all.

:class:`HandlerOptions` is the one frozen object of everything a ``WideEventHandler`` is
configured with. Its own fields are declared below; the pipeline's options are declared by
``_config.PipelineOptions`` and the event's by ``_clean.Cleaner`` (its signature), each in
the one place that uses them, and gathered here by name.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, cast

from ._app_sampler import is_sampler
from ._clean import Cleaner
from ._config import PIPELINE_OPTIONS, PipelineOptions, env, env_float, service_fields
from ._errors import ConfigurationError, check_bool
from .sampling import TailSampler
from .typing import Sampler, Sink

DEFAULT_SINK = "file:wide-logs/events.jsonl"

#: The event's options: those the serializer declares (``_clean.Cleaner``).
EVENT_OPTIONS = frozenset(inspect.signature(Cleaner.__init__).parameters) - {
    "self",
    "count_refused",
}

#: The handler's own options (the keywords; ``sampling`` resolves to the ``sampler`` field).
HANDLER_OPTIONS = frozenset(
    {"sink", "sink_options", "fallback", "service", "sampling", "log_events", "metrics_events"}
)

SinkSpec = str | Sink


@dataclass(frozen=True)
class HandlerOptions:
    """Everything a handler is configured with (docs/configuration.md describes each)."""

    level: int | str = logging.NOTSET
    #: The primary sink: a URL or a sink object (``WIDE_LOGGING_SINK``, else a local file).
    sink: SinkSpec = DEFAULT_SINK
    #: Options for a sink given by URL (``sink_options`` of ``sinks.open_sink``).
    sink_options: Mapping[str, Any] | None = None
    #: The sinks tried, in order, when the primary refuses (``WIDE_LOGGING_FALLBACK``: URLs
    #: separated by spaces); a file last is the spool.
    fallback: tuple[SinkSpec, ...] = ()
    #: The ``service`` object every event carries (``WIDE_LOGGING_SERVICE``, ...).
    service: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: The policy: a ``TailSampler`` (from the ``sampling`` dict and ``WIDE_LOGGING_*``),
    #: or the app's own sampler object.
    sampler: Sampler = dataclasses.field(default_factory=TailSampler)
    log_events: bool = True
    metrics_events: bool = False
    pipeline: PipelineOptions = dataclasses.field(default_factory=PipelineOptions)
    #: The serializer's options (``redact``, ``max_string``, ...), as given.
    event: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def resolve(
        cls, level: object = logging.NOTSET, given: Mapping[str, Any] | None = None
    ) -> HandlerOptions:
        """The options from a handler's keywords, completed from the environment.
        An unknown option or an unusable value is a ``ConfigurationError`` naming it; the
        event's options are checked by the serializer the handler builds with them."""
        given = given or {}
        unknown = sorted(set(given) - HANDLER_OPTIONS - PIPELINE_OPTIONS - EVENT_OPTIONS)
        if unknown:
            msg = f"unknown option(s) {unknown}; see docs/configuration.md"
            raise ConfigurationError(msg)
        sampling = given.get("sampling")
        return cls(
            level=check_level(level),
            sink=_sink(given.get("sink")),
            sink_options=_sink_options(given.get("sink_options")),
            fallback=_fallback(given.get("fallback")),
            service=MappingProxyType(service_fields(given.get("service"))),
            sampler=cast(Sampler, sampling) if is_sampler(sampling) else sampler_from(sampling),
            log_events=check_bool("log_events", given.get("log_events", True)),
            metrics_events=check_bool("metrics_events", given.get("metrics_events", False)),
            pipeline=PipelineOptions.from_keywords(
                {name: value for name, value in given.items() if name in PIPELINE_OPTIONS}
            ),
            event=MappingProxyType(
                {name: value for name, value in given.items() if name in EVENT_OPTIONS}
            ),
        )


def check_level(level: object) -> int | str:
    """A logging level as ``logging`` takes it, or a ConfigurationError naming the option
    (``logging`` itself raises a bare ValueError, or takes ``True`` as level 1)."""
    if isinstance(level, str) and isinstance(logging.getLevelName(level.upper()), int):
        return level.upper()  # a standard name, or one registered with addLevelName()
    if isinstance(level, int) and not isinstance(level, bool) and level >= 0:
        return level
    msg = (
        f"level must be a logging level (DEBUG, INFO, WARNING, ...) or a number >= 0, got {level!r}"
    )
    raise ConfigurationError(msg)


def _sink(sink: object) -> SinkSpec:
    if sink is None:
        return env("WIDE_LOGGING_SINK") or DEFAULT_SINK
    if isinstance(sink, str) and sink.strip():
        return sink
    if not isinstance(sink, str) and hasattr(sink, "write") and hasattr(sink, "close"):
        return cast(Sink, sink)
    got = "an empty string" if isinstance(sink, str) else type(sink).__name__
    msg = f"sink must be a sink URL (docs/configuration.md) or a sink object, got {got}"
    raise ConfigurationError(msg)


def _sink_options(options: object) -> Mapping[str, Any] | None:
    if options is None:
        return None
    if not isinstance(options, Mapping):
        msg = f"sink_options must be a dict, got {type(options).__name__}"
        raise ConfigurationError(msg)
    return MappingProxyType(dict(options))  # (a copy: the caller's dict may change later)


def _fallback(fallback: object) -> tuple[SinkSpec, ...]:
    if fallback is None or fallback == "":
        return tuple((env("WIDE_LOGGING_FALLBACK") or "").split())
    if isinstance(fallback, str) or not isinstance(fallback, Iterable):
        return (cast(SinkSpec, fallback),)
    return tuple(fallback)


def sampler_from(sampling: object) -> TailSampler:
    """The built-in policy from a dict of options (or a ``TailSampler`` built in code),
    completed by the ``WIDE_LOGGING_*`` variables."""
    if isinstance(sampling, TailSampler):
        return sampling
    if sampling is not None and not isinstance(sampling, Mapping):
        msg = (
            "sampling must be a dict of options or a sampler object (with decide, "
            f"decide_log and explain methods), got {_described(sampling)}"
        )
        raise ConfigurationError(msg)
    merged = dict(sampling or {})
    from_environment: list[str] = []
    for key, variable in (
        ("normal_rate", "WIDE_LOGGING_NORMAL_RATE"),
        ("slow_ms", "WIDE_LOGGING_SLOW_MS"),
        ("key", "WIDE_LOGGING_SAMPLING_KEY"),
    ):
        value = env(variable) if key == "key" else env_float(variable)
        if key not in merged and value is not None:
            merged[key] = value
            from_environment.append(variable)
    try:
        return TailSampler.from_config(merged)
    except ConfigurationError as exc:
        if not from_environment:
            raise
        msg = f"{exc} (options set by environment variables: {', '.join(from_environment)})"
        raise ConfigurationError(msg) from None


def _described(value: object) -> str:
    if isinstance(value, type):
        return f"the class {value.__name__} (an instance is needed)"
    return type(value).__name__
