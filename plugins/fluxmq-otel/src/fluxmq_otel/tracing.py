"""Real spans on the publish path: ``publish`` -> ``route`` -> ``deliver`` per
subscriber (or one for the whole fan-out), ``queue.append`` for a publish to
``$queue/``, and ``queue.deliver`` -> ``queue.ack`` when a queue hands a traced
message to a consumer and it is settled.

:class:`BrokerTracer` is what the plugin puts in ``context.tracer``; while that is
``None`` (``[otel] traces = false``) the core's publish path pays one attribute
check. The core keeps the one publish path: it asks
:meth:`BrokerTracer.publish_span` whether a message is traced and, when it is,
routes the span's ``message`` itself, handing the span to the router as its hook
(:class:`~fluxmq_core.router.DeliverySpan`: told the match and each delivery).
Nothing here routes, appends or forwards a message.

- The parent comes from the message's W3C trace context, the ``traceparent`` and
  ``tracestate`` user properties (MQTT 5 user properties and AMQP 0.9.1 headers both
  arrive there), so a trace started by a client goes on in the broker. It is only
  looked for when the message has user properties at all.
- Sampling is decided here before any OpenTelemetry object is touched: a publish
  with a parent follows the parent's sampled flag, a new trace is kept when one
  ``random()`` draw is below ``sample_rate``. A publish that is not sampled gets
  ``None``: no span, no attribute dict, and its message is not touched. (The SDK's
  sampler is therefore parent-based "always on".)
- A sampled publish is ``publish``, ``route`` under it (the match: subscribers and
  share groups matched, deliveries, nodes forwarded to) and a ``deliver`` span per
  subscriber reached under ``route``, at most ``[otel] max_deliver_spans`` per
  publish (the rest counted as ``fluxmq.deliveries_omitted``); with
  ``deliver_spans = "per_publish"`` one ``deliver`` counts the deliveries and names
  the subscribers instead.
- Every span processor sees each span start and end. When some processor does
  something in ``on_start`` (say, adds attributes), the spans are made through
  the SDK's tracer (:class:`PublishSpan`). When none does (the SDK's batch and
  simple processors, the default), they are built finished and handed to
  ``on_end`` as each ends (:class:`RecordedPublishSpan`): the same spans at a fifth
  of the cost, as the SDK's ``start_span`` validates every attribute and samples again.
- A sampled publish carries the ``publish`` span's context on (for every subscriber,
  also with a ``deliver`` span each: one message copy serves them all): the message's
  ``traceparent``/``tracestate`` are replaced, so an MQTT 5 subscriber sees them as
  user properties, an AMQP consumer as headers, a queue stores them and another
  cluster node receives them with the forwarded message: a trace crosses
  protocols, nodes and services.
"""

from __future__ import annotations

import logging
import random
from collections import OrderedDict
from time import time_ns
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from fluxmq_core.message import Message

__all__ = ["TRACE_KEYS", "BrokerTracer", "PublishSpan", "RecordedPublishSpan", "extract", "inject"]

log = logging.getLogger("fluxmq.otel")

