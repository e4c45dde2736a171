from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from wide_logging import WideEventHandler, WideEventMiddleware, annotate, span
from wide_logging.sampling import Decision, TailSampler
from wide_logging.serialize import Serializer
from wide_logging.testing import MemorySink, capture_events

log = logging.getLogger("app.asgi")


class PaymentDeclined(Exception):
    pass


async def homepage(request: Request) -> PlainTextResponse:
    log.info("rendering home")
    return PlainTextResponse("hi")


async def user(request: Request) -> JSONResponse:
    annotate(user={"id": int(request.path_params["user_id"])})
    with span("db"):
        await asyncio.sleep(0)
    return JSONResponse({"ok": True})


async def boom(request: Request) -> PlainTextResponse:
    log.warning("about to fail")
    raise RuntimeError("kaboom")


async def slow(request: Request) -> PlainTextResponse:
    await asyncio.sleep(0.06)
    return PlainTextResponse("slow")


async def stream(request: Request) -> StreamingResponse:
    async def body() -> Any:
        for n in range(3):
            await asyncio.sleep(0.03)
            log.info("chunk %d", n)
            yield f"chunk {n}\n".encode()

    return StreamingResponse(body())


def blocking_lookup() -> str:
    annotate(threadpool={"used": True})
    log.info("inside threadpool")
    return "done"


async def threaded(request: Request) -> PlainTextResponse:
    result = await run_in_threadpool(blocking_lookup)
    await asyncio.to_thread(annotate, to_thread={"used": True})
    return PlainTextResponse(result)


async def pay(request: Request) -> PlainTextResponse:
    raise PaymentDeclined("card declined")


async def declined_handler(request: Request, exc: Exception) -> JSONResponse:
    annotate(payment={"declined": True})
    return JSONResponse({"error": "declined"}, status_code=402)


async def forced(request: Request) -> PlainTextResponse:
    annotate(force_keep=True)
    return PlainTextResponse("kept")


async def ws_endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("hello")
    await websocket.close()


async def sub_item(request: Request) -> PlainTextResponse:
    return PlainTextResponse("item")


def build_starlette(**middleware: Any) -> Starlette:
    app = Starlette(
        routes=[
            Route("/", homepage),
            Route("/users/{user_id:int}", user),
            Route("/boom", boom),
            Route("/slow", slow),
            Route("/stream", stream),
            Route("/threaded", threaded),
            Route("/pay", pay, methods=["POST"]),
            Route("/forced", forced),
            WebSocketRoute("/ws", ws_endpoint),
            Mount("/api", routes=[Route("/items/{item_id}", sub_item)]),
        ],
        exception_handlers={PaymentDeclined: declined_handler},
    )
    app.add_middleware(WideEventMiddleware, **middleware)
    return app


@pytest.fixture
def handler(make_handler: Callable[..., WideEventHandler]) -> Iterator[WideEventHandler]:
    handler = make_handler(
        sink=MemorySink(), sampling={"normal_rate": 1.0, "slow_ms": 50, "critical_routes": ["/pay"]}
    )
    logger = logging.getLogger("app")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)


@pytest.fixture
def client(handler: WideEventHandler) -> Iterator[TestClient]:
    with TestClient(build_starlette(), raise_server_exceptions=False) as client:
        yield client


def only_request(events: list[dict[str, Any]]) -> dict[str, Any]:
    requests = [e for e in events if e["kind"] == "http.request"]
    assert len(requests) == 1, requests
    return requests[0]


def test_one_event_per_request_with_the_documented_fields(client: TestClient) -> None:
    with capture_events() as events:
        response = client.get("/users/42", headers={"user-agent": "pytest-agent"})
    assert response.status_code == 200
    event = only_request(events)
    assert event["http"] == {
        "request": {"method": "GET"},
        "route": "/users/{user_id:int}",
        "response": {"status_code": 200},
    }
    assert event["url"] == {"path": "/users/42"}
    assert event["user"] == {"id": 42}
    assert event["user_agent"] == {"original": "pytest-agent"}
    assert event["client"]["address"] == "testclient"
    assert "db_ms" in event["timings"]
    assert event["duration_ms"] > 0
    assert event["sampling"] == {"rule": "normal", "rate": 1.0}
    assert event["request_id"] == response.headers["x-request-id"]
    assert event["process"]["pid"] > 0
    assert event["host"]["name"]


