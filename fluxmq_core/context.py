"""``BrokerContext``: the one object every plugin hook receives.

It holds the shared services built once by ``server.py``. Plugins keep a reference
and call the services directly on their hot paths; nothing here goes through pluggy.

It also holds the one publish path of every protocol: :meth:`BrokerContext.publish`
routes a message to subscribers, except a topic under ``$queue/`` (or ``$dlq/``),
which goes to the queue manager instead. A protocol that acknowledges its publisher
calls :meth:`BrokerContext.publish_queued` for those topics, to answer only once the
append is durable and to turn a refusal into its own error reply.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fluxmq_core.queues.config import QueueError, QueuesUnavailableError
from fluxmq_core.queues.types import QUEUE_TOPIC_PREFIXES
from fluxmq_core.sessions import SessionDirectory

if TYPE_CHECKING:
    import pluggy

    from fluxmq_core.auth import AuthService
    from fluxmq_core.clock import Clock
    from fluxmq_core.config import Config
    from fluxmq_core.events import Events
    from fluxmq_core.message import Message
    from fluxmq_core.router import Router
    from fluxmq_core.stats import Stats
    from fluxmq_core.storage.base import BrokerStore, QueueLog


class BrokerContext:
    """Shared services: ``config``, ``router``, ``queues``, ``store``,
    ``queue_log``, ``cluster``, ``auth``, ``events``, ``stats``, ``clock``.

    ``tracer`` is set by a tracing plugin (see :meth:`publish`).
    ``node_id`` names this broker; ``pm`` is the plugin manager (for plugins that
    want to call hooks of their own); ``bound`` maps listener names
    (``"mqtt.tcp"``) to the ``(host, port)`` actually bound, filled once listening.
    ``shutting_down`` is set when a stop began, so protocols refuse new work.
    ``sessions`` is the session directory protocols register their sessions in (for
    the admin API); ``reload`` is the broker's reload coroutine function (SIGHUP and
    ``POST /api/v1/reload``), ``None`` outside a running broker. ``forward`` is
    the cluster driver's remote delivery when it is distributed, else ``None``.
    """

    __slots__ = (
        "config",
        "router",
        "queues",
        "store",
        "queue_log",
        "cluster",
        "auth",
        "events",
        "stats",
        "clock",
        "pm",
        "node_id",
        "bound",
        "shutting_down",
        "extras",
        "log",
        "sessions",
        "reload",
        "forward",
        "tracer",
        "limits",
        "hooks",
    )

    def __init__(
        self,
        *,
        config: Config,
        router: Router,
        store: BrokerStore,
        queue_log: QueueLog,
        cluster: Any,
        stats: Stats,
        clock: Clock,
        pm: pluggy.PluginManager,
        node_id: str,
    ) -> None:
        self.config = config
        self.router = router
        self.store = store
        self.queue_log = queue_log
        self.cluster = cluster
        self.stats = stats
        self.clock = clock
        self.pm = pm
        self.node_id = node_id
        self.queues: Any = None
        # Both are set by Broker.start before any plugin sees the context; declared
        # (not assigned) so that hot-path callers need no None check. Until then the
        # slots are empty: read them with getattr(context, "events", None) there.
        self.auth: AuthService
        self.events: Events
        self.bound: dict[str, tuple[str, int]] = {}
        self.shutting_down = asyncio.Event()
        # A place for plugins to publish services to others through the core
        # (key by your plugin name); the core never reads it.
        self.extras: dict[str, Any] = {}
        self.log = logging.getLogger("fluxmq")
        self.sessions: SessionDirectory = SessionDirectory()
        self.reload: Any = None
        # The cluster's remote delivery, set by the broker only when the cluster
        # driver is distributed: a single node checks one None per publish.
        self.forward: Callable[[Message], int] | None = None
        # A tracing plugin sets this to an object with ``publish_span(message)``
        # (None when not sampled, else a span: its ``message`` to route, the
        # router's DeliverySpan hook, ``forwarded(nodes)`` for the other cluster
        # nodes reached, ``error`` and ``end(deliveries)``),
        # ``queued(message, future)`` and, for the queue manager,
        # ``queue_deliver(queue, group, consumer, message)`` and
        # ``queue_settled(queue, group, offset, outcome)``; while it is None, tracing
        # costs the publish path one attribute check.
        self.tracer: Any = None
        # [rate_limit] (fluxmq_core.ratelimit.RateLimits), set by Broker.start; protocols
        # ask it for per-connection buckets and check keyed limits.
        self.limits: Any = None
        # Blocking hook endpoints ([[hooks.endpoints]]); None while none is configured,
        # so protocols pay one attribute check.
        self.hooks: Any = None

    def publish(self, message: Message) -> int:
        """Route a message from any protocol: the one entry point protocols use.

        Calls ``fluxmq_message_published`` only when a plugin implements it (a flag
        check otherwise), then the router; returns the number of deliveries. A topic
        under ``$queue/`` or ``$dlq/`` is appended to its queue instead (see
        :meth:`publish_queued`) and counts as one delivery once the append is
        accepted, 0 when it is refused; a refusal or a failed append is logged and
        counted in ``stats.messages_dropped``, as nobody waits for it here.

        With a tracer set (``context.tracer``), ``tracer.publish_span(message)``
        decides sampling first: ``None`` routes as without a tracer; a span is
        given to the router (its hook at the delivery point), told how many other
        cluster nodes the message was forwarded to, and ended here, and
        its ``message`` (carrying the span's trace context) is what gets routed,
        appended and forwarded to other nodes.
        """
        tracer = self.tracer
        if tracer is not None:
            span = tracer.publish_span(message)
            if span is not None:
                return self._publish_traced(span)
        if message.topic.startswith(QUEUE_TOPIC_PREFIXES):
            return self._to_queue(message, None)
        events = self.events
        if events.on_published:
            events.message_published(message)
        delivered = self.router.publish(message)
        forward = self.forward
        if forward is not None:
            # Other nodes' subscribers: counted as one delivery per node reached.
            delivered += forward(message)
        return delivered

    def route_plan(self, topic: str) -> tuple[Any, ...] | None:
        """The router's per-subscriber entries for a run of plain messages to
        ``topic`` (QoS 0, not retained, no expiry, no properties) that the caller
        delivers itself, or None when :meth:`publish` would do more per message
        than deliver to them: a tracer set, a ``fluxmq_message_published``
        hookimpl, cluster forwarding, a queue topic, or a share group matched
        (whose turn advances per message). Then publish each message. Entries are
        ``(subscriber, qos, rap, ids, local)`` (see ``Router.plan``)."""
        if (
            self.tracer is not None
            or self.forward is not None
            or self.events.on_published
            or topic.startswith(QUEUE_TOPIC_PREFIXES)
        ):
            return None
        entries, groups = self.router.plan(topic)
        if groups:
            return None
        return entries

    def _publish_traced(self, span: Any) -> int:
        """:meth:`publish` of a sampled message inside its ``span`` (see there)."""
        message: Message = span.message
        delivered = 0
        try:
            if message.topic.startswith(QUEUE_TOPIC_PREFIXES):
                delivered = self._to_queue(message, self.tracer, span)
            else:
                events = self.events
                if events.on_published:
                    events.message_published(message)
                delivered = self.router.publish(message, span)
                forward = self.forward
                if forward is not None:
                    nodes = forward(message)
                    span.forwarded(nodes)
                    delivered += nodes
            return delivered
        except Exception as exc:
            span.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            span.end(delivered)

    def _to_queue(self, message: Message, tracer: Any, span: Any = None) -> int:
        """:meth:`publish`'s queue branch: 1 once the append is accepted, else 0."""
        try:
            fut = self._append(message, tracer)
        except QueueError as exc:
            self.stats.messages_dropped += 1
            self.log.warning("publish to %r not queued: %s", message.topic, exc)
            if span is not None:
                span.error = str(exc)
            return 0
        fut.add_done_callback(self._append_done)
        return 1

    def publish_queued(self, message: Message) -> asyncio.Future[int]:
        """Append a publish to ``$queue/<name>/<routing-key>`` to queue ``<name>``
        (see ``QueueManager.publish``): the path of every protocol, so a queue gets
        the same message from MQTT, HTTP or AMQP.

        Returns the append's future: it resolves with the offset once the message is
        durable under the queue's ``durability``, or carries the storage error;
        acknowledge the publisher only then. A refusal raises at once, a typed
        :class:`~fluxmq_core.queues.QueueError` (``UnknownQueueError``,
        ``InvalidQueueNameError``, ``QueueFullError``, ``MessageTooLargeError``,
        ``QueueTopicError``, ``QueuesUnavailableError``) for the protocol to map to
        its own error reply. ``fluxmq_message_published`` is called once the append
        was accepted (a refused publish is not reported as published).
        """
        return self._append(message, self.tracer)

    def _append(self, message: Message, tracer: Any) -> asyncio.Future[int]:
        # ``tracer`` is None when the publish was already found not sampled.
        manager = self.queues
        if manager is None:
            raise QueuesUnavailableError("queues are not available")
        fut: asyncio.Future[int] = manager.publish(message)
        if tracer is not None:
            tracer.queued(message, fut)
        events = self.events
        if events.on_published:
            events.message_published(message)
        return fut

    def _append_done(self, fut: asyncio.Future[int]) -> None:
        if not fut.cancelled() and fut.exception() is not None:
            self.stats.messages_dropped += 1
            self.log.warning("queue append failed: %s", fut.exception())
