"""Cross-plugin: W3C trace context through AMQP 1.0 application properties with the
otel plugin tracing (SDK in-memory exporter): a Qpid Proton sender's
``traceparent`` is the parent of the broker's publish span, and AMQP 1.0 and MQTT 5
receivers get the broker's span as theirs; an MQTT 5 publisher's trace reaches an
AMQP 1.0 receiver as application properties. The broker's spans form the tree
publish -> route -> deliver, one deliver span per receiver. Waits are bounded."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from fluxmq_core.testing.broker import BrokerThread
from tests.e2e._cluster import close, mqtt_client

pytest.importorskip("fluxmq_amqp1")
pytest.importorskip("fluxmq_otel")
pytest.importorskip("fluxmq_mqtt")
proton = pytest.importorskip("proton")

from fluxmq_otel.testing import PARENT_ID, TRACE_ID, TRACEPARENT, traced_broker  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from proton.utils import BlockingConnection  # noqa: E402

WAIT = 10.0


@pytest.fixture(scope="module")
def traced() -> Iterator[tuple[BrokerThread, InMemorySpanExporter]]:
    with traced_broker(["amqp1", "mqtt", "otel"]) as pair:
        yield pair


@pytest.fixture
def amqp(traced: Any) -> Iterator[BlockingConnection]:
    b, _ = traced
    conn = BlockingConnection(f"amqp://127.0.0.1:{b.port('amqp1.bind')}", timeout=WAIT)
    yield conn
    conn.close()


@pytest.fixture
def mqtt5(traced: Any) -> Iterator[Any]:
    b, _ = traced
    c = mqtt_client(("127.0.0.1", b.port("mqtt.tcp")), WAIT)
    yield c
    close([c])


def publish_span(exporter: InMemorySpanExporter, topic: str) -> Any:
    spans = [
        s
        for s in exporter.get_finished_spans()
        if s.name == "publish" and s.attributes.get("messaging.destination.name") == topic
    ]
    assert len(spans) == 1, spans
    return spans[0]


def deliver_spans(exporter: InMemorySpanExporter, publish: Any) -> list[Any]:
    """The route span under ``publish`` and the deliver spans under it, checked as a
    tree; returns the deliver spans."""
    spans = [
        s for s in exporter.get_finished_spans() if s.context.trace_id == publish.context.trace_id
    ]
    routes = [s for s in spans if s.name == "route" and s.parent.span_id == publish.context.span_id]
    assert len(routes) == 1, spans
    delivers = [s for s in spans if s.name == "deliver"]
    assert all(d.parent.span_id == routes[0].context.span_id for d in delivers)
    assert routes[0].attributes["fluxmq.deliveries"] == len(delivers)
    return delivers


def test_amqp1_to_amqp1_and_mqtt_carries_the_trace(traced: Any, amqp: Any, mqtt5: Any) -> None:
    _, exporter = traced
    exporter.clear()
    receiver = amqp.create_receiver("topic/tr1/a", credit=5)
    mqtt5.subscribe("tr1/a", 1)
    mqtt5.acks.get(timeout=WAIT)
    amqp.create_sender("topic/tr1/a").send(
        proton.Message(body="hi", properties={"traceparent": TRACEPARENT, "app": "x"})
    )
    got = receiver.receive(timeout=WAIT)
    receiver.accept()
    publish = publish_span(exporter, "tr1/a")
    assert publish.context.trace_id == int(TRACE_ID, 16)
    assert publish.parent is not None and publish.parent.span_id == int(PARENT_ID, 16)
    assert publish.attributes["fluxmq.protocol"] == "amqp1"
    # the AMQP 1.0 receiver: the broker's span as parent, other properties kept
    _v, trace_id, parent_id, flags = got.properties["traceparent"].split("-")
    assert trace_id == TRACE_ID and int(parent_id, 16) == publish.context.span_id
    assert flags == "01" and got.properties["app"] == "x" and got.body == "hi"
    # the MQTT 5 subscriber: the same, as user properties
    m = mqtt5.got.get(timeout=WAIT)
    user = dict(getattr(m.properties, "UserProperty", []) or [])
    assert user["traceparent"] == got.properties["traceparent"]
    delivers = deliver_spans(exporter, publish)
    assert sorted(d.attributes["fluxmq.protocol"] for d in delivers) == ["amqp1", "mqtt"]
    mqtt_deliver = next(d for d in delivers if d.attributes["fluxmq.protocol"] == "mqtt")
    assert mqtt_deliver.attributes["fluxmq.client_id"] == mqtt5.cid
    assert mqtt_deliver.attributes["fluxmq.qos"] == 1


def test_mqtt_to_amqp1_carries_the_trace(traced: Any, amqp: Any, mqtt5: Any) -> None:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    _, exporter = traced
    exporter.clear()
    receiver = amqp.create_receiver("topic/tr2/a", credit=5)
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("traceparent", TRACEPARENT)]
    mqtt5.publish("tr2/a", b"from-mqtt", qos=1, properties=props).wait_for_publish(WAIT)
    got = receiver.receive(timeout=WAIT)
    receiver.accept()
    publish = publish_span(exporter, "tr2/a")
    _v, trace_id, parent_id, _f = got.properties["traceparent"].split("-")
    assert trace_id == TRACE_ID and int(parent_id, 16) == publish.context.span_id
    (deliver,) = deliver_spans(exporter, publish)
    assert deliver.attributes["fluxmq.protocol"] == "amqp1"
    assert publish.attributes["fluxmq.protocol"] == "mqtt"
