"""Everything is in pyproject.toml; this adds the compiled modules when they are asked for
(``WIDE_LOGGING_COMPILE=1``: build_support/wide_logging_build.py, docs/deployment.md)."""

import sys
from pathlib import Path

from setuptools import setup

sys.path.insert(0, str(Path(__file__).resolve().parent / "build_support"))
import wide_logging_build as build


def compiled_extensions() -> list:
    if not build.compile_requested() or build.collecting_requirements:
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        sys.exit(
            f"WIDE_LOGGING_COMPILE=1 needs {build.MYPYC_REQUIREMENT} where the package is "
            "built (pip installs it itself, unless --no-build-isolation is given)"
        )
    return mypycify(build.COMPILED_MODULES, opt_level="3")


setup(ext_modules=compiled_extensions())
