"""Outbound PUBLISH encoding (``outbound.py``): topic aliases towards the client,
replaced least-recently-used once the client's Topic Alias Maximum is reached, and
always consistent with the client's own view of the mapping."""

from __future__ import annotations

import random
from types import SimpleNamespace

from fluxmq_mqtt.codec import Connect, Decoder, Properties, Subscribe, SubscribeOptions
from fluxmq_mqtt.outbound import OutboundWriter

from fluxmq_core.clock import ManualClock
from fluxmq_core.message import Message
from fluxmq_core.stats import Stats


class Writer(OutboundWriter):
    __slots__ = ("registry", "version", "client_id")

    def __init__(self, alias_max: int, max_packet: int | None = None) -> None:
        self._init_outbound(1 << 20)
        self.registry = SimpleNamespace(
            stats=Stats(),
            clock=ManualClock(),
            events=SimpleNamespace(on_dropped=False, on_delivered=False),
        )
        self.version = 5
        self.client_id = "w"
        self.set_client_limits(max_packet, alias_max)


class ClientView:
    """What a client learns from the PUBLISHes it receives (MQTT 5.0 3.3.2.3.4)."""

    def __init__(self, alias_max: int) -> None:
        self.alias_max = alias_max
        self.aliases: dict[int, str] = {}
        self.decoder = Decoder(version=5, role="client")

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        got = []
        for p in self.decoder.packets(bytes(data)):
            alias = p.properties.topic_alias if p.properties is not None else None
            topic = p.topic
            if alias is not None:
                assert 1 <= alias <= self.alias_max, alias
                if topic:
                    self.aliases[alias] = topic
                else:
                    assert alias in self.aliases, f"alias {alias} used before it was defined"
                    topic = self.aliases[alias]
            got.append((topic, p.payload))
        return got


def test_aliases_are_assigned_then_reused():
    w = Writer(alias_max=2)
    view = ClientView(2)
    for t in ("a", "b", "a", "b"):
        w.write_publish(Message(t, t.encode(), 0), 0, False, ())
    out = bytes(w.out)
    assert view.feed(out) == [("a", b"a"), ("b", b"b"), ("a", b"a"), ("b", b"b")]
    assert dict(w.out_aliases) == {"a": 1, "b": 2}


def test_least_recently_used_alias_is_replaced():
    w = Writer(alias_max=2)
    view = ClientView(2)
    for t in ("a", "b", "a", "c"):  # "b" is the least recently used when "c" comes
        w.write_publish(Message(t, t.encode(), 0), 0, False, ())
    assert view.feed(w.out) == [("a", b"a"), ("b", b"b"), ("a", b"a"), ("c", b"c")]
    assert dict(w.out_aliases) == {"a": 1, "c": 2}
    assert view.aliases == {1: "a", 2: "c"}


def test_random_topics_always_resolve_to_the_right_topic():
    rng = random.Random(7)
    for alias_max in (1, 2, 5):
        w = Writer(alias_max=alias_max)
        view = ClientView(alias_max)
        sent = []
        for i in range(500):
            topic = f"t/{rng.randrange(8)}"
            qos = rng.choice((0, 1))
            m = Message(topic, f"{topic}|{i}".encode(), qos)
            # Shared templates across "connections": a second writer sees the same
            # message (encode-once fan-out must not leak one connection's aliases).
            assert w.write_publish(m, qos, False, (), pid=i % 60000 + 1 if qos else None)
            sent.append((topic, m.payload))
        assert view.feed(w.out) == sent
        assert view.aliases == {a: t for t, a in w.out_aliases.items()}


def test_fan_out_of_one_message_to_connections_with_different_alias_state():
    w1, w2 = Writer(alias_max=1), Writer(alias_max=3)
    v1, v2 = ClientView(1), ClientView(3)
    w2.write_publish(Message("x", b"0", 0), 0, False, ())
    for t in ("x", "y", "x"):
        m = Message(t, t.encode(), 0)
        w1.write_publish(m, 0, False, ())
        w2.write_publish(m, 0, False, ())
    assert [t for t, _ in v1.feed(w1.out)] == ["x", "y", "x"]
    assert [t for t, _ in v2.feed(w2.out)] == ["x", "x", "y", "x"]


def test_a_publish_dropped_for_maximum_packet_size_changes_no_alias():
    w = Writer(alias_max=1, max_packet=64)
    view = ClientView(1)
    assert w.write_publish(Message("small", b"s", 0), 0, False, ())
    assert not w.write_publish(Message("big", b"x" * 200, 0), 0, False, ())
    assert w.registry.stats.messages_dropped == 1
    assert dict(w.out_aliases) == {"small": 1}
    assert w.write_publish(Message("small", b"again", 0), 0, False, ())
    assert view.feed(w.out) == [("small", b"s"), ("small", b"again")]


def test_raw_v5_client_sees_a_consistent_mapping(broker, clients, raw):
    port = broker.port()
    c = raw(port)
    c.send_packet(
        Connect(client_id="lru", protocol_level=5, properties=Properties(topic_alias_maximum=3))
    )
    assert c.recv().reason_code == 0
    c.send_packet(Subscribe(1, (("lru/#", SubscribeOptions(0)),)))
    c.recv()
    pub = clients(port, version=4)
    rng = random.Random(3)
    expected = []
    for i in range(120):
        topic = f"lru/{rng.randrange(6)}"
        payload = f"{topic}|{i}"
        pub.client.publish(topic, payload, 0)
        expected.append((topic, payload.encode()))
    view = ClientView(3)
    got: list[tuple[str, bytes]] = []
    seen_new_topic_on_full_table = False
    while len(got) < len(expected):
        p = c.recv()
        alias = p.properties.topic_alias if p.properties is not None else None
        assert alias is not None and 1 <= alias <= 3
        if p.topic and alias in view.aliases and view.aliases[alias] != p.topic:
            seen_new_topic_on_full_table = True  # an alias was re-pointed
        topic = p.topic or view.aliases[alias]
        if p.topic:
            view.aliases[alias] = p.topic
        got.append((topic, p.payload))
    assert got == expected
    assert seen_new_topic_on_full_table
