"""The broker-wide ``[rate_limit]`` on AMQP 1.0 with Qpid Proton: a transfer over the
per-client publish limit is settled with the rejected outcome
(``amqp:resource-limit-exceeded``), and the link stays usable; a receiver link
attached over the per-client subscribe limit is refused with that condition."""

from __future__ import annotations

from typing import Any

import pytest
from proton import Delivery, Message
from proton.utils import BlockingConnection, LinkDetached, SendException

WAIT = 5.0
SLOW = 0.0001  # no token comes back during the test: only the burst counts


def test_publish_over_the_limit_is_rejected(fluxmq_broker_factory: Any) -> None:
    b = fluxmq_broker_factory(
        plugins=["amqp1"], config={"rate_limit": {"publish_rate": SLOW, "publish_burst": 2}}
    )
    conn = BlockingConnection(f"amqp://127.0.0.1:{b.port('amqp1.bind')}", timeout=WAIT)
    try:
        sender = conn.create_sender("topic/rl/a")
        sender.send(Message(body="1"))
        sender.send(Message(body="2"))
        with pytest.raises(SendException) as info:
            sender.send(Message(body="3"))
        assert info.value.state == Delivery.REJECTED
    finally:
        conn.close()
    assert b.call_soon(lambda: b.context.stats.rate_limited_publishes) == 1


def test_receiver_attach_over_the_subscribe_limit_is_refused(fluxmq_broker_factory: Any) -> None:
    b = fluxmq_broker_factory(
        plugins=["amqp1"], config={"rate_limit": {"subscribe_rate": SLOW, "subscribe_burst": 2}}
    )
    conn = BlockingConnection(f"amqp://127.0.0.1:{b.port('amqp1.bind')}", timeout=WAIT)
    try:
        conn.create_receiver("topic/rl/s1", name="r1")
        conn.create_receiver("$queue/rlq", name="r2")
        with pytest.raises(LinkDetached) as info:
            conn.create_receiver("topic/rl/s3", name="r3")
        cond = info.value.link.remote_condition
        assert cond.name == "amqp:resource-limit-exceeded" and "subscribe" in cond.description
        # sending links are not subscriptions: still allowed, and the connection lives
        conn.create_sender("topic/rl/s1").send(Message(body="ok"))
    finally:
        conn.close()
    assert b.call_soon(lambda: b.context.stats.rate_limited_subscribes) == 1
