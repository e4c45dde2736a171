"""Named types and the ports (protocols) that the pipeline talks to."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

#: A finalized event as a plain, JSON-like nested mapping.
EventDict = dict[str, Any]

#: One encoded event: a JSON document without the trailing newline.
EncodedEvent = bytes


@runtime_checkable
class Sink(Protocol):
    """Where batches of encoded events go.

    ``write`` either stores the whole batch or raises; the pipeline retries, falls back
    and counts. Sinks never see the request thread.
    """

    #: A printable name with any credentials masked (used in messages and metrics).
    name: str

    def write(self, batch: Sequence[EncodedEvent]) -> None: ...

    def close(self) -> None: ...


class ForkAware(Protocol):
    """A sink that must drop inherited handles in a forked child."""

    def after_fork(self) -> None: ...


class Decision(Protocol):
    keep: bool
    rule: str
    rate: float


class Sampler(Protocol):
    """Decides, without I/O, whether a finished event is kept."""

    def explain(self, event: Mapping[str, Any]) -> str: ...


class KeyValueStore(Protocol):
    """Where a cache keeps values: bytes by key, each with a time to live."""

    name: str

    def get(self, key: str) -> bytes | None: ...

    def set(self, key: str, value: bytes, ttl: float) -> None: ...

    def delete(self, key: str) -> None: ...


class SessionStore(Protocol):
    """Where a session cache keeps histories: a capped list of messages per session."""

    name: str

    def append(self, key: str, message: bytes, ttl: float, max_messages: int) -> None: ...

    def last(self, key: str, count: int) -> list[bytes]: ...

    def delete(self, key: str) -> None: ...
