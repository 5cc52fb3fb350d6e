"""The value codec: every storable value round-trips; anything else is refused
with a message naming where it was."""

from __future__ import annotations

import pytest
from fluxmq_badgerlike.codec import (
    MESSAGE_FIELDS,
    RecordDecoder,
    _encode_message_exact,
    decode_message,
    decode_value,
    encode_message,
    encode_message_exact,
    encode_value,
)
from hypothesis import given
from hypothesis import strategies as st

from fluxmq_core.message import Message
from fluxmq_core.testing.conformance import sample_message

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(), st.binary()
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(), inner, max_size=5)
    ),
    max_leaves=30,
)


@given(values)
def test_values_round_trip(value: object) -> None:
    assert decode_value(encode_value(value)) == value


def test_tuples_come_back_as_lists_and_big_ints_survive() -> None:
    assert decode_value(encode_value({"t": (1, 2), "big": 1 << 100, "neg": -(1 << 70)})) == {
        "t": [1, 2], "big": 1 << 100, "neg": -(1 << 70)
    }  # fmt: skip


@pytest.mark.parametrize("bad", [{"s": {1}}, {1: "x"}, [object()]])
def test_unstorable_values_are_refused(bad: object) -> None:
    with pytest.raises(TypeError, match="session record"):
        encode_value(bad, "session record")


def test_garbage_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        decode_value(b"s\xff\xff\xff\xffabc")
    with pytest.raises(ValueError):
        decode_value(encode_value(1) + b"x")


@given(st.integers(0, 1000), st.binary(max_size=100), st.none() | st.floats(0, 1e10))
def test_messages_round_trip(i: int, payload: bytes, expires_at: float | None) -> None:
    m = sample_message(i, payload=payload, expires_at=expires_at)
    assert decode_message(encode_message(m)) == m
    bare = sample_message(i, properties=None, user_properties=None, correlation_data=None)
    assert decode_message(encode_message(bare)) == bare


def _same(a: Message, b: Message) -> None:
    for f in (*MESSAGE_FIELDS, "encoded"):
        x, y = getattr(a, f), getattr(b, f)
        assert x == y and type(x) is type(y), f


_SHAPES = [
    {},
    {"topic": "other/topic"},
    {"properties": {"amqp": b"\x10\x00\x02", "exchange": "", "routing_key": "k"}},
    {"properties": {"amqp": b"\x10\x00\x01", "exchange": "x", "routing_key": "k", "n": 7}},
    {"origin_client": "second"},
    {"qos": 0, "retain": True},
    {"user_properties": [("a", "b")]},
    {"expires_at": 12.5},
    {"properties": {"nested": {"a": 1}}},
]


@given(
    st.lists(
        st.tuples(st.integers(0, len(_SHAPES) - 1), st.binary(max_size=40), st.floats(0, 1e9)),
        max_size=30,
    )
)
def test_record_decoder_matches_decode_message(rows: list[tuple[int, bytes, float]]) -> None:
    """Records of mixed shapes read in place from one buffer decode exactly as
    decode_message decodes each alone, each with its own properties dict."""
    base = {"topic": "a/b", "qos": 1, "retain": False, "properties": None,
            "origin_protocol": "amqp091", "origin_client": "c"}  # fmt: skip
    bodies = []
    for shape, payload, ts in rows:
        fields: dict = {**base, **_SHAPES[shape]}
        m = Message(fields.pop("topic"), payload, fields.pop("qos"), **fields)
        m.timestamp = ts
        bodies.append(encode_message(m))
    buf, spans = b"junk", []
    for body in bodies:
        spans.append((len(buf), len(buf) + len(body)))
        buf += body + b"\x00" * 3
    decoder = RecordDecoder()
    got = [decoder.decode(buf, s, e) for s, e in spans]
    for (s, e), m in zip(spans, got, strict=True):
        _same(decode_message(buf[s:e]), m)
    for a, b in zip(got, got[1:], strict=False):
        assert a.properties is None or a.properties is not b.properties


def test_record_decoder_copies_properties_and_refuses_garbage() -> None:
    m = Message("a", b"x", 1, properties={"k": "v"}, origin_protocol="p", origin_client="c")
    body = encode_message(m)
    buf = body + body
    decoder = RecordDecoder()
    first = decoder.decode(buf, 0, len(body))
    assert first.properties is not None
    first.properties["k"] = "changed"
    second = decoder.decode(buf, len(body), len(buf))
    assert second.properties == {"k": "v"}
    # the same head and mid as the record learnt, one byte short
    with pytest.raises(ValueError):
        decoder.decode(body + body[:-1], len(body), 2 * len(body) - 1)
    with pytest.raises(ValueError):
        decoder.decode(b"\x01garbage", 0, 8)


class _Key(str):
    pass


_PROPS = [
    None,
    {"amqp": b"\x10\x00\x02", "exchange": "", "routing_key": "k"},
    {"exchange": "", "amqp": b"\x10\x00\x02", "routing_key": "k"},  # the same, reordered
    {"n": 1},
    {"n": True},  # equal to the one above, not the same type
    {"n": 1.0},
    {"n": bytearray(b"\x01")},
    {_Key("n"): 1},
]


@given(
    st.lists(
        st.tuples(
            st.integers(0, len(_PROPS) - 1),
            st.sampled_from(["a", "b"]),  # origin client
            st.sampled_from(["t/1", "t/2", "t/" + "x" * 600]),  # the last is never kept
            st.integers(0, 2),
            st.booleans(),
            st.binary(max_size=20),
        ),
        max_size=30,
    )
)
def test_repeated_shapes_encode_as_the_generic_encoder(rows: list) -> None:
    """Messages that repeat (or nearly repeat) the previous one of their client
    encode byte for byte as the field-by-field encoder, with the same exactness."""
    for i, (props, client, topic, qos, retain, payload) in enumerate(rows):
        p = _PROPS[props]
        m = Message(topic, payload, qos, retain, properties=None if p is None else dict(p),
                    origin_protocol="amqp091", origin_client=client, timestamp=float(i))  # fmt: skip
        try:
            want = _encode_message_exact(m)
        except TypeError:
            with pytest.raises(TypeError):
                encode_message_exact(m)
            continue
        assert encode_message_exact(m) == want
