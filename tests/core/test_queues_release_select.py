"""Classic queues: a release that does not count a delivery, redelivery steered
away from a consumer (undeliverable here), and per-consumer predicates (selectors)
that leave the messages they decline to the group's other consumers, on classic,
priority and stream queues."""

from __future__ import annotations

from fluxmq_core.message import Message
from fluxmq_core.testing.queues import RecordingConsumer, queue_manager


def msg(i: int | str, color: str = "") -> Message:
    props = {"color": color} if color else {}
    return Message("$queue/jobs/a", str(i).encode(), qos=1, properties=props)


def counts(c: RecordingConsumer) -> list[int]:
    return [m.properties["delivery-count"] for m, _d in c.received]


def is_red(m: Message) -> bool:
    return (m.properties or {}).get("color") == "red"


async def test_release_requeues_without_counting_a_delivery() -> None:
    async with queue_manager(queues={"jobs": {"max_deliveries": 2}}) as mgr:
        c = RecordingConsumer()
        mgr.consume("jobs", "g", c)
        await mgr.append("jobs", msg("x"))
        await mgr.wait_idle()
        for _ in range(4):  # far beyond max_deliveries: releases are not attempts
            assert mgr.nack("jobs:0", "g", delay=0, count=False)
            await mgr.wait_idle()
        assert counts(c) == [1, 1, 1, 1, 1]
        # a counted nack does count (and the dead-letter limit applies again)
        assert mgr.nack("jobs:0", "g", delay=0)
        await mgr.wait_idle()
        assert counts(c)[-1] == 2
        assert mgr.nack("jobs:0", "g", delay=0)
        await mgr.wait_idle()
        assert len(c.received) == 6  # the second delivery used the limit up
        assert mgr.info("$dlq/jobs").depth == 1


async def test_elsewhere_redelivers_to_another_consumer_while_one_exists() -> None:
    async with queue_manager() as mgr:
        mgr.declare("jobs")
        a, b = RecordingConsumer("a"), RecordingConsumer("b")
        ha = mgr.consume("jobs", "g", a, credit=1)
        await mgr.append("jobs", msg("x"))
        await mgr.wait_idle()
        assert a.ids == ["jobs:0"]
        hb = mgr.consume("jobs", "g", b, credit=1)
        await mgr.append("jobs", msg("y"))  # a is full: to b, which is then full too
        await mgr.wait_idle()
        assert b.ids == ["jobs:1"]
        assert mgr.nack("jobs:0", "g", delay=0, elsewhere=True)
        await mgr.wait_idle()
        assert a.ids == ["jobs:0"]  # a has credit again but must not get it back
        assert mgr.ack("jobs:1", "g")
        await mgr.wait_idle()
        assert b.ids == ["jobs:1", "jobs:0"] and counts(b) == [1, 2]
        # b gives it back too: nobody else would take it, so one of them gets it
        assert mgr.nack("jobs:0", "g", delay=0, elsewhere=True)
        await mgr.wait_idle()
        assert len(a.received) + len(b.received) == 4
        mgr.cancel(hb)
        await mgr.wait_idle()
        assert ha.inflight == {0}  # with b gone, the consumer left has it


async def test_predicate_gives_each_consumer_only_what_it_accepts() -> None:
    async with queue_manager() as mgr:
        mgr.declare("jobs")
        red, anything = RecordingConsumer("red"), RecordingConsumer("any")
        mgr.consume("jobs", "g", red, predicate=is_red)
        for i, color in enumerate(["blue", "red", "green", "red"]):
            await mgr.append("jobs", msg(i, color))
        await mgr.wait_idle()
        assert red.payloads == [b"1", b"3"]  # the others stay in the queue
        assert mgr.ready_count("jobs", "g") == 2
        mgr.consume("jobs", "g", anything)
        await mgr.wait_idle()
        assert anything.payloads == [b"0", b"2"]
        assert counts(anything) == [1, 1]  # parked messages were never delivered


async def test_a_busy_selective_consumer_does_not_block_the_others() -> None:
    async with queue_manager() as mgr:
        mgr.declare("jobs")
        red, rest = RecordingConsumer("red"), RecordingConsumer("rest")
        hr = mgr.consume("jobs", "g", red, credit=1, predicate=is_red)
        mgr.consume("jobs", "g", rest, predicate=lambda m: not is_red(m))
        for i, color in enumerate(["red", "red", "blue", "red", "blue"]):
            await mgr.append("jobs", msg(i, color))
        await mgr.wait_idle()
        assert red.payloads == [b"0"] and rest.payloads == [b"2", b"4"]
        mgr.ack(red.ids[0], "g")
        await mgr.wait_idle()
        mgr.ack(red.ids[1], "g")
        await mgr.wait_idle()
        assert red.payloads == [b"0", b"1", b"3"]  # in order, from the parked ones
        assert hr.inflight == {3}


