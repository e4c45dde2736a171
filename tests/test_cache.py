"""One behavioural contract for both cache adapters (memory and a real Redis), plus the
parts only one of them has: LRU bounds, namespacing, outages."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from conftest import wait_for
from servers import RedisServer
from wide_logging import (
    ConfigurationError,
    WideEventHandler,
    WideEventMiddleware,
    instrument,
    metrics,
)
from wide_logging.cache import (
    CACHE_METRICS,
    SemanticCache,
    SessionCache,
    normalize_query,
    semantic_key,
)
from wide_logging.cache.memory import MemoryKeyValueStore
from wide_logging.context import activate, deactivate
from wide_logging.testing import MemorySink, capture_events


@pytest.fixture(params=["memory", "redis"])
def url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    return str(request.getfixturevalue("redis_url"))


@pytest.fixture(autouse=True)
def _fresh_counts() -> None:
    CACHE_METRICS.reset()
    metrics._counter_sources.add(CACHE_METRICS)


def test_normalization_is_documented_and_stable() -> None:
    assert normalize_query("  What is\tX?  ") == "what is x?"
    assert normalize_query("\uff21\uff22\uff23") == "abc"  # NFKC folds full-width letters
    assert normalize_query("Straße") == "strasse"  # casefold, not lower
    assert semantic_key("What is  X?", "v1", "en") == semantic_key("what is x?", "v1", "en")
    assert semantic_key("what is x?", "v1", "en") != semantic_key("what is x?", "v2", "en")
    assert semantic_key("what is x?", "v1", "en") != semantic_key("what is x?", "v1", "de")
    # the documented formula: BLAKE2b-128 of "normalized query \x1f prompt version \x1f language"
    expected = hashlib.blake2b(b"what is x?\x1fv1\x1fen", digest_size=16).hexdigest()
    assert semantic_key(" What is X? ", "v1", "en") == expected


def test_semantic_contract(url: str) -> None:
    cache = SemanticCache(url, name="answers", ttl=60)
    assert cache.get("What is  X?", prompt_version="v1", language="en") is None
    assert cache.set("What is  X?", {"answer": 42}, prompt_version="v1", language="en")
    assert cache.get("what is x?", prompt_version="v1", language="en") == {"answer": 42}
    assert cache.get("what is x?", prompt_version="v2", language="en") is None
    assert cache.get("what is x?", prompt_version="v1", language="de") is None
    cache.invalidate("WHAT IS X?", prompt_version="v1", language="en")
    assert cache.get("what is x?", prompt_version="v1", language="en") is None
    assert cache.set("q", object(), prompt_version="v1", language="en") is False  # no raise
    counts = metrics.snapshot()["caches"]["answers"]
    assert (counts["hits"], counts["misses"]) == (1, 4)
    assert counts["hit_rate"] == 0.2


def test_semantic_ttl_expires(url: str) -> None:
    cache = SemanticCache(url, name="short", ttl=0.2)
    cache.set("q", "a", prompt_version="v1", language="en")
    assert cache.get("q", prompt_version="v1", language="en") == "a"
    wait_for(lambda: cache.get("q", prompt_version="v1", language="en") is None, what="expiry")


def test_namespaces_never_share_entries(url: str) -> None:
    shop = SemanticCache(url, name="a", namespace="shop")
    blog = SemanticCache(url, name="a", namespace="blog")
    shop.set("q", "shop answer", prompt_version="v", language="en")
    assert blog.get("q", prompt_version="v", language="en") is None


def test_session_contract(url: str) -> None:
    sessions = SessionCache(url, name="chat", ttl=60, max_messages=3)
    assert sessions.last("s1") == []
    for n in range(5):
        assert sessions.append("s1", {"role": "user", "content": f"m{n}"})
    sessions.append("s2", {"role": "user", "content": "other"})
    assert [m["content"] for m in sessions.last("s1")] == ["m2", "m3", "m4"]  # capped
    assert [m["content"] for m in sessions.last("s1", n=2)] == ["m3", "m4"]
    assert sessions.last("s1", n=0) == []
    sessions.clear("s1")
    assert sessions.last("s1") == []
    assert [m["content"] for m in sessions.last("s2")] == ["other"]
    assert sessions.append("s3", {1, 2}) is False  # not JSON: refused, not raised


def test_session_ttl_is_refreshed_on_write(url: str) -> None:
    sessions = SessionCache(url, name="ttl", ttl=0.6)
    sessions.append("s", "first")
    asyncio.run(asyncio.sleep(0.4))
    sessions.append("s", "second")  # refreshes the TTL of the whole history
    asyncio.run(asyncio.sleep(0.4))  # 0.8 s after the first write: alive thanks to the refresh
    assert sessions.last("s") == ["first", "second"]
    wait_for(lambda: sessions.last("s") == [], what="expiry after the last write")


def test_memory_store_is_lru_bounded_and_uses_its_clock() -> None:
    now = [0.0]
    store = MemoryKeyValueStore(max_entries=2, clock=lambda: now[0])
    cache = SemanticCache(store, name="lru", ttl=10)
    for q in ("a", "b"):
        cache.set(q, q, prompt_version="v", language="en")
    cache.get("a", prompt_version="v", language="en")  # a is now the most recent
    cache.set("c", "c", prompt_version="v", language="en")  # evicts b
    assert cache.get("b", prompt_version="v", language="en") is None
    assert cache.get("a", prompt_version="v", language="en") == "a"
    now[0] = 11.0
    assert cache.get("a", prompt_version="v", language="en") is None


def test_redis_keys_are_namespaced_and_ttl_is_set_with_the_value(
    redis_url: str, redis_server: RedisServer
) -> None:
    cache = SemanticCache(redis_url, name="answers", namespace="shop", ttl=30)
    cache.set("q", "a", prompt_version="v1", language="en")
    [key] = redis_server.client().keys("*")
    assert key.decode() == "shop:wide_logging:semantic:answers:" + semantic_key("q", "v1", "en")
    assert 0 < redis_server.client().pttl(key) <= 30_000
    sessions = SessionCache(redis_url, name="chat", namespace="shop", ttl=30)
    sessions.append("user-1", "hi")
    assert 0 < redis_server.client().pttl("shop:wide_logging:session:chat:user-1") <= 30_000


def test_redis_down_degrades_to_misses_and_recovers_by_itself(own_redis: RedisServer) -> None:
    cache = SemanticCache(own_redis.url, name="flaky", retry_after=0.2)
    sessions = SessionCache(own_redis.url, name="flaky_chat", retry_after=0.2)
    cache.set("q", "cached", prompt_version="v", language="en")
    own_redis.kill()
    assert cache.get("q", prompt_version="v", language="en") is None  # a miss, not an error
    assert cache.set("q2", "x", prompt_version="v", language="en") is False
    assert sessions.append("s", "m") is False
    assert sessions.last("s") == []
    assert metrics.snapshot()["caches"]["flaky"]["errors"] >= 1
    own_redis.start()  # durable: the entry written before the crash is back
    wait_for(
        lambda: cache.get("q", prompt_version="v", language="en") == "cached",
        what="the cache to use Redis again",
    )
    # each cache has its own circuit breaker: the session cache's cooldown may end a few
    # milliseconds after the other's
    wait_for(lambda: sessions.append("s", "m"), what="the session cache to use Redis again")
    assert sessions.last("s")[-1:] == ["m"]


def test_lookups_annotate_the_request_event(make_handler: Callable[..., WideEventHandler]) -> None:
    make_handler(sink=MemorySink(), sampling={"normal_rate": 1.0})
    cache = SemanticCache(name="answers")
    cache.set("hello", "world", prompt_version="v1", language="en")

    async def ask(request: Request) -> JSONResponse:
        return JSONResponse(
            cache.get(request.query_params["q"], prompt_version="v1", language="en")
        )

    app = Starlette(routes=[Route("/ask", ask)])
    app.add_middleware(WideEventMiddleware)
    with TestClient(app) as client, capture_events() as events:
        client.get("/ask?q=Hello")
        client.get("/ask?q=unknown")
    hit, miss = events.requests()
    assert hit["cache"]["answers"]["hit"] is True
    assert miss["cache"]["answers"]["hit"] is False
    assert hit["cache"]["answers"]["latency_ms"] >= 0


def test_cached_decorator_serves_sync_async_and_methods(url: str) -> None:
    cache = SemanticCache(url, name="llm")
    calls: list[str] = []

    @cache.cached(prompt_version="v3", language="en")
    def answer(query: str, *, temperature: float = 0.0) -> str:
        """Ask the model."""
        calls.append(query)
        return f"answer to {query}"

    @cache.cached(prompt_version="v3", language="en")
    async def answer_async(query: str) -> str:
        calls.append(query)
        return f"async answer to {query}"

    class Bot:
        @cache.cached(prompt_version="v3", language="fr")
        def reply(self, query: str) -> str:
            calls.append(query)
            return f"réponse à {query}"

    assert answer("What is X?") == answer("what is  x?") == "answer to What is X?"
    assert asyncio.run(answer_async("Other")) == asyncio.run(answer_async(query="other"))
    bot = Bot()
    assert bot.reply("Hi") == bot.reply("hi") == "réponse à Hi"
    assert calls == ["What is X?", "Other", "Hi"]  # each computed once
    assert "temperature" in str(inspect.signature(answer))
    assert answer.__doc__ == "Ask the model."
    assert inspect.iscoroutinefunction(answer_async)


def test_instrument_records_time_and_failures(
    make_handler: Callable[..., WideEventHandler],
) -> None:
    handler = make_handler(sink=MemorySink())

    @instrument("llm")
    def call_model(prompt: str) -> str:
        if prompt == "bad":
            raise TimeoutError("model timed out")
        return prompt.upper()

    @instrument("embed")
    async def embed(text: str) -> int:
        await asyncio.sleep(0.001)
        return len(text)

    class Client:
        @instrument("payments")
        def charge(self, cents: int) -> int:
            return cents

    event = handler.new_event()
    token = activate(event)
    try:
        assert call_model("hi") == "HI"
        with pytest.raises(TimeoutError):
            call_model("bad")
        assert asyncio.run(embed("abc")) == 3
        assert Client().charge(5) == 5
    finally:
        deactivate(token)
    fields = event.finalize({}, {})
    assert set(fields["timings"]) == {"llm_ms", "embed_ms", "payments_ms"}
    assert fields["llm"] == {"error": {"type": "TimeoutError", "message": "model timed out"}}
    assert "error" not in fields  # a handled dependency failure is not the request's error
    assert "prompt" in str(inspect.signature(call_model))
    assert inspect.iscoroutinefunction(embed)


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: SemanticCache(name="a.b"), "cache name"),
        (lambda: SemanticCache(ttl=0), "ttl"),
        (lambda: SemanticCache("memcached://x"), "memory:// or redis://"),
        (lambda: SessionCache(max_messages=0), "max_messages"),
        (lambda: SessionCache(namespace=""), "namespace"),
        (lambda: instrument("a.b"), "without dots"),
    ],
)
def test_bad_configuration_is_rejected(factory: Callable[[], Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        factory()  # the documented formula: BLAKE2b-128 of "normalized query \x1f prompt version \x1f language"
    expected = hashlib.blake2b(b"what is x?\x1fv1\x1fen", digest_size=16).hexdigest()
    assert semantic_key(" What is X? ", "v1", "en") == expected


def test_concurrent_use_keeps_every_write(url: str) -> None:
    sessions = SessionCache(url, name="busy", max_messages=1000)
    answers = SemanticCache(url, name="busy_answers")

    def worker(n: int) -> None:
        for i in range(50):
            sessions.append("shared", f"{n}-{i}")
            answers.set(f"q{n}-{i}", i, prompt_version="v", language="en")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(worker, range(8)))
    history = sessions.last("shared")
    assert sorted(history) == sorted(f"{n}-{i}" for n in range(8) for i in range(50))
    assert all(
        answers.get(f"q{n}-{i}", prompt_version="v", language="en") == i
        for n in range(8)
        for i in range(50)
    )
