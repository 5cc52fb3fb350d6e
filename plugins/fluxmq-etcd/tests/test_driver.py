"""The etcd driver against a real etcd, with brokers in threads (core + this plugin
only): membership, the subscription index, forwarding through gRPC peers, the admin
API and readiness through an etcd outage."""

from __future__ import annotations

import asyncio
import json
import queue
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aetcd
import pytest
from fluxmq_etcd.driver import EtcdCluster
from fluxmq_etcd.testing import WAIT, EtcdServer, Sink, node, until

from fluxmq_core.message import Message
from fluxmq_core.testing.broker import BrokerThread


def members(b: BrokerThread) -> set[str]:
    return set(b.call_soon(lambda: set(b.context.cluster.members)))


def subscribe(b: BrokerThread, sink: Sink, topic_filter: str) -> None:
    b.call_soon(b.context.router.subscribe, sink, topic_filter)


def http_json(b: BrokerThread, path: str) -> tuple[int, Any]:
    host, port = b.address("http.listen") if "http.listen" in b.context.bound else (None, None)
    if host is None:
        name = next(n for n in b.context.bound if n.startswith("http"))
        host, port = b.context.bound[name]
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def test_nodes_see_each_other(pair: tuple[BrokerThread, BrokerThread]) -> None:
    a, b = pair
    until(lambda: members(a) == {"a", "b"}, "a to see b")
    until(lambda: members(b) == {"a", "b"}, "b to see a")
    status, body = http_json(a, "/api/v1/cluster")
    assert status == 200
    assert body["driver"] == "etcd" and body["node_id"] == "a" and body["ready"] is True
    rows = {n["node_id"]: n for n in body["nodes"]}
    assert set(rows) == {"a", "b"}
    assert rows["a"]["local"] and not rows["b"]["local"]
    assert rows["b"]["address"].startswith("127.0.0.1:")


def test_publish_reaches_a_subscriber_on_another_node_once(
    pair: tuple[BrokerThread, BrokerThread],
) -> None:
    a, b = pair
    sink = Sink("s1")
    subscribe(b, sink, "t/+")
    subscribe(b, Sink("s2"), "t/#")  # a second filter on b: still one copy to b
    until(lambda: a.call_soon(a.context.cluster.index.match, "t/x") == {"b"}, "the index")
    msg = Message(
        "t/x",
        b"hello",
        1,
        user_properties=[("k", "v")],
        content_type="text/plain",
        origin_client="pub",
        origin_protocol="test",
    )
    n = a.call_soon(a.context.publish, msg)
    assert n == 1  # no local subscriber, one node reached
    got, delivery = sink.got.get(timeout=WAIT)
    assert got.payload == b"hello" and got.qos == 1
    assert got.user_properties == [("k", "v")] and got.content_type == "text/plain"
    assert delivery.qos == 0
    # Once: a marker published after it is the next thing the sink sees.
    a.call_soon(a.context.publish, Message("t/y", b"marker"))
    assert sink.got.get(timeout=WAIT)[0].payload == b"marker"
    # Acknowledged by b: counted once the batch's answer came back.
    until(lambda: a.call_soon(a.context.cluster.status)["peers"]["forwarded"] == 2, "2 acked")
    # Both nodes run on this host: the batches took the same-host link, not gRPC.
    peers = a.call_soon(a.context.cluster.status)["peers"]
    assert peers["link_forwarded"] == 2 and peers["peers"]["b"]["link"] == "up"
    link = b.call_soon(b.context.cluster.status)["peers"]["link"]
    assert link == str(Path(b.data_dir).resolve() / "cluster-b.sock") or link.startswith("@")


