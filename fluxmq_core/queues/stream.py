"""Stream consumer groups: read by offset, resume from a committed offset.

A stream group has one read position (``cursor``) shared by its consumers, which
split the messages round-robin (each message to one consumer of the group, honouring
credit). There is no PEL and no redelivery: a stream is replayed by moving the
cursor, not by timers. The minimal rules:

* ``commit(offset)`` (and ``ack``, which is a commit, as in the Go FluxMQ) records
  ``offset + 1`` as the group's committed offset (the next one to read on resume)
  when that moves it forward, and frees the credit of every delivery at or below
  ``offset``. ``nack`` and ``reject`` only free that delivery's credit: streams do
  not requeue or dead-letter.
* Auto-commit consumers hold no credit; their group commits its cursor (everything
  delivered) every ``[queue_manager] auto_commit_interval`` seconds (0: after every
  delivery batch), and once more when the manager stops.
* A consumer's ``cursor`` positions the whole group: ``first``, ``last`` (only new
  messages), an offset, or a timestamp (the first message at or after it,
  ``QueueLog.offset_for_time``). Without one, a group that has no consumers yet
  resumes from its committed offset (``last`` when it never committed); a consumer
  joining a busy group reads along with it.
* Uncommitted deliveries of a consumer that goes away are not handed to others; the
  group reads them again only when it resumes from its committed offset.
* Per-consumer predicates (selectors): a record goes to the next consumer with
  credit that accepts it. A record no consumer of the group accepts is passed over
  by the group (it stays in the stream for other groups and replays); one that only
  consumers without credit accept makes the group wait, since the group has a
  single read position.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from fluxmq_core.queues.group import Group
from fluxmq_core.queues.types import Consumer, decorate

if TYPE_CHECKING:
    from fluxmq_core.queues.manager import Queue, QueueManager


class StreamGroup(Group):
    kind = "stream"

    def __init__(
        self, manager: QueueManager, queue: Queue, name: str, cursor: int, committed: int | None
    ) -> None:
        super().__init__(manager, queue, name, cursor, committed)
        self._seek: tuple[str, float | int | None] | None = None
        self._last_auto_commit = manager.clock()

    def pending_count(self) -> int:
        return sum(len(c.inflight) for c in self.consumers)

    def seek(self, kind: str, value: float | int | None) -> None:
        """Position the group (applied by the dispatcher: a timestamp needs a read)."""
        q = self.queue
        if kind == "resume":
            kind, value = (
                ("offset", self.committed) if self.committed is not None else ("last", None)
            )
        if kind == "first":
            self.cursor = q.log.first_offset(q.name)
        elif kind == "last":
            self.cursor = q.log.next_offset(q.name)
        elif kind == "offset":
            self.cursor = max(
                q.log.first_offset(q.name), min(int(value or 0), q.log.next_offset(q.name))
            )
        else:
            self._seek = (kind, value)
        self.wake()

    @property
    def auto_commit(self) -> bool:
        return any(c.auto_commit for c in self.consumers)

    def commit(self, offset: int) -> bool:
        """Mark everything up to ``offset`` processed."""
        for c in self.consumers:
            if c.inflight:
                c.inflight = {o for o in c.inflight if o > offset}
        # Never past the end: a commit must not skip messages not yet appended.
        self._store(min(offset + 1, self.queue.log.next_offset(self.queue.name)))
        self.wake()
        return True

    def release(self, offset: int) -> bool:
        found = False
        for c in self.consumers:
            if offset in c.inflight:
                c.inflight.discard(offset)
                found = True
        self.wake()
        return found

    def _store(self, committed: int) -> None:
        if self.committed is None or committed > self.committed:
            self.committed = committed
            self.queue.log.commit_offset(self.queue.name, self.name, committed)

    def auto_commit_now(self) -> None:
        self._last_auto_commit = self.manager.clock()
        if self.auto_commit:
            self._store(self.cursor)

    def sweep(self, now: float) -> int:
        interval = self.manager.defaults.auto_commit_interval
        if self.auto_commit and now - self._last_auto_commit >= interval:
            self.auto_commit_now()
            return 1
        return 0

    def skip_to(self, offset: int) -> None:
        self.cursor = max(self.cursor, offset)

    async def dispatch(self) -> None:
        q = self.queue
        log_, name = q.log, q.name
        if self._seek is not None:
            kind, value = self._seek
            self._seek = None
            if kind == "timestamp":
                self.cursor = await log_.offset_for_time(name, float(value or 0.0))
        counters = self.manager.counters
        delivered = False
        selective = self.selective
        while not self.closed and self.consumers and self.cursor < log_.next_offset(name):
            room = self.room()
            if room <= 0:
                break
            rows = await log_.read(name, self.cursor, room)
            if self.closed or self._seek is not None:
                break
            if not rows:
                self.cursor = log_.next_offset(name)
                break
            now = self.manager.clock()
            stop = False
            for offset, message in rows:
                if offset < self.cursor:
                    continue
                if message.expired(now):
                    counters["expired"] += 1
                    self.cursor = offset + 1
                    continue
                if not self.matches(message):
                    self.cursor = offset + 1
                    continue
                if selective:
                    c, wanted = self.pick_accepting(message)
                    if not wanted:
                        self.cursor = offset + 1  # no consumer of the group selects it
                        continue
                else:
                    c = self.pick()
                if c is None:
                    stop = True
                    break
                self.cursor = offset + 1
                if not c.auto_commit:
                    c.inflight.add(offset)
                delivered = True
                self._deliver_to(
                    c, decorate(message, name, self.name, offset, 1, stream=True), message.qos
                )
            if stop:
                break
            await asyncio.sleep(0)
        if self._seek is not None:
            self.wake()
        if delivered and self.manager.defaults.auto_commit_interval == 0:
            self.auto_commit_now()

    def remove_consumer(self, consumer: Consumer) -> None:
        super().remove_consumer(consumer)
        consumer.inflight.clear()
