"""The pytest plugin (registered as ``wide_logging`` through the ``pytest11`` entry point,
so active wherever wide_logging is installed; nothing to configure).

- ``wide_events``: the events of the test, as ``testing.capture_events()`` gives them.
- ``wide_logging_overhead``: what wide_logging costs your app per request, measured with
  pytest-benchmark (``tools/overhead.py``; docs/testing.md has copy-paste tests).

Loaded into every test session of a project that has wide_logging installed: it imports
the package (``wide_logging``'s own import, ~0.1 s) and nothing more until a test asks for
one of its fixtures.
"""

from __future__ import annotations

import importlib.util
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


if importlib.util.find_spec("pytest_benchmark") is not None:

    @pytest.fixture
    def wide_logging_overhead(benchmark: Any, tmp_path: Path) -> Any:
        """``.measure(app, requests, ...)``: the app bare and instrumented, alternated in
        rounds; ``.assert_within(us=... | percent=...)`` on what it returns."""
        # (``benchmark`` named here, not looked up: pytest-benchmark's --benchmark-only
        # and --benchmark-skip choose tests by the fixtures they name)
        from .tools.overhead import OverheadMeter

        return OverheadMeter(benchmark, tmp_path)

else:

    @pytest.fixture
    def wide_logging_overhead() -> Any:
        """Needs pytest-benchmark (``pip install pytest-benchmark``)."""
        pytest.fail(
            "wide_logging_overhead measures with pytest-benchmark: pip install pytest-benchmark",
            pytrace=False,
        )
