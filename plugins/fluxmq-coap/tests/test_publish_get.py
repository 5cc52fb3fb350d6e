"""Publishing over CoAP (POST/PUT /ps/<topic>, the Go FluxMQ's paths), retained
GET/DELETE, discovery and health, with aiocoap's client over real UDP."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiocoap
import pytest
from aiocoap.numbers.codes import Code
from fluxmq_coap.testing import WAIT, Collector, coap_url

from fluxmq_core.queues.manager import QueueManager


async def req(client: aiocoap.Context, broker: Any, code: Code, path: str, **kw: Any) -> Any:
    msg = aiocoap.Message(code=code, uri=coap_url(broker, path), **kw)
    return await asyncio.wait_for(client.request(msg).response, WAIT)


def collect(broker: Any, topic_filter: str) -> Collector:
    c = Collector()
    broker.call_soon(broker.context.router.subscribe, c, topic_filter)
    return c


async def test_post_publishes_with_content_type_and_origin(client, coap_broker):
    got = collect(coap_broker, "pub/json")
    r = await req(
        client, coap_broker, Code.POST, "/ps/pub/json", payload=b'{"a":1}', content_format=50
    )
    assert r.code == Code.CHANGED
    (m,) = got.wait(1)
    assert m.payload == b'{"a":1}'
    assert m.content_type == "application/json"
    assert m.origin_protocol == "coap"
    assert m.origin_client.startswith("coap:127.0.0.1:")
    assert m.qos == 0 and not m.retain


async def test_put_with_qos_retain_and_client_id(client, coap_broker):
    got = collect(coap_broker, "pub/put")
    r = await req(
        client, coap_broker, Code.PUT, "/ps/pub/put?qos=1&retain=true&client_id=dev1", payload=b"v"
    )
    assert r.code == Code.CHANGED
    (m,) = got.wait(1)
    assert (m.qos, m.retain, m.origin_client, m.content_type) == (1, True, "dev1", None)
    r = await req(client, coap_broker, Code.GET, "/ps/pub/put")
    assert (r.code, r.payload) == (Code.CONTENT, b"v")
    assert r.opt.content_format is None


@pytest.mark.parametrize("qos", [0, 1, 2])
async def test_qos_query_sets_the_messages_qos(client, coap_broker, qos):
    got = collect(coap_broker, f"pub/qos{qos}")
    path = f"/ps/pub/qos{qos}?qos={qos}"
    r = await req(client, coap_broker, Code.POST, path, payload=b"q")
    assert r.code == Code.CHANGED
    (m,) = got.wait(1)
    assert (m.qos, m.retain, m.payload) == (qos, False, b"q")


@pytest.mark.parametrize("path", ["/compat/a", "/mqtt/publish/compat/a"])
async def test_go_compatible_paths_publish(client, coap_broker, path):
    got = collect(coap_broker, "compat/a")
    r = await req(client, coap_broker, Code.POST, path, payload=b"go")
    assert r.code == Code.CHANGED
    assert got.wait(1)[0].payload == b"go"
    r = await req(client, coap_broker, Code.GET, path)
    assert r.code == Code.METHOD_NOT_ALLOWED
    assert b"/ps/" in r.payload


@pytest.mark.parametrize(
    "path, needle",
    [
        ("/ps/a/+", b"wildcards"),
        ("/ps/a/%23", b"wildcards"),
        ("/ps/x?qos=3", b"qos"),
        ("/ps/x?retian=true", b"unknown query parameter"),
        ("/ps/x?retain=maybe", b"retain"),
        ("/ps/x?qos=1&qos=0", b"twice"),
    ],
)
async def test_bad_publish_is_4_00_with_a_reason(client, coap_broker, path, needle):
    r = await req(client, coap_broker, Code.POST, path, payload=b"x")
    assert r.code == Code.BAD_REQUEST
    assert needle in r.payload


async def test_retained_get_and_delete(client, coap_broker):
    r = await req(client, coap_broker, Code.GET, "/ps/ret/none")
    assert r.code == Code.NOT_FOUND
    r = await req(
        client, coap_broker, Code.POST, "/ps/ret/t?retain", payload=b"27.5", content_format=0
    )
    assert r.code == Code.CHANGED
    r = await req(client, coap_broker, Code.GET, "/ps/ret/t")
    assert (r.code, r.payload, r.opt.content_format) == (Code.CONTENT, b"27.5", 0)
    r = await req(client, coap_broker, Code.DELETE, "/ps/ret/t")
    assert r.code == Code.DELETED
    r = await req(client, coap_broker, Code.GET, "/ps/ret/t")
    assert r.code == Code.NOT_FOUND
    r = await req(client, coap_broker, Code.GET, "/ps/ret/%2B")
    assert r.code == Code.BAD_REQUEST and b"Observe" in r.payload


async def test_unknown_content_format_round_trips_by_number(client, coap_broker):
    await req(
        client, coap_broker, Code.POST, "/ps/cf/x?retain", payload=b"\x01", content_format=65000
    )
    r = await req(client, coap_broker, Code.GET, "/ps/cf/x")
    assert r.opt.content_format == 65000


async def test_health_and_well_known_core(client, coap_broker):
    r = await req(client, coap_broker, Code.GET, "/health")
    assert r.code == Code.CONTENT and json.loads(r.payload) == {"status": "ok"}
    r = await req(client, coap_broker, Code.GET, "/.well-known/core")
    assert r.code == Code.CONTENT and r.opt.content_format == 40
    text = r.payload.decode()
    assert '</ps>;rt="core.ps"' in text and "</health>" in text
    r = await req(client, coap_broker, Code.POST, "/health")
    assert r.code == Code.METHOD_NOT_ALLOWED


async def test_not_built_methods_say_so(client, coap_broker):
    r = await req(client, coap_broker, Code.FETCH, "/ps/a")
    assert r.code == Code.NOT_IMPLEMENTED and b"not implemented" in r.payload
    r = await req(client, coap_broker, Code.POST, "/ps")
    assert r.code == Code.NOT_IMPLEMENTED


async def test_con_publish_to_queue_answers_after_durable_append(client, coap_broker):
    queues = coap_broker.context.queues
    name = "coapq1"
    coap_broker.call_soon(queues.declare, name)
    r = await req(client, coap_broker, Code.POST, f"/ps/$queue/{name}/k?qos=1", payload=b"d")
    assert r.code == Code.CHANGED
    # The answer came after the append: the message is already in the queue.
    assert coap_broker.call_soon(lambda: queues.info(name).depth) == 1


async def test_failed_queue_append_is_an_error_answer(client, coap_broker, monkeypatch):
    real = QueueManager.append

    def append(self: QueueManager, queue: str, message: Any) -> asyncio.Future[int]:
        if queue != "coapfail":
            return real(self, queue, message)
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        fut.set_exception(OSError("injected: disk full"))
        return fut

    monkeypatch.setattr(QueueManager, "append", append)
    coap_broker.call_soon(coap_broker.context.queues.declare, "coapfail")
    r = await req(client, coap_broker, Code.POST, "/ps/$queue/coapfail/k?qos=1", payload=b"d")
    assert r.code == Code.INTERNAL_SERVER_ERROR and b"disk full" in r.payload


async def test_unknown_queue_refused_when_auto_create_is_off(client, fluxmq_broker_factory):
    from fluxmq_coap.testing import broker_plugins

    b = fluxmq_broker_factory(
        plugins=broker_plugins(), config={"queue_manager": {"auto_create": "none"}}
    )
    r = await req(client, b, Code.POST, "/ps/$queue/nosuch/k", payload=b"d")
    assert r.code == Code.NOT_FOUND


def test_cross_protocol_coap_to_paho_mqtt(coap_broker):
    mqtt = pytest.importorskip("paho.mqtt.client")
    if "mqtt.tcp" not in coap_broker.context.bound:
        pytest.skip("the fluxmq-mqtt plugin is not installed")
    import queue as q

    got: q.Queue[Any] = q.Queue()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-coap")
    c.on_message = lambda _c, _u, m: got.put(m)
    subscribed = q.Queue()  # type: ignore[var-annotated]
    c.on_subscribe = lambda *a: subscribed.put(1)
    c.connect("127.0.0.1", coap_broker.port("mqtt.tcp"))
    c.loop_start()
    try:
        c.subscribe("x/coap/#", qos=1)
        subscribed.get(timeout=WAIT)

        async def send() -> Any:
            ctx = await aiocoap.Context.create_client_context(transports=["udp6"])
            try:
                return await req(
                    ctx,
                    coap_broker,
                    Code.POST,
                    "/ps/x/coap/t?qos=1",
                    payload=b"hello",
                    content_format=50,
                )
            finally:
                await ctx.shutdown()

        assert asyncio.run(send()).code == Code.CHANGED
        m = got.get(timeout=WAIT)
        assert (m.topic, m.payload, m.qos) == ("x/coap/t", b"hello", 1)
    finally:
        c.loop_stop()
        c.disconnect()
