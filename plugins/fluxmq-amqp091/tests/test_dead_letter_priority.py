"""RabbitMQ dead-lettering and priority queues with pika and aio-pika: expiry
(``x-message-ttl``, ``expiration``) to the dead-letter exchange without a consumer,
``x-death`` headers, overflow (``maxlen``), ``x-max-priority``. Time moves only
through the broker's ManualClock; every wait is bounded."""

from __future__ import annotations

import aio_pika
import pika
import pytest
from fluxmq_amqp091.testing import WAIT, consume_n, name, settle
from pika.exceptions import ChannelClosedByBroker

from fluxmq_core.clock import ManualClock


@pytest.fixture(scope="module")
def clocked():
    from fluxmq_core.testing.broker import BrokerThread

    clock = ManualClock()
    with BrokerThread(plugins=["amqp091"], clock=clock) as b:
        yield b, clock


@pytest.fixture
def ch(clocked):
    broker, _clock = clocked
    conn = pika.BlockingConnection(
        pika.ConnectionParameters(
            "127.0.0.1",
            broker.port("amqp091.bind"),
            socket_timeout=WAIT,
            blocked_connection_timeout=WAIT,
        )
    )
    yield conn.channel()
    if conn.is_open:
        conn.close()


def advance(clocked, seconds: float, ch=None) -> None:
    """Move the broker clock and run one queue sweep (and let dispatchers run).

    With ``ch``, first make one round trip on that channel: the broker handles a
    channel's frames in order, so every publish sent before it has reached its queue
    (otherwise a publish still in the socket could land after the sweep).
    """
    broker, clock = clocked
    if ch is not None:
        ch.exchange_declare("amq.direct", passive=True)
    broker.call_soon(clock.advance, seconds)
    broker.call(broker.context.queues.sweep())
    broker.call(broker.context.queues.wait_idle())


def dlx_setup(ch, **queue_args):
    dlx = name("dlx")
    ch.exchange_declare(dlx, "direct")
    dead = ch.queue_declare(name("dead")).method.queue
    ch.queue_bind(dead, dlx, "dead")
    args = {"x-dead-letter-exchange": dlx, "x-dead-letter-routing-key": "dead", **queue_args}
    src = ch.queue_declare(name("src"), arguments=args).method.queue
    return dlx, dead, src


def test_ttl_queue_dead_letters_expired_without_consumers(clocked, ch):
    # the delayed-retry pattern: publish to a TTL queue nobody consumes; after the TTL
    # the message shows up on the queue bound to the dead-letter exchange
    dlx, dead, src = dlx_setup(ch, **{"x-message-ttl": 5000})
    ch.basic_publish("", src, b"later", pika.BasicProperties(headers={"h": "v"}))
    advance(clocked, 2.0, ch)
    assert ch.queue_declare(dead, passive=True).method.message_count == 0
    advance(clocked, 4.0, ch)
    ((m, props, body),) = consume_n(ch, dead, 1)
    assert body == b"later" and m.exchange == dlx and m.routing_key == "dead"
    h = props.headers
    assert h["h"] == "v"
    assert h["x-first-death-reason"] == "expired" and h["x-first-death-queue"] == src
    assert h["x-first-death-exchange"] == ""
    [death] = h["x-death"]
    assert death["queue"] == src and death["reason"] == "expired" and death["count"] == 1
    assert death["exchange"] == "" and death["routing-keys"] == [src]
    assert "time" in death
    assert ch.queue_declare(src, passive=True).method.message_count == 0


def test_per_message_expiration_dead_letters_and_drops_expiration(clocked, ch):
    _dlx, dead, src = dlx_setup(ch)
    ch.basic_publish("", src, b"x", pika.BasicProperties(expiration="1000"))
    advance(clocked, 2.0, ch)
    ((_m, props, body),) = consume_n(ch, dead, 1)
    assert body == b"x" and props.expiration is None
    [death] = props.headers["x-death"]
    assert death["reason"] == "expired" and death["original-expiration"] == "1000"


def test_expired_message_without_dlx_is_dropped(clocked, ch):
    q = ch.queue_declare(name(), arguments={"x-message-ttl": 1000}).method.queue
    ch.basic_publish("", q, b"x")
    ch.basic_publish("", q, b"short", pika.BasicProperties(expiration="500"))
    assert ch.queue_declare(q, passive=True).method.message_count == 2
    advance(clocked, 2.0, ch)
    assert ch.queue_declare(q, passive=True).method.message_count == 0
    assert ch.basic_get(q, auto_ack=True) == (None, None, None)


def test_retry_loop_counts_x_death(clocked, ch):
    # work --reject--> retry exchange --> delay (TTL) --expired--> default exchange --> work
    retry_ex = name("retry")
    ch.exchange_declare(retry_ex, "fanout")
    work = name("work")
    delay = ch.queue_declare(
        name("delay"),
        arguments={
            "x-message-ttl": 1000,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": work,
        },
    ).method.queue
    ch.queue_bind(delay, retry_ex)
    ch.queue_declare(work, arguments={"x-dead-letter-exchange": retry_ex})
    ch.basic_publish("", work, b"job")
    for round_ in (1, 2):
        method, _p, _b = ch.basic_get(work)
        assert method is not None, round_
        ch.basic_reject(method.delivery_tag, requeue=False)
        broker, _c = clocked
        broker.call(broker.context.queues.wait_idle())
        advance(clocked, 2.0, ch)
    ((_m, props, body),) = consume_n(ch, work, 1)
    assert body == b"job"
    deaths = props.headers["x-death"]
    assert [(d["queue"], d["reason"], d["count"]) for d in deaths] == [
        (delay, "expired", 2),
        (work, "rejected", 2),
    ]
    assert props.headers["x-first-death-queue"] == work
    assert props.headers["x-first-death-reason"] == "rejected"
    assert props.headers["x-last-death-reason"] == "expired"


