"""Router: matching, per-subscriber grouping, No Local, RAP, shared groups, cache."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pytest

from fluxmq_core.message import Message
from fluxmq_core.router import (
    DEFAULT_OPTIONS,
    Delivery,
    Router,
    Subscriber,
    SubscriptionOptions,
    TopicError,
)


class Recorder:
    """A Subscriber that records what it gets."""

    def __init__(self, client_id: str, protocol: str = "mqtt") -> None:
        self.client_id = client_id
        self.protocol = protocol
        self.got: list[tuple[Message, Delivery]] = []

    def deliver(self, message: Message, delivery: Delivery) -> None:
        self.got.append((message, delivery))

    @property
    def topics(self) -> list[str]:
        return [m.topic for m, _ in self.got]

    @property
    def deliveries(self) -> list[Delivery]:
        return [d for _, d in self.got]


class Failing(Recorder):
    def deliver(self, message: Message, delivery: Delivery) -> None:
        raise RuntimeError("boom")


def opts(**kw: object) -> SubscriptionOptions:
    return SubscriptionOptions(**kw)  # type: ignore[arg-type]


@pytest.fixture
def router() -> Router:
    return Router()


def test_recorder_satisfies_the_protocol() -> None:
    assert isinstance(Recorder("x"), Subscriber)


# -- matching -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic_filter", "hits", "misses"),
    [
        ("a/b/c", ["a/b/c"], ["a/b", "a/b/c/d", "a/b/x"]),
        ("a/+/c", ["a/b/c", "a//c"], ["a/b", "a/b/c/d", "x/b/c"]),
        ("+", ["a"], ["a/b", "/a", "$SYS"]),
        ("a/#", ["a", "a/b", "a/b/c", "a/"], ["b", "ab", "$SYS/a"]),
        ("#", ["a", "a/b", "/", "/x"], ["$SYS", "$SYS/load", "$x/y"]),
        ("+/+", ["a/b", "/b", "a/"], ["a", "a/b/c", "$SYS/x"]),
        ("+/#", ["a", "a/b/c"], ["$SYS/x"]),
        ("$SYS/#", ["$SYS", "$SYS/broker/load"], ["SYS/x", "a/$SYS"]),
        ("$SYS/+", ["$SYS/x"], ["$SYS", "$SYS/x/y"]),
        ("a/+/#", ["a/b", "a/b/c/d"], ["a", "b/c"]),
    ],
)
def test_filter_matching(
    router: Router, topic_filter: str, hits: list[str], misses: list[str]
) -> None:
    sub = Recorder("s")
    router.subscribe(sub, topic_filter)
    for topic in hits + misses:
        router.publish(Message(topic, b"x"))
    assert sub.topics == hits


def test_publish_returns_delivery_count(router: Router) -> None:
    a, b = Recorder("a"), Recorder("b")
    router.subscribe(a, "t")
    router.subscribe(b, "#")
    assert router.publish(Message("t")) == 2
    assert router.publish(Message("u")) == 1
    assert router.publish(Message("$SYS/x")) == 0


def test_invalid_filter_is_rejected(router: Router) -> None:
    with pytest.raises(TopicError):
        router.subscribe(Recorder("s"), "a/#/b")
    assert router.subscription_count == 0


# -- grouping per subscriber -----------------------------------------------------------


def test_overlapping_subscriptions_make_one_grouped_delivery(router: Router) -> None:
    sub = Recorder("s")
    router.subscribe(sub, "a/b", opts(qos=0, subscription_id=1))
    router.subscribe(sub, "a/+", opts(qos=2, subscription_id=2))
    router.subscribe(sub, "#", opts(qos=1))
    router.subscribe(sub, "a/#", opts(qos=0, subscription_id=7))
    assert router.publish(Message("a/b", b"x", qos=0)) == 1
    # The granted maximum, not capped by the message QoS (the protocol does that).
    assert sub.deliveries == [Delivery(qos=2, retain=False, subscription_ids=(1, 2, 7))]


def test_subscription_ids_follow_subscription_order_and_survive_replacement(
    router: Router,
) -> None:
    sub = Recorder("s")
    router.subscribe(sub, "#", opts(subscription_id=3))
    router.subscribe(sub, "a/+", opts(subscription_id=1))
    router.subscribe(sub, "a/b", opts(subscription_id=2))
    assert router.subscribe(sub, "#", opts(subscription_id=9)) is False
    router.publish(Message("a/b"))
    assert sub.deliveries[-1].subscription_ids == (9, 1, 2)


def test_subscribe_reports_new_or_replaced(router: Router) -> None:
    sub = Recorder("s")
    assert router.subscribe(sub, "a", opts(qos=0)) is True
    assert router.subscribe(sub, "a", opts(qos=2)) is False
    assert router.subscription_count == 1
    assert router.subscriptions_of(sub) == {"a": opts(qos=2)}
    router.publish(Message("a"))
    assert sub.deliveries == [Delivery(2)]
    assert router.subscribe(Recorder("other"), "a") is True


def test_distinct_subscribers_get_their_own_delivery(router: Router) -> None:
    a, b = Recorder("a"), Recorder("b")
    router.subscribe(a, "x/+", opts(qos=1, subscription_id=5))
    router.subscribe(b, "x/y", opts(qos=2))
    router.publish(Message("x/y"))
    assert a.deliveries == [Delivery(1, False, (5,))]
    assert b.deliveries == [Delivery(2, False, ())]


def test_unhashable_subscribers_are_fine(router: Router) -> None:
    @dataclass
    class Plain:  # eq=True makes dataclass instances unhashable
        client_id: str
        protocol: str = "amqp"
        got: list[str] = field(default_factory=list)

        def deliver(self, message: Message, delivery: Delivery) -> None:
            self.got.append(message.topic)

    one, two = Plain("same"), Plain("same")
    router.subscribe(one, "t")
    router.subscribe(two, "t")
    assert router.publish(Message("t")) == 2
    assert one.got == two.got == ["t"]


# -- No Local and Retain As Published ----------------------------------------------------


def test_no_local_skips_the_publishers_own_subscription(router: Router) -> None:
    me, other = Recorder("me"), Recorder("other")
    router.subscribe(me, "t", opts(no_local=True))
    router.subscribe(other, "t", opts(no_local=True))
    router.publish(Message("t", origin_client="me", origin_protocol="mqtt"))
    assert me.got == []
    assert len(other.got) == 1
    # Same client id over another protocol is a different client.
    router.publish(Message("t", origin_client="me", origin_protocol="amqp"))
    assert len(me.got) == 1


def test_no_local_only_drops_the_no_local_subscriptions(router: Router) -> None:
    me = Recorder("me")
    router.subscribe(me, "t/+", opts(qos=2, no_local=True, subscription_id=1))
    router.subscribe(me, "t/#", opts(qos=1, subscription_id=2))
    router.publish(Message("t/x", origin_client="me", origin_protocol="mqtt"))
    router.publish(Message("t/x", origin_client="you", origin_protocol="mqtt"))
    assert me.deliveries == [Delivery(1, False, (2,)), Delivery(2, False, (1, 2))]


def test_retain_as_published(router: Router) -> None:
    rap, plain, mixed = Recorder("rap"), Recorder("plain"), Recorder("mixed")
    router.subscribe(rap, "t", opts(retain_as_published=True))
    router.subscribe(plain, "t")
    router.subscribe(mixed, "t", opts(subscription_id=1))
    router.subscribe(mixed, "#", opts(retain_as_published=True, subscription_id=2))
    router.publish(Message("t", b"v", retain=True))
    router.publish(Message("t", b"v", retain=False))
    assert [d.retain for d in rap.deliveries] == [True, False]
    assert [d.retain for d in plain.deliveries] == [False, False]
    assert [d.retain for d in mixed.deliveries] == [True, False]


# -- shared subscriptions --------------------------------------------------------------


def test_shared_round_robin_is_fair_across_three_members(router: Router) -> None:
    journal: list[str] = []

    class Journaled(Recorder):
        def deliver(self, message: Message, delivery: Delivery) -> None:
            super().deliver(message, delivery)
            journal.append(self.client_id)

    members = [Journaled(f"m{i}") for i in range(3)]
    for i, m in enumerate(members):
        router.subscribe(m, "$share/g/jobs/+", opts(qos=i, subscription_id=10 + i))
    for _ in range(9):
        # A retained publish: shared deliveries still carry retain=False.
        assert router.publish(Message("jobs/a", b"x", retain=True)) == 1
    assert journal == ["m0", "m1", "m2"] * 3
    for i, m in enumerate(members):
        assert m.deliveries == [Delivery(i, False, (10 + i,), "g")] * 3


def test_removing_a_share_member_keeps_the_turn(router: Router) -> None:
    a, b, c = Recorder("a"), Recorder("b"), Recorder("c")
    for m in (a, b, c):
        router.subscribe(m, "$share/g/t")
    router.publish(Message("t"))  # a
    router.publish(Message("t"))  # b; next is c
    assert router.unsubscribe(a, "$share/g/t") is True
    router.publish(Message("t"))  # still c, not skipped
    router.publish(Message("t"))
    router.publish(Message("t"))
    assert (len(a.got), len(b.got), len(c.got)) == (1, 2, 2)
    assert router.unsubscribe(b, "$share/g/t")
    assert router.unsubscribe(c, "$share/g/t")
    assert router.publish(Message("t")) == 0
    assert router.subscription_count == 0


def test_each_share_group_and_filter_gets_one_copy(router: Router) -> None:
    g1 = [Recorder("g1a"), Recorder("g1b")]
    g2 = [Recorder("g2a")]
    for m in g1:
        router.subscribe(m, "$share/one/s/#")
    router.subscribe(g2[0], "$share/two/s/#")
    router.subscribe(g2[0], "$share/one/s/x")  # same name, other filter: its own group
    assert router.publish(Message("s/x")) == 3
    assert sum(len(m.got) for m in g1) == 1
    assert sorted(d.shared_group for d in g2[0].deliveries) == ["one", "two"]


def test_shared_and_non_shared_copies_to_the_same_subscriber(router: Router) -> None:
    sub = Recorder("s")
    router.subscribe(sub, "$share/g/t", opts(qos=1))
    router.subscribe(sub, "t", opts(qos=0))
    assert router.publish(Message("t")) == 2
    assert sorted(sub.deliveries, key=lambda d: d.shared_group or "") == [
        Delivery(0, False, (), None),
        Delivery(1, False, (), "g"),
    ]
    assert router.subscriptions_of(sub) == {"$share/g/t": opts(qos=1), "t": DEFAULT_OPTIONS}


def test_shared_no_local_member_is_skipped(router: Router) -> None:
    me, you = Recorder("me"), Recorder("you")
    router.subscribe(me, "$share/g/t", opts(no_local=True))
    router.subscribe(you, "$share/g/t")
    for _ in range(4):
        router.publish(Message("t", origin_client="me", origin_protocol="mqtt"))
    assert (len(me.got), len(you.got)) == (0, 4)
    router.unsubscribe(you, "$share/g/t")
    assert router.publish(Message("t", origin_client="me", origin_protocol="mqtt")) == 0


def test_match_does_not_deliver_or_advance_the_turn(router: Router) -> None:
    a, b, c = Recorder("a"), Recorder("b"), Recorder("c")
    router.subscribe(a, "$share/g/t")
    router.subscribe(b, "$share/g/t")
    router.subscribe(c, "t", opts(qos=1, subscription_id=4))
    first = router.match("t")
    assert router.match("t") == first
    assert first == [(c, Delivery(1, False, (4,))), (a, Delivery(0, False, (), "g"))]
    assert a.got == b.got == c.got == []
    assert router.match("nothing") == []


# -- cache ---------------------------------------------------------------------------


@pytest.mark.parametrize("cache_size", [0, 1, 4096])
def test_cache_is_invalidated_on_subscribe_and_unsubscribe(cache_size: int) -> None:
    router = Router(cache_size=cache_size)
    a, b = Recorder("a"), Recorder("b")
    assert router.publish(Message("x/y")) == 0
    router.subscribe(a, "x/+")
    assert router.publish(Message("x/y")) == 1
    router.subscribe(b, "x/y", opts(qos=2))
    assert router.publish(Message("x/y")) == 2
    assert b.deliveries == [Delivery(2)]
    router.subscribe(b, "x/y", opts(qos=1))  # replacement changes the plan too
    router.publish(Message("x/y"))
    assert b.deliveries[-1] == Delivery(1)
    assert router.unsubscribe(a, "x/+") is True
    assert router.publish(Message("x/y")) == 1
    assert router.unsubscribe(b, "x/y") is True
    assert router.publish(Message("x/y")) == 0
    assert router.unsubscribe(b, "x/y") is False


def test_cache_stays_bounded() -> None:
    router = Router(cache_size=8)
    sub = Recorder("s")
    router.subscribe(sub, "#")
    for i in range(100):
        router.publish(Message(f"t/{i}"))
    assert len(router._cache) <= 8  # private, but the bound is the point
    assert len(sub.got) == 100


# -- subscription bookkeeping ---------------------------------------------------------


def test_unsubscribe_all(router: Router) -> None:
    sub, other = Recorder("s"), Recorder("o")
    for f in ("a", "a/#", "$share/g/a", "+"):
        router.subscribe(sub, f)
    router.subscribe(other, "a")
    assert router.subscription_count == 5
    assert router.unsubscribe_all(sub) == 4
    assert router.unsubscribe_all(sub) == 0
    assert router.subscriptions_of(sub) == {}
    assert router.subscription_count == 1
    assert router.publish(Message("a")) == 1
    router.unsubscribe_all(other)
    assert router._trie.filters() == []  # empty nodes are pruned


def test_unsubscribe_unknown(router: Router) -> None:
    sub = Recorder("s")
    assert router.unsubscribe(sub, "a") is False
    router.subscribe(sub, "a")
    assert router.unsubscribe(sub, "b") is False
    assert router.unsubscribe(Recorder("s"), "a") is False  # same id, other object


# -- expiry and failures -----------------------------------------------------------------


def test_expired_message_is_not_delivered() -> None:
    now = [1000.0]
    router = Router(clock=lambda: now[0])
    sub = Recorder("s")
    router.subscribe(sub, "t")
    assert router.publish(Message("t", expires_at=1010.0)) == 1
    now[0] = 1010.0
    assert router.publish(Message("t", expires_at=1010.0)) == 0
    assert router.publish(Message("t")) == 1
    assert len(sub.got) == 2


def test_a_failing_subscriber_does_not_block_the_others(
    router: Router, caplog: pytest.LogCaptureFixture
) -> None:
    before, bad, after = Recorder("before"), Failing("bad-client"), Recorder("after")
    shared_bad = Failing("bad-shared")
    router.subscribe(before, "t")
    router.subscribe(bad, "t")
    router.subscribe(after, "#")
    router.subscribe(shared_bad, "$share/g/t")
    with caplog.at_level(logging.ERROR, logger="fluxmq.router"):
        assert router.publish(Message("t")) == 2
    assert len(before.got) == len(after.got) == 1
    messages = [r.getMessage() for r in caplog.records if r.name == "fluxmq.router"]
    assert any("bad-client" in m for m in messages)
    assert any("bad-shared" in m for m in messages)
    assert all(r.exc_info for r in caplog.records if r.name == "fluxmq.router")
