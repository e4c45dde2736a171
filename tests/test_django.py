"""Django as Django users run and test it: ``wide_logging.django.WideEventMiddleware`` in
``settings.MIDDLEWARE`` (tests/apps/django_site, the README's recipe), exercised with
``django.test.Client`` and ``AsyncClient``, and served by runserver, gunicorn (WSGI) and
uvicorn (ASGI)."""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import read_jsonl, wait_for
from servers import free_port
from wide_logging import WideEventHandler
from wide_logging.testing import MemorySink, capture_events

pytestmark = pytest.mark.usefixtures("django_site")
TESTS = Path(__file__).parent


@pytest.fixture
def handler(make_handler: Callable[..., WideEventHandler]) -> Iterator[WideEventHandler]:
    handler = make_handler(sink=MemorySink(), sampling={"normal_rate": 1.0})
    shop = logging.getLogger("shop")
    shop.addHandler(handler)
    shop.setLevel(logging.INFO)
    yield handler
    shop.removeHandler(handler)


def only_request(events: list[dict[str, Any]]) -> dict[str, Any]:
    [event] = [e for e in events if e["kind"] == "http.request"]
    return event


def test_the_test_client_sees_one_event_with_the_route_and_the_id_echoed(
    handler: WideEventHandler,
) -> None:
    from django.test import Client

    with capture_events() as events:
        response = Client().get("/orders/42/", headers={"X-Request-ID": "req-dj-1"})
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "req-dj-1"
    event = only_request(events)
    assert event["request_id"] == "req-dj-1"
    assert event["http"] == {
        "request": {"method": "GET"},
        "route": "/orders/<int:order_id>/",
        "response": {"status_code": 200},
    }
    assert event["order"] == {"id": 42}
    assert event["logs"][0]["message"] == "order viewed"
    assert event["logs"][0]["order_id"] == 42  # the record's extra= fields, beside it


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/legacy/books/", "/legacy/(?P<slug>[a-z]+)/"),  # re_path: without ^ and $
        ("/api/items/7/", "/api/items/<int:item_id>/"),  # through include()
    ],
)
def test_route_templates_come_from_the_resolver(
    handler: WideEventHandler, path: str, route: str
) -> None:
    from django.test import Client

    with capture_events() as events:
        assert Client().get(path).status_code == 200
    assert only_request(events)["http"]["route"] == route


def test_a_view_that_raises_is_a_500_whose_event_keeps_the_error(
    handler: WideEventHandler,
) -> None:
    from django.test import Client

    with capture_events() as events:
        response = Client(raise_request_exception=False).get("/explode/")
    assert response.status_code == 500
    event = only_request(events)
    assert event["error"]["type"] == "ZeroDivisionError"
    assert event["sampling"]["rule"] == "error"
    assert event["http"]["response"]["status_code"] == 500
    assert "X-Request-ID" in response.headers


def test_a_streaming_response_ends_with_its_last_chunk(handler: WideEventHandler) -> None:
    from django.test import Client

    with capture_events() as events:
        response = Client().get("/stream/")
        assert events.requests() == []  # not before the body is sent
        body = b"".join(response.streaming_content)
    assert body == b"row 0\nrow 1\nrow 2\n"
    event = only_request(events)
    assert event["duration_ms"] >= 150  # three chunks of 50 ms
    assert [entry["message"] for entry in event["logs"]] == ["row 0", "row 1", "row 2"]


@pytest.mark.parametrize("path", ["/stream/", "/download/"])
def test_a_streamed_body_left_unread_does_not_swallow_the_next_requests(
    handler: WideEventHandler, path: str
) -> None:
    """A test that only looks at the status of a streaming or file response: its event is
    finished when the response is closed, and the next requests still get theirs."""
    from django.test import Client

    client = Client()
    with capture_events() as events:
        response = client.get(path, headers={"X-Request-ID": "unread"})
        assert response.status_code == 200
        response.close()
        client.get("/orders/9/", headers={"X-Request-ID": "next"})
    assert [e["request_id"] for e in events.requests()] == ["unread", "next"]
    with capture_events() as later:
        client.get(path)  # never read, never closed
        client.get("/orders/10/", headers={"X-Request-ID": "after"})
    assert [e["request_id"] for e in later.requests()] == ["after"]
    assert only_request(later)["order"] == {"id": 10}


def test_the_async_client_and_an_async_view(handler: WideEventHandler) -> None:
    from django.test import AsyncClient

    async def call() -> Any:
        return await AsyncClient().get("/async/3/")

    with capture_events() as events:
        response = asyncio.run(call())
    assert response.status_code == 200
    event = only_request(events)
    assert event["http"]["route"] == "/async/<int:n>/"
    assert event["async_view"] == {"n": 3}


def test_the_readme_testing_example_works_for_django(handler: WideEventHandler) -> None:
    from django.test import Client

    client = Client()
    with capture_events() as events:
        client.get("/orders/5/")
    assert events.requests()[0]["order"]["id"] == 5


