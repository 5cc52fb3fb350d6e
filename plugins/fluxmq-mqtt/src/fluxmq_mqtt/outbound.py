"""Outbound PUBLISH encoding for one connection, sans-IO: messages in, bytes appended.

:class:`OutboundWriter` is the half of :class:`~fluxmq_mqtt.connection.Connection`
that the session calls on the hot path: :meth:`~OutboundWriter.write_publish` appends
one PUBLISH to the connection's ``out`` buffer. Encoding happens once per *shape*
(protocol version, QoS, retain, subscription ids, remaining expiry, topic alias,
whether the topic name is sent) and the resulting
:class:`~fluxmq_mqtt.codec.PublishTemplate` is cached on ``Message.encoded``, so a
fan-out to many connections of the same shape reuses the same bytes; the packet id
and DUP flag are patched into the output buffer in place.

Outbound topic aliases (MQTT 5): the client's Topic Alias Maximum bounds how many
aliases we may have defined towards it. Each topic gets an alias the first time it
is sent (the PUBLISH carries the topic name *and* the alias, which defines the
mapping on the client); later PUBLISHes to it carry the alias and an empty topic
name. When every alias is in use, the least recently used mapping is replaced: the
next PUBLISH for a new topic carries the new topic name with the old alias number,
which redefines it on the client (MQTT 5.0 section 3.3.2.3.4). A mapping changes
only once the PUBLISH that defines it is actually written (a message dropped for
the client's Maximum Packet Size changes nothing), so the client's view and ours
never differ.

What this module does not do: decide whether to send (the session's window and
queue, ``session.py``), inbound packets (``connection.py``), any I/O.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable
from itertools import accumulate
from typing import TYPE_CHECKING, Any

from fluxmq_core.message import Message
from fluxmq_mqtt.codec import MQTT_5, Properties, PublishRun, PublishTemplate
from fluxmq_mqtt.codec.encoder import _publish_parts
from fluxmq_mqtt.codec.primitives import encode_varint
from fluxmq_mqtt.session import PROTOCOL

#: Pending output (bytes) at which ``wakeup`` is called again although a flush is
#: already pending, and the adapter writes at once instead of at the end of the chunk
#: or loop tick: big enough for few system calls, small enough that no deferred flush
#: lets ``outbound_buffer`` fill up.
FLUSH_AT = 64 * 1024

# 3.1.1 template cache keys by qos * 2 + retain: no tuple built per message.
_V4_KEYS = ((4, 0, False), (4, 0, True), (4, 1, False), (4, 1, True), (4, 2, False), (4, 2, True))
# topic -> its encoded topic field (2-byte length + UTF-8), bounded.
_TOPIC_FIELDS: dict[str, bytes] = {}
_TOPIC_FIELDS_MAX = 4096
_new = object.__new__


class _NoOutput(bytes):
    """The type of :data:`NO_OUTPUT`: an empty ``bytes`` whose ``+=`` gives a new
    ``bytearray`` (so ``conn.out += data`` makes the connection's own buffer)."""

    __slots__ = ()

    def __iadd__(self, data: Any) -> bytearray:  # type: ignore[misc, override]
        return bytearray(data)

    def clear(self) -> None:
        """Nothing to clear (as ``bytearray.clear`` of an empty buffer)."""


#: A connection's ``out`` while nothing is pending: one shared empty value instead of
#: an empty ``bytearray`` (56 bytes) on every idle connection; the adapter puts it
#: back after each write (``MQTTProtocol.idle_out``). ``out += data`` replaces it
#: with a ``bytearray``; code that keeps ``out`` in a local variable to write into
#: it in place first replaces it itself (``if out is NO_OUTPUT``).
NO_OUTPUT: Any = _NoOutput()


def _v4_template(topic: str, payload: bytes, qos: int, retain: bool) -> PublishTemplate:
    """``PublishTemplate(topic, payload, qos, retain)`` for 3.1/3.1.1, without the
    generic encoder's per-call work (the topic field is cached per topic)."""
    field = _TOPIC_FIELDS.get(topic)
    if field is None:
        raw = topic.encode("utf-8")
        if len(raw) > 0xFFFF:
            return PublishTemplate(topic, payload, qos, retain)  # raises the encode error
        field = len(raw).to_bytes(2, "big") + raw
        if len(_TOPIC_FIELDS) >= _TOPIC_FIELDS_MAX:
            _TOPIC_FIELDS.clear()
        _TOPIC_FIELDS[topic] = field
    first = 0x30 | (qos << 1) | (1 if retain else 0)
    size = len(field) + len(payload) + (2 if qos else 0)
    if size < 0x80:
        head = bytes((first, size)) + field
    elif size <= 0x0FFFFFFF:
        head = bytes((first,)) + encode_varint(size) + field
    else:
        return PublishTemplate(topic, payload, qos, retain)  # raises the encode error
    tmpl = _new(PublishTemplate)
    tmpl.data = head + b"\x00\x00" + payload if qos else head + payload
    tmpl.offset = len(head)
    tmpl.qos = qos
    return tmpl


if TYPE_CHECKING:
    from fluxmq_mqtt.registry import SessionRegistry

__all__ = ["NO_OUTPUT", "OutboundWriter", "RunDelivery"]


class RunDelivery:
    """What the subscribers of one :class:`~fluxmq_mqtt.codec.PublishRun` share:
    its encodings per outbound shape, and its messages as
    :class:`~fluxmq_core.message.Message` objects, each made only if something needs
    one (a drop reported to ``fluxmq_message_dropped``, a subscriber that takes
    topic aliases) and then the same object for every subscriber, as one publish
    would give them."""

    __slots__ = ("run", "client_id", "clock", "_messages", "_shapes")

    def __init__(self, run: PublishRun, client_id: str, clock: Callable[[], float]) -> None:
        self.run = run
        self.client_id = client_id
        self.clock = clock
        self._messages: dict[int, Message] | None = None
        self._shapes: dict[tuple[bool, tuple[int, ...]], tuple[Any, list[int], int]] | None = None

    def message(self, k: int) -> Message:
        """The run's ``k``-th message, as ``Connection._on_publish`` would build it."""
        made = self._messages
        if made is None:
            made = self._messages = {}
        m = made.get(k)
        if m is None:
            run = self.run
            m = made[k] = Message(
                run.topic,
                run.payloads[k],
                0,
                False,
                origin_protocol=PROTOCOL,
                origin_client=self.client_id,
                timestamp=self.clock(),
            )
        return m

    def encoding(self, v5: bool, ids: tuple[int, ...]) -> tuple[Any, list[int], int]:
        """``(data, ends, base)``: the run's QoS 0 PUBLISHes encoded for a 3.1.1
        (``v5`` False) or 5.0 subscriber with these subscription ids, back to back;
        packet ``k`` is ``data[ends[k - 1]:ends[k]]`` (``base`` for the first). When
        the shape is the one the publisher used, that is its own bytes."""
        run = self.run
        if v5 == run.v5 and not ids:
            return run.buf, run.ends, run.start
        shapes = self._shapes
        if shapes is None:
            shapes = self._shapes = {}
        key = (v5, ids)
        found = shapes.get(key)
        if found is None:
            props = None
            if ids:
                # As ``_template_v5`` builds them for a message without properties.
                props = Properties(subscription_identifiers=ids, user_properties=())
            _first, field, block = _publish_parts(
                run.topic, 0, False, False, props, MQTT_5 if v5 else 4
            )
            vh = field + block
            fixed = len(vh)
            heads: dict[int, bytes] = {}
            parts: list[bytes] = []
            for payload in run.payloads:
                size = fixed + len(payload)
                head = heads.get(size)
                if head is None:
                    head = heads[size] = b"\x30" + encode_varint(size) + vh
                parts.append(head)
                parts.append(payload)
            ends = list(
                accumulate(len(parts[i]) + len(parts[i + 1]) for i in range(0, len(parts), 2))
            )
            found = shapes[key] = (b"".join(parts), ends, 0)
        return found


class OutboundWriter:
    """Output state and PUBLISH encoding of a connection (a base of ``Connection``).

    ``out`` is the bytes waiting for the adapter's next write; ``out_limit`` the
    outbound buffer bound (set to -1 once the connection closes, so nothing more is
    written after a DISCONNECT); ``paused`` mirrors the transport's backpressure.
    ``wakeup(conn)`` is called once until the adapter flushes when bytes are added
    from outside the connection's own ``receive``.
    """

    __slots__ = (
        "out",
        "out_limit",
        "paused",
        "wakeup",
        "flush_pending",
        "max_out_packet",
        "alias_max_out",
        "out_aliases",
    )

    # Provided by Connection.
    registry: SessionRegistry
    version: int
    client_id: str

    def _init_outbound(self, out_limit: int) -> None:
        self.out: bytearray = NO_OUTPUT
        self.out_limit = out_limit
        self.paused = False
        self.wakeup: Any = None
        self.flush_pending = False
        self.max_out_packet = 0  # the client's Maximum Packet Size; 0 = none given
        self.alias_max_out = 0  # the client's Topic Alias Maximum
        # topic -> alias, least recently used first; None when the client takes none.
        self.out_aliases: OrderedDict[str, int] | None = None

    def set_client_limits(
        self, maximum_packet_size: int | None, topic_alias_maximum: int | None
    ) -> None:
        """What the client's CONNECT allows us to send."""
        if maximum_packet_size is not None:
            self.max_out_packet = maximum_packet_size
        if topic_alias_maximum:
            self.alias_max_out = topic_alias_maximum
            self.out_aliases = OrderedDict()

    def has_room(self) -> bool:
        return not self.paused and len(self.out) < self.out_limit

    def _wake(self) -> None:
        if not self.flush_pending and self.wakeup is not None:
            self.flush_pending = True
            self.wakeup(self)

    def write_pubrel(self, pid: int) -> None:
        self.out += b"\x62\x02" + pid.to_bytes(2, "big")
        self._wake()

    def write_publish(
        self,
        message: Message,
        qos: int,
        retain: bool,
        ids: tuple[int, ...],
        pid: int | None = None,
        dup: bool = False,
    ) -> bool:
        """Append one PUBLISH; False (and counted as dropped) when it would exceed the
        client's Maximum Packet Size."""
        enc = message.encoded
        alias = victim = None
        tmpl: PublishTemplate | None
        if self.version < MQTT_5:
            key = _V4_KEYS[qos * 2 + retain]
            if enc is None:
                tmpl = _v4_template(message.topic, message.payload, qos, retain)
                message.encoded = {key: tmpl}
            else:
                tmpl = enc.get(key)
                if tmpl is None:
                    tmpl = enc[key] = _v4_template(message.topic, message.payload, qos, retain)
        else:
            if enc is None:
                enc = message.encoded = {}
            if self.out_aliases is None:
                tmpl = self._template_v5(message, enc, qos, retain, ids, None, False)
            else:
                aliases = self.out_aliases
                topic = message.topic
                alias = aliases.get(topic)
                if alias is not None:
                    aliases.move_to_end(topic)
                    tmpl = self._template_v5(message, enc, qos, retain, ids, alias, False)
                    alias = None  # nothing to record
                else:
                    if len(aliases) < self.alias_max_out:
                        alias = len(aliases) + 1
                    else:
                        victim = next(iter(aliases))
                        alias = aliases[victim]
                    tmpl = self._template_v5(message, enc, qos, retain, ids, alias, True)
        data = tmpl.data
        if self.max_out_packet and len(data) > self.max_out_packet:
            registry = self.registry
            registry.stats.messages_dropped += 1
            if registry.events.on_dropped:
                registry.events.message_dropped(
                    message, PROTOCOL, self.client_id, "larger than client's maximum packet size"
                )
            return False
        if alias is not None:  # this PUBLISH (re)defines ``alias`` on the client
            # ``aliases`` is self.out_aliases: only that branch above sets ``alias``.
            if victim is not None:
                del aliases[victim]
            aliases[message.topic] = alias
        out = self.out
        if out is NO_OUTPUT:
            out = self.out = bytearray()
        pos = len(out)
        out += data
        if qos:
            off = pos + tmpl.offset
            assert pid is not None  # QoS > 0 always comes with a packet id (one compare)
            out[off] = pid >> 8
            out[off + 1] = pid & 0xFF
            if dup:
                out[pos] |= 0x08
        registry = self.registry
        stats = registry.stats
        stats.messages_sent += 1
        stats.publish_sent += 1
        if qos == 0 and registry.events.on_delivered:
            registry.events.message_delivered(message, PROTOCOL, self.client_id)
        if not self.flush_pending:
            if self.wakeup is not None:
                self.flush_pending = True
                self.wakeup(self)
        elif len(out) >= FLUSH_AT and self.wakeup is not None:
            self.wakeup(self)  # the adapter writes now rather than at the tick's end
        return True

    def write_run(self, run: PublishRun, ids: tuple[int, ...], shared: RunDelivery) -> int:
        """:meth:`write_publish` of each message of ``run`` from ``run.done`` on (QoS 0,
        not retained, subscription ``ids``), each only while the connection has room
        (:meth:`has_room`, as ``Session.deliver`` checks it): returns the index of
        the first message that found none (``len(run)`` when all fit).

        The same bytes, counters and wake-ups as one call per message, with the
        messages that stay below ``FLUSH_AT`` appended as one slice: whenever
        ``out`` is below ``FLUSH_AT`` and a flush is already pending, neither the
        room check nor a wake-up can fire before the message that reaches it."""
        k = run.done
        n = len(run.ends)
        if self.out_aliases is not None:
            # Topic aliases are decided per message: one write_publish each.
            while k < n:
                if self.paused or len(self.out) >= self.out_limit:
                    return k
                self.write_publish(shared.message(k), 0, False, ids)
                k += 1
            return n
        v5 = self.version == MQTT_5
        if v5 == run.v5 and not ids:
            data, ends, base = run.buf, run.ends, run.start  # the publisher's own bytes
        else:
            data, ends, base = shared.encoding(v5, ids)
        view = memoryview(data)
        a = ends[k - 1] if k else base
        limit = self.out_limit
        max_packet = self.max_out_packet
        bulk = FLUSH_AT <= limit and not max_packet
        wake = self.wakeup
        sent = 0
        while k < n:
            out = self.out
            size = len(out)
            if self.paused or size >= limit:
                break
            if out is NO_OUTPUT:
                out = self.out = bytearray()
            if bulk and size < FLUSH_AT and self.flush_pending:
                # Every message up to the one that reaches FLUSH_AT, at once.
                j = bisect_left(ends, a + FLUSH_AT - size, k)
                stop = j + 1 if j < n else n
                b = ends[stop - 1]
                out += view[a:b]
                sent += stop - k
                k = stop
                a = b
                if j < n and wake is not None:
                    wake(self)  # the adapter writes now rather than at the tick's end
                continue
            b = ends[k]
            if max_packet and b - a > max_packet:
                registry = self.registry
                registry.stats.messages_dropped += 1
                if registry.events.on_dropped:
                    registry.events.message_dropped(
                        shared.message(k),
                        PROTOCOL,
                        self.client_id,
                        "larger than client's maximum packet size",
                    )
            else:
                out += view[a:b]
                sent += 1
                if not self.flush_pending:
                    if wake is not None:
                        self.flush_pending = True
                        wake(self)
                elif len(out) >= FLUSH_AT and wake is not None:
                    wake(self)
            a = b
            k += 1
        if sent:
            stats = self.registry.stats
            stats.messages_sent += sent
            stats.publish_sent += sent
        return k

    def _template_v5(
        self,
        message: Message,
        enc: dict,
        qos: int,
        retain: bool,
        ids: tuple[int, ...],
        alias: int | None,
        with_topic: bool,
    ) -> PublishTemplate:
        """The cached 5.0 encoding of ``message`` in this shape. ``alias`` with
        ``with_topic`` defines the alias; ``alias`` alone uses it (empty topic)."""
        expiry = None
        if message.expires_at is not None:
            expiry = message.remaining_expiry(self.registry.clock())
        key = (5, qos, retain, ids, expiry, alias, with_topic)
        tmpl = enc.get(key)
        if tmpl is None:
            props = None
            if (
                ids
                or expiry is not None
                or alias is not None
                or message.user_properties
                or message.content_type is not None
                or message.response_topic is not None
                or message.correlation_data is not None
                or message.payload_format is not None
            ):
                props = Properties(
                    payload_format_indicator=message.payload_format,
                    message_expiry_interval=expiry,
                    content_type=message.content_type,
                    response_topic=message.response_topic,
                    correlation_data=message.correlation_data,
                    subscription_identifiers=ids,
                    topic_alias=alias,
                    user_properties=tuple(message.user_properties or ()),
                )
            name = "" if alias is not None and not with_topic else message.topic
            tmpl = enc[key] = PublishTemplate(name, message.payload, qos, retain, props, MQTT_5)
        return tmpl
