"""The memory QueueLog against the driver conformance suite, plus what is
particular to it: loading by name and its counters."""

from __future__ import annotations

from pathlib import Path

import pytest
from stevedore import DriverManager

from fluxmq_core.storage import MemoryQueueLog, QueueLog, StorageOptions
from fluxmq_core.testing.conformance import QueueLogConformance, sample_message


class TestMemoryQueueLog(QueueLogConformance):
    def make_log(self, tmp_path: Path) -> QueueLog:
        return MemoryQueueLog(StorageOptions(data_dir=str(tmp_path)))


def test_loads_by_name_through_the_entry_point(tmp_path: Path) -> None:
    options = StorageOptions(data_dir=str(tmp_path), fsync="never")
    manager = DriverManager(
        "fluxmq.queue_log", "memory", invoke_on_load=True, invoke_args=(options,)
    )
    assert isinstance(manager.driver, MemoryQueueLog)
    assert manager.driver.options is options


def test_stats_count_state() -> None:
    log = MemoryQueueLog(StorageOptions(data_dir=""))
    log.create_queue("a", {})
    log.create_queue("b", {})
    log.append_many("a", [sample_message(payload=b"12345") for _ in range(3)])
    log.truncate_before("a", 1)
    log.commit_offset("a", "g1", 1)
    log.pel_add("a", "g1", 1, "c", 1.0, 1)
    log.pel_add("a", "g2", 2, "c", 1.0, 1)
    assert log.stats() == {"queues": 2, "messages": 2, "bytes": 10, "groups": 2, "pending": 2}


def test_unknown_queue_error_reads_as_a_sentence() -> None:
    log = MemoryQueueLog(StorageOptions(data_dir=""))
    with pytest.raises(KeyError) as info:
        log.append("nope", sample_message())
    assert str(info.value) == "unknown queue 'nope': create_queue() it first"
