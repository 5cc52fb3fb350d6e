"""Queues across nodes: one owner per queue, everything else forwarded to it.

A queue's log lives on one node, its *owner*, recorded in etcd
(``queues/<name>``: the owner's node id and the queue's type), claimed by the node
that created it (compare-and-swap: the first claim wins). The driver replaces the
node's queue manager (``context.queues``) by a :class:`ClusterQueues` before the
protocols start; for a queue that exists here it is the local manager itself, and
for a queue owned by another node it forwards over gRPC:

- a publish or append goes to the owner (``QueueAppend``); its future resolves
  with the offset once the message is durable there, or fails with the owner's
  queue error (full, too large, unknown...), so the protocol acknowledges (or
  refuses) exactly as for a local queue;
- a consumer registers on the owner (``QueueConsume``) through a stand-in handle
  (:class:`RemoteConsumer`); the owner's consumer group delivers to a proxy that
  forwards each delivery to the consumer's node as a targeted ``Forward`` entry,
  where it is handed to the real subscriber with its queue metadata (message id,
  group, offset, delivery count);
- ack, nack, reject and commit go back to the owner (``QueueSettle``), whose
  pending-entry list decides, as for a local consumer: a delivery lost on the way
  stays pending there and is redelivered after the visibility timeout.

A consumer node that leaves the cluster has its consumers cancelled on the owner
(their unsettled deliveries go to the group's other consumers). While a queue's
owner is down the queue is unavailable elsewhere (publishes are refused with a
clear error): a queue has a single copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import grpc

from fluxmq_core.message import Message
from fluxmq_core.queues import (
    MessageTooLargeError,
    QueueError,
    QueueFullError,
    UnknownQueueError,
)
from fluxmq_core.queues.config import DLQ_PREFIX, InvalidQueueNameError, QueueTopicError
from fluxmq_core.queues.types import parse_message_id, split_queue_topic
from fluxmq_core.router.types import Delivery

from .codec import message_from_proto, message_to_proto, pb, value_from_proto, value_to_proto
from .peers import HandlerError, PeerError

if TYPE_CHECKING:
    from .driver import EtcdCluster

__all__ = ["ClusterQueues", "RemoteConsumer", "RemoteQueue"]

log = logging.getLogger("fluxmq.cluster.queues")

#: Target prefix of a queue delivery forwarded to a consumer's node.
TARGET = "q:"

#: Queue errors <-> gRPC status codes (the class travels in the status code).
_ERRORS: list[tuple[type[QueueError], grpc.StatusCode]] = [
    (QueueFullError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (MessageTooLargeError, grpc.StatusCode.OUT_OF_RANGE),
    (UnknownQueueError, grpc.StatusCode.NOT_FOUND),
    (InvalidQueueNameError, grpc.StatusCode.INVALID_ARGUMENT),
    (QueueTopicError, grpc.StatusCode.INVALID_ARGUMENT),
]


def error_to_status(exc: QueueError) -> HandlerError:
    for cls, code in _ERRORS:
        if isinstance(exc, cls):
            return HandlerError(code, str(exc))
    return HandlerError(grpc.StatusCode.FAILED_PRECONDITION, str(exc))


def status_to_error(exc: PeerError, owner: str) -> QueueError:
    for cls, code in _ERRORS:
        if exc.code is code:
            return cls(exc.details)
    return QueueError(f"queue on node {owner}: {exc.details or exc.code.name}")


class RemoteQueue:
    """What ``get()`` answers for a queue owned by another node."""

    __slots__ = ("name", "owner", "type")

    def __init__(self, name: str, owner: str, type_: str) -> None:
        self.name = name
        self.owner = owner
        self.type = type_ or "classic"

    @property
    def is_stream(self) -> bool:
        return self.type == "stream"

    def __repr__(self) -> str:
        return f"RemoteQueue({self.name!r}, owner={self.owner!r})"


class RemoteConsumer:
    """The handle of a consumer registered on the queue's owner: the attributes of
    :class:`fluxmq_core.queues.types.Consumer` that protocols read. ``inflight`` holds
    the offsets delivered here and not settled yet. ``set_credit``, ``pause`` and
    ``resume`` travel to the owner (``QueueFlow``, the latest state, in order after
    the registration), where the consumer's dispatch follows them; until the owner
    has the change it delivers under the previous state (at most the old credit's
    worth more, which the protocol holds as it would early deliveries)."""

    __slots__ = (
        "active",
        "auto_commit",
        "credit",
        "flow_changed",
        "flow_dirty",
        "flow_task",
        "group",
        "id",
        "inflight",
        "owner",
        "paused",
        "predicate",
        "queue",
        "registered",
        "subscriber",
    )

    def __init__(
        self, owner: str, queue: str, group: str, cid: str, subscriber: Any, credit: int
    ) -> None:
        self.owner = owner
        self.queue = queue
        self.group = group
        self.id = cid
        self.subscriber = subscriber
        self.credit = credit
        self.auto_commit = False
        self.inflight: set[int] = set()
        self.active = True
        self.paused = False
        self.predicate: Callable[[Message], bool] | None = None
        #: The owner has the registration; a flow change not sent yet; its sender.
        self.registered = False
        self.flow_dirty = False
        self.flow_task: asyncio.Task[None] | None = None
        #: Called on a change of credit or pause (set by ClusterQueues).
        self.flow_changed: Callable[[RemoteConsumer], None] | None = None

    @property
    def closed(self) -> bool:
        return not self.active

    @property
    def idle(self) -> bool:
        return True

    @property
    def filter(self) -> str | None:
        return None

    def has_credit(self) -> bool:
        return self.active and (self.credit <= 0 or len(self.inflight) < self.credit)

    def _changed(self) -> None:
        self.flow_dirty = True
        if self.flow_changed is not None:
            self.flow_changed(self)

    def set_credit(self, credit: int) -> None:
        credit = int(credit)
        if credit != self.credit:
            self.credit = credit
            self._changed()

    def pause(self) -> None:
        if not self.paused:
            self.paused = True
            self._changed()

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            self._changed()

    def __repr__(self) -> str:
        return f"RemoteConsumer({self.queue!r}, group={self.group!r}, owner={self.owner!r})"


class _Proxy:
    """On the owner: the subscriber standing for a consumer on another node."""

    __slots__ = ("cluster", "node", "consumer_id", "client_id", "handle")

    def __init__(self, cluster: ClusterQueues, node: str, consumer_id: str, client_id: str) -> None:
        self.cluster = cluster
        self.node = node
        self.consumer_id = consumer_id
        self.client_id = client_id
        self.handle: Any = None

    def deliver(self, message: Message, delivery: Delivery) -> None:
        message.qos = delivery.qos
        peers = self.cluster.driver._peers
        if peers is not None and peers.forward(self.node, message, TARGET + self.consumer_id):
            self.cluster.forwarded_deliveries += 1
            return
        # The consumer's node is unreachable: give the delivery back (next tick: we
        # are inside the group's dispatcher).
        self.cluster.undeliverable += 1
        props = message.properties or {}
        offset = props.get("offset")
        group = props.get("group-id")
        queue = props.get("queue")
        if isinstance(offset, int) and isinstance(group, str) and isinstance(queue, str):
            asyncio.get_running_loop().call_soon(self.cluster._release, queue, group, offset)


class ClusterQueues:
    """``context.queues`` in a cluster: the local manager for queues held here,
    forwarding to the owner for the others (see the module docstring)."""

    def __init__(self, manager: Any, driver: EtcdCluster) -> None:
        self.manager = manager
        self.driver = driver
        self._ids = itertools.count(1)
        #: Consumers of this node registered on other nodes, by consumer id.
        self.remote: dict[str, RemoteConsumer] = {}
        #: On the owner: consumers of other nodes, by (node, consumer id).
        self.proxies: dict[tuple[str, str], _Proxy] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.forwarded_appends = 0
        self.forwarded_deliveries = 0
        self.undeliverable = 0
        self.remote_settle_failures = 0
        self.flow_updates = 0
        self.flow_failures = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.manager, name)

    # --- where a queue lives ----------------------------------------------------------

    def owner_of(self, name: str) -> str | None:
        """The node that owns ``name`` when it is not this one (None: here, or
        nobody yet: created here on first use)."""
        if self.manager.get(name) is not None:
            return None
        found = self.driver.queue_owners.get(name)
        if found is None or found[0] == self.driver.node_id:
            return None
        return found[0]

    def _claim(self, name: str) -> None:
        q = self.manager.get(name)
        if q is not None:
            self.driver.queue_created(name, q.type)

    def _claim_dlq(self, queue: str) -> None:
        """A settlement may have made ``$dlq/<queue>`` here: claim it too, so that a
        consumer of the dead letters on another node reaches it."""
        if not queue.startswith(DLQ_PREFIX):
            self._claim(DLQ_PREFIX + queue)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- the manager's interface -------------------------------------------------------

    def get(self, name: str) -> Any:
        q = self.manager.get(name)
        if q is not None:
            return q
        owner = self.owner_of(name)
        if owner is None:
            return None
        return RemoteQueue(name, owner, self.driver.queue_owners[name][1])

    def ready_count(self, name: str, group: str | None = None) -> int:
        """Messages ready in ``name`` (0 for a queue on another node: not known here)."""
        if self.owner_of(name) is not None:
            return 0
        return int(self.manager.ready_count(name, group))

    def declare(self, name: str, config: Any = None, *, update: bool = False) -> Any:
        owner = self.owner_of(name)
        if owner is not None:
            raise QueueError(
                f"queue {name!r} lives on node {owner}; declare or change it there "
                "(publish and consume work from any node)"
            )
        q = self.manager.declare(name, config, update=update)
        self._claim(name)
        return q

    def auto_declare(self, name: str, why: str = "a publish") -> Any:
        owner = self.owner_of(name)
        if owner is not None:
            return RemoteQueue(name, owner, self.driver.queue_owners[name][1])
        q = self.manager.auto_declare(name, why)
        self._claim(name)
        return q

    def ensure_ephemeral(self, name: str) -> Any:
        q = self.manager.ensure_ephemeral(name)
        self._claim(name)
        return q

    def delete(self, name: str) -> bool:
        ok = bool(self.manager.delete(name))
        if ok:
            self.driver.queue_created(name, None)
        return ok

    def publish(self, message: Message) -> asyncio.Future[int]:
        name, _rest = split_queue_topic(message.topic)
        owner = self.owner_of(name)
        if owner is None:
            fut: asyncio.Future[int] = self.manager.publish(message)
            self._claim(name)
            return fut
        return self._append_remote(owner, "", name, message)

    def append(self, queue: str, message: Message) -> asyncio.Future[int]:
        owner = self.owner_of(queue)
        if owner is None:
            fut: asyncio.Future[int] = self.manager.append(queue, message)
            return fut
        return self._append_remote(owner, queue, queue, message)

    def _append_remote(
        self, owner: str, queue: str, name: str, message: Message
    ) -> asyncio.Future[int]:
        driver = self.driver
        peers = driver._peers
        if owner not in driver.members or peers is None:
            raise QueueError(
                f"queue {name!r} lives on node {owner}, which is down: it has a single copy"
            )
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        request = pb.QueueAppendRequest(queue=queue)
        request.messages.append(message_to_proto(message))

        async def call() -> None:
            try:
                reply = await peers.call(owner, "QueueAppend", request)
            except PeerError as exc:
                if not fut.done():
                    fut.set_exception(status_to_error(exc, owner))
                return
            except Exception as exc:  # a bug must still answer the publisher
                if not fut.done():
                    fut.set_exception(QueueError(f"queue {name!r} on node {owner}: {exc!r}"))
                return
            self.forwarded_appends += 1
            if not fut.done():
                fut.set_result(int(reply.offsets[0]) if reply.offsets else 0)

        self._spawn(call())
        return fut

    def consume(
        self,
        queue: str,
        group: str,
        consumer: Any,
        *,
        filter: str | None = None,
        credit: int = 100,
        cursor: Any = None,
        auto_commit: bool = False,
        predicate: Callable[[Message], bool] | None = None,
    ) -> Any:
        owner = self.owner_of(queue)
        if owner is None:
            handle = self.manager.consume(
                queue,
                group,
                consumer,
                filter=filter,
                credit=credit,
                cursor=cursor,
                auto_commit=auto_commit,
                predicate=predicate,
            )
            self._claim(queue)
            return handle
        if predicate is not None:
            raise QueueError(
                f"queue {queue!r} lives on node {owner}: selectors work on the owner's node only"
            )
        if not isinstance(group, str) or not group:
            raise QueueError("a consumer group name must be a non-empty string")
        peers = self.driver._peers
        if owner not in self.driver.members or peers is None:
            raise QueueError(f"queue {queue!r} lives on node {owner}, which is down")
        cid = f"{self.driver.node_id}-{next(self._ids)}"
        handle = RemoteConsumer(owner, queue, group, cid, consumer, credit)
        handle.auto_commit = auto_commit
        handle.flow_changed = self._flow_changed
        self.remote[cid] = handle
        request = pb.QueueConsumeRequest(
            queue=queue,
            group=group,
            consumer_id=cid,
            client_id=str(getattr(consumer, "client_id", "")),
            auto_commit=auto_commit,
        )
        if filter is not None:
            request.filter = filter
        if cursor is not None:
            request.cursor.CopyFrom(value_to_proto(cursor, "cursor"))

        async def register() -> None:
            # Credit and pause as they are when the request leaves (a protocol
            # pauses a new consumer right after this call returns); a change after
            # that goes as a QueueFlow once the owner has the registration.
            request.credit = max(0, handle.credit)
            request.paused = handle.paused
            handle.flow_dirty = False
            try:
                await peers.call(owner, "QueueConsume", request)
            except PeerError as exc:
                log.warning(
                    "consumer of queue %r (group %r) could not register on node %s: %s",
                    queue,
                    group,
                    owner,
                    exc,
                )
                handle.active = False
                self.remote.pop(cid, None)
                return
            handle.registered = True
            if handle.flow_dirty:
                self._flow_changed(handle)

        self._spawn(register())
        return handle

    def _flow_changed(self, handle: RemoteConsumer) -> None:
        """A remote consumer's credit or pause changed: send its state to the owner
        (one sender per consumer, so updates arrive in order; the latest wins)."""
        if not handle.registered or not handle.active or handle.flow_task is not None:
            return
        peers = self.driver._peers
        if peers is None:
            return

        async def send() -> None:
            try:
                while handle.flow_dirty and handle.active:
                    handle.flow_dirty = False
                    request = pb.QueueFlowRequest(
                        consumer_id=handle.id, credit=max(0, handle.credit), paused=handle.paused
                    )
                    try:
                        await peers.call(handle.owner, "QueueFlow", request)
                    except PeerError as exc:
                        self.flow_failures += 1
                        log.info(
                            "credit of consumer %s (queue %r) not sent to node %s: %s",
                            handle.id,
                            handle.queue,
                            handle.owner,
                            exc,
                        )
                        return
                    self.flow_updates += 1
            finally:
                handle.flow_task = None

        task = asyncio.get_running_loop().create_task(send())
        handle.flow_task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def cancel(self, handle: Any) -> None:
        if not isinstance(handle, RemoteConsumer):
            self.manager.cancel(handle)
            return
        if not handle.active:
            return
        handle.active = False
        self.remote.pop(handle.id, None)
        handle.inflight.clear()
        peers = self.driver._peers
        if peers is not None and handle.owner in self.driver.members:
            request = pb.QueueCancelRequest(consumer_id=handle.id)

            async def call() -> None:
                with contextlib.suppress(PeerError):
                    await peers.call(handle.owner, "QueueCancel", request)

            self._spawn(call())

    def cancel_subscriber(self, subscriber: Any) -> int:
        n = int(self.manager.cancel_subscriber(subscriber))
        for handle in [h for h in self.remote.values() if h.subscriber is subscriber]:
            self.cancel(handle)
            n += 1
        return n

    def _settle(
        self,
        action: int,
        queue: str,
        group: str,
        offset: int | None,
        **extra: Any,
    ) -> bool | None:
        """Settle on the owner when the queue is remote (None: it is local)."""
        if offset is None:
            queue, offset = parse_message_id(queue)
        owner = self.owner_of(queue)
        if owner is None:
            return None
        for handle in self.remote.values():
            if handle.queue == queue and handle.group == group:
                handle.inflight.discard(offset)
        peers = self.driver._peers
        if peers is None:
            return False
        request = pb.QueueSettleRequest(queue=queue, group=group, action=action, **extra)  # type: ignore[arg-type]
        request.offsets.append(offset)

        async def call() -> None:
            try:
                await peers.call(owner, "QueueSettle", request)
            except PeerError as exc:
                self.remote_settle_failures += 1
                log.info("settling %s:%d on node %s failed: %s", queue, offset, owner, exc)

        self._spawn(call())
        return True

    def ack(self, queue: str, group: str, offset: int | None = None) -> bool:
        done = self._settle(pb.SETTLE_ACK, queue, group, offset)
        return self.manager.ack(queue, group, offset) if done is None else done

    def ack_many(self, group: str, message_ids: Iterable[str]) -> int:
        """``QueueManager.ack_many`` with the ids of queues owned by other nodes
        settled on their owners (one by one, as :meth:`ack`) and the local ones
        batched by the local manager."""
        local: list[str] = []
        n = 0
        for mid in message_ids:
            try:
                queue, offset = parse_message_id(mid)
            except QueueError:
                continue
            if self.owner_of(queue) is None:
                local.append(mid)
            elif self.ack(queue, group, offset):
                n += 1
        if local:
            n += self.manager.ack_many(group, local)
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
        extra: dict[str, Any] = {
            "dead_letter": not requeue,
            "uncounted": not count,
            "elsewhere": elsewhere,
        }
        if delay is not None:
            extra["delay"] = float(delay)
        done = self._settle(pb.SETTLE_NACK, queue, group, offset, **extra)
        if done is None:
            ok = bool(
                self.manager.nack(
                    queue,
                    group,
                    offset,
                    requeue=requeue,
                    delay=delay,
                    count=count,
                    elsewhere=elsewhere,
                )
            )
            self._claim_dlq(queue if offset is not None else parse_message_id(queue)[0])
            return ok
        return done

    def reject(self, queue: str, group: str, offset: int | None = None) -> bool:
        done = self._settle(pb.SETTLE_REJECT, queue, group, offset)
        if done is None:
            ok = bool(self.manager.reject(queue, group, offset))
            self._claim_dlq(queue if offset is not None else parse_message_id(queue)[0])
            return ok
        return done

    def commit(self, queue: str, group: str, offset: int | None = None) -> bool:
        done = self._settle(pb.SETTLE_COMMIT, queue, group, offset)
        return self.manager.commit(queue, group, offset) if done is None else done

    def _release(self, queue: str, group: str, offset: int) -> None:
        with contextlib.suppress(QueueError):
            self.manager.nack(queue, group, offset, count=False, elsewhere=True)

    # --- the consumer's node: deliveries from the owner ---------------------------------

    def delivered(self, from_node: str, consumer_id: str, message: Message) -> None:
        handle = self.remote.get(consumer_id)
        props = message.properties or {}
        offset = props.get("offset")
        if handle is None or not handle.active:
            # Cancelled meanwhile: give it back to the owner for another consumer.
            queue, group = props.get("queue"), props.get("group-id")
            if isinstance(offset, int) and isinstance(queue, str) and isinstance(group, str):
                self._settle_on(from_node, queue, group, offset)
            return
        if isinstance(offset, int) and not handle.auto_commit:
            handle.inflight.add(offset)
        handle.subscriber.deliver(message, Delivery(message.qos))

    def _settle_on(self, owner: str, queue: str, group: str, offset: int) -> None:
        peers = self.driver._peers
        if peers is None:
            return
        request = pb.QueueSettleRequest(
            queue=queue, group=group, action=pb.SETTLE_NACK, uncounted=True, elsewhere=True
        )
        request.offsets.append(offset)

        async def call() -> None:
            with contextlib.suppress(PeerError):
                await peers.call(owner, "QueueSettle", request)

        self._spawn(call())

    # --- the owner: requests from other nodes ----------------------------------------------

    async def serve_append(self, from_node: str, request: Any) -> Any:
        manager = self.manager
        futures = []
        try:
            for p in request.messages:
                message = message_from_proto(p)
                if request.queue:
                    futures.append(manager.append(request.queue, message))
                else:
                    futures.append(manager.publish(message))
                    self._claim(split_queue_topic(message.topic)[0])
            offsets = [int(await f) for f in futures]
        except QueueError as exc:
            raise error_to_status(exc) from None
        return pb.QueueAppendResponse(offsets=offsets)

    async def serve_settle(self, from_node: str, request: Any) -> Any:
        manager = self.manager
        settled = []
        try:
            for offset in request.offsets:
                action = request.action
                if action == pb.SETTLE_ACK:
                    ok = manager.ack(request.queue, request.group, offset)
                elif action == pb.SETTLE_NACK:
                    ok = manager.nack(
                        request.queue,
                        request.group,
                        offset,
                        requeue=not request.dead_letter,
                        delay=request.delay if request.HasField("delay") else None,
                        count=not request.uncounted,
                        elsewhere=request.elsewhere,
                    )
                elif action == pb.SETTLE_REJECT:
                    ok = manager.reject(request.queue, request.group, offset)
                else:
                    ok = manager.commit(request.queue, request.group, offset)
                settled.append(bool(ok))
        except QueueError as exc:
            raise error_to_status(exc) from None
        self._claim_dlq(request.queue)
        return pb.QueueSettleResponse(settled=settled)

    async def serve_consume(self, from_node: str, request: Any) -> Any:
        key = (from_node, request.consumer_id)
        old = self.proxies.pop(key, None)
        if old is not None and old.handle is not None:
            self.manager.cancel(old.handle)
        proxy = _Proxy(self, from_node, request.consumer_id, request.client_id)
        cursor = value_from_proto(request.cursor, "cursor") if request.HasField("cursor") else None
        try:
            proxy.handle = self.manager.consume(
                request.queue,
                request.group,
                proxy,
                filter=request.filter if request.HasField("filter") else None,
                credit=request.credit,
                cursor=cursor,
                auto_commit=request.auto_commit,
            )
        except QueueError as exc:
            raise error_to_status(exc) from None
        if request.paused:
            proxy.handle.pause()
        self.proxies[key] = proxy
        q = self.manager.get(request.queue)
        return pb.QueueConsumeResponse(stream=bool(q is not None and q.is_stream))

    async def serve_cancel(self, from_node: str, request: Any) -> Any:
        proxy = self.proxies.pop((from_node, request.consumer_id), None)
        if proxy is None:
            return pb.QueueCancelResponse(found=False)
        if proxy.handle is not None:
            self.manager.cancel(proxy.handle)
        return pb.QueueCancelResponse(found=True)

    async def serve_flow(self, from_node: str, request: Any) -> Any:
        proxy = self.proxies.get((from_node, request.consumer_id))
        if proxy is None or proxy.handle is None:
            return pb.QueueFlowResponse(found=False)
        handle = proxy.handle
        if handle.credit != request.credit:
            handle.set_credit(request.credit)
        if request.paused:
            handle.pause()
        else:
            handle.resume()
        return pb.QueueFlowResponse(found=True)

    def node_left(self, node: str) -> None:
        """``node`` left the cluster: cancel its consumers here (their unsettled
        deliveries go to the group's other consumers); consumers here of queues
        it owned are closed."""
        for key in [k for k in self.proxies if k[0] == node]:
            proxy = self.proxies.pop(key)
            if proxy.handle is not None:
                with contextlib.suppress(QueueError):
                    self.manager.cancel(proxy.handle)
        for cid, handle in list(self.remote.items()):
            if handle.owner == node:
                handle.active = False
                del self.remote[cid]

    def status(self) -> dict[str, Any]:
        return {
            "remote_consumers": len(self.remote),
            "consumers_for_other_nodes": len(self.proxies),
            "forwarded_appends": self.forwarded_appends,
            "forwarded_deliveries": self.forwarded_deliveries,
            "undeliverable": self.undeliverable,
            "remote_settle_failures": self.remote_settle_failures,
            "flow_updates": self.flow_updates,
            "flow_failures": self.flow_failures,
        }
