"""``redis+cluster://``: events spread over the sharded streams of a Redis Cluster.

``redis+cluster://[user:password@]host:port[,host:port...]/?stream=NAME&shards=16`` — any
of the cluster's nodes (redis-py's ``RedisCluster`` finds the rest, follows MOVED and ASK,
and picks up a failover). Events go to ``shards`` stream keys, ``NAME:{0}`` to
``NAME:{N-1}`` (``wide_logging._redis``): the hash tag places each key on a slot of its
own, so the shards spread over the cluster's masters. A batch goes to one shard, round
robin, in one plain pipeline to that shard's master; one Redis is no longer the ceiling of the
whole pipeline, and a master that is down costs a retry (on the next shard), not the batch.

``replicas=N`` makes a batch count as written only once N replicas of its master have it
(``WAIT``): Redis replicates asynchronously, so without it a master killed the instant after
it answered can take the last batch with it when its replica takes over. The consumer reads
the same URL (``wide-logging consume --redis redis+cluster://...``).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from typing import Any

from .._redis import ERRORS, EVENT_FIELD, connect, redis, shard_keys, stream_layout
from .._urls import mask_url
from ..typing import FailureKind
from ._url import non_negative_int, parse_options, positive_float, split_options
from .redis_stream import _OPTIONS as STREAM_OPTIONS
from .redis_stream import DEFAULT_MAXLEN

__all__ = ["RedisClusterSink", "ReplicationTimeout", "shard_keys"]

#: A single Redis sink's options, the number of shards and the replicas to wait for.
_OPTIONS: dict[str, Callable[[str], Any]] = {
    **STREAM_OPTIONS,
    "shards": non_negative_int,
    "replicas": non_negative_int,
    "replicas_timeout": positive_float,
}


class ReplicationTimeout(redis.RedisError):
    """Fewer replicas than ``replicas=`` took a batch in time (it is on the master only)."""


class RedisClusterSink:
    """Options in the URL query (or keywords, which win): ``stream`` (default
    ``wide_logging:events``), ``shards`` (default 16), ``maxlen`` (per shard, approximate;
    0 = never trim), ``socket_timeout`` and ``connect_timeout`` (seconds, 2.0),
    ``replicas`` (0: do not wait) and ``replicas_timeout`` (seconds, 1.0)."""

    def __init__(self, url: str, **options: Any) -> None:
        clean, parsed = split_options(url, _OPTIONS)
        parsed.update(parse_options(options, _OPTIONS, "redis cluster"))  # (checked alike)
        layout = stream_layout(clean, parsed.get("stream"), parsed.get("shards"))
        self.stream = layout.stream
        self.keys = layout.keys
        self.maxlen: int = parsed.get("maxlen", DEFAULT_MAXLEN)
        self.replicas: int = parsed.get("replicas", 0)
        self.replicas_timeout: float = parsed.get("replicas_timeout", 1.0)
        # (made at the first write: a cluster down when the app starts must not stop it
        # from starting; its events go to the fallback and the spool)
        self._client = connect(
            layout.url,
            socket_timeout=parsed.get("socket_timeout", 2.0),
            connect_timeout=parsed.get("connect_timeout", 2.0),
        )
        self._turn = itertools.cycle(range(len(self.keys)))
        self._lock = threading.Lock()
        self._stale = False
        self.name = f"{mask_url(layout.url)}#{self.stream}:{{0..{len(self.keys) - 1}}}"

    def write(self, batch: Sequence[bytes]) -> None:
        with self._lock:
            key = self.keys[next(self._turn)]
            stale, self._stale = self._stale, False
        try:
            if stale:  # the last write failed: ask the cluster where the slots are now
                self._client.nodes_manager.initialize()
            # The whole batch is for one slot: a plain pipeline to its master, at twice the
            # speed of redis-py's cluster pipeline (which routes each command on its own).
            node = self._client.get_node_from_key(key)
            pipe = self._client.get_redis_connection(node).pipeline(transaction=False)
            maxlen = self.maxlen or None
            for data in batch:
                pipe.xadd(key, {EVENT_FIELD: data}, maxlen=maxlen, approximate=True)
            if self.replicas:
                pipe.execute_command("WAIT", self.replicas, int(self.replicas_timeout * 1000))
            replies = pipe.execute()
        except ERRORS:
            # MOVED/ASK (the slot moved), a node down or failing over, or no map at all:
            # this batch is retried by the pipeline (on the next shard); the next write
            # asks for the slots first.
            self._stale = True
            raise
        if self.replicas and int(replies[-1]) < self.replicas:
            msg = f"{replies[-1]} of {self.replicas} replica(s) of {key!r}'s master took the batch"
            raise ReplicationTimeout(msg)

    def failure_kind(self, error: BaseException) -> FailureKind | None:
        if isinstance(error, (redis.TimeoutError, ReplicationTimeout)):
            return "timeout"
        if isinstance(error, ERRORS):
            return "unavailable"  # down, failing over, MOVED past its retries
        return None

    def close(self) -> None:
        self._client.close()
