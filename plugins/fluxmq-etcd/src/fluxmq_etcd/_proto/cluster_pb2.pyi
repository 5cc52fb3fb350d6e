from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Direction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIRECTION_OUTBOUND: _ClassVar[Direction]
    DIRECTION_INBOUND: _ClassVar[Direction]

class SettleAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SETTLE_ACK: _ClassVar[SettleAction]
    SETTLE_NACK: _ClassVar[SettleAction]
    SETTLE_REJECT: _ClassVar[SettleAction]
    SETTLE_COMMIT: _ClassVar[SettleAction]

class SessionOpKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SESSION_OP_UNSPECIFIED: _ClassVar[SessionOpKind]
    SESSION_OP_SAVE: _ClassVar[SessionOpKind]
    SESSION_OP_DELETE: _ClassVar[SessionOpKind]
    SESSION_OP_SAVE_SUBSCRIPTION: _ClassVar[SessionOpKind]
    SESSION_OP_DELETE_SUBSCRIPTION: _ClassVar[SessionOpKind]
    SESSION_OP_ENQUEUE: _ClassVar[SessionOpKind]
    SESSION_OP_REMOVE_QUEUED: _ClassVar[SessionOpKind]
    SESSION_OP_SAVE_INFLIGHT: _ClassVar[SessionOpKind]
    SESSION_OP_DELETE_INFLIGHT: _ClassVar[SessionOpKind]
DIRECTION_OUTBOUND: Direction
DIRECTION_INBOUND: Direction
SETTLE_ACK: SettleAction
SETTLE_NACK: SettleAction
SETTLE_REJECT: SettleAction
SETTLE_COMMIT: SettleAction
SESSION_OP_UNSPECIFIED: SessionOpKind
SESSION_OP_SAVE: SessionOpKind
SESSION_OP_DELETE: SessionOpKind
SESSION_OP_SAVE_SUBSCRIPTION: SessionOpKind
SESSION_OP_DELETE_SUBSCRIPTION: SessionOpKind
SESSION_OP_ENQUEUE: SessionOpKind
SESSION_OP_REMOVE_QUEUED: SessionOpKind
SESSION_OP_SAVE_INFLIGHT: SessionOpKind
SESSION_OP_DELETE_INFLIGHT: SessionOpKind

class Value(_message.Message):
    __slots__ = ("null_value", "bool_value", "int_value", "float_value", "string_value", "bytes_value", "list_value", "struct_value", "big_int_value")
    NULL_VALUE_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    FLOAT_VALUE_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    BYTES_VALUE_FIELD_NUMBER: _ClassVar[int]
    LIST_VALUE_FIELD_NUMBER: _ClassVar[int]
    STRUCT_VALUE_FIELD_NUMBER: _ClassVar[int]
    BIG_INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    null_value: bool
    bool_value: bool
    int_value: int
    float_value: float
    string_value: str
    bytes_value: bytes
    list_value: ValueList
    struct_value: Struct
    big_int_value: str
    def __init__(self, null_value: _Optional[bool] = ..., bool_value: _Optional[bool] = ..., int_value: _Optional[int] = ..., float_value: _Optional[float] = ..., string_value: _Optional[str] = ..., bytes_value: _Optional[bytes] = ..., list_value: _Optional[_Union[ValueList, _Mapping]] = ..., struct_value: _Optional[_Union[Struct, _Mapping]] = ..., big_int_value: _Optional[str] = ...) -> None: ...

class ValueList(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Value]
    def __init__(self, items: _Optional[_Iterable[_Union[Value, _Mapping]]] = ...) -> None: ...

class Struct(_message.Message):
    __slots__ = ("fields",)
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    fields: _containers.RepeatedCompositeFieldContainer[Field]
    def __init__(self, fields: _Optional[_Iterable[_Union[Field, _Mapping]]] = ...) -> None: ...

