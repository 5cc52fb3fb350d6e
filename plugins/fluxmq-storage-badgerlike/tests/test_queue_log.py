"""What is particular to the badgerlike queue log: segment files and their sparse
indexes, retention deleting whole segments, recovery of a queue's torn tail and
of corruption, bounded start-up through ``.idx`` files."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from fluxmq_badgerlike import BadgerlikeQueueLog, StorageCorruptionError

from fluxmq_core.storage import StorageOptions
from fluxmq_core.testing.conformance import sample_message

EXTRA = {"segment_size": 4096, "index_interval": 8}


def make(tmp_path: Path, **extra: object) -> BadgerlikeQueueLog:
    return BadgerlikeQueueLog(StorageOptions(data_dir=str(tmp_path), extra={**EXTRA, **extra}))


def seg_files(tmp_path: Path, suffix: str = ".seg") -> list[Path]:
    return sorted((tmp_path / "queues").glob(f"0*/*{suffix}"))


async def crash(log: BadgerlikeQueueLog) -> None:
    """Stop as a killed process would: bytes handed to the OS, no checkpoint."""
    log.meta._opened = False
    if log.meta._task is not None:
        log.meta._task.cancel()
    await log.writer.close()
    log.meta._close_files()
    for q in log._queues.values():
        for seg in q.segs:
            seg.handle.close()


async def filled(tmp_path: Path, n: int = 200) -> BadgerlikeQueueLog:
    log = make(tmp_path)
    await log.open()
    log.create_queue("orders/eu", {"mode": "classic"})
    log.append_many("orders/eu", [sample_message(i, timestamp=1000.0 + i) for i in range(n)])
    await log.sync()
    return log


async def test_segments_rotate_and_sealed_ones_get_an_index(tmp_path: Path) -> None:
    log = await filled(tmp_path)
    assert len(seg_files(tmp_path)) > 3
    await log.close()
    assert len(seg_files(tmp_path, ".idx")) == len(seg_files(tmp_path)) - 1
    log = make(tmp_path)
    await log.open()
    assert log.recovery["scanned_segments"] == 1  # only the last segment is scanned
    assert await log.read("orders/eu", 137, 3) == [
        (i, sample_message(i, timestamp=1000.0 + i)) for i in (137, 138, 139)
    ]
    assert await log.offset_for_time("orders/eu", 1150.5) == 151
    await log.close()


async def test_a_missing_or_corrupt_index_means_a_scan(tmp_path: Path) -> None:
    log = await filled(tmp_path)
    await log.close()
    idx = seg_files(tmp_path, ".idx")
    idx[0].unlink()
    idx[1].write_bytes(idx[1].read_bytes()[:-1] + b"\x00")
    log = make(tmp_path)
    await log.open()
    assert log.recovery["scanned_segments"] == 3
    assert [o for o, _ in await log.read("orders/eu", 0, 500)] == list(range(200))
    await log.close()


async def test_offset_for_time_with_clocks_going_backwards(tmp_path: Path) -> None:
    log = make(tmp_path)
    await log.open()
    log.create_queue("q", {})
    stamps = [50.0, 10.0, 20.0, 90.0, 30.0] * 20
    log.append_many("q", [sample_message(i, timestamp=t) for i, t in enumerate(stamps)])
    assert await log.offset_for_time("q", 60.0) == 3
    assert await log.offset_for_time("q", 25.0) == 0
    log.truncate_before("q", 4)
    assert await log.offset_for_time("q", 25.0) == 4
    assert await log.offset_for_time("q", 95.0) == 100
    await log.close()


async def test_truncation_deletes_whole_segments_and_counts_bytes(tmp_path: Path) -> None:
    log = await filled(tmp_path)
    before = len(seg_files(tmp_path))
    total = log.size_bytes("orders/eu")
    assert log.truncate_before("orders/eu", 150) == 150
    assert log.size_bytes("orders/eu") == total - sum(
        len(sample_message(i).payload) for i in range(150)
    )
    await log.sync()
    await log.close()
    after = len(seg_files(tmp_path))
    assert after < before
    log = make(tmp_path)
    await log.open()
    assert (log.first_offset("orders/eu"), log.next_offset("orders/eu")) == (150, 200)
    assert log.size_bytes("orders/eu") == sum(
        len(sample_message(i).payload) for i in range(150, 200)
    )
    assert (await log.read("orders/eu", 0, 1))[0][0] == 150
    await log.close()


async def test_torn_tail_of_a_queue_is_truncated(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = await filled(tmp_path, 20)
    await crash(log)
    last = seg_files(tmp_path)[-1]
    os.truncate(last, last.stat().st_size - 7)
    with caplog.at_level(logging.WARNING, "fluxmq.storage.badgerlike"):
        log = make(tmp_path)
        await log.open()
    assert log.next_offset("orders/eu") == 19
    assert [o for o, _ in await log.read("orders/eu", 0, 100)] == list(range(19))
    assert log.append("orders/eu", sample_message()) == 19
    assert any("torn tail" in r.message for r in caplog.records)
    await log.close()


async def test_corrupt_middle_record_of_a_queue_is_an_error(tmp_path: Path) -> None:
    log = await filled(tmp_path, 20)
    await crash(log)
    last = seg_files(tmp_path)[-1]
    data = bytearray(last.read_bytes())
    data[100] ^= 1
    last.write_bytes(bytes(data))
    with pytest.raises(StorageCorruptionError, match=last.name):
        await make(tmp_path).open()
    log = make(tmp_path, repair=True)
    await log.open()
    assert len(log.recovery["repaired"]) == 1
    assert log.next_offset("orders/eu") == 20  # the lost record's offset is not reused
    offsets = [o for o, _ in await log.read("orders/eu", 0, 100)]
    assert len(offsets) == 19 and offsets[-1] == 19  # one record lost, the others kept
    await log.close()


async def test_delete_and_recreate_uses_a_fresh_directory(tmp_path: Path) -> None:
    log = await filled(tmp_path, 10)
    log.delete_queue("orders/eu")
    log.create_queue("orders/eu", {})
    assert log.append("orders/eu", sample_message()) == 0
    await log.close()
    dirs = sorted(p.name for p in (tmp_path / "queues").iterdir() if p.name.isdigit())
    assert dirs == ["00000002"]
    log = make(tmp_path)
    await log.open()
    assert log.next_offset("orders/eu") == 1
    await log.close()


async def test_lock_is_exclusive(tmp_path: Path) -> None:
    from fluxmq_badgerlike import StorageLockedError

    log = make(tmp_path)
    await log.open()
    with pytest.raises(StorageLockedError):
        await make(tmp_path).open()
    await log.close()


async def test_a_run_of_commits_is_one_record_and_survives_a_crash(tmp_path: Path) -> None:
    log = await filled(tmp_path, 20)
    before = log.meta.stats()["bytes"]
    for offset in range(1, 11):  # a group acknowledging in order
        log.commit_offset("orders/eu", "workers", offset)
        assert await log.committed_offset("orders/eu", "workers") == offset  # at once
    await log.sync()
    one = len(b"qg/1/workers") + 16 + 9  # key, record header, encoded int
    assert log.meta.stats()["bytes"] - before == one
    await crash(log)
    log = make(tmp_path)
    await log.open()
    assert await log.committed_offset("orders/eu", "workers") == 10
    await log.close()


async def test_a_commit_pending_when_its_queue_is_deleted_is_not_written(tmp_path: Path) -> None:
    log = await filled(tmp_path, 5)
    log.commit_offset("orders/eu", "workers", 3)
    log.delete_queue("orders/eu")
    await log.sync()
    assert not [k for k in log.meta.keys() if k.startswith("qg/")]
    await crash(log)
    log = make(tmp_path)
    await log.open()
    assert "orders/eu" not in await log.list_queues()
    assert not [k for k in log.meta.keys() if k.startswith("qg/")]
    await log.close()


def pel_keys(log: BadgerlikeQueueLog) -> list[str]:
    return sorted(k for k in log.meta.keys() if k.startswith("qp/"))


async def reopened_pel(log: BadgerlikeQueueLog, tmp_path: Path) -> list[tuple[int, str, int]]:
    """Crash, reopen and list the group's PEL as (offset, consumer, count)."""
    await crash(log)
    log = make(tmp_path)
    await log.open()
    try:
        return [
            (e.offset, e.consumer, e.delivery_count)
            for e in await log.pel_entries("orders/eu", "g")
        ]
    finally:
        await log.close()


