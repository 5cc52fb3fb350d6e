"""One AMQP channel: commands, content assembly, consumers, acks, confirms, tx.

Sans-IO like ``connection.py``: it writes frames into the connection's ``out`` and
calls the shared, synchronous broker services (``Topology``, ``Queues``, the core
queue manager). What needs an await (``basic.get`` waiting for a delivery,
``tx.commit`` waiting for durable appends) is handed to the adapter through
``connection.waiting``, a typed wait (``waits.py``). Append futures are only given ``add_done_callback``.

Per channel: delivery tags (``unacked``: tag -> consumer, message id, group),
prefetch (``basic.qos``: per consumer as the core's consumer credit, or per channel
when ``global``, then deliveries past the limit wait in ``held``), publisher confirms
(``confirm_seq``; acks coalesced into one ``multiple`` ack when in order), and a
transaction buffer (publishes and settlements applied at ``tx.commit``).

A consumer cancelled while it still has unacknowledged deliveries is *parked*: the
core consumer stays registered but inactive, so the client can still ack what it
got (RabbitMQ semantics); it is removed once those are settled or the channel closes.
"""

from __future__ import annotations

import base64
import datetime
import os
from collections import deque
from typing import TYPE_CHECKING, Any

from pamqp import commands

from fluxmq_amqp091 import access, observe
from fluxmq_amqp091.codec import (
    ACCESS_REFUSED,
    CHANNEL_ERROR,
    COMMAND_INVALID,
    FRAME_ERROR,
    INTERNAL_ERROR,
    NO_ROUTE,
    NOT_ALLOWED,
    NOT_FOUND,
    NOT_IMPLEMENTED,
    PRECONDITION_FAILED,
    UNEXPECTED_FRAME,
    AMQPError,
    Body,
    Header,
    encode_content,
    encode_delivery,
    encode_method,
    short,
)
from fluxmq_amqp091.props import from_message, routing_of, to_message
from fluxmq_amqp091.queues import DEFAULT_GROUP
from fluxmq_amqp091.waits import CommitWait, GetWait
from fluxmq_core.queues.config import QueueError

if TYPE_CHECKING:
    from fluxmq_amqp091.connection import Connection
    from fluxmq_amqp091.queues import AMQPQueue
    from fluxmq_core.message import Message

B = commands.Basic
Q = commands.Queue
X = commands.Exchange


class Consumer:
    """A ``basic.consume`` (or one ``basic.get``): the core queue subscriber."""

    __slots__ = (
        "channel",
        "client_id",
        "exclusive",
        "group",
        "handle",
        "no_ack",
        "parked",
        "protocol",
        "queue",
        "tag",
        "got",
    )

    def __init__(
        self, channel: Channel, tag: str, queue: AMQPQueue | None, no_ack: bool, group: str
    ) -> None:
        self.channel = channel
        self.tag = tag
        self.queue = queue
        self.no_ack = no_ack
        self.group = group
        self.client_id = channel.conn.id
        self.protocol = "amqp091"
        self.handle: Any = None
        self.exclusive = False
        self.parked = False
        self.got: list[Message] | None = None  # basic.get: what arrived

    def deliver(self, message: Message, delivery: Any) -> None:
        if self.got is not None:
            self.got.append(message)
            self.channel.park(self)
            return
        self.channel.deliver(self, message)

    def server_cancel(self) -> None:
        self.channel.server_cancel(self)


def _ctag() -> str:
    return "amq.ctag-" + base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")


def stream_cursor(value: Any) -> Any:
    """``x-stream-offset`` -> a core cursor: first/last/next, an offset, a timestamp
    (AMQP timestamp, ``timestamp=<ms>``) or ``offset=N``."""
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        return float(value.timestamp())
    if isinstance(value, bool):
        raise AMQPError(PRECONDITION_FAILED, f"invalid x-stream-offset {value!r}", 60, 20)
    if isinstance(value, int):
        return value
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).strip()
    low = text.lower()
    if low in ("first", "last", "next", "latest", "earliest"):
        return low
    kind, sep, rest = low.partition("=")
    try:
        if sep and kind == "offset":
            return int(rest)
        if sep and kind == "timestamp":
            return int(rest) / 1000.0
        if low.isdigit():
            return int(low)
    except ValueError:
        pass
    raise AMQPError(PRECONDITION_FAILED, f"invalid x-stream-offset {value!r}", 60, 20)


