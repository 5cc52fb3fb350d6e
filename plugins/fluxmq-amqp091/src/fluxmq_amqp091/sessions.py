"""Open AMQP 0.9.1 connections as the core's session directory sees them (the admin
API's ``/api/v1/sessions``): one session per connection, keyed by its id
(``amqp091-<n>``, the client id of its events and auth decisions). Its
subscriptions are its consumers' queues as ``$queue/<q>`` (QoS 0 for no-ack
consumers, else 1); ``inflight`` counts unacknowledged deliveries. The external auth
callout's identity shows as ``extra.external_id`` (the core annotates). An operator's
disconnect closes the connection with 320 CONNECTION_FORCED.
"""

from __future__ import annotations

from typing import Any

from fluxmq_amqp091.codec import CONNECTION_FORCED
from fluxmq_amqp091.props import PROTOCOL
from fluxmq_core.sessions import SessionInfo

__all__ = ["AMQP091Sessions"]


class AMQP091Sessions:
    def __init__(self, server: Any) -> None:
        self._server = server

    def _conns(self) -> list[tuple[Any, Any]]:
        return [
            (p, p.conn)
            for p in list(self._server.protocols)
            if p.conn is not None and p.conn.opened and p.conn.phase.value == "opened"
        ]

    @staticmethod
    def _info(conn: Any) -> SessionInfo:
        channels = list(conn.channels.values())
        subs: dict[str, int] = {}
        for ch in channels:
            for c in ch.consumers.values():
                if c.queue is not None:
                    subs[f"$queue/{c.queue.name}"] = 0 if c.no_ack else 1
        return SessionInfo(
            client_id=conn.id,
            protocol=PROTOCOL,
            connected=True,
            username=conn.username,
            remote=conn.remote,
            version="0-9-1",
            subscriptions=subs,
            inflight=sum(len(ch.unacked) for ch in channels),
            extra={"channels": len(channels)},
        )

    def list(self) -> list[SessionInfo]:
        return [self._info(c) for _p, c in self._conns()]

    def get(self, client_id: str) -> SessionInfo | None:
        for _p, c in self._conns():
            if c.id == client_id:
                return self._info(c)
        return None

    def disconnect(self, client_id: str) -> bool:
        for proto, c in self._conns():
            if c.id == client_id:
                c.close(CONNECTION_FORCED, "closed by an administrator")
                proto.after_step()
                proto.flush()
                return True
        return False
