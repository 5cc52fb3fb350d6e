"""The AMQP 1.0 connection state machine (sans-IO: no asyncio, no socket, no clock).

Theory of operation. Bytes arrive through :meth:`Connection.receive`; every frame
they complete is handled in order and answers are appended to ``out``, which the
adapter writes once per chunk. The connection runs through these phases::

    HEADER --SASL header--> SASL --sasl-init--> (AuthWait) --ok--> SASL_DONE
       |                                                            |
       +--AMQP header (no SASL: anonymous login, AuthWait)---+  AMQP header
                                                             v      v
                                                           OPEN_WAIT --open--> OPENED
    OPENED --close (either side)--> CLOSED

Within OPENED, sessions (begin/end) hold links (attach/detach); see
:mod:`fluxmq_amqp1.links` for the flow-control arithmetic. What a link is bound to
(a topic, a queue) is the environment's business (``env``, the server): the
connection calls ``env.attach(link)``, ``env.publish(...)``, ``env.settle(...)``,
``env.credit(link)`` and ``env.detach(link)``, and the environment pushes outgoing
deliveries with :meth:`Connection.send`.

Errors: the codec and this module raise :class:`AMQPError`; an
:class:`~fluxmq_amqp1.links.EndpointError` ends only its link (detach) or session
(end), anything else closes the connection with the condition and description.
Nothing else escapes :meth:`receive` unless it is a bug, which the adapter isolates.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable
from typing import Any, Protocol

from fluxmq_amqp1.codec.composites import (
    Accepted,
    Attach,
    Begin,
    Close,
    Detach,
    Disposition,
    End,
    Error,
    Flow,
    Open,
    Rejected,
    Released,
    SaslInit,
    SaslMechanisms,
    SaslOutcome,
    Transfer,
)
from fluxmq_amqp1.codec.frames import (
    AMQP_HEADER,
    MIN_MAX_FRAME_SIZE,
    SASL_HEADER,
    TYPE_SASL,
    Frame,
    FrameReader,
    Header8,
    accepted_frame,
    encode_frame,
    transfer_frame,
)
from fluxmq_amqp1.codec.message import decode_message
from fluxmq_amqp1.codec.types import DECODE_ERROR, AMQPError
from fluxmq_amqp1.links import EndpointError, Link, Partial, Session
from fluxmq_core.contracts import AuthRequest, AuthResult
from fluxmq_core.transport.adapter import AuthWait

__all__ = ["Connection", "Env", "Phase"]

PROTOCOL = "amqp1"

# Error conditions (part 2.8.15-2.8.18).
INTERNAL_ERROR = "amqp:internal-error"
NOT_FOUND = "amqp:not-found"
UNAUTHORIZED = "amqp:unauthorized-access"
RESOURCE_LIMIT = "amqp:resource-limit-exceeded"
NOT_ALLOWED = "amqp:not-allowed"
INVALID_FIELD = "amqp:invalid-field"
NOT_IMPLEMENTED = "amqp:not-implemented"
PRECONDITION_FAILED = "amqp:precondition-failed"
CONNECTION_FORCED = "amqp:connection:forced"
WINDOW_VIOLATION = "amqp:session:window-violation"
ERRANT_LINK = "amqp:session:errant-link"
HANDLE_IN_USE = "amqp:session:handle-in-use"
UNATTACHED_HANDLE = "amqp:session:unattached-handle"
TRANSFER_LIMIT = "amqp:link:transfer-limit-exceeded"
MESSAGE_SIZE = "amqp:link:message-size-exceeded"
DETACH_FORCED = "amqp:link:detach-forced"

_ids = itertools.count(1)

#: Bytes of frame header plus transfer performative reserved when splitting a
#: payload into frames (a transfer with every first-frame field is under 64).
TRANSFER_OVERHEAD = 96


class Phase(enum.Enum):
    HEADER = "header"
    SASL = "sasl"
    SASL_AUTH = "sasl-auth"
    SASL_DONE = "sasl-done"
    OPEN_WAIT = "open-wait"
    OPENED = "opened"
    CLOSED = "closed"


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

    # --- sessions -------------------------------------------------------------------------

    def _on_begin(self, channel: int, b: Begin, payload: bytes) -> None:
        if b.remote_channel is not None:
            raise AMQPError(NOT_ALLOWED, "the broker begins no sessions of its own")
        if channel in self.sessions:
            raise AMQPError(NOT_ALLOWED, f"channel {channel} already has a session")
        if channel > self.channel_max:
            raise AMQPError(
                NOT_ALLOWED, f"channel {channel} exceeds channel-max {self.channel_max}"
            )
        local = 0
        while local in self.local_channels:
            local += 1
        self.local_channels.add(local)
        cfg = self.cfg
        session = Session(local, channel, b, cfg.session_window, cfg.handle_max)
        self.sessions[channel] = session
        self._send(
            local,
            Begin(
                remote_channel=channel,
                next_outgoing_id=0,
                incoming_window=session.incoming_window,
                outgoing_window=0x7FFFFFFF,
                handle_max=session.handle_max,
            ),
        )

    def _session(self, channel: int) -> Session:
        s = self.sessions.get(channel)
        if s is None:
            raise AMQPError(NOT_ALLOWED, f"no session on channel {channel}")
        return s

    def _on_end(self, channel: int, e: End, payload: bytes) -> None:
        s = self._session(channel)
        self._drop_session(s)
        self._send(s.channel, End())

    def _drop_session(self, s: Session) -> None:
        for link in list(s.links.values()):
            self._unbind(s, link)
        s.links.clear()
        s.ended = True
        self.sessions.pop(s.remote_channel, None)
        self.local_channels.discard(s.channel)

    def end_session(self, s: Session, condition: str, description: str) -> None:
        if s.ended:
            return
        self._drop_session(s)
        self._send(s.channel, End(error=Error(condition, description or None)))

    def _endpoint_error(self, exc: EndpointError) -> None:
        ep = exc.endpoint
        if isinstance(ep, Link):
            self.detach(ep, exc.condition, exc.description)
        else:
            self.end_session(ep, exc.condition, exc.description)

    # --- links ----------------------------------------------------------------------------

    def _on_attach(self, channel: int, a: Attach, payload: bytes) -> None:
        s = self._session(channel)
        if a.handle > s.handle_max:
            raise EndpointError(
                NOT_ALLOWED, f"handle {a.handle} exceeds handle-max {s.handle_max}", s
            )
        if a.handle in s.links:
            raise EndpointError(HANDLE_IN_USE, f"handle {a.handle} is in use", s)
        link = Link(s, a, s.new_handle())
        s.links[a.handle] = link
        try:
            wait = self.env.authorize(self, link)
        except AMQPError as exc:
            self._refuse(link, exc)
            return
        if wait is not None:
            self.waiting = wait  # an ACL decision that is not cached: ask, then go on
            return
        self._bind(link)

    def authorized(self, link: Link, ok: bool, reason: str = "") -> None:
        """The adapter's answer to the environment's authorization wait."""
        self.waiting = None
        s = link.session
        if s.ended or s.links.get(link.handle) is not link or self.phase is not Phase.OPENED:
            return
        if not ok:
            self._refuse(link, AMQPError(UNAUTHORIZED, reason or "not authorized"))
            return
        self._bind(link)

    def _bind(self, link: Link) -> None:
        s = link.session
        a = link.attach
        try:
            terminus = self.env.attach(self, link)
        except AMQPError as exc:
            self._refuse(link, exc)
            return
        cfg = self.cfg
        if link.outgoing:
            reply = Attach(
                name=link.name,
                handle=link.local_handle,
                role=False,
                snd_settle_mode=link.snd_settle_mode,
                rcv_settle_mode=0,
                source=terminus,
                target=a.target,
                initial_delivery_count=0,
                max_message_size=cfg.max_message_size or None,
            )
            self._send(s.channel, reply)
        else:
            if link.snd_settle_mode not in (0, 1, 2):
                link.snd_settle_mode = 2
            reply = Attach(
                name=link.name,
                handle=link.local_handle,
                role=True,
                snd_settle_mode=link.snd_settle_mode,
                rcv_settle_mode=0,
                source=a.source,
                target=terminus,
                max_message_size=cfg.max_message_size or None,
            )
            self._send(s.channel, reply)
            link.delivery_count = a.initial_delivery_count or 0
            link.credit = cfg.link_credit
            self._link_flow(link)
        self._poke()

    def _refuse(self, link: Link, exc: AMQPError) -> None:
        """Part 2.6.3: answer the attach with a null terminus, then detach with the
        reason; the peer's answering detach is swallowed."""
        s = link.session
        a = link.attach
        self._send(
            s.channel,
            Attach(
                name=link.name,
                handle=link.local_handle,
                role=not link.outgoing,
                source=None if link.outgoing else a.source,
                target=a.target if link.outgoing else None,
                initial_delivery_count=0 if link.outgoing else None,
            ),
        )
        link.refused = True
        self._send(
            s.channel,
            Detach(
                handle=link.local_handle,
                closed=True,
                error=Error(exc.condition, exc.description or None),
            ),
        )

    def _link(self, s: Session, handle: int) -> Link:
        link = s.links.get(handle)
        if link is None:
            raise EndpointError(UNATTACHED_HANDLE, f"no link with handle {handle}", s)
        return link

    def _on_detach(self, channel: int, d: Detach, payload: bytes) -> None:
        s = self._session(channel)
        link = self._link(s, d.handle)
        del s.links[d.handle]
        s.local_handles.discard(link.local_handle)
        if link.refused or link.detached:
            return  # the answer to our detach
        self._unbind(s, link)
        self._send(s.channel, Detach(handle=link.local_handle, closed=d.closed))

    def detach(self, link: Link, condition: str | None = None, description: str = "") -> None:
        """Detach (close) a link from our side, with an error when given."""
        s = link.session
        if link.detached or link.refused or s.ended:
            return
        self._unbind(s, link)
        link.detached = True
        error = Error(condition, description or None) if condition else None
        self._send(s.channel, Detach(handle=link.local_handle, closed=True, error=error))
        self._poke()

    def _unbind(self, s: Session, link: Link) -> None:
        if link.node is not None or link.outgoing:
            # Deliveries the peer never settled go back (released: not a failure).
            for did, (lk, token) in list(s.unsettled.items()):
                if lk is link:
                    del s.unsettled[did]
                    self.env.settle(self, link, token, Released())
            link.held.clear()
            s.blocked.pop(id(link), None)
        if link.node is not None:
            self.env.detach(self, link)
            link.node = None

    # --- flow -----------------------------------------------------------------------------

    def _session_flow(self, s: Session, link: Link | None = None) -> Flow:
        f = Flow(
            next_incoming_id=s.next_incoming_id,
            incoming_window=s.incoming_window,
            next_outgoing_id=s.next_outgoing_id,
            outgoing_window=0x7FFFFFFF,
        )
        if link is not None:
            f.handle = link.local_handle
            f.delivery_count = link.delivery_count
            f.link_credit = link.credit
            if link.outgoing:
                f.available = len(link.held)
                f.drain = link.drain
        return f

    def _link_flow(self, link: Link) -> None:
        self._send(link.session.channel, self._session_flow(link.session, link))

    def _on_flow(self, channel: int, f: Flow, payload: bytes) -> None:
        s = self._session(channel)
        base = f.next_incoming_id if f.next_incoming_id is not None else 0
        s.remote_incoming_window = base + f.incoming_window - s.next_outgoing_id
        s.remote_outgoing_window = f.outgoing_window
        if f.handle is None:
            if f.echo:
                self._send(s.channel, self._session_flow(s))
        else:
            link = self._link(s, f.handle)
            if link.refused or link.detached:
                return
            if link.outgoing:
                rcv_count = f.delivery_count if f.delivery_count is not None else 0
                credit = rcv_count + (f.link_credit or 0) - link.delivery_count
                link.credit = max(0, credit)
                link.drain = f.drain
                # the node first: a queue link defers a drain until its dispatcher ran
                self.env.credit(self, link)
                self.pump(link)
                if f.echo or (f.drain and credit <= 0 and not link.held):
                    # a drain with no credit to spend is still answered: receivers
                    # (rhea, Proton) wait for that flow
                    self._link_flow(link)
            else:
                if f.delivery_count is not None:
                    # The sender's count is authoritative (part 2.6.7).
                    spent = f.delivery_count - link.delivery_count
                    link.delivery_count = f.delivery_count
                    link.credit = max(0, link.credit - spent)
                if f.echo or link.credit < self.cfg.link_credit // 2:
                    link.credit = self.cfg.link_credit
                    self._link_flow(link)
        for blocked in list(s.blocked.values()):
            self.pump(blocked)

    # --- receiving deliveries ------------------------------------------------------------

    def _on_transfer(self, channel: int, t: Transfer, payload: bytes) -> None:
        s = self._session(channel)
        if s.incoming_window <= 0:
            raise EndpointError(WINDOW_VIOLATION, "transfer beyond the incoming window", s)
        s.next_incoming_id = (s.next_incoming_id + 1) & 0xFFFFFFFF
        s.incoming_window -= 1
        if s.incoming_window <= s.window // 2:
            s.incoming_window = s.window
            self._send(s.channel, self._session_flow(s))
        link = self._link(s, t.handle)
        if link.refused or link.detached:
            return
        if link.outgoing:
            raise EndpointError(NOT_ALLOWED, "transfer on a link the broker sends on", s)
        p = link.partial
        if p is None:
            if t.delivery_id is None or t.delivery_tag is None:
                raise EndpointError(
                    INVALID_FIELD, "the first transfer of a delivery needs an id and a tag", link
                )
            if link.credit <= 0:
                raise EndpointError(TRANSFER_LIMIT, "transfer without link credit", link)
            link.credit -= 1
            link.delivery_count = (link.delivery_count + 1) & 0xFFFFFFFF
            p = link.partial = Partial(t.delivery_id, t.delivery_tag, bool(t.settled), t.state)
        elif t.delivery_id is not None and t.delivery_id != p.delivery_id:
            raise EndpointError(
                INVALID_FIELD, "a continuation transfer changed the delivery id", link
            )
        if t.aborted:
            link.partial = None  # aborted deliveries are discarded, and settled
            self._refill(link)
            return
        if t.settled:
            p.settled = True
        if payload:
            p.chunks.append(payload)
            p.size += len(payload)
            limit = self.cfg.max_message_size
            if limit and p.size > limit:
                link.partial = None
                raise EndpointError(
                    MESSAGE_SIZE, f"message larger than max-message-size {limit}", link
                )
        if t.more:
            return
        link.partial = None
        self._delivered(link, p)
        self._refill(link)

    def _refill(self, link: Link) -> None:
        if link.credit <= self.cfg.link_credit // 2 and not link.detached:
            link.credit = self.cfg.link_credit
            self._link_flow(link)

    def _delivered(self, link: Link, p: Partial) -> None:
        raw = p.chunks[0] if len(p.chunks) == 1 else b"".join(p.chunks)
        s = link.session
        did = p.delivery_id
        settled = p.settled
        try:
            message = decode_message(raw)
        except AMQPError as exc:
            if not settled:
                self._disposition(s, did, Rejected(error=Error(DECODE_ERROR, exc.description)))
            return

        def done(state: Any) -> None:
            if settled or s.ended or self.phase is Phase.CLOSED:
                return
            self._disposition(s, did, state)
            self._poke()

        self.env.publish(self, link, message, raw, settled, done, p.state)

    def _disposition(self, s: Session, did: int, state: Any) -> None:
        if type(state) is Accepted:
            self.out += accepted_frame(s.channel, did)  # the common case, encoded directly
            return
        self._send(s.channel, Disposition(role=True, first=did, settled=True, state=state))

    # --- sending deliveries --------------------------------------------------------------

    def send(self, link: Link, payload: bytes, token: Any = None) -> bool:
        """Queue one outgoing delivery on ``link`` and send what credit and window
        allow. False when the link is gone (the caller keeps the message)."""
        if link.detached or link.refused or link.session.ended or self.phase is not Phase.OPENED:
            return False
        link.held.append((payload, token))
        self.pump(link)
        self._poke()
        return True

    def finish_drain(self, link: Link) -> None:
        """Answer a drain the node deferred: spend the credit left and say so."""
        link.drain_wait = False
        if link.detached or link.refused or link.session.ended or self.phase is not Phase.OPENED:
            return
        self.pump(link)
        self._poke()

    def pump(self, link: Link) -> None:
        """Send held deliveries while the link has credit and the session window."""
        s = link.session
        held = link.held
        max_payload = max(64, self.max_frame_size - TRANSFER_OVERHEAD)
        while held and link.credit > 0:
            payload, token = held[0]
            frames = max(1, -(-len(payload) // max_payload))
            if s.remote_incoming_window < frames:
                s.blocked[id(link)] = link
                break
            held.popleft()
            did = s.next_delivery_id
            s.next_delivery_id = (did + 1) & 0xFFFFFFFF
            settled = link.presettled
            tag = did.to_bytes(4, "big")
            for i in range(frames):
                chunk = payload[i * max_payload : (i + 1) * max_payload]
                more = i < frames - 1
                if i == 0:
                    self.out += transfer_frame(
                        s.channel, link.local_handle, did, tag, settled, more, chunk
                    )
                else:
                    t = Transfer(handle=link.local_handle, more=more)
                    self.out += encode_frame(s.channel, t, chunk)
                s.next_outgoing_id = (s.next_outgoing_id + 1) & 0xFFFFFFFF
                s.remote_incoming_window -= 1
            link.credit -= 1
            link.delivery_count = (link.delivery_count + 1) & 0xFFFFFFFF
            if not settled:
                s.unsettled[did] = (link, token)
        else:
            s.blocked.pop(id(link), None)
        if link.drain and link.credit > 0 and not held and not link.drain_wait:
            # Drain: spend the rest of the credit and tell the receiver (part 2.6.7).
            link.delivery_count = (link.delivery_count + link.credit) & 0xFFFFFFFF
            link.credit = 0
            self._link_flow(link)

    def _on_disposition(self, channel: int, d: Disposition, payload: bytes) -> None:
        s = self._session(channel)
        if not d.role:
            return  # the peer settles deliveries we received: we settled them already
        first = d.first
        last = d.last if d.last is not None else first
        if last < first:
            raise EndpointError(INVALID_FIELD, "disposition range ends before it starts", s)
        state = d.state
        unsettled = s.unsettled
        if last - first + 1 > len(unsettled):
            ids = [i for i in unsettled if first <= i <= last]
        else:
            ids = [i for i in range(first, last + 1) if i in unsettled]
        settled_any = False
        for did in ids:
            if state is None and not d.settled:
                continue
            link, token = unsettled.pop(did)
            self.env.settle(self, link, token, state)
            settled_any = True
            self.env.credit(self, link)
        if settled_any and not d.settled:
            self._send(
                s.channel,
                Disposition(role=False, first=first, last=last, settled=True, state=state),
            )

    # --- output ---------------------------------------------------------------------------

    def _send(self, channel: int, perf: Any, type: int = 0) -> None:
        self.out += encode_frame(channel, perf, type=type)

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
