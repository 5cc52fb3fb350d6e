"""What the API appends MQTT ``$queue/`` consumers get, and what MQTT publishes the
API's ConsumeQueue stream gets, and the same with AMQP 0.9.1 (pika): one
core queue manager behind every face. Also the
``[auth] anonymous = "local"`` default: a loopback caller needs no credentials."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from fluxmq_queue_api.client import QueueClient
from fluxmq_queue_api.testing import TOKEN, grpc_target

from fluxmq_core.testing.broker import BrokerThread

WAIT = 10.0


@pytest.fixture
def mqtt_client(broker: BrokerThread) -> Iterator[mqtt.Client]:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="xp", protocol=mqtt.MQTTv5)
    connected = threading.Event()
    c.on_connect = lambda *a: connected.set()
    c.connect(*broker.address("mqtt.tcp"))
    c.loop_start()
    assert connected.wait(WAIT)
    yield c
    c.disconnect()
    c.loop_stop()


async def test_api_append_reaches_mqtt_queue_consumer(
    broker: BrokerThread, mqtt_client: mqtt.Client
) -> None:
    got: list[mqtt.MQTTMessage] = []
    arrived = threading.Event()
    subscribed = threading.Event()

    def on_message(_c, _u, msg) -> None:
        got.append(msg)
        arrived.set()

    mqtt_client.on_message = on_message
    mqtt_client.on_subscribe = lambda *a: subscribed.set()
    async with QueueClient(grpc_target(broker), token=TOKEN) as admin:
        await admin.create_queue("xp-out")
    async with QueueClient(grpc_target(broker)) as qc:  # anonymous from loopback
        mqtt_client.subscribe("$queue/xp-out/#", qos=1)
        assert await asyncio.to_thread(subscribed.wait, WAIT)
        await qc.append("xp-out", b"from-api", key="eu/de", headers={"trace": b"t1"})
        assert await asyncio.to_thread(arrived.wait, WAIT)
    msg = got[0]
    assert (msg.topic, msg.payload) == ("$queue/xp-out/eu/de", b"from-api")
    props = dict(msg.properties.UserProperty)
    assert props["trace"] == "t1" and props["queue"] == "xp-out"


async def test_mqtt_publish_reaches_consume_queue_stream(
    broker: BrokerThread, mqtt_client: mqtt.Client
) -> None:
    async with QueueClient(grpc_target(broker), token=TOKEN) as admin:
        await admin.create_queue("xp-in")
    async with QueueClient(grpc_target(broker)) as qc:
        stream = qc.consume_queue("xp-in", "workers", "w1")
        first = asyncio.ensure_future(anext(stream))
        info = mqtt_client.publish("$queue/xp-in/jobs/1", b"from-mqtt", qos=1)
        await asyncio.to_thread(info.wait_for_publish, WAIT)
        m = await asyncio.wait_for(first, WAIT)
        assert (m.key, m.value) == (b"jobs/1", b"from-mqtt")
        ack = await qc.ack("xp-in", "workers", "w1", [m.offset])
        assert ack.acked_count == 1
        await stream.aclose()


def test_amqp_consumer_gets_api_appends_and_api_reads_amqp_publishes(
    amqp_broker: BrokerThread,
) -> None:
    pika = pytest.importorskip("pika")
    host, port = amqp_broker.address("amqp091.bind")

    async def api_append() -> int:
        async with QueueClient(grpc_target(amqp_broker), token=TOKEN) as qc:
            await qc.create_queue("xp-amqp")
            return (await qc.append("xp-amqp", b"from-api")).offset

    asyncio.run(api_append())
    conn = pika.BlockingConnection(pika.ConnectionParameters(host, port))
    try:
        ch = conn.channel()
        ch.queue_declare("xp-amqp", passive=True)
        method, _props, body = ch.basic_get("xp-amqp", auto_ack=False)
        assert method is not None and body == b"from-api"
        ch.basic_ack(method.delivery_tag)
        ch.basic_publish("", "xp-amqp", b"from-amqp")
        conn.process_data_events(0)
        ch.queue_declare("xp-amqp", passive=True)  # a round trip: the publish is in
    finally:
        conn.close()

    async def api_read() -> list[bytes]:
        async with QueueClient(grpc_target(amqp_broker), token=TOKEN) as qc:
            batch = await qc.read_batch("xp-amqp", 0)
            return [m.value for m in batch.messages]

    assert asyncio.run(api_read()) == [b"from-api", b"from-amqp"]


@pytest.fixture(scope="module")
def amqp_broker() -> Iterator[BrokerThread]:
    pytest.importorskip("fluxmq_amqp091")
    with BrokerThread(
        plugins=["amqp091", "queue_api"], config={"http": {"admin_token": TOKEN}}
    ) as b:
        yield b
