"""Storage: the :class:`BrokerStore` and :class:`QueueLog` interfaces and the
in-memory drivers of the core.

The write/durability contract (plain-``def`` writes, one awaitable ``sync()``
barrier, acknowledge only after it) is documented in :mod:`fluxmq_core.storage.base`.
Drivers are loaded by name from the ``fluxmq.storage`` and ``fluxmq.queue_log``
entry-point groups and constructed as ``DriverClass(StorageOptions(...))``; the
behaviour every driver must show is tested by :mod:`fluxmq_core.testing.conformance`.
"""

from __future__ import annotations

from fluxmq_core.storage.base import (
    FSYNC_MODES,
    BrokerStore,
    PendingEntry,
    QueueLog,
    StorageOptions,
    UnknownQueueError,
)
from fluxmq_core.storage.memory import MemoryBrokerStore
from fluxmq_core.storage.memory_log import MemoryQueueLog

__all__ = [
    "FSYNC_MODES",
    "BrokerStore",
    "MemoryBrokerStore",
    "MemoryQueueLog",
    "PendingEntry",
    "QueueLog",
    "StorageOptions",
    "UnknownQueueError",
]
