"""Cross-plugin: AMQP 0.9.1 and MQTT through the core router and queue manager (paho-mqtt is the
MQTT client; the MQTT plugin's package is not imported). Waits are bounded."""

from __future__ import annotations

import time

import pika
import pytest
from fluxmq_amqp091.testing import WAIT, consume_n, name, settle
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.e2e._cluster import close, mqtt_client


@pytest.fixture(scope="module")
def both():
    from fluxmq_core.testing.broker import BrokerThread

    with BrokerThread(plugins=["amqp091", "mqtt"]) as b:
        yield b


@pytest.fixture
def mq(both):
    clients = []

    def factory():
        c = mqtt_client(("127.0.0.1", both.port("mqtt.tcp")), WAIT)
        clients.append(c)
        return c

    yield factory
    close(clients)


@pytest.fixture
def channel(both):
    conn = pika.BlockingConnection(
        pika.ConnectionParameters("127.0.0.1", both.port("amqp091.bind"))
    )
    yield conn.channel()
    conn.close()


def test_amq_topic_publish_reaches_mqtt_with_properties(mq, channel):
    c = mq()
    c.subscribe("a/+", qos=1)
    c.acks.get(timeout=WAIT)
    channel.basic_publish(
        "amq.topic",
        "a.b",
        b"from amqp",
        pika.BasicProperties(
            content_type="text/plain",
            correlation_id="corr-1",
            reply_to="replies.me",
            headers={"k": "v"},
            expiration="60000",
            delivery_mode=2,
        ),
    )
    m = c.got.get(timeout=WAIT)
    assert m.topic == "a/b" and m.payload == b"from amqp"
    p = m.properties
    assert p.ContentType == "text/plain"
    assert p.CorrelationData == b"corr-1"
    assert p.ResponseTopic == "replies/me"
    assert ("k", "v") in p.UserProperty
    assert 0 < p.MessageExpiryInterval <= 60


def test_mqtt_publish_reaches_bound_queues(mq, channel):
    q1 = channel.queue_declare(name()).method.queue
    q2 = channel.queue_declare(name()).method.queue
    channel.queue_bind(q1, "amq.topic", "a.b")
    channel.queue_bind(q2, "amq.topic", "a.*")
    c = mq()
    props = Properties(PacketTypes.PUBLISH)
    props.ContentType = "application/json"
    props.CorrelationData = b"c-7"
    props.ResponseTopic = "reply/here"
    props.UserProperty = [("tenant", "t1")]
    props.MessageExpiryInterval = 120
    c.publish("a/b", b"{}", qos=1, properties=props).wait_for_publish(WAIT)
    c.publish("a/c", b"only-q2", qos=1).wait_for_publish(WAIT)
    ((m, p, body),) = consume_n(channel, q1, 1)
    assert body == b"{}" and m.exchange == "amq.topic" and m.routing_key == "a.b"
    assert p.content_type == "application/json" and p.correlation_id == "c-7"
    assert p.reply_to == "reply.here" and p.headers["tenant"] == "t1"
    assert 0 < int(p.expiration) <= 120000
    bodies = sorted(b for _m, _p, b in consume_n(channel, q2, 2))
    assert bodies == [b"only-q2", b"{}"]


def test_amqp_publish_to_bound_queue_is_not_duplicated(mq, channel, both):
    q = channel.queue_declare(name()).method.queue
    channel.queue_bind(q, "amq.topic", "dup.*")
    channel.queue_bind(q, "amq.topic", "dup.x")
    channel.basic_publish("amq.topic", "dup.x", b"once")
    settle(both, channel)  # the publish and whatever the router did with it are done
    assert channel.queue_declare(q, passive=True).method.message_count == 1


def test_mandatory_counts_mqtt_subscribers(both, mq, channel):
    c = mq()
    c.subscribe("only/mqtt", qos=0)
    c.acks.get(timeout=WAIT)
    returned = []
    channel.add_on_return_callback(lambda *a: returned.append(a))
    channel.basic_publish("amq.topic", "only.mqtt", b"x", mandatory=True)
    channel.basic_publish("amq.topic", "nobody.here", b"y", mandatory=True)
    settle(both, channel)  # a return for either publish came before the round trip's reply
    assert c.got.get(timeout=WAIT).payload == b"x"
    assert [r[1].routing_key for r in returned] == ["nobody.here"]


def test_amqp_queue_is_the_core_queue(both, channel):
    q = channel.queue_declare(name(), durable=True).method.queue
    channel.confirm_delivery()  # the ack means the append happened
    channel.basic_publish("", q, b"shared")
    info = both.call_soon(both.context.queues.info, q)
    assert info.type == "classic" and info.depth == 1


def _mq_publish(c, topic, payload, qos=1, user=None):
    props = None
    if user:
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = list(user)
    info = c.publish(topic, payload, qos, properties=props)
    info.wait_for_publish(WAIT)
    assert info.is_published()


