"""What classic and stream consumer groups share: membership, the group filter,
round-robin picking that honours each consumer's credit, and the dispatcher task.

One dispatcher task per group that has consumers. It sleeps on an event and is woken
by appends, settlements, credit changes and the sweep; each wake runs one
``_dispatch`` pass that reads from the QueueLog (reads are async) and calls
``subscriber.deliver``. Settlement calls (``ack``...) are plain functions that
change the group's state and wake the task; the task re-checks its state after
every ``await``, since settlements may land in between.

What it does not hold: the semantics of either type (``classic.py``, ``stream.py``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from fluxmq_core.queues.config import QueueError
from fluxmq_core.queues.types import Consumer, GroupInfo, routing_key
from fluxmq_core.router.topics import TopicError, topic_matches, validate_topic_filter
from fluxmq_core.router.types import Delivery

if TYPE_CHECKING:
    from fluxmq_core.message import Message
    from fluxmq_core.queues.manager import Queue, QueueManager
    from fluxmq_core.router.types import Subscriber

log = logging.getLogger("fluxmq.queues")

#: Most records one dispatch read asks the log for.
READ_BATCH = 256


class Group:
    """A consumer group of one queue (abstract: see ClassicGroup, StreamGroup)."""

    kind = ""

    def __init__(
        self, manager: QueueManager, queue: Queue, name: str, cursor: int, committed: int | None
    ) -> None:
        self.manager = manager
        self.queue = queue
        self.name = name
        #: The next offset this group will dispatch.
        self.cursor = cursor
        #: The committed offset as last written to the QueueLog.
        self.committed = committed
        self.consumers: list[Consumer] = []
        self.filter: str | None = None
        self._rr = 0
        self._seq = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._running = False
        self.closed = False

    # --- membership -------------------------------------------------------------

    def add_consumer(
        self, subscriber: Subscriber, filter: str | None, credit: int, auto_commit: bool
    ) -> Consumer:
        if filter in ("", "#"):
            filter = None
        if filter is not None:
            try:
                validate_topic_filter(filter)
            except TopicError as exc:
                raise QueueError(f"invalid consumer filter {filter!r}: {exc}") from None
        if self.consumers and filter != self.filter:
            raise QueueError(
                f"group {self.name!r} of queue {self.queue.name!r} consumes with filter "
                f"{self.filter or '#'!r}; a consumer with filter {filter or '#'!r} needs its own group"
            )
        self.filter = filter
        self._seq += 1
        cid = f"{getattr(subscriber, 'client_id', '') or 'consumer'}#{self._seq}"
        consumer = Consumer(self, subscriber, cid, int(credit), bool(auto_commit))
        self.consumers.append(consumer)
        self._ensure_task()
        self.wake()
        return consumer

    def remove_consumer(self, consumer: Consumer) -> None:
        consumer.active = False
        if consumer in self.consumers:
            self.consumers.remove(consumer)
        self.wake()

    def by_id(self, cid: str) -> Consumer | None:
        for c in self.consumers:
            if c.id == cid:
                return c
        return None

    def pick(self) -> Consumer | None:
        """The next consumer in round-robin order that has credit, or None."""
        consumers = self.consumers
        n = len(consumers)
        for i in range(n):
            c = consumers[(self._rr + i) % n]
            if c.has_credit():
                self._rr = (self._rr + i + 1) % n
                return c
        return None

    def pick_accepting(self, message: Message) -> tuple[Consumer | None, bool]:
        """For groups with predicates and no pending list (streams): the next
        consumer in round-robin order with credit that accepts ``message``, and
        whether any consumer of the group accepts it at all (credit or not)."""
        consumers = self.consumers
        n = len(consumers)
        wanted = False
        for i in range(n):
            c = consumers[(self._rr + i) % n]
            if not c.active or not c.accepts(message):
                continue
            if c.has_credit():
                self._rr = (self._rr + i + 1) % n
                return c, True
            wanted = True
        return None, wanted

    @property
    def selective(self) -> bool:
        """True when some consumer has a per-consumer predicate (a selector)."""
        return any(c.predicate is not None for c in self.consumers)

    def room(self) -> int:
        """How many more deliveries the consumers can take now (capped)."""
        total = 0
        for c in self.consumers:
            if not c.active or c.paused:
                continue
            if c.credit <= 0:
                return READ_BATCH
            total += max(0, c.credit - len(c.inflight))
        return min(total, READ_BATCH)

    def matches(self, message: Message) -> bool:
        f = self.filter
        return f is None or topic_matches(f, routing_key(self.queue.name, message.topic))

    # --- the dispatcher task ---------------------------------------------------

    def wake(self) -> None:
        if self._task is not None:
            self._wake.set()

    def _ensure_task(self) -> None:
        if self._task is None and not self.closed:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"fluxmq-queue-{self.queue.name}-{self.name}"
            )

    @property
    def idle(self) -> bool:
        return not self._running and not self._wake.is_set()

    async def _run(self) -> None:
        while not self.closed:
            await self._wake.wait()
            self._wake.clear()
            self._running = True
            try:
                await self.dispatch()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("queue %s group %s: dispatch failed", self.queue.name, self.name)
            finally:
                self._running = False

    def close(self) -> asyncio.Task[None] | None:
        """Stop the dispatcher (cancelled; the caller may await the task)."""
        self.closed = True
        for c in self.consumers:
            c.active = False
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        return task

    # --- to be provided ---------------------------------------------------------

    async def dispatch(self) -> None:
        raise NotImplementedError

    def pending_count(self) -> int:
        raise NotImplementedError

    def sweep(self, now: float) -> int:
        """Time-driven work at ``now`` (visibility timeouts, retries, auto-commit);
        returns how many entries it moved."""
        raise NotImplementedError

    def pel_low(self) -> int | None:
        """The lowest offset delivered and not yet settled, which retention must
        keep; None when nothing is pending (or the group keeps no pending list)."""
        return None

    def skip_to(self, offset: int) -> None:
        """Records below ``offset`` are gone (retention, purge, drop-oldest, DLQ):
        never dispatch them."""
        raise NotImplementedError

    def info(self) -> GroupInfo:
        q = self.queue
        first = q.log.first_offset(q.name)
        nxt = q.log.next_offset(q.name)
        base = first if self.committed is None else max(self.committed, first)
        return GroupInfo(
            name=self.name,
            consumers=len(self.consumers),
            pending=self.pending_count(),
            lag=max(0, nxt - base),
            committed=self.committed,
            cursor=self.cursor,
            filter=self.filter,
        )

    def _deliver_to(self, consumer: Consumer, message: Message, qos: Any) -> None:
        manager = self.manager
        manager.counters["delivered"] += 1
        tracer = getattr(manager.context, "tracer", None)  # set by a tracing plugin
        if tracer is not None:
            tracer.queue_deliver(self.queue.name, self.name, consumer.id, message)
        try:
            consumer.subscriber.deliver(message, Delivery(qos))
        except Exception:
            manager.counters["deliver_failures"] += 1
            log.exception(
                "queue %s group %s: deliver to %s failed (the message stays unsettled)",
                self.queue.name,
                self.name,
                consumer.id,
            )
