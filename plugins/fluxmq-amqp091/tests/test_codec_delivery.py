"""The one-call delivery encoder writes the same bytes as the method encoder plus
the content encoder, for bodies that fit a frame, an empty body and a split body."""

from __future__ import annotations

import pytest
from fluxmq_amqp091.codec import encode_content, encode_deliver, encode_delivery


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
