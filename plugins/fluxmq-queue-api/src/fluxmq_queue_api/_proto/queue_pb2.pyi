import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CompressionType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMPRESSION_TYPE_UNSPECIFIED: _ClassVar[CompressionType]
    COMPRESSION_TYPE_NONE: _ClassVar[CompressionType]
    COMPRESSION_TYPE_S2: _ClassVar[CompressionType]
    COMPRESSION_TYPE_ZSTD: _ClassVar[CompressionType]

class ReplicationMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REPLICATION_MODE_UNSPECIFIED: _ClassVar[ReplicationMode]
    REPLICATION_MODE_SYNC: _ClassVar[ReplicationMode]
    REPLICATION_MODE_ASYNC: _ClassVar[ReplicationMode]

class QueueErrorCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QUEUE_ERROR_CODE_UNSPECIFIED: _ClassVar[QueueErrorCode]
    QUEUE_ERROR_CODE_INTERNAL: _ClassVar[QueueErrorCode]
    QUEUE_ERROR_CODE_CANCELED: _ClassVar[QueueErrorCode]
    QUEUE_ERROR_CODE_INVALID_ARGUMENT: _ClassVar[QueueErrorCode]
    QUEUE_ERROR_CODE_NOT_FOUND: _ClassVar[QueueErrorCode]
    QUEUE_ERROR_CODE_ALREADY_EXISTS: _ClassVar[QueueErrorCode]
    QUEUE_ERROR_CODE_CONFLICT: _ClassVar[QueueErrorCode]
    QUEUE_ERROR_CODE_FAILED_PRECONDITION: _ClassVar[QueueErrorCode]
    QUEUE_ERROR_CODE_RESOURCE_EXHAUSTED: _ClassVar[QueueErrorCode]
    QUEUE_ERROR_CODE_OUT_OF_RANGE: _ClassVar[QueueErrorCode]
    QUEUE_ERROR_CODE_UNAVAILABLE: _ClassVar[QueueErrorCode]
    QUEUE_ERROR_CODE_DEADLINE_EXCEEDED: _ClassVar[QueueErrorCode]

class QueueOwnershipState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QUEUE_OWNERSHIP_STATE_UNSPECIFIED: _ClassVar[QueueOwnershipState]
    QUEUE_OWNERSHIP_STATE_CALLER: _ClassVar[QueueOwnershipState]
    QUEUE_OWNERSHIP_STATE_OTHER: _ClassVar[QueueOwnershipState]
    QUEUE_OWNERSHIP_STATE_LOST: _ClassVar[QueueOwnershipState]

class QueueLeaderState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QUEUE_LEADER_STATE_UNSPECIFIED: _ClassVar[QueueLeaderState]
    QUEUE_LEADER_STATE_REQUIRED: _ClassVar[QueueLeaderState]
    QUEUE_LEADER_STATE_UNAVAILABLE: _ClassVar[QueueLeaderState]
    QUEUE_LEADER_STATE_NOT_LOCAL: _ClassVar[QueueLeaderState]

class QueueDurabilityState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QUEUE_DURABILITY_STATE_UNSPECIFIED: _ClassVar[QueueDurabilityState]
    QUEUE_DURABILITY_STATE_NOT_ATTEMPTED: _ClassVar[QueueDurabilityState]
    QUEUE_DURABILITY_STATE_UNCONFIRMED: _ClassVar[QueueDurabilityState]
    QUEUE_DURABILITY_STATE_UNSUPPORTED: _ClassVar[QueueDurabilityState]

