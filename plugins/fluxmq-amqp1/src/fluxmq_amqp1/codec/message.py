"""The AMQP 1.0 message format (part 3): a transfer payload as a sequence of
sections, decoded to :class:`AMQPMessage` and encoded back.

Sections come in the spec's order: header, delivery-annotations,
message-annotations, properties, application-properties, the body (one or more
``data``, one or more ``amqp-sequence``, or exactly one ``amqp-value``), footer.
Anything else in a payload (a value that is not a section, sections out of order,
mixed body kinds) is ``amqp:decode-error``.
"""

from __future__ import annotations

from typing import Any

from fluxmq_amqp1.codec.composites import (
    AmqpSequence,
    AmqpValue,
    ApplicationProperties,
    Data,
    DeliveryAnnotations,
    Footer,
    Header,
    MessageAnnotations,
    Properties,
)
from fluxmq_amqp1.codec.types import DECODE_ERROR, AMQPError, decode_value

__all__ = ["AMQPMessage", "decode_message", "encode_message"]

_ORDER = {
    Header: 0,
    DeliveryAnnotations: 1,
    MessageAnnotations: 2,
    Properties: 3,
    ApplicationProperties: 4,
    Data: 5,
    AmqpSequence: 5,
    AmqpValue: 5,
    Footer: 6,
}


class AMQPMessage:
    """A bare message with its annotations. ``body`` is a list of :class:`Data`,
    a list of :class:`AmqpSequence`, or a list of one :class:`AmqpValue`."""

    __slots__ = (
        "header",
        "delivery_annotations",
        "message_annotations",
        "properties",
        "application_properties",
        "body",
        "footer",
    )

    def __init__(
        self,
        body: list[Any] | None = None,
        *,
        header: Header | None = None,
        delivery_annotations: dict[Any, Any] | None = None,
        message_annotations: dict[Any, Any] | None = None,
        properties: Properties | None = None,
        application_properties: dict[Any, Any] | None = None,
        footer: dict[Any, Any] | None = None,
    ) -> None:
        self.header = header
        self.delivery_annotations = delivery_annotations
        self.message_annotations = message_annotations
        self.properties = properties
        self.application_properties = application_properties
        self.body = body if body is not None else []
        self.footer = footer

    def payload_bytes(self) -> bytes:
        """The body as bytes for protocols that carry only bytes: the data sections
        joined; an ``amqp-value`` of binary or string as it is; anything else the
        encoded body sections (so nothing is lost)."""
        body = self.body
        if len(body) == 1 and type(body[0]) is Data and type(body[0].value) is bytes:
            return body[0].value  # the common case
        if body and all(type(s) is Data for s in body):
            return b"".join(s.value for s in body)
        if len(body) == 1 and type(body[0]) is AmqpValue:
            v = body[0].value
            if isinstance(v, bytes):
                return v
            if isinstance(v, str):
                return v.encode("utf-8")
        out = bytearray()
        for s in body:
            s.encode_to(out)
        return bytes(out)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AMQPMessage) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        parts = [f"{k}={getattr(self, k)!r}" for k in self.__slots__ if getattr(self, k)]
        return f"AMQPMessage({', '.join(parts)})"


def encode_message(msg: AMQPMessage) -> bytes:
    out = bytearray()
    if msg.header is not None:
        msg.header.encode_to(out)
    if msg.delivery_annotations is not None:
        DeliveryAnnotations(msg.delivery_annotations).encode_to(out)
    if msg.message_annotations is not None:
        MessageAnnotations(msg.message_annotations).encode_to(out)
    if msg.properties is not None:
        msg.properties.encode_to(out)
    if msg.application_properties is not None:
        ApplicationProperties(msg.application_properties).encode_to(out)
    for section in msg.body:
        section.encode_to(out)
    if msg.footer is not None:
        Footer(msg.footer).encode_to(out)
    return bytes(out)


#: Header sections seen, by their encoded bytes: the field values (a new Header is
#: built from them per message, as decoded headers may be changed). Most senders
#: write one of a few headers (``durable=true``...), so the generic decoder runs
#: once per distinct header; bounded, cleared when full.
_HEADERS: dict[bytes, tuple[Any, ...]] = {}
_HEADERS_MAX = 256
_HEADER_FIELDS = ("durable", "priority", "ttl", "first_acquirer", "delivery_count")


def _section(payload: bytes, pos: int) -> tuple[Any, int]:
    """The section at ``pos`` and where the next begins: ``data`` sections and
    headers seen before without the generic decoder (the hot path of a publish),
    anything else, and anything malformed, through it."""
    head = payload[pos : pos + 4]
    if head == b"\x00\x53\x75\xa0":  # data, vbin8
        if pos + 5 <= len(payload):
            end = pos + 5 + payload[pos + 4]
            if end <= len(payload):
                return Data(payload[pos + 5 : end]), end
    elif head == b"\x00\x53\x75\xb0":  # data, vbin32
        if pos + 8 <= len(payload):
            end = pos + 8 + int.from_bytes(payload[pos + 4 : pos + 8], "big")
            if end <= len(payload):
                return Data(payload[pos + 8 : end]), end
    elif head[:3] == b"\x00\x53\x70":  # header
        code = head[3:]
        end = 0
        if code == b"\x45":
            end = pos + 4
        elif code == b"\xc0" and pos + 5 <= len(payload):
            end = pos + 5 + payload[pos + 4]
        elif code == b"\xd0" and pos + 8 <= len(payload):
            end = pos + 8 + int.from_bytes(payload[pos + 4 : pos + 8], "big")
        if 0 < end <= len(payload):
            raw = payload[pos:end]
            fields = _HEADERS.get(raw)
            if fields is not None:
                return Header(*fields), end
            section, after = decode_value(payload, pos)
            if after == end and type(section) is Header:
                if len(_HEADERS) >= _HEADERS_MAX:
                    _HEADERS.clear()
                _HEADERS[bytes(raw)] = tuple(getattr(section, f) for f in _HEADER_FIELDS)
            return section, after
    return decode_value(payload, pos)


def decode_message(payload: bytes) -> AMQPMessage:
    if type(payload) is not bytes:
        payload = bytes(payload)
    msg = AMQPMessage()
    pos = 0
    last = -1
    n = len(payload)
    while pos < n:
        section, pos = _section(payload, pos)
        rank = _ORDER.get(type(section))
        if rank is None:
            raise AMQPError(DECODE_ERROR, f"not a message section: {type(section).__name__}")
        if rank < last or (rank == last and rank != 5):
            raise AMQPError(DECODE_ERROR, f"message section {type(section).__name__} out of order")
        last = rank
        if rank == 5:
            if msg.body and (type(msg.body[0]) is not type(section) or type(section) is AmqpValue):
                raise AMQPError(DECODE_ERROR, "a message body mixes section kinds")
            msg.body.append(section)
        elif rank == 0:
            msg.header = section
        elif rank == 1:
            msg.delivery_annotations = section.value
        elif rank == 2:
            msg.message_annotations = section.value
        elif rank == 3:
            msg.properties = section
        elif rank == 4:
            msg.application_properties = section.value
        else:
            msg.footer = section.value
    return msg
