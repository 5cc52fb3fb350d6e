"""Small shared vocabulary of the queue manager: consumer handles, the info records
``list()``/``info()`` return, message ids, stream cursors and the delivery metadata.

Delivery metadata (where protocol adapters find it)
===================================================

Every message handed to ``subscriber.deliver(message, delivery)`` by the queue
manager is the subscriber's own copy, and its ``message.properties`` dict holds:

=================== =========================================================
``message-id``      ``"<queue>:<offset>"``: what ``ack``/``nack``/``reject``/``commit`` take
``group-id``        the consumer group
``queue``           the queue name
``offset``          the log offset (int)
``delivery-count``  1 on first delivery, +1 per redelivery (int)
``x-source-topic``  the original topic of a captured publish (capture only)
``x-stream-offset`` / ``x-stream-timestamp``   stream deliveries only
=================== =========================================================

``message.topic`` is the topic the message was appended with (``$queue/<q>/<key>``
for queue publishes, the original topic for captured ones). MQTT 5 adds these as
user properties, AMQP as headers; the keys are the Go FluxMQ's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fluxmq_core.queues.config import DLQ_PREFIX, QueueError

if TYPE_CHECKING:
    from fluxmq_core.message import Message
    from fluxmq_core.queues.group import Group
    from fluxmq_core.router.types import Subscriber

log = logging.getLogger("fluxmq.queues")

#: Topics under these prefixes name a queue, not router subscribers: a publish to
#: ``$queue/<name>/<routing-key>`` appends to queue ``<name>`` (``$dlq/<name>/...``
#: to an existing dead-letter queue), whichever protocol it came from.
QUEUE_TOPIC_PREFIX = "$queue/"
QUEUE_TOPIC_PREFIXES = (QUEUE_TOPIC_PREFIX, DLQ_PREFIX)
#: Topic levels that settle a delivery instead of naming a routing key (the MQTT
#: face's control topics ``$queue/<name>/.../$ack``).
CONTROL_VERBS = frozenset(("$ack", "$nack", "$reject", "$commit"))

#: What ``consume(..., cursor=...)`` accepts for streams.
CursorSpec = str | int | float | None


class Consumer:
    """A consumer handle returned by ``QueueManager.consume``; pass it to ``cancel``.

    ``credit`` is how many deliveries may be unsettled on this consumer at once
    (classic: unacknowledged; stream: uncommitted); 0 means unlimited. Change it
    with :meth:`set_credit` (AMQP 1.0 link credit, MQTT receive maximum).

    :meth:`pause` stops deliveries to this consumer without cancelling it (its
    unsettled deliveries stay its own and can still be settled); :meth:`resume`
    starts them again. Protocol adapters use it for flow control (AMQP
    ``channel.flow``, a transport that stopped writing). ``closed`` is true once the
    consumer was cancelled or its queue or group went away.

    ``predicate`` (classic queues) is a per-consumer filter, such as a JMS selector:
    the dispatcher gives this consumer only messages for which it returns true;
    messages it declines stay in the queue for the group's other consumers (see
    :mod:`fluxmq_core.queues.classic`). It must be a pure function of the message
    (its verdicts are cached per pending message); an exception counts as false.
    """

    __slots__ = (
        "_group",
        "active",
        "auto_commit",
        "credit",
        "group",
        "id",
        "inflight",
        "paused",
        "predicate",
        "queue",
        "subscriber",
    )

    def __init__(
        self, group: Group, subscriber: Subscriber, cid: str, credit: int, auto_commit: bool
    ) -> None:
        self._group = group
        self.queue = group.queue.name
        self.group = group.name
        self.subscriber = subscriber
        self.id = cid
        self.credit = credit
        self.auto_commit = auto_commit
        self.inflight: set[int] = set()
        self.active = True
        self.paused = False
        self.predicate: Callable[[Message], bool] | None = None

    @property
    def filter(self) -> str | None:
        return self._group.filter

    @property
    def closed(self) -> bool:
        """True once cancelled, or when its group or queue was closed or deleted."""
        return not self.active or self._group.closed

    @property
    def idle(self) -> bool:
        """True while the group's dispatcher has nothing to do (no wake pending, not
        running): a caller polling for a delivery (AMQP ``basic.get``) stops there."""
        return self._group.idle

    def has_credit(self) -> bool:
        return (
            self.active
            and not self.paused
            and (self.credit <= 0 or len(self.inflight) < self.credit)
        )

    def accepts(self, message: Message) -> bool:
        """Whether :attr:`predicate` takes ``message`` (no predicate: always)."""
        pred = self.predicate
        if pred is None:
            return True
        try:
            return bool(pred(message))
        except Exception:
            log.exception("queue %s consumer %s: predicate failed", self.queue, self.id)
            return False

    def set_credit(self, credit: int) -> None:
        """Change the window; more room wakes the group's dispatcher."""
        self.credit = int(credit)
        self._group.wake()

    def pause(self) -> None:
        """Stop deliveries to this consumer (it stays registered)."""
        self.paused = True

    def resume(self) -> None:
        """Deliver again after :meth:`pause`; wakes the group's dispatcher."""
        if self.paused:
            self.paused = False
            self._group.wake()

    def __repr__(self) -> str:
        return (
            f"Consumer({self.queue!r}, group={self.group!r}, id={self.id!r}, "
            f"inflight={len(self.inflight)}{', paused' if self.paused else ''})"
        )


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """One consumer group of a queue: ``lag`` counts messages after its committed
    offset, ``pending`` its unsettled deliveries (PEL for classic, uncommitted for
    stream), ``cursor`` the next offset it will deliver."""

    name: str
    consumers: int
    pending: int
    lag: int
    committed: int | None
    cursor: int
    filter: str | None = None


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """What ``QueueManager.list()`` and ``info()`` report about a queue."""

    name: str
    type: str
    depth: int
    bytes: int
    first_offset: int
    next_offset: int
    consumers: int
    groups: list[GroupInfo] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)


