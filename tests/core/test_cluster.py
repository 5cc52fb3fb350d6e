"""The core's cluster layer: the node index against the reference matcher, the
router's filter reports, the forward hook in the publish path, and the ``none``
driver staying out of the way."""

from __future__ import annotations

import random
from typing import Any

from fluxmq_core.cluster import Cluster, NodeIndex, SingleNodeCluster
from fluxmq_core.config import ClusterConfig
from fluxmq_core.message import Message
from fluxmq_core.router import Delivery, Router, topic_matches
from fluxmq_core.testing.broker import BrokerThread


def test_node_index_matches_like_the_reference_matcher() -> None:
    rng = random.Random(7)
    levels = ["a", "b", "c", "$SYS"]
    filters = ["#", "+", "a/#", "a/+", "+/b", "a/b/c", "a/+/c", "$SYS/#", "+/+/+", "$share/g/a/b"]
    topics = ["/".join(rng.choice(levels) for _ in range(rng.randint(1, 3))) for _ in range(200)]
    index = NodeIndex()
    held: dict[str, set[str]] = {}
    for i, f in enumerate(filters):
        node = f"n{i % 3}"
        index.add(node, f)
        held.setdefault(node, set()).add(f)

    def check() -> None:
        for topic in topics:
            plain = {
                n
                for n, fs in held.items()
                if any(topic_matches(f, topic) for f in fs if not f.startswith("$share/"))
            }
            assert index.match(topic) == plain, topic
            shared = sorted(
                (f, tuple(sorted((n, 1) for n, fs in held.items() if f in fs)))
                for f in {f for fs in held.values() for f in fs}
                if f.startswith("$share/") and topic_matches(f, topic)
            )
            assert list(index.match_shared(topic)) == shared, topic

    check()
    # Removing keeps answers right (and invalidates the cache).
    index.remove("n0", "#")
    held["n0"].discard("#")
    index.add("n2", "$share/g/a/b")
    held["n2"].add("$share/g/a/b")
    check()


def test_node_index_resync_and_drop() -> None:
    index = NodeIndex()
    index.add("b", "x/1")
    index.add("b", "$share/g/x/1")  # the same inner filter, plain and shared apart
    assert index.match("x/1") == {"b"}
    assert index.match_shared("x/+") == ()
    assert index.match_shared("x/1") == (("$share/g/x/1", (("b", 1),)),)
    index.remove("b", "x/1")
    assert index.match("x/1") == frozenset()
    index.add("b", "$share/g/x/1", 3)  # held already: the member count changes
    index.add("a", "$share/g/x/1", 2)
    assert index.match_shared("x/1") == (("$share/g/x/1", (("a", 2), ("b", 3))),)
    index.set_node("b", {"y/#"})
    assert index.match("x/1") == frozenset() and index.match("y/2") == {"b"}
    index.drop_node("b")
    index.drop_node("a")
    assert index.match("y/2") == frozenset() and index.node_ids == []


def test_node_index_generation_grows_with_every_change() -> None:
    index = NodeIndex()
    seen = [index.generation]

    def changed() -> bool:
        seen.append(index.generation)
        return seen[-1] > seen[-2]

    index.add("b", "x/1")
    assert changed()
    index.add("b", "x/1")  # held already: no change
    assert not changed()
    index.add("b", "$share/g/x/1", 2)
    assert changed()
    index.add("b", "$share/g/x/1", 3)  # the member count changes
    assert changed()
    index.add("b", "$share/g/x/1", 3)
    assert not changed()
    index.match("x/1")  # a lookup (and its cache) is no change
    assert not changed()
    index.remove("b", "x/1")
    assert changed()
    index.remove("b", "x/1")
    assert not changed()
    index.clear()  # and the count never goes back, not even here
    assert changed()


class Sub:
    protocol = "test"

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self.got: list[Message] = []

    def deliver(self, message: Message, delivery: Delivery) -> None:
        self.got.append(message)


class Listener:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def subscription_added(self, topic_filter: str) -> None:
        self.events.append(("+", topic_filter))

    def subscription_removed(self, topic_filter: str) -> None:
        self.events.append(("-", topic_filter))

    def shared_members(self, topic_filter: str, count: int) -> None:
        self.events.append((f"={count}", topic_filter))


