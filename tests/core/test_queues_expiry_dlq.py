"""Expired and overflowed messages to the dead-letter queue (``dlq_expired``,
``dlq_overflow``): without a consumer, through the sweep, and never lost when the
DLQ append fails. Time moves only through the ManualClock."""

from __future__ import annotations

from fluxmq_core.message import Message
from fluxmq_core.queues import QueueFullError
from fluxmq_core.storage.memory_log import MemoryQueueLog
from fluxmq_core.testing.queues import RecordingConsumer, queue_manager


class FlakyDlqLog(MemoryQueueLog):
    def __init__(self) -> None:
        super().__init__()
        self.broken = True

    def append(self, queue: str, message: Message) -> int:
        if self.broken and queue.startswith("$dlq/"):
            raise OSError("dlq segment unwritable")
        return super().append(queue, message)


def msg(payload: bytes, ttl: float | None = None, now: float = 0.0, **props) -> Message:
    return Message(
        "$queue/q/k",
        payload,
        1,
        expires_at=None if ttl is None else now + ttl,
        properties=props or None,
    )


async def dead(mgr, name: str = "$dlq/q") -> list[Message]:
    if mgr.get(name) is None:
        return []
    return [m for _o, m in await mgr.context.queue_log.read(name, 0, 100)]


async def test_expired_head_without_groups_is_dead_lettered_by_the_sweep() -> None:
    async with queue_manager(queues={"q": {"message_ttl": 10.0, "dlq_expired": True}}) as mgr:
        await mgr.append("q", msg(b"a"))
        await mgr.append("q", msg(b"b"))
        mgr.clock.advance(5.0)
        await mgr.append("q", msg(b"c"))
        await mgr.sweep()
        assert await dead(mgr) == []
        mgr.clock.advance(5.0)  # a and b expired, c has 5 s left
        await mgr.sweep()
        await mgr.wait_idle()
        got = await dead(mgr)
        assert [m.payload for m in got] == [b"a", b"b"]
        assert got[0].properties["_dlq_reason"] == "expired"
        assert got[0].properties["_dlq_original_id"] == "q:0"
        assert got[0].expires_at is None
        assert mgr.info("q").depth == 1 and mgr.ready_count("q") == 1
        stats = mgr.stats()
        assert stats["expired"] == 2 and stats["dead_lettered"] == 2


async def test_expired_head_without_dlq_expired_is_dropped() -> None:
    async with queue_manager(queues={"q": {"message_ttl": 1.0}}) as mgr:
        await mgr.append("q", msg(b"a"))
        mgr.clock.advance(2.0)
        await mgr.sweep()
        assert mgr.info("q").depth == 0 and mgr.get("$dlq/q") is None
        assert mgr.stats()["expired"] == 1


async def test_per_message_expiry_only_at_the_head() -> None:
    async with queue_manager(queues={"q": {"dlq_expired": True}}) as mgr:
        now = mgr.clock()
        await mgr.append("q", msg(b"long", 100.0, now))
        await mgr.append("q", msg(b"short", 1.0, now))
        mgr.clock.advance(2.0)
        await mgr.sweep()
        assert await dead(mgr) == []  # as RabbitMQ: only the head expires
        c = RecordingConsumer()
        mgr.consume("q", "g", c)
        await mgr.wait_idle()
        assert c.payloads == [b"long"]
        assert [m.payload for m in await dead(mgr)] == [b"short"]


async def test_group_head_expires_without_consumers() -> None:
    async with queue_manager(queues={"q": {"message_ttl": 10.0, "dlq_expired": True}}) as mgr:
        c = RecordingConsumer()
        h = mgr.consume("q", "g", c)
        mgr.cancel(h)  # the group stays, with no consumer
        await mgr.append("q", msg(b"a"))
        mgr.clock.advance(11.0)
        await mgr.sweep()
        await mgr.wait_idle()
        [d] = await dead(mgr)
        assert d.payload == b"a" and d.properties["_dlq_group"] == "g"
        assert d.properties["_dlq_reason"] == "expired"
        assert mgr.ready_count("q", "g") == 0
        assert mgr.info("q").groups[0].pending == 0


async def test_requeued_message_that_expired_is_dead_lettered_on_redelivery() -> None:
    async with queue_manager(queues={"q": {"message_ttl": 10.0, "dlq_expired": True}}) as mgr:
        c = RecordingConsumer()
        mgr.consume("q", "g", c)
        await mgr.append("q", msg(b"a"))
        await mgr.wait_idle()
        mgr.clock.advance(11.0)
        mgr.nack("q:0", "g", delay=0.0)
        await mgr.wait_idle()
        assert c.payloads == [b"a"]
        [d] = await dead(mgr)
        assert d.properties["_dlq_reason"] == "expired" and d.properties["_dlq_delivery_count"] == 1


async def test_failed_dlq_append_keeps_the_expired_head() -> None:
    qlog = FlakyDlqLog()
    async with queue_manager(
        queue_log=qlog, queues={"q": {"message_ttl": 1.0, "dlq_expired": True}}
    ) as mgr:
        await mgr.append("q", msg(b"a"))
        mgr.clock.advance(2.0)
        await mgr.sweep()
        await mgr.wait_idle()
        assert mgr.stats()["dlq_failures"] >= 1
        assert mgr.info("q").depth == 1  # still in the log
        await mgr.sweep()  # retention must not take it either
        assert mgr.info("q").depth == 1
        qlog.broken = False
        await mgr.sweep()
        await mgr.wait_idle()
        assert [m.payload for m in await dead(mgr)] == [b"a"]
        assert mgr.info("q").depth == 0


async def test_drop_oldest_overflow_dead_letters_with_maxlen() -> None:
    async with queue_manager(
        queues={"q": {"max_depth": 2, "overflow": "drop-oldest", "dlq_overflow": True}}
    ) as mgr:
        for p in (b"a", b"b", b"c", b"d"):
            await mgr.append("q", msg(p))
        await mgr.wait_idle()
        for _ in range(10):
            await mgr.wait_idle()
            if len(await dead(mgr)) == 2:
                break
        got = await dead(mgr)
        assert [m.payload for m in got] == [b"a", b"b"]
        assert {m.properties["_dlq_reason"] for m in got} == {"maxlen"}
        c = RecordingConsumer()
        mgr.consume("q", "g", c)
        await mgr.wait_idle()
        assert c.payloads == [b"c", b"d"]


async def test_reject_overflow_dead_letters_the_refused_message() -> None:
    async with queue_manager(queues={"q": {"max_depth": 1, "dlq_overflow": True}}) as mgr:
        await mgr.append("q", msg(b"a"))
        try:
            mgr.append("q", msg(b"b"))
        except QueueFullError:
            pass
        else:
            raise AssertionError("expected QueueFullError")
        await mgr.wait_idle()
        [d] = await dead(mgr)
        assert d.payload == b"b" and d.properties["_dlq_reason"] == "maxlen"
        assert d.properties["_dlq_original_id"] == ""
        assert mgr.info("q").depth == 1
