"""Requeued messages go back to their original position, as in RabbitMQ, with pika
and kombu: after basic.reject / basic.nack(requeue), basic.recover, a channel or a
connection closing with unacknowledged deliveries and a cancelled consumer; and in a
priority queue back within their own priority (never ahead of a higher one)."""

from __future__ import annotations

import time
from typing import Any

import kombu
import pika
import pytest
from fluxmq_amqp091.testing import WAIT, name, settle


def fill(ch: Any, q: str, bodies: list[bytes], priorities: list[int] | None = None) -> None:
    for i, body in enumerate(bodies):
        props = pika.BasicProperties(priority=priorities[i]) if priorities else None
        ch.basic_publish("", q, body, props)


def drain(ch: Any, q: str) -> list[tuple[bytes, bool]]:
    """Everything ready in ``q`` by basic.get (acked): (body, redelivered) in order."""
    out = []
    while True:
        m, _p, body = ch.basic_get(q)
        if m is None:
            return out
        out.append((body, m.redelivered))
        ch.basic_ack(m.delivery_tag)


def get_unacked(ch: Any, q: str, n: int) -> list[Any]:
    got = []
    for _ in range(n):
        m, _p, _b = ch.basic_get(q)
        assert m is not None
        got.append(m)
    return got


ABC = [b"a", b"b", b"c"]
IN_ORDER = [(b"a", True), (b"b", True), (b"c", False)]


def test_rejects_in_reverse_order_requeue_in_original_order(connect):
    ch = connect().channel()
    q = ch.queue_declare(name()).method.queue
    fill(ch, q, ABC)
    a, b = get_unacked(ch, q, 2)
    ch.basic_reject(b.delivery_tag, requeue=True)
    ch.basic_nack(a.delivery_tag, requeue=True)
    assert drain(ch, q) == IN_ORDER


def test_recover_requeues_in_original_order(connect):
    ch = connect().channel()
    q = ch.queue_declare(name()).method.queue
    fill(ch, q, ABC)
    get_unacked(ch, q, 2)
    ch.basic_recover(requeue=True)
    assert drain(ch, q) == IN_ORDER


def test_channel_close_requeues_in_original_order(connect):
    conn = connect()
    ch = conn.channel()
    q = ch.queue_declare(name()).method.queue
    fill(ch, q, ABC)
    get_unacked(ch, q, 2)
    ch.close()
    assert drain(conn.channel(), q) == IN_ORDER


def test_connection_close_requeues_in_original_order(connect):
    setup = connect().channel()
    q = setup.queue_declare(name()).method.queue
    fill(setup, q, ABC)
    conn = connect()
    get_unacked(conn.channel(), q, 2)
    conn.close()
    assert drain(setup, q) == IN_ORDER


def test_cancelled_consumer_deliveries_requeue_in_original_order(connect, amqp_broker):
    conn = connect()
    ch = conn.channel()
    q = ch.queue_declare(name()).method.queue
    fill(ch, q, ABC)
    ch.basic_qos(prefetch_count=2)
    got: list[Any] = []
    tag = ch.basic_consume(q, lambda c, m, p, b: got.append(m))
    settle(amqp_broker, ch)
    assert len(got) == 2
    ch.basic_cancel(tag)
    # still unacked on the channel after the cancel (RabbitMQ); given back newest first
    ch.basic_nack(got[1].delivery_tag, requeue=True)
    ch.basic_nack(got[0].delivery_tag, requeue=True)
    assert drain(ch, q) == IN_ORDER


def test_consumers_on_two_channels_closed_newest_first(connect, amqp_broker):
    conn = connect()
    ch1, ch2 = conn.channel(), conn.channel()
    q = ch1.queue_declare(name()).method.queue
    fill(ch1, q, ABC)
    for ch in (ch1, ch2):
        ch.basic_qos(prefetch_count=1)
        ch.basic_consume(q, lambda c, m, p, b: None)
        settle(amqp_broker, ch)  # ch1 holds a, then ch2 holds b
    ch2.close()
    ch1.close()
    assert drain(conn.channel(), q) == IN_ORDER


