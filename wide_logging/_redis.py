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
from urllib.parse import SplitResult, parse_qsl, unquote, urlencode, urlsplit

from ._errors import ConfigurationError
from ._secrets import without_secret_parts

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
#: At most this many: an idle consumer looks at each shard about twice a second.
MAX_SHARDS = 1024
CLUSTER_SCHEMES = ("redis+cluster://",)
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
    starts must not stop it from starting); it follows MOVED/ASK and failovers itself.
    A URL redis-py cannot read is a ConfigurationError that shows none of its secrets."""
    _refuse_spaces(url)
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
                # (A frozen node holds one of its calls about twice socket_timeout: the
                # client asks the cluster for its slots once more, which redis-py does not
                # let us turn off. The sink writes around it, on a plain pipeline.)
                retry=Retry(NoBackoff(), 0),
            )
        )
    try:
        return redis.Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
            health_check_interval=0,
        )
    except ValueError as exc:  # a port that is no number (a "#" in a password ends it)
        msg = f"invalid redis URL: {without_secret_parts(str(exc), url)}{_ENCODE}"
        raise ConfigurationError(msg) from None


#: The likely cause of a URL that does not parse, said without echoing it (it may be
#: the password that is cut in two).
_ENCODE = " (a password with @ : / ? # % or a space must be percent-encoded)"


def _split(url: str, what: str) -> SplitResult:
    """``urlsplit(url)`` of a URL without spaces; what it cannot read is said without
    showing the URL's secrets."""
    _refuse_spaces(url)
    try:
        return urlsplit(url)
    except ValueError as exc:
        msg = f"invalid {what}: {without_secret_parts(str(exc), url)}{_ENCODE}"
        raise ConfigurationError(msg) from None


def _refuse_spaces(url: str) -> None:
    if any(c.isspace() for c in url):  # a space would also end a password for our masking
        msg = "a redis URL has no spaces: percent-encode them (%20), in a password too"
        raise ConfigurationError(msg)


def cluster_nodes(url: str) -> list[tuple[str, int]]:
    """The ``host:port`` list of a cluster URL, checked (a bad one is refused now). The
    messages never show the URL or a node: a password cut by an unencoded ``#`` or ``/``
    reads as a node."""
    parts = _split(url, "redis cluster URL")
    nodes = []
    addresses = parts.netloc.rpartition("@")[2].split(",")
    for position, address in enumerate(addresses, 1):
        host, _, port = address.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            msg = (
                f"redis cluster URL: node {position} of {len(addresses)} is not host:port "
                f"with a port from 1 to 65535{_ENCODE}"
            )
            raise ConfigurationError(msg)
        nodes.append((host.strip("[]"), int(port)))
    if parts.path.strip("/") or parts.fragment:
        msg = (
            "redis cluster URL: a cluster has no databases; options go in the query "
            f"(/?stream=NAME&shards=16){_ENCODE}"
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
        if dead_letter_stream == self.stream:
            msg = "the dead-letter stream must differ from the stream (they would be read again)"
            raise ConfigurationError(msg)
        if not is_cluster(self.url):
            return dead_letter_stream
        _no_hash_tag("dead-letter stream", dead_letter_stream)
        return f"{dead_letter_stream}:{key[len(self.stream) + 1 :]}"


#: Query options a reader of the stream takes out of a writer's URL (so that one URL
#: serves both); the write-only ones are accepted and left to the sink.
_WRITER_OPTIONS = ("maxlen", "socket_timeout", "connect_timeout", "replicas", "replicas_timeout")


def stream_layout(url: str, stream: str | None = None, shards: int | None = None) -> StreamLayout:
    """The layout named by a sink's URL (``?stream=``, ``?shards=`` on a cluster);
    ``stream`` and ``shards`` given here win over the URL's. An option given twice is
    refused: a writer and a reader must not read it differently."""
    parts = _split(url, "redis URL")
    seen: set[str] = set()
    theirs: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in ("stream", "shards", *_WRITER_OPTIONS):
            if key in seen:
                msg = f"the redis URL option {key}= is given twice"
                raise ConfigurationError(msg)
            seen.add(key)
        if key == "stream" and stream is None:
            stream = value
        elif key == "shards" and shards is None:
            shards = _shards(value)
        elif key not in ("stream", "shards", *_WRITER_OPTIONS):
            theirs.append((key, value))
    if stream == "":
        msg = "the stream name must not be empty"
        raise ConfigurationError(msg)
    name = stream or DEFAULT_STREAM
    clean = parts._replace(query=urlencode(theirs)).geturl()
    if not is_cluster(url):
        if shards not in (None, 1):
            msg = "shards= is for a redis+cluster:// URL, not a single Redis"
            raise ConfigurationError(msg)
        return StreamLayout(clean, name, [name])
    cluster_nodes(url)
    if theirs:
        msg = f"unknown redis cluster URL option(s) {sorted(key for key, _ in theirs)}"
        raise ConfigurationError(msg)
    _no_hash_tag("stream name", name)
    if shards is not None and (
        isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= MAX_SHARDS
    ):
        msg = f"shards must be a whole number from 1 to {MAX_SHARDS}, got {shards!r}"
        raise ConfigurationError(msg)
    return StreamLayout(clean, name, shard_keys(name, shards or DEFAULT_SHARDS))


def _no_hash_tag(what: str, name: str) -> None:
    """Braces in a name would be the key's hash tag, not the shard's: every shard in one
    slot, on one master."""
    if "{" in name or "}" in name:
        msg = f"on a Redis Cluster the {what} must not contain braces, got {name!r}"
        raise ConfigurationError(msg)


def _shards(value: str) -> int:
    """The URL's ``shards=`` as a number (its range is checked with the keyword's)."""
    if not value.isdigit():
        msg = f"shards must be a whole number from 1 to {MAX_SHARDS}, got {value!r}"
        raise ConfigurationError(msg)
    return int(value)
