"""The asyncio adapter: binds the sans-IO connection to core transports and services.

:class:`AMQPServer` is the per-broker environment every connection and channel sees
(``env``): the shared :class:`~fluxmq_amqp091.broker.Topology` and
:class:`~fluxmq_amqp091.queues.Queues`, the publish path and the once-a-second
housekeeping (``x-expires``, the memory high-water mark). :class:`AMQPProtocol` is
the ``asyncio.Protocol`` of one connection, built on the core's adapter base
(:mod:`fluxmq_core.transport.adapter`: one write per destination per chunk, typed
waits, per-connection exception isolation, the graceful close); what it adds is
AMQP's own: the handshake timeout, heartbeats, transport backpressure
(``pause_writing`` pauses the connection's consumers), and the handlers of the waits
the sans-IO layer asks for (login, ``update-secret``, ``basic.get``, ``tx.commit``).

Memory alarm: when ``memory_high_watermark`` (process RSS, from ``/proc/self/statm``)
or ``buffer_high_watermark`` (bytes queued in AMQP transports) is exceeded, every
connection that has published stops being read and clients that advertise the
``connection.blocked`` capability get ``connection.blocked``; below 90% of the mark
they are resumed and get ``connection.unblocked``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING, Any

from pamqp import commands

from fluxmq_amqp091 import access, observe
from fluxmq_amqp091.channel import Consumer
from fluxmq_amqp091.codec import (
    CONNECTION_FORCED,
    INTERNAL_ERROR,
    PRECONDITION_FAILED,
    AMQPError,
)
from fluxmq_amqp091.connection import Connection, Phase
from fluxmq_amqp091.queues import DEFAULT_GROUP, Queues, failed_future
from fluxmq_amqp091.topology import Exchange, Topology
from fluxmq_amqp091.waits import AuthWait, CommitWait, GetWait, SecretWait
from fluxmq_core.queues import (
    CONTROL_VERBS,
    DLQ_PREFIX,
    QUEUE_TOPIC_PREFIXES,
    QueueError,
    split_queue_topic,
)
from fluxmq_core.queues.config import validate_queue_name
from fluxmq_core.transport import peer_identity, peer_name, tune_transport
from fluxmq_core.transport.adapter import HOLD_OTHER, AdapterProtocol, AdapterServer

if TYPE_CHECKING:
    from fluxmq_amqp091.channel import Channel
    from fluxmq_amqp091.config import AMQP091Config
    from fluxmq_core.context import BrokerContext
    from fluxmq_core.message import Message

__all__ = ["AMQPProtocol", "AMQPServer"]

log = logging.getLogger("fluxmq.amqp091")

HOUSEKEEPING_INTERVAL = 1.0
GET_WAIT = 2.0  # longest basic.get waits for the queue's dispatcher (bounded)
#: Longest tx.commit waits for its appends to be durable; past it the commit fails.
COMMIT_WAIT = 30.0
CLOSE_OK_WAIT = 2.0  # longest a connection.close waits for the client's close-ok


def _rss() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class AMQPServer(AdapterServer):
    """One per broker: shared state, publish path, housekeeping (the dirty list and
    its flusher come from :class:`AdapterServer`)."""

    def __init__(self, context: BrokerContext, cfg: AMQP091Config) -> None:
        super().__init__(context)
        self.cfg = cfg
        self.clock = context.clock
        self.node_id = context.node_id
        try:
            from importlib.metadata import version

            self.version = version("fluxmq-amqp091")
        except Exception:
            self.version = "0"
        #: The core's observer events (flags ``on_published`` / ``on_delivered``).
        self.events = context.events
        self.auth = context.auth
        self.topology = Topology(context, cfg.topic_exchange)
        self.queues: Queues = Queues(context, self.topology, cfg.consumer_timeout)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.blocked = False

    @property
    def core(self) -> Any:
        return self.context.queues

    def protocol_factory(self) -> AMQPProtocol:
        return AMQPProtocol(self)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        records = await self.topology.load()
        await self.queues.load(records)
        self._timer = self._loop.call_later(HOUSEKEEPING_INTERVAL, self._housekeeping)

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for proto in list(self.protocols):
            conn = proto.conn
            if conn is not None and conn.phase is Phase.OPENED:
                conn.close(CONNECTION_FORCED, "broker shutdown")
        self.close_all()
        await self.context.store.sync()

    # --- the publish path --------------------------------------------------------------

    def publish(
        self, ex: Exchange, routing_key: str, message: Message, headers: dict[str, Any] | None
    ) -> tuple[bool, list[Any]]:
        """Route to queues (and, for the bridged exchange, to topic subscribers of
        every protocol); returns (routed anywhere, append futures).

        A bridged key whose topic is a queue topic (``$queue.jobs.x`` ->
        ``$queue/jobs/x``) is appended by the core queue manager
        (``context.publish_queued``), and its append future joins the others: a
        confirm (or ``tx.commit``) waits for it to be durable as for a bound queue's,
        and a refusal (unknown queue, full, too large) nacks the publish (then it
        is not routed, so a ``mandatory`` one is also returned)."""
        topo = self.topology
        names = topo.route(ex, routing_key, headers, self.queues.exists)
        routed = bool(names)
        queued = None
        topic = message.topic
        if ex.name == topo.bridge and topic:
            if topic.startswith(QUEUE_TOPIC_PREFIXES):
                try:
                    queued = self.context.publish_queued(message)
                    routed = True
                except QueueError as exc:
                    self.stats.messages_dropped += 1
                    log.info("publish to %r not queued: %s", topic, exc)
                    queued = failed_future(exc)
            else:
                topo.suppressed = 0
                n = self.context.publish(message)
                if n - topo.suppressed > 0:
                    routed = True
        futures = self.queues.append_all(names, message) if names else []
        if self.events.on_published and ex.name != topo.bridge:
            observe.published(self, message)  # the router reports bridged ones
        if queued is not None:
            futures.append(queued)
        return routed, futures

    # --- env callbacks from connections -------------------------------------------------

    def connection_opened(self, conn: Connection) -> None:
        conn.opened = True
        self.stats.clients_connected += 1
        self.stats.clients_total += 1
        if self.blocked and conn.capabilities.get("connection.blocked"):
            conn.send(0, commands.Connection.Blocked(reason="low on memory"))
        observe.connected(self, conn)

    def connection_lost(self, conn: Connection) -> None:
        self.queues.connection_closed(conn)

    def protocol_error(self, conn: Connection, exc: AMQPError) -> None:
        self.stats.protocol_errors += 1
        log.info("%s: %s", conn, exc)

    # --- tx.commit --------------------------------------------------------------------

    def tx_refusal(self, publishes: list[tuple[Any, ...]]) -> str:
        """Why a queue would refuse at once one of a transaction's publishes (too
        large, queue full with overflow ``reject``), or "": checked before anything
        is applied, so such a commit applies nothing. Mirrors the synchronous checks
        of the queue manager's ``append``."""
        topo = self.topology
        core = self.core
        added: dict[str, int] = {}
        for pm, h, _body, message in publishes:
            ex = topo.exchanges.get(pm.exchange)
            if ex is None:
                continue
            names = topo.route(ex, pm.routing_key, h.properties.headers, self.queues.exists)
            topic = message.topic
            if ex.name == topo.bridge and topic.startswith(QUEUE_TOPIC_PREFIXES):
                # A queue topic the core appends: the same checks on its queue, and
                # the ones QueueManager.publish makes first.
                name, rest = split_queue_topic(topic)
                if rest and not CONTROL_VERBS.isdisjoint(rest.split("/")):
                    return f"{topic!r} is a queue control topic"
                if core.get(name) is not None:
                    names = [*names, name]
                else:
                    try:
                        validate_queue_name(name)
                    except QueueError as exc:
                        return str(exc)
                    if name.startswith(DLQ_PREFIX) or core.defaults.auto_create == "none":
                        return f"no queue {name!r}"
            for name in names:
                q = core.get(name)
                if q is None:
                    return f"no queue {name!r}"
                cfg = q.config
                size = len(message.payload)
                if cfg.max_message_size and size > cfg.max_message_size:
                    return (
                        f"a message of {size} bytes exceeds queue {name!r}'s "
                        f"max_message_size {cfg.max_message_size}"
                    )
                if cfg.max_depth and cfg.overflow == "reject":
                    n = added[name] = added.get(name, 0) + 1
                    if q.live_length() + n > cfg.max_depth:
                        return f"queue {name!r} is full (max_depth {cfg.max_depth})"
        return ""

    # --- basic.get ----------------------------------------------------------------------

    async def basic_get(self, channel: Any, q: Any, no_ack: bool) -> tuple[Any, Any, int]:
        core = self.core
        name = q.name
        cq = core.get(name)
        if cq is None:
            return None, None, 0
        if cq.is_stream:
            raise AMQPError(
                PRECONDITION_FAILED, "basic.get is not supported on stream queues", 60, 70
            )
        if self.queues.ready(name) == 0:
            return None, None, 0
        c = Consumer(channel, "", q, no_ack, DEFAULT_GROUP)
        c.got = []
        c.handle = core.consume(name, DEFAULT_GROUP, c, credit=1, auto_commit=no_ack)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + GET_WAIT
        h = c.handle
        while not c.got and loop.time() < deadline:
            await asyncio.sleep(0)
            if h.closed or (h.idle and not c.got):
                await asyncio.sleep(0)
                if h.closed or h.idle:
                    break
        if not c.got:
            channel._unregister(c)
            return None, None, self.queues.ready(name)
        message = c.got[0]
        c.got = None
        if no_ack:
            channel._unregister(c)
        return c, message, self.queues.ready(name)

    # --- housekeeping -------------------------------------------------------------------

    def _housekeeping(self) -> None:
        self._timer = None
        try:
            self.queues.sweep(self.clock())
            self._memory_alarm()
        except Exception:
            log.exception("amqp091 housekeeping failed")
        if self._loop is not None:
            self._timer = self._loop.call_later(HOUSEKEEPING_INTERVAL, self._housekeeping)

    def _memory_alarm(self) -> None:
        cfg = self.cfg
        if not cfg.memory_high_watermark and not cfg.buffer_high_watermark:
            return
        over = under = True
        if cfg.memory_high_watermark:
            rss = _rss()
            over_m = rss > cfg.memory_high_watermark
            under_m = rss < cfg.memory_high_watermark * 0.9
        else:
            over_m, under_m = False, True
        if cfg.buffer_high_watermark:
            buffered = sum(
                p.transport.get_write_buffer_size()
                for p in self.protocols
                if p.transport is not None
            )
            over_b = buffered > cfg.buffer_high_watermark
            under_b = buffered < cfg.buffer_high_watermark * 0.9
        else:
            over_b, under_b = False, True
        over = over_m or over_b
        under = under_m and under_b
        if over and not self.blocked:
            self.set_blocked(True)
        elif under and self.blocked:
            self.set_blocked(False)

    def set_blocked(self, blocked: bool) -> None:
        self.blocked = blocked
        log.warning(
            "amqp091: %s publishers (memory alarm)", "blocking" if blocked else "unblocking"
        )
        for proto in list(self.protocols):
            conn = proto.conn
            if conn is None or conn.phase is not Phase.OPENED:
                continue
            if conn.capabilities.get("connection.blocked"):
                conn.send(
                    0,
                    commands.Connection.Blocked(reason="low on memory")
                    if blocked
                    else commands.Connection.Unblocked(),
                )
            if conn.published:
                proto.set_reading(not blocked)
            proto.flush()


