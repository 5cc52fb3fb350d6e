"""The same-host link's wire format: forwarded publishes between two nodes of one host.

Sans-IO, like :mod:`fluxmq_etcd.codec`: plain functions from the core's
:class:`~fluxmq_core.message.Message` to bytes and back. ``peers.py`` carries these
frames over a Unix domain socket between nodes on one host (the workers of
``fluxmq run --workers``), instead of the ``Forward`` RPC's protobuf over gRPC,
because the protobuf conversion and the gRPC call cost several local deliveries
per forwarded message. Everything else between nodes stays on gRPC.

The link carries exactly what a ``ForwardBatch`` carries, with the same rules:
every field of the message, ``None`` distinct from empty, key order of
``properties`` kept, tuples as lists, an int outside 64 bits as decimal text, and
the same refusals (:class:`~fluxmq_etcd.codec.CodecError`) for what cannot cross
nodes (a string that is not UTF-8, a ``datetime`` in ``properties``, a QoS outside
0-2 on receipt). A test checks both codecs against each other.

Frames (little-endian; every length in bytes)::

    frame    = u32 length-of-the-rest, u8 kind, body
    HELLO    = "FMQL", u8 version, u16 n, from-node, u16 n, to-node   (dialer -> server)
    WELCOME  = u16 n, node id                                        (server -> dialer)
    REFUSE   = u16 status, u32 n, details  (then the server closes)  (server -> dialer)
    BATCH    = u64 sequence, u32 count, count x entry                (dialer -> server)
    ACK      = u64 sequence, u16 status, u32 accepted, u32 n, details (server -> dialer)
    entry    = u32 n, target, message
    message  = u8 flags, u32 qos, f64 timestamp, u32 n x 4 (topic, payload,
               origin protocol, origin client), those four, then the optional
               fields the flags name, in flag order:
               properties (struct), user properties (u32 count, pairs of u32 n +
               UTF-8), content type (u32 n + UTF-8), correlation data (u32 n +
               bytes), response topic (u32 n + UTF-8), payload format (i64),
               expires at (f64)
    struct   = u32 count, count x (u32 n, key, value)
    value    = u8 tag, then: nothing (None, False, True), i64 (int), f64 (float),
               u32 n + UTF-8 (str, big int as decimal), u32 n + bytes (bytes),
               u32 count + values (list), struct (dict)

Statuses are gRPC status code numbers (0 = OK), so an answer means what the same
answer to a ``Forward`` RPC means. Anything that does not parse raises
:class:`LinkError` (a :class:`~fluxmq_etcd.codec.CodecError`) naming what is wrong.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from typing import Any

from fluxmq_core.message import Message

from .codec import MAX_DEPTH, CodecError

__all__ = [
    "ACK",
    "BATCH",
    "HELLO",
    "MAGIC",
    "REFUSE",
    "VERSION",
    "WELCOME",
    "LinkError",
    "batch_sequence",
    "decode_ack",
    "decode_batch",
    "decode_hello",
    "decode_refuse",
    "decode_welcome",
    "encode_ack",
    "encode_batch",
    "encode_hello",
    "encode_message",
    "encode_refuse",
    "encode_welcome",
    "frame_length",
]

MAGIC = b"FMQL"
VERSION = 1

HELLO = 1
WELCOME = 2
REFUSE = 3
BATCH = 4
ACK = 5
KINDS = frozenset({HELLO, WELCOME, REFUSE, BATCH, ACK})

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")
_FRAME = struct.Struct("<IB")  # length of kind + body, kind
_BATCH_HEAD = struct.Struct("<IBQI")  # frame head, sequence, count
_ACK = struct.Struct("<QHII")
_HEAD = struct.Struct("<BIdIIII")  # flags, qos, timestamp, 4 lengths
_EMPTY_TARGET = _U32.pack(0)

_RETAIN = 1
_PROPERTIES = 2
_USER_PROPERTIES = 4
_CONTENT_TYPE = 8
_CORRELATION = 16
_RESPONSE_TOPIC = 32
_PAYLOAD_FORMAT = 64
_EXPIRES_AT = 128

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_U32_MAX = 2**32 - 1

# Value tags.
_NONE, _FALSE, _TRUE, _INT, _FLOAT, _STR, _BYTES, _LIST, _DICT, _BIGINT = range(10)

#: Key of the encoded form in ``Message.encoded``: a message forwarded to several
#: peers is encoded once.
_CACHE_KEY = ("fluxmq-etcd", "link")


class LinkError(CodecError):
    """Bytes that are not a valid link frame; says what is wrong."""


# --- encoding ------------------------------------------------------------------------


def _text(value: Any, path: str) -> bytes:
    """A string field as UTF-8 (bytes that are UTF-8 pass, as protobuf lets them)."""
    if type(value) is str:
        try:
            return value.encode()
        except UnicodeEncodeError as exc:
            raise CodecError(f"{path}: string is not valid UTF-8 ({exc})") from None
    if isinstance(value, str):
        return _text(str(value), path)
    if isinstance(value, bytes):
        try:
            value.decode()
        except UnicodeDecodeError as exc:
            raise CodecError(f"{path}: bytes are not valid UTF-8 ({exc})") from None
        return bytes(value)
    raise CodecError(f"{path}: expected a str, got a {type(value).__name__}")


def _blob(value: Any, path: str) -> bytes:
    if isinstance(value, bytes):
        return value
    raise CodecError(f"{path}: expected bytes, got a {type(value).__name__}")


def _number(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CodecError(f"{path}: expected a number, got a {type(value).__name__}")
    return float(value)


def _value(out: list[bytes], value: Any, path: str, depth: int) -> None:
    t = type(value)
    if value is None:
        out.append(b"\x00")
    elif t is bool:
        out.append(b"\x02" if value else b"\x01")
    elif t is str:
        raw = _text(value, path)
        out.append(_U8.pack(_STR) + _U32.pack(len(raw)))
        out.append(raw)
    elif t is int:
        if _INT64_MIN <= value <= _INT64_MAX:
            out.append(_U8.pack(_INT) + _I64.pack(value))
        else:
            raw = str(value).encode()
            out.append(_U8.pack(_BIGINT) + _U32.pack(len(raw)))
            out.append(raw)
    elif t is float:
        out.append(_U8.pack(_FLOAT) + _F64.pack(value))
    elif t in (bytes, bytearray, memoryview):
        raw = bytes(value)
        out.append(_U8.pack(_BYTES) + _U32.pack(len(raw)))
        out.append(raw)
    elif isinstance(value, list | tuple):
        if depth >= MAX_DEPTH:
            raise CodecError(f"{path}: nested deeper than {MAX_DEPTH} levels")
        out.append(_U8.pack(_LIST) + _U32.pack(len(value)))
        for i, item in enumerate(value):
            _value(out, item, f"{path}[{i}]", depth + 1)
    elif isinstance(value, Mapping):
        if depth >= MAX_DEPTH:
            raise CodecError(f"{path}: nested deeper than {MAX_DEPTH} levels")
        out.append(_U8.pack(_DICT))
        _struct(out, value, path, depth + 1)
    elif isinstance(value, bool | int | float | str | bytes):  # subclasses (IntEnum...)
        base: type[Any]
        for base in (bool, int, float, str, bytes):
            if isinstance(value, base):
                _value(out, base(value), path, depth)
                return
    else:
        raise CodecError(
            f"{path}: a {type(value).__name__} cannot cross nodes (storable values are "
            "None, bool, int, float, str, bytes, lists and str-keyed dicts of those)"
        )


def _struct(out: list[bytes], mapping: Mapping[Any, Any], path: str, depth: int) -> None:
    out.append(_U32.pack(len(mapping)))
    for key, item in mapping.items():
        if type(key) is not str:
            raise CodecError(f"{path}: key {key!r} is not a string")
        raw = _text(key, path)
        out.append(_U32.pack(len(raw)))
        out.append(raw)
        _value(out, item, f"{path}.{key}", depth)


def encode_message(message: Message, *, cache: bool = True) -> bytes:
    """The link form of ``message`` (without its target). With ``cache`` it is kept
    in ``message.encoded``, so a message forwarded to several peers is encoded once.
    :class:`~fluxmq_etcd.codec.CodecError` for a field that cannot cross nodes."""
    m = message
    enc = m.encoded
    if cache and enc is not None:
        hit = enc.get(_CACHE_KEY)
        if hit is not None:
            return hit
    topic = m.topic
    payload = m.payload
    op = m.origin_protocol
    oc = m.origin_client
    qos = m.qos
    ts = m.timestamp
    retain = m.retain
    out: bytes | None = None
    if (
        # The common message: plain types, no optional field (one pack, one join).
        type(topic) is str
        and type(payload) is bytes
        and type(op) is str
        and type(oc) is str
        and type(qos) is int
        and type(ts) is float
        and (retain is False or retain is True)
        and m.properties is None
        and m.user_properties is None
        and m.content_type is None
        and m.correlation_data is None
        and m.response_topic is None
        and m.payload_format is None
        and m.expires_at is None
    ):
        try:
            tb = topic.encode()
            opb = op.encode()
            ocb = oc.encode()
            head = _HEAD.pack(retain, qos, ts, len(tb), len(payload), len(opb), len(ocb))
            out = b"".join((head, tb, payload, opb, ocb))
        except (UnicodeEncodeError, struct.error):
            out = None  # the full path says what is wrong
    if out is None:
        out = _encode_full(m)
    if cache:
        if enc is None:
            m.encoded = enc = {}
        enc[_CACHE_KEY] = out
    return out


def _encode_full(m: Message) -> bytes:
    """:func:`encode_message` for any message, checking every field."""
    topic = m.topic
    tb = _text(topic, "topic")
    payload = _blob(m.payload, f"message on {topic!r}: payload")
    opb = _text(m.origin_protocol, "origin_protocol")
    ocb = _text(m.origin_client, "origin_client")
    qos = m.qos
    if type(qos) is not int and (isinstance(qos, bool) or not isinstance(qos, int)):
        raise CodecError(f"message on {topic!r}: QoS {qos!r} is not an int")
    if not 0 <= qos <= _U32_MAX:
        raise CodecError(f"message on {topic!r}: QoS {qos!r} is not an unsigned 32-bit int")
    retain = m.retain
    if retain is not True and retain is not False:
        if isinstance(retain, int):
            retain = bool(retain)
        else:
            raise CodecError(f"message on {topic!r}: retain {retain!r} is not a bool")
    flags = _RETAIN if retain else 0
    tail: list[bytes] = []
    if m.properties is not None:
        flags |= _PROPERTIES
        if not isinstance(m.properties, Mapping):
            raise CodecError("message.properties: not a mapping")
        _struct(tail, m.properties, "message.properties", 0)
    up = m.user_properties
    if up is not None:
        flags |= _USER_PROPERTIES
        pairs: list[bytes] = []
        try:
            for k, v in up:
                kb = _text(k, "message.user_properties")
                vb = _text(v, "message.user_properties")
                pairs += (_U32.pack(len(kb)), kb, _U32.pack(len(vb)), vb)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, CodecError):
                raise
            raise CodecError(f"message.user_properties: {exc}") from None
        tail.append(_U32.pack(len(pairs) // 4))
        tail += pairs
    if m.content_type is not None:
        flags |= _CONTENT_TYPE
        raw = _text(m.content_type, f"message on {topic!r}: content_type")
        tail += (_U32.pack(len(raw)), raw)
    if m.correlation_data is not None:
        flags |= _CORRELATION
        raw = _blob(m.correlation_data, f"message on {topic!r}: correlation_data")
        tail += (_U32.pack(len(raw)), raw)
    if m.response_topic is not None:
        flags |= _RESPONSE_TOPIC
        raw = _text(m.response_topic, f"message on {topic!r}: response_topic")
        tail += (_U32.pack(len(raw)), raw)
    pf = m.payload_format
    if pf is not None:
        flags |= _PAYLOAD_FORMAT
        if isinstance(pf, bool) or not isinstance(pf, int):
            raise CodecError(f"message on {topic!r}: payload_format {pf!r} is not an int")
        if not _INT64_MIN <= pf <= _INT64_MAX:
            raise CodecError(f"message on {topic!r}: payload_format {pf} is out of 64-bit range")
        tail.append(_I64.pack(pf))
    if m.expires_at is not None:
        flags |= _EXPIRES_AT
        tail.append(_F64.pack(_number(m.expires_at, f"message on {topic!r}: expires_at")))
    ts = _number(m.timestamp, f"message on {topic!r}: timestamp")
    head = _HEAD.pack(flags, qos, ts, len(tb), len(payload), len(opb), len(ocb))
    return b"".join((head, tb, payload, opb, ocb, *tail))


def encode_batch(sequence: int, entries: Iterable[tuple[bytes, str]]) -> bytes:
    """A BATCH frame of ``(encoded message, target)`` pairs (see :func:`encode_message`;
    target ``""``: local fan-out on the receiving node)."""
    parts: list[bytes] = [b""]
    count = 0
    empty = _EMPTY_TARGET
    pack = _U32.pack
    for encoded, target in entries:
        if target:
            raw = _text(target, "target")
            parts += (pack(len(raw)), raw)
        else:
            parts.append(empty)
        parts.append(encoded)
        count += 1
    body = b"".join(parts)
    return _BATCH_HEAD.pack(len(body) + 13, BATCH, sequence, count) + body


def _frame(kind: int, body: bytes) -> bytes:
    return _FRAME.pack(len(body) + 1, kind) + body


def _short(text: str, what: str) -> bytes:
    raw = _text(text, what)
    if len(raw) > 0xFFFF:
        raise CodecError(f"{what}: longer than 65535 bytes")
    return _U16.pack(len(raw)) + raw


def encode_hello(from_node: str, to_node: str) -> bytes:
    return _frame(
        HELLO, MAGIC + _U8.pack(VERSION) + _short(from_node, "node id") + _short(to_node, "node id")
    )


def encode_welcome(node_id: str) -> bytes:
    return _frame(WELCOME, _short(node_id, "node id"))


def _details(details: str) -> bytes:
    raw = details.encode(errors="replace")[:4096]
    return _U32.pack(len(raw)) + raw


def encode_refuse(status: int, details: str) -> bytes:
    return _frame(REFUSE, _U16.pack(status) + _details(details))


def encode_ack(sequence: int, status: int, accepted: int, details: str = "") -> bytes:
    raw = details.encode(errors="replace")[:4096]
    return _frame(ACK, _ACK.pack(sequence, status, accepted, len(raw)) + raw)


# --- decoding ------------------------------------------------------------------------


def frame_length(head: bytes, limit: int) -> int:
    """The length of the rest of a frame from its 4-byte head; :class:`LinkError`
    when it is empty or longer than ``limit``."""
    (n,) = _U32.unpack(head)
    if n < 1:
        raise LinkError("empty frame")
    if n > limit:
        raise LinkError(f"frame of {n} bytes exceeds the limit of {limit}")
    return n


class _Reader:
    """A cursor over one frame's body; every read checks the bounds."""

    __slots__ = ("data", "pos", "what")

    def __init__(self, data: bytes, pos: int, what: str) -> None:
        self.data = data
        self.pos = pos
        self.what = what

    def take(self, n: int) -> bytes:
        p = self.pos
        end = p + n
        if end > len(self.data):
            raise LinkError(f"{self.what}: truncated (needs {end - len(self.data)} more bytes)")
        self.pos = end
        return self.data[p:end]

    def unpack(self, s: struct.Struct) -> Any:
        p = self.pos
        if p + s.size > len(self.data):
            raise LinkError(f"{self.what}: truncated")
        self.pos = p + s.size
        return s.unpack_from(self.data, p)

    def u32(self) -> int:
        return int(self.unpack(_U32)[0])

    def text(self, n: int, path: str) -> str:
        try:
            return self.take(n).decode()
        except UnicodeDecodeError as exc:
            raise LinkError(f"{self.what}: {path} is not valid UTF-8 ({exc})") from None

    def count(self, path: str, least: int = 1) -> int:
        """A count of items each at least ``least`` bytes long: bounded by the bytes left."""
        n = self.u32()
        if n * least > len(self.data) - self.pos:
            raise LinkError(f"{self.what}: {path} claims {n} items, more than the frame holds")
        return n

    def done(self) -> None:
        if self.pos != len(self.data):
            raise LinkError(f"{self.what}: {len(self.data) - self.pos} stray bytes at the end")


