"""kill -9 loses nothing that was acknowledged.

A child process writes to both drivers and prints a record's key only after the
``await sync()`` covering it resolved, exactly as a protocol acknowledges. The
test kills it with SIGKILL mid-load, reopens the data directory and checks that
every printed key is there. Bounded by a record count and a deadline, not by
timing assertions."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fluxmq_badgerlike import BadgerlikeBrokerStore, BadgerlikeQueueLog

from fluxmq_core.storage import StorageOptions

CHILD = r"""
import asyncio, sys
from fluxmq_core.message import Message
from fluxmq_core.storage import StorageOptions
from fluxmq_badgerlike import BadgerlikeBrokerStore, BadgerlikeQueueLog

async def main(data_dir, fsync):
    opts = StorageOptions(data_dir=data_dir, fsync=fsync, extra={"segment_size": 65536})
    store, log = BadgerlikeBrokerStore(opts), BadgerlikeQueueLog(opts)
    await store.open(); await log.open()
    log.create_queue("q", {})
    await log.sync()
    print("ready", flush=True)

    async def publisher(p):
        i = 0
        while True:
            payload = f"{p}-{i}".encode() * 20
            seq = store.enqueue(f"client-{p}", Message(f"t/{p}", payload, 1))
            store.save_session(f"client-{p}", {"last": i})
            off = log.append("q", Message(f"t/{p}", payload, 1))
            await store.sync(); await log.sync()
            sys.stdout.write(f"ack {p} {i} {seq} {off}\n"); sys.stdout.flush()
            i += 1

    await asyncio.gather(*(publisher(p) for p in range(8)))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


@pytest.mark.parametrize("fsync", ["batch", "always", "never"])
async def test_sigkill_loses_nothing_acknowledged(tmp_path: Path, fsync: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path), fsync],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    acked: list[tuple[int, int, int, int]] = []
    deadline = time.monotonic() + 30
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
        while len(acked) < 400 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            _, p, i, seq, off = line.split()
            acked.append((int(p), int(i), int(seq), int(off)))
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        # Acks printed before the kill but not yet read are acknowledged too.
        assert proc.stdout is not None
        for line in proc.stdout.read().splitlines():
            if line.startswith("ack "):
                _, p, i, seq, off = line.split()
                acked.append((int(p), int(i), int(seq), int(off)))
    assert len(acked) >= 50, "the child acknowledged too little to test anything"

    opts = StorageOptions(data_dir=str(tmp_path), fsync=fsync)
    store, log = BadgerlikeBrokerStore(opts), BadgerlikeQueueLog(opts)
    await store.open()
    await log.open()
    try:
        queued = {p: dict(await store.queued(f"client-{p}")) for p in range(8)}
        records = dict(await log.read("q", 0, 1_000_000))
        for p, i, seq, off in acked:
            payload = f"{p}-{i}".encode() * 20
            assert queued[p][seq].payload == payload, f"lost acknowledged enqueue {p}/{i}"
            assert records[off].payload == payload, f"lost acknowledged append {p}/{i}"
            session = await store.load_session(f"client-{p}")
            assert session is not None and session["last"] >= i
        # Offsets and sequence numbers continue above everything acknowledged.
        assert log.append("q", records[max(records)]) > max(off for *_, off in acked)
    finally:
        await store.close()
        await log.close()
    await asyncio.sleep(0)