TRACE_KEYS = ("traceparent", "tracestate")
#: Traced queue deliveries remembered until settled (for their queue.ack span).
MAX_PENDING = 10_000
#: Subscribers named in a ``deliver`` span's ``fluxmq.subscribers``; more are counted.
MAX_LISTED = 16
#: ``deliver`` spans made per publish by default (``[otel] max_deliver_spans``).
MAX_DELIVER_SPANS = 100
_PROPAGATOR = TraceContextTextMapPropagator()
#: The parent of a new trace: an empty context, whatever span is current.
_ROOT = otel_context.Context()
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_UNSET = Status(StatusCode.UNSET)
#: ``on_start`` implementations that do nothing (the SDK's own processors).
_QUIET_ON_START = frozenset(
    {SpanProcessor.on_start, SimpleSpanProcessor.on_start, BatchSpanProcessor.on_start}
)


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
    """Decides sampling and makes the spans; see the module docstring."""

    __slots__ = ("context", "tracer", "rate", "per_subscriber", "cap", "_random", "_pending",
                 "_rec", "_members", "_quiet")  # fmt: skip

    def __init__(
        self,
        context: Any,
        tracer: trace.Tracer,
        rate: float = 1.0,
        per_subscriber: bool = True,
        cap: int = MAX_DELIVER_SPANS,
    ) -> None:
        self.context = context
        self.tracer = tracer
        # [otel] deliver_spans and max_deliver_spans: a deliver span per subscriber
        # (at most ``cap`` per publish) or one per publish.
        self.per_subscriber = per_subscriber
        self.cap = cap
        # New traces are sampled here, before any span exists, so an unsampled
        # publish costs one random draw and not a span; the SDK's sampler is
        # parent-based over "always on" and decides publishes that carry a parent.
        self.rate = rate
        self._random = random.random
        # (queue, group, offset) -> (queue.deliver span's context, its start in ns),
        # until the delivery is settled; bounded, the oldest forgotten first.
        self._pending: OrderedDict[tuple[str, str, int], tuple[otel_context.Context, int]] = (
            OrderedDict()
        )
        self._rec = _Recorder(tracer)
        # The span processors last looked at, and whether all of them ignore on_start.
        self._members: Any = None
        self._quiet = False

    # -- called by BrokerContext.publish -------------------------------------------------

    def publish_span(self, message: Message) -> PublishSpan | RecordedPublishSpan | None:
        """The ``publish`` span of ``message`` when it is sampled, else None."""
        parent: otel_context.Context | None = None
        if message.user_properties:
            parent = extract(message)
        if parent is None:
            # A new trace: one random draw decides it before any OTel object is
            # touched (this runs for 99 publishes in 100 at sample_rate 0.01).
            if self._random() >= self.rate:
                return None
        elif not _sampled(parent):
            return None  # the client's trace is not sampled
        if self._on_start_ignored():
            return RecordedPublishSpan(self._rec, message, parent, self.per_subscriber, self.cap)
        return PublishSpan(self.tracer, message, parent, self.per_subscriber, self.cap)

    def _on_start_ignored(self) -> bool:
        """Whether no span processor does anything in ``on_start`` (looked at again
        whenever the provider's processors change)."""
        members = getattr(self._rec.processor, "_span_processors", None)
        if members is not self._members:
            self._members = members
            self._quiet = members is not None and all(
                type(p).on_start in _QUIET_ON_START for p in members
            )
        return self._quiet

    def queued(self, message: Message, fut: Any) -> None:
        """A publish to ``$queue/`` was accepted: a ``queue.append`` span until the
        append is durable (or failed). Its parent is the trace context the message
        carries: the ``publish`` span's when it came through ``context.publish``,
        the client's for a protocol that appends directly."""
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


