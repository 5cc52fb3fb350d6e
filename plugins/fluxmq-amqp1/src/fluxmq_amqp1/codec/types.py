"""The AMQP 1.0 type system (OASIS AMQP 1.0, part 1): values in, bytes out and back.

Python values map to AMQP types as follows. Where Python has one type and AMQP
several (integers, floats, strings), a thin subclass names the AMQP type, so a
decoded value encodes back to the same bytes' type and still compares equal to the
plain Python value (``uint(5) == 5``):

==========================  ===================================================
AMQP                        Python
==========================  ===================================================
null, boolean               ``None``, ``bool``
ubyte/ushort/uint/ulong     :class:`ubyte`, :class:`ushort`, :class:`uint`, :class:`ulong`
byte/short/int/long         :class:`byte`, :class:`short`, :class:`int32`, :class:`long`
                            (a plain ``int`` encodes as long)
float, double               :class:`float32`, ``float``
decimal32/64/128            :class:`decimal32`, :class:`decimal64`, :class:`decimal128`
                            (the IEEE 754 bytes as sent, big-endian)
char                        :class:`char` (one code point)
timestamp                   :class:`timestamp` (ms since the Unix epoch)
uuid                        ``uuid.UUID``
binary, string, symbol      ``bytes``, ``str``, :class:`symbol`
list, map                   ``list``, ``dict``
array                       :class:`Array` (element type name, values, descriptor)
described                   :class:`Described`, or a composite class registered
                            by :mod:`fluxmq_amqp1.codec.composites`
==========================  ===================================================

Decoding never raises anything but :class:`AMQPError` (condition
``amqp:decode-error``) on malformed input: truncated values, sizes that do not add
up, invalid UTF-8, unknown format codes, nesting deeper than :data:`MAX_DEPTH`.
Encoding a value that the type system cannot hold raises ``ValueError`` (a bug of
the caller, not of the peer).
"""

from __future__ import annotations

import datetime
import struct
import uuid
from collections.abc import Callable
from typing import Any

__all__ = [
    "DECODE_ERROR",
    "MAX_DEPTH",
    "AMQPError",
    "Array",
    "Described",
    "byte",
    "char",
    "decimal32",
    "decimal64",
    "decimal128",
    "decode_value",
    "encode_value",
    "float32",
    "int32",
    "long",
    "short",
    "symbol",
    "timestamp",
    "ubyte",
    "uint",
    "ulong",
    "ushort",
]

DECODE_ERROR = "amqp:decode-error"
#: Deepest nesting of compound values accepted (lists, maps, arrays, described).
MAX_DEPTH = 64


class AMQPError(Exception):
    """An AMQP error condition (``amqp:decode-error``, ``amqp:not-allowed``...) with
    a description: what the codec raises on malformed input and what the state
    machine sends in close/end/detach. The one exception type that may leave the
    codec on any input."""

    def __init__(self, condition: str, description: str = "", *, scope: str = "connection"):
        super().__init__(f"{condition}: {description}" if description else condition)
        self.condition = condition
        self.description = description
        #: which endpoint the error ends: ``connection``, ``session`` or ``link``.
        self.scope = scope


def _bad(what: str) -> AMQPError:
    return AMQPError(DECODE_ERROR, what)


# --- typed scalars -----------------------------------------------------------------------


class ubyte(int):
    """AMQP ubyte (0..255)."""

    __slots__ = ()


class ushort(int):
    """AMQP ushort (0..65535)."""

    __slots__ = ()


class uint(int):
    """AMQP uint (0..2**32-1)."""

    __slots__ = ()


class ulong(int):
    """AMQP ulong (0..2**64-1)."""

    __slots__ = ()


class byte(int):
    """AMQP byte (-128..127)."""

    __slots__ = ()


class short(int):
    """AMQP short (-32768..32767)."""

    __slots__ = ()


class int32(int):
    """AMQP int (-2**31..2**31-1)."""

    __slots__ = ()


class long(int):
    """AMQP long (-2**63..2**63-1); a plain ``int`` encodes as long too."""

    __slots__ = ()


class timestamp(int):
    """AMQP timestamp: milliseconds since the Unix epoch (signed 64 bits)."""

    __slots__ = ()


