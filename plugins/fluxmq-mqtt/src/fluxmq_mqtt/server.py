"""The asyncio adapter: binds the sans-IO connection to core transports and services.

:class:`MQTTServer` owns the :class:`~fluxmq_mqtt.sessions.SessionRegistry`, the
listeners' protocol factory and the write coalescing: a connection's own answers are
written once per ``data_received`` chunk, and deliveries into *other* connections
mark them dirty so that one ``loop.call_soon`` per loop tick flushes each of them
once. A connection whose pending output reaches ``FLUSH_AT`` bytes is written at once,
whoever fills it: under uvloop one loop iteration may read dozens of chunks from every
busy socket before a ``call_soon`` callback runs, so a deferred flush alone lets a
subscriber's buffer fill and drop while publishers keep being read (see
``docs/performance.md``). :class:`FlowControl` pauses reading MQTT publishers whose
messages meet a congested subscriber. :class:`MQTTProtocol` is the ``asyncio.Protocol``
of one connection: chunks in,
the connect timeout, keep-alive (one lazily re-armed timer per connection, not one
per packet), transport backpressure (``pause_writing`` stops deliveries into it;
``resume_writing`` pumps its session queue) and the awaits the sans-IO layer asks for
(login, ACL cache misses, enhanced-auth steps, the store sync before acks).

What it does not do: MQTT rules. Everything a packet means is decided in
``connection.py``, ``session.py`` and ``sessions.py``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from fluxmq_core.auth import AuthError
from fluxmq_core.transport import peer_identity, peer_name, tune_transport
from fluxmq_mqtt.connection import Connection
from fluxmq_mqtt.outbound import FLUSH_AT  # written at once past this (see the docstring)
from fluxmq_mqtt.sessions import SessionRegistry
from fluxmq_mqtt.state import Phase

if TYPE_CHECKING:
    from fluxmq_core.context import BrokerContext
    from fluxmq_mqtt.config import MQTTConfig

__all__ = ["FLUSH_AT", "FlowControl", "LoopScheduler", "MQTTProtocol", "MQTTServer"]

log = logging.getLogger("fluxmq.mqtt")


class LoopScheduler:
    """The registry's timers on the running event loop."""

    __slots__ = ()

    def call_later(self, delay: float, fn: Any, *args: Any) -> asyncio.TimerHandle:
        return asyncio.get_running_loop().call_later(max(0.0, delay), fn, *args)

    def cancel(self, handle: asyncio.TimerHandle) -> None:
        handle.cancel()


class FlowControl:
    """Publisher flow control: backpressure from congested subscribers to publishers.

    While an MQTT connection's chunk is handled it is ``current``. A delivery that
    finds a connected subscriber congested (its transport paused, so QoS 0 is being
    dropped; or its session queue at ``high`` QoS 1/2 messages) calls :meth:`block`:
    the current publisher stops being read (``pause_reading``; the rest of the chunk
    already read is still handled) and waits on that subscriber. :meth:`check`, called
    when the subscriber's transport drains or its queue moves, resumes the publishers
    once it has room (not paused, queue at most ``low``).

    One slow subscriber must not stall everyone: a publisher waits at most
    ``timeout`` seconds. Then the subscribers it waited on are marked *given up*
    (``congested[conn] = None``): they no longer pause anyone, and what does not fit
    them is dropped as ``outbound_buffer`` and ``queue_policy`` say, until they have
    room again. Publishers of other protocols and deliveries from timers are never
    paused (no ``current``): for them a congested subscriber drops or queues as before.
    A publisher is never paused on itself.
    """

    __slots__ = ("congested", "current", "high", "low", "timeout", "_loop")

    def __init__(self, cfg: MQTTConfig) -> None:
        self.current: MQTTProtocol | None = None
        # subscriber connection -> publishers waiting on it, or None once given up
        self.congested: dict[Connection, list[MQTTProtocol] | None] = {}
        self.timeout = cfg.flow_control_timeout
        self.high = max(1, cfg.max_queued_messages // 2)
        self.low = self.high // 2
        self._loop: asyncio.AbstractEventLoop | None = None

    def block(self, conn: Connection) -> None:
        """A delivery found ``conn`` congested: pause the current publisher on it."""
        pub = self.current
        if pub is None or pub.conn is conn or not self.timeout:
            return
        congested = self.congested
        waiters = congested.get(conn, ())
        if waiters is None:
            return  # given up: it drops instead
        if not waiters:
            waiters = congested[conn] = []
        elif pub in waiters:
            return
        waiters.append(pub)
        pub.flow_wait(conn, self.timeout)

    def check(self, conn: Connection, queued: int) -> None:
        """``conn`` may have room again: resume what waits on it."""
        if conn.paused or queued > self.low or conn not in self.congested:
            return
        waiters = self.congested.pop(conn)
        if waiters:
            for pub in waiters:
                pub.flow_done(conn)

    def forget(self, conn: Connection) -> None:
        """``conn`` is gone: as a subscriber, release its publishers."""
        waiters = self.congested.pop(conn, None)
        if waiters:
            for pub in waiters:
                pub.flow_done(conn)

    def expired(self, pub: MQTTProtocol, blocked_on: list[Connection]) -> None:
        """``pub`` waited ``timeout``: give up on the subscribers it waited on."""
        congested = self.congested
        for conn in blocked_on:
            waiters = congested.get(conn)
            if waiters is not None:
                for other in waiters:
                    if other is not pub:
                        other.flow_done(conn)
                congested[conn] = None


class MQTTServer:
    """One per broker: the registry, the dirty-connection flusher, flow control,
    start and stop."""

    def __init__(self, context: BrokerContext, cfg: MQTTConfig) -> None:
        self.context = context
        self.cfg = cfg
        self.registry = SessionRegistry(context, cfg, LoopScheduler())
        self.flow = FlowControl(cfg)
        self.registry.flow = self.flow
        self.protocols: set[MQTTProtocol] = set()
        self._dirty: list[MQTTProtocol] = []
        self._flush_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def protocol_factory(self) -> MQTTProtocol:
        return MQTTProtocol(self)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.registry.restore()

    async def stop(self) -> None:
        self.registry.shutdown()
        self.flush_dirty()
        for proto in list(self.protocols):
            proto.flush()
            if proto.transport is not None:
                proto.transport.close()
        await self.context.store.sync()

    # -- write coalescing ----------------------------------------------------------------

    def mark_dirty(self, proto: MQTTProtocol) -> None:
        self._dirty.append(proto)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush_dirty)

    def flush_dirty(self) -> None:
        """Write every connection marked dirty. One failing connection is logged and
        does not strand the others (each would keep ``flush_pending`` set and never
        be marked again)."""
        self._flush_scheduled = False
        while self._dirty:
            dirty = self._dirty
            self._dirty = []
            for proto in dirty:
                try:
                    proto.flush()
                except Exception:
                    log.exception("MQTT flush of %r failed", proto.conn)
                    conn = proto.conn
                    if conn is not None:
                        conn.flush_pending = False
                        conn.out.clear()
                    if proto.transport is not None:
                        proto.transport.abort()


