"""Capture: a queue's ``topics`` filters persist matching ordinary publishes, from
any protocol, with ``x-source-topic``; unit level and in a running broker."""

from __future__ import annotations

from fluxmq_core.message import Message
from fluxmq_core.testing.queues import RecordingConsumer, queue_manager


async def test_capture_appends_matching_publishes_with_source_topic() -> None:
    async with queue_manager(queues={"audit": {"topics": ["sensors/#", "alarms/+"]}}) as mgr:
        router = mgr.context.router
        c = RecordingConsumer()
        mgr.consume("audit", "g", c, filter="sensors/#")
        router.publish(Message("sensors/1/temp", b"21", qos=1, properties={"k": "v"}))
        router.publish(Message("alarms/fire", b"!"))
        router.publish(Message("other/x", b"no"))
        router.publish(Message("$SYS/broker/load", b"no"))
        await mgr.wait_idle()
        assert mgr.info("audit").depth == 2
        [(m, _d)] = c.received  # the group filter applies to the whole captured topic
        assert m.topic == "sensors/1/temp"
        assert m.properties["x-source-topic"] == "sensors/1/temp"
        assert m.properties["k"] == "v" and m.properties["message-id"] == "audit:0"


async def test_capture_follows_redeclaration_and_delete() -> None:
    async with queue_manager() as mgr:
        router = mgr.context.router
        mgr.declare("audit", {"topics": ["a/#"]})
        mgr.declare("audit", {"topics": ["b/#"]}, update=True)
        router.publish(Message("a/1", b"x"))
        router.publish(Message("b/1", b"x"))
        assert mgr.info("audit").depth == 1
        mgr.delete("audit")
        assert router.publish(Message("b/1", b"x")) == 0
        assert router.subscription_count == 0


async def test_capture_failures_are_counted_not_raised() -> None:
    async with queue_manager(queues={"audit": {"topics": ["#"], "max_depth": 1}}) as mgr:
        router = mgr.context.router
        assert router.publish(Message("t", b"1")) == 1
        assert router.publish(Message("t", b"2")) == 1  # full: dropped by capture, counted
        assert mgr.stats()["capture_failures"] == 1 and mgr.info("audit").depth == 1


def test_capture_in_a_running_broker(fluxmq_broker_factory) -> None:
    broker = fluxmq_broker_factory(
        plugins=[], config={"queues": {"audit": {"topics": ["orders/#"], "type": "stream"}}}
    )
    ctx = broker.context

    async def scenario() -> list[tuple[str, bytes, str]]:
        c = RecordingConsumer()
        ctx.queues.consume("audit", "g", c, cursor="first")
        ctx.publish(
            Message("orders/eu/1", b"one", qos=1, origin_protocol="mqtt", origin_client="p")
        )
        ctx.publish(Message("invoices/1", b"no"))
        await ctx.queues.wait_idle()  # bounded
        return [(m.topic, m.payload, m.properties["x-source-topic"]) for m, _ in c.received]

    assert broker.call(scenario()) == [("orders/eu/1", b"one", "orders/eu/1")]
    info = broker.call_soon(ctx.queues.info, "audit")
    assert info.type == "stream" and info.depth == 1
