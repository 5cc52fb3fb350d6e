"""Value encoding: records and messages as compact, tagged binary.

Records crossing the storage interface are trees of ``None``, ``bool``, ``int``,
``float``, ``str``, ``bytes``, lists and ``str``-keyed dicts. JSON cannot hold
bytes without an escape convention that a user's own keys could collide with,
``marshal`` is not promised to be stable across Python versions and ``pickle``
executes code on load; so values are written in a small self-describing format of
our own, stable by construction and documented in ``docs/storage.md``:

====  =====================================================================
tag   value
====  =====================================================================
``N`` ``None``
``T`` ``True``            ``F`` ``False``
``i`` int, 8 bytes little-endian signed (``I``: u32 length + two's complement
      little-endian bytes, for ints beyond 64 bits)
``d`` float, IEEE 754 double little-endian
``s`` str: u32 length + UTF-8          ``b`` bytes: u32 length + raw
``l`` list: u32 count + values         ``m`` dict: u32 count + (str key, value)
====  =====================================================================

A :class:`~fluxmq_core.message.Message` is a version byte (``1``) followed by the
list of its fields in a fixed order (:data:`MESSAGE_FIELDS`). Decoding rebuilds
fresh objects, so nothing read out shares state with anything stored.

What this module deliberately does not do: framing, CRCs or compression; those
belong to the log files.
"""

from __future__ import annotations

import struct
from typing import Any

from fluxmq_core.message import Message

_Q = struct.Struct("<q")
_D = struct.Struct("<d")
_U32 = struct.Struct("<I")
_TAG_LEN = struct.Struct("<BI")  # a tag and a u32 length (str, bytes, dict)
_TAG_Q = struct.Struct("<Bq")
_TAG_D = struct.Struct("<Bd")
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1

MESSAGE_VERSION = 1
MESSAGE_FIELDS = (
    "topic", "payload", "qos", "retain", "properties", "user_properties", "content_type",
    "correlation_data", "response_topic", "payload_format", "expires_at", "origin_protocol",
    "origin_client", "timestamp",
)  # fmt: skip


def _enc(value: Any, out: list[bytes], where: str) -> None:
    t = type(value)
    if t is str:
        b = value.encode()
        out.append(b"s" + _U32.pack(len(b)))
        out.append(b)
    elif t is bytes:
        out.append(b"b" + _U32.pack(len(value)))
        out.append(value)
    elif value is None:
        out.append(b"N")
    elif t is bool:
        out.append(b"T" if value else b"F")
    elif t is int:
        if _INT64_MIN <= value <= _INT64_MAX:
            out.append(b"i" + _Q.pack(value))
        else:
            raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
            out.append(b"I" + _U32.pack(len(raw)))
            out.append(raw)
    elif t is float:
        out.append(b"d" + _D.pack(value))
    elif t is dict:
        out.append(b"m" + _U32.pack(len(value)))
        for k, v in value.items():
            if type(k) is not str:
                raise TypeError(f"{where}: keys must be str, got {k!r}")
            kb = k.encode()
            out.append(_U32.pack(len(kb)))
            out.append(kb)
            _enc(v, out, where)
    elif t is list or t is tuple:
        out.append(b"l" + _U32.pack(len(value)))
        for v in value:
            _enc(v, out, where)
    elif isinstance(value, (bytearray, memoryview)):
        _enc(bytes(value), out, where)
    elif isinstance(value, bool):  # pragma: no cover - bool subclasses do not exist
        out.append(b"T" if value else b"F")
    elif isinstance(value, int):
        _enc(int(value), out, where)
    elif isinstance(value, float):
        _enc(float(value), out, where)
    elif isinstance(value, str):
        _enc(str(value), out, where)
    else:
        raise TypeError(
            f"{where}: {type(value).__name__} is not storable "
            "(use None, bool, int, float, str, bytes, list or dict)"
        )


def encode_value(value: Any, where: str = "record") -> bytes:
    """Encode one storable value; ``TypeError`` names what is not storable."""
    out: list[bytes] = []
    _enc(value, out, where)
    return b"".join(out)


