"""The ``[amqp1]`` config section: :class:`AMQP1Config`.

Every key is read by the connection state machine or the adapter; the help texts are
what ``fluxmq config init`` writes and what ``docs/protocols/amqp1.md`` lists.
Validation happens in ``__post_init__`` and names the key.
"""

from __future__ import annotations

from dataclasses import dataclass

from fluxmq_core.config import setting
from fluxmq_core.transport import ListenerSecurity

__all__ = ["AMQP1Config"]

AUTO_CREATE = ("queue", "topic", "none")


@dataclass
class AMQP1Config(ListenerSecurity):
    """[amqp1]: AMQP 1.0 (Qpid Proton, Azure-style and rhea clients) over TCP and TLS."""

    bind: str = setting(
        "0.0.0.0:5672",
        "AMQP 1.0 listener; empty disables it. Shares its port with AMQP 0.9.1 (the "
        "protocol header tells them apart).",
        listener=True,
    )
    tls_bind: str = setting(
        "0.0.0.0:5671",
        "AMQP 1.0 over TLS listener; only bound when tls_cert is set.",
        listener=True,
    )
    handshake_timeout: float = setting(
        10.0, "Seconds a new connection may take from the protocol header to open."
    )
    max_frame_size: int = setting(
        65536, "Largest frame in bytes the broker accepts (announced in open)."
    )
    channel_max: int = setting(255, "Highest channel (session) number per connection.")
    handle_max: int = setting(1023, "Highest link handle per session.")
    idle_timeout: float = setting(
        60.0,
        "Seconds of silence after which the broker closes a connection (announced "
        "in open; clients send heartbeats at half of it); 0 = none.",
    )
    session_window: int = setting(
        2048, "Transfer frames a session may receive before the broker reopens its window."
    )
    link_credit: int = setting(
        256, "Credit granted to each sending client link, topped up when half is used."
    )
    max_message_size: int = setting(
        16 * 1024 * 1024,
        "Largest message in bytes (all transfer frames of a delivery); larger ones "
        "detach the link with amqp:link:message-size-exceeded. 0 = no limit.",
    )
    max_reassembly: int = setting(
        64 * 1024 * 1024,
        "Bytes of multi-frame messages being reassembled per connection, all links "
        "together; beyond it the connection is closed with "
        "amqp:resource-limit-exceeded (a bound on memory against a hostile client). "
        "Keep it at least max_message_size.",
    )
    auto_create: str = setting(
        "queue",
        'What a bare address (no topic/ or $queue/ prefix) names: "queue" (a core '
        'queue, created as the queue manager\'s auto_create says), "topic" (a '
        'router topic) or "none" (refused with amqp:not-found).',
    )
    max_held: int = setting(
        10000,
        "Topic deliveries held per receiving link while it has no credit; beyond "
        "it the oldest are dropped (and counted).",
    )
    outbound_buffer: int = setting(
        1024 * 1024,
        "Bytes buffered per connection before its queue consumers pause until the socket drains.",
    )

    def __post_init__(self) -> None:
        self.check_listener_security("amqp1")

        def check(ok: bool, key: str, what: str) -> None:
            if not ok:
                raise ValueError(f"amqp1.{key} {what}; got {getattr(self, key)!r}")

        check(self.handshake_timeout > 0, "handshake_timeout", "must be > 0")
        check(512 <= self.max_frame_size <= 0xFFFFFFFF, "max_frame_size", "must be 512..4294967295")
        check(0 <= self.channel_max <= 0xFFFF, "channel_max", "must be 0..65535")
        check(0 <= self.handle_max <= 0xFFFFFFFF, "handle_max", "must be 0..4294967295")
        check(self.idle_timeout >= 0, "idle_timeout", "must be >= 0")
        check(1 <= self.session_window <= 0x7FFFFFFF, "session_window", "must be 1..2147483647")
        check(1 <= self.link_credit <= 0xFFFFFFFF, "link_credit", "must be >= 1")
        check(self.max_message_size >= 0, "max_message_size", "must be >= 0")
        check(self.max_reassembly >= 1, "max_reassembly", "must be >= 1")
        check(self.auto_create in AUTO_CREATE, "auto_create", f"must be one of {AUTO_CREATE}")
        check(self.max_held >= 1, "max_held", "must be >= 1")
        check(self.outbound_buffer >= 1024, "outbound_buffer", "must be >= 1024")
