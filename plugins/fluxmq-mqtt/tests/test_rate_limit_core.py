"""The broker-wide ``[rate_limit]`` on MQTT: per-client publish buckets (5.0 0x97,
3.1.1 dropped), per-client subscribe buckets (SUBACK 0x97 / 0x80) and per-IP
connections at the listener, with paho-mqtt and the raw codec over real sockets."""

from __future__ import annotations

import pytest
from fluxmq_mqtt.codec import Connect, Puback, Publish, Suback, Subscribe, SubscribeOptions

from fluxmq_core.clock import ManualClock


@pytest.fixture
def clock():
    return ManualClock()


def _limited(fluxmq_broker_factory, clock, **limits):
    return fluxmq_broker_factory(plugins=["mqtt"], clock=clock, config={"rate_limit": limits})


def test_publish_rate_applies_to_mqtt(fluxmq_broker_factory, raw, clients, clock):
    b = _limited(fluxmq_broker_factory, clock, publish_rate=1.0, publish_burst=2)
    port = b.port()
    sub = clients(port)
    sub.subscribe("rl/#", 1)
    c = raw(port)
    c.send_packet(Connect(client_id="pub", protocol_level=5))
    assert c.recv().reason_code == 0
    for pid in (1, 2):
        c.send_packet(Publish("rl/a", b"%d" % pid, 1, packet_id=pid))
        assert c.recv() == Puback(pid)
    c.send_packet(Publish("rl/a", b"over", 1, packet_id=3))
    ack = c.recv()
    assert isinstance(ack, Puback) and ack.reason_code == 0x97
    assert [sub.get().payload for _ in range(2)] == [b"1", b"2"]
    clock.advance(1.0)
    c.send_packet(Publish("rl/a", b"later", 1, packet_id=4))
    assert c.recv() == Puback(4)
    assert sub.get().payload == b"later"
    assert b.call_soon(lambda: b.context.stats.rate_limited_publishes) == 1


def test_subscribe_rate_refuses_with_0x97_and_0x80(fluxmq_broker_factory, raw, clients, clock):
    b = _limited(fluxmq_broker_factory, clock, subscribe_rate=1.0, subscribe_burst=1)
    port = b.port()
    paho = clients(port)
    assert [rc.value for rc in paho.subscribe("a/1", 1)] == [1]
    assert [rc.value for rc in paho.subscribe("a/2", 1)] == [0x97]
    c = raw(port, version=4)
    c.send_packet(Connect(client_id="v3", protocol_level=4))
    assert c.recv().reason_code == 0
    opts = SubscribeOptions(qos=1)
    c.send_packet(Subscribe(1, (("b/1", opts),)))
    assert c.recv() == Suback(1, (1,))
    c.send_packet(Subscribe(2, (("b/2", opts),)))
    assert c.recv() == Suback(2, (0x80,))
    clock.advance(1.0)
    c.send_packet(Subscribe(3, (("b/3", opts),)))
    assert c.recv() == Suback(3, (1,))
    assert b.call_soon(lambda: b.context.stats.rate_limited_subscribes) == 2


def test_connections_per_ip_on_the_mqtt_listener(fluxmq_broker_factory, raw, clock):
    b = _limited(fluxmq_broker_factory, clock, connections_per_ip=1.0, connection_burst=1)
    port = b.port()
    c = raw(port)
    c.send_packet(Connect(client_id="one", protocol_level=5))
    assert c.recv().reason_code == 0
    second = raw(port)
    with pytest.raises((EOFError, ConnectionError)):  # closed before any CONNACK
        second.send_packet(Connect(client_id="two", protocol_level=5))
        second.recv()
    clock.advance(1.0)
    third = raw(port)
    third.send_packet(Connect(client_id="three", protocol_level=5))
    assert third.recv().reason_code == 0
