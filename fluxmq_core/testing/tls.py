"""Throw-away TLS material for tests: a CA, a server certificate valid for
``localhost`` and ``127.0.0.1``, client certificates with chosen common names and a
certificate revocation list (``crl.pem``) that revokes the clients asked for.

Made with the ``openssl`` command (present wherever Python's ``ssl`` is), so tests of
every protocol's TLS listener use the same, real certificates.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path

_CA_CONFIG = """\
[ca]
default_ca = test_ca

[test_ca]
database = index.txt
crlnumber = crlnumber
default_md = sha256
default_crl_days = 2
"""


def make_test_certs(
    directory: str | Path,
    clients: Iterable[tuple[str, str]] = (("client", "client-1"),),
    revoked: Iterable[str] = (),
) -> dict[str, str]:
    """Write ``ca.pem``/``ca.key``, ``server.pem``/``server.key``, for each
    ``(name, common_name)`` in ``clients`` ``<name>.pem``/``<name>.key``, and
    ``crl.pem``, a CRL signed by the CA that revokes the client certificates
    named in ``revoked`` (empty when none is), into ``directory``; return
    ``{file name: path}``. Private keys are written with mode 0600."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d, timeout=60)

    (d / "san.ext").write_text("subjectAltName = DNS:localhost, IP:127.0.0.1\n")
    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=fluxmq-test-ca",
    )
    for name, cn in (("server", "localhost"), *clients):
        run(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN={cn}",
        )
        extra = ["-extfile", "san.ext"] if name == "server" else []
        run(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.pem",
            "-days",
            "2",
            *extra,
        )
    (d / "ca.cnf").write_text(_CA_CONFIG)
    (d / "index.txt").write_text("")
    (d / "crlnumber").write_text("01\n")
    ca = ("-config", "ca.cnf", "-keyfile", "ca.key", "-cert", "ca.pem")
    for name in revoked:
        run("ca", *ca, "-revoke", f"{name}.pem")
    run("ca", *ca, "-gencrl", "-out", "crl.pem")
    for key in d.glob("*.key"):
        key.chmod(0o600)
    return {p.name: str(p) for p in d.iterdir()}
