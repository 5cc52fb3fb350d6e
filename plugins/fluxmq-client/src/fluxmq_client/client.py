"""The asyncio MQTT client: one connection at a time, one session for the object's life.

Packets are encoded and decoded by the broker's own sans-IO codec
(`fluxmq_core.mqtt_codec`), so client and broker cannot disagree about the wire. The
client keeps its session state (outgoing QoS 1/2 in flight, incoming QoS 2 packet ids,
subscriptions) on the :class:`Client` object: when the connection drops it reconnects
with ``clean_start=False`` and resends what was in flight, so a QoS 1 message is not
lost across a broker restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import ssl
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

from fluxmq_core.mqtt_codec import (
    MQTT_3_1_1,
    MQTT_5,
    Auth,
    Connack,
    Connect,
    Decoder,
    Disconnect,
    MQTTProtocolError,
    Pingreq,
    Pingresp,
    Properties,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    SubscribeOptions,
    Unsuback,
    Unsubscribe,
    encode,
    validate_topic_filter,
    validate_topic_name,
)
from fluxmq_core.scram import MECHANISM, ScramClient

from .errors import (
    ConnectError,
    ConnectionLost,
    InvalidTopic,
    PublishError,
    SubscribeError,
    describe_reason,
)
from .transport import Stream, make_ssl_context, open_stream, parse_url

__all__ = ["Client", "Message", "Subscription", "Will", "topic_matches"]

# 3.1.1 CONNACK return codes -> the MQTT 5 reason codes they mean.
_V3_CONNACK = {1: 0x84, 2: 0x85, 3: 0x88, 4: 0x86, 5: 0x87}
# A server DISCONNECT with one of these is final: reconnecting would fight another
# client for the session, or be refused again.
_FINAL_DISCONNECT = frozenset({0x87, 0x8A, 0x8E, 0x9C, 0x9D})


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT filter matching (``+``, ``#``; ``$share/<g>/`` stripped)."""
    if topic_filter.startswith("$share/"):
        topic_filter = topic_filter.split("/", 2)[2]
    fl = topic_filter.split("/")
    tl = topic.split("/")
    if topic.startswith("$") and fl[0] in ("+", "#"):
        return False
    for i, level in enumerate(fl):
        if level == "#":
            return True
        if i >= len(tl) or (level != "+" and level != tl[i]):
            return False
    return len(fl) == len(tl)


@dataclass
class Will:
    """The Last Will: published by the broker if the connection ends uncleanly."""

    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    properties: Properties | None = None


