"""Classic (work-queue) consumer groups: each message to exactly one consumer of
the group, a pending-entry list (PEL), visibility timeouts, retry backoff, delivery
counts, dead-lettering and work stealing.

Theory of operation
===================

The group walks the log with a cursor. Each delivery creates a PEL entry, kept in
memory (in offset order) and written to the QueueLog with ``pel_add``. An entry is
in one of three states, told apart by its ``consumer`` field:

* ``"<consumer id>"``: delivered, waiting for a settlement until ``deadline``
  (the visibility timeout). Past it, the sweep takes it back.
* ``""`` (:data:`WAITING`): to be redelivered once ``deadline`` has passed (a nack,
  a timeout or a retry backoff put it there; work stealing sets the deadline to now).
* ``"$dlq"`` (:data:`DEAD`): to be moved to the dead-letter queue; a failed move
  leaves it here and the sweep retries it. It is never dropped on failure.

``ack`` removes the entry. A redelivery increments ``delivery_count``; when the
count reached ``max_deliveries`` a nack, timeout or steal dead-letters instead. The
group's committed offset is the lowest offset it has not settled
(``min(first PEL offset, cursor)``), so it advances over the acknowledged prefix.

After a restart every PEL entry that belonged to a consumer is due at once (its
consumer is gone): work stealing from the previous process. Messages between the
committed offset and the old cursor that were already acknowledged are delivered
again (at-least-once).

Expiry: a message found expired when its turn comes (dispatch, or the sweep looking
at the group's head without waiting for a consumer) is dead-lettered with reason
``expired`` when the queue has ``dlq_expired`` (a DEAD PEL entry, so the usual
never-lose move applies), otherwise skipped; both count in ``expired``.

Requeue order: due redeliveries wait in a heap keyed by offset, so whatever order
they were given back in (a channel closing, a consumer cancelled, several nacks),
they are redelivered in their original order, and all of them before new messages
(whose offsets are past the cursor): each goes back to its original position, as
RabbitMQ requeues.

Release and steering: ``nack(..., count=False)`` gives a delivery back without
counting it (AMQP 1.0 ``released``: the next delivery has the same count, and
``max_deliveries`` is not spent); ``nack(..., elsewhere=True)`` remembers the
consumer in the entry's ``avoid`` set, and the redelivery skips it while another
consumer of the group would take the message (AMQP 1.0 ``undeliverable-here``).

Per-consumer predicates (``Consumer.predicate``, a selector): a consumer gets only
the messages its predicate accepts. A new message that no consumer with credit
accepts while some consumer has credit is *parked*: a WAITING entry with delivery
count 0, at its place in the ready heap, so the consumers with credit go on with
later messages and the parked one goes to the first consumer that accepts it
(a new consumer, or one with a matching predicate getting credit again). Verdicts
are cached per entry and consumer, so a parked message is read and evaluated once
per consumer. At most :data:`PARKED_LIMIT` ready entries are held: beyond that the
group waits, as it does when no consumer has credit. A dispatch pass looks at every
ready entry no consumer can take now and puts them back after the pass.

Priority (``max_priority`` > 0): the dispatcher scans new records (up to
:data:`PRIORITY_WINDOW` ahead) into a heap of ``(-priority, offset)`` and delivers
from its top, so higher priorities go first and one priority stays FIFO. The
cursor is then the scan position; the committed offset also stays below the lowest
scanned-but-undelivered offset. Redeliveries are keyed ``(-priority, offset)`` too
and merged with that heap: a requeued message goes back to its place within its own
priority, never ahead of a higher priority published later. A PEL entry adopted at
start does not know its priority yet: it is keyed above every priority until its
record is read, then put back at its place. Predicates and steering work in priority groups
as above: a parked message waits in the ready heap at its priority, and an entry
no consumer with credit may take is set aside for the pass. Groups of queues without
``max_priority`` never touch the scan heap.
"""

from __future__ import annotations

import asyncio
import heapq
from collections import deque
from typing import TYPE_CHECKING

from fluxmq_core.queues import dlq
from fluxmq_core.queues.group import READ_BATCH, Group
from fluxmq_core.queues.types import Consumer, decorate

