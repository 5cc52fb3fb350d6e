"""Retention: what the periodic sweep removes from a queue's log, and the one rule
it never breaks.

Each sweep computes, per queue, the offset below which records may go
(``QueueLog.truncate_before``):

* ``retention_messages``: keep the newest N;
* ``retention_age``: drop what was published more than that many seconds ago
  (``QueueLog.offset_for_time`` on ``message.timestamp``);
* ``retention_bytes``: drop the oldest until the payload bytes fit;
* classic and ephemeral queues with consumer groups also drop the prefix that every
  group has settled (a work queue does not keep what was consumed).

**The rule:** never below the first offset still pending in a classic group (its PEL:
delivered and unacknowledged, waiting for a retry, or waiting for the dead-letter
queue), nor into a dead head waiting for the dead-letter queue (``Queue.dead_until``). Retention may drop messages a group has not been delivered yet; the group's
cursor then skips them. Work is bounded: at most ``[queue_manager] sweep_batch``
records per queue per sweep; the next sweep continues.

Expired messages (TTL) are not removed here: the manager's sweep handles the expired
head of each classic group (or of a queue without groups) first, dead-lettering it
(``dlq_expired``) or dropping it; elsewhere they are skipped (and counted) when their
turn comes to be delivered, and leave with the rest of the prefix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fluxmq_core.queues.manager import Queue, QueueManager


def consumed_floor(q: Queue) -> int:
    """The offset below which every group of a work queue has settled (the log's
    first offset when there is no group: nothing is consumed)."""
    first = q.log.first_offset(q.name)
    if q.is_stream or not q.groups:
        return first
    return min(first if g.committed is None else g.committed for g in q.groups.values())


def pending_floor(q: Queue) -> int:
    """The first offset still pending in any classic group (next offset if none)."""
    floor = q.log.next_offset(q.name)
    if q.is_stream:
        return floor
    first = q.log.first_offset(q.name)
    if q.dead_until > first:
        return first  # a dead head waits for the DLQ (dlq.move_head truncates it)
    for g in q.groups.values():
        low = g.pel_low()
        if low is not None and low < floor:
            floor = low
    return floor


def truncate(manager: QueueManager, q: Queue, target: int) -> int:
    """Drop records below ``target`` (capped by the rule above); returns how many."""
    target = min(target, pending_floor(q))
    if target <= q.log.first_offset(q.name):
        return 0
    dropped = q.log.truncate_before(q.name, target)
    for g in q.groups.values():
        g.skip_to(target)
    manager.counters["truncated"] += dropped
    return dropped


def trim_consumed(manager: QueueManager, q: Queue) -> int:
    """Drop the settled prefix of a work queue now (used before applying max_depth)."""
    return truncate(manager, q, consumed_floor(q))


async def sweep_queue(manager: QueueManager, q: Queue) -> int:
    """Apply retention to one queue; returns how many records went."""
    cfg, log_, name = q.config, q.log, q.name
    first, nxt = log_.first_offset(name), log_.next_offset(name)
    if first >= nxt:
        return 0
    batch = manager.defaults.sweep_batch
    target = first
    if cfg.retention_messages and nxt - first > cfg.retention_messages:
        target = nxt - cfg.retention_messages
    if cfg.retention_age:
        target = max(target, await log_.offset_for_time(name, manager.clock() - cfg.retention_age))
    if cfg.retention_bytes:
        excess = log_.size_bytes(name) - cfg.retention_bytes
        if excess > 0:
            for offset, message in await log_.read(name, first, batch):
                if excess <= 0:
                    break
                excess -= len(message.payload)
                target = max(target, offset + 1)
    if q.deleted:
        return 0
    target = max(target, consumed_floor(q))
    return truncate(manager, q, min(target, log_.first_offset(name) + batch))