def test_incoming_request_id_is_kept_and_echoed_invalid_one_replaced(client: TestClient) -> None:
    with capture_events() as events:
        good = client.get("/", headers={"x-request-id": "abc-123"})
        bad = client.get("/", headers={"x-request-id": "bad id\twith spaces"})
        huge = client.get("/", headers={"x-request-id": "a" * 500})
    assert good.headers["x-request-id"] == "abc-123"
    assert bad.headers["x-request-id"] != "bad id\twith spaces"
    assert len(huge.headers["x-request-id"]) == 32
    assert [e["request_id"] for e in events.requests()] == [
        "abc-123",
        bad.headers["x-request-id"],
        huge.headers["x-request-id"],
    ]


def test_traceparent_sets_trace_id_and_the_sampling_key(client: TestClient) -> None:
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    with capture_events() as events:
        client.get("/", headers={"traceparent": f"00-{trace}-00f067aa0ba902b7-01"})
        client.get("/", headers={"traceparent": "garbage"})
    first, second = events.requests()
    assert first["trace_id"] == trace
    assert first["request_id"] == trace  # no X-Request-ID: the trace decides sampling
    assert "trace_id" not in second


def test_exception_is_recorded_as_500_and_reraised(handler: WideEventHandler) -> None:
    app = build_starlette()
    with (
        capture_events() as events,
        TestClient(app) as client,
        pytest.raises(RuntimeError, match="kaboom"),
    ):
        client.get("/boom")
    event = only_request(events)
    assert event["http"]["response"]["status_code"] == 500
    assert event["error"]["type"] == "RuntimeError"
    assert event["error"]["message"] == "kaboom"
    assert "raise RuntimeError" in event["error"]["stack"]
    assert event["sampling"] == {"rule": "error", "rate": 1.0}
    assert [entry["message"] for entry in event["logs"]] == ["about to fail"]


def test_exception_handler_annotations_land_on_the_event(client: TestClient) -> None:
    with capture_events() as events:
        response = client.post("/pay")
    assert response.status_code == 402
    event = only_request(events)
    assert event["payment"] == {"declined": True}
    assert event["sampling"]["rule"] == "critical_route"


def test_streaming_duration_ends_with_the_body(client: TestClient) -> None:
    with capture_events() as events:
        response = client.get("/stream")
    assert response.text == "chunk 0\nchunk 1\nchunk 2\n"
    event = only_request(events)
    assert event["duration_ms"] >= 90
    assert [entry["message"] for entry in event["logs"]] == ["chunk 0", "chunk 1", "chunk 2"]


def test_threadpool_and_to_thread_annotations_land_on_the_event(client: TestClient) -> None:
    with capture_events() as events:
        assert client.get("/threaded").text == "done"
    event = only_request(events)
    assert event["threadpool"] == {"used": True}
    assert event["to_thread"] == {"used": True}
    assert [entry["message"] for entry in event["logs"]] == ["inside threadpool"]


def test_slow_and_forced_requests_are_always_kept(
    make_handler: Callable[..., WideEventHandler],
) -> None:
    make_handler(sink=MemorySink(), sampling={"normal_rate": 0.0, "slow_ms": 50})
    with TestClient(build_starlette()) as client, capture_events(keep_all=False) as events:
        client.get("/slow")
        client.get("/forced")
        client.get("/")
    assert [(e["url"]["path"], e["sampling"]["rule"]) for e in events.requests()] == [
        ("/slow", "slow"),
        ("/forced", "force_keep"),
    ]


