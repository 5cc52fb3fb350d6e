"""Real spans on the publish path: ``publish`` -> one ``deliver`` for its fan-out,
``queue.append`` for a publish to ``$queue/``, and ``queue.deliver`` -> ``queue.ack``
when a queue hands a traced message to a consumer and it is settled.

:class:`BrokerTracer` is what the plugin puts in ``context.tracer``; while that is
``None`` (``[otel] traces = false``) the core's publish path pays one attribute
check. With it set, :meth:`BrokerTracer.publish` takes over routing the message:

- The parent comes from the message's W3C trace context, the ``traceparent`` and
  ``tracestate`` user properties (MQTT 5 user properties and AMQP 0.9.1 headers both
  arrive there), so a trace started by a client goes on in the broker. It is only
  looked for when the message has user properties at all.
- Sampling is decided here before any OpenTelemetry object is touched: a publish
  with a parent follows the parent's sampled flag, a new trace is kept when one
  ``random()`` draw is below ``sample_rate``. A publish that is not sampled is
  routed by the ordinary ``router.publish``: no span, no attribute dict, and its
  message is not touched. (The SDK's sampler is therefore "always on".)
- A sampled publish is two spans, whatever its fan-out: ``publish`` and one
  ``deliver`` that counts the deliveries and names the subscribers (a span costs
  about 10 us in the SDK, so a span per subscriber made a sampled publish to many
  subscribers the dominant cost at low sample rates).
- A sampled publish carries the ``publish`` span's context on to subscribers: the
  message's ``traceparent``/``tracestate`` are replaced, so an MQTT 5 subscriber sees
  them as user properties and an AMQP consumer as headers, and a trace crosses
  protocols and services.
"""

from __future__ import annotations

import logging
import random
from collections import OrderedDict
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from fluxmq_core.message import Message
from fluxmq_core.queues.config import QueueError
from fluxmq_core.queues.types import QUEUE_TOPIC_PREFIXES

__all__ = ["TRACE_KEYS", "BrokerTracer", "extract", "inject"]

log = logging.getLogger("fluxmq.otel")

TRACE_KEYS = ("traceparent", "tracestate")
#: Traced queue deliveries remembered until settled (for their queue.ack span).
MAX_PENDING = 10_000
#: Subscribers named in a ``deliver`` span's ``fluxmq.subscribers``; more are counted.
MAX_LISTED = 16
_PROPAGATOR = TraceContextTextMapPropagator()


def extract(message: Message) -> otel_context.Context | None:
    """The trace context a client put in the message, or None."""
    props = message.user_properties
    if not props:
        return None
    carrier = {k: v for k, v in props if k in TRACE_KEYS}
    if not carrier:
        return None
    return _PROPAGATOR.extract(carrier)


def _sampled(ctx: otel_context.Context) -> bool:
    """Whether the trace context taken from a message is sampled."""
    return bool(trace.get_current_span(ctx).get_span_context().trace_flags.sampled)


