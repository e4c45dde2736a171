"""The library's own log records (``wide_logging.*`` loggers): scrubbed, and shown.

Our warnings ("sink failed", "spool failed") may quote a URL with its password or an app's
exception; they leave with secrets masked and a traceback formatted here, guarded. And
they must be seen: with the README's config (root -> only the wide handler) they would
otherwise vanish, so one that reached a wide handler goes to stderr when no other handler
on its way shows it — as ``logging.lastResort`` does when there are no handlers at all.
"""

from __future__ import annotations

import logging
import sys
import traceback

from ._records import record_message
from ._secret_names import URL_MASK
from ._secrets import scrub_text

_internal = logging.getLogger("wide_logging.internal")


class _ScrubInternal(logging.Filter):
    """On ``wide_logging.internal``: text scrubbed of secrets, the traceback formatted here
    (the app's exception in it may break formatting)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            record.msg = scrub_text(record_message(record), mask=URL_MASK)
            record.args = None
            if record.exc_info:
                try:
                    text = "".join(traceback.format_exception(*record.exc_info))
                except BaseException:
                    text = "<traceback unavailable>"
                record.exc_text = scrub_text(text, mask=URL_MASK)
                record.exc_info = None
        except BaseException:
            record.msg, record.args, record.exc_info = "wide_logging internal error", None, None
        return True


_internal.addFilter(_ScrubInternal())


class _Stderr(logging.Handler):
    """Our own warnings on ``sys.stderr`` (looked up per record: test runners swap it)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


_stderr = _Stderr()


def show_if_nobody_else_does(record: logging.LogRecord, ours: type[logging.Handler]) -> None:
    """Write a warning of ours that reached a handler of type ``ours`` (which never puts
    it in an event: that would loop) to stderr, unless another handler shows it."""
    if record.levelno < logging.WARNING or record.__dict__.get("_wide_logging_shown"):
        return
    record._wide_logging_shown = True
    logger: logging.Logger | None = logging.getLogger(record.name)
    while logger is not None:
        for handler in logger.handlers:
            if not isinstance(handler, ours) and record.levelno >= handler.level:
                return  # somebody else shows it
        if not logger.propagate:
            break
        logger = logger.parent
    _stderr.handle(record)
