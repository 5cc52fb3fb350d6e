"""The MQTT face of the core queue manager: ``$queue/`` topics (sans-IO).

Topics (the Go FluxMQ's conventions, DESIGN.md section 9):

* **PUBLISH** ``$queue/<name>/<routing-key>`` appends to queue ``<name>`` through the
  core's publish path (``BrokerContext.publish_queued``, the same for every
  protocol), which creates an undeclared queue as ``[queue_manager] auto_create``
  says. The PUBACK / PUBREC is reserved with ``Connection.defer_ack`` and goes out
  only once the append future resolved (durable under the queue's ``durability``;
  one callback per connection answers every append a group commit made durable);
  5.0 clients get 0x97 when the queue is full, 0x90 (Topic Name invalid) for an
  invalid or unknown queue (``auto_create = "none"``, a missing ``$dlq/``) and 0x80
  when the message is too large or the append failed; 3.x clients are acknowledged
  and the message is dropped (there is no negative PUBACK in 3.1.1), except for a
  failed sync, which closes the connection so the client sends the message again.
* **PUBLISH** ``$queue/<name>/[...]/$ack|$nack|$reject|$commit`` settles a delivery
  named by the ``message-id`` (``<queue>:<offset>``) and ``group-id`` user properties,
  or, for 3.1.1, a JSON payload ``{"message_id": ..., "group_id": ...}``
  (``requeue``: false turns a nack into a dead-letter, ``delay``: seconds before a
  nacked message is redelivered). Without a group the client's own consumer group
  on that queue is used. A control verb that is not the last level is malformed and
  dropped, never appended.
* **SUBSCRIBE** ``$queue/<name>/<pattern>`` joins a consumer group (an undeclared
  queue is created as ``auto_create`` says; under ``"none"`` the SUBACK refuses it): the
  ``consumer-group`` user property (5.0), else the client id. A pattern other than
  ``#`` is a delivery-time filter on the routing key, and, as in the Go FluxMQ, the
  effective group is ``<group>@<pattern>`` (a group has one filter). ``cursor``
  (``first``, ``last``, ``offset:N``, ``N``, ``timestamp:T``) positions a stream
  group. ``$dlq/<name>/#`` consumes a dead-letter queue the same way.

Deliveries go through the session like any other message (its window, its queue),
at the subscription's granted QoS, topic ``$queue/<name>/<routing-key>`` (captured
messages: ``$queue/<name>/<source topic>``; dead letters ``$dlq/<name>/<key>``),
with user properties ``message-id``, ``group-id``, ``queue``, ``offset``,
``delivery-count`` and, where they apply, ``x-source-topic``, ``x-stream-*`` and the
``_dlq_*`` details (5.0). A consumer's credit is the client's receive window. The
PUBACK (QoS 1) or PUBCOMP (QoS 2) of a delivery acknowledges it (those of one
received chunk together, with ``QueueManager.ack_many``, at the end of the chunk or
before anything else here touches the queues); QoS 0 subscriptions are
auto-acknowledged as they are handed over (at most once). A plain classic delivery
to a 5.0 client is encoded here, with the ``group-id``/``queue`` user-property
bytes cached per subscriber.

Lifetimes: a lost connection cancels its consumers (the queue manager gives their
pending messages to the group's other consumers) and drops the undelivered queue
messages from the session, which would otherwise be sent twice; a persistent
session re-joins its groups when it reconnects, also after a restart (the group is
stored with the subscription).

What this module does not hold: queue semantics (``fluxmq_core.queues``), packet
parsing or any I/O. It uses no event loop itself: it only attaches callbacks to the
append futures the queue manager returns.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from fluxmq_core.queues import (
    CONTROL_VERBS,
    DLQ_PREFIX,
    QUEUE_TOPIC_PREFIX,
    InvalidQueueNameError,
    QueueConfig,
    QueueError,
    QueueFullError,
    QueuesUnavailableError,
    QueueTopicError,
    UnknownQueueError,
    is_queue_topic,
    parse_cursor,
    parse_message_id,
    routing_key,
    split_queue_topic,
)
from fluxmq_core.router import Delivery
from fluxmq_mqtt.codec import MQTT_5, MQTTEncodeError, PublishTemplate
from fluxmq_mqtt.codec.primitives import MAX_VARINT, encode_varint
from fluxmq_mqtt.session import PROTOCOL, options_to_record

if TYPE_CHECKING:
    from fluxmq_core.message import Message
    from fluxmq_core.queues import Consumer
    from fluxmq_core.router import SubscriptionOptions
    from fluxmq_mqtt.codec import Properties as PropertiesT
    from fluxmq_mqtt.connection import Connection
    from fluxmq_mqtt.registry import SessionRegistry
    from fluxmq_mqtt.session import Session

__all__ = ["QueueFace", "QueueSpec", "is_queue_topic", "publish_refusal", "split_queue_topic"]

log = logging.getLogger("fluxmq.mqtt")
#: In ``message.properties`` of a delivery made here (never sent on the wire).
MARK = "mqtt.queue"
#: Delivery metadata sent as 5.0 user properties, in this order.
DELIVERY_KEYS = (
    "message-id",
    "group-id",
    "queue",
    "offset",
    "delivery-count",
    "x-source-topic",
    "x-stream-offset",
    "x-stream-timestamp",
)
#: The extra key in a stored subscription record that names its consumer group.
GROUP_KEY = "queue_group"


def publish_refusal(exc: QueueError) -> int:
    """The MQTT 5 PUBACK/PUBREC reason code of a queue publish the core refused."""
    if isinstance(exc, QueueFullError):
        return 0x97  # Quota exceeded
    if isinstance(exc, (InvalidQueueNameError, UnknownQueueError, QueueTopicError)):
        return 0x90  # Topic Name invalid
    return 0x80  # Unspecified error: too large, queues unavailable


class QueueSpec:
    """One queue subscription of a session: what a (re-)join needs."""

    __slots__ = ("filter", "group", "pattern", "qos", "queue")

    def __init__(
        self, topic_filter: str, queue: str, pattern: str | None, group: str, qos: int
    ) -> None:
        self.filter = topic_filter
        self.queue = queue
        self.pattern = pattern  # None: every routing key
        self.group = group  # as given (consumer-group or the client id)
        self.qos = qos

    @property
    def effective_group(self) -> str:
        return self.group if self.pattern is None else f"{self.group}@{self.pattern}"


class QueueSubscriber:
    """The queue manager's subscriber for one queue subscription of a session."""

    __slots__ = (
        "client_id",
        "delivery",
        "face",
        "fixed",
        "handle",
        "pending",
        "protocol",
        "session",
        "spec",
        "topics",
    )

    def __init__(self, face: QueueFace, session: Session, spec: QueueSpec) -> None:
        self.face = face
        self.session = session
        self.spec = spec
        self.client_id = session.client_id
        self.protocol = PROTOCOL
        self.handle: Consumer | None = None
        self.delivery: Delivery | None = None  # the same for every delivery
        # (group-id, queue, their encoded user properties) of the last delivery
        self.fixed: tuple[str, str, bytes] | None = None
        # offset -> delivery count of deliveries a PUBACK/PUBCOMP may settle: a late
        # PUBACK of an earlier delivery of the same offset settles nothing.
        self.pending: dict[int, int] = {}
        # (topic stored, delivery topic) of the last delivery; None for a ``$dlq/``
        # queue, whose delivery topic depends on the message's dead-letter keys
        self.topics: tuple[str, str] | None = (
            None if spec.queue.startswith(DLQ_PREFIX) else ("", "")
        )

    def deliver(self, message: Message, delivery: Delivery) -> None:
        """Called by the queue manager with a private, decorated copy."""
        props = message.properties
        assert props is not None
        spec = self.spec
        qos = spec.qos
        props[MARK] = True
        message.qos = qos
        message.retain = False
        topic = message.topic
        topics = self.topics
        if topics is None:
            message.topic = delivery_topic(spec.queue, topic, props)
        elif topics[0] == topic:
            message.topic = topics[1]
        else:
            out = delivery_topic(spec.queue, topic, props)
            self.topics = (topic, out)
            message.topic = out
        session = self.session
        if session.version == MQTT_5:
            if len(props) == _PLAIN_KEYS:  # the five delivery keys and MARK only
                self._plain_v5(message, props, qos)
            else:
                extra = [(k, str(props[k])) for k in DELIVERY_KEYS if k in props]
                extra += [(k, str(v)) for k, v in props.items() if k.startswith("_dlq_")]
                message.user_properties = list(message.user_properties or ()) + extra
        if qos:
            pending = self.pending
            if (
                len(pending) > 64
                and self.handle is not None
                and len(pending) > 2 * len(self.handle.inflight)
            ):
                inflight = self.handle.inflight
                self.pending = pending = {o: c for o, c in pending.items() if o in inflight}
            pending[props["offset"]] = props["delivery-count"]
        cached = self.delivery
        if cached is None or cached.qos != qos:
            cached = self.delivery = Delivery(qos)
        session.deliver(message, cached)

    def _plain_v5(self, message: Message, props: dict[str, Any], qos: int) -> None:
        """The 5.0 user properties of a plain classic delivery (no stream, capture or
        dead-letter keys), and, for a message without other 5.0 properties or an
        expiry, its PUBLISH encoded here and cached under the key the outbound writer
        looks up (``_template_v5``): the ``group-id`` and ``queue`` pairs are encoded
        once per subscriber, no ``Properties`` is built."""
        mid = props["message-id"]
        group = props["group-id"]
        queue = props["queue"]
        offset = str(props["offset"])
        count = str(props["delivery-count"])
        own = message.user_properties
        extra = [
            ("message-id", mid),
            ("group-id", group),
            ("queue", queue),
            ("offset", offset),
            ("delivery-count", count),
        ]
        message.user_properties = list(own) + extra if own else extra
        if (
            message.expires_at is not None
            or message.content_type is not None
            or message.response_topic is not None
            or message.correlation_data is not None
            or message.payload_format is not None
        ):
            return  # the outbound writer encodes it (remaining expiry, other properties)
        try:
            fixed = self.fixed
            if fixed is None or fixed[0] != group or fixed[1] != queue:
                pairs = _pair("group-id", group) + _pair("queue", queue)
                fixed = self.fixed = (group, queue, pairs)
            parts = [_pair(k, v) for k, v in own] if own else []
            parts += (_MID_KEY, _field(mid), fixed[2], _OFFSET_KEY, _digits(offset))
            parts += (_COUNT_KEY, _digits(count))
        except ValueError:
            return  # a field too long or not encodable: the generic encoder says so
        tmpl = _v5_template(message.topic, message.payload, qos, b"".join(parts))
        if tmpl is not None:
            message.encoded = {(5, qos, False, (), None, None, False): tmpl}


