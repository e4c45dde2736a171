"""``redis://`` / ``rediss://``: each event appended to a Redis Stream with XADD.

Layout of an entry: one field, ``event``, holding the event's JSON. A batch is one
pipeline (no MULTI): one round trip for the whole batch. Streams are trimmed approximately
(``MAXLEN ~``), which lets Redis trim whole nodes cheaply.

The client fails fast (``wide_logging._redis.connect``): retrying, falling back and
spooling are the pipeline's job, and a hung Redis must not hold the writer for long.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .._errors import ConfigurationError
from .._redis import DEFAULT_STREAM, EVENT_FIELD, connect, redis  # (says what to install)
from .._secrets import without_secret_parts
from .._urls import mask_url
from ..typing import FailureKind
from ._url import non_empty, non_negative_int, parse_options, positive_float, split_options

DEFAULT_MAXLEN = 1_000_000

_OPTIONS: dict[str, Callable[[str], Any]] = {
    "stream": non_empty,
    "maxlen": non_negative_int,
    "socket_timeout": positive_float,
    "connect_timeout": positive_float,
}


class RedisStreamSink:
    """Options come from the URL query or keyword arguments (keywords win):
    ``stream`` (default ``wide_logging:events``), ``maxlen`` (approximate trim, default
    1,000,000; 0 = never trim), ``socket_timeout`` and ``connect_timeout`` (seconds, 2.0).
    Password and TLS go in the URL as redis-py reads them (``rediss://:pw@host:6380/0``).
    """

    def __init__(self, url: str, **options: Any) -> None:

        clean_url, parsed = split_options(url, _OPTIONS)
        parsed.update(parse_options(options, _OPTIONS, "redis"))
        self.stream: str = parsed.get("stream", DEFAULT_STREAM)
        if not self.stream:
            msg = "redis sink stream name must not be empty"
            raise ConfigurationError(msg)
        self.maxlen: int = parsed.get("maxlen", DEFAULT_MAXLEN)
        try:
            self._client = connect(
                clean_url,
                socket_timeout=parsed.get("socket_timeout", 2.0),
                connect_timeout=parsed.get("connect_timeout", 2.0),
            )
        except ValueError as exc:
            msg = f"invalid redis URL {mask_url(url)!r}: {without_secret_parts(str(exc), url)}"
            raise ConfigurationError(msg) from None
        _refuse_unknown_query(clean_url, self._client.connection_pool.connection_class)
        self.name = f"{mask_url(clean_url)}#{self.stream}"

    def write(self, batch: Sequence[bytes]) -> None:
        pipe = self._client.pipeline(transaction=False)
        maxlen = self.maxlen or None
        for data in batch:
            pipe.xadd(self.stream, {EVENT_FIELD: data}, maxlen=maxlen, approximate=True)
        pipe.execute()

    def failure_kind(self, error: BaseException) -> FailureKind | None:
        if isinstance(error, redis.TimeoutError):
            return "timeout"
        if isinstance(error, redis.RedisError):  # refused, reset, OOM, READONLY, LOADING
            return "unavailable"
        return None

    def close(self) -> None:
        self._client.close()


def _refuse_unknown_query(url: str, connection_class: type) -> None:
    """redis-py hands unknown URL query options to the connection, which fails only when it
    first connects (``redis://h/0?streamm=x``): say so now, with what is allowed."""
    allowed = set(_OPTIONS) | set(redis.connection.URL_QUERY_ARGUMENT_PARSERS)
    for klass in connection_class.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None:
            allowed.update(inspect.signature(init).parameters)
    given = {key for key, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True)}
    unknown = given - allowed
    if unknown:
        msg = (
            f"unknown redis sink URL option(s) {sorted(unknown)}; ours are {sorted(_OPTIONS)}, "
            "the rest are redis-py's connection options (socket_keepalive, client_name, ...)"
        )
        raise ConfigurationError(msg)
