"""Helpers for testing code that uses the queue manager, without a running broker.

:func:`queue_manager` builds a :class:`~fluxmq_core.queues.QueueManager` on a
memory QueueLog (or the one given), a real router and a
:class:`~fluxmq_core.clock.ManualClock`, with the sweep timer effectively off: tests
move the clock and call ``await manager.sweep()`` themselves, then
``await manager.wait_idle()`` (bounded) to let the dispatchers deliver.
:class:`RecordingConsumer` is a consumer or subscriber that keeps what it was given.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

from fluxmq_core.clock import ManualClock
from fluxmq_core.config import load_config
from fluxmq_core.message import Message
from fluxmq_core.queues import QueueConfig, QueueManager, QueueManagerConfig
from fluxmq_core.router import Delivery, Router
from fluxmq_core.stats import Stats
from fluxmq_core.storage.base import QueueLog
from fluxmq_core.storage.memory_log import MemoryQueueLog


class RecordingConsumer:
    """A queue consumer (or router subscriber) that records ``(message, delivery)``
    pairs."""

    def __init__(self, client_id: str = "c", protocol: str = "test") -> None:
        self.client_id = client_id
        self.protocol = protocol
        self.received: list[tuple[Message, Delivery]] = []

    def deliver(self, message: Message, delivery: Delivery) -> None:
        self.received.append((message, delivery))

    @property
    def ids(self) -> list[str]:
        """The ``message-id`` of every delivery, in order."""
        return [(m.properties or {})["message-id"] for m, _d in self.received]

    @property
    def messages(self) -> list[Message]:
        """Every message delivered, in order."""
        return [m for m, _d in self.received]

    @property
    def payloads(self) -> list[bytes]:
        return [m.payload for m, _d in self.received]

    def clear(self) -> None:
        self.received.clear()


@asynccontextmanager
async def queue_manager(
    *,
    queue_log: QueueLog | None = None,
    clock: ManualClock | None = None,
    manager: dict[str, Any] | None = None,
    queues: dict[str, dict[str, Any]] | None = None,
) -> AsyncIterator[QueueManager]:
    """A started QueueManager; ``manager`` overrides ``[queue_manager]`` keys and
    ``queues`` declares ``[queues.<name>]`` tables (both validated by the real
    config loader). The context is ``manager.context`` (``clock``, ``router``,
    ``queue_log``)."""
    clock = clock or ManualClock()
    qlog = queue_log or MemoryQueueLog()
    await qlog.open()
    settings = {"sweep_interval": 3600.0, **(manager or {})}
    config = load_config(
        {"queue_manager": QueueManagerConfig, "queues": dict[str, QueueConfig]},
        env={},
        overrides={"queue_manager": settings, "queues": queues or {}},
    )
    context = SimpleNamespace(
        config=config,
        clock=clock,
        router=Router(clock=clock),
        queue_log=qlog,
        stats=Stats(started_at=0.0),
    )
    mgr = QueueManager(context)
    await mgr.start()
    try:
        yield mgr
    finally:
        await mgr.stop()