#: ``len(props)`` of a plain classic delivery: the five delivery keys and MARK.
_PLAIN_KEYS = 6
_MID_KEY = b"\x26\x00\x0amessage-id"
_OFFSET_KEY = b"\x26\x00\x06offset"
_COUNT_KEY = b"\x26\x00\x0edelivery-count"
_new = object.__new__
# delivery topic -> its encoded field (2-byte length + UTF-8), bounded
_TOPIC_FIELDS: dict[str, bytes] = {}
_TOPIC_FIELDS_MAX = 4096


def _field(text: str) -> bytes:
    """A UTF-8 string field: 2-byte length and the bytes (at most 65,535)."""
    raw = text.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise ValueError("string longer than 65,535 bytes")
    return len(raw).to_bytes(2, "big") + raw


def _digits(text: str) -> bytes:
    """:func:`_field` of a decimal number (ASCII, short)."""
    return bytes((0, len(text))) + text.encode("ascii")


def _topic_field(topic: str) -> bytes:
    """:func:`_field` of a delivery topic, cached (bounded): few topics repeat."""
    field = _TOPIC_FIELDS.get(topic)
    if field is None:
        field = _field(topic)
        if len(_TOPIC_FIELDS) >= _TOPIC_FIELDS_MAX:
            _TOPIC_FIELDS.clear()
        _TOPIC_FIELDS[topic] = field
    return field


