"""The engine on its own: group commit and fsync modes, recovery of torn tails and
corruption, checkpoints, garbage collection, the lock file, sizes."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest
from fluxmq_badgerlike.engine import CHECKPOINT, Engine, EngineOptions
from fluxmq_badgerlike.errors import StorageCorruptionError, StorageLockedError

SMALL = {"segment_size": 4096}
REC = 16 + 5 + 50  # header, "k0000", value: the records of write_and_crash


def make(path: Path, fsync: str = "batch", **extra: object) -> Engine:
    return Engine(str(path), fsync, EngineOptions.from_extra({**SMALL, **extra}))


async def crash(engine: Engine) -> None:
    """Stop like a killed process would: no checkpoint, no final fsync."""
    engine._opened = False
    if engine._task is not None:
        engine._task.cancel()
    await engine.writer.close()  # the bytes reached the OS, as after kill -9
    engine._close_files()


def segments(path: Path) -> list[Path]:
    return sorted(path.glob("*.vlog"))


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    return calls


async def wait_for(predicate, what: str) -> None:  # type: ignore[no-untyped-def]
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


# --- group commit and fsync modes ---------------------------------------------------------


async def test_group_commit_many_writes_one_fsync(tmp_path: Path, fsyncs: list[int]) -> None:
    engine = make(tmp_path, "batch", segment_size=1 << 20)
    await engine.open()
    engine.put("warm", b"x")
    await engine.sync()
    fsyncs.clear()
    waiters = []
    for i in range(500):
        engine.put(f"k{i}", b"v" * 100)
        waiters.append(asyncio.ensure_future(engine.sync()))
    await asyncio.gather(*waiters)
    assert len(fsyncs) == 1, "500 writes and 500 sync() calls in one tick share one fsync"
    assert engine.writer.flushes <= 3
    await engine.close()


async def test_always_fsyncs_every_flush_even_without_waiters(
    tmp_path: Path, fsyncs: list[int]
) -> None:
    engine = make(tmp_path, "always")
    await engine.open()
    await engine.sync()
    fsyncs.clear()
    engine.put("a", b"1")
    await wait_for(lambda: fsyncs, "the flush's fsync")
    flushes = engine.writer.flushes
    engine.put("b", b"2")
    await engine.sync()
    assert len(fsyncs) >= 2 and engine.writer.flushes > flushes
    await engine.close()


async def test_batch_fsyncs_only_for_a_waiter_or_on_the_interval(
    tmp_path: Path, fsyncs: list[int]
) -> None:
    engine = make(tmp_path, "batch", sync_interval=3600.0)
    await engine.open()
    engine.put("warm", b"x")
    await engine.sync()
    fsyncs.clear()
    flushes = engine.writer.flushes
    engine.put("a", b"1")
    await wait_for(lambda: engine.writer.flushes > flushes, "a flush")
    assert fsyncs == [], "nobody waited: written to the OS, not fsynced yet"
    await engine.sync()
    assert len(fsyncs) == 1
    await engine.close()


async def test_batch_fsyncs_unwaited_writes_on_the_interval(
    tmp_path: Path, fsyncs: list[int]
) -> None:
    engine = make(tmp_path, "batch", sync_interval=0.05)
    await engine.open()
    engine.put("warm", b"x")
    await engine.sync()
    fsyncs.clear()
    engine.put("a", b"1")
    await wait_for(lambda: fsyncs, "the periodic fsync")
    await engine.close()


async def test_never_does_not_fsync_on_sync(tmp_path: Path, fsyncs: list[int]) -> None:
    engine = make(tmp_path, "never")
    await engine.open()
    engine.put("warm", b"x")
    await engine.sync()
    fsyncs.clear()
    for i in range(100):
        engine.put(f"k{i}", b"v")
    await engine.sync()
    assert fsyncs == []
    assert (tmp_path / "00000000.vlog").stat().st_size > 100 * 16  # but written to the OS
    await engine.close()  # close fsyncs whatever the mode


async def test_reads_see_unflushed_writes(tmp_path: Path) -> None:
    engine = make(tmp_path)
    await engine.open()
    engine.put("k", b"v1")
    assert engine.get("k") == b"v1"
    engine.put("k", b"v2")
    engine.delete("k")
    assert engine.get("k") is None
    assert engine.delete("k") is False
    await engine.close()


# --- recovery --------------------------------------------------------------------------------


async def write_and_crash(path: Path, n: int, size: int = 50) -> None:
    engine = make(path)
    await engine.open()
    for i in range(n):
        engine.put(f"k{i:04d}", bytes([i % 251]) * size)
    await engine.sync()
    await crash(engine)


async def reopen_values(path: Path, **extra: object) -> dict[str, bytes]:
    engine = make(path, **extra)
    await engine.open()
    try:
        return {k: engine.get(k) for k in engine.keys()}  # type: ignore[misc]
    finally:
        await engine.close()


async def test_torn_tail_mid_record_is_truncated_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await write_and_crash(tmp_path, 20)
    seg = segments(tmp_path)[-1]
    size = seg.stat().st_size
    os.truncate(seg, size - 30)  # cut the last record in the middle
    with caplog.at_level(logging.WARNING, "fluxmq.storage.badgerlike"):
        values = await reopen_values(tmp_path)
    assert sorted(values) == [f"k{i:04d}" for i in range(19)]
    assert all(values[f"k{i:04d}"] == bytes([i]) * 50 for i in range(19))
    assert any("torn tail" in r.message and "dropped" in r.message for r in caplog.records)


async def test_garbage_appended_is_truncated(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await write_and_crash(tmp_path, 10)
    seg = segments(tmp_path)[-1]
    with open(seg, "ab") as f:
        f.write(b"\x00" * 100 + os.urandom(37))
    with caplog.at_level(logging.WARNING, "fluxmq.storage.badgerlike"):
        values = await reopen_values(tmp_path)
    assert len(values) == 10
    assert any("dropped 137 bytes" in r.message for r in caplog.records)


def flip(path: Path, pos: int) -> None:
    data = bytearray(path.read_bytes())
    data[pos] ^= 0x40
    path.write_bytes(bytes(data))


async def test_bit_flip_in_the_last_record_is_truncated(tmp_path: Path) -> None:
    await write_and_crash(tmp_path, 10)
    seg = segments(tmp_path)[-1]
    flip(seg, seg.stat().st_size - 5)
    values = await reopen_values(tmp_path)
    assert sorted(values) == [f"k{i:04d}" for i in range(9)]


async def test_bit_flip_in_a_middle_record_is_an_error_naming_the_file(tmp_path: Path) -> None:
    await write_and_crash(tmp_path, 10)
    seg = segments(tmp_path)[0]
    flip(seg, REC * 3 + 20)  # inside the 4th record
    engine = make(tmp_path)
    with pytest.raises(StorageCorruptionError) as info:
        await engine.open()
    assert info.value.path == str(seg) and info.value.offset == REC * 3
    assert str(seg) in str(info.value) and "repair" in str(info.value)
    # The failed open released the lock: opening with repair works.
    repaired = make(tmp_path, repair=True)
    await repaired.open()
    assert repaired.recovery["repaired"] == [(str(seg), REC * 3, REC)]
    assert sorted(repaired.keys()) == [f"k{i:04d}" for i in range(10) if i != 3]
    assert repaired.stats()["repaired_regions"] == 1
    await crash(repaired)
    # The damaged bytes were replaced by a padding record: a plain open now works.
    (tmp_path / CHECKPOINT).unlink(missing_ok=True)
    assert len(await reopen_values(tmp_path)) == 9


async def test_corruption_in_a_sealed_segment_is_an_error(tmp_path: Path) -> None:
    await write_and_crash(tmp_path, 200)
    segs = segments(tmp_path)
    assert len(segs) > 2
    flip(segs[0], segs[0].stat().st_size - 3)  # the *end* of a sealed segment: not a tail
    with pytest.raises(StorageCorruptionError, match=segs[0].name):
        await make(tmp_path).open()


async def test_read_checks_the_crc(tmp_path: Path) -> None:
    engine = make(tmp_path)
    await engine.open()
    engine.put("k", b"value" * 10)
    await engine.close()  # checkpointed: the record is not rescanned on open
    flip(segments(tmp_path)[0], 40)
    engine = make(tmp_path)
    await engine.open()
    with pytest.raises(StorageCorruptionError):
        engine.get("k")
    await crash(engine)


# --- checkpoints -----------------------------------------------------------------------------


async def test_start_up_replays_only_records_after_the_checkpoint(tmp_path: Path) -> None:
    engine = make(tmp_path)
    await engine.open()
    for i in range(300):
        engine.put(f"k{i}", b"x" * 40)
    await engine.close()  # a clean close writes a checkpoint
    engine = make(tmp_path)
    await engine.open()
    assert (engine.replayed_records, engine.full_replay) == (0, False)
    for i in range(7):
        engine.put(f"new{i}", b"y")
    engine.delete("k0")
    await engine.sync()
    await crash(engine)
    engine = make(tmp_path)
    await engine.open()
    assert engine.replayed_records == 8
    assert len(engine) == 306 and engine.get("new6") == b"y" and engine.get("k0") is None
    await engine.close()


async def test_periodic_checkpoint(tmp_path: Path) -> None:
    engine = make(tmp_path, checkpoint_interval=0.05)
    await engine.open()
    engine.put("k", b"v")
    await wait_for(lambda: engine.checkpoints >= 1 and not engine._changes, "a checkpoint")
    await crash(engine)
    engine = make(tmp_path)
    await engine.open()
    assert engine.replayed_records == 0 and engine.get("k") == b"v"
    await engine.close()


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage"])
async def test_corrupt_checkpoint_falls_back_to_a_full_replay(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    engine = make(tmp_path)
    await engine.open()
    for i in range(50):
        engine.put(f"k{i}", b"x")
    await engine.close()
    ckpt = tmp_path / CHECKPOINT
    if damage == "flip":
        flip(ckpt, 20)
    elif damage == "truncate":
        os.truncate(ckpt, ckpt.stat().st_size // 2)
    else:
        ckpt.write_bytes(b"not a checkpoint")
    with caplog.at_level(logging.WARNING, "fluxmq.storage.badgerlike"):
        engine = make(tmp_path)
        await engine.open()
    assert engine.full_replay and engine.replayed_records == 50 and len(engine) == 50
    assert any("checkpoint ignored" in r.message for r in caplog.records)
    await engine.close()


async def test_checkpoint_beyond_a_truncated_file_is_not_trusted(tmp_path: Path) -> None:
    engine = make(tmp_path)
    await engine.open()
    for i in range(5):
        engine.put(f"k{i}", b"x" * 20)
    await engine.close()
    seg = segments(tmp_path)[-1]
    os.truncate(seg, seg.stat().st_size - 10)
    values = await reopen_values(tmp_path)
    assert sorted(values) == [f"k{i}" for i in range(4)]


# --- garbage collection ----------------------------------------------------------------------


def disk_usage(path: Path) -> int:
    return sum(p.stat().st_size for p in segments(path))


async def test_gc_reclaims_overwritten_and_deleted_values(tmp_path: Path) -> None:
    engine = make(tmp_path, gc_ratio=0.5)
    await engine.open()
    for round_ in range(10):
        for i in range(50):
            engine.put(f"k{i}", f"{round_}".encode() * 100)
    for i in range(25, 50):
        engine.delete(f"k{i}")
    await engine.sync()
    before = disk_usage(tmp_path)
    assert engine.gc_candidates()
    result = await engine.gc(max_segments=1)
    assert result["segments"] == 1
    result = await engine.gc(max_segments=1000)
    after = disk_usage(tmp_path)
    assert after < before / 3, (before, after)
    assert engine.gc_reclaimed_bytes > 0
    assert {k: engine.get(k) for k in engine.keys()} == {f"k{i}": b"9" * 100 for i in range(25)}
    await engine.close()
    assert await reopen_values(tmp_path) == {f"k{i}": b"9" * 100 for i in range(25)}
    # A full replay (checkpoint gone) must not resurrect deleted keys either.
    (tmp_path / CHECKPOINT).unlink()
    assert await reopen_values(tmp_path) == {f"k{i}": b"9" * 100 for i in range(25)}


async def test_gc_runs_in_the_background(tmp_path: Path) -> None:
    engine = make(tmp_path, gc_interval=0.05)
    await engine.open()
    for _round in range(5):
        for i in range(40):
            engine.put(f"k{i}", b"x" * 100)
    await engine.sync()
    await wait_for(lambda: engine.gc_runs > 0, "a background GC step")
    await engine.close()


async def test_gc_leaves_a_segment_with_little_garbage(tmp_path: Path) -> None:
    engine = make(tmp_path, gc_ratio=0.9)
    await engine.open()
    for i in range(200):
        engine.put(f"k{i}", b"x" * 50)
    await engine.sync()
    assert await engine.gc(max_segments=10) == {
        "segments": 0, "moved": 0, "dropped": 0, "bytes_reclaimed": 0
    }  # fmt: skip
    await engine.close()


# --- lock, sizes -----------------------------------------------------------------------------


async def test_lock_file_refuses_a_second_opener(tmp_path: Path) -> None:
    first = make(tmp_path)
    await first.open()
    second = make(tmp_path)
    with pytest.raises(StorageLockedError, match="in use by another FluxMQ broker"):
        await second.open()
    await first.close()
    await second.open()  # released on close
    await second.close()


async def test_large_values(tmp_path: Path) -> None:
    big = os.urandom(3 << 20)
    engine = make(tmp_path)
    await engine.open()
    engine.put("small", b"s")
    engine.put("big", big)
    engine.put("after", b"a")
    assert engine.get("big") == big
    await engine.sync()
    await crash(engine)
    values = await reopen_values(tmp_path)
    assert values == {"small": b"s", "big": big, "after": b"a"}


async def test_many_keys(tmp_path: Path) -> None:
    engine = make(tmp_path, segment_size=1 << 20)
    await engine.open()
    for i in range(20_000):
        engine.put(f"key/{i}", i.to_bytes(4, "little"))
    await engine.close()
    values = await reopen_values(tmp_path, segment_size=1 << 20)
    assert len(values) == 20_000
    assert all(values[f"key/{i}"] == i.to_bytes(4, "little") for i in range(0, 20_000, 97))


def test_unknown_or_mistyped_option_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown option 'segment_bytes'"):
        EngineOptions.from_extra({"segment_bytes": 1})
    with pytest.raises(ValueError, match="'repair' must be bool"):
        EngineOptions.from_extra({"repair": "yes"})
    assert EngineOptions.from_extra({"gc_ratio": 1}).gc_ratio == 1.0
