"""The asyncio adapter: binds the sans-IO connection to core transports and services.

Built on the core's adapter base (:mod:`fluxmq_core.transport.adapter`), which does
the write coalescing (one write per destination per chunk), the typed waits, the
per-connection exception isolation, back-pressure and the graceful close with a
linger. What is MQTT's own here: :class:`MQTTServer` owns the
:class:`~fluxmq_mqtt.sessions.SessionRegistry`; :class:`FlowControl` pauses reading
MQTT publishers whose messages meet a congested subscriber; :class:`MQTTProtocol`
adds the connect timeout, keep-alive (every connection's deadline in one shared
:class:`KeepAliveWheel`, re-checked lazily: no timer per connection or per packet),
``resume_writing`` pumping the session queue, the handlers of the MQTT waits
(login, ACL cache misses, enhanced-auth steps) and the store sync before acks (held
acks, and everything the same chunk wrote after them, go out after one
``store.sync()``, so a PUBACK still precedes the deliveries its publish caused).

What it does not do: MQTT rules. Everything a packet means is decided in
``connection.py``, ``session.py`` and ``sessions.py``.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from fluxmq_core.auth import AuthError
from fluxmq_core.transport import peer_identity, peer_name, tune_transport
from fluxmq_core.transport.adapter import HOLD_FLOW, AdapterProtocol, AdapterServer
from fluxmq_mqtt.connection import Connection
from fluxmq_mqtt.outbound import FLUSH_AT, NO_OUTPUT  # written at once past this
from fluxmq_mqtt.sessions import SessionRegistry
from fluxmq_mqtt.state import Phase
from fluxmq_mqtt.waits import AuthorizeWait, AuthWait, ClaimWait, EnhancedAuthWait, HookWait

if TYPE_CHECKING:
    from fluxmq_core.context import BrokerContext
    from fluxmq_mqtt.config import MQTTConfig

__all__ = [
    "FLUSH_AT",
    "ConnectedView",
    "FlowControl",
    "KeepAliveWheel",
    "LoopScheduler",
    "MQTTProtocol",
    "MQTTServer",
]

log = logging.getLogger("fluxmq.mqtt")


class LoopScheduler:
    """The registry's timers on the running event loop."""

    __slots__ = ()

    def call_later(self, delay: float, fn: Any, *args: Any) -> asyncio.TimerHandle:
        return asyncio.get_running_loop().call_later(max(0.0, delay), fn, *args)

    def cancel(self, handle: asyncio.TimerHandle) -> None:
        handle.cancel()