def test_mounted_routes_report_the_full_template(client: TestClient) -> None:
    with capture_events() as events:
        client.get("/api/items/7")
        client.get("/nope")
    mounted, missing = events.requests()
    assert mounted["http"]["route"] == "/api/items/{item_id}"
    assert "route" not in missing["http"]
    assert missing["http"]["response"]["status_code"] == 404


def test_websocket_and_lifespan_pass_through(client: TestClient) -> None:
    with capture_events() as events, client.websocket_connect("/ws") as ws:
        assert ws.receive_text() == "hello"
    assert events.requests() == []


def test_echo_can_be_disabled_and_header_renamed(handler: WideEventHandler) -> None:
    app = build_starlette(request_id_header="X-Correlation-ID", echo_request_id=False)
    with TestClient(app) as client, capture_events() as events:
        response = client.get("/", headers={"x-correlation-id": "corr-1"})
    assert "x-request-id" not in response.headers
    assert "x-correlation-id" not in response.headers
    assert only_request(events)["request_id"] == "corr-1"


def test_events_reach_the_sink_through_the_pipeline(
    handler: WideEventHandler, client: TestClient
) -> None:
    for n in range(5):
        client.get(f"/users/{n}")
    handler.flush(5)
    sink = handler.pipeline.links[0].sink
    assert isinstance(sink, MemorySink)
    users = sorted(e["user"]["id"] for e in sink.events if e["kind"] == "http.request")
    assert users == [0, 1, 2, 3, 4]


def test_fastapi_route_templates_and_dependencies(handler: WideEventHandler) -> None:
    app = FastAPI()
    app.add_middleware(WideEventMiddleware)

    @app.get("/orders/{order_id}")
    def get_order(order_id: int) -> dict[str, int]:  # sync: FastAPI runs it in a threadpool
        annotate(order={"id": order_id})
        return {"id": order_id}

    @app.get("/fail")
    async def fail() -> None:
        raise ValueError("bad order")

    with capture_events() as events, TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/orders/9").json() == {"id": 9}
        assert client.get("/fail").status_code == 500
    ok, failed = events.requests()
    assert ok["http"]["route"] == "/orders/{order_id}"
    assert ok["order"] == {"id": 9}
    assert failed["error"]["type"] == "ValueError"
    assert failed["http"]["route"] == "/fail"


def test_middleware_without_a_configured_handler_builds_one_from_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from conftest import read_jsonl
    from wide_logging.handler import _handlers, active_handler

    _handlers.clear()
    monkeypatch.setenv("WIDE_LOGGING_SINK", f"file:{tmp_path}/auto/events.jsonl")
    monkeypatch.setenv("WIDE_LOGGING_NORMAL_RATE", "1")
    app = build_starlette()
    try:
        with TestClient(app) as client:
            client.get("/")
        handler = active_handler()
        assert handler is not None
        handler.flush(5)
        [event] = [
            e for e in read_jsonl(tmp_path / "auto" / "events.jsonl") if e["kind"] == "http.request"
        ]
        assert event["url"]["path"] == "/"
    finally:
        handler = active_handler()
        if handler is not None:
            handler.close()


def test_a_broken_handler_never_breaks_the_request(
    handler: WideEventHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("our bug")

    monkeypatch.setattr(Serializer, "encode", explode)
    with TestClient(build_starlette()) as client:
        assert client.get("/").text == "hi"
    monkeypatch.setattr(handler, "new_event", explode)
    with TestClient(build_starlette()) as client:
        assert client.get("/").text == "hi"
    # the first request's event, and the second request's log record (no event to attach
    # to, so it became a log event): both failed to encode, both are counted
    assert handler.metrics.get("dropped.internal_error") == 2, handler.metrics.snapshot()
    assert handler.metrics.get("events.seen") == 2


def test_direct_asgi_call_without_starlette(handler: WideEventHandler) -> None:
    async def raw_app(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {"type": "http.response.start", "status": 204, "headers": [(b"x-request-id", b"own")]}
        )
        await send({"type": "http.response.body", "body": b""})

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "DELETE", "path": "/raw", "headers": [], "client": None}
    with capture_events() as events:
        asyncio.run(WideEventMiddleware(raw_app)(scope, receive, send))
    assert sent[0]["headers"] == [(b"x-request-id", b"own")]  # the app's own id is not doubled
    event = only_request(events)
    assert event["http"] == {"request": {"method": "DELETE"}, "response": {"status_code": 204}}
    assert "client" not in event


