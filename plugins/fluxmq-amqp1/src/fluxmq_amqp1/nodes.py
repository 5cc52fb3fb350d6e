"""What AMQP 1.0 links are bound to on the broker side: the router subscriber of a
topic link (:class:`TopicSub`), the queue consumer of a queue link
(:class:`QueueSub`, its core credit following the link credit), a browser
(:class:`Browser`), a publish target (:class:`QueueTarget`), a ``$management``
receiver, and open transactions (:class:`Txn`); plus the source-filter parsing and
the names the ACL sees. :mod:`fluxmq_amqp1.server` creates and drives them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fluxmq_amqp1.codec.composites import Accepted, Error, Modified, Rejected, Released
from fluxmq_amqp1.codec.message import decode_message
from fluxmq_amqp1.codec.types import AMQPError, Described
from fluxmq_amqp1.connection import NOT_FOUND, NOT_IMPLEMENTED, Connection
from fluxmq_amqp1.endpoints import Link
from fluxmq_amqp1.mapping import INVALID_FIELD, Address, from_core
from fluxmq_amqp1.selector import Selector, SelectorError, compile_selector, selector_env
from fluxmq_core.queues import (
    InvalidQueueNameError,
    MessageTooLargeError,
    QueueError,
    QueueFullError,
    UnknownQueueError,
    routing_key,
)
from fluxmq_core.router.topics import (
    TopicError,
    amqp_pattern_to_filter,
    amqp_routing_key_to_topic,
    topic_matches,
    validate_topic_name,
)

if TYPE_CHECKING:
    from fluxmq_amqp1.server import AMQP1Server
    from fluxmq_core.message import Message

__all__ = [
    "COORDINATOR",
    "DEFAULT_GROUP",
    "DYNAMIC_PREFIX",
    "TXN_ROLLBACK",
    "TXN_UNKNOWN",
    "UNAUTHORIZED",
    "Browser",
    "MgmtReceiver",
    "QueueSub",
    "QueueTarget",
    "TopicSub",
    "Txn",
    "TxnCoordinator",
    "acl_topic",
    "queue_error",
    "queue_predicate",
    "selects",
    "source_filters",
]

log = logging.getLogger("fluxmq.amqp1")

DEFAULT_GROUP = "default"
RESOURCE_LIMIT = "amqp:resource-limit-exceeded"
UNAUTHORIZED = "amqp:unauthorized-access"
TXN_UNKNOWN = "amqp:transaction:unknown-id"
TXN_ROLLBACK = "amqp:transaction:rollback"
#: The consumer a classic queue's pending entry has once it is being dead-lettered.
DEAD_MARK = "$dlq"
#: Longest a drain on a queue link waits for the queue's dispatcher (seconds).
DRAIN_WAIT = 1.0
#: Queue names of dynamic nodes (never created by a plain attach).
DYNAMIC_PREFIX = "amq.dyn-"


def queue_error(exc: QueueError) -> Error:
    if isinstance(exc, UnknownQueueError):
        return Error(NOT_FOUND, str(exc))
    if isinstance(exc, QueueFullError | MessageTooLargeError):
        return Error(RESOURCE_LIMIT, str(exc))
    if isinstance(exc, InvalidQueueNameError):
        return Error(INVALID_FIELD, str(exc))
    return Error("amqp:precondition-failed", str(exc))


#: The legacy AMQP binding filters (Apache's filter registry): descriptor -> kind.
_BINDINGS: dict[Any, str] = {
    "apache.org:legacy-amqp-direct-binding:string": "direct",
    0x0000468C00000000: "direct",
    "apache.org:legacy-amqp-topic-binding:string": "topic",
    0x0000468C00000001: "topic",
}


_SELECTORS = ("apache.org:selector-filter:string", 0x0000468C00000004)


def source_filters(
    filters: dict[Any, Any] | None, addr: Address
) -> tuple[str | None, Selector | None]:
    """A source's filters: (a legacy binding in MQTT form, a JMS selector). On a
    queue the binding is the consumer group's routing-key filter; on the topic
    exchange named without a key (``/exchanges/amq.topic``) it is the topic filter
    subscribed, and required. Anything else is refused with amqp:not-implemented, a
    bad one with amqp:invalid-field."""
    exchange = addr.kind == "topic" and not addr.name
    if not filters:
        if exchange:
            raise AMQPError(INVALID_FIELD, _NO_KEY.format(addr.text))
        return None, None
    binding = None
    selector = None
    for key, value in filters.items():
        descriptor = value.descriptor if isinstance(value, Described) else None
        text = value.value if isinstance(value, Described) else None
        if descriptor in _SELECTORS and isinstance(text, str):
            if addr.kind not in ("topic", "queue"):
                raise AMQPError(NOT_IMPLEMENTED, f"a selector on {addr.kind} is not supported")
            try:
                selector = compile_selector(text)
            except SelectorError as exc:
                raise AMQPError(INVALID_FIELD, f"selector {text!r}: {exc}") from None
            continue
        kind = _BINDINGS.get(descriptor) if descriptor is not None else None
        if kind is not None and addr.kind == "topic" and not exchange:
            raise AMQPError(
                INVALID_FIELD,
                f"source filter {descriptor}: the address {addr.text!r} already names the "
                "topic; bind on /exchanges/amq.topic (no routing key) instead",
            )
        if kind is None or addr.kind not in ("queue", "topic") or not isinstance(text, str):
            raise AMQPError(
                NOT_IMPLEMENTED, f"source filter {descriptor or key} is not implemented yet"
            )
        if binding is not None or addr.pattern:
            raise AMQPError(INVALID_FIELD, "one routing-key filter per queue source")
        try:
            if kind == "topic":
                binding = amqp_pattern_to_filter(text)
            else:
                binding = amqp_routing_key_to_topic(text)
                validate_topic_name(binding)
        except TopicError as exc:
            raise AMQPError(INVALID_FIELD, f"source filter {key}: {exc}") from None
    if exchange:
        if binding is None:
            raise AMQPError(INVALID_FIELD, _NO_KEY.format(addr.text))
        addr.name = binding
    return binding, selector


_NO_KEY = (
    "a receiver on {!r} needs a routing key: "
    "/exchanges/amq.topic/<key> or an apache.org:legacy-amqp-topic-binding filter"
)


def selects(selector: Selector, message: Message, now: float) -> bool:
    """Whether a JMS selector picks a core message (as an AMQP 1.0 receiver would
    get it); a message that does not decode is not selected."""
    try:
        env = selector_env(decode_message(from_core(message, now)))
    except AMQPError:
        return False
    return selector.matches(env)


def queue_predicate(selector: Selector, clock: Callable[[], float]) -> Callable[[Message], bool]:
    """The core queue consumer's predicate for a selector on a queue source: the
    queue's dispatcher evaluates it, so messages this link declines stay in the
    queue for the group's other consumers."""

    def accepts(message: Message) -> bool:
        return selects(selector, message, clock())

    return accepts


