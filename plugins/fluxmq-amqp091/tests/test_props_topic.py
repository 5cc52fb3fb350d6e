"""The MQTT topic of an AMQP publish, from its routing key (kept in a bounded cache):
the same answer on the first and on every later publish with that key."""

from __future__ import annotations

import pytest
from fluxmq_amqp091 import props
from pamqp import commands


@pytest.mark.parametrize(
    ("key", "topic"),
    [("a.b.c", "a/b/c"), ("x/y.z", "x.y/z"), ("", ""), ("a.#", ""), ("a.+.b", ""), ("#", "")],
)
def test_topic_of_a_routing_key_is_stable(key: str, topic: str) -> None:
    for _ in range(3):  # the first (mapped) and later (cached) publishes
        m = props.to_message(commands.Basic.Properties(), b"", b"x", "ex", key, 0.0, "c1")
        assert m.topic == topic
        assert m.properties is not None and m.properties["routing_key"] == key


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(props, "_TOPICS", {})
    monkeypatch.setattr(props, "_TOPICS_MAX", 4)
    for i in range(10):
        m = props.to_message(commands.Basic.Properties(), b"", b"", "", f"k.{i}", 0.0, "c")
        assert m.topic == f"k/{i}"
        assert len(props._TOPICS) <= 4