class Field(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: Value
    def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...

class UserProperty(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class UserProperties(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[UserProperty]
    def __init__(self, items: _Optional[_Iterable[_Union[UserProperty, _Mapping]]] = ...) -> None: ...

class Message(_message.Message):
    __slots__ = ("topic", "payload", "qos", "retain", "properties", "user_properties", "content_type", "correlation_data", "response_topic", "payload_format", "expires_at", "origin_protocol", "origin_client", "timestamp")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    QOS_FIELD_NUMBER: _ClassVar[int]
    RETAIN_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    USER_PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_DATA_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_TOPIC_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FORMAT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_CLIENT_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: Struct
    user_properties: UserProperties
    content_type: str
    correlation_data: bytes
    response_topic: str
    payload_format: int
    expires_at: float
    origin_protocol: str
    origin_client: str
    timestamp: float
    def __init__(self, topic: _Optional[str] = ..., payload: _Optional[bytes] = ..., qos: _Optional[int] = ..., retain: _Optional[bool] = ..., properties: _Optional[_Union[Struct, _Mapping]] = ..., user_properties: _Optional[_Union[UserProperties, _Mapping]] = ..., content_type: _Optional[str] = ..., correlation_data: _Optional[bytes] = ..., response_topic: _Optional[str] = ..., payload_format: _Optional[int] = ..., expires_at: _Optional[float] = ..., origin_protocol: _Optional[str] = ..., origin_client: _Optional[str] = ..., timestamp: _Optional[float] = ...) -> None: ...

class ForwardedMessage(_message.Message):
    __slots__ = ("message", "target")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    message: Message
    target: str
    def __init__(self, message: _Optional[_Union[Message, _Mapping]] = ..., target: _Optional[str] = ...) -> None: ...

class ForwardBatch(_message.Message):
    __slots__ = ("messages", "sequence")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[ForwardedMessage]
    sequence: int
    def __init__(self, messages: _Optional[_Iterable[_Union[ForwardedMessage, _Mapping]]] = ..., sequence: _Optional[int] = ...) -> None: ...

class ForwardAck(_message.Message):
    __slots__ = ("accepted",)
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    def __init__(self, accepted: _Optional[int] = ...) -> None: ...

class TakeoverRequest(_message.Message):
    __slots__ = ("client_id", "to_node", "epoch")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    TO_NODE_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    to_node: str
    epoch: int
    def __init__(self, client_id: _Optional[str] = ..., to_node: _Optional[str] = ..., epoch: _Optional[int] = ...) -> None: ...

class TakeoverResponse(_message.Message):
    __slots__ = ("found", "session")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    found: bool
    session: SessionState
    def __init__(self, found: _Optional[bool] = ..., session: _Optional[_Union[SessionState, _Mapping]] = ...) -> None: ...

class SessionState(_message.Message):
    __slots__ = ("client_id", "protocol", "record", "subscriptions", "queued", "inflight", "will", "epoch")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    INFLIGHT_FIELD_NUMBER: _ClassVar[int]
    WILL_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    protocol: str
    record: Struct
    subscriptions: _containers.RepeatedCompositeFieldContainer[Subscription]
    queued: _containers.RepeatedCompositeFieldContainer[QueuedMessage]
    inflight: _containers.RepeatedCompositeFieldContainer[InflightMessage]
    will: WillMessage
    epoch: int
    def __init__(self, client_id: _Optional[str] = ..., protocol: _Optional[str] = ..., record: _Optional[_Union[Struct, _Mapping]] = ..., subscriptions: _Optional[_Iterable[_Union[Subscription, _Mapping]]] = ..., queued: _Optional[_Iterable[_Union[QueuedMessage, _Mapping]]] = ..., inflight: _Optional[_Iterable[_Union[InflightMessage, _Mapping]]] = ..., will: _Optional[_Union[WillMessage, _Mapping]] = ..., epoch: _Optional[int] = ...) -> None: ...

class Subscription(_message.Message):
    __slots__ = ("filter", "options")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    filter: str
    options: Struct
    def __init__(self, filter: _Optional[str] = ..., options: _Optional[_Union[Struct, _Mapping]] = ...) -> None: ...

class QueuedMessage(_message.Message):
    __slots__ = ("seq", "message", "qos", "retain", "subscription_ids")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    QOS_FIELD_NUMBER: _ClassVar[int]
    RETAIN_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_IDS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    message: Message
    qos: int
    retain: bool
    subscription_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, seq: _Optional[int] = ..., message: _Optional[_Union[Message, _Mapping]] = ..., qos: _Optional[int] = ..., retain: _Optional[bool] = ..., subscription_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class InflightMessage(_message.Message):
    __slots__ = ("packet_id", "direction", "qos", "retain", "state", "subscription_ids", "message")
    PACKET_ID_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    QOS_FIELD_NUMBER: _ClassVar[int]
    RETAIN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_IDS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    packet_id: int
    direction: Direction
    qos: int
    retain: bool
    state: int
    subscription_ids: _containers.RepeatedScalarFieldContainer[int]
    message: Message
    def __init__(self, packet_id: _Optional[int] = ..., direction: _Optional[_Union[Direction, str]] = ..., qos: _Optional[int] = ..., retain: _Optional[bool] = ..., state: _Optional[int] = ..., subscription_ids: _Optional[_Iterable[int]] = ..., message: _Optional[_Union[Message, _Mapping]] = ...) -> None: ...

class WillMessage(_message.Message):
    __slots__ = ("message", "publish_at")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_AT_FIELD_NUMBER: _ClassVar[int]
    message: Message
    publish_at: float
    def __init__(self, message: _Optional[_Union[Message, _Mapping]] = ..., publish_at: _Optional[float] = ...) -> None: ...

class FetchRetainedRequest(_message.Message):
    __slots__ = ("topic",)
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    topic: str
    def __init__(self, topic: _Optional[str] = ...) -> None: ...

class FetchRetainedResponse(_message.Message):
    __slots__ = ("found", "message")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    found: bool
    message: Message
    def __init__(self, found: _Optional[bool] = ..., message: _Optional[_Union[Message, _Mapping]] = ...) -> None: ...

class QueueAppendRequest(_message.Message):
    __slots__ = ("queue", "messages")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    queue: str
    messages: _containers.RepeatedCompositeFieldContainer[Message]
    def __init__(self, queue: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[Message, _Mapping]]] = ...) -> None: ...

class QueueAppendResponse(_message.Message):
    __slots__ = ("offsets",)
    OFFSETS_FIELD_NUMBER: _ClassVar[int]
    offsets: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, offsets: _Optional[_Iterable[int]] = ...) -> None: ...

