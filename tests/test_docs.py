"""The examples in README.md and docs/ run as printed.

A code block marked ``<!-- run: NAME -->`` on the line before it is run here: as a module
(its ``test_*`` functions called as pytest would), as a doctest (``>>>`` blocks), or checked
against what the tests' own apps use (configuration snippets)."""

from __future__ import annotations

import dataclasses
import doctest
import logging
import re
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import read_jsonl
from wide_logging import WideEventHandler
from wide_logging._config import PipelineOptions
from wide_logging.testing import MemorySink, capture_events

ROOT = Path(__file__).parent.parent
_MARKED = re.compile(r"<!-- run: ([\w-]+) -->\n```(\w+)\n(.*?)\n```", re.DOTALL)


def snippets(doc: str) -> dict[str, str]:
    found = {name: code for name, _, code in _MARKED.findall((ROOT / doc).read_text())}
    assert found, f"no runnable examples in {doc}"
    return found


def as_module(code: str, name: str, **names: Any) -> types.ModuleType:
    """Run ``code`` as a module of its own (Flask names its app after the module)."""
    module = types.ModuleType(f"doc_example_{name.replace('-', '_')}")
    module.__dict__.update(names)
    sys.modules[module.__name__] = module
    try:
        exec(compile(code, f"<{name}>", "exec"), module.__dict__)
    finally:
        sys.modules.pop(module.__name__, None)
    return module


def run_its_tests(module: types.ModuleType) -> list[str]:
    ran = []
    for name, function in vars(module).items():
        if name.startswith("test_") and callable(function):
            function()
            ran.append(name)
    assert ran, "the example has no test to run"
    return ran


@pytest.fixture
def handler(make_handler: Callable[..., WideEventHandler]) -> WideEventHandler:
    """The app's configured handler (its sink does not matter while capturing)."""
    return make_handler(sink=MemorySink())


# -- docs/testing.md: one example per framework ------------------------------------------


@pytest.mark.parametrize("example", ["fastapi", "flask", "fake-clock"])
def test_testing_md_examples(handler: WideEventHandler, example: str) -> None:
    run_its_tests(as_module(snippets("docs/testing.md")[example], example))


def test_testing_md_django_example(handler: WideEventHandler, django_site: None) -> None:
    """Run in the test project (tests/apps/django_site), configured as README.md says."""
    run_its_tests(as_module(snippets("docs/testing.md")["django"], "django"))


# -- README.md ------------------------------------------------------------------------------


def test_readme_fastapi_recipe(handler: WideEventHandler) -> None:
    from fastapi.testclient import TestClient

    async def load(order_id: int) -> dict[str, Any]:  # the app's own database call
        return {"id": order_id, "items": 2}

    app = as_module(snippets("README.md")["fastapi"], "readme-fastapi", load=load).app
    with capture_events() as events, TestClient(app) as client:
        response = client.get("/orders/3", headers={"X-Request-ID": "readme-1"})
    assert response.json() == {"id": 3, "items": 2}
    assert response.headers["x-request-id"] == "readme-1"
    [event] = events.requests()
    assert event["http"]["route"] == "/orders/{order_id}"
    assert event["order"] == {"id": 3}
    assert "db_ms" in event["timings"]


def test_readme_flask_recipe(handler: WideEventHandler) -> None:
    app = as_module(snippets("README.md")["flask"], "readme-flask").app
    with capture_events() as events:
        assert app.test_client().get("/products/5").json == {"id": 5}
    [event] = events.requests()
    assert event["http"]["route"] == "/products/<int:product_id>"
    assert event["product"] == {"id": 5}


def test_readme_django_settings_are_the_test_projects(django_site: None) -> None:
    """tests/test_django.py runs a project configured with the README's settings: the same
    middleware first, the same handler class in LOGGING."""
    readme = as_module(snippets("README.md")["django-settings"], "readme-django")
    from apps.django_site import settings

    assert (
        readme.MIDDLEWARE[0] == settings.MIDDLEWARE[0] == "wide_logging.django.WideEventMiddleware"
    )
    ours, theirs = readme.LOGGING["handlers"]["wide"], settings.LOGGING["handlers"]["wide"]
    assert ours["class"] == theirs["class"] == "wide_logging.WideEventHandler"
    assert readme.LOGGING["root"] == settings.LOGGING["root"]
    logging.config.dictConfig({**readme.LOGGING, "handlers": {}, "root": {}})  # valid


