"""MQTT 5 properties (spec section 2.2.2): the `Properties` value class, the table of
property identifiers and data types, which packet may carry which property, and the
property block's encoder and decoder.

Representation: a frozen, slotted `Properties` dataclass with one attribute per
property, snake_case of the spec name. Absent single properties are `None`; the two
repeatable ones are tuples and empty when absent: `user_properties` (ordered
`(name, value)` pairs) and `subscription_identifiers` (ints; a SUBSCRIBE carries at
most one). A packet without properties holds `properties=None` rather than an empty
`Properties`, so the common case allocates nothing; the encoder treats `None` and an
empty `Properties()` alike.

Values are checked as far as the spec lets a codec check them: 0/1 flags, non-zero
Receive Maximum, Maximum Packet Size, Topic Alias and Subscription Identifier, no
wildcards in a Response Topic. What a property *means* for the session (expiry,
aliases, flow control) is not handled here.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from .errors import MQTTEncodeError, MQTTProtocolError
from .primitives import (
    encode_binary,
    encode_string,
    encode_u16,
    encode_u32,
    encode_varint,
    malformed,
    read_binary,
    read_string,
    read_u16,
    read_u32,
    read_varint,
)

__all__ = [
    "ALLOWED_PROPERTIES",
    "PROPERTY_TABLE",
    "WILL",
    "Properties",
    "decode_properties",
    "encode_properties",
]

PROTOCOL_ERROR = 0x82


@dataclass(frozen=True, slots=True)
class Properties:
    payload_format_indicator: int | None = None
    message_expiry_interval: int | None = None
    content_type: str | None = None
    response_topic: str | None = None
    correlation_data: bytes | None = None
    subscription_identifiers: tuple[int, ...] = ()
    session_expiry_interval: int | None = None
    assigned_client_identifier: str | None = None
    server_keep_alive: int | None = None
    authentication_method: str | None = None
    authentication_data: bytes | None = None
    request_problem_information: int | None = None
    will_delay_interval: int | None = None
    request_response_information: int | None = None
    response_information: str | None = None
    server_reference: str | None = None
    reason_string: str | None = None
    receive_maximum: int | None = None
    topic_alias_maximum: int | None = None
    topic_alias: int | None = None
    maximum_qos: int | None = None
    retain_available: int | None = None
    user_properties: tuple[tuple[str, str], ...] = ()
    maximum_packet_size: int | None = None
    wildcard_subscription_available: int | None = None
    subscription_identifier_available: int | None = None
    shared_subscription_available: int | None = None

    def is_empty(self) -> bool:
        return self == _EMPTY

    def present(self) -> dict[str, Any]:
        """The properties that are set, by attribute name (for logs and tests)."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) not in (None, ())
        }


_EMPTY = Properties()

# Data types.
BYTE, U16, U32, VARINT, STRING, BINARY, PAIR = range(7)

# id -> (attribute, data type, repeatable)
PROPERTY_TABLE: dict[int, tuple[str, int, bool]] = {
    0x01: ("payload_format_indicator", BYTE, False),
    0x02: ("message_expiry_interval", U32, False),
    0x03: ("content_type", STRING, False),
    0x08: ("response_topic", STRING, False),
    0x09: ("correlation_data", BINARY, False),
    0x0B: ("subscription_identifiers", VARINT, True),
    0x11: ("session_expiry_interval", U32, False),
    0x12: ("assigned_client_identifier", STRING, False),
    0x13: ("server_keep_alive", U16, False),
    0x15: ("authentication_method", STRING, False),
    0x16: ("authentication_data", BINARY, False),
    0x17: ("request_problem_information", BYTE, False),
    0x18: ("will_delay_interval", U32, False),
    0x19: ("request_response_information", BYTE, False),
    0x1A: ("response_information", STRING, False),
    0x1C: ("server_reference", STRING, False),
    0x1F: ("reason_string", STRING, False),
    0x21: ("receive_maximum", U16, False),
    0x22: ("topic_alias_maximum", U16, False),
    0x23: ("topic_alias", U16, False),
    0x24: ("maximum_qos", BYTE, False),
    0x25: ("retain_available", BYTE, False),
    0x26: ("user_properties", PAIR, True),
    0x27: ("maximum_packet_size", U32, False),
    0x28: ("wildcard_subscription_available", BYTE, False),
    0x29: ("subscription_identifier_available", BYTE, False),
    0x2A: ("shared_subscription_available", BYTE, False),
}
_ID_BY_NAME = {name: pid for pid, (name, _t, _r) in PROPERTY_TABLE.items()}
# Encoding order: by identifier, as the table is written.
_ENCODE_ORDER = tuple((name, pid, t) for pid, (name, t, _r) in PROPERTY_TABLE.items())

# Byte properties that may only be 0 or 1 ("It is a Protocol Error to include a value
# other than 0 or 1"), and integer properties that must not be 0.
_BOOLEAN = frozenset({0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A})
_NON_ZERO = frozenset({0x0B, 0x21, 0x23, 0x27})

WILL = 0  # pseudo packet type: the Will Properties of a CONNECT

_ALL_PACKETS = frozenset(range(1, 16))
_USER = 0x26
_REASON = 0x1F


def _ids(*ids: int) -> frozenset[int]:
    return frozenset(ids)