def _dec(buf: bytes, i: int) -> tuple[Any, int]:
    tag = buf[i]
    i += 1
    if tag == 0x73:  # s
        (n,) = _U32.unpack_from(buf, i)
        i += 4
        return buf[i : i + n].decode(), i + n
    if tag == 0x62:  # b
        (n,) = _U32.unpack_from(buf, i)
        i += 4
        return bytes(buf[i : i + n]), i + n
    if tag == 0x69:  # i
        return _Q.unpack_from(buf, i)[0], i + 8
    if tag == 0x4E:  # N
        return None, i
    if tag == 0x54:  # T
        return True, i
    if tag == 0x46:  # F
        return False, i
    if tag == 0x64:  # d
        return _D.unpack_from(buf, i)[0], i + 8
    if tag == 0x6D:  # m
        (n,) = _U32.unpack_from(buf, i)
        i += 4
        d = {}
        for _ in range(n):
            (kn,) = _U32.unpack_from(buf, i)
            i += 4
            k = buf[i : i + kn].decode()
            i += kn
            d[k], i = _dec(buf, i)
        return d, i
    if tag == 0x6C:  # l
        (n,) = _U32.unpack_from(buf, i)
        i += 4
        items = []
        for _ in range(n):
            v, i = _dec(buf, i)
            items.append(v)
        return items, i
    if tag == 0x49:  # I
        (n,) = _U32.unpack_from(buf, i)
        i += 4
        return int.from_bytes(buf[i : i + n], "little", signed=True), i + n
    raise ValueError(f"unknown value tag {tag:#x} at byte {i - 1}")


def decode_value(buf: bytes) -> Any:
    """Decode what :func:`encode_value` wrote; ``ValueError`` on garbage."""
    try:
        value, end = _dec(buf, 0)
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise ValueError(f"undecodable value: {exc}") from None
    if end != len(buf):
        raise ValueError(f"undecodable value: {len(buf) - end} trailing bytes")
    return value


#: The value types the codec gives back as they were stored (a subclass, a
#: bytearray or a tuple comes back as its base type or a list).
_EXACT = frozenset((str, bytes, int, float, bool, type(None)))
_new_message = Message.__new__

_MESSAGE_PREFIX = bytes([MESSAGE_VERSION]) + b"l" + _U32.pack(len(MESSAGE_FIELDS))


def encode_message(m: Message) -> bytes:
    """A message as version byte + its fields in :data:`MESSAGE_FIELDS` order.

    Byte-for-byte what ``encode_value`` would write for the field list, with the
    common scalar cases inlined: this runs once per stored message."""
    return encode_message_exact(m)[0]


#: origin client -> the last common-shape message it stored: its topic, QoS, retain
#: flag, origin protocol, properties (items, their value and key types) and the
#: encoded bytes before the payload and between the payload and the timestamp. A
#: next message equal in all of these, type for type and in the same property
#: order, encodes to the same bytes there, so only its payload and timestamp are
#: packed. Bounded: at most 1,024 shapes of at most 512 encoded bytes besides the
#: payload each (about 1 MiB), all forgotten when full.
_SHAPES: dict[str, tuple[Any, ...]] = {}
_SHAPES_MAX = 1024
_SHAPE_BYTES_MAX = 512