@pytest.mark.parametrize("client_kind", ["starlette", "flask", "django"])
def test_readme_testing_example_with_each_frameworks_client(
    handler: WideEventHandler, client_kind: str, request: pytest.FixtureRequest
) -> None:
    """The README's test, given each framework's test client as ``client``."""
    client: Any
    if client_kind == "starlette":
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse
        from starlette.routing import Route
        from starlette.testclient import TestClient

        from wide_logging import WideEventMiddleware, annotate

        async def checkout(request: Any) -> JSONResponse:
            annotate(cart=await request.json())
            return JSONResponse({"ok": True})

        app = Starlette(routes=[Route("/checkout", checkout, methods=["POST"])])
        client = TestClient(WideEventMiddleware.install(app))
    elif client_kind == "flask":
        from flask import Flask
        from flask import request as flask_request

        from wide_logging import WideEventWSGIMiddleware, annotate

        flask_app = Flask("readme_testing")
        flask_app.wsgi_app = WideEventWSGIMiddleware(flask_app.wsgi_app)  # type: ignore[method-assign]

        @flask_app.post("/checkout")
        def flask_checkout() -> dict[str, bool]:
            annotate(cart=flask_request.json)
            return {"ok": True}

        client = flask_app.test_client()
    else:
        request.getfixturevalue("django_site")
        from django.test import Client

        client = Client()
    code = snippets("README.md")["testing"]
    if client_kind == "django":  # as the README says Django's client posts JSON
        code = code.replace(
            'client.post("/checkout", json={"items": 3})',
            'client.post("/checkout/", {"items": 3}, content_type="application/json")',
        )
        readme = (ROOT / "README.md").read_text()
        assert 'client.post("/checkout/", {"items": 3}, content_type="application/json")' in readme
    module = as_module(code, f"readme-testing-{client_kind}")
    module.test_checkout_records_the_cart(client)


# -- docs/sampling.md -----------------------------------------------------------------------


def test_sampling_md_explain_doctest() -> None:
    parser = doctest.DocTestParser()
    test = parser.get_doctest(snippets("docs/sampling.md")["explain"], {}, "explain", None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
    assert runner.summarize(verbose=False).attempted == 2


def test_sampling_md_reweighting_reads_a_folder_with_log_and_metrics_events(
    make_handler: Callable[..., WideEventHandler], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = make_handler(
        sink=f"file:{tmp_path}/wide-logs/events.jsonl",
        sampling={"normal_rate": 0.5, "key": "docs-test-key-0123"},
    )
    log = logging.getLogger("test.docs.reweight")
    log.addHandler(handler)
    try:
        kept = 0
        for n in range(200):
            event = handler.new_event(request_id=f"r-{n}")
            event.method, event.route, event.status = "GET", "/items/{id}", 200
            decision = handler.submit(event)
            assert decision is not None
            kept += decision.keep
        log.warning("a record outside any request: a kind: log event")
    finally:
        log.removeHandler(handler)
    assert handler.flush(5)
    stored = [e["kind"] for e in read_jsonl(tmp_path / "wide-logs" / "events.jsonl")]
    assert "log" in stored  # the event the snippet once failed on (KeyError: 'http')
    monkeypatch.chdir(tmp_path)
    module = as_module(snippets("docs/sampling.md")["reweight"], "reweight")
    assert module.estimate == {"/items/{id}": kept * 2}


# -- docs/configuration.md ------------------------------------------------------------------


def test_configuration_md_states_each_pipeline_default_the_code_uses() -> None:
    """The options table says what a handler does when an option is left out."""
    table = (ROOT / "docs/configuration.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| `([^`]+)`", table, re.MULTILINE))
    defaults = PipelineOptions()
    for field in dataclasses.fields(PipelineOptions):
        assert field.name in rows, f"docs/configuration.md has no row for {field.name}"
        assert float(rows[field.name]) == getattr(defaults, field.name), field.name