def _varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    if n < 0x4000:  # two bytes: a delivery's remaining length, usually
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    return encode_varint(n)


def _pair(key: str, value: str) -> bytes:
    """A User Property (0x26) with its key and value."""
    return b"\x26" + _field(key) + _field(value)


def _v5_template(topic: str, payload: bytes, qos: int, props: bytes) -> PublishTemplate | None:
    """A 5.0 PUBLISH (not retained, no DUP) of ``topic`` with the encoded property
    block ``props``: the bytes ``PublishTemplate`` builds from the same
    properties. None when a field is too long (the generic encoder reports it)."""
    try:
        topic_field = _topic_field(topic)
        props_field = _varint(len(props)) + props
    except (ValueError, MQTTEncodeError):
        return None
    size = len(topic_field) + (2 if qos else 0) + len(props_field) + len(payload)
    if size > MAX_VARINT:
        return None
    head = bytes((0x30 | (qos << 1),)) + _varint(size) + topic_field
    tmpl = _new(PublishTemplate)
    tmpl.data = b"".join((head, b"\x00\x00" if qos else b"", props_field, payload))
    tmpl.offset = len(head)
    tmpl.qos = qos
    return tmpl


def delivery_topic(queue: str, topic: str, props: dict[str, Any]) -> str:
    """The topic a queue delivery is sent with (see the module docstring)."""
    if queue.startswith(DLQ_PREFIX):
        original = props.get("_dlq_original_queue")
        key = routing_key(original, topic) if isinstance(original, str) else topic
        return f"{queue}/{key}" if key else queue
    prefix = QUEUE_TOPIC_PREFIX + queue
    if topic == prefix or topic.startswith(prefix + "/"):
        return topic
    return f"{prefix}/{topic}"


