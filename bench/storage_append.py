"""Benchmark: durable appends per second, badgerlike queue log against SQLite (WAL).

Each cell runs P concurrent publishers (asyncio tasks) that loop on
``append(queue, message)`` + ``await sync()``, i.e. one acknowledged append at a
time each, exactly what a protocol does before a PUBACK. Cells are bounded by an
append count and by seconds. Measured in the same run, on the same disk:

* ``badgerlike fsync=always`` / ``fsync=batch``: the queue log with group commit
  (with every publisher waiting on ``sync()``, both modes fsync once per batch);
* ``badgerlike fsync=never``: written to the OS per batch, no fsync;
* ``badgerlike buffered``: one publisher appending without waiting, one sync at
  the end (the Go FluxMQ's "buffered" figure);
* ``sqlite FULL, commit per append``: WAL, ``synchronous=FULL``, one writer
  connection in one thread, one transaction (and fsync) per append: the
  fsync-per-message comparison;
* ``sqlite FULL, grouped`` and ``sqlite NORMAL, grouped``: the same connection,
  but every append waiting in a loop tick goes into one transaction (group commit
  done for SQLite as fairly as for us). ``NORMAL`` in WAL mode does not fsync on
  commit, so it is the comparison for ``batch`` as a user would configure SQLite,
  with weaker durability than ours.

The Go FluxMQ reports about 125,000/s buffered and 185 / 1,260 / 3,100/s with
fsync at 1 / 16 / 64 publishers. Prints a table, writes
``bench/results/storage_append.json``.

Usage: ``uv run python bench/storage_append.py [--quick] [--dir PATH]``
(``--dir``: where to put the data; the default is a temporary directory inside
``bench/``, so that it is on the repository's disk, not a tmpfs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fluxmq_badgerlike import BadgerlikeQueueLog
from fluxmq_badgerlike.codec import encode_message

from fluxmq_core.message import Message
from fluxmq_core.storage import StorageOptions

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "storage_append.json"
PUBLISHERS = (1, 16, 64)


def message(i: int) -> Message:
    return Message(f"bench/{i % 100}", b"x" * 256, 1, origin_protocol="mqtt", origin_client="bench")


async def run_publishers(
    publishers: int, append_and_wait: Any, max_appends: int, max_seconds: float
) -> dict[str, float]:
    done = 0
    stop_at = time.perf_counter() + max_seconds

    async def publisher(p: int) -> None:
        nonlocal done
        i = 0
        while done < max_appends and time.perf_counter() < stop_at:
            await append_and_wait(message(p * 1_000_000 + i))
            done += 1
            i += 1

    start = time.perf_counter()
    await asyncio.gather(*(publisher(p) for p in range(publishers)))
    elapsed = time.perf_counter() - start
    return {"appends": done, "seconds": elapsed, "per_second": done / elapsed}


async def badgerlike_cell(
    directory: str, fsync: str, publishers: int, limits: tuple[int, float]
) -> dict[str, float]:
    log = BadgerlikeQueueLog(StorageOptions(data_dir=directory, fsync=fsync))
    await log.open()
    log.create_queue("bench", {})
    await log.sync()

    async def append_and_wait(m: Message) -> None:
        log.append("bench", m)
        await log.sync()

    try:
        result = await run_publishers(publishers, append_and_wait, *limits)
        result["fsyncs"] = log.writer.fsyncs
        return result
    finally:
        await log.close()


async def badgerlike_buffered(directory: str, limits: tuple[int, float]) -> dict[str, float]:
    log = BadgerlikeQueueLog(StorageOptions(data_dir=directory, fsync="batch"))
    await log.open()
    log.create_queue("bench", {})
    n, max_seconds = limits[0] * 10, limits[1]
    start = time.perf_counter()
    stop_at = start + max_seconds
    done = 0
    while done < n and time.perf_counter() < stop_at:
        for i in range(1000):
            log.append("bench", message(done + i))
        done += 1000
        await asyncio.sleep(0)  # let group commit flush, as a server loop would
    await log.sync()
    elapsed = time.perf_counter() - start
    await log.close()
    return {"appends": done, "seconds": elapsed, "per_second": done / elapsed}


class SQLiteLog:
    """One WAL database, one writer connection in one thread."""

    def __init__(self, path: str, synchronous: str) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1)
        self.path = path
        self.synchronous = synchronous
        self.pending: list[tuple[bytes, asyncio.Future[None]]] = []
        self.flushing = False

    def _open(self) -> None:
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={self.synchronous}")
        self.db.execute("CREATE TABLE IF NOT EXISTS log (off INTEGER PRIMARY KEY, body BLOB)")

    async def open(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self.executor, self._open)

    def _insert(self, bodies: list[bytes]) -> None:
        self.db.execute("BEGIN")
        self.db.executemany("INSERT INTO log (body) VALUES (?)", [(b,) for b in bodies])
        self.db.execute("COMMIT")

    async def append_each(self, m: Message) -> None:
        body = encode_message(m)
        await asyncio.get_running_loop().run_in_executor(self.executor, self._insert, [body])

    async def append_grouped(self, m: Message) -> None:
        fut = asyncio.get_running_loop().create_future()
        self.pending.append((encode_message(m), fut))
        if not self.flushing:
            self.flushing = True
            asyncio.get_running_loop().create_task(self._flush())
        await fut

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.sleep(0)  # collect this tick's appends
            while self.pending:
                batch, self.pending = self.pending, []
                await loop.run_in_executor(self.executor, self._insert, [b for b, _ in batch])
                for _, fut in batch:
                    fut.set_result(None)
        finally:
            self.flushing = False

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self.executor, self.db.close)
        self.executor.shutdown()


async def sqlite_cell(
    directory: str, synchronous: str, grouped: bool, publishers: int, limits: tuple[int, float]
) -> dict[str, float]:
    db = SQLiteLog(os.path.join(directory, "bench.db"), synchronous)
    await db.open()
    try:
        return await run_publishers(
            publishers, db.append_grouped if grouped else db.append_each, *limits
        )
    finally:
        await db.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller bounds (a smoke run)")
    parser.add_argument("--dir", help="where to put the data files (default: a temp dir in bench/)")
    args = parser.parse_args()
    limits = (2_000, 1.0) if args.quick else (20_000, 4.0)
    base = args.dir or tempfile.mkdtemp(prefix=".storage-append-", dir=HERE)

    rows: list[dict[str, Any]] = []
    cases = [
        ("badgerlike", "fsync=always", lambda d, p: badgerlike_cell(d, "always", p, limits)),
        ("badgerlike", "fsync=batch", lambda d, p: badgerlike_cell(d, "batch", p, limits)),
        ("badgerlike", "fsync=never", lambda d, p: badgerlike_cell(d, "never", p, limits)),
        (
            "sqlite-wal",
            "FULL, commit per append",
            lambda d, p: sqlite_cell(d, "FULL", False, p, limits),
        ),
        (
            "sqlite-wal",
            "FULL, grouped commits",
            lambda d, p: sqlite_cell(d, "FULL", True, p, limits),
        ),
        (
            "sqlite-wal",
            "NORMAL, grouped commits",
            lambda d, p: sqlite_cell(d, "NORMAL", True, p, limits),
        ),
    ]
    try:
        for engine, mode, cell in cases:
            row: dict[str, Any] = {"engine": engine, "mode": mode, "cells": {}}
            for p in PUBLISHERS:
                d = tempfile.mkdtemp(dir=base)
                row["cells"][str(p)] = await cell(d, p)
                shutil.rmtree(d, ignore_errors=True)
            rows.append(row)
            print(
                f"  {engine:11} {mode:26}",
                *(f"{row['cells'][str(p)]['per_second']:>10,.0f}" for p in PUBLISHERS),
                file=sys.stderr,
            )
        d = tempfile.mkdtemp(dir=base)
        buffered = await badgerlike_buffered(d, limits)
        shutil.rmtree(d, ignore_errors=True)
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)

    print()
    print(f"{'engine':11} {'mode':26} " + " ".join(f"{f'{p} pub/s':>10}" for p in PUBLISHERS))
    print("-" * (39 + 11 * len(PUBLISHERS)))
    for row in rows:
        print(
            f"{row['engine']:11} {row['mode']:26} "
            + " ".join(f"{row['cells'][str(p)]['per_second']:>10,.0f}" for p in PUBLISHERS)
        )
    print(f"{'badgerlike':11} {'buffered (no wait)':26} {buffered['per_second']:>10,.0f}")
    by = {(r["engine"], r["mode"]): r["cells"] for r in rows}
    ratios = {
        str(p): by[("badgerlike", "fsync=always")][str(p)]["per_second"]
        / by[("sqlite-wal", "FULL, commit per append")][str(p)]["per_second"]
        for p in PUBLISHERS
    }
    print(
        "badgerlike fsync=always / sqlite FULL commit-per-append: "
        + ", ".join(f"{p} pub {ratios[str(p)]:.1f}x" for p in PUBLISHERS)
    )
    print(
        "Go FluxMQ (reported): buffered ~125,000/s; fsync 185 / 1,260 / 3,100 per s at 1 / 16 / 64"
    )

    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "storage_append",
                "quick": args.quick,
                "message_payload_bytes": 256,
                "limits": {"max_appends": limits[0], "max_seconds": limits[1]},
                "python": platform.python_version(),
                "machine": platform.machine(),
                "rows": rows,
                "buffered": buffered,
                "ratio_always_vs_sqlite_full_per_append": ratios,
                "go_fluxmq_reported": {
                    "buffered": 125_000,
                    "fsync": {"1": 185, "16": 1260, "64": 3100},
                },
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())
