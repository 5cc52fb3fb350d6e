"""Classic (work) queues: groups, credit, PEL, visibility timeout, backoff, work
stealing, depth limits, TTL, durability of appends, settlement errors."""

from __future__ import annotations

import asyncio

import pytest

from fluxmq_core.message import Message
from fluxmq_core.queues import MessageTooLargeError, QueueError, QueueFullError
from fluxmq_core.storage.memory_log import MemoryQueueLog
from fluxmq_core.testing.queues import RecordingConsumer, queue_manager


def msg(i: int | str, topic: str = "$queue/jobs/a") -> Message:
    return Message(topic, str(i).encode(), qos=1)


async def fill(mgr, queue: str, n: int, topic: str | None = None) -> list[int]:
    offsets = []
    for i in range(n):
        offsets.append(await mgr.append(queue, msg(i, topic or f"$queue/{queue}/a")))
    return offsets


async def test_append_returns_offsets_and_delivers_with_metadata() -> None:
    async with queue_manager() as mgr:
        mgr.declare("jobs")
        c = RecordingConsumer("w1")
        mgr.consume("jobs", "workers", c)
        assert await fill(mgr, "jobs", 3) == [0, 1, 2]
        await mgr.wait_idle()
        assert c.payloads == [b"0", b"1", b"2"]
        m, d = c.received[0]
        assert m.properties == {
            "message-id": "jobs:0",
            "group-id": "workers",
            "queue": "jobs",
            "offset": 0,
            "delivery-count": 1,
        }
        assert m.topic == "$queue/jobs/a" and d.qos == 1
        assert mgr.stats()["appended"] == 3 and mgr.stats()["delivered"] == 3


async def test_groups_fan_out_and_consumers_share_the_load() -> None:
    async with queue_manager() as mgr:
        mgr.declare("jobs")
        a, b, other = RecordingConsumer("a"), RecordingConsumer("b"), RecordingConsumer("o")
        mgr.consume("jobs", "g1", a)
        mgr.consume("jobs", "g1", b)
        mgr.consume("jobs", "g2", other)
        await fill(mgr, "jobs", 6)
        await mgr.wait_idle()
        # every group gets every message; within g1 each message goes to exactly one
        assert sorted(other.payloads) == [str(i).encode() for i in range(6)]
        assert sorted(a.payloads + b.payloads) == sorted(other.payloads)
        assert len(a.payloads) == 3 and len(b.payloads) == 3  # round robin
        assert not set(a.payloads) & set(b.payloads)


async def test_credit_bounds_unacked_deliveries_per_consumer() -> None:
    async with queue_manager() as mgr:
        mgr.declare("jobs")
        slow, fast = RecordingConsumer("slow"), RecordingConsumer("fast")
        mgr.consume("jobs", "g", slow, credit=1)
        mgr.consume("jobs", "g", fast, credit=3)
        await fill(mgr, "jobs", 10)
        await mgr.wait_idle()
        assert (len(slow.received), len(fast.received)) == (1, 3)
        # acking frees credit for exactly that consumer
        for mid in fast.ids:
            assert mgr.ack(mid, "g")
        await mgr.wait_idle()
        assert (len(slow.received), len(fast.received)) == (1, 6)
        info = mgr.info("jobs").groups[0]
        assert info.pending == 4 and info.consumers == 2


async def test_set_credit_wakes_the_group() -> None:
    async with queue_manager() as mgr:
        mgr.declare("jobs")
        c = RecordingConsumer()
        h = mgr.consume("jobs", "g", c, credit=1)
        await fill(mgr, "jobs", 4)
        await mgr.wait_idle()
        assert len(c.received) == 1
        h.set_credit(3)
        await mgr.wait_idle()
        assert len(c.received) == 3


async def test_ack_advances_committed_offset_over_the_acked_prefix() -> None:
    async with queue_manager() as mgr:
        mgr.declare("jobs")
        c = RecordingConsumer()
        mgr.consume("jobs", "g", c)
        await fill(mgr, "jobs", 4)
        await mgr.wait_idle()
        log = mgr.context.queue_log
        assert await log.committed_offset("jobs", "g") == 0
        mgr.ack("jobs", "g", 1)
        assert await log.committed_offset("jobs", "g") == 0  # 0 still pending
        mgr.ack("jobs", "g", 0)
        assert await log.committed_offset("jobs", "g") == 2
        assert [e.offset for e in await log.pel_entries("jobs", "g")] == [2, 3]
        assert mgr.ack("jobs", "g", 0) is False  # repeated ack is harmless


