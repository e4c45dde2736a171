"""What every Redis user of the package shares: the client and the stream's layout.

The stream sinks write, the consumer, ``stats``, ``incidents`` and ``report`` read, and the
incident aggregator and the caches keep counters — each through a client that fails fast
(no client-side retries, bounded waits): retrying, falling back and spooling are the
callers' job, and a hung Redis must not hold anyone for long.

One Redis (``redis://``, ``rediss://``) holds the stream in one key. A Redis Cluster
(``redis+cluster://host:port[,host:port...]``) holds it in ``shards`` keys, ``NAME:{0}``
to ``NAME:{N-1}``: the hash tag in braces gives each key a slot of its own, so the shards
spread over the cluster's masters. Writers and readers name the same URL, so they agree on
the keys.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from ._errors import ConfigurationError
from ._urls import mask_url

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    msg = "Redis (redis://) needs redis-py: pip install 'wide-logging[redis]'"
    raise ConfigurationError(msg) from exc

__all__ = [
    "DEFAULT_SHARDS",
    "DEFAULT_STREAM",
    "ERRORS",
    "EVENT_FIELD",
    "STREAM_URL_SCHEMES",
    "StreamLayout",
    "connect",
    "is_cluster",
    "redis",
    "shard_keys",
    "stream_layout",
]

#: The stream events go to unless ``?stream=`` says otherwise.
DEFAULT_STREAM = "wide_logging:events"
#: An entry's one field, holding the event's JSON.
EVENT_FIELD = b"event"
#: Stream keys of a sharded stream on a Redis Cluster unless ``?shards=`` says otherwise.
DEFAULT_SHARDS = 16
CLUSTER_SCHEMES = ("redis+cluster://",)
STREAM_URL_SCHEMES = ("redis://", "rediss://", *CLUSTER_SCHEMES)
#: What a Redis or a Redis Cluster raises when it is down, failing over or refusing
#: (redis-py's cluster errors are not all RedisErrors).
ERRORS: tuple[type[Exception], ...] = (redis.RedisError, redis.exceptions.RedisClusterException)


def is_cluster(url: str) -> bool:
    return url.startswith(CLUSTER_SCHEMES)


def shard_keys(stream: str, shards: int) -> list[str]:
    """The stream keys of a sharded stream: ``NAME:{0}`` .. ``NAME:{N-1}``."""
    return [f"{stream}:{{{n}}}" for n in range(shards)]


def connect(url: str, *, socket_timeout: float = 2.0, connect_timeout: float = 2.0) -> Any:
    """A redis-py client that fails fast: no retries of its own, bounded waits. A cluster
    URL gives a ``RedisCluster`` made at its first use (a cluster down when a program
    starts must not stop it from starting); it follows MOVED/ASK and failovers itself."""
    if is_cluster(url):
        nodes = cluster_nodes(url)
        parts = urlsplit(url)
        return _LazyClient(
            lambda: redis.RedisCluster(
                startup_nodes=[redis.cluster.ClusterNode(host, port) for host, port in nodes],  # type: ignore[no-untyped-call]
                username=unquote(parts.username) if parts.username else None,
                password=unquote(parts.password) if parts.password else None,
                socket_timeout=socket_timeout,
                socket_connect_timeout=connect_timeout,
                # A frozen node holds a call about twice socket_timeout: the client asks
                # the cluster for its slots once more, which redis-py does not let us turn off.
                retry=Retry(NoBackoff(), 0),
            )
        )
    return redis.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
        health_check_interval=0,
    )


def cluster_nodes(url: str) -> list[tuple[str, int]]:
    """The ``host:port`` list of a cluster URL, checked (a bad one is refused now)."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        msg = f"invalid redis cluster URL {mask_url(url)!r}: {exc}"
        raise ConfigurationError(msg) from None
    nodes = []
    for address in parts.netloc.rpartition("@")[2].split(","):
        host, _, port = address.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            msg = f"redis cluster URL {mask_url(url)!r}: nodes are host:port, got {address!r}"
            raise ConfigurationError(msg)
        nodes.append((host.strip("[]"), int(port)))
    if parts.path.strip("/") or parts.fragment:
        msg = (
            f"redis cluster URL {mask_url(url)!r}: a cluster has no databases; "
            "options go in the query (/?stream=NAME&shards=16)"
        )
        raise ConfigurationError(msg)
    return nodes


class _LazyClient:
    """A client made at its first use, then used as itself."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._client: Any = None
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._make()
                client = self._client
        return getattr(client, name)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


@dataclass(frozen=True)
class StreamLayout:
    """Where a stream's entries are: ``url`` for :func:`connect` (our options taken out),
    the stream's name and its keys (one, or one per shard on a cluster)."""

    url: str
    stream: str
    keys: list[str]

    def dead_letter_key(self, key: str, dead_letter_stream: str | None = None) -> str:
        """Where the dead letters of ``key`` go: ``KEY:dead`` (on a cluster, in the same
        slot, so that moving an entry there and acknowledging it is one node's work), or
        ``dead_letter_stream`` (with the shard's hash tag on a cluster)."""
        if dead_letter_stream is None:
            return f"{key}:dead"
        if len(self.keys) == 1 and not is_cluster(self.url):
            return dead_letter_stream
        return f"{dead_letter_stream}:{key[len(self.stream) + 1 :]}"


#: Query options a reader of the stream takes out of a writer's URL (so that one URL
#: serves both); the write-only ones are accepted and left to the sink.
_WRITER_OPTIONS = ("maxlen", "socket_timeout", "connect_timeout", "replicas", "replicas_timeout")


def stream_layout(url: str, stream: str | None = None, shards: int | None = None) -> StreamLayout:
    """The layout named by a sink's URL (``?stream=``, ``?shards=`` on a cluster);
    ``stream`` and ``shards`` given here win over the URL's."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        msg = f"invalid redis URL {mask_url(url)!r}: {exc}"
        raise ConfigurationError(msg) from None
    theirs: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "stream":
            stream = stream or value
        elif key == "shards":
            shards = shards or _shards(value)
        elif key not in _WRITER_OPTIONS:
            theirs.append((key, value))
    if stream is not None and not stream:
        msg = "the stream name must not be empty"
        raise ConfigurationError(msg)
    name = stream or DEFAULT_STREAM
    clean = parts._replace(query=urlencode(theirs)).geturl()
    if not is_cluster(url):
        if shards not in (None, 1):
            msg = f"shards= is for a redis+cluster:// URL, not {mask_url(url)!r}"
            raise ConfigurationError(msg)
        return StreamLayout(clean, name, [name])
    cluster_nodes(url)
    if theirs:
        msg = f"unknown redis cluster URL option(s) {sorted(key for key, _ in theirs)}"
        raise ConfigurationError(msg)
    return StreamLayout(clean, name, shard_keys(name, shards or DEFAULT_SHARDS))


def _shards(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 16384:
        msg = f"shards must be a whole number from 1 to 16384, got {value!r}"
        raise ConfigurationError(msg)
    return int(value)
