"""The AMQP 1.0 connection state machine (sans-IO: no asyncio, no socket, no clock).

Theory of operation. Bytes arrive through :meth:`Connection.receive`; every frame
they complete is handled in order and answers are appended to ``out``, which the
adapter writes once per chunk. The phases (header, SASL, open, close) are drawn in
:mod:`fluxmq_amqp1.state`; this module holds them, the login and the frame
dispatch. Within OPENED the performatives are handled by the functions of
:mod:`fluxmq_amqp1.sessions` (begin, end, flow), :mod:`fluxmq_amqp1.links` (attach,
detach) and :mod:`fluxmq_amqp1.delivery` (transfer, disposition), which are methods
of :class:`Connection`; their state (sessions, links, partial deliveries) is in
:mod:`fluxmq_amqp1.endpoints`. What a link is bound to (a topic, a queue) is the
environment's business (``env``, the server): the connection calls
``env.attach(link)``, ``env.publish(...)``, ``env.settle(...)``,
``env.credit(link)`` and ``env.detach(link)``, and the environment pushes outgoing
deliveries with :meth:`Connection.send`.

Errors: the codec and these modules raise :class:`AMQPError`; an
:class:`~fluxmq_amqp1.endpoints.EndpointError` ends only its link (detach) or session
(end), anything else closes the connection with the condition and description.
Nothing else escapes :meth:`receive` unless it is a bug, which the adapter isolates.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, Protocol

from fluxmq_amqp1 import delivery, links, sessions
from fluxmq_amqp1.codec.composites import (
    Attach,
    Begin,
    Close,
    Detach,
    Disposition,
    End,
    Error,
    Flow,
    Open,
    SaslInit,
    SaslMechanisms,
    SaslOutcome,
    Transfer,
)
from fluxmq_amqp1.codec.frames import (
    AMQP_HEADER,
    FRAME_SIZE_TOO_SMALL,
    MIN_MAX_FRAME_SIZE,
    SASL_HEADER,
    TYPE_SASL,
    Frame,
    FrameReader,
    Header8,
    encode_frame,
)
from fluxmq_amqp1.codec.types import AMQPError
from fluxmq_amqp1.delivery import TRANSFER_OVERHEAD
from fluxmq_amqp1.endpoints import EndpointError, Link, Session
from fluxmq_amqp1.state import (
    CONNECTION_FORCED,
    DETACH_FORCED,
    ERRANT_LINK,
    HANDLE_IN_USE,
    INTERNAL_ERROR,
    INVALID_FIELD,
    MESSAGE_SIZE,
    NOT_ALLOWED,
    NOT_FOUND,
    NOT_IMPLEMENTED,
    PRECONDITION_FAILED,
    PROTOCOL,
    RESOURCE_LIMIT,
    TRANSFER_LIMIT,
    UNATTACHED_HANDLE,
    UNAUTHORIZED,
    WINDOW_VIOLATION,
    Phase,
)
from fluxmq_core.contracts import AuthRequest, AuthResult
from fluxmq_core.transport.adapter import AuthWait

__all__ = [
    "CONNECTION_FORCED",
    "DETACH_FORCED",
    "ERRANT_LINK",
    "HANDLE_IN_USE",
    "INTERNAL_ERROR",
    "INVALID_FIELD",
    "MESSAGE_SIZE",
    "NOT_ALLOWED",
    "NOT_FOUND",
    "NOT_IMPLEMENTED",
    "PRECONDITION_FAILED",
    "PROTOCOL",
    "RESOURCE_LIMIT",
    "TRANSFER_LIMIT",
    "TRANSFER_OVERHEAD",
    "UNATTACHED_HANDLE",
    "UNAUTHORIZED",
    "WINDOW_VIOLATION",
    "Connection",
    "Env",
    "Phase",
]

_ids = itertools.count(1)


class Env(Protocol):
    """What the connection needs from the broker side (the server implements it)."""

    cfg: Any
    container_id: str

    def authorize(self, conn: Connection, link: Link) -> Any:
        """Check a new link against the ACL: None when allowed, a wait when the
        decision is not cached (answered through ``conn.authorized``); raise
        AMQPError to refuse."""

    def attach(self, conn: Connection, link: Link) -> Any:
        """Bind a new link (raise AMQPError to refuse); returns the terminus to
        answer with (the source of an outgoing link, the target of an incoming one)."""

    def publish(
        self,
        conn: Connection,
        link: Link,
        message: Any,
        payload: bytes,
        settled: bool,
        done: Callable[[Any], None],
        state: Any = None,
    ) -> None:
        """Route one received message; call ``done(outcome)`` (now or later).
        ``state`` is the transfer's delivery state (transactional-state inside a
        transaction)."""

    def settle(self, conn: Connection, link: Link, token: Any, state: Any) -> None:
        """The peer's outcome of an outgoing delivery."""

    def credit(self, conn: Connection, link: Link) -> None:
        """An outgoing link's credit changed."""

    def detach(self, conn: Connection, link: Link) -> None:
        """Unbind a link (detach, end, close or connection loss)."""


