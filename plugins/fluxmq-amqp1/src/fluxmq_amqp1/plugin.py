"""Hookimpls of the AMQP 1.0 plugin: its config section and its protocol server.

The listeners share their address with AMQP 0.9.1 (5672, 5671 for TLS) through the
header predicate: ``AMQP\\x00\\x01\\x00\\x00`` and the SASL header
``AMQP\\x03\\x01\\x00\\x00`` are AMQP 1.0, ``AMQP\\x00\\x00\\x09\\x01`` is 0.9.1.
"""

from __future__ import annotations

from typing import Any

from fluxmq_amqp1.codec.frames import is_amqp1
from fluxmq_amqp1.config import AMQP1Config
from fluxmq_amqp1.connection import CONNECTION_FORCED, Connection
from fluxmq_amqp1.server import AMQP1Server
from fluxmq_core.hookspecs import hookimpl
from fluxmq_core.sessions import SessionInfo
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
    context.sessions.register("amqp1", AMQP1Sessions(server))
    return [
        ProtocolServer(
            "amqp1", listeners, start=server.start, stop=server.stop, info={"versions": "1.0"}
        )
    ]


class AMQP1Sessions:
    """Open AMQP 1.0 connections as the core's session directory sees them (admin
    API): one per container-id; its subscriptions are its receiving links' addresses."""

    def __init__(self, server: AMQP1Server) -> None:
        self._server = server

    def _conns(self) -> list[tuple[Any, Connection]]:
        return [
            (p, p.conn)
            for p in list(self._server.protocols)
            if p.conn is not None and p.conn.opened
        ]

    @staticmethod
    def _info(conn: Connection) -> SessionInfo:
        links = [lk for s in conn.sessions.values() for lk in s.links.values()]
        return SessionInfo(
            client_id=conn.container_id,
            protocol="amqp1",
            connected=True,
            username=conn.username,
            remote=conn.remote,
            version="1.0",
            subscriptions={str(lk.address): 1 for lk in links if lk.outgoing and lk.address},
            inflight=sum(len(s.unsettled) for s in conn.sessions.values()),
            queued=sum(len(lk.held) for lk in links),
            extra={"sessions": len(conn.sessions), "links": len(links)},
        )

    def list(self) -> list[SessionInfo]:
        return [self._info(c) for _p, c in self._conns()]

    def get(self, client_id: str) -> SessionInfo | None:
        for _p, c in self._conns():
            if c.container_id == client_id:
                return self._info(c)
        return None

    def disconnect(self, client_id: str) -> bool:
        """Close every connection of that container-id (amqp:connection:forced)."""
        done = False
        for proto, c in self._conns():
            if c.container_id == client_id:
                c.close(CONNECTION_FORCED, "closed by an administrator")
                proto.flush()
                done = True
        return done
