"""pika (BlockingConnection) against the broker: exchanges, queues, basic, confirms,
tx and errors with their reply codes. Every wait is bounded."""

from __future__ import annotations

import time

import pika
import pytest
from fluxmq_amqp091.testing import WAIT, consume_n, name, settle
from pika.exceptions import ChannelClosedByBroker, UnroutableError


def test_default_exchange_roundtrip_keeps_properties(connect):
    ch = connect().channel()
    q = ch.queue_declare(name()).method.queue
    props = pika.BasicProperties(
        content_type="application/json",
        content_encoding="utf-8",
        headers={"a": 1, "b": "x", "nested": {"k": True}},
        delivery_mode=2,
        priority=3,
        correlation_id="c-1",
        reply_to="replies",
        expiration="60000",
        message_id="m-1",
        timestamp=1700000000,
        type="order",
        user_id="guest",
        app_id="app",
    )
    ch.basic_publish("", q, b'{"n": 1}', props)
    ((method, got, body),) = consume_n(ch, q, 1)
    assert body == b'{"n": 1}'
    assert method.routing_key == q and method.exchange == ""
    for key in (
        "content_type",
        "content_encoding",
        "headers",
        "delivery_mode",
        "priority",
        "correlation_id",
        "reply_to",
        "expiration",
        "message_id",
        "timestamp",
        "type",
        "user_id",
        "app_id",
    ):
        assert getattr(got, key) == getattr(props, key), key


def test_server_named_queue_and_declare_ok_counts(connect):
    ch = connect().channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    assert q.startswith("amq.gen-")
    for i in range(3):
        ch.basic_publish("", q, str(i).encode())
    ok = ch.queue_declare(q, passive=True).method
    assert ok.message_count == 3 and ok.consumer_count == 0


@pytest.mark.parametrize("kind", ["direct", "fanout", "topic", "headers"])
def test_exchange_types_route(connect, kind):
    ch = connect().channel()
    ex = name(kind)
    ch.exchange_declare(ex, kind)
    q1, q2 = ch.queue_declare(name()).method.queue, ch.queue_declare(name()).method.queue
    if kind == "direct":
        ch.queue_bind(q1, ex, "red")
        ch.queue_bind(q2, ex, "blue")
        ch.basic_publish(ex, "red", b"r")
        expect = {q1: [b"r"], q2: []}
    elif kind == "fanout":
        ch.queue_bind(q1, ex)
        ch.queue_bind(q2, ex)
        ch.basic_publish(ex, "anything", b"f")
        expect = {q1: [b"f"], q2: [b"f"]}
    elif kind == "topic":
        ch.queue_bind(q1, ex, "stock.*.nyse")
        ch.queue_bind(q2, ex, "stock.#")
        ch.basic_publish(ex, "stock.ibm.nyse", b"1")
        ch.basic_publish(ex, "stock.ibm.lse.x", b"2")
        expect = {q1: [b"1"], q2: [b"1", b"2"]}
    else:
        ch.queue_bind(q1, ex, arguments={"x-match": "all", "fmt": "pdf", "type": "report"})
        ch.queue_bind(q2, ex, arguments={"x-match": "any", "fmt": "pdf", "type": "log"})
        ch.basic_publish(
            ex, "", b"h1", pika.BasicProperties(headers={"fmt": "pdf", "type": "report"})
        )
        ch.basic_publish(ex, "", b"h2", pika.BasicProperties(headers={"fmt": "pdf"}))
        ch.basic_publish(ex, "", b"h3", pika.BasicProperties(headers={"type": "none"}))
        expect = {q1: [b"h1"], q2: [b"h1", b"h2"]}
    for q, bodies in expect.items():
        assert ch.queue_declare(q, passive=True).method.message_count == len(bodies)
        got = [b for _m, _p, b in consume_n(ch, q, len(bodies))] if bodies else []
        assert sorted(got) == sorted(bodies)


