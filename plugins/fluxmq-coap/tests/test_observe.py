"""Observe as subscribe: wildcard filters (percent-encoded in the path), retained
messages first, increasing Observe numbers, Content-Format mapped back from the
message's content type, deregistration, MQTT -> CoAP, and `$queue/` consumers."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import aiocoap
import pytest
from aiocoap.numbers.codes import Code
from fluxmq_coap.testing import WAIT, coap_url, until

from fluxmq_core.message import Message


def publish(broker: Any, topic: str, payload: bytes, **kw: Any) -> None:
    """Publish from inside the broker (as any protocol would)."""
    broker.call_soon(broker.context.publish, Message(topic, payload, **kw))


def observers(broker: Any) -> int:
    return len(broker.context.extras["coap"].observers)


class Observation:
    """An aiocoap observation whose every notification is kept (aiocoap's async
    iterator keeps only the latest state, as RFC 7641 allows a client to)."""

    def __init__(self, request: Any) -> None:
        self.request = request
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        with warnings.catch_warnings():  # the callbacks are deprecated, not lossy
            warnings.simplefilter("ignore", DeprecationWarning)
            request.observation.register_callback(self.queue.put_nowait)
            request.observation.register_errback(self.queue.put_nowait)

    async def next(self) -> Any:
        return await asyncio.wait_for(self.queue.get(), WAIT)

    def cancel(self) -> None:
        self.request.observation.cancel()


async def observe(client: aiocoap.Context, broker: Any, path: str) -> tuple[Observation, Any]:
    msg = aiocoap.Message(code=Code.GET, uri=coap_url(broker, path), observe=0)
    request = client.request(msg)
    obs = Observation(request)
    first = await asyncio.wait_for(request.response, WAIT)
    return obs, first


async def test_observe_wildcard_gets_retained_first_then_live(client, coap_broker):
    publish(coap_broker, "obs/a/t", b"r-a", retain=True, content_type="application/json")
    publish(coap_broker, "obs/b/t", b"r-b", retain=True)
    request, first = await observe(client, coap_broker, "/ps/obs/%2B/t")
    assert first.code == Code.CONTENT and first.opt.observe is not None
    second = await request.next()
    assert sorted([first.payload, second.payload]) == [b"r-a", b"r-b"]
    json_one = first if first.payload == b"r-a" else second
    assert json_one.opt.content_format == 50
    for i in range(5):
        publish(coap_broker, f"obs/c{i}/t", f"live{i}".encode())
    publish(coap_broker, "obs/c/other", b"not matched")
    got = [await request.next() for _ in range(5)]
    assert [m.payload for m in got] == [f"live{i}".encode() for i in range(5)]
    numbers = [second.opt.observe] + [m.opt.observe for m in got]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    request.cancel()


async def test_observe_hash_filter_without_retained_answers_empty_first(client, coap_broker):
    request, first = await observe(client, coap_broker, "/ps/obs2/%23")
    assert first.code == Code.CONTENT and first.payload == b""
    sessions = coap_broker.context.sessions.list(protocol="coap")
    assert any("obs2/#" in s.subscriptions for s in sessions)
    publish(coap_broker, "obs2/x/y", b"deep")
    n = await request.next()
    assert n.payload == b"deep"
    request.cancel()


async def test_cancelled_observation_is_removed(client, coap_broker):
    before = observers(coap_broker)
    request, _first = await observe(client, coap_broker, "/ps/obs3/t")
    assert observers(coap_broker) == before + 1
    request.cancel()
    # aiocoap forgets the token locally and ignores NON notifications; the n-th
    # notification is CON (coap.notify_con_every, 8 by default), which it answers
    # with RST: that deregisters (RFC 7641 3.6).
    for i in range(8):
        publish(coap_broker, "obs3/t", b"after cancel %d" % i)
    assert await until(lambda: observers(coap_broker) == before)


async def test_bad_filter_and_forbidden_queue_name(client, coap_broker):
    _r, first = await observe(client, coap_broker, "/ps/a/%23/b")
    assert first.code == Code.BAD_REQUEST
    _r, first = await observe(client, coap_broker, "/ps/$queue/%2B/x")
    assert first.code == Code.BAD_REQUEST


async def test_large_notification_is_block_wise(client, coap_broker):
    big = bytes(range(256)) * 12  # 3072 bytes: more than one block
    request, _first = await observe(client, coap_broker, "/ps/obsbig/t")
    publish(coap_broker, "obsbig/t", big)
    n = await request.next()
    assert n.payload == big
    request.cancel()


async def test_queue_consumer_via_observe_acks_with_the_con_ack(client, coap_broker):
    queues = coap_broker.context.queues
    coap_broker.call_soon(queues.declare, "coapobsq")
    request, first = await observe(client, coap_broker, "/ps/$queue/coapobsq/%23")
    assert first.code == Code.CONTENT
    for i in range(3):
        publish(coap_broker, f"$queue/coapobsq/k{i}", f"q{i}".encode())
    got = [await request.next() for _ in range(3)]
    assert sorted(m.payload for m in got) == [b"q0", b"q1", b"q2"]
    # Every delivery was a CON notification: aiocoap ACKed each, which acks the queue.
    assert await until(lambda: coap_broker.call_soon(lambda: queues.ready_count("coapobsq")) == 0)
    request.cancel()


def test_mqtt_publish_reaches_coap_observer(coap_broker):
    mqtt = pytest.importorskip("paho.mqtt.client")
    if "mqtt.tcp" not in coap_broker.context.bound:
        pytest.skip("the fluxmq-mqtt plugin is not installed")
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    async def run() -> Any:
        ctx = await aiocoap.Context.create_client_context(transports=["udp6"])
        try:
            request, _first = await observe(ctx, coap_broker, "/ps/m2c/%2B")
            c = mqtt.Client(
                mqtt.CallbackAPIVersion.VERSION2, client_id="paho-m2c", protocol=mqtt.MQTTv5
            )
            c.connect("127.0.0.1", coap_broker.port("mqtt.tcp"))
            c.loop_start()
            try:
                props = Properties(PacketTypes.PUBLISH)
                props.ContentType = "application/json"
                c.publish("m2c/t", b'{"v":1}', qos=1, properties=props).wait_for_publish(WAIT)
                n = await request.next()
            finally:
                c.loop_stop()
                c.disconnect()
            request.cancel()
            return n
        finally:
            await ctx.shutdown()

    n = asyncio.run(run())
    assert n.payload == b'{"v":1}' and n.opt.content_format == 50
