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

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson

from . import metrics
from ._app_sampler import AppSampler
from ._app_sampler import state as app_sampler
from ._errors import ConfigurationError
from ._handler_options import HandlerOptions, check_level
from ._ids import match_request_id, new_request_id, trace_id_from_traceparent
from ._internal_log import show_if_nobody_else_does
from ._records import record_extra, record_message
from ._registry import Registry, taps
from .context import get_current
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

DEFAULT_SPOOL_NAME = "spool/events.jsonl"

_handlers: Registry[WideEventHandler] = Registry()
_default_lock = threading.Lock()
#: ``filter()`` as logging has it; a subclass of ours may override it.
_STANDARD_FILTER = logging.Handler.filter
#: What decides when a sampler of the app's own raises.
_BUILT_IN_SAMPLER = TailSampler()


def _read_route(event: WideEvent, route: Callable[[], str | None]) -> None:
    """``event.route = route()``; whatever the app left in its scope, a route that cannot
    be read leaves the event without one (and says so), never without its event."""
    try:
        event.route = route()
    except Exception:
        _internal.warning("wide_logging could not read the route template", exc_info=True)


def _default_spool(primary: Sink) -> RotatingFileSink:
    """``spool/events.jsonl`` beside a file sink, else under ``./wide-logs/``."""
    directory = primary.path.parent if isinstance(primary, RotatingFileSink) else "wide-logs"
    return RotatingFileSink(f"{directory}/{DEFAULT_SPOOL_NAME}")


class WideEventHandler(logging.Handler):
    """A logging handler that writes sampled wide events through a background pipeline.

    Every option is keyword-only and JSON-like; see docs/configuration.md for all of them.
    Options not given fall back to ``WIDE_LOGGING_*`` environment variables, then to the
    defaults (``_handler_options.HandlerOptions``). Besides those in the signature, the
    ``options`` are each declared once, with its default and bounds, where it is used: the
    pipeline's (``batch_size``, ``flush_interval``,
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
        # (typed here for editors and type checkers; None: not given — the defaults and
        # the environment are applied in one place, HandlerOptions.resolve)
        sink: str | Sink | None = None,
        sink_options: Mapping[str, Any] | None = None,
        service: str | Mapping[str, Any] | None = None,
        sampling: Mapping[str, Any] | Sampler | None = None,
        fallback: str | Sink | Iterable[str | Sink] | None = None,
        log_events: bool | None = None,
        metrics_events: bool | None = None,
        **options: Any,
    ) -> None:
        # Closed until fully built: logging.shutdown() may flush a handler whose
        # configuration was rejected halfway.
        self.closed = True
        given = {
            "sink": sink,
            "sink_options": sink_options,
            "service": service,
            "sampling": sampling,
            "fallback": fallback,
            "log_events": log_events,
            "metrics_events": metrics_events,
        }
        #: What this handler was configured with, resolved and checked before any sink
        #: opens (``_handler_options.HandlerOptions``; ``setLevel`` changes the level later).
        self.options = HandlerOptions.resolve(
            level, {**{k: v for k, v in given.items() if v is not None}, **options}
        )
        super().__init__(self.options.level)
        self.metrics = Metrics()
        self.serializer = Serializer(**self.options.event, count_refused=self._count_refused)
        #: The policy as configured: a TailSampler, or the app's own sampler object.
        self.sampler: Sampler = self.options.sampler
        #: What ``submit()`` asks: the sampler itself, or the app's wrapped (AppSampler).
        self._decider: Sampler = (
            self.sampler if isinstance(self.sampler, TailSampler) else AppSampler(self.sampler)
        )
        #: The policy looks at routes (critical_routes, or code of the app's: its own
        #: sampler, a TailSampler subclass): a route given late to ``submit()`` is read
        #: before deciding, not only for a kept event.
        self._route_decides = type(self._decider) is not TailSampler or bool(
            self._decider.critical_routes
        )
        self._sampler_failed = False
        self.log_events = self.options.log_events
        self._resource = Resource(dict(self.options.service))

        primary = open_sink(self.options.sink, self.options.sink_options)
        chain = [open_sink(s) for s in self.options.fallback]
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
            tick=self._metrics_event if self.options.metrics_events else None,
            options=self.options.pipeline,
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

    def submit(
        self, event: WideEvent, route: Callable[[], str | None] | None = None
    ) -> Decision | None:
        """Decide, encode and hand off a finished event. Never raises.

        ``route``, when given, reads the event's route template; it is called only when
        something needs it — the policy matches routes, the event is kept, or a test
        captures every event — so a request sampled out never pays for reading it; and
        not when the event has a route already (a framework's middleware inside set it).
        """
        try:
            # Read once: a capture ending on another thread while the route is read must
            # not turn a sampled-out event into a stored one.
            tapping = bool(taps)
            if route is not None and event.route is not None:
                route = None  # a middleware inside (Django's) has named the route already
            if route is not None and self._route_decides:
                _read_route(event, route)
                route = None
            try:
                decision = event.decide(self._decider)
            except Exception:
                decision = self._decide_without_sampler(event)
            self.metrics.record_decision(decision.counter)
            if not decision.keep and not tapping:
                event.seal()
                return decision
            if route is not None:
                _read_route(event, route)
            if tapping:
                self._tap(event, decision)
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
        name = record.name  # (a str, unless a record was made by hand: makeLogRecord)
        if type(name) is str and name.startswith("wide_logging"):
            show_if_nobody_else_does(record, WideEventHandler)  # in an event it would loop
            return False
        if not self.filters and type(self).filter is _STANDARD_FILTER:
            self.emit(record)  # (the usual: Filterer.filter would walk an empty list)
            return True
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
            event = get_current()  # (the context variable's own method: no frame of ours)
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
            event.add_fields(self.serializer.copy(extra))
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
        super().setLevel(check_level(level))

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
