"""The topic router: MQTT topic semantics for subscribers of every protocol.

Import from here: :class:`Router`, the contract types (:class:`Subscriber`,
:class:`SubscriptionOptions`, :data:`DEFAULT_OPTIONS`, :class:`Delivery`) and the
topic helpers (validation, ``$share`` parsing, the reference matcher and the AMQP
mapping). The submodules (``trie``, ``retained``) are implementation detail.
"""

from __future__ import annotations

from fluxmq_core.router.retained import RetainedStore
from fluxmq_core.router.router import DeliverySpan, Router
from fluxmq_core.router.topics import (
    MAX_TOPIC_BYTES,
    SHARE_PREFIX,
    TopicError,
    amqp_pattern_to_filter,
    amqp_routing_key_to_topic,
    filter_to_amqp_pattern,
    is_dollar_topic,
    parse_shared,
    topic_matches,
    topic_to_amqp_routing_key,
    validate_topic_filter,
    validate_topic_name,
)
from fluxmq_core.router.types import DEFAULT_OPTIONS, Delivery, Subscriber, SubscriptionOptions

__all__ = [
    "DEFAULT_OPTIONS",
    "MAX_TOPIC_BYTES",
    "SHARE_PREFIX",
    "Delivery",
    "DeliverySpan",
    "RetainedStore",
    "Router",
    "Subscriber",
    "SubscriptionOptions",
    "TopicError",
    "amqp_pattern_to_filter",
    "amqp_routing_key_to_topic",
    "filter_to_amqp_pattern",
    "is_dollar_topic",
    "parse_shared",
    "topic_matches",
    "topic_to_amqp_routing_key",
    "validate_topic_filter",
    "validate_topic_name",
]