class Channel:
    def __init__(self, conn: Connection, number: int) -> None:
        self.conn = conn
        self.number = number
        self.env = conn.env
        self.closing = False
        # content assembly: [publish method, header or None, body parts, received]
        self._pub: list[Any] | None = None
        self.consumers: dict[str, Consumer] = {}
        self.parked: set[Consumer] = set()
        self.unacked: dict[int, tuple[Consumer, str, str]] = {}
        self.next_tag = 1
        self.prefetch = 0  # per consumer (credit of new consumers)
        self.global_prefetch = 0  # per channel
        self.held: deque[tuple[Consumer, Message]] = deque()
        self.flow = True
        self.confirm = False
        self.confirm_seq = 0
        self._confirm_low = 1
        self._confirm_done: set[int] = set()
        self._nacked: set[int] = set()
        # acks settled by append futures and not sent yet (``acks_held``: the last
        # tag), sent as one ``multiple`` ack when the connection is next written
        self._ack_from = 0
        self.acks_held = 0
        self.tx = False
        self._tx_pub: list[tuple[Any, ...]] = []
        self._tx_settle: list[tuple[Any, ...]] = []
        self.last_queue = ""

    # --- frames ------------------------------------------------------------------------

    def method(self, m: Any) -> None:
        if self.closing:
            if isinstance(m, commands.Channel.CloseOk):
                self.conn.channels.pop(self.number, None)
            elif isinstance(m, commands.Channel.Close):
                self.conn.send(self.number, commands.Channel.CloseOk())
                self.conn.channels.pop(self.number, None)
            return
        if self._pub is not None:
            raise AMQPError(
                UNEXPECTED_FRAME,
                f"expected content header for basic.publish, got {m.name}",
                *_ids(m),
            )
        handler = _HANDLERS.get(type(m))
        if handler is None:
            # RabbitMQ: a server-side or connection-class method here is 503
            raise AMQPError(COMMAND_INVALID, f"unimplemented method {m.name}", *_ids(m))
        try:
            handler(self, m)
        except AMQPError as exc:
            if exc.hard:
                raise
            self.fail(exc)
        except QueueError as exc:
            self.fail(AMQPError(PRECONDITION_FAILED, str(exc), *_ids(m)))

    def header(self, h: Header) -> None:
        if self.closing:
            return
        pub = self._pub
        if pub is None or pub[1] is not None:
            raise AMQPError(UNEXPECTED_FRAME, "content header without basic.publish")
        if h.class_id != 60:
            raise AMQPError(
                UNEXPECTED_FRAME,
                f"expected content header for class 60, got one for class {h.class_id} instead",
            )
        limit = self.env.cfg.max_message_size
        if limit and h.body_size > limit:
            self._pub = None
            self.fail(
                AMQPError(
                    PRECONDITION_FAILED,
                    f"message size {h.body_size} is larger than configured max size {limit}",
                    60,
                    40,
                )
            )
            # its body frames still follow: swallow them
            self._pub = [None, h, [], 0]
            return
        pub[1] = h
        if h.body_size == 0:
            self._pub = None
            self._published(pub[0], h, b"")

    def body(self, b: Body) -> None:
        pub = self._pub
        if self.closing and pub is None:
            return
        if pub is None or pub[1] is None:
            raise AMQPError(UNEXPECTED_FRAME, "content body without a content header")
        pub[2].append(b.data)
        pub[3] += len(b.data)
        size = pub[1].body_size
        if pub[3] > size:
            raise AMQPError(FRAME_ERROR, f"content body longer than announced ({size} bytes)")
        if pub[3] == size:
            self._pub = None
            if pub[0] is not None:
                data = pub[2][0] if len(pub[2]) == 1 else b"".join(pub[2])
                self._published(pub[0], pub[1], data)

    # --- errors and lifetime ------------------------------------------------------------

    def fail(self, exc: AMQPError) -> None:
        """A channel exception: channel.close, then wait for close-ok."""
        self.env.protocol_error(self.conn, exc)
        self.conn.send(
            self.number,
            commands.Channel.Close(
                reply_code=exc.reply_code,
                reply_text=exc.reply_text,
                class_id=exc.class_id,
                method_id=exc.method_id,
            ),
        )
        self.teardown()
        self.closing = True

    def teardown(self) -> None:
        """Cancel consumers (their unacked deliveries are requeued) and forget state."""
        queues = self.env.queues
        for c in list(self.consumers.values()):
            if c.queue is not None:
                queues.consumer_removed(c.queue, c)
            self._unregister(c)
        for c in list(self.parked):
            self._unregister(c)
        self.consumers.clear()
        self.parked.clear()
        self.unacked.clear()
        self.held.clear()
        self._tx_pub.clear()
        self._tx_settle.clear()

    def _unregister(self, c: Consumer) -> None:
        h = c.handle
        c.handle = None
        self.parked.discard(c)
        if h is None or h.closed:
            return
        self.env.core.cancel(h)

    # --- channel class ----------------------------------------------------------------

    def _close(self, m: commands.Channel.Close) -> None:
        self.teardown()
        self.conn.send(self.number, commands.Channel.CloseOk())
        self.conn.channels.pop(self.number, None)

    def _channel_open(self, m: Any) -> None:
        raise AMQPError(CHANNEL_ERROR, f"channel {self.number} is already open", 20, 10)

    def _flow(self, m: commands.Channel.Flow) -> None:
        self.flow = bool(m.active)
        self.refresh()
        self.conn.send(self.number, commands.Channel.FlowOk(active=self.flow))
        if self.flow:
            self.pump()

    def refresh(self) -> None:
        """Make each consumer's core handle active or not (flow, backpressure, parked)."""
        on = self.flow and not self.conn.paused
        for c in self.consumers.values():
            h = c.handle
            if h is None or h.closed:
                continue
            if on:
                h.resume()
            else:
                h.pause()

    # --- exchange class ---------------------------------------------------------------

    def _exchange_declare(self, m: X.Declare) -> None:
        self.env.topology.declare(
            m.exchange,
            m.exchange_type,
            passive=m.passive,
            durable=m.durable,
            auto_delete=m.auto_delete,
            internal=m.internal,
            arguments=m.arguments or {},
        )
        if not m.nowait:
            self.conn.send(self.number, X.DeclareOk())

    def _exchange_delete(self, m: X.Delete) -> None:
        self.env.topology.delete(m.exchange, m.if_unused)
        if not m.nowait:
            self.conn.send(self.number, X.DeleteOk())

    def _exchange_bind(self, m: X.Bind) -> None:
        self.env.topology.bind(
            m.source, "exchange", m.destination, m.routing_key, m.arguments or {}, (40, 30)
        )
        if not m.nowait:
            self.conn.send(self.number, X.BindOk())

    def _exchange_unbind(self, m: X.Unbind) -> None:
        self.env.topology.unbind(
            m.source, "exchange", m.destination, m.routing_key, m.arguments or {}, (40, 40)
        )
        if not m.nowait:
            self.conn.send(self.number, X.UnbindOk())

    # --- queue class ------------------------------------------------------------------

    def _queue_name(self, name: str, ids: tuple[int, int]) -> str:
        if name:
            return name
        if not self.last_queue:
            raise AMQPError(NOT_FOUND, "no previously declared queue", *ids)
        return self.last_queue

    def _queue_declare(self, m: Q.Declare) -> None:
        name, count, consumers = self.env.queues.declare(
            self.conn,
            m.queue,
            passive=m.passive,
            durable=m.durable,
            exclusive=m.exclusive,
            auto_delete=m.auto_delete,
            arguments=m.arguments or {},
        )
        self.last_queue = name
        if not m.nowait:
            self.conn.send(
                self.number, Q.DeclareOk(queue=name, message_count=count, consumer_count=consumers)
            )

    def _queue_bind(self, m: Q.Bind) -> None:
        name = self._queue_name(m.queue, (50, 20))
        rk = m.routing_key if (m.routing_key or m.queue) else name
        env = self.env
        if (env.auth.authorization_active or env.context.hooks is not None) and not access.may_bind(
            self, m.exchange, rk, lambda: self._queue_bind(m)
        ):
            return
        self._over_subscribe_rate((50, 20))
        self.env.queues.lookup(self.conn, name, (50, 20))
        self.env.topology.bind(m.exchange, "queue", name, rk, m.arguments or {}, (50, 20))
        observe.bound(self.env, self.conn, m.exchange, rk)
        if not m.nowait:
            self.conn.send(self.number, Q.BindOk())

    def _queue_unbind(self, m: Q.Unbind) -> None:
        name = self._queue_name(m.queue, (50, 50))
        if self.env.queues.exists(name) or name in self.env.queues.meta:
            self.env.queues.lookup(self.conn, name, (50, 50))  # 405 when exclusive to another
        # RabbitMQ: unbinding a missing queue (or from a missing exchange) is OK
        self.env.topology.unbind(
            m.exchange, "queue", name, m.routing_key, m.arguments or {}, (50, 50)
        )
        observe.unbound(self.env, self.conn, m.exchange, m.routing_key)
        self.conn.send(self.number, Q.UnbindOk())

    def _queue_purge(self, m: Q.Purge) -> None:
        n = self.env.queues.purge(self.conn, self._queue_name(m.queue, (50, 30)))
        if not m.nowait:
            self.conn.send(self.number, Q.PurgeOk(message_count=n))

    def _queue_delete(self, m: Q.Delete) -> None:
        n = self.env.queues.delete(
            self.conn, self._queue_name(m.queue, (50, 40)), m.if_unused, m.if_empty
        )
        if not m.nowait:
            self.conn.send(self.number, Q.DeleteOk(message_count=n))

    # --- basic: consumers ---------------------------------------------------------------

    def _qos(self, m: B.Qos) -> None:
        if m.prefetch_size:
            raise AMQPError(NOT_IMPLEMENTED, f"prefetch_size!=0 ({m.prefetch_size})", 60, 10)
        if m.global_:
            self.global_prefetch = int(m.prefetch_count)
            for c in self.consumers.values():
                if c.handle is not None and not c.no_ack:
                    c.handle.set_credit(self.global_prefetch)
            self.pump()
        else:
            self.prefetch = int(m.prefetch_count)
        self.conn.send(self.number, B.QosOk())

    def _consume(self, m: B.Consume) -> None:
        ids = (60, 20)
        qname = self._queue_name(m.queue, ids)
        env = self.env
        if (
            env.auth.authorization_active or env.context.hooks is not None
        ) and not access.may_consume(self, qname, ids, lambda: self._consume(m)):
            return
        self._over_subscribe_rate(ids)
        q = self.env.queues.lookup(self.conn, qname, ids, touch=True)
        tag = m.consumer_tag or _ctag()
        if tag in self.consumers:
            raise AMQPError(NOT_ALLOWED, f"attempt to reuse consumer tag '{tag}'", *ids)
        if any(c.exclusive for c in q.consumers):
            raise AMQPError(ACCESS_REFUSED, f"queue '{qname}' in vhost '/' in exclusive use", *ids)
        if m.exclusive and q.consumers:
            raise AMQPError(ACCESS_REFUSED, f"queue '{qname}' in vhost '/' in exclusive use", *ids)
        args = m.arguments or {}
        core_q = self.env.core.get(qname)
        stream = core_q is not None and core_q.is_stream
        if stream and m.no_ack:
            raise AMQPError(
                NOT_IMPLEMENTED,
                f"automatic acknowledgement not supported by stream queues queue '{qname}' "
                "in vhost '/'",
                *ids,
            )
        if stream and not self.prefetch:
            raise AMQPError(
                PRECONDITION_FAILED,
                f"consumer prefetch count is not set for 'queue '{qname}' in vhost '/''",
                *ids,
            )
        group = args.get("x-consumer-group")
        group = str(group) if group else (tag if stream else DEFAULT_GROUP)
        cursor = stream_cursor(args.get("x-stream-offset")) if stream else None
        c = Consumer(self, tag, q, bool(m.no_ack), group)
        c.exclusive = bool(m.exclusive)
        credit = 0 if m.no_ack else (self.global_prefetch or self.prefetch)
        self.consumers[tag] = c
        self.env.queues.consumer_added(q, c)
        if not m.nowait:
            self.conn.send(self.number, B.ConsumeOk(consumer_tag=tag))
        try:
            c.handle = self.env.core.consume(
                qname, group, c, credit=credit, cursor=cursor, auto_commit=bool(m.no_ack)
            )
        except QueueError as exc:
            self.consumers.pop(tag, None)
            self.env.queues.consumer_removed(q, c)
            raise AMQPError(PRECONDITION_FAILED, str(exc), *ids) from None
        if not self.flow or self.conn.paused:
            c.handle.pause()
        observe.consumed(self.env, self.conn, qname, bool(m.no_ack))

    def _cancel(self, m: B.Cancel) -> None:
        c = self.consumers.pop(m.consumer_tag or "", None)
        if c is not None:
            self._retire(c)
            if c.queue is not None:
                observe.cancelled(self.env, self.conn, c.queue.name)
        if not m.nowait:
            self.conn.send(self.number, B.CancelOk(consumer_tag=m.consumer_tag))

    def _retire(self, c: Consumer) -> None:
        if c.queue is not None:
            self.env.queues.consumer_removed(c.queue, c)
        self.held = deque(x for x in self.held if x[0] is not c) if self.held else self.held
        self.park(c)

    def park(self, c: Consumer) -> None:
        """Stop deliveries to ``c`` but keep its unacked ones ackable."""
        h = c.handle
        if h is None:
            return
        if not h.inflight or c.no_ack:
            self._unregister(c)
            return
        h.pause()
        c.parked = True
        self.parked.add(c)

    def _maybe_release(self, c: Consumer) -> None:
        if c.parked and (c.handle is None or not c.handle.inflight):
            self._unregister(c)

    def server_cancel(self, c: Consumer) -> None:
        """The queue was deleted: tell the client (consumer_cancel_notify)."""
        if self.consumers.get(c.tag) is c:
            del self.consumers[c.tag]
        c.handle = None
        c.queue = None
        self.parked.discard(c)
        if self.conn.capabilities.get("consumer_cancel_notify") and not self.closing:
            self.conn.send(self.number, B.Cancel(consumer_tag=c.tag, nowait=True))
            self.conn.wakeup(self.conn)

    # --- basic: deliveries ------------------------------------------------------------

    def deliver(self, c: Consumer, message: Message) -> None:
        if self.closing or self.consumers.get(c.tag) is not c:
            return  # stays pending in the core; requeued when the handle goes
        if (
            self.held
            or not self.flow
            or (self.global_prefetch and not c.no_ack and len(self.unacked) >= self.global_prefetch)
        ):
            self.held.append((c, message))
            return
        self._send_delivery(c, message)
        self.conn.wakeup(self.conn)

    def _send_delivery(self, c: Consumer, message: Message) -> None:
        tag = self.next_tag
        self.next_tag = tag + 1
        props = message.properties or {}
        count = props.get("delivery-count", 1)
        if not c.no_ack:
            self.unacked[tag] = (c, props.get("message-id", ""), c.group)
        exchange, rk = routing_of(message)
        conn = self.conn
        now = self.env.clock()
        conn.out += encode_delivery(
            self.number,
            c.tag,
            tag,
            count > 1,
            exchange,
            rk,
            from_message(message, now),
            message.payload,
            conn.frame_max,
        )
        self.env.stats.messages_sent += 1
        if self.env.events.on_delivered:
            observe.delivered(self.env, conn, message)

    def pump(self) -> None:
        """Send held deliveries while the channel has room."""
        held = self.held
        while held and self.flow:
            c, message = held[0]
            if self.global_prefetch and not c.no_ack and len(self.unacked) >= self.global_prefetch:
                return
            held.popleft()
            if self.consumers.get(c.tag) is c:
                self._send_delivery(c, message)

    # --- basic: settlements -------------------------------------------------------------

    def _tags(self, tag: int, multiple: bool, ids: tuple[int, int]) -> list[int]:
        if multiple:
            if tag == 0:
                return list(self.unacked)
            out = []
            for t in self.unacked:  # in delivery order: tags ascend
                if t > tag:
                    break
                out.append(t)
            return out
        if tag not in self.unacked:
            raise AMQPError(PRECONDITION_FAILED, f"unknown delivery tag {tag}", *ids)
        return [tag]

    def _ack(self, m: B.Ack) -> None:
        if self.tx:
            self._tx_settle.append(("ack", m.delivery_tag, m.multiple, False))
            return
        self._settle("ack", m.delivery_tag, m.multiple, False, (60, 80))

    def _nack(self, m: B.Nack) -> None:
        if self.tx:
            self._tx_settle.append(("nack", m.delivery_tag, m.multiple, m.requeue))
            return
        self._settle("nack", m.delivery_tag, m.multiple, m.requeue, (60, 120))

    def _reject(self, m: B.Reject) -> None:
        if self.tx:
            self._tx_settle.append(("nack", m.delivery_tag, False, m.requeue))
            return
        self._settle("nack", m.delivery_tag or 0, False, m.requeue, (60, 90))

    def _settle(
        self, kind: str, tag: int, multiple: bool, requeue: bool, ids: tuple[int, int]
    ) -> None:
        core = self.env.core
        touched: set[Consumer] = set()
        tags = self._tags(tag, multiple, ids)
        if kind == "ack" and len(tags) > 1:
            # one core call per group: one commit update and one wake for the batch
            unacked = self.unacked
            by_group: dict[str, list[str]] = {}
            for t in tags:
                c, mid, group = unacked.pop(t)
                touched.add(c)
                mids = by_group.get(group)
                if mids is None:
                    by_group[group] = [mid]
                else:
                    mids.append(mid)
            for group, mids in by_group.items():
                core.ack_many(group, mids)  # deleted queues' ids are skipped
            tags = []
        for t in tags:
            c, mid, group = self.unacked.pop(t)
            touched.add(c)
            try:
                if kind == "ack":
                    core.ack(mid, group)
                elif requeue:
                    core.nack(mid, group, requeue=True, delay=0.0)
                else:
                    core.reject(mid, group)
            except QueueError:
                pass  # the queue was deleted meanwhile
        for c in touched:
            self._maybe_release(c)
        self.pump()

    def _recover(self, m: Any) -> None:
        if not m.requeue:
            # RabbitMQ never implemented redelivery to the same consumer
            raise AMQPError(
                NOT_IMPLEMENTED, "requeue=false", 60, 110 if isinstance(m, B.Recover) else 100
            )
        core = self.env.core
        for _t, (_c, mid, group) in list(self.unacked.items()):
            try:
                core.nack(mid, group, requeue=True, delay=0.0)
            except QueueError:
                pass
        touched = {c for c, _m, _g in self.unacked.values()}
        self.unacked.clear()
        for c in touched:
            self._maybe_release(c)
        if isinstance(m, B.Recover):
            self.conn.send(self.number, B.RecoverOk())

    # --- basic.get ------------------------------------------------------------------------

    def _get(self, m: B.Get) -> None:
        qname = self._queue_name(m.queue, (60, 70))
        env = self.env
        if (
            env.auth.authorization_active or env.context.hooks is not None
        ) and not access.may_consume(self, qname, (60, 70), lambda: self._get(m)):
            return
        q = self.env.queues.lookup(self.conn, qname, (60, 70), touch=True)
        core_q = self.env.core.get(qname)
        if core_q is not None and core_q.is_stream:
            raise AMQPError(
                NOT_IMPLEMENTED,
                f"basic.get not supported by stream queues queue '{qname}' in vhost '/'",
                60,
                70,
            )
        self.conn.waiting = GetWait(self, q, bool(m.no_ack))

    def get_result(self, c: Consumer | None, message: Message | None, remaining: int) -> None:
        """The adapter's answer to a ``GetWait``: get-ok with the message or get-empty."""
        if message is None or c is None:
            self.conn.send(self.number, B.GetEmpty())
            return
        tag = self.next_tag
        self.next_tag += 1
        props = message.properties or {}
        if not c.no_ack:
            self.unacked[tag] = (c, props.get("message-id", ""), c.group)
        exchange, rk = routing_of(message)
        method = encode_method(
            self.number,
            B.GetOk(
                delivery_tag=tag,
                redelivered=props.get("delivery-count", 1) > 1,
                exchange=short(exchange),
                routing_key=short(rk),
                message_count=remaining,
            ),
        )
        self.conn.out += encode_content(
            self.number,
            method,
            from_message(message, self.env.clock()),
            message.payload,
            self.conn.frame_max,
        )
        self.env.stats.messages_sent += 1
        if self.env.events.on_delivered:
            observe.delivered(self.env, self.conn, message)

    # --- basic.publish ----------------------------------------------------------------

    def _publish(self, m: B.Publish) -> None:
        if m.immediate:
            raise AMQPError(NOT_IMPLEMENTED, "immediate=true", 60, 40)
        self._pub = [m, None, [], 0]

    def _published(self, m: B.Publish, h: Header, body: bytes) -> None:
        env = self.env
        if (env.auth.authorization_active or env.context.hooks is not None) and not (
            access.may_publish(
                self, m, h.properties.headers, body, lambda: self._published(m, h, body)
            )
        ):
            return
        env.stats.messages_received += 1
        env.stats.publish_received += 1
        self.conn.published = True
        ex = env.topology.exchanges.get(m.exchange)
        if ex is None:
            self.fail(AMQPError(NOT_FOUND, f"no exchange '{m.exchange}' in vhost '/'", 60, 40))
            return
        if ex.internal:
            self.fail(
                AMQPError(
                    ACCESS_REFUSED,
                    f"cannot publish to internal exchange '{m.exchange}' in vhost '/'",
                    60,
                    40,
                )
            )
            return
        bucket = self.conn.publish_bucket
        if bucket is not None and not bucket.take(env.clock()):
            self._over_publish_rate()
            return
        message = to_message(
            h.properties, h.raw, body, m.exchange, m.routing_key, env.clock(), self.conn.id
        )
        if env.context.hooks is not None:
            m = access.apply_hook(self, m, message)
        if self.tx:
            self._tx_pub.append((m, h, body, message))
            return
        futures = self._route(m, h, body, message)
        if self.confirm:
            self.confirm_seq += 1
            self._track(self.confirm_seq, futures)

    def _over_publish_rate(self) -> None:
        """``[rate_limit] publish_rate`` exceeded: under confirms the publish is
        nacked (the channel stays usable, the client may retry); without confirms the
        client cannot be told per message, so the channel is closed with 406
        PRECONDITION_FAILED rather than dropping silently."""
        stats = self.env.stats
        stats.messages_dropped += 1
        stats.rate_limited_publishes += 1
        if self.confirm:
            self.confirm_seq += 1
            self._confirmed(self.confirm_seq, False)
            return
        self.fail(AMQPError(PRECONDITION_FAILED, "publish rate limit exceeded", 60, 40))

    def _over_subscribe_rate(self, ids: tuple[int, int]) -> None:
        """``[rate_limit] subscribe_rate``: basic.consume / queue.bind refused with a
        channel close 406 PRECONDITION_FAILED."""
        bucket = self.conn.subscribe_bucket
        if bucket is not None and not bucket.take(self.env.clock()):
            self.env.stats.rate_limited_subscribes += 1
            raise AMQPError(PRECONDITION_FAILED, "subscribe rate limit exceeded", *ids)

    def _route(self, m: B.Publish, h: Header, body: bytes, message: Message) -> list[Any]:
        env = self.env
        ex = env.topology.exchanges.get(m.exchange)
        if ex is None:
            return []
        routed, futures = env.publish(ex, m.routing_key, message, h.properties.headers)
        if not routed and m.mandatory:
            frame = encode_method(
                self.number,
                B.Return(
                    reply_code=NO_ROUTE,
                    reply_text="NO_ROUTE",
                    exchange=m.exchange,
                    routing_key=m.routing_key,
                ),
            )
            self.conn.out += encode_content(self.number, frame, h.raw, body, self.conn.frame_max)
        return futures

    # --- confirms ---------------------------------------------------------------------

    def _confirm_select(self, m: Any) -> None:
        if self.tx:
            raise AMQPError(PRECONDITION_FAILED, "cannot switch from tx to confirm mode", 85, 10)
        self.confirm = True
        if not m.nowait:
            self.conn.send(self.number, commands.Confirm.SelectOk())

    def _track(self, seq: int, futures: list[Any]) -> None:
        if not futures:
            self._confirmed(seq, True)
            return
        if len(futures) == 1:

            def single(f: Any) -> None:
                self._confirmed(seq, not f.cancelled() and f.exception() is None, defer=True)
                self.conn.wakeup(self.conn)

            futures[0].add_done_callback(single)
            return
        left = [len(futures), True]

        def one(f: Any) -> None:
            if f.cancelled() or f.exception() is not None:
                left[1] = False
            left[0] -= 1
            if left[0] == 0:
                self._confirmed(seq, bool(left[1]), defer=True)
                self.conn.wakeup(self.conn)

        for f in futures:
            f.add_done_callback(one)

    def _confirmed(self, seq: int, ok: bool, defer: bool = False) -> None:
        """One publish settled: nack at once; acks go out in order, coalesced into
        one ``multiple`` ack when several became contiguous. ``defer`` (settled by an
        append future): the ack is held until the connection is next written, so the
        futures one group commit resolves in one loop tick make one ack frame."""
        if self.closing or self.conn.channels.get(self.number) is not self:
            return
        send = self.conn.send
        if not ok:
            self.send_held_acks()
            send(self.number, B.Nack(delivery_tag=seq, multiple=False, requeue=False))
            self._nacked.add(seq)
        done = self._confirm_done
        done.add(seq)
        start = low = self._confirm_low
        while low in done:
            done.discard(low)
            low += 1
        if low == start:
            return
        self._confirm_low = low
        nacked = self._nacked
        if not nacked:
            if not self.acks_held:
                self._ack_from = start
                if defer:
                    self.conn.acks_held.append(self)
            self.acks_held = low - 1
            if not defer:
                self.send_held_acks()
            return
        self.send_held_acks()
        for t in range(start, low):
            if t in nacked:
                nacked.discard(t)
            else:
                send(self.number, B.Ack(delivery_tag=t, multiple=False))

    def send_held_acks(self) -> None:
        """Send the acks :meth:`_confirmed` held back, as one ``multiple`` ack (the
        adapter calls this before it writes the connection's output)."""
        upto = self.acks_held
        if upto:
            self.acks_held = 0
            if self.closing or self.conn.channels.get(self.number) is not self:
                return
            self.conn.send(self.number, B.Ack(delivery_tag=upto, multiple=upto > self._ack_from))

    # --- tx -------------------------------------------------------------------------------

    def _tx_select(self, m: Any) -> None:
        if self.confirm:
            raise AMQPError(PRECONDITION_FAILED, "cannot switch from confirm to tx mode", 90, 10)
        self.tx = True
        self.conn.send(self.number, commands.Tx.SelectOk())

    def _tx_commit(self, m: Any) -> None:
        if not self.tx:
            raise AMQPError(PRECONDITION_FAILED, "channel is not transactional", 90, 20)
        pubs, self._tx_pub = self._tx_pub, []
        settles, self._tx_settle = self._tx_settle, []
        # All or nothing for what a queue would refuse at once: checked before
        # anything is appended or settled.
        refused = self.env.tx_refusal(pubs)
        if refused:
            raise AMQPError(PRECONDITION_FAILED, f"tx.commit refused: {refused}", 90, 20)
        futures: list[Any] = []
        for pm, h, body, message in pubs:
            futures.extend(self._route(pm, h, body, message))
        self.conn.waiting = CommitWait(self, tuple(futures), tuple(settles))

    def commit_done(self, error: str, settles: tuple[tuple[Any, ...], ...]) -> None:
        """The adapter's answer to a ``CommitWait``. Every append durable (``error``
        empty): the buffered acks are applied, then commit-ok. Otherwise the channel
        closes with 541 INTERNAL_ERROR and the acks are not applied (the deliveries
        are requeued with the channel)."""
        if self.closing or self.conn.channels.get(self.number) is not self:
            return
        try:
            if error:
                raise AMQPError(INTERNAL_ERROR, f"tx.commit failed: {error}", 90, 20)
            for kind, tag, multiple, requeue in settles:
                self._settle(kind, tag, multiple, requeue, (90, 20))
        except AMQPError as exc:
            if exc.hard and exc.reply_code != INTERNAL_ERROR:
                raise
            self.fail(exc)
            return
        self.conn.send(self.number, commands.Tx.CommitOk())

    def _tx_rollback(self, m: Any) -> None:
        if not self.tx:
            raise AMQPError(PRECONDITION_FAILED, "channel is not transactional", 90, 30)
        self._tx_pub.clear()
        self._tx_settle.clear()
        self.conn.send(self.number, commands.Tx.RollbackOk())


