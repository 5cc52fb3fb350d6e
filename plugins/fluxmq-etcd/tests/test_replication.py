"""Session replicas without the network: the owner's store wrapper records every
write to a persistent session as an op, a replica applying those ops (or a full
copy) holds the same session, older epochs cannot overwrite newer copies, and
``sync()`` waits for the replica (or for a failure that releases it)."""

from __future__ import annotations

import asyncio

from fluxmq_etcd.codec import pb
from fluxmq_etcd.replication import ReplicatedStore, SessionCopies

from fluxmq_core.message import Message
from fluxmq_core.storage.memory import MemoryBrokerStore


def _store(epochs: dict[str, int]) -> ReplicatedStore:
    return ReplicatedStore(MemoryBrokerStore(), "a", epochs.get)


def _fill(store: ReplicatedStore) -> None:
    store.save_session("c1", {"protocol": "mqtt", "version": 5, "expiry": 300})
    store.save_subscription("c1", "x/#", {"qos": 1})
    store.save_subscription("c1", "gone/#", {"qos": 0})
    store.delete_subscription("c1", "gone/#")
    props = {"mqtt.subscription_ids": [7]}
    for i in range(4):
        store.enqueue("c1", Message(f"x/{i}", b"p%d" % i, 1, properties=props))
    seqs = [seq for seq, _m in store.shadow.sessions["c1"].queue.items()]
    store.remove_queued("c1", seqs[:1])
    store.drop_oldest("c1")
    store.save_inflight("c1", 3, {"dir": "out", "qos": 1, "state": 1, "message": {"t": b"x"}})
    store.save_inflight("c1", 4, {"dir": "in", "qos": 2, "state": 2, "message": None})
    store.delete_inflight("c1", 4)


def test_ops_rebuild_the_session_on_the_replica() -> None:
    store = _store({"c1": 11})
    _fill(store)
    ops, mark = store.take()
    assert mark == store.written == len(ops)
    replica = SessionCopies(fenced=True)
    wire = pb.ReplicateRequest(version=5, ops=ops).SerializeToString()
    for op in pb.ReplicateRequest.FromString(wire).ops:
        assert replica.apply("a", op, 5)
    held = replica.sessions["c1"]
    assert (held.origin, held.epoch, held.version) == ("a", 11, 5)
    snap = held.snapshot("c1")
    assert snap.protocol == "mqtt"
    assert snap.subscriptions == {"x/#": {"qos": 1}}
    assert [(m.payload, ids) for _s, m, _q, _r, ids in snap.queued] == [
        (b"p2", (7,)),
        (b"p3", (7,)),
    ]
    assert all(m.properties is None for _s, m, _q, _r, _i in snap.queued)
    assert list(snap.inflight) == [3]
    # The inner store got every write too.
    inner = store.inner
    assert inner.queue_length("c1") == 2
    # A full copy (for a new replica) gives the same session.
    full, _ = store.take_all()
    other = SessionCopies(fenced=True)
    for op in full:
        other.apply("a", op, 6)
    assert other.sessions["c1"].snapshot("c1").queued == snap.queued


def test_an_older_epoch_cannot_overwrite_a_newer_copy() -> None:
    replica = SessionCopies(fenced=True)
    new = _store({"c1": 20})
    new.save_session("c1", {"protocol": "mqtt", "expiry": 60})
    new.enqueue("c1", Message("x", b"new", 1))
    for op in new.take()[0]:
        replica.apply("b", op, 1)
    stale = ReplicatedStore(MemoryBrokerStore(), "a", {"c1": 10}.get)
    stale.save_session("c1", {"protocol": "mqtt", "expiry": 60})
    stale.enqueue("c1", Message("x", b"old", 1))
    stale.delete_session("c1")
    assert not any(replica.apply("a", op, 2) for op in stale.take()[0])
    held = replica.sessions["c1"]
    assert held.origin == "b"
    assert [m.payload for m in held.queue.values()] == [b"new"]
    # A newer owner replaces the copy; its owner's delete removes it.
    newer = ReplicatedStore(MemoryBrokerStore(), "c", {"c1": 30}.get)
    newer.save_session("c1", {"protocol": "mqtt", "expiry": 60})
    newer.delete_session("c1")
    for op in newer.take()[0]:
        assert replica.apply("c", op, 3)
    assert "c1" not in replica.sessions
    assert replica.drop_origin("b") == 0


async def test_sync_waits_for_the_replica_and_a_failure_releases_it() -> None:
    store = _store({"c1": 1})
    await store.sync()  # no sender: nothing to wait for
    store.active = True
    store.save_session("c1", {"protocol": "mqtt"})
    waiter = asyncio.ensure_future(store.sync())
    await asyncio.sleep(0)
    assert not waiter.done()
    _ops, mark = store.take()
    store.reached(mark)
    await asyncio.wait_for(waiter, 1)
    assert store.unreplicated_syncs == 0
    store.enqueue("c1", Message("x", b"1", 1))
    waiter = asyncio.ensure_future(store.sync())
    await asyncio.sleep(0)
    _ops, mark = store.take()
    store.reached(mark, replicated=False)  # the replica did not answer
    await asyncio.wait_for(waiter, 1)
    assert store.unreplicated_syncs == 1
    # Stopping releases whoever still waits.
    store.enqueue("c1", Message("x", b"2", 1))
    waiter = asyncio.ensure_future(store.sync())
    await asyncio.sleep(0)
    store.release_all()
    await asyncio.wait_for(waiter, 1)
    assert store.stats()["replicated_sessions"] == 1


def test_a_reset_keeps_the_copies_of_an_earlier_run_until_replaced() -> None:
    replica = SessionCopies(fenced=True)
    old_run = _store({"c1": 5})
    old_run.save_session("c1", {"protocol": "mqtt"})
    old_run.enqueue("c1", Message("x", b"kept", 1))
    for op in old_run.take()[0]:
        replica.apply("a", op, 1, run=100)
    # Node a restarted (run 200): its first request resets only run 200's copies.
    assert replica.drop_origin("a", 200) == 0
    assert [m.payload for m in replica.sessions["c1"].queue.values()] == [b"kept"]
    # The new run writing the same session starts a fresh copy (its queue
    # sequence numbers are not the old run's).
    new_run = _store({"c1": 9})
    new_run.save_session("c1", {"protocol": "mqtt"})
    for op in new_run.take()[0]:
        replica.apply("a", op, 2, run=200)
    held = replica.sessions["c1"]
    assert (held.run, held.epoch, list(held.queue)) == (200, 9, [])
    assert replica.drop_origin("a", 200) == 1
