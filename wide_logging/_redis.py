"""What every Redis user of the package shares: the client and the stream's layout.

The stream sink writes, the consumer, ``stats`` and ``incidents`` read, and the incident
aggregator and the caches keep counters — each through a client that fails fast (no
client-side retries, bounded waits): retrying, falling back and spooling are the callers'
job, and a hung Redis must not hold anyone for long.
"""

from __future__ import annotations

from typing import Any

from ._errors import ConfigurationError

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    msg = "Redis (redis://) needs redis-py: pip install 'wide-logging[redis]'"
    raise ConfigurationError(msg) from exc

__all__ = ["DEFAULT_STREAM", "EVENT_FIELD", "connect", "redis"]

#: The stream events go to unless ``?stream=`` says otherwise.
DEFAULT_STREAM = "wide_logging:events"
#: An entry's one field, holding the event's JSON.
EVENT_FIELD = b"event"


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
