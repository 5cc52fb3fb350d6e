"""Dead-lettering: moving a classic message to ``$dlq/<queue>``.

A message goes to the dead-letter queue when it is rejected, nacked without requeue,
or used up ``max_deliveries``. The DLQ is an ordinary classic queue, created on first
use (``dlq = false``, no capture topics, no limits). The moved copy carries, in
``message.properties`` (the Go FluxMQ's names):

====================== ==============================================
``_dlq_original_queue`` the source queue
``_dlq_original_topic`` the message's topic
``_dlq_original_id``    ``"<queue>:<offset>"`` in the source queue
``_dlq_group``          the consumer group that gave up on it
``_dlq_delivery_count`` deliveries made to that group
``_dlq_reason``         ``rejected``, ``nack`` or ``max-deliveries``
``_dlq_moved_at``       broker-clock time of the move
====================== ==============================================

Its per-message expiry is cleared: a dead letter is kept for inspection.

**Never dropped.** The PEL entry is removed only after the DLQ append resolved
(durable under the DLQ's durability). If the append fails (the DLQ is full, the log
raised, the sync failed) the entry stays pending in the source group, the failure is
logged and counted (``dlq_failures``) and the next sweep tries again. With ``dlq =
false`` on the source queue, dead-lettering drops the message instead (counted in
``dropped``): that is what the setting asks for.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from fluxmq_core.queues.config import DLQ_PREFIX, QueueConfig

if TYPE_CHECKING:
    from fluxmq_core.queues.classic import ClassicGroup, Pending
    from fluxmq_core.queues.manager import QueueManager

log = logging.getLogger("fluxmq.queues")


def dlq_name(queue: str) -> str:
    return f"{DLQ_PREFIX}{queue}"


async def move(manager: QueueManager, group: ClassicGroup, p: Pending) -> bool:
    """Move one DEAD entry of ``group`` to its DLQ; True once it is settled."""
    q = group.queue
    counters = manager.counters
    offset = p.offset
    if not q.config.dlq or q.name.startswith(DLQ_PREFIX):
        counters["dropped"] += 1
        log.info("queue %s group %s: dropped %s:%d (%s; dlq disabled)",
                 q.name, group.name, q.name, offset, p.reason)
        return group.settle(offset)
    rows = await q.log.read(q.name, offset, 1)
    if group.pel.get(offset) is not p or p.consumer != "$dlq":
        return False  # settled meanwhile
    if not rows or rows[0][0] != offset:
        group.settle(offset)  # the record itself is gone (drop-oldest, purge)
        return True
    message = rows[0][1]
    now = manager.clock()
    props = dict(message.properties) if message.properties else {}
    props.update({
        "_dlq_original_queue": q.name,
        "_dlq_original_topic": message.topic,
        "_dlq_original_id": f"{q.name}:{offset}",
        "_dlq_group": group.name,
        "_dlq_delivery_count": p.count,
        "_dlq_reason": p.reason or "rejected",
        "_dlq_moved_at": now,
    })
    message.properties = props
    message.expires_at = None
    target = dlq_name(q.name)
    try:
        if manager.get(target) is None:
            manager.declare(target, QueueConfig(type="classic", dlq=False))
        await manager.append(target, message)
    except Exception as exc:
        counters["dlq_failures"] += 1
        retry = manager.defaults.sweep_interval
        log.error(
            "queue %s group %s: dead-lettering %s:%d to %s failed (%s); it stays pending, "
            "retrying in %.3gs", q.name, group.name, q.name, offset, target, exc, retry,
        )
        if group.pel.get(offset) is p and p.consumer == "$dlq":
            p.deadline = now + retry
            group._persist(p)
        return False
    if group.pel.get(offset) is not p:
        return False
    counters["dead_lettered"] += 1
    return group.settle(offset)