class MQTTProtocol(asyncio.Protocol):
    """One MQTT network connection on the event loop."""

    __slots__ = (
        "server",
        "conn",
        "transport",
        "_ka_timer",
        "_connect_timer",
        "_task",
        "_ack_chain",
        "_gate",
        "_loop",
        "_flow",
    )

    def __init__(self, server: MQTTServer) -> None:
        self.server = server
        self.conn: Connection | None = None
        self.transport: asyncio.Transport | None = None
        self._ka_timer: asyncio.TimerHandle | None = None
        self._connect_timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._ack_chain: asyncio.Future[None] | None = None
        self._gate: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()
        # While paused by flow control: [timer, subscriber connection, ...]
        self._flow: list[Any] | None = None

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        server = self.server
        server.protocols.add(self)
        tune_transport(transport, server.cfg.outbound_buffer)
        conn = self.conn = Connection(
            server.registry, peer_name(transport), peer_identity(transport)
        )
        conn.wakeup = self._wakeup
        conn.last_seen = self._loop.time()
        self._connect_timer = self._loop.call_later(
            server.cfg.connect_timeout, self._connect_timeout
        )

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        assert conn is not None
        server = self.server
        server.context.stats.bytes_received += len(data)
        conn.last_seen = self._loop.time()
        flow = server.flow
        flow.current = self
        try:
            conn.receive(data)
        finally:
            flow.current = None
        self._after()

    def connection_lost(self, exc: Exception | None) -> None:
        server = self.server
        server.protocols.discard(self)
        for timer in (self._ka_timer, self._connect_timer):
            if timer is not None:
                timer.cancel()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self._flow is not None:
            self._flow[0].cancel()
            for sub in self._flow[1:]:
                waiters = server.flow.congested.get(sub)
                if waiters and self in waiters:
                    waiters.remove(self)
            self._flow = None
        conn = self.conn
        if conn is not None:
            if server.flow.congested:
                server.flow.forget(conn)
            conn.lost()
        self.transport = None

    def pause_writing(self) -> None:
        if self.conn is not None:
            self.conn.paused = True

    def resume_writing(self) -> None:
        conn = self.conn
        if conn is not None:
            conn.paused = False
            session = conn.session
            if session is not None:
                session.pump()
                self.flush()
                flow = self.server.flow
                if flow.congested:
                    flow.check(conn, len(session.queue))

    # -- flow control (this connection as a publisher) ----------------------------------

    def flow_wait(self, sub: Connection, timeout: float) -> None:
        """Stop reading until ``sub`` has room (or ``timeout`` passed)."""
        waiting = self._flow
        if waiting is not None:
            waiting.append(sub)
            return
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.pause_reading()
        self._flow = [self._loop.call_later(timeout, self._flow_expired), sub]

    def flow_done(self, sub: Connection) -> None:
        waiting = self._flow
        if waiting is None or sub not in waiting:
            return
        waiting.remove(sub)
        if len(waiting) == 1:
            waiting[0].cancel()
            self._flow = None
            self._resume_reading()

    def _flow_expired(self) -> None:
        waiting = self._flow
        self._flow = None
        if waiting is not None:
            self.server.flow.expired(self, waiting[1:])
            self._resume_reading()

    def _resume_reading(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.resume_reading()

    # -- after each step -----------------------------------------------------------------

    def _wakeup(self, conn: Connection) -> None:
        if len(conn.out) >= FLUSH_AT:
            self.flush()  # big enough: write now, whatever the loop does next
        else:
            self.server.mark_dirty(self)

    def _after(self) -> None:
        conn = self.conn
        assert conn is not None
        if conn.held:
            self._hold_acks()
        if conn.waiting is not None and (self._task is None or self._task.done()):
            self._task = self._loop.create_task(self._resolve())
        self.flush()
        # Write what this chunk delivered to other connections now: once per
        # destination per chunk, not once per packet and not deferred to a later tick.
        if self.server._dirty:
            self.server.flush_dirty()
        if conn.phase is Phase.CONNECTED and self._ka_timer is None and conn.keepalive:
            self._connect_done()

    def flush(self) -> None:
        conn = self.conn
        transport = self.transport
        if conn is None:
            return
        conn.flush_pending = False
        if transport is None:
            conn.out.clear()
            return
        if conn.sync_first:
            # Nothing goes out before the store synced what the CONNACK promises.
            if self._gate is None:
                self._gate = self._loop.create_task(self._open_gate())
            return
        out = conn.out
        if out:
            conn.out = bytearray()
            self.server.context.stats.bytes_sent += len(out)
            transport.write(out)
        if conn.closing and not transport.is_closing():
            transport.close()

    async def _open_gate(self) -> None:
        try:
            await self.server.context.store.sync()
        finally:
            self._gate = None
            if self.conn is not None:
                self.conn.sync_first = False
        self.flush()

    def _hold_acks(self) -> None:
        """Durable store: acks of this chunk go out after one ``store.sync()``."""
        conn = self.conn
        assert conn is not None
        data = bytes(conn.held)
        count = conn.held_count
        conn.held.clear()
        previous = self._ack_chain

        async def release() -> None:
            if previous is not None:
                await previous
            await self.server.context.store.sync()
            conn.held_count -= count
            if self.transport is not None and conn.phase is not Phase.CLOSED:
                conn.out += data
                self.flush()

        self._ack_chain = self._loop.create_task(release())

    async def _resolve(self) -> None:
        """Await what the connection is waiting for and feed the answers back."""
        conn = self.conn
        assert conn is not None
        auth = self.server.context.auth
        try:
            while conn.waiting is not None and self.transport is not None:
                waiting = conn.waiting
                kind = waiting[0]
                if kind == "auth":
                    conn.auth_done(await auth.authenticate(waiting[1]))
                elif kind == "authorize":
                    _, action, topic = waiting
                    decision = await auth.authorize(conn.client_id, conn.username, action, topic)
                    conn.answer(action, topic, decision)
                elif kind == "enhanced":
                    try:
                        status, out = await conn.enhanced.step(waiting[1])
                    except AuthError as exc:
                        conn.enhanced_failed(exc.reason)
                    else:
                        conn.enhanced_done(str(status), out)
                else:  # pragma: no cover - a bug
                    raise RuntimeError(f"unknown wait {waiting!r}")
                if conn.held:
                    self._hold_acks()
                self.flush()
                if conn.phase is Phase.CONNECTED and self._ka_timer is None and conn.keepalive:
                    self._connect_done()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("MQTT connection %r failed while waiting", conn)
            conn.close("internal error")
            self.flush()
        finally:
            self._task = None  # a finished task would stay referenced by an idle connection

    # -- timers --------------------------------------------------------------------------

    def _connect_timeout(self) -> None:
        self._connect_timer = None
        conn = self.conn
        if conn is not None and conn.phase in (Phase.AWAIT_CONNECT, Phase.AUTHENTICATING):
            conn.close("connect timeout", will=False)
            self.flush()

    def _connect_done(self) -> None:
        if self._connect_timer is not None:
            self._connect_timer.cancel()
            self._connect_timer = None
        conn = self.conn
        assert conn is not None
        self._ka_timer = self._loop.call_later(conn.keepalive * 1.5, self._keepalive_check)

    def _keepalive_check(self) -> None:
        conn = self.conn
        if conn is None or self.transport is None:
            return
        limit = conn.keepalive * 1.5
        idle = self._loop.time() - conn.last_seen
        if idle >= limit:
            self._ka_timer = None
            conn.kick(0x8D, "keep alive timeout")
            self.flush()
            return
        self._ka_timer = self._loop.call_later(limit - idle, self._keepalive_check)
