"""TLS keys every listener section shares (:class:`ListenerSecurity`): minimum
version, cipher string, client-certificate modes and a CRL, each checked with
Python's ``ssl`` client against a real listener, with certificates made by the test
kit. The HTTPS listener (``[http] tls_bind``) is checked with ``urllib``."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import socket
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from fluxmq_core.config import ConfigError
from fluxmq_core.hookspecs import hookimpl
from fluxmq_core.http.config import HTTPConfig
from fluxmq_core.testing import BrokerThread
from fluxmq_core.testing.tls import make_test_certs
from fluxmq_core.transport import ListenerSecurity, ListenerSpec, ProtocolServer, peer_identity

WAIT = 5.0
# What a client sees when the server refuses it during or right after the handshake
# (TLS 1.3 reports a refused client certificate on the first read).
REFUSED = (ssl.SSLError, ConnectionResetError, BrokenPipeError, ConnectionAbortedError, EOFError)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: Any) -> dict[str, str]:
    return make_test_certs(
        tmp_path_factory.mktemp("tls"),
        (("good", "device-1"), ("revoked", "device-2")),
        revoked=["revoked"],
    )


class Who(asyncio.Protocol):
    """Greets each connection with the client certificate's CN (``-`` for none)."""

    def connection_made(self, transport: Any) -> None:
        transport.write(((peer_identity(transport) or "-") + "\n").encode())


def _listener(factory: Any, certs: dict[str, str], **keys: Any) -> BrokerThread:
    """A broker whose one listener takes its TLS context from ``keys``."""
    sec = ListenerSecurity(tls_cert=certs["server.pem"], tls_key=certs["server.key"], **keys)
    sec.check_listener_security("t")
    ctx = sec.server_ssl_context()
    spec = ListenerSpec("t.tls", "127.0.0.1:0", Who, ssl=ctx)

    class P:
        @hookimpl
        def fluxmq_register_servers(self, context: Any) -> list[ProtocolServer]:
            return [ProtocolServer("t", [spec])]

    return factory(plugins=[], extra_plugins=[("t", P())])


def _client(
    certs: dict[str, str],
    cert: str | None = None,
    max_version: ssl.TLSVersion | None = None,
    ciphers: str | None = None,
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=certs["ca.pem"])
    if cert:
        ctx.load_cert_chain(certs[f"{cert}.pem"], certs[f"{cert}.key"])
    if max_version:
        ctx.maximum_version = max_version
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


def _hello(broker: BrokerThread, ctx: ssl.SSLContext) -> tuple[str, str | None]:
    """Handshake and read the greeting; raises one of ``REFUSED`` when refused."""
    raw = socket.create_connection(broker.address("t.tls"), timeout=WAIT)
    try:
        s = ctx.wrap_socket(raw, server_hostname="localhost")
    except BaseException:
        raw.close()
        raise
    with s:
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(64)
            if not chunk:
                raise EOFError("closed by the server")
            data += chunk
        return data.decode().strip(), s.version()


# --- minimum version and ciphers --------------------------------------------------------


def test_default_minimum_is_tls_1_2(fluxmq_broker_factory: Any, certs: dict[str, str]) -> None:
    b = _listener(fluxmq_broker_factory, certs)
    assert _hello(b, _client(certs, max_version=ssl.TLSVersion.TLSv1_2))[0] == "-"


def test_minimum_version_1_3_refuses_a_tls_1_2_client(
    fluxmq_broker_factory: Any, certs: dict[str, str]
) -> None:
    b = _listener(fluxmq_broker_factory, certs, tls_min_version="1.3")
    with pytest.raises(REFUSED):
        _hello(b, _client(certs, max_version=ssl.TLSVersion.TLSv1_2))
    assert _hello(b, _client(certs))[0] == "-"  # a TLS 1.3 client gets in


