"""The pytest plugin (registered as ``wide_logging`` through the ``pytest11`` entry point,
so active wherever wide_logging is installed; nothing to configure).

- ``wide_events``: the events of the test, as ``testing.capture_events()`` gives them.
- ``wide_logging_overhead``: what wide_logging costs your app per request, measured with
  pytest-benchmark (``tools/overhead.py``; docs/testing.md has copy-paste tests).

Loaded into every test session of a project that has wide_logging installed, so it imports
nothing more until a test asks for one of its fixtures.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def wide_events() -> Iterator[Any]:
    """Every event finished during the test (kept or not: ``sampling.sampled_out``)."""
    from .testing import capture_events

    with capture_events() as events:
        yield events


@pytest.fixture
def wide_logging_overhead(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """``.measure(app, requests, ...)``: the app bare and instrumented, alternated in
    rounds; ``.assert_within(us=... | percent=...)`` on what it returns."""
    try:
        benchmark = request.getfixturevalue("benchmark")
    except pytest.FixtureLookupError:
        pytest.fail(
            "wide_logging_overhead measures with pytest-benchmark: pip install pytest-benchmark",
            pytrace=False,
        )
    from .tools.overhead import OverheadMeter

    return OverheadMeter(benchmark, tmp_path)
