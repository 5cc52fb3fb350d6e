"""Listeners: TCP and TLS sockets, port sharing by header, connection caps, a
WebSocket adapter that runs any binary protocol over WebSocket, and the
protocol-adapter base every protocol plugin's connections subclass."""

from fluxmq_core.transport.adapter import AdapterProtocol, AdapterServer, AuthWait, Wait
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
    "AdapterProtocol",
    "AdapterServer",
    "AuthWait",
    "Wait",
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
