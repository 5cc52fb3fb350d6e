"""The core's objects <-> the node-to-node protobuf messages (``fluxmq.cluster.v1``).

Sans-IO: plain functions over :class:`fluxmq_core.message.Message`, store records
(the dicts a :class:`~fluxmq_core.storage.base.BrokerStore` keeps) and the generated
classes in :mod:`fluxmq_etcd._proto.cluster_pb2`. Every conversion is lossless for
what the store itself can hold: ``None`` stays ``None`` (absent optional field),
``[]`` and ``{}`` stay empty but present, key order of mappings survives, and an int
too big for 64 bits travels as decimal text. Tuples become lists, as they do in
every storage driver.

Bad input raises :class:`CodecError` (a ``ValueError``) with the field's path, never
a protobuf internals traceback: the receiving node answers a malformed batch with a
clear status, and the sending node learns at once that it tried to ship a value
(say a ``datetime`` in ``Message.properties``) that cannot cross nodes.

What this module does not do: I/O, batching and retries (``peers.py``), and deciding
what a session snapshot holds (the cluster driver reads it from the protocol's
session or the store).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fluxmq_core.cluster.base import QueuedEntry, SessionSnapshot
from fluxmq_core.message import Message

from ._proto import cluster_pb2 as pb

__all__ = [
    "CodecError",
    "QueuedEntry",
    "SessionSnapshot",
    "forward_batch_from_proto",
    "forward_batch_to_proto",
    "inflight_from_proto",
    "inflight_to_proto",
    "message_from_proto",
    "message_to_proto",
    "pb",
    "queued_from_proto",
    "queued_to_proto",
    "session_from_proto",
    "session_to_proto",
    "struct_from_proto",
    "struct_to_proto",
    "value_from_proto",
    "value_to_proto",
]

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_U32_MAX = 2**32 - 1
#: Lists and mappings nested deeper than this are refused when encoding: protobuf's
#: parser stops at 100 nested messages, and a value inside a session snapshot starts
#: 7 deep and takes 3 per level. Refusing on the sending side names the field; the
#: receiver would only refuse the whole batch.
MAX_DEPTH = 24
#: Key of the protobuf form in ``Message.encoded``: a message forwarded to several
#: peers is converted once.
_CACHE_KEY = ("fluxmq-etcd", "pb")


class CodecError(ValueError):
    """A value that cannot be converted, in either direction; says which field."""


# --- values ------------------------------------------------------------------------


def value_to_proto(value: Any, path: str = "value") -> pb.Value:
    """One storable value (None, bool, int, float, str, bytes, list/tuple, str-keyed
    dict, nested) as a ``Value``."""
    out = pb.Value()
    _fill_value(out, value, path)
    return out


def _fill_value(out: pb.Value, value: Any, path: str, depth: int = 0) -> None:
    t = type(value)
    if value is None:
        out.null_value = True
    elif t is bool:
        out.bool_value = value
    elif t is str:
        try:
            out.string_value = value
        except ValueError as exc:  # lone surrogates are not UTF-8
            raise CodecError(f"{path}: string is not valid UTF-8 ({exc})") from None
    elif t is int:
        if _INT64_MIN <= value <= _INT64_MAX:
            out.int_value = value
        else:
            out.big_int_value = str(value)
    elif t is float:
        out.float_value = value
    elif t in (bytes, bytearray, memoryview):
        out.bytes_value = bytes(value)
    elif isinstance(value, list | tuple):
        if depth >= MAX_DEPTH:
            raise CodecError(f"{path}: nested deeper than {MAX_DEPTH} levels")
        items = out.list_value.items
        out.list_value.SetInParent()  # an empty list is still a list
        for i, item in enumerate(value):
            _fill_value(items.add(), item, f"{path}[{i}]", depth + 1)
    elif isinstance(value, Mapping):
        if depth >= MAX_DEPTH:
            raise CodecError(f"{path}: nested deeper than {MAX_DEPTH} levels")
        out.struct_value.SetInParent()
        _fill_struct(out.struct_value, value, path, depth + 1)
    elif isinstance(value, bool | int | float | str | bytes):  # subclasses (IntEnum...)
        _fill_value(out, _plain(value), path)
    else:
        raise CodecError(
            f"{path}: a {type(value).__name__} cannot cross nodes (storable values are "
            "None, bool, int, float, str, bytes, lists and str-keyed dicts of those)"
        )


def _plain(value: Any) -> Any:
    """The built-in value of an instance of a subclass (IntEnum, StrEnum...)."""
    base: type[Any]
    for base in (bool, int, float, str, bytes):
        if isinstance(value, base):
            return base(value)
    raise AssertionError(value)  # pragma: no cover - callers checked


def value_from_proto(value: pb.Value, path: str = "value") -> Any:
    """The Python value of a ``Value``; :class:`CodecError` when it has no kind
    (a newer peer's kind this node does not know, or garbage)."""
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "null_value":
        return None
    if kind == "bool_value":
        return value.bool_value
    if kind == "float_value":
        return value.float_value
    if kind == "bytes_value":
        return value.bytes_value
    if kind == "list_value":
        return [
            value_from_proto(item, f"{path}[{i}]") for i, item in enumerate(value.list_value.items)
        ]
    if kind == "struct_value":
        return struct_from_proto(value.struct_value, path)
    if kind == "big_int_value":
        try:
            return int(value.big_int_value)
        except ValueError:
            raise CodecError(
                f"{path}: big int {value.big_int_value[:40]!r} is not decimal"
            ) from None
    raise CodecError(f"{path}: value has no kind (sent by a newer node?)")


def struct_to_proto(mapping: Mapping[str, Any], path: str = "struct") -> pb.Struct:
    """A str-keyed mapping as a ``Struct`` (key order kept)."""
    out = pb.Struct()
    _fill_struct(out, mapping, path)
    return out


def _fill_struct(out: pb.Struct, mapping: Mapping[Any, Any], path: str, depth: int = 0) -> None:
    fields = out.fields
    for key, item in mapping.items():
        if type(key) is not str:
            raise CodecError(f"{path}: key {key!r} is not a string")
        f = fields.add()
        try:
            f.key = key
        except ValueError as exc:
            raise CodecError(f"{path}: key {key!r} is not valid UTF-8 ({exc})") from None
        _fill_value(f.value, item, f"{path}.{key}", depth)


def struct_from_proto(struct: pb.Struct, path: str = "struct") -> dict[str, Any]:
    """The dict of a ``Struct``; a repeated key keeps its last value."""
    return {f.key: value_from_proto(f.value, f"{path}.{f.key}") for f in struct.fields}


# --- messages ----------------------------------------------------------------------


def message_to_proto(message: Message, *, cache: bool = False) -> pb.Message:
    """The protobuf form of ``message``. With ``cache``, it is kept in (and read back
    from) ``message.encoded``, so a message forwarded to several peers is converted
    once; the caller must then not change the returned object."""
    if cache:
        enc = message.encoded
        if enc is not None:
            hit = enc.get(_CACHE_KEY)
            if hit is not None:
                return hit
    m = message
    try:
        out = pb.Message(
            topic=m.topic,
            payload=m.payload,
            qos=m.qos,
            retain=m.retain,
            origin_protocol=m.origin_protocol,
            origin_client=m.origin_client,
            timestamp=m.timestamp,
        )
        if m.content_type is not None:
            out.content_type = m.content_type
        if m.correlation_data is not None:
            out.correlation_data = m.correlation_data
        if m.response_topic is not None:
            out.response_topic = m.response_topic
        if m.payload_format is not None:
            out.payload_format = m.payload_format
        if m.expires_at is not None:
            out.expires_at = m.expires_at
    except (TypeError, ValueError) as exc:
        raise CodecError(f"message on {m.topic!r}: {exc}") from None
    if m.properties is not None:
        out.properties.SetInParent()
        _fill_struct(out.properties, m.properties, "message.properties")
    up = m.user_properties
    if up is not None:
        items = out.user_properties.items
        out.user_properties.SetInParent()
        try:
            for k, v in up:
                items.add(key=k, value=v)
        except (TypeError, ValueError) as exc:
            raise CodecError(f"message.user_properties: {exc}") from None
    if cache:
        if m.encoded is None:
            m.encoded = {}
        m.encoded[_CACHE_KEY] = out
    return out


def message_from_proto(p: pb.Message) -> Message:
    """The core Message of a protobuf ``Message``; :class:`CodecError` for a QoS
    outside 0-2 or a malformed property value."""
    if p.qos > 2:
        raise CodecError(f"message on {p.topic!r}: QoS {p.qos} is not 0, 1 or 2")
    return Message(
        p.topic,
        p.payload,
        p.qos,
        p.retain,
        properties=struct_from_proto(p.properties, "message.properties")
        if p.HasField("properties")
        else None,
        user_properties=[(u.key, u.value) for u in p.user_properties.items]
        if p.HasField("user_properties")
        else None,
        content_type=p.content_type if p.HasField("content_type") else None,
        correlation_data=p.correlation_data if p.HasField("correlation_data") else None,
        response_topic=p.response_topic if p.HasField("response_topic") else None,
        payload_format=p.payload_format if p.HasField("payload_format") else None,
        expires_at=p.expires_at if p.HasField("expires_at") else None,
        origin_protocol=p.origin_protocol,
        origin_client=p.origin_client,
        timestamp=p.timestamp,
    )


def forward_batch_to_proto(
    entries: Iterable[tuple[Message, str]], sequence: int
) -> pb.ForwardBatch:
    """A ``ForwardBatch`` of ``(message, target)`` pairs (target ``""``: local
    fan-out on the receiving node)."""
    batch = pb.ForwardBatch(sequence=sequence)
    add = batch.messages.add
    for message, target in entries:
        item = add(target=target)
        item.message.CopyFrom(message_to_proto(message, cache=True))
    return batch


def forward_batch_from_proto(batch: pb.ForwardBatch) -> list[tuple[Message, str]]:
    """The ``(message, target)`` pairs of a ``ForwardBatch``, in order."""
    out = []
    for i, item in enumerate(batch.messages):
        if not item.HasField("message"):
            raise CodecError(f"forward batch {batch.sequence}: entry {i} has no message")
        out.append((message_from_proto(item.message), item.target))
    return out


# --- session state -----------------------------------------------------------------

_OUT_KEYS = frozenset({"dir", "qos", "retain", "ids", "state", "message"})
_IN_KEYS = frozenset({"dir", "qos", "state", "message"})


def _u32_list(values: Iterable[Any], path: str) -> list[int]:
    out = []
    for v in values:
        if type(v) is not int or not 0 <= v <= _U32_MAX:
            raise CodecError(f"{path}: {v!r} is not an unsigned 32-bit int")
        out.append(v)
    return out


def inflight_to_proto(packet_id: int, record: Mapping[str, Any]) -> pb.InflightMessage:
    """One in-flight record as the store keeps it (``{"dir": "out", "qos",
    "retain", "ids", "state", "message": Message.to_dict()}``, or ``{"dir": "in",
    "qos", "state", "message": dict | None}`` for an inbound QoS 2) with its
    packet id. The message dict is read with ``Message.from_dict``, as the
    session's ``restore_inflight`` reads it. Unknown keys are an error rather than
    silently dropped."""
    path = f"inflight[{packet_id}]"
    direction = record.get("dir")
    if direction not in ("out", "in"):
        raise CodecError(f"{path}: dir must be 'out' or 'in', not {direction!r}")
    extra = set(record) - (_OUT_KEYS if direction == "out" else _IN_KEYS)
    if extra:
        raise CodecError(f"{path}: keys {sorted(extra)} have no field in InflightMessage")
    try:
        out = pb.InflightMessage(
            packet_id=packet_id,
            direction=pb.DIRECTION_OUTBOUND if direction == "out" else pb.DIRECTION_INBOUND,
            qos=record["qos"],
            retain=bool(record.get("retain", False)),
            state=record["state"],
        )
    except KeyError as exc:
        raise CodecError(f"{path}: missing {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise CodecError(f"{path}: {exc}") from None
    out.subscription_ids.extend(_u32_list(record.get("ids") or (), f"{path}.ids"))
    msg = record.get("message")
    if msg is not None:
        message = msg if isinstance(msg, Message) else Message.from_dict(msg)
        out.message.CopyFrom(message_to_proto(message))
    return out


def inflight_from_proto(p: pb.InflightMessage) -> tuple[int, dict[str, Any]]:
    """``(packet_id, record)`` in the store's form (see :func:`inflight_to_proto`),
    ready for the session's ``restore_inflight``."""
    message = message_from_proto(p.message).to_dict() if p.HasField("message") else None
    if p.direction == pb.DIRECTION_INBOUND:
        return p.packet_id, {"dir": "in", "qos": p.qos, "state": p.state, "message": message}
    return p.packet_id, {
        "dir": "out",
        "qos": p.qos,
        "retain": p.retain,
        "ids": list(p.subscription_ids),
        "state": p.state,
        "message": message,
    }


def queued_to_proto(entry: QueuedEntry) -> pb.QueuedMessage:
    seq, message, qos, retain, ids = entry
    path = f"queued[{seq}]"
    try:
        out = pb.QueuedMessage(seq=seq, qos=qos, retain=retain)
    except (TypeError, ValueError) as exc:
        raise CodecError(f"{path}: {exc}") from None
    out.subscription_ids.extend(_u32_list(ids, f"{path}.ids"))
    out.message.CopyFrom(message_to_proto(message))
    return out


def queued_from_proto(p: pb.QueuedMessage) -> QueuedEntry:
    if not p.HasField("message"):
        raise CodecError(f"queued[{p.seq}]: no message")
    return p.seq, message_from_proto(p.message), p.qos, p.retain, tuple(p.subscription_ids)


def session_to_proto(s: SessionSnapshot) -> pb.SessionState:
    try:
        out = pb.SessionState(client_id=s.client_id, protocol=s.protocol, epoch=s.epoch)
    except (TypeError, ValueError) as exc:
        raise CodecError(f"session {s.client_id!r}: {exc}") from None
    if s.record is not None:
        out.record.SetInParent()
        _fill_struct(out.record, s.record, "session.record")
    for topic_filter, options in s.subscriptions.items():
        sub = out.subscriptions.add(filter=topic_filter)
        sub.options.SetInParent()
        _fill_struct(sub.options, options, f"subscription[{topic_filter}]")
    for entry in s.queued:
        out.queued.append(queued_to_proto(entry))
    for pid, record in s.inflight.items():
        out.inflight.append(inflight_to_proto(pid, record))
    if s.will is not None:
        message, publish_at = s.will
        out.will.publish_at = publish_at
        out.will.message.CopyFrom(message_to_proto(message))
    return out


def session_from_proto(p: pb.SessionState) -> SessionSnapshot:
    will = None
    if p.HasField("will"):
        if not p.will.HasField("message"):
            raise CodecError(f"session {p.client_id!r}: will without a message")
        will = (message_from_proto(p.will.message), p.will.publish_at)
    return SessionSnapshot(
        client_id=p.client_id,
        protocol=p.protocol,
        record=struct_from_proto(p.record, "session.record") if p.HasField("record") else None,
        subscriptions={
            s.filter: struct_from_proto(s.options, f"subscription[{s.filter}]")
            for s in p.subscriptions
        },
        queued=[queued_from_proto(q) for q in p.queued],
        inflight=dict(inflight_from_proto(i) for i in p.inflight),
        will=will,
        epoch=p.epoch,
    )
