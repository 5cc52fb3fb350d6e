"""Ephemeral queues: in memory only, created on demand, removed when idle."""

from __future__ import annotations

from fluxmq_core.message import Message
from fluxmq_core.storage.memory_log import MemoryQueueLog
from fluxmq_core.testing.queues import RecordingConsumer, queue_manager


async def test_ensure_ephemeral_creates_an_in_memory_work_queue() -> None:
    qlog = MemoryQueueLog()
    async with queue_manager(queue_log=qlog) as mgr:
        q = mgr.ensure_ephemeral("tmp")
        assert q.type == "ephemeral" and mgr.ensure_ephemeral("tmp") is q
        assert "tmp" not in await qlog.list_queues()  # never in the durable log
        a, b = RecordingConsumer("a"), RecordingConsumer("b")
        mgr.consume("tmp", "g", a)
        mgr.consume("tmp", "g", b)
        for i in range(4):
            await mgr.append("tmp", Message("$queue/tmp", str(i).encode()))
        await mgr.wait_idle()
        assert len(a.received) == 2 and len(b.received) == 2
        # an existing durable queue is returned as is
        mgr.declare("durable")
        assert mgr.ensure_ephemeral("durable").type == "classic"
    async with queue_manager(queue_log=qlog) as mgr:
        assert mgr.get("tmp") is None and mgr.get("durable") is not None


async def test_idle_ephemeral_queue_is_removed_after_the_timeout() -> None:
    async with queue_manager(manager={"ephemeral_idle_timeout": 60.0}) as mgr:
        mgr.ensure_ephemeral("tmp")
        mgr.clock.advance(50)
        await mgr.append("tmp", Message("$queue/tmp", b"x"))  # a publish resets idleness
        mgr.clock.advance(50)
        await mgr.sweep()
        assert mgr.get("tmp") is not None
        h = mgr.consume("tmp", "g", RecordingConsumer())
        mgr.clock.advance(500)  # a consumer keeps it alive
        await mgr.sweep()
        assert mgr.get("tmp") is not None
        mgr.cancel(h)
        mgr.clock.advance(59)
        await mgr.sweep()
        assert mgr.get("tmp") is not None
        mgr.clock.advance(1)
        await mgr.sweep()
        assert mgr.get("tmp") is None
        assert mgr.stats()["ephemeral_expired"] == 1


async def test_durability_setting_does_not_wait_for_ephemeral() -> None:
    class DurableLog(MemoryQueueLog):
        durable = True

    async with queue_manager(queue_log=DurableLog()) as mgr:
        mgr.ensure_ephemeral("tmp")
        fut = mgr.append("tmp", Message("$queue/tmp", b"x"))
        assert fut.done() and fut.result() == 0


async def test_the_sweep_timer_runs_every_sweep_interval() -> None:
    import asyncio

    async with queue_manager(
        manager={"sweep_interval": 0.01, "ephemeral_idle_timeout": 0.0}
    ) as mgr:
        mgr.ensure_ephemeral("tmp")
        for _ in range(500):  # bounded wait for the timer, no timing assertion
            if mgr.get("tmp") is None:
                break
            await asyncio.sleep(0.01)
        assert mgr.get("tmp") is None
