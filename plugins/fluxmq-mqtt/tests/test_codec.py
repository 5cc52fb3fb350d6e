"""Unit tests of the sans-IO MQTT codec: round trips for every packet type, byte
vectors written by hand from the spec, every malformed case the codec checks, limits,
and stream behaviour (split chunks, many packets per chunk)."""

from __future__ import annotations

import pytest
from fluxmq_mqtt.codec import (
    MQTT_3_1,
    MQTT_3_1_1,
    MQTT_5,
    Auth,
    Connack,
    Connect,
    Decoder,
    Disconnect,
    MQTTEncodeError,
    MQTTProtocolError,
    Pingreq,
    Pingresp,
    Properties,
    Puback,
    Pubcomp,
    Publish,
    PublishTemplate,
    Pubrec,
    Pubrel,
    ReasonCode,
    Suback,
    Subscribe,
    SubscribeOptions,
    Unsuback,
    Unsubscribe,
    connack_return_code_v3,
    decode_packet,
    encode,
    encode_publish,
    encoded_size,
    publish_size,
    publish_with_packet_id,
    validate_topic_filter,
)
from fluxmq_mqtt.codec.properties import (
    ALLOWED_PROPERTIES,
    BINARY,
    BYTE,
    PAIR,
    PROPERTY_TABLE,
    STRING,
    U16,
    U32,
    VARINT,
    WILL,
)

# ------------------------------------------------------------------ helpers

_SAMPLE = {BYTE: 1, U16: 17, U32: 3600, STRING: "text/plain", BINARY: b"\x00\x01\xff"}


def full_properties(ptype: int) -> Properties:
    """A Properties with every property `ptype` may carry set to a sample value."""
    values = {}
    for pid in ALLOWED_PROPERTIES[ptype]:
        name, kind, _ = PROPERTY_TABLE[pid]
        if kind == PAIR:
            values[name] = (("k", "v"), ("k", "v2"), ("ü", ""))
        elif kind == VARINT:
            values[name] = (268_435_455,) if ptype == 8 else (1, 200, 16_384)
        elif pid == 0x08:
            values[name] = "reply/to"
        else:
            values[name] = _SAMPLE[kind]
    return Properties(**values)


def roundtrip(packet, version):
    data = encode(packet, version)
    assert encoded_size(packet, version) == len(data)
    return decode_packet(data, version)


def error_of(data: bytes, version: int | None = MQTT_3_1_1, **kwargs) -> int:
    with pytest.raises(MQTTProtocolError) as info:
        decoder = Decoder(version=version, **kwargs)
        decoder.packets(data)
        if decoder.buffered:
            pytest.fail("packet incomplete, not malformed")
    assert info.value.__cause__ is None
    return info.value.reason_code


def connect_v311(flags: int, payload: bytes, keepalive: int = 60) -> bytes:
    body = b"\x00\x04MQTT\x04" + bytes((flags,)) + keepalive.to_bytes(2, "big") + payload
    return b"\x10" + bytes((len(body),)) + body


def connect_v5(flags: int, props: bytes, payload: bytes) -> bytes:
    body = b"\x00\x04MQTT\x05" + bytes((flags,)) + b"\x00\x3c" + props + payload
    return b"\x10" + bytes((len(body),)) + body


