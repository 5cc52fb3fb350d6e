"""Queues across nodes against a real etcd, brokers in threads (core + this plugin
only): a queue's owner is claimed in etcd; appends from another node are durable on
the owner and refused with the owner's queue error; a consumer on another node gets
deliveries with their queue metadata and settles them on the owner; a consumer's
node leaving the cluster gives its unsettled deliveries to the group's others."""

from __future__ import annotations

from typing import Any

import pytest
from fluxmq_etcd.queues import ClusterQueues, RemoteConsumer, RemoteQueue
from fluxmq_etcd.testing import WAIT, EtcdServer, Sink, node, until

from fluxmq_core.message import Message
from fluxmq_core.queues import QueueError, QueueFullError
from fluxmq_core.testing.broker import BrokerThread


@pytest.fixture
def pair(pair: tuple[BrokerThread, BrokerThread]) -> tuple[BrokerThread, BrokerThread]:
    """The conftest's two nodes, once b sees both."""
    _a, b = pair
    until(lambda: set(b.call_soon(lambda: set(b.context.cluster.members))) == {"a", "b"}, "b")
    return pair


def _owner_seen(b: BrokerThread, name: str) -> Any:
    return b.call_soon(lambda: b.context.cluster.queue_owners.get(name, ("", ""))[0])


def _append(b: BrokerThread, name: str, payload: bytes) -> int:
    async def go() -> int:
        return await b.context.queues.append(name, Message(f"$queue/{name}/k", payload, 1))

    return b.call(go())


def test_appends_consumers_and_settlement_go_to_the_owner(
    pair: tuple[BrokerThread, BrokerThread],
) -> None:
    a, b = pair
    assert isinstance(b.context.queues, ClusterQueues)
    a.call_soon(a.context.queues.declare, "work", {"type": "classic", "max_depth": 3})
    until(lambda: _owner_seen(b, "work") == "a", "b to see a own the queue")
    got = b.call_soon(b.context.queues.get, "work")
    assert isinstance(got, RemoteQueue) and got.owner == "a"
    assert b.call_soon(b.context.cluster.queue_owner, "work") == "a"
    # Appended on a (the offsets are a's), refused with a's error when full.
    assert [_append(b, "work", f"m{i}".encode()) for i in range(3)] == [0, 1, 2]
    with pytest.raises(QueueFullError):
        _append(b, "work", b"too many")
    assert a.call_soon(lambda: a.context.queues.info("work").depth) == 3
    # A consumer on b gets a's deliveries, with the queue metadata.
    sink = Sink("remote-consumer")
    handle = b.call_soon(lambda: b.context.queues.consume("work", "g", sink, credit=10))
    assert isinstance(handle, RemoteConsumer)
    deliveries = [sink.got.get(timeout=WAIT)[0] for _ in range(3)]
    assert [m.payload for m in deliveries] == [b"m0", b"m1", b"m2"]
    props = deliveries[0].properties
    assert props is not None and props["message-id"] == "work:0" and props["group-id"] == "g"
    until(lambda: b.call_soon(lambda: len(handle.inflight)) == 3, "in flight on b")
    # Settled on a: ack one, nack one (redelivered, counted), reject one (dead letter).
    b.call_soon(b.context.queues.ack, "work", "g", 0)
    b.call_soon(lambda: b.context.queues.nack("work", "g", 1, delay=0))
    again = sink.got.get(timeout=WAIT)[0]
    assert again.payload == b"m1" and again.properties["delivery-count"] == 2
    b.call_soon(b.context.queues.reject, "work", "g", 2)
    b.call_soon(b.context.queues.ack, "work:1", "g")

    def pending_on_a() -> int:
        return int(a.call_soon(lambda: a.context.queues.info("work").groups[0].pending))

    until(lambda: pending_on_a() == 0, "every delivery settled on a")
    assert a.call_soon(lambda: a.context.queues.get("$dlq/work")) is not None
    # The dead-letter queue is claimed by its owner too: b reaches it there.
    until(lambda: _owner_seen(b, "$dlq/work") == "a", "b to see a own the dead letters")
    # Declaring it on b with settings is refused (it lives on a).
    with pytest.raises(QueueError, match="lives on node a"):
        b.call_soon(b.context.queues.declare, "work", {"type": "classic"})
    b.call_soon(b.context.queues.cancel, handle)
    until(
        lambda: a.call_soon(lambda: len(a.context.cluster._cq.proxies)) == 0,
        "the consumer cancelled on a",
    )


def test_a_consumer_node_that_leaves_gives_its_deliveries_back(etcd: EtcdServer) -> None:
    a = node(etcd, "a")
    b = node(etcd, "b")
    try:
        until(lambda: set(a.call_soon(lambda: set(a.context.cluster.members))) == {"a", "b"}, "a")
        a.call_soon(a.context.queues.declare, "jobs", {"type": "classic"})
        until(lambda: _owner_seen(b, "jobs") == "a", "b to see a own the queue")
        remote = Sink("on-b")
        b.call_soon(lambda: b.context.queues.consume("jobs", "g", remote, credit=1))
        until(
            lambda: a.call_soon(lambda: len(a.context.cluster._cq.proxies)) == 1,
            "b's consumer registered on a",
        )
        _append(a, "jobs", b"job")
        assert remote.got.get(timeout=WAIT)[0].payload == b"job"  # and never settled
        local = Sink("on-a")
        a.call_soon(lambda: a.context.queues.consume("jobs", "g", local, credit=1))
        b.close()  # b leaves: its consumer is cancelled on a, the delivery goes to a's
        message = local.got.get(timeout=WAIT)[0]
        assert message.payload == b"job"
    finally:
        b.close()
        a.close()


def test_a_publish_to_a_queue_on_a_node_that_is_down_is_refused(
    pair: tuple[BrokerThread, BrokerThread],
) -> None:
    a, b = pair
    a.call_soon(a.context.queues.declare, "lonely", {"type": "classic"})
    until(lambda: _owner_seen(b, "lonely") == "a", "b to see a own the queue")
    a.close()
    until(lambda: b.call_soon(lambda: "a" not in b.context.cluster.members), "a gone")

    async def publish() -> None:
        b.context.queues.publish(Message("$queue/lonely/x", b"x", 1))

    with pytest.raises(QueueError, match="lives on node a, which is down"):
        b.call(publish())
