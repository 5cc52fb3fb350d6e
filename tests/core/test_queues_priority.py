"""Priority classic queues (``max_priority``): higher ``properties['priority']``
first, FIFO within a priority, capped at the max; plain queues stay FIFO."""

from __future__ import annotations

import pytest

from fluxmq_core.message import Message
from fluxmq_core.queues import QueueError
from fluxmq_core.testing.queues import RecordingConsumer, queue_manager


def msg(payload: bytes, priority: int | None = None) -> Message:
    return Message(
        "$queue/q", payload, 1, properties=None if priority is None else {"priority": priority}
    )


MIXED = [(b"a0", None), (b"b5", 5), (b"c1", 1), (b"d5", 5), (b"e9", 9), (b"f0", 0), (b"g200", 200)]


async def test_higher_priority_first_fifo_within() -> None:
    async with queue_manager(queues={"q": {"max_priority": 10}}) as mgr:
        for p, pr in MIXED:
            await mgr.append("q", msg(p, pr))
        c = RecordingConsumer()
        mgr.consume("q", "g", c, credit=1)
        order = []
        for _ in range(len(MIXED)):
            await mgr.wait_idle()
            assert len(c.received) == 1
            m = c.received.pop()[0]
            order.append(m.payload)
            assert mgr.ack(m.properties["message-id"], "g")
        # 200 is capped at 10 (the max), so it goes first; 9 next; then 5s in order
        assert order == [b"g200", b"e9", b"b5", b"d5", b"c1", b"a0", b"f0"]
        await mgr.wait_idle()
        assert mgr.info("q").groups[0].committed == len(MIXED)


async def test_paused_consumer_then_resume_orders_by_priority() -> None:
    async with queue_manager(queues={"q": {"max_priority": 3}}) as mgr:
        c = RecordingConsumer()
        h = mgr.consume("q", "g", c, credit=0)
        h.pause()
        for p, pr in [(b"1", 1), (b"2", 2), (b"3", 3), (b"x", None), (b"3b", 3)]:
            await mgr.append("q", msg(p, pr))
        await mgr.wait_idle()
        assert c.received == [] and mgr.ready_count("q", "g") == 5
        h.resume()
        await mgr.wait_idle()
        assert c.payloads == [b"3", b"3b", b"2", b"1", b"x"]


async def test_unacked_low_priority_holds_the_commit_and_retention() -> None:
    async with queue_manager(queues={"q": {"max_priority": 5}}) as mgr:
        await mgr.append("q", msg(b"low", 0))
        await mgr.append("q", msg(b"high", 5))
        c = RecordingConsumer()
        mgr.consume("q", "g", c, credit=1)
        await mgr.wait_idle()
        assert c.payloads == [b"high"]
        assert mgr.ack("q:1", "g")
        await mgr.sweep()
        await mgr.wait_idle()
        assert c.payloads == [b"high", b"low"]
        assert mgr.info("q").groups[0].committed == 0  # low still pending
        assert mgr.info("q").depth == 2
        assert mgr.ack("q:0", "g")
        await mgr.sweep()
        assert mgr.info("q").groups[0].committed == 2 and mgr.info("q").depth == 0


async def test_plain_queue_stays_fifo() -> None:
    async with queue_manager(queues={"q": {}}) as mgr:
        for p, pr in MIXED:
            await mgr.append("q", msg(p, pr))
        c = RecordingConsumer()
        mgr.consume("q", "g", c)
        await mgr.wait_idle()
        assert c.payloads == [p for p, _ in MIXED]


async def test_priority_queue_purge_and_expiry() -> None:
    async with queue_manager(queues={"q": {"max_priority": 5, "dlq_expired": True}}) as mgr:
        c = RecordingConsumer()
        h = mgr.consume("q", "g", c)
        h.pause()
        now = mgr.clock()
        await mgr.append(
            "q", Message("$queue/q", b"hi", properties={"priority": 5}, expires_at=now + 1)
        )
        await mgr.append("q", msg(b"lo", 1))
        await mgr.wait_idle()
        mgr.clock.advance(2)
        await mgr.sweep()  # the top of the heap expired: dead-lettered without a consumer
        await mgr.wait_idle()
        [(_o, d)] = await mgr.context.queue_log.read("$dlq/q", 0, 10)
        assert d.payload == b"hi" and d.properties["_dlq_reason"] == "expired"
        assert mgr.ready_count("q", "g") == 1
        mgr.purge("q")
        assert mgr.ready_count("q", "g") == 0
        h.resume()
        await mgr.wait_idle()
        assert c.payloads == []


def test_max_priority_is_validated() -> None:
    from fluxmq_core.queues.config import queue_config

    assert queue_config({"max_priority": 255}).max_priority == 255
    with pytest.raises(QueueError):
        queue_config({"max_priority": 256})
