from __future__ import annotations

import inspect
import subprocess
import sys

import wide_logging


def test_all_is_sorted_and_complete() -> None:
    public = {
        name
        for name, value in vars(wide_logging).items()
        if not name.startswith("_")
        and not inspect.ismodule(value)
        and name != "annotations"  # from __future__
    }
    assert wide_logging.__all__ == sorted(wide_logging.__all__)
    assert public | {"__version__"} == set(wide_logging.__all__)


def test_contract_names_exist() -> None:
    for name in (
        "WideEventMiddleware",
        "WideEventWSGIMiddleware",
        "WideEventHandler",
        "annotate",
        "current_event",
        "span",
        "flush",
        "explain",
    ):
        assert hasattr(wide_logging, name)
    from wide_logging.testing import MemorySink, capture_events

    assert callable(capture_events)
    assert MemorySink().name == "memory:"


def test_import_needs_only_the_core_dependencies() -> None:
    code = (
        "import sys\n"
        "for blocked in ('redis', 'pymongo', 'starlette', 'prometheus_client', 'flask', 'django'):\n"
        "    sys.modules[blocked] = None\n"
        "import wide_logging, wide_logging.testing\n"
        "h = wide_logging.WideEventHandler(sink='memory:')\n"
        "h.close()\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "ok"
