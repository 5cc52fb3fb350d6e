"""Which broker numbers become which metrics: :class:`~fluxmq_core.metrics.MetricSpec`
lists built from the counters the core and the bundled protocols already keep.

Nothing here runs per message. Each spec's ``read`` is called when a reader collects
(a Prometheus scrape, an OTLP export tick). Names follow the Go FluxMQ where it has
them (``mqtt.connections.current``, ``mqtt.messages.received.total`` ...). The core
keeps one set of broker counters shared by every protocol, so the ``mqtt.*`` totals
taken from it (connections, messages, bytes) count every protocol's clients, as the
Go FluxMQ's do; per-protocol connection gauges come from each protocol server
(``mqtt.connections.current`` counts MQTT clients only).

A protocol that is not installed contributes nothing: its server is looked up in
``context.extras`` at start-up, and plugins not known here offer their own specs
through :func:`fluxmq_core.metrics.register_metrics`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from fluxmq_core.metrics import MetricSpec, Observation

__all__ = [
    "cluster_specs",
    "core_specs",
    "protocol_specs",
    "queue_specs",
    "storage_specs",
    "webhook_specs",
]

# (metric name, Stats attribute, kind, unit, description)
_STATS = (
    ("mqtt.connections.total", "clients_total", "counter", "{connection}",
     "Clients accepted since start (every protocol)."),
    ("mqtt.disconnections.total", "clients_disconnected", "counter", "{connection}",
     "Client connections ended since start (every protocol)."),
    ("mqtt.connections.rejected.total", "connections_rejected", "counter", "{connection}",
     "Connections refused at the handshake (limits, auth, protocol)."),
    ("mqtt.messages.received.total", "messages_received", "counter", "{message}",
     "Messages received from clients (every protocol)."),
    ("mqtt.messages.sent.total", "messages_sent", "counter", "{message}",
     "Messages sent to clients (every protocol)."),
    ("mqtt.messages.dropped.total", "messages_dropped", "counter", "{message}",
     "Messages not delivered: expired, queue full, not authorized, too large..."),
    ("mqtt.bytes.received.total", "bytes_received", "counter", "By",
     "Bytes read from client connections (every protocol)."),
    ("mqtt.bytes.sent.total", "bytes_sent", "counter", "By",
     "Bytes written to client connections (every protocol)."),
    ("mqtt.protocol.errors.total", "protocol_errors", "counter", "{error}",
     "Connections closed for breaking their protocol."),
    ("mqtt.auth.failures.total", "auth_failures", "counter", "{attempt}",
     "Logins refused."),
    ("mqtt.authz.denied.total", "authz_denied", "counter", "{check}",
     "Publish or subscribe checks the ACL refused."),
    ("mqtt.session.queue.dropped.total", "session_queue_dropped", "counter", "{message}",
     "Messages a session queue at its bound dropped."),
    ("queue.ephemeral.created.total", "ephemeral_queues_created", "counter", "{queue}",
     "Queues created on first use ([queue_manager] auto_create)."),
)  # fmt: skip


def _attr(obj: Any, name: str) -> Callable[[], float]:
    return lambda: getattr(obj, name)


def _item(mapping: dict[str, int], key: str) -> Callable[[], float]:
    return lambda: mapping[key]


class _Memo:
    """``status()`` of a cluster driver, taken once per collection: the cluster
    metrics are a dozen specs over one summary, and a collection reads them all
    within microseconds; ``ttl`` seconds later the next collection takes it again."""

    def __init__(self, fetch: Callable[[], dict[str, Any]], ttl: float = 0.5) -> None:
        self._fetch = fetch
        self._ttl = ttl
        self._at = -1e18
        self._value: dict[str, Any] = {}

    def __call__(self) -> dict[str, Any]:
        now = time.monotonic()
        if now - self._at > self._ttl:
            self._value = self._fetch() or {}
            self._at = now
        return self._value


def cluster_specs(context: Any) -> list[MetricSpec]:
    """``cluster.*`` from a distributed cluster driver's ``status()`` (the etcd
    driver's peer totals: forwarded, received, dropped, peer errors); nothing for a
    single node."""
    cluster = getattr(context, "cluster", None)
    if cluster is None or not getattr(cluster, "distributed", False):
        return []
    status = _Memo(cluster.status)

    def peers(key: str) -> Callable[[], float]:
        return lambda: int((status().get("peers") or {}).get(key) or 0)

    def per_peer(key: str) -> Callable[[], Iterable[Observation]]:
        def read() -> Iterable[Observation]:
            per = (status().get("peers") or {}).get("peers") or {}
            return [(int(v.get(key) or 0), {"peer": str(n)}) for n, v in sorted(per.items())]

        return read

    return [
        MetricSpec("cluster.nodes", "updown", lambda: len(status().get("nodes") or ()),
                   "{node}", "Nodes in the cluster, this one included."),
        MetricSpec("cluster.ready", "gauge", lambda: 1 if status().get("ready") else 0, "1",
                   "1 when this node has joined the cluster and serves."),
        MetricSpec("cluster.messages.forwarded.total", "counter", peers("forwarded"),
                   "{message}", "Messages forwarded to other nodes (one per node reached)."),
        MetricSpec("cluster.messages.received.total", "counter", peers("received"),
                   "{message}", "Messages other nodes forwarded to this one."),
        MetricSpec("cluster.messages.dropped.total", "counter", peers("dropped"),
                   "{message}", "Forwards dropped: peer queue full, peer down or unknown."),
        MetricSpec("cluster.peer.errors.total", "counter", peers("peer_errors"), "{error}",
                   "Transport failures talking to peers (the circuit breaker's input)."),
        MetricSpec("cluster.remote.errors.total", "counter", peers("remote_errors"),
                   "{error}", "Errors peers answered with."),
        MetricSpec("cluster.peer.queued", "gauge", per_peer("queued"), "{message}",
                   "Messages waiting to be forwarded to that peer."),
        MetricSpec("cluster.peer.failures", "gauge", per_peer("consecutive_failures"),
                   "{error}", "Consecutive failures towards that peer (0 when healthy)."),
        MetricSpec("cluster.share.dropped.total", "counter",
                   lambda: int((status().get("subscriptions") or {}).get("share_dropped") or 0),
                   "{message}", "Shared-subscription messages that found no member here."),
    ]  # fmt: skip


def core_specs(context: Any) -> list[MetricSpec]:
    """Broker-wide counters (``context.stats``), the router and the uptime."""
    stats = context.stats
    router = context.router
    specs = []
    for name, attr, kind, unit, desc in _STATS:
        specs.append(MetricSpec(name, kind, _attr(stats, attr), unit, desc))  # type: ignore[arg-type]
    specs += [
        MetricSpec(
            "fluxmq.connections.current",
            "updown",
            _attr(stats, "clients_connected"),
            "{connection}",
            "Connected clients of every protocol.",
        ),
        MetricSpec(
            "mqtt.subscriptions.active",
            "updown",
            lambda: router.subscription_count,
            "{subscription}",
            "Subscriptions in the router (every protocol's topic subscribers).",
        ),
        MetricSpec(
            "mqtt.retained.messages",
            "updown",
            lambda: router.retained_count,
            "{message}",
            "Retained messages stored.",
        ),
        MetricSpec(
            "fluxmq.uptime",
            "gauge",
            lambda: max(0.0, time.time() - stats.started_at),
            "s",
            "Seconds since the broker started.",
        ),
    ]
    return specs


def protocol_specs(context: Any) -> list[MetricSpec]:
    """Per-protocol gauges from the protocol servers found in ``context.extras``."""
    specs: list[MetricSpec] = []
    mqtt = context.extras.get("mqtt")
    registry = getattr(mqtt, "registry", None)
    if registry is not None:
        specs += [
            MetricSpec(
                "mqtt.connections.current",
                "updown",
                lambda: len(registry.connections),
                "{connection}",
                "MQTT clients connected (past CONNACK).",
            ),
            MetricSpec(
                "mqtt.sessions.active",
                "updown",
                lambda: len(registry.sessions),
                "{session}",
                "MQTT sessions held, connected or persistent offline.",
            ),
        ]
    amqp = context.extras.get("amqp091")
    if amqp is not None and hasattr(amqp, "protocols"):
        specs += [
            MetricSpec(
                "amqp091.connections.current",
                "updown",
                lambda: len(amqp.protocols),
                "{connection}",
                "AMQP 0.9.1 network connections open.",
            ),
            MetricSpec(
                "amqp091.channels.current",
                "updown",
                lambda: sum(
                    len(getattr(getattr(p, "conn", None), "channels", ()) or ())
                    for p in list(amqp.protocols)
                ),
                "{channel}",
                "AMQP 0.9.1 channels open.",
            ),
        ]
    http = context.extras.get("fluxmq.http")
    if http is not None:
        specs += [
            MetricSpec(
                "http.connections.current",
                "updown",
                lambda: len(http.connections),
                "{connection}",
                "HTTP connections open.",
            ),
            MetricSpec(
                "http.sse.streams.current",
                "updown",
                lambda: len(http.streams),
                "{stream}",
                "Server-Sent Events streams open (GET /subscribe).",
            ),
        ]
    return specs


def _per_queue(manager: Any, fn: Callable[[Any], float]) -> Callable[[], Iterable[Observation]]:
    def read() -> list[Observation]:
        return [(fn(q), {"queue": q.name}) for q in manager.queues()]

    return read


def _per_group(manager: Any, field: str) -> Callable[[], Iterable[Observation]]:
    def read() -> list[Observation]:
        out: list[Observation] = []
        for q in manager.queues():
            for info in manager.info(q.name).groups:
                out.append((getattr(info, field), {"queue": q.name, "group": info.name}))
        return out

    return read


# (metric name, QueueManager counter, unit, description)
_QUEUE_COUNTERS = (
    ("queue.messages.appended.total", "appended", "Messages appended to queues."),
    ("queue.messages.delivered.total", "delivered", "Queue deliveries to consumers."),
    ("queue.messages.redelivered.total", "redelivered", "Redeliveries (nack, timeout)."),
    ("queue.messages.acked.total", "acked", "Deliveries acknowledged."),
    ("queue.messages.nacked.total", "nacked", "Deliveries negatively acknowledged."),
    ("queue.messages.rejected.total", "rejected", "Deliveries rejected."),
    ("queue.messages.dead_lettered.total", "dead_lettered", "Messages moved to a DLQ."),
    ("queue.messages.expired.total", "expired", "Messages expired in queues."),
    ("queue.messages.dropped.total", "dropped", "Messages a full queue dropped."),
    ("queue.visibility.timeouts.total", "timeouts", "Deliveries taken back after their timeout."),
)


def queue_specs(context: Any) -> list[MetricSpec]:
    """Queue manager counters and per-queue / per-group gauges."""
    manager = context.queues
    if manager is None:
        return []
    counters = manager.counters
    specs = [
        MetricSpec(name, "counter", _item(counters, key), "{message}", desc)
        for name, key, desc in _QUEUE_COUNTERS
    ]
    specs += [
        MetricSpec(
            "queue.depth",
            "gauge",
            _per_queue(manager, lambda q: q.depth),
            "{message}",
            "Messages in the queue's log.",
        ),
        MetricSpec(
            "queue.bytes",
            "gauge",
            _per_queue(manager, lambda q: q.log.size_bytes(q.name)),
            "By",
            "Bytes of the queue's log.",
        ),
        MetricSpec(
            "queue.consumers",
            "gauge",
            _per_queue(manager, lambda q: q.consumer_count()),
            "{consumer}",
            "Consumers attached to the queue.",
        ),
        MetricSpec(
            "queue.group.lag",
            "gauge",
            _per_group(manager, "lag"),
            "{message}",
            "Messages after the group's committed offset.",
        ),
        MetricSpec(
            "queue.group.pending",
            "gauge",
            _per_group(manager, "pending"),
            "{message}",
            "Unsettled deliveries of the group (its PEL).",
        ),
    ]
    return specs


def webhook_specs(context: Any) -> list[MetricSpec]:
    """The webhook notifier's counters, per endpoint, when webhooks are configured."""
    notifier = context.extras.get("fluxmq.webhooks")
    if notifier is None:
        return []

    def per_endpoint(field: str) -> Callable[[], list[Observation]]:
        return lambda: [(getattr(e, field), {"url": e.url}) for e in notifier.endpoints]

    return [
        MetricSpec(
            "webhook.sent.total", "counter", per_endpoint("sent"), "{event}", "Events delivered."
        ),
        MetricSpec(
            "webhook.failed.total",
            "counter",
            per_endpoint("failed"),
            "{event}",
            "Events whose delivery failed after retries.",
        ),
        MetricSpec(
            "webhook.rejected.total",
            "counter",
            per_endpoint("rejected"),
            "{event}",
            "Events an open circuit breaker refused.",
        ),
        MetricSpec(
            "webhook.breaker.open",
            "gauge",
            lambda: [
                (0 if e.breaker.state == "closed" else 1, {"url": e.url, "state": e.breaker.state})
                for e in notifier.endpoints
            ],
            "1",
            "1 while the endpoint's breaker is open or half-open.",
        ),
        MetricSpec(
            "webhook.dropped.total",
            "counter",
            lambda: notifier.dropped,
            "{event}",
            "Events dropped because the webhook queue was full.",
        ),
        MetricSpec(
            "webhook.queue.size",
            "gauge",
            lambda: len(notifier.queue),
            "{event}",
            "Events waiting for a worker.",
        ),
    ]


