"""Apps for benchmarks/server_load.py and server_stack.py: the same Starlette endpoint bare
and with wide_logging (sink, fallback and policy from WIDE_LOGGING_* environment variables),
plus the pieces that explain the difference."""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from wide_logging import WideEventHandler, WideEventMiddleware, annotate
from wide_logging._ids import new_request_id
from wide_logging.context import activate, deactivate
from wide_logging.handler import resolve_handler
from wide_logging.middleware.asgi import _open_event, _route_template, _with_header_added


async def item(request: Request) -> PlainTextResponse:
    annotate(item={"id": request.path_params["item_id"]})  # a no-op without the middleware
    return PlainTextResponse("ok")


async def plain_item(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def app(endpoint: Any = item, middleware: Any = None, **options: Any) -> Starlette:
    built = Starlette(routes=[Route("/items/{item_id}", endpoint)])
    if middleware is not None:
        built.add_middleware(middleware, **options)
    return built


class ContextOnlyMiddleware:
    """The least any per-request context middleware does: set a context variable and wrap
    ``send``. No event, no id, no sampling. With ``header`` (``context_echo``) it also adds
    that response header as our middleware adds it (a copy of the message): the least a
    middleware that echoes a request id does, whatever opening, deciding and counting an
    event costs."""

    def __init__(self, app: Any, header: tuple[bytes, bytes] | None = None) -> None:
        self.app = app
        self.header = header

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = self.header

        def send_wrapper(message: Any) -> Any:
            if header is not None and message["type"] == "http.response.start":
                message = _with_header_added(message, message["headers"], header)
            return send(message)

        token = activate(None)  # type: ignore[arg-type]
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            deactivate(token)


class IdleWriterMiddleware:
    """Passes requests through untouched, after starting a wide_logging writer thread once:
    what an idle pipeline in the process costs the app."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.handler: WideEventHandler | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.handler is None and scope["type"] == "http":
            self.handler = WideEventHandler()
            self.handler.pipeline.put(b'{"kind":"bench"}', False)  # starts the writer
        await self.app(scope, receive, send)


class _MinimalEvent:
    """What a request's event needs at the least: its id, status and clock (and the slots
    our middleware writes when it opens one and when the response ends)."""

    __slots__ = (
        "client_address",
        "end_ns",
        "method",
        "path",
        "request_id",
        "start_ns",
        "status",
        "user_agent",
    )

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.status: int | None = None
        self.start_ns = time.perf_counter_ns()
        self.end_ns = 0


class _MinimalDecision:
    """A normal request kept at 2% by a hash of its id, a 5xx always; one counter each."""

    threshold = -(2**63) + int(0.02 * 2**64)
    kept = itertools.count()
    dropped = itertools.count()

    @classmethod
    def decide(cls, request_id: str, status: int | None) -> None:
        if (status is not None and status >= 500) or hash(request_id) < cls.threshold:
            next(cls.kept)
        else:
            next(cls.dropped)


class MinimalEventMiddleware:
    """The same steps as ours, each at its least, no promise kept beyond them: an incoming
    id or a new one, an event object in a context variable, the status, the id echoed (a
    copy of the message), a decision by a hash of the id, a counter. What such a
    middleware costs a served request is the floor for the goal under uvicorn."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.prefix = os.urandom(10).hex()
        self.sequence = itertools.count()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id")
        request_id = (
            incoming.decode("latin-1")
            if incoming is not None
            else self.prefix + hex(next(self.sequence))
        )
        event = _MinimalEvent(request_id)
        header = (b"x-request-id", request_id.encode("latin-1"))

        def send_wrapper(message: Any) -> Any:
            if message["type"] == "http.response.start":
                event.status = message["status"]
                message = _with_header_added(message, message["headers"], header)
            return send(message)

        token = activate(event)  # type: ignore[arg-type]
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            deactivate(token)
            _MinimalDecision.decide(request_id, event.status)


class MinimalDecisionHandler(WideEventHandler):
    """Our handler with ``submit()`` swapped for the minimal decision (what deciding,
    counting and sealing cost us beyond it: ``wide_minimal_decision``)."""

    def submit(self, event: Any, route: Any = None) -> Any:
        _MinimalDecision.decide(event.request_id, event.status)
        return None


class MinimalEventHandler(MinimalDecisionHandler):
    """... and ``new_event()`` swapped for the minimal event (``wide_minimal_event``)."""

    def new_event(self, kind: str = "", request_id: Any = None, traceparent: Any = None) -> Any:
        return _MinimalEvent(request_id or new_request_id())


class StepsMiddleware:
    """``WideEventMiddleware``'s steps, taken one more at a time: what each costs a served
    request (``server_stack.py --instructions --apps bare,context_only,steps_open,...``).
    Each opens the event (headers, request id, ``WideEvent``) in a context variable;
    ``echo`` puts the id on the response, as the middleware does (a copy) or ``"in place"``
    (into the app's own list, which the middleware must not do: only to tell our copy from
    the server's work on one more header); ``submit`` decides, counts, and reads the route
    when the event is kept."""

    def __init__(self, app: Any, echo: Any = False, submit: bool = False) -> None:
        self.app, self.echo, self.submit = app, echo, submit
        self.handler: WideEventHandler | None = None  # the configured one, at the first request
        self.name = b"x-request-id"

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        handler = self.handler = self.handler or resolve_handler()
        event = _open_event(handler, scope, self.name)
        header = (self.name, (event.request_id or "").encode("latin-1"))
        echo, in_place = self.echo, self.echo == "in place"

        def send_wrapper(message: Any) -> Any:
            if echo and message["type"] == "http.response.start":
                if in_place:
                    message["headers"].append(header)
                else:
                    message = _with_header_added(message, message["headers"], header)
            return send(message)

        token = activate(event)
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            deactivate(token)
            if self.submit:
                handler.submit(event, lambda: _route_template(scope, ""))


