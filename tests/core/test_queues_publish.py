"""The one core path of a publish to ``$queue/<name>/...``: ``QueueManager.publish``
(auto-creation as ``[queue_manager] auto_create`` says, typed refusals) and
``BrokerContext.publish`` / ``publish_queued``, which every protocol calls."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import pytest

from fluxmq_core.context import BrokerContext
from fluxmq_core.message import Message
from fluxmq_core.queues import (
    InvalidQueueNameError,
    MessageTooLargeError,
    QueueError,
    QueueFullError,
    QueueManagerConfig,
    QueuesUnavailableError,
    QueueTopicError,
    UnknownQueueError,
)
from fluxmq_core.storage.memory_log import MemoryQueueLog
from fluxmq_core.testing.queues import RecordingConsumer, queue_manager


async def test_an_undeclared_queue_is_ephemeral_by_default_and_logged_once(caplog) -> None:
    qlog = MemoryQueueLog()
    async with queue_manager(queue_log=qlog) as mgr:
        with caplog.at_level(logging.WARNING, logger="fluxmq.queues"):
            for i in range(3):
                assert await mgr.publish(Message("$queue/tmp/k", b"%d" % i)) == i
        assert mgr.get("tmp").type == "ephemeral"
        assert "tmp" not in await qlog.list_queues()
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 1 and "EPHEMERAL" in lines[0] and "[queues.tmp]" in lines[0]
        assert mgr.context.stats.ephemeral_queues_created == 1


async def test_auto_create_durable_makes_a_classic_queue_in_the_log() -> None:
    qlog = MemoryQueueLog()
    async with queue_manager(queue_log=qlog, manager={"auto_create": "durable"}) as mgr:
        await mgr.publish(Message("$queue/jobs/a", b"x"))
        assert mgr.get("jobs").type == "classic" and "jobs" in await qlog.list_queues()
        assert mgr.context.stats.ephemeral_queues_created == 0


async def test_auto_create_none_refuses_but_declared_queues_take_publishes() -> None:
    async with queue_manager(manager={"auto_create": "none"}, queues={"known": {}}) as mgr:
        with pytest.raises(UnknownQueueError, match="declare it"):
            mgr.publish(Message("$queue/other/a", b"x"))
        assert mgr.get("other") is None
        with pytest.raises(UnknownQueueError):
            mgr.auto_declare("other", "a subscription")
        assert await mgr.publish(Message("$queue/known/a", b"x")) == 0


def test_auto_create_takes_three_values() -> None:
    with pytest.raises(ValueError, match="auto_create"):
        QueueManagerConfig(auto_create="sometimes")  # type: ignore[arg-type]


async def test_refusals_are_typed() -> None:
    queues = {"small": {"max_depth": 1}, "tiny": {"max_message_size": 2}}
    async with queue_manager(queues=queues) as mgr:
        await mgr.publish(Message("$queue/small/a", b"1"))
        cases = [
            ("$queue/small/a", b"2", QueueFullError),
            ("$queue/tiny/a", b"123", MessageTooLargeError),
            ("$queue/$bad/a", b"", InvalidQueueNameError),
            ("$queue//a", b"", InvalidQueueNameError),
            ("$queue/small/a/$ack", b"", QueueTopicError),
            ("$queue/small/$nack/a", b"", QueueTopicError),
            ("$dlq/small/a", b"", UnknownQueueError),  # never made by a publish
        ]
        for topic, payload, error in cases:
            with pytest.raises(error) as exc:
                mgr.publish(Message(topic, payload))
            assert isinstance(exc.value, QueueError), topic
        assert mgr.get("$dlq/small") is None


async def test_a_retained_publish_is_queued_without_the_flag() -> None:
    async with queue_manager() as mgr:
        message = Message("$queue/r/k", b"x", 1, True)
        await mgr.publish(message)
        consumer = RecordingConsumer()
        mgr.consume("r", "g", consumer)
        await mgr.wait_idle()
        assert [m.retain for m, _d in consumer.received] == [False]
        assert message.retain  # the publisher's message is not changed


async def test_a_durable_append_resolves_after_the_sync() -> None:
    syncs = []

    class DurableLog(MemoryQueueLog):
        durable = True

        async def sync(self) -> None:
            syncs.append(True)

    async with queue_manager(queue_log=DurableLog(), queues={"d": {}}) as mgr:
        fut = mgr.publish(Message("$queue/d/k", b"x"))
        assert not fut.done() and not syncs
        assert await fut == 0 and syncs == [True]


def make_context(manager) -> tuple[BrokerContext, list[Message]]:
    seen: list[Message] = []
    ctx = BrokerContext(
        config=manager.context.config,
        router=manager.context.router,
        store=None,  # type: ignore[arg-type]
        queue_log=manager.context.queue_log,
        cluster=None,
        stats=manager.context.stats,
        clock=manager.context.clock,
        pm=None,  # type: ignore[arg-type]
        node_id="t",
    )
    ctx.queues = manager
    ctx.events = SimpleNamespace(on_published=True, message_published=seen.append)  # type: ignore[assignment]
    return ctx, seen


async def test_context_publish_sends_queue_topics_to_the_queue_manager(caplog) -> None:
    async with queue_manager(queues={"small": {"max_depth": 1}}) as mgr:
        ctx, seen = make_context(mgr)
        router_sub = RecordingConsumer()
        ctx.router.subscribe(router_sub, "#")  # "#" never matches $-topics anyway
        ctx.router.subscribe(router_sub, "$queue/#")
        assert ctx.publish(Message("$queue/small/a", b"1")) == 1
        with caplog.at_level(logging.WARNING, logger="fluxmq"):
            assert ctx.publish(Message("$queue/small/a", b"2")) == 0  # full: refused
        assert "not queued" in caplog.text and ctx.stats.messages_dropped == 1
        await mgr.wait_idle()
        assert router_sub.received == []  # queue topics never reach the router
        assert mgr.info("small").depth == 1
        assert [m.payload for m in seen] == [b"1"]  # a refused publish is not reported
        assert ctx.publish(Message("plain/topic", b"x")) == 1  # the "#" subscriber
        fut = ctx.publish_queued(Message("$queue/other/a", b"x"))
        assert isinstance(fut, asyncio.Future) and await fut == 0


async def test_a_failed_append_of_a_fire_and_forget_publish_is_counted(caplog) -> None:
    class BrokenLog(MemoryQueueLog):
        durable = True

        async def sync(self) -> None:
            raise OSError("disk gone")

    async with queue_manager(queue_log=BrokenLog(), queues={"d": {}}) as mgr:
        ctx, _seen = make_context(mgr)
        with caplog.at_level(logging.WARNING):
            assert ctx.publish(Message("$queue/d/k", b"x")) == 1
            with pytest.raises(OSError):
                await mgr.publish(Message("$queue/d/k", b"y"))
            await asyncio.sleep(0)
        assert ctx.stats.messages_dropped == 1
        assert "queue append failed: disk gone" in caplog.text


async def test_publish_queued_without_a_queue_manager_is_typed() -> None:
    async with queue_manager() as mgr:
        ctx, _seen = make_context(mgr)
        ctx.queues = None
        with pytest.raises(QueuesUnavailableError):
            ctx.publish_queued(Message("$queue/x/k", b""))
