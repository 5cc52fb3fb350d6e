"""The drivers' metrics offered to the core's registry (``metric_specs``): fsync
durations recorded into the core Histogram once something listens, value-log size
and GC counters read from the engine, every observation labelled with the store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fluxmq_badgerlike.queue_log import BadgerlikeQueueLog
from fluxmq_badgerlike.store import BadgerlikeBrokerStore

from fluxmq_core.message import Message
from fluxmq_core.metrics import MetricSpec, register_driver_metrics
from fluxmq_core.storage.base import StorageOptions


def _by_name(specs: list[MetricSpec]) -> dict[str, MetricSpec]:
    return {s.name: s for s in specs}


async def test_broker_store_offers_fsync_size_and_gc(tmp_path: Path) -> None:
    store = BadgerlikeBrokerStore(
        StorageOptions(
            data_dir=str(tmp_path), fsync="always", extra={"segment_size": 4096, "gc_ratio": 0.5}
        )
    )
    await store.open()
    try:
        specs = _by_name(store.metric_specs("broker"))
        hist = specs["storage.fsync.duration.seconds"]
        assert hist.kind == "histogram" and hist.histogram is not None and hist.unit == "s"
        recorded: list[tuple[float, dict[str, str]]] = []
        hist.histogram.attach(lambda v, attrs: recorded.append((v, dict(attrs))))
        size0 = specs["storage.value_log.size"].observations()
        for round_ in range(6):
            for i in range(20):
                store.save_retained(Message(f"m/{i}", f"{round_}".encode() * 100, retain=True))
            await store.sync()
        assert recorded, "fsync='always' fsyncs every flush"
        assert all(v >= 0 and attrs == {"store": "broker"} for v, attrs in recorded)
        size = specs["storage.value_log.size"].observations()
        assert size[0][1] == {"store": "broker"} and size[0][0] > size0[0][0]
        assert specs["storage.value_log.dead"].observations()[0][0] > 0  # overwritten values
        assert specs["storage.gc.runs.total"].observations() == [(0, {"store": "broker"})]
        await store.gc(max_segments=1000)
        assert specs["storage.gc.runs.total"].observations()[0][0] > 0
        assert specs["storage.gc.reclaimed.bytes.total"].observations()[0][0] > 0
        hist.histogram.attach(None)
        n = len(recorded)
        store.save_retained(Message("m/x", b"y", retain=True))
        await store.sync()
        assert len(recorded) == n  # detached: nothing recorded
    finally:
        await store.close()


async def test_the_broker_registers_both_drivers(tmp_path: Path) -> None:
    options = StorageOptions(data_dir=str(tmp_path), fsync="batch")
    store = BadgerlikeBrokerStore(options)
    log = BadgerlikeQueueLog(options)
    await store.open()
    await log.open()
    try:

        class Ctx:
            extras: dict[str, Any] = {}

        ctx = Ctx()
        ctx.store, ctx.queue_log = store, log  # type: ignore[attr-defined]
        register_driver_metrics(ctx)
        registry = ctx.extras["fluxmq.metrics"]
        assert set(registry) == {"storage.broker", "storage.queue_log"}
        log_specs = _by_name(registry["storage.queue_log"])
        assert log_specs["storage.value_log.size"].observations()[0][1] == {"store": "queue_log"}
    finally:
        await log.close()
        await store.close()