bare = app()
wide = app(middleware=WideEventMiddleware)
# Without echoing X-Request-ID: under h11 every response header costs a Python validation
# pass, so this shows what the echo itself costs.
wide_no_echo = app(middleware=WideEventMiddleware, echo_request_id=False)
# Without the endpoint's annotate() call: the middleware alone.
wide_plain = app(plain_item, WideEventMiddleware)
context_only = app(middleware=ContextOnlyMiddleware)
minimal_event = app(plain_item, MinimalEventMiddleware)
context_echo = app(plain_item, ContextOnlyMiddleware, header=(b"x-request-id", b"0" * 32))
bare_with_writer = app(middleware=IdleWriterMiddleware)
steps_open = app(plain_item, StepsMiddleware)
steps_echo_in_place = app(plain_item, StepsMiddleware, echo="in place")
steps_echo = app(plain_item, StepsMiddleware, echo=True)
steps_submit = app(plain_item, StepsMiddleware, echo=True, submit=True)


# -- what users would install instead (built on first use: sentry_sdk.init patches Starlette
# for the whole process, so each of these must only ever be built in its own server) ------


def _sentry(traces_sample_rate: float) -> Starlette:
    """sentry-sdk's Starlette integration (enabled by itself when Starlette is installed),
    a transaction per sampled request; events and traces go to a local transport that
    counts them (no network)."""
    import sentry_sdk
    from sentry_sdk.transport import Transport

    class CountingTransport(Transport):
        envelopes = 0

        def capture_envelope(self, envelope: Any) -> None:
            CountingTransport.envelopes += 1

    sentry_sdk.init(
        dsn="https://public@127.0.0.1/1",
        transport=CountingTransport,
        traces_sample_rate=traces_sample_rate,
        send_default_pii=False,
    )
    return app(plain_item)


def _otel() -> Any:
    """OpenTelemetry's ASGI instrumentation, every request traced, spans batched by the SDK's
    BatchSpanProcessor to a JSON-lines file."""
    import os
    import tempfile

    from opentelemetry import trace
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    out = open(  # noqa: SIM115 - the exporter writes to it for the process's life
        os.path.join(tempfile.mkdtemp(prefix="otel-bench-"), "spans.jsonl"), "w"
    )
    provider = TracerProvider()
    provider.add_span_processor(
        BatchSpanProcessor(
            ConsoleSpanExporter(out=out, formatter=lambda span: span.to_json(indent=None) + "\n")
        )
    )
    trace.set_tracer_provider(provider)
    return OpenTelemetryMiddleware(app(plain_item))


def _correlation_structlog() -> Starlette:
    """asgi-correlation-id (checks or makes X-Request-ID, echoes it) and one structlog line
    per request — structlog's performance recipe (orjson, BytesLoggerFactory to a file,
    synchronous), the request id bound from asgi-correlation-id's context variable."""
    import os
    import tempfile
    import time

    import orjson
    import structlog
    from asgi_correlation_id import CorrelationIdMiddleware, correlation_id

    out = open(  # noqa: SIM115 - the logger writes to it for the process's life
        os.path.join(tempfile.mkdtemp(prefix="structlog-bench-"), "access.jsonl"), "wb"
    )
    structlog.configure(
        cache_logger_on_first_use=True,
        wrapper_class=structlog.make_filtering_bound_logger(20),
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        logger_factory=structlog.BytesLoggerFactory(file=out),
    )
    log = structlog.get_logger()

    class AccessLog:
        def __init__(self, inner: Any) -> None:
            self.app = inner

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await self.app(scope, receive, send)
                return
            started = time.perf_counter()
            status = 500

            async def send_wrapper(message: Any) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await self.app(scope, receive, send_wrapper)
            finally:
                log.info(
                    "request",
                    request_id=correlation_id.get(),
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    duration_ms=(time.perf_counter() - started) * 1000,
                )

    built = app(plain_item, AccessLog)
    built.add_middleware(CorrelationIdMiddleware)  # outermost: the id is set around the log
    return built


_PEERS = {
    # (built on first use too: a handler opens its sink, which WIDE_LOGGING_SINK names)
    "wide_minimal_decision": lambda: app(
        plain_item, WideEventMiddleware, handler=MinimalDecisionHandler()
    ),
    "wide_minimal_event": lambda: app(
        plain_item, WideEventMiddleware, handler=MinimalEventHandler()
    ),
    "sentry": lambda: _sentry(1.0),
    "sentry_sampled": lambda: _sentry(0.02),
    "otel": _otel,
    "correlation_structlog": _correlation_structlog,
}


def __getattr__(name: str) -> Any:  # uvicorn's "server_apps:sentry" builds it here
    if name in _PEERS:
        built = _PEERS[name]()
        globals()[name] = built
        return built
    raise AttributeError(name)
