"""The optional compiled build (mypyc; docs/deployment.md): which build a run tests, and
what the compiled one must keep of the pure one's behaviour.

CI runs the request path's tests twice: against the pure package, and against a wheel
built with ``WIDE_LOGGING_COMPILE=1``, with ``WIDE_LOGGING_TEST_COMPILED=1`` saying so.
"""

from __future__ import annotations

import ast
import gc
import importlib
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import wide_logging
from wide_logging._clean import CLEANER_OPTIONS
from wide_logging._compiled import is_compiled
from wide_logging.event import WideEvent
from wide_logging.handler import WideEventHandler
from wide_logging.middleware.asgi import WideEventMiddleware
from wide_logging.sampling import TailSampler
from wide_logging.serialize import Serializer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "build_support"))
from wide_logging_build import COMPILED_MODULES  # noqa: E402

COMPILED_RUN = os.environ.get("WIDE_LOGGING_TEST_COMPILED") == "1"


def test_the_run_tests_the_build_it_says() -> None:
    """A compiled run that silently imported the pure package would prove nothing."""
    assert is_compiled() is COMPILED_RUN
    for path in COMPILED_MODULES:
        name = path.removesuffix(".py").replace("/", ".")
        origin = importlib.import_module(name).__file__ or ""
        assert origin.endswith(".py") is not COMPILED_RUN, (name, origin)
    # the rest is pure Python in either build
    assert wide_logging.pipeline.__file__.endswith(".py")


def test_the_event_options_are_the_cleaners_keywords() -> None:
    """``CLEANER_OPTIONS`` names what ``Cleaner.__init__`` takes (read from the source: a
    compiled signature cannot be inspected), so that no option is refused or let through."""
    package = Path(wide_logging.__file__).parent  # the .py files are there in either build
    source = ast.parse((package / "_clean.py").read_text())
    init = next(
        node
        for cls in source.body
        if isinstance(cls, ast.ClassDef) and cls.name == "Cleaner"
        for node in cls.body
        if isinstance(node, ast.FunctionDef) and node.name == "__init__"
    )
    keywords = [arg.arg for arg in init.args.kwonlyargs]
    assert keywords == [*CLEANER_OPTIONS, "count_refused"]


def test_a_handler_refused_halfway_leaves_nothing_that_crashes_a_collection() -> None:
    """Compiled as a native class, a handler whose configuration failed after logging had
    registered it freed logging's weak reference to it: the next collection crashed."""
    for options in ({"redact": "password"}, {"max_logs": -1}, {"max_items": 0}) * 3:
        with pytest.raises(wide_logging.ConfigurationError):
            WideEventHandler(**options)
        gc.collect()


@pytest.mark.parametrize(
    "base", [WideEvent, TailSampler, Serializer, WideEventMiddleware, WideEventHandler]
)
def test_apps_can_subclass_the_public_classes(base: type) -> None:
    class Mine(base):  # type: ignore[misc,valid-type]
        marker = "mine"

    assert Mine.marker == "mine"
    assert issubclass(Mine, base)


def test_the_events_fields_take_what_an_app_writes_there() -> None:
    """The request fields are the app's to set; a compiled build must not refuse a value
    of an unexpected type where the pure one stores it."""
    event = WideEvent("request", Serializer())
    for value in (200.0, "200", [200], True, None, object()):
        event.status = value
        event.route = value
        event.method = value
        event.force_keep = value
    event.end_ns = 1.5
    event.set(1, "a non-str path")  # type: ignore[arg-type]


def test_a_record_made_by_hand_with_odd_attributes_reaches_the_event() -> None:
    event = WideEvent("request", Serializer())
    record: Any = logging.makeLogRecord({"name": None, "msg": "by hand", "levelno": 20})
    event.add_log(record)
    assert event.finalize({}, {})["logs"][0]["logger"] == "None"


@pytest.mark.parametrize(
    "options",
    [{"max_string": "8192"}, {"max_logs": True}, {"redact": 5}, {"redact_pattern": 123}],
)
def test_a_wrong_type_of_option_is_a_configuration_error(options: dict[str, Any]) -> None:
    with pytest.raises(wide_logging.ConfigurationError):
        Serializer(**options)


def test_the_version_says_which_build() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wide_logging", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0
    build = "compiled request path" if COMPILED_RUN else "pure Python"
    assert result.stdout.strip().endswith(f"({build})")