def test_cipher_string_limits_tls_1_2_suites(
    fluxmq_broker_factory: Any, certs: dict[str, str]
) -> None:
    b = _listener(fluxmq_broker_factory, certs, tls_ciphers="ECDHE+AESGCM")
    with pytest.raises(REFUSED):
        _hello(b, _client(certs, max_version=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE+CHACHA20"))
    seen: list[str] = []
    raw = socket.create_connection(b.address("t.tls"), timeout=WAIT)
    ctx = _client(certs, max_version=ssl.TLSVersion.TLSv1_2)
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        cipher = s.cipher()
        assert cipher is not None
        seen.append(cipher[0])
    assert "GCM" in seen[0] and "ECDHE" in seen[0]


# --- client certificates -----------------------------------------------------------------


def test_client_auth_none_never_asks(fluxmq_broker_factory: Any, certs: dict[str, str]) -> None:
    b = _listener(fluxmq_broker_factory, certs, tls_ca=certs["ca.pem"], tls_client_auth="none")
    assert _hello(b, _client(certs, cert="good"))[0] == "-"  # sent nothing: not asked
    assert _hello(b, _client(certs))[0] == "-"


def test_client_auth_optional_verifies_when_sent(
    fluxmq_broker_factory: Any, certs: dict[str, str]
) -> None:
    b = _listener(fluxmq_broker_factory, certs, tls_ca=certs["ca.pem"])  # the default mode
    assert _hello(b, _client(certs, cert="good"))[0] == "device-1"
    assert _hello(b, _client(certs))[0] == "-"


def test_client_auth_required_refuses_a_client_without_certificate(
    fluxmq_broker_factory: Any, certs: dict[str, str]
) -> None:
    b = _listener(fluxmq_broker_factory, certs, tls_ca=certs["ca.pem"], tls_client_auth="required")
    assert _hello(b, _client(certs, cert="good"))[0] == "device-1"
    with pytest.raises(REFUSED):
        _hello(b, _client(certs))


def test_old_require_client_cert_flag_still_means_required(
    fluxmq_broker_factory: Any, certs: dict[str, str]
) -> None:
    b = _listener(
        fluxmq_broker_factory, certs, tls_ca=certs["ca.pem"], tls_require_client_cert=True
    )
    with pytest.raises(REFUSED):
        _hello(b, _client(certs))
    assert _hello(b, _client(certs, cert="good"))[0] == "device-1"


def test_crl_refuses_a_revoked_client_certificate(
    fluxmq_broker_factory: Any, certs: dict[str, str]
) -> None:
    b = _listener(
        fluxmq_broker_factory,
        certs,
        tls_ca=certs["ca.pem"],
        tls_client_auth="required",
        tls_crl=certs["crl.pem"],
    )
    assert _hello(b, _client(certs, cert="good"))[0] == "device-1"
    with pytest.raises(REFUSED):
        _hello(b, _client(certs, cert="revoked"))


def test_without_crl_the_same_revoked_certificate_is_accepted(
    fluxmq_broker_factory: Any, certs: dict[str, str]
) -> None:
    """The CRL, not the certificate, is what refuses it above."""
    b = _listener(fluxmq_broker_factory, certs, tls_ca=certs["ca.pem"], tls_client_auth="required")
    assert _hello(b, _client(certs, cert="revoked"))[0] == "device-2"


# --- bad values are config errors naming key, file and what was expected ----------------


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"tls_min_version": "1.1"}, r"http\.tls_min_version.*\"1\.2\" \| \"1\.3\""),
        ({"tls_client_auth": "maybe"}, r"http\.tls_client_auth.*\"none\" \| \"optional\""),
        ({"tls_client_auth": "required"}, r"http\.tls_client_auth = 'required' needs"),
        ({"tls_crl": "crl.pem"}, r"http\.tls_crl needs http\.tls_ca"),
        (
            {"tls_require_client_cert": True, "tls_client_auth": "none"},
            r"contradicts http\.tls_client_auth",
        ),
    ],
)
def test_bad_tls_settings_are_config_errors(
    certs: dict[str, str], keys: dict[str, Any], expected: str
) -> None:
    config = {"http": {"tls_cert": certs["server.pem"], "tls_key": certs["server.key"], **keys}}
    with pytest.raises(ConfigError, match=expected):
        BrokerThread(plugins=[], config=config).start()


def test_bad_cipher_string_names_the_key(certs: dict[str, str]) -> None:
    cfg = HTTPConfig(tls_cert=certs["server.pem"], tls_key=certs["server.key"], tls_ciphers="NOPE")
    with pytest.raises(ConfigError, match=r"http\.tls_ciphers.*'NOPE'.*expected"):
        cfg.server_ssl_context()