def test_amq_exchanges_exist_and_are_protected(connect):
    conn = connect()
    ch = conn.channel()
    for ex, kind in (
        ("amq.direct", "direct"),
        ("amq.fanout", "fanout"),
        ("amq.topic", "topic"),
        ("amq.headers", "headers"),
        ("amq.match", "headers"),
    ):
        ch.exchange_declare(ex, kind, passive=True)
        ch.exchange_declare(ex, kind, durable=True)
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.exchange_declare("amq.custom", "direct")
    assert info.value.reply_code == 403
    ch = conn.channel()
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.exchange_delete("amq.direct")
    assert info.value.reply_code == 403


def test_exchange_to_exchange_binding_and_unbind(connect):
    ch = connect().channel()
    src, dst = name("src"), name("dst")
    ch.exchange_declare(src, "topic")
    ch.exchange_declare(dst, "fanout")
    ch.exchange_bind(dst, src, "a.#")
    q = ch.queue_declare(name()).method.queue
    ch.queue_bind(q, dst)
    ch.basic_publish(src, "a.b.c", b"x")
    ch.basic_publish(src, "b.c", b"no")
    assert [b for _m, _p, b in consume_n(ch, q, 1)] == [b"x"]
    ch.exchange_unbind(dst, src, "a.#")
    ch.basic_publish(src, "a.b", b"gone")
    # the passive declare is handled after the publish (one channel, in order)
    assert ch.queue_declare(q, passive=True).method.message_count == 0


def test_exchange_declare_errors(connect):
    conn = connect()
    ch = conn.channel()
    ex = name("x")
    ch.exchange_declare(ex, "direct")
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.exchange_declare(ex, "fanout")
    assert info.value.reply_code == 406
    ch = conn.channel()
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.exchange_declare(name("missing"), "direct", passive=True)
    assert info.value.reply_code == 404
    ch = conn.channel()
    q = ch.queue_declare(name()).method.queue
    ch.queue_bind(q, ex, "k")
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.exchange_delete(ex, if_unused=True)
    assert info.value.reply_code == 406
    ch = conn.channel()
    ch.exchange_delete(ex)
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.basic_publish(ex, "k", b"x")
        ch.queue_declare(q, passive=True)  # the 404 arrives asynchronously
    assert info.value.reply_code == 404


def test_internal_exchange_refuses_publish(connect):
    ch = connect().channel()
    ex = name("int")
    ch.exchange_declare(ex, "fanout", internal=True)
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.basic_publish(ex, "", b"x")
        ch.exchange_declare(ex, "fanout", passive=True)
    assert info.value.reply_code == 403


def test_auto_delete_exchange_goes_with_last_binding(connect):
    conn = connect()
    ch = conn.channel()
    ex = name("ad")
    ch.exchange_declare(ex, "direct", auto_delete=True)
    q = ch.queue_declare(name()).method.queue
    ch.queue_bind(q, ex, "k")
    ch.queue_unbind(q, ex, "k")
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.exchange_declare(ex, "direct", passive=True)
    assert info.value.reply_code == 404


def test_queue_errors_404_406_405(connect):
    conn = connect()
    ch = conn.channel()
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.queue_declare(name("nope"), passive=True)
    assert info.value.reply_code == 404
    assert not ch.is_open
    ch = conn.channel()
    q = name()
    ch.queue_declare(q, arguments={"x-max-length": 10})
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.queue_declare(q, arguments={"x-max-length": 20})
    assert info.value.reply_code == 406
    ch = conn.channel()
    ex = ch.queue_declare(name(), exclusive=True).method.queue
    other = connect().channel()
    with pytest.raises(ChannelClosedByBroker) as info:
        other.queue_declare(ex, passive=True)
    assert info.value.reply_code == 405
    other = connect().channel()
    with pytest.raises(ChannelClosedByBroker) as info:
        other.basic_consume(ex, lambda *a: None)
    assert info.value.reply_code == 405


def test_exclusive_queue_goes_with_its_connection(connect):
    conn = connect()
    q = conn.channel().queue_declare("", exclusive=True).method.queue
    conn.close()
    ch = connect().channel()
    with pytest.raises(ChannelClosedByBroker) as info:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            ch.queue_declare(q, passive=True)
            time.sleep(0.05)
    assert info.value.reply_code == 404


