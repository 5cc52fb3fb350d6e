"""One AMQP 1.0 network connection on the event loop: :class:`AMQP1Protocol`, on the
core adapter base (:mod:`fluxmq_core.transport.adapter`: one write per destination
per chunk, typed waits, per-connection exception isolation, the graceful close).
What it adds is AMQP's own: the handshake timeout, idle time-out and heartbeats,
pausing queue consumers while the transport's buffer is full, the waits of a new
link (an ACL decision, an ``auth_on_subscribe`` hook), and the connection's
events (connected, disconnected) and clean-up (open transactions rolled back).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from fluxmq_amqp1 import transactions
from fluxmq_amqp1.connection import (
    CONNECTION_FORCED,
    INTERNAL_ERROR,
    PROTOCOL,
    Connection,
)
from fluxmq_amqp1.mapping import address_of
from fluxmq_amqp1.nodes import QueueSub
from fluxmq_amqp1.waits import AuthorizeWait
from fluxmq_core.callout.hooks import HookRequest, external_id
from fluxmq_core.transport import peer_identity, peer_name, tune_transport
from fluxmq_core.transport.adapter import AdapterProtocol, AuthWait

if TYPE_CHECKING:
    from fluxmq_amqp1.server import AMQP1Server

__all__ = ["HOOK_SUBSCRIBE", "AMQP1Protocol"]

log = logging.getLogger("fluxmq.amqp1")

HOOK_SUBSCRIBE = "auth_on_subscribe"


class AMQP1Protocol(AdapterProtocol):
    """One AMQP 1.0 network connection on the event loop."""

    __slots__ = ("_handshake_timer", "_hb_timer")

    log_name = "fluxmq.amqp1"
    server: AMQP1Server
    conn: Connection

    def __init__(self, server: AMQP1Server) -> None:
        super().__init__(server)
        self._handshake_timer: asyncio.TimerHandle | None = None
        self._hb_timer: asyncio.TimerHandle | None = None

    def make_connection(self, transport: asyncio.BaseTransport) -> Connection:
        server = self.server
        tune_transport(transport, server.cfg.outbound_buffer)
        conn = Connection(server, peer_name(transport), peer_identity(transport))
        conn.last_recv = conn.last_sent = self._loop.time()
        return conn

    def connected(self) -> None:
        self._handshake_timer = self._loop.call_later(
            self.server.cfg.handshake_timeout, self._handshake_timeout
        )

    def feed(self, data: bytes) -> None:
        self.server.bytes_in += len(data)
        self.conn.receive(data, self._loop.time())

    def after_step(self) -> None:
        conn = self.conn
        if conn.opened and self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
            server = self.server
            stats = server.stats
            stats.clients_connected += 1
            stats.clients_total += 1
            server.connections_total += 1
            context = server.context
            ext = context.extras.get("auth_external")
            if ext is not None and conn.container_id:
                # the external identity was kept under the login's provisional id
                ext.rename(conn.id, conn.container_id)
            context.events.client_connected(
                PROTOCOL, conn.container_id or conn.id, conn.username, conn.remote
            )
            self._schedule_heartbeat()

    def _schedule_heartbeat(self) -> None:
        conn = self.conn
        periods = [p for p in (conn.idle_timeout, conn.remote_idle_timeout) if p]
        if periods:
            self._hb_timer = self._loop.call_later(max(0.1, min(periods) / 2), self._heartbeat)

    def flush(self) -> None:
        conn = self.conn
        if conn is not None and conn.out:
            conn.last_accepted = None  # written: nothing to widen in place any more
            conn.last_sent = self._loop.time()
            if self.transport is not None and self._gate is None and not self._lingering:
                self.server.bytes_out += len(conn.out)  # what the adapter writes now
        AdapterProtocol.flush(self)

    def internal_error(self) -> None:
        self.conn.close(INTERNAL_ERROR, "internal error")

    def connection_ended(self) -> None:
        for timer in (self._handshake_timer, self._hb_timer):
            if timer is not None:
                timer.cancel()
        self._handshake_timer = self._hb_timer = None
        conn = self.conn
        if conn is not None:
            for txn in conn.txns.values():
                transactions.rollback(txn)  # an open transaction ends with its connection
            conn.txns.clear()
            self.server.publish_order.pop(id(conn), None)
            err = conn.error
            if err is not None and err.condition not in (CONNECTION_FORCED, INTERNAL_ERROR):
                self.server.stats.protocol_errors += 1
                self.server.errors_total += 1
                log.info("%s: closed with %s: %s", conn, err.condition, err.description or "")
            opened = conn.opened
            if err is not None:
                reason = err.condition + (f": {err.description}" if err.description else "")
            elif conn.closing:
                reason = "closed"  # a close without an error, from either side
            else:
                reason = "connection lost"
            if opened:
                stats = self.server.stats
                stats.clients_connected -= 1
                stats.clients_disconnected += 1
                self.server.disconnections_total += 1
                conn.opened = False
            conn.lost()  # links first: their unsubscribe events precede the disconnect
            if opened:
                context = self.server.context
                cid = conn.container_id or conn.id
                context.auth.forget_client(cid)  # cached ACL decisions end with it
                context.events.client_disconnected(PROTOCOL, cid, reason)

    def writing_paused(self) -> None:
        self._sync_consumers()

    def writing_resumed(self) -> None:
        self._sync_consumers()

    def _sync_consumers(self) -> None:
        for s in list(self.conn.sessions.values()):
            for link in list(s.links.values()):
                if isinstance(link.node, QueueSub):
                    link.node.sync()

    # --- waits --------------------------------------------------------------------------

    async def _auth(self, wait: AuthWait) -> None:
        result = await self.server.context.auth.authenticate(wait.request)
        if not result.ok:
            self.server.stats.auth_failures += 1
        self.conn.auth_done(result)
        self.conn.process()

    async def _authorize(self, wait: AuthorizeWait) -> None:
        conn = self.conn
        context = self.server.context
        auth = context.auth
        cid = conn.container_id or conn.id
        ok = True
        reason = f"not authorized to {wait.action} {wait.topic!r}"
        if wait.acl:
            ok = await auth.authorize(cid, conn.username, wait.action, wait.topic)
        hooks = context.hooks
        if ok and wait.hook and hooks is not None:
            outcome = await hooks.call(
                HookRequest(
                    HOOK_SUBSCRIBE,
                    PROTOCOL,
                    cid,
                    wait.topic,
                    qos=0 if wait.link.presettled else 1,
                    external_id=external_id(context, cid),
                )
            )
            if not outcome.allow:
                ok = False
                reason = outcome.reason or "denied by hook"
            elif outcome.topic is not None and outcome.topic != wait.topic:
                # the hook names another filter: authorized again, then the link
                # consumes there (its source is answered as the client gave it)
                new = outcome.topic
                if auth.authorization_active:
                    ok = await auth.authorize(cid, conn.username, wait.action, new)
                    reason = f"not authorized to {wait.action} {new!r}"
                if ok:
                    self.server.moved[id(wait.link)] = address_of(new)
        if not ok:
            self.server.stats.authz_denied += 1
        conn.authorized(wait.link, ok, reason)  # binds the link now when it still can
        self.server.moved.pop(id(wait.link), None)
        conn.process()

    WAITS = {AuthWait: _auth, AuthorizeWait: _authorize}

    # --- timers -------------------------------------------------------------------------

    def _handshake_timeout(self) -> None:
        self._handshake_timer = None
        conn = self.conn
        if conn is not None and not conn.opened and self.transport is not None:
            log.info("%s: handshake timeout", conn)
            self.transport.close()

    def _heartbeat(self) -> None:
        self._hb_timer = None
        conn = self.conn
        if conn is None or self.transport is None:
            return
        now = self._loop.time()
        if conn.waiting is not None:
            conn.last_recv = now  # not read while we wait: the silence is ours
        alive = conn.tick(now)
        self.flush()
        if alive:
            self._schedule_heartbeat()
        else:
            log.info("%s: idle time-out (%ss of silence)", conn, conn.idle_timeout)
