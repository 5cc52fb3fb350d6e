"""MQTT data representations (spec section 1.5): integers, variable byte integers,
UTF-8 strings, binary data and string pairs, read from and written to bytes.

Readers take `(buf, pos, end)` and return `(value, new_pos)`; they never read at or
past `end` and raise `MQTTProtocolError` (0x81 Malformed Packet) instead of letting an
`IndexError`, a `UnicodeDecodeError` or a short slice through. Writers return `bytes`
and raise `MQTTEncodeError` for values that have no encoding. Nothing here knows about
packets, properties or protocol versions.
"""

from __future__ import annotations

from .errors import MQTTEncodeError, MQTTProtocolError

__all__ = [
    "MAX_VARINT",
    "decode_utf8",
    "encode_binary",
    "encode_string",
    "encode_u16",
    "encode_u32",
    "encode_varint",
    "malformed",
    "read_binary",
    "read_string",
    "read_u8",
    "read_u16",
    "read_u32",
    "read_varint",
    "varint_size",
]

MAX_VARINT = 268_435_455  # largest value a 4-byte variable byte integer holds

MALFORMED = 0x81


def malformed(message: str) -> MQTTProtocolError:
    return MQTTProtocolError(MALFORMED, message)


def read_u8(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    if pos >= end:
        raise malformed("packet too short: expected a byte")
    return buf[pos], pos + 1


def read_u16(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    if pos + 2 > end:
        raise malformed("packet too short: expected a two byte integer")
    return (buf[pos] << 8) | buf[pos + 1], pos + 2


def read_u32(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    if pos + 4 > end:
        raise malformed("packet too short: expected a four byte integer")
    return int.from_bytes(buf[pos : pos + 4], "big"), pos + 4


def read_varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """A variable byte integer: at most 4 bytes, minimally encoded [MQTT-1.5.5-1]."""
    value = 0
    shift = 0
    for i in range(4):
        if pos >= end:
            raise malformed("packet too short: truncated variable byte integer")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if byte == 0 and i > 0:
                raise malformed("variable byte integer not minimally encoded")
            return value, pos
        shift += 7
    raise malformed("variable byte integer longer than 4 bytes")


def decode_utf8(raw: bytes) -> str:
    """A UTF-8 encoded string's content: well-formed UTF-8 (which excludes surrogates
    and overlong forms) and no U+0000 [MQTT-1.5.4-1, -2]. Other control characters
    and non-characters are allowed: the spec says SHOULD NOT, and a receiver MAY
    accept them."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise malformed("string is not well-formed UTF-8") from None
    if "\x00" in text:
        raise malformed("string contains U+0000")
    return text


def read_binary(buf: bytes, pos: int, end: int) -> tuple[bytes, int]:
    if pos + 2 > end:
        raise malformed("packet too short: expected a length prefix")
    stop = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
    if stop > end:
        raise malformed("length prefix runs past the end of the packet")
    return bytes(buf[pos + 2 : stop]), stop


def read_string(buf: bytes, pos: int, end: int) -> tuple[str, int]:
    if pos + 2 > end:
        raise malformed("packet too short: expected a string length")
    stop = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
    if stop > end:
        raise malformed("string length runs past the end of the packet")
    return decode_utf8(bytes(buf[pos + 2 : stop])), stop


# --------------------------------------------------------------------------- writers

_SMALL_VARINTS = [bytes((i,)) for i in range(128)]


def encode_varint(value: int) -> bytes:
    if value < 128:
        if value < 0:
            raise MQTTEncodeError(f"variable byte integer must not be negative: {value}")
        return _SMALL_VARINTS[value]
    if value > MAX_VARINT:
        raise MQTTEncodeError(f"variable byte integer too large: {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def varint_size(value: int) -> int:
    if value < 128:
        return 1
    if value < 16_384:
        return 2
    if value < 2_097_152:
        return 3
    return 4


def encode_u16(value: int) -> bytes:
    if not 0 <= value <= 0xFFFF:
        raise MQTTEncodeError(f"two byte integer out of range: {value}")
    return value.to_bytes(2, "big")


def encode_u32(value: int) -> bytes:
    if not 0 <= value <= 0xFFFFFFFF:
        raise MQTTEncodeError(f"four byte integer out of range: {value}")
    return value.to_bytes(4, "big")


def encode_binary(data: bytes) -> bytes:
    n = len(data)
    if n > 0xFFFF:
        raise MQTTEncodeError(f"binary data longer than 65535 bytes: {n}")
    return n.to_bytes(2, "big") + bytes(data)


def encode_string(text: str) -> bytes:
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MQTTEncodeError(f"string is not encodable as UTF-8: {exc}") from None
    if "\x00" in text:
        raise MQTTEncodeError("string contains U+0000")
    n = len(raw)
    if n > 0xFFFF:
        raise MQTTEncodeError(f"string longer than 65535 bytes: {n}")
    return n.to_bytes(2, "big") + raw
