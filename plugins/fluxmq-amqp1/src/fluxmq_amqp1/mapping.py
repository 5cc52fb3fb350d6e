"""AMQP 1.0 addresses and messages <-> the core's topics, queues and ``Message``
(sans-IO: no asyncio).

Addresses (see ``docs/protocols/amqp1.md``)::

    topic/<a/b>  topic://<a/b>                   router topic, MQTT form (+ and # in filters)
    /topics/<a.b>  /topic/<a.b>                  router topic, AMQP routing-key form
    /exchanges/amq.topic/<a.b>                   (dots for levels, * and # in patterns)
    $queue/<name>[/<pattern>]                    core queue <name> (Go FluxMQ form)
    $dlq/<name>  $queue/$dlq/<name>              the dead-letter queue of <name>
    /queues/<name>  /queue/<name>                core queue (RabbitMQ 4 form)
    queue/<name>  queue://<name>
    anything else                                [amqp1] auto_create decides; a
                                                 "queue" or "topic" capability on the
                                                 terminus overrides it

Messages: an AMQP 1.0 message keeps its bytes (``properties["amqp1"]``), so AMQP 1.0
receivers get it back exactly; the fields other protocols understand are copied into
the ``Message`` (table in the doc). A message from another protocol is built into
an AMQP message with a ``data`` body.

W3C trace context: ``traceparent``/``tracestate`` application properties become user
properties like any other, which is where a tracing plugin reads and replaces them.
Its replacement reaches AMQP 1.0 receivers of a message that kept its bytes too: the
values received are remembered (``properties["amqp1-trace"]``) and, when the user
properties carry others at delivery, the application properties are rewritten.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import unquote

from fluxmq_amqp1.codec.composites import (
    Data,
    Header,
    Properties,
)
from fluxmq_amqp1.codec.message import AMQPMessage, decode_message, encode_message
from fluxmq_amqp1.codec.types import AMQPError, symbol, timestamp, ulong
from fluxmq_core.message import Message
from fluxmq_core.router.topics import (
    TopicError,
    amqp_pattern_to_filter,
    amqp_routing_key_to_topic,
    validate_topic_filter,
    validate_topic_name,
)

__all__ = ["Address", "from_core", "resolve", "to_core"]

NOT_FOUND = "amqp:not-found"
INVALID_FIELD = "amqp:invalid-field"
NOT_IMPLEMENTED = "amqp:not-implemented"

_TOPIC_MQTT = ("topic://", "topic/")
_TOPIC_AMQP = ("/exchanges/amq.topic/", "/topics/", "/topic/")
#: a receiver's source naming the topic exchange without a routing key: the topic
#: is its legacy binding filter (as RabbitMQ's AMQP 1.0 plugin binds it)
_EXCHANGES = ("/exchanges/amq.topic", "/exchange/amq.topic")
_QUEUE = ("$queue/", "/queues/", "/queue/", "queue://", "queue/")


class Address:
    """A resolved address: ``kind`` is ``topic`` or ``queue``; ``name`` the topic
    (or filter) or the queue name; ``pattern`` a queue's routing-key filter or
    publish routing key."""

    __slots__ = ("kind", "name", "pattern", "text")

    def __init__(self, kind: str, name: str, pattern: str = "", text: str = "") -> None:
        self.kind = kind
        self.name = name
        self.pattern = pattern
        self.text = text

    def __repr__(self) -> str:
        return f"Address({self.kind}, {self.name!r}, {self.pattern!r})"


def resolve(
    address: Any, capabilities: list[str] | None, auto_create: str, *, filter: bool
) -> Address:
    """The node an address names; ``filter`` for a receiver's source (wildcards
    allowed). Raises AMQPError for what cannot be served."""
    if not isinstance(address, str) or not address:
        raise AMQPError(INVALID_FIELD, f"address {address!r} is not a non-empty string")
    text = address
    if address == "$management":
        return Address("management", address, "", text)
    if address.startswith(("$dlq/", "$queue/$dlq/")):
        rest = address.removeprefix("$queue/")[len("$dlq/") :]
        name, _, pattern = rest.partition("/")
        return _queue("$dlq/" + name if name else "", pattern, text, filter)
    for prefix in _QUEUE:
        if address.startswith(prefix):
            rest = address[len(prefix) :]
            if prefix.startswith("/"):
                rest = unquote(rest)
            name, _, pattern = rest.partition("/")
            return _queue(name, pattern, text, filter)
    for prefix in _TOPIC_MQTT:
        if address.startswith(prefix):
            return _topic(address[len(prefix) :], text, filter)
    for prefix in _TOPIC_AMQP:
        if address.startswith(prefix):
            key = unquote(address[len(prefix) :])
            try:
                topic = amqp_pattern_to_filter(key) if filter else amqp_routing_key_to_topic(key)
            except TopicError as exc:
                raise AMQPError(INVALID_FIELD, f"address {address!r}: {exc}") from None
            return _topic(topic, text, filter)
    if filter and address in _EXCHANGES:
        # the exchange itself: the topic comes from the source's legacy binding filter
        return Address("topic", "", "", text)
    if address.startswith("/exchanges/"):
        raise AMQPError(NOT_FOUND, f"no exchange in {address!r}: only amq.topic is bridged")
    caps = {str(c) for c in capabilities or ()}
    mode = "queue" if "queue" in caps else "topic" if "topic" in caps else auto_create
    if mode == "queue":
        name, _, pattern = address.partition("/")
        return _queue(name, pattern, text, filter)
    if mode == "topic":
        return _topic(address, text, filter)
    raise AMQPError(
        NOT_FOUND,
        f"no node {address!r} ([amqp1] auto_create = none): use topic/<topic> or $queue/<name>",
    )


def _queue(name: str, pattern: str, text: str, filter: bool) -> Address:
    if not name:
        raise AMQPError(INVALID_FIELD, f"address {text!r} names no queue")
    if pattern:
        try:
            (validate_topic_filter if filter else validate_topic_name)(pattern)
        except TopicError as exc:
            raise AMQPError(INVALID_FIELD, f"address {text!r}: {exc}") from None
    return Address("queue", name, pattern, text)


def _topic(topic: str, text: str, filter: bool) -> Address:
    try:
        (validate_topic_filter if filter else validate_topic_name)(topic)
    except TopicError as exc:
        raise AMQPError(INVALID_FIELD, f"address {text!r}: {exc}") from None
    return Address("topic", topic, "", text)


# --- messages ------------------------------------------------------------------------------


def _correlation(v: Any) -> bytes | None:
    if v is None:
        return None
    if isinstance(v, bytes):
        return v
    if isinstance(v, uuid.UUID):
        return str(v).encode()
    return str(v).encode("utf-8")


def _user_value(v: Any) -> str | None:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str | int | float):
        return str(v)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return None


def reply_topic(reply_to: Any) -> str | None:
    """An AMQP reply-to as the core's response topic: the topic of a topic
    address, ``$queue/<name>`` for a queue address, the text otherwise."""
    if not isinstance(reply_to, str) or not reply_to:
        return None
    try:
        a = resolve(reply_to, None, "queue", filter=False)
    except AMQPError:
        return reply_to
    if a.kind == "topic":
        return a.name
    return f"$queue/{a.name}" + (f"/{a.pattern}" if a.pattern else "")


def to_core(
    msg: AMQPMessage, raw: bytes, topic: str, settled: bool, client: str, now: float
) -> Message:
    """The core ``Message`` of a received AMQP message published to ``topic``."""
    h = msg.header
    p = msg.properties
    extra: dict[str, Any] = {"amqp1": raw}
    expires_at = None
    if h is not None:
        if h.ttl:
            expires_at = now + h.ttl / 1000.0
        if h.priority != 4:
            extra["priority"] = int(h.priority)
    user = None
    ap = msg.application_properties
    if ap:
        user = []
        for k, v in ap.items():
            sv = _user_value(v)
            if sv is not None:
                user.append((str(k), sv))
        if "traceparent" in ap:
            extra["amqp1-trace"] = _trace_key(user)
    return Message(
        topic,
        msg.payload_bytes(),
        0 if settled else 1,
        properties=extra,
        user_properties=user or None,
        content_type=str(p.content_type) if p is not None and p.content_type else None,
        correlation_data=_correlation(p.correlation_id) if p is not None else None,
        response_topic=reply_topic(p.reply_to) if p is not None else None,
        expires_at=expires_at,
        origin_protocol="amqp1",
        origin_client=client,
    )


#: W3C trace context keys (application properties / user properties).
TRACE_KEYS = ("traceparent", "tracestate")


def _trace_key(user: list[tuple[str, str]] | Any) -> str:
    """The trace context in user properties as one comparable string ("" for none)."""
    tp = ts = ""
    for k, v in user:
        if k == "traceparent":
            tp = v
        elif k == "tracestate":
            ts = v
    return f"{tp}\n{ts}" if tp else ""


def address_of(topic: str) -> str:
    """The AMQP address to show as ``to`` for a core topic."""
    if topic.startswith(("$queue/", "$dlq/")):
        return topic
    return "topic/" + topic


def from_core(message: Message, now: float) -> bytes:
    """The transfer payload that delivers ``message`` to an AMQP 1.0 receiver."""
    extra = message.properties or {}
    count = extra.get("delivery-count", 1)
    raw = extra.get("amqp1")
    if raw is not None:
        recount = isinstance(count, int) and count > 1
        trace = None
        up = message.user_properties
        if up:
            trace = _trace_key(up)
            if trace == extra.get("amqp1-trace", ""):
                trace = None  # as received: nothing to rewrite
        if not recount:
            if trace is None:
                return bytes(raw)
            cached = message.encoded.get("amqp1") if message.encoded is not None else None
            if cached is not None:
                return bytes(cached)  # one rewrite per traced publish, whatever the fan-out
        try:
            msg = decode_message(bytes(raw))
        except AMQPError:
            return bytes(raw)
        if recount:
            h = msg.header or Header()
            h.delivery_count = count - 1
            msg.header = h
        if trace is not None and up:
            props_in = dict(msg.application_properties or {})
            props_in.pop("tracestate", None)
            props_in.update((k, v) for k, v in up if k in TRACE_KEYS)
            msg.application_properties = props_in
        out = encode_message(msg)
        if not recount:
            if message.encoded is None:
                message.encoded = {}
            message.encoded["amqp1"] = out
        return out
    cache = message.encoded
    if cache is not None and count == 1:
        hit = cache.get("amqp1")
        if hit is not None:
            return bytes(hit)
    header = Header(durable=message.qos > 0)
    priority = extra.get("priority")
    if isinstance(priority, int) and not isinstance(priority, bool) and 0 <= priority <= 255:
        header.priority = priority
    if message.expires_at is not None:
        header.ttl = max(0, int((message.expires_at - now) * 1000))
    if isinstance(count, int) and count > 1:
        header.delivery_count = count - 1
    props = Properties(to=address_of(message.topic))
    mid = extra.get("message-id")
    if isinstance(mid, str):
        props.message_id = mid
    if message.content_type:
        props.content_type = symbol(message.content_type)
    if message.correlation_data is not None:
        try:
            props.correlation_id = message.correlation_data.decode("utf-8")
        except UnicodeDecodeError:
            props.correlation_id = message.correlation_data
    if message.response_topic:
        props.reply_to = address_of(message.response_topic)
    if message.timestamp:
        props.creation_time = timestamp(int(message.timestamp * 1000))
    app = dict(message.user_properties) if message.user_properties else None
    annotations: dict[Any, Any] = {symbol("x-opt-origin-protocol"): message.origin_protocol or ""}
    offset = extra.get("x-stream-offset")
    if isinstance(offset, int):
        annotations[symbol("x-stream-offset")] = ulong(offset)
    out = encode_message(
        AMQPMessage(
            [Data(message.payload)],
            header=header,
            message_annotations=annotations,
            properties=props,
            application_properties=app,
        )
    )
    if count == 1 and "message-id" not in extra:
        if message.encoded is None:
            message.encoded = {}
        message.encoded["amqp1"] = out
    return out
