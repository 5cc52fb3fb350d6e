"""AMQP 1.0 composite types: every performative, the SASL frames, delivery states
and outcomes, source/target termini, the error type, transaction types and the
message sections.

Each composite is a slotted dataclass with a ``SPEC``: the spec's fields in order,
each with its AMQP type, whether it is mandatory and whether it is ``multiple``.
Encoding writes the described list (trailing nulls trimmed; a value equal to the
field's default is sent as null, which means the same). Decoding checks what the
type system alone cannot: a mandatory field that is null, a field of the wrong type
(``attach.handle`` given as a string), a ``multiple`` field given as one value or an
array (both are normalised to a list) - each an :class:`AMQPError` with
``amqp:decode-error`` naming the field, never a ``TypeError`` later in the state
machine.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from fluxmq_amqp1.codec.types import (
    DECODE_ERROR,
    DESCRIBED,
    AMQPError,
    Array,
    encode_binary,
    encode_map,
    encode_string,
    encode_symbol,
    encode_uint,
    encode_ulong,
    encode_value,
    symbol,
    timestamp,
    ubyte,
    ushort,
)

__all__ = [
    "SECTION_CODES",
    "Accepted",
    "AmqpSequence",
    "AmqpValue",
    "ApplicationProperties",
    "Attach",
    "Begin",
    "Close",
    "Composite",
    "Coordinator",
    "Data",
    "Declare",
    "Declared",
    "DeliveryAnnotations",
    "Detach",
    "Discharge",
    "Disposition",
    "End",
    "Error",
    "Flow",
    "Footer",
    "Header",
    "MessageAnnotations",
    "Modified",
    "Open",
    "Properties",
    "Received",
    "Rejected",
    "Released",
    "SaslChallenge",
    "SaslInit",
    "SaslMechanisms",
    "SaslOutcome",
    "SaslResponse",
    "Source",
    "Target",
    "TransactionalState",
    "Transfer",
]

_UINTS = frozenset(
    {
        "uint",
        "milliseconds",
        "seconds",
        "handle",
        "sequence-no",
        "transfer-number",
        "delivery-number",
        "message-format",
    }
)
_LIMITS = {"ubyte": 0xFF, "ushort": 0xFFFF, "ulong": 2**64 - 1}


@dataclass(frozen=True, slots=True)
class F:
    """One field of a composite: attribute, AMQP type, mandatory, multiple."""

    attr: str
    type: str
    mandatory: bool = False
    multiple: bool = False


def _encode_field(out: bytearray, ftype: str, multiple: bool, v: Any) -> None:
    if v is None:
        out.append(0x40)
    elif multiple:
        values = list(v) if isinstance(v, list | tuple) else [v]
        if len(values) == 1:
            _encode_field(out, ftype, False, values[0])
        elif ftype == "symbol":
            encode_value(out, Array("symbol", [symbol(x) for x in values]))
        else:
            encode_value(out, Array(ftype if ftype != "*" else "string", values))
    elif ftype in _UINTS:
        encode_uint(out, v)
    elif ftype == "boolean":
        out.append(0x41 if v else 0x42)
    elif ftype == "symbol":
        encode_symbol(out, v)
    elif ftype == "string":
        encode_string(out, v)
    elif ftype == "binary":
        encode_binary(out, bytes(v))
    elif ftype == "fields":
        encode_map(out, v, key_symbols=True)
    elif ftype == "ubyte":
        encode_value(out, ubyte(v))
    elif ftype == "ushort":
        encode_value(out, ushort(v))
    elif ftype == "ulong":
        encode_ulong(out, v)
    elif ftype == "timestamp":
        encode_value(out, timestamp(v))
    else:
        encode_value(out, v)


def _valid(ftype: str, v: Any) -> bool:
    if ftype in _UINTS:
        return type(v) is not bool and isinstance(v, int) and 0 <= v <= 0xFFFFFFFF
    if ftype in _LIMITS:
        return type(v) is not bool and isinstance(v, int) and 0 <= v <= _LIMITS[ftype]
    if ftype == "boolean":
        return isinstance(v, bool)
    if ftype in ("symbol", "string"):
        return isinstance(v, str)
    if ftype == "binary":
        return isinstance(v, bytes)
    if ftype == "fields" or ftype == "map":
        return isinstance(v, dict)
    if ftype == "timestamp":
        return type(v) is not bool and isinstance(v, int)
    if ftype == "error":
        return isinstance(v, Error)
    if ftype == "list":
        return isinstance(v, list)
    return True


class Composite:
    """Base of the composite types (see the module docstring)."""

    __slots__ = ()
    CODE: ClassVar[int] = 0
    NAME: ClassVar[str] = ""
    SPEC: ClassVar[tuple[F, ...]] = ()
    #: per class: (spec, default) pairs, built on first use
    _PLAN: ClassVar[tuple[tuple[F, Any], ...]] = ()

    @classmethod
    def _plan(cls) -> tuple[tuple[F, Any], ...]:
        plan = cls.__dict__.get("_PLAN_CACHE")
        if plan is None:
            defaults = {f.name: f.default for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
            plan = tuple((f, defaults.get(f.attr)) for f in cls.SPEC)
            cls._PLAN_CACHE = plan  # type: ignore[attr-defined]
        return plan

    def encode_to(self, out: bytearray) -> None:
        """Append the described list (descriptor: the ulong code)."""
        body = bytearray()
        count = 0
        pending = 0  # trailing nulls not yet written
        for spec, default in self._plan():
            v = getattr(self, spec.attr)
            if v is None or (v == default and not spec.mandatory and type(v) is type(default)):
                pending += 1
                continue
            if pending:
                body += b"\x40" * pending
                count += pending
                pending = 0
            _encode_field(body, spec.type, spec.multiple, v)
            count += 1
        out += b"\x00\x53" + bytes([self.CODE])
        if count == 0:
            out.append(0x45)
        elif len(body) + 1 < 256:
            out += bytes([0xC0, len(body) + 1, count])
            out += body
        else:
            out += b"\xd0" + (len(body) + 4).to_bytes(4, "big") + count.to_bytes(4, "big")
            out += body

    def described_value(self) -> list[Any]:
        """The field list (for arrays of this type)."""
        return [getattr(self, spec.attr) for spec in self.SPEC]

    @classmethod
    def from_described(cls, value: Any) -> Any:
        name = cls.NAME.split(":")[1] if ":" in cls.NAME else cls.__name__
        if not isinstance(value, list):
            raise AMQPError(DECODE_ERROR, f"{name}: a list expected, got {type(value).__name__}")
        kwargs: dict[str, Any] = {}
        for spec, v in zip(cls.SPEC, value, strict=False):
            if v is None:
                continue
            if spec.multiple:
                values = v.values if isinstance(v, Array) else [v]
                for item in values:
                    if not _valid(spec.type, item):
                        raise AMQPError(
                            DECODE_ERROR, f"{name}.{spec.attr}: invalid {spec.type} {item!r}"
                        )
                kwargs[spec.attr] = list(values)
                continue
            if not _valid(spec.type, v):
                raise AMQPError(DECODE_ERROR, f"{name}.{spec.attr}: invalid {spec.type} {v!r}")
            kwargs[spec.attr] = v
        for spec in cls.SPEC:
            if spec.mandatory and spec.attr not in kwargs:
                raise AMQPError(DECODE_ERROR, f"{name}.{spec.attr} is mandatory")
        return cls(**kwargs)


def _register(cls: Any) -> Any:
    DESCRIBED[cls.CODE] = cls
    DESCRIBED[symbol(cls.NAME)] = cls
    return cls


# --- the error type ---------------------------------------------------------------------


@_register
@dataclass(slots=True)
class Error(Composite):
    """An error condition with a description (close, end, detach, rejected)."""

    condition: str = ""
    description: str | None = None
    info: dict[str, Any] | None = None

    CODE: ClassVar[int] = 0x1D
    NAME: ClassVar[str] = "amqp:error:list"
    SPEC: ClassVar[tuple[F, ...]] = (
        F("condition", "symbol", True),
        F("description", "string"),
        F("info", "fields"),
    )


# --- performatives ------------------------------------------------------------------------


class Performative(Composite):
    """A frame body of an AMQP (type 0) frame."""

    __slots__ = ()


@_register
@dataclass(slots=True)
class Open(Performative):
    container_id: str = ""
    hostname: str | None = None
    max_frame_size: int = 0xFFFFFFFF
    channel_max: int = 0xFFFF
    idle_time_out: int | None = None
    outgoing_locales: list[str] | None = None
    incoming_locales: list[str] | None = None
    offered_capabilities: list[str] | None = None
    desired_capabilities: list[str] | None = None
    properties: dict[str, Any] | None = None

    CODE: ClassVar[int] = 0x10
    NAME: ClassVar[str] = "amqp:open:list"
    SPEC: ClassVar[tuple[F, ...]] = (
        F("container_id", "string", True),
        F("hostname", "string"),
        F("max_frame_size", "uint"),
        F("channel_max", "ushort"),
        F("idle_time_out", "milliseconds"),
        F("outgoing_locales", "symbol", multiple=True),
        F("incoming_locales", "symbol", multiple=True),
        F("offered_capabilities", "symbol", multiple=True),
        F("desired_capabilities", "symbol", multiple=True),
        F("properties", "fields"),
    )


@_register
@dataclass(slots=True)
class Begin(Performative):
    remote_channel: int | None = None
    next_outgoing_id: int = 0
    incoming_window: int = 0
    outgoing_window: int = 0
    handle_max: int = 0xFFFFFFFF
    offered_capabilities: list[str] | None = None
    desired_capabilities: list[str] | None = None
    properties: dict[str, Any] | None = None

    CODE: ClassVar[int] = 0x11
    NAME: ClassVar[str] = "amqp:begin:list"
    SPEC: ClassVar[tuple[F, ...]] = (
        F("remote_channel", "ushort"),
        F("next_outgoing_id", "transfer-number", True),
        F("incoming_window", "uint", True),
        F("outgoing_window", "uint", True),
        F("handle_max", "handle"),
        F("offered_capabilities", "symbol", multiple=True),
        F("desired_capabilities", "symbol", multiple=True),
        F("properties", "fields"),
    )


@_register
@dataclass(slots=True)
class Attach(Performative):
    name: str = ""
    handle: int = 0
    role: bool = False  # False = sender, True = receiver
    snd_settle_mode: int = 2  # 0 unsettled, 1 settled, 2 mixed
    rcv_settle_mode: int = 0  # 0 first, 1 second
    source: Any = None
    target: Any = None
    unsettled: dict[Any, Any] | None = None
    incomplete_unsettled: bool = False
    initial_delivery_count: int | None = None
    max_message_size: int | None = None
    offered_capabilities: list[str] | None = None
    desired_capabilities: list[str] | None = None
    properties: dict[str, Any] | None = None

    CODE: ClassVar[int] = 0x12
    NAME: ClassVar[str] = "amqp:attach:list"
    SPEC: ClassVar[tuple[F, ...]] = (
        F("name", "string", True),
        F("handle", "handle", True),
        F("role", "boolean", True),
        F("snd_settle_mode", "ubyte"),
        F("rcv_settle_mode", "ubyte"),
        F("source", "*"),
        F("target", "*"),
        F("unsettled", "map"),
        F("incomplete_unsettled", "boolean"),
        F("initial_delivery_count", "sequence-no"),
        F("max_message_size", "ulong"),
        F("offered_capabilities", "symbol", multiple=True),
        F("desired_capabilities", "symbol", multiple=True),
        F("properties", "fields"),
    )


@_register
@dataclass(slots=True)
class Flow(Performative):
    next_incoming_id: int | None = None
    incoming_window: int = 0
    next_outgoing_id: int = 0
    outgoing_window: int = 0
    handle: int | None = None
    delivery_count: int | None = None
    link_credit: int | None = None
    available: int | None = None
    drain: bool = False
    echo: bool = False
    properties: dict[str, Any] | None = None

    CODE: ClassVar[int] = 0x13
    NAME: ClassVar[str] = "amqp:flow:list"
    SPEC: ClassVar[tuple[F, ...]] = (
        F("next_incoming_id", "transfer-number"),
        F("incoming_window", "uint", True),
        F("next_outgoing_id", "transfer-number", True),
        F("outgoing_window", "uint", True),
        F("handle", "handle"),
        F("delivery_count", "sequence-no"),
        F("link_credit", "uint"),
        F("available", "uint"),
        F("drain", "boolean"),
        F("echo", "boolean"),
        F("properties", "fields"),
    )


@_register
@dataclass(slots=True)
class Transfer(Performative):
    handle: int = 0
    delivery_id: int | None = None
    delivery_tag: bytes | None = None
    message_format: int | None = None
    settled: bool | None = None
    more: bool = False
    rcv_settle_mode: int | None = None
    state: Any = None
    resume: bool = False
    aborted: bool = False
    batchable: bool = False

    CODE: ClassVar[int] = 0x14
    NAME: ClassVar[str] = "amqp:transfer:list"
    SPEC: ClassVar[tuple[F, ...]] = (
        F("handle", "handle", True),
        F("delivery_id", "delivery-number"),
        F("delivery_tag", "binary"),
        F("message_format", "message-format"),
        F("settled", "boolean"),
        F("more", "boolean"),
        F("rcv_settle_mode", "ubyte"),
        F("state", "*"),
        F("resume", "boolean"),
        F("aborted", "boolean"),
        F("batchable", "boolean"),
    )


@_register
@dataclass(slots=True)
class Disposition(Performative):
    role: bool = False
    first: int = 0
    last: int | None = None
    settled: bool = False
    state: Any = None
    batchable: bool = False

    CODE: ClassVar[int] = 0x15
    NAME: ClassVar[str] = "amqp:disposition:list"
    SPEC: ClassVar[tuple[F, ...]] = (
        F("role", "boolean", True),
        F("first", "delivery-number", True),
        F("last", "delivery-number"),
        F("settled", "boolean"),
        F("state", "*"),
        F("batchable", "boolean"),
    )


@_register
@dataclass(slots=True)
class Detach(Performative):
    handle: int = 0
    closed: bool = False
    error: Error | None = None

    CODE: ClassVar[int] = 0x16
    NAME: ClassVar[str] = "amqp:detach:list"
    SPEC: ClassVar[tuple[F, ...]] = (
        F("handle", "handle", True),
        F("closed", "boolean"),
        F("error", "error"),
    )


@_register
@dataclass(slots=True)
class End(Performative):
    error: Error | None = None

    CODE: ClassVar[int] = 0x17
    NAME: ClassVar[str] = "amqp:end:list"
    SPEC: ClassVar[tuple[F, ...]] = (F("error", "error"),)


@_register
@dataclass(slots=True)
class Close(Performative):
    error: Error | None = None

    CODE: ClassVar[int] = 0x18
    NAME: ClassVar[str] = "amqp:close:list"
    SPEC: ClassVar[tuple[F, ...]] = (F("error", "error"),)


# --- SASL --------------------------------------------------------------------------------


@_register
@dataclass(slots=True)
class SaslMechanisms(Performative):
    sasl_server_mechanisms: list[str] | None = None

    CODE: ClassVar[int] = 0x40
    NAME: ClassVar[str] = "amqp:sasl-mechanisms:list"
    SPEC: ClassVar[tuple[F, ...]] = (F("sasl_server_mechanisms", "symbol", True, True),)


@_register
@dataclass(slots=True)
class SaslInit(Performative):
    mechanism: str = ""
    initial_response: bytes | None = None
    hostname: str | None = None

    CODE: ClassVar[int] = 0x41
    NAME: ClassVar[str] = "amqp:sasl-init:list"
    SPEC: ClassVar[tuple[F, ...]] = (
        F("mechanism", "symbol", True),
        F("initial_response", "binary"),
        F("hostname", "string"),
    )


@_register
@dataclass(slots=True)
class SaslChallenge(Performative):
    challenge: bytes = b""

    CODE: ClassVar[int] = 0x42
    NAME: ClassVar[str] = "amqp:sasl-challenge:list"
    SPEC: ClassVar[tuple[F, ...]] = (F("challenge", "binary", True),)


@_register
@dataclass(slots=True)
class SaslResponse(Performative):
    response: bytes = b""

    CODE: ClassVar[int] = 0x43
    NAME: ClassVar[str] = "amqp:sasl-response:list"
    SPEC: ClassVar[tuple[F, ...]] = (F("response", "binary", True),)


@_register
@dataclass(slots=True)
class SaslOutcome(Performative):
    code: int = 0  # 0 ok, 1 auth, 2 sys, 3 sys-perm, 4 sys-temp
    additional_data: bytes | None = None

    CODE: ClassVar[int] = 0x44
    NAME: ClassVar[str] = "amqp:sasl-outcome:list"
    SPEC: ClassVar[tuple[F, ...]] = (
        F("code", "ubyte", True),
        F("additional_data", "binary"),
    )


# --- delivery states and outcomes -------------------------------------------------------


@_register
@dataclass(slots=True)
class Received(Composite):
    section_number: int = 0
    section_offset: int = 0

    CODE: ClassVar[int] = 0x23
    NAME: ClassVar[str] = "amqp:received:list"
    SPEC: ClassVar[tuple[F, ...]] = (
        F("section_number", "uint", True),
        F("section_offset", "ulong", True),
    )


@_register
@dataclass(slots=True)
class Accepted(Composite):
    CODE: ClassVar[int] = 0x24
    NAME: ClassVar[str] = "amqp:accepted:list"
    SPEC: ClassVar[tuple[F, ...]] = ()


@_register
@dataclass(slots=True)
class Rejected(Composite):
    error: Error | None = None

    CODE: ClassVar[int] = 0x25
    NAME: ClassVar[str] = "amqp:rejected:list"
    SPEC: ClassVar[tuple[F, ...]] = (F("error", "error"),)


@_register
@dataclass(slots=True)
class Released(Composite):
    CODE: ClassVar[int] = 0x26
    NAME: ClassVar[str] = "amqp:released:list"
    SPEC: ClassVar[tuple[F, ...]] = ()


@_register
@dataclass(slots=True)
class Modified(Composite):
    delivery_failed: bool = False
    undeliverable_here: bool = False
    message_annotations: dict[str, Any] | None = None

    CODE: ClassVar[int] = 0x27
    NAME: ClassVar[str] = "amqp:modified:list"
    SPEC: ClassVar[tuple[F, ...]] = (
        F("delivery_failed", "boolean"),
        F("undeliverable_here", "boolean"),
        F("message_annotations", "fields"),
    )


# --- termini ------------------------------------------------------------------------------


@_register
@dataclass(slots=True)
class Source(Composite):
    address: Any = None
    durable: int = 0
    expiry_policy: str = "session-end"
    timeout: int = 0
    dynamic: bool = False
    dynamic_node_properties: dict[str, Any] | None = None
    distribution_mode: str | None = None
    filter: dict[Any, Any] | None = None
    default_outcome: Any = None
    outcomes: list[str] | None = None
    capabilities: list[str] | None = None

    CODE: ClassVar[int] = 0x28
    NAME: ClassVar[str] = "amqp:source:list"
    SPEC: ClassVar[tuple[F, ...]] = (
        F("address", "*"),
        F("durable", "uint"),
        F("expiry_policy", "symbol"),
        F("timeout", "seconds"),
        F("dynamic", "boolean"),
        F("dynamic_node_properties", "fields"),
        F("distribution_mode", "symbol"),
        F("filter", "fields"),
        F("default_outcome", "*"),
        F("outcomes", "symbol", multiple=True),
        F("capabilities", "symbol", multiple=True),
    )


@_register
@dataclass(slots=True)
class Target(Composite):
    address: Any = None
    durable: int = 0
    expiry_policy: str = "session-end"
    timeout: int = 0
    dynamic: bool = False
    dynamic_node_properties: dict[str, Any] | None = None
    capabilities: list[str] | None = None

    CODE: ClassVar[int] = 0x29
    NAME: ClassVar[str] = "amqp:target:list"
    SPEC: ClassVar[tuple[F, ...]] = (
        F("address", "*"),
        F("durable", "uint"),
        F("expiry_policy", "symbol"),
        F("timeout", "seconds"),
        F("dynamic", "boolean"),
        F("dynamic_node_properties", "fields"),
        F("capabilities", "symbol", multiple=True),
    )


# --- transactions -------------------------------------------------------------------------


@_register
@dataclass(slots=True)
class Coordinator(Composite):
    capabilities: list[str] | None = None

    CODE: ClassVar[int] = 0x30
    NAME: ClassVar[str] = "amqp:coordinator:list"
    SPEC: ClassVar[tuple[F, ...]] = (F("capabilities", "symbol", multiple=True),)


@_register
@dataclass(slots=True)
class Declare(Composite):
    global_id: Any = None

    CODE: ClassVar[int] = 0x31
    NAME: ClassVar[str] = "amqp:declare:list"
    SPEC: ClassVar[tuple[F, ...]] = (F("global_id", "*"),)


@_register
@dataclass(slots=True)
class Discharge(Composite):
    txn_id: bytes = b""
    fail: bool = False

    CODE: ClassVar[int] = 0x32
    NAME: ClassVar[str] = "amqp:discharge:list"
    SPEC: ClassVar[tuple[F, ...]] = (F("txn_id", "binary", True), F("fail", "boolean"))


@_register
@dataclass(slots=True)
class Declared(Composite):
    txn_id: bytes = b""

    CODE: ClassVar[int] = 0x33
    NAME: ClassVar[str] = "amqp:declared:list"
    SPEC: ClassVar[tuple[F, ...]] = (F("txn_id", "binary", True),)


@_register
@dataclass(slots=True)
class TransactionalState(Composite):
    txn_id: bytes = b""
    outcome: Any = None

    CODE: ClassVar[int] = 0x34
    NAME: ClassVar[str] = "amqp:transactional-state:list"
    SPEC: ClassVar[tuple[F, ...]] = (F("txn_id", "binary", True), F("outcome", "*"))


# --- message sections ---------------------------------------------------------------------


@_register
@dataclass(slots=True)
class Header(Composite):
    durable: bool = False
    priority: int = 4
    ttl: int | None = None
    first_acquirer: bool = False
    delivery_count: int = 0

    CODE: ClassVar[int] = 0x70
    NAME: ClassVar[str] = "amqp:header:list"
    SPEC: ClassVar[tuple[F, ...]] = (
        F("durable", "boolean"),
        F("priority", "ubyte"),
        F("ttl", "milliseconds"),
        F("first_acquirer", "boolean"),
        F("delivery_count", "uint"),
    )


@_register
@dataclass(slots=True)
class Properties(Composite):
    message_id: Any = None
    user_id: bytes | None = None
    to: Any = None
    subject: str | None = None
    reply_to: Any = None
    correlation_id: Any = None
    content_type: str | None = None
    content_encoding: str | None = None
    absolute_expiry_time: int | None = None
    creation_time: int | None = None
    group_id: str | None = None
    group_sequence: int | None = None
    reply_to_group_id: str | None = None

    CODE: ClassVar[int] = 0x73
    NAME: ClassVar[str] = "amqp:properties:list"
    SPEC: ClassVar[tuple[F, ...]] = (
        F("message_id", "*"),
        F("user_id", "binary"),
        F("to", "*"),
        F("subject", "string"),
        F("reply_to", "*"),
        F("correlation_id", "*"),
        F("content_type", "symbol"),
        F("content_encoding", "symbol"),
        F("absolute_expiry_time", "timestamp"),
        F("creation_time", "timestamp"),
        F("group_id", "string"),
        F("group_sequence", "sequence-no"),
        F("reply_to_group_id", "string"),
    )


class _Wrapped:
    """A section whose described value is not a list (a map, binary or any value)."""

    __slots__ = ("value",)
    CODE: ClassVar[int] = 0
    NAME: ClassVar[str] = ""
    KIND: ClassVar[str] = "*"

    def __init__(self, value: Any) -> None:
        self.value = value

    def encode_to(self, out: bytearray) -> None:
        out += b"\x00\x53" + bytes([self.CODE])
        if self.KIND == "map":
            encode_map(out, self.value, key_symbols=self.CODE != 0x74)
        else:
            encode_value(out, self.value)

    def described_value(self) -> Any:
        return self.value

    @classmethod
    def from_described(cls, value: Any) -> Any:
        kind = cls.KIND
        ok = (
            kind == "*"
            or (kind == "map" and isinstance(value, dict))
            or (kind == "binary" and isinstance(value, bytes))
            or (kind == "list" and isinstance(value, list))
        )
        if not ok:
            raise AMQPError(
                DECODE_ERROR, f"{cls.NAME}: a {kind} expected, got {type(value).__name__}"
            )
        return cls(value)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.value == self.value

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.value!r})"


@_register
class DeliveryAnnotations(_Wrapped):
    __slots__ = ()
    CODE = 0x71
    NAME = "amqp:delivery-annotations:map"
    KIND = "map"


@_register
class MessageAnnotations(_Wrapped):
    __slots__ = ()
    CODE = 0x72
    NAME = "amqp:message-annotations:map"
    KIND = "map"


@_register
class ApplicationProperties(_Wrapped):
    __slots__ = ()
    CODE = 0x74
    NAME = "amqp:application-properties:map"
    KIND = "map"


@_register
class Data(_Wrapped):
    __slots__ = ()
    CODE = 0x75
    NAME = "amqp:data:binary"
    KIND = "binary"


@_register
class AmqpSequence(_Wrapped):
    __slots__ = ()
    CODE = 0x76
    NAME = "amqp:amqp-sequence:list"
    KIND = "list"


@_register
class AmqpValue(_Wrapped):
    __slots__ = ()
    CODE = 0x77
    NAME = "amqp:value:*"
    KIND = "*"


@_register
class Footer(_Wrapped):
    __slots__ = ()
    CODE = 0x78
    NAME = "amqp:footer:map"
    KIND = "map"


#: Descriptor codes of the message sections, in the order a message holds them.
SECTION_CODES = (0x70, 0x71, 0x72, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78)
