"""What an idle MQTT connection holds, over real sockets: no output buffer of its own
(the shared ``NO_OUTPUT``) and no entry in a second registry of connections (the
registry's connections past CONNACK are a view of the adapter's set); and the
sans-IO rules of ``NO_OUTPUT``."""

from __future__ import annotations

import time
from typing import Any

from fluxmq_mqtt.codec import (
    Connack,
    Connect,
    Puback,
    Publish,
    Suback,
    Subscribe,
    SubscribeOptions,
    encode,
)
from fluxmq_mqtt.outbound import NO_OUTPUT
from fluxmq_mqtt.server import ConnectedView, MQTTServer

WAIT = 5.0


def _server(broker: Any) -> MQTTServer:
    provider = broker.context.sessions._providers["mqtt"]
    server = provider._server
    assert isinstance(server, MQTTServer)
    return server


def _until(broker: Any, fn: Any) -> Any:
    deadline = time.monotonic() + WAIT
    while True:
        value = broker.call_soon(fn)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def _conns(server: MQTTServer) -> list[Any]:
    return sorted(
        (p.conn for p in server.protocols if p.conn is not None), key=lambda c: c.client_id
    )


def test_idle_connections_hold_no_output_buffer_and_one_registry_entry(broker, raw, wait_connected):
    server = _server(broker)
    assert isinstance(server.registry.connections, ConnectedView)
    a = raw(broker.port(), version=4)
    a.send_packet(Connect(client_id="idle-a", keepalive=60, protocol_level=4))
    assert isinstance(a.recv(), Connack)
    b = raw(broker.port(), version=5)
    b.send_packet(Connect(client_id="idle-b", keepalive=60, protocol_level=5))
    assert isinstance(b.recv(), Connack)
    c = raw(broker.port(), version=4)  # half a CONNECT: not past CONNACK
    c.send(encode(Connect(client_id="idle-c", keepalive=60, protocol_level=4), 4)[:9])
    wait_connected(broker, 2)
    _until(broker, lambda: len(server.protocols) == 3)

    def state() -> tuple[Any, ...]:
        reg = server.registry.connections
        conns = _conns(server)
        return (
            [conn.out is NO_OUTPUT for conn in conns],
            sorted(conn.client_id for conn in reg),
            len(reg),
            [conn in reg for conn in conns],
        )

    outs, listed, count, member = broker.call_soon(state)
    assert outs == [True, True, True]  # "" (no CONNECT decoded yet), idle-a, idle-b
    assert listed == ["idle-a", "idle-b"] and count == 2
    assert member == [False, True, True]

    # Output still goes out, and the connection is back to the shared value after.
    a.send_packet(Subscribe(1, (("t/idle", SubscribeOptions(qos=1)),)))
    assert isinstance(a.recv(), Suback)
    b.send_packet(Publish("t/idle", b"x", 1, packet_id=7))
    ack = b.recv()
    assert isinstance(ack, Puback) and ack.packet_id == 7
    got = a.recv()
    assert isinstance(got, Publish) and got.payload == b"x"
    assert _until(broker, lambda: all(conn.out is NO_OUTPUT for conn in _conns(server)))

    b.close()
    wait_connected(broker, 1)
    assert broker.call_soon(lambda: sorted(c.client_id for c in server.registry.connections)) == [
        "idle-a"
    ]
    assert broker.call_soon(lambda: len(server.registry.connections)) == 1
    c.close()
    a.close()
    wait_connected(broker, 0)
    assert broker.call_soon(lambda: len(server.registry.connections)) == 0


def test_no_output_is_shared_empty_and_plus_equals_makes_a_buffer():
    class Holder:
        out: Any = NO_OUTPUT

    h = Holder()
    assert not h.out and len(h.out) == 0 and h.out == b""
    h.out.clear()  # nothing to clear
    h.out += b"ab"
    assert type(h.out) is bytearray and h.out == b"ab"
    first = h.out
    h.out += b"c"
    assert h.out is first and h.out == b"abc"  # in place from then on
    assert NO_OUTPUT == b"" and type(NO_OUTPUT) is not bytearray
