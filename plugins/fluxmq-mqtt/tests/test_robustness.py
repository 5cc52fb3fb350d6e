"""Raw, hand-made bytes against the broker (in the spirit of aiocoap's
test_noncoap_client): every case ends in the right DISCONNECT reason code (5.0) or a
close (3.x) within a bounded wait, and the broker keeps serving other clients."""

from __future__ import annotations

import pytest
from fluxmq_mqtt.codec import Connect, Disconnect, Pingreq, Pingresp, Properties, encode

CONNECT5 = encode(Connect(client_id="rob", protocol_level=5), 5)
CONNECT4 = encode(Connect(client_id="rob4", protocol_level=4), 4)


def connected(raw, port, version=5):
    c = raw(port, version)
    c.send(CONNECT5 if version == 5 else CONNECT4)
    assert c.recv().reason_code == 0
    return c


def still_serving(raw, port) -> None:
    c = raw(port, 4)
    c.send(encode(Connect(client_id="probe", protocol_level=4), 4))
    assert c.recv().reason_code == 0
    c.send(encode(Pingreq(), 4))
    assert isinstance(c.recv(), Pingresp)


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x00",  # reserved packet type
        b"GET / HTTP/1.1\r\n\r\n",
        b"\xff\xff\xff\xff\xff",
        b"\x30\x05\x00\x01a\x00\x00",  # PUBLISH before CONNECT
        b"\xc0\x00",  # PINGREQ before CONNECT
    ],
)
def test_garbage_first_bytes_close(broker, raw, data):
    c = raw(broker.port(), None)
    c.send(data)
    assert c.closed()
    still_serving(raw, broker.port())


def test_unknown_protocol_level_gets_311_connack_rc1(broker, raw):
    c = raw(broker.port(), None)
    c.send(b"\x10\x0c\x00\x04MQTT\x07\x02\x00\x3c\x00\x00")
    c.decoder.set_version(4)
    ack = c.recv()
    assert ack.reason_code == 1
    assert c.closed()


@pytest.mark.parametrize(
    "data,code",
    [
        (CONNECT5, 0x82),  # a second CONNECT
        (b"\x30\xff\xff\xff\xff\x01", 0x81),  # remaining length longer than 4 bytes
        (b"\x82\x08\x00\x01\x00\x03a/b\x01", 0x81),  # SUBSCRIBE with reserved flags 0
        (b"\x32\x06\x00\x01a\x00\x00\x00", 0x82),  # PUBLISH with packet id 0
        (b"\x30\x05\x00\x02a#\x00", 0x90),  # wildcard in a PUBLISH topic
        (b"\x30\x05\x00\x02\xc3\x28\x00", 0x81),  # invalid UTF-8 topic
        (b"\x36\x06\x00\x01a\x00\x01\x00", 0x81),  # QoS 3
        (b"\x40\x02\x00", None),  # half a PUBACK, then valid bytes below
    ],
)
def test_bad_packets_after_connect(broker, raw, data, code):
    c = connected(raw, broker.port())
    c.send(data)
    if code is None:
        c.send(b"\x01\xc0\x00")  # completes the PUBACK (id 1, unknown: ignored), PINGREQ
        assert isinstance(c.recv(), Pingresp)
        return
    d = c.recv()
    assert isinstance(d, Disconnect) and d.reason_code == code, d
    assert c.closed()
    still_serving(raw, broker.port())


def test_oversize_packet_0x95(fluxmq_broker_factory, raw):
    b = fluxmq_broker_factory(plugins=["mqtt"], config={"mqtt": {"max_packet_size": 1024}})
    c = raw(b.port())
    c.send(CONNECT5)
    ack = c.recv()
    assert ack.properties.maximum_packet_size == 1024
    c.send(b"\x30\x80\x10\x00\x01a")  # announces a 2048-byte PUBLISH
    assert c.recv().reason_code == 0x95
    assert c.closed()


def test_v311_errors_just_close(broker, raw):
    c = connected(raw, broker.port(), 4)
    c.send(b"\x30\x05\x00\x02a#\x00")
    assert c.closed()


def test_half_a_packet_then_silence_hits_connect_timeout(fluxmq_broker_factory, raw):
    b = fluxmq_broker_factory(plugins=["mqtt"], config={"mqtt": {"connect_timeout": 0.5}})
    c = raw(b.port(), None)
    c.send(CONNECT5[:5])
    assert c.closed(timeout=5)


