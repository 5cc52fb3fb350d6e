"""Requeued messages go back to their original position (by offset), whatever order
they are given back in; in a priority queue, back within their own priority, never
ahead of a higher priority published later (RabbitMQ's requeue semantics)."""

from __future__ import annotations

from fluxmq_core.message import Message
from fluxmq_core.storage.memory_log import MemoryQueueLog
from fluxmq_core.testing.queues import RecordingConsumer, queue_manager


def msg(payload: bytes, priority: int | None = None) -> Message:
    props = None if priority is None else {"priority": priority}
    return Message("$queue/q", payload, 1, properties=props)


async def test_nacks_in_reverse_order_come_back_in_offset_order() -> None:
    async with queue_manager(queues={"q": {}}) as mgr:
        for p in (b"a", b"b", b"c", b"d"):
            await mgr.append("q", msg(p))
        c = RecordingConsumer()
        h = mgr.consume("q", "g", c, credit=3)
        await mgr.wait_idle()
        assert c.payloads == [b"a", b"b", b"c"]
        c.clear()
        h.pause()  # nothing is redelivered until every nack is in
        for mid in ("q:2", "q:0", "q:1"):
            assert mgr.nack(mid, "g", delay=0.0)
        h.resume()
        await mgr.wait_idle()
        # back at their places, before the message never delivered
        assert c.payloads == [b"a", b"b", b"c"]
        assert [m.properties["delivery-count"] for m, _ in c.received] == [2, 2, 2]
        for mid in c.ids:
            assert mgr.ack(mid, "g")
        await mgr.wait_idle()
        assert c.payloads == [b"a", b"b", b"c", b"d"]


async def test_consumers_cancelled_in_any_order_requeue_in_offset_order() -> None:
    async with queue_manager(queues={"q": {}}) as mgr:
        for p in (b"a", b"b", b"c"):
            await mgr.append("q", msg(p))
        first, second = RecordingConsumer("1"), RecordingConsumer("2")
        h1 = mgr.consume("q", "g", first, credit=1)
        h2 = mgr.consume("q", "g", second, credit=1)
        await mgr.wait_idle()
        assert (first.payloads, second.payloads) == ([b"a"], [b"b"])
        # the later delivery is given back first
        mgr.cancel(h2)
        mgr.cancel(h1)
        late = RecordingConsumer("3")
        mgr.consume("q", "g", late)
        await mgr.wait_idle()
        assert late.payloads == [b"a", b"b", b"c"]


async def test_requeued_low_priority_waits_behind_a_later_high_priority() -> None:
    async with queue_manager(queues={"q": {"max_priority": 5}}) as mgr:
        await mgr.append("q", msg(b"low", 1))
        c = RecordingConsumer()
        h = mgr.consume("q", "g", c, credit=1)
        await mgr.wait_idle()
        assert c.payloads == [b"low"]
        h.pause()
        await mgr.append("q", msg(b"high", 5))
        await mgr.append("q", msg(b"low2", 1))
        assert mgr.nack("q:0", "g", delay=0.0)
        c.clear()
        h.resume()
        order = []
        for _ in range(3):
            await mgr.wait_idle()
            [(m, _d)] = c.received
            c.clear()
            order.append(m.payload)
            assert mgr.ack(m.properties["message-id"], "g")
        # high first; the requeued low before the later low (its original place)
        assert order == [b"high", b"low", b"low2"]


async def test_requeued_high_priority_goes_before_waiting_lower_ones() -> None:
    async with queue_manager(queues={"q": {"max_priority": 9}}) as mgr:
        for p, pr in [(b"p1", 1), (b"p9", 9), (b"p5", 5), (b"p9b", 9)]:
            await mgr.append("q", msg(p, pr))
        c = RecordingConsumer()
        h = mgr.consume("q", "g", c, credit=2)
        await mgr.wait_idle()
        assert c.payloads == [b"p9", b"p9b"]
        h.pause()
        c.clear()
        # given back in reverse order: they return in theirs, ahead of 5 and 1
        assert mgr.nack("q:3", "g", delay=0.0)
        assert mgr.nack("q:1", "g", delay=0.0)
        h.set_credit(0)
        h.resume()
        await mgr.wait_idle()
        assert c.payloads == [b"p9", b"p9b", b"p5", b"p1"]


async def test_priority_of_entries_adopted_at_restart_is_learnt_before_ordering() -> None:
    qlog = MemoryQueueLog()
    queues = {"q": {"max_priority": 5}}
    c = RecordingConsumer()
    async with queue_manager(queue_log=qlog, queues=queues) as mgr:
        for p, pr in [(b"low", 1), (b"high", 5)]:
            await mgr.append("q", msg(p, pr))
        mgr.consume("q", "g", c)
        await mgr.wait_idle()
        assert c.payloads == [b"high", b"low"]  # both pending when the process ends
    async with queue_manager(queue_log=qlog, queues=queues) as mgr:
        await mgr.append("q", msg(b"mid", 3))
        c2 = RecordingConsumer()
        mgr.consume("q", "g", c2)
        await mgr.wait_idle()
        assert c2.payloads == [b"high", b"mid", b"low"]
