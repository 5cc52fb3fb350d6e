"""fluxmq_client against our broker (in-process, real sockets) and Mosquitto."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from fluxmq_client import (
    MQTT_3_1_1,
    Client,
    ConnectError,
    InvalidURL,
    Properties,
    client_from_options,
    parse_url,
)

from fluxmq_core.testing.tls import make_test_certs

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


@pytest.fixture
def broker(fluxmq_broker_factory):
    return fluxmq_broker_factory(plugins=["mqtt"])


@pytest.mark.parametrize("version", [5, MQTT_3_1_1])
async def test_qos_0_1_2_round_trip(broker, version):
    async with Client("127.0.0.1", broker.port(), version=version) as c:
        sub = await c.subscribe("t/#", qos=2)
        for qos in (0, 1, 2):
            assert await c.publish("t/x", f"m{qos}", qos=qos) == 0
            m = await sub.get(5)
            assert (m.topic, m.payload, m.qos) == ("t/x", f"m{qos}".encode(), qos)


async def test_typed_properties_and_request_response(broker):
    async with (
        Client("127.0.0.1", broker.port()) as server,
        Client("127.0.0.1", broker.port()) as caller,
    ):
        requests = await server.subscribe("svc/echo", qos=1)

        async def serve() -> None:
            req = await requests.get(5)
            assert req.properties is not None and req.properties.response_topic
            await server.respond(req, req.payload.upper())

        task = asyncio.create_task(serve())
        reply = await caller.request("svc/echo", "ping", timeout=5)
        await task
        assert reply.payload == b"PING"
        sub = await caller.subscribe("p/x", qos=1)
        props = Properties(content_type="text/plain", user_properties=(("k", "v"),))
        await caller.publish("p/x", "y", qos=1, properties=props)
        m = await sub.get(5)
        assert m.properties.content_type == "text/plain"
        assert m.user_properties == {"k": "v"}


async def test_queue_publish_consume_ack_nack_reject(broker):
    async with Client("127.0.0.1", broker.port()) as c:
        consumer = c.consume("jobs", group="workers")
        first = asyncio.ensure_future(consumer.__anext__())
        await asyncio.sleep(0)  # subscribe goes out before the publish
        for body in ("a", "b"):
            await c.publish_to_queue("jobs", body, key="eu")
        m = await asyncio.wait_for(first, 5)
        assert (m.message_id, m.offset, m.delivery_count, m.group) == ("jobs:0", 0, 1, "workers")
        assert m.routing_key == "eu"
        await m.nack(delay=0)
        seen = {}
        while len(seen) < 2:
            nxt = await asyncio.wait_for(consumer.__anext__(), 5)
            seen[nxt.offset] = nxt
            if nxt.offset == 1:
                await nxt.reject("bad")
            else:
                await nxt.ack()
        assert seen[0].delivery_count == 2
        await consumer.aclose()
    async with Client("127.0.0.1", broker.port()) as c:
        sub = await c.subscribe("$dlq/jobs/#", qos=1)
        dead = await sub.get(5)
        assert dead.payload == b"b"


async def test_reconnect_after_restart_resumes_session_without_qos1_loss(
    fluxmq_broker_factory,
):
    broker = fluxmq_broker_factory(plugins=["mqtt"])
    port = broker.port()
    async with (
        Client(
            "127.0.0.1",
            port,
            client_id="resumer",
            clean_start=False,
            session_expiry=3600,
            reconnect_delay=0.05,
        ) as c,
        Client("127.0.0.1", port, client_id="pub", reconnect_delay=0.05) as p,
    ):
        sub = await c.subscribe("r/#", qos=1)
        await p.publish("r/1", "before", qos=1)
        assert (await sub.get(5)).payload == b"before"
        await asyncio.to_thread(broker.restart)
        # Published while the subscriber may still be reconnecting: kept by the session.
        await asyncio.wait_for(p.publish("r/2", "after", qos=1), 20)
        got = await sub.get(20)
        assert got.payload == b"after"
        assert c.reconnects >= 1 and p.in_flight == 0


async def test_tls_and_websocket(fluxmq_broker_factory, tmp_path):
    certs = make_test_certs(tmp_path)
    broker = fluxmq_broker_factory(
        plugins=["mqtt"],
        config={
            "mqtt": {
                "tls_cert": certs["server.pem"],
                "tls_key": certs["server.key"],
                "tls": "127.0.0.1:0",
                "websocket": "127.0.0.1:0",
                "wss": "127.0.0.1:0",
            }
        },
    )
    urls = [
        f"mqtts://127.0.0.1:{broker.port('mqtt.tls')}",
        f"ws://127.0.0.1:{broker.port('mqtt.websocket')}/mqtt",
        f"wss://127.0.0.1:{broker.port('mqtt.wss')}/mqtt",
    ]
    for url in urls:
        c = client_from_options(url, cafile=certs["ca.pem"])
        async with c:
            sub = await c.subscribe("s/x", qos=1)
            await c.publish("s/x", url, qos=1)
            assert (await sub.get(5)).payload == url.encode()
    bad = client_from_options(urls[0])  # the system CAs do not know our test CA
    with pytest.raises(ConnectError, match="TLS failure"):
        await bad.connect()


async def test_bad_input_names_the_failure():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectError, match="connection refused"):
        await Client("127.0.0.1", port, reconnect=False).connect()
    with pytest.raises(InvalidURL, match="scheme"):
        parse_url("http://x")
    with pytest.raises(InvalidURL, match="bad broker URL"):
        parse_url("mqtt://host:notaport")


async def test_not_authorized_has_the_reason_code(fluxmq_broker_factory, tmp_path):
    pw = tmp_path / "passwd"
    pw.write_text("")
    broker = fluxmq_broker_factory(
        plugins=["mqtt"], config={"auth": {"anonymous": False, "password_file": str(pw)}}
    )
    with pytest.raises(ConnectError) as info:
        await Client("127.0.0.1", broker.port(), username="x", password="y").connect()
    assert info.value.reason_code in (0x86, 0x87)
    assert "refused" in str(info.value)


@pytest.fixture
def mosquitto(tmp_path):
    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = tmp_path / "m.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(10)


@pytest.mark.parametrize("version", [5, MQTT_3_1_1])
async def test_against_mosquitto(mosquitto, version):
    async with Client("127.0.0.1", mosquitto, version=version) as c:
        sub = await c.subscribe("m/#", qos=2)
        for qos in (0, 1, 2):
            await c.publish("m/x", f"q{qos}", qos=qos, retain=qos == 2)
            assert (await sub.get(5)).payload == f"q{qos}".encode()
        if version == 5:
            reply = asyncio.create_task(c.request("m/req", "hi", timeout=5))
            req = await sub.get(5)
            await c.respond(req, "ho")
            assert (await reply).payload == b"ho"
