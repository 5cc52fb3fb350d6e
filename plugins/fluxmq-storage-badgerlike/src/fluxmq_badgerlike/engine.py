"""The key-value engine: keys and value pointers in memory, values in a log.

In Badger's spirit, cut down to what a broker needs:

* **Index**: a dict ``key -> (segment, position, record length)``. Keys are small
  and few (sessions, subscriptions, queue entries); values stay on disk and are
  read back by pointer, CRC-checked on every read.
* **Value log**: append-only segment files ``<seq:08d>.vlog`` of CRC-framed
  records (:mod:`fluxmq_badgerlike.framing`), rotated at ``segment_size``. A
  sealed segment is fsynced before the next one receives data, so only the last
  segment can ever have a torn tail.
* **Group commit** through :class:`~fluxmq_badgerlike.writer.GroupWriter`: ``put``
  and ``delete`` append to the head segment's pending chunk and return; one flush
  per loop tick writes them with one ``pwrite``; ``sync()`` waits for the fsync.
* **Checkpoint**: ``CHECKPOINT`` holds a snapshot of the index plus the log
  position it covers, and its own CRC. It is written every
  ``checkpoint_interval`` seconds when something changed, after every GC step
  and at a clean close, always after fsyncing the data it describes. Start-up loads
  it and replays only the records after that position; a missing, corrupt or
  stale checkpoint (it points past the end of a file) means a full replay, logged.
* **Garbage collection**: per segment, ``total`` bytes and ``dead`` bytes
  (overwritten or deleted values, padding). :meth:`Engine.gc` picks the oldest
  sealed segment whose dead share is at least ``gc_ratio``, re-appends its live
  records to the head (yielding to the loop every few hundred records), fsyncs,
  writes a checkpoint that no longer mentions the segment, and only then deletes
  the file. A delete record is kept (re-appended) unless its segment is the
  oldest, so that a full replay can never resurrect a deleted key.

What it deliberately does not have: ordered iteration, transactions across keys,
compression or a value cache (the OS page cache serves reads).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
import zlib
from collections.abc import Iterator
from typing import Any

from fluxmq_badgerlike.errors import StorageCorruptionError, StorageError
from fluxmq_badgerlike.framing import (
    DELETE,
    HEADER,
    HEADER_SIZE,
    MAGIC,
    PAD,
    PUT,
    check_kv,
    kv_pad,
    kv_record,
    parse_kv,
    scan_segment,
)
from fluxmq_badgerlike.writer import DirLock, FileHandle, GroupWriter, fsync_dir

log = logging.getLogger("fluxmq.storage.badgerlike")

CHECKPOINT = "CHECKPOINT"
_CKPT_MAGIC = b"FLXCKPT1"
_CKPT_HEAD = struct.Struct("<IQQ")  # segment, position, key count
_CKPT_ENTRY = struct.Struct("<IQI")  # segment, position, length
_U32 = struct.Struct("<I")
_PUT_HEAD = struct.Struct("<BBHII")  # magic, type, flags, key_len, value_len

Pointer = tuple[int, int, int]


class EngineOptions:
    """Tunables of one engine; see ``docs/storage.md`` for the matching keys."""

    __slots__ = ("checkpoint_interval", "gc_interval", "gc_ratio", "index_interval", "repair",
                 "segment_size", "sync_interval", "tail_cache_bytes")  # fmt: skip

    #: ``StorageOptions.extra`` keys understood, with their types.
    KEYS = {
        "segment_size": int, "checkpoint_interval": float, "gc_ratio": float,
        "gc_interval": float, "sync_interval": float, "repair": bool, "index_interval": int,
        "tail_cache_bytes": int,
    }  # fmt: skip

    @classmethod
    def from_extra(cls, extra: dict[str, Any]) -> EngineOptions:
        """Build from ``StorageOptions.extra``; an unknown key or a wrong type is a
        ``ValueError`` that names it."""
        kwargs: dict[str, Any] = {}
        for key, value in extra.items():
            kind = cls.KEYS.get(key)
            if kind is None:
                raise ValueError(
                    f"badgerlike storage: unknown option {key!r} (known: {', '.join(sorted(cls.KEYS))})"
                )
            ok = (
                isinstance(value, bool)
                if kind is bool
                else (isinstance(value, (int, float)) and not isinstance(value, bool))
            )
            if not ok or (kind is int and not float(value).is_integer()):
                raise ValueError(
                    f"badgerlike storage: option {key!r} must be {kind.__name__}, got {value!r}"
                )
            kwargs[key] = kind(value)
        opts = cls(**kwargs)
        if opts.segment_size < 4096:
            raise ValueError("badgerlike storage: segment_size must be at least 4096 bytes")
        if not 0.0 < opts.gc_ratio <= 1.0:
            raise ValueError("badgerlike storage: gc_ratio must be in (0, 1]")
        if opts.index_interval < 1:
            raise ValueError("badgerlike storage: index_interval must be at least 1")
        if opts.tail_cache_bytes < 0:
            raise ValueError("badgerlike storage: tail_cache_bytes must be 0 (off) or more")
        return opts

    def __init__(
        self,
        *,
        segment_size: int = 16 << 20,
        checkpoint_interval: float = 30.0,
        gc_ratio: float = 0.5,
        gc_interval: float = 60.0,
        sync_interval: float = 1.0,
        repair: bool = False,
        index_interval: int = 64,
        tail_cache_bytes: int = 8 << 20,
    ) -> None:
        self.index_interval = int(index_interval)
        #: the queue log's live-tail cache bound (see ``queue_log``); the store ignores it
        self.tail_cache_bytes = int(tail_cache_bytes)
        self.segment_size = int(segment_size)
        self.checkpoint_interval = float(checkpoint_interval)
        self.gc_ratio = float(gc_ratio)
        self.gc_interval = float(gc_interval)
        self.sync_interval = float(sync_interval)
        self.repair = bool(repair)


class Engine:
    """One value log in ``directory``; see the module docstring."""

    def __init__(
        self,
        directory: str,
        fsync: str = "batch",
        options: EngineOptions | None = None,
        *,
        writer: GroupWriter | None = None,
        lock: bool = True,
    ) -> None:
        self.directory = directory
        self.options = options or EngineOptions()
        self._own_writer = writer is None
        self.writer = writer or GroupWriter(fsync, sync_interval=self.options.sync_interval)
        self._lock = DirLock(directory) if lock else None
        self._index: dict[str, Pointer] = {}
        self._handles: dict[int, FileHandle] = {}
        self._total: dict[int, int] = {}
        self._dead: dict[int, int] = {}
        self._head = 0
        self._changes = 0  # writes since the last checkpoint
        self._maint_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._opened = False
        #: start-up and maintenance counters (stats and tests)
        self.replayed_records = 0
        self.full_replay = False
        self.recovery: dict[str, Any] = {"truncated_bytes": 0, "repaired": []}
        self.checkpoints = 0
        self.gc_runs = 0
        self.gc_reclaimed_bytes = 0

    # --- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        os.makedirs(self.directory, exist_ok=True)
        if self._lock is not None:
            self._lock.acquire()
        try:
            await asyncio.to_thread(self._recover)
        except BaseException:
            self._close_files()
            raise
        self._opened = True
        self._task = asyncio.get_running_loop().create_task(self._maintenance())

    async def close(self) -> None:
        if not self._opened:
            return
        self._opened = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        try:
            await self.writer.sync(force=True)
            if self._changes:
                await self.checkpoint()
        finally:
            if self._own_writer:
                await self.writer.close()
            self._close_files()

    def _close_files(self) -> None:
        for h in self._handles.values():
            h.close()
        self._handles.clear()
        if self._lock is not None:
            self._lock.release()

    async def sync(self) -> None:
        await self.writer.sync()

    # --- reads and writes -----------------------------------------------------------------

    def put(self, key: str, value: bytes) -> None:
        kb = key.encode()
        # kv_record(PUT, kb, value), inlined: one put per PEL change on the queue path
        body = b"".join((_PUT_HEAD.pack(MAGIC, PUT, 0, len(kb), len(value)), kb, value))
        self._append(key, _U32.pack(zlib.crc32(body)) + body, PUT)

    def write_many(self, items: list[tuple[str, bytes | None]]) -> None:
        """``put`` (a value) or ``delete`` (``None``) several keys, in order, with one
        append to the head segment: the queue log's PEL changes of one writer flush.
        The records are the ones ``put`` and ``delete`` write; a delete of an absent
        key writes nothing."""
        index = self._index
        records: list[bytes] = []
        metas: list[tuple[str, int, int]] = []
        pack, crc32, u32 = _PUT_HEAD.pack, zlib.crc32, _U32.pack
        for key, value in items:
            kb = key.encode()
            if value is None:
                if key not in index:
                    continue
                body = pack(MAGIC, DELETE, 0, len(kb), 0) + kb
                rtype = DELETE
            else:
                body = b"".join((pack(MAGIC, PUT, 0, len(kb), len(value)), kb, value))
                rtype = PUT
            record = u32(crc32(body)) + body
            records.append(record)
            metas.append((key, rtype, len(record)))
        if not records:
            return
        data = b"".join(records)
        head = self._head
        h = self._handles[head]
        if h.size and h.size + len(data) > self.options.segment_size:
            for record, (key, rtype, _n) in zip(records, metas, strict=True):
                self._append(key, record, rtype)  # rotates where it must
            return
        pos = h.append(data)
        self._total[head] += len(data)
        dead = self._dead
        for key, rtype, n in metas:
            if rtype == PUT:
                old = index.get(key)
                index[key] = (head, pos, n)
            else:
                old = index.pop(key, None)
            if old is not None:
                dead[old[0]] += old[2]
            pos += n
        self._changes += len(metas)

    def delete(self, key: str) -> bool:
        """Delete ``key``; False (and nothing written) when it is absent."""
        if key not in self._index:
            return False
        self._append(key, kv_record(DELETE, key.encode()), DELETE)
        return True

    def _append(self, key: str, record: bytes, rtype: int) -> None:
        n = len(record)
        head = self._head
        h = self._handles[head]
        if h.size and h.size + n > self.options.segment_size:
            h = self._rotate()
            head = self._head
        pos = h.append(record)
        self._total[head] += n
        index = self._index
        if rtype == PUT:
            old = index.get(key)
            index[key] = (head, pos, n)
        else:
            old = index.pop(key, None)
        if old is not None:
            self._dead[old[0]] += old[2]
        self._changes += 1

    def _rotate(self) -> FileHandle:
        old = self._handles[self._head]
        self.writer.fsync_file(old)  # sealed before the next segment gets data
        self._head += 1
        return self._new_segment(self._head)

    def _new_segment(self, seg: int) -> FileHandle:
        h = FileHandle(self.writer, self._seg_path(seg), create=True)
        self._handles[seg] = h
        self._total[seg] = 0
        self._dead[seg] = 0
        return h

    def get(self, key: str) -> bytes | None:
        ptr = self._index.get(key)
        if ptr is None:
            return None
        seg, pos, n = ptr
        h = self._handles[seg]
        return check_kv(h.pread(pos, n), h.path, pos)

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def __len__(self) -> int:
        return len(self._index)

    def keys(self) -> Iterator[str]:
        return iter(list(self._index))

    def stats(self) -> dict[str, int]:
        total = sum(self._total.values())
        return {
            "keys": len(self._index),
            "segments": len(self._handles),
            "bytes": total,
            "dead_bytes": sum(self._dead.values()),
            "replayed_records": self.replayed_records,
            "checkpoints": self.checkpoints,
            "gc_runs": self.gc_runs,
            "gc_reclaimed_bytes": self.gc_reclaimed_bytes,
            "repaired_regions": len(self.recovery["repaired"]),
        }

    def _seg_path(self, seg: int) -> str:
        return os.path.join(self.directory, f"{seg:08d}.vlog")

    # --- recovery (runs in a worker thread during open) ---------------------------------

    def _recover(self) -> None:
        segs = sorted(
            int(f[:-5])
            for f in os.listdir(self.directory)
            if f.endswith(".vlog") and f[:-5].isdigit()
        )
        sizes = {s: os.path.getsize(self._seg_path(s)) for s in segs}
        start: tuple[int, int] = (segs[0], 0) if segs else (0, 0)
        loaded = self._load_checkpoint(sizes)
        if loaded is not None:
            self._index, start = loaded
        else:
            self.full_replay = True
        for s in segs:
            self._handles[s] = FileHandle(self.writer, self._seg_path(s), create=False)
        for k, s in enumerate(segs):
            if s < start[0]:
                continue
            base = start[1] if s == start[0] else 0
            later = any(sizes[t] > 0 for t in segs[k + 1 :])
            self._replay_segment(s, base, later)
            if self.recovery.get("truncated_at_segment") is not None:
                # A torn tail: later segments are empty by construction; drop them.
                for t in segs[k + 1 :]:
                    self._handles.pop(t).close()
                    os.unlink(self._seg_path(t))
                break
        if not self._handles:
            self._new_segment(0)
        self._head = max(self._handles)
        live: dict[int, int] = dict.fromkeys(self._handles, 0)
        for seg, _pos, n in self._index.values():
            if seg not in live:
                raise StorageError(
                    f"index of {self.directory} points into missing segment {seg:08d}.vlog"
                )
            live[seg] += n
        for s, h in self._handles.items():
            self._total[s] = h.size
            self._dead[s] = h.size - live[s]
        if self.replayed_records or self.full_replay:
            self._changes += 1  # checkpoint soon, so the next start-up is short
        log.debug(
            "%s: %d keys, %d segments, %d records replayed%s",
            self.directory,
            len(self._index),
            len(self._handles),
            self.replayed_records,
            " (full replay)" if self.full_replay else "",
        )

    def _replay_segment(self, seg: int, base: int, later_has_data: bool) -> None:
        h = self._handles[seg]
        data = os.pread(h.fd, h.size - base, base) if h.size > base else b""
        index = self._index
        view = memoryview(data)

        def apply(pos: int, n: int) -> None:
            _crc, _m, rtype, _f, klen, _vlen = HEADER.unpack_from(view, pos - base)
            if rtype == PAD:
                return
            key = bytes(view[pos - base + HEADER_SIZE : pos - base + HEADER_SIZE + klen]).decode()
            if rtype == PUT:
                index[key] = (seg, pos, n)
            else:
                index.pop(key, None)

        report = scan_segment(
            h.path, data, base, parse_kv, apply,
            later_has_data=later_has_data, repair=self.options.repair, pad=kv_pad, fd=h.fd,
        )  # fmt: skip
        self.replayed_records += report["records"]
        for pos, n in report["repaired"]:
            log.error(
                "%s: skipped %d corrupt bytes at byte %d (repair is on; records there are lost)",
                h.path,
                n,
                pos,
            )
            self.recovery["repaired"].append((h.path, pos, n))
        if report["truncate_at"] is not None:
            at = report["truncate_at"]
            log.warning(
                "%s: torn tail: dropped %d bytes after byte %d (an incomplete or corrupt last "
                "record, never acknowledged); %d valid records before it kept",
                h.path,
                report["dropped"],
                at,
                report["records"],
            )
            os.ftruncate(h.fd, at)
            os.fsync(h.fd)
            h.size = h.written = at
            self.recovery["truncated_bytes"] += report["dropped"]
            self.recovery["truncated_at_segment"] = seg

    def _load_checkpoint(
        self, sizes: dict[int, int]
    ) -> tuple[dict[str, Pointer], tuple[int, int]] | None:
        path = os.path.join(self.directory, CHECKPOINT)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            if sizes:
                log.warning("%s: no checkpoint; replaying every segment", self.directory)
            return None
        try:
            return self._parse_checkpoint(data, sizes)
        except (ValueError, struct.error, UnicodeDecodeError) as exc:
            log.warning("%s: checkpoint ignored (%s); replaying every segment", path, exc)
            return None

    @staticmethod
    def _parse_checkpoint(
        data: bytes, sizes: dict[int, int]
    ) -> tuple[dict[str, Pointer], tuple[int, int]]:
        if len(data) < len(_CKPT_MAGIC) + _CKPT_HEAD.size + 4 or not data.startswith(_CKPT_MAGIC):
            raise ValueError("not a checkpoint file")
        (crc,) = _U32.unpack_from(data, len(data) - 4)
        if zlib.crc32(memoryview(data)[:-4]) != crc:
            raise ValueError("CRC mismatch")
        i = len(_CKPT_MAGIC)
        seg, pos, count = _CKPT_HEAD.unpack_from(data, i)
        i += _CKPT_HEAD.size
        if sizes.get(seg, -1) < pos:
            raise ValueError(f"it covers {seg:08d}.vlog up to byte {pos}, beyond the file")
        index: dict[str, Pointer] = {}
        unpack_len, unpack_entry = _U32.unpack_from, _CKPT_ENTRY.unpack_from
        for _ in range(count):
            (klen,) = unpack_len(data, i)
            key = data[i + 4 : i + 4 + klen].decode()
            i += 4 + klen
            s, p, n = unpack_entry(data, i)
            i += _CKPT_ENTRY.size
            if p + n > sizes.get(s, -1):
                raise ValueError(f"{key!r} points past the end of {s:08d}.vlog")
            index[key] = (s, p, n)
        if i != len(data) - 4:
            raise ValueError("trailing bytes")
        return index, (seg, pos)

    # --- checkpoints -----------------------------------------------------------------

    async def checkpoint(self) -> None:
        """Write a checkpoint of the index as of now (after fsyncing the data)."""
        async with self._maint_lock:
            await self._checkpoint_locked()

    async def _checkpoint_locked(self) -> None:
        snapshot = dict(self._index)
        head, pos = self._head, self._handles[self._head].size
        changes = self._changes
        await self.writer.call(
            lambda: self._write_checkpoint(snapshot, head, pos), fsync_first=True
        )
        self._changes -= changes
        self.checkpoints += 1

    def _write_checkpoint(self, index: dict[str, Pointer], seg: int, pos: int) -> None:
        parts = [_CKPT_MAGIC, _CKPT_HEAD.pack(seg, pos, len(index))]
        pack_len, pack_entry = _U32.pack, _CKPT_ENTRY.pack
        for key, (s, p, n) in index.items():
            kb = key.encode()
            parts.append(pack_len(len(kb)))
            parts.append(kb)
            parts.append(pack_entry(s, p, n))
        body = b"".join(parts)
        path = os.path.join(self.directory, CHECKPOINT)
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(body)
            f.write(_U32.pack(zlib.crc32(body)))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(self.directory)

    # --- garbage collection ----------------------------------------------------------

    def gc_candidates(self) -> list[int]:
        ratio = self.options.gc_ratio
        return [
            s
            for s in sorted(self._handles)
            if s != self._head and (self._total[s] == 0 or self._dead[s] >= ratio * self._total[s])
        ]

    async def gc(self, max_segments: int = 1) -> dict[str, int]:
        """Rewrite up to ``max_segments`` sealed segments whose dead share is at
        least ``gc_ratio`` and delete them; returns what was done."""
        result = {"segments": 0, "moved": 0, "dropped": 0, "bytes_reclaimed": 0}
        async with self._maint_lock:
            for _ in range(max_segments):
                candidates = self.gc_candidates()
                if not candidates:
                    break
                await self._gc_segment(candidates[0], result)
        return result

    async def _gc_segment(self, seg: int, result: dict[str, int]) -> None:
        h = self._handles[seg]
        await self.writer.sync()  # the segment's bytes are all in the file
        data = await asyncio.to_thread(os.pread, h.fd, h.size, 0)
        view = memoryview(data)
        oldest = seg == min(self._handles)
        i, n, steps = 0, len(data), 0
        while i < n:
            end = parse_kv(view, i, n)
            if end < 0:
                raise StorageCorruptionError(h.path, i, "record failed its CRC check during GC")
            _crc, _m, rtype, _f, klen, _vlen = HEADER.unpack_from(view, i)
            if rtype != PAD:
                key = bytes(view[i + HEADER_SIZE : i + HEADER_SIZE + klen]).decode()
                if rtype == PUT and self._index.get(key) == (seg, i, end - i):
                    self.put(key, bytes(view[i + HEADER_SIZE + klen : end]))
                    result["moved"] += 1
                elif rtype == DELETE and not oldest and key not in self._index:
                    # Keep the delete: an older segment may still hold a put of the key.
                    self._append_delete(key)
                    result["moved"] += 1
                else:
                    result["dropped"] += 1
            i = end
            steps += 1
            if steps % 256 == 0:
                await asyncio.sleep(0)  # a bounded amount of work per loop turn
        await self.writer.sync(force=True)
        await self._checkpoint_locked()
        if any(p[0] == seg for p in self._index.values()):  # pragma: no cover - defensive
            raise StorageError(f"GC of {h.path}: live records remain; segment kept")
        path = h.path

        def unlink() -> None:
            h.close()
            os.unlink(path)
            fsync_dir(self.directory)

        await self.writer.call(unlink)
        del self._handles[seg]
        reclaimed = self._total.pop(seg)
        self._dead.pop(seg)
        result["segments"] += 1
        result["bytes_reclaimed"] += reclaimed
        self.gc_runs += 1
        self.gc_reclaimed_bytes += reclaimed
        log.debug("GC removed %s (%d bytes)", path, reclaimed)

    def _append_delete(self, key: str) -> None:
        record = kv_record(DELETE, key.encode())
        h = self._handles[self._head]
        if h.size and h.size + len(record) > self.options.segment_size:
            h = self._rotate()
        h.append(record)
        self._total[self._head] += len(record)
        self._changes += 1

    # --- background work -------------------------------------------------------------

    async def _maintenance(self) -> None:
        loop = asyncio.get_running_loop()
        opts = self.options
        next_ckpt = loop.time() + opts.checkpoint_interval
        next_gc = loop.time() + opts.gc_interval
        while True:
            await asyncio.sleep(max(0.01, min(next_ckpt, next_gc) - loop.time()))
            now = loop.time()
            try:
                if now >= next_gc:
                    next_gc = now + opts.gc_interval
                    await self.gc(max_segments=1)
                if now >= next_ckpt:
                    next_ckpt = now + opts.checkpoint_interval
                    if self._changes:
                        await self.checkpoint()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: background checkpoint/GC failed", self.directory)
