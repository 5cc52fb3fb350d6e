"""MQTT over TLS with paho (3.1.1 and 5.0), client-certificate identity as the
username the ACL sees, and ``max_connections`` per listener. Certificates are made
by ``openssl`` for the module: a CA, a server certificate for 127.0.0.1 and two
client certificates."""

from __future__ import annotations

import socket
import ssl
import time
from typing import Any

import pytest

from fluxmq_core.testing.tls import make_test_certs

WAIT = 5.0
CONNECT_311 = b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00"  # clean session, no id


@pytest.fixture(scope="module")
def certs(tmp_path_factory: Any) -> dict[str, str]:
    return make_test_certs(
        tmp_path_factory.mktemp("mqtt-certs"), (("device", "device-7"), ("other", "device-9"))
    )


def _tls(certs: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"tls_cert": certs["server.pem"], "tls_key": certs["server.key"], **extra}


@pytest.fixture
def tls_clients(clients):
    """``tls_clients(port, certs, version, cert=None, expect_ok=True, **paho_kwargs)``:
    the shared paho wrapper with TLS set up (closed by ``clients``)."""

    def factory(
        port: int,
        certs: dict[str, str],
        version: int = 5,
        cert: str | None = None,
        expect_ok: bool = True,
        **kwargs: Any,
    ) -> Any:
        c = clients(port, version=version, connect=False, **kwargs)
        c.client.tls_set(
            ca_certs=certs["ca.pem"],
            certfile=certs[f"{cert}.pem"] if cert else None,
            keyfile=certs[f"{cert}.key"] if cert else None,
        )
        result = c.connect(expect_ok=expect_ok)
        return c if expect_ok else (c, result)

    return factory


