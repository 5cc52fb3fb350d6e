"""Stream queues: cursors (first, last, offset, timestamp), explicit and interval
commits, resuming a group from its committed offset, credit."""

from __future__ import annotations

import pytest

from fluxmq_core.message import Message
from fluxmq_core.queues import QueueError, parse_cursor
from fluxmq_core.storage.memory_log import MemoryQueueLog
from fluxmq_core.testing.queues import RecordingConsumer, queue_manager

STREAM = {"events": {"type": "stream"}}


async def publish(mgr, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        # timestamps on the broker clock: one message per second
        await mgr.append(
            "events", Message("$queue/events/e", str(i).encode(), timestamp=mgr.clock())
        )
        mgr.clock.advance(1.0)


def offsets(c: RecordingConsumer) -> list[int]:
    return [m.properties["offset"] for m, _ in c.received]


@pytest.mark.parametrize(
    "cursor,expected",
    [("first", [0, 1, 2, 3, 4]), ("last", []), (3, [3, 4]), ("offset:1", [1, 2, 3, 4])],
)
async def test_cursor_positions(cursor, expected) -> None:
    async with queue_manager(queues=STREAM) as mgr:
        await publish(mgr, 5)
        c = RecordingConsumer()
        mgr.consume("events", "g", c, cursor=cursor)
        await mgr.wait_idle()
        assert offsets(c) == expected
        await publish(mgr, 1, 5)
        await mgr.wait_idle()
        assert offsets(c) == expected + [5]


async def test_timestamp_cursor_uses_offset_for_time() -> None:
    async with queue_manager(queues=STREAM) as mgr:
        t0 = mgr.clock()
        await publish(mgr, 5)
        c = RecordingConsumer()
        mgr.consume("events", "g", c, cursor=t0 + 2.5)
        await mgr.wait_idle()
        assert offsets(c) == [3, 4]
        m = c.received[0][0]
        assert m.properties["x-stream-offset"] == 3 and m.properties["x-stream-timestamp"] == t0 + 3
        assert m.properties["message-id"] == "events:3" and m.properties["delivery-count"] == 1
        c2 = RecordingConsumer()
        mgr.consume("events", "g2", c2, cursor=f"timestamp:{t0 + 1}")
        await mgr.wait_idle()
        assert offsets(c2) == [1, 2, 3, 4]


async def test_commit_and_resume_from_committed_offset() -> None:
    qlog = MemoryQueueLog()
    async with queue_manager(queue_log=qlog, queues=STREAM) as mgr:
        await publish(mgr, 5)
        c = RecordingConsumer()
        h = mgr.consume("events", "g", c, cursor="first")
        await mgr.wait_idle()
        assert mgr.commit("events:2", "g")
        assert await qlog.committed_offset("events", "g") == 3
        mgr.commit("events", "g", 1)  # commits never go back
        assert await qlog.committed_offset("events", "g") == 3
        mgr.cancel(h)
        # a new consumer of the idle group resumes at the committed offset
        c2 = RecordingConsumer()
        h2 = mgr.consume("events", "g", c2)
        await mgr.wait_idle()
        assert offsets(c2) == [3, 4]
        assert mgr.ack("events:3", "g")  # ack on a stream is a commit
        mgr.cancel(h2)
    async with queue_manager(queue_log=qlog, queues=STREAM) as mgr:
        c3 = RecordingConsumer()
        mgr.consume("events", "g", c3)
        await mgr.wait_idle()
        assert offsets(c3) == [4]
        # a group that never committed starts at the end
        fresh = RecordingConsumer()
        mgr.consume("events", "new", fresh)
        await mgr.wait_idle()
        assert offsets(fresh) == []


async def test_credit_is_freed_by_commit_nack_and_reject() -> None:
    async with queue_manager(queues=STREAM) as mgr:
        await publish(mgr, 6)
        c = RecordingConsumer()
        mgr.consume("events", "g", c, cursor="first", credit=2)
        await mgr.wait_idle()
        assert offsets(c) == [0, 1]
        mgr.commit("events:1", "g")
        await mgr.wait_idle()
        assert offsets(c) == [0, 1, 2, 3]
        assert mgr.nack("events:2", "g")  # no requeue on streams: frees credit only
        assert mgr.reject("events:3", "g")
        await mgr.wait_idle()
        assert offsets(c) == [0, 1, 2, 3, 4, 5]
        assert mgr.info("events").groups[0].committed == 2


async def test_consumers_of_a_stream_group_share_and_join_a_busy_group() -> None:
    async with queue_manager(queues=STREAM) as mgr:
        a, b = RecordingConsumer("a"), RecordingConsumer("b")
        mgr.consume("events", "g", a, cursor="first", auto_commit=True)
        await publish(mgr, 2)
        await mgr.wait_idle()
        mgr.consume("events", "g", b, auto_commit=True)  # no cursor: reads along
        await publish(mgr, 4, 2)
        await mgr.wait_idle()
        assert sorted(offsets(a) + offsets(b)) == [0, 1, 2, 3, 4, 5]
        assert offsets(b) and not set(offsets(a)) & set(offsets(b))


async def test_auto_commit_on_the_interval() -> None:
    async with queue_manager(queues=STREAM, manager={"auto_commit_interval": 5.0}) as mgr:
        c = RecordingConsumer()
        mgr.consume("events", "g", c, cursor="first", auto_commit=True, credit=1)
        await publish(mgr, 3)  # advances the clock 3s
        await mgr.wait_idle()
        assert offsets(c) == [0, 1, 2]  # auto-commit consumers hold no credit
        await mgr.sweep()
        assert mgr.info("events").groups[0].committed is None
        mgr.clock.advance(2.0)
        await mgr.sweep()
        assert mgr.info("events").groups[0].committed == 3


async def test_auto_commit_interval_zero_commits_every_batch() -> None:
    async with queue_manager(queues=STREAM, manager={"auto_commit_interval": 0.0}) as mgr:
        c = RecordingConsumer()
        mgr.consume("events", "g", c, cursor="first", auto_commit=True)
        await publish(mgr, 2)
        await mgr.wait_idle()
        assert mgr.info("events").groups[0].committed == 2


async def test_stream_keeps_consumed_messages_and_filters() -> None:
    async with queue_manager(queues=STREAM) as mgr:
        c = RecordingConsumer()
        mgr.consume("events", "g", c, cursor="first", filter="x/#", auto_commit=True)
        await mgr.append("events", Message("$queue/events/x/1", b"a"))
        await mgr.append("events", Message("$queue/events/y", b"b"))
        await mgr.wait_idle()
        await mgr.sweep()
        assert c.payloads == [b"a"] and mgr.info("events").depth == 2


def test_parse_cursor() -> None:
    assert parse_cursor(None) == ("resume", None)
    assert parse_cursor("earliest") == ("first", None)
    assert parse_cursor("next") == ("last", None)
    assert parse_cursor(7) == ("offset", 7)
    assert parse_cursor(1.5) == ("timestamp", 1.5)
    for bad in ("middle", -1, True, "offset:x"):
        with pytest.raises(QueueError):
            parse_cursor(bad)
