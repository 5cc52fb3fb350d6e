"""Hookimpls of the MQTT plugin: its config section and its protocol server."""

from __future__ import annotations

from typing import Any

from fluxmq_core.hookspecs import hookimpl
from fluxmq_core.transport import ListenerSpec, ProtocolServer, make_server_ssl_context

from fluxmq_mqtt.config import MQTTConfig
from fluxmq_mqtt.server import MQTTServer


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
    listeners = [ListenerSpec("mqtt.tcp", cfg.tcp, factory, header=is_mqtt,
                              max_connections=cfg.max_connections)]
    if cfg.tls_cert:
        ssl_ctx = make_server_ssl_context(cfg.tls_cert, cfg.tls_key, cfg.tls_ca,
                                          cfg.tls_require_client_cert)
        listeners.append(ListenerSpec("mqtt.tls", cfg.tls, factory, ssl=ssl_ctx, header=is_mqtt,
                                      max_connections=cfg.max_connections, kind="tls"))
    context.extras["mqtt"] = server
    return [ProtocolServer("mqtt", listeners, start=server.start, stop=server.stop,
                           info={"versions": "3.1, 3.1.1, 5.0"})]
