"""Listeners: TCP and TLS sockets, port sharing by header, connection caps."""

from fluxmq_core.transport.base import (
    ListenerSpec,
    ProtocolServer,
    make_server_ssl_context,
    peer_identity,
    peer_name,
)
from fluxmq_core.transport.listeners import ListenerSet

__all__ = [
    "ListenerSet",
    "ListenerSpec",
    "ProtocolServer",
    "make_server_ssl_context",
    "peer_identity",
    "peer_name",
]
