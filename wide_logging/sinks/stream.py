"""``stdout`` / ``stderr``: JSON lines on a standard stream, for containers that ship them."""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence

from .._errors import ConfigurationError


class StreamSink:
    def __init__(self, stream: str = "stdout") -> None:
        if stream not in ("stdout", "stderr"):
            msg = f"stream sink must be 'stdout' or 'stderr', got {stream!r}"
            raise ConfigurationError(msg)
        self.name = stream
        self._stream = stream
        self._lock = threading.Lock()

    def write(self, batch: Sequence[bytes]) -> None:
        data = b"\n".join([*batch, b""])  # the trailing newline without a second copy
        # Looked up on every write: test runners and daemons swap sys.stdout.
        target = getattr(sys, self._stream)
        with self._lock:
            buffer = getattr(target, "buffer", None)
            if buffer is not None:
                target.flush()
                buffer.write(data)
                buffer.flush()
            else:
                target.write(data.decode("utf-8"))
                target.flush()

    def close(self) -> None:
        pass
