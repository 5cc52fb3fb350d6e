"""The two storage interfaces every driver implements: :class:`BrokerStore` and
:class:`QueueLog`, plus the small types they share.

The write/durability contract
=============================

**Writes are synchronous calls that enqueue; durability is one awaitable barrier.**

* Every mutating method (``save_*``, ``delete_*``, ``enqueue``, ``append``,
  ``commit_offset``, ``pel_add``...) is a plain ``def``. It never blocks and never
  awaits: it records the change (in memory, in a write buffer, in a batch) and
  returns. The hot path can therefore issue hundreds of writes from one
  ``data_received`` chunk without yielding to the loop.
* A write is *visible* to every later read on the same store at once, whether or
  not it is durable yet.
* ``async def sync()`` is the only durability barrier. It resolves once everything
  written **before the call** is durable under the driver's ``fsync`` setting
  (``"always"``, ``"batch"``, ``"never"``). A durable driver does group commit: many
  writes, then one fsync per batch, and every ``sync()`` waiting on that batch
  resolves together. The memory drivers' ``sync()`` returns at once.
* **Protocols acknowledge only after ``await store.sync()`` resolves** (when the
  store's ``acks_wait_for_sync`` is True; the memory drivers' is False): an MQTT
  PUBACK/PUBREC, an AMQP confirm or disposition, a queue append reply. That is what
  makes "acknowledged means durable" (DESIGN.md section 6) hold while the loop
  never blocks on the disk.
* Reads are ``async def`` because a durable driver may need I/O to answer them. A
  few cheap counters (``queue_length``, ``next_offset``...) are plain ``def`` and
  O(1): the hot path consults them to apply bounds and retention.
* ``close()`` flushes: whatever was written before it is durable once it returns.

Values crossing the interface are protocol-neutral. Records (session records,
subscription options, in-flight records) are dicts with ``str`` keys whose values
are ``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes``, lists and nested
dicts of the same (a tuple may come back as a list). Messages are
:class:`fluxmq_core.message.Message`. Drivers store copies: mutating a record or a
message after passing it in, or after reading it out, never changes stored state.

What this module deliberately does not hold: any implementation, any file format,
any configuration parsing. Drivers are chosen by name through the
``fluxmq.storage`` and ``fluxmq.queue_log`` entry-point groups and constructed as
``DriverClass(options)``; the shared behaviour tests are in
:mod:`fluxmq_core.testing.conformance`.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any, Self

from fluxmq_core.message import Message

FSYNC_MODES = ("always", "batch", "never")


@dataclass
class StorageOptions:
    """What the core hands a driver's constructor.

    ``data_dir`` is where a durable driver keeps its files (the memory drivers
    ignore it). ``fsync`` says what ``sync()`` waits for: ``"always"`` (an fsync
    that covers the caller's writes, issued at once), ``"batch"`` (group commit:
    one fsync per batch of writes, per loop tick; the default) or ``"never"``
    (written to the OS, fsync left to it). ``extra`` carries driver-specific keys
    from the driver's config section.
    """

    data_dir: str
    fsync: str = "batch"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.fsync not in FSYNC_MODES:
            raise ValueError(
                f"storage fsync must be one of {', '.join(FSYNC_MODES)}; got {self.fsync!r}"
            )


class UnknownQueueError(KeyError):
    """A queue-log operation named a queue that was never created (or was deleted).

    It is a ``KeyError`` so that callers treating the log as a mapping can catch
    it as one; unlike a bare ``KeyError`` its message is a sentence.
    """

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"unknown queue {self.name!r}: create_queue() it first"


@dataclass(frozen=True, slots=True)
class PendingEntry:
    """One delivered-but-unsettled message of a consumer group (the PEL).

    ``deadline`` is the broker-clock time after which the message may be
    redelivered to another consumer; ``delivery_count`` counts deliveries so far.
    """

    offset: int
    consumer: str
    deadline: float
    delivery_count: int


class _Driver(abc.ABC):
    """Lifecycle and bookkeeping shared by both interfaces."""

    #: The driver's entry-point name (``"memory"``, ``"badgerlike"``).
    name: str = ""
    #: True when writes survive a process crash or restart once ``sync()`` resolved.
    #: What a protocol decides from it: whether state is worth writing for a restart
    #: (an MQTT will saved while its client is connected) and whether anything will
    #: bring it back after a clean stop (a non-durable store's delayed wills are
    #: published at shutdown instead). Acknowledgements follow
    #: :attr:`acks_wait_for_sync`, not this.
    durable: bool = False

    @property
    def acks_wait_for_sync(self) -> bool:
        """True when protocols must hold an acknowledgement (MQTT PUBACK/PUBREC, a
        CONNACK that promises stored state) until ``sync()`` resolved; False lets
        them skip the sync round trip. The same as :attr:`durable` for a plain
        driver; a wrapper may differ, say a store that copies writes to another
        node: its ``sync()`` waits for the copy (acknowledgements wait) while the
        store itself does not survive a restart (``durable`` False)."""
        return self.durable

    def __init__(self, options: StorageOptions) -> None:
        self.options = options

    @abc.abstractmethod
    async def open(self) -> None:
        """Make the store usable: create or recover files, start background work.
        Called once before any other method."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Flush (everything written so far becomes durable) and release
        resources. No other method is called afterwards."""

    @abc.abstractmethod
    async def sync(self) -> None:
        """Resolve once every write issued before this call is durable under
        ``options.fsync``. Many concurrent callers may share one fsync."""

    @abc.abstractmethod
    def stats(self) -> dict[str, int]:
        """Cheap integer counters for ``$SYS`` and metrics (names are the
        driver's choice; keep them stable)."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class BrokerStore(_Driver):
    """Sessions, subscriptions, retained messages, wills, offline queues and
    in-flight QoS state.

    Keyed by client id and otherwise protocol-neutral: MQTT is the main user, but
    nothing here knows MQTT packet formats. Unknown client ids are never an error:
    loads answer empty, deletes do nothing.
    """

    # --- sessions ---------------------------------------------------------------

    @abc.abstractmethod
    def save_session(self, client_id: str, record: dict[str, Any]) -> None:
        """Create or replace the session record of ``client_id``."""

    @abc.abstractmethod
    async def load_session(self, client_id: str) -> dict[str, Any] | None:
        """The saved session record, or ``None``."""

    @abc.abstractmethod
    def delete_session(self, client_id: str) -> None:
        """Delete the session record **and** the client's subscriptions, offline
        queue and in-flight records. Its will and any retained messages it
        published are left alone: the session layer decides when a will fires."""

    @abc.abstractmethod
    async def list_sessions(self) -> list[str]:
        """Client ids that have a session record, in no particular order."""

    # --- subscriptions ----------------------------------------------------------

    @abc.abstractmethod
    def save_subscription(self, client_id: str, topic_filter: str, options: dict[str, Any]) -> None:
        """Create or replace one subscription of ``client_id``."""

    @abc.abstractmethod
    def delete_subscription(self, client_id: str, topic_filter: str) -> None:
        """Remove one subscription; unknown ones are ignored."""

    @abc.abstractmethod
    async def load_subscriptions(self, client_id: str) -> dict[str, dict[str, Any]]:
        """``{topic_filter: options}`` of ``client_id`` (empty when none)."""

    # --- retained messages ------------------------------------------------------

    @abc.abstractmethod
    def save_retained(self, message: Message) -> None:
        """Create or replace the retained message of ``message.topic``. The store
        does not interpret an empty payload: deleting is the caller's call."""

    @abc.abstractmethod
    def delete_retained(self, topic: str) -> None:
        """Remove the retained message of ``topic``; unknown topics are ignored."""

    @abc.abstractmethod
    async def load_retained(self) -> list[Message]:
        """Every retained message, in no particular order."""

    # --- wills ------------------------------------------------------------------

    @abc.abstractmethod
    def save_will(self, client_id: str, message: Message, publish_at: float) -> None:
        """Create or replace the will of ``client_id``; ``publish_at`` is the
        broker-clock time at which it is due (after a will delay)."""

    @abc.abstractmethod
    def delete_will(self, client_id: str) -> None:
        """Remove the will of ``client_id``; unknown ones are ignored."""

    @abc.abstractmethod
    async def load_wills(self) -> list[tuple[str, Message, float]]:
        """Every pending will as ``(client_id, message, publish_at)``."""

    # --- offline queues ---------------------------------------------------------

    @abc.abstractmethod
    def enqueue(self, client_id: str, message: Message) -> int:
        """Append ``message`` to the client's offline queue and return its sequence
        number. Sequence numbers of a client strictly increase and are not reused
        while its session lives, not after removals or drops; after a reopen they
        stay above every one still queued; after ``delete_session`` they may start
        again."""

    @abc.abstractmethod
    async def queued(self, client_id: str, limit: int | None = None) -> list[tuple[int, Message]]:
        """Up to ``limit`` (all when ``None``) queued ``(seq, message)``, oldest
        first. Reading does not remove: call :meth:`remove_queued` once sent."""

    @abc.abstractmethod
    def remove_queued(self, client_id: str, seqs: Iterable[int]) -> None:
        """Remove the given sequence numbers; unknown ones are ignored."""

    @abc.abstractmethod
    def queue_length(self, client_id: str) -> int:
        """How many messages the client has queued. O(1): used to apply bounds."""

    @abc.abstractmethod
    def drop_oldest(self, client_id: str) -> Message | None:
        """Remove and return the oldest queued message (``None`` when empty): the
        bounded queue's overflow policy."""

    # --- in-flight QoS state ----------------------------------------------------

    @abc.abstractmethod
    def save_inflight(self, client_id: str, packet_id: int, record: dict[str, Any]) -> None:
        """Create or replace the in-flight record of one packet id (direction,
        QoS, phase, the message as a dict...)."""

    @abc.abstractmethod
    def delete_inflight(self, client_id: str, packet_id: int) -> None:
        """Remove one in-flight record; unknown ones are ignored."""

    @abc.abstractmethod
    async def load_inflight(self, client_id: str) -> dict[int, dict[str, Any]]:
        """``{packet_id: record}`` of ``client_id`` (empty when none)."""


class QueueLog(_Driver):
    """Append-only, per-queue logs with consumer-group state, for the queue manager.

    Offsets are 0-based per queue, increase by one per append and are never
    reused, not even after :meth:`truncate_before` dropped the records that held
    them or after a reopen. A queue-specific method called on a queue that does
    not exist raises :class:`UnknownQueueError` (only :meth:`delete_queue` is
    lenient). Deleting a queue and creating it again starts a new log at offset 0.
    """

    # --- queues -----------------------------------------------------------------

    @abc.abstractmethod
    def create_queue(self, name: str, config: dict[str, Any]) -> None:
        """Create ``name`` with ``config`` (a record, persisted). Idempotent: on an
        existing queue it keeps every record, offset and group and replaces the
        stored config."""

    @abc.abstractmethod
    def delete_queue(self, name: str) -> None:
        """Drop the queue with its records, groups and PEL; unknown is ignored."""

    @abc.abstractmethod
    async def list_queues(self) -> dict[str, dict[str, Any]]:
        """``{name: config}`` of every queue."""

    # --- records ----------------------------------------------------------------

    @abc.abstractmethod
    def append(self, queue: str, message: Message) -> int:
        """Append one message and return its offset."""

    @abc.abstractmethod
    def append_many(self, queue: str, messages: Iterable[Message]) -> list[int]:
        """Append several messages in order and return their (consecutive) offsets."""

    @abc.abstractmethod
    async def read(self, queue: str, offset: int, limit: int) -> list[tuple[int, Message]]:
        """Up to ``limit`` ``(offset, message)`` pairs, in offset order, starting at
        the first retained offset ``>= offset`` (so reading from a truncated offset
        resumes at :meth:`first_offset`)."""

    async def iter_records(
        self, queue: str, start: int | None = None, limit: int | None = None, *, batch: int = 256
    ) -> AsyncIterator[tuple[int, Message]]:
        """Read-only export: ``(offset, message)`` of every retained record from
        ``start`` (default: the first retained one) in offset order, at most
        ``limit`` of them, read ``batch`` at a time. It never changes the log, group
        state or the PEL, and a running writer may append meanwhile: records
        appended before the iteration reaches the end are included. Built on
        :meth:`read`; a driver may override it with something faster. (``fluxmq
        queue sql`` reads a running broker's queues through it, over the admin API.)"""
        offset = self.first_offset(queue) if start is None else max(0, int(start))
        left = limit
        while left is None or left > 0:
            want = batch if left is None else min(batch, left)
            rows = await self.read(queue, offset, want)
            if not rows:
                return
            for row in rows:
                yield row
            offset = rows[-1][0] + 1
            if left is not None:
                left -= len(rows)

    @abc.abstractmethod
    def first_offset(self, queue: str) -> int:
        """The oldest retained offset; equals :meth:`next_offset` when empty."""

    @abc.abstractmethod
    def next_offset(self, queue: str) -> int:
        """The offset the next append will get. O(1)."""

    @abc.abstractmethod
    async def offset_for_time(self, queue: str, timestamp: float) -> int:
        """The first retained offset whose message ``timestamp >= timestamp``;
        :meth:`next_offset` when there is none."""

    @abc.abstractmethod
    def truncate_before(self, queue: str, offset: int) -> int:
        """Drop every record below ``offset`` (retention) and return how many were
        dropped. Consumer-group offsets and the PEL are left alone."""

    @abc.abstractmethod
    def size_bytes(self, queue: str) -> int:
        """Sum of the retained messages' payload sizes (retention by bytes). O(1)."""

    @abc.abstractmethod
    def length(self, queue: str) -> int:
        """How many records are retained. O(1)."""

    # --- consumer groups --------------------------------------------------------

    @abc.abstractmethod
    def commit_offset(self, queue: str, group: str, offset: int) -> None:
        """Record ``offset`` as the group's committed position (it may go back:
        a replay is a commit)."""

    @abc.abstractmethod
    async def committed_offset(self, queue: str, group: str) -> int | None:
        """The group's committed offset, or ``None`` if it never committed."""

    @abc.abstractmethod
    async def list_groups(self, queue: str) -> list[str]:
        """Groups that committed an offset or have PEL entries on ``queue``."""

    # --- pending-entry list -----------------------------------------------------

    @abc.abstractmethod
    def pel_add(
        self,
        queue: str,
        group: str,
        offset: int,
        consumer: str,
        deadline: float,
        delivery_count: int,
    ) -> None:
        """Create or replace the pending entry of ``offset`` in ``group``."""

    @abc.abstractmethod
    def pel_remove(self, queue: str, group: str, offset: int) -> None:
        """Settle one pending entry; unknown ones are ignored."""

    @abc.abstractmethod
    async def pel_entries(self, queue: str, group: str) -> list[PendingEntry]:
        """The group's pending entries in offset order (empty for a new group)."""