def encode_message_exact(m: Message) -> tuple[bytes, bool]:
    """:func:`encode_message`, and whether every value of ``m`` is of a type the
    codec gives back unchanged (``None``, ``bool``, ``int``, ``float``, ``str``,
    ``bytes``; no container but the properties dict and the user-property pairs),
    so that :func:`snapshot_message` may copy it without checking it again.

    The common shape (no user properties, content type, correlation data, response
    topic, payload format or expiry; plain scalars elsewhere; properties of str,
    bytes and 64-bit ints) is packed without the per-field dispatch, and when it
    repeats the previous message of the same origin client but for the payload and
    timestamp, from that message's bytes (:data:`_SHAPES`)."""
    props = m.properties
    up = m.user_properties
    topic, payload, qos, retain = m.topic, m.payload, m.qos, m.retain
    oproto, oclient, ts = m.origin_protocol, m.origin_client, m.timestamp
    if (
        up is None and m.content_type is None and m.correlation_data is None
        and m.response_topic is None and m.payload_format is None and m.expires_at is None
        and type(topic) is str and type(payload) is bytes and type(qos) is int
        and type(retain) is bool and type(oproto) is str and type(oclient) is str
        and type(ts) is float and _INT64_MIN <= qos <= _INT64_MAX
    ):  # fmt: skip
        shape = _SHAPES.get(oclient)
        if (
            shape is not None and shape[0] == topic and shape[1] == qos
            and shape[2] is retain and shape[3] == oproto
        ):  # fmt: skip
            items = shape[4]
            if (
                props is None
                if items is None
                else (
                    props is not None
                    and tuple(props.items()) == items
                    and tuple(map(type, props.values())) == shape[5]
                    and tuple(map(type, props)) == shape[6]
                )
            ):
                return b"".join(
                    (shape[7], _TAG_LEN.pack(0x62, len(payload)), payload, shape[8],
                     _TAG_D.pack(0x64, ts))
                ), True  # fmt: skip
        tb, pb, cb = topic.encode(), oproto.encode(), oclient.encode()
        out = [_MESSAGE_PREFIX, _TAG_LEN.pack(0x73, len(tb)), tb,
               _TAG_LEN.pack(0x62, len(payload)), payload,
               _TAG_Q.pack(0x69, qos), b"T" if retain else b"F"]  # fmt: skip
        if props is None:
            out.append(b"N")
        else:
            append = out.append
            append(_TAG_LEN.pack(0x6D, len(props)))
            for k, x in props.items():
                if type(k) is not str:
                    raise TypeError(f"message: keys must be str, got {k!r}")
                kb = k.encode()
                append(_U32.pack(len(kb)))
                append(kb)
                tx = type(x)
                if tx is str:
                    b = x.encode()
                    append(_TAG_LEN.pack(0x73, len(b)))
                    append(b)
                elif tx is bytes:
                    append(_TAG_LEN.pack(0x62, len(x)))
                    append(x)
                elif tx is int and _INT64_MIN <= x <= _INT64_MAX:
                    append(_TAG_Q.pack(0x69, x))
                else:
                    return _encode_message_exact(m)
        out += (b"NNNNNN", _TAG_LEN.pack(0x73, len(pb)), pb, _TAG_LEN.pack(0x73, len(cb)), cb,
                _TAG_D.pack(0x64, ts))  # fmt: skip
        data = b"".join(out)
        h = len(_MESSAGE_PREFIX) + 5 + len(tb)
        if len(data) - len(payload) > _SHAPE_BYTES_MAX:
            return data, True  # not kept: a large topic or properties
        if len(_SHAPES) >= _SHAPES_MAX:
            _SHAPES.clear()
        _SHAPES[oclient] = (
            topic, qos, retain, oproto,
            None if props is None else tuple(props.items()),
            None if props is None else tuple(map(type, props.values())),
            None if props is None else tuple(map(type, props)),
            data[:h], data[h + 5 + len(payload) : -9],
        )  # fmt: skip
        return data, True
    return _encode_message_exact(m)


def _encode_message_exact(m: Message) -> tuple[bytes, bool]:
    """:func:`encode_message_exact` for any message, field by field."""
    props = m.properties
    up = m.user_properties
    pairs = None if up is None else [[k, v] for k, v in up]
    out: list[bytes] = [_MESSAGE_PREFIX]
    append = out.append
    exact = True
    v: Any  # the fields' types differ; the `type(v) is` checks below pick the encoding
    for v in (
        m.topic, m.payload, m.qos, m.retain, props, pairs,
        m.content_type, m.correlation_data, m.response_topic, m.payload_format,
        m.expires_at, m.origin_protocol, m.origin_client, m.timestamp,
    ):  # fmt: skip
        t = type(v)
        if v is None:
            append(b"N")
        elif t is str:
            b = v.encode()
            append(b"s" + _U32.pack(len(b)))
            append(b)
        elif t is bytes:
            append(b"b" + _U32.pack(len(v)))
            append(v)
        elif t is bool:
            append(b"T" if v else b"F")
        elif t is int and _INT64_MIN <= v <= _INT64_MAX:
            append(b"i" + _Q.pack(v))
        elif t is float:
            append(b"d" + _D.pack(v))
        elif t is dict:  # the properties: str and bytes values inlined
            if v is not props:
                exact = False
            append(b"m" + _U32.pack(len(v)))
            for k, x in v.items():
                if type(k) is not str:
                    raise TypeError(f"message: keys must be str, got {k!r}")
                kb = k.encode()
                append(_U32.pack(len(kb)))
                append(kb)
                tx = type(x)
                if tx is str:
                    b = x.encode()
                    append(b"s" + _U32.pack(len(b)))
                    append(b)
                elif tx is bytes:
                    append(b"b" + _U32.pack(len(x)))
                    append(x)
                else:
                    if tx not in _EXACT:
                        exact = False
                    _enc(x, out, "message")
        else:
            if v is not pairs:
                exact = False
            elif exact:
                for k, x in pairs or ():
                    if type(k) not in _EXACT or type(x) not in _EXACT:
                        exact = False
                        break
            _enc(v, out, "message")
    return b"".join(out), exact


