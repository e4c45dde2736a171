"""The package's build backend: setuptools', plus mypy when the compiled build is asked for.

``WIDE_LOGGING_COMPILE=1 pip install .`` (in a checkout; ``pip wheel .`` for a wheel)
compiles the modules every request runs through with mypyc; without it the package is
pure Python. mypy is only needed to build, so it is a build requirement only then: a pure
build needs nothing but setuptools. ``setup.py`` reads what to compile from here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403  (the rest of the backend's interface)

#: The mypy (mypyc) release the compiled build is made and tested with.
MYPYC_REQUIREMENT = "mypy==2.4.1"
#: What the compiled build compiles: the modules every request runs through (the ASGI
#: middleware, the event, the decision, ids, fields, context, cleaning, the
#: encoder, log records). Everything else is pure Python in either build.
COMPILED_MODULES = [
    "wide_logging/_clean.py",
    "wide_logging/_ids.py",
    "wide_logging/_records.py",
    "wide_logging/context.py",
    "wide_logging/event.py",
    "wide_logging/fields.py",
    "wide_logging/middleware/asgi.py",
    "wide_logging/sampling.py",
    "wide_logging/serialize.py",
]

#: True while setuptools runs setup.py only to learn its build requirements: mypy is not
#: installed yet then (it is what this backend adds to them).
collecting_requirements = False


def compile_requested() -> bool:
    return os.environ.get("WIDE_LOGGING_COMPILE", "").strip().lower() in {"1", "true", "yes"}


@contextlib.contextmanager
def _collecting() -> Iterator[None]:
    global collecting_requirements
    collecting_requirements = True
    try:
        yield
    finally:
        collecting_requirements = False


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    with _collecting():
        requires = _setuptools.get_requires_for_build_wheel(config_settings)
    return [*requires, MYPYC_REQUIREMENT] if compile_requested() else requires


def get_requires_for_build_editable(config_settings: dict[str, Any] | None = None) -> list[str]:
    with _collecting():
        requires = _setuptools.get_requires_for_build_editable(config_settings)
    return [*requires, MYPYC_REQUIREMENT] if compile_requested() else requires


def build_wheel(
    wheel_directory: str,
    config_settings: dict[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    # setuptools reuses ./build: a wheel would carry what an earlier build compiled there
    # (a pure wheel the compiled modules, or a compiled one a stale module's shared library)
    shutil.rmtree("build", ignore_errors=True)
    return _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)