def test_queue_delete_if_empty_if_unused_and_purge(connect):
    conn = connect()
    ch = conn.channel()
    q = ch.queue_declare(name()).method.queue
    ch.basic_publish("", q, b"1")
    ch.basic_publish("", q, b"2")
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.queue_delete(q, if_empty=True)
    assert info.value.reply_code == 406
    ch = conn.channel()
    assert ch.queue_purge(q).method.message_count == 2
    ch.basic_consume(q, lambda *a: None)
    with pytest.raises(ChannelClosedByBroker) as info:
        conn.channel().queue_delete(q, if_unused=True)
    assert info.value.reply_code == 406
    assert conn.channel().queue_delete(q).method.message_count == 0


def test_queue_arguments_ttl_max_length_overflow(connect):
    ch = connect().channel()
    q = ch.queue_declare(
        name(), arguments={"x-max-length": 2, "x-overflow": "drop-head"}
    ).method.queue
    for i in range(4):
        ch.basic_publish("", q, str(i).encode())
    assert [b for _m, _p, b in consume_n(ch, q, 2)] == [b"2", b"3"]
    q2 = ch.queue_declare(
        name(), arguments={"x-max-length": 1, "x-overflow": "reject-publish"}
    ).method.queue
    ch.confirm_delivery()
    ch.basic_publish("", q2, b"a")
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish("", q2, b"b")
    # expiry (x-message-ttl, expiration) is tested on a manual clock in
    # test_dead_letter_priority.py
    for args in ({"x-queue-type": "bogus"}, {"x-max-length": "x"}, {"x-overflow": "nope"}):
        c = connect().channel()
        with pytest.raises(ChannelClosedByBroker) as info:
            c.queue_declare(name(), arguments=args)
        assert info.value.reply_code == 406
    ok = (
        connect()
        .channel()
        .queue_declare(
            name(), arguments={"x-max-priority": 10, "x-max-length-bytes": 1000, "x-expires": 60000}
        )
    )
    assert ok.method.message_count == 0


def test_x_expires_deletes_unused_queue(connect):
    ch = connect().channel()
    q = ch.queue_declare(name(), arguments={"x-expires": 200}).method.queue
    with pytest.raises(ChannelClosedByBroker) as info:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            time.sleep(0.2)
            ch.queue_declare(q, passive=True)
    assert info.value.reply_code == 404


def test_dead_letter_exchange(connect):
    ch = connect().channel()
    dlx = name("dlx")
    ch.exchange_declare(dlx, "direct")
    dead = ch.queue_declare(name()).method.queue
    ch.queue_bind(dead, dlx, "dead")
    q = ch.queue_declare(
        name(), arguments={"x-dead-letter-exchange": dlx, "x-dead-letter-routing-key": "dead"}
    ).method.queue
    ch.basic_publish("", q, b"bad", pika.BasicProperties(headers={"h": "v"}))
    method, _p, _b = ch.basic_get(q)
    ch.basic_reject(method.delivery_tag, requeue=False)
    ((m, props, body),) = consume_n(ch, dead, 1)
    assert body == b"bad" and m.routing_key == "dead"
    assert props.headers["h"] == "v"
    assert props.headers["x-first-death-queue"] == q


def test_qos_prefetch_per_consumer(connect, amqp_broker):
    ch = connect().channel()
    q = ch.queue_declare(name()).method.queue
    for i in range(5):
        ch.basic_publish("", q, str(i).encode())
    ch.basic_qos(prefetch_count=2)
    got = []
    ch.basic_consume(q, lambda c, m, p, b: got.append(m))
    settle(amqp_broker, ch)
    assert len(got) == 2
    ch.basic_ack(got[-1].delivery_tag, multiple=True)
    settle(amqp_broker, ch)
    assert len(got) == 4


def test_qos_global_limits_the_channel(connect, amqp_broker):
    ch = connect().channel()
    q1, q2 = ch.queue_declare(name()).method.queue, ch.queue_declare(name()).method.queue
    for _i in range(3):
        ch.basic_publish("", q1, b"a")
        ch.basic_publish("", q2, b"b")
    ch.basic_qos(prefetch_count=3, global_qos=True)
    got = []
    ch.basic_consume(q1, lambda c, m, p, b: got.append(m))
    ch.basic_consume(q2, lambda c, m, p, b: got.append(m))
    settle(amqp_broker, ch)
    assert len(got) == 3
    ch.basic_ack(0, multiple=True)
    settle(amqp_broker, ch)
    assert len(got) == 6


