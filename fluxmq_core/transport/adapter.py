"""One asyncio adapter for every protocol plugin's sans-IO connection.

A protocol plugin writes its protocol as a sans-IO connection object (bytes in
through ``receive``, bytes out in ``out``) and binds it to the event loop by
subclassing :class:`AdapterProtocol` (one per network connection) and
:class:`AdapterServer` (one per broker). What the base does, so that no plugin
carries its own copy:

Batch-per-chunk flush
    A connection's own answers are written once per ``data_received`` chunk.
    Deliveries into *other* connections call the destination's ``wakeup``: the
    destination is put on the server's dirty list (once, ``dirty``), and the chunk's
    end writes every dirty destination once. Outside a chunk (timers, futures) one
    ``loop.call_soon`` per loop tick does it. A destination whose pending output
    reaches ``flush_at`` bytes is written at once: under uvloop one loop iteration may
    read many chunks before a ``call_soon`` runs, and a deferred flush alone would
    let a subscriber's buffer fill while publishers keep being read.

Typed waits
    When the sans-IO connection needs an await (the auth service, a queue, a store
    sync) it sets ``conn.waiting`` to a :class:`Wait`: a frozen, slotted dataclass,
    one class per kind of wait, that says what to await and carries what the answer
    needs. The protocol class maps each wait type to an ``async`` handler in
    ``WAITS``; the base runs the handler, which feeds the answer back into the
    connection, then writes what that produced. No wait is a tuple dispatched by
    string; an unknown wait type is a bug reported as one.

Exception isolation per connection
    An exception while handling one connection's bytes, a wait or a flush is logged
    once (with its traceback) and closes *that* connection with the protocol's
    internal-error code (:meth:`AdapterProtocol.internal_error`); the other
    connections and the chunk's other destinations are not affected.

Back-pressure
    ``pause_writing``/``resume_writing`` set ``conn.paused`` and call the hooks
    :meth:`~AdapterProtocol.writing_paused`/:meth:`~AdapterProtocol.writing_resumed`.
    Reading is paused while a wait is pending (the peer's bytes stay in the kernel
    rather than piling up in the decoder) and for whatever other reasons a plugin
    names (:meth:`~AdapterProtocol.hold_reading`, a bit per reason).

Graceful close with a linger
    When the connection asks to close (``conn.closing``) after its last bytes (an
    MQTT DISCONNECT with a reason code, an AMQP connection.close-ok), the base
    writes them, half-closes the write side (``write_eof``) and keeps reading and
    discarding for at most :data:`LINGER` seconds, then closes. Closing a socket that
    still has unread input makes the kernel send a reset, which can destroy the
    last bytes before the client reads them; the linger lets the client read the
    reason code. Transports that cannot half-close (TLS, WebSocket) have their own
    closing handshake and are closed at once. The connection's *logical* end
    (:meth:`~AdapterProtocol.connection_ended`: wills, requeues, counters) happens
    when the close is decided, not when the linger ends.

The sans-IO connection a subclass puts in ``conn`` provides: ``out`` (a
``bytearray``, or the protocol's shared empty ``idle_out`` while nothing is
pending), ``waiting`` (a :class:`Wait` or None), ``closing`` (bool), ``paused``
(bool), ``flush_pending`` (bool, reset by each flush; a connection may use it to call
``wakeup`` once per flush) and ``wakeup`` (set by the adapter, called with the
connection when bytes were added outside its own ``receive``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, cast

if TYPE_CHECKING:
    from fluxmq_core.auth import AuthRequest

__all__ = [
    "FLUSH_AT",
    "HOLD_FLOW",
    "HOLD_OTHER",
    "HOLD_WAIT",
    "LINGER",
    "AdapterProtocol",
    "AdapterServer",
    "AuthWait",
    "Wait",
]

log = logging.getLogger("fluxmq.transport")

#: Seconds a connection closed by the broker keeps reading (and discarding) after
#: its last bytes and a half-close, so the client reads them instead of a reset.
LINGER = 1.5

#: Pending output (bytes) at which a connection is written at once instead of at
#: the end of the chunk or loop tick.
FLUSH_AT = 64 * 1024

#: Reasons to stop reading a connection (bits of ``AdapterProtocol.read_holds``).
HOLD_WAIT = 1  # a wait is pending
HOLD_FLOW = 2  # publisher flow control: a subscriber it feeds is congested
HOLD_OTHER = 4  # anything else a plugin needs (AMQP: the memory alarm)


class Wait:
    """Base of the typed waits: what a sans-IO connection asks the adapter to await.

    Subclasses are ``@dataclass(frozen=True, slots=True)`` classes; the protocol
    class's ``WAITS`` maps each one to its handler.
    """

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class AuthWait(Wait):
    """Authenticate ``request`` with the core auth service (every protocol logs in)."""

    request: AuthRequest


WaitHandler = Callable[[Any, Any], Awaitable[None]]


class AdapterServer:
    """The per-broker half: open connections, the dirty list and its flusher.

    A plugin's server subclasses it (and calls ``super().__init__(context)``) and
    adds its shared state (session registry, topology...).
    """

    def __init__(self, context: Any) -> None:
        self.context = context
        self.stats = context.stats
        self.protocols: set[Any] = set()
        self.dirty: list[AdapterProtocol] = []
        self._flush_scheduled = False
        #: ``data_received`` calls of this server's connections now running: their
        #: end writes the dirty list, so marking needs no loop callback then.
        self.in_chunk = 0

    def mark_dirty(self, proto: AdapterProtocol) -> None:
        """``proto`` has output: write it at the end of the chunk or loop tick."""
        self.dirty.append(proto)
        if not self._flush_scheduled and not self.in_chunk:
            # Outside a chunk of this server (a timer, a task, another protocol's
            # chunk): one callback per loop tick writes the list.
            self._flush_scheduled = True
            proto._loop.call_soon(self.flush_dirty)

    def flush_dirty(self) -> None:
        """Write every connection marked dirty, each once. One failing connection
        is closed and does not strand the others."""
        self._flush_scheduled = False
        while self.dirty:
            dirty = self.dirty
            self.dirty = []
            for proto in dirty:
                if proto.dirty:
                    try:
                        proto.flush()
                    except Exception:
                        proto.failed("flush")

    def close_all(self) -> None:
        """Write what each connection has pending and close it (broker shutdown)."""
        self.flush_dirty()
        for proto in list(self.protocols):
            try:
                proto.flush()
            except Exception:
                proto.failed("flush")
            transport = proto.transport
            if transport is not None:
                transport.close()


#: ``AdapterProtocol._flags`` bits: ``connection_ended`` ran; a failure was handled.
_ENDED = 1
_FAILED = 2


class AdapterProtocol(asyncio.Protocol):
    """One network connection on the event loop; see the module docstring.

    A subclass sets ``conn`` in :meth:`make_connection`, maps its wait types to
    handlers in ``WAITS``, and overrides the hooks it needs: :meth:`feed` (hand a
    chunk to the connection), :meth:`after_step` (timers and gates after each step),
    :meth:`internal_error` (close with the protocol's code), :meth:`connection_ended`
    (the logical end), :meth:`writing_paused`/:meth:`writing_resumed`.
    """

    __slots__ = (
        "server",
        "conn",
        "transport",
        "dirty",
        "read_holds",
        "_loop",
        "_task",
        "_gate",
        "_lingering",
        "_linger_timer",
        "_flags",
        "counter",
    )

    #: wait type -> ``async def handler(self, wait)``; the handler answers the connection.
    WAITS: ClassVar[dict[type, WaitHandler]] = {}
    #: pending output at which ``wakeup`` writes at once.
    flush_at: ClassVar[int] = FLUSH_AT
    #: what ``conn.out`` becomes once written: None for a new ``bytearray``, or a
    #: protocol's shared empty value (MQTT: an idle connection holds no buffer).
    idle_out: ClassVar[Any] = None
    #: the plugin's logger name, for the one log line of an internal error.
    log_name: ClassVar[str] = "fluxmq.transport"

    def __init__(self, server: AdapterServer) -> None:
        self.server = server
        self.conn: Any = None
        self.transport: asyncio.Transport | None = None
        self.dirty = False
        self.read_holds = 0
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task[None] | None = None
        self._gate: asyncio.Task[None] | None = None
        self._lingering = False
        self._linger_timer: asyncio.TimerHandle | None = None
        self._flags = 0  # _ENDED | _FAILED (one slot for two rarely set bools)
        # The listener's open-connection count, when it keeps one (counted here
        # rather than through a wrapper protocol: one object less per connection).
        self.counter: Any = None

    # -- hooks for subclasses -------------------------------------------------------------

    def make_connection(self, transport: asyncio.BaseTransport) -> Any:
        """The sans-IO connection of this transport (``wakeup`` is set afterwards)."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_connection")

    def connected(self) -> None:
        """After ``conn`` is set: start the protocol's timers."""

    def feed(self, data: bytes) -> None:
        """Hand one chunk to the connection."""
        self.conn.receive(data)

    def after_step(self) -> None:
        """After each chunk and each answered wait, before the flush."""

    def internal_error(self) -> None:
        """A bug while handling this connection: close it with the protocol's
        internal-error code (the base falls back to a plain close)."""
        self.conn.closing = True

    def connection_ended(self) -> None:
        """The connection is over (closing or lost), called once: cancel its timers,
        end the protocol state (``conn.lost()``)."""

    def writing_paused(self) -> None:
        """The transport's buffer is past its high mark (``conn.paused`` is set)."""

    def writing_resumed(self) -> None:
        """The transport drained (``conn.paused`` is clear); pump what waits."""

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.counter is not None:
            self.counter.open += 1
        self.transport = cast("asyncio.Transport", transport)  # a stream server's transport
        self.server.protocols.add(self)
        conn = self.conn = self.make_connection(transport)
        conn.wakeup = self.wakeup
        self.connected()

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # closing: read and discard
        server = self.server
        server.stats.bytes_received += len(data)
        # Deliveries this chunk makes are written at its end (``after``, or below
        # when it failed), not by a loop callback per chunk.
        server.in_chunk += 1
        try:
            try:
                self.feed(data)
            except Exception:
                self.failed("data")
            else:
                self.after()
        finally:
            server.in_chunk -= 1
        if server.dirty:
            server.flush_dirty()

    def eof_received(self) -> bool | None:
        return None  # the peer is done: close (MQTT and AMQP have no half-open state)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.counter is not None:
            self.counter.open -= 1
        self.server.protocols.discard(self)
        self.transport = None
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        for task in (self._task, self._gate):
            if task is not None and not task.done():
                task.cancel()
        self._end()

    def pause_writing(self) -> None:
        conn = self.conn
        if conn is not None:
            conn.paused = True
            self.writing_paused()

    def resume_writing(self) -> None:
        conn = self.conn
        if conn is not None:
            conn.paused = False
            self.writing_resumed()

    # -- output ---------------------------------------------------------------------------

    def wakeup(self, conn: Any) -> None:
        """The connection gained output outside its own ``receive``."""
        if len(conn.out) >= self.flush_at:
            self.flush()  # big enough: write now, whatever the loop does next
        elif not self.dirty:
            self.dirty = True
            self.server.mark_dirty(self)

    def after(self) -> None:
        """After a chunk: hooks, start the wait, write every connection the chunk
        delivered to (once each), then this connection's own answers."""
        conn = self.conn
        try:
            self.after_step()
            if conn.waiting is not None and self._task is None:
                self.hold_reading(HOLD_WAIT)
                self._task = self._loop.create_task(self._resolve())
        except Exception:
            self.failed("step")
            return
        # Deliveries first: a publisher's acknowledgement (its own write, and the
        # wake-up of its process) does not delay the subscribers' copies.
        server = self.server
        if server.dirty:
            server.flush_dirty()
        # With nothing to write, to close or to clear, ``flush`` would do nothing.
        if conn.out or conn.closing or conn.flush_pending or self.dirty:
            try:
                self.flush()
            except Exception:
                self.failed("step")

    def flush(self) -> None:
        """Write the connection's pending output; close when it asks to."""
        conn = self.conn
        if conn is None:
            return
        self.dirty = False
        conn.flush_pending = False
        transport = self.transport
        out = conn.out
        if transport is None or self._lingering:
            if out:
                idle = self.idle_out
                conn.out = bytearray() if idle is None else idle
            return
        if self._gate is not None:
            return  # output held until the gate opens
        if out:
            idle = self.idle_out
            conn.out = bytearray() if idle is None else idle
            self.server.stats.bytes_sent += len(out)
            transport.write(out)
        if conn.closing:
            self.close_gracefully()

    def hold_output(self, awaitable: Awaitable[Any]) -> None:
        """Write nothing until ``awaitable`` is done (e.g. a store sync that what
        the output promises depends on); then flush."""
        if self._gate is None:
            self._gate = self._loop.create_task(self._open_gate(awaitable))
        elif asyncio.iscoroutine(awaitable):
            awaitable.close()

    async def _open_gate(self, awaitable: Awaitable[Any]) -> None:
        try:
            await awaitable
        finally:
            self._gate = None
        if self.transport is not None:
            self.flush()

    # -- reading --------------------------------------------------------------------------

    def hold_reading(self, reason: int) -> None:
        """Stop reading for ``reason`` (a ``HOLD_*`` bit) until released."""
        holds = self.read_holds
        if holds & reason:
            return
        self.read_holds = holds | reason
        transport = self.transport
        if not holds and transport is not None and not self._lingering:
            if not transport.is_closing():
                transport.pause_reading()

    def release_reading(self, reason: int) -> None:
        """Read again once no reason holds reading any more."""
        holds = self.read_holds
        if not holds & reason:
            return
        holds = self.read_holds = holds & ~reason
        transport = self.transport
        if not holds and transport is not None and not transport.is_closing():
            transport.resume_reading()

    # -- waits ----------------------------------------------------------------------------

    async def _resolve(self) -> None:
        """Await what the connection waits for, via the handler of its type, until
        it waits no more; write what each answer produced."""
        conn = self.conn
        handlers = self.WAITS
        try:
            while (wait := conn.waiting) is not None and self.transport is not None:
                if self._lingering:
                    break
                handler = handlers.get(type(wait))
                if handler is None:
                    raise TypeError(f"{type(self).__name__} has no handler for {wait!r}")
                await handler(self, wait)
                if conn.waiting is wait:
                    raise RuntimeError(f"the handler of {wait!r} left it pending")
                self.after_step()
                self.flush()
                if self.server.dirty:
                    self.server.flush_dirty()
        except asyncio.CancelledError:
            raise
        except Exception:
            self.failed("wait")
        finally:
            self._task = None
            self.release_reading(HOLD_WAIT)

    # -- failures and closing -------------------------------------------------------------

    def failed(self, where: str) -> None:
        """An exception escaped while handling this connection (call from an
        ``except`` block): log it once and close this connection with the protocol's
        internal-error code; a second failure aborts the transport."""
        transport = self.transport
        if self._flags & _FAILED:
            if transport is not None:
                transport.abort()
            self._end()
            return
        self._flags |= _FAILED
        logging.getLogger(self.log_name).exception(
            "internal error in %s handling of %r; closing it", where, self.conn
        )
        try:
            self.internal_error()
            self.flush()
        except Exception:
            if transport is not None:
                transport.abort()
            self._end()

    def close_gracefully(self) -> None:
        """Half-close and linger (see the module docstring), or close at once on
        transports that cannot half-close."""
        transport = self.transport
        if self._lingering or transport is None or transport.is_closing():
            return
        self._lingering = True
        self._end()
        if transport.can_write_eof():
            try:
                transport.write_eof()
            except (OSError, RuntimeError):
                transport.close()
                return
            if self.read_holds:
                self.read_holds = 0
                transport.resume_reading()
            self._linger_timer = self._loop.call_later(LINGER, self._linger_over)
        else:
            transport.close()

    def _linger_over(self) -> None:
        self._linger_timer = None
        if self.transport is not None:
            self.transport.close()

    def _end(self) -> None:
        if not self._flags & _ENDED:
            self._flags |= _ENDED
            self.connection_ended()
