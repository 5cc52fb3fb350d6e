"""Tests of the example plugin against a real broker over real sockets."""

from __future__ import annotations

import socket

import fluxmq_example.plugin as example_plugin

from fluxmq_core.testing import BrokerThread


def _connect(broker: BrokerThread) -> socket.socket:
    sock = socket.create_connection(broker.address("example.bind"), timeout=5)
    sock.settimeout(5)
    return sock


def _line(sock: socket.socket) -> bytes:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = sock.recv(1)
        assert chunk, "connection closed"
        buf += chunk
    return buf.rstrip(b"\n")


def test_pub_sub_through_the_router(fluxmq_broker_factory) -> None:
    broker = fluxmq_broker_factory(plugins=["example"])
    sub, pub = _connect(broker), _connect(broker)
    sub.sendall(b"SUB sensors/+/temp\n")
    assert _line(sub) == b"OK"
    pub.sendall(b"PUB sensors/kitchen/temp 21.5\n")
    assert _line(pub) == b"OK"
    assert _line(sub) == b"MSG sensors/kitchen/temp 21.5"
    pub.sendall(b"PUB bad/# x\n")
    assert _line(pub).startswith(b"ERR")
    sub.close()
    pub.close()


def test_observer_hook_counts_connections(fluxmq_broker_factory) -> None:
    before = example_plugin.CONNECTIONS.get("example", 0)
    broker = fluxmq_broker_factory(plugins=["example"])
    socks = [_connect(broker) for _ in range(3)]
    for s in socks:  # a round trip proves each connection was accepted
        s.sendall(b"SUB x\n")
        assert _line(s) == b"OK"
    assert example_plugin.CONNECTIONS["example"] == before + 3
    for s in socks:
        s.close()
