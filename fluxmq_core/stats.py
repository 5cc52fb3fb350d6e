"""Plain integer counters shared by every protocol.

Counters are slotted attributes incremented in place (``stats.messages_received +=
1``): the cheapest thing Python can do per message. Readers (``$SYS``, the admin
API's ``/api/v1/stats``) call :meth:`Stats.snapshot` when they collect, so exporting
costs nothing per message.
"""

from __future__ import annotations

import time


class Stats:
    """Broker-wide counters. Gauges (current values) and totals side by side."""

    __slots__ = (
        "started_at",
        "clients_connected",
        "clients_total",
        "clients_disconnected",
        "connections_rejected",
        "messages_received",
        "messages_sent",
        "messages_dropped",
        "bytes_received",
        "bytes_sent",
        "publish_received",
        "publish_sent",
        "subscriptions",
        "protocol_errors",
        "auth_failures",
        "authz_denied",
        # Silent defaults made visible: queues a publish or subscription to an
        # undeclared $queue/<name> created in memory ([queue_manager] auto_create), and
        # messages a session queue at its bound dropped (MQTT max_queued_messages).
        "ephemeral_queues_created",
        "session_queue_dropped",
        # Refusals by [rate_limit] (fluxmq_core.ratelimit), all protocols together.
        "rate_limited_connections",
        "rate_limited_publishes",
        "rate_limited_subscribes",
    )
    # Every slot is a number (set to 0 by __init__), declared for type checkers.
    started_at: float
    clients_connected: int
    clients_total: int
    clients_disconnected: int
    connections_rejected: int
    messages_received: int
    messages_sent: int
    messages_dropped: int
    bytes_received: int
    bytes_sent: int
    publish_received: int
    publish_sent: int
    subscriptions: int
    protocol_errors: int
    auth_failures: int
    authz_denied: int
    ephemeral_queues_created: int
    session_queue_dropped: int
    rate_limited_connections: int
    rate_limited_publishes: int
    rate_limited_subscribes: int

    def __init__(self, started_at: float | None = None) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)
        self.started_at = time.time() if started_at is None else started_at

    def snapshot(self) -> dict[str, float]:
        """Every counter by name (a fresh dict; safe to keep)."""
        return {name: getattr(self, name) for name in self.__slots__}
