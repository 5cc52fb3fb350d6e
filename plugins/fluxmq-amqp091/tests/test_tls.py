"""AMQP 0.9.1 over TLS with pika: the TLS listener, a round trip through it,
plain AMQP refused on the TLS port, and client certificates as identity."""

from __future__ import annotations

import socket
import ssl
from typing import Any

import pika
import pytest
from fluxmq_amqp091.testing import WAIT

from fluxmq_core.testing.broker import BrokerThread
from fluxmq_core.testing.tls import make_test_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory: Any) -> dict[str, str]:
    return make_test_certs(tmp_path_factory.mktemp("amqp-certs"), (("device", "device-7"),))


def _params(
    broker: BrokerThread, certs: dict[str, str], cert: str | None = None
) -> pika.ConnectionParameters:
    ctx = ssl.create_default_context(cafile=certs["ca.pem"])
    if cert:
        ctx.load_cert_chain(certs[f"{cert}.pem"], certs[f"{cert}.key"])
    return pika.ConnectionParameters(
        "127.0.0.1",
        broker.port("amqp091.tls_bind"),
        ssl_options=pika.SSLOptions(ctx, "localhost"),
        socket_timeout=WAIT,
        blocked_connection_timeout=WAIT,
    )


def test_round_trip_over_tls(certs: dict[str, str]) -> None:
    cfg = {
        "amqp091": {
            "tls_bind": "127.0.0.1:0",
            "tls_cert": certs["server.pem"],
            "tls_key": certs["server.key"],
        }
    }
    with BrokerThread(plugins=["amqp091"], config=cfg) as broker:
        conn = pika.BlockingConnection(_params(broker, certs))
        try:
            ch = conn.channel()
            ch.queue_declare("tls-q")
            ch.basic_publish(
                "", "tls-q", b"over tls", pika.BasicProperties(content_type="text/plain")
            )
            method, props, body = None, None, None
            for _ in range(50):
                method, props, body = ch.basic_get("tls-q", auto_ack=True)
                if method is not None:
                    break
                conn.sleep(0.05)
            assert body == b"over tls" and props.content_type == "text/plain"
        finally:
            conn.close()
        # The plain-text protocol header on the TLS port gets no AMQP answer.
        with socket.create_connection(broker.address("amqp091.tls_bind"), timeout=WAIT) as s:
            s.sendall(b"AMQP\x00\x00\x09\x01")
            try:
                data = s.recv(64)
            except (TimeoutError, ConnectionResetError):
                data = b""
            assert not data.startswith(b"\x01\x00\x00")  # no connection.start frame


def test_client_certificate_is_the_identity(certs: dict[str, str]) -> None:
    cfg = {
        "amqp091": {
            "tls_bind": "127.0.0.1:0",
            "tls_cert": certs["server.pem"],
            "tls_key": certs["server.key"],
            "tls_ca": certs["ca.pem"],
            "tls_require_client_cert": True,
        },
        "auth": {"use_identity_as_username": True},
    }
    with BrokerThread(plugins=["amqp091"], config=cfg) as broker:
        conn = pika.BlockingConnection(_params(broker, certs, cert="device"))
        assert conn.is_open
        conn.close()
        with pytest.raises(pika.exceptions.AMQPError):
            pika.BlockingConnection(_params(broker, certs))  # no client certificate
