"""The AMQP 0.9.1 connection state machine (server side), sans-IO.

Theory of operation: bytes go in through :meth:`Connection.receive`; bytes to send
collect in ``out``; when the connection needs something only the adapter can do
(await the auth service, wait for a queue delivery for ``basic.get``, wait for a
transaction's appends to be durable) it sets ``waiting`` to a typed wait
(``waits.py``) and stops reading frames until the adapter calls back
(``auth_done``, ``secret_done``, ``resume``). ``closing`` tells the
adapter to close the transport once ``out`` is written. Time comes in as numbers
(``now``) from the adapter; this module imports no asyncio and reads no clock.

Negotiation (the phases and what each one accepts are the table :data:`EXPECT`)::

    HEADER --protocol header--> START_OK --start-ok--> (auth) --> TUNE_OK
        --tune-ok--> OPEN --open /--> OPENED --close--> CLOSED
    any phase --error--> CLOSING --close-ok | timeout--> CLOSED

Errors: a connection exception (501, 502, 503, 504, 505, 530...) sends
``connection.close`` and ignores every frame but ``close``/``close-ok``; a channel
exception (403, 404, 405, 406) closes only that channel (``channel.py``).
Heartbeats: :meth:`tick` sends one when nothing was sent for half the interval and
reports a dead peer after two silent intervals.
"""

from __future__ import annotations

import enum
import itertools
import logging
import struct
from typing import TYPE_CHECKING, Any

from pamqp import commands, decode

from fluxmq_amqp091.channel import Channel
from fluxmq_amqp091.codec import (
    ACCESS_REFUSED,
    CHANNEL_ERROR,
    COMMAND_INVALID,
    FRAME_MIN_SIZE,
    INTERNAL_ERROR,
    NOT_ALLOWED,
    PROTOCOL_HEADER,
    UNEXPECTED_FRAME,
    AMQPError,
    FrameReader,
    Header,
    Heartbeat,
    Method,
    ProtocolHeader,
    ProtocolHeaderError,
    encode_heartbeat,
    encode_method,
)
from fluxmq_amqp091.props import PROTOCOL
from fluxmq_amqp091.waits import AuthWait, SecretWait
from fluxmq_core.auth import AuthRequest, AuthResult
from fluxmq_core.transport.adapter import Wait

if TYPE_CHECKING:
    from fluxmq_amqp091.config import AMQP091Config

__all__ = ["Connection", "Phase"]

_ids = itertools.count(1)
log = logging.getLogger("fluxmq.amqp091")


class Phase(enum.Enum):
    HEADER = "header"
    START_OK = "start-ok"
    AUTH = "auth"
    TUNE_OK = "tune-ok"
    OPEN = "open"
    OPENED = "opened"
    CLOSING = "closing"
    CLOSED = "closed"


#: What each negotiation phase accepts on channel 0 (data: a script can draw it).
EXPECT: dict[Phase, tuple[Any, ...]] = {
    Phase.START_OK: (commands.Connection.StartOk,),
    Phase.TUNE_OK: (commands.Connection.TuneOk,),
    Phase.OPEN: (commands.Connection.Open,),
}

CAPABILITIES = {
    "publisher_confirms": True,
    "exchange_exchange_bindings": True,
    "basic.nack": True,
    "consumer_cancel_notify": True,
    "connection.blocked": True,
    "consumer_priorities": False,
    "authentication_failure_close": True,
    "per_consumer_qos": True,
    "direct_reply_to": False,
}


def parse_sasl(mechanism: str, response: Any) -> tuple[str | None, bytes | None]:
    """(username, password) from a PLAIN or AMQPLAIN response; 403 otherwise."""
    raw = response.encode("utf-8") if isinstance(response, str) else bytes(response or b"")
    if mechanism == "PLAIN":
        parts = raw.split(b"\x00")
        if len(parts) != 3:
            raise AMQPError(ACCESS_REFUSED, "malformed PLAIN response", 10, 11)
        return parts[1].decode("utf-8", "replace"), parts[2]
    if mechanism == "AMQPLAIN":
        try:
            _, table = decode.field_table(struct.pack(">I", len(raw)) + raw)
        except Exception:
            raise AMQPError(ACCESS_REFUSED, "malformed AMQPLAIN response", 10, 11) from None
        login, password = table.get("LOGIN"), table.get("PASSWORD")
        user = login.decode() if isinstance(login, bytes) else login
        pw = password if isinstance(password, bytes) else str(password or "").encode()
        return (str(user) if user is not None else None), pw
    raise AMQPError(ACCESS_REFUSED, f"unsupported authentication mechanism {mechanism!r}", 10, 11)


