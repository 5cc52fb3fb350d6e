"""``BadgerlikeQueueLog``: per-queue segment files plus a small KV engine.

Layout under ``<data_dir>/queues/``::

    meta/                          an Engine: queue configs, groups, PEL, first offsets
    <queue id:08d>/<base:020d>.seg records of one queue, offsets base, base+1, ...
    <queue id:08d>/<base:020d>.idx sparse index of a sealed segment (+ CRC)

A queue record is ``crc u32 | magic u8 | type u8 | flags u16 | body_len u32 |
offset u64 | timestamp f64 | payload_len u32 | body`` (32 header bytes; the body is
the encoded message; the CRC covers everything after itself). Queues get numeric
ids (never reused) so that any queue name is safe on any file system and deleting
then re-creating a name starts a fresh directory.

**Sparse index.** Every ``index_interval`` records a segment keeps one entry:
the block's first offset, its file position, the largest timestamp in the block
and the block's payload bytes. ``read`` bisects to the block and scans forward;
``offset_for_time`` skips blocks whose largest timestamp is below the target (a
largest-timestamp index stays correct when publishers' clocks are not monotonic,
where a plain timestamp -> offset index would not); ``truncate_before`` subtracts
whole blocks' payload bytes and scans at most two partial blocks. The entries of a
sealed segment are written to its ``.idx`` file, so start-up scans only each
queue's last segment (and any segment whose ``.idx`` is missing or corrupt).

**Retention** deletes whole segments below the first retained offset (never the
last one, which keeps ``next_offset`` derivable) and records that offset under
``qf/<id>``; records below it that share a segment are skipped on read.

**Live tail.** The newest records of a queue that has consumer groups (one
committed an offset) are also kept in memory, as snapshots of their messages
(:func:`~fluxmq_badgerlike.codec.snapshot_message`: a tuple of the fields, equal
field by field and type by type to what decoding the record gives), so a consumer
that keeps up with its publishers reads a message without reading the file back
and decoding it: ``read`` builds a new Message from the snapshot
(:func:`~fluxmq_badgerlike.codec.message_from_snapshot`). A message whose round
trip would change a value (a nested property, a ``bytearray``) is held as its
encoded body and decoded on read. The tail always ends at the queue's next offset;
its oldest entries are dropped once every consumer group of the queue committed
past them (``commit_offset``), by ``truncate_before``, and when the cached messages
of all queues together exceed ``tail_cache_bytes`` (each counted as its encoded
size plus :data:`TAIL_ENTRY_OVERHEAD`; the queue appended to least recently loses
its oldest first). ``tail_cache_bytes = 0`` turns it off. A queue nobody consumes
is not cached: holding a backlog's messages as Python objects made every publish
dearer (a heap full of long-lived objects) by more than it saved a later
consumer. The records are written exactly as before: the cache changes what a read
costs, never what is durable.

Meta keys: ``qid`` (next queue id), ``qc/<name>`` ({id, config}), ``qf/<id>``
(first offset), ``qg/<id>/<group>`` (committed offset), ``qp/<id>/<group>/<offset:020d>``
([consumer, deadline, delivery count]); names are %-escaped as in the store.
Groups and the PEL are also kept in memory: they are written through, read from
memory.

What it deliberately does not do: apply retention, expiry or dead-lettering on
its own. The queue manager decides; the log records.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import os
import shutil
import struct
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import Any

from fluxmq_badgerlike.codec import (
    RecordDecoder,
    Snapshot,
    decode_message,
    decode_value,
    encode_message_exact,
    encode_value,
    message_from_snapshot,
    snapshot_exact,
)
from fluxmq_badgerlike.engine import Engine, EngineOptions
from fluxmq_badgerlike.errors import StorageCorruptionError
from fluxmq_badgerlike.framing import MAGIC, scan_segment
from fluxmq_badgerlike.metrics import engine_metric_specs
from fluxmq_badgerlike.store import esc, unesc
from fluxmq_badgerlike.writer import FileHandle, GroupWriter, fsync_dir
from fluxmq_core.message import Message
from fluxmq_core.metrics import MetricSpec
from fluxmq_core.storage.base import PendingEntry, QueueLog, StorageOptions, UnknownQueueError

log = logging.getLogger("fluxmq.storage.badgerlike")

REC, PAD = 1, 3
QHEADER = struct.Struct(
    "<IBBHIQdI"
)  # crc, magic, type, flags, body_len, offset, timestamp, payload_len
QHEADER_SIZE = QHEADER.size  # 32
_QBODY = struct.Struct("<BBHIQdI")
_IDX_MAGIC = b"FLXIDX01"
_IDX_HEAD = struct.Struct("<QQQI")  # base, next, file size, entries
_IDX_ENTRY = struct.Struct("<QQdQ")  # first offset, position, max timestamp, payload bytes
_READ_CHUNK = 64 * 1024
_INT = struct.Struct("<q")
_PEL_HEAD = b"l" + struct.pack("<I", 3) + b"s"
_PEL_TAIL = struct.Struct("<Bdc")  # after the consumer: b"d", deadline, b"i"
_PEL_REST = struct.Struct("<Bdcq")  # the tail and the count (_INT) in one pack
_INT64 = (-(1 << 63), (1 << 63) - 1)
#: Bytes counted per message in the live tail on top of its encoded size: the
#: snapshot Message, its properties dict and its slots in the tail's lists.
TAIL_ENTRY_OVERHEAD = 320


def _enc_int(value: int) -> bytes:
    """``encode_value(value)`` for an int (the committed offset), inlined."""
    if _INT64[0] <= value <= _INT64[1]:
        return b"i" + _INT.pack(value)
    return encode_value(value)


def _enc_pel(consumer: str, deadline: float, count: int) -> bytes:
    """``encode_value([consumer, deadline, count])``, inlined (one per delivery)."""
    if type(consumer) is not str or not _INT64[0] <= count <= _INT64[1]:
        return encode_value([consumer, deadline, count])
    cb = consumer.encode()
    return b"".join(
        (_PEL_HEAD, struct.pack("<I", len(cb)), cb, _PEL_TAIL.pack(0x64, deadline, b"i"),
         _INT.pack(count))
    )  # fmt: skip


def parse_q(view: memoryview, i: int, n: int) -> int:
    if n - i < QHEADER_SIZE:
        return -1
    crc, magic, rtype, _f, blen, _o, _t, _p = QHEADER.unpack_from(view, i)
    if magic != MAGIC or rtype not in (REC, PAD):
        return -1
    end = i + QHEADER_SIZE + blen
    if end > n or zlib.crc32(view[i + 4 : end]) != crc:
        return -1
    return end


def q_pad(length: int) -> bytes | None:
    if length < QHEADER_SIZE:
        return None
    body = _QBODY.pack(MAGIC, PAD, 0, length - QHEADER_SIZE, 0, 0.0, 0) + bytes(
        length - QHEADER_SIZE
    )
    return struct.pack("<I", zlib.crc32(body)) + body


class _Seg:
    """One segment file and its sparse index (parallel lists, one entry a block)."""

    __slots__ = ("base", "handle", "maxts", "next", "offs", "pbytes", "poss")

    def __init__(self, base: int, handle: FileHandle) -> None:
        self.base = base
        self.next = base
        self.handle = handle
        self.offs: list[int] = []
        self.poss: list[int] = []
        self.maxts: list[float] = []
        self.pbytes: list[int] = []

    def add(self, offset: int, pos: int, ts: float, plen: int, interval: int) -> None:
        if (offset - self.base) % interval == 0 or not self.offs:
            self.offs.append(offset)
            self.poss.append(pos)
            self.maxts.append(ts)
            self.pbytes.append(plen)
        else:
            if ts > self.maxts[-1]:
                self.maxts[-1] = ts
            self.pbytes[-1] += plen
        self.next = offset + 1

    def block_end(self, k: int) -> int:
        return self.offs[k + 1] if k + 1 < len(self.offs) else self.next

    def records(
        self, pos: int, stop_offset: int | None = None
    ) -> Iterator[tuple[int, float, int, bytes]]:
        """``(offset, timestamp, payload_len, body)`` from file position ``pos``."""
        h = self.handle
        buf, bpos = b"", pos
        while pos < h.size:
            i = pos - bpos
            if len(buf) - i < QHEADER_SIZE:
                buf, bpos, i = h.pread(pos, _READ_CHUNK), pos, 0
            crc, magic, rtype, _f, blen, off, ts, plen = QHEADER.unpack_from(buf, i)
            end = i + QHEADER_SIZE + blen
            if end > len(buf):
                buf, bpos, i = h.pread(pos, max(_READ_CHUNK, QHEADER_SIZE + blen)), pos, 0
                end = QHEADER_SIZE + blen
            if magic != MAGIC or end > len(buf) or zlib.crc32(memoryview(buf)[i + 4 : end]) != crc:
                raise StorageCorruptionError(
                    h.path, pos, "queue record failed its CRC check on read"
                )
            pos += end - i
            if rtype != REC:
                continue
            if stop_offset is not None and off >= stop_offset:
                return
            yield off, ts, plen, buf[i + QHEADER_SIZE : end]


class _Tail:
    """The newest records of one queue in memory (see the module docstring).

    ``items[i]`` holds offset ``base + i`` for ``i >= head``: a message snapshot
    (its properties in ``props[i]``), or the encoded body of a message that has no
    exact snapshot; ``items[:head]`` are dropped (None) until the lists are
    compacted. ``costs`` are the entries' counted bytes. Entries always end at the
    queue's next offset (appends are in order)."""

    __slots__ = ("base", "bytes", "costs", "head", "items", "props")

    def __init__(self) -> None:
        self.base = 0
        self.head = 0
        self.items: list[Snapshot | bytes | None] = []
        self.props: list[dict[str, Any] | None] = []
        self.costs: list[int] = []
        self.bytes = 0

    def drop_front(self, n: int) -> int:
        """Drop the ``n`` oldest entries (fewer if there are fewer); returns the
        bytes freed."""
        items, props, costs = self.items, self.props, self.costs
        head = self.head
        stop = min(len(items), head + n)
        freed = 0
        for i in range(head, stop):
            items[i] = props[i] = None
            freed += costs[i]
        self.bytes -= freed
        if stop * 2 >= len(items):  # compact: amortised O(1) per entry
            del items[:stop]
            del props[:stop]
            del costs[:stop]
            self.base += stop
            self.head = 0
        else:
            self.head = stop
        return freed


