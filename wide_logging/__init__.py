"""wide_logging: one sampled, structured wide event per request, never lost.

Add ``WideEventMiddleware`` (ASGI) or ``WideEventWSGIMiddleware`` (WSGI) to the app and a
``WideEventHandler`` to the logging config; annotate the current event from anywhere with
``annotate()``. See README.md and docs/.
"""

from __future__ import annotations

from ._errors import ConfigurationError, WideLoggingError
from ._explain import explain
from ._pipelines import flush_all as flush
from ._urls import mask_url
from .context import annotate, current_event, instrument, span
from .event import WideEvent
from .handler import WideEventHandler
from .middleware import WideEventMiddleware, WideEventWSGIMiddleware
from .sampling import Decision, TailSampler

__version__ = "0.1.0.dev0"

__all__ = [
    "ConfigurationError",
    "Decision",
    "TailSampler",
    "WideEvent",
    "WideEventHandler",
    "WideEventMiddleware",
    "WideEventWSGIMiddleware",
    "WideLoggingError",
    "__version__",
    "annotate",
    "current_event",
    "explain",
    "flush",
    "instrument",
    "mask_url",
    "span",
]