async def test_visibility_timeout_redelivers_with_incremented_count() -> None:
    async with queue_manager(queues={"jobs": {"visibility_timeout": 10.0}}) as mgr:
        clock = mgr.clock
        a, b = RecordingConsumer("a"), RecordingConsumer("b")
        mgr.consume("jobs", "g", a, credit=1)
        await mgr.append("jobs", msg("x"))
        await mgr.wait_idle()
        assert a.ids == ["jobs:0"]
        mgr.consume("jobs", "g", b, credit=1)
        clock.advance(9.0)
        await mgr.sweep()
        await mgr.wait_idle()
        assert b.received == []  # not yet
        clock.advance(1.5)
        await mgr.sweep()
        await mgr.wait_idle()
        got = a.received[1:] + b.received
        assert len(got) == 1
        assert got[0][0].properties["delivery-count"] == 2
        assert got[0][0].properties["message-id"] == "jobs:0"
        assert mgr.stats()["timeouts"] == 1 and mgr.stats()["redelivered"] == 1
        entry = (await mgr.context.queue_log.pel_entries("jobs", "g"))[0]
        assert entry.delivery_count == 2


async def test_nack_backoff_delays_grow_per_config() -> None:
    cfg = {"retry_initial": 2.0, "retry_multiplier": 3.0, "retry_max": 10.0, "max_deliveries": 0}
    async with queue_manager(queues={"jobs": cfg}) as mgr:
        clock = mgr.clock
        c = RecordingConsumer()
        mgr.consume("jobs", "g", c)
        await mgr.append("jobs", msg("x"))
        await mgr.wait_idle()
        waits = []
        for _ in range(4):
            assert mgr.nack("jobs:0", "g")
            before = len(c.received)
            waited = 0.0
            while len(c.received) == before:
                assert waited < 60, "never redelivered"
                clock.advance(0.5)
                waited += 0.5
                await mgr.sweep()
                await mgr.wait_idle()
            waits.append(waited)
        assert waits == [2.0, 6.0, 10.0, 10.0]  # 2, 2*3, capped at retry_max
        assert [m.properties["delivery-count"] for m, _ in c.received] == [1, 2, 3, 4, 5]


async def test_nack_with_explicit_delay_and_immediate_requeue() -> None:
    async with queue_manager() as mgr:
        c = RecordingConsumer()
        mgr.declare("jobs")
        mgr.consume("jobs", "g", c)
        await mgr.append("jobs", msg("x"))
        await mgr.wait_idle()
        assert mgr.nack("jobs", "g", 0)  # retry_initial 0: at once
        await mgr.wait_idle()
        assert len(c.received) == 2
        assert mgr.nack("jobs", "g", 0, delay=5.0)
        await mgr.sweep()
        await mgr.wait_idle()
        assert len(c.received) == 2
        mgr.clock.advance(5.0)
        await mgr.sweep()
        await mgr.wait_idle()
        assert len(c.received) == 3
        assert mgr.stats()["nacked"] == 2


async def test_timeout_backoff_applies_too() -> None:
    cfg = {"visibility_timeout": 5.0, "retry_initial": 4.0}
    async with queue_manager(queues={"jobs": cfg}) as mgr:
        c = RecordingConsumer()
        mgr.consume("jobs", "g", c)
        await mgr.append("jobs", msg("x"))
        await mgr.wait_idle()
        mgr.clock.advance(5.0)
        await mgr.sweep()  # times out; waits retry_initial before redelivery
        await mgr.wait_idle()
        assert len(c.received) == 1
        mgr.clock.advance(4.0)
        await mgr.sweep()
        await mgr.wait_idle()
        assert len(c.received) == 2


async def test_work_stealing_on_cancel_is_at_least_once() -> None:
    async with queue_manager() as mgr:
        mgr.declare("jobs")
        a, b = RecordingConsumer("a"), RecordingConsumer("b")
        ha = mgr.consume("jobs", "g", a, credit=5)
        await fill(mgr, "jobs", 4)
        await mgr.wait_idle()
        assert len(a.received) == 4
        mgr.ack("jobs:0", "g")
        mgr.consume("jobs", "g", b, credit=5)
        mgr.cancel(ha)  # a goes away with 1, 2, 3 unacked
        await mgr.wait_idle()
        assert b.ids == ["jobs:1", "jobs:2", "jobs:3"]
        assert [m.properties["delivery-count"] for m, _ in b.received] == [2, 2, 2]
        assert not ha.active
        for mid in b.ids:
            mgr.ack(mid, "g")
        assert mgr.info("jobs").groups[0].pending == 0


