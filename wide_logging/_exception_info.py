"""Reading an exception without trusting it: the ``error.*`` fields of an event.

An exception is the app's object, and it is hostile by accident more often than one would
think: a ``code`` property that raises, a ``__str__`` that fails or returns a megabyte, args
that hold a cycle, a ``__cause__`` chain that loops. Whatever it does, the app must get
its own exception back and the event must still say an error happened. So every read here
is guarded — against ``BaseException`` too: a ``__str__`` that raises ``gevent.Timeout``
must not replace the app's exception — and falls back to the type name; the core
attributes (``args``, ``__cause__``, ``__context__``, ``__traceback__``) are read through
``BaseException``'s own descriptors and the type through ``type()``, so a subclass property
(even ``__class__``) cannot intercept them; and sizes are capped *before* text is built.
The whole stack, source lines included, is scrubbed of secrets.
"""

from __future__ import annotations

import asyncio
import reprlib
import traceback
from collections.abc import Callable
from typing import Any, Protocol

#: Chained exceptions (``__cause__`` / ``__context__``) followed at most.
MAX_CHAIN = 10
#: Frames formatted per exception of the chain, innermost kept.
MAX_FRAMES = 64
_NOTES_MAX = 10
_MAX_TYPE_NAME = 256
_MAX_CODE = 256

# BaseException's own descriptors: a subclass property of the same name cannot intercept.
_OWN: Any = vars(BaseException)
_args_of: Callable[[BaseException], tuple[Any, ...]] = _OWN["args"].__get__
_cause_of: Callable[[BaseException], Any] = _OWN["__cause__"].__get__
_context_of: Callable[[BaseException], Any] = _OWN["__context__"].__get__
_suppress_context_of: Callable[[BaseException], bool] = _OWN["__suppress_context__"].__get__
_traceback_of: Callable[[BaseException], Any] = _OWN["__traceback__"].__get__


class TextPolicy(Protocol):
    """What the serializer offers for text: the cap, clipping and secret scrubbing."""

    max_string: int

    def clip(self, text: str, limit: int | None = None) -> str: ...

    def scrub(self, text: str) -> str: ...


def type_name(exc: BaseException) -> str:
    """``ValueError``, or ``package.module.PaymentError`` for non-builtins."""
    kind = type(exc)
    try:
        module, qualname = kind.__module__, kind.__qualname__
        if type(qualname) is not str:
            raise TypeError(qualname)
        name = qualname if module == "builtins" else f"{module}.{qualname}"
    except BaseException:
        name = type.__getattribute__(kind, "__name__")
    return name[:_MAX_TYPE_NAME]


def exception_fields(exc: BaseException, text: TextPolicy) -> dict[str, Any]:
    """``error.{type, message, stack, code}`` for ``exc``; never raises."""
    fields: dict[str, Any] = {"type": type_name(exc)}
    try:
        fields["message"] = exception_message(exc, text)
        fields["stack"] = _stack(exc, text)
        code = _code(exc)
        if code is not None:
            fields["code"] = text.scrub(code) if type(code) is str else code
    except BaseException:  # a failure of ours: the type alone still marks the error
        fields.setdefault("message", f"<unprintable {fields['type']}>")
    return fields


def exception_message(exc: BaseException, text: TextPolicy) -> str:
    """``str(exc)``, capped before it is built where we can, scrubbed of secrets."""
    limit = text.max_string
    try:
        if type(exc).__str__ is BaseException.__str__:
            message = _message_from_args(_args_of(exc), limit)
        else:
            message = str(exc)  # the app's own __str__: all we can do is call it, guarded
            if type(message) is not str:
                message = f"<unprintable {type_name(exc)}>"
    except BaseException:
        message = f"<unprintable {type_name(exc)}>"
    return text.scrub(text.clip(message, limit))


