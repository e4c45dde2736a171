"""Running the ``wide-logging`` command as a user does — a fresh interpreter per run —
and reading its time and peak memory (the child's own ``ru_maxrss``)."""

from __future__ import annotations

import subprocess
import sys
import time

#: Runs the command, then reports this process's peak memory on the last line of stderr.
CHILD = (
    "import resource, sys\n"
    "from wide_logging.tools.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "print('maxrss_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def run_cli(*args: str) -> tuple[float, int]:
    """Seconds the command took, and its peak memory in kB."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *args], capture_output=True, text=True, check=True
    )
    elapsed = time.perf_counter() - start
    return elapsed, int(done.stderr.strip().splitlines()[-1].split()[1])
