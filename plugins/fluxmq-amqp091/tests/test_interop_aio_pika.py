"""aio-pika (and pika's asyncio adapter) against the broker. Waits are bounded."""

from __future__ import annotations

import asyncio

import aio_pika
import pika
import pytest
from aio_pika.exceptions import ChannelNotFoundEntity, ChannelPreconditionFailed
from fluxmq_amqp091.testing import WAIT, name
from pika.adapters.asyncio_connection import AsyncioConnection


@pytest.fixture
def url(amqp_broker):
    return f"amqp://guest:guest@127.0.0.1:{amqp_broker.port('amqp091.bind')}/"


async def test_publish_consume_with_confirms_and_ack(url):
    conn = await aio_pika.connect_robust(url, timeout=WAIT)
    async with conn:
        ch = await conn.channel(publisher_confirms=True)
        q = await ch.declare_queue(name(), durable=True)
        for i in range(20):
            await ch.default_exchange.publish(
                aio_pika.Message(
                    str(i).encode(),
                    headers={"i": i},
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=q.name,
            )
        got = []
        async with q.iterator() as it:
            async for message in it:
                async with message.process():
                    got.append((message.body, message.headers["i"]))
                if len(got) == 20:
                    break
        assert got == [(str(i).encode(), i) for i in range(20)]


async def test_topic_exchange_and_get(url):
    conn = await aio_pika.connect(url, timeout=WAIT)
    async with conn:
        ch = await conn.channel()
        ex = await ch.declare_exchange(name("t"), aio_pika.ExchangeType.TOPIC)
        q = await ch.declare_queue(exclusive=True)
        await q.bind(ex, "sensor.*.temp")
        await ex.publish(aio_pika.Message(b"21.5", content_type="text/plain"), "sensor.k1.temp")
        await ex.publish(aio_pika.Message(b"no"), "sensor.k1.hum")
        msg = await q.get(timeout=WAIT)
        assert msg.body == b"21.5" and msg.content_type == "text/plain"
        assert msg.routing_key == "sensor.k1.temp"
        await msg.ack()
        assert await q.get(fail=False, timeout=WAIT) is None


async def test_nack_requeue_and_reject(url):
    conn = await aio_pika.connect(url, timeout=WAIT)
    async with conn:
        ch = await conn.channel()
        q = await ch.declare_queue(name())
        await ch.default_exchange.publish(aio_pika.Message(b"x"), routing_key=q.name)
        m = await q.get(timeout=WAIT)
        await m.nack(requeue=True)
        m = await q.get(timeout=WAIT)
        assert m.redelivered
        await m.reject(requeue=False)
        assert await q.get(fail=False, timeout=WAIT) is None


async def test_errors_close_the_channel_with_codes(url):
    conn = await aio_pika.connect(url, timeout=WAIT)
    async with conn:
        ch = await conn.channel()
        with pytest.raises(ChannelNotFoundEntity):
            await ch.declare_queue(name("missing"), passive=True)
        ch = await conn.channel()
        qn = name()
        await ch.declare_queue(qn, arguments={"x-message-ttl": 1000})
        with pytest.raises(ChannelPreconditionFailed):
            await ch.declare_queue(qn, arguments={"x-message-ttl": 2000})
        ch = await conn.channel()  # the connection is fine
        await ch.declare_queue(qn, arguments={"x-message-ttl": 1000})


async def test_transaction(url):
    conn = await aio_pika.connect(url, timeout=WAIT)
    async with conn:
        ch = await conn.channel(publisher_confirms=False)
        q = await ch.declare_queue(name())
        async with ch.transaction():
            await ch.default_exchange.publish(aio_pika.Message(b"t"), routing_key=q.name)
        m = await q.get(timeout=WAIT)
        assert m.body == b"t"
        await m.ack()


async def test_pika_asyncio_adapter(amqp_broker):
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bytes] = loop.create_future()
    qn = name()

    def on_open(conn):
        conn.channel(on_open_callback=on_channel)

    def on_channel(ch):
        def declared(_frame):
            ch.basic_consume(qn, on_message, auto_ack=True)
            ch.basic_publish("", qn, b"via asyncio adapter")

        ch.queue_declare(qn, callback=declared)

    def on_message(_ch, _method, _props, body):
        if not done.done():
            done.set_result(body)

    params = pika.ConnectionParameters("127.0.0.1", amqp_broker.port("amqp091.bind"))
    conn = AsyncioConnection(params, on_open_callback=on_open, custom_ioloop=loop)
    try:
        assert await asyncio.wait_for(done, WAIT) == b"via asyncio adapter"
    finally:
        conn.close()