@pytest.mark.parametrize(
    "sampling",
    [
        {"normal_rate": 1.0},  # kept: the stored event names Django's route
        {"normal_rate": 0.0, "critical_routes": ["/orders/<int:order_id>/"]},  # decided by it
    ],
)
def test_under_the_asgi_middleware_the_route_is_djangos(
    make_handler: Callable[..., WideEventHandler], sampling: dict[str, Any]
) -> None:
    """The ASGI middleware around Django's ASGI app, ours in MIDDLEWARE too (it then only
    adds the route): Django sets no ``scope["route"]``, and that must not erase it."""
    from django.core.asgi import get_asgi_application
    from starlette.testclient import TestClient

    from wide_logging import WideEventMiddleware

    sink = MemorySink()
    handler = make_handler(sink=sink, sampling=sampling)
    client = TestClient(WideEventMiddleware(get_asgi_application(), handler=handler))
    assert client.get("/orders/7/").status_code == 200  # (no lifespan: Django has none)
    assert handler.flush(10)
    [event] = sink.events
    assert event["http"]["route"] == "/orders/<int:order_id>/"
    assert event["order"] == {"id": 7}


# -- real servers -------------------------------------------------------------------------


def serve(argv: list[str], tmp: Path, **env: str) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = free_port()
    events = tmp / "events" / "events.jsonl"
    environment = {
        "PYTHONPATH": str(TESTS),
        "DJANGO_SETTINGS_MODULE": "apps.django_site.settings",
        "WIDE_LOGGING_SINK": f"file:{events}",
        "WIDE_LOGGING_FALLBACK": f"file:{tmp}/spool/events.jsonl",
        "WIDE_LOGGING_NORMAL_RATE": "1.0",
        "PATH": "/usr/bin:/bin",
        **env,
    }
    log = open(tmp / "server.log", "ab")  # noqa: SIM115 - the server's lifetime
    process = subprocess.Popen(
        [a.replace("{port}", str(port)) for a in argv],
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp,
    )

    def listening() -> bool:
        import socket

        if process.poll() is not None:
            pytest.fail(f"server exited early:\n{(tmp / 'server.log').read_text()[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            return False
        return True

    wait_for(listening, timeout=30, what="the server to listen")
    return process, port, events


def get(port: int, path: str, request_id: str) -> int:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    request.add_header("X-Request-ID", request_id)
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


SERVERS = {
    "runserver": [sys.executable, "-m", "django", "runserver", "127.0.0.1:{port}", "--noreload"],
    "gunicorn": [
        sys.executable, "-m", "gunicorn", "apps.django_site.wsgi:application",
        "-b", "127.0.0.1:{port}", "-w", "2", "--log-level", "warning",
    ],
    "uvicorn": [
        sys.executable, "-m", "uvicorn", "apps.django_site.asgi:application",
        "--host", "127.0.0.1", "--port", "{port}", "--log-level", "warning",
    ],
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("server", sorted(SERVERS))
def test_served_by_runserver_gunicorn_and_uvicorn(server: str, tmp_path: Path) -> None:
    process, port, events_file = serve(SERVERS[server], tmp_path)
    try:
        assert get(port, "/orders/1/", f"{server}-ok") == 200
        assert get(port, "/legacy/abc/", f"{server}-legacy") == 200
        assert get(port, "/explode/", f"{server}-fail") == 500
        assert get(port, "/stream/", f"{server}-stream") == 200
        wait_for(lambda: len(read_jsonl(events_file)) >= 4, timeout=30, what="events written")
    finally:
        process.send_signal(signal.SIGTERM if server != "runserver" else signal.SIGINT)
        process.wait(30)
    events = {e["request_id"]: e for e in read_jsonl(events_file) if e["kind"] == "http.request"}
    assert events[f"{server}-ok"]["http"]["route"] == "/orders/<int:order_id>/"
    assert events[f"{server}-ok"]["service"]["name"] == "django-shop"  # LOGGING from settings
    assert events[f"{server}-legacy"]["http"]["route"] == "/legacy/(?P<slug>[a-z]+)/"
    assert events[f"{server}-fail"]["error"]["type"] == "ZeroDivisionError"
    assert events[f"{server}-fail"]["http"]["response"]["status_code"] == 500
    assert events[f"{server}-stream"]["duration_ms"] >= 150


def test_a_warning_when_the_middleware_is_not_first(caplog: pytest.LogCaptureFixture) -> None:
    from django.test import override_settings

    from wide_logging.django import WideEventMiddleware

    later = ["django.middleware.common.CommonMiddleware", "wide_logging.django.WideEventMiddleware"]
    with caplog.at_level(logging.WARNING, "wide_logging.internal"):
        with override_settings(MIDDLEWARE=later):
            WideEventMiddleware(lambda request: None)
        assert "is not first in settings.MIDDLEWARE" in caplog.text
        caplog.clear()
        WideEventMiddleware(lambda request: None)  # the test site's order: first
        assert caplog.text == ""