def decode_message(buf: bytes | None) -> Message:
    """Decode what :func:`encode_message` wrote; ``ValueError`` for anything else,
    including ``None`` (a record the engine does not hold), so callers can pass a
    lookup's result as it is.

    The fields are read in one flat loop with the scalar tags inlined (this runs
    once per message read from a queue); dicts, lists and big ints go through
    :func:`_dec`. The result is the same as ``decode_value`` of the field list."""
    if not buf or buf[0] != MESSAGE_VERSION:
        raise ValueError("not an encoded message (bad version byte)")
    if not buf.startswith(_MESSAGE_PREFIX):
        return _decode_message_slow(buf)
    m = _decode_common(buf)
    if m is not None:
        return m
    f: list[Any] = []
    append = f.append
    unpack_u32, unpack_q, unpack_d = _U32.unpack_from, _Q.unpack_from, _D.unpack_from
    i = len(_MESSAGE_PREFIX)
    try:
        for _ in range(_NFIELDS):
            tag = buf[i]
            if tag == 0x4E:  # N
                append(None)
                i += 1
            elif tag == 0x73:  # s
                (n,) = unpack_u32(buf, i + 1)
                i += 5
                append(buf[i : i + n].decode())
                i += n
            elif tag == 0x62:  # b
                (n,) = unpack_u32(buf, i + 1)
                i += 5
                append(bytes(buf[i : i + n]))
                i += n
            elif tag == 0x69:  # i
                append(unpack_q(buf, i + 1)[0])
                i += 9
            elif tag == 0x64:  # d
                append(unpack_d(buf, i + 1)[0])
                i += 9
            elif tag == 0x46:  # F
                append(False)
                i += 1
            elif tag == 0x54:  # T
                append(True)
                i += 1
            elif tag == 0x6D:  # m: a dict (the properties), its scalar values inlined
                (count,) = unpack_u32(buf, i + 1)
                i += 5
                d: dict[str, Any] = {}
                for _ in range(count):
                    (n,) = unpack_u32(buf, i)
                    i += 4
                    k = buf[i : i + n].decode()
                    i += n
                    tag = buf[i]
                    if tag == 0x73:  # s
                        (n,) = unpack_u32(buf, i + 1)
                        i += 5
                        d[k] = buf[i : i + n].decode()
                        i += n
                    elif tag == 0x62:  # b
                        (n,) = unpack_u32(buf, i + 1)
                        i += 5
                        d[k] = bytes(buf[i : i + n])
                        i += n
                    elif tag == 0x69:  # i
                        d[k] = unpack_q(buf, i + 1)[0]
                        i += 9
                    else:
                        d[k], i = _dec(buf, i)
                append(d)
            else:
                v, i = _dec(buf, i)
                append(v)
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise ValueError(f"undecodable value: {exc}") from None
    if i != len(buf):
        raise ValueError(f"undecodable value: {len(buf) - i} trailing bytes")
    return _message(f)


_NFIELDS = len(MESSAGE_FIELDS)
_NONE6 = b"NNNNNN"


