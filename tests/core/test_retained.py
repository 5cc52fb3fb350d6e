"""Retained messages: the store's wildcard lookup and the router's retained rules."""

from __future__ import annotations

import logging

import pytest

from fluxmq_core.message import Message
from fluxmq_core.router import Delivery, RetainedStore, Router, topic_matches


class Recorder:
    def __init__(self, client_id: str, protocol: str = "mqtt") -> None:
        self.client_id = client_id
        self.protocol = protocol
        self.got: list[tuple[Message, Delivery]] = []

    def deliver(self, message: Message, delivery: Delivery) -> None:
        self.got.append((message, delivery))


TOPICS = [
    "a",
    "a/b",
    "a/b/c",
    "a/x/c",
    "a//c",
    "b/b/c",
    "/a",
    "$SYS/load",
    "$SYS",
    "$other/a/c",
]


def topics_of(messages: list[Message]) -> list[str]:
    return sorted(m.topic for m in messages)


@pytest.fixture
def store() -> RetainedStore:
    s = RetainedStore()
    for t in TOPICS:
        s.put(Message(t, t.encode(), retain=True))
    return s


# -- RetainedStore -------------------------------------------------------------------


@pytest.mark.parametrize(
    "topic_filter",
    [
        "#",
        "+",
        "a/#",
        "a/+/c",
        "+/+/c",
        "+/b/#",
        "a/b",
        "a/b/c/#",
        "a/+",
        "/+",
        "+/a",
        "$SYS/#",
        "$SYS/+",
        "$SYS",
        "$other/+/c",
        "nothing/#",
        "a/b/c/d",
    ],
)
def test_store_match_agrees_with_the_reference_matcher(
    store: RetainedStore, topic_filter: str
) -> None:
    expected = sorted(t for t in TOPICS if topic_matches(topic_filter, t))
    assert topics_of(store.match(topic_filter)) == expected


def test_dollar_topics_need_a_literal_first_level(store: RetainedStore) -> None:
    assert "$SYS/load" not in topics_of(store.match("#"))
    assert "$SYS" not in topics_of(store.match("+"))
    assert topics_of(store.match("$SYS/#")) == ["$SYS", "$SYS/load"]


def test_store_put_replace_discard_and_prune(store: RetainedStore) -> None:
    assert len(store) == len(TOPICS)
    store.put(Message("a/b", b"new", retain=True))
    assert len(store) == len(TOPICS)
    assert store.get("a/b") is not None and store.get("a/b").payload == b"new"  # type: ignore[union-attr]
    assert store.discard("a/b") is True
    assert store.discard("a/b") is False
    assert store.get("a/b") is None
    # Children of a removed interior topic are still there, and vice versa.
    assert topics_of(store.match("a/b/#")) == ["a/b/c"]
    assert store.discard("a/b/c") is True
    assert topics_of(store.match("a/#")) == ["a", "a//c", "a/x/c"]
    for t in list(store._by_topic):
        store.discard(t)
    assert len(store) == 0
    assert store._root.children == {}  # pruned


def test_store_drops_expired_entries_lazily() -> None:
    s = RetainedStore()
    s.put(Message("a/1", b"x", expires_at=10.0))
    s.put(Message("a/2", b"x", expires_at=20.0))
    s.put(Message("a/3", b"x"))
    assert topics_of(s.match("a/+", now=5.0)) == ["a/1", "a/2", "a/3"]
    assert topics_of(s.match("a/+", now=15.0)) == ["a/2", "a/3"]
    assert len(s) == 2  # a/1 was removed by the lookup
    assert s.get("a/2", now=25.0) is None
    assert len(s) == 1
    # Without a time, nothing is judged expired.
    s.put(Message("a/4", b"x", expires_at=1.0))
    assert topics_of(s.match("#")) == ["a/3", "a/4"]


def test_store_load_skips_empty_payloads() -> None:
    s = RetainedStore()
    assert s.load([Message("a", b"1"), Message("b", b""), Message("c", b"3")]) == 2
    assert sorted(m.topic for m in s) == ["a", "c"]
    assert "a" in s and "b" not in s


# -- Router retained rules -------------------------------------------------------------


class Changes:
    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes | None]] = []

    def __call__(self, topic: str, message: Message | None) -> None:
        self.calls.append((topic, None if message is None else message.payload))


