"""The asyncio adapter: binds the sans-IO connection to core transports and services.

:class:`AMQPServer` is the per-broker environment every connection and channel sees
(``env``): the shared :class:`~fluxmq_amqp091.broker.Topology` and
:class:`~fluxmq_amqp091.queues.Queues`, the publish path, the write coalescing and
the once-a-second housekeeping (``x-expires``, the memory high-water mark).
:class:`AMQPProtocol` is the ``asyncio.Protocol`` of one connection: chunks in, one
write per chunk out (deliveries into *other* connections mark them dirty and one
``call_soon`` per loop tick flushes each once), the handshake timeout, heartbeats,
transport backpressure (``pause_writing`` pauses the connection's consumers), and
the awaits the sans-IO layer asks for (login, ``basic.get``, ``tx.commit``).

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

from fluxmq_amqp091.channel import Consumer
from fluxmq_amqp091.codec import CONNECTION_FORCED, PRECONDITION_FAILED, AMQPError
from fluxmq_amqp091.connection import Connection, Phase
from fluxmq_amqp091.queues import DEFAULT_GROUP, Queues
from fluxmq_amqp091.topology import Exchange, Topology
from fluxmq_core.transport import peer_identity, peer_name, tune_transport

if TYPE_CHECKING:
    from fluxmq_amqp091.config import AMQP091Config
    from fluxmq_core.context import BrokerContext
    from fluxmq_core.message import Message

__all__ = ["AMQPProtocol", "AMQPServer"]

log = logging.getLogger("fluxmq.amqp091")

HOUSEKEEPING_INTERVAL = 1.0
GET_WAIT = 2.0  # longest basic.get waits for the queue's dispatcher (bounded)


def _rss() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class AMQPServer:
    """One per broker: shared state, publish path, flusher, housekeeping."""

    def __init__(self, context: BrokerContext, cfg: AMQP091Config) -> None:
        self.context = context
        self.cfg = cfg
        self.clock = context.clock
        self.stats = context.stats
        self.node_id = context.node_id
        try:
            from importlib.metadata import version

            self.version = version("fluxmq-amqp091")
        except Exception:
            self.version = "0"
        self.topology = Topology(context, cfg.topic_exchange)
        self.queues: Queues = Queues(context, self.topology, cfg.consumer_timeout)
        self.protocols: set[AMQPProtocol] = set()
        self._dirty: list[AMQPProtocol] = []
        self._flush_scheduled = False
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
            proto.flush()
            if proto.transport is not None:
                proto.transport.close()
        await self.context.store.sync()

    # --- the publish path --------------------------------------------------------------

    def publish(
        self, ex: Exchange, routing_key: str, message: Message, headers: dict[str, Any] | None
    ) -> tuple[bool, list[Any]]:
        """Route to queues (and, for the bridged exchange, to topic subscribers of
        every protocol); returns (routed anywhere, append futures)."""
        topo = self.topology
        names = topo.route(ex, routing_key, headers, self.queues.exists)
        routed = bool(names)
        if ex.name == topo.bridge and message.topic:
            topo.suppressed = 0
            n = self.context.publish(message)
            if n - topo.suppressed > 0:
                routed = True
        futures = self.queues.append_all(names, message) if names else []
        return routed, futures

    # --- env callbacks from connections -------------------------------------------------

    def connection_opened(self, conn: Connection) -> None:
        conn.opened = True
        self.stats.clients_connected += 1
        self.stats.clients_total += 1
        if self.blocked and conn.capabilities.get("connection.blocked"):
            conn.send(0, commands.Connection.Blocked(reason="low on memory"))

    def connection_lost(self, conn: Connection) -> None:
        self.queues.connection_closed(conn)

    def protocol_error(self, conn: Connection, exc: AMQPError) -> None:
        self.stats.protocol_errors += 1
        log.info("%s: %s", conn, exc)

    # --- write coalescing ---------------------------------------------------------------

    def mark_dirty(self, proto: AMQPProtocol) -> None:
        if proto.dirty:
            return
        proto.dirty = True
        self._dirty.append(proto)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            (self._loop or asyncio.get_running_loop()).call_soon(self.flush_dirty)

    def flush_dirty(self) -> None:
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, []
        for proto in dirty:
            proto.dirty = False
            proto.flush()

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


class AMQPProtocol(asyncio.Protocol):
    """One AMQP network connection on the event loop."""

    # No __slots__: the core wraps connection_made/lost on the instance.

    def __init__(self, server: AMQPServer) -> None:
        self.server = server
        self.conn: Connection | None = None
        self.transport: asyncio.Transport | None = None
        self.dirty = False
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task[None] | None = None
        self._handshake_timer: asyncio.TimerHandle | None = None
        self._hb_timer: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self._reading = True

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        server = self.server
        server.protocols.add(self)
        tune_transport(transport, server.cfg.outbound_buffer)
        conn = self.conn = Connection(server, peer_name(transport), peer_identity(transport))
        conn.wakeup = self._wakeup
        now = self._loop.time()
        conn.last_recv = conn.last_sent = now
        self._handshake_timer = self._loop.call_later(
            server.cfg.handshake_timeout, self._handshake_timeout
        )

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        assert conn is not None
        self.server.stats.bytes_received += len(data)
        conn.receive(data, self._loop.time())
        self._after()

    def connection_lost(self, exc: Exception | None) -> None:
        server = self.server
        server.protocols.discard(self)
        for timer in (self._handshake_timer, self._hb_timer, self._close_timer):
            if timer is not None:
                timer.cancel()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        conn = self.conn
        if conn is not None:
            if conn.opened:
                server.stats.clients_connected -= 1
                server.stats.clients_disconnected += 1
            conn.lost()
        self.transport = None

    def pause_writing(self) -> None:
        conn = self.conn
        if conn is not None:
            conn.paused = True
            for ch in list(conn.channels.values()):
                ch.refresh()

    def resume_writing(self) -> None:
        conn = self.conn
        if conn is not None:
            conn.paused = False
            for ch in list(conn.channels.values()):
                ch.refresh()

    def set_reading(self, on: bool) -> None:
        transport = self.transport
        if transport is None or on == self._reading:
            return
        self._reading = on
        if on:
            transport.resume_reading()
        else:
            transport.pause_reading()

    # --- after each step ----------------------------------------------------------------

    def _wakeup(self, conn: Connection) -> None:
        self.server.mark_dirty(self)

    def _after(self) -> None:
        conn = self.conn
        assert conn is not None
        if conn.waiting is not None and (self._task is None or self._task.done()):
            self._task = self._loop.create_task(self._resolve())
        self.flush()
        if self.server._dirty:
            self.server.flush_dirty()
        self._check_open()

    def _check_open(self) -> None:
        conn = self.conn
        assert conn is not None
        if conn.phase is Phase.OPENED and self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
            if conn.heartbeat:
                self._hb_timer = self._loop.call_later(
                    max(0.5, conn.heartbeat / 2), self._heartbeat
                )

    def flush(self) -> None:
        conn = self.conn
        transport = self.transport
        if conn is None:
            return
        if transport is None:
            conn.out.clear()
            return
        out = conn.out
        if out:
            conn.out = bytearray()
            conn.last_sent = self._loop.time()
            self.server.stats.bytes_sent += len(out)
            transport.write(out)
        if conn.closing or conn.phase is Phase.CLOSED:
            if not transport.is_closing():
                transport.close()
        elif conn.phase is Phase.CLOSING and self._close_timer is None:
            # wait (bounded) for close-ok, then close anyway
            self._close_timer = self._loop.call_later(2.0, self._force_close)

    def _force_close(self) -> None:
        self._close_timer = None
        if self.transport is not None:
            self.transport.close()

    async def _resolve(self) -> None:
        conn = self.conn
        assert conn is not None
        server = self.server
        try:
            while conn.waiting is not None and self.transport is not None:
                waiting = conn.waiting
                kind = waiting[0]
                if kind == "auth":
                    result = await server.context.auth.authenticate(waiting[1])
                    if not result.ok:
                        server.stats.auth_failures += 1
                    conn.auth_done(result)
                    conn.process()
                elif kind == "get":
                    _, channel, q, no_ack = waiting
                    try:
                        c, message, remaining = await server.basic_get(channel, q, no_ack)
                    except AMQPError as exc:
                        channel.fail(exc)
                    else:
                        if conn.channels.get(channel.number) is channel:
                            channel.get_result(c, message, remaining)
                        elif c is not None:
                            channel._unregister(c)
                    conn.resume()
                elif kind == "commit":
                    _, channel, futures = waiting
                    if futures:
                        await asyncio.wait(futures, timeout=30.0)
                    if conn.channels.get(channel.number) is channel:
                        conn.send(channel.number, commands.Tx.CommitOk())
                    conn.resume()
                else:  # pragma: no cover - a bug
                    raise RuntimeError(f"unknown wait {waiting!r}")
                self.flush()
                if server._dirty:
                    server.flush_dirty()
                self._check_open()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("AMQP connection %r failed while waiting", conn)
            conn.close(541, "internal error")
            self.flush()

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
        if not conn.tick(self._loop.time()):
            log.info("%s: missed heartbeats from client, timeout: %ss", conn, conn.heartbeat)
            self.transport.abort()
            return
        self.flush()
        self._hb_timer = self._loop.call_later(max(0.5, conn.heartbeat / 2), self._heartbeat)
