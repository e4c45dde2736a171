"""WideEventHandler: the ``logging.Handler`` that owns the policy and the pipeline.

Built from plain keyword arguments, so ``logging.config.dictConfig`` can create it::

    "handlers": {"wide": {"class": "wide_logging.WideEventHandler",
                          "sink": "file:wide-logs/events.jsonl",
                          "sampling": {"normal_rate": 0.02, "slow_ms": 1000}}}

It does three things: attaches log records to the event of the request they belong to,
turns records outside any request into their own ``kind: log`` events, and takes finished
events from the middleware (``submit``): sample, encode, hand off. The most recently
created open handler is the one a middleware without an explicit ``handler=`` uses.
"""

from __future__ import annotations

import inspect
import logging
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, cast

import orjson

from . import metrics
from ._app_sampler import AppSampler, is_sampler
from ._app_sampler import state as app_sampler
from ._clean import Cleaner
from ._config import PIPELINE_OPTIONS, PipelineOptions, env, env_float, service_fields
from ._errors import ConfigurationError, check_bool
from ._ids import match_request_id, new_request_id, trace_id_from_traceparent
from ._internal_log import show_if_nobody_else_does
from ._records import record_extra, record_message
from ._registry import Registry, taps
from .context import current_event
from .event import WideEvent
from .fields import Resource, outer_fields
from .metrics import Metrics
from .pipeline import Pipeline, in_writer_thread
from .sampling import TailSampler
from .serialize import Serializer
from .sinks import open_sink
from .sinks.file import RotatingFileSink
from .spool import Spool
from .typing import Decision, Sampler, Sink

_internal = logging.getLogger("wide_logging.internal")

DEFAULT_SINK = "file:wide-logs/events.jsonl"
DEFAULT_SPOOL_NAME = "spool/events.jsonl"

_handlers: Registry[WideEventHandler] = Registry()
_default_lock = threading.Lock()
#: What decides when a sampler of the app's own raises.
_BUILT_IN_SAMPLER = TailSampler()


def _check_level(level: object) -> int | str:
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


def _sink_list(value: str | Sink | Iterable[str | Sink] | None) -> list[str | Sink]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, Iterable):
        return [value]
    return list(value)


def _default_spool(primary: Sink) -> RotatingFileSink:
    """``spool/events.jsonl`` beside a file sink, else under ``./wide-logs/``."""
    directory = primary.path.parent if isinstance(primary, RotatingFileSink) else "wide-logs"
    return RotatingFileSink(f"{directory}/{DEFAULT_SPOOL_NAME}")