def storage_specs(context: Any) -> list[MetricSpec]:
    """Every counter the storage drivers report in ``stats()``, as
    ``storage.<counter>{store="broker"|"queue_log"}``. The names are the driver's."""
    sources = {"broker": context.store, "queue_log": context.queue_log}
    names: dict[str, list[str]] = {}
    for store_name, store in sources.items():
        try:
            for key in store.stats():
                names.setdefault(key, []).append(store_name)
        except Exception:
            continue

    # One collection reads every storage.* metric: call each driver's stats() once
    # per collection, not once per metric.
    cache: dict[str, Any] = {"at": -1.0, "stats": {}}

    def stats_of(store_name: str) -> dict[str, Any]:
        now = time.monotonic()
        if now - cache["at"] > 0.5:
            fresh = {}
            for name, store in sources.items():
                try:
                    fresh[name] = store.stats()
                except Exception:
                    fresh[name] = {}
            cache["stats"] = fresh
            cache["at"] = now
        result: dict[str, Any] = cache["stats"].get(store_name, {})
        return result

    def read(key: str) -> Callable[[], list[Observation]]:
        def inner() -> list[Observation]:
            out: list[Observation] = []
            for store_name in names[key]:
                value = stats_of(store_name).get(key)
                if isinstance(value, int | float):
                    out.append((value, {"store": store_name}))
            return out

        return inner

    return [
        MetricSpec(
            f"storage.{key}",
            "gauge",
            read(key),
            "By" if key.endswith("bytes") else "1",
            f"Storage driver counter {key!r}.",
        )
        for key in sorted(names)
    ]
