"""Queues across nodes through the faces other than MQTT: an AMQP 1.0 receiver
(Qpid Proton) on node b consuming a queue owned by node a, and the queue API's gRPC
client on node b (append, streamed consume, ack) against a queue owned by node a.
Two broker processes on a real etcd (Debian ``etcd-server``); skipped, saying why,
when etcd or a plugin is missing."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from tests.e2e._cluster import (
    WAIT,
    Bound,
    api,
    client,
    close,
    need_etcd,
    start_nodes,
    stop_nodes,
    until,
)

etcd_testing = pytest.importorskip("fluxmq_etcd.testing", reason="fluxmq-etcd is not installed")
pytest.importorskip("fluxmq_amqp1", reason="fluxmq-amqp1 is not installed")
pytest.importorskip("fluxmq_queue_api", reason="fluxmq-queue-api is not installed")
pytest.importorskip("fluxmq_mqtt", reason="fluxmq-mqtt is not installed")
from fluxmq_queue_api.client import QueueAPIError, QueueClient  # noqa: E402
from proton import Message as AmqpMessage  # noqa: E402
from proton.utils import BlockingConnection  # noqa: E402


@pytest.fixture(scope="module")
def nodes() -> Iterator[dict[str, Bound]]:
    need_etcd()
    with etcd_testing.EtcdServer() as etcd:
        procs = start_nodes(
            etcd, ("a", "b"), plugins="mqtt,amqp1,queue_api,etcd", etcd_timeout=None
        )
        try:
            yield {n: bound for n, (_proc, bound) in procs.items()}
        finally:
            stop_nodes(procs)


def queue_on_a(nodes: dict[str, Bound], prefix: str) -> str:
    """A new queue created on node a (its owner) by an MQTT publish, known to b."""
    name = prefix + uuid.uuid4().hex[:6]
    seed = client(nodes["a"])
    seed.publish(f"$queue/{name}/seed", b"seed", 1).wait_for_publish(WAIT)
    close([seed])
    until(lambda: api(nodes["b"], "/api/v1/cluster")["queue_owners"].get(name) == "a")
    return name


def body_of(m: Any) -> bytes:
    """A copy of a Proton message's body (a view into the message's memory: copied
    while the message is alive)."""
    return bytes(m.body)


def pending_on_owner(nodes: dict[str, Bound], name: str) -> int:
    info = api(nodes["a"], f"/api/v1/queues/{name}")
    return sum(g["pending"] for g in info["groups"])


def test_an_amqp1_receiver_on_another_node_consumes_the_queue(nodes: dict[str, Bound]) -> None:
    """A Proton receiver on node b (link credit 3) gets every message published to
    a queue owned by node a, 12 of them (so the credit is given again several
    times); accepting settles them on a; a released one comes again."""
    name = queue_on_a(nodes, "amqp1q")
    host, port = nodes["b"]["amqp1.bind"]
    conn = BlockingConnection(f"amqp://{host}:{port}", timeout=WAIT)
    try:
        receiver = conn.create_receiver(f"$queue/{name}", credit=3)
        until(lambda: api(nodes["a"], "/api/v1/cluster")["queues"]["consumers_for_other_nodes"])
        sender = conn.create_sender(f"$queue/{name}/work")  # on node b too: forwarded
        sent = [f"m{i}".encode() for i in range(12)]
        for body in sent:
            sender.send(AmqpMessage(body=body, properties={"i": body.decode()}))
        got: list[bytes] = []
        released = False
        deadline = time.monotonic() + WAIT
        while set(sent) - set(got) and time.monotonic() < deadline:
            m = receiver.receive(timeout=WAIT)
            body = bytes(m.body)
            if body == b"m5" and not released:
                released = True
                receiver.release()  # back to the queue on node a: comes again
                continue
            got.append(body)
            receiver.accept()
        assert released
        assert set(sent) <= set(got)
        assert got.count(b"m5") == 1

        # The seed went to the same group (default): settled too.
        def settled() -> bool:
            conn.container.do_work(0.05)  # Proton writes the last disposition here
            return pending_on_owner(nodes, name) == 0

        until(settled)
        status = api(nodes["b"], "/api/v1/cluster")["queues"]
        assert status["forwarded_appends"] >= 12 and status["remote_consumers"] == 1
    finally:
        conn.close()
    until(lambda: api(nodes["a"], "/api/v1/cluster")["queues"]["consumers_for_other_nodes"] == 0)


def test_an_amqp1_receiver_s_link_credit_reaches_the_owner(nodes: dict[str, Bound]) -> None:
    """The link credit of a receiver on node b governs how many unsettled
    deliveries node a (the owner) hands it: credit 3 without settling gets exactly
    3 of 6 messages (the owner keeps 3 pending and the rest ready); 3 more credit
    gets the other 3; settling them leaves nothing pending."""
    name = queue_on_a(nodes, "creditq")
    host, port = nodes["b"]["amqp1.bind"]
    conn = BlockingConnection(f"amqp://{host}:{port}", timeout=WAIT)
    try:
        # No prefetch: the link has exactly the credit given here.
        receiver = conn.create_receiver(f"$queue/{name}/#", credit=0, name="credit-test")
        until(lambda: api(nodes["a"], "/api/v1/cluster")["queues"]["consumers_for_other_nodes"])
        sender = conn.create_sender(f"$queue/{name}/work")
        for i in range(6):
            sender.send(AmqpMessage(body=b"c%d" % i))  # returns once appended on a
        receiver.link.flow(3)
        first = [body_of(receiver.receive(timeout=WAIT)) for _ in range(3)]
        # The seed went to this group too, first: the log order.
        assert first == [b"seed", b"c0", b"c1"]

        def groups() -> dict[str, Any]:
            info = api(nodes["a"], f"/api/v1/queues/{name}")
            return {g["name"]: g for g in info["groups"]}

        # Three delivered and unsettled: the credit of 3 is spent, the rest waits.
        assert groups()["default"]["pending"] == 3
        receiver.link.flow(3)
        more = [body_of(receiver.receive(timeout=WAIT)) for _ in range(3)]
        assert more == [b"c2", b"c3", b"c4"]
        assert groups()["default"]["pending"] == 6
        assert api(nodes["b"], "/api/v1/cluster")["queues"]["flow_updates"] >= 2
        for _ in range(6):
            receiver.accept()  # settles the oldest unsettled delivery

        def settled() -> bool:
            conn.container.do_work(0.05)
            return groups()["default"]["pending"] == 0

        until(settled)
        receiver.link.flow(1)
        assert body_of(receiver.receive(timeout=WAIT)) == b"c5"
        receiver.accept()
    finally:
        conn.close()


def test_the_queue_api_on_a_node_that_does_not_own_the_queue(nodes: dict[str, Bound]) -> None:
    """The gRPC queue API of node b, for a queue owned by node a: an append is
    forwarded (answered with the offset on a), a streamed consumer on b receives,
    and its acks settle on a; a call that needs the queue's log (GetQueue) says
    which node to ask."""
    name = queue_on_a(nodes, "apiq")
    host, port = nodes["b"]["api.grpc"]

    async def run() -> list[bytes]:
        async with QueueClient(f"{host}:{port}") as qc:
            got: list[bytes] = []
            stream = qc.consume_queue(name, "billing", "worker-1")

            async def consume() -> None:
                async for m in stream:
                    got.append(m.value)
                    await qc.ack(name, "billing", "worker-1", [m.offset])
                    if b"v4" in got:
                        return

            task = asyncio.create_task(consume())
            await asyncio.to_thread(
                until,
                lambda: api(nodes["a"], "/api/v1/cluster")["queues"]["consumers_for_other_nodes"],
            )
            offsets = []
            for i in range(5):
                r = await qc.append(name, b"v%d" % i, key="eu")
                offsets.append(r.offset)
            assert offsets == sorted(offsets) and len(set(offsets)) == 5
            await asyncio.wait_for(task, WAIT)
            await stream.aclose()  # ends the call: the consumer leaves, on a too

            def billing_gone() -> bool:
                groups = api(nodes["a"], f"/api/v1/queues/{name}")["groups"]
                return all(g["consumers"] == 0 for g in groups if g["name"] == "billing")

            await asyncio.to_thread(until, billing_gone)
            # A pull consumer joining on b: registered on the owner too.
            joined = await qc.join_group(name, "pullers", "p-1")
            assert [c.consumer_id for c in joined.consumers] == ["p-1"]
            await qc.append(name, b"pulled", key="eu")
            pulled: list[bytes] = []
            deadline = time.monotonic() + WAIT
            while b"pulled" not in pulled and time.monotonic() < deadline:
                batch = await qc.consume(name, "pullers", "p-1", max_messages=10, wait=1.0)
                pulled += [m.value for m in batch]
                if batch:
                    await qc.ack(name, "pullers", "p-1", [m.offset for m in batch])
            assert b"pulled" in pulled
            # What needs the queue's log is answered by its owner only: said clearly.
            with pytest.raises(QueueAPIError) as info:
                await qc.get_queue(name)
            assert info.value.code is grpc.StatusCode.FAILED_PRECONDITION
            assert "lives on node a" in info.value.message
            return got

    got = asyncio.run(run())
    assert [g for g in got if g != b"seed"] == [b"v%d" % i for i in range(5)]
    until(lambda: pending_on_owner(nodes, name) == 0)
