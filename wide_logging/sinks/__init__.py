"""Sinks: where batches of encoded events are written, chosen by URL.

====================  ======================================================
``file:PATH``         rotating JSONL file (``?max_bytes=...&backups=...``)
``stdout``/``stderr`` JSON lines on a standard stream
``memory:``           in-process list, for tests (see ``wide_logging.testing``)
====================  ======================================================

Any object with ``name``, ``write(batch)`` and ``close()`` is accepted as a sink too.
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

from .._errors import ConfigurationError
from ..typing import Sink
from .file import RotatingFileSink
from .stream import StreamSink

__all__ = ["RotatingFileSink", "StreamSink", "mask_url", "open_sink"]

_SECRET_QUERY = re.compile(r"pass|secret|token|key|credential|auth", re.IGNORECASE)
_MASK = "***"


def mask_url(url: str) -> str:
    """``url`` with any password, token or key replaced by ``***``; safe to print."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{_MASK}@{host}" if ":" in userinfo else f"{_MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = "&".join(
            f"{quote(k)}={_MASK if _SECRET_QUERY.search(k) else quote(v)}" for k, v in pairs
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _int_option(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        msg = f"sink option {name} must be an integer, got {value!r}"
        raise ConfigurationError(msg) from None


def _file_sink(url: str) -> RotatingFileSink:
    body = url[len("file:") :]
    path, _, query = body.partition("?")
    if path.startswith("//"):  # file:///abs/path or file://localhost/abs/path
        path = urlsplit(url).path
    path = unquote(path)
    if not path:
        msg = f"file sink needs a path, as in 'file:wide-logs/events.jsonl', got {url!r}"
        raise ConfigurationError(msg)
    options: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in ("max_bytes", "backups"):
            msg = f"unknown file sink option {key!r} in {url!r}; allowed: max_bytes, backups"
            raise ConfigurationError(msg)
        options[key] = _int_option(key, value)
    return RotatingFileSink(os.path.expanduser(path), **options)


def open_sink(spec: str | Sink) -> Sink:
    """Build a sink from its URL (or return a sink object unchanged)."""
    if not isinstance(spec, str):
        if all(hasattr(spec, attr) for attr in ("write", "close")):
            return spec
        msg = f"sink must be a URL string or an object with write() and close(), got {spec!r}"
        raise ConfigurationError(msg)
    url = spec.strip()
    if url.startswith("file:"):
        return _file_sink(url)
    if url.rstrip(":/") in ("stdout", "stderr"):
        return StreamSink(url.rstrip(":/"))
    if url.startswith("memory:"):
        from ..testing import MemorySink

        return MemorySink()
    scheme = url.split(":", 1)[0] if ":" in url else url
    msg = (
        f"unsupported sink {mask_url(url)!r} (scheme {scheme!r}); "
        "use file:PATH, stdout, stderr or memory:"
    )
    raise ConfigurationError(msg)
