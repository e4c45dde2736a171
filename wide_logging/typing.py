"""Named types and the ports (protocols) that the pipeline talks to."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

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


#: How a failed write is treated: ``timeout`` (a hung sink: skip it at once),
#: ``unavailable`` (retry, then skip it), ``content`` (the sink refused what it was given:
#: find the event it refuses, dead-letter it, write the rest).
FailureKind = Literal["timeout", "unavailable", "content"]


class RejectedEvents(Exception):
    """Raised by ``Sink.write``: every event of the batch was stored except these, which
    the sink refuses for good (``index in the batch -> reason``). The pipeline keeps them in
    its dead-letter file instead of retrying them forever."""

    def __init__(self, reasons: Mapping[int, str]) -> None:
        self.reasons = dict(reasons)
        super().__init__(
            f"{len(self.reasons)} event(s) refused: {next(iter(self.reasons.values()), '')}"
        )


@runtime_checkable
class ClassifiesFailures(Protocol):
    """A sink that knows its client's errors: says which kind a write failure is (None:
    let the pipeline decide from the exception's type)."""

    def failure_kind(self, error: BaseException) -> FailureKind | None: ...


class Local(Protocol):
    """A sink that writes to local files or streams (``local = True``): called on the writer
    thread itself. Every other sink runs on a thread of its own, so the writer can stop
    waiting for it at ``sink_timeout``."""

    local: bool


@runtime_checkable
class ForkAware(Protocol):
    """A sink that must drop inherited handles in a forked child."""

    def after_fork(self) -> None: ...


class Decision(Protocol):
    """A sampling verdict (``wide_logging.Decision`` builds them)."""

    keep: bool
    rule: str
    rate: float
    always_keep: bool
    #: ``sampling.*`` of a kept event; shared, never modified
    fields: dict[str, Any]
    #: the metrics counter it increments: ``events.<kept|sampled_out>.<rule>``
    counter: str


@runtime_checkable
class Sampler(Protocol):
    """Decides, without I/O, whether a finished event is kept: ``TailSampler``, or an object
    of your own given as the handler's ``sampling=`` (its decisions are ``Decision``s)."""

    def decide(
        self,
        key: str,
        error: bool = False,
        status: int | None = None,
        duration_ms: float = 0.0,
        route: str | None = None,
        force_keep: bool = False,
        path: str | None = None,
    ) -> Decision: ...

    def decide_log(self, key: str, *, error: bool) -> Decision: ...

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
