"""``redis://`` / ``rediss://``: each event appended to a Redis Stream with XADD.

Layout of an entry: one field, ``event``, holding the event's JSON. A batch is one
pipeline (no MULTI): one round trip for the whole batch. Streams are trimmed approximately
(``MAXLEN ~``), which lets Redis trim whole nodes cheaply.

The client fails fast (no client-side retries, short timeouts): retrying, falling back and
spooling are the pipeline's job, and a hung Redis must not hold the writer for long.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .._errors import ConfigurationError
from ._url import non_negative_int, positive_float, split_options

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    msg = "the redis:// sink needs redis-py: pip install 'wide-logging[redis]'"
    raise ConfigurationError(msg) from exc

DEFAULT_STREAM = "wide_logging:events"
DEFAULT_MAXLEN = 1_000_000
EVENT_FIELD = b"event"

_OPTIONS: dict[str, Callable[[str], Any]] = {
    "stream": str,
    "maxlen": non_negative_int,
    "socket_timeout": positive_float,
    "connect_timeout": positive_float,
}


def connect(url: str, *, socket_timeout: float = 2.0, connect_timeout: float = 2.0) -> Any:
    """A redis-py client that fails fast: no retries of its own, bounded waits."""
    return redis.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
        health_check_interval=0,
    )


class RedisStreamSink:
    """Options come from the URL query or keyword arguments (keywords win):
    ``stream`` (default ``wide_logging:events``), ``maxlen`` (approximate trim, default
    1,000,000; 0 = never trim), ``socket_timeout`` and ``connect_timeout`` (seconds, 2.0).
    Password and TLS go in the URL as redis-py reads them (``rediss://:pw@host:6380/0``).
    """

    def __init__(self, url: str, **options: Any) -> None:
        from . import mask_url

        clean_url, parsed = split_options(url, _OPTIONS)
        unknown = set(options) - set(_OPTIONS)
        if unknown:
            msg = f"unknown redis sink option(s) {sorted(unknown)}; allowed: {sorted(_OPTIONS)}"
            raise ConfigurationError(msg)
        parsed.update(options)
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
            msg = f"invalid redis URL {mask_url(url)!r}: {exc}"
            raise ConfigurationError(msg) from None
        self.name = f"{mask_url(clean_url)}#{self.stream}"

    def write(self, batch: Sequence[bytes]) -> None:
        pipe = self._client.pipeline(transaction=False)
        maxlen = self.maxlen or None
        for data in batch:
            pipe.xadd(self.stream, {EVENT_FIELD: data}, maxlen=maxlen, approximate=True)
        pipe.execute()

    def close(self) -> None:
        self._client.close()
