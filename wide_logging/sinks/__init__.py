"""Sinks: where batches of encoded events are written, chosen by URL.

======================  ======================================================
``file:PATH``           rotating JSONL file (``?max_bytes=...&backups=...``)
``redis://``            XADD to a Redis Stream (``?stream=...&maxlen=...``)
``redis+cluster://``    XADD to the sharded streams of a Redis Cluster (``?shards=16``)
``mongodb://``          insert_many into a collection, idempotent on event_id
``stdout``/``stderr``   JSON lines on a standard stream
``memory:``             in-process list, for tests (see ``wide_logging.testing``)
======================  ======================================================

Any object with ``name``, ``write(batch)`` and ``close()`` is accepted as a sink too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .._errors import ConfigurationError
from .._urls import mask_url
from ..typing import Sink
from .file import RotatingFileSink
from .stream import StreamSink

__all__ = ["RotatingFileSink", "StreamSink", "mask_url", "open_sink"]


def _int_option(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        msg = f"sink option {name} must be an integer, got {value!r}"
        raise ConfigurationError(msg) from None


def _file_sink(url: str, options: Mapping[str, Any]) -> RotatingFileSink:
    body = url[len("file:") :]
    path, _, query = body.partition("?")
    if path.startswith("//"):  # file:///abs/path or file://localhost/abs/path
        path = urlsplit(url).path
    path = unquote(path)
    if not path:
        msg = f"file sink needs a path, as in 'file:wide-logs/events.jsonl', got {mask_url(url)!r}"
        raise ConfigurationError(msg)
    pairs = parse_qsl(query, keep_blank_values=True)
    unknown = ({key for key, _ in pairs} | set(options)) - {"max_bytes", "backups"}
    if unknown:
        msg = f"unknown file sink option(s) {sorted(unknown)}; allowed: max_bytes, backups"
        raise ConfigurationError(msg)
    parsed: dict[str, Any] = {key: _int_option(key, value) for key, value in pairs}
    parsed.update(options)
    return RotatingFileSink(os.path.expanduser(path), **parsed)


def open_sink(spec: str | Sink, options: Mapping[str, Any] | None = None) -> Sink:
    """Build a sink from its URL (or return a sink object unchanged).

    ``options`` are the sink's keyword options (``stream``, ``maxlen``, ``collection``, ...),
    the same that the URL query can carry; they win over the query.
    """
    options = dict(options or {})
    if not isinstance(spec, str):
        if not all(hasattr(spec, attr) for attr in ("write", "close")):
            msg = f"sink must be a URL string or an object with write() and close(), got {spec!r}"
            raise ConfigurationError(msg)
        if options:
            msg = "sink_options apply to sink URLs, not to a sink object"
            raise ConfigurationError(msg)
        return spec
    url = spec.strip()
    if "://" in url and not url.startswith("file:") and any(c.isspace() for c in url):
        # (a space in a password would also end it for our masking: never echo the URL)
        msg = "a sink URL has no spaces: percent-encode them (%20), in a password too"
        raise ConfigurationError(msg)
    if url.startswith("file:"):
        return _file_sink(url, options)
    if url.startswith("redis+cluster://"):
        from .redis_cluster import RedisClusterSink

        return RedisClusterSink(url, **options)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from .redis_stream import RedisStreamSink

        return RedisStreamSink(url, **options)
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from .mongo import MongoSink

        return MongoSink(url, **options)
    if options:
        msg = f"the sink {mask_url(url)!r} takes no options, got {sorted(options)}"
        raise ConfigurationError(msg)
    if url.rstrip(":/") in ("stdout", "stderr"):
        return StreamSink(url.rstrip(":/"))
    if url.startswith("memory:"):
        from .memory import MemorySink

        return MemorySink()
    scheme = url.split(":", 1)[0] if ":" in url else url
    msg = (
        f"unsupported sink {mask_url(url)!r} (scheme {scheme!r}); "
        "use file:PATH, redis://, rediss://, redis+cluster://, mongodb://, mongodb+srv://, "
        "stdout, stderr or memory:"
    )
    raise ConfigurationError(msg)