def test_crl_file_errors_name_the_file(certs: dict[str, str], tmp_path: Path) -> None:
    base = {"tls_cert": certs["server.pem"], "tls_key": certs["server.key"]}
    missing = HTTPConfig(**base, tls_ca=certs["ca.pem"], tls_crl=str(tmp_path / "none.pem"))
    with pytest.raises(ConfigError, match=r"http\.tls_crl: cannot load CRL file .*none\.pem"):
        missing.server_ssl_context()
    not_a_crl = HTTPConfig(**base, tls_ca=certs["ca.pem"], tls_crl=certs["good.pem"])
    with pytest.raises(ConfigError, match=r"holds no certificate revocation list"):
        not_a_crl.server_ssl_context()


def test_bad_ca_file_names_key_and_file(certs: dict[str, str], tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    cfg = HTTPConfig(tls_cert=certs["server.pem"], tls_key=certs["server.key"], tls_ca=str(junk))
    with pytest.raises(ConfigError, match=r"http\.tls_ca: cannot load TLS CA file .*junk\.pem"):
        cfg.server_ssl_context()


# --- private key file mode ------------------------------------------------------------


def test_private_key_readable_by_others_is_loaded_with_a_warning(
    certs: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = tmp_path / "server.key"
    shutil.copy(certs["server.key"], key)
    key.chmod(0o600)
    cfg = HTTPConfig(tls_cert=certs["server.pem"], tls_key=str(key))
    with caplog.at_level(logging.WARNING, logger="fluxmq.security"):
        assert cfg.server_ssl_context() is not None
    assert not caplog.records
    key.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="fluxmq.security"):
        assert cfg.server_ssl_context() is not None
    (record,) = caplog.records
    assert str(key) in record.getMessage()
    assert "0644" in record.getMessage() and f"chmod 600 {key}" in record.getMessage()


# --- HTTPS listener ---------------------------------------------------------------------


def _https(url: str, ctx: ssl.SSLContext) -> tuple[int, Any]:
    with urllib.request.urlopen(url, context=ctx, timeout=WAIT) as resp:
        return resp.status, json.loads(resp.read() or b"null")


def test_https_listener_serves_the_http_routes(
    fluxmq_broker_factory: Any, certs: dict[str, str]
) -> None:
    b = fluxmq_broker_factory(
        plugins=[],
        config={"http": {"tls_cert": certs["server.pem"], "tls_key": certs["server.key"]}},
    )
    port = b.port("http.tls_bind")
    assert port != b.port("http.bind")
    status, _body = _https(f"https://localhost:{port}/health", _client(certs))
    assert status == 200
    # The admin API answers a loopback client over HTTPS as over HTTP.
    status, stats = _https(f"https://localhost:{port}/api/v1/stats", _client(certs))
    assert status == 200 and isinstance(stats, dict)
    # Plain HTTP on the HTTPS port gets no HTTP answer.
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            answer = s.recv(16)
        except ConnectionResetError:
            answer = b""
    assert not answer.startswith(b"HTTP/1.1 200")
    # The plain listener stays plain.
    with urllib.request.urlopen(f"http://127.0.0.1:{b.port('http.bind')}/health") as resp:
        assert resp.status == 200


def test_https_with_required_client_certificate(
    fluxmq_broker_factory: Any, certs: dict[str, str]
) -> None:
    b = fluxmq_broker_factory(
        plugins=[],
        config={
            "http": {
                "tls_cert": certs["server.pem"],
                "tls_key": certs["server.key"],
                "tls_ca": certs["ca.pem"],
                "tls_client_auth": "required",
                "tls_crl": certs["crl.pem"],
            }
        },
    )
    url = f"https://localhost:{b.port('http.tls_bind')}/health"
    assert _https(url, _client(certs, cert="good"))[0] == 200
    for ctx in (_client(certs), _client(certs, cert="revoked")):
        with pytest.raises((urllib.error.URLError, *REFUSED)):
            _https(url, ctx)


def test_without_tls_cert_no_https_listener(fluxmq_broker_factory: Any) -> None:
    b = fluxmq_broker_factory(plugins=[])
    assert "http.tls_bind" not in b.context.bound
    assert "http.bind" in b.context.bound
