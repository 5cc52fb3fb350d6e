"""What a protocol plugin hands the core so the core can listen for it.

A plugin's ``fluxmq_register_servers`` returns :class:`ProtocolServer` objects. Each
names its listeners (:class:`ListenerSpec`): an address from config, an
``asyncio.Protocol`` factory, an optional TLS context, and a header predicate used
when several protocols share one port. The core binds, counts connections, shares
ports and closes everything in order; the plugin only speaks its protocol.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fluxmq_core.config import setting

# First bytes of a connection -> True (mine), False (not mine), None (need more bytes).
HeaderPredicate = Callable[[bytes], bool | None]
ProtocolFactory = Callable[[], asyncio.Protocol]


@dataclass
class ListenerSpec:
    """One listening endpoint of a protocol server.

    ``name`` is ``"<section>.<key>"`` (``"mqtt.tcp"``) so that logs, the test kit and
    ``context.bound`` agree on it. An empty ``address`` disables the listener.
    ``max_connections`` 0 means unlimited; past it a new connection is closed at
    once and counted in ``stats.connections_rejected``.
    """

    name: str
    address: str
    protocol_factory: ProtocolFactory
    ssl: ssl.SSLContext | None = None
    header: HeaderPredicate | None = None
    max_connections: int = 0
    kind: str = "tcp"


@dataclass
class ProtocolServer:
    """A protocol's listeners plus optional lifecycle coroutines.

    ``stop`` is called after the listening sockets closed and before storage is
    flushed: close sessions the protocol's way (send wills, DISCONNECT, channel
    close) and return. ``start`` runs before the sockets open.
    """

    name: str
    listeners: list[ListenerSpec] = field(default_factory=list)
    start: Callable[[], Awaitable[None]] | None = None
    stop: Callable[[], Awaitable[None]] | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class ListenerSecurity:
    """Config keys every protocol section with listeners shares: TLS material and
    the per-listener connection cap. A plugin's section dataclass inherits them and
    calls :meth:`check_listener_security` from its ``__post_init__``."""

    tls_cert: str = setting("", "PEM certificate (chain) of the TLS listener; empty: no TLS.")
    tls_key: str = setting("", "PEM private key of tls_cert (empty: the key is in tls_cert).")
    tls_ca: str = setting("", "CA bundle for client certificates; empty: none asked for.")
    tls_require_client_cert: bool = setting(
        False, "Refuse TLS clients without a certificate signed by tls_ca."
    )
    max_connections: int = setting(0, "Open connections per listener; 0 = unlimited.")

    def check_listener_security(self, section: str) -> None:
        """Raise ValueError naming ``<section>.<key>`` for a bad value."""
        if self.max_connections < 0:
            raise ValueError(
                f"{section}.max_connections must be >= 0; got {self.max_connections!r}"
            )
        if self.tls_require_client_cert and not self.tls_ca:
            raise ValueError(
                f"{section}.tls_require_client_cert needs tls_ca; got {self.tls_require_client_cert!r}"
            )

    def server_ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for this section's TLS listeners, or None without a cert."""
        if not self.tls_cert:
            return None
        return make_server_ssl_context(
            self.tls_cert, self.tls_key, self.tls_ca, self.tls_require_client_cert
        )


def make_server_ssl_context(
    certfile: str, keyfile: str = "", cafile: str = "", require_client_cert: bool = False
) -> ssl.SSLContext:
    """A server TLS context (TLS 1.2+). ``cafile`` enables client certificates,
    optional unless ``require_client_cert``. Errors name the file that failed."""
    from fluxmq_core.config import ConfigError

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(certfile, keyfile or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load TLS certificate/key {certfile!r}/{keyfile!r}: {exc}"
        ) from exc
    if cafile:
        try:
            ctx.load_verify_locations(cafile)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load TLS CA file {cafile!r}: {exc}") from exc
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    return ctx


def tune_transport(transport: asyncio.BaseTransport, high_water: int) -> None:
    """What every protocol connection wants from its socket: TCP_NODELAY (we
    coalesce writes ourselves, so Nagle only adds latency) and a write-buffer high
    mark at which ``pause_writing`` tells the protocol the client is slow."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # not TCP (a Unix socket in tests): nothing to tune
    set_limits = getattr(transport, "set_write_buffer_limits", None)
    if set_limits is not None:
        set_limits(high=high_water)


def peer_identity(transport: asyncio.BaseTransport) -> str | None:
    """The client certificate's subject common name, when TLS client auth is used."""
    cert = transport.get_extra_info("peercert")
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def peer_name(transport: asyncio.BaseTransport) -> str:
    """``host:port`` of the remote end, or ``"?"``."""
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer) if peer else "?"