@dataclass
class Message:
    """A received PUBLISH. ``properties`` is the typed MQTT 5 property set (None under
    3.1.1); ``user_properties`` is its user properties as a dict (last value wins)."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: Properties | None = None
    packet_id: int | None = None
    _client: Client | None = field(default=None, repr=False)
    _acked: bool = field(default=False, repr=False)

    @property
    def user_properties(self) -> dict[str, str]:
        return dict(self.properties.user_properties) if self.properties else {}

    def text(self) -> str:
        return self.payload.decode("utf-8", errors="replace")

    async def ack(self) -> None:
        """Send the PUBACK of a message received on a ``manual_ack`` subscription."""
        if self._acked or self._client is None or self.packet_id is None or self.qos != 1:
            self._acked = True
            return
        self._acked = True
        await self._client._send(Puback(self.packet_id))


class Subscription:
    """An async iterator over the messages matching one subscription's filters. It
    ends when the client is closed or the subscription unsubscribed, and raises the
    error when the connection is lost for good (no reconnect, or a final refusal)."""

    def __init__(self, client: Client, filters: list[str], manual_ack: bool) -> None:
        self._client = client
        self.filters = filters
        self.manual_ack = manual_ack
        self.granted: list[int] = []
        self._queue: asyncio.Queue[Message | None] = asyncio.Queue()

    def matches(self, topic: str) -> bool:
        return any(topic_matches(f, topic) for f in self.filters)

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    async def __anext__(self) -> Message:
        item = await self._queue.get()
        if item is None:
            self._queue.put_nowait(None)  # every later read ends too
            failed = self._client._failed
            if failed is not None and not self._client._closing:
                raise failed  # the connection is gone for good: say why
            raise StopAsyncIteration
        return item

    async def get(self, timeout: float | None = None) -> Message:
        """The next message; ``TimeoutError`` after ``timeout`` seconds."""
        try:
            return await asyncio.wait_for(self.__anext__(), timeout)
        except StopAsyncIteration:
            raise ConnectionLost("the subscription ended (client closed or unsubscribed)") from None

    async def unsubscribe(self) -> None:
        await self._client.unsubscribe(*self.filters)
        self._client._subs.remove(self)
        self._queue.put_nowait(None)


@dataclass
class _Outgoing:
    packet: Publish
    future: asyncio.Future[int]
    released: bool = False  # QoS 2: PUBREC seen, PUBREL sent


class Client:
    """An MQTT 5.0 / 3.1.1 client over TCP, TLS or WebSocket.

    Use as ``async with Client(...) as c:`` or call :meth:`connect` and :meth:`close`.
    ``transport`` is ``tcp``, ``tls``, ``ws`` or ``wss``. With ``reconnect`` (default)
    a lost connection is re-made with back-off; the session (``session_expiry`` > 0 or,
    under 3.1.1, ``clean_start=False``) is resumed and messages in flight are resent.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        *,
        transport: str = "tcp",
        version: int = MQTT_5,
        client_id: str | None = None,
        clean_start: bool = True,
        session_expiry: int = 0,
        keepalive: int = 60,
        username: str | None = None,
        password: str | bytes | None = None,
        will: Will | None = None,
        ssl_context: ssl.SSLContext | None = None,
        ws_path: str = "/mqtt",
        reconnect: bool = True,
        reconnect_delay: float = 0.2,
        reconnect_max_delay: float = 5.0,
        connect_timeout: float = 10.0,
        scram: bool = False,
        properties: Properties | None = None,
        topic_aliases: bool = True,
        unclaimed_limit: int = 1000,
    ) -> None:
        if version not in (MQTT_3_1_1, MQTT_5):
            raise ValueError(f"MQTT version must be 4 (3.1.1) or 5, not {version!r}")
        if transport not in ("tcp", "tls", "ws", "wss"):
            raise ValueError(f"transport must be tcp, tls, ws or wss, not {transport!r}")
        self.host = host
        self.transport = transport
        self.port = port or {"tcp": 1883, "tls": 8883, "ws": 8083, "wss": 8084}[transport]
        self.version = version
        self.client_id = client_id if client_id is not None else "fluxmq-" + uuid.uuid4().hex[:12]
        self.clean_start = clean_start
        self.session_expiry = session_expiry
        self.keepalive = keepalive
        self.username = username
        self.password = password.encode() if isinstance(password, str) else password
        self.will = will
        self.ssl_context = ssl_context
        self.ws_path = ws_path
        self.reconnect = reconnect
        self.reconnect_delay = reconnect_delay
        self.reconnect_max_delay = reconnect_max_delay
        self.connect_timeout = connect_timeout
        self.scram = scram
        self.connect_properties = properties
        self.topic_aliases = topic_aliases
        # Messages no subscription matched (a resumed session's queued messages arrive
        # before the application subscribes again): the next matching subscribe()
        # gets them. The oldest go beyond the limit.
        self._unclaimed: deque[Message] = deque(maxlen=max(unclaimed_limit, 0))
        self.connack: Connack | None = None
        self.session_present = False
        self.reconnects = 0
        self._stream: Stream | None = None
        self._decoder: Decoder | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pinger: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._closing = False
        self._failed: BaseException | None = None
        self._ids = itertools.cycle(range(1, 65536))
        self._outgoing: dict[int, _Outgoing] = {}
        self._incoming_qos2: set[int] = set()
        self._acks: dict[int, asyncio.Future[Any]] = {}  # SUBACK / UNSUBACK
        self._subs: list[Subscription] = []
        self._sub_packets: list[Subscribe] = []  # resent when a session is not resumed
        self._pong: asyncio.Event = asyncio.Event()
        self._slot_free = asyncio.Event()  # an outgoing QoS 1/2 message completed
        self._server_disconnect: Disconnect | None = None
        self._send_lock = asyncio.Lock()
        # Topic aliases of the current connection (MQTT 5), both reset by a reconnect:
        # ours towards the broker (topic -> alias, least recently used first, at most
        # the CONNACK's Topic Alias Maximum), and the broker's towards us (alias -> topic,
        # used when CONNECT properties give a Topic Alias Maximum).
        self._aliases_out: OrderedDict[str, int] = OrderedDict()
        self._alias_max_out = 0
        self._aliases_in: dict[int, str] = {}

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Client:
        """``Client.from_url("mqtts://user:pw@host:8883")`` (see :func:`parse_url`).

        A keyword argument given as ``None`` (``username=None``, ``password=None``,
        ``ws_path=None``) does not override what the URL says; any other value does.
        """
        u = parse_url(url)
        for key, value in (
            ("username", u.username),
            ("password", u.password),
            ("ws_path", u.ws_path),
        ):
            if kwargs.get(key) is None:
                kwargs[key] = value
        return cls(u.host, u.port, transport=u.transport, **kwargs)

    # --- connection ---------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def connect(self) -> Connack:
        """Connect (once); raises :class:`ConnectError` naming what failed."""
        connack = await self._connect_once(self.clean_start)
        self._reader = asyncio.create_task(self._run(), name=f"mqtt-client-{self.client_id}")
        if self.keepalive:
            self._pinger = asyncio.create_task(self._ping_loop())
        return connack

    async def _connect_once(self, clean_start: bool) -> Connack:
        stream = await open_stream(
            self.transport,
            self.host,
            self.port,
            ssl_context=self.ssl_context,
            ws_path=self.ws_path,
            timeout=self.connect_timeout,
        )
        decoder = Decoder(version=self.version, role="client")
        scram: ScramClient | None = None
        props = self.connect_properties or Properties()
        if self.version == MQTT_5:
            if self.session_expiry:
                props = replace(props, session_expiry_interval=self.session_expiry)
            if self.scram:
                scram = ScramClient(self.username or "", (self.password or b"").decode())
                props = replace(
                    props, authentication_method=MECHANISM, authentication_data=scram.first()
                )
        will = self.will
        packet = Connect(
            client_id=self.client_id,
            clean_start=clean_start,
            keepalive=self.keepalive,
            username=None if scram else self.username,
            password=None if scram else self.password,
            will_topic=will.topic if will else None,
            will_payload=will.payload if will else b"",
            will_qos=will.qos if will else 0,
            will_retain=will.retain if will else False,
            will_properties=will.properties if will and self.version == MQTT_5 else None,
            properties=props if self.version == MQTT_5 and not props.is_empty() else None,
            protocol_level=self.version,
        )
        try:
            await stream.write(encode(packet, self.version))
            connack, early = await asyncio.wait_for(
                self._await_connack(stream, decoder, scram), self.connect_timeout
            )
        except TimeoutError:
            await stream.close()
            raise ConnectError(f"no CONNACK from {self.host}:{self.port}") from None
        except (OSError, MQTTProtocolError) as exc:
            await stream.close()
            raise ConnectError(f"connection to {self.host}:{self.port} failed: {exc}") from None
        except BaseException:
            await stream.close()
            raise
        code = connack.reason_code
        if self.version != MQTT_5:
            code = _V3_CONNACK.get(code, code if code == 0 else 0x80)
        if code != 0:
            await stream.close()
            reason = connack.properties.reason_string if connack.properties else None
            text = f"connection refused by {self.host}:{self.port}: {describe_reason(code)}"
            raise ConnectError(text + (f": {reason}" if reason else ""), code)
        self._aliases_out = OrderedDict()
        self._aliases_in = {}
        server_max = connack.properties.topic_alias_maximum if connack.properties else None
        use_aliases = self.topic_aliases and self.version == MQTT_5
        self._alias_max_out = (server_max or 0) if use_aliases else 0
        self._stream = stream
        self._decoder = decoder
        self.connack = connack
        self.session_present = connack.session_present
        if connack.properties and connack.properties.assigned_client_identifier:
            self.client_id = connack.properties.assigned_client_identifier
        self._connected.set()
        await self._resume(connack.session_present)
        for packet in early:  # what came in the same read as the CONNACK
            await self._dispatch(packet)
        return connack

    async def _await_connack(
        self, stream: Stream, decoder: Decoder, scram: ScramClient | None
    ) -> tuple[Connack, list[Any]]:
        """The CONNACK, and the packets read after it in the same chunk (a resumed
        session's queued messages often arrive with it)."""
        while True:
            data = await stream.read()
            if not data:
                raise ConnectError(f"{self.host}:{self.port} closed the connection before CONNACK")
            packets = decoder.packets(data)
            for i, packet in enumerate(packets):
                if isinstance(packet, Connack):
                    if scram and packet.reason_code == 0 and packet.properties:
                        if packet.properties.authentication_data:
                            scram.verify(packet.properties.authentication_data)
                    return packet, packets[i + 1 :]
                if isinstance(packet, Auth) and scram is not None:
                    data_in = packet.properties.authentication_data if packet.properties else b""
                    reply = Auth(
                        0x18,
                        Properties(
                            authentication_method=MECHANISM,
                            authentication_data=scram.final(data_in or b""),
                        ),
                    )
                    await stream.write(encode(reply, self.version))
                elif isinstance(packet, Disconnect):
                    raise ConnectError(
                        f"{self.host}:{self.port} disconnected: {describe_reason(packet.reason_code)}",
                        packet.reason_code,
                    )

    async def _resume(self, session_present: bool) -> None:
        """After a (re)connect: resend in-flight PUBLISH/PUBREL in order and, when the
        broker has no session for us, the subscriptions."""
        if not session_present:
            for sub in self._sub_packets:
                pid = next(self._ids)
                await self._write(replace(sub, packet_id=pid))
        for pid, out in list(self._outgoing.items()):
            if out.released:
                await self._write(Pubrel(pid))
            else:
                await self._write(replace(out.packet, dup=True))

    async def _run(self) -> None:
        """Read packets; on a lost connection reconnect (with back-off) or fail."""
        while not self._closing:
            stream, decoder = self._stream, self._decoder
            assert stream is not None and decoder is not None
            try:
                while True:
                    data = await stream.read()
                    if not data:
                        break
                    for packet in decoder.packets(data):
                        await self._dispatch(packet)
            except (OSError, MQTTProtocolError, ssl.SSLError):
                pass
            self._connected.clear()
            await stream.close()
            if self._closing:
                break
            final = self._server_disconnect
            self._server_disconnect = None
            if final is not None and final.reason_code in _FINAL_DISCONNECT:
                why = describe_reason(final.reason_code)
                self._fail(ConnectionLost(f"{self.host}:{self.port} disconnected us: {why}"))
                return
            if not self.reconnect:
                self._fail(ConnectionLost(f"connection to {self.host}:{self.port} lost"))
                return
            delay = self.reconnect_delay
            while not self._closing:
                try:
                    await self._connect_once(clean_start=False)
                    self.reconnects += 1
                    break
                except ConnectError as exc:
                    if exc.reason_code is not None:  # refused by the broker: give up
                        self._fail(exc)
                        return
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.reconnect_max_delay)

    def _fail(self, exc: BaseException) -> None:
        self._failed = exc
        for fut in itertools.chain(
            (o.future for o in self._outgoing.values()), self._acks.values()
        ):
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # whoever awaits it still gets it; nobody else is told
        for sub in self._subs:
            sub._queue.put_nowait(None)
        self._slot_free.set()

    async def _dispatch(self, packet: Any) -> None:
        if isinstance(packet, Publish):
            await self._on_publish(packet)
        elif isinstance(packet, Puback | Pubcomp):
            out = self._outgoing.pop(packet.packet_id, None)
            self._slot_free.set()
            if out is not None and not out.future.done():
                self._settle(out.future, packet)
        elif isinstance(packet, Pubrec):
            out = self._outgoing.get(packet.packet_id)
            if out is None:
                await self._write(Pubrel(packet.packet_id, 0x92))
            elif packet.reason_code >= 0x80:
                self._outgoing.pop(packet.packet_id)
                self._slot_free.set()
                self._settle(out.future, packet)
            else:
                out.released = True
                await self._write(Pubrel(packet.packet_id))
        elif isinstance(packet, Pubrel):
            self._incoming_qos2.discard(packet.packet_id)
            await self._write(Pubcomp(packet.packet_id))
        elif isinstance(packet, Suback | Unsuback):
            fut = self._acks.pop(packet.packet_id, None)
            if fut is not None and not fut.done():
                fut.set_result(packet)
        elif isinstance(packet, Pingresp):
            self._pong.set()
        elif isinstance(packet, Disconnect):
            # The read loop sees EOF next and reconnects, unless the reason is final.
            self._server_disconnect = packet

    @staticmethod
    def _settle(fut: asyncio.Future[int], packet: Any) -> None:
        if packet.reason_code >= 0x80:
            reason = packet.properties.reason_string if packet.properties else None
            fut.set_exception(PublishError(packet.reason_code, reason))
        else:
            fut.set_result(packet.reason_code)

    async def _on_publish(self, packet: Publish) -> None:
        alias = packet.properties.topic_alias if packet.properties else None
        if alias is not None:  # the broker's alias (we offered a Topic Alias Maximum)
            if packet.topic:
                self._aliases_in[alias] = packet.topic
            else:
                topic = self._aliases_in.get(alias)
                if topic is None:
                    raise MQTTProtocolError(0x82, f"the broker used unknown topic alias {alias}")
                packet = replace(packet, topic=topic)
        if packet.qos == 2:
            await self._write(Pubrec(packet.packet_id or 0))
            if packet.packet_id in self._incoming_qos2:
                return  # a duplicate of one already delivered
            self._incoming_qos2.add(packet.packet_id or 0)
        manual = False
        for sub in self._subs:
            if sub.matches(packet.topic):
                manual = manual or sub.manual_ack
        message = Message(
            packet.topic,
            packet.payload,
            packet.qos,
            packet.retain,
            packet.properties,
            packet.packet_id,
            self,
        )
        claimed = False
        for sub in self._subs:
            if sub.matches(packet.topic):
                sub._queue.put_nowait(message)
                claimed = True
        if not claimed and self._unclaimed.maxlen:
            self._unclaimed.append(message)
        if packet.qos == 1 and not manual:
            await message.ack()

    async def _ping_loop(self) -> None:
        while not self._closing:
            await asyncio.sleep(max(self.keepalive * 0.75, 0.5))
            if self.connected:
                stream = self._stream
                self._pong.clear()
                with contextlib.suppress(ConnectionLost, OSError):
                    await self._send(Pingreq())
                try:
                    await asyncio.wait_for(self._pong.wait(), max(self.keepalive * 0.5, 0.5))
                except TimeoutError:
                    # No PINGRESP: the connection is dead though no error said so;
                    # closing it wakes the read loop, which reconnects.
                    if stream is not None and stream is self._stream:
                        await stream.close()

    async def _write(self, packet: Any) -> None:
        stream = self._stream
        if stream is None:
            raise ConnectionLost("not connected")
        async with self._send_lock:
            # Aliases are chosen here, under the lock, so that the broker sees each
            # alias defined before it is used; a write to a connection already replaced
            # (it will fail) uses none, leaving the new connection's table alone.
            if isinstance(packet, Publish) and self._alias_max_out and stream is self._stream:
                packet = self._alias(packet)
            await stream.write(encode(packet, self.version))

    def _alias(self, packet: Publish) -> Publish:
        """The PUBLISH as sent with a Topic Alias: the alias alone (empty topic) once
        the broker knows it; else the topic with a new alias, replacing the least
        recently used one when all the broker allows are taken."""
        aliases = self._aliases_out
        topic = packet.topic
        props = packet.properties or Properties()
        alias = aliases.get(topic)
        if alias is not None:
            aliases.move_to_end(topic)
            return replace(packet, topic="", properties=replace(props, topic_alias=alias))
        if len(aliases) < self._alias_max_out:
            alias = len(aliases) + 1
        else:
            alias = aliases.popitem(last=False)[1]
        aliases[topic] = alias
        return replace(packet, properties=replace(props, topic_alias=alias))

    @property
    def topic_alias_maximum(self) -> int:
        """How many topic aliases this connection uses towards the broker: the
        CONNACK's Topic Alias Maximum (0 under 3.1.1, or with ``topic_aliases=False``)."""
        return self._alias_max_out

    async def _send(self, packet: Any) -> None:
        """Write when connected; while reconnecting, wait for the connection."""
        while True:
            if self._failed is not None:
                raise self._failed
            if self._closing:
                raise ConnectionLost("the client is closed")
            if self.connected:
                try:
                    await self._write(packet)
                    return
                except (OSError, ssl.SSLError):
                    if not self.reconnect:
                        raise ConnectionLost(
                            f"connection to {self.host}:{self.port} lost"
                        ) from None
            await self._connected.wait()

    async def close(self) -> None:
        """Send DISCONNECT (normal) and close; the session's in-flight state is dropped."""
        if self._closing:
            return
        self._closing = True
        if self.connected:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._write(Disconnect()), 2)
        for task in (self._pinger, self._reader):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._stream is not None:
            await self._stream.close()
        self._connected.clear()
        self._fail(ConnectionLost("the client was closed"))

    # --- publishing ---------------------------------------------------------------------

    async def publish(
        self,
        topic: str,
        payload: bytes | str = b"",
        *,
        qos: int = 0,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> int:
        """Publish; for QoS 1/2 wait for PUBACK/PUBCOMP and return its reason code
        (raises :class:`PublishError` for a failure code). Survives a reconnect: the
        message stays in flight and is resent."""
        if qos not in (0, 1, 2):
            raise ValueError(f"QoS must be 0, 1 or 2, not {qos!r}")
        if not validate_topic_name(topic):
            raise InvalidTopic(
                f"cannot publish to {topic!r}: a topic is not empty and has no + or #"
            )
        data = payload.encode() if isinstance(payload, str) else bytes(payload)
        props = properties if self.version == MQTT_5 and properties else None
        if qos == 0:
            await self._send(Publish(topic, data, 0, retain, properties=props))
            return 0
        pid = next(self._ids)
        while pid in self._outgoing:
            pid = next(self._ids)
        packet = Publish(topic, data, qos, retain, packet_id=pid, properties=props)
        if self._failed is not None:
            raise self._failed
        if self._closing:
            raise ConnectionLost("the client is closed")
        # The broker's Receive Maximum bounds our unacknowledged QoS 1/2 publishes.
        while len(self._outgoing) >= self.receive_maximum:
            self._slot_free.clear()
            await self._slot_free.wait()
            if self._failed is not None:
                raise self._failed
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._outgoing[pid] = _Outgoing(packet, fut)
        # Written now when connected; otherwise (or if the write fails) the reconnect's
        # _resume() sends it with every other message in flight, in order, once.
        if self.connected:
            with contextlib.suppress(OSError, ssl.SSLError, ConnectionLost):
                await self._write(packet)
        return await fut

    @property
    def receive_maximum(self) -> int:
        """How many QoS 1/2 publishes the broker takes unacknowledged (CONNACK)."""
        props = self.connack.properties if self.connack else None
        return (props.receive_maximum if props else None) or 65535

    @property
    def in_flight(self) -> int:
        """Outgoing QoS 1/2 messages not yet acknowledged."""
        return len(self._outgoing)

    # --- subscribing --------------------------------------------------------------------

    async def subscribe(
        self,
        *filters: str,
        qos: int = 1,
        manual_ack: bool = False,
        no_local: bool = False,
        retain_as_published: bool = False,
        retain_handling: int = 0,
        properties: Properties | None = None,
    ) -> Subscription:
        """Subscribe and return an async iterator over the matching messages.

        ``manual_ack``: QoS 1 messages are PUBACKed only by ``message.ack()`` (what
        queue consumers need: the PUBACK settles a queue delivery)."""
        if not filters:
            raise ValueError("subscribe needs at least one topic filter")
        for f in filters:
            if not validate_topic_filter(f):
                raise InvalidTopic(f"bad topic filter {f!r}: + and # must be whole levels, # last")
        sub = Subscription(self, list(filters), manual_ack)
        self._subs.append(sub)
        if self._unclaimed:
            kept: deque[Message] = deque(maxlen=self._unclaimed.maxlen)
            for message in self._unclaimed:
                if sub.matches(message.topic):
                    sub._queue.put_nowait(message)
                else:
                    kept.append(message)
            self._unclaimed = kept
        opts = SubscribeOptions(qos, no_local, retain_as_published, retain_handling)
        packet = Subscribe(
            0,
            tuple((f, opts) for f in filters),
            properties if self.version == MQTT_5 and properties else None,
        )
        try:
            suback = await self._request(packet)
        except BaseException:
            self._subs.remove(sub)
            raise
        for f, code in zip(filters, suback.reason_codes, strict=False):
            if code >= 0x80:
                self._subs.remove(sub)
                raise SubscribeError(f, code)
        sub.granted = list(suback.reason_codes)
        self._sub_packets.append(packet)
        return sub

    async def unsubscribe(self, *filters: str) -> None:
        await self._request(Unsubscribe(0, tuple(filters)))
        self._sub_packets = [
            p for p in self._sub_packets if not {f for f, _ in p.subscriptions} & set(filters)
        ]

    async def _request(self, packet: Subscribe | Unsubscribe) -> Any:
        pid = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._acks[pid] = fut
        await self._send(replace(packet, packet_id=pid))
        return await fut

    # --- request / response --------------------------------------------------------------

    async def request(
        self,
        topic: str,
        payload: bytes | str = b"",
        *,
        timeout: float = 10.0,
        qos: int = 1,
        response_topic: str | None = None,
    ) -> Message:
        """Publish with a Response Topic and Correlation Data (MQTT 5) and return the
        first reply carrying that correlation data."""
        if self.version != MQTT_5:
            raise NotImplementedError("request/response needs MQTT 5 (response topic property)")
        correlation = uuid.uuid4().bytes
        reply_to = response_topic or f"fluxmq/reply/{self.client_id}/{uuid.uuid4().hex[:8]}"
        sub = await self.subscribe(reply_to, qos=qos)
        try:
            await self.publish(
                topic,
                payload,
                qos=qos,
                properties=Properties(response_topic=reply_to, correlation_data=correlation),
            )
            async with asyncio.timeout(timeout):
                async for message in sub:
                    if message.properties and message.properties.correlation_data == correlation:
                        return message
            raise ConnectionLost("the client closed before a reply came")
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def respond(self, request: Message, payload: bytes | str, *, qos: int = 1) -> None:
        """Answer a request message on its Response Topic with its Correlation Data."""
        props = request.properties
        if props is None or not props.response_topic:
            raise ValueError("the message has no response topic")
        await self.publish(
            props.response_topic,
            payload,
            qos=qos,
            properties=Properties(correlation_data=props.correlation_data),
        )

    # --- queues (FluxMQ $queue/ topics) --------------------------------------------------

    async def publish_to_queue(
        self,
        name: str,
        payload: bytes | str,
        *,
        key: str = "",
        qos: int = 1,
        properties: Properties | None = None,
    ) -> int:
        """Append to queue ``name`` (``$queue/<name>/<key>``); returns once the broker's
        PUBACK says the append is durable (raises :class:`PublishError` if refused)."""
        if not name or "/" in name or "+" in name or "#" in name:
            raise ValueError(f"bad queue name {name!r}")
        topic = f"$queue/{name}/{key}" if key else f"$queue/{name}"
        return await self.publish(topic, payload, qos=qos, properties=properties)

    async def consume(
        self,
        name: str,
        *,
        group: str | None = None,
        cursor: str | int | None = None,
        pattern: str = "#",
        qos: int = 1,
    ) -> AsyncIterator[QueueMessage]:
        """Join consumer group ``group`` of queue ``name`` and yield its messages;
        settle each with ``ack()``, ``nack(delay=...)`` or ``reject()``."""
        user: list[tuple[str, str]] = []
        if group:
            user.append(("consumer-group", group))
        if cursor is not None:
            user.append(("cursor", str(cursor)))
        if user and self.version != MQTT_5:
            raise NotImplementedError("consumer groups and cursors need MQTT 5 user properties")
        sub = await self.subscribe(
            f"$queue/{name}/{pattern}",
            qos=qos,
            manual_ack=True,
            properties=Properties(user_properties=tuple(user)) if user else None,
        )
        try:
            async for message in sub:
                yield QueueMessage(message, name, self)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _control(self, queue: str, verb: str, fields: dict[str, Any]) -> None:
        topic = f"$queue/{queue}/{verb}"
        if self.version == MQTT_5:
            props = Properties(user_properties=tuple((k, str(v)) for k, v in fields.items()))
            await self.publish(topic, b"", qos=1, properties=props)
        else:
            body = {k.replace("-", "_"): v for k, v in fields.items()}
            await self.publish(topic, json.dumps(body).encode(), qos=1)

    async def commit(self, queue: str, offset: int, *, group: str | None = None) -> None:
        """Record a stream group's position (``$queue/<name>/$commit``)."""
        fields: dict[str, Any] = {"message-id": f"{queue}:{offset}"}
        if group:
            fields["group-id"] = group
        await self._control(queue, "$commit", fields)


class QueueMessage:
    """A queue delivery: the message plus its id, offset, group and delivery count."""

    def __init__(self, message: Message, queue: str, client: Client) -> None:
        self.message = message
        self.queue = queue
        self._client = client
        up = message.user_properties
        self.message_id: str = up.get("message-id", "")
        self.group: str | None = up.get("group-id")
        self.offset: int | None = int(up["offset"]) if "offset" in up else None
        # None when the broker sent no metadata (MQTT 3.1.1 deliveries).
        self.delivery_count: int | None = (
            int(up["delivery-count"]) if "delivery-count" in up else None
        )

    @property
    def payload(self) -> bytes:
        return self.message.payload

    @property
    def topic(self) -> str:
        return self.message.topic

    @property
    def routing_key(self) -> str:
        prefix = f"$queue/{self.queue}/"
        return self.topic[len(prefix) :] if self.topic.startswith(prefix) else ""

    def _fields(self, verb: str) -> dict[str, Any]:
        if not self.message_id:
            # Under MQTT 3.1.1 a delivery carries no user properties, so its message id
            # is unknown. A control publish without one is refused by the broker, and
            # 3.1.1 has no negative PUBACK to say so: the PUBACK that follows would then
            # settle the message as acknowledged instead.
            raise NotImplementedError(
                f"{verb} needs the delivery's message id, which the broker sends only to "
                "MQTT 5 consumers; under MQTT 3.1.1 a queue delivery is settled by ack() "
                "(its PUBACK) only"
            )
        fields: dict[str, Any] = {"message-id": self.message_id}
        if self.group:
            fields["group-id"] = self.group
        return fields

    async def ack(self) -> None:
        """Settle: the PUBACK of the delivery."""
        await self.message.ack()

    async def nack(self, *, delay: float | None = None, requeue: bool = True) -> None:
        """Give back for redelivery (after ``delay`` seconds, or the queue's backoff);
        ``requeue=False`` dead-letters."""
        fields = self._fields("nack()")
        if delay is not None:
            fields["delay"] = delay
        if not requeue:
            fields["requeue"] = "false"
        await self._client._control(self.queue, "$nack", fields)
        await self.message.ack()  # frees the receive window; settles nothing now

    async def reject(self, reason: str | None = None) -> None:
        """Dead-letter to ``$dlq/<queue>``."""
        fields = self._fields("reject()")
        if reason:
            fields["reason"] = reason
        await self._client._control(self.queue, "$reject", fields)
        await self.message.ack()

    async def commit(self) -> None:
        """Commit the group's position at this message (stream queues)."""
        if self.offset is None:
            raise NotImplementedError(
                "commit() needs the delivery's offset, which the broker sends only to MQTT 5 "
                "consumers (under MQTT 3.1.1 use client.commit(queue, offset))"
            )
        await self._client.commit(self.queue, self.offset, group=self.group)


def client_from_options(
    url: str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    cafile: str | None = None,
    certfile: str | None = None,
    keyfile: str | None = None,
    insecure: bool = False,
    tls: bool = False,
    **kwargs: Any,
) -> Client:
    """Build a :class:`Client` from CLI-style options (a URL or host/port, TLS files)."""
    wants_tls = tls or bool(cafile or certfile or insecure)
    ctx = make_ssl_context(cafile, certfile, keyfile, insecure) if wants_tls else None
    if url:
        u = parse_url(url)
        if ctx is None and u.transport in ("tls", "wss"):
            ctx = make_ssl_context()
        # -u/-P win over the URL's user and password; None means "not given".
        if kwargs.get("username") is None:
            kwargs["username"] = u.username
        if kwargs.get("password") is None:
            kwargs["password"] = u.password
        return Client(
            u.host,
            port or u.port,
            transport=u.transport,
            ws_path=u.ws_path,
            ssl_context=ctx,
            **kwargs,
        )
    return Client(host, port, transport="tls" if ctx else "tcp", ssl_context=ctx, **kwargs)
