"""What a protocol plugin hands the core so the core can listen for it.

A plugin's ``fluxmq_register_servers`` returns :class:`ProtocolServer` objects. Each
names its listeners (:class:`ListenerSpec`): an address from config, an
``asyncio.Protocol`` factory, an optional TLS context, and a header predicate used
when several protocols share one port. The core binds, counts connections, shares
ports and closes everything in order; the plugin only speaks its protocol.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

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


TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
CLIENT_AUTH_MODES = ("none", "optional", "required")

#: The settings each context from :func:`make_server_ssl_context` was made with, so
#: listeners of different protocols with equivalent TLS settings can share a socket.
_TLS_SETTINGS: weakref.WeakKeyDictionary[ssl.SSLContext, tuple[str, ...]] = (
    weakref.WeakKeyDictionary()
)


def tls_settings(ctx: ssl.SSLContext) -> tuple[str, ...] | None:
    """What ``ctx`` was made from (certificate, key, CA, CRL files, client auth, min
    version, ciphers) when :func:`make_server_ssl_context` made it; None for a
    context made elsewhere (it then shares a socket only with itself)."""
    return _TLS_SETTINGS.get(ctx)


@dataclass
class ListenerSecurity:
    """Config keys every protocol section with listeners shares: TLS material and
    the per-listener connection cap. A plugin's section dataclass inherits them and
    calls :meth:`check_listener_security` from its ``__post_init__``.

    Client certificates: ``tls_client_auth`` says whether a TLS client must show
    one signed by ``tls_ca`` ("required"), may ("optional", the default; nothing
    is asked for while ``tls_ca`` is empty) or is never asked ("none").
    ``tls_require_client_cert = true`` is the older spelling of "required"."""

    tls_cert: str = setting("", "PEM certificate (chain) of the TLS listener; empty: no TLS.")
    tls_key: str = setting("", "PEM private key of tls_cert (empty: the key is in tls_cert).")
    tls_ca: str = setting("", "CA bundle for client certificates; empty: none asked for.")
    tls_client_auth: Literal["none", "optional", "required"] = setting(
        "optional",
        "Client certificates: 'required' refuses TLS clients without one signed by "
        "tls_ca; 'optional' verifies one when sent (needs tls_ca to ask); 'none' never asks.",
    )
    tls_require_client_cert: bool = setting(
        False, "Older spelling of tls_client_auth = 'required'."
    )
    tls_min_version: Literal["1.2", "1.3"] = setting(
        "1.2", 'Oldest TLS version accepted: "1.2" or "1.3" (a string).'
    )
    tls_ciphers: str = setting(
        "",
        "OpenSSL cipher string for TLS 1.2 (e.g. 'ECDHE+AESGCM'); empty: Python's "
        "defaults. TLS 1.3 suites are OpenSSL's and not configurable here.",
    )
    tls_crl: str = setting(
        "",
        "PEM certificate revocation list checked for client certificates (leaf only); "
        "needs tls_ca.",
    )
    max_connections: int = setting(0, "Open connections per listener; 0 = unlimited.")

    def check_listener_security(self, section: str) -> None:
        """Raise ValueError naming ``<section>.<key>`` for a bad value."""
        if self.max_connections < 0:
            raise ValueError(
                f"{section}.max_connections must be >= 0; got {self.max_connections!r}"
            )
        if self.tls_client_auth not in CLIENT_AUTH_MODES:
            raise ValueError(
                f"{section}.tls_client_auth must be one of {', '.join(CLIENT_AUTH_MODES)}; "
                f"got {self.tls_client_auth!r}"
            )
        if self.tls_min_version not in TLS_VERSIONS:
            raise ValueError(
                f'{section}.tls_min_version must be "1.2" or "1.3"; got {self.tls_min_version!r}'
            )
        if self.tls_require_client_cert:
            if self.tls_client_auth == "none":
                raise ValueError(
                    f"{section}.tls_require_client_cert = true contradicts "
                    f"{section}.tls_client_auth = 'none'; keep only tls_client_auth"
                )
            self.tls_client_auth = "required"
        if self.tls_client_auth == "required" and not self.tls_ca:
            raise ValueError(
                f"{section}.tls_client_auth = 'required' needs {section}.tls_ca "
                "(the CA that signs client certificates)"
            )
        if self.tls_crl and (not self.tls_ca or self.tls_client_auth == "none"):
            raise ValueError(
                f"{section}.tls_crl needs {section}.tls_ca (the CA whose revocations it "
                "lists) and tls_client_auth 'optional' or 'required'"
            )
        self._section = section

    def server_ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for this section's TLS listeners, or None without a cert."""
        if not self.tls_cert:
            return None
        return make_server_ssl_context(
            self.tls_cert,
            self.tls_key,
            self.tls_ca,
            client_auth=self.tls_client_auth,
            min_version=self.tls_min_version,
            ciphers=self.tls_ciphers,
            crlfile=self.tls_crl,
            section=getattr(self, "_section", ""),
        )