def _ids(m: Any) -> tuple[int, int]:
    index = getattr(m, "index", 0) or 0
    return index >> 16, index & 0xFFFF


_HANDLERS: dict[type, Any] = {
    commands.Channel.Close: Channel._close,
    commands.Channel.Open: Channel._channel_open,
    commands.Channel.Flow: Channel._flow,
    X.Declare: Channel._exchange_declare,
    X.Delete: Channel._exchange_delete,
    X.Bind: Channel._exchange_bind,
    X.Unbind: Channel._exchange_unbind,
    Q.Declare: Channel._queue_declare,
    Q.Bind: Channel._queue_bind,
    Q.Unbind: Channel._queue_unbind,
    Q.Purge: Channel._queue_purge,
    Q.Delete: Channel._queue_delete,
    B.Qos: Channel._qos,
    B.Consume: Channel._consume,
    B.Cancel: Channel._cancel,
    B.Publish: Channel._publish,
    B.Get: Channel._get,
    B.Ack: Channel._ack,
    B.Nack: Channel._nack,
    B.Reject: Channel._reject,
    B.Recover: Channel._recover,
    B.RecoverAsync: Channel._recover,
    commands.Confirm.Select: Channel._confirm_select,
    commands.Tx.Select: Channel._tx_select,
    commands.Tx.Commit: Channel._tx_commit,
    commands.Tx.Rollback: Channel._tx_rollback,
}