class _PublishHooks:
    """What :class:`PublishSpan` and :class:`RecordedPublishSpan` share: the
    router's hook (:class:`~fluxmq_core.router.DeliverySpan`) turned into a
    ``route`` span (child of ``publish``) and ``deliver`` spans under it, one per
    subscriber (up to ``cap`` per publish; the rest are counted on ``route`` as
    ``fluxmq.deliveries_omitted``) or, with ``per_subscriber`` False, one for the
    whole fan-out. Subclasses open and close the spans (``_open_route``,
    ``_open_deliver``, ``_close_deliver``, ``_close_route``, ``_close_publish``)."""

    __slots__ = ("message", "error", "per_subscriber", "cap", "_routing", "_matched",
                 "_groups", "_delivered", "_failed", "_elsewhere", "_forwarded", "_made",
                 "_omitted", "_current", "_fan", "_subs", "_members")  # fmt: skip

    message: Message

    def _init_hooks(self, per_subscriber: bool, cap: int) -> None:
        self.error: str | None = None
        self.per_subscriber = per_subscriber
        self.cap = cap
        self._routing = False
        self._matched: int | None = None
        self._groups: list[str] = []
        self._delivered = 0
        self._failed = 0
        self._elsewhere: int | None = None
        self._forwarded: int | None = None
        self._made = 0
        self._omitted = 0
        # The delivery under way: (subscriber, qos, group, its deliver span's token).
        self._current: tuple[Any, int, str | None, Any] | None = None
        # per_publish: the one deliver span's token, the plain subscribers (the
        # first MAX_LISTED + 1) and the share members picked.
        self._fan: Any = None
        self._subs: list[tuple[Any, int]] = []
        self._members: list[tuple[str, Any, int]] | None = None

    # -- the router's hook ---------------------------------------------------------------

    def routing(self) -> None:
        self._routing = True
        self._open_route()

    def matched(self, subscribers: int, groups: list[str]) -> None:
        self._matched = subscribers
        self._groups = groups

    def delivering(self, subscriber: Any, qos: int, group: str | None) -> None:
        if self.per_subscriber:
            if self._made < self.cap:
                self._made += 1
                self._current = (subscriber, qos, group, self._open_deliver())
            else:
                self._omitted += 1
            return
        if self._fan is None:
            self._fan = self._open_deliver()
        if group is not None:
            _add_member(self, group, subscriber, qos)
        elif len(self._subs) <= MAX_LISTED:
            self._subs.append((subscriber, qos))

    def delivered(self, failed: bool) -> None:
        current = self._current
        if current is None:
            return
        self._current = None
        sub, qos, group, token = current
        attrs: dict[str, AttributeValue] = {
            "fluxmq.protocol": sub.protocol,
            "fluxmq.client_id": sub.client_id,
            "fluxmq.qos": qos,
        }
        if group is not None:
            attrs["fluxmq.share_group"] = group
        self._close_deliver(token, attrs, "delivery failed" if failed else None)

    def shared_elsewhere(self, deliveries: int) -> None:
        self._elsewhere = deliveries

    def routed(self, delivered: int, failed: int) -> None:
        self._delivered = delivered
        self._failed = failed
        if self._current is not None:  # a delivery interrupted (cancelled): end its span
            self.delivered(True)
        token = self._fan
        if token is not None:
            self._fan = None
            attrs = _deliver_attrs(self._subs, self._groups, delivered, self._members)
            self._close_deliver(token, attrs, f"{failed} deliveries failed" if failed else None)

    # -- called by BrokerContext.publish --------------------------------------------------

    def forwarded(self, nodes: int) -> None:
        self._forwarded = nodes

    def end(self, deliveries: int) -> None:
        if self._routing:
            self._close_route(self._route_attrs(), self._route_error())
        attrs = _publish_attrs(self.message)
        attrs["fluxmq.deliveries"] = deliveries
        self._close_publish(attrs, self.error)

    def _route_attrs(self) -> dict[str, AttributeValue]:
        attrs: dict[str, AttributeValue] = {"fluxmq.deliveries": self._delivered}
        if self._matched is None:
            attrs["fluxmq.expired"] = True
        else:
            attrs["fluxmq.matched_subscribers"] = self._matched
            if self._groups:
                attrs["fluxmq.share_groups"] = tuple(self._groups[:MAX_LISTED])
        if self._failed:
            attrs["fluxmq.deliveries_failed"] = self._failed
        if self._omitted:
            attrs["fluxmq.deliveries_omitted"] = self._omitted
        if self._elsewhere is not None:
            attrs["fluxmq.cluster.share_deliveries"] = self._elsewhere
        if self._forwarded is not None:
            attrs["fluxmq.cluster.forwarded_nodes"] = self._forwarded
        return attrs

    def _route_error(self) -> str | None:
        if self.error is not None:
            return self.error
        return f"{self._failed} deliveries failed" if self._failed else None

    # -- made by the subclasses -----------------------------------------------------------

    def _open_route(self) -> None:
        raise NotImplementedError

    def _open_deliver(self) -> Any:
        raise NotImplementedError

    def _close_deliver(
        self, token: Any, attrs: dict[str, AttributeValue], error: str | None
    ) -> None:
        raise NotImplementedError

    def _close_route(self, attrs: dict[str, AttributeValue], error: str | None) -> None:
        raise NotImplementedError

    def _close_publish(self, attrs: dict[str, AttributeValue], error: str | None) -> None:
        raise NotImplementedError