async def test_cancel_subscriber_steals_all_its_consumers() -> None:
    async with queue_manager() as mgr:
        mgr.declare("jobs")
        a, b = RecordingConsumer("a"), RecordingConsumer("b")
        mgr.consume("jobs", "g", a)
        await fill(mgr, "jobs", 2)
        await mgr.wait_idle()
        mgr.consume("jobs", "g", b)
        assert mgr.cancel_subscriber(a) == 1
        await mgr.wait_idle()
        assert b.ids == ["jobs:0", "jobs:1"]


async def test_restart_redelivers_pending_from_the_log() -> None:
    qlog = MemoryQueueLog()
    c = RecordingConsumer()
    async with queue_manager(queue_log=qlog) as mgr:
        mgr.declare("jobs")
        mgr.consume("jobs", "g", c)
        await fill(mgr, "jobs", 3)
        await mgr.wait_idle()
        mgr.ack("jobs:0", "g")
    c2 = RecordingConsumer()
    async with queue_manager(queue_log=qlog) as mgr:
        assert mgr.get("jobs") is not None
        mgr.consume("jobs", "g", c2)
        await mgr.wait_idle()
        assert c2.ids == ["jobs:1", "jobs:2"]
        assert [m.properties["delivery-count"] for m, _ in c2.received] == [2, 2]


async def test_filter_matches_the_routing_key_and_belongs_to_the_group() -> None:
    async with queue_manager() as mgr:
        mgr.declare("orders")
        eu = RecordingConsumer("eu")
        mgr.consume("orders", "eu-workers", eu, filter="eu/+")
        for topic in ("$queue/orders/eu/new", "$queue/orders/us/new", "$queue/orders/eu/paid"):
            await mgr.append("orders", Message(topic, b"x"))
        await mgr.wait_idle()
        assert eu.ids == ["orders:0", "orders:2"]
        # skipped messages count as settled for that group
        assert mgr.info("orders").groups[0].committed == 0
        mgr.ack("orders:0", "eu-workers")
        mgr.ack("orders:2", "eu-workers")
        assert mgr.info("orders").groups[0].committed == 3
        with pytest.raises(QueueError, match="needs its own group"):
            mgr.consume("orders", "eu-workers", RecordingConsumer(), filter="us/#")
        with pytest.raises(QueueError, match="invalid consumer filter"):
            mgr.consume("orders", "other", RecordingConsumer(), filter="a/#/b")
        assert "other" not in mgr.get("orders").groups


async def test_max_depth_reject_raises_queue_full() -> None:
    async with queue_manager(queues={"small": {"max_depth": 2}}) as mgr:
        await fill(mgr, "small", 2)
        with pytest.raises(QueueFullError, match="max_depth 2"):
            mgr.append("small", msg("x"))
        assert mgr.info("small").depth == 2


async def test_max_depth_counts_only_unconsumed_messages_of_a_work_queue() -> None:
    async with queue_manager(queues={"small": {"max_depth": 2}}) as mgr:
        c = RecordingConsumer()
        mgr.consume("small", "g", c)
        await fill(mgr, "small", 2)
        await mgr.wait_idle()
        mgr.ack("small:0", "g")
        # the acked prefix is trimmed before the limit applies
        assert await mgr.append("small", msg("x")) == 2
        with pytest.raises(QueueFullError):
            mgr.append("small", msg("y"))


async def test_max_depth_drop_oldest() -> None:
    async with queue_manager(queues={"small": {"max_depth": 2, "overflow": "drop-oldest"}}) as mgr:
        c = RecordingConsumer()
        mgr.consume("small", "g", c, credit=1)
        await fill(mgr, "small", 2)
        await mgr.wait_idle()
        assert c.ids == ["small:0"]
        await fill(mgr, "small", 2)
        await mgr.wait_idle()
        info = mgr.info("small")
        assert info.depth == 2 and info.first_offset == 2
        assert mgr.stats()["dropped"] == 2
        # offset 0 was pending on c and was dropped with the rest: its ack is a no-op
        assert mgr.ack("small:0", "g") is False
        await mgr.wait_idle()
        assert c.ids == ["small:0", "small:2"]


async def test_max_message_size() -> None:
    async with queue_manager(queues={"q": {"max_message_size": 3}}) as mgr:
        assert await mgr.append("q", Message("t", b"abc")) == 0
        with pytest.raises(MessageTooLargeError, match="max_message_size 3"):
            mgr.append("q", Message("t", b"abcd"))


