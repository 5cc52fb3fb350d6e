"""The codec's two exception types, h11 style: the peer broke the protocol, or we
misused the encoder.

`MQTTProtocolError` is the only exception the decoder ever lets escape, whatever the
input bytes; it carries the MQTT 5 reason code the spec asks for, which the adapter
sends in CONNACK or DISCONNECT (or maps to a 3.1.1 CONNACK return code). It does not
decide whether to send anything: 3.1.1 has no DISCONNECT from the server.

`MQTTEncodeError` is raised by the encoder when the broker asks it to produce a packet
that cannot exist (a QoS 1 PUBLISH without a packet id, a string over 65535 bytes, a
property not allowed in that packet). It is a `ValueError`: a bug on our side, never a
reason to blame the peer.
"""

from __future__ import annotations

from typing import Any

from .reasons import reason_name

__all__ = ["MQTTEncodeError", "MQTTProtocolError"]


class MQTTProtocolError(Exception):
    """The peer sent bytes that break the MQTT spec.

    `reason_code` is an MQTT 5 reason code (0x81 Malformed Packet, 0x82 Protocol Error,
    0x84 Unsupported Protocol Version, 0x85 Client Identifier not valid, 0x90 Topic
    Name invalid, 0x95 Packet too large, 0x97 Quota exceeded). `packets` holds the
    packets `Decoder.packets()` had already decoded from the same chunk before the bad
    one: they were valid and may be processed before the connection is closed.
    """

    def __init__(self, reason_code: int, message: str) -> None:
        super().__init__(reason_code, message)
        self.reason_code = reason_code
        self.message = message
        self.packets: list[Any] = []

    def __str__(self) -> str:
        return (
            f"{self.message} (reason code 0x{self.reason_code:02X} {reason_name(self.reason_code)})"
        )


class MQTTEncodeError(ValueError):
    """The encoder was asked for a packet that cannot be encoded (local misuse)."""