async def test_a_delivery_settled_before_the_next_flush_writes_no_pel_record(
    tmp_path: Path,
) -> None:
    log = await filled(tmp_path, 5)
    before = log.meta.stats()["bytes"]
    for offset in range(5):
        log.pel_add("orders/eu", "g", offset, "c1", 10.0, 1)
    for offset in range(4):
        log.pel_remove("orders/eu", "g", offset)
    assert [e.offset for e in await log.pel_entries("orders/eu", "g")] == [4]  # at once
    await log.sync()
    assert pel_keys(log) == ["qp/1/g/00000000000000000004"]
    one = len(pel_keys(log)[0]) + 16 + 1 + 4 + 1 + 4 + 2 + 1 + 8 + 1 + 8  # key, header, value
    assert log.meta.stats()["bytes"] - before == one
    assert await reopened_pel(log, tmp_path) == [(4, "c1", 1)]


async def test_pel_changes_after_a_written_entry_are_written(tmp_path: Path) -> None:
    log = await filled(tmp_path, 5)
    for offset in range(4):
        log.pel_add("orders/eu", "g", offset, "c1", 10.0, 1)
    await log.sync()
    assert len(pel_keys(log)) == 4
    log.pel_remove("orders/eu", "g", 0)  # written: its removal is written
    log.pel_add("orders/eu", "g", 1, "c2", 20.0, 2)  # a redelivery, then settled: the
    log.pel_remove("orders/eu", "g", 1)  # written first version must go
    log.pel_remove("orders/eu", "g", 2)  # removed, then added again before a flush
    log.pel_add("orders/eu", "g", 2, "c3", 30.0, 3)
    log.pel_add("orders/eu", "g", 3, "c4", 40.0, 2)  # replaced
    log.pel_remove("orders/eu", "g", 7)  # unknown: ignored
    await log.sync()
    assert pel_keys(log) == ["qp/1/g/00000000000000000002", "qp/1/g/00000000000000000003"]
    assert await reopened_pel(log, tmp_path) == [(2, "c3", 3), (3, "c4", 2)]


