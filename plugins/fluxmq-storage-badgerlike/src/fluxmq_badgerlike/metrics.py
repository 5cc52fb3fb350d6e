"""The engine's numbers as metrics, offered to the core's metric registry.

A storage driver has no hooks and never sees the broker's context: the broker
asks each driver for ``metric_specs(store)`` (see :mod:`fluxmq_core.metrics`) and
registers what it gets, so an exporter (the ``otel`` plugin) reads these without
importing this package. Every observation is labelled ``store`` (``broker`` or
``queue_log``, whichever role the driver plays), so both drivers' specs share the
names below.

- ``storage.fsync.duration.seconds``: histogram of every fsync the group writer
  made (recorded on the loop after each batch; nothing is recorded while no
  exporter is attached).
- ``storage.value_log.size``: bytes in the value-log segments (live and dead).
- ``storage.value_log.dead``: bytes of overwritten or deleted records, that GC can
  reclaim.
- ``storage.gc.runs.total`` and ``storage.gc.reclaimed.bytes.total``: value-log GC
  segments rewritten and bytes given back to the file system since start.
"""

from __future__ import annotations

from collections.abc import Callable

from fluxmq_badgerlike.engine import Engine
from fluxmq_badgerlike.writer import GroupWriter
from fluxmq_core.metrics import MetricSpec, Observation, histogram_spec

__all__ = ["engine_metric_specs"]


def engine_metric_specs(
    engine: Engine,
    writer: GroupWriter,
    store: str,
    extra_bytes: Callable[[], int] | None = None,
) -> list[MetricSpec]:
    """Specs over ``engine`` and ``writer`` labelled ``store``; ``extra_bytes``
    adds segment bytes the engine does not hold (the queue log's own segments)."""
    label = {"store": store}
    writer.fsync_label = label

    def of(key: str) -> Callable[[], list[Observation]]:
        return lambda: [(engine.stats()[key], label)]

    def size() -> list[Observation]:
        total = engine.stats()["bytes"]
        if extra_bytes is not None:
            total += extra_bytes()
        return [(total, label)]

    return [
        histogram_spec(
            "storage.fsync.duration.seconds",
            writer.fsync_seconds,
            "s",
            "Duration of each fsync of the storage's group writer.",
        ),
        MetricSpec("storage.value_log.size", "gauge", size, "By",
                   "Bytes in value-log segments, live and dead."),
        MetricSpec("storage.value_log.dead", "gauge", of("dead_bytes"), "By",
                   "Bytes of overwritten or deleted records that value-log GC can reclaim."),
        MetricSpec("storage.gc.runs.total", "counter", of("gc_runs"), "{segment}",
                   "Value-log segments rewritten by GC since start."),
        MetricSpec("storage.gc.reclaimed.bytes.total", "counter", of("gc_reclaimed_bytes"), "By",
                   "Bytes value-log GC gave back to the file system since start."),
    ]  # fmt: skip
