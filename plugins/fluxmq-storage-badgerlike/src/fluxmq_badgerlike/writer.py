"""Group commit: one writer thread, strict order, one fsync per batch.

Writers on the event loop call :meth:`FileHandle.append`, which copies the bytes
into the handle's open chunk and returns the file position at once. The first
write of a loop tick schedules a flush (``call_soon``); the flush hands every
chunk queued so far to a single-thread executor, which writes each with one
``os.pwrite`` and then, per ``fsync`` mode, fsyncs every file it touched once.
Writes that arrive while a flush is on the disk wait in the next batch: the
slower the disk, the bigger the batch, which is what makes group commit scale
with concurrent publishers.

Until the writer thread reports a chunk written, its bytes stay readable from
memory (:meth:`FileHandle.pread` merges file and pending chunks), so a write is
visible to reads at once, as the storage contract requires.

fsync modes (what :meth:`GroupWriter.sync` waits for):

* ``always``: every flush ends with an fsync of the files it wrote, whether or
  not anybody waits; ``sync()`` resolves after it.
* ``batch``: a flush fsyncs only when a ``sync()`` is waiting (one fsync for all
  waiters of the batch), and every ``sync_interval`` seconds for writes nobody
  waited on; ``sync()`` resolves after the fsync.
* ``never``: no fsync; ``sync()`` resolves once the bytes reached the OS
  (``pwrite`` returned), so they survive a process crash but not a power cut.

Besides writes, the thread runs ordered operations (:meth:`GroupWriter.call`:
fsync one file, unlink a segment, write a checkpoint) after everything queued
before them. What this module deliberately does not know: record formats.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fluxmq_badgerlike.errors import StorageError, StorageLockedError
from fluxmq_core.metrics import Histogram

log = logging.getLogger("fluxmq.storage.badgerlike")

#: Bucket bounds of the fsync-duration histogram, in seconds (0.1 ms to 2.5 s).
FSYNC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                 0.25, 0.5, 1.0, 2.5)  # fmt: skip

try:  # pragma: no cover - platform dependent
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]  # no fcntl (Windows): locking is skipped


class _Chunk:
    __slots__ = ("data", "handle", "pos")

    def __init__(self, handle: FileHandle, pos: int) -> None:
        self.handle = handle
        self.pos = pos
        self.data = bytearray()


class FileHandle:
    """An append-only file written through a :class:`GroupWriter`.

    ``size`` counts every byte appended (written or not); ``written`` the bytes
    the writer thread has handed to the OS.
    """

    __slots__ = ("_open", "closed", "fd", "new", "path", "pending", "size", "writer", "written")

    def __init__(self, writer: GroupWriter, path: str, *, create: bool) -> None:
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        self.fd = os.open(path, flags, 0o644)
        self.path = path
        self.writer = writer
        self.size = self.written = os.fstat(self.fd).st_size
        self.pending: collections.deque[_Chunk] = collections.deque()
        self._open: _Chunk | None = None
        self.new = create  # directory entry not yet fsynced
        self.closed = False

    def append(self, data: bytes | bytearray) -> int:
        """Queue ``data`` at the end of the file and return its position."""
        pos = self.size
        chunk = self._open
        if chunk is None:
            chunk = self._open = _Chunk(self, pos)
            self.pending.append(chunk)
            self.writer._queue_chunk(chunk)
        chunk.data += data
        self.size = pos + len(data)
        self.writer._note_write()
        return pos

    def pread(self, pos: int, n: int) -> bytes:
        """``n`` bytes at ``pos`` (fewer at the end), from disk or pending chunks."""
        end = min(pos + n, self.size)
        if end <= self.written:
            return os.pread(self.fd, end - pos, pos)
        parts = []
        if pos < self.written:
            parts.append(os.pread(self.fd, self.written - pos, pos))
        for chunk in self.pending:
            cend = chunk.pos + len(chunk.data)
            if cend <= pos or chunk.pos >= end:
                continue
            parts.append(bytes(chunk.data[max(pos, chunk.pos) - chunk.pos : end - chunk.pos]))
        return b"".join(parts)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.fd)


class GroupWriter:
    """The single writer of a set of files; see the module docstring."""

    def __init__(self, fsync: str, *, sync_interval: float = 1.0, name: str = "badgerlike") -> None:
        self.fsync = fsync
        self.sync_interval = sync_interval
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"fluxmq-{name}")
        self._queue: list[Any] = []  # _Chunk or (fn, future) in submission order
        self._submitted = 0  # writes + calls submitted so far
        self._written = 0  # ... of which the thread finished
        self._durable = 0  # ... of which are durable under the mode
        self._dirty: set[FileHandle] = set()  # written, not yet fsynced
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()
        self._task: asyncio.Task[None] | None = None
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        self._closed = False
        #: called at the start of every flush, before the batch is taken: owners that
        #: coalesce overwrites (the queue log's committed offsets) write them here
        self.before_flush: list[Callable[[], None]] = []
        #: counters for stats and tests
        self.flushes = 0
        self.fsyncs = 0
        self.bytes_written = 0
        #: every fsync's duration in seconds (see :mod:`fluxmq_core.metrics`); the
        #: writer thread notes them and the loop records them after each batch
        self.fsync_seconds = Histogram(FSYNC_BUCKETS)
        self.fsync_label: dict[str, str] = {}
        self._fsync_times: list[float] = []

    # --- submitting ---------------------------------------------------------------

    def _queue_chunk(self, chunk: _Chunk) -> None:
        self._queue.append(chunk)

    def _note_write(self) -> None:
        self._submitted += 1
        self._schedule()

    def schedule_flush(self) -> None:
        """Make sure a flush runs soon (for ``before_flush`` work), as a write would."""
        self._schedule()

    def _schedule(self) -> None:
        if self._scheduled or self._closed:
            return
        if self._error is not None:
            raise StorageError(f"storage writer failed earlier: {self._error}") from self._error
        loop = self._loop
        if loop is None:
            try:
                loop = self._loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # no loop yet (open() writes): the next sync()/close() flushes
        self._scheduled = True
        loop.call_soon(self._start_flush)

    def call(self, fn: Callable[[], Any], *, fsync_first: bool = False) -> asyncio.Future[Any]:
        """Run ``fn`` in the writer thread after everything queued before it.

        With ``fsync_first`` every file written so far is fsynced before ``fn``
        runs (a checkpoint must not describe data that is not on disk)."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.append((fn, fut, fsync_first))
        self._submitted += 1
        self._close_open_chunks()
        self._schedule()
        return fut

    def _close_open_chunks(self) -> None:
        for item in self._queue:
            if isinstance(item, _Chunk):
                item.handle._open = None

    async def sync(self, *, force: bool = False) -> None:
        """Resolve once everything submitted before the call is durable under the
        mode (``force``: fsynced, whatever the mode)."""
        if self._error is not None:
            raise StorageError(f"storage writer failed: {self._error}") from self._error
        target = self._submitted
        if force:
            await self.call(lambda: None, fsync_first=True)
            return
        if self._durable >= target:
            return
        loop = asyncio.get_running_loop()
        self._loop = loop
        fut: asyncio.Future[None] = loop.create_future()
        self._waiters.append((target, fut))
        self._schedule_if_idle()
        await fut

    def _schedule_if_idle(self) -> None:
        if self._task is None and not self._scheduled and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self._start_flush)

    # --- flushing -----------------------------------------------------------------

    def _start_flush(self) -> None:
        self._scheduled = False
        if self._task is None and not self._closed_for_good():
            self._task = asyncio.get_running_loop().create_task(self._flush_loop())

    def _closed_for_good(self) -> bool:
        return self._error is not None

    def _want_fsync(self, target: int) -> bool:
        if self.fsync == "always":
            return True
        if self.fsync == "never":
            return False
        return bool(self._waiters)

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                for hook in self.before_flush:
                    hook()
                batch, self._queue = self._queue, []
                for item in batch:
                    if isinstance(item, _Chunk):
                        item.handle._open = None
                target = self._submitted
                want_fsync = self._want_fsync(target)
                need_more_fsync = (
                    self.fsync != "never" and self._waiters and self._durable < self._waiters[0][0]
                )
                if not batch and not need_more_fsync:
                    break
                if not batch:
                    want_fsync = True
                self.flushes += 1
                try:
                    await loop.run_in_executor(self._executor, self._run, batch, want_fsync)
                except BaseException as exc:  # an I/O error: fail every waiter, loudly
                    self._error = exc
                    log.error("storage write failed: %s", exc)
                    for item in batch:
                        if not isinstance(item, _Chunk) and not item[1].done():
                            item[1].set_exception(StorageError(f"storage write failed: {exc}"))
                    while self._waiters:
                        _, fut = self._waiters.popleft()
                        if not fut.done():
                            fut.set_exception(StorageError(f"storage write failed: {exc}"))
                    return
                if self._fsync_times:
                    times, self._fsync_times = self._fsync_times, []
                    if self.fsync_seconds.attached:
                        for t in times:
                            self.fsync_seconds.record(t, self.fsync_label)
                for item in batch:
                    if isinstance(item, _Chunk):
                        h = item.handle
                        h.written = item.pos + len(item.data)
                        h.pending.popleft()
                self._written = target
                if want_fsync or self.fsync == "never":
                    self._durable = target
                elif not self._dirty:
                    self._durable = target
                waiters = self._waiters
                while waiters and waiters[0][0] <= self._durable:
                    _, fut = waiters.popleft()
                    if not fut.done():
                        fut.set_result(None)
                if self._dirty and self.fsync == "batch" and self._timer is None:
                    self._timer = loop.call_later(self.sync_interval, self._periodic_fsync)
        finally:
            self._task = None

    def _periodic_fsync(self) -> None:
        self._timer = None
        if self._dirty and not self._closed:
            self.call(lambda: None, fsync_first=True)

    def _run(self, batch: list[Any], want_fsync: bool) -> None:
        """In the writer thread: write, run calls, fsync, in order."""
        dirty = self._dirty
        for item in batch:
            if isinstance(item, _Chunk):
                h, data, pos = item.handle, item.data, item.pos
                view = memoryview(data)
                done = 0
                while done < len(data):
                    done += os.pwrite(h.fd, view[done:], pos + done)
                self.bytes_written += len(data)
                dirty.add(h)
            else:
                fn, fut, fsync_first = item
                loop = self._loop
                assert loop is not None  # call() set it before queueing this item
                if fsync_first:
                    self._fsync_dirty()
                try:
                    result = fn()
                except BaseException as exc:  # reported to the caller of call()
                    loop.call_soon_threadsafe(_set_exc, fut, exc)
                else:
                    loop.call_soon_threadsafe(_set_result, fut, result)
        if want_fsync:
            self._fsync_dirty()

    def _fsync_dirty(self) -> None:
        dirs = set()
        for h in list(self._dirty):
            if h.closed:
                continue
            t0 = time.perf_counter()
            os.fsync(h.fd)
            self._fsync_times.append(time.perf_counter() - t0)
            self.fsyncs += 1
            if h.new:
                dirs.add(os.path.dirname(h.path))
                h.new = False
        for d in dirs:
            fsync_dir(d)
        self._dirty.clear()

    def fsync_file(self, handle: FileHandle) -> None:
        """Queue an fsync of ``handle`` after what was written to it so far (used
        when a segment is sealed, so that a later segment never holds data an
        earlier one lacks)."""

        def run() -> None:
            if not handle.closed:
                t0 = time.perf_counter()
                os.fsync(handle.fd)
                self._fsync_times.append(time.perf_counter() - t0)
                self.fsyncs += 1
                self._dirty.discard(handle)

        self.call(run)

    async def close(self) -> None:
        """Flush and fsync everything (whatever the mode), then stop the thread."""
        if self._closed:
            return
        if self._loop is not None or self._queue:
            with contextlib.suppress(StorageError):
                await self.sync(force=True)
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._executor.shutdown(wait=True)


def _set_result(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _set_exc(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


def fsync_dir(path: str) -> None:
    """fsync a directory so that created, renamed or removed entries persist."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


class DirLock:
    """An exclusive ``LOCK`` file in a data directory (``flock``; released when the
    process dies, so a crash never leaves a stale lock)."""

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, "LOCK")
        self.fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise StorageLockedError(
                    f"data directory {os.path.dirname(self.path)} is in use by another FluxMQ "
                    f"broker (pid {holder}); stop it or give this one another [server] data_dir"
                ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            if fcntl is not None:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
