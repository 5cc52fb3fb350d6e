"""Listeners: TCP and TLS sockets, port sharing by header, connection caps, and a
WebSocket adapter that runs any binary protocol over WebSocket."""

from fluxmq_core.transport.base import (
    ListenerSecurity,
    ListenerSpec,
    ProtocolServer,
    make_server_ssl_context,
    peer_identity,
    peer_name,
    tune_transport,
)
from fluxmq_core.transport.listeners import ListenerSet
from fluxmq_core.transport.websocket import WebSocketTransport, websocket_factory

__all__ = [
    "ListenerSecurity",
    "ListenerSet",
    "ListenerSpec",
    "ProtocolServer",
    "WebSocketTransport",
    "make_server_ssl_context",
    "tune_transport",
    "peer_identity",
    "peer_name",
    "websocket_factory",
]