async def test_message_ttl_and_own_expiry_skip_expired_messages() -> None:
    async with queue_manager(queues={"q": {"message_ttl": 10.0}}) as mgr:
        now = mgr.clock()
        await mgr.append("q", Message("t", b"ttl"))  # expires via the queue's ttl
        await mgr.append("q", Message("t", b"own", expires_at=now + 3))  # own, sooner
        await mgr.append("q", Message("t", b"late", expires_at=now + 100))  # capped by ttl
        mgr.clock.advance(5)
        await mgr.append("q", Message("t", b"fresh"))
        c = RecordingConsumer()
        mgr.consume("q", "g", c)
        await mgr.wait_idle()
        assert c.payloads == [b"ttl", b"late", b"fresh"]
        mgr.clock.advance(6)  # the first three are past ttl now; nack "ttl" back
        mgr.nack("q:0", "g")
        await mgr.wait_idle()
        assert c.payloads == [b"ttl", b"late", b"fresh"]  # not redelivered: expired
        assert mgr.stats()["expired"] == 2


async def test_sync_durability_waits_for_one_group_commit_per_tick() -> None:
    class DurableLog(MemoryQueueLog):
        durable = True

        def __init__(self) -> None:
            super().__init__()
            self.syncs = 0
            self.gate = asyncio.Event()

        async def sync(self) -> None:
            self.syncs += 1
            await self.gate.wait()

    qlog = DurableLog()
    async with queue_manager(queue_log=qlog, queues={"fast": {"durability": "async"}}) as mgr:
        mgr.declare("jobs")
        futs = [mgr.append("jobs", msg(i)) for i in range(5)]
        quick = mgr.append("fast", msg("f"))
        assert quick.done() and quick.result() == 0  # async: at once
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert qlog.syncs == 1 and not any(f.done() for f in futs)
        qlog.gate.set()
        assert await asyncio.wait_for(asyncio.gather(*futs), 5) == [0, 1, 2, 3, 4]
        assert qlog.syncs == 1


async def test_sync_failure_fails_the_appends() -> None:
    class FailingLog(MemoryQueueLog):
        durable = True

        async def sync(self) -> None:
            raise OSError("disk gone")

    async with queue_manager(queue_log=FailingLog()) as mgr:
        mgr.declare("jobs")
        with pytest.raises(OSError, match="disk gone"):
            await asyncio.wait_for(mgr.append("jobs", msg(1)), 5)
        assert mgr.stats()["sync_failures"] == 1


async def test_auto_commit_classic_consumer_is_at_most_once() -> None:
    async with queue_manager() as mgr:
        mgr.declare("jobs")
        c = RecordingConsumer()
        mgr.consume("jobs", "g", c, credit=1, auto_commit=True)
        await fill(mgr, "jobs", 3)
        await mgr.wait_idle()
        assert len(c.received) == 3
        assert mgr.info("jobs").groups[0].pending == 0


async def test_settlement_errors_are_queue_errors() -> None:
    async with queue_manager() as mgr:
        mgr.declare("jobs")
        mgr.consume("jobs", "g", RecordingConsumer())
        with pytest.raises(QueueError, match="malformed message id"):
            mgr.ack("no-offset", "g")
        with pytest.raises(QueueError, match="malformed message id"):
            mgr.ack("jobs:\u00b2", "g")  # a digit to str.isdigit, not to int()
        with pytest.raises(QueueError, match="unknown queue 'nope'"):
            mgr.ack("nope:1", "g")
        with pytest.raises(QueueError, match="no consumer group 'h'"):
            mgr.nack("jobs:1", "h")
        with pytest.raises(QueueError, match="commit is for streams"):
            mgr.commit("jobs:0", "g")
        with pytest.raises(QueueError, match="cursors are for streams"):
            mgr.consume("jobs", "g", RecordingConsumer(), cursor="first")
        with pytest.raises(QueueError, match="unknown queue"):
            mgr.append("nope", msg(1))
        assert mgr.ack("jobs:7", "g") is False


async def test_declare_is_idempotent_and_checks_conflicts() -> None:
    async with queue_manager() as mgr:
        q = mgr.declare("jobs", {"max_depth": 5})
        assert mgr.declare("jobs", {"max_depth": 5}) is q
        with pytest.raises(QueueError, match="different configuration"):
            mgr.declare("jobs", {"max_depth": 6})
        with pytest.raises(QueueError, match="cannot become stream"):
            mgr.declare("jobs", {"type": "stream"}, update=True)
        assert mgr.declare("jobs", {"max_depth": 6}, update=True).config.max_depth == 6
        with pytest.raises(QueueError, match="unknown key"):
            mgr.declare("x", {"depth": 1})
        with pytest.raises(QueueError, match="invalid queue name"):
            mgr.declare("a/b")
        with pytest.raises(QueueError, match="overflow"):
            mgr.declare("y", {"overflow": "spill"})


