"""Dead-lettering: max deliveries, reject, nack without requeue, the DLQ's
properties, and the rule that a failed DLQ append never loses the message."""

from __future__ import annotations

from fluxmq_core.message import Message
from fluxmq_core.storage.memory_log import MemoryQueueLog
from fluxmq_core.testing.queues import RecordingConsumer, queue_manager


class FlakyDlqLog(MemoryQueueLog):
    """A memory log whose appends to dead-letter queues fail while ``broken``."""

    def __init__(self) -> None:
        super().__init__()
        self.broken = True

    def append(self, queue: str, message: Message) -> int:
        if self.broken and queue.startswith("$dlq/"):
            raise OSError("dlq segment unwritable")
        return super().append(queue, message)


async def test_max_deliveries_moves_to_dlq_with_properties() -> None:
    async with queue_manager(
        queues={"jobs": {"max_deliveries": 2, "visibility_timeout": 5.0}}
    ) as mgr:
        c = RecordingConsumer()
        mgr.consume("jobs", "g", c)
        await mgr.append("jobs", Message("$queue/jobs/eu", b"poison", qos=1))
        await mgr.wait_idle()
        mgr.nack("jobs:0", "g")
        await mgr.wait_idle()
        assert len(c.received) == 2
        moved_at = mgr.clock() + 5.0
        mgr.clock.advance(5.0)  # the second delivery times out: count 2 = max
        await mgr.sweep()
        await mgr.wait_idle()
        assert len(c.received) == 2
        dlq = mgr.info("$dlq/jobs")
        assert dlq.type == "classic" and dlq.depth == 1
        [(_offset, dead)] = await mgr.context.queue_log.read("$dlq/jobs", 0, 10)
        assert dead.payload == b"poison" and dead.topic == "$queue/jobs/eu"
        assert dead.properties == {
            "_dlq_original_queue": "jobs",
            "_dlq_original_topic": "$queue/jobs/eu",
            "_dlq_original_id": "jobs:0",
            "_dlq_group": "g",
            "_dlq_delivery_count": 2,
            "_dlq_reason": "max-deliveries",
            "_dlq_moved_at": moved_at,
        }
        assert mgr.info("jobs").groups[0].pending == 0
        assert mgr.stats()["dead_lettered"] == 1
        # the DLQ is an ordinary classic queue
        d = RecordingConsumer()
        mgr.consume("$dlq/jobs", "ops", d)
        await mgr.wait_idle()
        assert d.ids == ["$dlq/jobs:0"]


async def test_reject_and_nack_without_requeue_dead_letter() -> None:
    async with queue_manager() as mgr:
        mgr.declare("jobs")
        c = RecordingConsumer()
        mgr.consume("jobs", "g", c)
        for i in range(2):
            await mgr.append("jobs", Message("$queue/jobs", str(i).encode()))
        await mgr.wait_idle()
        assert mgr.reject("jobs:0", "g")
        assert mgr.nack("jobs:1", "g", requeue=False)
        await mgr.wait_idle()
        rows = await mgr.context.queue_log.read("$dlq/jobs", 0, 10)
        assert [(m.payload, m.properties["_dlq_reason"]) for _, m in rows] == [
            (b"0", "rejected"),
            (b"1", "nack"),
        ]
        assert mgr.stats()["rejected"] == 1 and mgr.stats()["dead_lettered"] == 2


async def test_dlq_append_failure_keeps_the_message_pending_and_retries() -> None:
    qlog = FlakyDlqLog()
    async with queue_manager(queue_log=qlog, manager={"sweep_interval": 3600.0}) as mgr:
        mgr.declare("jobs")
        c = RecordingConsumer()
        mgr.consume("jobs", "g", c)
        await mgr.append("jobs", Message("$queue/jobs", b"precious"))
        await mgr.wait_idle()
        assert mgr.reject("jobs:0", "g")
        await mgr.wait_idle()
        # not dropped: still pending in the source group, in the log's PEL too
        assert mgr.stats()["dlq_failures"] == 1 and mgr.stats()["dead_lettered"] == 0
        assert mgr.info("jobs").groups[0].pending == 1
        [entry] = await qlog.pel_entries("jobs", "g")
        assert entry.offset == 0 and entry.consumer == "$dlq"
        assert mgr.info("jobs").groups[0].committed == 0
        # retention must not remove it either
        await mgr.sweep()
        assert mgr.info("jobs").depth == 1
        # the sweep retries once the retry delay passed; still failing -> counted again
        mgr.clock.advance(3600.0)
        await mgr.sweep()
        await mgr.wait_idle()
        assert mgr.stats()["dlq_failures"] == 2
        qlog.broken = False
        mgr.clock.advance(3600.0)
        await mgr.sweep()
        await mgr.wait_idle()
        assert mgr.stats()["dead_lettered"] == 1
        assert mgr.info("jobs").groups[0].pending == 0
        rows = await qlog.read("$dlq/jobs", 0, 10)
        assert [m.payload for _, m in rows] == [b"precious"]
        assert len(c.received) == 1  # never redelivered to consumers meanwhile


async def test_dlq_pending_entry_survives_a_restart() -> None:
    qlog = FlakyDlqLog()
    async with queue_manager(queue_log=qlog) as mgr:
        mgr.declare("jobs")
        mgr.consume("jobs", "g", RecordingConsumer())
        await mgr.append("jobs", Message("$queue/jobs", b"precious"))
        await mgr.wait_idle()
        mgr.reject("jobs:0", "g")
        await mgr.wait_idle()
    qlog.broken = False
    async with queue_manager(queue_log=qlog) as mgr:
        mgr.clock.advance(10_000)
        await mgr.sweep()
        await mgr.wait_idle()
        assert [m.payload for _, m in await qlog.read("$dlq/jobs", 0, 10)] == [b"precious"]
        assert await qlog.pel_entries("jobs", "g") == []


async def test_dlq_disabled_drops_and_counts() -> None:
    async with queue_manager(queues={"jobs": {"dlq": False}}) as mgr:
        mgr.consume("jobs", "g", RecordingConsumer())
        await mgr.append("jobs", Message("$queue/jobs", b"x"))
        await mgr.wait_idle()
        mgr.reject("jobs:0", "g")
        await mgr.wait_idle()
        assert mgr.get("$dlq/jobs") is None
        assert mgr.stats()["dropped"] == 1 and mgr.info("jobs").groups[0].pending == 0