def make_server_ssl_context(
    certfile: str,
    keyfile: str = "",
    cafile: str = "",
    require_client_cert: bool = False,
    *,
    client_auth: str = "",
    min_version: str = "1.2",
    ciphers: str = "",
    crlfile: str = "",
    section: str = "",
) -> ssl.SSLContext:
    """A server TLS context (TLS ``min_version``+, by default 1.2).

    ``cafile`` enables client certificates: ``client_auth`` "optional" (the
    default once a CA is given; ``require_client_cert`` is the older flag for
    "required"), "required" or "none". ``crlfile`` adds a revocation list checked
    for the client's own certificate. Errors are :class:`ConfigError` naming the
    key (``<section>.tls_...``) and the file; a private key readable by other users
    is loaded with a warning.
    """
    from fluxmq_core.config import ConfigError
    from fluxmq_core.filemodes import warn_if_exposed

    def key(name: str) -> str:
        return f"{section}.{name}" if section else name

    mode = client_auth or ("required" if require_client_cert else "optional")
    if mode not in CLIENT_AUTH_MODES:
        raise ConfigError(
            f"{key('tls_client_auth')}: expected one of {', '.join(CLIENT_AUTH_MODES)}, "
            f"got {mode!r}",
            key=key("tls_client_auth"),
        )
    if min_version not in TLS_VERSIONS:
        raise ConfigError(
            f'{key("tls_min_version")}: expected "1.2" or "1.3", got {min_version!r}',
            key=key("tls_min_version"),
        )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = TLS_VERSIONS[min_version]
    try:
        ctx.load_cert_chain(certfile, keyfile or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"{key('tls_cert')}/{key('tls_key')}: cannot load TLS certificate/key "
            f"{certfile!r}/{keyfile!r}: {exc}",
            key=key("tls_cert"),
        ) from exc
    warn_if_exposed(keyfile or certfile, "TLS private key")
    if ciphers:
        try:
            ctx.set_ciphers(ciphers)
        except ssl.SSLError as exc:
            raise ConfigError(
                f"{key('tls_ciphers')}: no cipher matches the OpenSSL cipher string "
                f"{ciphers!r} (expected e.g. 'ECDHE+AESGCM:!aNULL'): {exc}",
                key=key("tls_ciphers"),
            ) from exc
    if cafile and mode != "none":
        try:
            ctx.load_verify_locations(cafile)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"{key('tls_ca')}: cannot load TLS CA file {cafile!r} "
                f"(expected PEM certificates): {exc}",
                key=key("tls_ca"),
            ) from exc
        ctx.verify_mode = ssl.CERT_REQUIRED if mode == "required" else ssl.CERT_OPTIONAL
    elif mode == "required":
        raise ConfigError(
            f"{key('tls_client_auth')} = 'required' needs {key('tls_ca')}",
            key=key("tls_client_auth"),
        )
    if crlfile:
        if not cafile or mode == "none":
            raise ConfigError(
                f"{key('tls_crl')} needs {key('tls_ca')} and client certificates asked for",
                key=key("tls_crl"),
            )
        _load_crl(ctx, crlfile, key("tls_crl"))
    asks = bool(cafile) and mode != "none"
    _TLS_SETTINGS[ctx] = (
        os.path.realpath(certfile),
        os.path.realpath(keyfile) if keyfile else "",
        os.path.realpath(cafile) if asks else "",
        os.path.realpath(crlfile) if crlfile else "",
        mode if asks else "none",
        min_version,
        ciphers,
    )
    return ctx


def _load_crl(ctx: ssl.SSLContext, crlfile: str, where: str) -> None:
    """Add a PEM CRL to ``ctx`` and turn on the leaf check. ``load_verify_locations``
    takes certificates and CRLs alike, so a file holding only certificates would be
    accepted silently: count the CRLs it added and refuse a file without one."""
    from fluxmq_core.config import ConfigError

    before = ctx.cert_store_stats()["crl"]
    try:
        ctx.load_verify_locations(crlfile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"{where}: cannot load CRL file {crlfile!r} (expected a PEM X509 CRL): {exc}",
            key=where,
        ) from exc
    if ctx.cert_store_stats()["crl"] <= before:
        raise ConfigError(
            f"{where}: {crlfile!r} holds no certificate revocation list "
            "(expected '-----BEGIN X509 CRL-----')",
            key=where,
        )
    ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF


def tune_transport(transport: asyncio.BaseTransport, high_water: int) -> None:
    """What every protocol connection wants from its socket: TCP_NODELAY (we
    coalesce writes ourselves, so Nagle only adds latency) and a write-buffer high
    mark at which ``pause_writing`` tells the protocol the client is slow.

    uvloop's TCP transport sets TCP_NODELAY itself; asking it for its socket would
    keep a socket object per connection (72 bytes of every idle connection)."""
    kind = type(transport)
    if kind.__name__ == "TCPTransport" and kind.__module__.startswith("uvloop"):
        sock = None
    else:
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