class float32(float):
    """AMQP float (IEEE 754 binary32); a plain ``float`` is a double."""

    __slots__ = ()


class char(str):
    """AMQP char: one Unicode code point (UTF-32BE on the wire)."""

    __slots__ = ()


class symbol(str):
    """AMQP symbol: an ASCII string used for names (conditions, capabilities...)."""

    __slots__ = ()


class _Decimal(bytes):
    SIZE = 0

    def __new__(cls, value: bytes = b"") -> Any:
        value = bytes(value) or bytes(cls.SIZE)
        if len(value) != cls.SIZE:
            raise ValueError(f"{cls.__name__} needs {cls.SIZE} bytes, got {len(value)}")
        return super().__new__(cls, value)


class decimal32(_Decimal):
    """AMQP decimal32: the 4 bytes of an IEEE 754 decimal32, kept as sent."""

    SIZE = 4


class decimal64(_Decimal):
    """AMQP decimal64: the 8 bytes of an IEEE 754 decimal64, kept as sent."""

    SIZE = 8


class decimal128(_Decimal):
    """AMQP decimal128: the 16 bytes of an IEEE 754 decimal128, kept as sent."""

    SIZE = 16


class Described:
    """A described value whose descriptor no composite class claims."""

    __slots__ = ("descriptor", "value")

    def __init__(self, descriptor: Any, value: Any) -> None:
        self.descriptor = descriptor
        self.value = value

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Described)
            and self.descriptor == other.descriptor
            and self.value == other.value
        )

    def __hash__(self) -> int:
        return hash(("described", _hashable(self.descriptor)))

    def __repr__(self) -> str:
        return f"Described({self.descriptor!r}, {self.value!r})"


def _hashable(v: Any) -> Any:
    try:
        hash(v)
        return v
    except TypeError:
        return repr(v)


class Array:
    """An AMQP array: every element of one type. ``type`` is the AMQP type name
    (``"uint"``, ``"symbol"``, ``"list"``...); ``descriptor`` makes it an array of
    described values (each element's value of ``type``)."""

    __slots__ = ("type", "values", "descriptor")

    def __init__(self, type: str, values: list[Any], descriptor: Any = None) -> None:
        if type not in _ARRAY_CODES:
            raise ValueError(f"no AMQP array element type {type!r}")
        self.type = type
        self.values = list(values)
        self.descriptor = descriptor

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Array)
            and self.type == other.type
            and self.descriptor == other.descriptor
            and self.values == other.values
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        d = f", descriptor={self.descriptor!r}" if self.descriptor is not None else ""
        return f"Array({self.type!r}, {self.values!r}{d})"


# --- decoding ----------------------------------------------------------------------------

_U8 = struct.Struct(">B").unpack_from
_U16 = struct.Struct(">H").unpack_from
_U32 = struct.Struct(">I").unpack_from
_U64 = struct.Struct(">Q").unpack_from
_I8 = struct.Struct(">b").unpack_from
_I16 = struct.Struct(">h").unpack_from
_I32 = struct.Struct(">i").unpack_from
_I64 = struct.Struct(">q").unpack_from
_F32 = struct.Struct(">f").unpack_from
_F64 = struct.Struct(">d").unpack_from

Reader = Callable[[bytes, int, int], tuple[Any, int]]

#: Composite classes by descriptor (ulong code and symbolic name); filled by
#: :mod:`fluxmq_amqp1.codec.composites`. A decoded described value whose
#: descriptor is here becomes that class (``cls.from_described(value)``).
DESCRIBED: dict[Any, Any] = {}


def _need(buf: bytes, pos: int, n: int) -> None:
    if pos + n > len(buf):
        raise _bad(f"truncated value: {n} bytes needed at {pos}, {len(buf) - pos} left")


