"""Hookimpls of the MQTT plugin: its config section, its protocol server (TCP, TLS,
WebSocket and secure WebSocket listeners) and its sessions in the core's session
directory (for the admin API)."""

from __future__ import annotations

from typing import Any

from fluxmq_core.hookspecs import hookimpl
from fluxmq_core.sessions import SessionInfo
from fluxmq_core.transport import ListenerSpec, ProtocolServer
from fluxmq_core.transport.websocket import websocket_factory, websocket_header
from fluxmq_mqtt.config import MQTTConfig
from fluxmq_mqtt.server import MQTTServer

# What MQTT clients ask for over WebSocket: "mqtt" (3.1.1 and 5.0) and "mqttv3.1".
WS_SUBPROTOCOLS = ("mqtt", "mqttv3.1")


def is_mqtt(header: bytes) -> bool | None:
    """Port-sharing predicate: an MQTT connection starts with CONNECT (0x10)."""
    if not header:
        return None
    return header[0] == 0x10


@hookimpl
def fluxmq_add_config() -> dict[str, type]:
    return {"mqtt": MQTTConfig}


@hookimpl
def fluxmq_register_servers(context: Any) -> list[ProtocolServer]:
    cfg: MQTTConfig = context.config.mqtt
    server = MQTTServer(context, cfg)
    factory = server.protocol_factory
    # MQTT's own max_packet_size bounds every packet of the byte stream, and a
    # WebSocket message may legally hold several packets: no separate message limit.
    ws_factory = websocket_factory(
        factory,
        path=cfg.websocket_path,
        subprotocols=WS_SUBPROTOCOLS,
        origins=cfg.websocket_origins,
        shutting_down=context.shutting_down,
    )
    listeners = [
        ListenerSpec(
            "mqtt.tcp", cfg.tcp, factory, header=is_mqtt, max_connections=cfg.max_connections
        ),
        ListenerSpec(
            "mqtt.websocket",
            cfg.websocket,
            ws_factory,
            header=websocket_header(cfg.websocket_path),
            max_connections=cfg.max_connections,
            kind="ws",
        ),
    ]
    ssl_ctx = cfg.server_ssl_context()
    if ssl_ctx is not None:
        listeners.append(
            ListenerSpec(
                "mqtt.tls",
                cfg.tls,
                factory,
                ssl=ssl_ctx,
                header=is_mqtt,
                max_connections=cfg.max_connections,
                kind="tls",
            )
        )
        listeners.append(
            ListenerSpec(
                "mqtt.wss",
                cfg.wss,
                ws_factory,
                ssl=ssl_ctx,
                header=websocket_header(cfg.websocket_path),
                max_connections=cfg.max_connections,
                kind="wss",
            )
        )
    context.extras["mqtt"] = server
    context.sessions.register("mqtt", MQTTSessions(server))
    return [
        ProtocolServer(
            "mqtt",
            listeners,
            start=server.start,
            stop=server.stop,
            info={"versions": "3.1, 3.1.1, 5.0"},
        )
    ]


class MQTTSessions:
    """The MQTT sessions as the core's session directory sees them (admin API)."""

    def __init__(self, server: MQTTServer) -> None:
        self._server = server

    def _info(self, session: Any) -> SessionInfo:
        conn = session.connection
        return SessionInfo(
            client_id=session.client_id,
            protocol="mqtt",
            connected=conn is not None,
            username=session.username,
            remote=conn.remote if conn is not None else None,
            version={3: "3.1", 4: "3.1.1", 5: "5.0"}.get(session.version, str(session.version)),
            subscriptions={f: o.qos for f, o in session.subscriptions.items()},
            inflight=len(session.inflight),
            queued=len(session.queue),
            expiry=session.expiry,
            disconnected_at=session.disconnected_at,
            extra={
                "queue_dropped": self._server.registry.queue_drops.by_client.get(
                    session.client_id, 0
                )
            },
        )

    def list(self) -> list[SessionInfo]:
        return [self._info(s) for s in list(self._server.registry.sessions.values())]

    def get(self, client_id: str) -> SessionInfo | None:
        session = self._server.registry.sessions.get(client_id)
        return None if session is None else self._info(session)

    def disconnect(self, client_id: str) -> bool:
        """Close the client's connection (5.0: DISCONNECT 0x98 Administrative
        action); its session stays as its expiry says."""
        session = self._server.registry.sessions.get(client_id)
        conn = session.connection if session is not None else None
        if conn is None:
            return False
        conn.kick(0x98, "disconnected by an administrator")
        for proto in list(self._server.protocols):
            if proto.conn is conn:
                proto.flush()
        return True
