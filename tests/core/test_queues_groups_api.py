"""The queue manager calls the queue API needs: groups created and deleted without
consumers, truncate, the pending list, and claim (work stealing on demand)."""

from __future__ import annotations

import pytest

from fluxmq_core.message import Message
from fluxmq_core.queues import QueueError
from fluxmq_core.testing.queues import RecordingConsumer, queue_manager


def m(i: int) -> Message:
    return Message(f"$queue/q/k{i}", f"m{i}".encode())


async def test_create_group_earliest_and_latest() -> None:
    async with queue_manager(queues={"q": {"type": "classic"}}) as mgr:
        for i in range(3):
            await mgr.append("q", m(i))
        mgr.create_group("q", "early")
        mgr.create_group("q", "late", start="latest")
        with pytest.raises(QueueError, match="already has"):
            mgr.create_group("q", "early")
        await mgr.append("q", m(3))
        early, late = RecordingConsumer("e"), RecordingConsumer("l")
        mgr.consume("q", "early", early)
        mgr.consume("q", "late", late)
        await mgr.wait_idle()
        assert early.payloads == [b"m0", b"m1", b"m2", b"m3"]
        assert late.payloads == [b"m3"]


async def test_create_group_filter_applies() -> None:
    async with queue_manager(queues={"q": {"type": "classic"}}) as mgr:
        mgr.create_group("q", "g", filter="k1")
        for i in range(3):
            await mgr.append("q", m(i))
        c = RecordingConsumer()
        mgr.consume("q", "g", c, filter="k1")
        await mgr.wait_idle()
        assert c.payloads == [b"m1"]


async def test_delete_group_forgets_it() -> None:
    async with queue_manager(queues={"q": {"type": "classic"}}) as mgr:
        await mgr.append("q", m(0))
        c = RecordingConsumer()
        handle = mgr.consume("q", "g", c)
        await mgr.wait_idle()
        assert mgr.delete_group("q", "g") is True
        assert handle.closed
        assert mgr.delete_group("q", "g") is False
        assert [g.name for g in mgr.info("q").groups] == []


async def test_truncate_drops_below_offset_and_settles_pending() -> None:
    async with queue_manager(queues={"q": {"type": "classic"}}) as mgr:
        for i in range(5):
            await mgr.append("q", m(i))
        c = RecordingConsumer()
        mgr.consume("q", "g", c, credit=1)
        await mgr.wait_idle()
        assert c.payloads == [b"m0"]
        assert mgr.truncate("q", 3) == 3
        assert mgr.info("q").first_offset == 3
        assert mgr.ack("q", "g", 0) is False  # went with the truncation
        await mgr.wait_idle()
        assert c.payloads == [b"m0", b"m3"]
        with pytest.raises(QueueError):
            mgr.truncate("q", -1)


async def test_pending_and_claim_move_idle_deliveries() -> None:
    async with queue_manager(queues={"q": {"type": "classic", "visibility_timeout": 60}}) as mgr:
        clock = mgr.context.clock
        for i in range(3):
            await mgr.append("q", m(i))
        slow = RecordingConsumer("slow")
        slow_handle = mgr.consume("q", "g", slow)
        await mgr.wait_idle()
        assert len(slow.received) == 3
        thief = RecordingConsumer("thief")
        thief_handle = mgr.consume("q", "g", thief)
        pend = mgr.pending("q", "g")
        assert [(o, cid, n) for o, cid, _t, n in pend] == [(i, slow_handle.id, 1) for i in range(3)]
        assert mgr.claim(thief_handle, min_idle=10.0, limit=0) == []  # not idle long enough
        clock.advance(11)
        assert mgr.claim(thief_handle, min_idle=10.0, limit=2) == [(0, 2), (1, 2)]
        assert sorted(thief_handle.inflight) == [0, 1]
        assert sorted(slow_handle.inflight) == [2]
        assert [cid for _o, cid, _t, _n in mgr.pending("q", "g")] == [
            thief_handle.id,
            thief_handle.id,
            slow_handle.id,
        ]
        assert mgr.ack("q", "g", 0) is True
        with pytest.raises(QueueError):
            mgr.pending("q", "nope")


async def test_create_group_on_a_stream_starts_where_asked() -> None:
    async with queue_manager(queues={"s": {"type": "stream"}}) as mgr:
        for i in range(2):
            await mgr.append("s", Message(f"$queue/s/k{i}", f"m{i}".encode()))
        mgr.create_group("s", "early")
        mgr.create_group("s", "late", start="latest")
        await mgr.append("s", Message("$queue/s/k2", b"m2"))
        early, late = RecordingConsumer("e"), RecordingConsumer("l")
        mgr.consume("s", "early", early)
        mgr.consume("s", "late", late)
        await mgr.wait_idle()
        assert early.payloads == [b"m0", b"m1", b"m2"]
        assert late.payloads == [b"m2"]