def test_consume_cancel_and_exclusive_consumer(connect):
    conn = connect()
    ch = conn.channel()
    q = ch.queue_declare(name()).method.queue
    tag = ch.basic_consume(q, lambda *a: None, exclusive=True, consumer_tag="my-tag")
    assert tag == "my-tag"
    with pytest.raises(ChannelClosedByBroker) as info:
        conn.channel().basic_consume(q, lambda *a: None)
    assert info.value.reply_code == 403
    ch.basic_cancel(tag)
    conn.channel().basic_consume(q, lambda *a: None)


def test_broker_cancels_consumer_when_queue_deleted(connect):
    conn = connect()
    ch = conn.channel()
    q = ch.queue_declare(name()).method.queue
    cancelled = []
    ch.basic_consume(q, lambda *a: None, consumer_tag="c1")
    ch.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
    connect().channel().queue_delete(q)
    deadline = time.monotonic() + WAIT
    while not cancelled and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.05)
    assert cancelled == ["c1"]


def test_get_get_empty_and_no_ack(connect):
    ch = connect().channel()
    q = ch.queue_declare(name()).method.queue
    assert ch.basic_get(q) == (None, None, None)
    ch.basic_publish("", q, b"1")
    ch.basic_publish("", q, b"2")
    method, _p, body = ch.basic_get(q, auto_ack=True)
    assert body == b"1" and method.message_count == 1
    method, _p, body = ch.basic_get(q)
    assert body == b"2"
    ch.basic_ack(method.delivery_tag)
    assert ch.basic_get(q) == (None, None, None)


def test_nack_requeue_reject_and_redelivered_flag(connect):
    ch = connect().channel()
    q = ch.queue_declare(name()).method.queue
    ch.basic_publish("", q, b"x")
    m1, _p, _b = ch.basic_get(q)
    assert not m1.redelivered
    ch.basic_nack(m1.delivery_tag, requeue=True)
    m2, _p, body = ch.basic_get(q)
    assert body == b"x" and m2.redelivered
    ch.basic_reject(m2.delivery_tag, requeue=True)
    m3, _p, _b = ch.basic_get(q)
    ch.basic_nack(m3.delivery_tag, requeue=False)
    assert ch.basic_get(q) == (None, None, None)


def test_multiple_ack_and_unknown_tag_is_406(connect):
    conn = connect()
    ch = conn.channel()
    q = ch.queue_declare(name()).method.queue
    for _i in range(3):
        ch.basic_publish("", q, b"m")
    got = consume_n(ch, q, 3, ack=False)
    ch.basic_ack(got[-1][0].delivery_tag, multiple=True)
    assert ch.queue_declare(q, passive=True).method.message_count == 0
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.basic_ack(999)
        ch.queue_declare(q, passive=True)
    assert info.value.reply_code == 406


def test_unacked_are_requeued_when_channel_closes(connect):
    conn = connect()
    ch = conn.channel()
    q = ch.queue_declare(name()).method.queue
    ch.basic_publish("", q, b"keep")
    m, _p, _b = ch.basic_get(q)
    ch.close()
    ch2 = conn.channel()
    m2, _p, body = ch2.basic_get(q)
    assert body == b"keep" and m2.redelivered


def test_recover_redelivers(connect):
    ch = connect().channel()
    q = ch.queue_declare(name()).method.queue
    ch.basic_publish("", q, b"r")
    ch.basic_get(q)
    ch.basic_recover(requeue=True)
    m, _p, body = ch.basic_get(q)
    assert body == b"r" and m.redelivered


