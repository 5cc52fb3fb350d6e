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
from time import time_ns
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, SpanKind, Status, StatusCode, TraceFlags
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
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_OK_UNSET = Status(StatusCode.UNSET)


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

    __slots__ = (
        "context",
        "tracer",
        "rate",
        "_random",
        "_rec",
        "_batch",
        "_queue_parent",
        "_pending",
    )

    def __init__(self, context: Any, tracer: trace.Tracer, rate: float = 1.0) -> None:
        self.context = context
        self.tracer = tracer
        # New traces are sampled here, before any span exists, so an unsampled
        # publish costs one random draw and not a span; the SDK's sampler is
        # parent-based over "always on" and decides publishes that carry a parent.
        self.rate = rate
        self._random = random.random
        self._rec = _Recorder(tracer)
        self._batch: _Deliveries | None = None
        self._queue_parent: trace.SpanContext | None = None
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
                    return self._queue(message)[0]
                if ctx.events.on_published:
                    ctx.events.message_published(message)
                return ctx.router.publish(message)
        elif not _sampled(parent):
            return self._route_plain(message)  # the client's trace is not sampled
        return self._traced(message, parent)

    def _traced(self, message: Message, parent: otel_context.Context | None) -> int:
        """A sampled publish: its ``publish`` span and, when anyone got it, one
        ``deliver`` span, both recorded finished (see :class:`_Recorder`)."""
        rec = self._rec
        start = time_ns()
        parent_sc: trace.SpanContext | None = None
        if parent is not None:
            parent_sc = trace.get_current_span(parent).get_span_context()
            span_ctx = rec.context(parent_sc.trace_id, parent_sc.trace_state)
        else:
            span_ctx = rec.context(rec.ids.generate_trace_id(), None)
        attrs: dict[str, AttributeValue] = {
            "messaging.system": "fluxmq",
            "messaging.operation.type": "publish",
            "messaging.destination.name": message.topic,
            "messaging.message.body.size": len(message.payload),
            "fluxmq.protocol": message.origin_protocol,
            "fluxmq.client_id": message.origin_client,
            "fluxmq.qos": message.qos,
        }
        if message.retain:
            attrs["fluxmq.retain"] = True
        message = _with_context(message, span_ctx)
        error: str | None = None
        n = 0
        try:
            if message.topic.startswith(QUEUE_TOPIC_PREFIXES):
                # ``queued`` (called from within) parents queue.append here.
                outer = self._queue_parent
                self._queue_parent = span_ctx
                try:
                    n, error = self._queue(message)
                finally:
                    self._queue_parent = outer
            else:
                n = self._route(message, span_ctx)
            return n
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            attrs["fluxmq.deliveries"] = n
            rec.emit("publish", span_ctx, parent_sc, SpanKind.SERVER, attrs, start, error)

    def queued(self, message: Message, fut: Any) -> None:
        """A publish to ``$queue/`` was accepted: a ``queue.append`` span until the
        append is durable (or failed)."""
        parent = None
        if self._queue_parent is not None:
            parent = trace.set_span_in_context(NonRecordingSpan(self._queue_parent))
        elif not trace.get_current_span().is_recording():
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
            return self._queue(message)[0]
        events = ctx.events
        if events.on_published:
            events.message_published(message)
        return int(ctx.router.publish(message))

    def _queue(self, message: Message) -> tuple[int, str | None]:
        """BrokerContext.publish's queue branch: (deliveries, the refusal or None)."""
        ctx = self.context
        try:
            fut = ctx.publish_queued(message)
        except QueueError as exc:
            ctx.stats.messages_dropped += 1
            ctx.log.warning("publish to %r not queued: %s", message.topic, exc)
            return 0, str(exc)
        fut.add_done_callback(ctx._append_done)
        return 1, None

    def _route(self, message: Message, parent: trace.SpanContext) -> int:
        ctx = self.context
        events = ctx.events
        if events.on_published:
            events.message_published(message)
        # One ``deliver`` span for the whole fan-out, started at the first delivery
        # (a publish nobody receives makes none).
        outer = self._batch
        batch = self._batch = _Deliveries(parent)
        try:
            ctx.router.publish_each(message, self._deliver)
        finally:
            self._batch = outer
            if batch.count:
                batch.finish(self._rec)
        return batch.count

    def _deliver(self, sub: Any, message: Message, delivery: Any) -> None:
        batch = self._batch
        assert batch is not None  # set by _route around publish_each
        if not batch.count:
            batch.start = time_ns()
        batch.count += 1
        if batch.count <= MAX_LISTED:
            batch.subs.append((sub, delivery))
        try:
            sub.deliver(message, delivery)
        except Exception as exc:
            batch.error = f"{type(exc).__name__}: {exc}"
            raise


class _Recorder:
    """Records finished spans straight into the provider's span processors.

    A span made through the SDK's ``Tracer.start_span`` costs about 10 us here
    (sampler, limits, a lock, validation of every attribute, a copy at ``end``); the
    two spans of a sampled publish are known complete when it returns, so they are
    built as :class:`ReadableSpan` (what exporters receive anyway) and handed to
    ``on_end`` directly: ids from the provider's id generator, its resource, the
    tracer's instrumentation scope. Processors' ``on_start`` is not called for them
    (the SDK's batch and simple processors do nothing there). Attribute values are
    ours and of valid types, so they are not validated again."""

    __slots__ = ("processor", "resource", "ids", "scope")

    def __init__(self, tracer: Any) -> None:
        self.processor = tracer.span_processor
        self.resource = tracer.resource
        self.ids = tracer.id_generator
        self.scope = getattr(tracer, "_instrumentation_scope", None) or InstrumentationScope(
            "fluxmq"
        )

    def context(self, trace_id: int, trace_state: Any) -> trace.SpanContext:
        return trace.SpanContext(
            trace_id,
            self.ids.generate_span_id(),
            is_remote=False,
            trace_flags=_SAMPLED,
            trace_state=trace_state,
        )

    def emit(
        self,
        name: str,
        span_ctx: trace.SpanContext,
        parent: trace.SpanContext | None,
        kind: SpanKind,
        attrs: dict[str, AttributeValue],
        start: int,
        error: str | None,
    ) -> None:
        self.processor.on_end(
            ReadableSpan(
                name,
                context=span_ctx,
                parent=parent,
                resource=self.resource,
                attributes=attrs,
                kind=kind,
                status=_OK_UNSET if error is None else Status(StatusCode.ERROR, error),
                start_time=start,
                end_time=time_ns(),
                instrumentation_scope=self.scope,
            )
        )


class _Deliveries:
    """The fan-out of one sampled publish, summed up in its ``deliver`` span: the
    subscriber's protocol, client id and QoS when there is one, the first
    :data:`MAX_LISTED` as ``fluxmq.subscribers`` (``protocol:client_id``) when more."""

    __slots__ = ("parent", "start", "count", "subs", "error")

    def __init__(self, parent: trace.SpanContext) -> None:
        self.parent = parent
        self.start = 0
        self.count = 0
        self.subs: list[tuple[Any, Any]] = []
        self.error: str | None = None

    def finish(self, rec: _Recorder) -> None:
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
        span_ctx = rec.context(self.parent.trace_id, self.parent.trace_state)
        rec.emit("deliver", span_ctx, self.parent, SpanKind.PRODUCER, attrs, self.start, self.error)


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