class Connection:
    """One AMQP 1.0 connection (see the module docstring)."""

    def __init__(self, env: Env, remote: str = "?", tls_identity: str | None = None) -> None:
        self.env = env
        cfg = env.cfg
        self.cfg = cfg
        self.remote = remote
        self.tls_identity = tls_identity
        self.id = f"amqp1-{next(_ids)}"
        self.container_id = ""
        self.username: str | None = None
        self.out = bytearray()
        #: the accepted disposition last written to ``out`` (buffer, start, frame,
        #: channel, first, last): the next delivery's is merged into its range
        self.last_accepted: tuple[bytearray, int, bytes, int, int, int] | None = None
        self.waiting: Any = None
        self.closing = False
        self.paused = False
        self.flush_pending = False
        self.wakeup: Callable[[Connection], None] = _no_wakeup
        self.phase = Phase.HEADER
        # Before open the spec allows 512-byte frames; SASL responses (tokens) can be
        # larger, so up to 64 KiB (or max_frame_size when smaller) is read.
        self.reader = FrameReader(max(4096, min(cfg.max_frame_size, 65536)))
        self.auth: AuthResult | None = None
        self.sasl = False
        self.opened = False
        self.sessions: dict[int, Session] = {}  # by the peer's channel
        self.local_channels: set[int] = set()
        self.max_frame_size = MIN_MAX_FRAME_SIZE  # what we may send
        self.channel_max = 0
        self.remote_idle_timeout = 0.0  # seconds; we send something at half of it
        self.idle_timeout = float(cfg.idle_timeout)
        self.last_recv = 0.0
        self.last_sent = 0.0
        self.error: Error | None = None
        self._in_receive = False
        #: bytes of multi-frame deliveries waiting for their next frame, all links
        #: together (bounded by [amqp1] max_reassembly)
        self.reassembling = 0
        #: open transactions of this connection, by txn-id (the server's records)
        self.txns: dict[bytes, Any] = {}

    def __repr__(self) -> str:
        return f"<amqp1 {self.container_id or self.id} from {self.remote}>"

    # --- input ----------------------------------------------------------------------------

    def receive(self, data: bytes, now: float = 0.0) -> None:
        """Handle a chunk of bytes from the peer."""
        self.last_recv = now
        if self.phase is Phase.CLOSED:
            return
        self.reader.feed(data)
        self.process()

    def process(self) -> None:
        """Handle every complete frame buffered, until a wait or the close."""
        self._in_receive = True
        try:
            while self.waiting is None and self.phase is not Phase.CLOSED:
                try:
                    frame = self.reader.next_frame()
                    if frame is None:
                        break
                    if isinstance(frame, Header8):
                        self._header(frame.raw)
                    else:
                        self._frame(frame)
                except EndpointError as exc:
                    self._endpoint_error(exc)
                except AMQPError as exc:
                    self.fail(exc)
        finally:
            self._in_receive = False

    def _header(self, raw: bytes) -> None:
        phase = self.phase
        if phase is Phase.HEADER and raw == SASL_HEADER:
            self.sasl = True
            self.out += SASL_HEADER
            mechs = ["PLAIN", "ANONYMOUS"]
            if self.tls_identity:
                mechs.insert(0, "EXTERNAL")
            self._send(0, SaslMechanisms(sasl_server_mechanisms=mechs), TYPE_SASL)
            self.phase = Phase.SASL
        elif phase is Phase.HEADER and raw == AMQP_HEADER:
            # No SASL layer: an anonymous login, which [auth] anonymous decides.
            self.out += AMQP_HEADER
            self.phase = Phase.OPEN_WAIT
            self._login(None, None, None)
        elif phase is Phase.SASL_DONE and raw == AMQP_HEADER:
            self.out += AMQP_HEADER
            self.phase = Phase.OPEN_WAIT
        else:
            # Unsupported protocol or version: answer with ours and close (part 2.2).
            plain = phase is not Phase.HEADER or raw[4:5] == b"\x00"
            self.out += AMQP_HEADER if plain else SASL_HEADER
            self.phase = Phase.CLOSED
            self.closing = True

    def _frame(self, frame: Frame) -> None:
        body = frame.body
        phase = self.phase
        if phase is Phase.SASL:
            if frame.type != TYPE_SASL or not isinstance(body, SaslInit):
                raise AMQPError(NOT_ALLOWED, f"expected sasl-init, got {_name(body)}")
            self._sasl_init(body)
            return
        if frame.type == TYPE_SASL:
            raise AMQPError(NOT_ALLOWED, f"unexpected SASL frame {_name(body)}")
        if body is None:
            return  # an empty frame: the peer's heartbeat
        if phase is Phase.OPEN_WAIT:
            if not isinstance(body, Open):
                raise AMQPError(NOT_ALLOWED, f"expected open, got {_name(body)}")
            self._open(body)
            return
        if phase is not Phase.OPENED:
            return
        handler = _HANDLERS.get(type(body))
        if handler is None:
            raise AMQPError(NOT_ALLOWED, f"unexpected {_name(body)}")
        handler(self, frame.channel, body, frame.payload)

    # --- SASL and login --------------------------------------------------------------------

    def _sasl_init(self, init: SaslInit) -> None:
        mech = str(init.mechanism).upper()
        resp = init.initial_response or b""
        if mech == "PLAIN":
            parts = resp.split(b"\x00")
            if len(parts) != 3:
                self._sasl_fail()
                return
            try:
                user = parts[1].decode("utf-8")
            except UnicodeDecodeError:
                self._sasl_fail()
                return
            self._login(user, parts[2], "PLAIN")
        elif mech == "ANONYMOUS":
            self._login(None, None, "ANONYMOUS")
        elif mech == "EXTERNAL" and self.tls_identity:
            self._login(self.tls_identity, None, "EXTERNAL")
        else:
            self._sasl_fail()

    def _login(self, user: str | None, password: bytes | None, mech: str | None) -> None:
        if mech is not None:
            self.phase = Phase.SASL_AUTH
        self.waiting = AuthWait(
            AuthRequest(
                protocol=PROTOCOL,
                client_id=self.id,
                username=user,
                password=password,
                remote=self.remote,
                tls_identity=self.tls_identity,
            )
        )

    def auth_done(self, result: AuthResult) -> None:
        """The adapter's answer to the AuthWait."""
        self.waiting = None
        self.auth = result
        if result.ok:
            self.username = result.username
        if self.phase is Phase.SASL_AUTH:
            if result.ok:
                self._send(0, SaslOutcome(code=0), TYPE_SASL)
                self.phase = Phase.SASL_DONE
                self.reader.expect_header = True
            else:
                self._sasl_fail()
            return
        # no SASL: refused logins are told so after open (part 5.3.2 leaves it to us)

    def _sasl_fail(self) -> None:
        self._send(0, SaslOutcome(code=1), TYPE_SASL)
        self.phase = Phase.CLOSED
        self.closing = True

    # --- connection -----------------------------------------------------------------------

    def _open(self, o: Open) -> None:
        cfg = self.cfg
        self.container_id = o.container_id
        if o.max_frame_size < MIN_MAX_FRAME_SIZE:
            raise AMQPError(
                INVALID_FIELD, f"max-frame-size {o.max_frame_size} is below {MIN_MAX_FRAME_SIZE}"
            )
        self.max_frame_size = min(o.max_frame_size, 0xFFFFFFFF)
        self.channel_max = min(o.channel_max, cfg.channel_max)
        if o.idle_time_out:
            self.remote_idle_timeout = o.idle_time_out / 1000.0
        self.reader.max_frame_size = cfg.max_frame_size
        self.phase = Phase.OPENED
        self._send(
            0,
            Open(
                container_id=self.env.container_id,
                max_frame_size=cfg.max_frame_size,
                channel_max=cfg.channel_max,
                idle_time_out=int(self.idle_timeout * 1000) if self.idle_timeout else None,
                offered_capabilities=["ANONYMOUS-RELAY"],
                properties={"product": "FluxMQ"},
            ),
        )
        if self.auth is not None and not self.auth.ok:
            self.close(UNAUTHORIZED, self.auth.reason or "authentication failed")
            return
        self.opened = True

    def close(self, condition: str | None = None, description: str = "") -> None:
        """Close the connection (with an error when ``condition`` is given)."""
        if self.phase is Phase.CLOSED:
            return
        error = Error(condition, description or None) if condition else None
        if self.phase is Phase.OPENED:
            self._end_all()
            self._send(0, Close(error=error))
        elif self.phase is Phase.OPEN_WAIT:
            # Part 2.4.5: an open must precede the close.
            self._send(0, Open(container_id=self.env.container_id))
            self._send(0, Close(error=error))
        self.error = error
        self.phase = Phase.CLOSED
        self.closing = True
        self._poke()

    def fail(self, exc: AMQPError) -> None:
        """A connection error: close with its condition."""
        if self.phase in (Phase.HEADER, Phase.SASL, Phase.SASL_AUTH, Phase.SASL_DONE):
            self.phase = Phase.CLOSED
            self.closing = True
            return
        self.close(exc.condition, exc.description)

    def lost(self) -> None:
        """The transport is gone: unbind every link."""
        self._end_all()
        self.phase = Phase.CLOSED

    def _end_all(self) -> None:
        for session in list(self.sessions.values()):
            self._drop_session(session)

    def _on_close(self, channel: int, c: Close, payload: bytes) -> None:
        self._end_all()
        self._send(0, Close())
        self.phase = Phase.CLOSED
        self.closing = True

    def tick(self, now: float) -> bool:
        """Timers: send an empty frame when we were silent for half the peer's idle
        time-out; False when the peer was silent past ours (then we close)."""
        if self.phase is not Phase.OPENED:
            return True
        if self.idle_timeout and now - self.last_recv > self.idle_timeout:
            self.close(RESOURCE_LIMIT, "local-idle-timeout expired")
            return False
        if self.remote_idle_timeout and now - self.last_sent >= self.remote_idle_timeout / 2:
            self.out += b"\x00\x00\x00\x08\x02\x00\x00\x00"
            self.last_sent = now
        return True

    # --- sessions, links and deliveries: the functions of their modules -------------------

    _on_begin = sessions.on_begin
    _session = sessions.get_session
    _on_end = sessions.on_end
    _drop_session = sessions.drop_session
    end_session = sessions.end_session
    _endpoint_error = sessions.endpoint_error
    _session_flow = sessions.session_flow
    _link_flow = sessions.link_flow
    _on_flow = sessions.on_flow

    _on_attach = links.on_attach
    authorized = links.authorized
    _bind = links.bind
    _refuse = links.refuse
    _link = links.get_link
    _on_detach = links.on_detach
    detach = links.detach
    _unbind = links.unbind

    _on_transfer = delivery.on_transfer
    _refill = delivery.refill
    _drop_partial = delivery.drop_partial
    _delivered = delivery.delivered
    _disposition = delivery.disposition
    send = delivery.send
    finish_drain = delivery.finish_drain
    pump = delivery.pump
    _on_disposition = delivery.on_disposition

    # --- output ---------------------------------------------------------------------------

    def _send(self, channel: int, perf: Any, type: int = 0) -> None:
        if self.phase is Phase.CLOSED:
            return  # nothing follows a close
        frame = encode_frame(channel, perf, type=type)
        if len(frame) > self.max_frame_size and self.opened and not isinstance(perf, Close):
            # A performative (an attach echoing a large terminus...) that does not fit
            # the peer's max-frame-size cannot be sent at all (part 2.8.15).
            self.close(
                FRAME_SIZE_TOO_SMALL,
                f"a {_name(perf)} of {len(frame)} bytes does not fit the peer's "
                f"max-frame-size {self.max_frame_size}",
            )
            return
        self.out += frame

    def _poke(self) -> None:
        if not self._in_receive and self.out:
            self.wakeup(self)


def _name(body: Any) -> str:
    return type(body).__name__.lower() if body is not None else "an empty frame"


def _no_wakeup(conn: Connection) -> None:
    return None


_HANDLERS: dict[type, Callable[..., None]] = {
    Begin: Connection._on_begin,
    End: Connection._on_end,
    Close: Connection._on_close,
    Attach: Connection._on_attach,
    Detach: Connection._on_detach,
    Flow: Connection._on_flow,
    Transfer: Connection._on_transfer,
    Disposition: Connection._on_disposition,
}