def test_local_link_off_forwards_over_grpc(etcd: EtcdServer, tmp_path: Path) -> None:
    a = node(etcd, "a", local_link="off")
    config = {"driver": "etcd", "node_id": "b", "etcd_endpoints": [etcd.endpoint]}
    b = BrokerThread(plugins=["etcd"], config={"cluster": config}, data_dir=str(tmp_path))
    b.start()
    try:
        # b serves a link (it is on), a neither serves nor uses one (off).
        assert (tmp_path / "cluster-b.sock").is_socket()
        sink = Sink("s1")
        subscribe(b, sink, "t/+")
        until(lambda: a.call_soon(a.context.cluster.index.match, "t/x") == {"b"}, "the index")
        a.call_soon(a.context.publish, Message("t/x", b"hello"))
        assert sink.got.get(timeout=WAIT)[0].payload == b"hello"
        until(lambda: a.call_soon(a.context.cluster.status)["peers"]["forwarded"] == 1, "the ack")
        peers = a.call_soon(a.context.cluster.status)["peers"]
        assert peers["link_forwarded"] == 0 and peers["link"] is None
        assert peers["peers"]["b"]["link"] == "off"
    finally:
        b.close()
        a.close()
    # Stopped: the link's socket file is gone.
    assert not (tmp_path / "cluster-b.sock").exists()


def test_unsubscribe_stops_forwarding(pair: tuple[BrokerThread, BrokerThread]) -> None:
    a, b = pair
    sink = Sink("s1")
    subscribe(b, sink, "u/1")
    until(lambda: a.call_soon(a.context.cluster.index.match, "u/1"), "b's filter at a")
    b.call_soon(b.context.router.unsubscribe, sink, "u/1")
    until(lambda: not a.call_soon(a.context.cluster.index.match, "u/1"), "b's filter gone")
    assert a.call_soon(a.context.publish, Message("u/1", b"x")) == 0


def test_the_route_of_a_topic_follows_subscriptions_and_membership(
    pair: tuple[BrokerThread, BrokerThread],
) -> None:
    """A publish's route beyond its node is cached per topic: a filter appearing or
    going at another node, and that node's record going, each change it."""
    a, b = pair
    until(lambda: members(a) == {"a", "b"}, "a to see b")
    # Nobody elsewhere wants r/1 yet: a caches that (and forwards nothing).
    assert a.call_soon(a.context.publish, Message("r/1", b"early")) == 0
    sink = Sink("s1")
    subscribe(b, sink, "r/+")
    until(lambda: a.call_soon(a.context.cluster.index.match, "r/1") == {"b"}, "b's filter at a")
    assert a.call_soon(a.context.publish, Message("r/1", b"one")) == 1
    assert sink.got.get(timeout=WAIT)[0].payload == b"one"
    # b's node record goes (as when b leaves): a stops forwarding to it at once,
    # though b's filters are still in a's index.
    record = a.call_soon(lambda: a.context.cluster.members["b"])

    def drop_b() -> None:
        cluster = a.context.cluster
        del cluster.members["b"]
        cluster._forget_routes()  # what the watch does on a node record's deletion

    a.call_soon(drop_b)
    assert a.call_soon(a.context.cluster.index.match, "r/1") == {"b"}
    assert a.call_soon(a.context.publish, Message("r/1", b"gone")) == 0

    def restore_b() -> None:
        cluster = a.context.cluster
        cluster.members["b"] = record
        cluster._forget_routes()

    a.call_soon(restore_b)
    assert a.call_soon(a.context.publish, Message("r/1", b"two")) == 1
    assert sink.got.get(timeout=WAIT)[0].payload == b"two"
    b.call_soon(b.context.router.unsubscribe, sink, "r/+")
    until(lambda: not a.call_soon(a.context.cluster.index.match, "r/1"), "b's filter gone")
    assert a.call_soon(a.context.publish, Message("r/1", b"late")) == 0


def test_retained_publish_reaches_every_node(pair: tuple[BrokerThread, BrokerThread]) -> None:
    a, b = pair
    until(lambda: members(a) == {"a", "b"}, "a to see b")
    a.call_soon(a.context.publish, Message("r/1", b"kept", retain=True, content_type="t/p"))
    got = until(lambda: b.call_soon(b.context.router.get_retained, "r/1"), "the copy on b")
    assert got.payload == b"kept" and got.content_type == "t/p"
    # Cleared on a: cleared on b.
    a.call_soon(a.context.publish, Message("r/1", b"", retain=True))
    until(lambda: b.call_soon(b.context.router.get_retained, "r/1") is None, "cleared on b")


