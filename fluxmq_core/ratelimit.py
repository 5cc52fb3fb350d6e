"""Rate limits shared by every protocol: ``[rate_limit]``.

Token buckets on the broker clock, sans-IO: :class:`TokenBucket` holds ``burst``
tokens and refills ``rate`` a second; an event finding less than one token is over
the limit. Time is passed in (``context.clock()``), so tests move a
:class:`~fluxmq_core.clock.ManualClock` instead of sleeping, and a clock stepping
backwards only pauses the refill. :class:`KeyedLimiter` keeps one bucket per key in
bounded memory: when full, buckets that have refilled completely (which behave exactly
like new ones) are forgotten.

:class:`RateLimits` is the service on ``context.limits`` that protocols call. It is
built so that an unconfigured limit costs one attribute check:

* connections per remote IP: checked by the listeners (``transport/listeners.py``)
  for every TCP/TLS/WebSocket protocol at accept time, and by datagram protocols
  (CoAP) per source address through :meth:`RateLimits.allow_connection`;
* publishes and subscribes per client: a connection-oriented protocol asks
  :meth:`RateLimits.publish_bucket` / :meth:`RateLimits.subscribe_bucket` once per
  connection and takes a token per event (no dict lookup per message); connectionless
  ones (HTTP, CoAP) call :meth:`RateLimits.allow_publish` with their client key.

Each protocol answers a refusal its own way (MQTT 5 reason 0x97, AMQP ``basic.nack``,
HTTP 429 with ``Retry-After``, CoAP 4.29) and calls :meth:`RateLimits.refused` so the
counters in stats move. A reload (SIGHUP, ``POST /api/v1/reload``) applies the new
section through :meth:`RateLimits.configure`; connections keep the bucket they hold
until they reconnect, keyed buckets are rebuilt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fluxmq_core.config import setting

__all__ = ["KeyedLimiter", "RateLimitConfig", "RateLimits", "TokenBucket", "remote_ip"]


@dataclass
class RateLimitConfig:
    """``[rate_limit]``: token buckets for every protocol; a rate of 0 turns a limit off."""

    connections_per_ip: float = setting(
        0.0,
        "New connections a second from one IP address, on every TCP listener (MQTT, "
        "AMQP, HTTP; over it the connection is closed at once) and CoAP (a source "
        "endpoint silent for 60 s counts as new; 4.29). 0 = no limit.",
    )
    connection_burst: int = setting(20, "Connections one IP may open at once.")
    publish_rate: float = setting(
        0.0,
        "Publishes a second per client (MQTT 5 0x97 / 3.1.1 dropped, AMQP 0.9.1 "
        "basic.nack or channel close 406, AMQP 1.0 rejected, HTTP 429, CoAP 4.29; see "
        "docs/auth.md). 0 = no limit.",
    )
    publish_burst: int = setting(100, "Publishes one client may send at once.")
    subscribe_rate: float = setting(
        0.0,
        "Subscribes a second per client (MQTT SUBACK 0x97 / 0x80, AMQP 0.9.1 channel close "
        "406, AMQP 1.0 receiver attach refused, HTTP 429, CoAP Observe 4.29). 0 = no limit.",
    )
    subscribe_burst: int = setting(10, "Subscribes one client may send at once.")
    max_keys: int = setting(100_000, "Buckets kept per limit for keyed limits (IPs, HTTP clients).")

    def __post_init__(self) -> None:
        for name in ("connections_per_ip", "publish_rate", "subscribe_rate"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        for name in ("connection_burst", "publish_burst", "subscribe_burst", "max_keys"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")


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

    def retry_after(self) -> float:
        """Seconds until the next token (for HTTP ``Retry-After``)."""
        if self.rate <= 0:
            return 1.0
        return max(0.0, (1.0 - self.tokens) / self.rate)


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

    def retry_after(self, key: str) -> float:
        bucket = self.buckets.get(key)
        return 1.0 if bucket is None else bucket.retry_after()

    def _prune(self, now: float) -> None:
        buckets = self.buckets
        for key in [k for k, b in buckets.items() if b.full(now)]:
            del buckets[key]
        if len(buckets) >= self.max_keys:
            # Every key is busy: forgetting them all errs on the side of letting
            # clients in, and keeps memory bounded.
            buckets.clear()


def remote_ip(remote: str) -> str:
    """The address part of ``"host:port"`` (IPv6 hosts contain colons too)."""
    host, sep, _port = remote.rpartition(":")
    host = host if sep else remote
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


class RateLimits:
    """The ``context.limits`` service; see the module docstring."""

    def __init__(self, config: RateLimitConfig, clock: Any, stats: Any) -> None:
        self._clock = clock
        self._stats = stats
        self.config = config
        self.connections: KeyedLimiter | None = None
        self.publishes: KeyedLimiter | None = None
        self.subscribes: KeyedLimiter | None = None
        self.configure(config)

    def configure(self, config: RateLimitConfig) -> None:
        """Apply a (re)loaded section: keyed buckets start full again."""
        self.config = config
        keys = config.max_keys
        self.connections = (
            KeyedLimiter(config.connections_per_ip, config.connection_burst, keys)
            if config.connections_per_ip
            else None
        )
        self.publishes = (
            KeyedLimiter(config.publish_rate, config.publish_burst, keys)
            if config.publish_rate
            else None
        )
        self.subscribes = (
            KeyedLimiter(config.subscribe_rate, config.subscribe_burst, keys)
            if config.subscribe_rate
            else None
        )

    # --- per connection (MQTT, AMQP) -------------------------------------------------

    def publish_bucket(self) -> TokenBucket | None:
        """A fresh bucket for one connection's publishes, or ``None`` when unlimited."""
        c = self.config
        return (
            TokenBucket(c.publish_rate, c.publish_burst, self._clock()) if c.publish_rate else None
        )

    def subscribe_bucket(self) -> TokenBucket | None:
        """A fresh bucket for one connection's subscribes, or ``None`` when unlimited."""
        c = self.config
        return (
            TokenBucket(c.subscribe_rate, c.subscribe_burst, self._clock())
            if c.subscribe_rate
            else None
        )

    def now(self) -> float:
        return self._clock()

    # --- keyed (listeners, HTTP, CoAP) ---------------------------------------------------

    def allow_connection(self, remote: str) -> bool:
        """Whether a new connection from ``remote`` (``host:port``) is within the limit;
        counts the refusal."""
        limiter = self.connections
        if limiter is None or limiter.allow(remote_ip(remote), self._clock()):
            return True
        self._stats.rate_limited_connections += 1
        return False

    def allow_publish(self, key: str) -> bool:
        limiter = self.publishes
        if limiter is None or limiter.allow(key, self._clock()):
            return True
        self._stats.rate_limited_publishes += 1
        return False

    def allow_subscribe(self, key: str) -> bool:
        limiter = self.subscribes
        if limiter is None or limiter.allow(key, self._clock()):
            return True
        self._stats.rate_limited_subscribes += 1
        return False

    def retry_after(self, kind: str, key: str) -> int:
        """Whole seconds (at least 1) until ``key`` may ``"publish"``/``"subscribe"``
        again, for HTTP ``Retry-After``."""
        limiter = self.publishes if kind == "publish" else self.subscribes
        wait = 1.0 if limiter is None else limiter.retry_after(key)
        return max(1, int(wait + 0.999))

    def refused(self, kind: str) -> None:
        """Count a refusal a protocol decided with its own bucket (``"publish"`` or
        ``"subscribe"``)."""
        if kind == "publish":
            self._stats.rate_limited_publishes += 1
        else:
            self._stats.rate_limited_subscribes += 1
