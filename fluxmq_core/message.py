"""The protocol-neutral unit that crosses the core.

Every protocol plugin turns what it receives into a :class:`Message` before it
reaches the router or the queue manager, and turns a ``Message`` back into its
own wire format on delivery. The class is slotted and carries plain fields, not a
dict, because one is built per publish and read once per subscriber on the hot path.

What it deliberately does not hold: protocol framing (packet ids, DUP flags,
delivery tags) and per-subscriber state (granted QoS, subscription ids). Those live
in the protocol session and in :class:`fluxmq_core.router.Delivery`.
"""

from __future__ import annotations

import time
from typing import Any

UserProperties = list[tuple[str, str]]


class Message:
    """A published message.

    ``expires_at`` is an absolute deadline on the broker clock (seconds), or
    ``None`` for no expiry; protocols convert to and from their relative forms
    (MQTT Message Expiry Interval, AMQP ``expiration``) at the edge.
    ``properties`` holds protocol-specific extras that other protocols may ignore
    (for example the AMQP 0.9.1 ``priority`` or MQTT ``payload_format``) and is
    ``None`` when empty, so a plain publish allocates no dict.
    """

    __slots__ = (
        "topic",
        "payload",
        "qos",
        "retain",
        "properties",
        "user_properties",
        "content_type",
        "correlation_data",
        "response_topic",
        "payload_format",
        "expires_at",
        "origin_protocol",
        "origin_client",
        "timestamp",
        "encoded",
    )

    def __init__(
        self,
        topic: str,
        payload: bytes = b"",
        qos: int = 0,
        retain: bool = False,
        *,
        properties: dict[str, Any] | None = None,
        user_properties: UserProperties | None = None,
        content_type: str | None = None,
        correlation_data: bytes | None = None,
        response_topic: str | None = None,
        payload_format: int | None = None,
        expires_at: float | None = None,
        origin_protocol: str = "",
        origin_client: str = "",
        timestamp: float | None = None,
    ) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties
        self.user_properties = user_properties
        self.content_type = content_type
        self.correlation_data = correlation_data
        self.response_topic = response_topic
        self.payload_format = payload_format
        self.expires_at = expires_at
        self.origin_protocol = origin_protocol
        self.origin_client = origin_client
        self.timestamp = time.time() if timestamp is None else timestamp
        # Per-protocol encode cache for fan-out: encoders may store the bytes (or a
        # template object) of a shape here, keyed as they like, so N subscribers
        # share one encoding.
        self.encoded: dict[Any, Any] | None = None

    def expired(self, now: float) -> bool:
        """True once the deadline has passed; cheap when there is none."""
        return self.expires_at is not None and now >= self.expires_at

    def remaining_expiry(self, now: float) -> int | None:
        """Whole seconds left before expiry (MQTT rewrites this on send), or None."""
        if self.expires_at is None:
            return None
        left = self.expires_at - now
        return max(0, int(left + 0.999999))

    def copy(self, **changes: Any) -> Message:
        """A shallow copy with some fields replaced (the encode cache is not shared)."""
        m = Message.__new__(Message)
        for name in Message.__slots__:
            setattr(m, name, getattr(self, name))
        m.encoded = None
        for k, v in changes.items():
            setattr(m, k, v)
        return m

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (payload as bytes) for storage drivers and tooling."""
        return {
            "topic": self.topic,
            "payload": self.payload,
            "qos": self.qos,
            "retain": self.retain,
            "properties": self.properties,
            "user_properties": self.user_properties,
            "content_type": self.content_type,
            "correlation_data": self.correlation_data,
            "response_topic": self.response_topic,
            "payload_format": self.payload_format,
            "expires_at": self.expires_at,
            "origin_protocol": self.origin_protocol,
            "origin_client": self.origin_client,
            "timestamp": self.timestamp,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Message:
        up = d.get("user_properties")
        return cls(
            d["topic"],
            bytes(d.get("payload", b"")),
            int(d.get("qos", 0)),
            bool(d.get("retain", False)),
            properties=d.get("properties"),
            user_properties=[(str(k), str(v)) for k, v in up] if up else None,
            content_type=d.get("content_type"),
            correlation_data=d.get("correlation_data"),
            response_topic=d.get("response_topic"),
            payload_format=d.get("payload_format"),
            expires_at=d.get("expires_at"),
            origin_protocol=d.get("origin_protocol", ""),
            origin_client=d.get("origin_client", ""),
            timestamp=d.get("timestamp"),
        )

    def __repr__(self) -> str:
        return (
            f"Message(topic={self.topic!r}, payload={self.payload[:32]!r}, "
            f"qos={self.qos}, retain={self.retain}, origin={self.origin_protocol}:{self.origin_client})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    # typeshed types __hash__ as a method; None is how Python spells "unhashable".
    __hash__ = None  # type: ignore[assignment]  # unhashable: mutable, compared by value
