"""The codec's fast paths match the general ones: the one-call delivery encoder
(bodies that fit a frame, an empty body, a split body) and the content header
decoder for the common property sets (against pamqp's)."""

from __future__ import annotations

import struct

import pytest
from fluxmq_amqp091.codec import encode_content, encode_deliver, encode_delivery
from pamqp import commands


@pytest.mark.parametrize("size", [0, 1, 100, 4088, 4089, 10_000])
@pytest.mark.parametrize("frame_max", [4096, 0])
def test_encode_delivery_matches_deliver_plus_content(size: int, frame_max: int) -> None:
    body = bytes(range(256)) * (size // 256) + bytes(size % 256)
    props = b"\x10\x00\x02"
    for ctag, ex, rk, redelivered in (
        ("amq.ctag-x", "", "jobs", False),
        ("c", "ex", "é" * 100, True),
    ):
        expect = encode_content(
            3, encode_deliver(3, ctag, 12345, redelivered, ex, rk), props, body, frame_max
        )
        got = encode_delivery(3, ctag, 12345, redelivered, ex, rk, props, body, frame_max)
        assert got == expect


@pytest.mark.parametrize(
    "props",
    [
        {"delivery_mode": 2},
        {"delivery_mode": 1},
        {},
        {"delivery_mode": 2, "priority": 3},
        {"content_type": "text/plain", "headers": {"a": 1}},
    ],
)
def test_content_header_decodes_as_pamqp_does(props: dict) -> None:
    from fluxmq_amqp091.codec import FrameReader, encode_properties
    from pamqp.header import ContentHeader

    raw = encode_properties(commands.Basic.Properties(**props))
    payload = struct.pack(">HHQ", 60, 0, 100) + raw
    got = FrameReader._header(1, payload)
    want = ContentHeader()
    want.unmarshal(payload)
    assert (got.class_id, got.body_size, got.raw) == (want.class_id, want.body_size, raw)
    for name in commands.Basic.Properties.__slots__:
        assert getattr(got.properties, name) == getattr(want.properties, name), name