def split_message_id(message_id: object) -> tuple[str, int] | None:
    """``"<queue>:<offset>"`` -> ``(queue, offset)``, None for anything else: the
    non-raising form for loops over many ids (``QueueManager.ack_many``). The offset
    must be ASCII digits (``str.isdigit`` also accepts digits ``int`` refuses)."""
    if isinstance(message_id, str):
        queue, sep, off = message_id.rpartition(":")
        if sep and queue and off.isdigit() and off.isascii():
            return queue, int(off)
    return None


def parse_message_id(message_id: object) -> tuple[str, int]:
    """``"<queue>:<offset>"`` -> ``(queue, offset)``; :class:`QueueError` otherwise
    (anything else, so a header read from a client can be passed as it is)."""
    parsed = split_message_id(message_id)
    if parsed is None:
        raise QueueError(f"malformed message id {message_id!r}: expected '<queue>:<offset>'")
    return parsed


def parse_cursor(cursor: Any) -> tuple[str, float | int | None]:
    """Normalise a stream cursor to ``(kind, value)``.

    Accepted: ``"first"``/``"earliest"``, ``"last"``/``"latest"``/``"next"`` (only
    messages appended from now on), an ``int`` offset, a ``float`` broker-clock
    timestamp, or the strings ``"offset:N"`` / ``"timestamp:T"`` (what adapters
    get from headers). ``None`` means "resume": the committed offset, else ``last``.
    """
    if cursor is None:
        return "resume", None
    if isinstance(cursor, bool):
        raise QueueError(f"invalid stream cursor {cursor!r}")
    if isinstance(cursor, int):
        if cursor < 0:
            raise QueueError(f"invalid stream cursor {cursor!r}: offsets are >= 0")
        return "offset", cursor
    if isinstance(cursor, float):
        return "timestamp", cursor
    if isinstance(cursor, str):
        low = cursor.strip().lower()
        if low in ("first", "earliest"):
            return "first", None
        if low in ("last", "latest", "next"):
            return "last", None
        kind, _, value = low.partition(":")
        try:
            if kind == "offset" and int(value) >= 0:
                return "offset", int(value)
            if kind == "timestamp":
                return "timestamp", float(value)
        except ValueError:
            pass
    raise QueueError(
        f"invalid stream cursor {cursor!r}: use first, last, an offset, a timestamp, "
        "'offset:N' or 'timestamp:T'"
    )


def is_queue_topic(topic: str) -> bool:
    """True for ``$queue/...`` and ``$dlq/...`` topics and filters."""
    return topic.startswith(QUEUE_TOPIC_PREFIXES)


def split_queue_topic(topic: str) -> tuple[str, str]:
    """``(queue name, rest)`` of a ``$queue/<name>/<rest>`` or ``$dlq/<name>/<rest>``
    topic (the dead-letter queue's name keeps its ``$dlq/`` prefix)."""
    if topic.startswith(QUEUE_TOPIC_PREFIX):
        name, _, rest = topic[len(QUEUE_TOPIC_PREFIX) :].partition("/")
        return name, rest
    name, _, rest = topic[len(DLQ_PREFIX) :].partition("/")
    return DLQ_PREFIX + name, rest


def routing_key(queue: str, topic: str) -> str:
    """The part of ``topic`` a consumer filter is matched against: what follows
    ``$queue/<queue>/`` for queue publishes, the whole topic for captured ones."""
    prefix = f"{QUEUE_TOPIC_PREFIX}{queue}"
    if topic.startswith(prefix):
        rest = topic[len(prefix) :]
        if not rest:
            return ""
        if rest[0] == "/":
            return rest[1:]
    return topic


def decorate(
    message: Message, queue: str, group: str, offset: int, count: int, *, stream: bool = False
) -> Message:
    """Add the delivery metadata (see the module docstring) to ``message``, which
    must be a private copy (the QueueLog returns copies from ``read``): its
    properties dict is updated in place."""
    props = message.properties
    if props is None:
        props = {}
    props["message-id"] = f"{queue}:{offset}"
    props["group-id"] = group
    props["queue"] = queue
    props["offset"] = offset
    props["delivery-count"] = count
    if stream:
        props["x-stream-offset"] = offset
        props["x-stream-timestamp"] = message.timestamp
    message.properties = props
    message.encoded = None
    return message