def test_response_headers_given_as_any_iterable_all_reach_the_server(
    handler: WideEventHandler,
) -> None:
    import asyncio

    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = iter([(b"content-type", b"text/plain"), (b"set-cookie", b"a=1")])
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    asyncio.run(WideEventMiddleware(app)(scope, None, send))
    names = [name for name, _ in sent[0]["headers"]]
    assert names == [b"content-type", b"set-cookie", b"x-request-id"]


def test_what_the_apps_own_header_iterable_raises_reaches_the_app(
    handler: WideEventHandler,
) -> None:
    class Lookup(KeyError):
        pass

    failure = Lookup("a lookup failed while building headers")
    seen: list[BaseException] = []

    def headers() -> Iterator[tuple[bytes, bytes]]:
        yield (b"content-type", b"text/plain")
        raise failure

    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": headers()})
        except Lookup as exc:
            seen.append(exc)
            raise

    async def send(message: dict[str, Any]) -> None:
        raise AssertionError("nothing is sent with headers the app could not build")

    scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    with capture_events() as events, pytest.raises(Lookup) as raised:
        asyncio.run(WideEventMiddleware(app)(scope, None, send))
    assert raised.value is failure
    assert seen == [failure]
    assert only_request(events)["error"]["type"].endswith("Lookup")


def test_an_odd_route_or_root_path_never_replaces_the_apps_exception(
    handler: WideEventHandler,
) -> None:
    route_type = type("OddRoute", (), {"path": "/odd"})
    route_type.__module__ = None  # type: ignore[assignment]
    failure = ValueError("the app's error")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scope["route"] = route_type()
        scope["root_path"] = None
        raise failure

    scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    with capture_events() as events, pytest.raises(ValueError, match=r"the app.s error") as raised:
        asyncio.run(WideEventMiddleware(app)(scope, None, None))
    assert raised.value is failure
    event = only_request(events)
    assert (event["error"]["type"], event["http"]["response"]["status_code"]) == ("ValueError", 500)


def test_an_int_enum_status_is_the_status(handler: WideEventHandler) -> None:
    """HTTPStatus.SERVICE_UNAVAILABLE is a 503: kept by the server_error rule."""
    from http import HTTPStatus

    async def unavailable(request: Request) -> PlainTextResponse:
        return PlainTextResponse("later", status_code=HTTPStatus.SERVICE_UNAVAILABLE)

    app = Starlette(routes=[Route("/", unavailable)])
    quiet = WideEventHandler(sink=MemorySink(), sampling={"normal_rate": 0.0})
    app.add_middleware(WideEventMiddleware, handler=quiet)
    try:
        with capture_events() as events, TestClient(app) as client:
            assert client.get("/").status_code == 503
        [event] = events.requests()
        assert event["http"]["response"]["status_code"] == 503
        assert type(event["http"]["response"]["status_code"]) is int
        assert event["sampling"]["rule"] == "server_error"
    finally:
        quiet.close()


# -- install(): outside Starlette's ServerErrorMiddleware ---------------------------------


def build_fastapi_installed(custom_500: bool) -> FastAPI:
    app = FastAPI()

    @app.get("/orders/{order_id}")
    async def get_order(order_id: int) -> dict[str, int]:
        annotate(order={"id": order_id})
        return {"id": order_id}

    @app.get("/fail/{code}")
    async def fail(code: str) -> None:
        raise ValueError(f"bad order {code}")

    if custom_500:

        @app.exception_handler(Exception)
        async def apologise(request: Request, exc: Exception) -> JSONResponse:
            annotate(apology="sent")
            return JSONResponse({"sorry": type(exc).__name__}, status_code=500)

    WideEventMiddleware.install(app)
    return app


