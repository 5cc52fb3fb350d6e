"""Dead-lettering: moving a classic message to ``$dlq/<queue>``.

A message goes to the dead-letter queue when it is rejected, nacked without requeue,
or used up ``max_deliveries``; with ``dlq_expired`` also when it expired while
waiting (reason ``expired``), with ``dlq_overflow`` when ``max_depth`` overflow drops
it (``drop-oldest``) or refuses it (``reject``; reason ``maxlen``). The DLQ is an ordinary classic queue, created on first
use (``dlq = false``, no capture topics, no limits). The moved copy carries, in
``message.properties`` (the Go FluxMQ's names):

====================== ==============================================
``_dlq_original_queue`` the source queue
``_dlq_original_topic`` the message's topic
``_dlq_original_id``    ``"<queue>:<offset>"`` in the source queue (``""``: refused)
``_dlq_group``          the consumer group that gave up on it (``""``: the queue)
``_dlq_delivery_count`` deliveries made to that group
``_dlq_reason``         ``rejected``, ``nack``, ``max-deliveries``, ``expired``, ``maxlen``
``_dlq_moved_at``       broker-clock time of the move
====================== ==============================================

Its per-message expiry is cleared: a dead letter is kept for inspection.

**Never dropped.** The PEL entry is removed only after the DLQ append resolved
(durable under the DLQ's durability). If the append fails (the DLQ is full, the log
raised, the sync failed) the entry stays pending in the source group, the failure is
logged and counted (``dlq_failures``) and the next sweep tries again. With ``dlq =
false`` on the source queue, dead-lettering drops the message instead (counted in
``dropped``): that is what the setting asks for.

**Dead letters of the queue itself** (expiry at the head of a queue without consumer
groups, ``drop-oldest`` overflow) have no PEL entry to keep them: the queue marks the
head of its log as dead (``Queue.dead_until``), every group skips it, retention may
not truncate it, and :func:`move_head` appends those records to the DLQ and
truncates the log only past what the DLQ append resolved. A failure leaves them in
the log and the sweep starts :func:`move_head` again. A refused append (``reject``
overflow) is dead-lettered as it is refused; its publisher is told it was refused.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from fluxmq_core.queues.config import DLQ_PREFIX, QueueConfig

if TYPE_CHECKING:
    from fluxmq_core.message import Message
    from fluxmq_core.queues.classic import ClassicGroup, Pending
    from fluxmq_core.queues.manager import Queue, QueueManager

log = logging.getLogger("fluxmq.queues")


#: Most records one :func:`move_head` round reads.
HEAD_BATCH = 256


def dlq_name(queue: str) -> str:
    return f"{DLQ_PREFIX}{queue}"


def enabled(q: Queue) -> bool:
    """Does ``q`` dead-letter at all (``dlq`` on, and not a DLQ itself)?"""
    return q.config.dlq and not q.name.startswith(DLQ_PREFIX)


def expiry_enabled(q: Queue) -> bool:
    return q.config.dlq_expired and enabled(q)


def overflow_enabled(q: Queue) -> bool:
    return q.config.dlq_overflow and enabled(q)


def dead_copy(
    manager: QueueManager,
    q: Queue,
    message: Message,
    offset: int | None,
    group: str,
    count: int,
    reason: str,
) -> Message:
    """The copy of ``message`` that goes to the DLQ (``message`` must be private)."""
    props = dict(message.properties) if message.properties else {}
    props.update(
        {
            "_dlq_original_queue": q.name,
            "_dlq_original_topic": message.topic,
            "_dlq_original_id": "" if offset is None else f"{q.name}:{offset}",
            "_dlq_group": group,
            "_dlq_delivery_count": count,
            "_dlq_reason": reason,
            "_dlq_moved_at": manager.clock(),
        }
    )
    message.properties = props
    message.expires_at = None
    message.encoded = None
    return message


def _append(manager: QueueManager, q: Queue, message: Message) -> asyncio.Future[int]:
    target = dlq_name(q.name)
    if manager.get(target) is None:
        manager.declare(target, QueueConfig(type="classic", dlq=False))
    return manager.append(target, message)


async def move(manager: QueueManager, group: ClassicGroup, p: Pending) -> bool:
    """Move one DEAD entry of ``group`` to its DLQ; True once it is settled."""
    q = group.queue
    counters = manager.counters
    offset = p.offset
    if not enabled(q):
        counters["dropped"] += 1
        log.info(
            "queue %s group %s: dropped %s:%d (%s; dlq disabled)",
            q.name,
            group.name,
            q.name,
            offset,
            p.reason,
        )
        return group.settle(offset)
    rows = await q.log.read(q.name, offset, 1)
    if group.pel.get(offset) is not p or p.consumer != "$dlq":
        return False  # settled meanwhile
    if not rows or rows[0][0] != offset:
        group.settle(offset)  # the record itself is gone (drop-oldest, purge)
        return True
    now = manager.clock()
    message = dead_copy(manager, q, rows[0][1], offset, group.name, p.count, p.reason or "rejected")
    target = dlq_name(q.name)
    try:
        await _append(manager, q, message)
    except Exception as exc:
        counters["dlq_failures"] += 1
        retry = manager.defaults.sweep_interval
        log.error(
            "queue %s group %s: dead-lettering %s:%d to %s failed (%s); it stays pending, "
            "retrying in %.3gs",
            q.name,
            group.name,
            q.name,
            offset,
            target,
            exc,
            retry,
        )
        if group.pel.get(offset) is p and p.consumer == "$dlq":
            p.deadline = now + retry
            group._persist(p)
        return False
    if group.pel.get(offset) is not p:
        return False
    counters["dead_lettered"] += 1
    return group.settle(offset)


def refuse(manager: QueueManager, q: Queue, message: Message) -> None:
    """Dead-letter a message ``q`` refused (``reject`` overflow with ``dlq_overflow``).
    Its publisher is refused anyway, so a failure here is logged and counted."""
    copy = dead_copy(manager, q, message.copy(), None, "", 0, "maxlen")

    def done(fut: asyncio.Future[int]) -> None:
        if not fut.cancelled() and fut.exception() is not None:
            manager.counters["dlq_failures"] += 1
            log.error(
                "queue %s: dead-lettering a refused message failed: %s", q.name, fut.exception()
            )
        else:
            manager.counters["dead_lettered"] += 1

    try:
        _append(manager, q, copy).add_done_callback(done)
    except Exception as exc:
        manager.counters["dlq_failures"] += 1
        log.error("queue %s: dead-lettering a refused message failed: %s", q.name, exc)


def mark_head(manager: QueueManager, q: Queue, end: int, reason: str) -> None:
    """Records of ``q`` below ``end`` are dead (the queue dropped them): groups skip
    them and :func:`move_head` moves them to the DLQ before the log lets them go."""
    if end <= q.dead_until:
        return
    q.dead_until = end
    q.dead_reasons.append((end, reason))
    for g in q.groups.values():
        g.skip_to(end)
    kick(manager, q)


def kick(manager: QueueManager, q: Queue) -> None:
    """Start :func:`move_head` when ``q`` has dead records at its head."""
    if q.deleted or q.dead_until <= q.log.first_offset(q.name):
        q.dead_reasons.clear()
        return
    if q.mover is None or q.mover.done():
        q.mover = manager.spawn(move_head(manager, q), f"fluxmq-dlq-{q.name}")


def _reason_at(q: Queue, offset: int) -> str:
    reasons = q.dead_reasons
    while reasons and reasons[0][0] <= offset:
        reasons.popleft()
    return reasons[0][1] if reasons else "maxlen"


async def move_head(manager: QueueManager, q: Queue) -> None:
    """Append the dead head of ``q`` to its DLQ, truncating as the appends resolve."""
    name, log_ = q.name, q.log
    counters = manager.counters
    while not q.deleted:
        first, end = log_.first_offset(name), q.dead_until
        if first >= end:
            q.dead_reasons.clear()
            return
        rows = await log_.read(name, first, min(HEAD_BATCH, end - first))
        if q.deleted:
            return
        futures: list[Any] = []
        offsets: list[int] = []
        failure: BaseException | None = None
        low = log_.first_offset(name)
        for offset, message in rows:
            if offset < low:
                continue  # purged meanwhile
            if offset >= q.dead_until:
                break
            copy = dead_copy(manager, q, message, offset, "", 0, _reason_at(q, offset))
            try:
                futures.append(_append(manager, q, copy))
            except Exception as exc:
                failure = exc
                break
            offsets.append(offset)
        results = await asyncio.gather(*futures, return_exceptions=True) if futures else []
        done = None
        for offset, result in zip(offsets, results, strict=True):
            if isinstance(result, BaseException):
                failure = failure or result
                break
            done = offset + 1
            counters["dead_lettered"] += 1
        if q.deleted:
            return
        if done is not None and done > log_.first_offset(name):
            log_.truncate_before(name, done)
            for g in q.groups.values():
                g.skip_to(done)
        if failure is not None:
            counters["dlq_failures"] += 1
            log.error(
                "queue %s: dead-lettering the head of the queue to %s failed (%s); "
                "the records stay, retrying at the next sweep",
                name,
                dlq_name(name),
                failure,
            )
            return
        if done is None and log_.first_offset(name) == first:
            log.error(
                "queue %s: dead records %d..%d not readable; retrying at the next sweep",
                name,
                first,
                end,
            )
            return


async def expire_head(manager: QueueManager, q: Queue, now: float) -> int:
    """A classic queue without consumer groups: its expired head (the run of expired
    messages at the start of its log) is dead-lettered (``dlq_expired``) or dropped.
    Returns how many."""
    name, log_ = q.name, q.log
    budget = manager.defaults.sweep_batch
    total = 0
    while total < budget and not q.groups and not q.deleted:
        if q.dead_until > log_.first_offset(name):
            kick(manager, q)  # the previous dead head first
            break
        start = log_.first_offset(name)
        if start >= log_.next_offset(name):
            break
        rows = await log_.read(name, start, min(HEAD_BATCH, budget - total))
        if q.deleted or q.groups or log_.first_offset(name) != start or q.dead_until > start:
            break
        end = start
        for offset, message in rows:
            if offset != end or not message.expired(now):
                break
            end = offset + 1
        if end == start:
            break
        total += end - start
        manager.counters["expired"] += end - start
        if expiry_enabled(q):
            mark_head(manager, q, end, "expired")
            break
        log_.truncate_before(name, end)
        if end - start < len(rows):
            break
    return total