def test_qos_above_maximum_and_retain_unavailable(fluxmq_broker_factory, raw):
    b = fluxmq_broker_factory(
        plugins=["mqtt"], config={"mqtt": {"max_qos": 1, "retain_available": False}}
    )
    c = raw(b.port())
    c.send(CONNECT5)
    ack = c.recv()
    assert ack.properties.maximum_qos == 1 and ack.properties.retain_available == 0
    c.send(b"\x34\x06\x00\x01a\x00\x01\x00")  # QoS 2
    assert c.recv().reason_code == 0x9B
    c2 = raw(b.port())
    c2.send(encode(Connect(client_id="r2", protocol_level=5), 5))
    c2.recv()
    c2.send(b"\x31\x04\x00\x01a\x00")  # retained QoS 0
    assert c2.recv().reason_code == 0x9A


def test_receive_maximum_exceeded_0x93(fluxmq_broker_factory, raw):
    b = fluxmq_broker_factory(plugins=["mqtt"], config={"mqtt": {"receive_maximum": 2}})
    c = raw(b.port())
    c.send(CONNECT5)
    assert c.recv().properties.receive_maximum == 2
    # Three QoS 2 PUBLISHes without PUBREL: the third exceeds the window.
    c.send(b"".join(b"\x34\x06\x00\x01a" + bytes((0, i)) + b"\x00" for i in (1, 2, 3)))
    codes = []
    while True:
        p = c.recv()
        codes.append((type(p).__name__, p.reason_code))
        if isinstance(p, Disconnect):
            break
    assert codes[-1] == ("Disconnect", 0x93)


def test_invalid_utf8_payload_with_format_indicator(broker, raw):
    c = connected(raw, broker.port())
    from fluxmq_mqtt.codec import Publish

    c.send(
        encode(
            Publish(
                "t",
                b"\xff\xfe",
                qos=1,
                packet_id=7,
                properties=Properties(payload_format_indicator=1),
            ),
            5,
        )
    )
    ack = c.recv()
    assert ack.packet_id == 7 and ack.reason_code == 0x99


def test_many_malformed_connections_do_not_disturb_a_good_client(broker, raw, clients):
    port = broker.port()
    good = clients(port)
    good.subscribe("alive", 1)
    for i in range(30):
        c = raw(port, None)
        c.send([b"\x10\xff", b"\x00\x00", b"\x10\x02\x00\x04", CONNECT5 + b"\xf0\x00"][i % 4])
        c.close()
        good.publish("alive", str(i), 1)
        assert good.get().payload == str(i).encode()


def test_packets_split_across_chunks_on_interleaved_connections(broker, raw):
    """Connected clients share one decoder per version between packets; a packet
    cut between chunks is kept per connection, whatever the others send meanwhile."""
    from fluxmq_mqtt.codec import Publish, Suback, Subscribe, SubscribeOptions

    port = broker.port()

    def client(cid, version):
        c = raw(port, version)
        c.send(encode(Connect(client_id=cid, protocol_level=version), version))
        assert c.recv().reason_code == 0
        return c

    sub = client("split-sub", 5)
    sub.send_packet(Subscribe(1, (("split/#", SubscribeOptions(qos=0)),), Properties()))
    assert isinstance(sub.recv(), Suback)
    pubs = [client("split-a", 5), client("split-b", 5), client("split-c", 4)]
    packets = [
        encode(Publish("split/a", b"a" * 300, properties=Properties()), 5),
        encode(Publish("split/b", b"b" * 300, properties=Properties()), 5),
        encode(Publish("split/c", b"c" * 300), 4),
    ]
    rounds = 3
    for _ in range(rounds):
        for cut in ((0, 7), (7, 150), (150, None)):
            for c, data in zip(pubs, packets, strict=True):
                c.send(data[cut[0] : cut[1]])
        for c, version in zip(pubs, (5, 5, 4), strict=True):  # still in step: a round trip on each
            c.send(encode(Pingreq(), version))
            assert isinstance(c.recv(), Pingresp)
    got = [sub.recv() for _ in range(3 * rounds)]
    assert sorted((p.topic, bytes(p.payload)) for p in got) == sorted(
        (t, t[-1].encode() * 300) for t in ("split/a", "split/b", "split/c") * rounds
    )
    still_serving(raw, port)
