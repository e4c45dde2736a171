"""A circuit breaker: stop calling what just failed, and probe it again after a cooldown.

Used per sink by the pipeline and per cache by the Redis cache adapters. Not thread-safe on
its own: its owner serialises calls (the writer thread, or the cache's lock-free worst case
of two probes at once, which is harmless).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Breaker:
    """Circuit breaker of one sink: closed -> open on a failed batch -> probe after cooldown."""

    cooldown: float
    opened_at: float | None = None
    probing: bool = field(default=False)

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half_open" if self.probing else "open"

    def allows(self, now: float) -> bool:
        if self.opened_at is None:
            return True
        self.probing = now - self.opened_at >= self.cooldown
        return self.probing

    def succeeded(self) -> bool:
        """Close; True when this was a recovery."""
        recovered = self.opened_at is not None
        self.opened_at = None
        self.probing = False
        return recovered

    def failed(self, now: float) -> bool:
        """Open (again); True when it was closed before."""
        was_closed = self.opened_at is None
        self.opened_at = now
        self.probing = False
        return was_closed
