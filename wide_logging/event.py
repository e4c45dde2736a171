"""WideEvent: everything known about one unit of work, built up while it runs.

A WideEvent lives on one request (or job, or log record). The middleware fills the
request fields, the app adds its own with ``annotate()``, the logging handler attaches
records, and ``finalize()`` turns it into a plain dict exactly once. After that the event
is sealed: late annotations are ignored rather than racing the writer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._clean import PLAIN_SCALARS
from ._exception_info import exception_fields, exception_message, is_control_flow, type_name
from ._ids import new_request_id
from ._nesting import MISSING, deep_merge, nest_dotted, nested_deep, pop_path, snapshot
from ._records import PLAIN_RECORD_SIZE, record_extra, record_message
from .fields import (
    GUARDED_KEYS,
    OWNED_BELOW,
    OWNED_FIELDS,
    REFUSED,
    get_path,
    http_object,
    is_error_value,
    outer_fields,
    shared_http_object,
)
from .serialize import REDACTED, Serializer
from .typing import EventDict

if TYPE_CHECKING:
    from .typing import Decision, Sampler

_perf_ns = time.perf_counter_ns
_time = time.time


class WideEvent:
    """One wide event under construction. Create through the middleware or the handler."""

    __slots__ = (
        "_error_annotated",
        "_fields",
        "_logs",
        "_logs_dropped",
        "_refused",
        "_sealed",
        "_serializer",
        "_start_ns",
        "_timings",
        "client_address",
        "end_ns",
        "error",
        "force_keep",
        "kind",
        "method",
        "path",
        "request_id",
        "route",
        "start_time",
        "status",
        "trace_id",
        "user_agent",
    )

    def __init__(
        self,
        kind: str,
        serializer: Serializer,
        request_id: str | None = None,
        trace_id: str | None = None,
        start_time: float | None = None,
    ) -> None:
        self.kind = kind
        self.request_id = request_id
        self.trace_id = trace_id
        # Read now, not derived later from the monotonic clock: a clock step during the
        # request, or a test's fake_clock, must not move when the event says it began.
        self.start_time = _time() if start_time is None else start_time
        self._start_ns = _perf_ns()
        #: ``perf_counter_ns()`` when the work ended, 0 while it runs (``end()``; the ASGI
        #: middleware sets it itself, at a response's last chunk: no call per request).
        self.end_ns = 0
        self._serializer = serializer
        self._fields: dict[str, Any] = {}
        self._logs: list[dict[str, Any]] | None = None
        self._logs_dropped = 0
        self._timings: dict[str, float] | None = None
        self._refused: dict[str, Any] | None = None
        self._sealed = False
        self.error: dict[str, Any] | None = None
        #: The app has annotated ``error`` (only ever becomes True: no write can race it
        #: back to False); what it holds is looked at only then.
        self._error_annotated = False
        self.force_keep = False
        self.method: str | None = None
        self.path: str | None = None
        self.route: str | None = None
        self.status: int | None = None
        self.client_address: str | None = None
        self.user_agent: str | None = None

    # -- what the app calls ----------------------------------------------------------

    def annotate(self, /, **fields: Any) -> None:
        """Add fields (dotted keys and nested dicts allowed); ``force_keep=True`` keeps it.

        Values are copies (see ``Serializer.copy``): values under secret keys redacted,
        sizes capped, so later changes to the app's own objects do not reach the event;
        secrets inside text are masked when a kept event is built. Values
        for fields the library owns (``fields.OWNED_FIELDS``) go to ``refused_annotations``.
        """
        self.add_fields(fields)

    def add_fields(self, fields: Mapping[str, Any]) -> None:
        """:meth:`annotate` with the fields in one mapping, which is left as it is.

        (What the module's ``annotate()`` calls with its own keyword dict: passing it on as
        ``**fields`` would copy it once more, on a call apps make several times a request.)
        """
        if self._sealed:
            return
        if "force_keep" in fields:
            fields = dict(fields)
            self.force_keep = fields.pop("force_keep") is True
        serializer = self._serializer
        known_secret = serializer.known_secret
        limit = serializer.max_string
        target = self._fields
        for key, value in fields.items():
            if type(key) is not str or key in _LOOKED_AT or "." in key:
                self._annotate_guarded(key, value)  # (a str subclass may hash as it likes)
                continue
            secret = known_secret.get(key)
            if secret is None:
                secret = serializer.is_secret(key)
            if secret:
                target[key] = REDACTED
                continue
            # Copy()'s first steps, inlined for the usual values: a number or a short
            # string is its own copy, a flat dict (user={"id": 7}) needs no walk.
            kind = type(value)
            if kind not in PLAIN_SCALARS and (kind is not str or len(value) > limit):
                copied = serializer.copy_flat_dict(value, limit) if kind is dict else None
                value = serializer.copy_walked(value, limit) if copied is None else copied
                if type(value) is dict:
                    existing = target.get(key)
                    if type(existing) is dict:  # user={"id": 7}, then user={"plan": "pro"}
                        deep_merge(existing, value)
                        continue
            target[key] = value

    def _annotate_guarded(self, key: Any, value: Any) -> None:
        """A dotted key, a key that holds fields of the library's, or a key that is not a
        plain ``str``: cleaning makes it one, then the owned paths are checked."""
        serializer = self._serializer
        cleaned_fields = serializer.copy({key: value})
        for top, cleaned in nest_dotted(cleaned_fields, serializer.max_depth).items():
            if top in OWNED_FIELDS:
                self._refuse((top,), cleaned)
                continue
            if top in OWNED_BELOW:
                if type(cleaned) is not dict:  # would replace the library's object
                    self._refuse((top,), cleaned)
                    continue
                # http={"response.status_code": 200} is the path it looks like
                cleaned = nested_deep(cleaned, serializer.max_depth)
                for path in OWNED_BELOW[top]:
                    found = pop_path(cleaned, path)
                    if found is not MISSING:
                        self._refuse((top, *path), found)
                if not cleaned:
                    continue
            if top == "error":  # (before the write: a decision that sees it sees this)
                self._error_annotated = True
            existing = self._fields.get(top)
            if type(cleaned) is dict and type(existing) is dict:
                deep_merge(existing, cleaned)
            else:
                self._fields[top] = cleaned

    def _refuse(self, path: tuple[str, ...], value: Any) -> None:
        """Keep an app's value for a library field apart, under ``refused_annotations``."""
        refused = self._refused
        if refused is None:
            refused = self._refused = {}
        node = refused
        for part in path[:-1]:
            child = node.get(part)
            if type(child) is not dict:
                child = node[part] = {}
            node = child
        node[path[-1]] = value
        self._serializer.count_refused(".".join(path))

    def set(self, path: str, value: Any) -> None:
        """Set one field by its dotted path, e.g. ``set("user.id", 42)``. Never raises."""
        if self._sealed:
            return
        try:
            self._annotate_guarded(path, value)
        except Exception:  # a path we cannot take must not break the request
            return

    def get(self, path: str, default: Any = None) -> Any:
        """Read an annotated field by dotted path (request fields are in ``finalize()``)."""
        return get_path(self._fields, path, default)

    @property
    def sealed(self) -> bool:
        return self._sealed

    @property
    def has_error(self) -> bool:
        """The library recorded an error, or the app annotated an ``error`` that will be
        stored as one (not null, false, 0 or empty)."""
        return self.error is not None or (
            self._error_annotated and is_error_value(self._fields.get("error"))
        )

    def add_timing(self, name: str, milliseconds: float) -> None:
        """Add to ``timings.<name>``; repeated spans of one name add up."""
        if self._sealed:
            return
        timings = self._timings
        if timings is None:
            timings = self._timings = {}
        timings[name] = timings.get(name, 0.0) + milliseconds

    # -- what the middleware and handler call -----------------------------------------

    def record_exception(self, exc: BaseException) -> None:
        """Record an exception as this event's error (the first one wins, but an exception
        replaces an error that was only logged: an exception handler's ``log.error()``
        comes before the exception reaches the middleware). Never raises, whatever the
        exception's attributes or ``str()`` do."""
        error = self.error
        if (
            (error is None or error.get("type") == LOGGED_ERROR)
            and not self._sealed
            and not is_control_flow(exc)
        ):
            self.error = exception_fields(exc, self._serializer)

    def record_call_error(self, name: str, exc: BaseException) -> None:
        """``<name>.error.{type,message}``: a dependency call failed (``instrument()``)."""
        if self._sealed:
            return
        error = {"type": type_name(exc), "message": exception_message(exc, self._serializer)}
        self.add_fields({name: {"error": error}})

    def add_log(self, record: logging.LogRecord) -> None:
        if self._sealed:
            return
        logs = self._logs
        if logs is None:
            logs = self._logs = []
        if len(logs) >= self._serializer.max_logs:
            self._logs_dropped += 1
        else:
            serializer = self._serializer
            logger = record.name
            message = record_message(record)  # (scrubbed if kept)
            entry = {
                "level": record.levelname,
                "logger": logger
                if type(logger) is str and len(logger) <= 256
                else serializer.clip(str(logger), 256),
                "message": message
                if len(message) <= serializer.max_string
                else serializer.clip(message),
                # whole microseconds, as milliseconds (as duration_ms): cheaper than round()
                "offset_ms": (record.created - self.start_time) * 1e6 // 1 / 1000,
            }
            # (record_extra() would say None at once: no call for the usual record)
            extra = record_extra(record) if len(record.__dict__) > PLAIN_RECORD_SIZE else None
            if extra:  # log.info("charged", extra={"order_id": 42}): beside the message
                for key, value in serializer.copy(extra).items():
                    entry.setdefault(key, value)
            logs.append(entry)
        if record.levelno >= logging.ERROR:  # (most records are not: no call for them)
            self.error_from_record(record)

    def error_from_record(self, record: logging.LogRecord) -> None:
        """An ERROR (or CRITICAL) record makes this an error event."""
        if self._sealed:
            return
        if record.levelno >= logging.ERROR and self.error is None:
            exc_info = record.exc_info
            if exc_info and isinstance(exc_info[1], BaseException):
                self.error = exception_fields(exc_info[1], self._serializer)
            else:
                serializer = self._serializer
                self.error = {
                    "type": LOGGED_ERROR,
                    "message": serializer.scrub(serializer.clip(record_message(record))),
                    "logger": serializer.clip(record.name, 256),
                }

    def end(self) -> float:
        """Stop the clock; returns ``duration_ms``. Idempotent: a streaming body ends it
        before the app returns, and that first end counts."""
        end = self.end_ns
        if not end:
            end = self.end_ns = _perf_ns()
        return (end - self._start_ns) / 1e6

    def decide(self, sampler: Sampler, *, final: bool = True) -> Decision:
        """The sampling decision for this event, from one reading of it: what the handler's
        ``submit()`` keeps and ``explain()`` reports. ``final`` stops the clock (the
        event is finished); ``explain()`` of an open event leaves it running."""
        # self.has_error, inlined: no property call per request
        error = self.error is not None or (
            self._error_annotated and is_error_value(self._fields.get("error"))
        )
        if self.kind == "log":  # no request id: a fresh random key samples log_rate
            return sampler.decide_log(new_request_id(), error=error)
        end = self.end_ns
        if not end:
            end = _perf_ns()
            if final:
                self.end_ns = end
        route = self.route
        return sampler.decide(
            self.request_id or "",
            error,
            self.status,
            (end - self._start_ns) / 1e6,
            route,
            self.force_keep,
            # fields.path_for_rules(), inlined: its rule without a call per request
            self.path if route is not None or self.method != "OPTIONS" else None,
        )

    @property
    def duration_ms(self) -> float:
        end = self.end_ns or _perf_ns()
        return (end - self._start_ns) / 1e6

    def seal(self) -> None:
        self._sealed = True

    def finalize(
        self,
        resource: Mapping[str, Any],
        sampling: Mapping[str, Any],
    ) -> EventDict:
        """Seal the event and build its dict.

        ``resource`` (service/host/process), ``sampling`` and, unless the app annotated
        ``http``, the ``http`` object are shared between events: the dict is for encoding,
        not for changing. Never raises: should building fail (a bug of ours), the event
        keeps its identity, status, duration and error.
        """
        self._sealed = True
        # one clock reading names and dates the event
        event = outer_fields(self.kind, int(self.start_time * 1000), resource)
        try:
            if self.request_id is not None:
                event["request_id"] = self.request_id
            if self.trace_id is not None:
                event["trace_id"] = self.trace_id
            fields = self._fields
            if self.method is not None:
                if "http" not in fields:
                    event["http"] = shared_http_object(self.method, self.route, self.status)
                else:  # the app's http fields merge into it: a fresh one
                    event["http"] = http_object(self.method, self.route, self.status)
            path = self.path
            if path is not None:
                # ;jsessionid=..., a JWT in a link, /proxy/https://user:pw@host/
                if "=" in path or "@" in path or "eyJ" in path or len(path) > 1024:
                    path = self._serializer.scrub(self._serializer.clip(path, 1024))
                event["url"] = {"path": path}
            if self.client_address is not None:
                event["client"] = {"address": self.client_address}
            user_agent = self.user_agent
            if user_agent is not None:
                if len(user_agent) > 1024:
                    user_agent = self._serializer.clip(user_agent, 1024)
                event["user_agent"] = {"original": user_agent}
            end_ns = self.end_ns
            if not end_ns:  # self.end(), inlined: the clock has usually stopped already
                end_ns = self.end_ns = _perf_ns()
            # whole microseconds, as milliseconds: integer steps, 4x cheaper than round()
            event["duration_ms"] = (end_ns - self._start_ns) // 1000 / 1000
            if self.error is not None:
                event["error"] = self.error
            if self._logs:
                # a copy: a late add_log must not change it
                event["logs"] = self._serializer.scrub_strings(self._logs[:])
                if self._logs_dropped:
                    event["logs_dropped"] = self._logs_dropped
            timings = self._timings
            if timings:
                event["timings"] = {key: round(ms, 3) for key, ms in snapshot(timings).items()}
            if fields:
                self._add_app_fields(event, self._serializer.scrub_strings(fields), ())
            if self._refused:
                event[REFUSED] = self._serializer.scrub_strings(self._refused)
        except Exception as exc:  # a bug of ours must not cost the event
            event = {key: event[key] for key in ("event_id", "timestamp", "kind", *resource)}
            if self.request_id is not None:
                event["request_id"] = self.request_id
            if self.trace_id is not None:
                event["trace_id"] = self.trace_id
            event["http"] = http_object(self.method or "", self.route, self.status)
            event["duration_ms"] = self.duration_ms
            if self.error is not None:
                event["error"] = self.error
            event["finalize_error"] = type(exc).__name__
        event["sampling"] = sampling
        return event

    def _add_app_fields(
        self, target: dict[str, Any], fields: Mapping[str, Any], path: tuple[str, ...]
    ) -> None:
        """Merge the app's fields into the library's: they add, never replace. A clash
        (the app's ``error.type`` beside the library's) keeps the library's value and
        moves the app's to ``refused_annotations``."""
        for key, value in snapshot(fields).items():
            if key not in target:
                target[key] = value
                continue
            existing = target[key]
            if type(existing) is dict and type(value) is dict:
                if not path and key == "error":  # the event's own error dict, not shared
                    existing = target[key] = dict(existing)
                self._add_app_fields(existing, value, (*path, key))
            elif existing != value:
                self._refuse((*path, key), value)


#: Keys annotate() takes the long way: the guarded ones, and ``error`` (see has_error).
_LOOKED_AT = GUARDED_KEYS | {"error"}

#: ``error.type`` of an ERROR record logged without an exception.
LOGGED_ERROR = "LoggedError"
