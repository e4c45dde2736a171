from __future__ import annotations

import asyncio
import contextvars
import inspect
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from wide_logging import ConfigurationError, annotate, current_event, span
from wide_logging.context import activate, deactivate
from wide_logging.event import WideEvent
from wide_logging.serialize import Serializer


@pytest.fixture
def event():  # type: ignore[no-untyped-def]
    ev = WideEvent("http.request", Serializer(), request_id="r")
    token = activate(ev)
    yield ev
    deactivate(token)


def test_annotate_without_an_event_is_a_noop() -> None:
    assert current_event() is None
    assert annotate(x=1) is False


def test_annotate_lands_on_the_current_event(event: WideEvent) -> None:
    assert current_event() is event
    assert annotate(user={"id": 1}) is True
    assert event.get("user.id") == 1


def test_annotate_leaves_the_callers_fields_as_they_are_and_honours_a_subclass() -> None:
    """``annotate()`` hands its keyword dict to ``add_fields()`` (no second copy); an event
    of a subclass that has its own ``annotate()`` (a PII rule) gets that one."""

    class NoEmail(WideEvent):
        __slots__ = ()

        def annotate(self, /, **fields: object) -> None:
            fields.pop("email", None)
            super().annotate(**fields)

    fields = {"user_id": 7, "email": "a@example.com", "force_keep": True}
    for kind in (WideEvent, NoEmail):
        event = kind("http.request", Serializer(), request_id="r")
        token = activate(event)
        try:
            assert annotate(**fields) is True
            event.add_fields(fields)  # a mapping of the caller's: never changed
        finally:
            deactivate(token)
        assert fields == {"user_id": 7, "email": "a@example.com", "force_keep": True}
        assert event.force_keep
        assert event.get("user_id") == 7
        assert event.get("force_keep") is None
    assert event.get("email") == "a@example.com"  # (add_fields is not annotate)
    subclassed = NoEmail("http.request", Serializer(), request_id="r")
    token = activate(subclassed)
    try:
        annotate(email="a@example.com", plan="pro")
    finally:
        deactivate(token)
    assert (subclassed.get("email"), subclassed.get("plan")) == (None, "pro")


def test_annotate_never_raises_on_bad_input(event: WideEvent) -> None:
    class Evil:
        def __repr__(self) -> str:
            raise RuntimeError

    loop: dict = {}
    loop["loop"] = loop
    assert annotate(evil=Evil(), loop=loop, blob="x" * 100_000, raw=b"\xff")
    assert event.get("loop") == {"loop": "[cycle]"}


def test_span_as_context_manager_and_reentrant(event: WideEvent) -> None:
    db = span("db")
    with db:
        time.sleep(0.002)
        with db:
            time.sleep(0.002)
    fields = event.finalize({}, {})
    assert fields["timings"]["db_ms"] >= 6  # outer (>=4) + inner (>=2)


def test_span_decorates_sync_and_async_functions_keeping_signatures(event: WideEvent) -> None:
    @span("render")
    def render(template: str, *, strict: bool = False) -> str:
        """Render it."""
        return template.upper()

    @span("fetch")
    async def fetch(url: str) -> int:
        await asyncio.sleep(0.001)
        return len(url)

    assert render("x") == "X"
    assert asyncio.run(fetch("abc")) == 3

    def twin(template: str, *, strict: bool = False) -> str:
        return template

    assert inspect.signature(render) == inspect.signature(twin)
    assert "strict" in str(inspect.signature(render))
    assert render.__name__ == "render"
    assert render.__doc__ == "Render it."
    assert inspect.iscoroutinefunction(fetch)
    timings = event.finalize({}, {})["timings"]
    assert set(timings) == {"render_ms", "fetch_ms"}
    assert timings["fetch_ms"] >= 1


def test_span_records_even_when_the_block_raises(event: WideEvent) -> None:
    with pytest.raises(ZeroDivisionError), span("calc"):
        _ = 1 / 0
    assert "calc_ms" in event.finalize({}, {})["timings"]


def test_span_name_is_validated() -> None:
    with pytest.raises(ConfigurationError):
        span("")


def test_threads_with_copied_context_share_the_event(event: WideEvent) -> None:
    ctx = contextvars.copy_context()
    with ThreadPoolExecutor(2) as pool:
        pool.submit(ctx.run, annotate, from_thread=True).result()

    async def main() -> None:
        await asyncio.to_thread(annotate, from_to_thread=True)

    asyncio.run(main())
    assert event.get("from_thread") is True
    assert event.get("from_to_thread") is True
