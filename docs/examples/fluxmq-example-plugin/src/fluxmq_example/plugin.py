"""Hookimpls of the example plugin: its config section, its server, an observer."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from fluxmq_core.config import setting
from fluxmq_core.hookspecs import hookimpl
from fluxmq_core.transport import ListenerSpec, ProtocolServer
from fluxmq_example.protocol import LineProtocol

log = logging.getLogger("fluxmq.example")


@dataclass
class ExampleConfig:
    """[example]: the example line protocol."""

    bind: str = setting(
        "127.0.0.1:7070", "Listener of the line protocol; empty disables it.", listener=True
    )


# Connections seen per protocol, by the observer hook below (read by the tests).
CONNECTIONS: dict[str, int] = {}


@hookimpl
def fluxmq_add_config() -> dict[str, type]:
    return {"example": ExampleConfig}


@hookimpl
def fluxmq_register_servers(context: Any) -> list[ProtocolServer]:
    cfg = context.config.example
    return [
        ProtocolServer(
            "example",
            [ListenerSpec("example.bind", cfg.bind, lambda: LineProtocol(context))],
        )
    ]


@hookimpl
def fluxmq_client_connected(
    context: Any, protocol: str, client_id: str, username: str | None, remote: str
) -> None:
    CONNECTIONS[protocol] = CONNECTIONS.get(protocol, 0) + 1
    log.info("%s client %s connected from %s", protocol, client_id, remote)
