"""The ``memory`` QueueLog: per-queue logs in lists, gone when the process exits.

The reference implementation of the :class:`~fluxmq_core.storage.base.QueueLog`
contract. Each queue is a list of message snapshots plus the offset of its first
element; retention advances a head index and compacts the list only once the dead
prefix is at least half of it, so truncation is amortised O(1) and reading from any
offset is an index computation, not a scan.

What it deliberately does not do: apply retention on its own, expire messages or
move anything to a dead-letter queue. The queue manager decides; the log records.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fluxmq_core.message import Message
from fluxmq_core.storage.base import PendingEntry, QueueLog, StorageOptions, UnknownQueueError
from fluxmq_core.storage.memory import copy_message, copy_record


class _Log:
    """One queue: retained records, counters, consumer-group state."""

    __slots__ = ("base", "bytes", "config", "groups", "head", "pel", "records")

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        # records[head:] are retained Messages (records[:head] are None, freed
        # early); records[i] has offset base + i.
        self.records: list[Any] = []
        self.head = 0
        self.base = 0
        self.bytes = 0
        self.groups: dict[str, int] = {}
        self.pel: dict[str, dict[int, PendingEntry]] = {}

    @property
    def first(self) -> int:
        return self.base + self.head

    @property
    def next(self) -> int:
        return self.base + len(self.records)

    def append(self, message: Message) -> int:
        snap = copy_message(message)
        self.records.append(snap)
        self.bytes += len(snap.payload)
        return self.base + len(self.records) - 1

    def truncate_before(self, offset: int) -> int:
        stop = min(max(offset, self.first), self.next) - self.base
        dropped = stop - self.head
        if dropped <= 0:
            return 0
        for i in range(self.head, stop):
            self.bytes -= len(self.records[i].payload)
            self.records[i] = None
        self.head = stop
        if self.head * 2 >= len(self.records):
            del self.records[: self.head]
            self.base += self.head
            self.head = 0
        return dropped


class MemoryQueueLog(QueueLog):
    """Queue logs in process memory. Not durable; ``sync()`` is immediate."""

    name = "memory"

    def __init__(self, options: StorageOptions | None = None) -> None:
        super().__init__(options if options is not None else StorageOptions(data_dir=""))
        self._logs: dict[str, _Log] = {}

    def _log(self, queue: str) -> _Log:
        try:
            return self._logs[queue]
        except KeyError:
            raise UnknownQueueError(queue) from None

    # --- lifecycle --------------------------------------------------------------

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def sync(self) -> None:
        return None

    def stats(self) -> dict[str, int]:
        logs = self._logs.values()
        return {
            "queues": len(self._logs),
            "messages": sum(len(log.records) - log.head for log in logs),
            "bytes": sum(log.bytes for log in logs),
            "groups": sum(len(set(log.groups) | set(log.pel)) for log in logs),
            "pending": sum(len(p) for log in logs for p in log.pel.values()),
        }

    # --- queues -----------------------------------------------------------------

    def create_queue(self, name: str, config: dict[str, Any]) -> None:
        config = copy_record(config, "queue config")
        log = self._logs.get(name)
        if log is None:
            self._logs[name] = _Log(config)
        else:
            log.config = config

    def delete_queue(self, name: str) -> None:
        self._logs.pop(name, None)

    async def list_queues(self) -> dict[str, dict[str, Any]]:
        return {name: copy_record(log.config) for name, log in self._logs.items()}

    # --- records ----------------------------------------------------------------

    def append(self, queue: str, message: Message) -> int:
        return self._log(queue).append(message)

    def append_many(self, queue: str, messages: Iterable[Message]) -> list[int]:
        log = self._log(queue)
        return [log.append(m) for m in messages]

    async def read(self, queue: str, offset: int, limit: int) -> list[tuple[int, Message]]:
        log = self._log(queue)
        start = max(offset, log.first) - log.base
        stop = min(start + max(0, limit), len(log.records))
        return [(log.base + i, copy_message(log.records[i])) for i in range(start, stop)]

    def first_offset(self, queue: str) -> int:
        return self._log(queue).first

    def next_offset(self, queue: str) -> int:
        return self._log(queue).next

    async def offset_for_time(self, queue: str, timestamp: float) -> int:
        # A scan, not a bisection: timestamps come from publishers' clocks and are
        # not guaranteed to be monotonic, and the contract is "the first such".
        log = self._log(queue)
        records = log.records
        for i in range(log.head, len(records)):
            if records[i].timestamp >= timestamp:
                return log.base + i
        return log.next

    def truncate_before(self, queue: str, offset: int) -> int:
        return self._log(queue).truncate_before(offset)

    def size_bytes(self, queue: str) -> int:
        return self._log(queue).bytes

    def length(self, queue: str) -> int:
        log = self._log(queue)
        return len(log.records) - log.head

    # --- consumer groups --------------------------------------------------------

    def commit_offset(self, queue: str, group: str, offset: int) -> None:
        self._log(queue).groups[group] = int(offset)

    async def committed_offset(self, queue: str, group: str) -> int | None:
        return self._log(queue).groups.get(group)

    async def list_groups(self, queue: str) -> list[str]:
        log = self._log(queue)
        return list(dict.fromkeys([*log.groups, *log.pel]))

    # --- pending-entry list -----------------------------------------------------

    def pel_add(
        self,
        queue: str,
        group: str,
        offset: int,
        consumer: str,
        deadline: float,
        delivery_count: int,
    ) -> None:
        pel = self._log(queue).pel.setdefault(group, {})
        pel[offset] = PendingEntry(offset, consumer, float(deadline), int(delivery_count))

    def pel_remove(self, queue: str, group: str, offset: int) -> None:
        pel = self._log(queue).pel.get(group)
        if pel is not None:
            pel.pop(offset, None)

    async def pel_entries(self, queue: str, group: str) -> list[PendingEntry]:
        pel = self._log(queue).pel.get(group)
        if not pel:
            return []
        return [pel[o] for o in sorted(pel)]
