"""Rate limits as token buckets on the broker clock, sans-IO.

:class:`TokenBucket` holds ``burst`` tokens and refills ``rate`` tokens a second;
each event takes one, and an event finding less than one token is over the limit.
Time is passed in (``context.clock()``), so tests move a
:class:`~fluxmq_core.clock.ManualClock` instead of sleeping, and a clock stepping
backwards only pauses the refill. :class:`KeyedLimiter` keeps one bucket per key
(per remote IP address for ``[mqtt] connection_rate``) in bounded memory: when it
holds ``max_keys`` buckets, the ones that have refilled completely (which behave
exactly like a new bucket) are forgotten.

What this module does not do: decide what happens to an event over the limit
(``connection.py`` refuses the CONNECT or answers the PUBLISH), or any I/O.
"""

from __future__ import annotations

__all__ = ["KeyedLimiter", "TokenBucket", "remote_ip"]


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` held; full at creation."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float) -> bool:
        """Take one token at time ``now``: False when none is left."""
        tokens = self.tokens
        elapsed = now - self.stamp
        if elapsed > 0:
            tokens += elapsed * self.rate
            if tokens > self.burst:
                tokens = self.burst
            self.stamp = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return True
        self.tokens = tokens
        return False

    def full(self, now: float) -> bool:
        """Whether the bucket has refilled completely by ``now``."""
        return self.tokens + max(0.0, now - self.stamp) * self.rate >= self.burst


class KeyedLimiter:
    """One :class:`TokenBucket` per key, at most about ``max_keys`` of them."""

    __slots__ = ("rate", "burst", "max_keys", "buckets")

    def __init__(self, rate: float, burst: int, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self.buckets: dict[str, TokenBucket] = {}

    def allow(self, key: str, now: float) -> bool:
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= self.max_keys:
                self._prune(now)
            bucket = self.buckets[key] = TokenBucket(self.rate, self.burst, now)
        return bucket.take(now)

    def _prune(self, now: float) -> None:
        buckets = self.buckets
        for key in [k for k, b in buckets.items() if b.full(now)]:
            del buckets[key]
        if len(buckets) >= self.max_keys:
            # Every address is busy: forgetting them all errs on the side of letting
            # clients in, and keeps memory bounded.
            buckets.clear()


def remote_ip(remote: str) -> str:
    """The address part of ``"host:port"`` (IPv6 hosts contain colons too)."""
    host, sep, _port = remote.rpartition(":")
    return host if sep else remote