def acl_topic(addr: Address) -> str:
    """The topic the ACL sees for an address: the topic (filter) itself,
    ``$queue/<name>[/<pattern>]`` for a queue (as MQTT clients name it), or
    ``$management``."""
    if addr.kind in ("topic", "management"):
        return addr.name
    return f"$queue/{addr.name}" + (f"/{addr.pattern}" if addr.pattern else "")


class TopicSub:
    """A receiver link on a topic: the router's subscriber."""

    __slots__ = ("conn", "link", "filter", "client_id", "protocol", "server", "selector")

    def __init__(self, server: AMQP1Server, conn: Connection, link: Link, topic_filter: str):
        self.server = server
        self.conn = conn
        self.link = link
        self.filter = topic_filter
        self.client_id = conn.container_id or conn.id
        self.protocol = "amqp1"
        #: a JMS selector from the source's filter: only matching messages are sent
        self.selector: Selector | None = None

    def deliver(self, message: Message, delivery: Any) -> None:
        link = self.link
        server = self.server
        auth = server.context.auth
        if auth.filter_reads and not auth.may_read(
            self.client_id, self.conn.username, message.topic
        ):
            # [auth] acl_subscribe = "filter": a wildcard link gets only what it may read
            server.stats.messages_dropped += 1
            return
        if len(link.held) >= server.cfg.max_held:
            link.held.popleft()
            link.dropped += 1
            server.stats.messages_dropped += 1
        payload = from_core(message, server.clock())
        if self.selector is not None:
            try:
                env = selector_env(decode_message(payload))
            except AMQPError:
                return
            if not self.selector.matches(env):
                return
        if self.conn.send(link, payload, None):
            server.stats.messages_sent += 1
            server.messages_out += 1
            events = server.context.events
            if events.on_delivered:  # a flag check unless something wants the event
                events.message_delivered(message, "amqp1", self.client_id)

    def close(self) -> None:
        self.server.context.router.unsubscribe(self, self.filter)


