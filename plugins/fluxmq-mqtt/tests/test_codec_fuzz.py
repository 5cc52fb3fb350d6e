"""Property-based tests of the MQTT codec (hypothesis): generated packets round-trip
in every version, and arbitrary or mutated bytes only ever give packets or an
`MQTTProtocolError` that the codec raised itself (never a wrapped internal error)."""

from __future__ import annotations

from fluxmq_mqtt.codec import (
    Auth,
    Connack,
    Connect,
    Decoder,
    Disconnect,
    MQTTProtocolError,
    Pingreq,
    Pingresp,
    Properties,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    SubscribeOptions,
    Unsuback,
    Unsubscribe,
    decode_packet,
    encode,
    encoded_size,
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
from fluxmq_mqtt.codec.reasons import (
    AUTH_CODES,
    CONNACK_V5_CODES,
    DISCONNECT_CODES,
    PUBACK_CODES,
    PUBREL_CODES,
    SUBACK_V3_CODES,
    SUBACK_V5_CODES,
    UNSUBACK_CODES,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ROUNDTRIP = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------ strategies

mqtt_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12
)
topic_name = mqtt_text.filter(lambda t: t and "+" not in t and "#" not in t)
topic_filter = mqtt_text.filter(lambda t: t and not t.startswith("$share/"))
blob = st.binary(max_size=40)
packet_id = st.integers(1, 65535)


def _value(pid: int, kind: int, ptype: int) -> st.SearchStrategy:
    if kind == BYTE:
        return st.integers(0, 1)
    if kind == U16:
        return st.integers(1 if pid in (0x21, 0x23) else 0, 65535)
    if kind == U32:
        return st.integers(1 if pid == 0x27 else 0, 2**32 - 1)
    if kind == VARINT:
        ids = st.integers(1, 268_435_455)
        return st.tuples(ids) if ptype == 8 else st.lists(ids, min_size=1, max_size=3).map(tuple)
    if kind == STRING:
        return topic_name if pid == 0x08 else mqtt_text
    if kind == BINARY:
        return blob
    assert kind == PAIR
    return st.lists(st.tuples(mqtt_text, mqtt_text), min_size=1, max_size=3).map(tuple)


def properties(ptype: int) -> st.SearchStrategy:
    optional = {}
    for pid in ALLOWED_PROPERTIES[ptype]:
        name, kind, _ = PROPERTY_TABLE[pid]
        optional[name] = _value(pid, kind, ptype)
    return st.fixed_dictionaries({}, optional=optional).map(
        lambda d: Properties(**d) if d else None
    )


def _connect_v5_props() -> st.SearchStrategy:
    # Authentication Data needs an Authentication Method.
    return properties(1).map(
        lambda p: (
            p
            if p is None or p.authentication_data is None or p.authentication_method is not None
            else Properties(**{**p.present(), "authentication_method": "m"})
        )
    )


@st.composite
def connects(draw, version: int) -> Connect:
    has_will = draw(st.booleans())
    username = draw(st.none() | mqtt_text)
    password = draw(st.none() | blob)
    if version < 5 and username is None:
        password = None
    clean_start = draw(st.booleans())
    client_id = draw(mqtt_text)
    if version < 5 and not client_id:
        clean_start = True
    return Connect(
        client_id=client_id,
        clean_start=clean_start,
        keepalive=draw(st.integers(0, 65535)),
        username=username,
        password=password,
        will_topic=draw(topic_name) if has_will else None,
        will_payload=draw(blob) if has_will else b"",
        will_qos=draw(st.integers(0, 2)) if has_will else 0,
        will_retain=draw(st.booleans()) if has_will else False,
        will_properties=draw(properties(WILL)) if has_will and version == 5 else None,
        properties=draw(_connect_v5_props()) if version == 5 else None,
        protocol_name="MQIsdp" if version == 3 else "MQTT",
        protocol_level=version,
    )


@st.composite
def publishes(draw, version: int) -> Publish:
    qos = draw(st.integers(0, 2))
    return Publish(
        topic=draw(topic_name),
        payload=draw(st.binary(max_size=300)),
        qos=qos,
        retain=draw(st.booleans()),
        dup=draw(st.booleans()) if qos else False,
        packet_id=draw(packet_id) if qos else None,
        properties=draw(properties(3)) if version == 5 else None,
    )


def _codes(codes) -> st.SearchStrategy:
    return st.sampled_from(sorted(int(c) for c in codes))


def _nonzero_session(code_and_flag):
    code, flag = code_and_flag
    return Connack(flag and code == 0, code)


def packets(version: int) -> st.SearchStrategy:
    v5 = version == 5
    props = properties if v5 else (lambda ptype: st.none())
    code = (lambda codes: _codes(codes)) if v5 else (lambda codes: st.just(0))
    options = (
        st.builds(
            SubscribeOptions, st.integers(0, 2), st.booleans(), st.booleans(), st.integers(0, 2)
        )
        if v5
        else st.builds(SubscribeOptions, st.integers(0, 2))
    )
    connack = st.builds(
        lambda c, sp, p: Connack(sp and c == 0, c, p),
        _codes(CONNACK_V5_CODES) if v5 else st.integers(0, 5),
        st.booleans(),
        props(2),
    )
    strategies = [
        connects(version),
        connack,
        publishes(version),
        st.builds(Puback, packet_id, code(PUBACK_CODES), props(4)),
        st.builds(Pubrec, packet_id, code(PUBACK_CODES), props(5)),
        st.builds(Pubrel, packet_id, code(PUBREL_CODES), props(6)),
        st.builds(Pubcomp, packet_id, code(PUBREL_CODES), props(7)),
        st.builds(
            Subscribe,
            packet_id,
            st.lists(st.tuples(topic_filter, options), min_size=1, max_size=4).map(tuple),
            props(8),
        ),
        st.builds(
            Suback,
            packet_id,
            st.lists(
                _codes(SUBACK_V5_CODES if v5 else SUBACK_V3_CODES), min_size=1, max_size=4
            ).map(tuple),
            props(9),
        ),
        st.builds(
            Unsubscribe,
            packet_id,
            st.lists(topic_filter, min_size=1, max_size=4).map(tuple),
            props(10),
        ),
        st.builds(
            Unsuback,
            packet_id,
            st.lists(_codes(UNSUBACK_CODES), min_size=1, max_size=4).map(tuple)
            if v5
            else st.just(()),
            props(11),
        ),
        st.just(Pingreq()),
        st.just(Pingresp()),
        st.builds(Disconnect, code(DISCONNECT_CODES), props(14)),
    ]
    if v5:
        strategies.append(
            st.builds(Auth, _codes(AUTH_CODES), props(15)).filter(
                lambda a: (
                    a.properties is None
                    or a.properties.authentication_data is None
                    or a.properties.authentication_method is not None
                )
            )
        )
    return st.one_of(strategies)


# ------------------------------------------------------------------ helpers


def decode_all(data: bytes, version: int | None = None, role: str | None = None) -> list:
    """Decode a stream; an MQTTProtocolError is fine, anything else fails the test."""
    decoder = Decoder(version=version, role=role)
    try:
        out = decoder.packets(data)
    except MQTTProtocolError as exc:
        assert exc.__cause__ is None, f"internal error wrapped: {exc.__cause__!r}"
        assert 0x80 <= exc.reason_code <= 0xA2
        return exc.packets
    return out


CONNECT_V4 = encode(Connect("fuzz"), 4)
CONNECT_V5 = encode(Connect("fuzz", protocol_level=5), 5)

# ------------------------------------------------------------------ round trips


@ROUNDTRIP
@given(packets(5))
def test_roundtrip_v5(packet):
    data = encode(packet, 5)
    assert encoded_size(packet, 5) == len(data)
    assert decode_packet(data, 5) == packet


@ROUNDTRIP
@given(packets(4))
def test_roundtrip_v311(packet):
    assert decode_packet(encode(packet, 4), 4) == packet


@ROUNDTRIP
@given(connects(3))
def test_roundtrip_v31_connect(packet):
    assert decode_packet(encode(packet, 3)) == packet


@ROUNDTRIP
@given(st.lists(packets(5), min_size=1, max_size=8), st.lists(st.integers(1, 50), max_size=20))
def test_split_stream_gives_same_packets(pkts, cuts):
    data = b"".join(encode(p, 5) for p in pkts)
    decoder = Decoder(version=5)
    got = []
    pos = 0
    for cut in cuts:
        got.extend(decoder.packets(data[pos : pos + cut]))
        pos += cut
    got.extend(decoder.packets(data[pos:]))
    assert got == pkts


# ------------------------------------------------------------------ hostile input


@FUZZ
@given(st.binary(max_size=200))
def test_arbitrary_bytes_alone(data):
    decode_all(data)
    decode_all(data, role="server")


@FUZZ
@given(st.binary(max_size=200))
def test_arbitrary_bytes_after_connect(data):
    decode_all(CONNECT_V4 + data, role="server")
    decode_all(CONNECT_V5 + data, role="server")


@FUZZ
@given(st.binary(max_size=200), st.sampled_from([3, 4, 5]))
def test_arbitrary_bytes_with_known_version(data, version):
    decode_all(data, version=version)
    decode_all(data, version=version, role="client")


@st.composite
def mutated(draw, version: int) -> bytes:
    data = bytearray(encode(draw(packets(version)), version))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[i] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete" and data:
            del data[i]
        elif kind == "truncate":
            del data[i:]
    return bytes(data)


@FUZZ
@given(mutated(5))
def test_mutated_v5_packets(data):
    decode_all(data, version=5)
    decode_all(CONNECT_V5 + data, role="server")


@FUZZ
@given(mutated(4))
def test_mutated_v311_packets(data):
    decode_all(data, version=4)
    decode_all(CONNECT_V4 + data, role="server")


@FUZZ
@given(st.binary(max_size=120), st.integers(1, 16))
def test_one_byte_feeding_never_raises_foreign_errors(data, step):
    decoder = Decoder(version=5)
    try:
        for i in range(0, len(data), step):
            decoder.feed(data[i : i + step])
            while decoder.next_packet() is not None:
                pass
    except MQTTProtocolError as exc:
        assert exc.__cause__ is None