def s(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


# ------------------------------------------------------------------ round trips

V3_PACKETS = [
    Connect(client_id="c1"),
    Connect(client_id="", clean_start=True, keepalive=65535),
    Connect(
        client_id="dev-42",
        clean_start=False,
        keepalive=30,
        username="u",
        password=b"p\x00w",
        will_topic="last/will",
        will_payload=b"bye",
        will_qos=2,
        will_retain=True,
    ),
    Connect(client_id="x", username="only-user"),
    Connack(session_present=True, reason_code=0),
    Connack(reason_code=5),
    Publish("a/b", b"hello"),
    Publish("a/b", b"", qos=1, packet_id=1, retain=True),
    Publish("ü/€/😀", b"\x00" * 300, qos=2, dup=True, packet_id=65535),
    Puback(7),
    Pubrec(8),
    Pubrel(9),
    Pubcomp(65535),
    Subscribe(
        1,
        (("a/+", SubscribeOptions(0)), ("#", SubscribeOptions(1)), ("$SYS/x", SubscribeOptions(2))),
    ),
    Suback(1, (0, 1, 2, 0x80)),
    Unsubscribe(3, ("a/+", "b/#")),
    Unsuback(3),
    Pingreq(),
    Pingresp(),
    Disconnect(),
]


@pytest.mark.parametrize("version", [MQTT_3_1, MQTT_3_1_1])
@pytest.mark.parametrize("packet", V3_PACKETS, ids=lambda p: type(p).__name__)
def test_roundtrip_v3(packet, version):
    if isinstance(packet, Connect):
        name = "MQIsdp" if version == MQTT_3_1 else "MQTT"
        packet = Connect(**{**_fields(packet), "protocol_name": name, "protocol_level": version})
    assert roundtrip(packet, version) == packet


def _fields(packet) -> dict:
    return {f: getattr(packet, f) for f in packet.__dataclass_fields__}


V5_PACKETS = [
    Connect(client_id="c1", protocol_level=5),
    Connect(
        client_id="dev-42",
        clean_start=False,
        keepalive=30,
        username="u",
        password=b"pw",
        will_topic="last/will",
        will_payload=b"bye",
        will_qos=1,
        will_retain=True,
        will_properties=full_properties(WILL),
        properties=full_properties(1),
        protocol_level=5,
    ),
    Connect(client_id="", password=b"no-user", protocol_level=5),
    Connack(True, 0, full_properties(2)),
    Connack(False, ReasonCode.NOT_AUTHORIZED),
    Publish("a/b", b"hello"),
    Publish("a/b", b"x", qos=1, packet_id=5, properties=full_properties(3)),
    Publish("", b"aliased", qos=2, packet_id=6, properties=Properties(topic_alias=3)),
    Puback(1),
    Puback(2, 0x10),
    Puback(3, 0x87, full_properties(4)),
    Puback(4, 0, Properties(reason_string="ok")),
    Pubrec(1),
    Pubrec(2, 0x80, full_properties(5)),
    Pubrel(1),
    Pubrel(2, 0x92),
    Pubrel(3, 0, full_properties(6)),
    Pubcomp(1),
    Pubcomp(2, 0x92, full_properties(7)),
    Subscribe(
        10,
        (
            ("a/+", SubscribeOptions(2, True, True, 2)),
            ("$share/g/x", SubscribeOptions(1, False, False, 1)),
        ),
        full_properties(8),
    ),
    Suback(10, (0, 1, 2, 0x80, 0x8F, 0xA2), full_properties(9)),
    Unsubscribe(11, ("a/+",), full_properties(10)),
    Unsuback(11, (0, 0x11), full_properties(11)),
    Pingreq(),
    Pingresp(),
    Disconnect(),
    Disconnect(0x04),
    Disconnect(0x8E, full_properties(14)),
    Auth(),
    Auth(0x18, full_properties(15)),
]


@pytest.mark.parametrize("packet", V5_PACKETS, ids=lambda p: type(p).__name__)
def test_roundtrip_v5(packet):
    assert roundtrip(packet, MQTT_5) == packet


def test_every_property_is_exercised():
    used = set().union(*ALLOWED_PROPERTIES.values())
    assert used == set(PROPERTY_TABLE)


def test_v3_drops_properties_and_maps_codes():
    props = Properties(reason_string="dropped")
    assert encode(Puback(5, 0x80, props), MQTT_3_1_1) == b"\x40\x02\x00\x05"
    assert encode(Publish("t", b"p", properties=props), MQTT_3_1_1) == b"\x30\x04\x00\x01tp"
    assert encode(Suback(1, (1, 0x87, 0x8F)), MQTT_3_1_1) == b"\x90\x05\x00\x01\x01\x80\x80"
    assert encode(Connack(False, ReasonCode.NOT_AUTHORIZED), MQTT_3_1_1) == b"\x20\x02\x00\x05"
    assert encode(Connack(False, ReasonCode.UNSUPPORTED_PROTOCOL_VERSION), 4) == b"\x20\x02\x00\x01"
    assert connack_return_code_v3(ReasonCode.CLIENT_IDENTIFIER_NOT_VALID) == 2
    assert encode(Disconnect(0x8E, props), MQTT_3_1_1) == b"\xe0\x00"
    with pytest.raises(MQTTEncodeError):
        encode(Auth(), MQTT_3_1_1)


def test_v5_short_forms():
    assert encode(Puback(1), MQTT_5) == b"\x40\x02\x00\x01"
    assert encode(Pubrec(1, 0x10), MQTT_5) == b"\x50\x03\x00\x01\x10"
    assert encode(Pubrel(1), MQTT_5) == b"\x62\x02\x00\x01"
    assert encode(Disconnect(), MQTT_5) == b"\xe0\x00"
    assert encode(Disconnect(0x04), MQTT_5) == b"\xe0\x01\x04"
    assert encode(Auth(), MQTT_5) == b"\xf0\x00"
    # Decoder accepts the short forms and the long forms with an empty property block.
    assert decode_packet(b"\x40\x02\x00\x01", 5) == Puback(1)
    assert decode_packet(b"\x40\x03\x00\x01\x10", 5) == Puback(1, 0x10)
    assert decode_packet(b"\x40\x04\x00\x01\x00\x00", 5) == Puback(1)
    assert decode_packet(b"\x70\x04\x00\x01\x92\x00", 5) == Pubcomp(1, 0x92)
    assert decode_packet(b"\xe0\x00", 5) == Disconnect()
    assert decode_packet(b"\xe0\x01\x8b", 5) == Disconnect(0x8B)
    assert decode_packet(b"\xe0\x02\x8b\x00", 5) == Disconnect(0x8B)
    assert decode_packet(b"\xf0\x00", 5) == Auth()


# ------------------------------------------------------------------ spec byte vectors


def test_connect_vectors():
    v311 = b"\x10\x0f\x00\x04MQTT\x04\x02\x00\x3c\x00\x03abc"
    expected = Connect(client_id="abc", keepalive=60)
    assert decode_packet(v311) == expected
    assert encode(expected, 4) == v311
    v31 = b"\x10\x11\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x03abc"
    assert decode_packet(v31) == Connect(
        "abc", keepalive=60, protocol_name="MQIsdp", protocol_level=3
    )
    assert encode(Connect("abc", keepalive=60), MQTT_3_1) == v31
    # 5.0 with Session Expiry Interval 10 and a will carrying Will Delay Interval 5.
    v5 = (
        b"\x10\x2c\x00\x04MQTT\x05\xce\x00\x0a\x05\x11\x00\x00\x00\x0a\x00\x03abc"
        b"\x05\x18\x00\x00\x00\x05\x00\x01w\x00\x02hi\x00\x04user\x00\x02pw"
    )
    pkt = decode_packet(v5)
    assert pkt == Connect(
        client_id="abc",
        clean_start=True,
        keepalive=10,
        username="user",
        password=b"pw",
        will_topic="w",
        will_payload=b"hi",
        will_qos=1,
        will_retain=False,
        will_properties=Properties(will_delay_interval=5),
        properties=Properties(session_expiry_interval=10),
        protocol_level=5,
    )
    assert encode(pkt, 5) == v5


def test_decoder_learns_version_from_connect():
    decoder = Decoder(role="server")
    assert decoder.version is None
    out = decoder.packets(
        b"\x10\x10\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x03abc" + b"\x30\x05\x00\x01t\x00p"
    )
    assert decoder.version == 5
    assert out[1] == Publish("t", b"p")  # a 3.1.1 reading would keep the 0 in the payload


def test_connack_vectors():
    assert decode_packet(b"\x20\x02\x00\x00", 4) == Connack(False, 0)
    assert decode_packet(b"\x20\x02\x01\x00", 4) == Connack(True, 0)
    assert decode_packet(b"\x20\x02\x00\x04", 4) == Connack(False, 4)
    assert decode_packet(b"\x20\x03\x00\x00\x00", 5) == Connack(False, 0)
    v5 = b"\x20\x08\x01\x00\x05\x22\x00\x0a\x25\x01"
    assert decode_packet(v5, 5) == Connack(
        True, 0, Properties(topic_alias_maximum=10, retain_available=1)
    )
    assert encode(Connack(True, 0, Properties(topic_alias_maximum=10, retain_available=1)), 5) == v5


def test_publish_vectors():
    v311 = b"\x32\x09\x00\x03a/b\x00\x0ahi"
    assert decode_packet(v311, 4) == Publish("a/b", b"hi", qos=1, packet_id=10)
    assert encode_publish("a/b", b"hi", 1, packet_id=10) == v311
    v5 = b"\x3b\x0d\x00\x03a/b\x00\x0a\x03\x23\x00\x01hi"
    pkt = Publish(
        "a/b",
        b"hi",
        qos=1,
        retain=True,
        dup=True,
        packet_id=10,
        properties=Properties(topic_alias=1),
    )
    assert decode_packet(v5, 5) == pkt
    assert encode(pkt, 5) == v5
    assert decode_packet(b"\x30\x05\x00\x03a/b", 4) == Publish("a/b", b"")


def test_subscribe_vectors():
    v311 = b"\x82\x0e\x00\x01\x00\x03a/b\x01\x00\x03c/d\x02"
    pkt = Subscribe(1, (("a/b", SubscribeOptions(1)), ("c/d", SubscribeOptions(2))))
    assert decode_packet(v311, 4) == pkt
    assert encode(pkt, 4) == v311
    v5 = b"\x82\x0b\x00\x01\x02\x0b\x05\x00\x03a/b\x1e"
    pkt5 = Subscribe(
        1, (("a/b", SubscribeOptions(2, True, True, 1)),), Properties(subscription_identifiers=(5,))
    )
    assert decode_packet(v5, 5) == pkt5
    assert encode(pkt5, 5) == v5
    assert decode_packet(b"\x90\x03\x00\x01\x01", 4) == Suback(1, (1,))
    assert decode_packet(b"\xa2\x07\x00\x02\x00\x03a/b", 4) == Unsubscribe(2, ("a/b",))
    assert decode_packet(b"\xb0\x02\x00\x02", 4) == Unsuback(2)
    assert decode_packet(b"\xc0\x00", 4) == Pingreq()
    assert decode_packet(b"\xd0\x00", 4) == Pingresp()


# ------------------------------------------------------------------ malformed input

MALFORMED = [
    # fixed header
    ("reserved type 0", 4, b"\x00\x00", 0x81),
    ("PUBREL flags 0", 4, b"\x60\x02\x00\x01", 0x81),
    ("SUBSCRIBE flags 0", 4, b"\x80\x08\x00\x01\x00\x03a/b\x00", 0x81),
    ("UNSUBSCRIBE flags 0", 4, b"\xa0\x07\x00\x01\x00\x03a/b", 0x81),
    ("PUBACK flags 1", 4, b"\x41\x02\x00\x01", 0x81),
    ("PINGREQ flags", 4, b"\xc8\x00", 0x81),
    ("remaining length 5 bytes", 4, b"\x30\xff\xff\xff\xff\x01", 0x81),
    ("remaining length not minimal", 4, b"\xc0\x80\x00", 0x81),
    ("AUTH before 5.0", 4, b"\xf0\x00", 0x81),
    # PUBLISH
    ("QoS 3", 4, b"\x36\x07\x00\x03a/b\x00\x01", 0x81),
    ("DUP at QoS 0", 4, b"\x38\x05\x00\x03a/b", 0x81),
    ("packet id 0", 4, b"\x32\x07\x00\x03a/b\x00\x00", 0x82),
    ("topic invalid UTF-8", 4, b"\x30\x04\x00\x02\xc3\x28", 0x81),
    ("topic overlong UTF-8", 4, b"\x30\x04\x00\x02\xc0\xaf", 0x81),
    ("topic surrogate", 4, b"\x30\x05\x00\x03\xed\xa0\x80", 0x81),
    ("topic U+0000", 4, b"\x30\x04\x00\x02a\x00", 0x81),
    ("topic with +", 4, b"\x30\x05\x00\x03a/+", 0x90),
    ("topic with #", 4, b"\x30\x03\x00\x01#", 0x90),
    ("empty topic 3.1.1", 4, b"\x30\x02\x00\x00", 0x82),
    ("empty topic no alias", 5, b"\x30\x03\x00\x00\x00", 0x82),
    ("topic longer than packet", 4, b"\x30\x02\x00\x05", 0x81),
    ("packet id missing", 4, b"\x32\x06\x00\x03a/b\x00", 0x81),
    ("property length past end", 5, b"\x30\x06\x00\x01t\x05\x01\x01", 0x81),
    ("property varint too long", 5, b"\x30\x08\x00\x01t\xff\xff\xff\xff\x7f", 0x81),
    ("property varint not minimal", 5, b"\x30\x06\x00\x01t\x02\x8b\x00", 0x81),
    ("duplicate content type", 5, b"\x30\x0c\x00\x01t\x08\x03\x00\x01a\x03\x00\x01b", 0x82),
    ("unknown property", 5, b"\x30\x06\x00\x01t\x02\x05\x00", 0x81),
    ("property not allowed in PUBLISH", 5, b"\x30\x09\x00\x01t\x05\x11\x00\x00\x00\x01", 0x81),
    ("payload format indicator 2", 5, b"\x30\x06\x00\x01t\x02\x01\x02", 0x82),
    ("topic alias 0", 5, b"\x30\x07\x00\x01t\x03\x23\x00\x00", 0x82),
    ("subscription identifier 0", 5, b"\x30\x06\x00\x01t\x02\x0b\x00", 0x82),
    ("response topic wildcard", 5, b"\x30\x09\x00\x01t\x05\x08\x00\x02a#", 0x82),
    ("user property truncated", 5, b"\x30\x09\x00\x01t\x05\x26\x00\x01k\x00", 0x81),
    # acks
    ("PUBACK packet id 0", 4, b"\x40\x02\x00\x00", 0x82),
    ("PUBACK trailing byte 3.1.1", 4, b"\x40\x03\x00\x01\x00", 0x81),
    ("PUBACK too short", 4, b"\x40\x01\x00", 0x81),
    ("PUBACK bad reason code", 5, b"\x40\x03\x00\x01\x04", 0x82),
    ("PUBREL bad reason code", 5, b"\x62\x03\x00\x01\x10", 0x82),
    ("PUBACK property not allowed", 5, b"\x40\x07\x00\x01\x00\x03\x23\x00\x01", 0x81),
    ("PUBACK trailing after properties", 5, b"\x40\x05\x00\x01\x00\x00\x00", 0x81),
    ("PINGREQ with body", 4, b"\xc0\x01\x00", 0x81),
    ("DISCONNECT 3.1.1 with body", 4, b"\xe0\x01\x00", 0x81),
    ("DISCONNECT bad reason code", 5, b"\xe0\x01\x01", 0x82),
    ("AUTH bad reason code", 5, b"\xf0\x01\x01", 0x82),
    ("AUTH data without method", 5, b"\xf0\x06\x18\x04\x16\x00\x01x", 0x82),
    ("CONNACK reserved flags", 4, b"\x20\x02\x02\x00", 0x81),
    ("CONNACK return code 6", 4, b"\x20\x02\x00\x06", 0x81),
    ("CONNACK refused with session", 4, b"\x20\x02\x01\x05", 0x82),
    ("CONNACK 5 bad reason", 5, b"\x20\x03\x00\x10\x00", 0x82),
    ("CONNACK 3.1.1 too long", 4, b"\x20\x03\x00\x00\x00", 0x81),
    # SUBSCRIBE family
    ("SUBSCRIBE empty", 4, b"\x82\x02\x00\x01", 0x82),
    ("SUBSCRIBE empty 5", 5, b"\x82\x03\x00\x01\x00", 0x82),
    ("UNSUBSCRIBE empty", 4, b"\xa2\x02\x00\x01", 0x82),
    ("SUBSCRIBE packet id 0", 4, b"\x82\x08\x00\x00\x00\x03a/b\x00", 0x82),
    ("SUBSCRIBE reserved option bits 3.1.1", 4, b"\x82\x08\x00\x01\x00\x03a/b\x04", 0x81),
    ("SUBSCRIBE QoS 3 3.1.1", 4, b"\x82\x08\x00\x01\x00\x03a/b\x03", 0x81),
    ("SUBSCRIBE reserved option bits 5", 5, b"\x82\x09\x00\x01\x00\x00\x03a/b\x40", 0x81),
    ("SUBSCRIBE QoS 3 5", 5, b"\x82\x09\x00\x01\x00\x00\x03a/b\x03", 0x82),
    ("SUBSCRIBE retain handling 3", 5, b"\x82\x09\x00\x01\x00\x00\x03a/b\x30", 0x82),
    ("SUBSCRIBE no local shared", 5, b"\x82\x10\x00\x01\x00\x00\x0a$share/g/x\x04", 0x82),
    ("SUBSCRIBE option missing", 4, b"\x82\x07\x00\x01\x00\x03a/b", 0x81),
    (
        "SUBSCRIBE two subscription ids",
        5,
        b"\x82\x0b\x00\x01\x04\x0b\x01\x0b\x02\x00\x01a\x00",
        0x82,
    ),
    ("SUBACK empty", 4, b"\x90\x02\x00\x01", 0x82),
    ("SUBACK bad code 3.1.1", 4, b"\x90\x03\x00\x01\x03", 0x82),
    ("UNSUBACK 3.1.1 payload", 4, b"\xb0\x03\x00\x01\x00", 0x81),
    ("UNSUBACK bad code", 5, b"\xb0\x04\x00\x01\x00\x02", 0x82),
    # CONNECT
    ("CONNECT reserved flag", None, connect_v311(0x03, s("c")), 0x81),
    ("will QoS without will flag", None, connect_v311(0x0A, s("c")), 0x81),
    ("will retain without will flag", None, connect_v311(0x22, s("c")), 0x81),
    ("will QoS 3", None, connect_v311(0x1E, s("c") + s("w") + s("p")), 0x81),
    ("password without user name", None, connect_v311(0x42, s("c") + s("pw")), 0x81),
    ("empty client id, persistent session", None, connect_v311(0x00, s("")), 0x85),
    ("CONNECT trailing bytes", None, connect_v311(0x02, s("c") + b"\x00"), 0x81),
    ("CONNECT truncated client id", None, connect_v311(0x02, b"\x00\x05ab"), 0x81),
    ("CONNECT client id invalid UTF-8", None, connect_v311(0x02, b"\x00\x01\xff"), 0x81),
    ("will topic wildcard", None, connect_v311(0x06, s("c") + s("w/#") + s("p")), 0x90),
    ("will topic missing", None, connect_v311(0x06, s("c")), 0x81),
    ("user name missing", None, connect_v311(0x82, s("c")), 0x81),
    ("unknown protocol level", None, b"\x10\x0c\x00\x04MQTT\x06\x02\x00\x3c\x00\x00", 0x84),
    ("MQIsdp with level 4", None, b"\x10\x0e\x00\x06MQIsdp\x04\x02\x00\x3c\x00\x00", 0x84),
    ("unknown protocol name", None, b"\x10\x0c\x00\x04MQTX\x04\x02\x00\x3c\x00\x00", 0x84),
    ("protocol name truncated", None, b"\x10\x03\x00\x04M", 0x81),
    ("first packet not CONNECT", None, b"\xc0\x00", 0x82),
    ("first packet PUBLISH", None, b"\x30\x03\x00\x01t", 0x82),
    ("CONNECT 5 receive maximum 0", None, connect_v5(0x02, b"\x03\x21\x00\x00", s("c")), 0x82),
    (
        "CONNECT 5 duplicate session expiry",
        None,
        connect_v5(0x02, b"\x0a\x11\x00\x00\x00\x01\x11\x00\x00\x00\x02", s("c")),
        0x82,
    ),
    ("CONNECT 5 topic alias property", None, connect_v5(0x02, b"\x03\x23\x00\x01", s("c")), 0x81),
    (
        "CONNECT 5 will property not allowed",
        None,
        connect_v5(0x06, b"\x00", s("c") + b"\x02\x23\x00\x01" + s("w") + s("p")),
        0x81,
    ),
    (
        "CONNECT 5 auth data without method",
        None,
        connect_v5(0x02, b"\x04\x16\x00\x01x", s("c")),
        0x82,
    ),
    (
        "CONNECT 5 request problem information 2",
        None,
        connect_v5(0x02, b"\x02\x17\x02", s("c")),
        0x82,
    ),
]


@pytest.mark.parametrize(
    "version,data,code", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed(version, data, code):
    assert error_of(data, version) == code


def test_valid_edge_cases():
    # 5.0 allows a password without a user name, and an empty client id without
    # clean start (the server assigns one or refuses: policy, not codec).
    pkt = decode_packet(connect_v5(0x40, b"\x00", s("c") + s("pw")))
    assert pkt.password == b"pw" and pkt.username is None
    assert decode_packet(connect_v5(0x00, b"\x00", s(""))).client_id == ""
    # Control characters other than U+0000 are allowed in strings.
    assert decode_packet(b"\x30\x04\x00\x02\x01\x7f", 4).topic == "\x01\x7f"
    # Topic alias with an empty topic.
    assert decode_packet(b"\x30\x06\x00\x00\x03\x23\x00\x07", 5) == Publish(
        "", properties=Properties(topic_alias=7)
    )


def test_role_checks():
    connect = connect_v311(0x02, s("c"))
    assert error_of(connect + b"\x20\x02\x00\x00", None, role="server") == 0x82
    assert error_of(connect + connect, None, role="server") == 0x82
    assert error_of(b"\xc0\x00", 4, role="client") == 0x82
    sub_id_publish = b"\x30\x06\x00\x01t\x02\x0b\x01"
    assert error_of(sub_id_publish, 5, role="server") == 0x82
    assert decode_packet(sub_id_publish, 5, role="client").properties.subscription_identifiers == (
        1,
    )
    with pytest.raises(ValueError):
        Decoder(role="broker")


def test_version_known_when_rest_of_connect_is_malformed():
    decoder = Decoder(role="server")
    with pytest.raises(MQTTProtocolError) as info:
        decoder.packets(connect_v5(0x01, b"\x00", s("c")))
    assert info.value.reason_code == 0x81
    assert decoder.version == 5


# ------------------------------------------------------------------ limits


def test_max_packet_size_checked_on_fixed_header():
    decoder = Decoder(version=4, max_packet_size=100)
    # The fixed header alone announces 0x1ff + 3 bytes: refused before the body arrives.
    with pytest.raises(MQTTProtocolError) as info:
        decoder.packets(b"\x30\xff\x03")
    assert info.value.reason_code == 0x95
    assert decoder.error is info.value
    with pytest.raises(MQTTProtocolError):
        decoder.packets(b"more")  # a failed decoder stays failed


def test_max_packet_size_boundary_and_change():
    decoder = Decoder(version=4, max_packet_size=10)
    exact = encode_publish("t", b"x" * 5)  # 2 + 3 + 5 = 10 bytes
    assert len(exact) == 10
    assert decoder.packets(exact) == [Publish("t", b"x" * 5)]
    decoder.max_packet_size = 9
    with pytest.raises(MQTTProtocolError) as info:
        decoder.packets(exact[:2])
    assert info.value.reason_code == 0x95


def test_max_packet_size_with_next_packet():
    decoder = Decoder(version=4, max_packet_size=50)
    decoder.feed(b"\x30\x80\x01")
    with pytest.raises(MQTTProtocolError) as info:
        decoder.next_packet()
    assert info.value.reason_code == 0x95


def test_receive_buffer_cap():
    decoder = Decoder(version=4, max_buffer_size=64)
    # A packet bigger than the buffer can never be buffered.
    with pytest.raises(MQTTProtocolError) as info:
        decoder.packets(b"\x30\x7f")
    assert info.value.reason_code == 0x95
    # feed() without draining is capped too.
    decoder = Decoder(version=4, max_buffer_size=64)
    decoder.feed(b"\xc0\x00" * 32)
    with pytest.raises(MQTTProtocolError) as info:
        decoder.feed(b"\xc0\x00")
    assert info.value.reason_code == 0x97


def test_packets_before_error_are_returned_with_it():
    good = encode_publish("a", b"1") + encode_publish("b", b"2")
    decoder = Decoder(version=4)
    with pytest.raises(MQTTProtocolError) as info:
        decoder.packets(good + b"\x00\x00")
    assert info.value.packets == [Publish("a", b"1"), Publish("b", b"2")]


# ------------------------------------------------------------------ streams


def _stream(version: int) -> tuple[bytes, list]:
    packets = [
        p for p in (V5_PACKETS if version == 5 else V3_PACKETS) if not isinstance(p, Connect)
    ]
    packets.append(Publish("big", bytes(range(256)) * 100, qos=1, packet_id=9))
    return b"".join(encode(p, version) for p in packets), packets


@pytest.mark.parametrize("version", [4, 5])
def test_one_byte_at_a_time(version):
    data, expected = _stream(version)
    decoder = Decoder(version=version)
    got = []
    for i in range(len(data)):
        got.extend(decoder.packets(data[i : i + 1]))
    assert got == expected
    assert decoder.buffered == 0


@pytest.mark.parametrize("version", [4, 5])
def test_feed_and_next_packet(version):
    data, expected = _stream(version)
    decoder = Decoder(version=version)
    got = []
    for i in range(0, len(data), 7):
        decoder.feed(bytearray(data[i : i + 7]))
        while (pkt := decoder.next_packet()) is not None:
            got.append(pkt)
    assert got == expected


def test_many_packets_in_one_chunk():
    pubs = [
        Publish(f"s/{i}", str(i).encode(), qos=i % 3, packet_id=(i % 3 and i + 1) or None)
        for i in range(500)
    ]
    chunk = b"".join(encode(p, 5) for p in pubs)
    decoder = Decoder(version=5)
    assert decoder.packets(memoryview(chunk)) == pubs
    assert decoder.packets(b"") == []


def test_connect_then_stream_from_a_client():
    connect = encode(Connect("c", protocol_level=5), 5)
    rest = encode(Subscribe(1, (("a/#", SubscribeOptions(1)),)), 5) + encode_publish(
        "a/b", b"x", version=5
    )
    decoder = Decoder(role="server")
    got = decoder.packets(connect + rest[:5])
    assert len(got) == 1 and decoder.version == 5
    got = decoder.packets(rest[5:])
    assert got == [Subscribe(1, (("a/#", SubscribeOptions(1)),)), Publish("a/b", b"x")]


# ------------------------------------------------------------------ encoder helpers


@pytest.mark.parametrize("version", [4, 5])
def test_publish_template(version):
    props = Properties(user_properties=(("a", "b"),)) if version == 5 else None
    template = PublishTemplate(
        "t/x", b"payload", qos=1, retain=True, properties=props, version=version
    )
    for pid in (1, 300, 65535):
        expected = encode(Publish("t/x", b"payload", 1, True, False, pid, props), version)
        assert template.with_packet_id(pid) == expected
        assert publish_with_packet_id(template, pid) == expected
    resend = template.with_packet_id(7, dup=True)
    assert decode_packet(resend, version) == Publish("t/x", b"payload", 1, True, True, 7, props)
    assert len(template) == publish_size("t/x", 7, 1, props, version)
    qos0 = PublishTemplate("t", b"p", version=version)
    assert qos0.with_packet_id(None) == encode_publish("t", b"p", version=version)


def test_encoder_misuse():
    with pytest.raises(MQTTEncodeError):
        encode_publish("t", b"", qos=1)  # no packet id
    with pytest.raises(MQTTEncodeError):
        encode_publish("t", b"", qos=3, packet_id=1)
    with pytest.raises(MQTTEncodeError):
        encode_publish("t", b"", dup=True)
    with pytest.raises(MQTTEncodeError):
        encode_publish("t" * 70000, b"")
    with pytest.raises(MQTTEncodeError):
        encode(Puback(0), 4)
    with pytest.raises(MQTTEncodeError):
        encode(Puback(1, 0, Properties(topic_alias=1)), 5)
    with pytest.raises(MQTTEncodeError):
        encode(Subscribe(1, ()), 4)
    with pytest.raises(MQTTEncodeError):
        encode(Connect("c", password=b"p"), 4)
    with pytest.raises(MQTTEncodeError):
        encode(object(), 4)
    with pytest.raises(MQTTEncodeError):
        encode(Pingreq(), 6)


def test_encoded_size_matches():
    for packet in V5_PACKETS:
        assert encoded_size(packet, 5) == len(encode(packet, 5))
    big = Publish("t", b"x" * 200_000, qos=1, packet_id=1)
    assert encoded_size(big, 4) == len(encode(big, 4))


def test_topic_filter_validation():
    for good in ("a", "a/b", "+", "#", "a/+/b", "a/#", "+/+", "/", "$share/g/a/#", "$SYS/#"):
        assert validate_topic_filter(good), good
    for bad in ("", "a#", "a/#/b", "a+", "a/b+/c", "$share/g", "$share//a", "$share/g+/a"):
        assert not validate_topic_filter(bad), bad


def test_error_message_names_reason():
    err = MQTTProtocolError(0x81, "bad")
    assert "MALFORMED_PACKET" in str(err) and err.reason_code == 0x81


def test_large_packet_in_many_chunks():
    payload = bytes(range(256)) * 4096  # 1 MiB
    data = encode_publish("big", payload, qos=1, packet_id=3) + b"\xc0\x00"
    decoder = Decoder(version=4)
    got = []
    fed = 0
    for i in range(0, len(data), 4000):
        chunk = data[i : i + 4000]
        got.extend(decoder.packets(chunk))
        fed += len(chunk)
        if not got:
            assert decoder.buffered == fed
    assert got == [Publish("big", payload, qos=1, packet_id=3), Pingreq()]
    assert decoder.buffered == 0


def test_detach_hands_a_split_packet_to_a_new_decoder():
    from fluxmq_mqtt.codec import Pingreq, Publish

    shared = Decoder(version=4, role="server")
    data = encode(Pingreq(), 4) + encode(Publish("a/b", b"x" * 10), 4)
    assert [type(p) for p in shared.packets(data[:5])] == [Pingreq]
    assert not shared.drained()
    own = shared.detach()
    assert shared.drained() and shared.buffered == 0 and shared.version == 4
    got = own.packets(data[5:])
    assert [(p.topic, p.payload) for p in got] == [("a/b", b"x" * 10)]
    assert own.drained()
    assert shared.packets(encode(Pingreq(), 4)) == [Pingreq()]