if TYPE_CHECKING:
    from fluxmq_core.message import Message
    from fluxmq_core.queues.manager import Queue, QueueManager
    from fluxmq_core.storage.base import PendingEntry

WAITING = ""
DEAD = "$dlq"

#: Most scanned-but-undelivered records a priority group orders at once.
PRIORITY_WINDOW = 100_000
#: Most ready entries (redeliveries and parked messages) before a group with
#: per-consumer predicates stops parking messages no consumer with credit accepts.
PARKED_LIMIT = 1000

#: What one redelivery attempt tells the dispatch loop.
STOP, AGAIN, SKIP = 0, 1, 2


def priority_of(message: Message, maximum: int) -> int:
    """``properties['priority']`` capped at ``maximum`` (none or invalid: 0)."""
    props = message.properties
    if not props:
        return 0
    p = props.get("priority")
    if isinstance(p, bool) or not isinstance(p, int) or p <= 0:
        return 0
    return p if p < maximum else maximum


class Pending:
    """One PEL entry in memory (mirrors :class:`~fluxmq_core.storage.base.PendingEntry`)."""

    __slots__ = ("avoid", "consumer", "count", "deadline", "offset", "prio", "reason", "verdicts")

    def __init__(self, offset: int, consumer: str, deadline: float, count: int) -> None:
        self.offset = offset
        self.consumer = consumer
        self.deadline = deadline
        self.count = count
        self.reason = ""
        #: The message's priority (priority groups; -1: not read yet, after a restart).
        self.prio = -1
        #: Consumer ids this message must not go back to while others would take it.
        self.avoid: set[str] | None = None
        #: Cached predicate verdicts: consumer id -> accepted.
        self.verdicts: dict[str, bool] | None = None


