"""Slow clients: a connected client whose session queue overflows is disconnected
when ``[mqtt] disconnect_slow_clients`` is on (5.0: DISCONNECT 0x97 Quota exceeded),
and only loses the overflowing messages when it is off."""

from __future__ import annotations

import pytest
from fluxmq_mqtt.codec import Connect, Disconnect, Properties, Puback, Subscribe, SubscribeOptions

SLOW = {"max_queued_messages": 2, "queue_policy": "reject", "max_inflight": 1}


def _slow_subscriber(raw, port, cid, version=5, will=False):
    c = raw(port, version=version)
    props = Properties(session_expiry_interval=60, receive_maximum=1) if version == 5 else None
    c.send_packet(
        Connect(
            client_id=cid,
            clean_start=True,
            protocol_level=version,
            properties=props,
            will_topic="slow/will" if will else None,
            will_payload=b"gone",
        )
    )
    assert c.recv().reason_code == 0
    c.send_packet(Subscribe(1, (("slow/t", SubscribeOptions(1)),)))
    c.recv()
    return c


def _ack_all(c, first, count):
    """Acknowledge ``first`` and the next ``count`` PUBLISHes (window of 1)."""
    c.send_packet(Puback(first.packet_id))
    got = []
    for _ in range(count):
        p = c.recv()
        got.append(p.payload)
        c.send_packet(Puback(p.packet_id))
    return got


def test_overflow_disconnects_with_0x97_and_session_keeps_queue(
    fluxmq_broker_factory, raw, clients
):
    b = fluxmq_broker_factory(
        plugins=["mqtt"], config={"mqtt": {**SLOW, "disconnect_slow_clients": True}}
    )
    port = b.port()
    watcher = clients(port)
    watcher.subscribe("slow/will", 1)
    c = _slow_subscriber(raw, port, "slow5", will=True)
    pub = clients(port)
    for i in range(4):  # 1 in flight, 2 queued, the 4th overflows
        pub.publish("slow/t", b"%d" % i, 1)
    first = c.recv()
    assert first.payload == b"0"
    d = c.recv()
    assert isinstance(d, Disconnect) and d.reason_code == 0x97
    assert c.closed()
    assert watcher.get().payload == b"gone"  # a server-side disconnect sends the will
    c2 = raw(port)
    c2.send_packet(
        Connect(
            client_id="slow5",
            clean_start=False,
            protocol_level=5,
            properties=Properties(session_expiry_interval=60),
        )
    )
    assert c2.recv().session_present
    again = c2.recv()
    assert again.dup and again.payload == b"0"
    assert _ack_all(c2, again, 2) == [b"1", b"2"]


def test_overflow_closes_a_v311_client(fluxmq_broker_factory, raw, clients):
    b = fluxmq_broker_factory(
        plugins=["mqtt"], config={"mqtt": {**SLOW, "disconnect_slow_clients": True}}
    )
    port = b.port()
    c = _slow_subscriber(raw, port, "slow4", version=4)
    pub = clients(port)
    for i in range(4):
        pub.publish("slow/t", b"%d" % i, 1)
    assert c.recv().payload == b"0"
    assert c.closed()


@pytest.mark.parametrize("policy", ["reject", "drop-oldest"])
def test_without_the_option_overflow_only_drops(fluxmq_broker_factory, raw, clients, policy):
    b = fluxmq_broker_factory(plugins=["mqtt"], config={"mqtt": {**SLOW, "queue_policy": policy}})
    port = b.port()
    c = _slow_subscriber(raw, port, "keep")
    pub = clients(port)
    for i in range(4):
        pub.publish("slow/t", b"%d" % i, 1)
    p = c.recv()
    assert p.payload == b"0"
    assert b.call_soon(lambda: b.context.stats.messages_dropped) == 1
    c.send_packet(Puback(p.packet_id))
    got = []
    for _ in range(2):
        p = c.recv()
        got.append(p.payload)
        c.send_packet(Puback(p.packet_id))
    assert got == ([b"1", b"2"] if policy == "reject" else [b"2", b"3"])
    c.nothing()  # nothing more, and still connected


def test_with_the_option_drop_oldest_also_disconnects(fluxmq_broker_factory, raw, clients):
    b = fluxmq_broker_factory(
        plugins=["mqtt"],
        config={"mqtt": {**SLOW, "queue_policy": "drop-oldest", "disconnect_slow_clients": True}},
    )
    port = b.port()
    c = _slow_subscriber(raw, port, "old")
    pub = clients(port)
    for i in range(4):
        pub.publish("slow/t", b"%d" % i, 1)
    assert c.recv().payload == b"0"
    assert c.recv().reason_code == 0x97
    c2 = raw(port)
    c2.send_packet(
        Connect(
            client_id="old",
            clean_start=False,
            protocol_level=5,
            properties=Properties(session_expiry_interval=60),
        )
    )
    assert c2.recv().session_present
    again = c2.recv()
    assert _ack_all(c2, again, 2) == [b"2", b"3"]  # the oldest queued one was dropped