class WideEventHandler(logging.Handler):
    """A logging handler that writes sampled wide events through a background pipeline.

    Every option is keyword-only and JSON-like; see docs/configuration.md for all of them.
    Options not given fall back to ``WIDE_LOGGING_*`` environment variables, then to the
    defaults. Besides those in the signature, ``options`` are each declared once, with its
    default and bounds, where it is used: the pipeline's (``batch_size``, ``flush_interval``,
    ``queue_size``, ``queue_bytes``, ``max_retries``, ``retry_backoff``, ``breaker_cooldown``,
    ``replay_rate``, ``shutdown_timeout``, ``sink_timeout``, ``metrics_interval``) in
    ``_config.PipelineOptions``, the event's (``redact``, ``redact_pattern``,
    ``max_string``, ``max_items``, ``max_depth``, ``max_event_bytes``, ``max_logs``) in
    ``_clean.Cleaner``. Invalid or unknown options raise ``ConfigurationError`` (a
    ``ValueError``) here, never later.
    """

    def __init__(
        self,
        level: int | str = logging.NOTSET,
        *,
        sink: str | Sink | None = None,
        sink_options: Mapping[str, Any] | None = None,
        service: str | Mapping[str, Any] | None = None,
        sampling: Mapping[str, Any] | Sampler | None = None,
        fallback: str | Sink | Iterable[str | Sink] | None = None,
        log_events: bool = True,
        metrics_events: bool = False,
        **options: Any,
    ) -> None:
        # Closed until fully built: logging.shutdown() may flush a handler whose
        # configuration was rejected halfway.
        self.closed = True
        super().__init__(_check_level(level))
        unknown = sorted(set(options) - PIPELINE_OPTIONS - EVENT_OPTIONS)
        if unknown:
            msg = f"unknown option(s) {unknown}; see docs/configuration.md"
            raise ConfigurationError(msg)
        pipeline_options = PipelineOptions.from_keywords(  # (checked before any sink opens)
            {name: value for name, value in options.items() if name in PIPELINE_OPTIONS}
        )
        self.metrics = Metrics()
        self.serializer = Serializer(
            **{name: value for name, value in options.items() if name in EVENT_OPTIONS},
            count_refused=self._count_refused,
        )
        #: The policy as configured: a TailSampler, or the app's own sampler object.
        self.sampler: Sampler
        #: What ``submit()`` asks: the sampler itself, or the app's wrapped (AppSampler).
        self._decider: Sampler
        if isinstance(sampling, TailSampler):  # built in code: used as it is
            self.sampler = self._decider = sampling
        elif is_sampler(sampling):
            self.sampler = cast(Sampler, sampling)
            self._decider = AppSampler(self.sampler)
        else:
            self.sampler = self._decider = sampler_from_options(sampling)
        self._sampler_failed = False
        self.log_events = check_bool("log_events", log_events)
        check_bool("metrics_events", metrics_events)
        self._resource = Resource(service_fields(service))

        if sink_options is not None and not isinstance(sink_options, Mapping):
            msg = f"sink_options must be a dict, got {type(sink_options).__name__}"
            raise ConfigurationError(msg)
        if (
            sink is not None
            and (not isinstance(sink, str) or not sink.strip())
            and not (hasattr(sink, "write") and hasattr(sink, "close"))
        ):
            got = "an empty string" if isinstance(sink, str) else type(sink).__name__
            msg = f"sink must be a sink URL (docs/configuration.md) or a sink object, got {got}"
            raise ConfigurationError(msg)
        primary = open_sink(sink or env("WIDE_LOGGING_SINK") or DEFAULT_SINK, sink_options)
        env_fallback = (env("WIDE_LOGGING_FALLBACK") or "").split()  # space-separated URLs
        chain = [open_sink(s) for s in _sink_list(fallback or env_fallback or None)]
        last = chain[-1] if chain else None
        if isinstance(last, RotatingFileSink):  # the chain names its own spool
            spool_sink = last
            chain.pop()
        else:
            spool_sink = _default_spool(primary)
        if isinstance(primary, RotatingFileSink) and primary.path.resolve() == (
            spool_sink.path.resolve()
        ):
            msg = f"the spool file must differ from the sink file ({primary.path})"
            raise ConfigurationError(msg)
        self.pipeline = Pipeline(
            [primary, *chain],
            Spool(spool_sink, self.metrics),
            metrics=self.metrics,
            tick=self._metrics_event if metrics_events else None,
            options=pipeline_options,
        )
        self.closed = False
        _handlers.register(self)

    # -- events ------------------------------------------------------------------------

    def new_event(
        self,
        kind: str = "http.request",
        request_id: str | None = None,
        traceparent: str | None = None,
    ) -> WideEvent:
        """Open an event; validates the incoming request id and trace context."""
        trace_id = trace_id_from_traceparent(traceparent) if traceparent else None
        if request_id is None or match_request_id(request_id) is None:
            request_id = trace_id or new_request_id()
        return WideEvent(kind, self.serializer, request_id, trace_id)

    def submit(self, event: WideEvent) -> Decision | None:
        """Decide, encode and hand off a finished event. Never raises."""
        try:
            try:
                decision = event.decide(self._decider)
            except Exception:
                decision = self._decide_without_sampler(event)
            self.metrics.record_decision(decision.counter)
            if taps:
                self._tap(event, decision)
            elif not decision.keep:
                event.seal()
            else:  # kept: build, encode, hand off; expensive work only for kept events
                fields = event.finalize(self.resource(), decision.fields)
                self.pipeline.put(self.serializer.encode(fields), decision)
            return decision
        except Exception:
            self.metrics.inc("dropped.internal_error")
            _internal.exception("wide_logging could not submit an event")
            return None

    def _decide_without_sampler(self, event: WideEvent) -> Decision:
        """A sampler of the app's own raised: the built-in policy decides (errors, 5xx and
        slow requests kept), so a broken sampler never costs an error event."""
        self.metrics.inc("sampler_errors")
        if not self._sampler_failed:
            self._sampler_failed = True
            _internal.exception(
                "wide_logging: the sampler %s raised; the built-in policy decides instead "
                "(counted in sampler_errors, not logged again)",
                type(self.sampler).__name__,
            )
        return event.decide(_BUILT_IN_SAMPLER)

    @property
    def service(self) -> dict[str, str]:
        """The ``service`` object every event of this handler carries."""
        return self._resource.service

    def _count_refused(self, path: str) -> None:
        self.metrics.tally(f"annotations_refused.{path}")

    def resource(self) -> dict[str, Any]:
        """The fields every event of this process carries: service, host, process
        (``fields.Resource``)."""
        return self._resource.fields()

    def _metrics_event(self) -> bytes:
        """A ``kind: metrics`` event with this process's numbers (see docs/metrics.md)."""
        now = time.time()
        numbers = metrics.snapshot()
        # sink names hold dots and colons: a list keeps them out of field names
        numbers["sinks"] = [{"name": name, **values} for name, values in numbers["sinks"].items()]
        event = outer_fields("metrics", int(now * 1000), self.resource())
        event["sampling"] = {"rule": "metrics", "rate": 1.0}
        event["metrics"] = numbers
        return self.serializer.encode(event)

    def _tap(self, event: WideEvent, decision: Decision) -> None:
        sampling: dict[str, Any] = dict(decision.fields)
        if not decision.keep:
            sampling["sampled_out"] = True
        fields = orjson.loads(self.serializer.encode(event.finalize(self.resource(), sampling)))
        for tap in list(taps):
            tap(fields, decision)

    # -- logging.Handler ---------------------------------------------------------------

    def handle(self, record: logging.LogRecord) -> bool:
        # No handler lock: emit is thread-safe on its own, and request threads must not
        # queue up behind each other to log.
        if record.name.startswith("wide_logging"):
            show_if_nobody_else_does(record, WideEventHandler)  # in an event it would loop
            return False
        result = self.filter(record)
        if isinstance(result, logging.LogRecord):
            record = result
        if result:
            self.emit(record)
        return bool(result)

    def emit(self, record: logging.LogRecord) -> None:
        if in_writer_thread():
            return  # sink libraries' logs, from our own threads, would loop
        if app_sampler.deciding:
            return  # a sampler of the app's own logging: its records would be decided on
        try:
            event = current_event()
            if event is not None and not event.sealed:
                if record.__dict__.get("_wide_logging_attached"):
                    return  # another WideEventHandler already attached it
                event.add_log(record)
                # (after: a record without extra= then has only the standard attributes,
                # which add_log() tells apart from one with extra= fields by their count)
                record._wide_logging_attached = True
            elif self.log_events:
                self.submit(self._log_event(record))
        except Exception:
            self.handleError(record)

    def _log_event(self, record: logging.LogRecord) -> WideEvent:
        event = WideEvent("log", self.serializer, start_time=record.created)
        extra = record_extra(record)
        if extra:  # the library's own fields among them are refused, as for annotate()
            # copied as one dict first: {"key": "X-Api-Key", "value": ...} is redacted
            event.annotate(**self.serializer.copy(extra))
        event.annotate(
            message=record_message(record),
            log={"level": record.levelname, "logger": record.name},
            code={
                "function": record.funcName,
                "filepath": record.pathname,
                "lineno": record.lineno,
            },
        )
        event.error_from_record(record)
        return event

    def setLevel(self, level: int | str) -> None:
        """As ``logging.Handler.setLevel`` (dictConfig calls it with the ``level`` option),
        but ``True`` or an unknown name is a ConfigurationError naming the option."""
        super().setLevel(_check_level(level))

    def handleError(self, record: logging.LogRecord) -> None:
        """Never the standard report: it prints the record's arguments (they may hold
        secrets) and the app's exception (which may break formatting)."""
        _internal.error(
            "wide_logging could not handle a record of logger %s (%s)",
            str(record.name)[:200],
            type(sys.exc_info()[1]).__name__,
        )

    def flush(self, timeout: float | None = None) -> bool:  # type: ignore[override]
        """Wait until every event handed off so far is written or spooled (False: timeout).

        ``logging.Handler.flush`` returns None; returning a bool is what callers who pass
        a timeout want to know, and harmless to ``logging.shutdown()``.
        """
        return True if self.closed else self.pipeline.flush(timeout)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.pipeline.close()
            metrics.unregister_counters(self.metrics)
        super().close()


#: The event's options: those the serializer declares (``_clean.Cleaner``).
EVENT_OPTIONS = frozenset(inspect.signature(Cleaner.__init__).parameters) - {
    "self",
    "count_refused",
}


def sampler_from_options(sampling: object) -> TailSampler:
    """The policy from a dict of options, completed by the ``WIDE_LOGGING_*`` variables."""
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


def active_handler() -> WideEventHandler | None:
    """The most recently created handler that is still open."""
    return _handlers.active()


def resolve_handler() -> WideEventHandler:
    """The active handler, or one built from the environment when none exists yet."""
    with _default_lock:  # two first requests at once must not build two handlers
        handler = active_handler()
        if handler is None:
            handler = WideEventHandler()
            _internal.warning(
                "no WideEventHandler configured; writing events to %s "
                "(configure one with logging.config.dictConfig or pass handler=)",
                handler.pipeline.links[0].sink.name,
            )
    return handler