class _Queue:
    __slots__ = ("bytes", "config", "dir", "first", "gkeys", "groups", "id", "name", "next", "pel",
                 "rhint", "segs", "tail")  # fmt: skip

    def __init__(self, name: str, qid: int, config: dict[str, Any], directory: str) -> None:
        self.name = name
        self.id = qid
        self.config = config
        self.dir = directory
        self.segs: list[_Seg] = []
        self.first = 0
        self.next = 0
        self.bytes = 0
        self.groups: dict[str, int] = {}
        #: group -> offset -> (consumer, deadline, delivery count), in memory
        self.pel: dict[str, dict[int, tuple[str, float, int]]] = {}
        #: group -> its meta key prefix ``<id>/<escaped group>`` (built once per group)
        self.gkeys: dict[str, str] = {}
        self.tail = _Tail()
        #: where the last read from the files stopped: (segment, next offset, position)
        self.rhint: tuple[_Seg, int, int] | None = None

    def gkey(self, group: str) -> str:
        k = self.gkeys.get(group)
        if k is None:
            k = self.gkeys[group] = f"{self.id}/{esc(group)}"
        return k


class BadgerlikeQueueLog(QueueLog):
    """Durable queue logs; see the module docstring for the layout."""

    name = "badgerlike"
    durable = True

    def __init__(self, options: StorageOptions) -> None:
        super().__init__(options)
        self.opts = EngineOptions.from_extra(options.extra)
        self.root = os.path.join(options.data_dir, "queues")
        self.writer = GroupWriter(
            options.fsync, sync_interval=self.opts.sync_interval, name="queues"
        )
        self.meta = Engine(
            os.path.join(self.root, "meta"), options.fsync, self.opts, writer=self.writer
        )
        self._queues: dict[str, _Queue] = {}
        self._next_id = 1
        #: committed offsets not written yet: (queue, group) -> the latest offset;
        #: written once per flush (see ``commit_offset``)
        self._commits: dict[tuple[_Queue, str], int] = {}
        #: PEL changes not written yet: (queue, group, offset) -> the entry, or None
        #: for a removal; written once per flush (see ``pel_add``)
        self._pels: dict[tuple[_Queue, str, int], tuple[str, float, int] | None] = {}
        #: keys in ``_pels`` whose pending entry replaces one already written
        self._pel_shadowed: set[tuple[_Queue, str, int]] = set()
        self.writer.before_flush.append(self._before_flush)
        #: the live tail (see the module docstring): its bound, what it holds, and
        #: the queues holding some, least recently appended to first
        self._tail_budget = self.opts.tail_cache_bytes
        self._tail_bytes = 0
        self._tails: OrderedDict[_Tail, None] = OrderedDict()
        self._tail_last: _Tail | None = None
        #: records read from the tail and from the files
        self.tail_hits = 0
        self.tail_misses = 0
        self.recovery: dict[str, Any] = {
            "truncated_bytes": 0,
            "repaired": [],
            "scanned_segments": 0,
        }

    def _q(self, name: str) -> _Queue:
        try:
            return self._queues[name]
        except KeyError:
            raise UnknownQueueError(name) from None

    # --- lifecycle --------------------------------------------------------------

    async def open(self) -> None:
        await self.meta.open()
        try:
            self._load_meta()
            await asyncio.to_thread(self._recover_all)
        except BaseException:
            await self.meta.close()
            raise

    def _load_meta(self) -> None:
        meta = self.meta
        firsts: dict[int, int] = {}
        groups: list[tuple[int, str, int]] = []
        pels: list[tuple[int, str, int, list[Any]]] = []
        by_id: dict[int, _Queue] = {}

        def stored(key: str) -> Any:
            raw = meta.get(key)
            if raw is None:  # listed by keys() just now; only a bug could remove it
                raise RuntimeError(f"queue log meta key {key!r} vanished while loading")
            return decode_value(raw)

        for key in meta.keys():
            kind, _, rest = key.partition("/")
            if kind == "qid":
                self._next_id = max(self._next_id, stored(key))
            elif kind == "qc":
                rec = stored(key)
                name = unesc(rest)
                q = _Queue(
                    name, rec["id"], rec["config"], os.path.join(self.root, f"{rec['id']:08d}")
                )
                self._queues[name] = by_id[q.id] = q
                self._next_id = max(self._next_id, q.id + 1)
            elif kind == "qf":
                firsts[int(rest)] = stored(key)
            elif kind == "qg":
                qid_text, _, group_key = rest.partition("/")
                groups.append((int(qid_text), unesc(group_key), stored(key)))
            elif kind == "qp":
                qid_text, _, tail = rest.partition("/")
                group_key, _, off_text = tail.rpartition("/")
                pels.append((int(qid_text), unesc(group_key), int(off_text), stored(key)))
        for qid, first in firsts.items():
            if qid in by_id:
                by_id[qid].first = first
        for qid, g, off in groups:
            if qid in by_id:
                by_id[qid].groups[g] = off
        for qid, g, off, (consumer, deadline, count) in pels:
            if qid in by_id:
                by_id[qid].pel.setdefault(g, {})[off] = (consumer, deadline, count)
        for q in by_id.values():
            for g in q.pel:
                q.pel[g] = dict(sorted(q.pel[g].items()))

    def _recover_all(self) -> None:
        known = {f"{q.id:08d}" for q in self._queues.values()}
        for entry in os.listdir(self.root):
            if entry.isdigit() and entry not in known:  # a deleted queue's leftovers
                shutil.rmtree(os.path.join(self.root, entry), ignore_errors=True)
        for q in self._queues.values():
            os.makedirs(q.dir, exist_ok=True)
            self._recover_queue(q)

    def _recover_queue(self, q: _Queue) -> None:
        bases = sorted(
            int(f[:-4]) for f in os.listdir(q.dir) if f.endswith(".seg") and f[:-4].isdigit()
        )
        sizes = {b: os.path.getsize(self._seg_path(q, b)) for b in bases}
        first = q.first
        for k, base in enumerate(bases):
            seg = _Seg(base, FileHandle(self.writer, self._seg_path(q, base), create=False))
            later = any(sizes[b] > 0 for b in bases[k + 1 :])
            if not (later and self._load_idx(q, seg)):
                torn = self._scan(q, seg, later)
                q.segs.append(seg)
                if torn:
                    for b in bases[k + 1 :]:  # empty by construction
                        os.unlink(self._seg_path(q, b))
                    break
            else:
                q.segs.append(seg)
        q.next = max(first, q.segs[-1].next if q.segs else 0)
        if q.segs:
            first = max(first, q.segs[0].base)
        q.first = min(first, q.next)
        # Segments wholly below the first retained offset (their deletion was lost).
        while len(q.segs) > 1 and q.segs[0].next <= q.first:
            seg = q.segs.pop(0)
            seg.handle.close()
            os.unlink(seg.handle.path)
            with_idx = seg.handle.path[:-4] + ".idx"
            if os.path.exists(with_idx):
                os.unlink(with_idx)
        q.bytes = self._payload_bytes(q, q.first, q.next)

    def _scan(self, q: _Queue, seg: _Seg, later_has_data: bool) -> bool:
        h = seg.handle
        data = os.pread(h.fd, h.size, 0) if h.size else b""
        interval = self.opts.index_interval

        def apply(pos: int, n: int) -> None:
            _c, _m, rtype, _f, _b, off, ts, plen = QHEADER.unpack_from(data, pos)
            if rtype == REC:
                if not seg.offs:
                    seg.base = off
                seg.add(off, pos, ts, plen, interval)

        report = scan_segment(
            h.path, data, 0, parse_q, apply,
            later_has_data=later_has_data, repair=self.opts.repair, pad=q_pad, fd=h.fd,
        )  # fmt: skip
        self.recovery["scanned_segments"] += 1
        for pos, n in report["repaired"]:
            log.error(
                "%s: skipped %d corrupt bytes at byte %d (repair is on; records lost)",
                h.path,
                n,
                pos,
            )
            self.recovery["repaired"].append((h.path, pos, n))
        if report["truncate_at"] is None:
            return False
        log.warning(
            "%s: torn tail: dropped %d bytes after byte %d (an incomplete or corrupt last "
            "record, never acknowledged); %d valid records before it kept",
            h.path,
            report["dropped"],
            report["truncate_at"],
            report["records"],
        )
        os.ftruncate(h.fd, report["truncate_at"])
        os.fsync(h.fd)
        h.size = h.written = report["truncate_at"]
        self.recovery["truncated_bytes"] += report["dropped"]
        return True

    def _load_idx(self, q: _Queue, seg: _Seg) -> bool:
        path = seg.handle.path[:-4] + ".idx"
        try:
            with open(path, "rb") as f:
                data = f.read()
            if not data.startswith(_IDX_MAGIC) or len(data) < len(_IDX_MAGIC) + _IDX_HEAD.size + 4:
                raise ValueError("not an index file")
            if (
                zlib.crc32(memoryview(data)[:-4])
                != struct.unpack_from("<I", data, len(data) - 4)[0]
            ):
                raise ValueError("CRC mismatch")
            i = len(_IDX_MAGIC)
            base, nxt, size, count = _IDX_HEAD.unpack_from(data, i)
            if base != seg.base or size != seg.handle.size:
                raise ValueError("does not match its segment")
            i += _IDX_HEAD.size
            for _ in range(count):
                off, pos, mts, pb = _IDX_ENTRY.unpack_from(data, i)
                i += _IDX_ENTRY.size
                seg.offs.append(off)
                seg.poss.append(pos)
                seg.maxts.append(mts)
                seg.pbytes.append(pb)
            seg.next = nxt
            return True
        except FileNotFoundError:
            return False
        except (ValueError, struct.error) as exc:
            log.warning("%s ignored (%s); scanning its segment", path, exc)
            seg.offs, seg.poss, seg.maxts, seg.pbytes = [], [], [], []
            return False

    async def close(self) -> None:
        self._before_flush()
        self._tail_clear()
        await self.meta.close()
        await self.writer.close()
        for q in self._queues.values():
            for seg in q.segs:
                seg.handle.close()

    async def sync(self) -> None:
        self._before_flush()
        await self.writer.sync()

    def _before_flush(self) -> None:
        """Write what is coalesced until the writer's next flush: committed offsets
        and PEL changes."""
        if self._commits:
            self._put_commits()
        if self._pels:
            self._put_pels()

    def stats(self) -> dict[str, int]:
        qs = self._queues.values()
        out = {
            "queues": len(self._queues),
            "messages": sum(q.next - q.first for q in qs),
            "bytes": sum(q.bytes for q in qs),
            "groups": sum(len(set(q.groups) | set(q.pel)) for q in qs),
            "pending": sum(len(p) for q in qs for p in q.pel.values()),
            "segments": sum(len(q.segs) for q in qs),
            "fsyncs": self.writer.fsyncs,
            "flushes": self.writer.flushes,
            "tail_messages": sum(len(q.tail.items) - q.tail.head for q in qs),
            "tail_bytes": self._tail_bytes,
            "tail_hits": self.tail_hits,
            "tail_misses": self.tail_misses,
        }
        out.update({f"meta_{k}": v for k, v in self.meta.stats().items()})
        return out

    def metric_specs(self, store: str) -> list[MetricSpec]:
        """Fsync durations of the queue log's writer, its size (queue segments and
        the metadata engine) and the metadata engine's GC, labelled ``store``
        (see :mod:`fluxmq_badgerlike.metrics`)."""
        return engine_metric_specs(
            self.meta, self.writer, store, lambda: sum(q.bytes for q in self._queues.values())
        )

    def _seg_path(self, q: _Queue, base: int) -> str:
        return os.path.join(q.dir, f"{base:020d}.seg")

    # --- queues -----------------------------------------------------------------

    def create_queue(self, name: str, config: dict[str, Any]) -> None:
        q = self._queues.get(name)
        if q is None:
            qid = self._next_id
            self._next_id += 1
            self.meta.put("qid", encode_value(self._next_id))
            q = _Queue(name, qid, {}, os.path.join(self.root, f"{qid:08d}"))
            os.makedirs(q.dir, exist_ok=True)
            root = self.root
            self.writer.call(lambda: fsync_dir(root))
            self._queues[name] = q
        value = encode_value({"id": q.id, "config": config}, "queue config")
        q.config = decode_value(value)["config"]  # a stored copy, as it will read back
        self.meta.put("qc/" + esc(name), value)

    def delete_queue(self, name: str) -> None:
        q = self._queues.pop(name, None)
        if q is None:
            return
        for key in [k for k in self._commits if k[0] is q]:
            del self._commits[key]
        for pkey in [k for k in self._pels if k[0] is q]:
            if self._pels.pop(pkey) is None:  # a removal of a written entry
                self.meta.delete(f"qp/{q.gkey(pkey[1])}/{pkey[2]:020d}")
            self._pel_shadowed.discard(pkey)
        self._tail_drop(q.tail, len(q.tail.items))
        meta = self.meta
        meta.delete("qc/" + esc(name))
        meta.delete(f"qf/{q.id}")
        for g in q.groups:
            meta.delete(f"qg/{q.id}/{esc(g)}")
        for g, entries in q.pel.items():
            for off in entries:
                meta.delete(f"qp/{q.id}/{esc(g)}/{off:020d}")
        handles = [s.handle for s in q.segs]
        directory = q.dir

        def remove() -> None:
            for h in handles:
                h.close()
            shutil.rmtree(directory, ignore_errors=True)

        self.writer.call(remove)

    async def list_queues(self) -> dict[str, dict[str, Any]]:
        return {name: decode_value(encode_value(q.config)) for name, q in self._queues.items()}

    # --- records ----------------------------------------------------------------

    def append(self, queue: str, message: Message) -> int:
        return self._append(self._q(queue), message)

    def append_many(self, queue: str, messages: Iterable[Message]) -> list[int]:
        q = self._q(queue)
        return [self._append(q, m) for m in messages]

    def _append(self, q: _Queue, message: Message) -> int:
        body, exact = encode_message_exact(message)
        off = q.next
        ts = float(message.timestamp)
        plen = len(message.payload)
        head = _QBODY.pack(MAGIC, REC, 0, len(body), off, ts, plen)
        crc = zlib.crc32(body, zlib.crc32(head))
        record = struct.pack("<I", crc) + head + body
        seg = q.segs[-1] if q.segs else None
        if seg is None or (
            seg.handle.size and seg.handle.size + len(record) > self.opts.segment_size
        ):
            seg = self._rotate(q, off)
        pos = seg.handle.append(record)
        seg.add(off, pos, ts, plen, self.opts.index_interval)
        q.next = off + 1
        q.bytes += plen
        if self._tail_budget and q.groups:
            self._tail_add(q.tail, off, message if exact else None, body)
        return off

    # --- the live tail ----------------------------------------------------------

    def _tail_add(self, t: _Tail, off: int, exact: Message | None, body: bytes) -> None:
        """Keep record ``off``: a snapshot of ``exact`` (a message whose every value
        the codec gives back unchanged), else the encoded ``body``."""
        cost = len(body) + TAIL_ENTRY_OVERHEAD
        items = t.items
        if items and t.base + len(items) != off:  # not contiguous: start again
            self._tail_drop(t, len(items))
        if not items:
            t.base = off
            t.head = 0
        if exact is None:
            items.append(body)
            t.props.append(None)
        else:
            snap, props = snapshot_exact(exact)
            items.append(snap)
            t.props.append(props)
        t.costs.append(cost)
        t.bytes += cost
        if self._tail_last is not t:
            self._tail_last = t
            tails = self._tails
            tails[t] = None
            tails.move_to_end(t)
        self._tail_bytes += cost
        if self._tail_bytes > self._tail_budget:
            self._tail_evict()

    def _tail_evict(self) -> None:
        """Drop the oldest entries of the queue appended to least recently until the
        tail is back within its bound."""
        tails = self._tails
        while self._tail_bytes > self._tail_budget and tails:
            t = next(iter(tails))
            while self._tail_bytes > self._tail_budget and t.head < len(t.items):
                self._tail_bytes -= t.drop_front(1)
            if t.head >= len(t.items):
                self._tail_forget(t)

    def _tail_drop(self, t: _Tail, n: int) -> None:
        """Drop the ``n`` oldest entries of ``t``."""
        if n > 0 and t.items:
            self._tail_bytes -= t.drop_front(n)
            if not t.items:
                self._tail_forget(t)

    def _tail_forget(self, t: _Tail) -> None:
        self._tails.pop(t, None)
        if self._tail_last is t:
            self._tail_last = None

    def _tail_clear(self) -> None:
        for q in self._queues.values():
            self._tail_drop(q.tail, len(q.tail.items))

    def _rotate(self, q: _Queue, base: int) -> _Seg:
        if q.segs:
            old = q.segs[-1]
            self.writer.fsync_file(old.handle)
            self._write_idx_later(old)
        seg = _Seg(base, FileHandle(self.writer, self._seg_path(q, base), create=True))
        q.segs.append(seg)
        return seg

    def _write_idx_later(self, seg: _Seg) -> None:
        parts = [_IDX_MAGIC, _IDX_HEAD.pack(seg.base, seg.next, seg.handle.size, len(seg.offs))]
        for e in zip(seg.offs, seg.poss, seg.maxts, seg.pbytes, strict=True):
            parts.append(_IDX_ENTRY.pack(*e))
        body = b"".join(parts)
        path = seg.handle.path[:-4] + ".idx"

        def write() -> None:
            tmp = path + ".tmp"
            with open(tmp, "wb") as f:
                f.write(body + struct.pack("<I", zlib.crc32(body)))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)

        self.writer.call(write)

    async def read(self, queue: str, offset: int, limit: int) -> list[tuple[int, Message]]:
        q = self._q(queue)
        start = max(offset, q.first)
        out: list[tuple[int, Message]] = []
        if limit <= 0 or start >= q.next:
            return out
        t = q.tail
        items = t.items
        front = t.base + t.head if items else q.next  # the tail holds [front, next)
        if start < front:
            self._read_files(q, start, front, limit, out)
            self.tail_misses += len(out)
            if len(out) >= limit or not items:
                return out
            start = front
        base, props = t.base, t.props
        stop = min(len(items), start - base + limit - len(out))
        for i in range(start - base, stop):
            m = items[i]
            if isinstance(m, tuple):
                out.append((base + i, message_from_snapshot(m, props[i])))
            else:  # the encoded body of a message without an exact snapshot
                out.append((base + i, decode_message(m)))
        self.tail_hits += stop - (start - base)
        return out

    def _read_files(
        self, q: _Queue, start: int, stop: int, limit: int, out: list[tuple[int, Message]]
    ) -> None:
        """Append the records of offsets ``[start, stop)`` read from the segment
        files to ``out``, up to ``limit`` rows in ``out``.

        A read that starts where the previous one of the queue ended starts at that
        record's file position (``q.rhint``) instead of its index block's first
        record, so a consumer reading a backlog in steps does not re-read (and
        CRC-check) up to ``index_interval`` records per step. The records are cut
        as :meth:`_Seg.records` does, inline."""
        hint = q.rhint
        si = max(0, bisect.bisect_right([s.base for s in q.segs], start) - 1)
        crc32, unpack, magic_ok = zlib.crc32, QHEADER.unpack_from, MAGIC
        decode = RecordDecoder().decode
        for seg in q.segs[si:]:
            if seg.next <= start or not seg.offs:
                continue
            if hint is not None and hint[0] is seg and hint[1] == start:
                pos = hint[2]
            else:
                pos = seg.poss[max(0, bisect.bisect_right(seg.offs, start) - 1)]
            h = seg.handle
            buf, bpos = b"", pos
            while pos < h.size:
                i = pos - bpos
                if len(buf) - i < QHEADER_SIZE:
                    buf, bpos, i = h.pread(pos, _READ_CHUNK), pos, 0
                crc, magic, rtype, _f, blen, off, _ts, _pl = unpack(buf, i)
                end = i + QHEADER_SIZE + blen
                if end > len(buf):
                    buf, bpos, i = h.pread(pos, max(_READ_CHUNK, QHEADER_SIZE + blen)), pos, 0
                    end = QHEADER_SIZE + blen
                if (
                    magic != magic_ok
                    or end > len(buf)
                    or crc32(memoryview(buf)[i + 4 : end]) != crc
                ):
                    raise StorageCorruptionError(
                        h.path, pos, "queue record failed its CRC check on read"
                    )
                if rtype != REC:
                    pos += end - i
                    continue
                if off >= stop:
                    return
                pos += end - i
                if off < start:
                    continue
                out.append((off, decode(buf, i + QHEADER_SIZE, end)))
                if len(out) >= limit:
                    q.rhint = (seg, off + 1, pos)
                    return
            if seg.next >= stop:
                return

    def first_offset(self, queue: str) -> int:
        return self._q(queue).first

    def next_offset(self, queue: str) -> int:
        return self._q(queue).next

    async def offset_for_time(self, queue: str, timestamp: float) -> int:
        q = self._q(queue)
        for seg in q.segs:
            if seg.next <= q.first:
                continue
            for k, mts in enumerate(seg.maxts):
                if mts < timestamp or seg.block_end(k) <= q.first:
                    continue
                for off, ts, _pl, _b in seg.records(seg.poss[k], seg.block_end(k)):
                    if off >= q.first and ts >= timestamp:
                        return off
        return q.next

    def _payload_bytes(self, q: _Queue, lo: int, hi: int) -> int:
        """Payload bytes of the records with offsets in ``[lo, hi)``."""
        total = 0
        for seg in q.segs:
            if seg.next <= lo or seg.base >= hi:
                continue
            if seg.offs and seg.offs[0] >= lo and seg.next <= hi:
                total += sum(seg.pbytes)
                continue
            for k, bstart in enumerate(seg.offs):
                bend = seg.block_end(k)
                if bend <= lo or bstart >= hi:
                    continue
                if bstart >= lo and bend <= hi:
                    total += seg.pbytes[k]
                else:
                    total += sum(
                        pl for off, _t, pl, _b in seg.records(seg.poss[k], bend) if lo <= off < hi
                    )
        return total

    def truncate_before(self, queue: str, offset: int) -> int:
        q = self._q(queue)
        new_first = min(max(offset, q.first), q.next)
        dropped = new_first - q.first
        if dropped <= 0:
            return 0
        q.bytes -= self._payload_bytes(q, q.first, new_first)
        q.first = new_first
        t = q.tail
        self._tail_drop(t, new_first - (t.base + t.head))
        self.meta.put(f"qf/{q.id}", encode_value(new_first))
        while len(q.segs) > 1 and q.segs[0].next <= new_first:
            seg = q.segs.pop(0)
            h = seg.handle
            idx = h.path[:-4] + ".idx"

            def remove(h: FileHandle = h, idx: str = idx) -> None:
                h.close()
                for p in (h.path, idx):
                    try:
                        os.unlink(p)
                    except FileNotFoundError:
                        pass

            self.writer.call(remove)
        return dropped

    def size_bytes(self, queue: str) -> int:
        return self._q(queue).bytes

    def length(self, queue: str) -> int:
        q = self._q(queue)
        return q.next - q.first

    # --- consumer groups --------------------------------------------------------

    def commit_offset(self, queue: str, group: str, offset: int) -> None:
        """Record ``offset`` at once in memory; the meta record is written by the next
        flush of the writer (before its batch is taken), so a run of commits (one
        per ack while a group acknowledges in order) costs one record, not one each.
        Nothing is weaker for it: records reach the file only at a flush anyway, and
        ``sync()`` writes what is outstanding before it waits."""
        q = self._q(queue)
        offset = int(offset)
        groups = q.groups
        groups[group] = offset
        commits = self._commits
        if not commits:
            self.writer.schedule_flush()
        commits[(q, group)] = offset
        t = q.tail
        if t.items:  # every group settled what is below its committed offset
            low = offset if len(groups) == 1 else min(groups.values())
            self._tail_drop(t, low - (t.base + t.head))

    def _put_commits(self) -> None:
        commits = self._commits
        if not commits:
            return
        self._commits = {}
        put = self.meta.put
        for (q, group), offset in commits.items():
            if self._queues.get(q.name) is q:
                put("qg/" + q.gkey(group), _enc_int(offset))

    async def committed_offset(self, queue: str, group: str) -> int | None:
        return self._q(queue).groups.get(group)

    async def list_groups(self, queue: str) -> list[str]:
        q = self._q(queue)
        return list(dict.fromkeys([*q.groups, *(g for g, p in q.pel.items() if p)]))

    # --- pending-entry list -----------------------------------------------------

    def pel_add(
        self,
        queue: str,
        group: str,
        offset: int,
        consumer: str,
        deadline: float,
        delivery_count: int,
    ) -> None:
        """Record the entry at once in memory; its meta record is written by the next
        flush of the writer, with every other PEL change since the last one (one
        append), and not at all when the entry is removed before that flush (a
        delivery acknowledged within one flush: nothing of it ever reached the file
        anyway). Nothing is weaker for it: records reach the file only at a flush,
        and ``sync()`` writes what is outstanding before it waits.

        Bookkeeping: an entry in memory and not in ``_pels`` is written; one in
        ``_pels`` is written only if its key is in ``_pel_shadowed`` (an older
        version, which a removal must delete)."""
        q = self._queues.get(queue)
        if q is None:
            raise UnknownQueueError(queue)
        if type(offset) is not int:
            offset = int(offset)
        entry = (
            consumer,
            deadline if type(deadline) is float else float(deadline),
            delivery_count if type(delivery_count) is int else int(delivery_count),
        )
        pel = q.pel.get(group)
        if pel is None:
            pel = q.pel[group] = {}
        key = (q, group, offset)
        pels = self._pels
        if offset in pel:  # replacing an entry: is a version of it written?
            if key not in pels or pels[key] is None:
                self._pel_shadowed.add(key)
        elif key in pels:  # re-added after a removal not written yet
            self._pel_shadowed.add(key)
        pel[offset] = entry
        if not pels:
            self.writer.schedule_flush()
        pels[key] = entry

    def pel_remove(self, queue: str, group: str, offset: int) -> None:
        q = self._queues.get(queue)
        if q is None:
            raise UnknownQueueError(queue)
        pel = q.pel.get(group)
        if pel is not None and pel.pop(offset, None) is not None:
            key = (q, group, offset if type(offset) is int else int(offset))
            pels = self._pels
            if key not in pels:  # written: write its removal
                if not pels:
                    self.writer.schedule_flush()
                pels[key] = None
            elif key in self._pel_shadowed:  # an older version is written
                pels[key] = None
                self._pel_shadowed.discard(key)
            else:  # never written: nothing to write
                del pels[key]

    def _put_pels(self) -> None:
        pels = self._pels
        self._pels = {}
        self._pel_shadowed.clear()
        queues = self._queues
        items: list[tuple[str, bytes | None]] = []
        append = items.append
        # the key prefix is computed once per run of one group's entries, and a
        # consumer's encoded head once per flush (both as _enc_pel writes them)
        last_q: _Queue | None = None
        last_group = prefix = ""
        live = False
        heads: dict[str, bytes] = {}
        rest = _PEL_REST.pack
        lo, hi = _INT64
        for (q, group, offset), entry in pels.items():
            if q is not last_q or group != last_group:
                last_q, last_group = q, group
                live = queues.get(q.name) is q
                prefix = f"qp/{q.gkey(group)}/" if live else ""
            if not live:
                continue  # deleted meanwhile (delete_queue wrote what it had to)
            key = f"{prefix}{offset:020d}"
            if entry is None:
                append((key, None))
                continue
            consumer, deadline, count = entry
            head = heads.get(consumer) if type(consumer) is str else None
            if head is None and type(consumer) is str:
                cb = consumer.encode()
                head = heads[consumer] = _PEL_HEAD + struct.pack("<I", len(cb)) + cb
            if head is None or not lo <= count <= hi:
                append((key, _enc_pel(consumer, deadline, count)))
            else:
                append((key, head + rest(0x64, deadline, b"i", count)))
        self.meta.write_many(items)

    async def pel_entries(self, queue: str, group: str) -> list[PendingEntry]:
        pel = self._q(queue).pel.get(group)
        if not pel:
            return []
        return [PendingEntry(o, *pel[o]) for o in sorted(pel)]
