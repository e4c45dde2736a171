"""``redis+cluster://``: events spread over the sharded streams of a Redis Cluster.

``redis+cluster://[user:password@]host:port[,host:port...]/?stream=NAME&shards=16`` — any
of the cluster's nodes (redis-py's ``RedisCluster`` finds the rest, follows MOVED and ASK,
and picks up a failover). Events go to ``shards`` stream keys, ``NAME:{0}`` to
``NAME:{N-1}``: the hash tag in braces places each key on a slot of its own, so the shards
spread over the cluster's masters. A batch goes to one shard, round robin, in one pipeline
to that shard's node; one Redis is no longer the ceiling of the whole pipeline.

First part of the Redis Cluster work: the sink. The consumer does not read a cluster yet
(docs/operations.md, "Redis Cluster").
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .._errors import ConfigurationError
from .._redis import DEFAULT_STREAM, EVENT_FIELD, redis
from .._urls import mask_url
from ..typing import FailureKind
from ._url import non_negative_int, parse_options, split_options
from .redis_stream import _OPTIONS as STREAM_OPTIONS
from .redis_stream import DEFAULT_MAXLEN

DEFAULT_SHARDS = 16

#: A single Redis sink's options, and the number of shards.
_OPTIONS: dict[str, Callable[[str], Any]] = {**STREAM_OPTIONS, "shards": non_negative_int}


def shard_keys(stream: str, shards: int) -> list[str]:
    """The stream keys of a sharded stream: ``NAME:{0}`` .. ``NAME:{N-1}``."""
    return [f"{stream}:{{{n}}}" for n in range(shards)]


class RedisClusterSink:
    """Options in the URL query (or keywords, which win): ``stream`` (default
    ``wide_logging:events``), ``shards`` (default 16), ``maxlen`` (per shard, approximate;
    0 = never trim), ``socket_timeout`` and ``connect_timeout`` (seconds, 2.0)."""

    def __init__(self, url: str, **options: Any) -> None:
        from redis.backoff import NoBackoff
        from redis.cluster import ClusterNode, RedisCluster
        from redis.retry import Retry

        clean, parsed = split_options(url, _OPTIONS)
        parsed.update(parse_options(options, _OPTIONS, "redis cluster"))  # (checked alike)
        parts = urlsplit(clean)
        if parts.query:
            unknown = sorted(key for key, _ in parse_qsl(parts.query, keep_blank_values=True))
            msg = f"unknown redis cluster sink URL option(s) {unknown}; ours are {sorted(_OPTIONS)}"
            raise ConfigurationError(msg)
        self.stream: str = parsed.get("stream", DEFAULT_STREAM)
        if not self.stream:
            msg = "redis cluster sink stream name must not be empty"
            raise ConfigurationError(msg)
        shards = parsed.get("shards", DEFAULT_SHARDS)
        if not 1 <= shards <= 16384:
            msg = f"redis cluster sink shards must be from 1 to 16384, got {shards}"
            raise ConfigurationError(msg)
        self.keys = shard_keys(self.stream, shards)
        self.maxlen: int = parsed.get("maxlen", DEFAULT_MAXLEN)
        nodes = [_node(address, url) for address in parts.netloc.rpartition("@")[2].split(",")]
        # The client is made at the first write: a cluster down when the app starts must
        # not stop it from starting (its events go to the fallback and the spool).
        self._connect = lambda: RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in nodes],  # type: ignore[no-untyped-call]
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            socket_timeout=parsed.get("socket_timeout", 2.0),
            socket_connect_timeout=parsed.get("connect_timeout", 2.0),
            # no retry of its own (fail fast, as the single-Redis sink; the pipeline retries
            # and spools): a frozen node holds a write about twice socket_timeout (the client
            # asks the cluster for its slots once more); MOVED/ASK and failovers are its own
            retry=Retry(NoBackoff(), 0),
        )
        self._client: Any = None
        self._turn = itertools.cycle(range(shards))
        self._lock = threading.Lock()
        self.name = f"{mask_url(clean)}#{self.stream}:{{0..{shards - 1}}}"

    def write(self, batch: Sequence[bytes]) -> None:
        with self._lock:
            key = self.keys[next(self._turn)]
            if self._client is None:
                self._client = self._connect()  # type: ignore[no-untyped-call]
        pipe = self._client.pipeline(transaction=False)
        maxlen = self.maxlen or None
        for data in batch:
            pipe.xadd(key, {EVENT_FIELD: data}, maxlen=maxlen, approximate=True)
        pipe.execute()

    def failure_kind(self, error: BaseException) -> FailureKind | None:
        if isinstance(error, redis.TimeoutError):
            return "timeout"
        if isinstance(error, (redis.RedisError, redis.exceptions.RedisClusterException)):
            return "unavailable"  # down, failing over, MOVED past its retries
        return None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def _node(address: str, url: str) -> tuple[str, int]:
    host, _, port = address.strip().rpartition(":")
    if not host or not port.isdigit():
        msg = f"redis cluster sink URL {mask_url(url)!r}: nodes are host:port, got {address!r}"
        raise ConfigurationError(msg)
    return host.strip("[]"), int(port)