def test_router_reports_first_and_last_subscriber_of_a_filter() -> None:
    router = Router()
    s1, s2 = Sub("1"), Sub("2")
    router.subscribe(s1, "pre/existing")
    listener = Listener()
    assert router.watch_filters(listener) == {"pre/existing": 1}
    router.subscribe(s1, "a/+")
    router.subscribe(s2, "a/+")
    router.subscribe(s1, "a/+")  # replacing options: not a new holder
    router.subscribe(s2, "$share/g/a/+")
    router.unsubscribe(s1, "a/+")
    router.subscribe(s1, "$share/g/a/+")  # a second member of the group
    assert listener.events == [
        ("+", "a/+"),
        ("+", "$share/g/a/+"),
        ("=1", "$share/g/a/+"),
        ("=2", "$share/g/a/+"),
    ]
    router.unsubscribe(s1, "$share/g/a/+")
    router.unsubscribe_all(s2)
    assert listener.events[4:] == [("=1", "$share/g/a/+"), ("-", "a/+"), ("-", "$share/g/a/+")]
    router.unsubscribe(s1, "pre/existing")
    assert listener.events[-1] == ("-", "pre/existing")
    router.watch_filters(None)
    router.subscribe(s1, "quiet")
    assert listener.events[-1] == ("-", "pre/existing")


def test_none_driver_is_a_cluster_of_one_and_wires_nothing() -> None:
    cluster = SingleNodeCluster("solo", ClusterConfig())
    assert isinstance(cluster, Cluster)
    assert cluster.distributed is False and cluster.queue_owner("q") == "solo"
    with BrokerThread(plugins=[]) as broker:
        ctx = broker.context
        assert ctx.forward is None
        assert broker.call_soon(ctx.cluster.status)["nodes"][0]["node_id"] == ctx.node_id
        sub = Sub("s")
        broker.call_soon(ctx.router.subscribe, sub, "t")
        assert broker.call_soon(ctx.publish, Message("t", b"x")) == 1


def test_forward_hook_counts_nodes_and_sees_each_publish_once() -> None:
    with BrokerThread(plugins=[]) as broker:
        ctx = broker.context
        seen: list[str] = []

        def forward(message: Message) -> int:
            seen.append(message.topic)
            return 2

        broker.call_soon(setattr, ctx, "forward", forward)
        sub = Sub("s")
        broker.call_soon(ctx.router.subscribe, sub, "t")
        assert broker.call_soon(ctx.publish, Message("t", b"x")) == 3
        # What arrives from a peer goes to the router: delivered, not forwarded again.
        broker.call_soon(ctx.router.publish, Message("t", b"from-peer"))
        assert seen == ["t"] and [m.payload for m in sub.got] == [b"x", b"from-peer"]


def test_share_handler_decides_which_groups_deliver_here() -> None:
    router = Router()
    m1, m2, plain = Sub("m1"), Sub("m2"), Sub("p")
    router.subscribe(m1, "$share/g/t/#")
    router.subscribe(m2, "$share/g/t/#")
    router.subscribe(plain, "t/#")
    calls: list[tuple[str, list[str]]] = []
    here = [True]

    def handler(message: Message, groups: tuple[Any, ...]) -> int:
        calls.append((message.topic, [f"{g.name}:{g.topic_filter}" for g in groups]))
        return sum(router.deliver_group(g, message) for g in groups) if here[0] else 0

    router.set_share_handler(handler)
    assert router.publish(Message("t/1", b"a")) == 2  # plain + the group, picked here
    here[0] = False
    assert router.publish(Message("t/1", b"b")) == 1  # the group went elsewhere
    assert calls == [("t/1", ["g:t/#"]), ("t/1", ["g:t/#"])]
    assert [m.payload for m in plain.got] == [b"a", b"b"]
    assert [m.payload for m in m1.got + m2.got] == [b"a"]
    group = router.share_group("t/#", "g")
    assert group is not None and router.share_group("t/#", "other") is None
    assert router.deliver_group(group, Message("t/2", b"c")) == 1  # the next in turn
    assert sorted(len(m.got) for m in (m1, m2)) == [1, 1]
    router.set_share_handler(None)
    assert router.publish(Message("t/1", b"d")) == 2


def test_cluster_status_names_each_queue_s_owner() -> None:
    from fluxmq_core.cluster_cli import queue_rows

    body = {
        "node_id": "b",
        "queue_owners": {"orders": "a", "jobs": "b"},
        # Held here without an owner record (say a claim lost to another node).
        "queues_single_copy": ["jobs", "local-only"],
    }
    assert queue_rows(body) == [["jobs", "b *", 1], ["local-only", "b *", 1], ["orders", "a", 1]]
    assert queue_rows({"node_id": "solo", "nodes": []}) == []
