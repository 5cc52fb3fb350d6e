"""Bytes on the wire that clients rely on: the order of a publisher's ack and the
deliveries its publish causes on the same connection (Mosquitto's order), and the
graceful close after a server-sent DISCONNECT (the client reads the reason code,
not a reset). Raw sockets, because the byte order is the point."""

from __future__ import annotations

import socket
from importlib.metadata import entry_points

import pytest
from fluxmq_mqtt.codec import (
    Connack,
    Connect,
    Disconnect,
    Properties,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    SubscribeOptions,
    encode,
)
from fluxmq_mqtt.codec.decoder import Decoder

# The durable store holds acks for a sync; it is tested where its plugin is installed.
DRIVERS = [
    "memory",
    pytest.param(
        "badgerlike",
        marks=pytest.mark.skipif(
            "badgerlike" not in {ep.name for ep in entry_points(group="fluxmq.storage")},
            reason="the durable badgerlike storage driver is not installed",
        ),
    ),
]
WAIT = 5.0


def _connect(raw, port, version, cid):
    c = raw(port, version)
    c.send_packet(Connect(client_id=cid, protocol_level=version))
    assert isinstance(c.recv(), Connack)
    c.send_packet(Subscribe(1, (("own/#", SubscribeOptions(qos=2)),)))
    assert isinstance(c.recv(), Suback)
    return c


def _read(c, want, what):
    """Packets until ``want(packets)`` holds (bounded by the socket timeout)."""
    got = []
    while not want(got):
        got.append(c.recv())
    return got


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("version", [4, 5])
def test_puback_precedes_own_deliveries(fluxmq_broker_factory, raw, driver, version):
    b = fluxmq_broker_factory(plugins=["mqtt"], config={"storage": {"driver": driver}})
    c = _connect(raw, b.port(), version, f"order-{driver}-{version}")
    # three QoS 1 publishes to its own subscription in one chunk
    c.send(
        b"".join(
            encode(Publish(f"own/{i}", b"m%d" % i, 1, packet_id=10 + i), version) for i in range(3)
        )
    )
    got = _read(
        c,
        lambda g: (
            sum(isinstance(p, Puback) for p in g) == 3
            and sum(isinstance(p, Publish) for p in g) == 3
        ),
        "3 PUBACKs and 3 deliveries",
    )
    for i in range(3):
        ack = next(n for n, p in enumerate(got) if isinstance(p, Puback) and p.packet_id == 10 + i)
        dlv = next(
            n for n, p in enumerate(got) if isinstance(p, Publish) and p.payload == b"m%d" % i
        )
        assert ack < dlv, got


@pytest.mark.parametrize("driver", DRIVERS)
def test_pubrec_and_pubcomp_precede_own_delivery(fluxmq_broker_factory, raw, driver):
    b = fluxmq_broker_factory(plugins=["mqtt"], config={"storage": {"driver": driver}})
    c = _connect(raw, b.port(), 5, f"order2-{driver}")
    c.send_packet(Publish("own/q2", b"two", 2, packet_id=21))
    rec = c.recv()
    assert isinstance(rec, Pubrec) and rec.packet_id == 21  # nothing delivered before PUBREL
    c.send_packet(Pubrel(21))
    got = _read(c, lambda g: any(isinstance(p, Publish) for p in g), "the delivery")
    assert isinstance(got[0], Pubcomp) and got[0].packet_id == 21, got


def test_disconnect_reason_reaches_a_client_that_keeps_writing(fluxmq_broker_factory):
    """Receive Maximum exceeded (0x93): the broker sends DISCONNECT, half-closes and
    lingers, so the client reads 0x93 and then EOF although it never stopped writing
    (closing with unread input would reset the connection and lose the DISCONNECT)."""
    b = fluxmq_broker_factory(
        plugins=["mqtt"], config={"mqtt": {"receive_maximum": 2}, "storage": {"driver": "memory"}}
    )
    sock = socket.create_connection(("127.0.0.1", b.port()), timeout=WAIT)
    try:
        sock.sendall(encode(Connect(client_id="flood", protocol_level=5), 5))
        dec = Decoder(version=5, role="client")
        # QoS 2 publishes never released: the third exceeds receive maximum 2.
        burst = b"".join(
            encode(Publish("flood/t", b"x" * 100, 2, packet_id=i), 5) for i in range(1, 200)
        )
        sock.sendall(burst)
        # keep writing after the broker has decided to disconnect us
        sent_after = 0
        sock.settimeout(0.05)
        for _ in range(200):
            try:
                sock.sendall(encode(Publish("flood/t", b"y" * 100, 0), 5))
                sent_after += 1
            except OSError:
                break
        sock.settimeout(WAIT)
        packets = []
        while True:
            data = sock.recv(65536)  # a reset would raise ConnectionResetError here
            if not data:
                break
            packets.extend(dec.packets(data))
        assert sent_after > 0
        disc = [p for p in packets if isinstance(p, Disconnect)]
        assert disc and disc[0].reason_code == 0x93, packets
        assert isinstance(packets[-1], Disconnect)
    finally:
        sock.close()


def test_kick_sends_reason_then_eof(fluxmq_broker_factory, raw):
    """Session takeover (0x8E): the old connection reads the DISCONNECT, then EOF."""
    b = fluxmq_broker_factory(plugins=["mqtt"], config={"storage": {"driver": "memory"}})
    old = raw(b.port(), 5)
    old.send_packet(Connect(client_id="twin", protocol_level=5, properties=Properties()))
    assert isinstance(old.recv(), Connack)
    new = raw(b.port(), 5)
    new.send_packet(Connect(client_id="twin", protocol_level=5))
    assert isinstance(new.recv(), Connack)
    d = old.recv()
    assert isinstance(d, Disconnect) and d.reason_code == 0x8E
    with pytest.raises(EOFError):
        old.recv()


def test_a_bug_closes_only_that_connection(fluxmq_broker_factory, raw, monkeypatch, caplog):
    """An exception while handling one client's packet: that client gets DISCONNECT
    0x80 and is closed, logged once; another client goes on working."""
    from fluxmq_mqtt import connection
    from fluxmq_mqtt.codec import Pingreq, Pingresp

    real = connection._HANDLERS[Pingreq]

    def ping(conn, p):
        if conn.client_id == "buggy":
            raise RuntimeError("injected bug")
        return real(conn, p)

    monkeypatch.setitem(connection._HANDLERS, Pingreq, ping)
    b = fluxmq_broker_factory(plugins=["mqtt"], config={"storage": {"driver": "memory"}})
    good = _connect(raw, b.port(), 5, "good")
    bad = raw(b.port(), 5)
    bad.send_packet(Connect(client_id="buggy", protocol_level=5))
    assert isinstance(bad.recv(), Connack)
    bad.send_packet(Pingreq())
    d = bad.recv()
    assert isinstance(d, Disconnect) and d.reason_code == 0x80
    with pytest.raises(EOFError):
        bad.recv()
    good.send_packet(Pingreq())
    assert isinstance(good.recv(), Pingresp)
    good.send_packet(Publish("own/still", b"ok", 1, packet_id=5))
    got = _read(good, lambda g: any(isinstance(p, Publish) for p in g), "delivery")
    assert isinstance(got[0], Puback)
    logged = [r for r in caplog.records if "internal error" in r.getMessage()]
    assert len(logged) == 1 and "buggy" in logged[0].getMessage()
