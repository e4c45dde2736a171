from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask, Response, stream_with_context

from wide_logging import WideEventHandler, WideEventWSGIMiddleware, annotate
from wide_logging.testing import MemorySink, capture_events

log = logging.getLogger("app.wsgi")


@pytest.fixture
def handler(make_handler: Callable[..., WideEventHandler]) -> Iterator[WideEventHandler]:
    handler = make_handler(sink=MemorySink(), sampling={"normal_rate": 1.0})
    logger = logging.getLogger("app")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)


def flask_app() -> Flask:
    app = Flask("shop")

    @app.get("/products/<int:product_id>")
    def product(product_id: int) -> dict[str, int]:
        annotate(product={"id": product_id})
        log.info("product viewed")
        return {"id": product_id}

    @app.get("/crash")
    def crash() -> str:
        raise LookupError("no such product")

    @app.get("/stream")
    def stream() -> Response:
        def body() -> Iterator[str]:
            for n in range(3):
                log.info("row %d", n)
                yield f"row {n}\n"

        return Response(stream_with_context(body()))

    app.wsgi_app = WideEventWSGIMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    return app


def requests_of(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["kind"] == "http.request"]


def test_flask_route_template_annotations_and_logs(handler: WideEventHandler) -> None:
    client = flask_app().test_client()
    with capture_events() as events:
        response = client.get("/products/7", headers={"User-Agent": "flask-test"})
        assert response.json == {"id": 7}  # reading the body ends the request
    assert response.status_code == 200
    [event] = requests_of(events)
    assert event["http"] == {
        "request": {"method": "GET"},
        "route": "/products/<int:product_id>",
        "response": {"status_code": 200},
    }
    assert event["url"]["path"] == "/products/7"
    assert event["product"] == {"id": 7}
    assert event["user_agent"]["original"] == "flask-test"
    assert [entry["message"] for entry in event["logs"]] == ["product viewed"]
    assert response.headers["X-Request-ID"] == event["request_id"]


def test_flask_handled_exception_is_recorded(handler: WideEventHandler) -> None:
    client = flask_app().test_client()
    with capture_events() as events:
        response = client.get("/crash")
        response.close()
    assert response.status_code == 500
    [event] = requests_of(events)
    assert event["error"]["type"] == "LookupError"
    assert event["error"]["message"] == "no such product"
    assert event["http"]["route"] == "/crash"
    assert event["sampling"]["rule"] == "error"


def test_flask_streaming_body_logs_and_duration(handler: WideEventHandler) -> None:
    client = flask_app().test_client()
    with capture_events() as events:
        response = client.get("/stream")
        assert response.get_data(as_text=True) == "row 0\nrow 1\nrow 2\n"
        response.close()
    [event] = requests_of(events)
    assert [entry["message"] for entry in event["logs"]] == ["row 0", "row 1", "row 2"]


def test_incoming_request_id_is_echoed(handler: WideEventHandler) -> None:
    client = flask_app().test_client()
    with capture_events() as events:
        response = client.get("/products/1", headers={"X-Request-ID": "req-77"})
        response.close()
    assert response.headers["X-Request-ID"] == "req-77"
    assert requests_of(events)[0]["request_id"] == "req-77"


def test_plain_wsgi_app_exception_propagates_with_the_event(handler: WideEventHandler) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise ConnectionResetError("upstream gone")

    wrapped = WideEventWSGIMiddleware(app)
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/x", "SCRIPT_NAME": "/app"}
    with capture_events() as events, pytest.raises(ConnectionResetError):
        wrapped(environ, lambda *a: None)
    [event] = requests_of(events)
    assert event["url"]["path"] == "/app/x"
    assert event["http"]["response"]["status_code"] == 500
    assert event["error"]["type"] == "ConnectionResetError"


def test_body_error_during_iteration_is_recorded(handler: WideEventHandler) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"partial"
        raise BrokenPipeError("client went away")

    headers: list[Any] = []
    wrapped = WideEventWSGIMiddleware(app)
    with capture_events() as events:
        body = wrapped(
            {"REQUEST_METHOD": "GET", "PATH_INFO": "/"}, lambda s, h, e=None: headers.extend(h)
        )
        with pytest.raises(BrokenPipeError):
            list(body)
        body.close()  # type: ignore[attr-defined]
    [event] = requests_of(events)
    assert event["error"]["type"] == "BrokenPipeError"
    assert event["http"]["response"]["status_code"] == 200
    assert ("X-Request-ID", event["request_id"]) in headers


