"""Deprecated name of :mod:`fluxmq_amqp091.topology` (exchanges, bindings, routing).

The module was renamed because it holds the AMQP topology, not a broker; this alias
keeps ``from fluxmq_amqp091.broker import Topology`` working for existing code.
Import from :mod:`fluxmq_amqp091.topology` instead.
"""

from fluxmq_amqp091.topology import (
    DEFAULT_EXCHANGES,
    EXCHANGE_TYPES,
    STORE_ID,
    Binding,
    BridgeSubscriber,
    Dest,
    Exchange,
    Topology,
    headers_match,
    plain,
    topic_matches,
)

__all__ = [
    "DEFAULT_EXCHANGES",
    "EXCHANGE_TYPES",
    "STORE_ID",
    "Binding",
    "BridgeSubscriber",
    "Dest",
    "Exchange",
    "Topology",
    "headers_match",
    "plain",
    "topic_matches",
]
