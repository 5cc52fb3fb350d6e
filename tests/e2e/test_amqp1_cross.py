"""Cross-plugin: AMQP 1.0 (Qpid Proton) with MQTT 5 (paho-mqtt) and AMQP 0.9.1 (pika)
through the core router and queue manager, both ways, and the AMQP port (plain and
TLS) shared by the two AMQP plugins. Waits are bounded."""

from __future__ import annotations

import queue
import uuid
from typing import Any

import pika
import pytest

from fluxmq_core.testing.tls import make_test_certs

pytest.importorskip("fluxmq_amqp1")
from proton import Message, SSLDomain  # noqa: E402
from proton.utils import BlockingConnection  # noqa: E402

WAIT = 5.0


@pytest.fixture(scope="module")
def certs(tmp_path_factory: Any) -> dict[str, str]:
    return make_test_certs(tmp_path_factory.mktemp("amqp1-cross-certs"))


def _domain(certs: dict[str, str]) -> SSLDomain:
    d = SSLDomain(SSLDomain.MODE_CLIENT)
    d.set_trusted_ca_db(certs["ca.pem"])
    d.set_peer_authentication(SSLDomain.VERIFY_PEER_NAME)
    return d


def test_mqtt_and_amqp1_cross(fluxmq_broker_factory: Any) -> None:
    pytest.importorskip("fluxmq_mqtt")
    import paho.mqtt.client as mqtt

    broker = fluxmq_broker_factory(plugins=["amqp1", "mqtt"])
    conn = BlockingConnection(f"amqp://127.0.0.1:{broker.port('amqp1.bind')}", timeout=WAIT)
    got: queue.Queue[Any] = queue.Queue()
    subacks: queue.Queue[Any] = queue.Queue()
    client = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5
    )
    client.on_message = lambda _c, _u, m: got.put(m)
    client.on_subscribe = lambda *a: subacks.put(a)
    client.connect("127.0.0.1", broker.port("mqtt.tcp"))
    client.loop_start()
    try:
        base = uuid.uuid4().hex[:8]
        r = conn.create_receiver(f"topic/{base}/from-mqtt", credit=5)
        client.subscribe(f"{base}/from-amqp", qos=1)
        subacks.get(timeout=WAIT)
        client.publish(f"{base}/from-mqtt", b"hello amqp", qos=1).wait_for_publish(WAIT)
        m = r.receive(timeout=WAIT)
        r.accept()
        assert m.body == b"hello amqp" and m.address == f"topic/{base}/from-mqtt"
        conn.create_sender(f"topic/{base}/from-amqp").send(
            Message(body=b"hello mqtt", content_type="text/plain", properties={"k": "v"})
        )
        pm = got.get(timeout=WAIT)
        assert pm.payload == b"hello mqtt" and pm.topic == f"{base}/from-amqp"
        assert (
            pm.properties.ContentType == "text/plain" and ("k", "v") in pm.properties.UserProperty
        )
    finally:
        client.loop_stop()
        client.disconnect()
        conn.close()


def test_shares_its_port_with_amqp091(fluxmq_broker_factory: Any) -> None:
    pytest.importorskip("fluxmq_amqp091")
    broker = fluxmq_broker_factory(plugins=["amqp1", "amqp091"])
    port = broker.port("amqp1.bind")
    assert broker.port("amqp091.bind") == port
    conn = BlockingConnection(f"amqp://127.0.0.1:{port}", timeout=WAIT)
    p = pika.BlockingConnection(
        pika.ConnectionParameters(
            "127.0.0.1", port, socket_timeout=WAIT, blocked_connection_timeout=WAIT
        )
    )
    try:
        ch = p.channel()
        ch.queue_declare("shared-port-q")
        # AMQP 1.0 publishes into the queue AMQP 0.9.1 declared and consumes.
        conn.create_sender("$queue/shared-port-q").send(Message(body=b"from 1.0"))
        got = None
        for method, _props, body in ch.consume("shared-port-q", inactivity_timeout=WAIT):
            got = body
            ch.basic_ack(method.delivery_tag)
            break
        ch.cancel()
        assert got == b"from 1.0"
    finally:
        p.close()
        conn.close()


