"""Session state across reconnects (any driver) and across a broker restart (only
with a durable storage driver installed)."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest
from fluxmq_mqtt.codec import Connect, Properties, Puback, Subscribe, SubscribeOptions


def _durable_driver() -> str | None:
    names = {ep.name for ep in entry_points(group="fluxmq.storage")}
    return "badgerlike" if "badgerlike" in names else None


def test_unacked_inflight_is_resent_with_dup_on_reconnect(broker, raw, clients):
    port = broker.port()
    c = raw(port)
    props = Properties(session_expiry_interval=60)
    c.send_packet(
        Connect(client_id="inflight", clean_start=True, protocol_level=5, properties=props)
    )
    assert c.recv().reason_code == 0
    c.send_packet(Subscribe(1, (("pq/#", SubscribeOptions(1)),)))
    c.recv()
    clients(port).publish("pq/1", "m", 1)
    first = c.recv()
    assert not first.dup
    c.close()  # no PUBACK
    c2 = raw(port)
    c2.send_packet(
        Connect(client_id="inflight", clean_start=False, protocol_level=5, properties=props)
    )
    ack = c2.recv()
    assert ack.session_present
    again = c2.recv()
    assert again.dup and again.packet_id == first.packet_id and again.payload == b"m"
    c2.send_packet(Puback(again.packet_id))
    c2.close()
    c3 = raw(port)
    c3.send_packet(
        Connect(client_id="inflight", clean_start=False, protocol_level=5, properties=props)
    )
    assert c3.recv().session_present
    c3.nothing()  # acknowledged: not sent again


def test_memory_driver_loses_sessions_on_restart(fluxmq_broker_factory, clients):
    broker = fluxmq_broker_factory(plugins=["mqtt"], config={"storage": {"driver": "memory"}})
    port = broker.port()
    s = clients(port, "mem", 4, clean=False)
    s.subscribe("m/#", 1)
    s.close()
    broker.restart()
    s2 = clients(port, "mem", 4, clean=False, connect=False)
    assert not s2.connect()[0].session_present


@pytest.mark.skipif(_durable_driver() is None, reason="no durable storage driver installed")
def test_session_survives_restart_with_durable_driver(fluxmq_broker_factory, clients):
    b = fluxmq_broker_factory(plugins=["mqtt"], config={"storage": {"driver": _durable_driver()}})
    port = b.port()
    s = clients(port, "durable", 4, clean=False)
    s.subscribe("d/#", 1)
    s.close()
    clients(port, version=4).publish("d/1", "queued", 1)
    b.restart()
    s2 = clients(port, "durable", 4, clean=False, connect=False)
    assert s2.connect()[0].session_present
    assert s2.get().payload == b"queued"
    clients(port, version=4).publish("d/2", "live", 1)
    assert s2.get().payload == b"live"


@pytest.mark.skipif(_durable_driver() is None, reason="no durable storage driver installed")
def test_v5_inflight_and_delayed_will_survive_restart(fluxmq_broker_factory, clients, raw):
    b = fluxmq_broker_factory(plugins=["mqtt"], config={"storage": {"driver": _durable_driver()}})
    port = b.port()
    props = Properties(session_expiry_interval=300)
    c = raw(port)
    c.send_packet(Connect(client_id="v5d", protocol_level=5, properties=props))
    assert c.recv().reason_code == 0
    c.send_packet(Subscribe(1, (("v5/#", SubscribeOptions(2)),)))
    c.recv()
    clients(port).publish("v5/x", "unacked", 2)
    first = c.recv()
    c.close()
    b.restart()
    c2 = raw(port)
    c2.send_packet(Connect(client_id="v5d", clean_start=False, protocol_level=5, properties=props))
    assert c2.recv().session_present
    again = c2.recv()
    assert again.dup and again.packet_id == first.packet_id and again.payload == b"unacked"
