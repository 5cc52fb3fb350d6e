"""One MQTT network connection, sans-IO: decoded packets in, bytes out.

:class:`Connection` feeds transport chunks to the codec's server-role ``Decoder``,
handles every packet of the chunk in order and appends what it answers to ``out``, a
``bytearray`` the adapter writes once per chunk (and once per loop tick for
deliveries from other connections, see ``wakeup``). It owns CONNECT handling
(versions, client ids, keep alive, CONNACK properties), inbound PUBLISH (topic
aliases, limits, ACL, building :class:`~fluxmq_core.message.Message`), the ack flows,
SUBSCRIBE/UNSUBSCRIBE, DISCONNECT, AUTH and protocol errors. Outbound PUBLISH encoding
(encode once per shape, topic aliases) is its base class, ``outbound.py``.

What it does not do: any I/O, timers or awaiting. Steps that need the event loop
(``AuthService.authenticate``, a cache miss of ``authorize``, an enhanced-auth step)
are exposed as ``waiting``, a typed wait (``waits.py``); processing stops there, the
adapter awaits and feeds the answer back (:meth:`auth_done`, :meth:`answer`,
:meth:`enhanced_done`), and the packets that arrived meanwhile are processed in order
afterwards. An acknowledgement that waits for something else (a queue append becoming
durable, ``queues.py``) is reserved with :meth:`~Connection.defer_ack` and answered with
:meth:`~Connection.resolve_ack`; acks still leave in PUBLISH order. Session lifetime,
takeover and wills belong to ``registry.py``; the QoS state rules to ``state.py``.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, overload

from fluxmq_core.auth import AuthRequest, AuthResult
from fluxmq_core.callout.hooks import ALLOW, HookRequest, apply_outcome, external_id
from fluxmq_core.message import Message
from fluxmq_mqtt.acks import AckWriter, DeferredAck
from fluxmq_mqtt.codec import (
    MQTT_5,
    Auth,
    Connack,
    Connect,
    Disconnect,
    MQTTProtocolError,
    Pingreq,
    Properties,
    Puback,
    Pubcomp,
    Publish,
    PublishRun,
    Pubrec,
    Pubrel,
    Subscribe,
    Unsubscribe,
    encode,
)
from fluxmq_mqtt.codec.decoder import Decoder, _make_publish
from fluxmq_mqtt.codec.reasons import CONNACK_V5_CODES
from fluxmq_mqtt.limits import TokenBucket, remote_ip
from fluxmq_mqtt.outbound import NO_OUTPUT, OutboundWriter, RunDelivery
from fluxmq_mqtt.queues import is_queue_topic
from fluxmq_mqtt.session import EMPTY, NEVER, PROTOCOL, Session
from fluxmq_mqtt.state import ALLOWED, SUSPEND, Phase
from fluxmq_mqtt.subscribe import SubscribeHandlers
from fluxmq_mqtt.waits import (
    AuthorizeWait,
    AuthWait,
    ClaimWait,
    EnhancedAuthWait,
    HookWait,
    Wait,
)

if TYPE_CHECKING:
    from fluxmq_mqtt.config import MQTTConfig
    from fluxmq_mqtt.registry import SessionRegistry, Will

__all__ = ["Connection", "DeferredAck"]

log = logging.getLogger("fluxmq.mqtt")

_PINGRESP = b"\xd0\x00"
_T = TypeVar("_T")


#: Keep-alive values seen (at most 65,536 ints, shared by the connections that use them).
_KEEPALIVES: dict[int, int] = {}

#: ``Connection.marks`` bits: the login was accepted (``login_ok``); the connection is
#: in the adapter's registry of connections past CONNACK (``listed``).
_LOGIN_OK = 1
_LISTED = 2


class _Rare:
    """The rarely set fields of one :class:`Connection` (see ``_RareField``)."""

    __slots__ = (
        "tls_identity",
        "in_aliases",
        "assigned_id",
        "server_keep_alive",
        "requested_expiry",
        "enhanced",
        "auth_method",
        "auth_data_out",
        "reauth",
        "close_reason",
        "will_wanted",
        "claimed",
        "problem_info",
        "expiry",
        "subscribe_bucket",
        "sync_first",
    )

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(Connection, name).default)


class _RareField(Generic[_T]):
    """A Connection attribute kept in its ``_rare`` record: reads give ``default``
    while there is none, and writing the default creates none. An idle connection
    holds fifteen fewer slots (sixteen fields out, the ``_rare`` link in: 120 bytes)."""

    __slots__ = ("name", "default")

    def __init__(self, default: _T) -> None:
        self.default = default
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: Any = None) -> _RareField[_T]: ...
    @overload
    def __get__(self, obj: Connection, owner: Any = None) -> _T: ...
    def __get__(self, obj: Connection | None, owner: Any = None) -> Any:
        if obj is None:
            return self
        rare = obj._rare
        return self.default if rare is None else getattr(rare, self.name)

    def __set__(self, obj: Connection, value: _T) -> None:
        rare = obj._rare
        if rare is None:
            default = self.default
            if value is default or (type(value) is type(default) and value == default):
                return
            rare = obj._rare = _Rare()
        setattr(rare, self.name, value)


class Connection(OutboundWriter, SubscribeHandlers, AckWriter):
    """The protocol state of one network connection (see the module docstring).

    Output state and PUBLISH encoding come from :class:`OutboundWriter`
    (``outbound.py``), SUBSCRIBE and UNSUBSCRIBE from :class:`SubscribeHandlers`
    (``subscribe.py``), PUBACK/PUBREC encoding and deferred acks from
    :class:`AckWriter` (``acks.py``); ``closing`` asks the adapter to close the transport after
    writing ``out``.
    """

    __slots__ = (
        "registry",
        "decoder",
        "held",
        "held_count",
        "held_mark",
        "phase",
        "version",
        "session",
        "client_id",
        "username",
        "keepalive",
        "remote",
        "send_window",
        "will",
        "closing",
        "waiting",
        "backlog",
        "answers",
        "marks",
        "connect",
        "last_seen",
        "publish_bucket",
        "queue_acks",
        "_rare",
    )

    # Rarely set (enhanced auth, topic aliases, assigned ids, closing...): stored in a
    # ``_Rare`` made on the first non-default write, not in a slot of every connection.
    tls_identity: _RareField[str | None] = _RareField(None)
    in_aliases: _RareField[dict[int, str] | None] = _RareField(None)
    assigned_id: _RareField[str | None] = _RareField(None)
    server_keep_alive: _RareField[int | None] = _RareField(None)
    requested_expiry: _RareField[int] = _RareField(0)
    enhanced: _RareField[Any] = _RareField(None)
    auth_method: _RareField[str | None] = _RareField(None)
    auth_data_out: _RareField[bytes | None] = _RareField(None)
    reauth: _RareField[bool] = _RareField(False)
    close_reason: _RareField[str] = _RareField("")
    will_wanted: _RareField[bool] = _RareField(True)
    claimed: _RareField[bool] = _RareField(False)
    problem_info: _RareField[bool] = _RareField(True)
    expiry: _RareField[int] = _RareField(0)
    subscribe_bucket: _RareField[TokenBucket | None] = _RareField(None)
    sync_first: _RareField[bool] = _RareField(False)

    def __init__(
        self, registry: SessionRegistry, remote: str = "?", tls_identity: str | None = None
    ) -> None:
        cfg = registry.cfg
        self._rare: _Rare | None = None
        self.registry = registry
        self._init_outbound(cfg.outbound_buffer)
        # This connection's decoder until CONNECT is decoded; afterwards None between
        # packets (the registry's shared decoder of the version decodes each chunk) and
        # a decoder of its own only while a packet spans chunks.
        self.decoder: Decoder | None = Decoder(
            role="server", max_packet_size=cfg.max_packet_size, runs=True
        )
        # Acks waiting for the store's sync (durable stores): a bytearray once one
        # is held (an idle connection holds none).
        self.held: bytearray | None = None
        self.held_count = 0
        # Where in ``out`` the chunk's first held ack would have gone: what follows
        # it waits for the same sync (-1: nothing held).
        self.held_mark = -1
        self.phase = Phase.AWAIT_CONNECT
        self.version = 4
        self.session: Session | None = None
        self.client_id = ""
        self.username: str | None = None
        self.keepalive = 0
        self.remote = remote
        self.tls_identity = tls_identity
        self.problem_info = True
        self.send_window = cfg.max_inflight
        self.in_aliases: dict[int, str] | None = None
        self.will: Will | None = None
        self.closing = False
        self.waiting: Wait | None = None
        # Packets not handled yet: a deque while there are some, else an empty tuple
        # (an idle connection holds no deque block).
        self.backlog: deque[Any] | tuple[()] = ()
        # Decisions fed back by the adapter for the packet being handled: ACL answers
        # by (action, topic), blocking hook outcomes by ("hook:<event>", topic).
        # The shared read-only empty dict until the adapter feeds one back.
        self.answers: dict[tuple[str, str], Any] = EMPTY
        self.marks = 0  # _LOGIN_OK | _LISTED
        self.connect: Connect | None = None
        self.assigned_id: str | None = None
        self.server_keep_alive: int | None = None
        self.expiry = 0
        self.requested_expiry = 0
        self.enhanced: Any = None
        self.auth_method: str | None = None
        self.auth_data_out: bytes | None = None
        self.reauth = False
        self.close_reason = ""
        self.will_wanted = True
        self.last_seen = 0.0
        self.publish_bucket: TokenBucket | None = None  # [mqtt] or [rate_limit] publish_rate
        self.subscribe_bucket = None  # [rate_limit] subscribe_rate
        self.sync_first = False  # output waits for a store sync (the will saved at CONNECT)
        self.claimed = False  # in a cluster: the session is claimed for this node
        self.queue_acks: deque[DeferredAck] | None = None  # in PUBLISH order (defer_ack)

    @property
    def cfg(self) -> MQTTConfig:
        """The registry's ``[mqtt]`` config (not a slot of every connection)."""
        return self.registry.cfg

    @property
    def login_ok(self) -> bool:
        """The login was accepted (the CONNECT may still wait for its will's ACL,
        a hook or a cluster claim)."""
        return bool(self.marks & _LOGIN_OK)

    @login_ok.setter
    def login_ok(self, value: bool) -> None:
        self.marks = self.marks | _LOGIN_OK if value else self.marks & ~_LOGIN_OK

    @property
    def listed(self) -> bool:
        """In the registry's connections past CONNACK when the adapter keeps them
        (``server.ConnectedView``); one bit rather than a second set entry."""
        return bool(self.marks & _LISTED)

    @listed.setter
    def listed(self, value: bool) -> None:
        self.marks = self.marks | _LISTED if value else self.marks & ~_LISTED

    def __repr__(self) -> str:
        return f"Connection({self.client_id!r}, {self.remote}, {self.phase.name}, v{self.version})"

    # -- input -------------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        """Handle one transport chunk: every complete packet, in order."""
        if self.phase is not Phase.CONNECTED:
            if self.phase is Phase.CLOSED:
                return
            if (
                self.phase is Phase.AWAIT_CONNECT
                and data
                and data[0] != 0x10
                and not (self.decoder is not None and self.decoder.buffered)
            ):
                # Not MQTT (the first packet must be CONNECT): do not wait for a
                # "remaining length" that garbage happened to announce.
                self.registry.stats.protocol_errors += 1
                self.close("first packet is not CONNECT", will=False)
                return
        decoder = self.decoder
        if decoder is None:
            decoder = self.registry.idle_decoders.get(self.version) or self._idle_decoder()
        try:
            packets = decoder.packets(data)
        except MQTTProtocolError as exc:
            if self.decoder is None:
                self.decoder = decoder.detach()
            self._add_backlog(exc.packets)
            self._process()
            if self.phase is not Phase.CLOSED:
                self._decode_error(exc)
            self._settle_queue_acks()
            return
        if self.decoder is None:
            # ``packets`` lets go of a chunk it used up (``drained()`` without a call).
            if decoder._buf:
                self.decoder = decoder.detach()  # a packet spans chunks
        if packets:
            if self.backlog:
                self.backlog.extend(packets)
                self._process()
            else:
                self._run(packets)
            if self.registry.queue_face.acks:
                self._settle_queue_acks()
        if self.decoder is not None and self.phase is Phase.CONNECTED:
            self._park_decoder()

    def _settle_queue_acks(self) -> None:
        """The chunk's PUBACKs / PUBCOMPs of queue deliveries, settled together."""
        face = self.registry.queue_face
        if face.acks:
            face.flush_acks()

    def _park_decoder(self) -> None:
        """Past CONNECT with nothing buffered: drop this connection's decoder (the
        registry's shared one of the version decodes the next chunk)."""
        decoder = self.decoder
        if (
            decoder is not None
            and decoder.connect_seen
            and decoder.version == self.version
            and decoder.drained()
        ):
            self.decoder = None

    def _idle_decoder(self) -> Decoder:
        """The registry's shared decoder of this connection's version (past CONNECT,
        nothing buffered): holds no state between chunks, so connections take turns."""
        shared = self.registry.idle_decoders
        version = self.version
        decoder = shared.get(version)
        if decoder is None:
            decoder = Decoder(
                version=version,
                role="server",
                max_packet_size=self.cfg.max_packet_size,
                runs=True,
            )
            decoder._connect_seen = True
            shared[version] = decoder
        return decoder

    def _run(self, packets: list[Any]) -> None:
        """:meth:`_process` for a chunk when nothing is pending (the usual case):
        walks the decoder's list as it is and makes a backlog of what is left only
        when a packet has to wait."""
        handlers = _HANDLERS
        closed = Phase.CLOSED
        # ALLOWED[phase] is looked up again only when the phase changes.
        phase: Phase | None = Phase.CONNECTED
        allowed: Any = _CONNECTED_ALLOWED
        i = 0
        for packet in packets:
            if self.phase is not phase:
                phase = self.phase
                if phase is closed:
                    return
                allowed = ALLOWED[phase]
            if self.waiting is not None:
                break
            kind = type(packet)
            if kind not in allowed:
                self._protocol_error(0x82, f"{_name(kind)} not allowed now")
                return
            if handlers[kind](self, packet) is SUSPEND:
                break  # handled again, from the backlog, once the wait is answered
            i += 1
            if self.answers:
                self.answers = EMPTY
        else:
            return
        if self.phase is not Phase.CLOSED:
            self.backlog = deque(packets[i:])

    def _add_backlog(self, packets: list[Any]) -> None:
        if self.backlog:
            self.backlog.extend(packets)
        else:
            self.backlog = deque(packets)

    def _process(self) -> None:
        backlog = self.backlog
        handlers = _HANDLERS
        while backlog and self.waiting is None:
            phase = self.phase
            if phase is Phase.CLOSED:
                backlog.clear()
                return
            packet = backlog[0]
            kind = type(packet)
            if kind not in ALLOWED[phase]:
                backlog.clear()
                self._protocol_error(0x82, f"{_name(kind)} not allowed now")
                return
            if handlers[kind](self, packet) is SUSPEND:
                return
            if backlog:  # empty when the handler closed the connection
                backlog.popleft()
            if self.answers:
                self.answers = EMPTY
        if not backlog and backlog is self.backlog:
            self.backlog = ()

    # -- answers from the adapter -------------------------------------------------------

    def answer(self, action: str, topic: str, decision: bool) -> None:
        """The result of ``AuthService.authorize`` for an ``AuthorizeWait``."""
        self._answers()[(action, topic)] = decision
        self.waiting = None
        self._resume()

    def hook_done(self, event: str, topic: str, outcome: Any) -> None:
        """The outcome of a blocking hook for a ``HookWait`` (``None``: hooks were
        switched off meanwhile, which allows)."""
        self._answers()[("hook:" + event, topic)] = outcome if outcome is not None else ALLOW
        self.waiting = None
        self._resume()

    def _answers(self) -> dict[tuple[str, str], Any]:
        answers = self.answers
        if answers is EMPTY:
            answers = self.answers = {}
        return answers

    def _hooked(self, event: str, topic: str, **fields: Any) -> Any:
        """The hook outcome for this packet, or ``None`` after asking the adapter
        (return SUSPEND then). Only called while ``context.hooks`` wants ``event``."""
        outcome = self.answers.get(("hook:" + event, topic))
        if outcome is None:
            self.waiting = HookWait(
                HookRequest(
                    event,
                    PROTOCOL,
                    self.client_id,
                    topic,
                    external_id=external_id(self.registry.context, self.client_id),
                    **fields,
                )
            )
        return outcome

    def auth_done(self, result: AuthResult) -> None:
        """The result of ``AuthService.authenticate`` for an ``AuthWait``."""
        self.waiting = None
        if self.phase is Phase.CLOSED:
            return
        if not result.ok:
            self.registry.stats.auth_failures += 1
            # A username was refused: 0x86 (3.1.1: 4); no credentials (a zero-length
            # username is none): 0x87 not authorized (3.1.1: 5).
            code = 0x86 if self.connect is not None and self.connect.username else 0x87
            self._refuse(code, result.reason or "not authorized")
            return
        self.username = result.username
        self.login_ok = True
        self._resume()

    def claim_done(self) -> None:
        """The session is this node's (and any state from another node imported)."""
        self.waiting = None
        if self.phase is Phase.CLOSED:
            return
        self.claimed = True
        self._resume()

    def claim_failed(self, reason: str) -> None:
        """The cluster could not give this node the session (etcd unreachable, or
        another node claimed it at the same time): 0x88 server unavailable."""
        self.waiting = None
        if self.phase is Phase.CLOSED:
            return
        self._refuse(0x88, reason)

    def enhanced_done(self, status: str, data: bytes) -> None:
        """One enhanced-auth step succeeded: ``status`` is "continue" or "success"."""
        self.waiting = None
        if self.phase is Phase.CLOSED:
            return
        props = Properties(authentication_method=self.auth_method, authentication_data=data or None)
        if status == "continue":
            self.out += encode(Auth(0x18, props), MQTT_5)
            return  # wait for the client's AUTH
        result = self.enhanced.result
        self.enhanced = None
        if self.phase is Phase.AUTHENTICATING:
            self.username = result.username
            self.auth_data_out = data or None
            self.login_ok = True
        else:
            self.reauth = False
            self.username = result.username
            self.registry.auth.forget_client(self.client_id)
            self.out += encode(Auth(0x00, props), MQTT_5)
        self._resume()

    def enhanced_failed(self, reason: str) -> None:
        self.waiting = None
        self.enhanced = None
        if self.phase is Phase.CLOSED:
            return
        self.registry.stats.auth_failures += 1
        if self.phase is Phase.AUTHENTICATING:
            self._refuse(0x87, reason or "authentication failed")
        else:
            self._protocol_error(0x87, reason or "re-authentication failed", count=False)

    def _resume(self) -> None:
        if self.phase is Phase.AUTHENTICATING and self.login_ok:
            if self._finish_connect() is SUSPEND:
                return
        self._process()
        self._settle_queue_acks()

    # -- errors and closing ------------------------------------------------------------

    def _decode_error(self, exc: MQTTProtocolError) -> None:
        code = exc.reason_code
        if self.phase is Phase.AWAIT_CONNECT:
            self.registry.stats.protocol_errors += 1
            version = self.decoder.version if self.decoder is not None else self.version
            if code == 0x84 or version is None:
                if code == 0x84:
                    self.out += b"\x20\x02\x00\x01"  # 3.1.1 CONNACK: unacceptable version
            elif version == MQTT_5:
                self.version = MQTT_5
                rc = code if code in CONNACK_V5_CODES else 0x81
                self.out += encode(
                    Connack(False, rc, Properties(reason_string=exc.message)), MQTT_5
                )
            elif code == 0x85:
                self.out += b"\x20\x02\x00\x02"  # identifier rejected
            self.close("protocol error: " + exc.message, will=False)
            return
        self._protocol_error(code, exc.message)

    def _protocol_error(self, code: int, text: str, count: bool = True) -> None:
        """The client broke a rule: 5.0 DISCONNECT with ``code``, then close (the
        will is published)."""
        if count:
            self.registry.stats.protocol_errors += 1
        if self.version == MQTT_5 and self.phase is not Phase.AWAIT_CONNECT:
            self.out += self._v5(Disconnect(code, Properties(reason_string=text[:200])))
        self.close(f"protocol error 0x{code:02X}: {text}", will=True)

    def _refuse(self, code: int, text: str, props: Properties | None = None) -> None:
        """Refuse a CONNECT with ``code`` (an MQTT 5 code, mapped for 3.x)."""
        if self.version == MQTT_5:
            if props is None:
                props = Properties(reason_string=text[:200]) if self.problem_info else None
            self.out += self._v5(Connack(False, code, props))
        else:
            self.out += encode(Connack(False, code), self.version)
        self.close("refused: " + text, will=False)

    def _v5(self, packet: Any) -> bytes:
        """Encode a 5.0 packet, leaving its Reason String out when the packet would
        otherwise exceed the client's Maximum Packet Size (MQTT-3.1.2-25)."""
        data = encode(packet, MQTT_5)
        limit = self.max_out_packet
        if limit and len(data) > limit and packet.properties is not None:
            props = dataclasses.replace(packet.properties, reason_string=None)
            data = encode(dataclasses.replace(packet, properties=props), MQTT_5)
        return data

    def close(self, reason: str, will: bool = True) -> None:
        """Stop processing; the adapter closes the transport after writing ``out``."""
        if self.phase is Phase.CLOSED:
            return
        self.phase = Phase.CLOSED
        self.closing = True
        self.out_limit = -1  # has_room() is False: nothing is written after the end
        self.close_reason = reason
        self.will_wanted = will
        self.backlog = ()
        self.waiting = None
        if self.wakeup is not None and not self.flush_pending:
            self.flush_pending = True
            self.wakeup(self)

    def kick(self, code: int, reason: str) -> None:
        """Closed by the server (takeover 0x8E, shutdown 0x8B, keep alive 0x8D)."""
        if self.phase is Phase.CLOSED:
            return
        if self.version == MQTT_5 and self.phase is Phase.CONNECTED:
            self.out += self._v5(Disconnect(code, Properties(reason_string=reason)))
        self.close(reason, will=True)

    def lost(self) -> None:
        """The transport is gone (called exactly once by the adapter)."""
        if self.phase is not Phase.CLOSED:
            self.phase = Phase.CLOSED
            self.close_reason = self.close_reason or "connection lost"
        self.waiting = None
        self.backlog = ()
        registry = self.registry
        if self.session is not None:
            registry.detach(self, self.will_wanted)
        registry.disconnected(self)

    # -- CONNECT -----------------------------------------------------------------------

    def _on_connect(self, p: Connect) -> Any:
        cfg = self.cfg
        version = self.version = p.protocol_level
        self.connect = p
        self.phase = Phase.AUTHENTICATING
        props = p.properties
        if props is not None:
            if props.request_problem_information == 0:
                self.problem_info = False
            if props.receive_maximum is not None:
                self.send_window = min(cfg.max_inflight, props.receive_maximum)
            self.set_client_limits(props.maximum_packet_size, props.topic_alias_maximum)
        registry = self.registry
        limiter = registry.connect_limiter
        if limiter is not None and not limiter.allow(remote_ip(self.remote), registry.clock()):
            registry.stats.connections_rejected += 1
            if version == MQTT_5:
                self._refuse(0x9F, "connection rate exceeded")
            else:
                self.close("connection rate exceeded", will=False)
            return None
        if cfg.server_reference:
            if version == MQTT_5:
                self._refuse(
                    0x9C, "use another server", Properties(server_reference=cfg.server_reference)
                )
            else:
                self._refuse(0x88, "use another server")
            return None
        client_id = p.client_id
        if not client_id:
            if version < MQTT_5 and not p.clean_start:
                self._refuse(0x85, "empty client id needs clean session")
                return None
            if version == 3 or not cfg.allow_zero_length_clientid:
                self._refuse(0x85, "empty client id not allowed")
                return None
            client_id = "auto-" + uuid.uuid4().hex
            self.assigned_id = client_id
        elif len(client_id.encode()) > cfg.max_client_id_length or (
            version == 3 and len(client_id) > 23
        ):
            self._refuse(0x85, "client id too long")
            return None
        self.client_id = client_id
        keepalive = p.keepalive
        if cfg.max_keepalive and (keepalive == 0 or keepalive > cfg.max_keepalive):
            if version < MQTT_5:
                self._refuse(0x85, f"keep alive must be 1..{cfg.max_keepalive}")
                return None
            keepalive = self.server_keep_alive = cfg.max_keepalive
        # One int object per keep-alive value for every connection (values above
        # 256 are not cached by Python: 32 bytes on each idle connection otherwise).
        self.keepalive = _KEEPALIVES.setdefault(keepalive, keepalive)
        if p.will_topic is not None:
            if p.will_qos > cfg.max_qos:
                self._refuse(0x9B, "will QoS not supported")
                return None
            if p.will_retain and not cfg.retain_available:
                self._refuse(0x9A, "retain not supported")
                return None
            self.will = self.registry.make_will(client_id, p)
        if version == MQTT_5:
            requested = (props.session_expiry_interval or 0) if props is not None else 0
            self.requested_expiry = requested
            self.expiry = min(requested, cfg.max_session_expiry)
        elif p.clean_start:
            self.expiry = 0
        else:
            self.expiry = cfg.persistent_session_expiry or NEVER
        auth = self.registry.auth
        method = props.authentication_method if props is not None else None
        if method is not None:
            self.auth_method = method
            start = getattr(auth, "start_enhanced", None)
            enhanced = None
            if start is not None:
                enhanced = start(
                    method,
                    client_id,
                    protocol=PROTOCOL,
                    remote=self.remote,
                    tls_identity=self.tls_identity,
                )
            if enhanced is None:
                self.registry.stats.auth_failures += 1
                self._refuse(0x8C, f"authentication method {method!r} not supported")
                return None
            self.enhanced = enhanced
            assert props is not None  # the method came from them
            self.waiting = EnhancedAuthWait(props.authentication_data or b"")
            return None
        self.waiting = AuthWait(
            AuthRequest(
                protocol=PROTOCOL,
                client_id=client_id,
                username=p.username,
                password=p.password,
                remote=self.remote,
                tls_identity=self.tls_identity,
            )
        )
        return None

    def _finish_connect(self) -> Any:
        """Login accepted: check the will's ACL, attach the session, CONNACK."""
        will = self.will
        if will is not None:
            allowed = self._authorized("publish", will.message.topic)
            if allowed is None:
                return SUSPEND
            self.answers = EMPTY
            if not allowed:
                self.registry.stats.authz_denied += 1
                self._refuse(0x87, "will topic not authorized")
                return None
        p = self.connect
        assert p is not None
        registry = self.registry
        if registry.cluster is not None and not self.claimed:
            # Distributed only (the single-node path checks one None): claim the
            # client id cluster-wide first; its state may come from another node.
            self.waiting = ClaimWait(self.client_id, p.clean_start)
            return SUSPEND
        session, present = registry.attach(self, p.clean_start)
        self.session = session
        if self.version == MQTT_5:
            cfg = self.cfg
            rinfo = None
            if (
                p.properties is not None
                and p.properties.request_response_information
                and cfg.response_information
            ):
                rinfo = cfg.response_information + self.client_id
            props = Properties(
                session_expiry_interval=(
                    self.expiry if self.expiry != self.requested_expiry else None
                ),
                assigned_client_identifier=self.assigned_id,
                server_keep_alive=self.server_keep_alive,
                authentication_method=self.auth_method,
                authentication_data=self.auth_data_out,
                response_information=rinfo,
                receive_maximum=cfg.receive_maximum,
                topic_alias_maximum=cfg.topic_alias_maximum or None,
                maximum_qos=cfg.max_qos if cfg.max_qos < 2 else None,
                retain_available=int(cfg.retain_available),
                maximum_packet_size=cfg.max_packet_size,
                wildcard_subscription_available=int(cfg.wildcard_subscriptions),
                subscription_identifier_available=int(cfg.subscription_identifiers),
                shared_subscription_available=int(cfg.shared_subscriptions),
            )
            self.out += encode(Connack(present, 0, props), MQTT_5)
        else:
            self.out += encode(Connack(present, 0), self.version)
        limits = getattr(registry.context, "limits", None)
        if self.cfg.publish_rate:
            self.publish_bucket = TokenBucket(
                self.cfg.publish_rate, self.cfg.publish_burst, registry.clock()
            )
        elif limits is not None:  # the broker-wide [rate_limit], when set
            self.publish_bucket = limits.publish_bucket()
        if limits is not None:
            self.subscribe_bucket = limits.subscribe_bucket()
        self.phase = Phase.CONNECTED
        registry.connected(self)
        session.resend(self)
        registry.queue_face.attached(self, session)
        self.connect = None  # not needed after CONNACK: an idle connection keeps less
        self._park_decoder()
        return None

    # -- authorization -------------------------------------------------------------------

    def _authorized(self, action: str, topic: str) -> bool | None:
        """A cached decision, an answer fed back, or None after asking the adapter."""
        decision = self.registry.auth.authorize_cached(self.client_id, self.username, action, topic)
        if decision is None:
            decision = self.answers.get((action, topic))
            if decision is None:
                self.waiting = AuthorizeWait(action, topic)
        return decision

    # -- PUBLISH in ----------------------------------------------------------------------

    def _on_publish(self, p: Publish) -> Any:
        cfg = self.registry.cfg
        topic = p.topic
        props = p.properties
        qos = p.qos
        v5 = self.version == MQTT_5
        if props is not None and props.topic_alias is not None:
            alias = props.topic_alias
            if alias > cfg.topic_alias_maximum:
                self._protocol_error(0x94, f"topic alias {alias} above maximum")
                return None
            aliases = self.in_aliases
            if aliases is None:
                aliases = self.in_aliases = {}
            if topic:
                aliases[alias] = topic
            else:
                topic = aliases.get(alias, "")
                if not topic:
                    self._protocol_error(0x82, f"unknown topic alias {alias}")
                    return None
        if qos > cfg.max_qos:
            self._protocol_error(0x9B, f"QoS {qos} not supported")
            return None
        if p.retain and not cfg.retain_available:
            self._protocol_error(0x9A, "retain not supported")
            return None
        session = self.session
        assert session is not None
        pid = p.packet_id or 0  # QoS 0 carries none (0 is never a valid packet id)
        if qos == 2 and pid in session.inbound:
            self._ack(Pubrec, pid, 0)  # a resend of a message we hold: answer again only
            return None
        if qos and len(session.inbound) + self.held_count >= cfg.receive_maximum:
            self._protocol_error(0x93, "receive maximum exceeded")
            return None
        registry = self.registry
        allowed = registry.auth.authorize_cached(self.client_id, self.username, "publish", topic)
        if allowed is None:
            allowed = self._authorized("publish", topic)  # an answer fed back, or ask
            if allowed is None:
                return SUSPEND
        hooked = None
        context = registry.context
        hooks = getattr(context, "hooks", None)
        if allowed and hooks is not None and hooks.wants("auth_on_publish", PROTOCOL):
            hooked = self._hooked(
                "auth_on_publish",
                topic,
                payload=p.payload,
                qos=qos,
                retain=p.retain,
                properties=dict(props.user_properties) if props and props.user_properties else {},
            )
            if hooked is None:
                return SUSPEND
            if not hooked.allow:
                allowed = False
            elif hooked.topic is not None and hooked.topic != topic:
                topic = hooked.topic  # authorized again under its new name
                allowed = self._authorized("publish", topic)
                if allowed is None:
                    return SUSPEND
        stats = registry.stats
        stats.messages_received += 1
        stats.publish_received += 1
        bucket = self.publish_bucket
        if bucket is not None and not bucket.take(registry.clock()):
            stats.messages_dropped += 1
            stats.rate_limited_publishes += 1
            if v5 and qos == 0:
                self._protocol_error(0x97, "publish rate exceeded", count=False)
            elif qos:  # 5.0: refused with 0x97; 3.x: acknowledged and dropped
                self._ack(Puback if qos == 1 else Pubrec, pid, 0x97 if v5 else 0)
            return None
        code = 0
        message = None
        if not allowed:
            stats.authz_denied += 1
            if v5:
                code = 0x87
        elif props is not None and props.payload_format_indicator == 1 and not _utf8(p.payload):
            code = 0x99
        else:
            if props is None:
                message = Message(
                    topic,
                    p.payload,
                    qos,
                    p.retain,
                    origin_protocol=PROTOCOL,
                    origin_client=self.client_id,
                    timestamp=registry.clock(),
                )
            else:
                message = self._message(topic, p, props)
            if hooked is not None:
                apply_outcome(message, hooked)
            if topic[:1] == "$" and is_queue_topic(topic):
                registry.queue_face.publish(self, message, qos, pid)
                return None
        if qos == 0:
            if message is not None:
                context.publish(message)
            return None
        if qos == 1:
            # The PUBACK goes where ``out`` ended before the publish: ahead of the
            # deliveries to this same connection that the publish causes.
            out = self.out
            if out is NO_OUTPUT:
                out = self.out = bytearray()  # ``_ack`` recognises it below
            pos = len(out)
            if message is not None and not context.publish(message) and v5:
                code = 0x10
            self._ack(Puback, pid, code, out, pos)
            return None
        if code < 0x80:
            session.hold_inbound(pid, message)
        self._ack(Pubrec, pid, code)
        return None

    def _on_publish_run(self, run: PublishRun) -> Any:
        """A run of QoS 0 PUBLISHes to one topic (see ``PublishRun``): exactly what
        :meth:`_on_publish` does with each, in order. When nothing looks at the
        messages one by one (see :meth:`_publish_run`), the topic's checks and
        routing are done once and each subscriber gets the run's bytes in bulk;
        otherwise each message takes :meth:`_on_publish`."""
        if not run.done and self._publish_run(run):
            return None
        topic = run.topic
        payloads = run.payloads
        i = run.done
        n = len(payloads)
        while i < n:
            packet = _make_publish(topic, payloads[i], 0, False, False, None, None)
            if self._on_publish(packet) is SUSPEND:
                run.done = i  # handled again from here once the wait is answered
                return SUSPEND
            i += 1
            run.done = i
            if self.phase is not Phase.CONNECTED:
                return None  # closed by that message: the rest is not handled
            if self.answers:
                self.answers = EMPTY
        return None

    def _publish_run(self, run: PublishRun) -> bool:
        """The batch path of :meth:`_on_publish_run`: False (having done nothing)
        unless every message of the run would take the same plain path through
        :meth:`_on_publish`, ``BrokerContext.publish``, ``Router.publish`` and
        ``Session.deliver`` with nothing observing it on the way but the counters
        (added in bulk) and the subscribers' bytes. So: a publish ACL decision
        cached as allowed, no ``auth_on_publish`` hook, no publish rate limit, not
        a ``$`` topic, no tracer, cluster forwarding or ``fluxmq_message_published``
        / ``fluxmq_message_delivered`` hookimpl, no share group matched, every
        matched subscriber an MQTT session and, under ``acl_subscribe = "filter"``,
        its read decision cached. A subscriber whose output fills up drops the rest
        of the run as per message (and blocks the publisher the same way)."""
        topic = run.topic
        if self.publish_bucket is not None or topic[0] == "$":
            return False
        registry = self.registry
        auth = registry.auth
        client_id = self.client_id
        if (
            auth.authorization_active  # (else allowed: no call)
            and auth.authorize_cached(client_id, self.username, "publish", topic) is not True
        ):
            return False
        context = registry.context
        hooks = getattr(context, "hooks", None)
        if hooks is not None and hooks.wants("auth_on_publish", PROTOCOL):
            return False
        if registry.events.on_delivered:
            return False
        entries = context.route_plan(topic)
        if entries is None:
            return False
        filter_reads = auth.filter_reads
        targets: list[tuple[Session, tuple[int, ...], bool]] = []
        for sub, _qos, _rap, ids, local in entries:
            if type(sub) is not Session:
                return False
            if local is not None and sub.client_id == client_id:
                if not local:
                    continue  # No Local: not back to the publisher
                ids = local[2]
            readable = True
            if filter_reads:
                # Session.deliver's read check, once per subscriber: only a cached
                # decision (a miss may call hookimpls, per message).
                decision = auth.read_cached(sub.client_id, sub.username, topic)
                if decision is None:
                    return False
                readable = decision
            targets.append((sub, ids, readable))
        n = len(run.ends)
        stats = registry.stats
        stats.messages_received += n
        stats.publish_received += n
        if targets:
            shared = RunDelivery(run, client_id, registry.clock)
            for sub, ids, readable in targets:
                try:
                    if readable:
                        sub.deliver_run(run, ids, shared)
                    else:
                        sub.dropped_run(shared, 0, "not authorized")
                except Exception:
                    log.exception(
                        "deliver to subscriber %r failed for topic %r; continuing with the others",
                        sub.client_id,
                        topic,
                    )
        run.done = n
        return True

    def _message(self, topic: str, p: Publish, props: Properties | None) -> Message:
        now = self.registry.clock()
        m = Message(
            topic,
            p.payload,
            p.qos,
            p.retain,
            origin_protocol=PROTOCOL,
            origin_client=self.client_id,
            timestamp=now,
        )
        if props is not None:
            if props.message_expiry_interval is not None:
                m.expires_at = now + props.message_expiry_interval
            m.content_type = props.content_type
            m.correlation_data = props.correlation_data
            m.response_topic = props.response_topic
            m.payload_format = props.payload_format_indicator
            if props.user_properties:
                m.user_properties = list(props.user_properties)
        return m

    def _ack(
        self, cls: type, pid: int, code: int, at: bytearray | None = None, pos: int = 0
    ) -> None:
        """Append an ack, or insert it at ``pos`` of ``at`` when ``at`` is still the
        output buffer (not written meanwhile); a store whose acks wait for its sync
        holds it for one."""
        data = self._encode_ack(cls, pid, code, "")
        out = self.out
        if at is not out:
            pos = len(out)
        if self.registry.acks_wait:
            if self.held is None:
                self.held = bytearray(data)
            else:
                self.held += data
            self.held_count += 1
            if self.held_mark < 0:
                self.held_mark = pos
        elif out is NO_OUTPUT:
            self.out = bytearray(data)
        elif pos >= len(out):
            out += data
        else:
            out[pos:pos] = data

    # -- acks of our PUBLISHes -----------------------------------------------------------

    def _on_puback(self, p: Puback) -> None:
        session = cast("Session", self.session)  # set from CONNECT on; acks come after
        entry = session.inflight.get(p.packet_id)
        if session.acked(p.packet_id, 1) and entry is not None and entry.message.properties:
            self.registry.queue_face.settled(self, entry.message)  # a queue delivery?

    def _on_pubcomp(self, p: Pubcomp) -> None:
        session = cast("Session", self.session)
        entry = session.inflight.get(p.packet_id)
        if session.acked(p.packet_id, 2) and entry is not None and entry.message.properties:
            self.registry.queue_face.settled(self, entry.message)

    def _on_pubrec(self, p: Pubrec) -> None:
        session = cast("Session", self.session)
        due = session.received(p.packet_id, p.reason_code >= 0x80)
        if due is None:
            if self.version == MQTT_5:
                self.out += encode(Pubrel(p.packet_id, 0x92), MQTT_5)
            else:
                self.write_pubrel(p.packet_id)
        elif due:
            self.write_pubrel(p.packet_id)

    def _on_pubrel(self, p: Pubrel) -> None:
        session = cast("Session", self.session)
        known, message = session.release_inbound(p.packet_id)
        # PUBCOMP first: it precedes the deliveries to this connection it causes.
        if known or self.version < MQTT_5:
            self.out += b"\x70\x02" + p.packet_id.to_bytes(2, "big")
        else:
            self.out += encode(Pubcomp(p.packet_id, 0x92), MQTT_5)
        if message is not None:
            self.registry.context.publish(message)

    # -- the rest ------------------------------------------------------------------------

    def _on_pingreq(self, p: Pingreq) -> None:
        self.out += _PINGRESP

    def _on_disconnect(self, p: Disconnect) -> None:
        keep_will = False
        if self.version == MQTT_5:
            props = p.properties
            if props is not None and props.session_expiry_interval is not None:
                if self.session is None:
                    pass
                elif self.expiry == 0 and props.session_expiry_interval != 0:
                    self._protocol_error(0x82, "session expiry was 0 at CONNECT")
                    return
                else:
                    self.expiry = min(props.session_expiry_interval, self.cfg.max_session_expiry)
                    self.registry.set_expiry(self.session, self.expiry)
            keep_will = p.reason_code == 0x04
        if not keep_will:
            self.will = None
        self.close("client disconnected" + (" with will" if keep_will else ""), will=keep_will)

    def _on_auth(self, p: Auth) -> None:
        props = p.properties
        method = props.authentication_method if props is not None else None
        if self.auth_method is None or method != self.auth_method:
            self._protocol_error(0x82, "AUTH without the CONNECT's authentication method")
            return
        data = (props.authentication_data if props is not None else None) or b""
        if self.phase is Phase.AUTHENTICATING or self.reauth:
            if p.reason_code != 0x18 or self.enhanced is None:
                self._protocol_error(0x82, "unexpected AUTH reason code")
                return
            self.waiting = EnhancedAuthWait(data)
            return
        if p.reason_code != 0x19:
            self._protocol_error(0x82, "AUTH must start with Re-authenticate (0x19)")
            return
        enhanced = self.registry.auth.start_enhanced(
            method,
            self.client_id,
            protocol=PROTOCOL,
            remote=self.remote,
            tls_identity=self.tls_identity,
        )
        if enhanced is None:
            self._protocol_error(0x8C, "authentication method no longer available", count=False)
            return
        self.enhanced = enhanced
        self.reauth = True
        self.waiting = EnhancedAuthWait(data)


def _name(kind: type) -> str:
    """A packet type's name in errors (a run of PUBLISHes is PUBLISH)."""
    return "PUBLISH" if kind is PublishRun else kind.__name__.upper()


def _utf8(payload: bytes) -> bool:
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


#: What a client may send once connected (the usual phase of ``_run``).
_CONNECTED_ALLOWED = ALLOWED[Phase.CONNECTED]

_HANDLERS: dict[type, Any] = {
    Connect: Connection._on_connect,
    Publish: Connection._on_publish,
    PublishRun: Connection._on_publish_run,
    Puback: Connection._on_puback,
    Pubrec: Connection._on_pubrec,
    Pubrel: Connection._on_pubrel,
    Pubcomp: Connection._on_pubcomp,
    Subscribe: SubscribeHandlers._on_subscribe,
    Unsubscribe: SubscribeHandlers._on_unsubscribe,
    Pingreq: Connection._on_pingreq,
    Disconnect: Connection._on_disconnect,
    Auth: Connection._on_auth,
}
