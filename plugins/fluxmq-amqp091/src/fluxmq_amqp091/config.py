"""The ``[amqp091]`` config section: :class:`AMQP091Config`.

Every key is read by the connection, channel or adapter layer; the help texts are
what ``fluxmq config init`` writes and what ``docs/protocols/amqp091.md`` lists.
Validation happens in ``__post_init__`` and names the key.
"""

from __future__ import annotations

from dataclasses import dataclass

from fluxmq_core.config import setting
from fluxmq_core.transport import ListenerSecurity

__all__ = ["AMQP091Config"]


@dataclass
class AMQP091Config(ListenerSecurity):
    """[amqp091]: AMQP 0.9.1 (RabbitMQ clients) over TCP and TLS."""

    bind: str = setting(
        "0.0.0.0:5672",
        "AMQP 0.9.1 listener; empty disables it. Can share its address with other protocols (port sharing by header).",
        listener=True,
    )
    tls_bind: str = setting(
        "0.0.0.0:5671",
        "AMQP 0.9.1 over TLS listener; only bound when tls_cert is set.",
        listener=True,
    )
    handshake_timeout: float = setting(
        10.0, "Seconds a new connection may take from the protocol header to connection.open."
    )
    frame_max: int = setting(
        131072, "Largest frame in bytes offered in connection.tune (clients may ask for less)."
    )
    channel_max: int = setting(2047, "Most channels per connection offered in connection.tune.")
    heartbeat: int = setting(
        60,
        "Heartbeat interval in seconds offered in connection.tune; 0 = none. A peer "
        "silent for two intervals is disconnected.",
    )
    max_message_size: int = setting(
        16 * 1024 * 1024,
        "Largest message body accepted in bytes; larger publishes close the channel (406).",
    )
    consumer_timeout: float = setting(
        1800.0,
        "Seconds a delivery may stay unacknowledged before the queue takes it back "
        "(the visibility timeout of queues declared over AMQP).",
    )
    topic_exchange: str = setting(
        "amq.topic",
        "The topic exchange bridged to the core router (MQTT topics): publishes to it reach "
        "topic subscribers of every protocol, and its bindings receive their publishes.",
    )
    outbound_buffer: int = setting(
        1024 * 1024,
        "Bytes buffered per connection before its consumers pause until the socket drains.",
    )
    memory_high_watermark: int = setting(
        0,
        "Process resident memory in bytes above which publishing connections are blocked "
        "(connection.blocked) until it falls below 90% of it; 0 = off.",
    )
    buffer_high_watermark: int = setting(
        0,
        "Bytes waiting to be written to AMQP clients (all connections together) above which "
        "publishers are blocked, until below 90%; 0 = off.",
    )

    def __post_init__(self) -> None:
        self.check_listener_security("amqp091")

        def check(ok: bool, key: str, what: str) -> None:
            if not ok:
                raise ValueError(f"amqp091.{key} {what}; got {getattr(self, key)!r}")

        check(self.handshake_timeout > 0, "handshake_timeout", "must be > 0")
        check(4096 <= self.frame_max <= 0xFFFFFFFF, "frame_max", "must be 4096..4294967295")
        check(1 <= self.channel_max <= 0xFFFF, "channel_max", "must be 1..65535")
        check(0 <= self.heartbeat <= 0xFFFF, "heartbeat", "must be 0..65535")
        check(self.max_message_size >= 0, "max_message_size", "must be >= 0")
        check(self.consumer_timeout > 0, "consumer_timeout", "must be > 0")
        check(self.outbound_buffer >= 1024, "outbound_buffer", "must be >= 1024")
        check(self.memory_high_watermark >= 0, "memory_high_watermark", "must be >= 0")
        check(self.buffer_high_watermark >= 0, "buffer_high_watermark", "must be >= 0")