def make_router(now: list[float] | None = None) -> tuple[Router, Changes]:
    clock = now if now is not None else [1000.0]
    changes = Changes()
    return Router(clock=lambda: clock[0], on_retained_change=changes), changes


def test_retained_publish_without_subscribers_is_stored_and_reported() -> None:
    router, changes = make_router()
    assert router.publish(Message("a/b", b"v1", retain=True)) == 0
    assert router.retained_count == 1
    assert changes.calls == [("a/b", b"v1")]
    router.publish(Message("a/b", b"v2", retain=True))
    assert [m.payload for m in router.retained_for("a/b")] == [b"v2"]
    assert router.get_retained("a/b").payload == b"v2"  # type: ignore[union-attr]


def test_empty_retained_payload_clears() -> None:
    router, changes = make_router()
    sub = Recorder("s")
    router.subscribe(sub, "a/b")
    router.publish(Message("a/b", b"v", retain=True))
    assert router.publish(Message("a/b", b"", retain=True)) == 1  # still delivered
    assert router.retained_count == 0
    assert router.retained_for("#") == []
    assert changes.calls == [("a/b", b"v"), ("a/b", None)]


def test_non_retained_publish_leaves_the_index_alone() -> None:
    router, changes = make_router()
    router.publish(Message("a", b"v", retain=True))
    router.publish(Message("a", b"other"))
    router.publish(Message("a", b""))
    assert [m.payload for m in router.retained_for("a")] == [b"v"]
    assert changes.calls == [("a", b"v")]


def test_set_clear_and_load_retained() -> None:
    router, changes = make_router()
    assert router.load_retained([Message("x/1", b"1"), Message("x/2", b"2")]) == 2
    assert changes.calls == []  # load does not report back
    router.set_retained(Message("x/3", b"3"))
    router.set_retained(Message("x/1", b""))  # empty payload clears
    assert router.clear_retained("x/2") is True
    assert router.clear_retained("x/9") is False
    assert changes.calls == [("x/3", b"3"), ("x/1", None), ("x/2", None), ("x/9", None)]
    assert [m.topic for m in router.retained_for("x/#")] == ["x/3"]


def test_retained_for_wildcards_dollar_and_shared() -> None:
    router, _ = make_router()
    for t in TOPICS:
        router.set_retained(Message(t, b"v"))
    for topic_filter in ("#", "+/+/c", "a/#", "$SYS/#", "+"):
        expected = sorted(t for t in TOPICS if topic_matches(topic_filter, t))
        assert topics_of(router.retained_for(topic_filter)) == expected
    assert topics_of(router.retained_for("$share/g/a/+/c")) == ["a//c", "a/b/c", "a/x/c"]


def test_expired_retained_messages_are_not_returned() -> None:
    now = [1000.0]
    router, _ = make_router(now)
    router.publish(Message("t/1", b"x", retain=True, expires_at=1005.0))
    router.publish(Message("t/2", b"x", retain=True))
    assert topics_of(router.retained_for("t/#")) == ["t/1", "t/2"]
    now[0] = 1005.0
    assert topics_of(router.retained_for("t/#")) == ["t/2"]
    assert router.retained_count == 1
    assert router.get_retained("t/1") is None


def test_expired_retained_publish_still_replaces_but_is_not_delivered() -> None:
    now = [1000.0]
    router, changes = make_router(now)
    sub = Recorder("s")
    router.subscribe(sub, "t")
    router.publish(Message("t", b"old", retain=True))
    assert router.publish(Message("t", b"new", retain=True, expires_at=999.0)) == 0
    assert len(sub.got) == 1
    assert changes.calls == [("t", b"old"), ("t", b"new")]
    assert router.retained_for("t") == []


def test_failing_retained_callback_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def broken(topic: str, message: Message | None) -> None:
        raise OSError("disk full")

    router = Router(on_retained_change=broken)
    sub = Recorder("s")
    router.subscribe(sub, "t")
    with caplog.at_level(logging.ERROR, logger="fluxmq.router"):
        assert router.publish(Message("t", b"v", retain=True)) == 1
    assert router.retained_count == 1
    assert any("on_retained_change" in r.getMessage() for r in caplog.records)
