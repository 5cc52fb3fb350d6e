"""The broker-wide ``[rate_limit]`` on AMQP 0.9.1 with pika over real sockets:
publishes over the limit are nacked under publisher confirms and close the channel
with 406 without them; basic.consume over the subscribe limit closes the channel."""

from __future__ import annotations

from typing import Any

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker, NackError

SLOW = 0.0001  # no token comes back during a test: only the burst counts


def _connect(b: Any) -> pika.BlockingConnection:
    return pika.BlockingConnection(
        pika.ConnectionParameters("127.0.0.1", b.port("amqp091.bind"), socket_timeout=5)
    )


def test_publish_rate_nacks_under_confirms_and_closes_without(fluxmq_broker_factory):
    b = fluxmq_broker_factory(
        plugins=["amqp091"], config={"rate_limit": {"publish_rate": SLOW, "publish_burst": 2}}
    )
    conn = _connect(b)
    ch = conn.channel()
    ch.queue_declare("rl")
    ch.confirm_delivery()
    ch.basic_publish("", "rl", b"1")
    ch.basic_publish("", "rl", b"2")
    with pytest.raises(NackError):
        ch.basic_publish("", "rl", b"3")
    assert ch.is_open  # a nack leaves the channel usable
    assert ch.queue_declare("rl", passive=True).method.message_count == 2
    conn.close()
    conn = _connect(b)  # a new connection has a new bucket
    ch = conn.channel()
    ch.basic_publish("", "rl", b"4")
    ch.basic_publish("", "rl", b"5")
    ch.basic_publish("", "rl", b"6")
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.queue_declare("rl", passive=True)  # a round trip that sees the close
    assert info.value.reply_code == 406
    conn.close()
    assert b.call_soon(lambda: b.context.stats.rate_limited_publishes) == 2


def test_subscribe_rate_closes_the_channel_on_consume(fluxmq_broker_factory):
    b = fluxmq_broker_factory(
        plugins=["amqp091"],
        config={"rate_limit": {"subscribe_rate": SLOW, "subscribe_burst": 1}},
    )
    conn = _connect(b)
    ch = conn.channel()
    ch.queue_declare("rs")
    ch.basic_consume("rs", lambda *a: None)
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.basic_consume("rs", lambda *a: None)
    assert info.value.reply_code == 406
    conn.close()
    assert b.call_soon(lambda: b.context.stats.rate_limited_subscribes) == 1


def test_subscribe_rate_counts_queue_bind_and_consume_together(fluxmq_broker_factory):
    b = fluxmq_broker_factory(
        plugins=["amqp091"],
        config={"rate_limit": {"subscribe_rate": SLOW, "subscribe_burst": 2}},
    )
    conn = _connect(b)
    ch = conn.channel()
    ch.queue_declare("rb")
    ch.queue_bind("rb", "amq.topic", "a.b")  # one token
    ch.basic_consume("rb", lambda *a: None)  # the second
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.queue_bind("rb", "amq.topic", "a.c")
    assert info.value.reply_code == 406
    assert "subscribe rate limit" in info.value.reply_text
    ch = conn.channel()  # the connection stays open; its bucket is still empty
    with pytest.raises(ChannelClosedByBroker):
        ch.queue_bind("rb", "amq.topic", "a.d")
    conn.close()
    assert b.call_soon(lambda: b.context.stats.rate_limited_subscribes) == 2
    conn = _connect(b)  # a new connection, a new bucket
    conn.channel().queue_bind("rb", "amq.topic", "a.e")
    conn.close()
