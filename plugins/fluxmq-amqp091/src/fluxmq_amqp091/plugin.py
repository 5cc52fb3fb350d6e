"""Hookimpls of the AMQP 0.9.1 plugin: its config section and its protocol server."""

from __future__ import annotations

from typing import Any

from fluxmq_amqp091.codec import is_amqp091
from fluxmq_amqp091.config import AMQP091Config
from fluxmq_amqp091.server import AMQPServer
from fluxmq_amqp091.sessions import AMQP091Sessions
from fluxmq_core.hookspecs import hookimpl
from fluxmq_core.transport import ListenerSpec, ProtocolServer


@hookimpl
def fluxmq_add_config() -> dict[str, type]:
    return {"amqp091": AMQP091Config}


@hookimpl
def fluxmq_register_servers(context: Any) -> list[ProtocolServer]:
    cfg: AMQP091Config = context.config.amqp091
    server = AMQPServer(context, cfg)
    factory = server.protocol_factory
    listeners = [
        ListenerSpec(
            "amqp091.bind",
            cfg.bind,
            factory,
            header=is_amqp091,
            max_connections=cfg.max_connections,
        )
    ]
    ssl_ctx = cfg.server_ssl_context()
    if ssl_ctx is not None:
        listeners.append(
            ListenerSpec(
                "amqp091.tls_bind",
                cfg.tls_bind,
                factory,
                ssl=ssl_ctx,
                header=is_amqp091,
                max_connections=cfg.max_connections,
                kind="tls",
            )
        )
    context.extras["amqp091"] = server
    context.sessions.register("amqp091", AMQP091Sessions(server))
    return [
        ProtocolServer(
            "amqp091", listeners, start=server.start, stop=server.stop, info={"versions": "0.9.1"}
        )
    ]