class Connection:
    """One client connection. ``env`` is the per-broker service object (server.py)."""

    def __init__(self, env: Any, remote: str, tls_identity: str | None = None) -> None:
        self.env = env
        cfg: AMQP091Config = env.cfg
        self.cfg = cfg
        self.id = f"amqp091-{next(_ids)}"
        self.remote = remote
        self.tls_identity = tls_identity
        self.reader = FrameReader(frame_max=max(cfg.frame_max, FRAME_MIN_SIZE))
        self.out = bytearray()
        self.phase = Phase.HEADER
        self.channels: dict[int, Channel] = {}
        self.waiting: Wait | None = None
        self.closing = False
        self.frame_max = cfg.frame_max
        self.channel_max = cfg.channel_max
        self.heartbeat = cfg.heartbeat
        self.last_recv = 0.0
        self.last_sent = 0.0
        self.username: str | None = None
        self.client_properties: dict[str, Any] = {}
        self.capabilities: dict[str, Any] = {}
        self.paused = False  # transport backpressure
        self.blocked = False
        self.published = False
        self.opened = False
        # [rate_limit] publish / subscribe (basic.consume, queue.bind) per connection;
        # None when unlimited (one check per publish).
        limits = getattr(getattr(env, "context", None), "limits", None)
        self.publish_bucket = limits.publish_bucket() if limits is not None else None
        self.subscribe_bucket = limits.subscribe_bucket() if limits is not None else None
        self.error: AMQPError | None = None
        #: set by the adapter: called when out gained bytes outside ``receive``
        self.wakeup: Any = lambda conn: None
        self.flush_pending = False  # the adapter's flag (reset by each flush)
        #: channels holding publisher confirms for the next write (Channel.acks_held)
        self.acks_held: list[Channel] = []

    def __repr__(self) -> str:
        return f"Connection({self.id}, {self.remote}, {self.phase.value})"

    # --- input ---------------------------------------------------------------------

    def receive(self, data: bytes, now: float = 0.0) -> None:
        self.last_recv = now
        if self.phase is Phase.CLOSED:
            return
        self.reader.feed(data)
        self.process()

    def process(self) -> None:
        """Handle every whole frame buffered, unless waiting on the adapter."""
        reader = self.reader
        while (
            self.waiting is None
            and self.phase is not Phase.CLOSED
            and not (self.closing and self.phase is not Phase.CLOSING)
        ):
            try:
                frame = reader.next_frame()
            except ProtocolHeaderError:
                self.out += PROTOCOL_HEADER
                self.closing = True
                self.phase = Phase.CLOSED
                return
            except AMQPError as exc:
                # the byte stream cannot be trusted any more: stop reading it
                self.reader = FrameReader(frame_max=1)
                self.reader.expect_header = False
                self.fail(exc)
                self.closing = True
                return
            if frame is None:
                return
            try:
                self._frame(frame)
            except ProtocolHeaderError:
                self.out += PROTOCOL_HEADER
                self.closing = True
                self.phase = Phase.CLOSED
                return
            except AMQPError as exc:
                self.fail(exc)
                if self.phase is Phase.CLOSED:
                    return
            except Exception as exc:  # a bug: close this connection only, say why
                log.exception("%r: internal error", self)
                self.fail(AMQPError(INTERNAL_ERROR, f"internal error: {type(exc).__name__}"))
                if self.phase is Phase.CLOSED:
                    return

    def _frame(self, frame: Any) -> None:
        if type(frame) is Heartbeat:
            return
        ch = frame.channel if type(frame) is not ProtocolHeader else 0
        if self.phase is Phase.CLOSING:
            if type(frame) is Method and ch == 0:
                m = frame.method
                if isinstance(m, commands.Connection.CloseOk):
                    self._closed()
                elif isinstance(m, commands.Connection.Close):
                    self._send(0, commands.Connection.CloseOk())
                    self._closed()
            return
        if type(frame) is ProtocolHeader:
            self._start()
            return
        if ch == 0 or self.phase is not Phase.OPENED:
            if type(frame) is not Method:
                raise AMQPError(
                    UNEXPECTED_FRAME if ch == 0 else CHANNEL_ERROR,
                    f"unexpected {type(frame).__name__.lower()} frame on channel {ch}",
                )
            if ch != 0:
                raise AMQPError(UNEXPECTED_FRAME, "channel frame before the connection is open")
            self._connection_method(frame.method)
            return
        channel = self.channels.get(ch)
        if channel is None:
            if type(frame) is Method and isinstance(frame.method, commands.Channel.Open):
                if self.channel_max and ch > self.channel_max:
                    raise AMQPError(
                        NOT_ALLOWED, f"channel {ch} above channel-max {self.channel_max}", 20, 10
                    )
                channel = self.channels[ch] = Channel(self, ch)
                self._send(ch, commands.Channel.OpenOk())
                return
            if type(frame) is Method and isinstance(frame.method, commands.Channel.CloseOk):
                return
            raise AMQPError(
                CHANNEL_ERROR, f"expected channel.open on channel {ch}", *_ids_of(frame)
            )
        if type(frame) is Method:
            channel.method(frame.method)
        elif type(frame) is Header:
            channel.header(frame)
        else:
            channel.body(frame)

    # --- negotiation ---------------------------------------------------------------

    def _start(self) -> None:
        env = self.env
        self._send(
            0,
            commands.Connection.Start(
                version_major=0,
                version_minor=9,
                server_properties={
                    "product": "FluxMQ",
                    "version": env.version,
                    "platform": "Python",
                    "cluster_name": env.node_id,
                    "copyright": "FluxMQ authors",
                    "information": "Licensed under the Apache License 2.0",
                    "capabilities": dict(CAPABILITIES),
                },
                mechanisms="PLAIN AMQPLAIN",
                locales="en_US",
            ),
        )
        self.phase = Phase.START_OK

    def _connection_method(self, m: Any) -> None:
        phase = self.phase
        if isinstance(m, commands.Connection.Close):
            self._send(0, commands.Connection.CloseOk())
            self._closed()
            return
        expected = EXPECT.get(phase)
        if phase is Phase.OPENED:
            if isinstance(m, commands.Connection.CloseOk):
                self._closed()
                return
            if isinstance(m, (commands.Connection.Blocked, commands.Connection.Unblocked)):
                return
            if isinstance(m, commands.Connection.UpdateSecret):
                self._update_secret(m)
                return
            raise AMQPError(  # RabbitMQ: 504 for any other method on channel 0
                CHANNEL_ERROR,
                f"unexpected method {m.name} on channel 0",
                *_method_ids(m),
            )
        if expected is None or not any(isinstance(m, t) for t in expected):
            raise AMQPError(
                UNEXPECTED_FRAME if _is_connection(m) else COMMAND_INVALID,
                f"expected {expected[0].name if expected else 'nothing'}, got {m.name}",
                *_method_ids(m),
            )
        if phase is Phase.START_OK:
            self.client_properties = dict(m.client_properties or {})
            caps = self.client_properties.get("capabilities")
            self.capabilities = dict(caps) if isinstance(caps, dict) else {}
            user, password = parse_sasl(m.mechanism, m.response)
            self.phase = Phase.AUTH
            self.waiting = AuthWait(
                AuthRequest(
                    protocol=PROTOCOL,
                    client_id=self.id,
                    username=user,
                    password=password,
                    remote=self.remote,
                    tls_identity=self.tls_identity,
                    # What client libraries send when given no credentials: RabbitMQ's
                    # guest, which [auth] anonymous then decides ("local" by default).
                    default_login=user == "guest" and password == b"guest",
                )
            )
        elif phase is Phase.TUNE_OK:
            cm, fm = int(m.channel_max), int(m.frame_max)
            if fm and fm < FRAME_MIN_SIZE:
                raise AMQPError(
                    NOT_ALLOWED, f"frame-max {fm} below the minimum {FRAME_MIN_SIZE}", 10, 31
                )
            if (self.cfg.frame_max and fm > self.cfg.frame_max) or (
                self.cfg.channel_max and cm > self.cfg.channel_max
            ):
                raise AMQPError(
                    NOT_ALLOWED, "tune-ok asks for more than the server offered", 10, 31
                )
            self.frame_max = fm or self.cfg.frame_max
            self.channel_max = cm or self.cfg.channel_max
            self.heartbeat = int(m.heartbeat)
            self.reader.frame_max = self.frame_max
            self.phase = Phase.OPEN
        elif phase is Phase.OPEN:
            if m.virtual_host not in ("/", ""):
                raise AMQPError(NOT_ALLOWED, f"vhost {m.virtual_host} not found", 10, 40)
            self._send(0, commands.Connection.OpenOk())
            self.phase = Phase.OPENED
            self.env.connection_opened(self)

    def auth_done(self, result: AuthResult) -> None:
        """The adapter's answer to an ``AuthWait``."""
        self.waiting = None
        if not result.ok:
            self.fail(
                AMQPError(
                    ACCESS_REFUSED,
                    "Login was refused using authentication "
                    "mechanism PLAIN. For details see the broker "
                    "logfile.",
                )
            )
            self.closing = True
            return
        self.username = result.username
        fm = self.cfg.frame_max
        self._send(
            0,
            commands.Connection.Tune(
                channel_max=self.cfg.channel_max, frame_max=fm, heartbeat=self.cfg.heartbeat
            ),
        )
        self.phase = Phase.TUNE_OK

    def _update_secret(self, m: Any) -> None:
        """``connection.update-secret`` (RabbitMQ 3.8+, OAuth 2 token refresh): the
        connection's user logs in again with the new secret."""
        secret = m.new_secret
        if isinstance(secret, str):
            secret = secret.encode("utf-8")
        self.waiting = SecretWait(
            AuthRequest(
                protocol=PROTOCOL,
                client_id=self.id,
                username=self.username,
                password=bytes(secret or b""),
                remote=self.remote,
                tls_identity=self.tls_identity,
            )
        )

    def secret_done(self, result: AuthResult) -> None:
        """The adapter's answer to a ``SecretWait``: update-secret-ok, or the
        connection closes with 530 NOT_ALLOWED (RabbitMQ's answer)."""
        self.waiting = None
        if self.phase is not Phase.OPENED:
            return
        if not result.ok or (result.username or self.username) != self.username:
            self.fail(AMQPError(NOT_ALLOWED, "New secret was refused by one of the backends"))
            return
        self._send(0, commands.Connection.UpdateSecretOk())
        self.process()

    def resume(self) -> None:
        """The adapter finished a wait that a channel asked for; read on."""
        self.waiting = None
        self.process()

    # --- output ----------------------------------------------------------------------

    def _send(self, channel: int, method: Any) -> None:
        self.out += encode_method(channel, method)

    def send(self, channel: int, method: Any) -> None:
        self.out += encode_method(channel, method)

    def fail(self, exc: AMQPError) -> None:
        """A connection exception: connection.close and stop reading."""
        if self.phase in (Phase.CLOSING, Phase.CLOSED):
            return
        self.error = exc
        self.env.protocol_error(self, exc)
        if (
            self.phase in (Phase.HEADER, Phase.START_OK, Phase.AUTH, Phase.TUNE_OK)
            and exc.reply_code != ACCESS_REFUSED
        ):
            # before tuning the peer cannot be relied on to answer: just close
            self._closed()
            return
        self._send(
            0,
            commands.Connection.Close(
                reply_code=exc.reply_code,
                reply_text=exc.reply_text,
                class_id=exc.class_id,
                method_id=exc.method_id,
            ),
        )
        self._teardown()
        self.phase = Phase.CLOSING
        self.waiting = None

    def close(self, code: int, text: str) -> None:
        """Broker-initiated close (shutdown: 320 CONNECTION_FORCED)."""
        self.fail(AMQPError(code, text))

    def _teardown(self) -> None:
        for channel in list(self.channels.values()):
            channel.teardown()
        self.channels.clear()

    def _closed(self) -> None:
        self._teardown()
        self.phase = Phase.CLOSED
        self.closing = True
        self.waiting = None

    def lost(self) -> None:
        """The transport went away."""
        self._teardown()
        self.phase = Phase.CLOSED
        self.env.connection_lost(self)

    # --- time ------------------------------------------------------------------------

    def tick(self, now: float) -> bool:
        """Heartbeats; False when the peer has been silent for two intervals."""
        hb = self.heartbeat
        if not hb or self.phase is not Phase.OPENED:
            return True
        if now - self.last_recv > 2 * hb:
            return False
        if now - self.last_sent >= hb / 2:
            self.out += encode_heartbeat()
        return True


def _is_connection(m: Any) -> bool:
    return getattr(m, "name", "").startswith("Connection.")


def _method_ids(m: Any) -> tuple[int, int]:
    index = getattr(m, "index", 0) or 0
    return index >> 16, index & 0xFFFF


def _ids_of(frame: Any) -> tuple[int, int]:
    if type(frame) is Method:
        return _method_ids(frame.method)
    return 0, 0