def test_priority_requeue_stays_within_its_priority(connect):
    ch = connect().channel()
    q = ch.queue_declare(name(), arguments={"x-max-priority": 5}).method.queue
    fill(ch, q, [b"low"], [1])
    (low,) = get_unacked(ch, q, 1)
    fill(ch, q, [b"high", b"low2"], [5, 1])
    ch.basic_reject(low.delivery_tag, requeue=True)
    # the later high-priority message first; the requeued one back before low2
    assert drain(ch, q) == [(b"high", False), (b"low", True), (b"low2", False)]


def test_priority_requeue_of_high_goes_before_waiting_lower(connect):
    ch = connect().channel()
    q = ch.queue_declare(name(), arguments={"x-max-priority": 9}).method.queue
    fill(ch, q, [b"p1", b"p9", b"p5", b"p9b"], [1, 9, 5, 9])
    first, second = get_unacked(ch, q, 2)
    ch.close()  # both back, in their own order, ahead of 5 and 1
    ch = ch.connection.channel()
    assert [b for b, _r in drain(ch, q)] == [b"p9", b"p9b", b"p5", b"p1"]
    assert (first.delivery_tag, second.delivery_tag) == (1, 2)


# --- kombu (py-amqp) -------------------------------------------------------------------


@pytest.fixture
def kconn(amqp_broker):
    url = f"amqp://guest:guest@127.0.0.1:{amqp_broker.port('amqp091.bind')}//"
    with kombu.Connection(url, connect_timeout=WAIT, transport_options={"max_retries": 1}) as c:
        yield c


def _kombu_get_all(conn: Any, queue: kombu.Queue) -> list[tuple[str, bool]]:
    out = []
    bound = queue(conn.channel())
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        msg = bound.get(no_ack=False)
        if msg is None:
            break
        out.append((msg.body, bool(msg.delivery_info.get("redelivered"))))
        msg.ack()
    return out


def test_kombu_requeue_in_reverse_order_keeps_order(kconn):
    queue = kombu.Queue(name("k"), routing_key="k")
    producer = kconn.Producer()
    bound = queue(kconn.channel())
    bound.declare()
    for body in ("a", "b", "c"):
        producer.publish(body, routing_key=queue.name, serializer="raw")
    a = bound.get(no_ack=False)
    b = bound.get(no_ack=False)
    assert (a.body, b.body) == ("a", "b")  # raw text bodies come back as str
    b.requeue()
    a.requeue()
    assert _kombu_get_all(kconn, queue) == [("a", True), ("b", True), ("c", False)]


def test_kombu_channel_close_requeues_in_order(kconn):
    queue = kombu.Queue(name("k"), routing_key="k")
    channel = kconn.channel()
    bound = queue(channel)
    bound.declare()
    producer = kconn.Producer()
    for body in ("a", "b", "c"):
        producer.publish(body, routing_key=queue.name, serializer="raw")
    assert [bound.get(no_ack=False).body for _ in range(2)] == ["a", "b"]
    channel.close()
    assert _kombu_get_all(kconn, queue) == [("a", True), ("b", True), ("c", False)]


def test_kombu_priority_requeue(kconn):
    queue = kombu.Queue(name("k"), routing_key="k", max_priority=5)
    bound = queue(kconn.channel())
    bound.declare()
    producer = kconn.Producer()
    producer.publish("low", routing_key=queue.name, priority=1, serializer="raw")
    low = bound.get(no_ack=False)
    assert low.body == "low"
    producer.publish("high", routing_key=queue.name, priority=5, serializer="raw")
    producer.publish("low2", routing_key=queue.name, priority=1, serializer="raw")
    low.requeue()
    assert _kombu_get_all(kconn, queue) == [("high", False), ("low", True), ("low2", False)]
