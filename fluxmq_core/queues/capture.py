"""Capture: a queue's ``topics`` filters persist ordinary publishes that match, from
any protocol.

One :class:`CaptureSubscriber` per (capturing queue) is subscribed to the core
router with each of the queue's filters, so the publish path pays nothing when no
queue captures: the router's trie does the matching it does anyway. ``deliver``
appends a copy of the message whose ``properties`` carry ``x-source-topic`` (the
original topic, which the message also keeps as its ``topic``).

Durability: ``deliver`` must not block, so the capture append is not awaited. The
publisher's acknowledgement (an MQTT PUBACK for an ordinary topic) is therefore
**not** tied to the captured copy being durable: a crash right after the PUBACK may
lose the captured copy. Publish to ``$queue/<name>/...`` when the acknowledgement
must cover the queue. Failed appends (queue full, message too large, sync error)
are logged at debug level and counted in ``capture_failures``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from fluxmq_core.router.types import SubscriptionOptions

if TYPE_CHECKING:
    from fluxmq_core.message import Message
    from fluxmq_core.queues.manager import QueueManager
    from fluxmq_core.router.types import Delivery

log = logging.getLogger("fluxmq.queues")

CAPTURE_OPTIONS = SubscriptionOptions(qos=2)


class CaptureSubscriber:
    """The router subscriber of one capturing queue."""

    __slots__ = ("client_id", "manager", "protocol", "queue", "topics")

    def __init__(self, manager: QueueManager, queue: str, topics: list[str]) -> None:
        self.manager = manager
        self.queue = queue
        self.topics = list(topics)
        self.client_id = f"$capture/{queue}"
        self.protocol = "queue"

    def deliver(self, message: Message, delivery: Delivery) -> None:
        props = dict(message.properties) if message.properties else {}
        props["x-source-topic"] = message.topic
        manager = self.manager
        try:
            fut = manager.append(self.queue, message.copy(properties=props, retain=False))
        except Exception as exc:
            manager.counters["capture_failures"] += 1
            log.debug("capture of %r into queue %s failed: %s", message.topic, self.queue, exc)
            return
        fut.add_done_callback(self._done)

    def _done(self, fut: asyncio.Future[int]) -> None:
        if fut.cancelled() or fut.exception() is None:
            return
        self.manager.counters["capture_failures"] += 1
        log.debug("capture append to queue %s failed: %s", self.queue, fut.exception())

    def attach(self) -> None:
        router = self.manager.context.router
        for pattern in self.topics:
            router.subscribe(self, pattern, CAPTURE_OPTIONS)

    def detach(self) -> None:
        router = self.manager.context.router
        for pattern in self.topics:
            router.unsubscribe(self, pattern)
