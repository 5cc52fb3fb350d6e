"""Hookimpls of the AMQP 1.0 plugin: its config section and its protocol server.

The listeners share their address with AMQP 0.9.1 (5672, 5671 for TLS) through the
header predicate: ``AMQP\\x00\\x01\\x00\\x00`` and the SASL header
``AMQP\\x03\\x01\\x00\\x00`` are AMQP 1.0, ``AMQP\\x00\\x00\\x09\\x01`` is 0.9.1.
"""

from __future__ import annotations

from typing import Any

from fluxmq_amqp1.codec.frames import is_amqp1
from fluxmq_amqp1.config import AMQP1Config
from fluxmq_amqp1.server import AMQP1Server
from fluxmq_core.hookspecs import hookimpl
from fluxmq_core.transport import ListenerSpec, ProtocolServer


@hookimpl
def fluxmq_add_config() -> dict[str, type]:
    return {"amqp1": AMQP1Config}


@hookimpl
def fluxmq_register_servers(context: Any) -> list[ProtocolServer]:
    cfg: AMQP1Config = context.config.amqp1
    server = AMQP1Server(context, cfg)
    factory = server.protocol_factory
    listeners = [
        ListenerSpec(
            "amqp1.bind",
            cfg.bind,
            factory,
            header=is_amqp1,
            max_connections=cfg.max_connections,
        )
    ]
    ssl_ctx = cfg.server_ssl_context()
    if ssl_ctx is not None:
        listeners.append(
            ListenerSpec(
                "amqp1.tls_bind",
                cfg.tls_bind,
                factory,
                ssl=ssl_ctx,
                header=is_amqp1,
                max_connections=cfg.max_connections,
                kind="tls",
            )
        )
    context.extras["amqp1"] = server
    return [
        ProtocolServer(
            "amqp1", listeners, start=server.start, stop=server.stop, info={"versions": "1.0"}
        )
    ]