def test_shares_its_tls_port_with_amqp091(
    fluxmq_broker_factory: Any, certs: dict[str, str]
) -> None:
    """Both AMQP plugins with the same tls_* keys on one tls_bind: one TLS socket,
    the protocol header (inside TLS) picks the protocol."""
    pytest.importorskip("fluxmq_amqp091")
    import socket
    import ssl

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    tls = {"tls_bind": address, "tls_cert": certs["server.pem"], "tls_key": certs["server.key"]}
    broker = fluxmq_broker_factory(
        plugins=["amqp1", "amqp091"], config={"amqp1": dict(tls), "amqp091": dict(tls)}
    )
    port = broker.port("amqp1.tls_bind")
    assert broker.port("amqp091.tls_bind") == port
    conn = BlockingConnection(
        f"amqps://127.0.0.1:{port}",
        ssl_domain=_domain(certs),
        virtual_host="localhost",
        allowed_mechs="ANONYMOUS",
        timeout=WAIT,
    )
    client_ctx = ssl.create_default_context(cafile=certs["ca.pem"])
    p = pika.BlockingConnection(
        pika.ConnectionParameters(
            "127.0.0.1",
            port,
            ssl_options=pika.SSLOptions(client_ctx, "localhost"),
            socket_timeout=WAIT,
            blocked_connection_timeout=WAIT,
        )
    )
    try:
        ch = p.channel()
        ch.queue_declare("shared-tls-q")
        conn.create_sender("$queue/shared-tls-q").send(Message(body=b"over TLS"))
        got = None
        for method, _props, body in ch.consume("shared-tls-q", inactivity_timeout=WAIT):
            got = body
            ch.basic_ack(method.delivery_tag)
            break
        ch.cancel()
        assert got == b"over TLS"
    finally:
        p.close()
        conn.close()


def test_amqp091_to_amqp1_and_back(fluxmq_broker_factory: Any) -> None:
    """pika publishes to a queue an AMQP 1.0 receiver consumes (headers become
    application properties) and consumes what an AMQP 1.0 sender appended
    (application properties become headers)."""
    pytest.importorskip("fluxmq_amqp091")
    broker = fluxmq_broker_factory(plugins=["amqp1", "amqp091"])
    port = broker.port("amqp1.bind")
    conn = BlockingConnection(f"amqp://127.0.0.1:{port}", timeout=WAIT)
    p = pika.BlockingConnection(
        pika.ConnectionParameters(
            "127.0.0.1", port, socket_timeout=WAIT, blocked_connection_timeout=WAIT
        )
    )
    try:
        ch = p.channel()
        ch.queue_declare("x091-to-1")
        ch.confirm_delivery()
        ch.basic_publish(
            "",
            "x091-to-1",
            b"from 0.9.1",
            pika.BasicProperties(
                content_type="text/plain", correlation_id="c-1", headers={"k": "v"}
            ),
        )
        r = conn.create_receiver("$queue/x091-to-1", credit=5)
        m = r.receive(timeout=WAIT)
        r.accept()
        assert m.body == b"from 0.9.1" and m.content_type == "text/plain"
        assert m.correlation_id == "c-1" and m.properties["k"] == "v"
        # and back: an AMQP 1.0 sender appends, AMQP 0.9.1 consumes
        ch.queue_declare("x1-to-091")
        conn.create_sender("$queue/x1-to-091").send(
            Message(body=b"from 1.0", properties={"k": "w"}, correlation_id="c-2")
        )
        got = None
        for method, props, body in ch.consume("x1-to-091", inactivity_timeout=WAIT):
            got = (body, props.headers.get("k"), props.correlation_id)
            ch.basic_ack(method.delivery_tag)
            break
        ch.cancel()
        assert got == (b"from 1.0", "w", "c-2")
    finally:
        p.close()
        conn.close()


def test_port_sharing_predicates_are_complements() -> None:
    """Exactly one of the two AMQP plugins claims each AMQP greeting."""
    pytest.importorskip("fluxmq_amqp091")
    from fluxmq_amqp091.codec import is_amqp091
    from fluxmq_amqp1.codec.frames import is_amqp1

    for head in (
        b"AMQP\x00\x01\x00\x00",
        b"AMQP\x03\x01\x00\x00",
        b"AMQP\x00\x00\x09\x01",
        b"AMQP\x02\x01\x00\x00",
        b"AMQP\x01\x01\x00\x00",
    ):
        assert bool(is_amqp1(head)) != bool(is_amqp091(head)), head
