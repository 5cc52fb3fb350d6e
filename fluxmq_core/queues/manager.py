"""The queue manager: declares queues, appends with group commit, registers
consumers and routes settlements to the right consumer group.

Protocol adapters use only :class:`QueueManager` (``context.queues``). The queue
semantics live in ``classic.py`` (work queues), ``stream.py`` (offset readers),
``dlq.py``, ``retention.py``, ``capture.py`` and ``ephemeral.py``; this module
holds the lifecycle, the registry of queues and the append path.

Publishes to queue topics: :meth:`QueueManager.publish` is the one path by which a
publish to ``$queue/<name>/<routing-key>`` reaches a queue, whichever protocol it came
from (``BrokerContext.publish`` and ``publish_queued`` call it). An undeclared name is
created as ``[queue_manager] auto_create`` says: an in-memory ephemeral queue (the
default, as the Go FluxMQ does; logged once per queue created, with how to make it
durable), a durable classic queue, or refused with :class:`UnknownQueueError`.

Append durability (group commit): ``append`` writes to the QueueLog at once (a
plain call) and returns a future. Under ``durability = "sync"`` on a durable log the
future resolves after a ``QueueLog.sync()``; every append of one loop tick shares
one sync. With ``durability = "async"``, a non-durable log (memory) or an ephemeral
queue it resolves at once. Protocol adapters acknowledge the publisher only when it
resolves; the loop never blocks on the disk.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from fluxmq_core.queues import dlq, ephemeral, retention
from fluxmq_core.queues.capture import CaptureSubscriber
from fluxmq_core.queues.classic import DEAD, ClassicGroup
from fluxmq_core.queues.config import (
    DLQ_PREFIX,
    MessageTooLargeError,
    QueueConfig,
    QueueError,
    QueueFullError,
    QueueManagerConfig,
    QueueTopicError,
    UnknownQueueError,
    queue_config,
    resolve,
    validate_queue_name,
)
from fluxmq_core.queues.group import Group
from fluxmq_core.queues.stream import StreamGroup
from fluxmq_core.queues.types import (
    CONTROL_VERBS,
    Consumer,
    QueueInfo,
    parse_cursor,
    parse_message_id,
    split_message_id,
    split_queue_topic,
)
from fluxmq_core.router.topics import TopicError, validate_topic_filter
from fluxmq_core.storage.memory_log import MemoryQueueLog

if TYPE_CHECKING:
    from fluxmq_core.message import Message
    from fluxmq_core.router.types import Subscriber
    from fluxmq_core.storage.base import QueueLog

log = logging.getLogger("fluxmq.queues")

#: Every counter ``stats()`` reports (all start at 0).
COUNTERS = (
    "appended",
    "delivered",
    "redelivered",
    "acked",
    "nacked",
    "rejected",
    "committed",
    "dead_lettered",
    "dlq_failures",
    "expired",
    "dropped",
    "truncated",
    "timeouts",
    "capture_failures",
    "deliver_failures",
    "ephemeral_expired",
    "sync_failures",
)

DEFAULT_CREDIT = 100


class Queue:
    """One queue: its effective config, its log, its groups and capture."""

    __slots__ = (
        "capture",
        "config",
        "dead_reasons",
        "dead_until",
        "declared",
        "deleted",
        "groups",
        "last_activity",
        "log",
        "may_expire",
        "mover",
        "name",
        "watchers",
    )

    def __init__(
        self, name: str, declared: QueueConfig, config: QueueConfig, log_: QueueLog, now: float
    ) -> None:
        self.name = name
        self.declared = declared  # as given (unset keys follow [queue_manager])
        self.config = config  # with the defaults filled in
        self.log = log_
        self.groups: dict[str, Group] = {}
        self.capture: CaptureSubscriber | None = None
        self.last_activity = now
        self.deleted = False
        #: Records below this offset are dead (dropped by the queue itself) and wait
        #: for ``dlq.move_head``; ``dead_reasons`` holds ``(end, reason)`` segments.
        self.dead_until = 0
        self.dead_reasons: deque[tuple[int, str]] = deque()
        self.mover: asyncio.Task[None] | None = None
        #: Some message may carry an expiry (set by appends; true after a load).
        self.may_expire = False
        #: Futures resolved at the next append or at deletion (log readers that
        #: follow the tail, see :meth:`QueueManager.watch`); empty costs one check.
        self.watchers: list[asyncio.Future[None]] = []

    @property
    def type(self) -> str:
        return self.config.type

    @property
    def is_stream(self) -> bool:
        return self.config.type == "stream"

    @property
    def depth(self) -> int:
        return self.log.length(self.name)

    def live_first(self) -> int:
        """The first offset that is not dead (see ``dlq.move_head``)."""
        return max(self.log.first_offset(self.name), self.dead_until)

    def live_length(self) -> int:
        """Records in the log minus the dead head waiting for the DLQ."""
        first = self.log.first_offset(self.name)
        return self.log.length(self.name) - max(0, self.dead_until - first)

    def consumer_count(self) -> int:
        return sum(len(g.consumers) for g in self.groups.values())

    def __repr__(self) -> str:
        return f"Queue({self.name!r}, type={self.type!r}, depth={self.depth})"


class QueueManager:
    """Protocol-neutral durable queues (``context.queues``); see ``docs/queues.md``."""

    def __init__(self, context: Any) -> None:
        self.context = context
        self.clock = context.clock
        config: Any = getattr(context, "config", None)
        has = getattr(config, "has", None)
        self.defaults: QueueManagerConfig = (
            config.queue_manager
            if has is not None and has("queue_manager")
            else QueueManagerConfig()
        )
        self._configured: dict[str, QueueConfig] = (
            dict(config.queues) if has is not None and has("queues") else {}
        )
        self.log: QueueLog = context.queue_log
        self._memlog = MemoryQueueLog()
        self._queues: dict[str, Queue] = {}
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        # Per log: the appends of this tick waiting for one sync, as (future, offset).
        self._sync_waiting: dict[int, tuple[QueueLog, list[tuple[asyncio.Future[int], int]]]] = {}
        self._sync_tasks: set[asyncio.Task[None]] = set()
        self._closing: set[asyncio.Task[None]] = set()
        self._sweep_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._flush_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Load the queues and groups found in the QueueLog, declare the
        ``[queues.<name>]`` tables (the config wins over the stored settings) and
        start the sweep timer."""
        now = self.clock()
        for name, record in (await self.log.list_queues()).items():
            known = {k: v for k, v in record.items() if k in QueueConfig.__dataclass_fields__}
            try:
                declared = queue_config(known, where=f"stored queue {name!r}")
            except QueueError as exc:
                log.error("%s; the queue is not loaded", exc)
                continue
            q = self._add(name, declared, persist=False)
            q.may_expire = True
            for gname in await self.log.list_groups(name):
                committed = await self.log.committed_offset(name, gname)
                g = self._new_group(q, gname, committed)
                if isinstance(g, ClassicGroup):
                    g.load(await self.log.pel_entries(name, gname), now)
        for name, cfg in self._configured.items():
            self.declare(name, cfg, update=True)
        self._sweep_task = asyncio.get_running_loop().create_task(
            self._sweep_loop(), name="fluxmq-queue-sweep"
        )
        log.info("queue manager: %d queue(s)", len(self._queues))

    async def stop(self) -> None:
        """Stop timers and dispatchers, commit auto-commit streams, wait for
        outstanding appends to be synced."""
        task, self._sweep_task = self._sweep_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for q in self._queues.values():
            for g in q.groups.values():
                if isinstance(g, StreamGroup):
                    g.auto_commit_now()
                self._close_group(g)
            if q.capture is not None:
                q.capture.detach()
                q.capture = None
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        self._flush_syncs()
        if self._sync_tasks:
            await asyncio.gather(*self._sync_tasks, return_exceptions=True)

    def spawn(self, coro: Any, name: str) -> asyncio.Task[None]:
        """A background task of the manager (cancelled by :meth:`stop`)."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _close_group(self, g: Group) -> None:
        task = g.close()
        if task is not None:
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    # --- declaration ----------------------------------------------------------------

    def _log_for(self, cfg: QueueConfig) -> QueueLog:
        return self._memlog if cfg.type == "ephemeral" else self.log

    def _add(self, name: str, declared: QueueConfig, *, persist: bool) -> Queue:
        effective = resolve(declared, self.defaults)
        log_ = self._log_for(effective)
        if persist or log_ is self._memlog:
            log_.create_queue(name, declared.to_record())
        q = Queue(name, declared, effective, log_, self.clock())
        self._queues[name] = q
        self._set_capture(q)
        return q

    def _set_capture(self, q: Queue) -> None:
        if q.capture is not None:
            q.capture.detach()
            q.capture = None
        if q.config.topics:
            q.capture = CaptureSubscriber(self, q.name, q.config.topics)
            q.capture.attach()

    def declare(
        self, name: str, config: QueueConfig | dict[str, Any] | None = None, *, update: bool = False
    ) -> Queue:
        """Create queue ``name``, or return it when it exists with the same settings.

        ``config`` is a :class:`QueueConfig` or a dict of ``[queues.<name>]`` keys.
        An existing queue with other settings raises :class:`QueueError` unless
        ``update`` (then the new settings replace the old; used for the config
        file). The type of an existing queue never changes.
        """
        validate_queue_name(name)
        declared = queue_config(config, where=f"queue {name!r}")
        q = self._queues.get(name)
        if q is None:
            return self._add(name, declared, persist=True)
        if declared == q.declared:
            return q
        if declared.type != q.config.type:
            raise QueueError(
                f"queue {name!r} exists as a {q.config.type} queue; it cannot become {declared.type}"
            )
        if not update:
            raise QueueError(f"queue {name!r} exists with a different configuration")
        q.declared = declared
        q.config = resolve(declared, self.defaults)
        q.log.create_queue(name, declared.to_record())
        self._set_capture(q)
        return q

    def ensure_ephemeral(self, name: str) -> Queue:
        """The queue ``name``, created as an ephemeral queue when it does not exist,
        whatever ``auto_create`` says (for callers that chose ephemeral themselves;
        a publish or subscription to ``$queue/<name>`` uses :meth:`auto_declare`)."""
        q = self._queues.get(name)
        if q is not None:
            return q
        return self.declare(name, QueueConfig(type="ephemeral"))

    def auto_declare(self, name: str, why: str = "a publish") -> Queue:
        """The queue ``name``, created as ``[queue_manager] auto_create`` says when
        it does not exist (``why`` names the cause in the log line).

        ``ephemeral``: in memory, logged once per queue created with how to make it
        durable, counted in ``stats.ephemeral_queues_created``. ``durable``: a classic
        queue with the defaults in the QueueLog. ``none``: :class:`UnknownQueueError`.
        A dead-letter queue (``$dlq/<name>``) is never created here: it exists once
        its queue dead-lettered something. :class:`InvalidQueueNameError` for a name
        that cannot be a queue.
        """
        q = self._queues.get(name)
        if q is not None:
            return q
        validate_queue_name(name)
        if name.startswith(DLQ_PREFIX):
            raise UnknownQueueError(f"no dead-letter queue {name!r}")
        mode = self.defaults.auto_create
        if mode == "none":
            raise UnknownQueueError(
                f"unknown queue {name!r}: declare it in [queues.{name}] or through the "
                "queue API (auto_create is none)"
            )
        if mode == "durable":
            q = self.declare(name, QueueConfig(type="classic"))
            log.info(
                "queue %s created by %s to $queue/%s (auto_create = durable: a classic "
                "queue in the queue log)",
                name,
                why,
                name,
            )
            return q
        q = self.declare(name, QueueConfig(type="ephemeral"))
        stats = getattr(self.context, "stats", None)
        if stats is not None:
            stats.ephemeral_queues_created += 1
        log.warning(
            "queue %s created as an EPHEMERAL queue by %s to $queue/%s: its messages live "
            "in memory only (lost on restart) and it is removed after %.0fs idle. To keep "
            'them, declare it durable: [queues.%s] type = "classic" in the config file '
            '(or [queue_manager] auto_create = "durable" for every new queue)',
            name,
            why,
            name,
            self.defaults.ephemeral_idle_timeout,
            name,
        )
        return q

    def delete(self, name: str) -> bool:
        """Delete a queue with its messages, groups and consumers (whose handles
        become inactive). Its dead-letter queue stays. False when unknown."""
        q = self._queues.pop(name, None)
        if q is None:
            return False
        q.deleted = True
        if q.watchers:
            _wake(q)
        for g in q.groups.values():
            self._close_group(g)
        if q.capture is not None:
            q.capture.detach()
            q.capture = None
        if q.mover is not None:
            q.mover.cancel()
            q.mover = None
        q.log.delete_queue(name)
        return True

    def purge(self, name: str) -> int:
        """Remove every message, pending ones included (their later acks return
        False); groups and consumers stay. Returns how many messages went."""
        q = self._require(name)
        n = q.log.length(name)
        nxt = q.log.next_offset(name)
        for g in q.groups.values():
            if isinstance(g, ClassicGroup):
                for offset in list(g.pel):
                    g.settle(offset)
        q.log.truncate_before(name, nxt)
        for g in q.groups.values():
            g.skip_to(nxt)
        return n

    def truncate(self, name: str, offset: int) -> int:
        """Drop every message below ``offset`` (pending ones included: their later acks
        return False), as retention would; groups skip past them. Returns how many
        messages went. The queue API's Truncate."""
        q = self._require(name)
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise QueueError(f"invalid offset {offset!r}")
        offset = min(offset, q.log.next_offset(name))
        for g in q.groups.values():
            if isinstance(g, ClassicGroup):
                for o in [o for o in g.pel if o < offset]:
                    g.settle(o)
        n = q.log.truncate_before(name, offset)
        for g in q.groups.values():
            g.skip_to(offset)
        self.counters["truncated"] += n
        return n

    # --- consumer groups without consumers ------------------------------------------

    def create_group(
        self, queue: str, group: str, *, start: str = "earliest", filter: str | None = None
    ) -> Group:
        """Create consumer group ``group`` of ``queue`` before any consumer joins it
        (a consumer's first ``consume`` does so otherwise). ``start``: ``"earliest"``
        (the first retained message) or ``"latest"`` (only what is appended from now
        on). ``filter`` is the group's routing-key filter. :class:`QueueError` when
        the group exists."""
        q = self._require(queue)
        if not isinstance(group, str) or not group:
            raise QueueError("a consumer group name must be a non-empty string")
        if group in q.groups:
            raise QueueError(f"queue {queue!r} already has a consumer group {group!r}")
        if start not in ("earliest", "latest"):
            raise QueueError(f"start must be 'earliest' or 'latest'; got {start!r}")
        if filter in ("", "#"):
            filter = None
        if filter is not None:
            try:
                validate_topic_filter(filter)
            except TopicError as exc:
                raise QueueError(f"invalid consumer filter {filter!r}: {exc}") from None
        begin = q.log.next_offset(q.name) if start == "latest" else q.live_first()
        g = self._new_group(q, group, begin)
        g.filter = filter
        # Committed at once: the group outlives a restart, and a stream group's
        # first consumer resumes here instead of at the end.
        q.log.commit_offset(q.name, group, g.cursor)
        g.committed = g.cursor
        return g

    def delete_group(self, queue: str, group: str) -> bool:
        """Remove a consumer group: its consumers become inactive, its pending
        deliveries are forgotten. False when unknown. (The committed offset stays in
        the queue log, so a durable group reappears after a restart.)"""
        q = self._require(queue)
        g = q.groups.pop(group, None)
        if g is None:
            return False
        if isinstance(g, ClassicGroup):
            for offset in list(g.pel):
                q.log.pel_remove(q.name, group, offset)
            g.pel.clear()
        self._close_group(g)
        return True

    def pending(self, queue: str, group: str) -> list[tuple[int, str, float, int]]:
        """The pending deliveries of a classic group as ``(offset, consumer id,
        delivered at, delivery count)`` in offset order; waiting redeliveries have
        consumer id ``""``. A stream group keeps no such list: empty."""
        q = self._require(queue)
        g = q.groups.get(group)
        if g is None:
            raise QueueError(f"queue {queue!r} has no consumer group {group!r}")
        if not isinstance(g, ClassicGroup):
            return []
        vt = q.config.visibility_timeout or 0.0
        return [
            (p.offset, p.consumer, p.deadline - vt if p.consumer else p.deadline, p.count)
            for p in sorted(g.pel.values(), key=lambda p: p.offset)
            if p.consumer != DEAD
        ]

    def claim(self, handle: Consumer, min_idle: float, limit: int) -> list[tuple[int, int]]:
        """Work stealing on demand: move up to ``limit`` deliveries of a classic
        group that another consumer has held for at least ``min_idle`` seconds to
        ``handle`` (its own registered consumer), as a fresh delivery with a new
        visibility deadline. Returns ``(offset, delivery count)`` of each; the caller
        reads and hands over the messages. Stream groups: :class:`QueueError`."""
        g = handle._group
        if not isinstance(g, ClassicGroup):
            raise QueueError(
                f"queue {handle.queue!r} is a {g.queue.type} queue: claim is for classic queues"
            )
        if not handle.active:
            raise QueueError("claim: the consumer is no longer registered")
        return g.claim(handle, self.clock(), min_idle, limit)

    # --- lookup -------------------------------------------------------------------------

    def watch(self, name: str) -> asyncio.Future[None]:
        """A future resolved at the next append to queue ``name`` or at its
        deletion: a reader that reached the end of the log awaits it instead of
        polling (check the log again after creating it, an append may have come
        in between). Cancel it to stop watching. Raises :class:`QueueError` for an
        unknown queue."""
        q = self._require(name)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        watchers = q.watchers
        if len(watchers) >= 64:  # readers gone while the queue was idle
            watchers[:] = [w for w in watchers if not w.done()]
        watchers.append(fut)
        return fut

    def get(self, name: str) -> Queue | None:
        return self._queues.get(name)

    def queues(self) -> Iterator[Queue]:
        return iter(list(self._queues.values()))

    def _require(self, name: str) -> Queue:
        q = self._queues.get(name)
        if q is None:
            raise UnknownQueueError(f"unknown queue {name!r}")
        return q

    def info(self, name: str) -> QueueInfo:
        q = self._require(name)
        log_ = q.log
        return QueueInfo(
            name=name,
            type=q.type,
            depth=log_.length(name),
            bytes=log_.size_bytes(name),
            first_offset=log_.first_offset(name),
            next_offset=log_.next_offset(name),
            consumers=q.consumer_count(),
            groups=[g.info() for g in q.groups.values()],
            topics=list(q.config.topics),
        )

    def ready_count(self, name: str, group: str | None = None) -> int:
        """Messages ready for delivery to ``group`` of queue ``name``: those after its
        cursor plus (classic) redeliveries waiting in its PEL; deliveries pending on
        a consumer are not ready. For a group that does not exist (or ``None``): a
        stream's whole length, a classic queue's messages no group has been given
        yet. 0 for an unknown queue. (AMQP reports it in ``queue.declare-ok``.)"""
        q = self._queues.get(name)
        if q is None:
            return 0
        log_ = q.log
        first = q.live_first()
        nxt = log_.next_offset(name)
        g = q.groups.get(group) if group is not None else None
        if g is None:
            if q.is_stream:
                return log_.length(name)
            cursors = [gr.cursor for gr in q.groups.values()]
            start = min(cursors) if cursors else first
            return max(0, nxt - max(start, first))
        n = max(0, nxt - max(g.cursor, first))
        if isinstance(g, ClassicGroup):
            n += g.waiting_count() + g.scanned_count()
        return n

    def list(self) -> list[QueueInfo]:
        return [self.info(name) for name in sorted(self._queues)]

    def stats(self) -> dict[str, int]:
        """Integer counters (see :data:`COUNTERS`) plus current totals."""
        out = dict(self.counters)
        out["queues"] = len(self._queues)
        out["consumers"] = sum(q.consumer_count() for q in self._queues.values())
        out["pending"] = sum(
            g.pending_count() for q in self._queues.values() for g in q.groups.values()
        )
        return out

    # --- append -------------------------------------------------------------------------

    def publish(self, message: Message) -> asyncio.Future[int]:
        """Append a message published to ``$queue/<name>/<routing-key>`` (or to an
        existing ``$dlq/<name>``) to its queue, creating an undeclared one as
        ``auto_create`` says; the future is :meth:`append`'s.

        Every protocol's publish reaches queues through here (by way of
        ``BrokerContext.publish_queued``). Raises at once, all subclasses of
        :class:`QueueError`: :class:`QueueTopicError` for a control verb as a topic
        level, :class:`InvalidQueueNameError`, :class:`UnknownQueueError`,
        :class:`QueueFullError`, :class:`MessageTooLargeError`. A retained flag is
        dropped: queues do not retain.
        """
        name, rest = split_queue_topic(message.topic)
        if rest and not CONTROL_VERBS.isdisjoint(rest.split("/")):
            raise QueueTopicError(
                f"{message.topic!r}: $ack, $nack, $reject and $commit settle an MQTT "
                "consumer's deliveries; they are not appended"
            )
        if name not in self._queues:
            self.auto_declare(name)
        if message.retain:
            message = message.copy(retain=False)
        return self.append(name, message)

    def append(self, queue: str, message: Message) -> asyncio.Future[int]:
        """Append ``message``; the returned future resolves with its offset once
        durable (see the module docstring). Raises :class:`QueueError` (unknown
        queue), :class:`MessageTooLargeError` or :class:`QueueFullError` at once."""
        q = self._require(queue)
        cfg = q.config
        if cfg.max_message_size and len(message.payload) > cfg.max_message_size:
            raise MessageTooLargeError(
                f"queue {queue!r}: payload of {len(message.payload)} bytes exceeds "
                f"max_message_size {cfg.max_message_size}"
            )
        now = self.clock()
        if cfg.message_ttl:
            deadline = now + cfg.message_ttl
            if message.expires_at is None or message.expires_at > deadline:
                message = message.copy(expires_at=deadline)
        if message.expires_at is not None:
            q.may_expire = True
        if cfg.max_depth and q.log.length(queue) >= cfg.max_depth:
            self._overflow(q, message)
        offset = q.log.append(queue, message)
        q.last_activity = now
        self.counters["appended"] += 1
        if q.watchers:
            _wake(q)
        for g in q.groups.values():
            if g.consumers:
                g.wake()
        # The loop of the last append while it runs (a manager serves one loop at a
        # time): ``get_running_loop`` costs a getpid() system call per message.
        loop = self._loop
        if loop is None or not loop.is_running():
            loop = self._loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        log_ = q.log
        if cfg.durability == "async" or not log_.durable:
            fut.set_result(offset)
            return fut
        # Group commit: one sync per log per loop tick for every append of the tick.
        entry = self._sync_waiting.get(id(log_))
        if entry is None:
            self._sync_waiting[id(log_)] = (log_, [(fut, offset)])
        else:
            entry[1].append((fut, offset))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush_syncs)
        return fut

    def _overflow(self, q: Queue, message: Message) -> None:
        cfg = q.config
        retention.trim_consumed(self, q)
        excess = q.live_length() - cfg.max_depth + 1
        if excess <= 0:
            return
        if cfg.overflow == "reject":
            if not q.is_stream and dlq.overflow_enabled(q):
                dlq.refuse(self, q, message)
            raise QueueFullError(f"queue {q.name!r} is full (max_depth {cfg.max_depth})")
        # drop-oldest: the oldest go, even if pending (their later acks return False).
        target = q.live_first() + excess
        for g in q.groups.values():
            if isinstance(g, ClassicGroup):
                for offset in [o for o in g.pel if o < target]:
                    g.settle(offset)
        if not q.is_stream and dlq.overflow_enabled(q):
            dlq.mark_head(self, q, target, "maxlen")  # moved to the DLQ, then truncated
            return
        dropped = q.log.truncate_before(q.name, target)
        for g in q.groups.values():
            g.skip_to(target)
        self.counters["dropped"] += dropped

    def _flush_syncs(self) -> None:
        self._flush_scheduled = False
        waiting, self._sync_waiting = self._sync_waiting, {}
        for log_, futures in waiting.values():
            task = asyncio.get_running_loop().create_task(self._sync(log_, futures))
            self._sync_tasks.add(task)
            task.add_done_callback(self._sync_tasks.discard)

    async def _sync(
        self, log_: QueueLog, futures: Sequence[tuple[asyncio.Future[int], int]]
    ) -> None:
        try:
            await log_.sync()
        except Exception as exc:
            self.counters["sync_failures"] += 1
            log.error("queue log sync failed; %d append(s) not acknowledged: %s", len(futures), exc)
            for fut, _offset in futures:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for fut, offset in futures:
            if not fut.done():
                fut.set_result(offset)

    # --- consumers ------------------------------------------------------------------

    def _new_group(self, q: Queue, name: str, committed: int | None) -> Group:
        first = q.live_first()
        if q.is_stream:
            cursor = q.log.next_offset(q.name) if committed is None else committed
            g: Group = StreamGroup(self, q, name, cursor, committed)
        else:
            cursor = first if committed is None else max(committed, first)
            g = ClassicGroup(self, q, name, cursor, committed)
        q.groups[name] = g
        return g

    def consume(
        self,
        queue: str,
        group: str,
        consumer: Subscriber,
        *,
        filter: str | None = None,
        credit: int = DEFAULT_CREDIT,
        cursor: Any = None,
        auto_commit: bool = False,
        predicate: Callable[[Message], bool] | None = None,
    ) -> Consumer:
        """Register ``consumer`` (anything with ``client_id`` and ``deliver``) in
        ``group`` of ``queue``; returns the handle for :meth:`cancel`.

        ``filter`` is an MQTT filter matched against the routing key (the topic
        after ``$queue/<queue>/``, or a captured message's topic); it belongs to the
        group, so every consumer of a group uses the same one. ``credit`` bounds
        unsettled deliveries per consumer (0 = unlimited). ``cursor`` positions a
        stream group (see :func:`~fluxmq_core.queues.types.parse_cursor`).
        ``auto_commit``: a classic delivery counts as acked when handed over
        (at-most-once); a stream group commits its position on an interval.
        ``predicate``: this consumer gets only the messages it accepts (a selector;
        see :class:`~fluxmq_core.queues.types.Consumer`, and the classic and stream
        modules for what happens to the messages it declines).
        """
        q = self._require(queue)
        if not isinstance(group, str) or not group:
            raise QueueError("a consumer group name must be a non-empty string")
        if cursor is not None and not q.is_stream:
            raise QueueError(f"queue {queue!r} is a {q.type} queue: cursors are for streams")
        kind, value = parse_cursor(cursor)
        g = q.groups.get(group)
        created = g is None
        if g is None:
            g = self._new_group(q, group, None)
        was_idle = not g.consumers
        try:
            handle = g.add_consumer(consumer, filter, credit, auto_commit)
            handle.predicate = predicate  # before the dispatcher task first runs
        except QueueError:
            if created:
                del q.groups[group]
                self._close_group(g)
            raise
        if created and not q.is_stream:
            q.log.commit_offset(q.name, group, g.cursor)  # the group outlives a restart
            g.committed = g.cursor
        if isinstance(g, StreamGroup) and (kind != "resume" or was_idle):
            g.seek(kind, value)
        q.last_activity = self.clock()
        return handle

    def cancel(self, handle: Consumer) -> None:
        """Remove a consumer. Classic: what was pending on it is redelivered to the
        group's other consumers at once (work stealing)."""
        if not handle.active:
            return
        g = handle._group
        g.remove_consumer(handle)
        q = self._queues.get(handle.queue)
        if q is not None:
            q.last_activity = self.clock()

    def cancel_subscriber(self, subscriber: Subscriber) -> int:
        """Cancel every consumer of ``subscriber`` (a disconnect); returns how many."""
        n = 0
        for q in list(self._queues.values()):
            for g in q.groups.values():
                for c in [c for c in g.consumers if c.subscriber is subscriber]:
                    self.cancel(c)
                    n += 1
        return n

    # --- settlement -----------------------------------------------------------------

    def _target(self, queue: str, group: str, offset: int | None) -> tuple[Queue, Group, int]:
        if offset is None:
            queue, offset = parse_message_id(queue)
        q = self._require(queue)
        g = q.groups.get(group)
        if g is None:
            raise QueueError(f"queue {queue!r} has no consumer group {group!r}")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise QueueError(f"invalid offset {offset!r}")
        return q, g, offset

    def ack(self, queue: str, group: str, offset: int | None = None) -> bool:
        """Settle a delivery (``queue`` may be a message id ``"<queue>:<offset>"``
        when ``offset`` is omitted). Classic: removes it from the PEL. Stream: a
        commit. False when it was not pending (a late or repeated ack)."""
        _q, g, offset = self._target(queue, group, offset)
        if isinstance(g, StreamGroup):
            ok = g.commit(offset)
        else:
            assert isinstance(g, ClassicGroup)  # the only other kind of group
            ok = g.settle(offset)
        if ok:
            self.counters["acked"] += 1
            self._settled(_q.name, group, offset, "ack")
        return ok

    def ack_many(self, group: str, message_ids: Iterable[str]) -> int:
        """:meth:`ack` for several deliveries of ``group`` (message ids
        ``"<queue>:<offset>"``, any queues), with one committed-offset update and one
        dispatcher wake per queue instead of one per message. Ids that are not pending
        (late, repeated, or their queue or group is gone) are skipped, as ``ack``
        returning False, and so are malformed ids; returns how many were settled."""
        by_queue: dict[str, list[int]] = {}
        for mid in message_ids:
            parsed = split_message_id(mid)
            if parsed is None:
                continue
            queue, offset = parsed
            offsets = by_queue.get(queue)
            if offsets is None:
                by_queue[queue] = [offset]
            else:
                offsets.append(offset)
        n = 0
        tracer = getattr(self.context, "tracer", None)  # _settled, looked up once
        for queue, offsets in by_queue.items():
            q = self._queues.get(queue)
            g = q.groups.get(group) if q is not None else None
            if g is None:
                continue
            if isinstance(g, ClassicGroup):
                done = g.settle_many(offsets)
            else:
                assert isinstance(g, StreamGroup)  # the only other kind of group
                done = [o for o in offsets if g.commit(o)]
            if done:
                n += len(done)
                self.counters["acked"] += len(done)
                if tracer is not None:
                    for offset in done:
                        tracer.queue_settled(queue, group, offset, "ack")
        return n

    def nack(
        self,
        queue: str,
        group: str,
        offset: int | None = None,
        *,
        requeue: bool = True,
        delay: float | None = None,
        count: bool = True,
        elsewhere: bool = False,
    ) -> bool:
        """Give a delivery back. Classic: redelivered after ``delay`` seconds (None:
        the queue's retry backoff for its delivery count), dead-lettered when
        ``requeue`` is false or ``max_deliveries`` is used up. ``count=False``: the
        delivery does not count (a release: the redelivery has the same delivery
        count, ``max_deliveries`` is not spent). ``elsewhere=True``: redelivered to
        another consumer of the group while one would take it (undeliverable here).
        Stream: frees credit."""
        _q, g, offset = self._target(queue, group, offset)
        if isinstance(g, StreamGroup):
            ok = g.release(offset)
        else:
            assert isinstance(g, ClassicGroup)  # the only other kind of group
            ok = g.nack(offset, requeue, delay, count=count, elsewhere=elsewhere)
        if ok:
            self.counters["nacked"] += 1
            self._settled(_q.name, group, offset, "nack")
        return ok

    def reject(self, queue: str, group: str, offset: int | None = None) -> bool:
        """Classic: dead-letter the delivery (``$dlq/<queue>``). Stream: frees credit."""
        _q, g, offset = self._target(queue, group, offset)
        if isinstance(g, StreamGroup):
            ok = g.release(offset)
        else:
            assert isinstance(g, ClassicGroup)  # the only other kind of group
            ok = g.reject(offset)
        if ok:
            self.counters["rejected"] += 1
            self._settled(_q.name, group, offset, "reject")
        return ok

    def _settled(self, queue: str, group: str, offset: int, outcome: str) -> None:
        """Tell a tracing plugin (``context.tracer``) that a delivery was settled."""
        tracer = getattr(self.context, "tracer", None)
        if tracer is not None:
            tracer.queue_settled(queue, group, offset, outcome)

    def commit(self, queue: str, group: str, offset: int | None = None) -> bool:
        """Streams: record that the group processed everything up to ``offset``
        (it resumes at ``offset + 1``)."""
        q, g, offset = self._target(queue, group, offset)
        if not isinstance(g, StreamGroup):
            raise QueueError(
                f"queue {q.name!r} is a {q.type} queue: commit is for streams; use ack"
            )
        g.commit(offset)
        self.counters["committed"] += 1
        return True

    # --- the sweep ------------------------------------------------------------------

    async def sweep(self) -> None:
        """One sweep (the timer calls it every ``sweep_interval``; tests call it
        after moving a manual clock): visibility timeouts, due retries and
        dead-letter retries, stream auto-commit, retention, idle ephemeral queues."""
        now = self.clock()
        for q in list(self._queues.values()):
            if q.deleted:
                continue
            for g in list(q.groups.values()):
                g.sweep(now)
            if not q.is_stream:
                try:
                    await self._expire(q, now)
                except Exception:
                    log.exception("queue %s: expiry failed", q.name)
            try:
                await retention.sweep_queue(self, q)
            except Exception:
                log.exception("queue %s: retention failed", q.name)
        ephemeral.sweep_idle(self, self.clock())

    async def _expire(self, q: Queue, now: float) -> None:
        """Expired messages at the head of a classic queue (per group; the queue's own
        head when it has no group) are dead-lettered (``dlq_expired``) or dropped,
        without waiting for a consumer. The dead head of a failed DLQ move is retried."""
        dlq.kick(self, q)
        if not q.may_expire:
            return
        if not q.groups:
            await dlq.expire_head(self, q, now)
            return
        for g in list(q.groups.values()):
            if isinstance(g, ClassicGroup) and not g.closed:
                await g.expire_head(now, self.defaults.sweep_batch)

    async def _sweep_loop(self) -> None:
        interval = self.defaults.sweep_interval
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sweep()
            except Exception:
                log.exception("queue sweep failed")

    def idle(self) -> bool:
        """True when no dispatcher has work queued and no sync is outstanding."""
        if self._sync_waiting or self._sync_tasks:
            return False
        return all(g.idle for q in self._queues.values() for g in q.groups.values())

    async def wait_idle(self, timeout: float = 5.0) -> None:
        """Let the dispatchers run until :meth:`idle` (bounded by ``timeout``;
        ``TimeoutError`` past it). For tests and tools, not the hot path."""

        async def settle() -> None:
            while True:
                await asyncio.sleep(0)
                if self.idle():
                    await asyncio.sleep(0)
                    if self.idle():
                        return

        await asyncio.wait_for(settle(), timeout)


__all__ = ["DLQ_PREFIX", "Queue", "QueueManager"]


def _wake(q: Queue) -> None:
    """Resolve the watchers of ``q`` (each fires once: watchers re-register)."""
    watchers, q.watchers = q.watchers, []
    for fut in watchers:
        if not fut.done():
            fut.set_result(None)