def inject(message: Message, ctx: otel_context.Context | None = None) -> Message:
    """A copy of ``message`` carrying the current (or ``ctx``'s) trace context in
    its user properties, any earlier ``traceparent``/``tracestate`` replaced."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=ctx)
    if not carrier:
        return message
    kept = [(k, v) for k, v in (message.user_properties or ()) if k not in TRACE_KEYS]
    return message.copy(user_properties=kept + sorted(carrier.items()))


class BrokerTracer:
    """Routes messages in spans; see the module docstring."""

    __slots__ = ("context", "tracer", "rate", "_random", "_batch", "_pending")

    def __init__(self, context: Any, tracer: trace.Tracer, rate: float = 1.0) -> None:
        self.context = context
        self.tracer = tracer
        # New traces are sampled here, before any span exists, so an unsampled
        # publish costs one random draw and not a span; the SDK's sampler is
        # parent-based over "always on" and decides publishes that carry a parent.
        self.rate = rate
        self._random = random.random
        self._batch: _Deliveries | None = None
        # (queue, group, offset) -> (queue.deliver span's context, its start in ns),
        # until the delivery is settled; bounded, the oldest forgotten first.
        self._pending: OrderedDict[tuple[str, str, int], tuple[otel_context.Context, int]] = (
            OrderedDict()
        )

    # -- called by BrokerContext.publish -------------------------------------------------

    def publish(self, message: Message) -> int:
        """Route ``message`` as ``BrokerContext.publish`` does, inside spans."""
        parent: otel_context.Context | None = None
        if message.user_properties:
            parent = extract(message)
        if parent is None:
            # A new trace: one random draw decides it before any OTel object is
            # touched (this runs for 99 publishes in 100 at sample_rate 0.01).
            if self._random() >= self.rate:
                ctx = self.context
                if message.topic.startswith(QUEUE_TOPIC_PREFIXES):
                    return self._queue(message, None)
                if ctx.events.on_published:
                    ctx.events.message_published(message)
                return ctx.router.publish(message)
        elif not _sampled(parent):
            return self._route_plain(message)  # the client's trace is not sampled
        return self._traced(message, parent)

    def _traced(self, message: Message, parent: otel_context.Context | None) -> int:
        """A sampled publish: its ``publish`` span and, when anyone got it, one
        ``deliver`` span."""
        span = self.tracer.start_span(
            "publish",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                "messaging.system": "fluxmq",
                "messaging.operation.type": "publish",
                "messaging.destination.name": message.topic,
                "messaging.message.body.size": len(message.payload),
                "fluxmq.protocol": message.origin_protocol,
                "fluxmq.client_id": message.origin_client,
                "fluxmq.qos": message.qos,
            },
        )
        if message.retain:
            span.set_attribute("fluxmq.retain", True)
        span_ctx = span.get_span_context()
        message = _with_context(message, span_ctx)
        try:
            if message.topic.startswith(QUEUE_TOPIC_PREFIXES):
                # Made current so that ``queued`` parents its span here.
                token = otel_context.attach(trace.set_span_in_context(span))
                try:
                    n = self._queue(message, span)
                finally:
                    otel_context.detach(token)
            else:
                n = self._route(message, span)
            span.set_attribute("fluxmq.deliveries", n)
            return n
        except Exception as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, str(exc)))
            raise
        finally:
            span.end()

    def queued(self, message: Message, fut: Any) -> None:
        """A publish to ``$queue/`` was accepted: a ``queue.append`` span until the
        append is durable (or failed)."""
        parent = None
        if not trace.get_current_span().is_recording():
            parent = extract(message) if message.user_properties else None
            if parent is None:
                if self._random() >= self.rate:
                    return
            elif not _sampled(parent):
                return
        span = self.tracer.start_span(
            "queue.append",
            context=parent,
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "fluxmq",
                "messaging.operation.type": "send",
                "messaging.destination.name": message.topic,
                "messaging.message.body.size": len(message.payload),
            },
        )
        if not span.is_recording():
            return

        def done(f: Any) -> None:
            if f.cancelled():
                span.set_status(Status(StatusCode.ERROR, "cancelled"))
            elif f.exception() is not None:
                span.set_status(Status(StatusCode.ERROR, str(f.exception())))
            else:
                span.set_attribute("fluxmq.queue.offset", int(f.result()))
            span.end()

        fut.add_done_callback(done)

    # -- called by the queue manager ------------------------------------------------------

    def queue_deliver(self, queue: str, group: str, consumer: str, message: Message) -> None:
        """A queue hands ``message`` to a consumer: a ``queue.deliver`` span, child of
        the trace the stored message carries (only traced messages get one), and the
        start of the ``queue.ack`` span that ends when the delivery is settled."""
        parent = extract(message) if message.user_properties else None
        if parent is None or not _sampled(parent):
            return
        props = message.properties or {}
        offset = props.get("offset")
        attrs: dict[str, AttributeValue] = {
            "messaging.system": "fluxmq",
            "messaging.operation.type": "deliver",
            "messaging.destination.name": queue,
            "messaging.consumer.group.name": group,
            "fluxmq.consumer": consumer,
            "fluxmq.delivery_count": int(props.get("delivery-count", 1)),
        }
        if isinstance(offset, int):
            attrs["fluxmq.queue.offset"] = offset
        span = self.tracer.start_span(
            "queue.deliver", context=parent, kind=SpanKind.PRODUCER, attributes=attrs
        )
        recording = span.is_recording()
        start = getattr(span, "start_time", None)
        span.end()
        if not recording or not isinstance(offset, int) or not isinstance(start, int):
            return
        pending = self._pending
        pending[(queue, group, offset)] = (trace.set_span_in_context(span), start)
        if len(pending) > MAX_PENDING:
            pending.popitem(last=False)

    def queue_settled(self, queue: str, group: str, offset: int, outcome: str) -> None:
        """A traced delivery was acked, nacked or rejected: its ``queue.ack`` span,
        from the delivery to now (the time the consumer held it)."""
        entry = self._pending.pop((queue, group, offset), None)
        if entry is None:
            return
        ctx, start = entry
        span = self.tracer.start_span(
            "queue.ack",
            context=ctx,
            kind=SpanKind.CONSUMER,
            start_time=start,
            attributes={
                "messaging.destination.name": queue,
                "messaging.consumer.group.name": group,
                "fluxmq.queue.offset": offset,
                "fluxmq.outcome": outcome,
            },
        )
        if outcome != "ack":
            span.set_status(Status(StatusCode.ERROR, outcome))
        span.end()

    # -- routing -------------------------------------------------------------------------

    def _route_plain(self, message: Message) -> int:
        ctx = self.context
        if message.topic.startswith(QUEUE_TOPIC_PREFIXES):
            return self._queue(message, None)
        events = ctx.events
        if events.on_published:
            events.message_published(message)
        return int(ctx.router.publish(message))

    def _queue(self, message: Message, span: Any) -> int:
        ctx = self.context
        try:
            fut = ctx.publish_queued(message)
        except QueueError as exc:
            ctx.stats.messages_dropped += 1
            ctx.log.warning("publish to %r not queued: %s", message.topic, exc)
            if span is not None:
                span.set_status(Status(StatusCode.ERROR, str(exc)))
            return 0
        fut.add_done_callback(ctx._append_done)
        return 1

    def _route(self, message: Message, span: Any) -> int:
        ctx = self.context
        events = ctx.events
        if events.on_published:
            events.message_published(message)
        # One ``deliver`` span for the whole fan-out, started at the first delivery
        # (a publish nobody receives makes none) and given its parent explicitly, as
        # attaching a context costs as much as a small span.
        outer = self._batch
        batch = self._batch = _Deliveries(trace.set_span_in_context(span))
        try:
            ctx.router.publish_each(message, self._deliver)
        finally:
            self._batch = outer
            batch.finish()
        return batch.count

    def _deliver(self, sub: Any, message: Message, delivery: Any) -> None:
        batch = self._batch
        if batch.span is None:
            batch.span = self.tracer.start_span(
                "deliver", context=batch.parent, kind=SpanKind.PRODUCER
            )
        batch.count += 1
        if batch.count <= MAX_LISTED:
            batch.subs.append((sub, delivery))
        try:
            sub.deliver(message, delivery)
        except Exception as exc:
            batch.span.record_exception(exc)
            batch.span.set_status(Status(StatusCode.ERROR, str(exc)))
            raise


class _Deliveries:
    """The fan-out of one sampled publish, summed up in its ``deliver`` span: the
    subscriber's protocol, client id and QoS when there is one, the first
    :data:`MAX_LISTED` as ``fluxmq.subscribers`` (``protocol:client_id``) when more."""

    __slots__ = ("parent", "span", "count", "subs")

    def __init__(self, parent: otel_context.Context) -> None:
        self.parent = parent
        self.span: Any = None
        self.count = 0
        self.subs: list[tuple[Any, Any]] = []

    def finish(self) -> None:
        span = self.span
        if span is None:
            return
        # Few attributes: the SDK validates each one (about 0.7 us apiece), and the
        # publish span already says what the message was.
        attrs: dict[str, AttributeValue] = {"fluxmq.deliveries": self.count}
        if self.count == 1:
            sub, delivery = self.subs[0]
            attrs["fluxmq.protocol"] = sub.protocol
            attrs["fluxmq.client_id"] = sub.client_id
            attrs["fluxmq.qos"] = delivery.qos
            if delivery.shared_group:
                attrs["fluxmq.share_group"] = delivery.shared_group
        else:
            attrs["fluxmq.subscribers"] = [f"{s.protocol}:{s.client_id}" for s, _ in self.subs]
        span.set_attributes(attrs)
        span.end()


def _with_context(message: Message, span_ctx: trace.SpanContext) -> Message:
    """A copy of ``message`` whose ``traceparent``/``tracestate`` point at
    ``span_ctx``: the W3C header formatted here, without a propagator and a
    context object per publish."""
    props: list[tuple[str, str]] = [
        (
            "traceparent",
            f"00-{span_ctx.trace_id:032x}-{span_ctx.span_id:016x}-{span_ctx.trace_flags:02x}",
        )
    ]
    if span_ctx.trace_state:
        props.append(("tracestate", span_ctx.trace_state.to_header()))
    kept = [(k, v) for k, v in (message.user_properties or ()) if k not in TRACE_KEYS]
    return message.copy(user_properties=kept + props)