def _decode_common(buf: bytes) -> Message | None:
    """The common shape :func:`encode_message_exact` packs in one pass (str topic,
    bytes payload, int QoS, a retain flag, no properties or str/bytes/int ones, six
    ``None``, two str origins, a float timestamp), read straight through; ``None``
    (decode it field by field) for anything else, a malformed buffer included."""
    if type(buf) is not bytes:  # slices of a bytearray or memoryview are not bytes
        return None
    try:
        u32, tag_len = _U32.unpack_from, _TAG_LEN.unpack_from
        i = len(_MESSAGE_PREFIX)
        tag, n = tag_len(buf, i)
        if tag != 0x73:
            return None
        i += 5
        topic = buf[i : i + n].decode()
        i += n
        tag, n = tag_len(buf, i)
        if tag != 0x62:
            return None
        i += 5
        payload = buf[i : i + n]
        i += n
        tag, qos = _TAG_Q.unpack_from(buf, i)
        if tag != 0x69:
            return None
        i += 9
        r = buf[i]
        if r == 0x54:
            retain = True
        elif r == 0x46:
            retain = False
        else:
            return None
        i += 1
        props: dict[str, Any] | None = None
        tag = buf[i]
        if tag == 0x4E:
            i += 1
        elif tag == 0x6D:
            (count,) = u32(buf, i + 1)
            i += 5
            props = {}
            for _ in range(count):
                (n,) = u32(buf, i)
                i += 4
                k = buf[i : i + n].decode()
                i += n
                tag = buf[i]
                if tag == 0x73:
                    (n,) = u32(buf, i + 1)
                    i += 5
                    props[k] = buf[i : i + n].decode()
                    i += n
                elif tag == 0x62:
                    (n,) = u32(buf, i + 1)
                    i += 5
                    props[k] = buf[i : i + n]
                    i += n
                elif tag == 0x69:
                    props[k] = _Q.unpack_from(buf, i + 1)[0]
                    i += 9
                else:
                    return None
        else:
            return None
        if buf[i : i + 6] != _NONE6:
            return None
        i += 6
        tag, n = tag_len(buf, i)
        if tag != 0x73:
            return None
        i += 5
        oproto = buf[i : i + n].decode()
        i += n
        tag, n = tag_len(buf, i)
        if tag != 0x73:
            return None
        i += 5
        oclient = buf[i : i + n].decode()
        i += n
        tag, ts = _TAG_D.unpack_from(buf, i)
        if tag != 0x64 or i + 9 != len(buf):
            return None
    except (IndexError, struct.error, UnicodeDecodeError):
        return None
    m = _new_message(Message)
    m.topic, m.payload, m.qos, m.retain, m.properties = topic, payload, qos, retain, props
    m.user_properties = m.content_type = m.correlation_data = m.response_topic = None
    m.payload_format = m.expires_at = m.encoded = None
    m.origin_protocol, m.origin_client, m.timestamp = oproto, oclient, ts
    return m


class RecordDecoder:
    """Decodes the records of one read, reusing what an earlier record of the same
    shape decoded.

    The records of a queue mostly differ only in their payload and timestamp: the
    same topic, QoS, properties (for an AMQP publish: its property bytes, exchange and
    routing key) and origin as an earlier one of the same publisher. For a record of
    the common shape (see :func:`_decode_common`) the decoder keeps its bytes before
    the payload (``head``) and between the payload and the timestamp (``mid``) with
    their decoded values, found again by the 16 bytes before the timestamp (the end of
    the origin client's name, so interleaved publishers each keep theirs). A record
    whose bytes match a kept head and mid is decoded by slicing its payload and
    reading its timestamp, with a fresh copy of the properties dict. Equal bytes
    decode to equal values, so the result is what :func:`decode_message` gives, field
    by field and type by type; anything else is decoded in full (and kept). Records
    are read in place from the buffer they were read into."""

    __slots__ = ("shapes",)

    #: shapes kept at most (then forgotten all at once)
    MAX_SHAPES = 64

    def __init__(self) -> None:
        # the 16 bytes before the timestamp -> (head, mid, topic, qos, retain,
        # properties, origin protocol, origin client)
        self.shapes: dict[bytes, tuple[Any, ...]] = {}

    def decode(self, buf: bytes, start: int, end: int) -> Message:
        """The message encoded in ``buf[start:end]``; ``ValueError`` as
        :func:`decode_message` raises it."""
        shape = self.shapes.get(buf[end - 25 : end - 9]) if end - 25 >= start else None
        if shape is not None and buf.startswith(shape[0], start):
            p = start + len(shape[0])
            if p + 5 <= end and buf[p] == 0x62:
                p0 = p + 5
                p1 = p0 + _U32.unpack_from(buf, p + 1)[0]
                mid = shape[1]
                if p1 + len(mid) + 9 == end and buf[end - 9] == 0x64 and buf.startswith(mid, p1):
                    m = _new_message(Message)
                    props = shape[5]
                    m.topic, m.payload, m.qos, m.retain = shape[2], buf[p0:p1], shape[3], shape[4]
                    m.properties = None if props is None else props.copy()
                    m.user_properties = m.content_type = m.correlation_data = None
                    m.response_topic = m.payload_format = m.expires_at = m.encoded = None
                    m.origin_protocol, m.origin_client = shape[6], shape[7]
                    m.timestamp = _D.unpack_from(buf, end - 8)[0]
                    return m
        body = buf[start:end]
        if body.startswith(_MESSAGE_PREFIX):
            m2 = _decode_common(body)
            if m2 is not None:
                self._learn(body, m2)
                return m2
        return decode_message(body)

    def _learn(self, body: bytes, m: Message) -> None:
        if len(body) < 25:
            return
        u32 = _U32.unpack_from
        h = len(_MESSAGE_PREFIX) + 5 + u32(body, len(_MESSAGE_PREFIX) + 1)[0]
        p1 = h + 5 + u32(body, h + 1)[0]
        shapes = self.shapes
        if len(shapes) >= self.MAX_SHAPES:
            shapes.clear()
        props = m.properties
        shapes[body[-25:-9]] = (
            body[:h], body[p1:-9], m.topic, m.qos, m.retain,
            None if props is None else props.copy(), m.origin_protocol, m.origin_client,
        )  # fmt: skip