def _fixed(n: int, unpack: Any, wrap: Any) -> Reader:
    def read(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
        if pos + n > len(buf):
            _need(buf, pos, n)
        return wrap(unpack(buf, pos)[0]), pos + n

    return read


def _const(value: Any) -> Reader:
    def read(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
        return value, pos

    return read


def _read_bool(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    _need(buf, pos, 1)
    b = buf[pos]
    if b > 1:
        raise _bad(f"boolean byte {b:#x} is neither 0 nor 1")
    return b == 1, pos + 1


def _read_char(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    _need(buf, pos, 4)
    cp = _U32(buf, pos)[0]
    if cp > 0x10FFFF:
        raise _bad(f"char {cp:#x} is not a Unicode code point")
    return char(chr(cp)), pos + 4


def _read_decimal(cls: Any) -> Reader:
    n = cls.SIZE

    def read(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
        _need(buf, pos, n)
        return cls(buf[pos : pos + n]), pos + n

    return read


def _read_uuid(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    _need(buf, pos, 16)
    return uuid.UUID(bytes=bytes(buf[pos : pos + 16])), pos + 16


def _variable(width: int, kind: str) -> Reader:
    size_of = _U8 if width == 1 else _U32

    def read(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
        _need(buf, pos, width)
        n = size_of(buf, pos)[0]
        pos += width
        end = pos + n
        if end > len(buf):
            raise _bad(f"{kind} of {n} bytes overruns the frame")
        raw = bytes(buf[pos:end])
        if kind == "binary":
            return raw, end
        try:
            if kind == "string":
                return raw.decode("utf-8"), end
            return symbol(raw.decode("ascii")), end
        except UnicodeDecodeError:
            raise _bad(
                f"invalid {'UTF-8 string' if kind == 'string' else 'ASCII symbol'}"
            ) from None

    return read


def _read_list(width: int) -> Reader:
    size_of = _U8 if width == 1 else _U32

    def read(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
        _need(buf, pos, 2 * width)
        size = size_of(buf, pos)[0]
        count = size_of(buf, pos + width)[0]
        end = pos + width + size
        if size < width or end > len(buf):
            raise _bad(f"list size {size} does not fit the frame")
        if count > size:
            raise _bad(f"list of {count} elements cannot fit in {size} bytes")
        pos += 2 * width
        out = []
        for _ in range(count):
            v, pos = decode_value(buf, pos, depth + 1, end)
            out.append(v)
        if pos != end:
            raise _bad(f"list elements end at {pos}, its size says {end}")
        return out, end

    return read


def _read_map(width: int) -> Reader:
    size_of = _U8 if width == 1 else _U32

    def read(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
        _need(buf, pos, 2 * width)
        size = size_of(buf, pos)[0]
        count = size_of(buf, pos + width)[0]
        end = pos + width + size
        if size < width or end > len(buf):
            raise _bad(f"map size {size} does not fit the frame")
        if count % 2:
            raise _bad(f"map with an odd element count {count}")
        if count > size:
            raise _bad(f"map of {count} elements cannot fit in {size} bytes")
        pos += 2 * width
        out: dict[Any, Any] = {}
        for _ in range(count // 2):
            k, pos = decode_value(buf, pos, depth + 1, end)
            v, pos = decode_value(buf, pos, depth + 1, end)
            try:
                out[k] = v
            except TypeError:
                raise _bad(f"map key of type {type(k).__name__} is not usable") from None
        if pos != end:
            raise _bad(f"map elements end at {pos}, its size says {end}")
        return out, end

    return read


def _read_array(width: int) -> Reader:
    size_of = _U8 if width == 1 else _U32

    def read(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
        _need(buf, pos, 2 * width)
        size = size_of(buf, pos)[0]
        count = size_of(buf, pos + width)[0]
        end = pos + width + size
        if size < width or end > len(buf):
            raise _bad(f"array size {size} does not fit the frame")
        if count > size:
            raise _bad(f"array of {count} elements cannot fit in {size} bytes")
        pos += 2 * width
        descriptor = None
        _need(buf, pos, 1)
        code = buf[pos]
        pos += 1
        if code == 0x00:
            if depth >= MAX_DEPTH:
                raise _bad("values nested too deeply")
            descriptor, pos = decode_value(buf, pos, depth + 1, end)
            _need(buf, pos, 1)
            code = buf[pos]
            pos += 1
        reader = _READERS.get(code)
        name = _CODE_NAMES.get(code)
        if reader is None or name is None or code == 0x00:
            raise _bad(f"invalid array element format code {code:#04x}")
        values = []
        for _ in range(count):
            if pos > end:
                break
            v, pos = reader(buf, pos, depth + 1)
            values.append(v)
        if pos != end:
            raise _bad(f"array elements end at {pos}, its size says {end}")
        arr = Array.__new__(Array)
        arr.type = name
        arr.values = values
        arr.descriptor = descriptor
        if descriptor is not None:
            cls = _lookup(descriptor)
            if cls is not None:
                arr.values = [cls.from_described(v) for v in values]
        return arr, end

    return read


def _lookup(descriptor: Any) -> Any:
    try:
        return DESCRIBED.get(descriptor)
    except TypeError:
        raise _bad("a descriptor must be a ulong or a symbol") from None


def _read_described(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    descriptor, pos = decode_value(buf, pos, depth + 1)
    value, pos = decode_value(buf, pos, depth + 1)
    cls = _lookup(descriptor)
    if cls is not None:
        return cls.from_described(value), pos
    return Described(descriptor, value), pos


_READERS: dict[int, Reader] = {
    0x40: _const(None),
    0x41: _const(True),
    0x42: _const(False),
    0x56: _read_bool,
    0x50: _fixed(1, _U8, ubyte),
    0x60: _fixed(2, _U16, ushort),
    0x70: _fixed(4, _U32, uint),
    0x52: _fixed(1, _U8, uint),
    0x43: _const(uint(0)),
    0x80: _fixed(8, _U64, ulong),
    0x53: _fixed(1, _U8, ulong),
    0x44: _const(ulong(0)),
    0x51: _fixed(1, _I8, byte),
    0x61: _fixed(2, _I16, short),
    0x71: _fixed(4, _I32, int32),
    0x54: _fixed(1, _I8, int32),
    0x81: _fixed(8, _I64, long),
    0x55: _fixed(1, _I8, long),
    0x72: _fixed(4, _F32, float32),
    0x82: _fixed(8, _F64, float),
    0x74: _read_decimal(decimal32),
    0x84: _read_decimal(decimal64),
    0x94: _read_decimal(decimal128),
    0x73: _read_char,
    0x83: _fixed(8, _I64, timestamp),
    0x98: _read_uuid,
    0xA0: _variable(1, "binary"),
    0xB0: _variable(4, "binary"),
    0xA1: _variable(1, "string"),
    0xB1: _variable(4, "string"),
    0xA3: _variable(1, "symbol"),
    0xB3: _variable(4, "symbol"),
    0x45: _const(None),  # replaced below: list0 must be a fresh list each time
    0xC0: _read_list(1),
    0xD0: _read_list(4),
    0xC1: _read_map(1),
    0xD1: _read_map(4),
    0xE0: _read_array(1),
    0xF0: _read_array(4),
    0x00: _read_described,
}


def _read_list0(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    return [], pos


_READERS[0x45] = _read_list0

#: The AMQP type name of each format code (arrays carry it as their element type).
_CODE_NAMES: dict[int, str] = {
    0x40: "null",
    0x41: "boolean",
    0x42: "boolean",
    0x56: "boolean",
    0x50: "ubyte",
    0x60: "ushort",
    0x70: "uint",
    0x52: "uint",
    0x43: "uint",
    0x80: "ulong",
    0x53: "ulong",
    0x44: "ulong",
    0x51: "byte",
    0x61: "short",
    0x71: "int",
    0x54: "int",
    0x81: "long",
    0x55: "long",
    0x72: "float",
    0x82: "double",
    0x74: "decimal32",
    0x84: "decimal64",
    0x94: "decimal128",
    0x73: "char",
    0x83: "timestamp",
    0x98: "uuid",
    0xA0: "binary",
    0xB0: "binary",
    0xA1: "string",
    0xB1: "string",
    0xA3: "symbol",
    0xB3: "symbol",
    0x45: "list",
    0xC0: "list",
    0xD0: "list",
    0xC1: "map",
    0xD1: "map",
    0xE0: "array",
    0xF0: "array",
}


def decode_value(
    buf: bytes, pos: int = 0, depth: int = 0, end: int | None = None
) -> tuple[Any, int]:
    """Decode one value at ``pos``; returns ``(value, next position)``. ``end``
    bounds where the value may end (the enclosing compound's size)."""
    if depth > MAX_DEPTH:
        raise _bad("values nested too deeply")
    if pos >= len(buf) or (end is not None and pos >= end):
        raise _bad(f"truncated: a value expected at {pos}")
    code = buf[pos]
    reader = _READERS.get(code)
    if reader is None:
        raise _bad(f"unknown format code {code:#04x}")
    value, nxt = reader(buf, pos + 1, depth)
    if end is not None and nxt > end:
        raise _bad("a value overruns its enclosing list or map")
    return value, nxt


# --- encoding ----------------------------------------------------------------------------

_P8 = struct.Struct(">B").pack
_P16 = struct.Struct(">H").pack
_P32 = struct.Struct(">I").pack
_P64 = struct.Struct(">Q").pack
_Pi8 = struct.Struct(">b").pack
_Pi16 = struct.Struct(">h").pack
_Pi32 = struct.Struct(">i").pack
_Pi64 = struct.Struct(">q").pack
_Pf32 = struct.Struct(">f").pack
_Pf64 = struct.Struct(">d").pack
_P8x2 = struct.Struct(">BB").pack
_P32x2 = struct.Struct(">II").pack

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def _check(v: int, lo: int, hi: int, name: str) -> int:
    if not lo <= v <= hi:
        raise ValueError(f"{v} is out of range for AMQP {name}")
    return v


def encode_uint(out: bytearray, v: int) -> None:
    if v == 0:
        out.append(0x43)
    elif v < 256:
        out += b"\x52" + _P8(v)
    else:
        out += b"\x70" + _P32(_check(v, 0, 0xFFFFFFFF, "uint"))


def encode_ulong(out: bytearray, v: int) -> None:
    if v == 0:
        out.append(0x44)
    elif v < 256:
        out += b"\x53" + _P8(v)
    else:
        out += b"\x80" + _P64(_check(v, 0, 0xFFFFFFFFFFFFFFFF, "ulong"))


def encode_long(out: bytearray, v: int) -> None:
    if -128 <= v <= 127:
        out += b"\x55" + _Pi8(v)
    else:
        out += b"\x81" + _Pi64(_check(v, -(2**63), 2**63 - 1, "long"))


def encode_binary(out: bytearray, v: bytes) -> None:
    n = len(v)
    if n < 256:
        out += b"\xa0" + _P8(n)
    else:
        out += b"\xb0" + _P32(n)
    out += v


def encode_string(out: bytearray, v: str) -> None:
    raw = v.encode("utf-8")
    n = len(raw)
    if n < 256:
        out += b"\xa1" + _P8(n)
    else:
        out += b"\xb1" + _P32(n)
    out += raw


def encode_symbol(out: bytearray, v: str) -> None:
    try:
        raw = v.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError(f"symbol {v!r} is not ASCII") from None
    n = len(raw)
    if n < 256:
        out += b"\xa3" + _P8(n)
    else:
        out += b"\xb3" + _P32(n)
    out += raw


def _compound(out: bytearray, code8: int, code32: int, count: int, body: bytearray) -> None:
    n = len(body)
    if n + 1 < 256 and count < 256:
        out += _P8x2(code8, n + 1) + _P8(count)
    else:
        out += _P8(code32) + _P32x2(n + 4, count)
    out += body


def encode_list(out: bytearray, v: Any) -> None:
    if not v:
        out.append(0x45)
        return
    body = bytearray()
    for item in v:
        encode_value(body, item)
    _compound(out, 0xC0, 0xD0, len(v), body)


def encode_map(out: bytearray, v: dict[Any, Any], key_symbols: bool = False) -> None:
    body = bytearray()
    for k, item in v.items():
        if key_symbols and type(k) is str:
            encode_symbol(body, k)
        else:
            encode_value(body, k)
        encode_value(body, item)
    _compound(out, 0xC1, 0xD1, 2 * len(v), body)


#: Array element type name -> the format code used for its elements (the widest
#: fixed form, as every element shares one constructor).
_ARRAY_CODES: dict[str, int] = {
    "null": 0x40,
    "boolean": 0x56,
    "ubyte": 0x50,
    "ushort": 0x60,
    "uint": 0x70,
    "ulong": 0x80,
    "byte": 0x51,
    "short": 0x61,
    "int": 0x71,
    "long": 0x81,
    "float": 0x72,
    "double": 0x82,
    "decimal32": 0x74,
    "decimal64": 0x84,
    "decimal128": 0x94,
    "char": 0x73,
    "timestamp": 0x83,
    "uuid": 0x98,
    "binary": 0xB0,
    "string": 0xB1,
    "symbol": 0xB3,
    "list": 0xD0,
    "map": 0xD1,
    "array": 0xF0,
}


def _element(out: bytearray, code: int, v: Any) -> None:
    """One array element's bytes, without its constructor."""
    if code == 0x40:
        if v is not None:
            raise ValueError("an array of null holds only None")
    elif code == 0x56:
        out.append(1 if v else 0)
    elif code == 0x50:
        out += _P8(_check(v, 0, 255, "ubyte"))
    elif code == 0x60:
        out += _P16(_check(v, 0, 0xFFFF, "ushort"))
    elif code == 0x70:
        out += _P32(_check(v, 0, 0xFFFFFFFF, "uint"))
    elif code == 0x80:
        out += _P64(_check(v, 0, 2**64 - 1, "ulong"))
    elif code == 0x51:
        out += _Pi8(_check(v, -128, 127, "byte"))
    elif code == 0x61:
        out += _Pi16(_check(v, -32768, 32767, "short"))
    elif code == 0x71:
        out += _Pi32(_check(v, -(2**31), 2**31 - 1, "int"))
    elif code in (0x81, 0x83):
        out += _Pi64(_check(v, -(2**63), 2**63 - 1, "long"))
    elif code == 0x72:
        out += _Pf32(v)
    elif code == 0x82:
        out += _Pf64(v)
    elif code in (0x74, 0x84, 0x94):
        out += bytes(v)
    elif code == 0x73:
        out += _P32(ord(v))
    elif code == 0x98:
        out += v.bytes
    elif code in (0xB0, 0xB1, 0xB3):
        raw = bytes(v) if code == 0xB0 else v.encode("utf-8" if code == 0xB1 else "ascii")
        out += _P32(len(raw)) + raw
    else:  # list, map, array: encode with the 32-bit form, then drop the constructor
        tmp = bytearray()
        if code == 0xD0:
            body = bytearray()
            for item in v:
                encode_value(body, item)
            tmp += b"\xd0" + _P32x2(len(body) + 4, len(v)) + body
        elif code == 0xD1:
            body = bytearray()
            for k, item in v.items():
                encode_value(body, k)
                encode_value(body, item)
            tmp += b"\xd1" + _P32x2(len(body) + 4, 2 * len(v)) + body
        else:
            _encode_array(tmp, v, wide=True)
        out += tmp[1:]


def _encode_array(out: bytearray, arr: Array, wide: bool = False) -> None:
    code = _ARRAY_CODES[arr.type]
    body = bytearray()
    if arr.descriptor is not None:
        body.append(0x00)
        encode_value(body, arr.descriptor)
    body.append(code)
    for v in arr.values:
        if arr.descriptor is not None and hasattr(v, "described_value"):
            v = v.described_value()
        _element(body, code, v)
    n = len(body)
    count = len(arr.values)
    if not wide and n + 1 < 256 and count < 256:
        out += _P8x2(0xE0, n + 1) + _P8(count)
    else:
        out += b"\xf0" + _P32x2(n + 4, count)
    out += body


def encode_value(out: bytearray, v: Any) -> None:
    """Append the AMQP encoding of ``v`` (see the module docstring for the mapping)."""
    t = type(v)
    enc = _ENCODERS.get(t)
    if enc is not None:
        enc(out, v)
        return
    if v is None:
        out.append(0x40)
    elif hasattr(v, "encode_to"):
        v.encode_to(out)
    elif isinstance(v, bool):
        out.append(0x41 if v else 0x42)
    elif isinstance(v, int):
        for base, e in _INT_BASES:
            if isinstance(v, base):
                e(out, v)
                return
        encode_long(out, v)
    elif isinstance(v, float):
        (_ENCODERS[float32] if isinstance(v, float32) else _ENCODERS[float])(out, v)
    elif isinstance(v, symbol):
        encode_symbol(out, v)
    elif isinstance(v, str):
        encode_string(out, v)
    elif isinstance(v, bytes | bytearray | memoryview):
        encode_binary(out, bytes(v))
    elif isinstance(v, list | tuple):
        encode_list(out, v)
    elif isinstance(v, dict):
        encode_map(out, v)
    elif isinstance(v, Array):
        _encode_array(out, v)
    elif isinstance(v, Described):
        out.append(0x00)
        encode_value(out, v.descriptor)
        encode_value(out, v.value)
    elif isinstance(v, uuid.UUID):
        out += b"\x98" + v.bytes
    elif isinstance(v, datetime.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=datetime.UTC)
        ms = (v - _EPOCH) // datetime.timedelta(milliseconds=1)
        out += b"\x83" + _Pi64(ms)
    else:
        raise ValueError(f"no AMQP encoding for {type(v).__name__} {v!r}")


def _enc_bool(out: bytearray, v: bool) -> None:
    out.append(0x41 if v else 0x42)


def _enc_int(out: bytearray, v: int) -> None:
    encode_long(out, v)


def _enc_int32(out: bytearray, v: int) -> None:
    if -128 <= v <= 127:
        out += b"\x54" + _Pi8(v)
    else:
        out += b"\x71" + _Pi32(_check(v, -(2**31), 2**31 - 1, "int"))


def _enc_fixed(
    code: int, pack: Any, lo: int, hi: int, name: str
) -> Callable[[bytearray, Any], None]:
    prefix = bytes([code])

    def enc(out: bytearray, v: Any) -> None:
        out += prefix + pack(_check(v, lo, hi, name))

    return enc


def _enc_dec(code: int) -> Callable[[bytearray, Any], None]:
    prefix = bytes([code])

    def enc(out: bytearray, v: Any) -> None:
        out += prefix + bytes(v)

    return enc


def _enc_char(out: bytearray, v: str) -> None:
    if len(v) != 1:
        raise ValueError(f"an AMQP char is one code point, got {v!r}")
    out += b"\x73" + _P32(ord(v))


def _enc_uuid(out: bytearray, v: uuid.UUID) -> None:
    out += b"\x98" + v.bytes


def _enc_none(out: bytearray, v: None) -> None:
    out.append(0x40)


def _enc_f32(out: bytearray, v: float) -> None:
    out += b"\x72" + _Pf32(v)


def _enc_f64(out: bytearray, v: float) -> None:
    out += b"\x82" + _Pf64(v)


def _enc_bytes(out: bytearray, v: Any) -> None:
    encode_binary(out, bytes(v))


_ENCODERS: dict[type, Callable[[bytearray, Any], None]] = {
    type(None): _enc_none,
    bool: _enc_bool,
    int: _enc_int,
    long: _enc_int,
    ubyte: _enc_fixed(0x50, _P8, 0, 255, "ubyte"),
    ushort: _enc_fixed(0x60, _P16, 0, 0xFFFF, "ushort"),
    uint: encode_uint,
    ulong: encode_ulong,
    byte: _enc_fixed(0x51, _Pi8, -128, 127, "byte"),
    short: _enc_fixed(0x61, _Pi16, -32768, 32767, "short"),
    int32: _enc_int32,
    timestamp: _enc_fixed(0x83, _Pi64, -(2**63), 2**63 - 1, "timestamp"),
    float: _enc_f64,
    float32: _enc_f32,
    decimal32: _enc_dec(0x74),
    decimal64: _enc_dec(0x84),
    decimal128: _enc_dec(0x94),
    char: _enc_char,
    symbol: encode_symbol,
    str: encode_string,
    bytes: encode_binary,
    bytearray: _enc_bytes,
    list: encode_list,
    tuple: encode_list,
    dict: encode_map,
    Array: _encode_array,
    uuid.UUID: _enc_uuid,
}

_INT_BASES: tuple[tuple[type, Callable[[bytearray, Any], None]], ...] = tuple(
    (t, _ENCODERS[t]) for t in (ubyte, ushort, uint, ulong, byte, short, int32, timestamp, long)
)


def encode(v: Any) -> bytes:
    """The AMQP encoding of one value."""
    out = bytearray()
    encode_value(out, v)
    return bytes(out)


def decode(buf: bytes) -> Any:
    """Decode exactly one value filling ``buf``."""
    value, pos = decode_value(buf, 0)
    if pos != len(buf):
        raise _bad(f"{len(buf) - pos} bytes after the value")
    return value