def _message_from_args(args: tuple[Any, ...], limit: int) -> str:
    """What ``BaseException.__str__`` gives, without formatting more than ``limit``."""
    if not args:
        return ""
    if len(args) == 1:
        only = args[0]
        if isinstance(only, str):
            size = str.__len__(only)
            head = str.__getitem__(only, slice(0, limit))
            return head if size <= limit else f"{head}...[truncated {size - limit} chars]"
        return _capped_repr(limit).repr(only) if not _prints_itself(only) else str(only)
    return _capped_repr(limit).repr(args)


def _prints_itself(value: Any) -> bool:
    """Small scalars whose ``str`` differs from their ``repr`` and is cheap."""
    return type(value) in (int, float, bool) or value is None


def _capped_repr(limit: int) -> reprlib.Repr:
    """A ``repr`` that stops early on long strings, big containers and cycles."""
    capped = reprlib.Repr()
    capped.maxstring = capped.maxother = max(16, limit)
    capped.maxlong = 64
    return capped


def _code(exc: BaseException) -> str | int | None:
    """The exception's ``code`` attribute when it is a string or an integer."""
    try:
        code = getattr(exc, "code", None)
    except BaseException:  # a property that raises: no code, the error is still recorded
        return None
    if isinstance(code, bool) or code is None:
        return None
    if isinstance(code, int):  # int.__int__: a subclass (HTTPStatus) as a plain int
        value = int.__int__(code)
        return value if -(2**63) <= value < 2**64 else None
    if isinstance(code, str):
        return str.__getitem__(code, slice(0, _MAX_CODE))
    return None


def _stack(exc: BaseException, text: TextPolicy) -> str:
    """The traceback as Python prints it, chained exceptions included (at most
    ``MAX_CHAIN``, cycles cut), capped to 4 x ``max_string`` keeping the innermost end."""
    # From the exception to its root cause; each with the line Python prints after it.
    chain: list[tuple[BaseException, str]] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    link = ""
    while current is not None and id(current) not in seen and len(chain) < MAX_CHAIN:
        seen.add(id(current))
        chain.append((current, link))
        cause, context = _cause_of(current), _context_of(current)
        if isinstance(cause, BaseException):
            current, link = cause, _CAUSE
        elif isinstance(context, BaseException) and not _suppress_context_of(current):
            current, link = context, _CONTEXT
        else:
            current = None
    parts: list[str] = []
    for item, link_after in reversed(chain):
        parts.append("Traceback (most recent call last):\n")
        try:
            frames = traceback.extract_tb(_traceback_of(item))[-MAX_FRAMES:]
            parts.extend(traceback.format_list(frames))
        except BaseException:
            parts.append("  <frames unavailable>\n")
        parts.append(f"{type_name(item)}: {exception_message(item, text)}\n")
        parts.extend(_notes(item, text))
        parts.append(link_after)
    limit = text.max_string * 4
    stack = "".join(parts)
    if len(stack) > limit:
        stack = f"...[truncated {len(stack) - limit} chars]\n{stack[-limit:]}"
    return text.scrub(stack)  # source lines too: connect("postgres://app:pw@db")


_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"


def _notes(exc: BaseException, text: TextPolicy) -> list[str]:
    """``add_note()`` texts (Python 3.11+), when they are what they should be: strings."""
    try:
        notes = getattr(exc, "__notes__", None)
    except BaseException:
        return []
    if not isinstance(notes, (list, tuple)):
        return []
    return [
        text.scrub(text.clip(str.__getitem__(note, slice(0, text.max_string + 1)))) + "\n"
        for note in notes[:_NOTES_MAX]
        if isinstance(note, str)
    ]


#: Exceptions that end a request without being its error: a cancelled task, a closed
#: generator. They pass through; the event is still written.
CONTROL_FLOW = (asyncio.CancelledError, GeneratorExit)


def is_control_flow(exc: BaseException) -> bool:
    """A cancellation or a closed generator? Asked of ``type()``, never of the object: its
    ``__class__`` may be a property that raises, or lies."""
    return issubclass(type(exc), CONTROL_FLOW)
