"""AMQP content properties <-> the core :class:`~fluxmq_core.message.Message`.

A message published over AMQP keeps its property bytes exactly as received
(``message.properties["amqp"]``), so AMQP consumers get every property back
verbatim; the fields other protocols understand are copied into the Message:

=====================  ==========================================================
AMQP                   Message (what MQTT 5 sends)
=====================  ==========================================================
content-type           ``content_type`` (Content Type)
correlation-id         ``correlation_data`` (Correlation Data, UTF-8)
reply-to               ``response_topic`` (Response Topic; ``.``/``/`` swapped)
headers                ``user_properties`` (string values; nested tables skipped)
expiration (ms)        ``expires_at`` (Message Expiry Interval on send)
delivery-mode 2        ``qos`` 1 (1 or unset: QoS 0)
priority               ``properties["priority"]``
=====================  ==========================================================

A message from another protocol gets AMQP properties built from those fields the
other way round. What this module does not hold: routing (``topology.py``).
"""

from __future__ import annotations

import datetime
import decimal
from typing import Any

from pamqp import commands

from fluxmq_amqp091.codec import encode_properties
from fluxmq_core.message import Message
from fluxmq_core.router.topics import (
    TopicError,
    amqp_routing_key_to_topic,
    topic_to_amqp_routing_key,
)

PROTOCOL = "amqp091"
Properties = commands.Basic.Properties

_SIMPLE = (str, int, float, decimal.Decimal, datetime.datetime)


def _header_str(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, _SIMPLE):
        return str(value)
    return None


# routing key -> its MQTT topic ("" when it has none), bounded: a publisher mostly
# repeats a few keys, and mapping one validates the topic each time.
_TOPICS: dict[str, str] = {}
_TOPICS_MAX = 4096


def _topic_of(routing_key: str) -> str:
    topic = _TOPICS.get(routing_key)
    if topic is None:
        try:
            topic = amqp_routing_key_to_topic(routing_key)
        except TopicError:
            topic = ""
        if len(_TOPICS) >= _TOPICS_MAX:
            _TOPICS.clear()
        _TOPICS[routing_key] = topic
    return topic


def to_message(
    props: Properties,
    raw: bytes,
    body: bytes,
    exchange: str,
    routing_key: str,
    now: float,
    client: str,
) -> Message:
    """The Message for an AMQP publish. Its topic is the routing key mapped to an
    MQTT topic (``a.b`` -> ``a/b``), or empty when the key has no topic form (an
    empty key, ``+`` or ``#`` in it): such a message is never bridged to topics."""
    topic = _topic_of(routing_key)
    extra: dict[str, Any] = {"amqp": raw, "exchange": exchange, "routing_key": routing_key}
    user = None
    headers = props.headers
    if headers:
        user = []
        for k, v in headers.items():
            s = _header_str(v)
            if s is not None:
                user.append((str(k), s))
    if props.priority is not None:
        extra["priority"] = props.priority
    expires = None
    if props.expiration:
        try:
            ms = int(props.expiration)
        except ValueError:
            ms = -1
        if ms >= 0:
            expires = now + ms / 1000.0
    response = None
    if props.reply_to:
        try:
            response = amqp_routing_key_to_topic(props.reply_to)
        except TopicError:
            response = None
    corr = props.correlation_id
    return Message(
        topic,
        body,
        1 if props.delivery_mode == 2 else 0,
        properties=extra,
        user_properties=user or None,
        content_type=props.content_type or None,
        correlation_data=corr.encode("utf-8") if corr else None,
        response_topic=response,
        expires_at=expires,
        origin_protocol=PROTOCOL,
        origin_client=client,
    )


def from_message(message: Message, now: float) -> bytes:
    """Raw property bytes to deliver ``message`` with: verbatim for AMQP-published
    messages, built from the Message fields otherwise."""
    extra = message.properties
    if extra is not None:
        raw = extra.get("amqp")
        if raw is not None:
            if "x-stream-offset" in extra:
                return _with_stream_offset(raw, extra["x-stream-offset"])
            return raw
    p = Properties()
    if message.content_type:
        p.content_type = message.content_type
    if message.correlation_data:
        p.correlation_id = message.correlation_data.decode("utf-8", "replace")[:255]
    if message.response_topic:
        try:
            p.reply_to = topic_to_amqp_routing_key(message.response_topic)[:255]
        except TopicError:
            pass
    headers: dict[str, Any] = {}
    if message.user_properties:
        for k, v in message.user_properties:
            headers[k] = v
    if extra:
        if "x-stream-offset" in extra:
            headers["x-stream-offset"] = int(extra["x-stream-offset"])
        if "x-source-topic" in extra:
            headers["x-source-topic"] = str(extra["x-source-topic"])
        pr = extra.get("priority")
        if isinstance(pr, int) and 0 <= pr <= 255:
            p.priority = pr
    if headers:
        p.headers = headers
    p.delivery_mode = 2 if message.qos else 1
    left = None if message.expires_at is None else max(0, int((message.expires_at - now) * 1000))
    if left is not None:
        p.expiration = str(left)
    return encode_properties(p)


def _with_stream_offset(raw: bytes, offset: Any) -> bytes:
    """Add the ``x-stream-offset`` header RabbitMQ puts on stream deliveries."""
    from pamqp.header import ContentHeader

    try:
        ch = ContentHeader()
        ch.unmarshal(b"\x00\x3c\x00\x00" + b"\x00" * 8 + raw)
        p = ch.properties
        headers = dict(p.headers or {})
        headers["x-stream-offset"] = int(offset)
        p.headers = headers
        return encode_properties(p)
    except Exception:
        return raw


def routing_of(message: Message, default_exchange: str = "") -> tuple[str, str]:
    """(exchange, routing key) to show on a delivery of ``message``."""
    extra = message.properties
    if extra is not None and "routing_key" in extra:
        return str(extra.get("exchange", "")), str(extra["routing_key"])
    topic = message.topic
    try:
        return default_exchange, topic_to_amqp_routing_key(topic) if topic else ""
    except TopicError:
        return default_exchange, topic
