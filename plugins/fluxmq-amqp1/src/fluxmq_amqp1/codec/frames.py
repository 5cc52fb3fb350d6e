"""AMQP 1.0 framing: protocol headers, AMQP (type 0) and SASL (type 1) frames.

:class:`FrameReader` is sans-IO: ``feed(bytes)`` and iterate ``frames()`` for
:class:`Frame` objects (a protocol header is reported as a :class:`Header8`). It
enforces the negotiated ``max_frame_size`` before buffering a frame body, so a peer
cannot make it hold more than one frame. Everything malformed raises
:class:`~fluxmq_amqp1.codec.types.AMQPError` with the spec's condition:
``amqp:connection:framing-error`` for a frame that cannot be delimited (size below
8, data offset below 2, larger than the agreed maximum), ``amqp:decode-error`` for a
body that does not decode to a performative.
"""

from __future__ import annotations

import struct
from typing import Any

from fluxmq_amqp1.codec.composites import Performative, Transfer
from fluxmq_amqp1.codec.types import DECODE_ERROR, AMQPError, decode_value

__all__ = [
    "AMQP_HEADER",
    "FRAMING_ERROR",
    "FRAME_SIZE_TOO_SMALL",
    "MIN_MAX_FRAME_SIZE",
    "SASL_HEADER",
    "TLS_HEADER",
    "Frame",
    "FrameReader",
    "Header8",
    "accepted_frame",
    "encode_frame",
    "is_amqp1",
    "transfer_frame",
]

AMQP_HEADER = b"AMQP\x00\x01\x00\x00"
SASL_HEADER = b"AMQP\x03\x01\x00\x00"
TLS_HEADER = b"AMQP\x02\x01\x00\x00"
FRAMING_ERROR = "amqp:connection:framing-error"
FRAME_SIZE_TOO_SMALL = "amqp:frame-size-too-small"
#: The smallest max-frame-size a peer may announce (spec: 512).
MIN_MAX_FRAME_SIZE = 512

TYPE_AMQP = 0
TYPE_SASL = 1

_HDR = struct.Struct(">IBBH")


def is_amqp1(data: bytes) -> bool | None:
    """Port-sharing predicate: True for an AMQP 1.0 protocol header, plain
    (``AMQP\\x00\\x01...``) or SASL (``AMQP\\x03...``), whatever version follows (an
    unsupported one is then answered with the header we speak, as the spec asks);
    None while too few bytes arrived to tell; False otherwise. The exact complement
    of the AMQP 0.9.1 plugin's predicate on ``AMQP`` greetings, so the two never
    both claim a connection."""
    n = min(len(data), 4)
    if data[:n] != b"AMQP"[:n]:
        return False
    if len(data) < 6:
        return None
    return data[4] == 3 or data[4:6] == b"\x00\x01"


class Header8:
    """A protocol header read where a frame could start (``AMQP`` + id + version)."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def __repr__(self) -> str:
        return f"Header8({self.raw!r})"


class Frame:
    """One decoded frame: its type (0 AMQP, 1 SASL), channel, performative (None
    for an empty heartbeat frame) and, for a transfer, the payload after it."""

    __slots__ = ("type", "channel", "body", "payload")

    def __init__(self, type: int, channel: int, body: Any, payload: bytes = b"") -> None:
        self.type = type
        self.channel = channel
        self.body = body
        self.payload = payload

    def __repr__(self) -> str:
        return f"Frame(type={self.type}, channel={self.channel}, body={self.body!r}, payload={len(self.payload)}B)"


def encode_frame(
    channel: int, performative: Any, payload: bytes = b"", type: int = TYPE_AMQP
) -> bytes:
    """One frame's bytes; ``performative`` None makes an empty (heartbeat) frame."""
    body = bytearray()
    if performative is not None:
        performative.encode_to(body)
    if payload:
        body += payload
    return _HDR.pack(8 + len(body), 2, type, channel) + bytes(body)


def _uint(v: int) -> bytes:
    if v == 0:
        return b"\x43"  # uint0
    if v < 256:
        return bytes((0x52, v))  # smalluint
    return b"\x70" + v.to_bytes(4, "big")


_BOOL = (b"\x42", b"\x41")


def transfer_frame(
    channel: int,
    handle: int,
    delivery_id: int,
    tag: bytes,
    settled: bool,
    more: bool,
    payload: bytes,
) -> bytes:
    """``encode_frame(channel, Transfer(handle, delivery_id, tag, message_format=0,
    settled, more), payload)`` written directly: the first frame of every outgoing
    delivery, the hot path of a consumer (the generic encoder walks the field table
    per frame). Tags up to 255 bytes."""
    fields = b"".join(
        (
            _uint(handle),
            _uint(delivery_id),
            b"\xa0",
            bytes((len(tag),)),
            tag,
            b"\x43",
            _BOOL[settled],
            _BOOL[more],
        )
    )
    head = b"\x00\x53\x14\xc0" + bytes((len(fields) + 1, 6))
    return _HDR.pack(8 + len(head) + len(fields) + len(payload), 2, TYPE_AMQP, channel) + b"".join(
        (head, fields, payload)
    )


def accepted_frame(channel: int, first: int, last: int | None = None) -> bytes:
    """``encode_frame(channel, Disposition(role=True, first=first, last=last,
    settled=True, state=Accepted()))`` written directly: what settles unsettled
    publishes (a range of them when ``last`` is given)."""
    end = b"\x40" if last is None else _uint(last)
    fields = b"\x41" + _uint(first) + end + b"\x41\x00\x53\x24\x45"
    body = b"\x00\x53\x15\xc0" + bytes((len(fields) + 1, 5)) + fields
    return _HDR.pack(8 + len(body), 2, TYPE_AMQP, channel) + body


