"""The batched parts of the MQTT ``$queue/`` path (``fluxmq_mqtt/queues.py``): the
5.0 delivery encoded with cached user-property bytes, the PUBACKs of queue appends
answered together when a group commit makes many durable (still in PUBLISH order),
and the PUBACKs of one chunk settled with one ``ack_many``, before anything after
them in the chunk (an UNSUBSCRIBE) sees the queue."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fluxmq_mqtt.codec import (
    MQTT_5,
    Connack,
    Connect,
    Properties,
    Puback,
    Publish,
    PublishTemplate,
    Suback,
    Subscribe,
    SubscribeOptions,
    Unsuback,
    Unsubscribe,
    encode,
)
from fluxmq_mqtt.queues import _pair, _v5_template, _varint
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties as PahoProperties

from fluxmq_core.mqtt_codec.primitives import encode_varint

WAIT = 5.0


def wait_for(predicate: Any, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def connect(raw: Any, port: int, cid: str) -> Any:
    c = raw(port)
    c.send_packet(Connect(client_id=cid, protocol_level=MQTT_5))
    assert isinstance(c.recv(), Connack)
    return c


@pytest.mark.parametrize("qos", [0, 1, 2])
@pytest.mark.parametrize(
    ("topic", "payload", "user"),
    [
        ("$queue/q/k", b"x" * 64, ()),
        ("$queue/q/ключ/€", b"y" * 300, (("trace", "t-1"), ("ü", "ß"))),
        ("$queue/" + "n" * 200, b"", (("k", "v" * 70),)),
        ("$queue/q/k", b"w" * 16200, ()),  # a two-byte remaining length near its end
        ("$queue/q/k", b"z" * 20000, ()),  # a three-byte remaining length
    ],
)
def test_the_plain_delivery_template_is_the_generic_encoders_bytes(qos, topic, payload, user):
    pairs = (
        *user,
        ("message-id", "q:5"),
        ("group-id", "g"),
        ("queue", "q"),
        ("offset", "5"),
        ("delivery-count", "1"),
    )
    fast = _v5_template(topic, payload, qos, b"".join(_pair(k, v) for k, v in pairs))
    generic = PublishTemplate(topic, payload, qos, False, Properties(user_properties=pairs), MQTT_5)
    assert fast is not None
    assert (fast.data, fast.offset, fast.qos) == (generic.data, generic.offset, generic.qos)


@pytest.mark.parametrize("n", [0, 127, 128, 300, 16383, 16384, 2_097_151, 2_097_152, 268_435_455])
def test_the_short_varint_is_the_codecs(n):
    assert _varint(n) == encode_varint(n)


def test_a_topic_too_long_for_the_fast_template_is_left_to_the_generic_encoder():
    assert _v5_template("$queue/" + "t" * 70000, b"", 1, b"") is None


@pytest.fixture
def qbroker(fluxmq_broker_factory):
    return fluxmq_broker_factory(
        plugins=["mqtt"], config={"queues": {"dur": {"durability": "sync"}}}
    )


def test_own_user_properties_come_first_and_other_5_0_properties_are_kept(qbroker, clients):
    port = qbroker.port()
    c = clients(port, "bq-consumer")
    c.subscribe("$queue/props/#", 1)
    pub = clients(port, "bq-producer")
    plain = {"UserProperty": [("trace", "t1")]}
    typed = {"UserProperty": [("trace", "t2")], "ContentType": "text/plain"}
    assert pub.publish("$queue/props/a", b"1", qos=1, props=plain).is_published()
    assert pub.publish("$queue/props/a", b"2", qos=1, props=typed).is_published()
    got = sorted((c.get(WAIT), c.get(WAIT)), key=lambda m: m.payload)
    for m, trace in zip(got, ("t1", "t2"), strict=True):
        user = list(m.properties.UserProperty)
        assert [k for k, _ in user] == [
            "trace",
            "message-id",
            "group-id",
            "queue",
            "offset",
            "delivery-count",
        ]
        values = dict(user)
        assert values["trace"] == trace
        assert values["message-id"] == f"props:{values['offset']}"
        assert values["group-id"] == "bq-consumer"
        assert values["delivery-count"] == "1"
        assert m.topic == "$queue/props/a"
    assert getattr(got[1].properties, "ContentType", None) == "text/plain"
    assert getattr(got[0].properties, "ContentType", None) is None


def test_durable_appends_of_one_chunk_are_acknowledged_in_publish_order(qbroker, raw):
    c = connect(raw, qbroker.port(), "bq-burst")
    data = b"".join(
        encode(Publish("$queue/dur/k", b"m%d" % i, 1 + i % 2, packet_id=i + 1), MQTT_5)
        for i in range(60)
    )
    c.send(data)
    got = [c.recv() for _ in range(60)]
    assert [(type(p).__name__, p.packet_id) for p in got] == [
        ("Puback" if i % 2 == 0 else "Pubrec", i + 1) for i in range(60)
    ]
    assert all(p.reason_code == 0 for p in got)
    assert qbroker.call_soon(lambda: qbroker.context.queues.info("dur").depth) == 60


def test_acks_wait_for_the_first_append_whatever_order_the_appends_complete(qbroker, raw):
    import asyncio

    queues = qbroker.context.queues
    futures: list[Any] = []

    def slow(message: Any) -> Any:
        fut = asyncio.get_running_loop().create_future()
        futures.append(fut)
        return fut

    def settle(i: int, error: bool = False) -> None:
        fut = futures[i]
        qbroker.call_soon(
            lambda: fut.set_exception(OSError("disk gone")) if error else fut.set_result(i)
        )

    c = connect(raw, qbroker.port(), "bq-order")
    qbroker.call_soon(setattr, queues, "publish", slow)
    try:
        c.send(
            b"".join(
                encode(Publish("$queue/o/k", b"m", 1, packet_id=i + 1), MQTT_5) for i in range(5)
            )
        )
        wait_for(lambda: len(futures) == 5)
        settle(3)
        settle(1)
        c.nothing()  # the first append is not durable: nothing acknowledged yet
        settle(0)
        assert [(p.packet_id, p.reason_code) for p in (c.recv(), c.recv())] == [(1, 0), (2, 0)]
        c.nothing()
        settle(2, error=True)
        assert [(p.packet_id, p.reason_code) for p in (c.recv(), c.recv())] == [
            (3, 0x80),
            (4, 0),
        ]
        c.nothing()
        settle(4)
        p = c.recv()
        assert isinstance(p, Puback) and (p.packet_id, p.reason_code) == (5, 0)
    finally:
        qbroker.call_soon(delattr, queues, "publish")


def test_pubacks_of_one_chunk_settle_before_a_nack_and_an_unsubscribe_after_them(
    qbroker, raw, clients
):
    port = qbroker.port()
    group = Properties(user_properties=(("consumer-group", "bq-g"),))
    c = connect(raw, port, "bq-acker")
    c.send_packet(Subscribe(1, (("$queue/acks/#", SubscribeOptions(1)),), group))
    assert isinstance(c.recv(), Suback)
    pub = clients(port, "bq-pub")
    for i in range(10):
        assert pub.publish("$queue/acks/k", b"%d" % i, qos=1).is_published()
    deliveries = [c.recv() for _ in range(10)]
    assert all(isinstance(p, Publish) for p in deliveries)
    # A second consumer of the group would get every unacknowledged delivery back
    # when the first one leaves.
    other = clients(port, "bq-other")
    sub = PahoProperties(PacketTypes.SUBSCRIBE)
    sub.UserProperty = [("consumer-group", "bq-g")]
    other.subscribe("$queue/acks/#", 1, properties=sub)
    first = dict(deliveries[0].properties.user_properties)["message-id"]
    nack = Publish(
        "$queue/acks/$nack",
        b"",
        1,
        packet_id=3,
        properties=Properties(user_properties=(("message-id", first),)),
    )
    c.send(
        b"".join(encode(Puback(p.packet_id), MQTT_5) for p in deliveries)
        + encode(nack, MQTT_5)
        + encode(Unsubscribe(2, ("$queue/acks/#",)), MQTT_5)
    )
    answer = c.recv()  # the nack comes after the PUBACK: nothing left to nack
    assert isinstance(answer, Puback) and (answer.packet_id, answer.reason_code) == (3, 0x80)
    assert isinstance(c.recv(), Unsuback)
    qbroker.call(qbroker.context.queues.wait_idle())
    other.nothing()
    groups = qbroker.call_soon(lambda: qbroker.context.queues.info("acks").groups)
    assert [(g.name, g.pending) for g in groups] == [("bq-g", 0)]
