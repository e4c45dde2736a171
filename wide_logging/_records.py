"""What a ``logging.LogRecord`` holds for an event: its message and its ``extra=`` fields,
read without ever raising (an app's record may carry anything)."""

from __future__ import annotations

import logging
from typing import Any

from ._text import safe_repr

#: What every LogRecord has (and what logging adds while formatting): anything else on a
#: record came from ``extra=``.
_STANDARD_RECORD_KEYS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "_wide_logging_attached",
    "_wide_logging_shown",
}


#: Attributes of a record logged without ``extra=``.
PLAIN_RECORD_SIZE = len(logging.LogRecord("", 0, "", 0, "", None, None).__dict__)


def record_extra(record: logging.LogRecord) -> dict[str, Any] | None:
    """The ``extra=`` fields of a log record (the keys not every record has), or None."""
    attributes = record.__dict__
    # The common case, without a set difference: nothing but the standard attributes (and
    # the flag this handler sets on the records it attaches).
    if len(attributes) - ("_wide_logging_attached" in attributes) <= PLAIN_RECORD_SIZE:
        return None
    names = attributes.keys() - _STANDARD_RECORD_KEYS
    if not names:
        return None
    return {name: attributes[name] for name in names if not name.startswith("_")} or None


def record_message(record: logging.LogRecord) -> str:
    """``record.getMessage()``, falling back to the raw message when its args do not fit
    (and to reprs when even ``str(msg)`` fails). Never raises."""
    try:
        message = record.getMessage()
        if type(message) is str:
            return message
    except Exception:
        pass
    msg = record.msg
    return f"{msg if type(msg) is str else safe_repr(msg)} (args: {safe_repr(record.args)})"
