"""Text from events in markdown (a chat, a ticket, a pull request): no pipe or line break
can break a table, and no HTML or link is made of it — a renderer that allows HTML must not
run an error message."""

from __future__ import annotations

_ESCAPES = {
    "|": "\\|", "`": "'", "<": "&lt;", ">": "&gt;", "&": "&amp;", "[": "\\[", "]": "\\]",
    "*": "\\*", "_": "\\_", "\\": "\\\\", "#": "\\#",
}  # fmt: skip


def cell(text: object) -> str:
    """``text`` as inert markdown on one line."""
    escaped = "".join(_ESCAPES.get(c, c) for c in str(text))
    return " ".join(escaped.split())


def code(text: object) -> str:
    """``text`` as a code span on one line: shown as it is, HTML included, never rendered
    (a backtick would end it, a pipe end a table's cell: both replaced)."""
    inert = " ".join(str(text).replace("`", "'").replace("|", "\\|").split())
    return f"`{inert}`"
