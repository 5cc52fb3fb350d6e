"""Binding listener sockets for protocol servers, sharing a port between
protocols by sniffing the first bytes, and capping connections per listener.

Listeners on an ephemeral port (``host:0``, what the test kit uses) share one socket
only when they have header predicates; one without a predicate gets a port of its own,
so a plugin that cannot be sniffed still runs beside the core's HTTP listener.

Design notes: sockets are plain ``loop.create_server`` with ``asyncio.Protocol``
factories (no streams: the hot path stays on callbacks). When two listener specs ask
for the same ``host:port`` (AMQP 0.9.1 and 1.0 on 5672), one socket is opened and a
:class:`SniffingProtocol` buffers the first bytes until one protocol's header
predicate claims the connection, then swaps itself out with ``set_protocol``.

TLS: the context belongs to the socket, so listeners share a TLS socket only when
their TLS settings are equivalent (:func:`~fluxmq_core.transport.base.tls_settings`:
the same certificate, key, CA, CRL, client-auth mode, minimum version and ciphers;
AMQP 0.9.1 and 1.0 on 5671 with the same ``tls_*`` keys). The same fixed address
asked with different TLS settings (or with and without TLS) is a ConfigError naming
both listeners, not an "address already in use" at bind time.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from fluxmq_core.config import ConfigError, parse_address
from fluxmq_core.transport.adapter import AdapterProtocol
from fluxmq_core.transport.base import ListenerSpec, tls_settings

log = logging.getLogger("fluxmq.transport")

SNIFF_LIMIT = 64  # bytes read before giving up on identifying the protocol
SNIFF_TIMEOUT = 10.0


class _Counter:
    """Open connections of one listener; shared by its protocol wrappers."""

    __slots__ = ("open", "limit", "name")

    def __init__(self, name: str, limit: int) -> None:
        self.name = name
        self.open = 0
        self.limit = limit


class SniffingProtocol(asyncio.Protocol):
    """Reads the first bytes and hands the connection to the protocol they match."""

    def __init__(
        self, specs: list[ListenerSpec], stats: Any, counters: dict[str, _Counter]
    ) -> None:
        self._specs = specs
        self._stats = stats
        self._counters = counters
        self._buf = b""
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # a stream server's transport
        self._timer = asyncio.get_running_loop().call_later(SNIFF_TIMEOUT, transport.close)

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        self._buf += data
        undecided = False
        for spec in self._specs:
            verdict = spec.header(self._buf) if spec.header else None
            if verdict:
                self._hand_over(spec)
                return
            if verdict is None:
                undecided = True
        if not undecided or len(self._buf) >= SNIFF_LIMIT:
            log.info("closing connection with unrecognised header %r", self._buf[:16])
            self._transport.close()

    def _hand_over(self, spec: ListenerSpec) -> None:
        assert self._transport is not None
        if self._timer:
            self._timer.cancel()
        counter = self._counters[spec.name]
        if counter.limit and counter.open >= counter.limit:
            self._stats.connections_rejected += 1
            self._transport.close()
            return
        proto = _counted(spec.protocol_factory(), counter)
        self._transport.set_protocol(proto)
        proto.connection_made(self._transport)
        if not self._transport.is_closing():
            proto.data_received(self._buf)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer:
            self._timer.cancel()


class _Counted(asyncio.Protocol):
    """Keeps a listener's count of open connections around the real protocol.

    A slotted forwarder rather than methods patched onto the protocol instance:
    about 60 bytes per connection instead of two closures, and the wrapped
    protocol stays free to use ``__slots__``. It costs one extra call per
    ``data_received`` chunk, never per message.
    """

    __slots__ = ("inner", "counter")

    def __init__(self, inner: asyncio.Protocol, counter: _Counter) -> None:
        self.inner = inner
        self.counter = counter

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.counter.open += 1
        self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.counter.open -= 1
        self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


def _counted(proto: asyncio.Protocol, counter: _Counter) -> asyncio.Protocol:
    if isinstance(proto, AdapterProtocol) and proto.counter is None:
        proto.counter = counter  # counts itself: no wrapper object per connection
        return proto
    return _Counted(proto, counter)


#: The keys behind :func:`~fluxmq_core.transport.base.tls_settings`, in its order.
TLS_KEYS = (
    "tls_cert",
    "tls_key",
    "tls_ca",
    "tls_crl",
    "tls_client_auth",
    "tls_min_version",
    "tls_ciphers",
)


def _tls_key(spec: ListenerSpec) -> Any:
    """What must be equal for two listeners to share a socket, TLS-wise."""
    if spec.ssl is None:
        return None
    settings = tls_settings(spec.ssl)
    return settings if settings is not None else ("context", id(spec.ssl))


def _check_tls_conflicts(groups: dict[tuple[Any, ...], list[ListenerSpec]]) -> None:
    """One fixed address asked for with different TLS settings cannot be bound
    twice: say which listeners and what differs."""
    seen: dict[str, list[ListenerSpec]] = {}
    for (address, *_rest), group in groups.items():
        if parse_address(address, where=group[0].name)[1] == 0:
            continue  # any free port: each group gets its own
        first = seen.setdefault(address, group)
        if first is group:
            continue
        a, b = first[0], group[0]
        sa, sb = _tls_key(a), _tls_key(b)
        if sa is None or sb is None:
            what = f"{(a if sa is None else b).name} is plain TCP and {(b if sa is None else a).name} is TLS"
        else:
            names = TLS_KEYS
            if isinstance(sa, tuple) and isinstance(sb, tuple) and len(sa) == len(sb) == len(names):
                diff = [n for n, x, y in zip(names, sa, sb, strict=True) if x != y]
            else:
                diff = ["the TLS context"]
            what = f"their TLS settings differ ({', '.join(diff)})"
        raise ConfigError(
            f"listeners {a.name} and {b.name} both ask for {address} but {what}: one "
            "socket has one TLS setup, so give them the same tls_* keys or different ports",
            key=b.name,
        )


class ListenerSet:
    """Every bound socket of the broker."""

    def __init__(self, stats: Any, limits: Any = None, *, reuse_port: bool = False) -> None:
        self._stats = stats
        #: SO_REUSEPORT on every socket (``[server] reuse_port``): several worker
        #: processes accept on one port, the kernel spreading connections among them.
        self._reuse_port = reuse_port
        #: ``[rate_limit] connections_per_ip`` (a :class:`~fluxmq_core.ratelimit.RateLimits`);
        #: looked at on every accept, so a reload turning it on applies at once.
        self._limits = limits
        self._servers: list[asyncio.AbstractServer] = []
        self._counters: dict[str, _Counter] = {}
        self.bound: dict[str, tuple[str, int]] = {}

    async def bind(self, specs: list[ListenerSpec]) -> None:
        """Bind every enabled spec, grouping specs that share an address."""
        loop = asyncio.get_running_loop()
        groups: dict[tuple[Any, ...], list[ListenerSpec]] = {}
        for spec in specs:
            if not spec.address:
                continue
            _host, port = parse_address(spec.address, where=spec.name)
            # Only specs with equivalent TLS settings can share a socket: the context
            # is the socket's (one protocol's [section] TLS keys), not a connection's.
            key: tuple[Any, ...] = (spec.address.strip(), _tls_key(spec))
            if port == 0 and spec.header is None:
                # "Any free port" and no way to tell it apart: a port of its own.
                key = (*key, spec.name)
            groups.setdefault(key, []).append(spec)
        _check_tls_conflicts(groups)
        for (address, *_rest), group in groups.items():
            host, port = parse_address(address, where=group[0].name)
            for spec in group:
                self._counters[spec.name] = _Counter(spec.name, spec.max_connections)
            if len(group) == 1:
                spec = group[0]
                counter = self._counters[spec.name]
                factory = self._single_factory(spec, counter)
            else:
                missing = [s.name for s in group if s.header is None]
                if missing:
                    raise ConfigError(
                        f"listeners {', '.join(s.name for s in group)} share {address} but "
                        f"{', '.join(missing)} cannot be told apart by header; give them different ports",
                        key=missing[0],
                    )
                factory = self._sniff_factory(group)
            factory = self._rate_limited(factory)
            try:
                server = await loop.create_server(
                    factory,
                    host,
                    port,
                    ssl=group[0].ssl,
                    reuse_address=True,
                    reuse_port=self._reuse_port or None,
                    backlog=1024,
                )
            except OSError as exc:
                raise ConfigError(
                    f"{', '.join(s.name for s in group)}: cannot listen on {address}: {exc.strerror or exc}",
                    key=group[0].name,
                ) from exc
            self._servers.append(server)
            sock = server.sockets[0].getsockname()
            for spec in group:
                self.bound[spec.name] = (sock[0], sock[1])
                log.info(
                    "%s listening on %s:%s%s",
                    spec.name,
                    sock[0],
                    sock[1],
                    " (TLS)" if spec.ssl else "",
                )

    def _single_factory(self, spec: ListenerSpec, counter: _Counter) -> Any:
        stats = self._stats

        if not counter.limit:
            return spec.protocol_factory

        def factory() -> asyncio.Protocol:
            if counter.open >= counter.limit:
                stats.connections_rejected += 1
                return _Reject()
            return _counted(spec.protocol_factory(), counter)

        return factory

    def _rate_limited(self, factory: Any) -> Any:
        """Wrap a listener's factory with the per-IP connection limit: one attribute
        check per accept while no limit is set."""
        limits = self._limits
        if limits is None:
            return factory

        def limited() -> asyncio.Protocol:
            proto = factory()
            if limits.connections is None:
                return proto
            return _IPGate(proto, limits)

        return limited

    def _sniff_factory(self, group: list[ListenerSpec]) -> Any:
        return lambda: SniffingProtocol(group, self._stats, self._counters)

    def close(self) -> None:
        """Stop accepting new connections (existing ones stay open)."""
        for server in self._servers:
            server.close()

    async def wait_closed(self) -> None:
        for server in self._servers:
            try:
                await asyncio.wait_for(server.wait_closed(), 1.0)
            except Exception as exc:  # noqa: BLE001 - shutdown goes on regardless
                log.debug("listener did not close cleanly: %r", exc)
        self._servers.clear()


class _IPGate(asyncio.Protocol):
    """Checks the peer's IP against ``[rate_limit] connections_per_ip`` when the
    connection is made, then steps aside (``set_protocol``), so it costs nothing
    afterwards. Over the limit, the connection is closed before the protocol sees it."""

    __slots__ = ("inner", "limits")

    def __init__(self, inner: asyncio.Protocol, limits: Any) -> None:
        self.inner = inner
        self.limits = limits

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        remote = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "?"
        if remote != "?" and not self.limits.allow_connection(remote):
            log.debug("connection from %s refused: [rate_limit] connections_per_ip", remote)
            transport.close()
            return
        cast(asyncio.Transport, transport).set_protocol(self.inner)
        self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:  # refused ones only
        pass

    def data_received(self, data: bytes) -> None:  # refused ones only
        pass


class _Reject(asyncio.Protocol):
    """Closes a connection over the listener's limit at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()
