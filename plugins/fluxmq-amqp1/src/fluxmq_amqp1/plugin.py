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
from fluxmq_amqp1.nodes import QueueSub, TopicSub
from fluxmq_amqp1.server import AMQP1Server
from fluxmq_core.hookspecs import hookimpl
from fluxmq_core.metrics import MetricSpec, register_metrics
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
    register_metrics(context, "amqp1", metric_specs(server))
    context.sessions.register("amqp1", AMQP1Sessions(server))
    return [
        ProtocolServer(
            "amqp1", listeners, start=server.start, stop=server.stop, info={"versions": "1.0"}
        )
    ]


def metric_specs(server: AMQP1Server) -> list[MetricSpec]:
    """The ``amqp.*`` metrics (the Go FluxMQ's names for its AMQP 1.0 broker), read
    at collection time from the open connections and the server's totals (nothing
    per message beyond those)."""

    def conns() -> list[Connection]:
        return [p.conn for p in list(server.protocols) if p.conn is not None]

    def sessions() -> int:
        return sum(len(c.sessions) for c in conns())

    def links(outgoing: bool) -> int:
        return sum(
            1
            for c in conns()
            for s in c.sessions.values()
            for lk in s.links.values()
            if lk.outgoing is outgoing
        )

    def subscriptions() -> int:
        return sum(
            1
            for c in conns()
            for s in c.sessions.values()
            for lk in s.links.values()
            if isinstance(lk.node, TopicSub | QueueSub)
        )

    def unsettled() -> int:
        return sum(len(s.unsettled) for c in conns() for s in c.sessions.values())

    def held() -> int:
        return sum(len(lk.held) for c in conns() for s in c.sessions.values()
                   for lk in s.links.values())  # fmt: skip

    return [
        MetricSpec("amqp.connections.current", "updown", lambda: len(server.protocols),
                   "{connection}", "AMQP 1.0 network connections open."),
        MetricSpec("amqp.connections.total", "counter", lambda: server.connections_total,
                   "{connection}", "AMQP 1.0 connections opened since start."),
        MetricSpec("amqp.disconnections.total", "counter", lambda: server.disconnections_total,
                   "{connection}", "Opened AMQP 1.0 connections that ended since start."),
        MetricSpec("amqp.errors.total", "counter", lambda: server.errors_total, "{error}",
                   "AMQP 1.0 connections closed with an error condition (not forced by "
                   "the broker)."),
        MetricSpec("amqp.sessions.current", "updown", sessions, "{session}",
                   "AMQP 1.0 sessions begun."),
        MetricSpec("amqp.links.current", "updown",
                   lambda: [(links(True), {"role": "sender"}), (links(False), {"role": "receiver"})],
                   "{link}", "AMQP 1.0 links attached; role is the broker's (sender: "
                   "the client receives)."),
        MetricSpec("amqp.subscriptions.active", "updown", subscriptions, "{subscription}",
                   "AMQP 1.0 receiver links consuming a topic or a queue."),
        MetricSpec("amqp.messages.received.total", "counter", lambda: server.messages_in,
                   "{message}", "Transfers received from AMQP 1.0 clients."),
        MetricSpec("amqp.messages.sent.total", "counter", lambda: server.messages_out,
                   "{message}", "Transfers sent to AMQP 1.0 clients."),
        MetricSpec("amqp.bytes.received.total", "counter", lambda: server.bytes_in, "By",
                   "Bytes read from AMQP 1.0 connections."),
        MetricSpec("amqp.bytes.sent.total", "counter", lambda: server.bytes_out, "By",
                   "Bytes written to AMQP 1.0 connections."),
        MetricSpec("amqp.deliveries.unsettled", "gauge", unsettled, "{delivery}",
                   "Deliveries sent and not yet settled by the client."),
        MetricSpec("amqp.messages.held", "gauge", held, "{message}",
                   "Messages waiting for link credit."),
    ]  # fmt: skip


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
