"""Rate limits: the token buckets (``limits.py``) and what a client over a limit
gets. The broker runs on a :class:`ManualClock`, so refills happen when the test
moves time, never by sleeping."""

from __future__ import annotations

import pytest
from fluxmq_mqtt.codec import (
    Connack,
    Connect,
    Disconnect,
    Properties,
    Puback,
    Publish,
    Pubrec,
)
from fluxmq_mqtt.limits import KeyedLimiter, TokenBucket, remote_ip

from fluxmq_core.clock import ManualClock


def test_token_bucket_burst_then_rate():
    b = TokenBucket(2.0, 3, now=100.0)
    assert [b.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert b.take(100.5)  # 0.5 s at 2/s: one token
    assert not b.take(100.5)
    assert [b.take(110.0) for _ in range(4)] == [True, True, True, False]  # capped at burst
    assert not b.take(99.0)  # a clock stepping back only pauses the refill
    assert b.take(110.5)


def test_keyed_limiter_is_per_key_and_bounded():
    lim = KeyedLimiter(1.0, 1, max_keys=3)
    assert lim.allow("a", 0.0) and not lim.allow("a", 0.0)
    assert lim.allow("b", 0.0) and lim.allow("c", 0.0)
    assert lim.allow("d", 10.0)  # full buckets (a, b, c refilled) were forgotten
    assert len(lim.buckets) <= 3
    assert not lim.allow("d", 10.0)


def test_remote_ip():
    assert remote_ip("127.0.0.1:5000") == "127.0.0.1"
    assert remote_ip("::1:5000") == "::1"
    assert remote_ip("?") == "?"


@pytest.fixture
def clock():
    return ManualClock()


def test_connection_rate_per_ip(fluxmq_broker_factory, raw, clock):
    b = fluxmq_broker_factory(
        plugins=["mqtt"],
        clock=clock,
        config={"mqtt": {"connection_rate": 1.0, "connection_burst": 2}},
    )
    port = b.port()
    for i in range(2):
        c = raw(port)
        c.send_packet(Connect(client_id=f"r{i}", protocol_level=5))
        assert c.recv().reason_code == 0
    c = raw(port)
    c.send_packet(Connect(client_id="r2", protocol_level=5))
    ack = c.recv()
    assert isinstance(ack, Connack) and ack.reason_code == 0x9F
    assert ack.properties.reason_string == "connection rate exceeded"
    assert c.closed()
    v3 = raw(port, version=4)
    v3.send_packet(Connect(client_id="r3", protocol_level=4))
    with pytest.raises(EOFError):  # 3.x: closed without a CONNACK
        v3.recv()
    rejected = b.call_soon(lambda: b.context.stats.connections_rejected)
    assert rejected == 2
    clock.advance(1.0)
    c = raw(port)
    c.send_packet(Connect(client_id="r4", protocol_level=5))
    assert c.recv().reason_code == 0


def _publisher(raw, port, cid, version=5, props=None):
    c = raw(port, version=version)
    c.send_packet(Connect(client_id=cid, protocol_level=version, properties=props))
    assert c.recv().reason_code == 0
    return c


def test_publish_rate_v5_acks_0x97_then_disconnects_on_qos0(
    fluxmq_broker_factory, raw, clients, clock
):
    b = fluxmq_broker_factory(
        plugins=["mqtt"], clock=clock, config={"mqtt": {"publish_rate": 1.0, "publish_burst": 3}}
    )
    port = b.port()
    sub = clients(port)
    sub.subscribe("rate/#", 1)
    c = _publisher(raw, port, "fast")
    for pid in (1, 2, 3):
        c.send_packet(Publish("rate/a", b"%d" % pid, 1, packet_id=pid))
        assert c.recv() == Puback(pid)
    c.send_packet(Publish("rate/a", b"over", 1, packet_id=4))
    ack = c.recv()
    assert isinstance(ack, Puback) and ack.reason_code == 0x97
    assert ack.properties.reason_string == "publish rate exceeded"
    c.send_packet(Publish("rate/a", b"over2", 2, packet_id=5))
    rec = c.recv()
    assert isinstance(rec, Pubrec) and rec.reason_code == 0x97
    assert [sub.get().payload for _ in range(3)] == [b"1", b"2", b"3"]
    sub.nothing()
    clock.advance(1.0)
    c.send_packet(Publish("rate/a", b"later", 1, packet_id=6))
    assert c.recv() == Puback(6)
    assert sub.get().payload == b"later"
    c.send_packet(Publish("rate/a", b"qos0", 0))
    d = c.recv()
    assert isinstance(d, Disconnect) and d.reason_code == 0x97
    assert c.closed()
    assert b.call_soon(lambda: b.context.stats.messages_dropped) >= 3


def test_publish_rate_without_problem_information_has_no_reason_string(
    fluxmq_broker_factory, raw, clock
):
    b = fluxmq_broker_factory(
        plugins=["mqtt"], clock=clock, config={"mqtt": {"publish_rate": 1.0, "publish_burst": 1}}
    )
    c = _publisher(raw, b.port(), "quiet", props=Properties(request_problem_information=0))
    c.send_packet(Publish("q", b"1", 1, packet_id=1))
    assert c.recv().packet_id == 1
    c.send_packet(Publish("q", b"2", 1, packet_id=2))
    ack = c.recv()
    assert ack.reason_code == 0x97 and ack.properties is None


def test_publish_rate_v311_drops_and_counts(fluxmq_broker_factory, raw, clients, clock):
    b = fluxmq_broker_factory(
        plugins=["mqtt"], clock=clock, config={"mqtt": {"publish_rate": 1.0, "publish_burst": 2}}
    )
    port = b.port()
    sub = clients(port, version=4)
    sub.subscribe("r3/#", 1)
    before = b.call_soon(lambda: b.context.stats.messages_dropped)
    c = _publisher(raw, port, "fast311", version=4)
    for pid in (1, 2, 3):
        c.send_packet(Publish("r3/a", b"%d" % pid, 1, packet_id=pid))
        assert c.recv() == Puback(pid)  # acknowledged either way: 3.x has no code
    c.send_packet(Publish("r3/a", b"zero", 0))  # QoS 0 over the limit: dropped too
    c.send_packet(Publish("r3/a", b"q2", 2, packet_id=9))
    assert c.recv() == Pubrec(9)
    assert [sub.get().payload for _ in range(2)] == [b"1", b"2"]
    sub.nothing()
    assert b.call_soon(lambda: b.context.stats.messages_dropped) - before == 3
    c.nothing()  # 3.1.1: still connected (no DISCONNECT to carry a reason)