def test_add_middleware_leaves_the_unhandled_500_without_the_request_id(
    handler: WideEventHandler,
) -> None:
    """Why install() exists: Starlette answers an unhandled exception outside every user
    middleware."""
    app = FastAPI()
    app.add_middleware(WideEventMiddleware)

    @app.get("/fail")
    async def fail() -> None:
        raise ValueError("bad order")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/fail", headers={"X-Request-ID": "req-500-plain"})
    assert response.status_code == 500
    assert "x-request-id" not in response.headers


@pytest.mark.parametrize("custom_500", [False, True], ids=["default-500", "custom-500-handler"])
def test_installed_the_500_carries_the_request_id_and_the_apps_handler_runs(
    handler: WideEventHandler, custom_500: bool
) -> None:
    app = build_fastapi_installed(custom_500)
    with capture_events() as events, TestClient(app, raise_server_exceptions=False) as client:
        ok = client.get("/orders/9", headers={"X-Request-ID": "req-ok"})
        failed = client.get("/fail/7", headers={"X-Request-ID": "req-500"})
    assert ok.json() == {"id": 9}
    assert ok.headers["x-request-id"] == "req-ok"
    assert failed.status_code == 500
    assert failed.headers["x-request-id"] == "req-500"
    if custom_500:
        assert failed.json() == {"sorry": "ValueError"}  # the app's own handler answered
    else:
        assert failed.text == "Internal Server Error"
    by_id = {e["request_id"]: e for e in events.requests()}
    assert by_id["req-ok"]["http"]["route"] == "/orders/{order_id}"
    assert by_id["req-ok"]["order"] == {"id": 9}
    event = by_id["req-500"]
    assert event["http"]["route"] == "/fail/{code}"
    assert event["http"]["response"]["status_code"] == 500
    assert event["error"]["type"] == "ValueError"
    assert event["error"]["message"] == "bad order 7"
    assert event["sampling"]["rule"] == "error"
    if custom_500:
        assert event["apology"] == "sent"  # the handler ran inside the request's event


def test_installed_the_exception_still_reaches_the_test_client(handler: WideEventHandler) -> None:
    app = build_fastapi_installed(custom_500=False)
    with (
        capture_events() as events,
        TestClient(app) as client,
        pytest.raises(ValueError, match="bad order 1"),
    ):
        client.get("/fail/1")
    assert events.requests()[0]["error"]["type"] == "ValueError"


def test_install_on_starlette_keeps_middleware_added_before_and_after(
    handler: WideEventHandler,
) -> None:
    from starlette.middleware.base import BaseHTTPMiddleware

    order: list[str] = []

    class Tag(BaseHTTPMiddleware):
        def __init__(self, app: Any, name: str) -> None:
            super().__init__(app)
            self.name = name

        async def dispatch(self, request: Request, call_next: Any) -> Any:
            order.append(self.name)
            return await call_next(request)

    app = Starlette(routes=[Route("/users/{user_id:int}", user), Route("/boom", boom)])
    app.add_middleware(Tag, name="before")
    WideEventMiddleware.install(app, request_id_header="X-Correlation-ID")
    app.add_middleware(Tag, name="after")
    with capture_events() as events, TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/users/5").status_code == 200
        failed = client.get("/boom", headers={"X-Correlation-ID": "corr-1"})
    assert failed.status_code == 500
    assert failed.headers["x-correlation-id"] == "corr-1"
    assert sorted(order[:2]) == ["after", "before"]
    first, second = events.requests()
    assert first["http"]["route"] == "/users/{user_id:int}"
    assert second["request_id"] == "corr-1"
    assert second["error"]["type"] == "RuntimeError"