class QueueSettleRequest(_message.Message):
    __slots__ = ("queue", "group", "offsets", "action", "dead_letter", "delay", "uncounted", "elsewhere")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    OFFSETS_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTER_FIELD_NUMBER: _ClassVar[int]
    DELAY_FIELD_NUMBER: _ClassVar[int]
    UNCOUNTED_FIELD_NUMBER: _ClassVar[int]
    ELSEWHERE_FIELD_NUMBER: _ClassVar[int]
    queue: str
    group: str
    offsets: _containers.RepeatedScalarFieldContainer[int]
    action: SettleAction
    dead_letter: bool
    delay: float
    uncounted: bool
    elsewhere: bool
    def __init__(self, queue: _Optional[str] = ..., group: _Optional[str] = ..., offsets: _Optional[_Iterable[int]] = ..., action: _Optional[_Union[SettleAction, str]] = ..., dead_letter: _Optional[bool] = ..., delay: _Optional[float] = ..., uncounted: _Optional[bool] = ..., elsewhere: _Optional[bool] = ...) -> None: ...

class QueueSettleResponse(_message.Message):
    __slots__ = ("settled",)
    SETTLED_FIELD_NUMBER: _ClassVar[int]
    settled: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, settled: _Optional[_Iterable[bool]] = ...) -> None: ...

class QueueConsumeRequest(_message.Message):
    __slots__ = ("queue", "group", "consumer_id", "client_id", "filter", "credit", "auto_commit", "cursor", "paused")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    CREDIT_FIELD_NUMBER: _ClassVar[int]
    AUTO_COMMIT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    queue: str
    group: str
    consumer_id: str
    client_id: str
    filter: str
    credit: int
    auto_commit: bool
    cursor: Value
    paused: bool
    def __init__(self, queue: _Optional[str] = ..., group: _Optional[str] = ..., consumer_id: _Optional[str] = ..., client_id: _Optional[str] = ..., filter: _Optional[str] = ..., credit: _Optional[int] = ..., auto_commit: _Optional[bool] = ..., cursor: _Optional[_Union[Value, _Mapping]] = ..., paused: _Optional[bool] = ...) -> None: ...

