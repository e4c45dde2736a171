"""The optional compiled build: what the source needs for it, and whether it is in use.

``WIDE_LOGGING_COMPILE=1 pip install wide-logging --no-binary wide-logging`` compiles the
modules every request runs through with mypyc (``build_support/wide_logging_build.py``
lists them); the pure-Python modules stay in the package beside them and are what runs
wherever the compiled ones are absent. Compiled code checks declared types at run time, so
what the app hands us (statuses, keys, options) is declared ``Any``/``object`` on the
request path and checked by our own code, as in the pure build.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_extensions import mypyc_attr
else:
    try:
        from mypy_extensions import mypyc_attr
    except ImportError:  # the decorator means something only to mypyc, at build time

        def mypyc_attr(*_args: Any, **_options: Any) -> Any:
            return lambda cls: cls


def is_compiled() -> bool:
    """True when this process runs the compiled build of the request path (asked of where
    the event's module is found: no import of it from here)."""
    spec = importlib.util.find_spec(f"{__package__}.event")
    return spec is not None and not (spec.origin or "").endswith(".py")


__all__ = ["is_compiled", "mypyc_attr"]