def test_install_refuses_what_is_not_a_starlette_app() -> None:
    from wide_logging import ConfigurationError

    async def plain_asgi(scope: Any, receive: Any, send: Any) -> None:
        pass

    with pytest.raises(ConfigurationError, match="wrap other ASGI apps"):
        WideEventMiddleware.install(plain_asgi)
    with pytest.raises(ConfigurationError, match="request_id_header"):
        WideEventMiddleware.install(FastAPI(), request_id_header="bad header")
    twice = WideEventMiddleware.install(FastAPI())
    with pytest.raises(ConfigurationError, match="already"):
        WideEventMiddleware.install(twice)


# -- fake_clock ---------------------------------------------------------------------------


def test_fake_clock_makes_a_request_slow_without_waiting(handler: WideEventHandler) -> None:
    from wide_logging.testing import fake_clock

    app = build_fastapi_installed(custom_500=False)
    with TestClient(app) as client:
        with fake_clock(tick_ms=80), capture_events() as events:  # the handler's slow_ms: 50
            client.get("/orders/1")
        with capture_events() as real:
            client.get("/orders/2")
    [slow] = events.requests()
    assert slow["sampling"]["rule"] == "slow"
    assert slow["duration_ms"] >= 80
    assert real.requests()[0]["sampling"]["rule"] == "normal"  # the real clock is back


def test_fake_clock_ends_a_request_at_its_last_chunk_not_after_its_background_task(
    handler: WideEventHandler,
) -> None:
    """The response's end is stamped at its last chunk, with the fake clock too (whose
    readings used to start at 0, the value that says "still running")."""
    from starlette.background import BackgroundTask

    from wide_logging.testing import fake_clock

    with fake_clock() as clock:

        async def later() -> None:
            clock.advance(seconds=5)  # e.g. an e-mail sent after the response

        async def confirm(request: Request) -> PlainTextResponse:
            return PlainTextResponse("ok", background=BackgroundTask(later))

        app = Starlette(routes=[Route("/confirm", confirm)])
        with capture_events() as events, TestClient(WideEventMiddleware.install(app)) as client:
            client.get("/confirm")
    [event] = events.requests()
    assert event["duration_ms"] == 0
    assert event["sampling"]["rule"] == "normal"


def test_fake_clock_advanced_by_a_fake_dependency_times_its_span(
    handler: WideEventHandler,
) -> None:
    from wide_logging.testing import fake_clock

    app = FastAPI()
    WideEventMiddleware.install(app)

    with fake_clock() as clock:

        @app.get("/report")
        async def report() -> str:
            with span("db"):
                clock.advance(ms=1200)  # a fake of the slow query
            return "ok"

        with capture_events() as events, TestClient(app) as client:
            client.get("/report")
    [event] = events.requests()
    assert event["timings"]["db_ms"] == 1200
    assert event["duration_ms"] == 1200
    assert event["sampling"]["rule"] == "slow"


def test_fake_clock_leaves_the_timestamp_and_logs_alone(handler: WideEventHandler) -> None:
    """Only durations are faked: an hour of fake time moves no timestamp, and a request that
    logs takes as many ticks as one that does not."""
    import datetime
    import time

    from wide_logging.testing import fake_clock

    app = FastAPI()
    WideEventMiddleware.install(app)

    with fake_clock(tick_ms=1000) as clock:

        @app.get("/hour")
        async def hour() -> str:
            clock.advance(seconds=3600)
            return "ok"

        @app.get("/quiet")
        async def quiet() -> str:
            return "ok"

        @app.get("/logs")
        async def logs() -> str:
            log.info("hello")
            return "ok"

        with capture_events() as events, TestClient(app) as client:
            before = time.time()
            for path in ("/hour", "/quiet", "/logs"):
                client.get(path)
            after = time.time()
    hour_event, quiet_event, logged = events.requests()
    for event in (hour_event, quiet_event, logged):
        stamp = datetime.datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
        assert before - 0.001 <= stamp.timestamp() <= after
    assert hour_event["duration_ms"] >= 3_600_000
    assert logged["duration_ms"] == quiet_event["duration_ms"]
    assert logged["logs"][0]["message"] == "hello"


