"""The MQTT encoder: packets out as bytes, for protocol levels 3, 4 and 5.

`encode(packet, version)` handles every packet type. Fan-out has its own helpers,
because the broker encodes a message once per (version, QoS, properties) shape and
writes the same bytes to many subscribers: `encode_publish()` builds a PUBLISH from
its fields without a packet object, and `PublishTemplate` builds it once and stamps
each subscriber's packet id (and DUP on a resend) into a copy. `encoded_size()` and
`publish_size()` let the broker check a client's Maximum Packet Size first.

Version rules: under 3.1/3.1.1 properties are dropped silently (the broker hands the
same packet to clients of every version), acks carry no reason code, SUBACK codes
>= 0x80 become 0x80 and CONNACK reason codes are mapped to 3.1.1 return codes. Under
5.0 the short forms are produced where the spec allows them (PUBACK & co. without
reason code and properties when both are empty, empty DISCONNECT and AUTH).

Misuse (QoS > 0 without packet id, a string over 65535 bytes, AUTH under 3.1.1)
raises `MQTTEncodeError`. Nothing here validates topic filters or session rules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import MQTTEncodeError
from .packets import (
    MQTT_3_1,
    MQTT_5,
    Auth,
    Connack,
    Connect,
    Disconnect,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
)
from .primitives import (
    MAX_VARINT,
    encode_binary,
    encode_string,
    encode_varint,
    varint_size,
)
from .properties import WILL, Properties, encode_properties
from .reasons import connack_return_code_v3, suback_return_code_v3

__all__ = [
    "PublishTemplate",
    "encode",
    "encode_publish",
    "encoded_size",
    "publish_size",
    "publish_with_packet_id",
]

_FIRST_BYTE = {
    cls: (ptype << 4) | flags
    for cls, ptype, flags in (
        (Connect, 1, 0),
        (Connack, 2, 0),
        (Puback, 4, 0),
        (Pubrec, 5, 0),
        (Pubrel, 6, 2),
        (Pubcomp, 7, 0),
        (Subscribe, 8, 2),
        (Suback, 9, 0),
        (Unsubscribe, 10, 2),
        (Unsuback, 11, 0),
        (Pingreq, 12, 0),
        (Pingresp, 13, 0),
        (Disconnect, 14, 0),
        (Auth, 15, 0),
    )
}


def _frame(first: int, body: bytes) -> bytes:
    n = len(body)
    if n > MAX_VARINT:
        raise MQTTEncodeError(f"packet body of {n} bytes exceeds the MQTT maximum")
    return bytes((first,)) + encode_varint(n) + body


def _packet_id(packet_id: int | None) -> bytes:
    if packet_id is None or not 0 < packet_id <= 0xFFFF:
        raise MQTTEncodeError(f"packet identifier must be 1..65535, not {packet_id!r}")
    return packet_id.to_bytes(2, "big")


def _props(props: Properties | None, ptype: int) -> bytes:
    return b"\x00" if props is None else encode_properties(props, ptype)


# ---------------------------------------------------------------------- PUBLISH


def _publish_parts(
    topic: str, qos: int, retain: bool, dup: bool, properties: Properties | None, version: int
) -> tuple[int, bytes, bytes]:
    """First byte, topic field, property block (b"" before 5.0)."""
    if not 0 <= qos <= 2:
        raise MQTTEncodeError(f"QoS must be 0, 1 or 2, not {qos!r}")
    if dup and not qos:
        raise MQTTEncodeError("DUP must not be set on a QoS 0 PUBLISH")
    first = 0x30 | (qos << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)
    raw = topic.encode("utf-8")
    n = len(raw)
    if n > 0xFFFF:
        raise MQTTEncodeError(f"topic longer than 65535 bytes: {n}")
    topic_field = n.to_bytes(2, "big") + raw
    if version < MQTT_5:
        props = b""
    elif properties is None:
        props = b"\x00"
    else:
        props = encode_properties(properties, 3)
    return first, topic_field, props


def encode_publish(
    topic: str,
    payload: bytes,
    qos: int = 0,
    retain: bool = False,
    dup: bool = False,
    packet_id: int | None = None,
    properties: Properties | None = None,
    version: int = 4,
) -> bytes:
    """One PUBLISH from its fields (no packet object needed)."""
    first, topic_field, props = _publish_parts(topic, qos, retain, dup, properties, version)
    pid = _packet_id(packet_id) if qos else b""
    size = len(topic_field) + len(pid) + len(props) + len(payload)
    if size > MAX_VARINT:
        raise MQTTEncodeError(f"PUBLISH body of {size} bytes exceeds the MQTT maximum")
    return b"".join((bytes((first,)), encode_varint(size), topic_field, pid, props, payload))


class PublishTemplate:
    """A PUBLISH encoded once, stamped per subscriber.

    For QoS 0 `data` is the finished packet. For QoS 1/2 `data` carries packet id 0 at
    `offset`; `with_packet_id(pid)` returns a copy with the id (and, for a resend, the
    DUP flag) patched in. The result is new `bytes` each time: transports may keep a
    reference to what they were given, so a shared buffer must never be mutated.
    """

    __slots__ = ("data", "offset", "qos")

    def __init__(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        retain: bool = False,
        properties: Properties | None = None,
        version: int = 4,
    ) -> None:
        first, topic_field, props = _publish_parts(topic, qos, retain, False, properties, version)
        pid = b"\x00\x00" if qos else b""
        size = len(topic_field) + len(pid) + len(props) + len(payload)
        if size > MAX_VARINT:
            raise MQTTEncodeError(f"PUBLISH body of {size} bytes exceeds the MQTT maximum")
        head = bytes((first,)) + encode_varint(size) + topic_field
        self.data = b"".join((head, pid, props, payload))
        self.offset = len(head)
        self.qos = qos

    def __len__(self) -> int:
        return len(self.data)

    def with_packet_id(self, packet_id: int, dup: bool = False) -> bytes:
        if not self.qos:
            if packet_id is not None:
                raise MQTTEncodeError("a QoS 0 PUBLISH has no packet identifier")
            return self.data
        data = self.data
        off = self.offset
        pid = _packet_id(packet_id)
        if dup:
            return bytes((data[0] | 0x08,)) + data[1:off] + pid + data[off + 2 :]
        return data[:off] + pid + data[off + 2 :]


def publish_with_packet_id(template: PublishTemplate, packet_id: int, dup: bool = False) -> bytes:
    """Function form of `PublishTemplate.with_packet_id`."""
    return template.with_packet_id(packet_id, dup)


def publish_size(
    topic: str, payload_len: int, qos: int, properties: Properties | None, version: int
) -> int:
    """Total encoded size of a PUBLISH (fixed header included) without building it."""
    body = 2 + len(topic.encode("utf-8")) + (2 if qos else 0) + payload_len
    if version >= MQTT_5:
        body += 1 if properties is None else len(encode_properties(properties, 3))
    return 1 + varint_size(body) + body


def _encode_publish_packet(p: Publish, version: int) -> bytes:
    return encode_publish(
        p.topic, p.payload, p.qos, p.retain, p.dup, p.packet_id, p.properties, version
    )


# ---------------------------------------------------------------------- CONNECT


def _encode_connect(p: Connect, version: int) -> bytes:
    if not 0 <= p.will_qos <= 2:
        raise MQTTEncodeError(f"will QoS must be 0, 1 or 2, not {p.will_qos!r}")
    has_will = p.will_topic is not None
    if not has_will and (p.will_qos or p.will_retain):
        raise MQTTEncodeError("will QoS/retain given without a will topic")
    if version < MQTT_5 and p.password is not None and p.username is None:
        raise MQTTEncodeError("MQTT 3.1.1 does not allow a password without a user name")
    if not 0 <= p.keepalive <= 0xFFFF:
        raise MQTTEncodeError(f"keepalive out of range: {p.keepalive}")
    flags = 0x02 if p.clean_start else 0
    if has_will:
        flags |= 0x04 | (p.will_qos << 3) | (0x20 if p.will_retain else 0)
    if p.password is not None:
        flags |= 0x40
    if p.username is not None:
        flags |= 0x80
    name = "MQIsdp" if version == MQTT_3_1 else "MQTT"
    parts = [encode_string(name), bytes((version, flags)), p.keepalive.to_bytes(2, "big")]
    if version >= MQTT_5:
        parts.append(_props(p.properties, 1))
    parts.append(encode_string(p.client_id))
    if p.will_topic is not None:  # has_will
        if version >= MQTT_5:
            parts.append(_props(p.will_properties, WILL))
        parts.append(encode_string(p.will_topic))
        parts.append(encode_binary(p.will_payload))
    if p.username is not None:
        parts.append(encode_string(p.username))
    if p.password is not None:
        parts.append(encode_binary(p.password))
    return _frame(0x10, b"".join(parts))


def _encode_connack(p: Connack, version: int) -> bytes:
    flags = b"\x01" if p.session_present else b"\x00"
    if version < MQTT_5:
        return _frame(0x20, flags + bytes((connack_return_code_v3(p.reason_code),)))
    return _frame(0x20, flags + bytes((p.reason_code,)) + _props(p.properties, 2))


# ---------------------------------------------------------------------- acks


def _ack_encoder(ptype: int, flags: int) -> Callable[[Any, int], bytes]:
    first = bytes(((ptype << 4) | flags,))
    short_tail = first + b"\x02"

    def encode_ack(p: Any, version: int) -> bytes:
        pid = _packet_id(p.packet_id)
        if version < MQTT_5 or (p.reason_code == 0 and p.properties is None):
            return short_tail + pid
        if p.properties is None:
            return first + b"\x03" + pid + bytes((p.reason_code,))
        return _frame(
            first[0], pid + bytes((p.reason_code,)) + encode_properties(p.properties, ptype)
        )

    return encode_ack


_encode_puback = _ack_encoder(4, 0)
_encode_pubrec = _ack_encoder(5, 0)
_encode_pubrel = _ack_encoder(6, 2)
_encode_pubcomp = _ack_encoder(7, 0)


# ---------------------------------------------------------------------- SUBSCRIBE


def _encode_subscribe(p: Subscribe, version: int) -> bytes:
    if not p.subscriptions:
        raise MQTTEncodeError("SUBSCRIBE needs at least one topic filter")
    parts = [_packet_id(p.packet_id)]
    if version >= MQTT_5:
        parts.append(_props(p.properties, 8))
    for topic_filter, o in p.subscriptions:
        if not 0 <= o.qos <= 2 or not 0 <= o.retain_handling <= 2:
            raise MQTTEncodeError(f"invalid subscription options {o!r}")
        byte = o.qos
        if version >= MQTT_5:
            byte |= (0x04 if o.no_local else 0) | (0x08 if o.retain_as_published else 0)
            byte |= o.retain_handling << 4
        parts.append(encode_string(topic_filter))
        parts.append(bytes((byte,)))
    return _frame(0x82, b"".join(parts))


def _encode_suback(p: Suback, version: int) -> bytes:
    if version >= MQTT_5:
        body = _packet_id(p.packet_id) + _props(p.properties, 9) + bytes(p.reason_codes)
    else:
        codes = bytes(suback_return_code_v3(c) for c in p.reason_codes)
        body = _packet_id(p.packet_id) + codes
    return _frame(0x90, body)


def _encode_unsubscribe(p: Unsubscribe, version: int) -> bytes:
    if not p.topic_filters:
        raise MQTTEncodeError("UNSUBSCRIBE needs at least one topic filter")
    parts = [_packet_id(p.packet_id)]
    if version >= MQTT_5:
        parts.append(_props(p.properties, 10))
    parts.extend(encode_string(f) for f in p.topic_filters)
    return _frame(0xA2, b"".join(parts))


def _encode_unsuback(p: Unsuback, version: int) -> bytes:
    if version < MQTT_5:
        return b"\xb0\x02" + _packet_id(p.packet_id)
    return _frame(0xB0, _packet_id(p.packet_id) + _props(p.properties, 11) + bytes(p.reason_codes))


# ---------------------------------------------------------------------- the rest


def _encode_pingreq(p: Pingreq, version: int) -> bytes:
    return b"\xc0\x00"


def _encode_pingresp(p: Pingresp, version: int) -> bytes:
    return b"\xd0\x00"


def _reason_packet(first: int, ptype: int) -> Callable[[Any, int], bytes]:
    def encode_reason(p: Any, version: int) -> bytes:
        if version < MQTT_5:
            if ptype == 15:
                raise MQTTEncodeError("AUTH does not exist before MQTT 5")
            return bytes((first, 0))
        if p.properties is None:
            if p.reason_code == 0:
                return bytes((first, 0))
            return bytes((first, 1, p.reason_code))
        return _frame(first, bytes((p.reason_code,)) + encode_properties(p.properties, ptype))

    return encode_reason


_ENCODERS: dict[type, Callable[[Any, int], bytes]] = {
    Connect: _encode_connect,
    Connack: _encode_connack,
    Publish: _encode_publish_packet,
    Puback: _encode_puback,
    Pubrec: _encode_pubrec,
    Pubrel: _encode_pubrel,
    Pubcomp: _encode_pubcomp,
    Subscribe: _encode_subscribe,
    Suback: _encode_suback,
    Unsubscribe: _encode_unsubscribe,
    Unsuback: _encode_unsuback,
    Pingreq: _encode_pingreq,
    Pingresp: _encode_pingresp,
    Disconnect: _reason_packet(0xE0, 14),
    Auth: _reason_packet(0xF0, 15),
}


def encode(packet: Any, version: int) -> bytes:
    """The wire bytes of `packet` under protocol level `version` (3, 4 or 5)."""
    if version not in (3, 4, 5):
        raise MQTTEncodeError(f"unsupported MQTT protocol level {version!r}")
    try:
        encoder = _ENCODERS[type(packet)]
    except KeyError:
        raise MQTTEncodeError(f"not an MQTT packet: {packet!r}") from None
    return encoder(packet, version)


def encoded_size(packet: Any, version: int) -> int:
    """Total size of `packet` on the wire (fixed header included), the quantity an
    MQTT 5 client's Maximum Packet Size limits. PUBLISH is sized without copying
    its payload."""
    if type(packet) is Publish:
        return publish_size(
            packet.topic, len(packet.payload), packet.qos, packet.properties, version
        )
    return len(encode(packet, version))