class QueueSub:
    """A receiver link on a core queue: the queue manager's consumer. Its core
    credit follows the link credit: unsettled deliveries plus the credit left."""

    __slots__ = (
        "conn",
        "link",
        "queue",
        "group",
        "handle",
        "client_id",
        "protocol",
        "server",
        "temporary",
        "drainer",
        "filter",
    )

    def __init__(self, server: AMQP1Server, conn: Connection, link: Link, queue: str, group: str):
        self.server = server
        #: what it consumes as a topic filter (``$queue/<name>[/<pattern>]``), as
        #: subscription events name it
        self.filter = f"$queue/{queue}"
        #: a dynamic node: the queue is deleted with the link
        self.temporary = False
        self.conn = conn
        self.link = link
        self.queue = queue
        self.group = group
        self.handle: Any = None
        self.client_id = conn.container_id or conn.id
        self.protocol = "amqp1"
        self.drainer: asyncio.Task[None] | None = None

    def deliver(self, message: Message, delivery: Any) -> None:
        props = message.properties or {}
        token = props.get("message-id")
        server = self.server
        payload = from_core(message, server.clock())
        if self.conn.send(self.link, payload, token):
            server.stats.messages_sent += 1
            server.messages_out += 1
            events = server.context.events
            if events.on_delivered:
                events.message_delivered(message, "amqp1", self.client_id)
        self.sync()

    def sync(self) -> None:
        """Core credit = what the peer may still take + what it holds unsettled."""
        h = self.handle
        if h is None or h.closed:
            return
        link = self.link
        room = link.credit - len(link.held)
        want = len(h.inflight) + max(0, room)
        if room <= 0 or self.conn.paused:
            if not h.paused:
                h.pause()
        else:
            if h.credit != want:
                h.set_credit(want)
            if h.paused:
                h.resume()

    def drain(self) -> None:
        """A drain on this link: the queue's dispatcher first delivers what is ready
        for the new credit (it runs as its own task), then the rest is drained."""
        self.link.drain_wait = True
        if self.drainer is None or self.drainer.done():
            self.drainer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_WAIT
        try:
            await asyncio.sleep(0)
            while True:
                h = self.handle
                if h is None or h.closed or h.idle or loop.time() >= deadline:
                    break
                await asyncio.sleep(0.001)
        finally:
            self.conn.finish_drain(self.link)
            self.sync()

    def settle(self, token: Any, state: Any) -> None:
        if not isinstance(token, str):
            return
        queues = self.server.context.queues
        try:
            if state is None or isinstance(state, Accepted):
                queues.ack(token, self.group)
            elif isinstance(state, Rejected):
                queues.reject(token, self.group)
            elif isinstance(state, Released):
                # not a delivery attempt: the count stays, max_deliveries is not spent
                queues.nack(token, self.group, requeue=True, delay=0, count=False)
            elif isinstance(state, Modified):
                # delivery-failed counts (and backs off); undeliverable-here steers the
                # redelivery to another consumer of the group while one exists
                failed = bool(state.delivery_failed)
                queues.nack(
                    token,
                    self.group,
                    requeue=True,
                    delay=None if failed else 0,
                    count=failed,
                    elsewhere=bool(state.undeliverable_here),
                )
        except QueueError as exc:
            log.info("%s: settling %s: %s", self.conn, token, exc)

    def close(self) -> None:
        queues = self.server.context.queues
        if self.drainer is not None:
            self.drainer.cancel()
            self.drainer = None
        if self.handle is not None:
            queues.cancel(self.handle)
            self.handle = None
        if self.temporary:
            self.temporary = False
            if queues.delete(self.queue):
                self.server.queue_deleted(self.queue)