class PublishSpan(_PublishHooks):
    """The spans of one sampled message made through the SDK's tracer: ``publish``,
    and the router's hook (:class:`~fluxmq_core.router.DeliverySpan`) that makes
    ``route`` and ``deliver`` under it (see :class:`_PublishHooks`). ``message`` is
    the message to route, carrying the ``publish`` span's trace context; ``error``
    is set by the core when the publish failed or was refused."""

    __slots__ = ("tracer", "span", "_route")

    def __init__(
        self,
        tracer: trace.Tracer,
        message: Message,
        parent: otel_context.Context | None,
        per_subscriber: bool = True,
        cap: int = MAX_DELIVER_SPANS,
    ) -> None:
        if parent is None:
            # A new trace: not a child of whatever span is current in this task.
            parent = _ROOT
        self.tracer = tracer
        self.span = tracer.start_span(
            "publish", context=parent, kind=SpanKind.SERVER, attributes=_publish_attrs(message)
        )
        self.message = _with_context(message, self.span.get_span_context())
        self._route: trace.Span | None = None
        self._init_hooks(per_subscriber, cap)

    def _open_route(self) -> None:
        self._route = self.tracer.start_span(
            "route", context=trace.set_span_in_context(self.span), kind=SpanKind.INTERNAL
        )

    def _open_deliver(self) -> Any:
        parent = self._route if self._route is not None else self.span
        return self.tracer.start_span(
            "deliver", context=trace.set_span_in_context(parent), kind=SpanKind.PRODUCER
        )

    def _close_deliver(
        self, token: Any, attrs: dict[str, AttributeValue], error: str | None
    ) -> None:
        token.set_attributes(attrs)
        if error is not None:
            token.set_status(Status(StatusCode.ERROR, error))
        token.end()

    def _close_route(self, attrs: dict[str, AttributeValue], error: str | None) -> None:
        span = self._route
        if span is None:
            return
        self._route = None
        self._close_deliver(span, attrs, error)

    def _close_publish(self, attrs: dict[str, AttributeValue], error: str | None) -> None:
        span = self.span
        span.set_attribute("fluxmq.deliveries", attrs["fluxmq.deliveries"])
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end()


class RecordedPublishSpan(_PublishHooks):
    """:class:`PublishSpan` built finished: the same spans as :class:`ReadableSpan`
    (what exporters receive anyway), each handed to the span processors' ``on_end``
    when complete, for when no processor does anything in ``on_start`` (see the
    module docstring). Ids come from the provider's id generator, the resource and
    scope from the tracer; the attribute values are ours and of valid types, so they
    are not validated again."""

    __slots__ = ("rec", "context", "parent", "start", "_route_ctx", "_route_start")

    def __init__(
        self,
        rec: _Recorder,
        message: Message,
        parent: otel_context.Context | None,
        per_subscriber: bool = True,
        cap: int = MAX_DELIVER_SPANS,
    ) -> None:
        self.rec = rec
        self.start = time_ns()
        self.parent: trace.SpanContext | None = None
        if parent is not None:
            self.parent = trace.get_current_span(parent).get_span_context()
            self.context = rec.context(self.parent.trace_id, self.parent.trace_state)
        else:
            self.context = rec.context(rec.ids.generate_trace_id(), None)
        self.message = _with_context(message, self.context)
        self._route_ctx: trace.SpanContext = self.context
        self._route_start = 0
        self._init_hooks(per_subscriber, cap)

    def _open_route(self) -> None:
        ctx = self.context
        self._route_ctx = self.rec.context(ctx.trace_id, ctx.trace_state)
        self._route_start = time_ns()

    def _open_deliver(self) -> Any:
        return time_ns()

    def _close_deliver(
        self, token: Any, attrs: dict[str, AttributeValue], error: str | None
    ) -> None:
        route = self._route_ctx
        self.rec.emit(
            "deliver",
            self.rec.context(route.trace_id, route.trace_state),
            route,
            SpanKind.PRODUCER,
            attrs,
            token,
            error,
        )

    def _close_route(self, attrs: dict[str, AttributeValue], error: str | None) -> None:
        self.rec.emit(
            "route",
            self._route_ctx,
            self.context,
            SpanKind.INTERNAL,
            attrs,
            self._route_start,
            error,
        )

    def _close_publish(self, attrs: dict[str, AttributeValue], error: str | None) -> None:
        self.rec.emit(
            "publish", self.context, self.parent, SpanKind.SERVER, attrs, self.start, error
        )