@pytest.mark.parametrize("inline_max", [65536, 8], ids=["in-etcd", "fetched-over-grpc"])
def test_a_node_that_joins_later_has_the_retained_messages(
    etcd: EtcdServer, inline_max: int
) -> None:
    a = node(etcd, "a", retained_inline_max=inline_max)
    c = None
    try:
        payload = b"a retained payload longer than eight bytes"
        a.call_soon(a.context.publish, Message("r/late", payload, 1, retain=True))
        until(lambda: a.call_soon(lambda: not a.context.cluster._retained_pending), "written")
        c = node(etcd, "c", retained_inline_max=inline_max)
        got = until(lambda: c.call_soon(c.context.router.get_retained, "r/late"), "on c")
        assert got.payload == payload and got.qos == 1
        held = a.call_soon(lambda: len(a.context.cluster._retained_held))
        assert held == (1 if inline_max == 8 else 0)
    finally:
        if c is not None:
            c.close()
        a.close()


def test_a_stopped_node_leaves(etcd: EtcdServer) -> None:
    a = node(etcd, "a")
    b = node(etcd, "b")
    try:
        sink = Sink("s")
        subscribe(b, sink, "gone/#")
        until(lambda: a.call_soon(a.context.cluster.index.match, "gone/1"), "b's filter")
        b.close()
        until(lambda: members(a) == {"a"}, "b to leave")
        assert not a.call_soon(a.context.cluster.index.match, "gone/1")
    finally:
        b.close()
        a.close()


def test_etcd_outage_not_ready_then_resync(etcd: EtcdServer) -> None:
    a = node(etcd, "a")
    b = node(etcd, "b")
    try:
        until(lambda: members(a) == {"a", "b"}, "a to see b")
        assert http_json(a, "/ready")[1]["checks"]["cluster"] is True
        etcd.kill()
        until(lambda: http_json(a, "/ready")[0] == 503, "a to report not ready")
        assert http_json(a, "/ready")[1]["checks"]["cluster"] is False
        # While etcd is away b subscribes; a must learn it after the resync.
        sink = Sink("late")
        subscribe(b, sink, "late/#")
        etcd.restart()
        until(lambda: http_json(a, "/ready")[0] == 200, "a ready again", timeout=30)
        until(
            lambda: a.call_soon(a.context.cluster.index.match, "late/x") == {"b"},
            "the filter made during the outage",
            timeout=30,
        )
        a.call_soon(a.context.publish, Message("late/x", b"after"))
        assert sink.got.get(timeout=WAIT)[0].payload == b"after"
    finally:
        b.close()
        a.close()