class QueueConsumeResponse(_message.Message):
    __slots__ = ("stream",)
    STREAM_FIELD_NUMBER: _ClassVar[int]
    stream: bool
    def __init__(self, stream: _Optional[bool] = ...) -> None: ...

class QueueCancelRequest(_message.Message):
    __slots__ = ("consumer_id",)
    CONSUMER_ID_FIELD_NUMBER: _ClassVar[int]
    consumer_id: str
    def __init__(self, consumer_id: _Optional[str] = ...) -> None: ...

class QueueCancelResponse(_message.Message):
    __slots__ = ("found",)
    FOUND_FIELD_NUMBER: _ClassVar[int]
    found: bool
    def __init__(self, found: _Optional[bool] = ...) -> None: ...

class QueueFlowRequest(_message.Message):
    __slots__ = ("consumer_id", "credit", "paused")
    CONSUMER_ID_FIELD_NUMBER: _ClassVar[int]
    CREDIT_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    consumer_id: str
    credit: int
    paused: bool
    def __init__(self, consumer_id: _Optional[str] = ..., credit: _Optional[int] = ..., paused: _Optional[bool] = ...) -> None: ...

class QueueFlowResponse(_message.Message):
    __slots__ = ("found",)
    FOUND_FIELD_NUMBER: _ClassVar[int]
    found: bool
    def __init__(self, found: _Optional[bool] = ...) -> None: ...

class SessionOp(_message.Message):
    __slots__ = ("kind", "client_id", "epoch", "record", "filter", "seq", "seqs", "packet_id", "message")
    KIND_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    SEQS_FIELD_NUMBER: _ClassVar[int]
    PACKET_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    kind: SessionOpKind
    client_id: str
    epoch: int
    record: Struct
    filter: str
    seq: int
    seqs: _containers.RepeatedScalarFieldContainer[int]
    packet_id: int
    message: Message
    def __init__(self, kind: _Optional[_Union[SessionOpKind, str]] = ..., client_id: _Optional[str] = ..., epoch: _Optional[int] = ..., record: _Optional[_Union[Struct, _Mapping]] = ..., filter: _Optional[str] = ..., seq: _Optional[int] = ..., seqs: _Optional[_Iterable[int]] = ..., packet_id: _Optional[int] = ..., message: _Optional[_Union[Message, _Mapping]] = ...) -> None: ...

class ReplicateRequest(_message.Message):
    __slots__ = ("reset", "version", "ops", "run")
    RESET_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    OPS_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    reset: bool
    version: int
    ops: _containers.RepeatedCompositeFieldContainer[SessionOp]
    run: int
    def __init__(self, reset: _Optional[bool] = ..., version: _Optional[int] = ..., ops: _Optional[_Iterable[_Union[SessionOp, _Mapping]]] = ..., run: _Optional[int] = ...) -> None: ...

class ReplicateResponse(_message.Message):
    __slots__ = ("applied",)
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    applied: int
    def __init__(self, applied: _Optional[int] = ...) -> None: ...

class FetchReplicaRequest(_message.Message):
    __slots__ = ("client_id", "epoch")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    epoch: int
    def __init__(self, client_id: _Optional[str] = ..., epoch: _Optional[int] = ...) -> None: ...

class FetchReplicaResponse(_message.Message):
    __slots__ = ("found", "origin", "epoch", "version", "session", "run")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    found: bool
    origin: str
    epoch: int
    version: int
    session: SessionState
    run: int
    def __init__(self, found: _Optional[bool] = ..., origin: _Optional[str] = ..., epoch: _Optional[int] = ..., version: _Optional[int] = ..., session: _Optional[_Union[SessionState, _Mapping]] = ..., run: _Optional[int] = ...) -> None: ...

class PingRequest(_message.Message):
    __slots__ = ("sent_at",)
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    sent_at: float
    def __init__(self, sent_at: _Optional[float] = ...) -> None: ...

class PingResponse(_message.Message):
    __slots__ = ("node_id", "time", "ready")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    time: float
    ready: bool
    def __init__(self, node_id: _Optional[str] = ..., time: _Optional[float] = ..., ready: _Optional[bool] = ...) -> None: ...
