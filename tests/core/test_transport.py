"""Listeners: binding, port sharing by header, connection caps, TLS contexts."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import pytest

from fluxmq_core.config import ConfigError
from fluxmq_core.hookspecs import hookimpl
from fluxmq_core.testing import BrokerThread
from fluxmq_core.testing.tls import make_test_certs
from fluxmq_core.transport import (
    ListenerSpec,
    ProtocolServer,
    make_server_ssl_context,
    peer_identity,
)


class Tagged(asyncio.Protocol):
    """Answers every chunk with its tag, so a test can see who got the connection."""

    def __init__(self, tag: bytes) -> None:
        self.tag = tag

    def connection_made(self, transport: Any) -> None:
        self.t = transport

    def data_received(self, data: bytes) -> None:
        self.t.write(self.tag + b":" + data)


def servers_plugin(specs: list[ListenerSpec]) -> object:
    class P:
        @hookimpl
        def fluxmq_register_servers(self, context: Any) -> list[ProtocolServer]:
            return [ProtocolServer("t", specs)]

    return P()


def recv_some(sock: socket.socket) -> bytes:
    data = b""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
        if b":" in data and len(data) >= data.index(b":") + 2:
            break
    return data


def test_two_protocols_share_one_port_by_header(fluxmq_broker_factory: Any) -> None:
    def is_a(buf: bytes) -> bool | None:
        return None if len(buf) < 4 else buf.startswith(b"AAAA")

    def is_b(buf: bytes) -> bool | None:
        return None if len(buf) < 4 else buf.startswith(b"BBBB")

    specs = [
        ListenerSpec("a.bind", "127.0.0.1:0", lambda: Tagged(b"A"), header=is_a),
        ListenerSpec("b.bind", "127.0.0.1:0", lambda: Tagged(b"B"), header=is_b),
    ]
    broker = fluxmq_broker_factory(plugins=[], extra_plugins=[("t", servers_plugin(specs))])
    assert broker.address("a.bind") == broker.address("b.bind")
    for prefix, tag in ((b"BBBB", b"B"), (b"AAAA", b"A")):
        with socket.create_connection(broker.address("a.bind"), timeout=5) as s:
            s.sendall(prefix[:2])  # split header: the sniffer must wait for more
            time.sleep(0.05)
            s.sendall(prefix[2:] + b"x")
            assert recv_some(s) == tag + b":" + prefix + b"x"
    with socket.create_connection(broker.address("a.bind"), timeout=5) as s:
        s.sendall(b"ZZZZ")
        assert s.recv(10) == b""  # unknown header: closed


def test_shared_port_needs_headers() -> None:
    with socket.socket() as s:  # a concrete port: ":0" listeners without headers never share
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    specs = [
        ListenerSpec("a.bind", address, lambda: Tagged(b"A")),
        ListenerSpec("b.bind", address, lambda: Tagged(b"B")),
    ]
    broker = BrokerThread(plugins=[], extra_plugins=[("t", servers_plugin(specs))])
    with pytest.raises(ConfigError, match="cannot be told apart"):
        broker.start()
    broker.close()


def test_ephemeral_listeners_without_headers_get_ports_of_their_own(
    fluxmq_broker_factory: Any,
) -> None:
    specs = [
        ListenerSpec("a.bind", "127.0.0.1:0", lambda: Tagged(b"A")),
        ListenerSpec("b.bind", "127.0.0.1:0", lambda: Tagged(b"B")),
    ]
    broker = fluxmq_broker_factory(plugins=[], extra_plugins=[("t", servers_plugin(specs))])
    assert broker.address("a.bind") != broker.address("b.bind")
    for name, tag in (("a.bind", b"A"), ("b.bind", b"B")):
        with socket.create_connection(broker.address(name), timeout=5) as s:
            s.sendall(b"hi")
            assert recv_some(s) == tag + b":hi"


def test_max_connections_per_listener(fluxmq_broker_factory: Any) -> None:
    specs = [ListenerSpec("a.bind", "127.0.0.1:0", lambda: Tagged(b"A"), max_connections=2)]
    broker = fluxmq_broker_factory(plugins=[], extra_plugins=[("t", servers_plugin(specs))])
    open_socks = []
    for _ in range(2):
        s = socket.create_connection(broker.address("a.bind"), timeout=5)
        s.sendall(b"x")
        assert recv_some(s) == b"A:x"
        open_socks.append(s)
    extra = socket.create_connection(broker.address("a.bind"), timeout=5)
    assert extra.recv(10) == b""  # closed at once
    assert broker.context.stats.connections_rejected == 1
    open_socks[0].close()
    # The slot is free once the broker saw the close: retry (bounded), no fixed wait.
    for _ in range(250):
        again = socket.create_connection(broker.address("a.bind"), timeout=5)
        try:
            again.sendall(b"y")
            if recv_some(again) == b"A:y":
                break
        except OSError:
            pass
        again.close()
        time.sleep(0.02)
    else:
        pytest.fail("no connection slot came free after a close")
    for s in (*open_socks, extra, again):
        s.close()


def test_port_in_use_is_a_config_error() -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    specs = [ListenerSpec("a.bind", f"127.0.0.1:{port}", lambda: Tagged(b"A"))]
    broker = BrokerThread(plugins=[], extra_plugins=[("t", servers_plugin(specs))])
    try:
        with pytest.raises(ConfigError, match=f"a.bind: cannot listen on 127.0.0.1:{port}"):
            broker.start()
    finally:
        broker.close()
        holder.close()


def test_empty_address_disables_listener(fluxmq_broker_factory: Any) -> None:
    specs = [ListenerSpec("a.bind", "", lambda: Tagged(b"A"))]
    broker = fluxmq_broker_factory(plugins=[], extra_plugins=[("t", servers_plugin(specs))])
    assert "a.bind" not in broker.context.bound


@pytest.fixture(scope="module")
def certs(tmp_path_factory: Any) -> dict[str, Path]:
    made = make_test_certs(tmp_path_factory.mktemp("certs"), (("client", "device-7"),))
    return {name: Path(path) for name, path in made.items()}


def test_tls_listener_with_client_certificate(
    fluxmq_broker_factory: Any, certs: dict[str, Path]
) -> None:
    seen: list[str | None] = []

    class Who(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            seen.append(peer_identity(transport))
            transport.write(b"hi")

    ctx = make_server_ssl_context(
        str(certs["server.pem"]), str(certs["server.key"]), str(certs["ca.pem"])
    )
    specs = [ListenerSpec("a.tls", "127.0.0.1:0", Who, ssl=ctx)]
    broker = fluxmq_broker_factory(plugins=[], extra_plugins=[("t", servers_plugin(specs))])
    client_ctx = ssl.create_default_context(cafile=str(certs["ca.pem"]))
    client_ctx.load_cert_chain(str(certs["client.pem"]), str(certs["client.key"]))
    with socket.create_connection(broker.address("a.tls"), timeout=5) as raw:
        with client_ctx.wrap_socket(raw, server_hostname="localhost") as s:
            assert s.recv(2) == b"hi"
    assert seen == ["device-7"]


def test_bad_certificate_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot load TLS certificate"):
        make_server_ssl_context(str(tmp_path / "nope.pem"))


def _free_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def _tls_specs(address: str, ctx_a: ssl.SSLContext, ctx_b: ssl.SSLContext | None) -> list[Any]:
    def is_a(buf: bytes) -> bool | None:
        return None if len(buf) < 4 else buf.startswith(b"AAAA")

    def is_b(buf: bytes) -> bool | None:
        return None if len(buf) < 4 else buf.startswith(b"BBBB")

    return [
        ListenerSpec("a.tls_bind", address, lambda: Tagged(b"A"), ssl=ctx_a, header=is_a),
        ListenerSpec("b.tls_bind", address, lambda: Tagged(b"B"), ssl=ctx_b, header=is_b),
    ]


def test_equivalent_tls_settings_share_one_socket(
    fluxmq_broker_factory: Any, certs: dict[str, Path]
) -> None:
    # two protocols, each with its own context made from the same keys
    made = [
        make_server_ssl_context(str(certs["server.pem"]), str(certs["server.key"]))
        for _ in range(2)
    ]
    address = _free_address()
    specs = _tls_specs(address, made[0], made[1])
    broker = fluxmq_broker_factory(plugins=[], extra_plugins=[("t", servers_plugin(specs))])
    assert broker.address("a.tls_bind") == broker.address("b.tls_bind")
    client_ctx = ssl.create_default_context(cafile=str(certs["ca.pem"]))
    for prefix, tag in ((b"AAAA", b"A"), (b"BBBB", b"B")):
        with socket.create_connection(broker.address("a.tls_bind"), timeout=5) as raw:
            with client_ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(prefix)
                assert recv_some(s) == tag + b":" + prefix


@pytest.mark.parametrize("second", ["client-ca", "plain"])
def test_one_address_with_different_tls_settings_is_a_config_error(
    certs: dict[str, Path], second: str
) -> None:
    ctx_a = make_server_ssl_context(str(certs["server.pem"]), str(certs["server.key"]))
    ctx_b = None
    if second == "client-ca":
        ctx_b = make_server_ssl_context(
            str(certs["server.pem"]), str(certs["server.key"]), str(certs["ca.pem"])
        )
    specs = _tls_specs(_free_address(), ctx_a, ctx_b)
    broker = BrokerThread(plugins=[], extra_plugins=[("t", servers_plugin(specs))])
    expected = "tls_ca, tls_client_auth" if second == "client-ca" else "b.tls_bind is plain TCP"
    try:
        with pytest.raises(ConfigError, match=expected) as info:
            broker.start()
        assert "a.tls_bind and b.tls_bind both ask for" in str(info.value)
    finally:
        broker.close()
