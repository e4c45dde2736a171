"""Session and semantic caches for LLM-backed services, on memory or Redis.

    from wide_logging.cache import SemanticCache, SessionCache

    answers = SemanticCache("redis://redis:6379/0", name="answers", ttl=3600)
    history = SessionCache("redis://redis:6379/0", name="chat", ttl=1800, max_messages=50)

``memory://`` keeps everything in the process (thread-safe, expiring, LRU-bounded);
``redis://`` shares it between instances. Every lookup counts a hit or a miss in
``wide_logging.metrics`` (``caches.<name>``) and annotates the current wide event with
``cache.<name>.hit`` and ``cache.<name>.latency_ms``. A cache never raises into the app:
when Redis is down a lookup is a miss, a write is skipped, the error is counted, and after
a short cooldown the cache tries Redis again by itself.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import re
import time
import unicodedata
from collections.abc import Callable
from typing import Any, TypeVar, cast

import orjson
import wrapt

from .._breaker import Breaker
from .._errors import ConfigurationError, check_number
from ..context import current_event
from ..metrics import Metrics
from ..typing import KeyValueStore, SessionStore
from .memory import MemoryKeyValueStore, MemorySessionStore

__all__ = ["SemanticCache", "SessionCache", "normalize_query", "semantic_key"]

_internal = logging.getLogger("wide_logging.internal")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
F = TypeVar("F", bound=Callable[..., Any])

#: Hits, misses and errors of every cache in the process (``caches.<name>`` in snapshots).
CACHE_METRICS = Metrics()


def normalize_query(query: str) -> str:
    """Unicode NFKC, case-folded, whitespace collapsed and trimmed.

    ``"What is  X?"`` and ``"what is x?"`` normalise alike; punctuation is kept.
    """
    return " ".join(unicodedata.normalize("NFKC", query).casefold().split())


def semantic_key(query: str, prompt_version: str, language: str) -> str:
    """A stable hash (BLAKE2b, 128 bits) of the normalised query, prompt version, language."""
    material = "\x1f".join((normalize_query(query), prompt_version, language))
    return hashlib.blake2b(material.encode("utf-8"), digest_size=16).hexdigest()


class _Cache:
    """What both caches share: the store, counting, annotating, and never raising."""

    kind = "cache"

    def __init__(self, name: str, ttl: float, namespace: str | None, retry_after: float) -> None:
        if not isinstance(name, str) or _NAME.fullmatch(name) is None:
            msg = f"cache name must be a word (letters, digits, _ and -), got {name!r}"
            raise ConfigurationError(msg)
        check_number("ttl", ttl, 0.001)
        if namespace is not None and (not isinstance(namespace, str) or not namespace):
            msg = f"namespace must be a non-empty string, got {namespace!r}"
            raise ConfigurationError(msg)
        self.name = name
        self.ttl = float(ttl)
        self.prefix = f"{namespace + ':' if namespace else ''}wide_logging:{self.kind}:{name}:"
        check_number("retry_after", retry_after, 0)
        self._breaker = Breaker(cooldown=retry_after)

    def _call(self, operation: Callable[[], Any], default: Any) -> tuple[bool, Any]:
        """Run a store operation; (False, default) when it failed or the store rests."""
        if not self._breaker.allows(time.monotonic()):
            return False, default
        try:
            result = operation()
        except Exception as exc:
            CACHE_METRICS.inc(f"cache.errors.{self.name}")
            if self._breaker.failed(time.monotonic()):
                _internal.warning(
                    "cache %r: %s failed (%s: %s); serving misses for %.0fs",
                    self.name,
                    self._store_name,
                    type(exc).__name__,
                    exc,
                    self._breaker.cooldown,
                )
            return False, default
        if self._breaker.succeeded():
            _internal.warning("cache %r: %s is back", self.name, self._store_name)
        return True, result

    def _encode(self, value: Any, what: str) -> bytes | None:
        """JSON for the store, or None (counted, logged) when orjson cannot encode it."""
        try:
            return orjson.dumps(value)
        except TypeError as exc:
            CACHE_METRICS.inc(f"cache.errors.{self.name}")
            _internal.warning("cache %r: %s not storable: %s", self.name, what, exc)
            return None

    def _record(self, hit: bool, started: float) -> None:
        CACHE_METRICS.inc(f"cache.{'hits' if hit else 'misses'}.{self.name}")
        event = current_event()
        if event is not None:
            latency = round((time.perf_counter() - started) * 1000, 3)
            event.annotate(cache={self.name: {"hit": hit, "latency_ms": latency}})

    @property
    def _store_name(self) -> str:
        raise NotImplementedError


class SemanticCache(_Cache):
    """Exact-key answers cache: the key is ``semantic_key(query, prompt_version, language)``.

    Values are anything orjson encodes (strings, dicts, lists, numbers).
    """

    kind = "semantic"

    def __init__(
        self,
        url: str | KeyValueStore = "memory://",
        *,
        name: str = "semantic",
        ttl: float = 3600.0,
        namespace: str | None = None,
        max_entries: int = 10_000,
        retry_after: float = 5.0,
    ) -> None:
        super().__init__(name, ttl, namespace, retry_after)
        self.store: KeyValueStore = (
            _open_store(url, lambda: MemoryKeyValueStore(max_entries), "RedisKeyValueStore")
            if isinstance(url, str)
            else url
        )

    @property
    def _store_name(self) -> str:
        return self.store.name

    def key(self, query: str, prompt_version: str, language: str) -> str:
        return self.prefix + semantic_key(query, prompt_version, language)

    def get(self, query: str, *, prompt_version: str, language: str) -> Any:
        """The cached value, or None (a miss — also when the store is unreachable)."""
        started = time.perf_counter()
        key = self.key(query, prompt_version, language)
        _, raw = self._call(lambda: self.store.get(key), None)
        value = None
        if raw is not None:
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError:
                CACHE_METRICS.inc(f"cache.errors.{self.name}")
        self._record(value is not None, started)
        return value

    def set(
        self,
        query: str,
        value: Any,
        *,
        prompt_version: str,
        language: str,
        ttl: float | None = None,
    ) -> bool:
        """Store ``value``; False (never an exception) when it could not be stored."""
        data = self._encode(value, "value")
        if data is None:
            return False
        key = self.key(query, prompt_version, language)
        stored, _ = self._call(lambda: self.store.set(key, data, ttl or self.ttl), None)
        return bool(stored)

    def invalidate(self, query: str, *, prompt_version: str, language: str) -> None:
        key = self.key(query, prompt_version, language)
        self._call(lambda: self.store.delete(key), None)

    def cached(
        self, *, prompt_version: str, language: str, ttl: float | None = None
    ) -> Callable[[F], F]:
        """Serve a function of the query (its first argument, or ``query=``) from the cache.

        Works on sync and async functions and methods; signatures stay intact. A result of
        None is not cached (nothing would tell it from a miss).
        """
        options = {"prompt_version": prompt_version, "language": language}

        def lookup(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, Any]:
            query = str(kwargs["query"] if "query" in kwargs else args[0])
            return query, self.get(query, **options)

        def remember(query: str, result: Any) -> Any:
            if result is not None:
                self.set(query, result, ttl=ttl, **options)
            return result

        @wrapt.decorator
        def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            query, hit = lookup(args, kwargs)
            return hit if hit is not None else remember(query, wrapped(*args, **kwargs))

        @wrapt.decorator
        async def async_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            query, hit = lookup(args, kwargs)
            return hit if hit is not None else remember(query, await wrapped(*args, **kwargs))

        def decorate(func: F) -> F:
            chosen = async_wrapper if inspect.iscoroutinefunction(func) else wrapper
            return cast(F, chosen(func))

        return decorate


class SessionCache(_Cache):
    """Chat history per session id: append, read the last N, clear.

    The TTL is refreshed on every append; at most ``max_messages`` are kept (oldest go).
    Messages are anything orjson encodes (typically ``{"role": ..., "content": ...}``).
    """

    kind = "session"

    def __init__(
        self,
        url: str | SessionStore = "memory://",
        *,
        name: str = "session",
        ttl: float = 1800.0,
        max_messages: int = 50,
        namespace: str | None = None,
        max_entries: int = 10_000,
        retry_after: float = 5.0,
    ) -> None:
        super().__init__(name, ttl, namespace, retry_after)
        check_number("max_messages", max_messages, 1, integer=True)
        self.max_messages = max_messages
        self.store: SessionStore = (
            _open_store(url, lambda: MemorySessionStore(max_entries), "RedisSessionStore")
            if isinstance(url, str)
            else url
        )

    @property
    def _store_name(self) -> str:
        return self.store.name

    def append(self, session_id: str, message: Any) -> bool:
        """Add a message; False (never an exception) when it could not be stored."""
        data = self._encode(message, "message")
        if data is None:
            return False
        key = self.prefix + str(session_id)
        stored, _ = self._call(
            lambda: self.store.append(key, data, self.ttl, self.max_messages), None
        )
        return bool(stored)

    def last(self, session_id: str, n: int | None = None) -> list[Any]:
        """The last ``n`` messages (all kept ones by default), oldest first; [] on a miss."""
        started = time.perf_counter()
        count = self.max_messages if n is None else max(0, min(n, self.max_messages))
        key = self.prefix + str(session_id)
        _, raw = self._call(lambda: self.store.last(key, count) if count else [], [])
        messages = []
        for item in raw:
            try:
                messages.append(orjson.loads(item))
            except orjson.JSONDecodeError:
                CACHE_METRICS.inc(f"cache.errors.{self.name}")
        self._record(bool(messages), started)
        return messages

    def clear(self, session_id: str) -> None:
        key = self.prefix + str(session_id)
        self._call(lambda: self.store.delete(key), None)


def _open_store(url: str, memory: Callable[[], Any], redis_class: str) -> Any:
    if url.startswith("memory:"):
        return memory()
    if url.startswith(("redis://", "rediss://", "unix://")):
        from . import redis

        return getattr(redis, redis_class)(url)
    msg = f"cache URL must be memory:// or redis://..., got {url.split(':', 1)[0]!r}"
    raise ConfigurationError(msg)
