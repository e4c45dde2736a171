"""PEP 3333 middleware: one wide event per request for Flask, Django or any WSGI app.

The event stays current while the server iterates the response body, so records logged
from a streaming generator land on it; it is finished when the server closes the body.

Route templates: a Flask app (or its ``wsgi_app``) gets a ``before_request`` hook that
records ``request.url_rule``; a Django ``WSGIHandler`` is asked through
``django.urls.resolve``. Either way the framework is imported only when it is the app.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any

from ..context import activate, current_event, deactivate
from ..event import WideEvent
from ..handler import WideEventHandler
from ._common import Middleware, record_failure

Environ = dict[str, Any]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]
RouteResolver = Callable[[Environ], "str | None"]

_internal = logging.getLogger("wide_logging.internal")
#: Set in the WSGI environ by a framework hook when the response body is in memory (not a
#: stream): the event can be finished as soon as the app returns.
BODY_IN_MEMORY = "wide_logging.body_in_memory"


class WideEventWSGIMiddleware(Middleware[WSGIApp]):
    """Wrap a WSGI app: ``app.wsgi_app = WideEventWSGIMiddleware(app.wsgi_app)`` (Flask),
    ``application = WideEventWSGIMiddleware(get_wsgi_application())`` (Django).

    Options as for the ASGI middleware: ``handler``, ``request_id_header``,
    ``echo_request_id``.
    """

    def _use_header(self, name: str) -> None:
        self._environ_key = "HTTP_" + name.upper().replace("-", "_")
        self._response_header = name  # echoed as configured, as the ASGI middleware does
        self._resolve_route = _install_framework_hooks(self.app)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        try:
            handler = self._handler.get()
            event = _open_event(handler, environ, self._environ_key)
        except Exception:
            _internal.exception("wide_logging could not open an event")
            return self.app(environ, start_response)
        echo = (self._response_header, event.request_id) if self._echo else None
        lowered = self._response_header.lower()

        def start_response_wrapper(
            status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
        ) -> Callable[[bytes], object]:
            # An app's malformed status or headers are for the server to refuse, not us.
            with contextlib.suppress(Exception):
                event.status = int(status[:3])
            if type(headers) is not list:  # PEP 3333 asks for a list: read any iterable once
                headers = list(headers)
            if echo is not None and not _has_header(headers, lowered):
                headers = [*headers, echo]  # type: ignore[list-item]
            return start_response(status, headers, exc_info)

        token = activate(event)
        finish = _Finisher(handler, event, token, environ, self._resolve_route)
        try:
            body = self.app(environ, start_response_wrapper)
        except BaseException as exc:
            try:
                record_failure(event, exc)  # never raises: the server gets exc itself
            finally:
                finish()
            raise
        if event.status is not None and (
            type(body) in (list, tuple) or environ.get(BODY_IN_MEMORY) is True
        ):
            # The whole body is already made: the request is done now, not when a client
            # gets round to closing it (test clients may never do).
            finish()
            return body
        return _ClosingBody(body, finish)


class _Finisher:
    """Submits the event once, whichever of error, exhaustion or close() comes first."""

    __slots__ = ("done", "environ", "event", "handler", "resolve_route", "token")

    def __init__(
        self,
        handler: WideEventHandler,
        event: WideEvent,
        token: Any,
        environ: Environ,
        resolve_route: RouteResolver | None,
    ) -> None:
        self.handler = handler
        self.event = event
        self.token = token
        self.environ = environ
        self.resolve_route = resolve_route
        self.done = False

    def __call__(self) -> None:
        if self.done:
            return
        self.done = True
        event = self.event
        event.end()
        if current_event() is event:
            deactivate(self.token)
        # Django's resolver matches the path again: only for an event that needs its route
        # (kept, or a policy that matches routes), not for every request (handler.submit).
        late = event.route is None and self.resolve_route is not None
        self.handler.submit(event, self._resolved_route if late else None)

    def _resolved_route(self) -> str | None:
        resolve = self.resolve_route
        try:
            return None if resolve is None else resolve(self.environ)
        except Exception:
            return None


class _ClosingBody:
    """The app's body, passed through; finishes the event when it ends or is closed."""

    __slots__ = ("_body", "_finish")

    def __init__(self, body: Iterable[bytes], finish: _Finisher) -> None:
        self._body = body
        self._finish = finish

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._body
        except BaseException as exc:
            if not isinstance(exc, GeneratorExit):  # the server stopped reading: no error
                record_failure(self._finish.event, exc)
            self._finish()
            raise
        # The body is complete: finish now rather than at close(), which some clients
        # (test clients among them) call late or never.
        self._finish()

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        except BaseException as exc:  # the app's close() failed: its error, and re-raised
            record_failure(self._finish.event, exc)
            raise
        finally:
            self._finish()


def _has_header(headers: Iterable[tuple[str, str]], lowered: str) -> bool:
    try:
        return any(type(name) is str and name.lower() == lowered for name, _ in headers)
    except Exception:  # not a list of pairs: the server will say so
        return True


def _open_event(handler: WideEventHandler, environ: Environ, environ_key: str) -> WideEvent:
    event = handler.new_event(
        request_id=environ.get(environ_key), traceparent=environ.get("HTTP_TRACEPARENT")
    )
    event.method = environ.get("REQUEST_METHOD")
    event.path = (environ.get("SCRIPT_NAME") or "") + (environ.get("PATH_INFO") or "")
    event.client_address = environ.get("REMOTE_ADDR") or None
    event.user_agent = environ.get("HTTP_USER_AGENT") or None  # capped in finalize()
    return event


def _install_framework_hooks(app: Any) -> RouteResolver | None:
    """Teach the middleware the route templates (and exceptions) of Flask and Django."""
    owner = getattr(app, "__self__", app)  # Flask: app.wsgi_app is a bound method
    if hasattr(owner, "url_map") and hasattr(owner, "before_request"):
        _hook_flask(owner)
        return None
    if type(owner).__module__.startswith("django."):
        return _hook_django()
    return None


def _hook_flask(flask_app: Any) -> None:
    from flask import got_request_exception, request
    from werkzeug.wsgi import ClosingIterator

    def record_route() -> None:
        event = current_event()
        rule = request.url_rule
        if event is not None and rule is not None:
            event.route = rule.rule

    def record_exception(sender: Any, exception: BaseException, **_: Any) -> None:
        event = current_event()
        if event is not None:
            record_failure(event, exception)

    def note_body_in_memory(response: Any) -> Any:
        # Error pages and responses from other WSGI apps come wrapped in a ClosingIterator
        # (made by force_type): made in memory although "streamed". A view's generator,
        # stream_with_context and send_file's file wrapper are the real streams.
        request.environ[BODY_IN_MEMORY] = not response.is_streamed or isinstance(
            response.response, ClosingIterator
        )
        return response

    flask_app.before_request(record_route)
    flask_app.after_request(note_body_in_memory)
    got_request_exception.connect(record_exception, flask_app, weak=False)


def _hook_django() -> RouteResolver:
    from ..django import wsgi_route_resolver

    return wsgi_route_resolver()