class AMQPProtocol(AdapterProtocol):
    """One AMQP network connection on the event loop."""

    __slots__ = ("_handshake_timer", "_hb_timer", "_close_timer")

    log_name = "fluxmq.amqp091"
    server: AMQPServer
    conn: Connection

    def __init__(self, server: AMQPServer) -> None:
        super().__init__(server)
        self._handshake_timer: asyncio.TimerHandle | None = None
        self._hb_timer: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None

    # --- adapter hooks ------------------------------------------------------------------

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
        self.conn.receive(data, self._loop.time())

    def after_step(self) -> None:
        conn = self.conn
        phase = conn.phase
        if phase is Phase.OPENED:
            if self._handshake_timer is not None:
                self._handshake_timer.cancel()
                self._handshake_timer = None
                if conn.heartbeat:
                    self._hb_timer = self._loop.call_later(
                        max(0.5, conn.heartbeat / 2), self._heartbeat
                    )
        elif phase is Phase.CLOSING and self._close_timer is None:
            # wait (bounded) for close-ok, then close anyway
            self._close_timer = self._loop.call_later(CLOSE_OK_WAIT, self._force_close)

    def flush(self) -> None:
        conn = self.conn
        if conn is not None:
            if conn.acks_held:  # publisher confirms held for this write
                held, conn.acks_held = conn.acks_held, []
                for ch in held:
                    ch.send_held_acks()
            if conn.out:
                conn.last_sent = self._loop.time()
        AdapterProtocol.flush(self)

    def internal_error(self) -> None:
        self.conn.close(INTERNAL_ERROR, "internal error")
        self.after_step()

    def connection_ended(self) -> None:
        for timer in (self._handshake_timer, self._hb_timer, self._close_timer):
            if timer is not None:
                timer.cancel()
        self._handshake_timer = self._hb_timer = self._close_timer = None
        conn = self.conn
        if conn is not None:
            if conn.opened:
                stats = self.server.stats
                stats.clients_connected -= 1
                stats.clients_disconnected += 1
                observe.disconnected(self.server, conn)
            conn.lost()

    def writing_paused(self) -> None:
        for ch in list(self.conn.channels.values()):
            ch.refresh()

    def writing_resumed(self) -> None:
        for ch in list(self.conn.channels.values()):
            ch.refresh()

    def set_reading(self, on: bool) -> None:
        """Memory alarm: stop or restart reading this publisher."""
        if on:
            self.release_reading(HOLD_OTHER)
        else:
            self.hold_reading(HOLD_OTHER)

    def _force_close(self) -> None:
        self._close_timer = None
        if self.transport is not None:
            self.transport.close()

    # --- waits --------------------------------------------------------------------------

    async def _auth(self, wait: AuthWait) -> None:
        conn = self.conn
        result = await self.server.context.auth.authenticate(wait.request)
        if not result.ok:
            self.server.stats.auth_failures += 1
        conn.auth_done(result)
        conn.process()

    async def _secret(self, wait: SecretWait) -> None:
        auth = self.server.context.auth
        result = await auth.authenticate(wait.request)
        if not result.ok:
            self.server.stats.auth_failures += 1
        else:
            forget = getattr(auth, "forget_client", None)
            if forget is not None:
                forget(self.conn.id)  # cached decisions were made for the old secret
        self.conn.secret_done(result)

    async def _get(self, wait: GetWait) -> None:
        conn = self.conn
        channel: Channel = wait.channel
        try:
            c, message, remaining = await self.server.basic_get(channel, wait.queue, wait.no_ack)
        except AMQPError as exc:
            channel.fail(exc)
        else:
            if conn.channels.get(channel.number) is channel:
                channel.get_result(c, message, remaining)
            elif c is not None:
                channel._unregister(c)
        conn.resume()

    async def _commit(self, wait: CommitWait) -> None:
        conn = self.conn
        error = ""
        futures = wait.futures
        if futures:
            done, pending = await asyncio.wait(futures, timeout=COMMIT_WAIT)
            for f in pending:
                f.add_done_callback(_retrieve)
            if pending:
                error = f"{len(pending)} append(s) not durable after {COMMIT_WAIT:g} s"
            for f in done:
                exc = None if f.cancelled() else f.exception()
                if (f.cancelled() or exc is not None) and not error:
                    error = f"append failed: {exc or 'cancelled'}"
        try:
            wait.channel.commit_done(error, wait.settles)
        except AMQPError as exc:
            conn.fail(exc)
        conn.resume()

    async def _authz(self, wait: access.AuthzWait) -> None:
        conn = self.conn
        await access.resolve(conn, self.server.auth, wait)
        if conn.waiting is None:
            conn.resume()

    async def _hook(self, wait: access.HookWait) -> None:
        conn = self.conn
        await access.resolve_hook(conn, self.server.context, wait)
        if conn.waiting is None:
            conn.resume()

    WAITS = {
        access.HookWait: _hook,
        AuthWait: _auth,
        SecretWait: _secret,
        GetWait: _get,
        CommitWait: _commit,
        access.AuthzWait: _authz,
    }

    # --- timers -------------------------------------------------------------------------

    def _handshake_timeout(self) -> None:
        self._handshake_timer = None
        conn = self.conn
        if conn is not None and conn.phase is not Phase.OPENED and self.transport is not None:
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
        if not conn.tick(now):
            log.info("%s: missed heartbeats from client, timeout: %ss", conn, conn.heartbeat)
            self.transport.abort()
            return
        self.flush()
        self._hb_timer = self._loop.call_later(max(0.5, conn.heartbeat / 2), self._heartbeat)


def _retrieve(f: asyncio.Future[Any]) -> None:
    """Mark a late append's outcome as seen (the commit already failed)."""
    if not f.cancelled():
        f.exception()