def _connack(port: int) -> bytes:
    """Send a 3.1.1 CONNECT on a plain socket; what comes back (b"" when closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        s.sendall(CONNECT_311)
        try:
            return s.recv(4)
        except ConnectionResetError:
            return b""


@pytest.mark.parametrize("version", [4, 5])
def test_paho_over_tls(fluxmq_broker_factory, certs, tls_clients, version):
    b = fluxmq_broker_factory(plugins=["mqtt"], config={"mqtt": _tls(certs)})
    port = b.port("mqtt.tls")
    assert port != b.port("mqtt.tcp")
    sub = tls_clients(port, certs, version)
    pub = tls_clients(port, certs, version)
    sub.subscribe("tls/#", 2)
    for qos in (0, 1, 2):
        pub.publish("tls/x", f"q{qos}", qos)
        m = sub.get()
        assert (m.topic, m.payload, m.qos) == ("tls/x", f"q{qos}".encode(), qos)


def test_plain_mqtt_on_the_tls_port_is_refused(fluxmq_broker_factory, certs):
    b = fluxmq_broker_factory(plugins=["mqtt"], config={"mqtt": _tls(certs)})
    assert not _connack(b.port("mqtt.tls")).startswith(b"\x20")  # never a CONNACK


def test_client_certificate_cn_is_the_username_for_the_acl(
    fluxmq_broker_factory, certs, tls_clients, tmp_path
):
    acl = tmp_path / "acl.toml"
    acl.write_text('default = "deny"\n[[rule]]\npermission = "allow"\ntopic = "dev/%u/#"\n')
    b = fluxmq_broker_factory(
        plugins=["mqtt"],
        config={
            "mqtt": _tls(certs, tls_ca=certs["ca.pem"], tls_require_client_cert=True),
            "auth": {"use_identity_as_username": True, "acl_file": str(acl), "anonymous": False},
        },
    )
    port = b.port("mqtt.tls")
    dev = tls_clients(port, certs, 5, cert="device", username="spoofed", password="x")
    assert dev.subscribe("dev/device-7/#", 1)[0].value == 1
    assert dev.subscribe("dev/device-9/#", 1)[0].value == 0x87
    dev.publish("dev/device-7/temp", "21", 1)
    assert dev.get().payload == b"21"
    assert dev.pubacks.get(timeout=WAIT)[1].value == 0
    dev.publish("dev/device-9/temp", "spoof", 1)
    assert dev.pubacks.get(timeout=WAIT)[1].value == 0x87
    other = tls_clients(port, certs, 4, cert="other")
    assert [rc.value for rc in other.subscribe("dev/device-7/#", 1)] == [0x80]
    sessions = b.call_soon(
        lambda: {cid: s.username for cid, s in b.context.extras["mqtt"].registry.sessions.items()}
    )
    assert sorted(sessions.values()) == ["device-7", "device-9"]
    # Without a certificate the TLS handshake itself fails.
    ctx = ssl.create_default_context(cafile=certs["ca.pem"])
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as raw:
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(CONNECT_311)
                if not s.recv(4):  # TLS 1.3 reports the refusal on the first read
                    raise ConnectionResetError("closed")


def test_identity_as_username_without_a_certificate_is_refused(
    fluxmq_broker_factory, certs, tls_clients
):
    b = fluxmq_broker_factory(
        plugins=["mqtt"],
        config={
            "mqtt": _tls(certs, tls_ca=certs["ca.pem"]),  # certificate optional
            "auth": {"use_identity_as_username": True},
        },
    )
    _c, (_flags, rc, _props) = tls_clients(
        b.port("mqtt.tls"), certs, 5, expect_ok=False, username="alice", password="pw"
    )
    assert rc.is_failure


def test_max_connections_per_listener(fluxmq_broker_factory, certs, tls_clients, clients):
    b = fluxmq_broker_factory(plugins=["mqtt"], config={"mqtt": _tls(certs, max_connections=2)})
    tcp = b.port("mqtt.tcp")
    first, second = clients(tcp, version=4), clients(tcp, version=5)
    assert _connack(tcp) == b""  # the third is closed at once, without a CONNACK
    assert b.call_soon(lambda: b.context.stats.connections_rejected) == 1
    # The limit is per listener: the TLS one still takes two.
    tls_clients(b.port("mqtt.tls"), certs, 4)
    tls_clients(b.port("mqtt.tls"), certs, 5)
    # A slot freed by a disconnect is usable again (once the broker saw the close).
    first.close()
    for _ in range(100):
        if _connack(tcp) == b"\x20\x02\x00\x00":
            break
        time.sleep(0.02)
    else:
        pytest.fail("no slot came free after a disconnect")
    second.publish("still/alive", "x", 1)


def test_paho_against_crl_client_auth_and_minimum_version(
    fluxmq_broker_factory, tmp_path_factory, clients
):
    """The [mqtt] TLS keys with a real MQTT client: a revoked device certificate
    and a TLS 1.2-only client are refused, a valid device gets its CONNACK."""
    import queue

    made = make_test_certs(
        tmp_path_factory.mktemp("mqtt-crl"),
        (("device", "device-7"), ("lost", "device-8")),
        revoked=["lost"],
    )
    b = fluxmq_broker_factory(
        plugins=["mqtt"],
        config={
            "mqtt": _tls(
                made,
                tls_ca=made["ca.pem"],
                tls_client_auth="required",
                tls_crl=made["crl.pem"],
                tls_min_version="1.3",
            )
        },
    )
    port = b.port("mqtt.tls")

    def attempt(cert: str, max_version: ssl.TLSVersion | None = None) -> bool:
        c = clients(port, version=5, connect=False)
        ctx = ssl.create_default_context(cafile=made["ca.pem"])
        ctx.load_cert_chain(made[f"{cert}.pem"], made[f"{cert}.key"])
        if max_version is not None:
            ctx.maximum_version = max_version
        c.client.tls_set_context(ctx)
        try:
            _flags, rc, _props = c.connect(expect_ok=False)
        except (ssl.SSLError, OSError, queue.Empty):
            return False
        return not rc.is_failure

    assert attempt("device")
    assert not attempt("lost")
    assert not attempt("device", ssl.TLSVersion.TLSv1_2)