async def test_pel_changes_pending_when_the_queue_is_deleted(tmp_path: Path) -> None:
    log = await filled(tmp_path, 5)
    log.pel_add("orders/eu", "g", 0, "c1", 10.0, 1)
    log.pel_add("orders/eu", "g", 1, "c1", 10.0, 1)
    await log.sync()
    log.pel_remove("orders/eu", "g", 0)  # a removal not written yet
    log.pel_add("orders/eu", "g", 2, "c1", 10.0, 1)  # an entry not written yet
    log.delete_queue("orders/eu")
    await log.sync()
    assert pel_keys(log) == []
    await crash(log)
    log = make(tmp_path)
    await log.open()
    assert pel_keys(log) == [] and await log.list_queues() == {}
    await log.close()


async def test_reads_in_steps_resume_where_the_last_one_stopped(tmp_path: Path) -> None:
    log = make(tmp_path, tail_cache_bytes=0)  # every read from the files
    await log.open()
    log.create_queue("orders/eu", {})
    expected = [sample_message(i, timestamp=1000.0 + i) for i in range(120)]
    log.append_many("orders/eu", expected)
    got = []
    offset = 0
    while offset < 120:  # steps across index blocks and segment files
        rows = await log.read("orders/eu", offset, 7)
        got += rows
        offset = rows[-1][0] + 1
        if offset == 50:  # another reader elsewhere in between
            assert await log.read("orders/eu", 3, 2) == [(3, expected[3]), (4, expected[4])]
    assert got == list(enumerate(expected))
    log.truncate_before("orders/eu", 60)
    assert (await log.read("orders/eu", 0, 3))[0][0] == 60
    assert await log.read("orders/eu", 61, 2) == [(61, expected[61]), (62, expected[62])]
    await log.close()


async def test_reads_from_the_kept_chunk_match_the_files(tmp_path: Path) -> None:
    """Steps of two queues interleaved with appends (some not yet written) and
    re-reads: what comes out of the chunk kept from the last read is what the files
    hold."""
    log = make(tmp_path, tail_cache_bytes=0, segment_size=64 * 1024)
    await log.open()
    want: dict[str, list] = {"a": [], "b": []}
    for name in want:
        log.create_queue(name, {})

    def add(name: str, n: int) -> None:
        start = len(want[name])
        msgs = [sample_message(start + i, timestamp=float(start + i)) for i in range(n)]
        want[name] += msgs
        log.append_many(name, msgs)

    add("a", 150)
    add("b", 150)
    await log.sync()
    pos = {"a": 0, "b": 0}
    for step in range(60):
        name = "ab"[step % 2]
        rows = await log.read(name, pos[name], 9)
        assert rows == [(pos[name] + i, want[name][pos[name] + i]) for i in range(len(rows))]
        if rows:
            pos[name] = rows[-1][0] + 1
        if step % 7 == 3:
            add(name, 5)  # appended, maybe not written yet
        if step % 11 == 5:  # a redelivery reads an earlier offset again
            back = max(0, pos[name] - 12)
            assert await log.read(name, back, 3) == [
                (back + i, want[name][back + i]) for i in range(3)
            ]
    assert pos["a"] > 150 and pos["b"] > 150
    await log.close()
