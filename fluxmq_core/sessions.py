"""The session directory: what the admin API knows about clients of any protocol.

Sessions belong to protocol plugins; the core only asks. Each protocol registers a
provider on ``context.sessions`` (from ``fluxmq_register_servers`` or
``fluxmq_startup``) with three methods: ``list()``, ``get(client_id)`` and
``disconnect(client_id)``. The directory merges them for ``GET /api/v1/sessions``,
``GET /api/v1/subscriptions`` and ``DELETE /api/v1/sessions/{client_id}``.

Nothing here is on a hot path: providers build :class:`SessionInfo` objects only
when an operator asks.
"""

from __future__ import annotations

import builtins
import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

__all__ = ["SessionDirectory", "SessionInfo", "SessionProvider"]

log = logging.getLogger("fluxmq.sessions")


@dataclass
class SessionInfo:
    """One client session as the admin API shows it. ``subscriptions`` maps a
    topic filter to its granted QoS; protocol-specific extras go in ``extra``."""

    client_id: str
    protocol: str
    connected: bool
    username: str | None = None
    remote: str | None = None
    version: str | None = None
    subscriptions: dict[str, int] = field(default_factory=dict)
    inflight: int = 0
    queued: int = 0
    expiry: int | None = None
    disconnected_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SessionProvider(Protocol):
    """What a protocol plugin registers: a read-only view plus a kick."""

    def list(self) -> list[SessionInfo]: ...

    def get(self, client_id: str) -> SessionInfo | None: ...

    def disconnect(self, client_id: str) -> bool: ...


class SessionDirectory:
    """Every protocol's session provider, by protocol name (``context.sessions``)."""

    def __init__(self) -> None:
        self._providers: dict[str, SessionProvider] = {}
        #: Functions that add to a :class:`SessionInfo` what a non-protocol plugin
        #: knows about the client (the external auth callout's identity, in
        #: ``extra["external_id"]``); called when an operator asks.
        self.annotators: builtins.list[Any] = []

    def _annotate(self, infos: builtins.list[SessionInfo]) -> builtins.list[SessionInfo]:
        for annotate in self.annotators:
            for info in infos:
                try:
                    annotate(info)
                except Exception:
                    log.exception("session annotator %r failed", annotate)
        return infos

    def register(self, protocol: str, provider: SessionProvider) -> None:
        """Add (or replace) the provider of ``protocol``."""
        self._providers[protocol] = provider

    def unregister(self, protocol: str) -> None:
        self._providers.pop(protocol, None)

    @property
    def protocols(self) -> list[str]:
        return sorted(self._providers)

    def list(self, *, protocol: str | None = None, prefix: str = "") -> list[SessionInfo]:
        """Sessions of every (or one) protocol whose client id starts with
        ``prefix``, sorted by (client id, protocol). A failing provider is logged and
        skipped: one broken plugin must not hide the others."""
        out: list[SessionInfo] = []
        for name, provider in self._providers.items():
            if protocol is not None and name != protocol:
                continue
            try:
                infos = provider.list()
            except Exception:
                log.exception("session provider %r failed in list()", name)
                continue
            out.extend(i for i in infos if i.client_id.startswith(prefix))
        out.sort(key=lambda i: (i.client_id, i.protocol))
        return self._annotate(out)

    # builtins.list: inside this class body `list` names the method above.
    def get(self, client_id: str, protocol: str | None = None) -> builtins.list[SessionInfo]:
        """The sessions with that client id (one per protocol at most)."""
        out = []
        for name, provider in self._providers.items():
            if protocol is not None and name != protocol:
                continue
            try:
                info = provider.get(client_id)
            except Exception:
                log.exception("session provider %r failed in get()", name)
                continue
            if info is not None:
                out.append(info)
        return self._annotate(out)

    def disconnect(self, client_id: str, protocol: str | None = None) -> bool:
        """Disconnect the client everywhere it is connected; True if anywhere."""
        done = False
        for name, provider in self._providers.items():
            if protocol is not None and name != protocol:
                continue
            try:
                done = bool(provider.disconnect(client_id)) or done
            except Exception:
                log.exception("session provider %r failed in disconnect()", name)
        return done
