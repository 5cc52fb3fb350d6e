"""Peers over mutual TLS with the test CA: a node with a client certificate gets in,
one without (or speaking plaintext) is refused, and bad files are clear errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from fluxmq_etcd.codec import pb
from fluxmq_etcd.peers import (
    Peers,
    PeerUnavailable,
    tls_client_credentials,
    tls_server_credentials,
)

from fluxmq_core.message import Message
from fluxmq_core.testing.tls import make_test_certs


async def until(cond: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return make_test_certs(tmp_path_factory.mktemp("certs"), clients=(("node-a", "node-a"),))


@pytest.fixture
async def server(certs: dict[str, str]) -> AsyncIterator[tuple[Peers, list[Message]]]:
    inbox: list[Message] = []
    b = Peers(
        "b",
        lambda _sender, messages: inbox.extend(messages),
        server_credentials=tls_server_credentials(
            certs["server.pem"], certs["server.key"], certs["ca.pem"]
        ),
    )
    await b.start("127.0.0.1:0")
    yield b, inbox
    await b.stop(timeout=0)


async def test_mutual_tls_forward_and_call(
    certs: dict[str, str], server: tuple[Peers, list[Message]]
) -> None:
    b, inbox = server
    creds = tls_client_credentials(certs["ca.pem"], certs["node-a.pem"], certs["node-a.key"])
    a = Peers("a", lambda _s, _m: None, client_credentials=creds, timeout=5.0)
    await a.start("127.0.0.1:0")
    try:
        a.set_peer("b", f"127.0.0.1:{b.port}")
        assert (await a.call("b", "Ping", pb.PingRequest())).node_id == "b"
        a.forward("b", Message("secure", b"x"))
        await until(lambda: [m.topic for m in inbox] == ["secure"], "the message over TLS")
    finally:
        await a.stop(timeout=0)


@pytest.mark.parametrize("kind", ["no client certificate", "plaintext"])
async def test_client_without_certificate_is_refused(
    certs: dict[str, str], server: tuple[Peers, list[Message]], kind: str
) -> None:
    b, inbox = server
    creds = tls_client_credentials(certs["ca.pem"]) if kind != "plaintext" else None
    a = Peers("a", lambda _s, _m: None, client_credentials=creds, timeout=5.0)
    await a.start("127.0.0.1:0")
    try:
        a.set_peer("b", f"127.0.0.1:{b.port}")
        with pytest.raises(PeerUnavailable):
            await a.call("b", "Ping", pb.PingRequest())
        assert b.stats()["received"] == 0 and inbox == []
    finally:
        await a.stop(timeout=0)


def test_credential_errors_are_clear(certs: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read the certificate"):
        tls_server_credentials(tmp_path / "missing.pem", certs["server.key"], certs["ca.pem"])
    with pytest.raises(ValueError, match="needs a ca_file"):
        tls_server_credentials(certs["server.pem"], certs["server.key"])
    with pytest.raises(ValueError, match="both the client certificate and its key"):
        tls_client_credentials(certs["ca.pem"], certs["node-a.pem"])
