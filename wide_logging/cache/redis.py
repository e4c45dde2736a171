"""Redis cache stores: namespaced keys, the TTL set with the value in one command, and
one round trip per operation (a MULTI pipeline where a session append takes three)."""

from __future__ import annotations

from typing import Any

from .._redis import connect
from .._urls import mask_url


class RedisKeyValueStore:
    def __init__(self, url: str, *, socket_timeout: float = 0.5) -> None:
        self._client: Any = connect(url, socket_timeout=socket_timeout, connect_timeout=0.5)
        self.name = mask_url(url)

    def get(self, key: str) -> bytes | None:
        value: bytes | None = self._client.get(key)
        return value

    def set(self, key: str, value: bytes, ttl: float) -> None:
        self._client.set(key, value, px=max(1, int(ttl * 1000)))  # SET ... PX: atomic TTL

    def delete(self, key: str) -> None:
        self._client.delete(key)


class RedisSessionStore:
    def __init__(self, url: str, *, socket_timeout: float = 0.5) -> None:
        self._client: Any = connect(url, socket_timeout=socket_timeout, connect_timeout=0.5)
        self.name = mask_url(url)

    def append(self, key: str, message: bytes, ttl: float, max_messages: int) -> None:
        pipe = self._client.pipeline(transaction=True)  # all three or none
        pipe.rpush(key, message)
        pipe.ltrim(key, -max_messages, -1)
        pipe.pexpire(key, max(1, int(ttl * 1000)))
        pipe.execute()

    def last(self, key: str, count: int) -> list[bytes]:
        values: list[bytes] = self._client.lrange(key, -count, -1)
        return values

    def delete(self, key: str) -> None:
        self._client.delete(key)
