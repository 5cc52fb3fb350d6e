"""Hypothesis: whatever bytes arrive, the codec returns frames or raises its own
AMQPError (with a connection reply code, never a wrapped foreign exception), and what
we encode decodes back to the same thing."""

from __future__ import annotations

import struct

from fluxmq_amqp091.codec import (
    PROTOCOL_HEADER,
    AMQPError,
    Body,
    FrameReader,
    Header,
    Method,
    encode_content,
    encode_deliver,
    encode_properties,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import commands
from pamqp import frame as pframe

#: What the frame reader may raise: frame error, unknown method, unexpected frame.
READER_CODES = (501, 503, 505)


def _drain(reader: FrameReader) -> None:
    for _ in range(1000):
        if reader.next_frame() is None:
            return


def _check(exc: AMQPError) -> None:
    """The codec's own error: a connection reply code, no chained foreign error."""
    assert exc.reply_code in READER_CODES, exc
    assert exc.hard
    assert exc.__cause__ is None


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=1, max_value=64))
def test_random_bytes_only_raise_amqp_error(data, cut):
    reader = FrameReader(frame_max=4096)
    try:
        reader.feed(PROTOCOL_HEADER)
        _drain(reader)
        for i in range(0, len(data), cut):
            reader.feed(data[i : i + cut])
            _drain(reader)
    except AMQPError as exc:
        _check(exc)


_frame_types = st.sampled_from([1, 2, 3, 8, 4, 0])
_indexes = st.sampled_from(sorted(commands.INDEX_MAPPING)) | st.integers(0, 0xFFFFFFFF)


@settings(max_examples=400, deadline=None)
@given(_frame_types, st.integers(0, 3), _indexes, st.binary(max_size=80))
def test_framed_garbage_payloads(ftype, channel, index, rest):
    payload = struct.pack(">I", index) + rest if ftype == 1 else rest
    data = struct.pack(">BHI", ftype, channel, len(payload)) + payload + b"\xce"
    reader = FrameReader()
    reader.expect_header = False
    try:
        reader.feed(data)
        _drain(reader)
    except AMQPError as exc:
        _check(exc)


_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=40)
#: Up to 200 characters of up to 3 UTF-8 bytes: past a short string's 255 bytes.
_long_text = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=0xD7FF), min_size=100, max_size=200
)


@settings(max_examples=200, deadline=None)
@given(_text, _text, st.booleans(), st.booleans())
def test_publish_decodes_like_pamqp(exchange, routing_key, mandatory, immediate):
    exchange = "".join(c for c in exchange if c.isascii() and (c.isalnum() or c in "-_.:"))
    routing_key = routing_key.encode()[:255].decode("utf-8", "ignore")
    m = commands.Basic.Publish(
        exchange=exchange, routing_key=routing_key, mandatory=mandatory, immediate=immediate
    )
    reader = FrameReader()
    reader.expect_header = False
    reader.feed(pframe.marshal(m, 3))
    f = reader.next_frame()
    assert isinstance(f, Method) and f.channel == 3
    got = f.method
    assert (got.exchange, got.routing_key, got.mandatory, got.immediate) == (
        exchange,
        routing_key,
        mandatory,
        immediate,
    )


@settings(max_examples=200, deadline=None)
@given(
    st.binary(max_size=20000), st.integers(4096, 9000), _text, st.integers(1, 2**40), st.booleans()
)
def test_content_roundtrip_split_by_frame_max(body, frame_max, tag, dtag, redelivered):
    props = commands.Basic.Properties(content_type="text/plain", headers={"a": 1})
    raw = encode_properties(props)
    data = encode_content(
        1, encode_deliver(1, tag, dtag, redelivered, "ex", "rk"), raw, body, frame_max
    )
    reader = FrameReader(frame_max=frame_max)
    reader.expect_header = False
    reader.feed(data)
    m = reader.next_frame()
    assert isinstance(m, Method)
    assert m.method.delivery_tag == dtag and m.method.redelivered == redelivered
    assert m.method.consumer_tag == tag
    h = reader.next_frame()
    assert isinstance(h, Header) and h.body_size == len(body) and h.raw == raw
    assert h.properties.content_type == "text/plain"
    parts = []
    while (f := reader.next_frame()) is not None:
        assert isinstance(f, Body) and len(f.data) + 8 <= frame_max
        parts.append(f.data)
    assert b"".join(parts) == body


@settings(max_examples=200, deadline=None)
@given(_long_text, _long_text)
def test_long_names_are_cut_on_a_character_boundary(routing_key, exchange):
    """A routing key longer than a short string (an MQTT topic can be) is cut to 255
    bytes without splitting a character, so clients can still decode the delivery."""
    data = encode_deliver(1, "ctag", 1, False, exchange, routing_key)
    reader = FrameReader()
    reader.expect_header = False
    reader.feed(data)
    m = reader.next_frame()
    assert isinstance(m, Method)
    for got, sent in ((m.method.routing_key, routing_key), (m.method.exchange, exchange)):
        raw = got.encode()
        assert len(raw) <= 255 and sent.startswith(got)
        assert len(raw) == len(sent.encode()) or len(raw) > 252  # cut only at the limit