def _decode_message_slow(buf: bytes) -> Message:
    f = decode_value(buf[1:])
    if not isinstance(f, list) or len(f) != _NFIELDS:
        raise ValueError("not an encoded message (bad field list)")
    return _message(f)


def _message(f: list[Any]) -> Message:
    m = Message.__new__(Message)
    (m.topic, m.payload, m.qos, m.retain, m.properties, up, m.content_type,
     m.correlation_data, m.response_topic, m.payload_format, m.expires_at,
     m.origin_protocol, m.origin_client, m.timestamp) = f  # fmt: skip
    m.user_properties = None if up is None else [(k, v) for k, v in up]
    m.encoded = None
    return m


# --- snapshots: what decoding would give, without the bytes -------------------------


#: A message's fields in :data:`MESSAGE_FIELDS` order, with ``None`` in place of the
#: properties (kept beside it) and the user properties as a tuple of pairs:
#: immutable scalars in tuples only, so that the garbage collector stops tracking a
#: snapshot the first time it sees one (a cache of tracked objects would make every
#: full collection walk it; a dict inside would keep the tuple tracked).
Snapshot = tuple[Any, ...]


def snapshot_message(m: Message) -> tuple[Snapshot, dict[str, Any] | None] | None:
    """``(fields, properties)`` that :func:`message_from_snapshot` turns back into a
    Message equal, field by field and type by type, to
    ``decode_message(encode_message(m))``; ``None`` when ``m`` holds a value whose
    round trip would change it (a nested property, a ``bytearray``, a subclass of a
    scalar type): the queue log's live tail keeps such messages as their encoded
    bytes instead. (The queue log learns that from :func:`encode_message_exact`
    and calls :func:`snapshot_exact` directly.)"""
    if not encode_message_exact(m)[1]:
        return None
    return snapshot_exact(m)


def snapshot_exact(m: Message) -> tuple[Snapshot, dict[str, Any] | None]:
    """:func:`snapshot_message` of a message :func:`encode_message_exact` found
    exact. The properties dict is copied and the user properties become a tuple
    (their values are immutable scalars), so nothing the caller does to ``m``
    afterwards reaches the snapshot; a dict of scalars is not tracked by the
    garbage collector either."""
    props = m.properties
    up = m.user_properties
    return (
        (m.topic, m.payload, m.qos, m.retain, None,
         None if up is None else tuple([(k, v) for k, v in up]),
         m.content_type, m.correlation_data, m.response_topic, m.payload_format,
         m.expires_at, m.origin_protocol, m.origin_client, m.timestamp),
        None if props is None else props.copy(),
    )  # fmt: skip


def message_from_snapshot(snap: Snapshot, props: dict[str, Any] | None) -> Message:
    """A new Message from a :func:`snapshot_message` snapshot, with its own
    ``properties`` dict and ``user_properties`` list and no encode cache."""
    m = _new_message(Message)
    (m.topic, m.payload, m.qos, m.retain, _, up, m.content_type, m.correlation_data,
     m.response_topic, m.payload_format, m.expires_at, m.origin_protocol, m.origin_client,
     m.timestamp) = snap  # fmt: skip
    m.properties = None if props is None else props.copy()
    m.user_properties = None if up is None else list(up)
    m.encoded = None
    return m
