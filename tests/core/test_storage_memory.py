"""The memory BrokerStore against the driver conformance suite, plus what is
particular to it: loading by name and refusing records a durable driver could
not store."""

from __future__ import annotations

from pathlib import Path

import pytest
from stevedore import DriverManager

from fluxmq_core.storage import BrokerStore, MemoryBrokerStore, StorageOptions
from fluxmq_core.testing.conformance import BrokerStoreConformance, sample_message


class TestMemoryBrokerStore(BrokerStoreConformance):
    def make_store(self, tmp_path: Path) -> BrokerStore:
        return MemoryBrokerStore(StorageOptions(data_dir=str(tmp_path)))


def test_loads_by_name_through_the_entry_point(tmp_path: Path) -> None:
    options = StorageOptions(data_dir=str(tmp_path))
    manager = DriverManager("fluxmq.storage", "memory", invoke_on_load=True, invoke_args=(options,))
    assert isinstance(manager.driver, MemoryBrokerStore)
    assert manager.driver.options is options


def test_storage_options_reject_an_unknown_fsync_mode() -> None:
    with pytest.raises(ValueError, match="always, batch, never"):
        StorageOptions(data_dir="", fsync="sometimes")


@pytest.mark.parametrize(
    "record",
    [{"s": {1, 2}}, {1: "int key"}, {"nested": [object()]}],
    ids=["set", "int-key", "object"],
)
def test_refuses_records_a_durable_driver_could_not_store(record: dict) -> None:
    store = MemoryBrokerStore(StorageOptions(data_dir=""))
    with pytest.raises(TypeError, match="session record"):
        store.save_session("c", record)


async def test_tuples_come_back_as_lists() -> None:
    store = MemoryBrokerStore(StorageOptions(data_dir=""))
    store.save_inflight("c", 1, {"pair": (1, "a")})
    assert await store.load_inflight("c") == {1: {"pair": [1, "a"]}}


async def test_stats_count_state() -> None:
    store = MemoryBrokerStore(StorageOptions(data_dir=""))
    store.save_session("c", {})
    store.save_subscription("c", "a", {})
    store.save_subscription("c", "b", {})
    store.save_retained(sample_message())
    store.save_will("c", sample_message(), 1.0)
    store.enqueue("c", sample_message())
    store.save_inflight("c", 1, {})
    assert store.stats() == {
        "sessions": 1,
        "subscriptions": 2,
        "retained": 1,
        "wills": 1,
        "queued": 1,
        "inflight": 1,
    }
