"""Session replicas: a node's persistent sessions copied to one other node, so that
a survivor can resume them (offline queue and QoS 1/2 in flight included) when the
node dies.

Where the copy comes from: a persistent MQTT session mirrors every change into the
core's :class:`~fluxmq_core.storage.base.BrokerStore` (record, subscriptions,
offline queue, in-flight exchanges) with plain synchronous calls, and acknowledges
to a publisher only after ``await store.sync()``. The etcd driver wraps the
node's store in a :class:`ReplicatedStore` before the protocols start: each of
those writes goes to the real store as before and is also recorded as a
:class:`~fluxmq_etcd._proto.cluster_pb2.SessionOp`, and ``sync()`` resolves only
once the ops written before it reached the node's *session replica* (the next live
node in the ring of node ids) over gRPC (``ReplicateSessions``). So what was
acknowledged to a publisher is on two nodes. When the replica is down or
unreachable the acknowledgement does not wait (counted as ``unreplicated_syncs``):
replication never costs availability.

The replica keeps the copies in a :class:`SessionCopies` (the same structure the
owner keeps as its *shadow*, from which a full copy is sent whenever the replica
changes). Each copy carries the owner's fencing epoch for the session (the etcd
revision of its claim): an op with an older epoch than the copy held is stale and
ignored, so an owner that lost a session cannot overwrite the new owner's copy.
A node resuming a session whose owner is gone asks every live node
(``FetchReplica``) and takes the copy with the highest (epoch, version).

Not copied: wills (the driver keeps those in etcd, published once by a survivor),
retained messages (etcd) and queues (they have a single copy).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from fluxmq_core.cluster.base import QueuedEntry, SessionSnapshot
from fluxmq_core.message import Message
from fluxmq_core.storage.memory import copy_message, copy_record

from .codec import CodecError, message_from_proto, message_to_proto, pb, struct_from_proto
from .codec import struct_to_proto as _struct

__all__ = ["HeldSession", "ReplicatedStore", "SessionCopies"]

#: The store form of an MQTT offline-queue entry keeps its subscription ids in this
#: property (``fluxmq_mqtt.session``); a snapshot carries them separately.
MQTT_SUB_IDS = "mqtt.subscription_ids"

K = pb.SessionOpKind


class HeldSession:
    """One session as a store holds it: record, subscriptions, offline queue (store
    sequence -> the stored message), in-flight records; plus whose copy it is."""

    __slots__ = ("origin", "run", "epoch", "version", "record", "subs", "queue", "inflight")

    def __init__(self, origin: str, epoch: int, run: int = 0) -> None:
        self.origin = origin
        self.run = run
        self.epoch = epoch
        self.version = 0
        self.record: dict[str, Any] | None = None
        self.subs: dict[str, dict[str, Any]] = {}
        self.queue: OrderedDict[int, Message] = OrderedDict()
        self.inflight: dict[int, dict[str, Any]] = {}

    def snapshot(self, client_id: str) -> SessionSnapshot:
        """The session as the protocol imports it after a takeover (no will)."""
        queued: list[QueuedEntry] = []
        for seq, stored in self.queue.items():
            props = dict(stored.properties or {})
            ids = tuple(int(i) for i in props.pop(MQTT_SUB_IDS, ()) or ())
            message = stored.copy(properties=props or None)
            queued.append((seq, message, stored.qos, stored.retain, ids))
        record = dict(self.record or {})
        return SessionSnapshot(
            client_id,
            str(record.get("protocol") or ""),
            record=record,
            subscriptions={f: dict(o) for f, o in self.subs.items()},
            queued=queued,
            inflight=dict(self.inflight),
            epoch=self.epoch,
        )

    def ops(self, client_id: str) -> list[pb.SessionOp]:
        """Every op that rebuilds this session from nothing (a full copy)."""
        e = self.epoch
        out = []
        if self.record is not None:
            out.append(_op(K.SESSION_OP_SAVE, client_id, e, record=self.record))
        for f, options in self.subs.items():
            out.append(_op(K.SESSION_OP_SAVE_SUBSCRIPTION, client_id, e, record=options, filter=f))
        for seq, message in self.queue.items():
            out.append(_op(K.SESSION_OP_ENQUEUE, client_id, e, seq=seq, message=message))
        for pid, record in self.inflight.items():
            out.append(_op(K.SESSION_OP_SAVE_INFLIGHT, client_id, e, record=record, packet_id=pid))
        return out


def _op(
    kind: int,
    client_id: str,
    epoch: int,
    *,
    record: dict[str, Any] | None = None,
    filter: str = "",
    seq: int = 0,
    seqs: Iterable[int] = (),
    packet_id: int = 0,
    message: Message | None = None,
) -> pb.SessionOp:
    op = pb.SessionOp(
        kind=kind,  # type: ignore[arg-type]
        client_id=client_id,
        epoch=epoch,
        filter=filter,
        seq=seq,
        seqs=list(seqs),
        packet_id=packet_id,
    )
    if record is not None:
        op.record.CopyFrom(_struct(record, f"session {client_id!r} record"))
    if message is not None:
        op.message.CopyFrom(message_to_proto(message))
    return op


class SessionCopies:
    """Sessions by client id: a node's shadow of its own store (``fenced=False``)
    or the copies it keeps as a replica for other nodes (``fenced=True``: an op
    older than the copy held is ignored, a different owner with a newer epoch
    starts a fresh copy)."""

    def __init__(self, *, fenced: bool) -> None:
        self.fenced = fenced
        self.sessions: dict[str, HeldSession] = {}

    def __len__(self) -> int:
        return len(self.sessions)

    def drop_origin(self, origin: str, run: int | None = None) -> int:
        """Forget the copies of ``origin`` (of its run ``run`` only, if given)."""
        gone = [
            cid
            for cid, h in self.sessions.items()
            if h.origin == origin and (run is None or h.run == run)
        ]
        for cid in gone:
            del self.sessions[cid]
        return len(gone)

    def held(self, client_id: str, origin: str, epoch: int, run: int = 0) -> HeldSession | None:
        """The copy an op from ``origin`` (its run ``run``) under ``epoch`` applies
        to (made if needed), or None when the op is stale. A copy from another
        owner, or from an earlier run of the same owner (whose queue sequence
        numbers mean nothing now), is replaced by a fresh one."""
        h = self.sessions.get(client_id)
        if not self.fenced:
            if h is None:
                h = self.sessions[client_id] = HeldSession(origin, epoch)
            if epoch:
                h.epoch = epoch
            return h
        if h is not None and epoch < h.epoch:
            return None
        if h is None or h.origin != origin or h.run != run:
            h = self.sessions[client_id] = HeldSession(origin, epoch, run)
        h.epoch = max(h.epoch, epoch)
        return h

    def apply(self, origin: str, op: pb.SessionOp, version: int = 0, run: int = 0) -> bool:
        """Apply one op received from ``origin`` (its run ``run``); False when it
        was stale."""
        cid = op.client_id
        kind = op.kind
        if kind == K.SESSION_OP_DELETE:
            h = self.sessions.get(cid)
            if h is None or h.origin != origin or op.epoch < h.epoch:
                return False
            del self.sessions[cid]
            return True
        h = self.held(cid, origin, op.epoch, run)
        if h is None:
            return False
        h.version = version
        if kind == K.SESSION_OP_SAVE:
            h.record = struct_from_proto(op.record, "session record")
        elif kind == K.SESSION_OP_SAVE_SUBSCRIPTION:
            h.subs[op.filter] = struct_from_proto(op.record, "subscription")
        elif kind == K.SESSION_OP_DELETE_SUBSCRIPTION:
            h.subs.pop(op.filter, None)
        elif kind == K.SESSION_OP_ENQUEUE:
            if not op.HasField("message"):
                raise CodecError(f"session {cid!r}: an enqueue without a message")
            h.queue[op.seq] = message_from_proto(op.message)
        elif kind == K.SESSION_OP_REMOVE_QUEUED:
            for seq in op.seqs:
                h.queue.pop(seq, None)
        elif kind == K.SESSION_OP_SAVE_INFLIGHT:
            h.inflight[op.packet_id] = struct_from_proto(op.record, "in-flight record")
        elif kind == K.SESSION_OP_DELETE_INFLIGHT:
            h.inflight.pop(op.packet_id, None)
        else:
            raise CodecError(f"session {cid!r}: unknown op kind {kind} (sent by a newer node?)")
        return True


class ReplicatedStore:
    """A :class:`~fluxmq_core.storage.base.BrokerStore` that writes through to
    ``inner`` and records every change to a session as an op for the replica (see
    the module docstring). Everything else is the inner store's.
    ``acks_wait_for_sync`` is True so that protocols wait for :meth:`sync` (the
    copy on the replica) before acknowledging; ``durable`` is the inner store's,
    since what survives a restart of this node is what the inner store keeps (a
    memory store's delayed wills are still published when the node stops)."""

    acks_wait_for_sync = True

    def __init__(self, inner: Any, node_id: str, epoch_of: Callable[[str], int | None]) -> None:
        self.inner = inner
        self.node_id = node_id
        self._epoch_of = epoch_of
        self.shadow = SessionCopies(fenced=False)
        self.pending: list[pb.SessionOp] = []
        #: Ops written so far / ops known to be on the replica (or given up on).
        self.written = 0
        self.done = 0
        #: Whether a sender runs: without one, sync() does not wait.
        self.active = False
        self.wake = asyncio.Event()
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self.unreplicated_syncs = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def name(self) -> str:
        return str(getattr(self.inner, "name", ""))

    @property
    def durable(self) -> bool:
        return bool(getattr(self.inner, "durable", False))

    # --- what the owner records ------------------------------------------------------

    def _epoch(self, client_id: str) -> int:
        epoch = self._epoch_of(client_id)
        if epoch is None:
            h = self.shadow.sessions.get(client_id)
            epoch = h.epoch if h is not None else 0
        return epoch

    def _record(self, op: pb.SessionOp) -> None:
        self.pending.append(op)
        self.written += 1
        if len(self.pending) == 1:
            self.wake.set()

    def _held(self, client_id: str) -> tuple[HeldSession, int]:
        epoch = self._epoch(client_id)
        h = self.shadow.held(client_id, self.node_id, epoch)
        assert h is not None  # the shadow is not fenced
        return h, epoch

    def save_session(self, client_id: str, record: dict[str, Any]) -> None:
        self.inner.save_session(client_id, record)
        h, epoch = self._held(client_id)
        h.record = copy_record(record)
        self._record(_op(K.SESSION_OP_SAVE, client_id, epoch, record=h.record))

    def delete_session(self, client_id: str) -> None:
        self.inner.delete_session(client_id)
        epoch = self._epoch(client_id)
        if self.shadow.sessions.pop(client_id, None) is not None:
            self._record(_op(K.SESSION_OP_DELETE, client_id, epoch))

    def save_subscription(self, client_id: str, topic_filter: str, options: dict[str, Any]) -> None:
        self.inner.save_subscription(client_id, topic_filter, options)
        h, epoch = self._held(client_id)
        h.subs[topic_filter] = copy_record(options)
        self._record(
            _op(
                K.SESSION_OP_SAVE_SUBSCRIPTION,
                client_id,
                epoch,
                record=h.subs[topic_filter],
                filter=topic_filter,
            )
        )

    def delete_subscription(self, client_id: str, topic_filter: str) -> None:
        self.inner.delete_subscription(client_id, topic_filter)
        h, epoch = self._held(client_id)
        h.subs.pop(topic_filter, None)
        self._record(_op(K.SESSION_OP_DELETE_SUBSCRIPTION, client_id, epoch, filter=topic_filter))

    def enqueue(self, client_id: str, message: Message) -> int:
        seq = int(self.inner.enqueue(client_id, message))
        h, epoch = self._held(client_id)
        h.queue[seq] = copy_message(message)
        self._record(_op(K.SESSION_OP_ENQUEUE, client_id, epoch, seq=seq, message=message))
        return seq

    def remove_queued(self, client_id: str, seqs: Iterable[int]) -> None:
        seqs = list(seqs)
        self.inner.remove_queued(client_id, seqs)
        h, epoch = self._held(client_id)
        for seq in seqs:
            h.queue.pop(seq, None)
        self._record(_op(K.SESSION_OP_REMOVE_QUEUED, client_id, epoch, seqs=seqs))

    def drop_oldest(self, client_id: str) -> Message | None:
        dropped = self.inner.drop_oldest(client_id)
        h, epoch = self._held(client_id)
        if h.queue:
            seq, _m = h.queue.popitem(last=False)
            self._record(_op(K.SESSION_OP_REMOVE_QUEUED, client_id, epoch, seqs=[seq]))
        return dropped

    def save_inflight(self, client_id: str, packet_id: int, record: dict[str, Any]) -> None:
        self.inner.save_inflight(client_id, packet_id, record)
        h, epoch = self._held(client_id)
        h.inflight[packet_id] = copy_record(record)
        self._record(
            _op(
                K.SESSION_OP_SAVE_INFLIGHT,
                client_id,
                epoch,
                record=h.inflight[packet_id],
                packet_id=packet_id,
            )
        )

    def delete_inflight(self, client_id: str, packet_id: int) -> None:
        self.inner.delete_inflight(client_id, packet_id)
        h, epoch = self._held(client_id)
        h.inflight.pop(packet_id, None)
        self._record(_op(K.SESSION_OP_DELETE_INFLIGHT, client_id, epoch, packet_id=packet_id))

    async def load(self) -> int:
        """Fill the shadow from the inner store (a durable store's sessions from
        before a restart); returns how many sessions it holds."""
        inner = self.inner
        for cid in await inner.list_sessions():
            record = await inner.load_session(cid)
            if record is None:
                continue
            h = HeldSession(self.node_id, 0)
            h.record = record
            h.subs = dict(await inner.load_subscriptions(cid))
            for seq, message in await inner.queued(cid):
                h.queue[seq] = message
            h.inflight = {int(p): r for p, r in (await inner.load_inflight(cid)).items()}
            self.shadow.sessions[cid] = h
        return len(self.shadow)

    # --- durability: the inner store's, then the replica's ----------------------------

    async def sync(self) -> None:
        """Resolve once everything written before the call is durable in the inner
        store and on the replica (or the replica is unreachable: counted)."""
        mark = self.written
        await self.inner.sync()
        if mark <= self.done or not self.active:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((mark, future))
        await future

    def take(self) -> tuple[list[pb.SessionOp], int]:
        """The ops written since the last take, and the mark they reach."""
        ops, self.pending = self.pending, []
        return ops, self.written

    def take_all(self) -> tuple[list[pb.SessionOp], int]:
        """A full copy of every session (for a new replica); pending ops are in it."""
        self.pending = []
        ops: list[pb.SessionOp] = []
        for cid, h in self.shadow.sessions.items():
            ops.extend(h.ops(cid))
        return ops, self.written

    def reached(self, mark: int, *, replicated: bool = True) -> None:
        """Ops up to ``mark`` are on the replica (or, ``replicated=False``, will not
        be): wake the syncs waiting for them."""
        if mark <= self.done:
            return
        self.done = mark
        keep = []
        for want, future in self._waiters:
            if want <= mark:
                if not replicated:
                    self.unreplicated_syncs += 1
                if not future.done():
                    future.set_result(None)
            else:
                keep.append((want, future))
        self._waiters = keep

    def release_all(self) -> None:
        """No sender any more (stopping): nobody waits for a replica."""
        self.active = False
        self.reached(self.written, replicated=False)

    def stats(self) -> dict[str, int]:
        out = dict(self.inner.stats())
        out["replicated_sessions"] = len(self.shadow)
        out["unreplicated_syncs"] = self.unreplicated_syncs
        return out


def version_base() -> int:
    """A node's run and the start of its replication request versions, which grow
    across restarts: the wall clock in microseconds."""
    return time.time_ns() // 1000