def _read_value(r: _Reader, path: str, depth: int) -> Any:
    # ``path`` names the container only (cheap): errors say where, not the exact key.
    (tag,) = r.unpack(_U8)
    if tag == _STR:
        return r.text(r.u32(), path)
    if tag == _INT:
        return r.unpack(_I64)[0]
    if tag == _NONE:
        return None
    if tag == _TRUE:
        return True
    if tag == _FALSE:
        return False
    if tag == _FLOAT:
        return r.unpack(_F64)[0]
    if tag == _BYTES:
        return r.take(r.u32())
    if tag in (_LIST, _DICT):
        if depth >= MAX_DEPTH:
            raise LinkError(f"{r.what}: {path} nested deeper than {MAX_DEPTH} levels")
        if tag == _DICT:
            return _read_struct(r, path, depth + 1)
        n = r.count(path)
        return [_read_value(r, path, depth + 1) for _ in range(n)]
    if tag == _BIGINT:
        text = r.text(r.u32(), path)
        if not text or not text.lstrip("-").isdecimal() or not text.isascii():
            raise LinkError(f"{r.what}: {path}: big int {text[:40]!r} is not decimal")
        return int(text)
    raise LinkError(f"{r.what}: {path}: unknown value tag {tag}")


def _read_struct(r: _Reader, path: str, depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for _ in range(r.count(path, 5)):
        key = r.text(r.u32(), path)
        out[key] = _read_value(r, path, depth)
    return out


def _read_optional(r: _Reader, m: Message, flags: int) -> None:
    """The optional fields of a message whose flags name some, into ``m``."""
    if flags & _PROPERTIES:
        m.properties = _read_struct(r, "message.properties", 0)
    if flags & _USER_PROPERTIES:
        m.user_properties = [
            (r.text(r.u32(), "user property"), r.text(r.u32(), "user property"))
            for _ in range(r.count("user properties", 8))
        ]
    if flags & _CONTENT_TYPE:
        m.content_type = r.text(r.u32(), "content_type")
    if flags & _CORRELATION:
        m.correlation_data = r.take(r.u32())
    if flags & _RESPONSE_TOPIC:
        m.response_topic = r.text(r.u32(), "response_topic")
    if flags & _PAYLOAD_FORMAT:
        m.payload_format = r.unpack(_I64)[0]
    if flags & _EXPIRES_AT:
        m.expires_at = r.unpack(_F64)[0]


def decode_batch(body: bytes) -> tuple[int, list[tuple[Message, str]]]:
    """``(sequence, [(message, target), ...])`` of a BATCH frame's body (the bytes
    after the kind); :class:`LinkError` when it does not parse."""
    if len(body) < _BATCH_TAIL.size:
        raise LinkError("forward batch: truncated before its sequence number")
    sequence, count = _BATCH_TAIL.unpack_from(body)
    what = f"forward batch {sequence}"
    size = len(body)
    if count * (4 + _HEAD.size) > size - _BATCH_TAIL.size:
        raise LinkError(f"{what}: claims {count} messages, more than the frame holds")
    out: list[tuple[Message, str]] = []
    append = out.append
    unpack_u32 = _U32.unpack_from
    unpack_head = _HEAD.unpack_from
    head_size = _HEAD.size
    reader: _Reader | None = None
    new_message = Message.__new__
    last_n, last_raw, last_topic = -1, b"", ""
    p = _BATCH_TAIL.size
    try:
        for _ in range(count):
            (nt,) = unpack_u32(body, p)
            p += 4
            if nt:
                if p + nt > size:
                    raise LinkError(f"{what}: truncated target")
                target = body[p : p + nt].decode()
                p += nt
            else:
                target = ""
            flags, qos, ts, ntop, npl, nop, noc = unpack_head(body, p)
            p += head_size
            end = p + ntop + npl + nop + noc
            if end > size:
                raise LinkError(f"{what}: message truncated")
            e = p + ntop
            if ntop == last_n and body.startswith(last_raw, p):
                # A batch is mostly runs of one topic: one string for the run, so
                # its hash (the router's and the writers' cache keys) is made once.
                topic = last_topic
            else:
                last_raw = body[p:e]
                topic = last_topic = last_raw.decode()
                last_n = ntop
            p = e + npl
            payload = body[e:p]
            e = p + nop
            op = body[p:e].decode()
            oc = body[e:end].decode()
            p = end
            if qos > 2:
                raise LinkError(f"message on {topic!r}: QoS {qos} is not 0, 1 or 2")
            # Message(...) with keywords, without the keyword call (a third of
            # the decode); every slot is set (a test holds this to the class).
            m = new_message(Message)
            m.topic = topic
            m.payload = payload
            m.qos = qos
            m.retain = flags & _RETAIN == 1
            m.properties = None
            m.user_properties = None
            m.content_type = None
            m.correlation_data = None
            m.response_topic = None
            m.payload_format = None
            m.expires_at = None
            m.origin_protocol = op
            m.origin_client = oc
            m.timestamp = ts
            m.encoded = None
            if flags > _RETAIN:
                if reader is None:
                    reader = _Reader(body, p, what)
                reader.pos = p
                _read_optional(reader, m, flags)
                p = reader.pos
            append((m, target))
    except struct.error:
        raise LinkError(f"{what}: truncated") from None
    except UnicodeDecodeError as exc:
        raise LinkError(f"{what}: a string is not valid UTF-8 ({exc})") from None
    if p != size:
        raise LinkError(f"{what}: {size - p} stray bytes at the end")
    return sequence, out


_BATCH_TAIL = struct.Struct("<QI")


def batch_sequence(body: bytes) -> int:
    """The sequence number of a BATCH frame's body, to answer even a batch that
    does not decode; :class:`LinkError` when the body is too short to hold one."""
    if len(body) < _BATCH_TAIL.size:
        raise LinkError("forward batch: truncated before its sequence number")
    return int(_BATCH_TAIL.unpack_from(body)[0])


def decode_hello(body: bytes) -> tuple[str, str]:
    """``(from_node, to_node)`` of a HELLO frame's body."""
    r = _Reader(body, 0, "hello")
    if r.take(4) != MAGIC:
        raise LinkError("hello: not a FluxMQ cluster link (bad magic)")
    (version,) = r.unpack(_U8)
    if version != VERSION:
        raise LinkError(f"hello: link version {version}, this node speaks {VERSION}")
    from_node = r.text(r.unpack(_U16)[0], "node id")
    to_node = r.text(r.unpack(_U16)[0], "node id")
    r.done()
    if not from_node:
        raise LinkError("hello: no caller node id")
    return from_node, to_node


def decode_welcome(body: bytes) -> str:
    r = _Reader(body, 0, "welcome")
    node = r.text(r.unpack(_U16)[0], "node id")
    r.done()
    return node


def decode_refuse(body: bytes) -> tuple[int, str]:
    r = _Reader(body, 0, "refuse")
    (status,) = r.unpack(_U16)
    details = r.take(r.u32()).decode(errors="replace")
    r.done()
    return status, details


def decode_ack(body: bytes) -> tuple[int, int, int, str]:
    """``(sequence, status, accepted, details)`` of an ACK frame's body."""
    r = _Reader(body, 0, "ack")
    sequence, status, accepted, n = r.unpack(_ACK)
    details = r.take(n).decode(errors="replace")
    r.done()
    return sequence, status, accepted, details