def test_an_exception_handler_that_logs_an_error_keeps_the_real_exception(
    handler: WideEventHandler,
) -> None:
    app = FastAPI()
    WideEventMiddleware.install(app)

    @app.get("/boom")
    async def boom() -> None:
        raise ZeroDivisionError("division by zero")

    @app.exception_handler(Exception)
    async def apologise(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled %s on %s", type(exc).__name__, request.url.path)
        return JSONResponse({"sorry": True}, status_code=500)

    with capture_events() as events, TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/boom").status_code == 500
    [event] = events.requests()
    assert event["error"]["type"] == "ZeroDivisionError"
    assert "ZeroDivisionError" in event["error"]["stack"]
    assert event["logs"][0]["message"] == "unhandled ZeroDivisionError on /boom"


def test_fastapi_nested_routers_report_every_prefix(handler: WideEventHandler) -> None:
    """Routers included in routers: the template has all the prefixes (as OpenAPI shows
    it), so critical_routes on /admin/* match."""
    from fastapi import APIRouter

    app = FastAPI()
    WideEventMiddleware.install(app)
    admin, users = APIRouter(prefix="/admin"), APIRouter(prefix="/users")

    @users.delete("/{user_id}")
    async def delete_user(user_id: int) -> dict[str, int]:
        return {"deleted": user_id}

    admin.include_router(users)
    app.include_router(admin, prefix="/api")
    sub = FastAPI()
    sub.include_router(admin)
    app.mount("/v2", sub)
    assert "/api/admin/users/{user_id}" in app.openapi()["paths"]
    with capture_events() as events, TestClient(app) as client:
        assert client.delete("/api/admin/users/7").json() == {"deleted": 7}
        assert client.delete("/v2/admin/users/8").json() == {"deleted": 8}
    direct, mounted = events.requests()
    assert direct["http"]["route"] == "/api/admin/users/{user_id}"
    assert mounted["http"]["route"] == "/v2/admin/users/{user_id}"


def test_installed_on_an_app_and_its_mounted_sub_app_one_event(handler: WideEventHandler) -> None:
    sub = FastAPI()
    WideEventMiddleware.install(sub)

    @sub.get("/t/{i}")
    async def t(i: int) -> dict[str, int]:
        annotate(i=i)
        return {"i": i}

    app = FastAPI()
    WideEventMiddleware.install(app)
    app.mount("/sub", sub)
    with capture_events() as events, TestClient(app) as client:
        response = client.get("/sub/t/3", headers={"X-Request-ID": "one-id"})
    assert response.headers["x-request-id"] == "one-id"
    [event] = events.requests()
    assert event["request_id"] == "one-id"
    assert event["http"]["route"] == "/sub/t/{i}"
    assert event["i"] == 3


def test_a_status_is_an_int_or_an_int_enum_never_a_bool_or_text() -> None:
    """The one reading of a response's status that the ASGI and Django middlewares share."""
    from http import HTTPStatus

    from wide_logging.middleware._common import status_code

    assert status_code(200) == 200
    assert status_code(HTTPStatus.SERVICE_UNAVAILABLE) == 503
    assert type(status_code(HTTPStatus.SERVICE_UNAVAILABLE)) is int
    assert status_code(True) is None
    assert status_code("200") is None
    assert status_code(None) is None


class _OddType(str):
    """A message type that answers False to == and to !=: nothing our wrapper asks of
    it may decide anything but "send it as it is"."""

    def __eq__(self, other: object) -> bool:
        return False

    __hash__ = str.__hash__


def test_a_message_whose_type_answers_nothing_goes_to_the_server_as_sent() -> None:
    sent: list[Any] = []
    start = {"type": _OddType("http.response.start"), "status": 200, "headers": []}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(start)
        await send({"type": "http.response.body", "body": b"x"})

    async def server_send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    with capture_events() as events:
        asyncio.run(WideEventMiddleware(app)(scope, None, server_send))
    assert sent[0] is start
    assert "error" not in events.requests()[0]


class CountedRoute:
    """A route object (what Starlette puts in ``scope["route"]``) counting its readers."""

    def __init__(self, template: str) -> None:
        self.template = template
        self.reads = 0

    @property
    def path(self) -> str:
        self.reads += 1
        return self.template


class KeepsByRoute:
    """A sampler of the app's own that keeps what its route says."""

    def decide(self, key: str, error: bool = False, *args: Any, **kwargs: Any) -> Decision:
        route = kwargs.get("route", args[2] if len(args) > 2 else None)
        return Decision(route == "/orders/{id}", "by_route", 1.0)

    def decide_log(self, key: str, *, error: bool) -> Decision:
        return Decision(True, "by_route", 1.0)

    def explain(self, event: Any) -> str:
        return "kept by its route"


class KeepsByRouteTail(TailSampler):
    """The built-in policy, extended by the app to keep what its route says."""

    def decide(self, key: str, error: bool = False, *args: Any, **kwargs: Any) -> Decision:
        route = kwargs.get("route", args[2] if len(args) > 2 else None)
        if route == "/orders/{id}":
            return Decision(True, "by_route", 1.0)
        return super().decide(key, error, *args, **kwargs)


@pytest.mark.parametrize(
    ("sampling", "reads", "routes_stored"),
    [
        ({"normal_rate": 0.0}, 0, []),  # sampled out by a policy that matches no routes
        ({"normal_rate": 1.0}, 3, ["/orders/{id}"] * 3),  # kept: the event has its route
        # the policy matches routes: read before deciding, and the route keeps the event
        ({"normal_rate": 0.0, "critical_routes": ["/orders/*"]}, 3, ["/orders/{id}"] * 3),
        ("by route", 3, ["/orders/{id}"] * 3),  # a sampler of the app's own: it may look
        ("subclass", 3, ["/orders/{id}"] * 3),  # a TailSampler subclass: it may look too
    ],
)
def test_the_route_is_read_only_when_something_needs_it(
    make_handler: Callable[..., WideEventHandler],
    sampling: Any,
    reads: int,
    routes_stored: list[str],
) -> None:
    route = CountedRoute("/orders/{id}")
    sink = MemorySink()
    if sampling == "by route":
        sampling = KeepsByRoute()
    elif sampling == "subclass":
        sampling = KeepsByRouteTail(normal_rate=0.0)
    handler = make_handler(sink=sink, sampling=sampling)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scope["route"] = route
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def send(message: dict[str, Any]) -> None:
        pass

    async def three_requests() -> None:
        for n in range(3):
            scope = {"type": "http", "method": "GET", "path": f"/orders/{n}", "headers": []}
            await WideEventMiddleware(app, handler=handler)(scope, None, send)

    asyncio.run(three_requests())
    assert handler.flush(10)
    assert route.reads == reads
    assert [event["http"]["route"] for event in sink.events] == routes_stored
    assert handler.metrics.get("events.seen") == 3


def test_a_route_that_cannot_be_read_leaves_a_kept_event_without_one(
    make_handler: Callable[..., WideEventHandler], caplog: pytest.LogCaptureFixture
) -> None:
    class BrokenRoute:
        @property
        def path(self) -> str:
            raise RuntimeError("a route object of the app's that fails when read")

    sink = MemorySink()
    handler = make_handler(sink=sink, sampling={"normal_rate": 1.0})

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scope["route"] = BrokenRoute()
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/orders", "headers": []}
    with caplog.at_level(logging.WARNING, logger="wide_logging.internal"):
        asyncio.run(WideEventMiddleware(app, handler=handler)(scope, None, send))
    assert handler.flush(10)
    [event] = sink.events
    assert "route" not in event["http"]
    assert event["http"]["response"]["status_code"] == 201
    assert sent[0]["status"] == 201
    assert "could not read the route template" in caplog.text
