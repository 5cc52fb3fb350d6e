"""Body decoders for every packet type except the hot PUBLISH path.

Each function takes one packet's variable header + payload as `bytes` (the fixed
header already checked by the `Decoder`: type, reserved flags, size) and the protocol
level, and returns a packet object or raises `MQTTProtocolError`. They check what the
spec lets a codec check: exact lengths, trailing bytes, zero packet ids, reserved bits,
reason codes legal for the packet and version, empty SUBSCRIBE/UNSUBSCRIBE payloads,
CONNECT flag consistency. They keep no state and do not know about the stream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import MQTTProtocolError
from .packets import (
    MQTT_3_1,
    MQTT_3_1_1,
    MQTT_5,
    Auth,
    Connack,
    Connect,
    Disconnect,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    SubscribeOptions,
    Unsuback,
    Unsubscribe,
)
from .primitives import malformed, read_binary, read_string, read_u8, read_u16
from .properties import WILL, decode_properties
from .reasons import (
    AUTH_CODES,
    CONNACK_V3_CODES,
    CONNACK_V5_CODES,
    DISCONNECT_CODES,
    PUBACK_CODES,
    PUBCOMP_CODES,
    PUBREC_CODES,
    PUBREL_CODES,
    SUBACK_V3_CODES,
    SUBACK_V5_CODES,
    UNSUBACK_CODES,
)

__all__ = ["BODY_DECODERS", "connect_version", "decode_connect"]

PROTOCOL_ERROR = 0x82
UNSUPPORTED_PROTOCOL_VERSION = 0x84
CLIENT_IDENTIFIER_NOT_VALID = 0x85
TOPIC_NAME_INVALID = 0x90

_PROTOCOLS = {("MQIsdp", MQTT_3_1), ("MQTT", MQTT_3_1_1), ("MQTT", MQTT_5)}


def _protocol_error(message: str) -> MQTTProtocolError:
    return MQTTProtocolError(PROTOCOL_ERROR, message)


def _no_trailing(pos: int, end: int, name: str) -> None:
    if pos != end:
        raise malformed(f"{end - pos} unexpected bytes at the end of {name}")


def _packet_id(body: bytes, pos: int, end: int, name: str) -> tuple[int, int]:
    packet_id, pos = read_u16(body, pos, end)
    if packet_id == 0:
        raise _protocol_error(f"{name} with packet identifier 0")
    return packet_id, pos


def _check_code(code: int, allowed: frozenset[int], name: str) -> None:
    if code not in allowed:
        raise _protocol_error(f"reason code 0x{code:02X} not valid in {name}")


# ---------------------------------------------------------------------- CONNECT


def connect_version(body: bytes) -> int:
    """Protocol level of a CONNECT, from its protocol name and level. Unknown or
    mismatched pairs raise 0x84 so the adapter can refuse with CONNACK."""
    name, pos = read_string(body, 0, len(body))
    level, pos = read_u8(body, pos, len(body))
    if (name, level) not in _PROTOCOLS:
        raise MQTTProtocolError(
            UNSUPPORTED_PROTOCOL_VERSION,
            f"unsupported protocol name/level {name!r}/{level}",
        )
    return level


def _check_will_topic(topic: str) -> None:
    if not topic or "+" in topic or "#" in topic:
        raise MQTTProtocolError(TOPIC_NAME_INVALID, f"invalid will topic {topic!r}")


def decode_connect(body: bytes, level: int) -> Connect:
    end = len(body)
    name, pos = read_string(body, 0, end)
    pos += 1  # level, already checked by connect_version
    flags, pos = read_u8(body, pos, end)
    if flags & 0x01:
        raise malformed("CONNECT reserved flag set")  # [MQTT-3.1.2-3]
    clean_start = bool(flags & 0x02)
    will_flag = flags & 0x04
    will_qos = (flags >> 3) & 0x03
    will_retain = bool(flags & 0x20)
    has_password = flags & 0x40
    has_username = flags & 0x80
    if will_qos == 3:
        raise malformed("CONNECT will QoS 3")
    if not will_flag and (will_qos or will_retain):
        raise malformed("CONNECT will QoS or retain set without the will flag")
    if level < MQTT_5 and has_password and not has_username:
        raise malformed("CONNECT password flag without user name flag")  # [MQTT-3.1.2-22]
    keepalive, pos = read_u16(body, pos, end)
    properties = None
    if level == MQTT_5:
        properties, pos = decode_properties(body, pos, end, 1)
        if (
            properties is not None
            and properties.authentication_data is not None
            and properties.authentication_method is None
        ):
            raise _protocol_error("authentication data without authentication method")
    client_id, pos = read_string(body, pos, end)
    if level < MQTT_5 and not client_id and not clean_start:
        # [MQTT-3.1.3-8]: 3.1.1 answers CONNACK return code 2, identifier rejected.
        raise MQTTProtocolError(
            CLIENT_IDENTIFIER_NOT_VALID, "empty client identifier without clean session"
        )
    will_topic = None
    will_payload = b""
    will_properties = None
    if will_flag:
        if level == MQTT_5:
            will_properties, pos = decode_properties(body, pos, end, WILL)
        will_topic, pos = read_string(body, pos, end)
        _check_will_topic(will_topic)
        will_payload, pos = read_binary(body, pos, end)
    username = None
    password = None
    if has_username:
        username, pos = read_string(body, pos, end)
    if has_password:
        password, pos = read_binary(body, pos, end)
    _no_trailing(pos, end, "CONNECT")
    return Connect(
        client_id=client_id,
        clean_start=clean_start,
        keepalive=keepalive,
        username=username,
        password=password,
        will_topic=will_topic,
        will_payload=will_payload,
        will_qos=will_qos,
        will_retain=will_retain,
        will_properties=will_properties,
        properties=properties,
        protocol_name=name,
        protocol_level=level,
    )


# ---------------------------------------------------------------------- CONNACK


def decode_connack(body: bytes, version: int) -> Connack:
    end = len(body)
    flags, pos = read_u8(body, 0, end)
    if flags & 0xFE:
        raise malformed("CONNACK reserved acknowledge flags set")
    code, pos = read_u8(body, pos, end)
    session_present = bool(flags)
    properties = None
    if version == MQTT_5:
        _check_code(code, CONNACK_V5_CODES, "CONNACK")
        properties, pos = decode_properties(body, pos, end, 2)
    elif code not in CONNACK_V3_CODES:
        raise malformed(f"CONNACK reserved return code {code}")
    if session_present and code:
        raise _protocol_error("CONNACK refusing the connection with session present set")
    _no_trailing(pos, end, "CONNACK")
    return Connack(session_present, code, properties)


# ---------------------------------------------------------------------- acks


def _ack_decoder(cls: type, ptype: int, codes: frozenset[int]) -> Callable[[bytes, int], Any]:
    name = cls.__name__.upper()

    def decode(body: bytes, version: int) -> Any:
        end = len(body)
        packet_id, pos = _packet_id(body, 0, end, name)
        if version < MQTT_5 or end == 2:
            _no_trailing(pos, end, name)
            return cls(packet_id)
        code = body[2]
        _check_code(code, codes, name)
        if end == 3:
            return cls(packet_id, code)
        properties, pos = decode_properties(body, 3, end, ptype)
        _no_trailing(pos, end, name)
        return cls(packet_id, code, properties)

    decode.__name__ = f"decode_{name.lower()}"
    return decode


decode_puback = _ack_decoder(Puback, 4, PUBACK_CODES)
decode_pubrec = _ack_decoder(Pubrec, 5, PUBREC_CODES)
decode_pubrel = _ack_decoder(Pubrel, 6, PUBREL_CODES)
decode_pubcomp = _ack_decoder(Pubcomp, 7, PUBCOMP_CODES)


# ---------------------------------------------------------------------- SUBSCRIBE


def decode_subscribe(body: bytes, version: int) -> Subscribe:
    end = len(body)
    packet_id, pos = _packet_id(body, 0, end, "SUBSCRIBE")
    properties = None
    if version == MQTT_5:
        properties, pos = decode_properties(body, pos, end, 8)
    subscriptions = []
    while pos < end:
        topic_filter, pos = read_string(body, pos, end)
        options, pos = read_u8(body, pos, end)
        qos = options & 0x03
        if version == MQTT_5:
            if options & 0xC0:
                raise malformed("SUBSCRIBE options reserved bits set")  # [MQTT-3.8.3-5]
            if qos == 3:
                raise _protocol_error("SUBSCRIBE with maximum QoS 3")
            retain_handling = (options >> 4) & 0x03
            if retain_handling == 3:
                raise _protocol_error("SUBSCRIBE with retain handling 3")
            no_local = bool(options & 0x04)
            if no_local and topic_filter.startswith("$share/"):
                raise _protocol_error("No Local set on a shared subscription")  # [MQTT-3.8.3-4]
            opts = SubscribeOptions(qos, no_local, bool(options & 0x08), retain_handling)
        else:
            if options & 0xFC or qos == 3:
                raise malformed("SUBSCRIBE requested QoS byte invalid")  # [MQTT-3-8.3-4]
            opts = _V3_OPTIONS[qos]
        subscriptions.append((topic_filter, opts))
    if not subscriptions:
        raise _protocol_error("SUBSCRIBE without topic filters")  # [MQTT-3.8.3-3]
    return Subscribe(packet_id, tuple(subscriptions), properties)


_V3_OPTIONS = (SubscribeOptions(0), SubscribeOptions(1), SubscribeOptions(2))


def decode_suback(body: bytes, version: int) -> Suback:
    end = len(body)
    packet_id, pos = _packet_id(body, 0, end, "SUBACK")
    properties = None
    allowed: frozenset[int]
    if version == MQTT_5:
        properties, pos = decode_properties(body, pos, end, 9)
        allowed = SUBACK_V5_CODES
    else:
        allowed = SUBACK_V3_CODES
    codes = tuple(body[pos:end])
    if not codes:
        raise _protocol_error("SUBACK without reason codes")
    for code in codes:
        _check_code(code, allowed, "SUBACK")
    return Suback(packet_id, codes, properties)


def decode_unsubscribe(body: bytes, version: int) -> Unsubscribe:
    end = len(body)
    packet_id, pos = _packet_id(body, 0, end, "UNSUBSCRIBE")
    properties = None
    if version == MQTT_5:
        properties, pos = decode_properties(body, pos, end, 10)
    filters = []
    while pos < end:
        topic_filter, pos = read_string(body, pos, end)
        filters.append(topic_filter)
    if not filters:
        raise _protocol_error("UNSUBSCRIBE without topic filters")  # [MQTT-3.10.3-2]
    return Unsubscribe(packet_id, tuple(filters), properties)


def decode_unsuback(body: bytes, version: int) -> Unsuback:
    end = len(body)
    packet_id, pos = _packet_id(body, 0, end, "UNSUBACK")
    if version < MQTT_5:
        _no_trailing(pos, end, "UNSUBACK")
        return Unsuback(packet_id)
    properties, pos = decode_properties(body, pos, end, 11)
    codes = tuple(body[pos:end])
    if not codes:
        raise _protocol_error("UNSUBACK without reason codes")
    for code in codes:
        _check_code(code, UNSUBACK_CODES, "UNSUBACK")
    return Unsuback(packet_id, codes, properties)


# ---------------------------------------------------------------------- the rest


_PINGREQ = Pingreq()
_PINGRESP = Pingresp()


def decode_pingreq(body: bytes, version: int) -> Pingreq:
    _no_trailing(0, len(body), "PINGREQ")
    return _PINGREQ


def decode_pingresp(body: bytes, version: int) -> Pingresp:
    _no_trailing(0, len(body), "PINGRESP")
    return _PINGRESP


def _reason_and_properties(
    body: bytes, ptype: int, codes: frozenset[int], name: str
) -> tuple[int, Any]:
    """DISCONNECT and AUTH under 5.0: the reason code may be omitted (length 0) and so
    may the property length (length 1)."""
    end = len(body)
    if end == 0:
        return 0, None
    code = body[0]
    _check_code(code, codes, name)
    if end == 1:
        return code, None
    properties, pos = decode_properties(body, 1, end, ptype)
    _no_trailing(pos, end, name)
    return code, properties


def decode_disconnect(body: bytes, version: int) -> Disconnect:
    if version < MQTT_5:
        _no_trailing(0, len(body), "DISCONNECT")
        return Disconnect()
    code, properties = _reason_and_properties(body, 14, DISCONNECT_CODES, "DISCONNECT")
    return Disconnect(code, properties)


def decode_auth(body: bytes, version: int) -> Auth:
    if version < MQTT_5:
        raise malformed("AUTH is a reserved packet type before MQTT 5")
    code, properties = _reason_and_properties(body, 15, AUTH_CODES, "AUTH")
    if (
        properties is not None
        and properties.authentication_data is not None
        and properties.authentication_method is None
    ):
        raise _protocol_error("authentication data without authentication method")
    return Auth(code, properties)


def _connect_body(body: bytes, version: int) -> Connect:
    return decode_connect(body, connect_version(body))


BODY_DECODERS: dict[int, Callable[[bytes, int], Any]] = {
    1: _connect_body,
    2: decode_connack,
    4: decode_puback,
    5: decode_pubrec,
    6: decode_pubrel,
    7: decode_pubcomp,
    8: decode_subscribe,
    9: decode_suback,
    10: decode_unsubscribe,
    11: decode_unsuback,
    12: decode_pingreq,
    13: decode_pingresp,
    14: decode_disconnect,
    15: decode_auth,
}