#: What each transfer field may be on the fast path (anything else: the generic
#: decoder decides): u uint, b binary, ? boolean, y ubyte, n null only.
_TRANSFER_KINDS = ("u", "u", "b", "u", "?", "?", "y", "n", "?", "?", "?")
_KIND_CODES = {
    "u": frozenset((0x40, 0x43, 0x52, 0x70)),
    "b": frozenset((0x40, 0xA0)),
    "?": frozenset((0x40, 0x41, 0x42, 0x56)),
    "y": frozenset((0x40, 0x50)),
    "n": frozenset((0x40,)),
}
_WIDTH = {0x40: 1, 0x41: 1, 0x42: 1, 0x43: 1, 0x52: 2, 0x56: 2, 0x50: 2, 0x70: 5}


def _fast_transfer(body: bytes) -> tuple[Transfer, bytes] | None:
    """The common transfer (list8, primitive fields, no state) decoded directly;
    None for anything else, which the generic decoder then reads (and judges)."""
    if len(body) < 7 or body[3] != 0xC0:
        return None
    end = 5 + body[4]
    count = body[5]
    if not 0 < count <= 11 or end > len(body) or body[6] == 0x40:
        return None  # the handle is mandatory: the generic decoder says so
    pos = 6
    vals: list[Any] = []
    for i in range(count):
        if pos >= end:
            return None
        c = body[pos]
        kind = _TRANSFER_KINDS[i]
        if c not in _KIND_CODES[kind]:
            return None
        if c == 0xA0:
            if pos + 2 > end:
                return None
            n = body[pos + 1]
            if pos + 2 + n > end:
                return None
            vals.append(body[pos + 2 : pos + 2 + n])
            pos += 2 + n
            continue
        w = _WIDTH[c]
        if pos + w > end:
            return None
        if c == 0x40:
            v: Any = None
        elif c == 0x43:
            v = 0
        elif c in (0x52, 0x50):
            v = body[pos + 1]
        elif c == 0x70:
            v = int.from_bytes(body[pos + 1 : pos + 5], "big")
        elif c == 0x41:
            v = True
        elif c == 0x42:
            v = False
        else:  # 0x56
            if body[pos + 1] > 1:
                return None
            v = body[pos + 1] == 1
        vals.append(v)
        pos += w
    if pos != end:
        return None
    vals += [None] * (11 - count)
    t = Transfer(
        handle=vals[0],
        delivery_id=vals[1],
        delivery_tag=vals[2],
        message_format=vals[3],
        settled=vals[4],
        more=bool(vals[5]),
        rcv_settle_mode=vals[6],
        resume=bool(vals[8]),
        aborted=bool(vals[9]),
        batchable=bool(vals[10]),
    )
    return t, body[end:]


def decode_body(type: int, body: bytes) -> tuple[Any, bytes]:
    """A frame body -> (performative, payload). Only a transfer may carry a payload."""
    if not body:
        return None, b""
    if type == TYPE_AMQP and body[:3] == b"\x00\x53\x14":
        fast = _fast_transfer(body)
        if fast is not None:
            return fast
    perf, pos = decode_value(body, 0)
    if not isinstance(perf, Performative):
        raise AMQPError(DECODE_ERROR, f"frame body is not a performative: {type_name(perf)}")
    sasl = perf.CODE >= 0x40
    if sasl != (type == TYPE_SASL):
        raise AMQPError(
            DECODE_ERROR, f"{perf.NAME} in a {'SASL' if type == TYPE_SASL else 'AMQP'} frame"
        )
    payload = body[pos:]
    if payload and not isinstance(perf, Transfer):
        raise AMQPError(DECODE_ERROR, f"{len(payload)} bytes after {perf.NAME}")
    return perf, payload


def type_name(v: Any) -> str:
    return type(v).__name__


class FrameReader:
    """Incremental frame decoder (sans-IO)."""

    __slots__ = ("buf", "max_frame_size", "expect_header")

    def __init__(self, max_frame_size: int = 0xFFFFFFFF) -> None:
        self.buf = bytearray()
        self.max_frame_size = max_frame_size
        #: the next 8 bytes are a protocol header (at start and after SASL)
        self.expect_header = True

    def feed(self, data: bytes) -> None:
        self.buf += data

    def next_frame(self) -> Frame | Header8 | None:
        """The next complete protocol header or frame, or None until more bytes come.
        Read one at a time: what a frame says (SASL done, a new max-frame-size)
        changes how the next one is read."""
        buf = self.buf
        avail = len(buf)
        if self.expect_header:
            if avail < 8:
                return None
            raw = bytes(buf[:8])
            del buf[:8]
            self.expect_header = False
            return Header8(raw)
        if avail < 8:
            return None
        size, doff, ftype, channel = _HDR.unpack_from(buf, 0)
        if size < 8:
            raise AMQPError(FRAMING_ERROR, f"frame size {size} is below 8")
        if doff < 2 or doff * 4 > size:
            raise AMQPError(FRAMING_ERROR, f"invalid data offset {doff} for size {size}")
        if size > self.max_frame_size:
            raise AMQPError(
                FRAMING_ERROR,
                f"frame of {size} bytes exceeds max-frame-size {self.max_frame_size}",
            )
        if ftype not in (TYPE_AMQP, TYPE_SASL):
            raise AMQPError(FRAMING_ERROR, f"unknown frame type {ftype}")
        if avail < size:
            return None
        body = bytes(buf[doff * 4 : size])
        del buf[:size]
        perf, payload = decode_body(ftype, body)
        return Frame(ftype, channel, perf, payload)