class Browser:
    """A receiver link with ``distribution-mode = copy`` on a queue: the messages in
    the queue when it attached, read from the head without consuming them (for a
    classic queue, what its consumer group has not settled: waiting redeliveries
    and the unread part; for a stream, every retained record), sent settled as
    credit allows. A routing-key filter (the address after ``$queue/<name>/``, or a
    legacy binding filter) and a JMS selector copy only what they match."""

    __slots__ = (
        "server",
        "conn",
        "link",
        "queue",
        "group",
        "task",
        "more",
        "selector",
        "pattern",
    )

    def __init__(self, server: AMQP1Server, conn: Connection, link: Link, queue: Any, group: str):
        #: a JMS selector from the source's filter: only matching messages are copied
        self.selector: Selector | None = None
        #: an MQTT filter over the routing key: only matching messages are copied
        self.pattern = ""
        self.server = server
        self.conn = conn
        self.link = link
        self.queue = queue
        self.group = group
        self.task: asyncio.Task[None] | None = None
        self.more = asyncio.Event()

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    def close(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self.task = None

    def _snapshot(self) -> tuple[list[int], int, int]:
        """(unsettled offsets below the read position, read position, end)."""
        q = self.queue
        log_ = q.log
        end = log_.next_offset(q.name)
        first = log_.first_offset(q.name)
        g = q.groups.get(self.group)
        if g is None or q.is_stream:
            return [], first, end
        pel = getattr(g, "pel", {})
        below = sorted(
            off
            for off, p in pel.items()
            if getattr(p, "consumer", "") != DEAD_MARK and off >= first
        )
        return below, max(first, int(g.cursor)), end

    def _selected(self, message: Message) -> bool:
        pattern = self.pattern
        if pattern and not topic_matches(pattern, routing_key(self.queue.name, message.topic)):
            return False
        sel = self.selector
        return sel is None or selects(sel, message, self.server.clock())

    async def _wait_credit(self) -> bool:
        link = self.link
        while link.credit - len(link.held) <= 0:
            if link.detached or link.session.ended:
                return False
            self.more.clear()
            await self.more.wait()
        return not (link.detached or link.session.ended)

    async def _send(self, offset: int) -> bool:
        if not await self._wait_credit():
            return False
        q = self.queue
        rows = await q.log.read(q.name, offset, 1)
        if rows and rows[0][0] == offset and self._selected(rows[0][1]):
            payload = from_core(rows[0][1], self.server.clock())
            if not self.conn.send(self.link, payload, None):
                return False
            self.server.stats.messages_sent += 1
            self.server.messages_out += 1
        return True

    async def _run(self) -> None:
        try:
            below, start, end = self._snapshot()
            for offset in below:
                if offset < start and not await self._send(offset):
                    return
            offset = start
            while offset < end:
                if not await self._wait_credit():
                    return
                q = self.queue
                want = min(end - offset, max(1, self.link.credit - len(self.link.held)))
                rows = await q.log.read(q.name, offset, want)
                if not rows:
                    return
                for off, message in rows:
                    if off >= end:
                        return
                    if not self._selected(message):
                        continue
                    if not self.conn.send(self.link, from_core(message, self.server.clock()), None):
                        return
                    self.server.stats.messages_sent += 1
                    self.server.messages_out += 1
                offset = rows[-1][0] + 1
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: browsing %s failed", self.conn, self.queue.name)


class QueueTarget:
    """A sender link to a core queue (or a topic, when ``queue`` is None).
    ``temporary``: a dynamic node, deleted with the link."""

    __slots__ = ("topic", "queue", "temporary")

    def __init__(self, topic: str, queue: str | None) -> None:
        self.topic = topic
        self.queue = queue
        self.temporary = False


class Txn:
    """An open transaction: publishes and receivers' outcomes buffered until the
    discharge applies them all (commit) or none (rollback)."""

    __slots__ = ("id", "publishes", "settles")

    def __init__(self, txn_id: bytes) -> None:
        self.id = txn_id
        self.publishes: list[tuple[QueueTarget, Message]] = []
        self.settles: list[tuple[QueueSub, Any, Any]] = []


class MgmtReceiver:
    """A receiver link on ``$management``: responses to requests of the same
    connection whose reply-to is its target address (or its link name) are sent on it."""

    __slots__ = ("conn", "link", "keys")

    def __init__(self, conn: Connection, link: Link, keys: list[str]) -> None:
        self.conn = conn
        self.link = link
        self.keys = keys


class TxnCoordinator:
    """The node of a coordinator link: it takes declare and discharge messages."""

    __slots__ = ()


COORDINATOR = TxnCoordinator()