class KeepAliveWheel:
    """The keep-alive deadlines of every connection behind one loop timer.

    A loop timer per connection costs about 540 bytes (the handle, libuv's timer,
    a bound method and a context copy) on every idle connection; here a connection
    costs one dict entry. Deadlines are grouped in ticks of ``RESOLUTION`` seconds
    (rounded up: a connection is never closed early, at most one tick late); one
    timer is armed for the earliest tick. When a tick is due each of its connections
    checks itself (:meth:`MQTTProtocol._keepalive_check`) and, if data arrived
    meanwhile, is added again at its new deadline.
    """

    RESOLUTION = 0.1

    __slots__ = ("_buckets", "_keys", "_ticks", "_timer", "_due")

    def __init__(self) -> None:
        self._buckets: dict[int, dict[MQTTProtocol, None]] = {}
        self._keys: dict[int, int] = {}  # tick -> the int object the bucket's tick is
        self._ticks: list[int] = []  # heap of the ticks in _buckets
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0  # the tick the timer is armed for

    def __len__(self) -> int:
        return sum(len(b) for b in self._buckets.values())

    def add(self, proto: MQTTProtocol, deadline: float) -> int:
        """Check ``proto`` once ``deadline`` (loop time) has passed; returns the
        tick to hand to :meth:`remove`."""
        tick = math.ceil(deadline / self.RESOLUTION)
        bucket = self._buckets.get(tick)
        if bucket is None:
            bucket = self._buckets[tick] = {}
            self._keys[tick] = tick
            heapq.heappush(self._ticks, tick)
        else:
            # The bucket's own int: the connection keeps it, and one int per tick
            # is 32 bytes less on every idle connection than one each.
            tick = self._keys[tick]
        bucket[proto] = None
        if self._timer is None or tick < self._due:
            self._arm(proto._loop, tick)
        return tick

    def remove(self, proto: MQTTProtocol, tick: int) -> None:
        bucket = self._buckets.get(tick)
        if bucket is not None:
            bucket.pop(proto, None)  # an empty bucket goes when its tick is due

    def _arm(self, loop: asyncio.AbstractEventLoop, tick: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._due = tick
        self._timer = loop.call_at(tick * self.RESOLUTION, self._fire, loop)

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        # Due: ticks up to now (plus the loop's millisecond rounding). Collected
        # first, so a connection that adds itself again waits for the next fire.
        now_tick = math.floor((loop.time() + 0.001) / self.RESOLUTION)
        ticks = self._ticks
        buckets = self._buckets
        due = []
        while ticks and ticks[0] <= now_tick:
            tick = heapq.heappop(ticks)
            self._keys.pop(tick, None)
            bucket = buckets.pop(tick, None)
            if bucket:
                due.append(bucket)
        try:
            for bucket in due:
                for proto in bucket:
                    try:
                        proto._keepalive_check()  # may add itself to a later tick
                    except Exception:
                        # One connection's failure must not leave the others
                        # unchecked (each had its own timer before).
                        log.exception("keep-alive check of %r failed", proto.conn)
        finally:
            if ticks and self._timer is None:
                self._arm(loop, ticks[0])

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._buckets.clear()
        self._keys.clear()
        self._ticks.clear()


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


class ConnectedView:
    """The registry's connections past CONNACK (``SessionRegistry.connections``) as
    a bit of each connection (``Connection.listed``) over the adapter's set of open
    connections (``AdapterServer.protocols``): one registry of live connections
    instead of a second set (about 66 bytes per connection at 10,000)."""

    __slots__ = ("_protocols", "_count")

    def __init__(self, protocols: set[Any]) -> None:
        self._protocols = protocols
        self._count = 0

    def add(self, conn: Connection) -> None:
        if not conn.listed:
            conn.listed = True
            self._count += 1

    def discard(self, conn: Connection) -> None:
        if conn.listed:
            conn.listed = False
            self._count -= 1

    def __contains__(self, conn: object) -> bool:
        return isinstance(conn, Connection) and conn.listed

    def __iter__(self) -> Iterator[Connection]:
        for proto in self._protocols:
            conn = proto.conn
            if conn is not None and conn.listed:
                yield conn

    def __len__(self) -> int:
        return self._count


class MQTTServer(AdapterServer):
    """One per broker: the registry, flow control, start and stop (the dirty list
    and its flusher come from :class:`AdapterServer`)."""

    def __init__(self, context: BrokerContext, cfg: MQTTConfig) -> None:
        super().__init__(context)
        self.cfg = cfg
        self.registry = SessionRegistry(context, cfg, LoopScheduler())
        self.registry.connections = ConnectedView(self.protocols)
        self.flow = FlowControl(cfg)
        self.keepalive = KeepAliveWheel()
        self.registry.flow = self.flow
        self.registry.spawn = self._spawn
        self._tasks: set[asyncio.Task[Any]] = set()

    def protocol_factory(self) -> MQTTProtocol:
        return MQTTProtocol(self)

    def _spawn(self, coro: Any) -> None:
        """The registry's background calls (cluster releases), kept referenced."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self) -> None:
        await self.registry.restore()

    async def stop(self) -> None:
        self.registry.shutdown()
        self.close_all()
        self.keepalive.stop()
        await self.context.store.sync()


class MQTTProtocol(AdapterProtocol):
    """One MQTT network connection on the event loop."""

    __slots__ = ("_ka_tick", "_connect_timer", "_ack_chain", "_flow")

    flush_at = FLUSH_AT
    idle_out = NO_OUTPUT  # an idle connection holds no output buffer
    log_name = "fluxmq.mqtt"
    server: MQTTServer
    conn: Connection

    def __init__(self, server: MQTTServer) -> None:
        super().__init__(server)
        self._ka_tick: int | None = None  # in server.keepalive (KeepAliveWheel)
        self._connect_timer: asyncio.TimerHandle | None = None
        self._ack_chain: asyncio.Future[None] | None = None
        # While paused by flow control: [timer, subscriber connection, ...]
        self._flow: list[Any] | None = None

    # -- adapter hooks -------------------------------------------------------------------

    def make_connection(self, transport: asyncio.BaseTransport) -> Connection:
        server = self.server
        tune_transport(transport, server.cfg.outbound_buffer)
        conn = Connection(server.registry, peer_name(transport), peer_identity(transport))
        conn.last_seen = self._loop.time()
        return conn

    def connected(self) -> None:
        # The protocol itself is the connection's ``wakeup`` (``__call__`` below):
        # the bound method the adapter set would be one more object (64 bytes) on
        # every idle connection.
        self.conn.wakeup = self
        self._connect_timer = self._loop.call_later(
            self.server.cfg.connect_timeout, self._connect_timeout
        )

    def feed(self, data: bytes) -> None:
        conn = self.conn
        conn.last_seen = self._loop.time()
        flow = self.server.flow
        flow.current = self
        try:
            conn.receive(data)
        finally:
            flow.current = None

    def after_step(self) -> None:
        conn = self.conn
        if conn.held:
            self._hold_acks()
        if conn._rare is not None and conn.sync_first:  # (rarely set: no lookup else)
            # Nothing goes out before the store synced what the CONNACK promises.
            conn.sync_first = False
            self.hold_output(self.server.context.store.sync())
        if conn.phase is Phase.CONNECTED and self._ka_tick is None and conn.keepalive:
            self._connect_done()

    def wakeup(self, conn: Any) -> None:
        # Written at once when big, unless the chunk holds output back (acks waiting
        # for a sync, and what follows them; or the CONNACK's sync).
        if len(conn.out) >= FLUSH_AT and conn.held_mark < 0 and not conn.sync_first:
            self.flush()
        elif not self.dirty:
            self.dirty = True
            server = self.server
            if server.in_chunk:
                server.dirty.append(self)  # what mark_dirty does inside a chunk
            else:
                server.mark_dirty(self)

    __call__ = wakeup  # conn.wakeup(conn) (see ``connected``)

    def internal_error(self) -> None:
        self.conn.kick(0x80, "internal error")  # 5.0: DISCONNECT "unspecified error"

    def connection_ended(self) -> None:
        server = self.server
        if self._connect_timer is not None:
            self._connect_timer.cancel()
            self._connect_timer = None
        if self._ka_tick is not None:
            server.keepalive.remove(self, self._ka_tick)
            self._ka_tick = -1  # never again (after_step must not add it back)
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

    def writing_resumed(self) -> None:
        conn = self.conn
        session = conn.session
        if session is not None:
            session.pump()
            self.flush()
            flow = self.server.flow
            if flow.congested:
                flow.check(conn, len(session.queue))

    # -- waits ---------------------------------------------------------------------------

    async def _auth(self, wait: AuthWait) -> None:
        self.conn.auth_done(await self.server.context.auth.authenticate(wait.request))

    async def _authorize(self, wait: AuthorizeWait) -> None:
        conn = self.conn
        decision = await self.server.context.auth.authorize(
            conn.client_id, conn.username, wait.action, wait.topic
        )
        conn.answer(wait.action, wait.topic, decision)

    async def _enhanced(self, wait: EnhancedAuthWait) -> None:
        conn = self.conn
        try:
            status, out = await conn.enhanced.step(wait.data)
        except AuthError as exc:
            conn.enhanced_failed(exc.reason)
        else:
            conn.enhanced_done(str(status), out)

    async def _claim(self, wait: ClaimWait) -> None:
        conn = self.conn
        try:
            await self.server.registry.claim(wait.client_id, wait.clean_start)
        except Exception as exc:  # ClusterError, or a driver failing otherwise
            log.warning("cannot take session %r for this node: %s", wait.client_id, exc)
            conn.claim_failed(f"session not available on this node: {exc}")
        else:
            conn.claim_done()

    async def _hook(self, wait: HookWait) -> None:
        hooks = self.server.context.hooks
        req = wait.request
        outcome = await hooks.call(req) if hooks is not None else None
        self.conn.hook_done(req.hook, req.topic, outcome)

    WAITS = {
        AuthWait: _auth,
        AuthorizeWait: _authorize,
        EnhancedAuthWait: _enhanced,
        ClaimWait: _claim,
        HookWait: _hook,
    }

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
        self.hold_reading(HOLD_FLOW)
        self._flow = [self._loop.call_later(timeout, self._flow_expired), sub]

    def flow_done(self, sub: Connection) -> None:
        waiting = self._flow
        if waiting is None or sub not in waiting:
            return
        waiting.remove(sub)
        if len(waiting) == 1:
            waiting[0].cancel()
            self._flow = None
            self.release_reading(HOLD_FLOW)

    def _flow_expired(self) -> None:
        waiting = self._flow
        self._flow = None
        if waiting is not None:
            self.server.flow.expired(self, waiting[1:])
            self.release_reading(HOLD_FLOW)

    # -- durable acks --------------------------------------------------------------------

    def _hold_acks(self) -> None:
        """Durable store: acks of this chunk go out after one ``store.sync()``, and
        so does everything the chunk wrote to this connection after the first of them
        (the deliveries to itself a publish caused come after its PUBACK)."""
        conn = self.conn
        data = bytes(conn.held or b"")
        count = conn.held_count
        conn.held = None
        mark = conn.held_mark
        conn.held_mark = -1
        out = conn.out
        if 0 <= mark < len(out) and not conn.closing:
            data += out[mark:]
            del out[mark:]
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
        self._ka_tick = self.server.keepalive.add(self, self._loop.time() + conn.keepalive * 1.5)

    def _keepalive_check(self) -> None:
        """Called by the server's :class:`KeepAliveWheel` once the deadline passed
        (``proto`` is no longer in the wheel)."""
        conn = self.conn
        if conn is None or self.transport is None or self._ka_tick == -1:
            return
        limit = conn.keepalive * 1.5
        now = self._loop.time()
        if conn.waiting is not None:
            conn.last_seen = now  # not read while we wait: the silence is ours
        idle = now - conn.last_seen
        if idle >= limit:
            self._ka_tick = -1
            conn.kick(0x8D, "keep alive timeout")
            self.flush()
            return
        self._ka_tick = self.server.keepalive.add(self, conn.last_seen + limit)