@pytest.mark.usefixtures("django_site")
def test_django_wsgi_handler_wrapped_gives_one_event_with_route_and_error(
    handler: WideEventHandler,
) -> None:
    """The WSGI wrapper around Django's handler (documented for WSGI apps in general); the
    site also lists the Django middleware, which then only adds the route: one event."""
    from django.core.handlers.wsgi import WSGIHandler
    from werkzeug.test import Client  # a plain WSGI client: Django's own bypasses WSGI

    client = Client(WideEventWSGIMiddleware(WSGIHandler()))
    with capture_events() as events:
        ok = client.get("/orders/12/")
        ok.close()
        failed = client.get("/explode/")
        failed.close()
    assert ok.status_code == 200
    assert failed.status_code == 500
    first, second = requests_of(events)
    assert first["http"]["route"] == "/orders/<int:order_id>/"
    assert first["order"] == {"id": 12}
    assert second["error"]["type"] == "ZeroDivisionError"
    assert second["http"]["route"] == "/explode/"


def test_a_body_whose_close_raises_is_an_error(handler: WideEventHandler) -> None:
    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"partial"

        def close(self) -> None:
            raise OSError("connection pool broken")

    def app(environ: dict[str, Any], start_response: Any) -> Body:
        start_response("200 OK", [])
        return Body()

    with capture_events() as events:
        body = WideEventWSGIMiddleware(app)(
            {"REQUEST_METHOD": "GET", "PATH_INFO": "/"}, lambda *a: None
        )
        with pytest.raises(OSError, match="pool broken"):
            body.close()  # type: ignore[attr-defined]
    [event] = requests_of(events)
    assert event["error"]["type"] == "OSError"
    assert event["sampling"]["rule"] == "error"


def test_flask_test_client_sees_the_event_without_reading_the_body(
    handler: WideEventHandler,
) -> None:
    client = flask_app().test_client()
    with capture_events() as events:
        client.get("/products/3")  # never read, never closed: as in users' tests
        client.get("/crash")
    ok, crash = requests_of(events)
    assert ok["http"]["response"]["status_code"] == 200
    assert crash["http"]["response"]["status_code"] == 500
    assert crash["error"]["type"] == "LookupError"


@pytest.mark.parametrize(
    ("sampling", "resolved", "stored_routes"),
    [
        ({"normal_rate": 0.0}, [], []),  # sampled out: Django's resolver is not run again
        ({"normal_rate": 1.0}, ["/a", "/b"], ["/items/<id>"] * 2),
        ({"normal_rate": 0.0, "critical_routes": ["/items/*"]}, ["/a", "/b"], ["/items/<id>"] * 2),
    ],
)
def test_a_route_resolver_runs_only_for_events_that_need_their_route(
    make_handler: Callable[..., WideEventHandler],
    sampling: dict[str, Any],
    resolved: list[str],
    stored_routes: list[str],
) -> None:
    """The resolver a middleware around Django's ``WSGIHandler`` gets matches the path
    again; here a stand-in that records what it was asked."""
    sink = MemorySink()
    handler = make_handler(sink=sink, sampling=sampling)
    asked: list[str] = []

    def resolve(environ: dict[str, Any]) -> str:
        asked.append(environ["PATH_INFO"])
        return "/items/<id>"

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b"ok"]

    wrapped = WideEventWSGIMiddleware(app, handler=handler)
    wrapped._resolve_route = resolve  # what _install_framework_hooks gives for Django
    for path in ("/a", "/b"):
        body = wrapped({"REQUEST_METHOD": "GET", "PATH_INFO": path}, lambda s, h, e=None: None)
        assert list(body) == [b"ok"]  # (the body read to its end finishes the event)
    assert handler.flush(10)
    assert asked == resolved
    assert [event["http"]["route"] for event in sink.events] == stored_routes
