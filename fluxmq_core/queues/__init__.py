"""The protocol-neutral durable queue manager (DESIGN.md section 4).

Import from here. :class:`QueueManager` is ``context.queues``; the rest is its
vocabulary: configuration (:class:`QueueConfig`, :class:`QueueManagerConfig`),
errors, consumer handles and the info records. ``docs/queues.md`` is the user guide.

Modules: ``config`` (settings and errors), ``manager`` (lifecycle, append with group
commit, routing of settlements), ``classic`` (work-queue groups with a PEL),
``stream`` (offset readers), ``dlq``, ``retention``, ``capture``, ``ephemeral``,
``group`` (what both group kinds share), ``types``. A publish to ``$queue/<name>/...``
reaches a queue by one core path for every protocol (``QueueManager.publish``, called
by ``BrokerContext.publish`` and ``publish_queued``); the rest of each protocol's face
(MQTT ``$queue/`` subscriptions and control topics, AMQP queues) lives in the
protocol plugins, not here.
"""

from __future__ import annotations

from fluxmq_core.queues.config import (
    AUTO_CREATE,
    DLQ_PREFIX,
    InvalidQueueNameError,
    MessageTooLargeError,
    QueueConfig,
    QueueError,
    QueueFullError,
    QueueManagerConfig,
    QueuesUnavailableError,
    QueueTopicError,
    UnknownQueueError,
)
from fluxmq_core.queues.manager import COUNTERS, Queue, QueueManager
from fluxmq_core.queues.types import (
    CONTROL_VERBS,
    QUEUE_TOPIC_PREFIX,
    QUEUE_TOPIC_PREFIXES,
    Consumer,
    GroupInfo,
    QueueInfo,
    is_queue_topic,
    parse_cursor,
    parse_message_id,
    routing_key,
    split_queue_topic,
)

__all__ = [
    "AUTO_CREATE",
    "CONTROL_VERBS",
    "COUNTERS",
    "DLQ_PREFIX",
    "QUEUE_TOPIC_PREFIX",
    "QUEUE_TOPIC_PREFIXES",
    "Consumer",
    "GroupInfo",
    "InvalidQueueNameError",
    "MessageTooLargeError",
    "Queue",
    "QueueConfig",
    "QueueError",
    "QueueFullError",
    "QueueInfo",
    "QueueManager",
    "QueueManagerConfig",
    "QueueTopicError",
    "QueuesUnavailableError",
    "UnknownQueueError",
    "is_queue_topic",
    "parse_cursor",
    "parse_message_id",
    "routing_key",
    "split_queue_topic",
]
