"""Cache latency: get (hit and miss) and set on memory and on a real Redis over loopback,
and what the instrumentation (counting + annotating the event) adds to a memory hit."""

from __future__ import annotations

from typing import Any

import pytest

from wide_logging.cache import SemanticCache, SessionCache
from wide_logging.cache.memory import MemoryKeyValueStore


@pytest.fixture(params=["memory", "redis"])
def cache_url(request: pytest.FixtureRequest) -> str:
    return "memory://" if request.param == "memory" else str(request.getfixturevalue("redis_url"))


def test_semantic_get_hit(benchmark: Any, cache_url: str) -> None:
    benchmark.group = "cache"
    cache = SemanticCache(cache_url, name="bench_hit")
    cache.set("what is x?", {"answer": "x is y"}, prompt_version="v1", language="en")
    benchmark(cache.get, "What is X?", prompt_version="v1", language="en")


def test_semantic_get_miss(benchmark: Any, cache_url: str) -> None:
    benchmark.group = "cache"
    cache = SemanticCache(cache_url, name="bench_miss")
    benchmark(cache.get, "never stored", prompt_version="v1", language="en")


def test_semantic_set(benchmark: Any, cache_url: str) -> None:
    benchmark.group = "cache"
    cache = SemanticCache(cache_url, name="bench_set")
    benchmark(cache.set, "q", {"answer": "a" * 200}, prompt_version="v1", language="en")


def test_session_append_and_last(benchmark: Any, cache_url: str) -> None:
    benchmark.group = "cache"
    sessions = SessionCache(cache_url, name="bench_chat", max_messages=20)

    def turn() -> None:
        sessions.append("user-1", {"role": "user", "content": "hello there"})
        sessions.last("user-1", 10)

    benchmark(turn)


def test_raw_memory_store_get(benchmark: Any) -> None:
    """The store alone: subtract from test_semantic_get_hit[memory] for the hit path overhead."""
    benchmark.group = "cache"
    store = MemoryKeyValueStore()
    store.set("k", b'{"answer":"x is y"}', 60)
    benchmark(store.get, "k")