def test_mandatory_returns_unroutable(connect):
    ch = connect().channel()
    returned = []
    ch.add_on_return_callback(lambda c, m, p, b: returned.append((m.reply_code, b)))
    ch.basic_publish("amq.direct", name("nobody"), b"lost", mandatory=True)
    ch.exchange_declare("amq.direct", passive=True)  # the return comes before this reply
    ch.connection.process_data_events(time_limit=0)
    assert returned == [(312, b"lost")]
    ch.confirm_delivery()
    with pytest.raises(UnroutableError):
        ch.basic_publish("amq.direct", name("nobody"), b"lost2", mandatory=True)


def test_publisher_confirms(connect):
    ch = connect().channel()
    q = ch.queue_declare(name(), durable=True).method.queue
    ch.confirm_delivery()
    for i in range(50):
        ch.basic_publish("", q, str(i).encode(), pika.BasicProperties(delivery_mode=2))
    assert ch.queue_declare(q, durable=True, passive=True).method.message_count == 50


def test_tx_commit_and_rollback(connect):
    ch = connect().channel()
    q = ch.queue_declare(name()).method.queue
    ch.tx_select()
    ch.basic_publish("", q, b"a")
    assert connect().channel().queue_declare(q, passive=True).method.message_count == 0
    ch.tx_rollback()
    assert connect().channel().queue_declare(q, passive=True).method.message_count == 0
    ch.basic_publish("", q, b"b")
    ch.tx_commit()
    assert connect().channel().queue_declare(q, passive=True).method.message_count == 1
    m, _p, body = ch.basic_get(q)
    assert body == b"b"
    ch.basic_ack(m.delivery_tag)
    ch.tx_rollback()  # the ack is undone: still unacked on this channel
    ch.basic_ack(m.delivery_tag)
    ch.tx_commit()
    assert connect().channel().queue_declare(q, passive=True).method.message_count == 0


def test_large_body_split_across_frames(connect):
    ch = connect(frame_max=4096).channel()
    q = ch.queue_declare(name()).method.queue
    body = bytes(range(256)) * 100
    ch.basic_publish("", q, body)
    ((_m, _p, got),) = consume_n(ch, q, 1)
    assert got == body


def test_channel_flow_stops_and_resumes_deliveries(connect, amqp_broker):
    conn = connect()
    ch = conn.channel()
    q = ch.queue_declare(name()).method.queue
    got: list[bytes] = []
    ch.basic_consume(q, lambda c, m, p, b: (got.append(b), c.basic_ack(m.delivery_tag)))
    assert ch.flow(False) is False
    pub = connect().channel()
    pub.basic_publish("", q, b"held")
    assert pub.queue_declare(q, passive=True).method.message_count == 1  # appended
    settle(amqp_broker, ch)
    assert got == []  # not delivered while the channel is inactive
    assert pub.queue_declare(q, passive=True).method.message_count == 1
    other = conn.channel()  # flow is per channel: another one still gets its deliveries
    q2 = other.queue_declare(name()).method.queue
    other.basic_publish("", q2, b"free")
    assert [b for _m, _p, b in consume_n(other, q2, 1)] == [b"free"]
    assert ch.flow(True) is True
    deadline = time.monotonic() + WAIT
    while not got and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.05)
    assert got == [b"held"]
    settle(amqp_broker, ch)
    assert pub.queue_declare(q, passive=True).method.message_count == 0


def test_stream_queue_offsets_and_consumer_group(connect):
    ch = connect().channel()
    q = ch.queue_declare(name(), durable=True, arguments={"x-queue-type": "stream"}).method.queue
    for i in range(5):
        ch.basic_publish("", q, str(i).encode())
    ch.basic_qos(prefetch_count=10)
    got = []
    for method, props, body in ch.consume(
        q, arguments={"x-stream-offset": "first"}, inactivity_timeout=WAIT
    ):
        if method is None:
            break
        got.append((body, props.headers["x-stream-offset"]))
        ch.basic_ack(method.delivery_tag)
        if len(got) == 5:
            break
    ch.cancel()
    assert got == [(str(i).encode(), i) for i in range(5)]
    ch2 = connect().channel()
    ch2.basic_qos(prefetch_count=10)
    got2 = []
    for method, _props, body in ch2.consume(
        q, arguments={"x-stream-offset": 3, "x-consumer-group": "g1"}, inactivity_timeout=WAIT
    ):
        if method is None:
            break
        got2.append(body)
        if len(got2) == 2:
            break
    assert got2 == [b"3", b"4"]