def test_queue_declared_over_amqp_is_reached_by_mqtt_at_queue_topics(mq, channel):
    """``$queue/<name>`` from MQTT is the AMQP queue ``<name>``, both ways."""
    q = channel.queue_declare(name("shared"), durable=True).method.queue
    pub = mq()
    _mq_publish(pub, f"$queue/{q}/orders/new", b"from mqtt")
    got = consume_n(channel, q, 1)
    assert [body for _m, _p, body in got] == [b"from mqtt"]
    c = mq()
    props = Properties(PacketTypes.SUBSCRIBE)
    props.UserProperty = [("consumer-group", "mqtt-side")]
    c.subscribe(f"$queue/{q}/#", qos=1, properties=props)
    c.acks.get(timeout=WAIT)
    channel.confirm_delivery()
    channel.basic_publish("", q, b"from amqp")
    # a new group reads the queue from its first message: groups fan out
    first, second = c.got.get(timeout=WAIT), c.got.get(timeout=WAIT)
    assert (first.payload, second.payload) == (b"from mqtt", b"from amqp")
    assert first.topic == f"$queue/{q}/orders/new"
    assert second.topic.startswith(f"$queue/{q}/")
    user = dict(second.properties.UserProperty)
    assert user["queue"] == q and user["group-id"] == "mqtt-side"
    assert user["message-id"] == f"{q}:1"


def test_mqtt_queue_group_settles_with_puback_beside_amqp_consumers(both, mq, channel):
    q = channel.queue_declare(name("mixed"), durable=True).method.queue
    c = mq()
    c.subscribe(f"$queue/{q}/#", qos=1)
    c.acks.get(timeout=WAIT)
    pub = mq()
    for i in range(3):
        _mq_publish(pub, f"$queue/{q}/k", b"%d" % i)
    assert sorted(c.got.get(timeout=WAIT).payload for _ in range(3)) == [b"0", b"1", b"2"]
    deadline = time.monotonic() + WAIT
    while True:
        info = both.call_soon(both.context.queues.info, q)
        mine = [g for g in info.groups if g.name == c._client_id.decode()]
        if mine and mine[0].pending == 0:
            break
        assert time.monotonic() < deadline, info
        time.sleep(0.02)
    # the AMQP consumers' group is another group: it gets all three as well
    assert sorted(body for _m, _p, body in consume_n(channel, q, 3)) == [b"0", b"1", b"2"]


def _http_publish(broker, topic, payload):
    import base64
    import http.client
    import json

    conn = http.client.HTTPConnection("127.0.0.1", broker.port("http.bind"), timeout=WAIT)
    body = {"topic": topic, "payload": base64.b64encode(payload).decode(), "qos": 1}
    conn.request("POST", "/publish", body=json.dumps(body).encode())
    resp = conn.getresponse()
    data = json.loads(resp.read())
    conn.close()
    return resp.status, data


def test_http_publish_to_a_queue_topic_reaches_amqp_and_mqtt_consumers(both, mq, channel):
    """``$queue/`` is routed once in the core: an HTTP publish lands in the same queue
    an AMQP consumer reads and an MQTT consumer group reads."""
    q = channel.queue_declare(name("web"), durable=True).method.queue
    c = mq()
    props = Properties(PacketTypes.SUBSCRIBE)
    props.UserProperty = [("consumer-group", "mqtt-side")]
    c.subscribe(f"$queue/{q}/#", qos=1, properties=props)
    c.acks.get(timeout=WAIT)
    status, body = _http_publish(both, f"$queue/{q}/orders/7", b"from http")
    assert (status, body["queue"], body["offset"]) == (200, q, 0)
    assert [b for _m, _p, b in consume_n(channel, q, 1)] == [b"from http"]
    m = c.got.get(timeout=WAIT)
    assert (m.topic, m.payload) == (f"$queue/{q}/orders/7", b"from http")


def test_an_amq_topic_publish_to_a_queue_topic_is_appended_by_the_core(both, mq, channel):
    """The AMQP bridge exchange hands ``$queue.<name>.<key>`` to the core queue
    manager (``context.publish_queued``), like any protocol's queue publish; the
    confirm comes once it is appended, and an MQTT consumer group reads it."""
    q = name("bridged")
    both.call_soon(both.context.queues.declare, q)
    channel.confirm_delivery()
    channel.basic_publish("amq.topic", f"$queue.{q}.k", b"via amq.topic", mandatory=True)
    assert both.call_soon(both.context.queues.info, q).depth == 1  # confirmed: appended
    c = mq()
    props = Properties(PacketTypes.SUBSCRIBE)
    props.UserProperty = [("consumer-group", "mqtt-side")]
    c.subscribe(f"$queue/{q}/#", qos=1, properties=props)
    c.acks.get(timeout=WAIT)
    m = c.got.get(timeout=WAIT)
    assert (m.topic, m.payload) == (f"$queue/{q}/k", b"via amq.topic")
