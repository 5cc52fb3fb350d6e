"""AMQP 0.9.1 frames: bytes in, frame events out; commands in, bytes out.

Sans-IO: no sockets, no clock, no asyncio. :class:`FrameReader` cuts whole frames
out of the receive buffer itself (pamqp raises on a partial buffer), checks the
frame end octet and the negotiated frame-max, then hands method and content-header
payloads to ``pamqp`` to decode. ``basic.publish`` (the hot path) is decoded by hand;
content headers keep their raw property bytes so that a delivery can re-send them
without re-encoding.

Errors: anything malformed raises :class:`AMQPError` with the reply code RabbitMQ
sends (501 frame error, also for a method or header it cannot decode; 503 command
invalid for an unknown method; 505 unexpected frame); nothing else escapes :meth:`FrameReader.next_frame` (a hypothesis test
checks it). A bad protocol header raises :class:`ProtocolHeaderError`; the server
answers it with its own header and closes, as the spec says.

What it does not do: decide what a frame means in a connection or channel state
(``connection.py``, ``channel.py``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from pamqp import commands
from pamqp import frame as pframe
from pamqp.header import ContentHeader

__all__ = [
    "AMQPError",
    "Body",
    "FrameReader",
    "Header",
    "Heartbeat",
    "Method",
    "PROTOCOL_HEADER",
    "ProtocolHeaderError",
    "encode_body_frames",
    "encode_content",
    "encode_deliver",
    "encode_delivery",
    "encode_heartbeat",
    "encode_method",
    "is_amqp091",
]

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT = 1, 2, 3, 8
FRAME_END = 0xCE
FRAME_MIN_SIZE = 4096
#: Bytes of a frame around its payload: type, channel, size, and the end octet.
FRAME_OVERHEAD = 8

# Reply codes (AMQP 0.9.1, section 1.3 of the spec's constants).
REPLY_SUCCESS = 200
CONTENT_TOO_LARGE = 311
NO_ROUTE = 312
NO_CONSUMERS = 313
CONNECTION_FORCED = 320
INVALID_PATH = 402
ACCESS_REFUSED = 403
NOT_FOUND = 404
RESOURCE_LOCKED = 405
PRECONDITION_FAILED = 406
FRAME_ERROR = 501
SYNTAX_ERROR = 502
COMMAND_INVALID = 503
CHANNEL_ERROR = 504
UNEXPECTED_FRAME = 505
RESOURCE_ERROR = 506
NOT_ALLOWED = 530
NOT_IMPLEMENTED = 540
INTERNAL_ERROR = 541

#: Channel-level ("soft") errors close the channel; every other code the connection.
SOFT_ERRORS = frozenset(
    {
        CONTENT_TOO_LARGE,
        NO_ROUTE,
        NO_CONSUMERS,
        ACCESS_REFUSED,
        NOT_FOUND,
        RESOURCE_LOCKED,
        PRECONDITION_FAILED,
    }
)

REPLY_TEXT = {
    CONTENT_TOO_LARGE: "CONTENT_TOO_LARGE",
    NO_ROUTE: "NO_ROUTE",
    NO_CONSUMERS: "NO_CONSUMERS",
    CONNECTION_FORCED: "CONNECTION_FORCED",
    INVALID_PATH: "INVALID_PATH",
    ACCESS_REFUSED: "ACCESS_REFUSED",
    NOT_FOUND: "NOT_FOUND",
    RESOURCE_LOCKED: "RESOURCE_LOCKED",
    PRECONDITION_FAILED: "PRECONDITION_FAILED",
    FRAME_ERROR: "FRAME_ERROR",
    SYNTAX_ERROR: "SYNTAX_ERROR",
    COMMAND_INVALID: "COMMAND_INVALID",
    CHANNEL_ERROR: "CHANNEL_ERROR",
    UNEXPECTED_FRAME: "UNEXPECTED_FRAME",
    RESOURCE_ERROR: "RESOURCE_ERROR",
    NOT_ALLOWED: "NOT_ALLOWED",
    NOT_IMPLEMENTED: "NOT_IMPLEMENTED",
    INTERNAL_ERROR: "INTERNAL_ERROR",
}


class AMQPError(Exception):
    """The peer broke the protocol, or a command failed: carries the reply code,
    the reply text and the class/method ids of the offending method (0 when none).
    ``hard`` tells a connection exception from a channel exception."""

    def __init__(self, reply_code: int, text: str, class_id: int = 0, method_id: int = 0) -> None:
        self.reply_code = reply_code
        self.text = text
        self.class_id = class_id
        self.method_id = method_id
        super().__init__(f"{reply_code} {text}")

    @property
    def hard(self) -> bool:
        return self.reply_code not in SOFT_ERRORS

    @property
    def reply_text(self) -> str:
        """What goes on the wire: ``NOT_FOUND - no queue 'x'``, as RabbitMQ writes it."""
        name = REPLY_TEXT.get(self.reply_code, "ERROR")
        return f"{name} - {self.text}"[:255]


class ProtocolHeaderError(AMQPError):
    """The connection did not start with the AMQP 0.9.1 protocol header."""

    def __init__(self, text: str) -> None:
        super().__init__(FRAME_ERROR, text)


# --- events ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Method:
    """A method frame: ``method`` is a pamqp command (``commands.Basic.Publish``...)."""

    channel: int
    method: Any


@dataclass(frozen=True, slots=True)
class Header:
    """A content header: ``raw`` is the property flags and list as received (re-sent
    verbatim on delivery); ``properties`` the decoded ``Basic.Properties``."""

    channel: int
    class_id: int
    body_size: int
    properties: commands.Basic.Properties
    raw: bytes


@dataclass(frozen=True, slots=True)
class Body:
    channel: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Heartbeat:
    channel: int


@dataclass(frozen=True, slots=True)
class ProtocolHeader:
    """The 8-byte greeting (only ever the first event)."""


_FRAME_HEAD = struct.Struct(">BHI")
_PUBLISH_INDEX = commands.Basic.Publish.index
_U16 = struct.Struct(">H")
_CONTENT_HEAD_FLAGS = struct.Struct(">HHQH")  # class, weight, body size, property flags
_DELIVERY_MODE_ONLY = 0x1000
_U32 = struct.Struct(">I")


def is_amqp091(header: bytes) -> bool | None:
    """Port-sharing predicate: claim every ``AMQP`` greeting that is not AMQP 1.0's
    (``AMQP\x00\x01...``, ``AMQP\x03...``), so that a client asking for another
    0-x version gets our header back and a close, as the spec says; None while
    too few bytes arrived to tell."""
    n = min(len(header), 4)
    if header[:n] != b"AMQP"[:n]:
        return False
    if len(header) < 6:
        return None
    return not (header[4] == 3 or header[4:6] == b"\x00\x01")


def _shortstr(data: bytes, pos: int) -> tuple[str, int]:
    n = data[pos]
    end = pos + 1 + n
    if end > len(data):
        raise ValueError("short string runs past the frame")
    return data[pos + 1 : end].decode("utf-8"), end


def _decode_publish(payload: bytes) -> commands.Basic.Publish:
    """``basic.publish`` by hand: it is one per published message."""
    # payload[0:4] is the method index; then ticket (short), exchange, routing key, bits.
    exchange, pos = _shortstr(payload, 6)
    routing_key, pos = _shortstr(payload, pos)
    if pos >= len(payload):
        raise ValueError("basic.publish is truncated")
    bits = payload[pos]
    m = commands.Basic.Publish.__new__(commands.Basic.Publish)
    m.ticket = 0
    m.exchange = exchange
    m.routing_key = routing_key
    m.mandatory = bool(bits & 1)
    m.immediate = bool(bits & 2)
    return m


class FrameReader:
    """Incremental frame decoder for one connection (the server side).

    ``feed(data)`` then ``next_frame()`` until it returns None (need more data).
    ``frame_max`` is what the connection negotiated (0: the spec's ceiling, still
    bounded by ``max_buffer``); a bigger frame is a 501 before its payload is even
    buffered. ``expect_header`` is True until the protocol header was read.
    """

    __slots__ = ("_buf", "_pos", "expect_header", "frame_max")

    def __init__(self, frame_max: int = 131072) -> None:
        self._buf = bytearray()
        self._pos = 0
        self.expect_header = True
        self.frame_max = frame_max

    def feed(self, data: bytes) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def next_frame(self) -> Method | Header | Body | Heartbeat | ProtocolHeader | None:
        """The next whole frame, None when more bytes are needed; AMQPError if bad."""
        buf = self._buf
        pos = self._pos
        avail = len(buf) - pos
        if self.expect_header:
            if avail < 8:
                if bytes(buf[pos : pos + avail]) != PROTOCOL_HEADER[:avail]:
                    raise ProtocolHeaderError("bad protocol header")
                return None
            if bytes(buf[pos : pos + 8]) != PROTOCOL_HEADER:
                raise ProtocolHeaderError(f"bad protocol header {bytes(buf[pos : pos + 8])!r}")
            self._pos = pos + 8
            self.expect_header = False
            return ProtocolHeader()
        if avail < 7:
            return None
        ftype, channel, size = _FRAME_HEAD.unpack_from(buf, pos)
        if self.frame_max and size + FRAME_OVERHEAD > self.frame_max:
            raise AMQPError(
                FRAME_ERROR,
                f"frame of {size + FRAME_OVERHEAD} bytes exceeds frame-max {self.frame_max}",
            )
        end = pos + 7 + size
        if end + 1 > len(buf):
            return None
        if buf[end] != FRAME_END:
            raise AMQPError(FRAME_ERROR, f"bad frame end octet {buf[end]:#x}")
        payload = bytes(buf[pos + 7 : end])
        self._pos = end + 1
        if ftype == FRAME_BODY:
            return Body(channel, payload)
        if ftype == FRAME_METHOD:
            return Method(channel, self._method(payload))
        if ftype == FRAME_HEADER:
            return self._header(channel, payload)
        if ftype == FRAME_HEARTBEAT:
            if channel != 0:
                # the spec says 501; RabbitMQ answers 505, and so do we
                raise AMQPError(UNEXPECTED_FRAME, f"heartbeat frame on channel {channel}")
            return Heartbeat(channel)
        raise AMQPError(FRAME_ERROR, f"unknown frame type {ftype}")

    @staticmethod
    def _method(payload: bytes) -> Any:
        if len(payload) < 4:
            raise AMQPError(FRAME_ERROR, "method frame shorter than its method id")
        index = _U32.unpack_from(payload, 0)[0]
        class_id, method_id = index >> 16, index & 0xFFFF
        try:
            if index == _PUBLISH_INDEX:
                return _decode_publish(payload)
            cls = commands.INDEX_MAPPING.get(index)
            if cls is None:
                raise AMQPError(
                    COMMAND_INVALID, f"unknown method {class_id}.{method_id}", class_id, method_id
                )
            # pamqp's own method decoder wants the whole payload after the id.
            return pframe._unmarshal_method_frame(payload)
        except AMQPError:
            raise
        except Exception as exc:  # pamqp raises assorted types on malformed input
            # RabbitMQ: a method frame it cannot decode is a 501 frame error
            raise AMQPError(
                FRAME_ERROR,
                f"cannot decode method {class_id}.{method_id}: {exc}",
                class_id,
                method_id,
            ) from None

    @staticmethod
    def _header(channel: int, payload: bytes) -> Header:
        if len(payload) < 14:
            raise AMQPError(FRAME_ERROR, "content header frame is too short")
        class_id, _weight, body_size, flags = _CONTENT_HEAD_FLAGS.unpack_from(payload, 0)
        if (flags == _DELIVERY_MODE_ONLY and len(payload) == 15) or (
            flags == 0 and len(payload) == 14
        ):
            # the common publish (persistent or not, nothing else): no pamqp decoder
            props = commands.Basic.Properties()
            if flags:
                props.delivery_mode = payload[14]
            return Header(channel, class_id, body_size, props, payload[12:])
        try:
            ch = ContentHeader()
            ch.unmarshal(payload)
        except Exception as exc:  # pamqp raises assorted types on malformed input
            raise AMQPError(FRAME_ERROR, f"cannot decode content header: {exc}") from None
        return Header(channel, ch.class_id or 0, ch.body_size, ch.properties, payload[12:])


# --- encoding --------------------------------------------------------------------------


def encode_method(channel: int, method: Any) -> bytes:
    return pframe.marshal(method, channel)


def encode_heartbeat() -> bytes:
    return b"\x08\x00\x00\x00\x00\x00\x00\xce"


def _frame(ftype: int, channel: int, payload: bytes) -> bytes:
    return b"".join((_FRAME_HEAD.pack(ftype, channel, len(payload)), payload, b"\xce"))


def encode_properties(properties: commands.Basic.Properties | None) -> bytes:
    """Raw property flags + list (what :attr:`Header.raw` holds)."""
    if properties is None:
        return b"\x00\x00"
    return properties.marshal()


def encode_body_frames(channel: int, body: bytes, frame_max: int) -> list[bytes]:
    """Body frames, each at most ``frame_max`` bytes on the wire."""
    if not body:
        return []
    step = max(1, (frame_max or 131072) - FRAME_OVERHEAD)
    if len(body) <= step:
        return [_frame(FRAME_BODY, channel, body)]
    return [_frame(FRAME_BODY, channel, body[i : i + step]) for i in range(0, len(body), step)]


def encode_content(
    channel: int, method_frame: bytes, raw_props: bytes, body: bytes, frame_max: int
) -> bytes:
    """A content-bearing command: the method frame given, then header and bodies."""
    head = _frame(FRAME_HEADER, channel, struct.pack(">HHQ", 60, 0, len(body)) + raw_props)
    return b"".join((method_frame, head, *encode_body_frames(channel, body, frame_max)))


def short(value: str) -> str:
    """``value`` cut to a short string's 255 UTF-8 bytes on a character boundary (a
    routing key from a long MQTT topic), so that the peer can still decode it."""
    if len(value) <= 63:  # at most 4 bytes a character: always fits
        return value
    b = value.encode("utf-8")
    return value if len(b) <= 255 else b[:255].decode("utf-8", "ignore")


_SSTR: dict[str, bytes] = {}


def _sstr(value: str) -> bytes:
    """A short string field (length byte + UTF-8); the last few hundred distinct
    values (consumer tags, exchanges, routing keys) are kept encoded."""
    out = _SSTR.get(value)
    if out is None:
        b = short(value).encode("utf-8")
        out = bytes((len(b),)) + b
        if len(_SSTR) >= 512:
            _SSTR.clear()
        _SSTR[value] = out
    return out


_DELIVER_ID = struct.pack(">HH", 60, 60)
_DELIVER_TAG = struct.Struct(">QB")


def encode_deliver(
    channel: int,
    consumer_tag: str,
    delivery_tag: int,
    redelivered: bool,
    exchange: str,
    routing_key: str,
) -> bytes:
    """The ``basic.deliver`` method frame, by hand (one per delivered message)."""
    payload = b"".join(
        (
            _DELIVER_ID,
            _sstr(consumer_tag),
            _DELIVER_TAG.pack(delivery_tag, 1 if redelivered else 0),
            _sstr(exchange),
            _sstr(routing_key),
        )
    )
    return _frame(FRAME_METHOD, channel, payload)


_CONTENT_HEAD = struct.Struct(">HHQ")


def encode_delivery(
    channel: int,
    consumer_tag: str,
    delivery_tag: int,
    redelivered: bool,
    exchange: str,
    routing_key: str,
    raw_props: bytes,
    body: bytes,
    frame_max: int,
) -> bytes:
    """``encode_deliver`` + ``encode_content`` in one join for the common case (a
    body that fits one frame): one call per delivered message."""
    method = b"".join(
        (
            _DELIVER_ID,
            _sstr(consumer_tag),
            _DELIVER_TAG.pack(delivery_tag, 1 if redelivered else 0),
            _sstr(exchange),
            _sstr(routing_key),
        )
    )
    n = len(body)
    if not n or n > (frame_max or 131072) - FRAME_OVERHEAD:
        return encode_content(
            channel, _frame(FRAME_METHOD, channel, method), raw_props, body, frame_max
        )
    pack = _FRAME_HEAD.pack
    return b"".join(
        (
            pack(FRAME_METHOD, channel, len(method)),
            method,
            b"\xce",
            pack(FRAME_HEADER, channel, 12 + len(raw_props)),
            _CONTENT_HEAD.pack(60, 0, n),
            raw_props,
            b"\xce",
            pack(FRAME_BODY, channel, n),
            body,
            b"\xce",
        )
    )