class _Recorder:
    """Builds finished spans for :class:`RecordedPublishSpan` from what the SDK's
    tracer holds: its span processor, resource, id generator and scope."""

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
                status=_UNSET if error is None else Status(StatusCode.ERROR, error),
                start_time=start,
                end_time=time_ns(),
                instrumentation_scope=self.scope,
            )
        )


def _publish_attrs(message: Message) -> dict[str, AttributeValue]:
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
    return attrs


def _add_member(span: _PublishHooks, group: str, sub: Any, qos: int) -> None:
    """The router picked ``sub`` of share group ``group`` (the first
    :data:`MAX_LISTED` are kept)."""
    members = span._members
    if members is None:
        span._members = [(group, sub, qos)]
    elif len(members) < MAX_LISTED:
        members.append((group, sub, qos))


def _deliver_attrs(
    subs: list[tuple[Any, int]],
    groups: list[str],
    delivered: int,
    members: list[tuple[str, Any, int]] | None = None,
) -> dict[str, AttributeValue]:
    """A ``deliver`` span's attributes: the subscriber's protocol, client id and QoS
    when there is one (a plain subscriber, or the member picked in the one share
    group matched, then with ``fluxmq.share_group``), else the first
    :data:`MAX_LISTED` as ``fluxmq.subscribers`` (``protocol:client_id``, the share
    groups' picked members included), the share groups matched as
    ``fluxmq.share_groups`` and their picked members as ``fluxmq.share_members``
    (``group=protocol:client_id``). A group a cluster peer serves names no member."""
    attrs: dict[str, AttributeValue] = {"fluxmq.deliveries": delivered}
    if len(subs) == 1 and not groups:
        sub, qos = subs[0]
        attrs["fluxmq.protocol"] = sub.protocol
        attrs["fluxmq.client_id"] = sub.client_id
        attrs["fluxmq.qos"] = qos
    elif not subs and len(groups) == 1 and members is not None and len(members) == 1:
        group, sub, qos = members[0]
        attrs["fluxmq.protocol"] = sub.protocol
        attrs["fluxmq.client_id"] = sub.client_id
        attrs["fluxmq.qos"] = qos
        attrs["fluxmq.share_group"] = group
    else:
        listed = [f"{s.protocol}:{s.client_id}" for s, _ in subs[:MAX_LISTED]]
        if members:
            listed += [f"{s.protocol}:{s.client_id}" for _, s, _ in members]
            attrs["fluxmq.share_members"] = [
                f"{g}={s.protocol}:{s.client_id}" for g, s, _ in members
            ]
        attrs["fluxmq.subscribers"] = listed[:MAX_LISTED]
        if groups:
            attrs["fluxmq.share_groups"] = groups[:MAX_LISTED]
    return attrs


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