def test_heartbeat_negotiation(connect, amqp_broker):
    params = pika.ConnectionParameters(
        "127.0.0.1", amqp_broker.port("amqp091.bind"), heartbeat=2, socket_timeout=WAIT
    )
    conn = pika.BlockingConnection(params)
    try:
        assert conn._impl.params.heartbeat == 2
        conn.sleep(2.5)  # heartbeats keep it alive past one interval
        assert conn.is_open
        conn.channel().queue_declare(name())
    finally:
        conn.close()


def test_connection_blocked_under_memory_alarm(fluxmq_broker_factory):
    b = fluxmq_broker_factory(plugins=["amqp091"], config={"amqp091": {"memory_high_watermark": 1}})
    params = pika.ConnectionParameters("127.0.0.1", b.port("amqp091.bind"), socket_timeout=WAIT)
    conn = pika.BlockingConnection(params)
    blocked = []
    conn.add_on_connection_blocked_callback(lambda c, frame: blocked.append(frame.method.reason))
    deadline = time.monotonic() + WAIT
    while not blocked and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.1)
    assert blocked and "memory" in blocked[0]
    conn.close()


def _durable_driver_installed() -> bool:
    from fluxmq_core.plugins import installed_drivers

    return any(name != "memory" for name in installed_drivers()["fluxmq.storage"])


@pytest.mark.skipif(not _durable_driver_installed(), reason="no durable storage driver installed")
def test_durable_exchange_queue_and_binding_survive_restart(fluxmq_broker_factory):
    b = fluxmq_broker_factory(plugins=["amqp091"])
    port = b.port("amqp091.bind")
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    ch = conn.channel()
    ch.exchange_declare("orders-x", "topic", durable=True)
    ch.exchange_declare("temp-x", "topic", durable=False)
    ch.queue_declare("orders-q", durable=True, arguments={"x-max-length": 100})
    ch.queue_declare("temp-q", durable=False)
    ch.queue_bind("orders-q", "orders-x", "eu.#")
    ch.confirm_delivery()
    ch.basic_publish("orders-x", "eu.de", b"kept", pika.BasicProperties(delivery_mode=2))
    conn.close()
    b.restart()
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", b.port("amqp091.bind")))
    ch = conn.channel()
    ch.exchange_declare("orders-x", "topic", durable=True, passive=True)
    ok = ch.queue_declare("orders-q", durable=True, arguments={"x-max-length": 100})
    assert ok.method.message_count == 1
    ch.basic_publish("orders-x", "eu.fr", b"routed")
    bodies = [b for _m, _p, b in consume_n(ch, "orders-q", 2)]
    assert bodies == [b"kept", b"routed"]
    for what, fn in (
        ("temp-x", lambda c: c.exchange_declare("temp-x", passive=True)),
        ("temp-q", lambda c: c.queue_declare("temp-q", passive=True)),
    ):
        c = conn.channel()
        with pytest.raises(ChannelClosedByBroker) as info:
            fn(c)
        assert info.value.reply_code == 404, what
    conn.close()


def test_routing_key_from_a_long_topic_is_cut_on_a_character_boundary(connect, amqp_broker):
    """A topic from another protocol can be longer than a short string (255 bytes):
    the delivery's routing key is cut without splitting a character."""
    from fluxmq_core.message import Message

    ch = connect().channel()
    q = ch.queue_declare(name()).method.queue
    ch.queue_bind(q, "amq.topic", "long.#")
    topic = "long/" + "é" * 200  # 405 bytes
    for _ in range(2):
        amqp_broker.call_soon(amqp_broker.context.publish, Message(topic, b"x"))
    expected = ("long." + "é" * 200).encode()[:255].decode("utf-8", "ignore")
    m, _p, body = ch.basic_get(q, auto_ack=True)
    assert (m.routing_key, body) == (expected, b"x")
    ((m2, _p2, _b2),) = consume_n(ch, q, 1)
    assert m2.routing_key == expected
