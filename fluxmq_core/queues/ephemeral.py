"""Ephemeral queues: in memory only, created on demand, removed when idle.

An ephemeral queue behaves as a classic (work) queue, but its log is a private
:class:`~fluxmq_core.storage.memory_log.MemoryQueueLog` owned by the queue manager:
nothing of it reaches the durable QueueLog, so it is gone after a restart (a
``[queues.<name>]`` table with ``type = "ephemeral"`` declares it again at start).
Appends resolve at once whatever ``durability`` says.

A publish or subscription to an undeclared ``$queue/<name>`` creates one with the
defaults (``QueueManager.auto_declare`` under ``[queue_manager] auto_create =
"ephemeral"``, the default; logged once per queue created, since its acknowledged
messages are not on disk). The sweep deletes an ephemeral queue that has had no
consumer and no publish for ``[queue_manager] ephemeral_idle_timeout`` seconds (this
applies to config-declared ephemeral queues as well; the next publish brings them
back).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fluxmq_core.queues.manager import QueueManager

log = logging.getLogger("fluxmq.queues")


def sweep_idle(manager: QueueManager, now: float) -> list[str]:
    """Delete idle ephemeral queues; returns their names."""
    timeout = manager.defaults.ephemeral_idle_timeout
    gone = []
    for q in list(manager.queues()):
        if q.config.type != "ephemeral" or q.consumer_count():
            continue
        if now - q.last_activity >= timeout:
            manager.delete(q.name)
            manager.counters["ephemeral_expired"] += 1
            log.info("ephemeral queue %s removed after %.0fs idle", q.name, now - q.last_activity)
            gone.append(q.name)
    return gone
