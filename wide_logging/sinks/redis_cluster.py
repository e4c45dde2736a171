"""``redis+cluster://``: events spread over the sharded streams of a Redis Cluster.

``redis+cluster://[user:password@]host:port[,host:port...]/?stream=NAME&shards=16`` — any
of the cluster's nodes (redis-py's ``RedisCluster`` finds the rest and keeps the slot map).
Events go to ``shards`` stream keys, ``NAME:{0}`` to ``NAME:{N-1}``
(``wide_logging._redis``): the hash tag places each key on a slot of its own, so the
shards spread over the cluster's masters. A batch goes to one shard, round robin, in one
plain pipeline to the master the map names for it; MOVED and ASK are followed with what the
node did not take, and after a MOVED or a failure the next write asks for the map first.
One Redis is no longer the ceiling of the whole pipeline, and a master that is down costs a
retry (on the next shard), not the batch.

``replicas=N`` makes a batch count as written only once N replicas of its master have it
(``WAIT``): Redis replicates asynchronously, so without it a master killed the instant after
it answered can take the last batch with it when its replica takes over. A master with fewer
replicas is refused before writing. The consumer reads the same URL
(``wide-logging consume --redis redis+cluster://...``).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from .._errors import ConfigurationError
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


class NotEnoughReplicas(redis.RedisError):
    """The master of the batch's shard has fewer replicas than ``replicas=`` (nothing was
    written: the batch goes to another shard, or is spooled)."""


#: How long the number of a master's replicas is taken as known (seconds).
REPLICAS_KNOWN_FOR = 1.0
#: A master that did not answer is passed over for this long, doubling while it goes on
#: failing, up to REST_MAX (seconds).
REST_FIRST, REST_MAX = 1.0, 10.0
#: The slot map is asked for at most this often (seconds).
REFRESH_EVERY = 1.0


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
        socket_timeout = parsed.get("socket_timeout", 2.0)
        if self.replicas and not 0.001 <= self.replicas_timeout < socket_timeout:
            # (WAIT 0 waits for ever, and a WAIT past the socket's timeout drops the
            # connection instead of saying how many replicas took the batch)
            msg = (
                f"redis cluster sink replicas_timeout must be from 0.001 s to under "
                f"socket_timeout ({socket_timeout:g} s), got {self.replicas_timeout:g}"
            )
            raise ConfigurationError(msg)
        # (made at the first write: a cluster down when the app starts must not stop it
        # from starting; its events go to the fallback and the spool)
        self._client = connect(
            layout.url,
            socket_timeout=socket_timeout,
            connect_timeout=parsed.get("connect_timeout", 2.0),
        )
        #: Per master (host:port): when its replicas were counted, and how many.
        self._replicas_seen: dict[str, tuple[float, int]] = {}
        self._turn = itertools.cycle(range(len(self.keys)))
        self._lock = threading.Lock()
        #: The slot map is being asked for (on a thread of its own), and when it last was.
        self._refreshing = False
        self._refreshed_at = 0.0
        #: Masters (host:port) that did not answer: until when their shards are passed
        #: over, and for how long the last time.
        self._resting: dict[str, tuple[float, float]] = {}
        self.name = f"{mask_url(layout.url)}#{self.stream}:{{0..{len(self.keys) - 1}}}"

    def write(self, batch: Sequence[bytes]) -> None:
        with self._lock:
            key = self._next_key()
        node = None
        try:
            # The whole batch is for one slot: a plain pipeline to its master, at twice the
            # speed of redis-py's cluster pipeline (which routes each command on its own).
            node = self._client.get_node_from_key(key)
            if self.replicas:
                self._check_replicas(node, key)
            replies = self._send(node, key, batch, asking=False)
            missed = [i for i, reply in enumerate(replies[: len(batch)]) if _is_error(reply)]
            if missed:
                redirect = replies[missed[0]]
                # (MOVED is an AskError too: both name the node to go to)
                if not all(isinstance(replies[i], redis.exceptions.AskError) for i in missed):
                    raise redirect
                # What the node did not take goes where it says, and only that (no batch
                # written twice): MOVED — the slot has moved (a resharding, a failover the
                # map missed), so the map is asked for again; ASK — the slot is migrating
                # and the key has gone ahead, so each command after ASKING.
                moved = isinstance(redirect, redis.exceptions.MovedError)
                if moved:
                    self._refresh_map()
                node = redis.cluster.ClusterNode(redirect.host, redirect.port)  # type: ignore[no-untyped-call]
                replies = self._send(node, key, [batch[i] for i in missed], asking=not moved)
                for reply in replies:
                    if _is_error(reply):
                        raise reply
        except ERRORS as exc:
            # A node down, frozen or failing over, or no map at all: this batch is retried
            # by the pipeline (on the next shard), the node (the one that failed: a
            # redirect's target too) is passed over for a while, and the map asked for.
            if node is not None:
                self._rest(node.name)
            if not isinstance(exc, NotEnoughReplicas):  # (the map is right about that one)
                self._refresh_map()
            raise
        if self.replicas and int(replies[-1]) < self.replicas:
            # On the master, not on its replicas (stalled): passed over like a master that
            # does not answer, or each retry that lands there writes the batch once more.
            self._rest(node.name)
            msg = f"{replies[-1]} of {self.replicas} replica(s) of {key!r}'s master took the batch"
            raise ReplicationTimeout(msg)
        if node.name in self._resting:
            with self._lock:
                self._resting.pop(node.name, None)  # it answers again

    def _next_key(self) -> str:
        """The next shard in turn whose master is not resting (under the lock). A master
        that does not answer — down, or frozen and costing a timeout per try — is passed
        over for a while, so that its shards' turns go to the others instead of each
        costing a failed write (which would open the sink's circuit for every master)."""
        key = self.keys[next(self._turn)]
        if not self._resting:
            return key
        now = time.monotonic()
        resting = {name for name, (until, _) in self._resting.items() if until > now}
        for _ in range(len(self.keys)):
            try:
                if self._client.get_node_from_key(key).name not in resting:
                    return key
            except ERRORS:  # the map has no master for it: the write will say
                return key
            key = self.keys[next(self._turn)]
        return key  # every master rests: try anyway (retries, fallback and spool follow)

    def _rest(self, name: str) -> None:
        """Pass ``name`` over for a while: 1 s, doubling each time it fails again after
        its rest (the writes of several threads failing on it at once are one failure)."""
        with self._lock:
            now = time.monotonic()
            until, last = self._resting.get(name, (0.0, 0.0))
            if until > now:
                return
            pause = min(last * 2, REST_MAX) if last else REST_FIRST
            self._resting[name] = (now + pause, pause)

    def _refresh_map(self) -> None:
        """Ask the cluster where the slots are now, on a thread of its own and at most once a
        second: with frozen nodes among the startup nodes, asking costs a socket timeout per
        frozen node, which no write should wait for."""
        with self._lock:
            now = time.monotonic()
            if self._refreshing or now - self._refreshed_at < REFRESH_EVERY:
                return
            self._refreshing, self._refreshed_at = True, now

        def refresh() -> None:
            try:
                self._client.nodes_manager.initialize()
            except Exception:  # (no node answers: the next failure asks again)
                pass
            finally:
                self._refreshing = False

        threading.Thread(target=refresh, name="wide_logging-cluster-map", daemon=True).start()

    def _send(self, node: Any, key: str, batch: Sequence[bytes], *, asking: bool) -> list[Any]:
        """One pipeline to ``node``: the batch's XADDs (each after ASKING when ``asking``),
        then WAIT when replicas are asked for; the replies, errors among them."""
        pipe = self._client.get_redis_connection(node).pipeline(transaction=False)
        maxlen = self.maxlen or None
        for data in batch:
            if asking:
                pipe.execute_command("ASKING")
            pipe.xadd(key, {EVENT_FIELD: data}, maxlen=maxlen, approximate=True)
        if self.replicas:
            pipe.execute_command("WAIT", self.replicas, int(self.replicas_timeout * 1000))
        replies: list[Any] = pipe.execute(raise_on_error=False)
        if asking:  # (ASKING's own replies)
            replies = replies[1 : 2 * len(batch) : 2] + replies[2 * len(batch) :]
        return replies

    def _check_replicas(self, node: Any, key: str) -> None:
        """Refuse before writing when the master has fewer replicas than asked for: a batch
        written and then not replicated would be written again elsewhere — once per retry
        and per replay of the spool, for as long as the replica is missing."""
        now = time.monotonic()
        seen = self._replicas_seen.get(node.name)
        if seen is None or now - seen[0] > REPLICAS_KNOWN_FOR:
            info = self._client.get_redis_connection(node).info("replication")
            seen = self._replicas_seen[node.name] = (now, int(info.get("connected_slaves", 0)))
        if seen[1] < self.replicas:
            msg = f"{key!r}'s master has {seen[1]} of the {self.replicas} replica(s) asked for"
            raise NotEnoughReplicas(msg)

    def failure_kind(self, error: BaseException) -> FailureKind | None:
        # Down, failing over, frozen or without its replicas: one master's trouble. Not a
        # "timeout" (which skips the whole sink at once, as a hung server): that master is
        # passed over from now on, and the retry goes to the next shard's, which answers.
        if isinstance(error, ERRORS):
            return "unavailable"
        return None

    def close(self) -> None:
        self._client.close()


def _is_error(reply: Any) -> bool:
    return isinstance(reply, Exception)
