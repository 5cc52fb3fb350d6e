"""Record framing shared by the value log and the queue segments, and the one
recovery rule both follow.

Every record starts with ``crc32: u32`` then ``magic: u8 = 0xB7`` and ``type: u8``;
the CRC covers everything after itself up to the end of the record, so a torn
write, a bit flip or zero-filled blocks all fail it. A value-log record is::

    crc u32 | magic u8 | type u8 | flags u16 | key_len u32 | value_len u32 | key | value

(16 header bytes, little-endian; type 1 = put, 2 = delete, 3 = padding).

Recovery (:func:`scan_segment`) reads a segment record by record. At the first
record that does not check out it looks for any valid record after it, in the same
segment or in a later one:

* none: it is a **torn tail** (a crash during a write, garbage appended). The
  caller truncates the file there and logs how many bytes it dropped;
* some: it is **corruption in the middle**, which recovery never skips silently:
  :class:`~fluxmq_badgerlike.errors.StorageCorruptionError` names the file and the
  offset, unless the ``repair`` option is set, in which case the damaged bytes are
  overwritten with a padding record (so the file checks out from then on) and the
  skip is logged as an error and reported in the driver's stats.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable
from typing import Any

from fluxmq_badgerlike.errors import StorageCorruptionError

MAGIC = 0xB7
PUT, DELETE, PAD = 1, 2, 3

HEADER = struct.Struct("<IBBHII")  # crc, magic, type, flags, key_len, value_len
HEADER_SIZE = HEADER.size  # 16
_BODY = struct.Struct("<BBHII")

#: ``parse(view, pos, end_of_data) -> end of the record, or -1 if it does not check out``
Parser = Callable[[memoryview, int, int], int]


def kv_record(rtype: int, key: bytes, value: bytes = b"") -> bytes:
    body = _BODY.pack(MAGIC, rtype, 0, len(key), len(value)) + key + value
    return struct.pack("<I", zlib.crc32(body)) + body


def kv_pad(length: int) -> bytes | None:
    """A padding record of exactly ``length`` bytes (None when under 16)."""
    if length < HEADER_SIZE:
        return None
    body = _BODY.pack(MAGIC, PAD, 0, 0, length - HEADER_SIZE) + bytes(length - HEADER_SIZE)
    return struct.pack("<I", zlib.crc32(body)) + body


def parse_kv(view: memoryview, i: int, n: int) -> int:
    if n - i < HEADER_SIZE:
        return -1
    crc, magic, rtype, _flags, klen, vlen = HEADER.unpack_from(view, i)
    if magic != MAGIC or not PUT <= rtype <= PAD:
        return -1
    end = i + HEADER_SIZE + klen + vlen
    if end > n or zlib.crc32(view[i + 4 : end]) != crc:
        return -1
    return end


def check_kv(record: bytes, path: str, pos: int) -> bytes:
    """The value of one record read back by pointer, after checking its CRC."""
    n = len(record)
    if parse_kv(memoryview(record), 0, n) != n:
        raise StorageCorruptionError(path, pos, "record failed its CRC check on read")
    klen = HEADER.unpack_from(record, 0)[4]
    return record[HEADER_SIZE + klen :]


def find_next_valid(view: memoryview, start: int, n: int, parse: Parser) -> int:
    """Position of the first record at or after ``start`` that checks out, or -1."""
    data = view.obj if isinstance(view.obj, bytes) else bytes(view)
    k = data.find(MAGIC, start + 4)
    while k >= 0:
        cand = k - 4
        if cand >= start and parse(view, cand, n) > 0:
            return cand
        k = data.find(MAGIC, k + 1)
    return -1


def scan_segment(
    path: str,
    data: bytes,
    base: int,
    parse: Parser,
    apply: Callable[[int, int], None],
    *,
    later_has_data: bool,
    repair: bool,
    pad: Callable[[int], bytes | None] | None,
    fd: int | None = None,
) -> dict[str, Any]:
    """Apply every valid record of ``data`` (the file's bytes from ``base`` on).

    Returns ``{"records": n, "truncate_at": file position or None, "dropped": bytes,
    "repaired": [(position, bytes)]}``; see the module docstring for the rule."""
    view = memoryview(data)
    n = len(data)
    i = 0
    records = 0
    repaired: list[tuple[int, int]] = []
    while i < n:
        end = parse(view, i, n)
        if end > 0:
            apply(base + i, end - i)
            records += 1
            i = end
            continue
        nxt = find_next_valid(view, i + 1, n, parse)
        if nxt < 0 and not later_has_data:
            return {
                "records": records,
                "truncate_at": base + i,
                "dropped": n - i,
                "repaired": repaired,
            }
        if not repair:
            raise StorageCorruptionError(path, base + i, "length/CRC check failed")
        stop = nxt if nxt >= 0 else n
        filler = pad(stop - i) if pad is not None and fd is not None else None
        # None: too short for a padding record (or read-only); skipped again next time
        if filler is not None and fd is not None:
            os.pwrite(fd, filler, base + i)
            os.fsync(fd)
        repaired.append((base + i, stop - i))
        i = stop
    return {"records": records, "truncate_at": None, "dropped": 0, "repaired": repaired}