class QueueFace:
    """The ``$queue/`` handling of one session registry (``registry.queue_face``)."""

    def __init__(self, registry: SessionRegistry) -> None:
        self.registry = registry
        # client id -> topic filter -> spec (what persistent sessions re-join)
        self.specs: dict[str, dict[str, QueueSpec]] = {}
        # session -> topic filter -> live consumer
        self.live: dict[Session, dict[str, QueueSubscriber]] = {}
        # group -> message ids acknowledged by PUBACK / PUBCOMP, not settled yet
        self.acks: dict[str, list[str]] = {}

    @property
    def manager(self) -> Any:
        return getattr(self.registry.context, "queues", None)

    # -- PUBLISH -----------------------------------------------------------------------

    def publish(self, conn: Connection, message: Message, qos: int, pid: int | None) -> None:
        """A PUBLISH to a ``$queue/`` or ``$dlq/`` topic: settle (control topics) or
        append through the core's publish path, then acknowledge."""
        if self.acks:
            self.flush_acks()
        session = conn.session
        assert session is not None  # a PUBLISH is handled only once connected
        topic = message.topic
        verb = ""
        if topic[topic.rfind("/") + 1 :] in CONTROL_VERBS:  # else not a control topic
            name, rest = split_queue_topic(topic)
            verb = rest.rpartition("/")[2]
        if verb in CONTROL_VERBS:
            code, text = self._control(conn, name, verb, message)
            if qos == 2 and pid is not None and code < 0x80:
                session.hold_inbound(pid, None)
            conn.ack_now(qos, pid, code, text)
            return
        try:
            fut = self.registry.context.publish_queued(message)
        except QueueError as exc:
            self.registry.stats.messages_dropped += 1
            log.debug("queue publish of %r by %r refused: %s", message.topic, conn.client_id, exc)
            conn.ack_now(qos, pid, publish_refusal(exc), str(exc))
            return
        if not qos or pid is None:  # QoS 0 (a QoS 1/2 PUBLISH always has a packet id)
            fut.add_done_callback(_log_failure)
            return
        if qos == 2:
            session.hold_inbound(pid, None)
        # The head of a non-empty ``queue_acks`` is unanswered and has the callback
        # (``_appended``): one per connection, not one per message.
        armed = bool(conn.queue_acks)
        ack = conn.defer_ack(qos, pid)
        ack.fut = fut
        if not armed:
            fut.add_done_callback(lambda f: _appended(conn))

    # -- control topics ------------------------------------------------------------------

    def _control(self, conn: Connection, name: str, verb: str, message: Message) -> tuple[int, str]:
        manager = self.manager
        if manager is None:
            return 0x80, "queues are not available"
        fields: dict[str, Any] = dict(message.user_properties or ())
        if "message-id" not in fields and message.payload:
            try:
                body = json.loads(message.payload)
            except (ValueError, UnicodeDecodeError):
                body = None
            if isinstance(body, dict):
                for key, value in body.items():
                    fields.setdefault(key.replace("_", "-"), value)
        mid = fields.get("message-id")
        if mid is None and "offset" in fields:
            mid = f"{name}:{fields['offset']}"
        if not isinstance(mid, str):
            return 0x80, f"{verb} needs a message-id ('<queue>:<offset>')"
        try:
            qname, offset = parse_message_id(mid)
            if qname != name:
                return 0x80, f"message-id {mid!r} is not of queue {name!r}"
            group = fields.get("group-id")
            if group is None:
                group = self._group_of(conn, name)
            group = str(group)
            if verb == "$ack":
                ok = manager.ack(name, group, offset)
            elif verb == "$nack":
                requeue = fields.get("requeue", True) not in (False, "false", "0", 0)
                delay = fields.get("delay")
                ok = manager.nack(
                    name,
                    group,
                    offset,
                    requeue=requeue,
                    delay=None if delay is None else float(delay),
                )
            elif verb == "$reject":
                ok = manager.reject(name, group, offset)
            else:
                ok = manager.commit(name, group, offset)
        except (QueueError, ValueError, TypeError) as exc:
            return 0x80, str(exc)
        sub = self._subscriber(conn.session, name, group)
        if sub is not None:
            sub.pending.pop(offset, None)
        if not ok:
            return 0x80, f"{mid} is not pending in group {group!r}"
        return 0, ""

    def _group_of(self, conn: Connection, queue: str) -> str:
        """The group of the client's own consumer on ``queue``, else its client id."""
        session = conn.session
        live = self.live.get(session, {}) if session is not None else {}
        groups = {
            s.handle.group for s in live.values() if s.spec.queue == queue and s.handle is not None
        }
        if len(groups) > 1:
            raise QueueError(f"this client consumes {queue!r} in several groups; give group-id")
        return groups.pop() if groups else conn.client_id

    def _subscriber(
        self, session: Session | None, queue: str, group: str
    ) -> QueueSubscriber | None:
        if session is None:
            return None
        for sub in self.live.get(session, {}).values():
            if sub.spec.queue == queue and sub.handle is not None and sub.handle.group == group:
                return sub
        return None

    # -- settlement by PUBACK / PUBCOMP --------------------------------------------------

    def settled(self, conn: Connection, message: Message) -> None:
        """The client acknowledged ``message`` (PUBACK or PUBCOMP)."""
        props = message.properties
        if not props or not props.get(MARK):
            return
        mid = props.get("message-id")
        # ``decorate`` sets ``queue`` and ``offset`` with the id made of them
        queue = props.get("queue")
        offset = props.get("offset")
        if type(offset) is not int or not isinstance(queue, str) or not isinstance(mid, str):
            try:
                queue, offset = parse_message_id(mid)
            except QueueError:
                return
        assert isinstance(mid, str)  # parse_message_id takes strings only
        sub = self._subscriber(conn.session, queue, str(props.get("group-id")))
        if sub is None or sub.handle is None:
            return
        if sub.pending.get(offset) != props.get("delivery-count"):
            return  # the PUBACK of an earlier delivery of the same message
        del sub.pending[offset]
        if offset not in sub.handle.inflight:
            return  # settled otherwise meanwhile (a control topic, a timeout)
        # Settled with the chunk's other PUBACKs by ``flush_acks`` (end of the chunk).
        group = sub.handle.group
        batch = self.acks.get(group)
        if batch is None:
            self.acks[group] = [mid]
        else:
            batch.append(mid)

    def flush_acks(self) -> None:
        """Settle the PUBACKs / PUBCOMPs gathered by :meth:`settled` (one chunk's),
        with one ``ack_many`` per group: one committed-offset update and dispatcher
        wake per queue for the batch. Called at the end of ``Connection.receive``
        and before anything else here looks at queue state."""
        acks = self.acks
        if not acks:
            return
        self.acks = {}
        manager = self.manager
        if manager is None:
            return
        for group, mids in acks.items():
            manager.ack_many(group, mids)

    # -- SUBSCRIBE / UNSUBSCRIBE ---------------------------------------------------------

    def subscribe(
        self,
        conn: Connection,
        topic_filter: str,
        options: SubscriptionOptions,
        props: PropertiesT | None,
    ) -> int:
        """Join the group of ``topic_filter``; the SUBACK code (granted QoS or an error)."""
        if self.acks:
            self.flush_acks()
        session = conn.session
        assert session is not None
        name, pattern = split_queue_topic(topic_filter)
        fields = dict(props.user_properties) if props is not None else {}
        group = fields.get("consumer-group") or conn.client_id
        text = fields.get("cursor")
        cursor: str | int | None = text
        if text is not None and text.strip().isdigit():
            cursor = int(text)
        spec = QueueSpec(
            topic_filter, name, None if pattern in ("", "#") else pattern, group, options.qos
        )
        old = self.live.get(session, {}).pop(topic_filter, None)
        if old is not None:
            self._cancel(old)
        try:
            if cursor is not None:
                parse_cursor(cursor)
            self._join(session, spec, cursor, conn.send_window)
        except QueueError as exc:
            log.info("queue subscription %r of %r refused: %s", topic_filter, conn.client_id, exc)
            return 0x80
        self.specs.setdefault(session.client_id, {})[topic_filter] = spec
        session.set_subscription(topic_filter, options)
        if session.persistent:
            self._save(session, spec, options)
        return options.qos

    def _save(self, session: Session, spec: QueueSpec, options: SubscriptionOptions) -> None:
        record = options_to_record(options)
        record[GROUP_KEY] = spec.group
        self.registry.store.save_subscription(session.client_id, spec.filter, record)

    def _join(self, session: Session, spec: QueueSpec, cursor: Any, credit: int) -> None:
        manager = self.manager
        if manager is None:
            raise QueuesUnavailableError("queues are not available")
        q = manager.get(spec.queue)
        if q is None:
            if spec.queue.startswith(DLQ_PREFIX):
                manager.declare(spec.queue, QueueConfig(type="classic", dlq=False))
            else:
                manager.auto_declare(spec.queue, "a subscription")
            q = manager.get(spec.queue)
        sub = QueueSubscriber(self, session, spec)
        sub.handle = manager.consume(
            spec.queue,
            spec.effective_group,
            sub,
            filter=spec.pattern,
            credit=credit,
            cursor=cursor if q.is_stream else None,
            auto_commit=spec.qos == 0,
        )
        self.live.setdefault(session, {})[spec.filter] = sub

    def _cancel(self, sub: QueueSubscriber) -> None:
        manager = self.manager
        if sub.handle is not None and manager is not None:
            manager.cancel(sub.handle)
        sub.pending.clear()

    def unsubscribe(self, session: Session, topic_filter: str) -> bool:
        """UNSUBSCRIBE of a queue filter: leave the group; False when not subscribed."""
        if self.acks:
            self.flush_acks()
        spec = self.specs.get(session.client_id, {}).pop(topic_filter, None)
        sub = self.live.get(session, {}).pop(topic_filter, None)
        if sub is not None:
            self._cancel(sub)
        if spec is None and sub is None:
            return False
        session.remove_subscription(topic_filter)
        return True

    # -- session lifetimes ---------------------------------------------------------------

    def restored(
        self,
        session: Session,
        topic_filter: str,
        options: SubscriptionOptions,
        record: dict[str, Any],
    ) -> None:
        """A stored queue subscription of a session restored at start-up."""
        name, pattern = split_queue_topic(topic_filter)
        group = record.get(GROUP_KEY) or session.client_id
        self.specs.setdefault(session.client_id, {})[topic_filter] = QueueSpec(
            topic_filter, name, None if pattern in ("", "#") else pattern, str(group), options.qos
        )

    def attached(self, conn: Connection, session: Session) -> None:
        """A connection took the session (after CONNACK): (re-)join its groups."""
        if self.acks:
            self.flush_acks()
        live = self.live.get(session)
        if live:  # a takeover that continues the session: same consumers, new window
            for sub in live.values():
                if sub.handle is not None:
                    sub.handle.set_credit(conn.send_window)
            return
        for spec in list(self.specs.get(session.client_id, {}).values()):
            try:
                self._join(session, spec, None, conn.send_window)
            except QueueError as exc:
                log.warning("%r could not re-join queue %r: %s", session.client_id, spec.queue, exc)

    def detached(self, session: Session) -> None:
        """The session's connection is gone: cancel its consumers (their pending
        messages go to the group's other consumers) and forget the queue messages
        the session still holds for it, which the group delivers again."""
        if self.acks:
            self.flush_acks()
        live = self.live.pop(session, None)
        if not live:
            return
        for sub in live.values():
            self._cancel(sub)
        store = self.registry.store
        cid = session.client_id
        for pid in [pid for pid, e in session.inflight.items() if _is_delivery(e.message)]:
            del session.inflight[pid]
            if session.persistent:
                store.delete_inflight(cid, pid)
        if session.queue and any(_is_delivery(item[1]) for item in session.queue):
            gone = [item[0] for item in session.queue if _is_delivery(item[1]) and item[0]]
            session.queue = deque(item for item in session.queue if not _is_delivery(item[1]))
            if gone and session.persistent:
                store.remove_queued(cid, gone)

    def session_ended(self, session: Session) -> None:
        """The session is gone for good: leave every group, forget its specs."""
        self.detached(session)
        if self.registry.sessions.get(session.client_id) in (None, session):
            self.specs.pop(session.client_id, None)


def _appended(conn: Connection) -> None:
    """The append future of the first unanswered ack of ``conn`` is done: answer it
    and every later one whose append is done too (a group commit makes many durable
    at once), write what is due in one go, and wait on the next unanswered one."""
    acks = conn.queue_acks
    if not acks:
        return
    for ack in acks:
        fut = ack.fut
        if ack.done or fut is None or not fut.done():
            continue
        ack.fut = None
        if fut.cancelled() or fut.exception() is not None:
            if conn.version < MQTT_5:
                # No negative ack in 3.x: closing makes the client send it again.
                conn.close("queue append failed: the message was not acknowledged", will=True)
            conn.answer_ack(ack, 0x80, "queue append failed")
        else:
            conn.answer_ack(ack)
    conn.write_due_acks()
    if acks:
        head = acks[0].fut
        if head is not None:
            head.add_done_callback(lambda f: _appended(conn))


def _is_delivery(message: Message) -> bool:
    props = message.properties
    return bool(props and props.get(MARK))


def _log_failure(fut: Any) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("QoS 0 queue append failed: %s", fut.exception())