class ClassicGroup(Group):
    kind = "classic"

    def __init__(
        self, manager: QueueManager, queue: Queue, name: str, cursor: int, committed: int | None
    ) -> None:
        super().__init__(manager, queue, name, cursor, committed)
        self.pel: dict[int, Pending] = {}
        # WAITING entries that are due: a heap of (-priority or 0, offset), so
        # redeliveries keep their original order whatever order they came back in
        self._ready: list[tuple[int, int]] = []
        self._queued: set[int] = set()  # offsets in _ready
        self._dead: deque[int] = deque()  # DEAD entries that are due
        self._dead_queued: set[int] = set()  # offsets in _dead
        # priority groups only: scanned, undelivered records, and the PEL's offsets
        # (the PEL dict is then not in offset order)
        self._heap: list[tuple[int, int]] = []
        self._in_heap: set[int] = set()
        self._scan_order: deque[int] = deque()
        self._pel_heap: list[int] = []
        self._pel_tracked = False

    def load(self, entries: list[PendingEntry], now: float) -> None:
        """Adopt the PEL found in the QueueLog at start: every consumer is gone."""
        for e in entries:
            consumer = e.consumer if e.consumer in (WAITING, DEAD) else WAITING
            deadline = e.deadline if consumer != WAITING or e.consumer == WAITING else now
            p = Pending(e.offset, consumer, deadline, e.delivery_count)
            if consumer == DEAD:
                p.reason = "retry"
            self.pel[e.offset] = p
        self.sweep(now)

    def pending_count(self) -> int:
        return len(self.pel)

    def waiting_count(self) -> int:
        """PEL entries waiting for redelivery (not held by a consumer or the DLQ)."""
        return sum(1 for p in self.pel.values() if p.consumer == WAITING)

    def scanned_count(self) -> int:
        """Priority groups: records scanned past the cursor, not delivered yet."""
        return len(self._in_heap)

    def pel_low(self) -> int | None:
        """The lowest offset in the PEL (None when empty)."""
        if not self.pel:
            return None
        if not self._pel_tracked:
            return next(iter(self.pel))  # insertion order is offset order
        h = self._pel_heap
        while h and h[0] not in self.pel:
            heapq.heappop(h)
        if not h:
            self._pel_heap = h = sorted(self.pel)
        return h[0]

    def _scan_low(self) -> int | None:
        order = self._scan_order
        while order and order[0] not in self._in_heap:
            order.popleft()
        return order[0] if order else None

    def _add_pending(self, p: Pending) -> None:
        self.pel[p.offset] = p
        if self._pel_tracked:
            heapq.heappush(self._pel_heap, p.offset)
        elif self.queue.config.max_priority:
            # priority deliveries are out of offset order: track the PEL's low end
            self._pel_tracked = True
            self._pel_heap = sorted(self.pel)

    # --- state changes (sync; called by the manager) ----------------------------

    def _persist(self, p: Pending) -> None:
        self.queue.log.pel_add(
            self.queue.name, self.name, p.offset, p.consumer, p.deadline, p.count
        )

    def _release(self, p: Pending) -> None:
        if p.consumer not in (WAITING, DEAD):
            c = self.by_id(p.consumer)
            if c is not None:
                c.inflight.discard(p.offset)

    def settle(self, offset: int) -> bool:
        """Remove ``offset`` from the PEL (ack, expiry, drop); False if not pending."""
        p = self.pel.pop(offset, None)
        if p is None:
            return False
        self._release(p)
        self.queue.log.pel_remove(self.queue.name, self.name, offset)
        self.advance_commit()
        self.wake()
        return True

    def settle_many(self, offsets: list[int]) -> list[int]:
        """:meth:`settle` for several offsets with one commit update and one wake;
        returns the offsets that were pending (and are settled now)."""
        pel = self.pel
        log_, qname, name = self.queue.log, self.queue.name, self.name
        remove = log_.pel_remove
        done = []
        holders: dict[str, Consumer | None] = {}  # consumer id -> consumer, per batch
        for offset in offsets:
            p = pel.pop(offset, None)
            if p is None:
                continue
            cid = p.consumer
            if cid != WAITING and cid != DEAD:
                if cid in holders:
                    c = holders[cid]
                else:
                    c = holders[cid] = self.by_id(cid)
                if c is not None:
                    c.inflight.discard(offset)  # _release, the lookup once per batch
            remove(qname, name, offset)
            done.append(offset)
        if done:
            self.advance_commit()
            self.wake()
        return done

    def requeue(self, p: Pending, delay: float, reason: str) -> None:
        """Give ``p`` back for redelivery after ``delay`` seconds, or dead-letter it
        when it has used up ``max_deliveries``."""
        self._release(p)
        limit = self.queue.config.max_deliveries
        if limit and p.count >= limit:
            self.dead_letter(p, "max-deliveries")
            return
        now = self.manager.clock()
        p.consumer = WAITING
        p.deadline = now + max(0.0, delay)
        self._persist(p)
        if p.deadline <= now:
            self._push_ready(p)
        self.wake()

    def dead_letter(self, p: Pending, reason: str) -> None:
        """Mark ``p`` for the dead-letter queue; the dispatcher moves it."""
        self._release(p)
        p.consumer = DEAD
        p.deadline = self.manager.clock()
        p.reason = reason
        self._persist(p)
        self._push_dead(p.offset)
        self._ensure_task()
        self.wake()

    def _push_dead(self, offset: int) -> None:
        if offset not in self._dead_queued:
            self._dead_queued.add(offset)
            self._dead.append(offset)

    def _push_ready(self, p: Pending) -> None:
        """Queue a due WAITING entry at its original place (see the module doc)."""
        if p.offset in self._queued:
            return
        self._queued.add(p.offset)
        maximum = self.queue.config.max_priority
        if not maximum:
            key = 0
        elif p.prio < 0:
            key = -(maximum + 1)  # priority not known yet: read it first
        else:
            key = -p.prio
        heapq.heappush(self._ready, (key, p.offset))

    def _ready_top(self) -> tuple[int, int] | None:
        """The first due redelivery (stale heap entries are dropped on the way)."""
        heap = self._ready
        while heap:
            offset = heap[0][1]
            p = self.pel.get(offset)
            if p is not None and p.consumer == WAITING:
                return heap[0]
            heapq.heappop(heap)
            self._queued.discard(offset)
        return None

    def nack(
        self,
        offset: int,
        requeue: bool,
        delay: float | None,
        *,
        count: bool = True,
        elsewhere: bool = False,
    ) -> bool:
        """Give a delivery back (see the module doc for ``count`` and ``elsewhere``)."""
        p = self.pel.get(offset)
        if p is None or p.consumer in (WAITING, DEAD):
            return False
        if not requeue:
            self.dead_letter(p, "nack")
            return True
        if elsewhere:
            if p.avoid is None:
                p.avoid = set()
            p.avoid.add(p.consumer)
        if not count:
            # not a delivery attempt: the next one has the same count and
            # max_deliveries is not spent
            p.count = max(0, p.count - 1)
        self.requeue(p, self.queue.config.backoff(p.count) if delay is None else delay, "nack")
        return True

    def reject(self, offset: int) -> bool:
        p = self.pel.get(offset)
        if p is None or p.consumer == DEAD:
            return False
        self.dead_letter(p, "rejected")
        return True

    def expire(self, offset: int, p: Pending | None) -> None:
        """``offset`` expired before it was (re)delivered: dead-letter it when the
        queue has ``dlq_expired``, else drop it for this group."""
        self.manager.counters["expired"] += 1
        if dlq.expiry_enabled(self.queue):
            if p is None:
                p = Pending(offset, WAITING, 0.0, 0)
                self._add_pending(p)
            self.dead_letter(p, "expired")
        elif p is not None:
            self.settle(offset)

    def steal(self, consumer: Consumer) -> int:
        """Work stealing: everything pending on ``consumer`` is due at once."""
        n = 0
        for offset in sorted(consumer.inflight):
            p = self.pel.get(offset)
            if p is not None and p.consumer == consumer.id:
                self.requeue(p, 0.0, "consumer gone")
                n += 1
        consumer.inflight.clear()
        return n

    def claim(
        self, consumer: Consumer, now: float, min_idle: float, limit: int
    ) -> list[tuple[int, int]]:
        """Move deliveries pending on other consumers for at least ``min_idle``
        seconds to ``consumer`` (see ``QueueManager.claim``)."""
        vt = self.queue.config.visibility_timeout or 0.0
        out: list[tuple[int, int]] = []
        for p in list(self.pel.values()):
            if limit and len(out) >= limit:
                break
            if p.consumer in (WAITING, DEAD, consumer.id):
                continue
            if now - (p.deadline - vt) < min_idle:
                continue
            self._release(p)
            p.consumer = consumer.id
            p.count += 1
            p.deadline = now + vt
            self._persist(p)
            consumer.inflight.add(p.offset)
            out.append((p.offset, p.count))
        if out:
            self.manager.counters["redelivered"] += len(out)
        return sorted(out)

    def sweep(self, now: float) -> int:
        """Visibility timeouts and due retries; returns how many entries moved."""
        moved = 0
        backoff = self.queue.config.backoff
        for p in list(self.pel.values()):
            if p.deadline > now:
                continue
            if p.consumer == WAITING:
                if p.offset not in self._queued:
                    self._push_ready(p)
                    moved += 1
            elif p.consumer == DEAD:
                if p.offset not in self._dead_queued:
                    self._push_dead(p.offset)
                    moved += 1
            else:
                self.manager.counters["timeouts"] += 1
                self.requeue(p, backoff(p.count), "visibility timeout")
                moved += 1
        if moved:
            self._ensure_task()
            self.wake()
        return moved

    def advance_commit(self) -> None:
        low = self.pel_low()
        committed = self.cursor if low is None else min(low, self.cursor)
        if self._in_heap:
            scan = self._scan_low()
            if scan is not None and scan < committed:
                committed = scan
        if self.committed is None or committed > self.committed:
            self.committed = committed
            self.queue.log.commit_offset(self.queue.name, self.name, committed)

    def skip_to(self, offset: int) -> None:
        """Messages below ``offset`` are gone (retention, purge, drop-oldest)."""
        self.cursor = max(self.cursor, offset)
        if self._in_heap:
            low = self._scan_low()
            if low is not None and low < offset:
                self._heap = [e for e in self._heap if e[1] >= offset]
                heapq.heapify(self._heap)
                self._in_heap = {o for o in self._in_heap if o >= offset}
        self.advance_commit()

    def remove_consumer(self, consumer: Consumer) -> None:
        super().remove_consumer(consumer)
        self.steal(consumer)

    # --- the dispatcher ---------------------------------------------------------

    def _deliver(self, c: Consumer, offset: int, message: Message, count: int) -> None:
        q = self.queue
        cfg = q.config
        manager = self.manager
        if c.auto_commit:
            # At-most-once consumer: settled as it is handed over.
            if offset in self.pel:
                self.settle(offset)
            manager.counters["acked"] += 1
        else:
            p = self.pel.get(offset)
            if p is None:
                p = Pending(offset, c.id, 0.0, count)
                self._add_pending(p)
            cid = p.consumer = c.id
            p.count = count
            if cfg.max_priority:
                p.prio = priority_of(message, cfg.max_priority)
            deadline = p.deadline = manager.clock() + (cfg.visibility_timeout or 0.0)
            q.log.pel_add(q.name, self.name, offset, cid, deadline, count)  # _persist(p)
            c.inflight.add(offset)
        if count > 1:
            manager.counters["redelivered"] += 1
        self._deliver_to(c, decorate(message, q.name, self.name, offset, count), message.qos)

    async def _read_one(self, offset: int) -> Message | None:
        rows = await self.queue.log.read(self.queue.name, offset, 1)
        if rows and rows[0][0] == offset:
            return rows[0][1]
        return None

    async def dispatch(self) -> None:
        q = self.queue
        # 1. dead-letter moves (never blocked by consumer credit)
        while self._dead and not self.closed:
            offset = self._dead.popleft()
            self._dead_queued.discard(offset)
            p = self.pel.get(offset)
            if p is None or p.consumer != DEAD:
                continue
            await dlq.move(self.manager, self, p)
        if q.config.max_priority:
            await self._dispatch_priority()  # 2 and 3 merged by priority
            return
        # 2. redeliveries, in offset order (their original positions); entries no
        # consumer with credit can take now (predicates, undeliverable-here) are
        # set aside for this pass
        aside: list[tuple[int, int]] = []
        try:
            while self.consumers and not self.closed:
                top = self._ready_top()
                if top is None:
                    break
                step = await self._redeliver(top)
                if step == STOP:
                    break
                if step == SKIP:
                    heapq.heappop(self._ready)
                    aside.append(top)
        finally:
            for entry in aside:
                heapq.heappush(self._ready, entry)
        selective = self.selective
        # 3. new messages
        if self._in_heap:
            self._flush_scan()  # max_priority was switched off
        log_, name = q.log, q.name
        while not self.closed and self.consumers and self.cursor < log_.next_offset(name):
            room = self.room()
            if room <= 0:
                break
            rows = await log_.read(name, self.cursor, room)
            if self.closed:
                return
            if not rows:
                self.skip_to(log_.next_offset(name))
                break
            now = self.manager.clock()
            stop = False
            for offset, message in rows:
                if offset < self.cursor:
                    continue  # delivered while we were reading
                if offset in self.pel:
                    self.cursor = offset + 1  # pending from before a restart
                    continue
                if not self.matches(message):
                    self.cursor = offset + 1
                    continue
                if message.expired(now):
                    self.cursor = offset + 1
                    self.expire(offset, None)
                    continue
                if selective:
                    c = self._pick_for(None, message)[0]
                    if c is None and self._park(offset, now):
                        continue
                else:
                    c = self.pick()
                if c is None:
                    stop = True
                    break
                self.cursor = offset + 1
                self._deliver(c, offset, message, 1)
            self.advance_commit()
            if stop or self.room() <= 0:
                break  # no room left: a settlement wakes the dispatcher again
            await asyncio.sleep(0)  # a long backlog must not starve the loop
        self.advance_commit()

    async def _redeliver(self, top: tuple[int, int]) -> int:
        """Redeliver the due entry ``top`` (the ready heap's top): STOP when no
        consumer has room, SKIP when only consumers that must not take it have room
        (the caller sets it aside), AGAIN to go on (also when it moved meanwhile)."""
        offset = top[1]
        p = self.pel[offset]
        if self.pick_peek() is None:
            return STOP
        steer = bool(p.avoid) or self.selective
        if steer:
            c, unknown = self._pick_for(p, None)
            if c is None and not unknown:
                return SKIP  # decided from cached verdicts, without a read
        message = await self._read_one(offset)
        if self.closed:
            return STOP
        ready = self._ready
        if self.pel.get(offset) is not p or p.consumer != WAITING or not ready or ready[0] != top:
            return AGAIN  # settled, moved or overtaken while reading: look again
        maximum = self.queue.config.max_priority
        if maximum and p.prio < 0 and message is not None:
            # adopted at start: now that its priority is known, put it at its place
            heapq.heappop(ready)
            p.prio = priority_of(message, maximum)
            heapq.heappush(ready, (-p.prio, offset))
            return AGAIN
        if steer and message is not None:
            c = self._pick_for(p, message)[0]
            if c is None:
                return STOP if self.pick_peek() is None else SKIP
        else:
            c = self.pick()
        if c is None:
            return STOP
        heapq.heappop(ready)
        self._queued.discard(offset)
        if message is None:  # truncated meanwhile (drop-oldest, purge)
            self.settle(offset)
            return True
        if message.expired(self.manager.clock()):
            self.expire(offset, p)
            return True
        self._deliver(c, offset, message, p.count + 1)
        return AGAIN

    def pick_peek(self) -> Consumer | None:
        for c in self.consumers:
            if c.has_credit():
                return c
        return None

    # --- predicates and steering ---------------------------------------------------

    def _verdict(self, p: Pending | None, c: Consumer, message: Message | None) -> bool | None:
        """Whether ``c`` accepts the message (cached on ``p``); None when unknown
        and ``message`` was not read."""
        if c.predicate is None:
            return True
        verdicts = p.verdicts if p is not None else None
        if verdicts is not None:
            v = verdicts.get(c.id)
            if v is not None:
                return v
        if message is None:
            return None
        v = c.accepts(message)
        if p is not None:
            if verdicts is None:
                p.verdicts = verdicts = {}
            verdicts[c.id] = v
        return v

    def _pick_for(self, p: Pending | None, message: Message | None) -> tuple[Consumer | None, bool]:
        """The next consumer in round-robin order with credit that accepts the
        message and is not in ``p.avoid`` (unless no other consumer would take it):
        ``(consumer, False)``; ``(None, True)`` when a verdict needs the message
        read; ``(None, False)`` when no consumer with credit may take it."""
        avoid = p.avoid if p is not None else None
        if avoid:
            others: bool | None = False
            for c in self.consumers:
                if c.active and c.id not in avoid:
                    v = self._verdict(p, c, message)
                    if v is None:
                        others = None
                    elif v:
                        others = True
                        break
            if others is None:
                return None, True
            if not others:
                avoid = None  # nobody else would take it: back to the same consumers
        consumers = self.consumers
        n = len(consumers)
        unknown = False
        for i in range(n):
            c = consumers[(self._rr + i) % n]
            if not c.has_credit() or (avoid and c.id in avoid):
                continue
            v = self._verdict(p, c, message)
            if v is None:
                unknown = True
            elif v:
                self._rr = (self._rr + i + 1) % n
                return c, False
        return None, unknown

    def _park(self, offset: int, now: float, prio: int = -1) -> bool:
        """Hold a new message that no consumer with credit accepts (see the module
        doc); False when it must wait instead (nobody has credit, or the limit).
        ``prio``: its priority in a priority group (it waits at its place)."""
        if self.pick_peek() is None or len(self._ready) >= PARKED_LIMIT:
            return False
        p = Pending(offset, WAITING, now, 0)
        p.prio = prio
        self._add_pending(p)
        self._persist(p)
        self._push_ready(p)
        self.cursor = offset + 1
        return True

    # --- priority groups -------------------------------------------------------

    def _flush_scan(self) -> None:
        """Give scanned records back to the cursor (priority switched off)."""
        low = self._scan_low()
        if low is not None:
            self.cursor = min(self.cursor, low)
        self._heap.clear()
        self._in_heap.clear()
        self._scan_order.clear()

    async def _scan(self) -> None:
        """Read new records into the priority heap (up to PRIORITY_WINDOW of them)."""
        q = self.queue
        log_, name = q.log, q.name
        while (
            not self.closed
            and self.cursor < log_.next_offset(name)
            and len(self._in_heap) < PRIORITY_WINDOW
        ):
            rows = await log_.read(name, self.cursor, READ_BATCH)
            if self.closed:
                return
            if not rows:
                self.skip_to(log_.next_offset(name))
                return
            maximum = q.config.max_priority or 1
            for offset, message in rows:
                if offset < self.cursor:
                    continue  # scanned while we were reading
                self.cursor = offset + 1
                if offset in self.pel or not self.matches(message):
                    continue
                heapq.heappush(self._heap, (-priority_of(message, maximum), offset))
                self._in_heap.add(offset)
                self._scan_order.append(offset)

    def _pop_top(self, top: tuple[int, int]) -> bool:
        """Remove ``top`` when it is still the heap's top (nothing moved meanwhile)."""
        heap = self._heap
        while heap and heap[0][1] not in self._in_heap:
            heapq.heappop(heap)
        if not heap or heap[0] != top:
            return False
        heapq.heappop(heap)
        self._in_heap.discard(top[1])
        return True

    def _top(self) -> tuple[int, int] | None:
        heap = self._heap
        while heap and heap[0][1] not in self._in_heap:
            heapq.heappop(heap)
        return heap[0] if heap else None

    async def _dispatch_priority(self) -> None:
        await self._scan()
        selective = self.selective
        # redeliveries (and parked messages) no consumer with credit can take now
        # are set aside for this pass, as in dispatch()
        aside: list[tuple[int, int]] = []
        try:
            while not self.closed and self.consumers:
                if self.pick_peek() is None:
                    break
                top = self._top()
                again = self._ready_top()
                if again is not None and (top is None or again < top):
                    # a redelivery at its place: a higher priority, or the same one and older
                    step = await self._redeliver(again)
                    if step == SKIP:
                        heapq.heappop(self._ready)
                        aside.append(again)
                    elif step != AGAIN:
                        break
                    continue
                if top is None:
                    break
                offset = top[1]
                message = await self._read_one(offset)
                if self.closed:
                    return
                if not self._pop_top(top):
                    continue  # skipped or expired meanwhile
                if message is None or offset in self.pel:
                    continue  # truncated meanwhile
                now = self.manager.clock()
                if message.expired(now):
                    self.expire(offset, None)
                    continue
                if selective:
                    c = self._pick_for(None, message)[0]
                    if c is None and self._park(offset, now, -top[0]):
                        continue
                else:
                    c = self.pick()
                if c is None:  # credit went while reading: back on the heap
                    heapq.heappush(self._heap, top)
                    self._in_heap.add(offset)
                    break
                self._deliver(c, offset, message, 1)
                if self.cursor < self.queue.log.next_offset(self.queue.name) and not self._in_heap:
                    await self._scan()
        finally:
            for entry in aside:
                heapq.heappush(self._ready, entry)
        self.advance_commit()

    async def expire_head(self, now: float, budget: int) -> int:
        """The sweep: dead-letter (or drop) the expired messages at this group's head
        without waiting for a consumer; returns how many."""
        q = self.queue
        log_, name = q.log, q.name
        n = 0
        if q.config.max_priority:
            await self._scan()
            while not self.closed and n < budget:
                top = self._top()
                if top is None:
                    break
                message = await self._read_one(top[1])
                if self.closed:
                    break
                if message is not None and not message.expired(now):
                    if self._top() == top:
                        break
                    continue
                if not self._pop_top(top):
                    continue
                if message is not None and top[1] not in self.pel:
                    self.expire(top[1], None)
                    n += 1
            self.advance_commit()
            return n
        while not self.closed and n < budget:
            start = self.cursor
            if start >= log_.next_offset(name):
                break
            rows = await log_.read(name, start, min(READ_BATCH, budget - n))
            if self.closed or self.cursor != start or not rows:
                break  # the dispatcher moved on meanwhile: it handles the head
            stop = False
            for offset, message in rows:
                if offset < self.cursor:
                    continue
                if offset in self.pel or not self.matches(message):
                    self.cursor = offset + 1
                    continue
                if not message.expired(now):
                    stop = True
                    break
                self.cursor = offset + 1
                self.expire(offset, None)
                n += 1
            self.advance_commit()
            if stop:
                break
        return n
