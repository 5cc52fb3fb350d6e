"""Logins (SASL PLAIN against a password file, ANONYMOUS and the anonymous policy,
EXTERNAL with a client certificate), TLS, and the admin API's session directory.
Port sharing with AMQP 0.9.1 is a cross-plugin test (tests/e2e)."""

from __future__ import annotations

from typing import Any

import pytest
from proton import ConnectionException, Message, SSLDomain
from proton.utils import BlockingConnection

from fluxmq_core.contracts import AuthRequest
from fluxmq_core.passwords import set_password
from fluxmq_core.testing.tls import make_test_certs

WAIT = 5.0


@pytest.fixture(scope="module")
def certs(tmp_path_factory: Any) -> dict[str, str]:
    return make_test_certs(tmp_path_factory.mktemp("amqp1-certs"), (("device", "device-7"),))


def _round_trip(conn: BlockingConnection, address: str = "topic/auth/check") -> None:
    r = conn.create_receiver(address, credit=1)
    conn.create_sender(address).send(Message(body="ok"))
    assert r.receive(timeout=WAIT).body == "ok"
    r.accept()


def test_sasl_plain_with_a_password_file(fluxmq_broker_factory: Any, tmp_path: Any) -> None:
    pw = tmp_path / "passwd"
    set_password(pw, "alice", "s3cret", iterations=1000)
    broker = fluxmq_broker_factory(
        plugins=["amqp1"], config={"auth": {"password_file": str(pw), "anonymous": False}}
    )
    url = f"amqp://127.0.0.1:{broker.port('amqp1.bind')}"
    plain = {"allowed_mechs": "PLAIN", "allow_insecure_mechs": True, "timeout": WAIT}
    conn = BlockingConnection(url, user="alice", password="s3cret", **plain)
    try:
        _round_trip(conn)
    finally:
        conn.close()
    with pytest.raises(ConnectionException, match="unauthorized|Authentication failed"):
        BlockingConnection(url, user="alice", password="wrong", **plain)
    with pytest.raises(ConnectionException, match="unauthorized|Authentication failed"):
        BlockingConnection(url, allowed_mechs="ANONYMOUS", timeout=WAIT)
    assert broker.context.stats.auth_failures >= 2


def test_anonymous_is_local_only_by_default(fluxmq_broker_factory: Any) -> None:
    broker = fluxmq_broker_factory(plugins=["amqp1"])
    conn = BlockingConnection(
        f"amqp://127.0.0.1:{broker.port('amqp1.bind')}", allowed_mechs="ANONYMOUS", timeout=WAIT
    )
    try:
        _round_trip(conn)  # loopback: allowed
    finally:
        conn.close()
    # The same request from another host (the connection passes the peer address;
    # the sans-IO tests check that) is refused by the default policy.
    remote = AuthRequest(
        protocol="amqp1",
        client_id="x",
        username=None,
        password=None,
        remote="192.0.2.7:40000",
        tls_identity=None,
    )
    assert not broker.call(broker.context.auth.authenticate(remote)).ok


def _tls_cfg(certs: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {
        "amqp1": {
            "tls_bind": "127.0.0.1:0",
            "tls_cert": certs["server.pem"],
            "tls_key": certs["server.key"],
            **extra,
        }
    }


def _domain(certs: dict[str, str], cert: str | None = None) -> SSLDomain:
    d = SSLDomain(SSLDomain.MODE_CLIENT)
    d.set_trusted_ca_db(certs["ca.pem"])
    d.set_peer_authentication(SSLDomain.VERIFY_PEER_NAME)
    if cert:
        d.set_credentials(certs[f"{cert}.pem"], certs[f"{cert}.key"], None)
    return d


def test_round_trip_over_tls(fluxmq_broker_factory: Any, certs: dict[str, str]) -> None:
    broker = fluxmq_broker_factory(plugins=["amqp1"], config=_tls_cfg(certs))
    conn = BlockingConnection(
        f"amqps://127.0.0.1:{broker.port('amqp1.tls_bind')}",
        ssl_domain=_domain(certs),
        virtual_host="localhost",
        allowed_mechs="ANONYMOUS",
        timeout=WAIT,
    )
    try:
        _round_trip(conn, "topic/tls/check")
    finally:
        conn.close()


def test_sasl_external_takes_the_client_certificate(
    fluxmq_broker_factory: Any, certs: dict[str, str]
) -> None:
    cfg = _tls_cfg(certs, tls_ca=certs["ca.pem"], tls_client_auth="required")
    cfg["auth"] = {"use_identity_as_username": True}
    broker = fluxmq_broker_factory(plugins=["amqp1"], config=cfg)
    conn = BlockingConnection(
        f"amqps://127.0.0.1:{broker.port('amqp1.tls_bind')}",
        ssl_domain=_domain(certs, "device"),
        virtual_host="localhost",
        allowed_mechs="EXTERNAL",
        timeout=WAIT,
    )
    try:
        _round_trip(conn, "topic/tls/external")
        server = broker.context.extras["amqp1"]
        names = [p.conn.username for p in list(server.protocols) if p.conn is not None]
        assert "device-7" in names
    finally:
        conn.close()


def test_sessions_in_the_admin_directory(fluxmq_broker_factory: Any) -> None:
    broker = fluxmq_broker_factory(plugins=["amqp1"])
    conn = BlockingConnection(f"amqp://127.0.0.1:{broker.port('amqp1.bind')}", timeout=WAIT)
    try:
        r = conn.create_receiver("topic/admin/x", credit=1)
        cid = conn.conn.container
        infos = broker.call_soon(lambda: broker.context.sessions.list(protocol="amqp1"))
        (info,) = [i for i in infos if i.client_id == cid]
        assert info.connected and info.version == "1.0" and "topic/admin/x" in info.subscriptions
        assert broker.call_soon(broker.context.sessions.disconnect, cid, "amqp1")
        with pytest.raises(ConnectionException, match="connection:forced"):
            r.receive(timeout=WAIT)
    finally:
        try:
            conn.close()
        except Exception:
            pass