def test_a_node_binds_its_listeners_only_once_it_joined_the_cluster(
    etcd: EtcdServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Start-up order: the driver's start returns registered and synced, and only
    then are the protocol listeners bound (with SO_REUSEPORT a bound socket gets
    connections at once, so binding earlier would hand clients to a node that
    cannot claim their sessions yet)."""
    from fluxmq_core.transport import ListenerSet

    steps: list[tuple[str, Any]] = []
    joined = EtcdCluster.start
    bind = ListenerSet.bind

    async def start(self: EtcdCluster, context: Any) -> None:
        steps.append(("cluster start", sorted(context.bound)))
        await joined(self, context)
        steps.append(("cluster joined", self.ready and self.node_id in self.members))

    async def bind_after(self: ListenerSet, specs: Any) -> None:
        steps.append(("bind", sorted(s.name for s in specs if s.address)))
        await bind(self, specs)

    monkeypatch.setattr(EtcdCluster, "start", start)
    monkeypatch.setattr(ListenerSet, "bind", bind_after)
    a = node(etcd, "a")
    try:
        assert [s[0] for s in steps] == ["cluster start", "cluster joined", "bind"]
        assert steps[0][1] == []  # nothing bound while joining
        assert steps[1][1] is True
        assert "http.bind" in steps[2][1]
        assert http_json(a, "/ready")[0] == 200
    finally:
        a.close()


def test_unreachable_etcd_is_a_clear_start_error() -> None:
    from fluxmq_etcd.embedded import free_port

    with pytest.raises(Exception, match="cannot join the cluster through etcd"):
        BrokerThread(
            plugins=["etcd"],
            config={
                "cluster": {
                    "driver": "etcd",
                    "node_id": "lonely",
                    "etcd_endpoints": [f"http://127.0.0.1:{free_port()}"],
                    "lease_ttl": 2.0,
                    "etcd_timeout": 0.5,
                }
            },
            start_timeout=30,
        ).start()


def test_session_claims_are_compare_and_swap_with_a_fencing_epoch(
    pair: tuple[BrokerThread, BrokerThread],
) -> None:
    a, b = pair
    ca: EtcdCluster = a.context.cluster
    cb: EtcdCluster = b.context.cluster
    lost: queue.Queue[tuple[str, int]] = queue.Queue()
    a.call_soon(ca.watch_sessions, lambda cid, epoch: lost.put((cid, epoch)))
    first = a.call(ca.acquire_session("c1"))
    assert first.node_id == "a" and a.call_soon(ca.claim_valid, first)
    assert a.call(ca.acquire_session("c1")) == first  # already ours: same claim
    second = b.call(cb.acquire_session("c1"))
    assert second.node_id == "b" and second.epoch > first.epoch
    # a hears it lost the session, and its old claim is fenced off.
    assert lost.get(timeout=WAIT) == ("c1", first.epoch)
    assert not a.call_soon(ca.claim_valid, first)
    a.call(ca.release_session(first))  # stale: releases nothing
    assert b.call_soon(cb.claim_valid, second)
    third = a.call(ca.acquire_session("c1"))  # a takes it back: a newer epoch again
    assert third.epoch > second.epoch
    until(lambda: not b.call_soon(cb.claim_valid, second), "b to lose it")
    a.call(ca.release_session(third))
    fourth = b.call(cb.acquire_session("c1"))  # released: free to take
    assert fourth.epoch > third.epoch


def test_a_claim_racing_the_old_owners_release_takes_the_session(
    pair: tuple[BrokerThread, BrokerThread],
) -> None:
    """A client that disconnects from a and at once connects to b: a releases the
    key between b's read and b's compare-and-swap. Nobody owns the session then, so
    b claims it again instead of refusing the client as if another node had won."""
    a, b = pair
    ca: EtcdCluster = a.context.cluster
    cb: EtcdCluster = b.context.cluster
    first = a.call(ca.acquire_session("c6"))
    client = b.call_soon(lambda: cb._client)
    real_get = client.get
    reads = []

    async def get_then_release(key: bytes) -> Any:
        value = await real_get(key)
        reads.append(value)
        if len(reads) == 1:
            # a's loop runs in its own thread: the release lands before b's swap.
            a.call(ca.release_session(first))
        return value

    client.get = get_then_release
    try:
        claim = b.call(cb.acquire_session("c6"))
    finally:
        del client.get
    assert reads[0] is not None and bytes(reads[0].value) == b"a"
    assert claim.node_id == "b" and claim.epoch > first.epoch
    assert b.call_soon(cb.claim_valid, claim)


def test_a_lost_lease_drops_every_claim(pair: tuple[BrokerThread, BrokerThread]) -> None:

    a, _b = pair
    ca: EtcdCluster = a.context.cluster
    lost: queue.Queue[tuple[str, int]] = queue.Queue()
    a.call_soon(ca.watch_sessions, lambda cid, epoch: lost.put((cid, epoch)))
    claim = a.call(ca.acquire_session("c2"))
    lease = ca._lease_id
    endpoint = ca.endpoints[0]

    async def revoke() -> None:
        async with aetcd.Client(endpoint.host, endpoint.port) as client:
            await client.revoke_lease(lease)

    asyncio.run(revoke())  # as if the lease had expired during a partition
    assert lost.get(timeout=WAIT) == ("c2", claim.epoch)
    assert not a.call_soon(ca.claim_valid, claim)
    # The node registers again under a new lease and can claim anew.
    until(lambda: a.call_soon(lambda: ca.ready and ca._lease_id not in (None, lease)), "re-join")
    assert a.call(ca.acquire_session("c2")).epoch > claim.epoch


def test_claims_are_refused_while_etcd_is_unreachable(etcd: EtcdServer) -> None:
    from fluxmq_core.cluster import ClusterError

    a = node(etcd, "a")
    try:
        etcd.kill()
        until(lambda: not a.call_soon(lambda: a.context.cluster.ready), "a not ready")
        with pytest.raises(ClusterError, match="etcd is unreachable"):
            a.call(a.context.cluster.acquire_session("c3"))
    finally:
        a.close()


def test_a_claim_made_while_etcd_is_away_waits_for_the_resync(etcd: EtcdServer) -> None:
    """A client connecting while the node's etcd session is being re-established
    is not refused at once: the claim waits (up to ``etcd_timeout``) and succeeds
    once the node is registered again."""
    a = node(etcd, "a", etcd_timeout=30.0)
    try:
        ca = a.context.cluster
        etcd.kill()
        until(lambda: not a.call_soon(lambda: ca.ready), "a not ready")
        assert a.loop is not None
        pending = asyncio.run_coroutine_threadsafe(ca.acquire_session("c5"), a.loop)
        etcd.restart()
        claim = pending.result(timeout=40)
        assert claim.node_id == "a"
        assert a.call_soon(lambda: ca.ready and ca.claim_valid(claim))
    finally:
        a.close()


def test_a_share_group_gets_each_message_once_across_nodes(etcd: EtcdServer) -> None:
    a, b, c = (node(etcd, n) for n in ("a", "b", "c"))
    try:
        a1, b1, b2, plain = Sink("a1"), Sink("b1"), Sink("b2"), Sink("plain")
        subscribe(a, a1, "$share/g/s/#")
        subscribe(b, b1, "$share/g/s/#")
        subscribe(b, b2, "$share/g/s/+")  # another group key on b: its own group
        subscribe(b, plain, "s/#")
        for x in (a, c):
            until(
                lambda x=x: (
                    x.call_soon(x.context.cluster.index.match_shared, "s/1")
                    == (("$share/g/s/#", (("a", 1), ("b", 1))), ("$share/g/s/+", (("b", 1),)))
                ),
                "the share groups everywhere",
            )
        # From a (a member of one group) and from c (a member of none).
        for i in range(6):
            a.call_soon(a.context.publish, Message("s/1", f"a{i}".encode()))
            c.call_soon(c.context.publish, Message("s/1", f"c{i}".encode()))
        sent = {f"{x}{i}".encode() for x in "ac" for i in range(6)}

        def drain(sink: Sink, n: int) -> list[bytes]:
            return [sink.got.get(timeout=WAIT)[0].payload for _ in range(n)]

        # Plain subscriber: every message once. Group $share/g/s/+ (only on b): every
        # message once. Group $share/g/s/#: every message once, split over a and b.
        assert sorted(drain(plain, 12)) == sorted(sent)
        assert sorted(drain(b2, 12)) == sorted(sent)
        # Each publisher alternates between the two holding nodes: 3 + 3 each.
        group = drain(a1, 6) + drain(b1, 6)
        assert sorted(group) == sorted(sent)
        # Nothing more arrives: each stream into a1 and b1 (local, c->a, a->b, c->b)
        # is FIFO, so markers sent along all of them come next. The turns continue:
        # 6 -> a, 7 -> b, for both publishers.
        for x in (a, c):
            for m in (b"end-1", b"end-2"):
                x.call_soon(x.context.publish, Message("s/x", m))
        assert sorted(drain(a1, 2)) == [b"end-1", b"end-1"]
        assert sorted(drain(b1, 2)) == [b"end-2", b"end-2"]
    finally:
        for x in (c, b, a):
            x.close()


def test_a_share_group_is_fair_to_members_not_nodes(etcd: EtcdServer) -> None:
    a, b, c = (node(etcd, n) for n in ("a", "b", "c"))
    try:
        sinks = {name: Sink(name) for name in ("a1", "b1", "b2", "b3")}
        subscribe(a, sinks["a1"], "$share/w/job")
        for name in ("b1", "b2", "b3"):
            subscribe(b, sinks[name], "$share/w/job")
        until(
            lambda: (
                c.call_soon(c.context.cluster.index.match_shared, "job")
                == (("$share/w/job", (("a", 1), ("b", 3))),)
            ),
            "member counts at c",
        )
        for i in range(8):  # two cycles of a, b, b, b: two messages per member
            c.call_soon(c.context.publish, Message("job", f"{i}".encode()))
        got = [sink.got.get(timeout=WAIT)[0].payload for sink in sinks.values() for _ in range(2)]
        assert sorted(got) == sorted(f"{i}".encode() for i in range(8))
        # A member leaves: b weighs 2 now.
        b.call_soon(b.context.router.unsubscribe, sinks["b3"], "$share/w/job")
        until(
            lambda: (
                c.call_soon(c.context.cluster.index.match_shared, "job")
                == (("$share/w/job", (("a", 1), ("b", 2))),)
            ),
            "the new count at c",
        )
    finally:
        for x in (c, b, a):
            x.close()


def test_a_node_that_was_away_drops_a_retained_message_cleared_meanwhile(
    etcd: EtcdServer,
) -> None:
    a = node(etcd, "a")
    b = None
    try:
        a.call_soon(a.context.publish, Message("r/gone", b"old", retain=True))
        a.call_soon(a.context.publish, Message("r/gone", b"", retain=True))  # cleared
        until(lambda: a.call_soon(lambda: not a.context.cluster._retained_pending), "written")
        b = node(etcd, "b")
        # As if b's durable store had kept the copy from before it went away (the
        # memory store of this test cannot): the next resync must drop it.
        b.call_soon(b.context.router.set_retained, Message("r/gone", b"old"))
        b.call(b.context.cluster._reset_client())  # the connection drops: a resync
        until(lambda: b.call_soon(b.context.router.get_retained, "r/gone") is None, "dropped")
        assert b.call_soon(lambda: b.context.cluster.resyncs) >= 2
    finally:
        if b is not None:
            b.close()
        a.close()


def test_the_driver_implements_the_core_interface() -> None:
    from fluxmq_core.cluster import Cluster
    from fluxmq_core.config import ClusterConfig

    cluster = EtcdCluster("n", ClusterConfig(driver="etcd"))
    assert isinstance(cluster, Cluster) and cluster.distributed


def test_a_node_id_with_a_slash_is_refused() -> None:
    from fluxmq_core.config import ClusterConfig, ConfigError

    with pytest.raises(ConfigError, match="cannot name a node"):
        EtcdCluster("a/b", ClusterConfig(driver="etcd"))


def test_a_three_member_etcd_loses_its_leader() -> None:
    from fluxmq_etcd.testing import etcd_missing_reason

    if etcd_missing_reason():
        pytest.skip(f"{etcd_missing_reason()} (Debian/Ubuntu: apt-get install etcd-server)")
    with EtcdServer(members=3) as etcd:
        leader = etcd.leader()
        # Each node's first endpoint is the leader: it must move to another member.
        endpoints = [leader.endpoint] + [e for e in etcd.endpoints if e != leader.endpoint]
        a = BrokerThread(
            plugins=["etcd"],
            config={
                "cluster": {
                    "driver": "etcd",
                    "node_id": "a",
                    "etcd_endpoints": endpoints,
                    "lease_ttl": 3.0,
                    "etcd_timeout": 2.0,
                }
            },
        ).start()
        b = BrokerThread(
            plugins=["etcd"],
            config={
                "cluster": {
                    "driver": "etcd",
                    "node_id": "b",
                    "etcd_endpoints": endpoints,
                    "lease_ttl": 3.0,
                    "etcd_timeout": 2.0,
                }
            },
        ).start()
        try:
            until(lambda: members(a) == {"a", "b"}, "a to see b")
            leader.kill()
            # A subscription made after the leader died reaches a through the others.
            sink = Sink("s")
            subscribe(b, sink, "ha/#")
            until(
                lambda: a.call_soon(a.context.cluster.index.match, "ha/1") == {"b"},
                "the filter through the surviving members",
                timeout=30,
            )
            until(lambda: a.call_soon(lambda: a.context.cluster.ready), "a ready", timeout=30)
            a.call_soon(a.context.publish, Message("ha/1", b"still here"))
            assert sink.got.get(timeout=WAIT)[0].payload == b"still here"
            assert members(a) == {"a", "b"}  # nobody's lease expired meanwhile
        finally:
            b.close()
            a.close()