# packet type -> property identifiers it may carry (spec table 2-4).
ALLOWED_PROPERTIES: dict[int, frozenset[int]] = {
    1: _ids(0x11, 0x15, 0x16, 0x17, 0x19, 0x21, 0x22, 0x26, 0x27),  # CONNECT
    2: _ids(
        0x11,
        0x12,
        0x13,
        0x15,
        0x16,
        0x1A,
        0x1C,
        0x1F,
        0x21,
        0x22,
        0x24,
        0x25,
        0x26,
        0x27,
        0x28,
        0x29,
        0x2A,
    ),  # CONNACK
    3: _ids(0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x23, 0x26),  # PUBLISH
    4: _ids(_REASON, _USER),  # PUBACK
    5: _ids(_REASON, _USER),  # PUBREC
    6: _ids(_REASON, _USER),  # PUBREL
    7: _ids(_REASON, _USER),  # PUBCOMP
    8: _ids(0x0B, _USER),  # SUBSCRIBE
    9: _ids(_REASON, _USER),  # SUBACK
    10: _ids(_USER),  # UNSUBSCRIBE
    11: _ids(_REASON, _USER),  # UNSUBACK
    12: frozenset(),  # PINGREQ
    13: frozenset(),  # PINGRESP
    14: _ids(0x11, 0x1C, _REASON, _USER),  # DISCONNECT
    15: _ids(0x15, 0x16, _REASON, _USER),  # AUTH
    WILL: _ids(0x01, 0x02, 0x03, 0x08, 0x09, 0x18, _USER),
}


def decode_properties(
    buf: bytes, pos: int, end: int, packet_type: int
) -> tuple[Properties | None, int]:
    """Read a property block (length + properties) at `pos`; `None` when it is empty."""
    length, pos = read_varint(buf, pos, end)
    if length == 0:
        return None, pos
    stop = pos + length
    if stop > end:
        raise malformed("property length runs past the end of the packet")
    allowed = ALLOWED_PROPERTIES[packet_type]
    values: dict[str, Any] = {}
    while pos < stop:
        pid, pos = read_varint(buf, pos, stop)
        entry = PROPERTY_TABLE.get(pid)
        if entry is None:
            raise malformed(f"unknown property identifier 0x{pid:02X}")
        if pid not in allowed:
            raise malformed(f"property {entry[0]} (0x{pid:02X}) not allowed in this packet")
        name, kind, repeatable = entry
        if kind == BYTE:
            if pos >= stop:
                raise malformed("packet too short: expected a byte")
            value: Any = buf[pos]
            pos += 1
        elif kind == U32:
            value, pos = read_u32(buf, pos, stop)
        elif kind == U16:
            value, pos = read_u16(buf, pos, stop)
        elif kind == STRING:
            value, pos = read_string(buf, pos, stop)
        elif kind == BINARY:
            value, pos = read_binary(buf, pos, stop)
        elif kind == VARINT:
            value, pos = read_varint(buf, pos, stop)
        else:  # PAIR
            key, pos = read_string(buf, pos, stop)
            val, pos = read_string(buf, pos, stop)
            value = (key, val)
        if pid in _BOOLEAN and value > 1:
            raise MQTTProtocolError(PROTOCOL_ERROR, f"property {name} must be 0 or 1, got {value}")
        if pid in _NON_ZERO and value == 0:
            raise MQTTProtocolError(PROTOCOL_ERROR, f"property {name} must not be 0")
        if pid == 0x08 and ("+" in value or "#" in value):
            raise MQTTProtocolError(PROTOCOL_ERROR, "response topic contains a wildcard")
        if repeatable:
            values.setdefault(name, []).append(value)
        elif name in values:
            raise MQTTProtocolError(PROTOCOL_ERROR, f"property {name} included more than once")
        else:
            values[name] = value
    if pos != stop:
        raise malformed("property runs past the end of the property block")
    if packet_type == 8 and len(values.get("subscription_identifiers", ())) > 1:
        raise MQTTProtocolError(PROTOCOL_ERROR, "subscription identifier included more than once")
    for name in ("user_properties", "subscription_identifiers"):
        if name in values:
            values[name] = tuple(values[name])
    return Properties(**values), pos


def encode_properties(props: Properties | None, packet_type: int) -> bytes:
    """The property block (length prefix included) for `packet_type`; `b"\\x00"` for
    none. Raises `MQTTEncodeError` for a property the packet may not carry."""
    if props is None:
        return b"\x00"
    allowed = ALLOWED_PROPERTIES[packet_type]
    parts: list[bytes] = []
    for name, pid, kind in _ENCODE_ORDER:
        value = getattr(props, name)
        if value is None or value == ():
            continue
        if pid not in allowed:
            raise MQTTEncodeError(f"property {name} not allowed in packet type {packet_type}")
        if kind == PAIR:
            for key, val in value:
                parts.append(b"\x26" + encode_string(key) + encode_string(val))
            continue
        if kind == VARINT:
            for sub_id in value:
                if sub_id == 0:
                    raise MQTTEncodeError("subscription identifier must not be 0")
                parts.append(b"\x0b" + encode_varint(sub_id))
            continue
        head = bytes((pid,))
        if kind == BYTE:
            if not 0 <= value <= 255:
                raise MQTTEncodeError(f"property {name} out of range: {value}")
            parts.append(head + bytes((value,)))
        elif kind == U32:
            parts.append(head + encode_u32(value))
        elif kind == U16:
            parts.append(head + encode_u16(value))
        elif kind == STRING:
            parts.append(head + encode_string(value))
        else:  # BINARY
            parts.append(head + encode_binary(value))
    body = b"".join(parts)
    return encode_varint(len(body)) + body


def property_id(name: str) -> int:
    """Identifier of a property by attribute name (`KeyError` if unknown)."""
    return _ID_BY_NAME[name]