def test_reject_publish_dlx_dead_letters_the_refused_message(clocked, ch):
    _dlx, dead, src = dlx_setup(ch, **{"x-max-length": 1, "x-overflow": "reject-publish-dlx"})
    ch.confirm_delivery()
    ch.basic_publish("", src, b"kept")
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish("", src, b"refused")
    ((_m, props, body),) = consume_n(ch, dead, 1)
    assert body == b"refused"
    assert props.headers["x-death"][0]["reason"] == "maxlen"
    assert [b for _m, _p, b in consume_n(ch, src, 1)] == [b"kept"]


def test_drop_head_with_dlx_dead_letters_maxlen(clocked, ch):
    _dlx, dead, src = dlx_setup(ch, **{"x-max-length": 2, "x-overflow": "drop-head"})
    for body in (b"1", b"2", b"3"):
        ch.basic_publish("", src, body)
    ((_m, props, body),) = consume_n(ch, dead, 1)
    assert body == b"1" and props.headers["x-first-death-reason"] == "maxlen"
    assert [b for _m, _p, b in consume_n(ch, src, 2)] == [b"2", b"3"]


def test_delivery_limit_reason(clocked, ch):
    _dlx, dead, src = dlx_setup(ch, **{"x-delivery-limit": 1})
    ch.basic_publish("", src, b"poison")
    method, _p, _b = ch.basic_get(src)
    ch.basic_nack(method.delivery_tag, requeue=True)
    ((_m, props, _body),) = consume_n(ch, dead, 1)
    assert props.headers["x-death"][0]["reason"] == "delivery_limit"


def test_priority_queue_orders_by_priority(clocked, ch):
    q = ch.queue_declare(name(), arguments={"x-max-priority": 5}).method.queue
    sent = [(b"a", None), (b"b", 2), (b"c", 5), (b"d", 9), (b"e", 2), (b"f", 0)]
    for body, pr in sent:
        ch.basic_publish("", q, body, pika.BasicProperties(priority=pr))
    ch.basic_qos(prefetch_count=1)
    got = consume_n(ch, q, len(sent))
    # 9 is above the max (5): it counts as 5 and comes after c; FIFO within a priority
    assert [b for _m, _p, b in got] == [b"c", b"d", b"b", b"e", b"a", b"f"]
    assert got[1][1].priority == 9  # the property itself is kept


def test_priority_with_a_paused_consumer(clocked, ch):
    broker, _clock = clocked
    q = ch.queue_declare(name(), arguments={"x-max-priority": 10}).method.queue
    ch.basic_qos(prefetch_count=1)
    got = []
    ch.basic_consume(q, lambda c, m, p, b: got.append((m, b)))
    ch.basic_publish("", q, b"first", pika.BasicProperties(priority=1))
    settle(broker, ch)
    assert [b for _m, b in got] == [b"first"]  # holds the only prefetch slot
    for body, pr in [(b"low", 1), (b"mid", 5), (b"none", None), (b"high", 10)]:
        ch.basic_publish("", q, body, pika.BasicProperties(priority=pr))
    settle(broker, ch)
    assert len(got) == 1  # all four wait in the queue
    for _ in range(4):
        ch.basic_ack(got[-1][0].delivery_tag)
        n = len(got)
        settle(broker, ch)
        assert len(got) == n + 1
    assert [b for _m, b in got] == [b"first", b"high", b"mid", b"low", b"none"]


def test_invalid_max_priority_is_refused(clocked, ch):
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.queue_declare(name(), arguments={"x-max-priority": 256})
    assert info.value.reply_code == 406


async def test_aio_pika_ttl_dlx_and_priority(clocked):
    import asyncio

    broker, _clock = clocked
    url = f"amqp://guest:guest@127.0.0.1:{broker.port('amqp091.bind')}/"
    conn = await aio_pika.connect(url, timeout=WAIT)
    async with conn:
        ch = await conn.channel()
        dlx = await ch.declare_exchange(name("dlx"), aio_pika.ExchangeType.FANOUT)
        dead = await ch.declare_queue(name("dead"))
        await dead.bind(dlx)
        delay = await ch.declare_queue(
            name("delay"), arguments={"x-message-ttl": 3000, "x-dead-letter-exchange": dlx.name}
        )
        await ch.default_exchange.publish(aio_pika.Message(b"retry-me"), delay.name)
        await asyncio.to_thread(advance, clocked, 4.0)
        msg = await dead.get(timeout=WAIT)
        await msg.ack()
        assert msg.body == b"retry-me"
        assert msg.headers["x-death"][0]["reason"] == "expired"

        pq = await ch.declare_queue(name("prio"), arguments={"x-max-priority": 3})
        for body, pr in [(b"l", 0), (b"h", 3), (b"m", 2)]:
            await ch.default_exchange.publish(aio_pika.Message(body, priority=pr), pq.name)
        got = []
        for _ in range(3):
            m = await pq.get(timeout=WAIT)
            await m.ack()
            got.append(m.body)
        assert got == [b"h", b"m", b"l"]
