"""Retention by age, bytes and count, the consumed prefix of work queues, bounded
work per sweep, and the rule: never remove what a classic group has pending."""

from __future__ import annotations

from fluxmq_core.message import Message
from fluxmq_core.testing.queues import RecordingConsumer, queue_manager


async def publish(mgr, queue: str, n: int, size: int = 1) -> None:
    for i in range(n):
        await mgr.append(
            queue, Message(f"$queue/{queue}", bytes([65 + i % 26]) * size, timestamp=mgr.clock())
        )
        mgr.clock.advance(1.0)


async def test_retention_by_count() -> None:
    async with queue_manager(queues={"s": {"type": "stream", "retention_messages": 3}}) as mgr:
        await publish(mgr, "s", 10)
        await mgr.sweep()
        info = mgr.info("s")
        assert (info.depth, info.first_offset) == (3, 7)
        assert mgr.stats()["truncated"] == 7


async def test_retention_by_age() -> None:
    async with queue_manager(queues={"s": {"type": "stream", "retention_age": 4.0}}) as mgr:
        await publish(mgr, "s", 10)  # timestamps now-10 .. now-1
        await mgr.sweep()
        assert mgr.info("s").first_offset == 6


async def test_retention_by_bytes() -> None:
    async with queue_manager(queues={"s": {"type": "stream", "retention_bytes": 25}}) as mgr:
        await publish(mgr, "s", 10, size=10)
        await mgr.sweep()
        info = mgr.info("s")
        assert info.bytes <= 25 and (info.depth, info.bytes) == (2, 20)


async def test_sweep_work_is_bounded_per_tick() -> None:
    cfg = {"s": {"type": "stream", "retention_messages": 1}}
    async with queue_manager(queues=cfg, manager={"sweep_batch": 4}) as mgr:
        await publish(mgr, "s", 10)
        await mgr.sweep()
        assert mgr.info("s").first_offset == 4
        await mgr.sweep()
        await mgr.sweep()
        assert mgr.info("s").first_offset == 9


async def test_retention_never_removes_pending_messages() -> None:
    async with queue_manager(queues={"jobs": {"retention_messages": 2}}) as mgr:
        c = RecordingConsumer()
        mgr.consume("jobs", "g", c, credit=2)
        await publish(mgr, "jobs", 2)
        await mgr.wait_idle()
        await publish(mgr, "jobs", 6)
        await mgr.sweep()
        info = mgr.info("jobs")
        assert info.first_offset == 0 and info.depth == 8  # 0 is pending: nothing goes
        mgr.ack("jobs:0", "g")
        await mgr.sweep()
        # 1 still pending caps the truncation; the undelivered 2..5 are not protected
        assert mgr.info("jobs").first_offset == 1
        mgr.ack("jobs:1", "g")
        await mgr.sweep()
        await mgr.wait_idle()
        assert mgr.info("jobs").first_offset == 6
        assert c.ids == ["jobs:0", "jobs:1", "jobs:6", "jobs:7"]  # the group skipped 2..5


async def test_work_queue_drops_the_prefix_every_group_settled() -> None:
    async with queue_manager() as mgr:
        mgr.declare("jobs")
        a, b = RecordingConsumer("a"), RecordingConsumer("b")
        mgr.consume("jobs", "g1", a)
        mgr.consume("jobs", "g2", b)
        await publish(mgr, "jobs", 4)
        await mgr.wait_idle()
        for i in range(4):
            mgr.ack(f"jobs:{i}", "g1")
        mgr.ack("jobs:0", "g2")
        await mgr.sweep()
        assert mgr.info("jobs").first_offset == 1  # g2 still holds 1..3
        for i in range(1, 4):
            mgr.ack(f"jobs:{i}", "g2")
        await mgr.sweep()
        assert mgr.info("jobs").depth == 0


async def test_queue_without_groups_keeps_its_messages() -> None:
    async with queue_manager() as mgr:
        mgr.declare("jobs")
        await publish(mgr, "jobs", 3)
        await mgr.sweep()
        assert mgr.info("jobs").depth == 3