async def test_a_failing_predicate_declines() -> None:
    async with queue_manager() as mgr:
        mgr.declare("jobs")
        broken, other = RecordingConsumer("broken"), RecordingConsumer("other")

        def boom(m: Message) -> bool:
            raise RuntimeError("selector bug")

        mgr.consume("jobs", "g", broken, predicate=boom)
        mgr.consume("jobs", "g", other, credit=0)
        await mgr.append("jobs", msg(1))
        await mgr.wait_idle()
        assert broken.received == [] and other.payloads == [b"1"]


def pmsg(i: int, color: str, priority: int, queue: str = "prio") -> Message:
    props = {"color": color, "priority": priority}
    return Message(f"$queue/{queue}/a", str(i).encode(), qos=1, properties=props)


async def test_predicates_on_a_priority_queue_keep_priority_order() -> None:
    async with queue_manager(queues={"prio": {"max_priority": 5}}) as mgr:
        red, anything = RecordingConsumer("red"), RecordingConsumer("any")
        mgr.consume("prio", "g", red, predicate=is_red)
        for i, (color, prio) in enumerate([("blue", 1), ("red", 1), ("red", 5), ("blue", 5)]):
            await mgr.append("prio", pmsg(i, color, prio))
        await mgr.wait_idle()
        assert red.payloads == [b"2", b"1"]  # higher priority first, blues stay queued
        mgr.consume("prio", "g", anything)
        await mgr.wait_idle()
        assert anything.payloads == [b"3", b"0"]  # the parked ones, by priority
        assert counts(anything) == [1, 1]


async def test_a_redelivery_steered_away_does_not_stall_a_priority_queue() -> None:
    async with queue_manager(queues={"prio": {"max_priority": 5}}) as mgr:
        a, b = RecordingConsumer("a"), RecordingConsumer("b")
        mgr.consume("prio", "g", a, credit=2)
        mgr.consume("prio", "g", b, credit=1)
        await mgr.append("prio", pmsg(0, "x", 1))
        await mgr.append("prio", pmsg(1, "y", 1))
        await mgr.wait_idle()
        assert a.ids == ["prio:0"] and b.ids == ["prio:1"]
        assert mgr.nack("prio:0", "g", delay=0, elsewhere=True)  # b is full: it waits
        await mgr.append("prio", pmsg(2, "z", 1))
        await mgr.wait_idle()
        assert a.ids == ["prio:0", "prio:2"]  # a goes on with new messages meanwhile
        assert mgr.ack("prio:1", "g")
        await mgr.wait_idle()
        assert b.ids == ["prio:1", "prio:0"]


async def test_predicates_on_a_stream_split_and_pass_over() -> None:
    async with queue_manager(queues={"events": {"type": "stream"}}) as mgr:
        red, blue = RecordingConsumer("red"), RecordingConsumer("blue")
        mgr.consume("events", "g", red, predicate=is_red, cursor="earliest", auto_commit=True)
        mgr.consume(
            "events",
            "g",
            blue,
            predicate=lambda m: (m.properties or {}).get("color") == "blue",
            auto_commit=True,
        )
        colors = ["red", "blue", "green", "red", "blue"]
        for i, color in enumerate(colors):
            await mgr.append("events", pmsg(i, color, 0, "events"))
        await mgr.wait_idle()
        assert red.payloads == [b"0", b"3"] and blue.payloads == [b"1", b"4"]
        # the green one was passed over by this group only: a new group reads it
        everything = RecordingConsumer("all")
        mgr.consume("events", "g2", everything, cursor="earliest", auto_commit=True)
        await mgr.wait_idle()
        assert everything.payloads == [b"0", b"1", b"2", b"3", b"4"]


async def test_a_stream_group_waits_for_the_consumer_that_selects_a_record() -> None:
    async with queue_manager(queues={"events": {"type": "stream"}}) as mgr:
        red, anything = RecordingConsumer("red"), RecordingConsumer("any")
        hr = mgr.consume("events", "g", red, credit=1, predicate=is_red, cursor="earliest")
        mgr.consume("events", "g", anything, credit=1, predicate=lambda m: not is_red(m))
        for i, color in enumerate(["red", "red", "blue"]):
            await mgr.append("events", pmsg(i, color, 0, "events"))
        await mgr.wait_idle()
        # red is full with record 0; record 1 is only red's: the group's one read
        # position waits there
        assert red.payloads == [b"0"] and anything.payloads == []
        assert mgr.commit("events", "g", 0)
        await mgr.wait_idle()
        assert red.payloads == [b"0", b"1"] and anything.payloads == [b"2"]
        assert hr.inflight == {1}