async def test_list_info_purge_delete() -> None:
    async with queue_manager() as mgr:
        mgr.declare("b-jobs")
        mgr.declare("a-jobs")
        c = RecordingConsumer()
        handle = mgr.consume("a-jobs", "g", c, credit=1)
        await fill(mgr, "a-jobs", 3)
        await mgr.wait_idle()
        infos = mgr.list()
        assert [i.name for i in infos] == ["a-jobs", "b-jobs"]
        a = infos[0]
        assert (a.type, a.depth, a.bytes, a.consumers) == ("classic", 3, 3, 1)
        g = a.groups[0]
        assert (g.name, g.pending, g.lag, g.committed, g.cursor) == ("g", 1, 3, 0, 1)
        assert mgr.purge("a-jobs") == 3
        assert mgr.info("a-jobs").depth == 0 and mgr.ack("a-jobs:0", "g") is False
        assert await mgr.append("a-jobs", msg("new")) == 3
        await mgr.wait_idle()
        assert c.ids[-1] == "a-jobs:3"
        assert mgr.delete("a-jobs") and not mgr.delete("a-jobs")
        assert not handle.active and mgr.get("a-jobs") is None
        with pytest.raises(QueueError):
            mgr.info("a-jobs")
        assert mgr.stats()["queues"] == 1


async def test_pause_stops_deliveries_without_cancelling_and_resume_restarts_them() -> None:
    async with queue_manager() as mgr:
        mgr.declare("jobs")
        c = RecordingConsumer("w1")
        h = mgr.consume("jobs", "g", c)
        h.pause()
        await fill(mgr, "jobs", 3)
        await mgr.wait_idle()
        assert c.payloads == [] and not h.closed and h.paused
        h.resume()
        await mgr.wait_idle()
        assert c.payloads == [b"0", b"1", b"2"]
        h.pause()
        assert mgr.ack("jobs", "g", 0)  # a paused consumer's deliveries still settle
        mgr.cancel(h)  # and a paused one cancels (its pending ones are stolen)
        assert h.closed and mgr.info("jobs").groups[0].pending == 2


async def test_ready_count_per_group() -> None:
    async with queue_manager() as mgr:
        mgr.declare("jobs")
        assert mgr.ready_count("jobs", "g") == 0 and mgr.ready_count("nope") == 0
        await fill(mgr, "jobs", 4)
        assert mgr.ready_count("jobs", "g") == 4 and mgr.ready_count("jobs") == 4
        c = RecordingConsumer("w1")
        mgr.consume("jobs", "g", c, credit=2)
        await mgr.wait_idle()
        assert mgr.ready_count("jobs", "g") == 2  # two are pending on the consumer
        assert mgr.nack("jobs", "g", 0, delay=60)
        assert mgr.ready_count("jobs", "g") == 3  # a waiting redelivery is ready
        assert mgr.ready_count("jobs", "other") == 2  # what no group was given yet


async def test_ack_many_settles_a_batch_like_acks_one_by_one() -> None:
    async with queue_manager() as mgr:
        mgr.declare("jobs")
        mgr.declare("other")
        c = RecordingConsumer("w1")
        mgr.consume("jobs", "g", c, credit=10)
        mgr.consume("other", "g", c, credit=10)
        await fill(mgr, "jobs", 6)
        await fill(mgr, "other", 2)
        await mgr.wait_idle()
        ids = c.ids
        jobs = [i for i in ids if i.startswith("jobs:")]
        other = [i for i in ids if i.startswith("other:")]
        # a prefix of one queue, one of another, a repeat, a malformed and an unknown id
        batch = [*jobs[:4], other[0], jobs[0], "nonsense", "gone:3", "jobs:\u00b2", 7]
        assert mgr.ack_many("g", batch) == 5
        assert mgr.stats()["acked"] == 5
        assert mgr.info("jobs").groups[0].pending == 2
        assert mgr.info("jobs").groups[0].committed == 4  # advanced over the acked prefix
        assert mgr.info("other").groups[0].pending == 1
        assert not mgr.ack(jobs[0], "g")  # already settled
        assert mgr.ack(jobs[4], "g")
        assert mgr.ack_many("nosuchgroup", jobs) == 0