class InitialPosition(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INITIAL_POSITION_UNSPECIFIED: _ClassVar[InitialPosition]
    INITIAL_POSITION_EARLIEST: _ClassVar[InitialPosition]
    INITIAL_POSITION_LATEST: _ClassVar[InitialPosition]
COMPRESSION_TYPE_UNSPECIFIED: CompressionType
COMPRESSION_TYPE_NONE: CompressionType
COMPRESSION_TYPE_S2: CompressionType
COMPRESSION_TYPE_ZSTD: CompressionType
REPLICATION_MODE_UNSPECIFIED: ReplicationMode
REPLICATION_MODE_SYNC: ReplicationMode
REPLICATION_MODE_ASYNC: ReplicationMode
QUEUE_ERROR_CODE_UNSPECIFIED: QueueErrorCode
QUEUE_ERROR_CODE_INTERNAL: QueueErrorCode
QUEUE_ERROR_CODE_CANCELED: QueueErrorCode
QUEUE_ERROR_CODE_INVALID_ARGUMENT: QueueErrorCode
QUEUE_ERROR_CODE_NOT_FOUND: QueueErrorCode
QUEUE_ERROR_CODE_ALREADY_EXISTS: QueueErrorCode
QUEUE_ERROR_CODE_CONFLICT: QueueErrorCode
QUEUE_ERROR_CODE_FAILED_PRECONDITION: QueueErrorCode
QUEUE_ERROR_CODE_RESOURCE_EXHAUSTED: QueueErrorCode
QUEUE_ERROR_CODE_OUT_OF_RANGE: QueueErrorCode
QUEUE_ERROR_CODE_UNAVAILABLE: QueueErrorCode
QUEUE_ERROR_CODE_DEADLINE_EXCEEDED: QueueErrorCode
QUEUE_OWNERSHIP_STATE_UNSPECIFIED: QueueOwnershipState
QUEUE_OWNERSHIP_STATE_CALLER: QueueOwnershipState
QUEUE_OWNERSHIP_STATE_OTHER: QueueOwnershipState
QUEUE_OWNERSHIP_STATE_LOST: QueueOwnershipState
QUEUE_LEADER_STATE_UNSPECIFIED: QueueLeaderState
QUEUE_LEADER_STATE_REQUIRED: QueueLeaderState
QUEUE_LEADER_STATE_UNAVAILABLE: QueueLeaderState
QUEUE_LEADER_STATE_NOT_LOCAL: QueueLeaderState
QUEUE_DURABILITY_STATE_UNSPECIFIED: QueueDurabilityState
QUEUE_DURABILITY_STATE_NOT_ATTEMPTED: QueueDurabilityState
QUEUE_DURABILITY_STATE_UNCONFIRMED: QueueDurabilityState
QUEUE_DURABILITY_STATE_UNSUPPORTED: QueueDurabilityState
INITIAL_POSITION_UNSPECIFIED: InitialPosition
INITIAL_POSITION_EARLIEST: InitialPosition
INITIAL_POSITION_LATEST: InitialPosition

class Message(_message.Message):
    __slots__ = ("offset", "timestamp", "key", "value", "headers", "delivery_info")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_INFO_FIELD_NUMBER: _ClassVar[int]
    offset: int
    timestamp: _timestamp_pb2.Timestamp
    key: bytes
    value: bytes
    headers: _containers.ScalarMap[str, bytes]
    delivery_info: DeliveryInfo
    def __init__(self, offset: _Optional[int] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., headers: _Optional[_Mapping[str, bytes]] = ..., delivery_info: _Optional[_Union[DeliveryInfo, _Mapping]] = ...) -> None: ...

class DeliveryInfo(_message.Message):
    __slots__ = ("delivery_count", "first_delivered_at", "delivered_at", "group_id", "consumer_id")
    DELIVERY_COUNT_FIELD_NUMBER: _ClassVar[int]
    FIRST_DELIVERED_AT_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_AT_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ID_FIELD_NUMBER: _ClassVar[int]
    delivery_count: int
    first_delivered_at: _timestamp_pb2.Timestamp
    delivered_at: _timestamp_pb2.Timestamp
    group_id: str
    consumer_id: str
    def __init__(self, delivery_count: _Optional[int] = ..., first_delivered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., delivered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., group_id: _Optional[str] = ..., consumer_id: _Optional[str] = ...) -> None: ...

class Queue(_message.Message):
    __slots__ = ("name", "topics", "config", "state", "created_at", "updated_at", "reserved")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    name: str
    topics: _containers.RepeatedScalarFieldContainer[str]
    config: QueueConfig
    state: QueueState
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    reserved: bool
    def __init__(self, name: _Optional[str] = ..., topics: _Optional[_Iterable[str]] = ..., config: _Optional[_Union[QueueConfig, _Mapping]] = ..., state: _Optional[_Union[QueueState, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reserved: _Optional[bool] = ...) -> None: ...

class QueueConfig(_message.Message):
    __slots__ = ("retention", "compression", "max_message_size", "segment", "replication", "type", "max_priority")
    RETENTION_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    REPLICATION_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MAX_PRIORITY_FIELD_NUMBER: _ClassVar[int]
    retention: RetentionConfig
    compression: CompressionType
    max_message_size: int
    segment: SegmentConfig
    replication: ReplicationConfig
    type: str
    max_priority: int
    def __init__(self, retention: _Optional[_Union[RetentionConfig, _Mapping]] = ..., compression: _Optional[_Union[CompressionType, str]] = ..., max_message_size: _Optional[int] = ..., segment: _Optional[_Union[SegmentConfig, _Mapping]] = ..., replication: _Optional[_Union[ReplicationConfig, _Mapping]] = ..., type: _Optional[str] = ..., max_priority: _Optional[int] = ...) -> None: ...

class RetentionConfig(_message.Message):
    __slots__ = ("max_age", "max_bytes", "min_messages")
    MAX_AGE_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    MIN_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    max_age: _duration_pb2.Duration
    max_bytes: int
    min_messages: int
    def __init__(self, max_age: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_bytes: _Optional[int] = ..., min_messages: _Optional[int] = ...) -> None: ...

class SegmentConfig(_message.Message):
    __slots__ = ("max_size", "max_age", "index_interval")
    MAX_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_AGE_FIELD_NUMBER: _ClassVar[int]
    INDEX_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    max_size: int
    max_age: _duration_pb2.Duration
    index_interval: int
    def __init__(self, max_size: _Optional[int] = ..., max_age: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., index_interval: _Optional[int] = ...) -> None: ...

class ReplicationConfig(_message.Message):
    __slots__ = ("enabled", "replication_factor", "mode", "min_in_sync_replicas", "ack_timeout", "heartbeat_timeout", "election_timeout", "snapshot_interval", "snapshot_threshold", "group")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    REPLICATION_FACTOR_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    MIN_IN_SYNC_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    ACK_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    ELECTION_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    replication_factor: int
    mode: ReplicationMode
    min_in_sync_replicas: int
    ack_timeout: _duration_pb2.Duration
    heartbeat_timeout: _duration_pb2.Duration
    election_timeout: _duration_pb2.Duration
    snapshot_interval: _duration_pb2.Duration
    snapshot_threshold: int
    group: str
    def __init__(self, enabled: _Optional[bool] = ..., replication_factor: _Optional[int] = ..., mode: _Optional[_Union[ReplicationMode, str]] = ..., min_in_sync_replicas: _Optional[int] = ..., ack_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., heartbeat_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., election_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., snapshot_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., snapshot_threshold: _Optional[int] = ..., group: _Optional[str] = ...) -> None: ...

class QueueState(_message.Message):
    __slots__ = ("total_messages", "total_bytes", "consumer_group_count", "oldest_message", "newest_message")
    TOTAL_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_GROUP_COUNT_FIELD_NUMBER: _ClassVar[int]
    OLDEST_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    NEWEST_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    total_messages: int
    total_bytes: int
    consumer_group_count: int
    oldest_message: _timestamp_pb2.Timestamp
    newest_message: _timestamp_pb2.Timestamp
    def __init__(self, total_messages: _Optional[int] = ..., total_bytes: _Optional[int] = ..., consumer_group_count: _Optional[int] = ..., oldest_message: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., newest_message: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class QueueErrorDetail(_message.Message):
    __slots__ = ("code", "retryable", "ownership", "leader", "durability", "append_progress", "settlement_progress")
    CODE_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    OWNERSHIP_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    DURABILITY_FIELD_NUMBER: _ClassVar[int]
    APPEND_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    SETTLEMENT_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    code: QueueErrorCode
    retryable: bool
    ownership: QueueOwnershipState
    leader: QueueLeaderState
    durability: QueueDurabilityState
    append_progress: AppendProgress
    settlement_progress: SettlementProgress
    def __init__(self, code: _Optional[_Union[QueueErrorCode, str]] = ..., retryable: _Optional[bool] = ..., ownership: _Optional[_Union[QueueOwnershipState, str]] = ..., leader: _Optional[_Union[QueueLeaderState, str]] = ..., durability: _Optional[_Union[QueueDurabilityState, str]] = ..., append_progress: _Optional[_Union[AppendProgress, _Mapping]] = ..., settlement_progress: _Optional[_Union[SettlementProgress, _Mapping]] = ...) -> None: ...

class AppendProgress(_message.Message):
    __slots__ = ("processed_count", "failed_index", "first_offset", "last_offset")
    PROCESSED_COUNT_FIELD_NUMBER: _ClassVar[int]
    FAILED_INDEX_FIELD_NUMBER: _ClassVar[int]
    FIRST_OFFSET_FIELD_NUMBER: _ClassVar[int]
    LAST_OFFSET_FIELD_NUMBER: _ClassVar[int]
    processed_count: int
    failed_index: int
    first_offset: int
    last_offset: int
    def __init__(self, processed_count: _Optional[int] = ..., failed_index: _Optional[int] = ..., first_offset: _Optional[int] = ..., last_offset: _Optional[int] = ...) -> None: ...

class SettlementProgress(_message.Message):
    __slots__ = ("processed_count", "failed_offset", "committed")
    PROCESSED_COUNT_FIELD_NUMBER: _ClassVar[int]
    FAILED_OFFSET_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    processed_count: int
    failed_offset: int
    committed: int
    def __init__(self, processed_count: _Optional[int] = ..., failed_offset: _Optional[int] = ..., committed: _Optional[int] = ...) -> None: ...

class QueueInfo(_message.Message):
    __slots__ = ("queue_name", "head_offset", "tail_offset", "message_count", "size_bytes", "segment_count", "oldest_timestamp", "newest_timestamp")
    QUEUE_NAME_FIELD_NUMBER: _ClassVar[int]
    HEAD_OFFSET_FIELD_NUMBER: _ClassVar[int]
    TAIL_OFFSET_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    OLDEST_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    NEWEST_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    queue_name: str
    head_offset: int
    tail_offset: int
    message_count: int
    size_bytes: int
    segment_count: int
    oldest_timestamp: _timestamp_pb2.Timestamp
    newest_timestamp: _timestamp_pb2.Timestamp
    def __init__(self, queue_name: _Optional[str] = ..., head_offset: _Optional[int] = ..., tail_offset: _Optional[int] = ..., message_count: _Optional[int] = ..., size_bytes: _Optional[int] = ..., segment_count: _Optional[int] = ..., oldest_timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., newest_timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ConsumerGroup(_message.Message):
    __slots__ = ("queue_name", "group_id", "config", "cursor", "consumers", "pending_count", "created_at", "pattern")
    QUEUE_NAME_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    CONSUMERS_FIELD_NUMBER: _ClassVar[int]
    PENDING_COUNT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    queue_name: str
    group_id: str
    config: ConsumerGroupConfig
    cursor: QueueCursor
    consumers: _containers.RepeatedCompositeFieldContainer[ConsumerInfo]
    pending_count: int
    created_at: _timestamp_pb2.Timestamp
    pattern: str
    def __init__(self, queue_name: _Optional[str] = ..., group_id: _Optional[str] = ..., config: _Optional[_Union[ConsumerGroupConfig, _Mapping]] = ..., cursor: _Optional[_Union[QueueCursor, _Mapping]] = ..., consumers: _Optional[_Iterable[_Union[ConsumerInfo, _Mapping]]] = ..., pending_count: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., pattern: _Optional[str] = ...) -> None: ...

class ConsumerGroupConfig(_message.Message):
    __slots__ = ("ack_timeout", "max_redeliveries", "initial_position")
    ACK_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    MAX_REDELIVERIES_FIELD_NUMBER: _ClassVar[int]
    INITIAL_POSITION_FIELD_NUMBER: _ClassVar[int]
    ack_timeout: _duration_pb2.Duration
    max_redeliveries: int
    initial_position: InitialPosition
    def __init__(self, ack_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_redeliveries: _Optional[int] = ..., initial_position: _Optional[_Union[InitialPosition, str]] = ...) -> None: ...

class QueueCursor(_message.Message):
    __slots__ = ("cursor", "committed", "lag", "updated_at")
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    LAG_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    cursor: int
    committed: int
    lag: int
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, cursor: _Optional[int] = ..., committed: _Optional[int] = ..., lag: _Optional[int] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ConsumerInfo(_message.Message):
    __slots__ = ("consumer_id", "pending_count", "last_heartbeat", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CONSUMER_ID_FIELD_NUMBER: _ClassVar[int]
    PENDING_COUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    consumer_id: str
    pending_count: int
    last_heartbeat: _timestamp_pb2.Timestamp
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, consumer_id: _Optional[str] = ..., pending_count: _Optional[int] = ..., last_heartbeat: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PendingEntry(_message.Message):
    __slots__ = ("offset", "consumer_id", "delivered_at", "delivery_count", "idle_time")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ID_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_AT_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_COUNT_FIELD_NUMBER: _ClassVar[int]
    IDLE_TIME_FIELD_NUMBER: _ClassVar[int]
    offset: int
    consumer_id: str
    delivered_at: _timestamp_pb2.Timestamp
    delivery_count: int
    idle_time: _duration_pb2.Duration
    def __init__(self, offset: _Optional[int] = ..., consumer_id: _Optional[str] = ..., delivered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., delivery_count: _Optional[int] = ..., idle_time: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class CreateQueueRequest(_message.Message):
    __slots__ = ("name", "topics", "config")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    name: str
    topics: _containers.RepeatedScalarFieldContainer[str]
    config: QueueConfig
    def __init__(self, name: _Optional[str] = ..., topics: _Optional[_Iterable[str]] = ..., config: _Optional[_Union[QueueConfig, _Mapping]] = ...) -> None: ...

class GetQueueRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListQueuesRequest(_message.Message):
    __slots__ = ("prefix", "limit", "page_token")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    limit: int
    page_token: str
    def __init__(self, prefix: _Optional[str] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListQueuesResponse(_message.Message):
    __slots__ = ("queues", "next_page_token")
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    queues: _containers.RepeatedCompositeFieldContainer[Queue]
    next_page_token: str
    def __init__(self, queues: _Optional[_Iterable[_Union[Queue, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteQueueRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class UpdateQueueRequest(_message.Message):
    __slots__ = ("name", "config")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    name: str
    config: QueueConfig
    def __init__(self, name: _Optional[str] = ..., config: _Optional[_Union[QueueConfig, _Mapping]] = ...) -> None: ...

class AppendRequest(_message.Message):
    __slots__ = ("queue_name", "key", "value", "headers")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    QUEUE_NAME_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    queue_name: str
    key: bytes
    value: bytes
    headers: _containers.ScalarMap[str, bytes]
    def __init__(self, queue_name: _Optional[str] = ..., key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., headers: _Optional[_Mapping[str, bytes]] = ...) -> None: ...

class AppendResponse(_message.Message):
    __slots__ = ("offset", "timestamp")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    offset: int
    timestamp: _timestamp_pb2.Timestamp
    def __init__(self, offset: _Optional[int] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AppendBatchRequest(_message.Message):
    __slots__ = ("queue_name", "messages")
    QUEUE_NAME_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    queue_name: str
    messages: _containers.RepeatedCompositeFieldContainer[BatchMessage]
    def __init__(self, queue_name: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[BatchMessage, _Mapping]]] = ...) -> None: ...

class BatchMessage(_message.Message):
    __slots__ = ("key", "value", "headers")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    value: bytes
    headers: _containers.ScalarMap[str, bytes]
    def __init__(self, key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., headers: _Optional[_Mapping[str, bytes]] = ...) -> None: ...

class AppendBatchResponse(_message.Message):
    __slots__ = ("first_offset", "last_offset", "count", "timestamp")
    FIRST_OFFSET_FIELD_NUMBER: _ClassVar[int]
    LAST_OFFSET_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    first_offset: int
    last_offset: int
    count: int
    timestamp: _timestamp_pb2.Timestamp
    def __init__(self, first_offset: _Optional[int] = ..., last_offset: _Optional[int] = ..., count: _Optional[int] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReadRequest(_message.Message):
    __slots__ = ("queue_name", "offset")
    QUEUE_NAME_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    queue_name: str
    offset: int
    def __init__(self, queue_name: _Optional[str] = ..., offset: _Optional[int] = ...) -> None: ...

class ReadBatchRequest(_message.Message):
    __slots__ = ("queue_name", "start_offset", "limit", "max_bytes")
    QUEUE_NAME_FIELD_NUMBER: _ClassVar[int]
    START_OFFSET_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    queue_name: str
    start_offset: int
    limit: int
    max_bytes: int
    def __init__(self, queue_name: _Optional[str] = ..., start_offset: _Optional[int] = ..., limit: _Optional[int] = ..., max_bytes: _Optional[int] = ...) -> None: ...

class ReadBatchResponse(_message.Message):
    __slots__ = ("messages", "next_offset", "end_of_queue")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_OFFSET_FIELD_NUMBER: _ClassVar[int]
    END_OF_QUEUE_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[Message]
    next_offset: int
    end_of_queue: bool
    def __init__(self, messages: _Optional[_Iterable[_Union[Message, _Mapping]]] = ..., next_offset: _Optional[int] = ..., end_of_queue: _Optional[bool] = ...) -> None: ...

class TailRequest(_message.Message):
    __slots__ = ("queue_name", "start_offset", "start_from")
    class StartFrom(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        START_FROM_UNSPECIFIED: _ClassVar[TailRequest.StartFrom]
        START_FROM_EARLIEST: _ClassVar[TailRequest.StartFrom]
        START_FROM_LATEST: _ClassVar[TailRequest.StartFrom]
        START_FROM_OFFSET: _ClassVar[TailRequest.StartFrom]
    START_FROM_UNSPECIFIED: TailRequest.StartFrom
    START_FROM_EARLIEST: TailRequest.StartFrom
    START_FROM_LATEST: TailRequest.StartFrom
    START_FROM_OFFSET: TailRequest.StartFrom
    QUEUE_NAME_FIELD_NUMBER: _ClassVar[int]
    START_OFFSET_FIELD_NUMBER: _ClassVar[int]
    START_FROM_FIELD_NUMBER: _ClassVar[int]
    queue_name: str
    start_offset: int
    start_from: TailRequest.StartFrom
    def __init__(self, queue_name: _Optional[str] = ..., start_offset: _Optional[int] = ..., start_from: _Optional[_Union[TailRequest.StartFrom, str]] = ...) -> None: ...

class SeekToOffsetRequest(_message.Message):
    __slots__ = ("queue_name", "offset")
    QUEUE_NAME_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    queue_name: str
    offset: int
    def __init__(self, queue_name: _Optional[str] = ..., offset: _Optional[int] = ...) -> None: ...

class SeekToTimestampRequest(_message.Message):
    __slots__ = ("queue_name", "timestamp")
    QUEUE_NAME_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    queue_name: str
    timestamp: _timestamp_pb2.Timestamp
    def __init__(self, queue_name: _Optional[str] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SeekResponse(_message.Message):
    __slots__ = ("offset", "timestamp", "exact_match")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    EXACT_MATCH_FIELD_NUMBER: _ClassVar[int]
    offset: int
    timestamp: _timestamp_pb2.Timestamp
    exact_match: bool
    def __init__(self, offset: _Optional[int] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., exact_match: _Optional[bool] = ...) -> None: ...

class CreateConsumerGroupRequest(_message.Message):
    __slots__ = ("queue_name", "group_id", "config", "pattern")
    QUEUE_NAME_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    queue_name: str
    group_id: str
    config: ConsumerGroupConfig
    pattern: str
    def __init__(self, queue_name: _Optional[str] = ..., group_id: _Optional[str] = ..., config: _Optional[_Union[ConsumerGroupConfig, _Mapping]] = ..., pattern: _Optional[str] = ...) -> None: ...

class GetConsumerGroupRequest(_message.Message):
    __slots__ = ("queue_name", "group_id")
    QUEUE_NAME_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    queue_name: str
    group_id: str
    def __init__(self, queue_name: _Optional[str] = ..., group_id: _Optional[str] = ...) -> None: ...

class ListConsumerGroupsRequest(_message.Message):
    __slots__ = ("queue_name", "limit", "page_token")
    QUEUE_NAME_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    queue_name: str
    limit: int
    page_token: str
    def __init__(self, queue_name: _Optional[str] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListConsumerGroupsResponse(_message.Message):
    __slots__ = ("groups", "next_page_token")
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedCompositeFieldContainer[ConsumerGroup]
    next_page_token: str
    def __init__(self, groups: _Optional[_Iterable[_Union[ConsumerGroup, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteConsumerGroupRequest(_message.Message):
    __slots__ = ("queue_name", "group_id")
    QUEUE_NAME_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    queue_name: str
    group_id: str
    def __init__(self, queue_name: _Optional[str] = ..., group_id: _Optional[str] = ...) -> None: ...

class JoinGroupRequest(_message.Message):
    __slots__ = ("queue_name", "group_id", "consumer_id", "metadata", "session_timeout")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    QUEUE_NAME_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SESSION_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    queue_name: str
    group_id: str
    consumer_id: str
    metadata: _containers.ScalarMap[str, str]
    session_timeout: _duration_pb2.Duration
    def __init__(self, queue_name: _Optional[str] = ..., group_id: _Optional[str] = ..., consumer_id: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., session_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class JoinGroupResponse(_message.Message):
    __slots__ = ("generation_id", "consumers")
    GENERATION_ID_FIELD_NUMBER: _ClassVar[int]
    CONSUMERS_FIELD_NUMBER: _ClassVar[int]
    generation_id: int
    consumers: _containers.RepeatedCompositeFieldContainer[ConsumerInfo]
    def __init__(self, generation_id: _Optional[int] = ..., consumers: _Optional[_Iterable[_Union[ConsumerInfo, _Mapping]]] = ...) -> None: ...

class LeaveGroupRequest(_message.Message):
    __slots__ = ("queue_name", "group_id", "consumer_id")
    QUEUE_NAME_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ID_FIELD_NUMBER: _ClassVar[int]
    queue_name: str
    group_id: str
    consumer_id: str
    def __init__(self, queue_name: _Optional[str] = ..., group_id: _Optional[str] = ..., consumer_id: _Optional[str] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("queue_name", "group_id", "consumer_id", "generation_id")
    QUEUE_NAME_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ID_FIELD_NUMBER: _ClassVar[int]
    GENERATION_ID_FIELD_NUMBER: _ClassVar[int]
    queue_name: str
    group_id: str
    consumer_id: str
    generation_id: int
    def __init__(self, queue_name: _Optional[str] = ..., group_id: _Optional[str] = ..., consumer_id: _Optional[str] = ..., generation_id: _Optional[int] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("should_rejoin", "generation_id")
    SHOULD_REJOIN_FIELD_NUMBER: _ClassVar[int]
    GENERATION_ID_FIELD_NUMBER: _ClassVar[int]
    should_rejoin: bool
    generation_id: int
    def __init__(self, should_rejoin: _Optional[bool] = ..., generation_id: _Optional[int] = ...) -> None: ...

class ConsumeRequest(_message.Message):
    __slots__ = ("queue_name", "group_id", "consumer_id", "max_messages", "max_bytes", "wait_time")
    QUEUE_NAME_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    WAIT_TIME_FIELD_NUMBER: _ClassVar[int]
    queue_name: str
    group_id: str
    consumer_id: str
    max_messages: int
    max_bytes: int
    wait_time: _duration_pb2.Duration
    def __init__(self, queue_name: _Optional[str] = ..., group_id: _Optional[str] = ..., consumer_id: _Optional[str] = ..., max_messages: _Optional[int] = ..., max_bytes: _Optional[int] = ..., wait_time: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ConsumeResponse(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[Message]
    def __init__(self, messages: _Optional[_Iterable[_Union[Message, _Mapping]]] = ...) -> None: ...

class ConsumeQueueRequest(_message.Message):
    __slots__ = ("queue_name", "group_id", "consumer_id", "max_in_flight")
    QUEUE_NAME_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    queue_name: str
    group_id: str
    consumer_id: str
    max_in_flight: int
    def __init__(self, queue_name: _Optional[str] = ..., group_id: _Optional[str] = ..., consumer_id: _Optional[str] = ..., max_in_flight: _Optional[int] = ...) -> None: ...

class AckRequest(_message.Message):
    __slots__ = ("queue_name", "group_id", "consumer_id", "offsets")
    QUEUE_NAME_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSETS_FIELD_NUMBER: _ClassVar[int]
    queue_name: str
    group_id: str
    consumer_id: str
    offsets: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, queue_name: _Optional[str] = ..., group_id: _Optional[str] = ..., consumer_id: _Optional[str] = ..., offsets: _Optional[_Iterable[int]] = ...) -> None: ...

class AckResponse(_message.Message):
    __slots__ = ("acked_count", "committed")
    ACKED_COUNT_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    acked_count: int
    committed: QueueCursor
    def __init__(self, acked_count: _Optional[int] = ..., committed: _Optional[_Union[QueueCursor, _Mapping]] = ...) -> None: ...

class NackRequest(_message.Message):
    __slots__ = ("queue_name", "group_id", "consumer_id", "offsets", "delay")
    QUEUE_NAME_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSETS_FIELD_NUMBER: _ClassVar[int]
    DELAY_FIELD_NUMBER: _ClassVar[int]
    queue_name: str
    group_id: str
    consumer_id: str
    offsets: _containers.RepeatedScalarFieldContainer[int]
    delay: _duration_pb2.Duration
    def __init__(self, queue_name: _Optional[str] = ..., group_id: _Optional[str] = ..., consumer_id: _Optional[str] = ..., offsets: _Optional[_Iterable[int]] = ..., delay: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ClaimRequest(_message.Message):
    __slots__ = ("queue_name", "group_id", "consumer_id", "min_idle_time", "limit")
    QUEUE_NAME_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ID_FIELD_NUMBER: _ClassVar[int]
    MIN_IDLE_TIME_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    queue_name: str
    group_id: str
    consumer_id: str
    min_idle_time: _duration_pb2.Duration
    limit: int
    def __init__(self, queue_name: _Optional[str] = ..., group_id: _Optional[str] = ..., consumer_id: _Optional[str] = ..., min_idle_time: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., limit: _Optional[int] = ...) -> None: ...

class ClaimResponse(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[Message]
    def __init__(self, messages: _Optional[_Iterable[_Union[Message, _Mapping]]] = ...) -> None: ...

class GetPendingRequest(_message.Message):
    __slots__ = ("queue_name", "group_id", "consumer_id", "limit", "page_token")
    QUEUE_NAME_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    queue_name: str
    group_id: str
    consumer_id: str
    limit: int
    page_token: str
    def __init__(self, queue_name: _Optional[str] = ..., group_id: _Optional[str] = ..., consumer_id: _Optional[str] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class GetPendingResponse(_message.Message):
    __slots__ = ("entries", "next_page_token", "total_pending")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_PENDING_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[PendingEntry]
    next_page_token: str
    total_pending: int
    def __init__(self, entries: _Optional[_Iterable[_Union[PendingEntry, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_pending: _Optional[int] = ...) -> None: ...

class GetQueueInfoRequest(_message.Message):
    __slots__ = ("queue_name",)
    QUEUE_NAME_FIELD_NUMBER: _ClassVar[int]
    queue_name: str
    def __init__(self, queue_name: _Optional[str] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ("queue_name",)
    QUEUE_NAME_FIELD_NUMBER: _ClassVar[int]
    queue_name: str
    def __init__(self, queue_name: _Optional[str] = ...) -> None: ...

class QueueStats(_message.Message):
    __slots__ = ("queue_name", "message_count", "size_bytes", "head_offset", "tail_offset", "append_rate", "read_rate", "consumer_groups")
    QUEUE_NAME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    HEAD_OFFSET_FIELD_NUMBER: _ClassVar[int]
    TAIL_OFFSET_FIELD_NUMBER: _ClassVar[int]
    APPEND_RATE_FIELD_NUMBER: _ClassVar[int]
    READ_RATE_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_GROUPS_FIELD_NUMBER: _ClassVar[int]
    queue_name: str
    message_count: int
    size_bytes: int
    head_offset: int
    tail_offset: int
    append_rate: float
    read_rate: float
    consumer_groups: _containers.RepeatedCompositeFieldContainer[ConsumerGroupSummary]
    def __init__(self, queue_name: _Optional[str] = ..., message_count: _Optional[int] = ..., size_bytes: _Optional[int] = ..., head_offset: _Optional[int] = ..., tail_offset: _Optional[int] = ..., append_rate: _Optional[float] = ..., read_rate: _Optional[float] = ..., consumer_groups: _Optional[_Iterable[_Union[ConsumerGroupSummary, _Mapping]]] = ...) -> None: ...

class ConsumerGroupSummary(_message.Message):
    __slots__ = ("group_id", "consumer_count", "total_lag", "pending_count")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_COUNT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_LAG_FIELD_NUMBER: _ClassVar[int]
    PENDING_COUNT_FIELD_NUMBER: _ClassVar[int]
    group_id: str
    consumer_count: int
    total_lag: int
    pending_count: int
    def __init__(self, group_id: _Optional[str] = ..., consumer_count: _Optional[int] = ..., total_lag: _Optional[int] = ..., pending_count: _Optional[int] = ...) -> None: ...

class PurgeRequest(_message.Message):
    __slots__ = ("queue_name",)
    QUEUE_NAME_FIELD_NUMBER: _ClassVar[int]
    queue_name: str
    def __init__(self, queue_name: _Optional[str] = ...) -> None: ...

class PurgeResponse(_message.Message):
    __slots__ = ("messages_deleted", "bytes_freed")
    MESSAGES_DELETED_FIELD_NUMBER: _ClassVar[int]
    BYTES_FREED_FIELD_NUMBER: _ClassVar[int]
    messages_deleted: int
    bytes_freed: int
    def __init__(self, messages_deleted: _Optional[int] = ..., bytes_freed: _Optional[int] = ...) -> None: ...

class TruncateRequest(_message.Message):
    __slots__ = ("queue_name", "min_offset")
    QUEUE_NAME_FIELD_NUMBER: _ClassVar[int]
    MIN_OFFSET_FIELD_NUMBER: _ClassVar[int]
    queue_name: str
    min_offset: int
    def __init__(self, queue_name: _Optional[str] = ..., min_offset: _Optional[int] = ...) -> None: ...
