"""Runs of QoS 0 PUBLISHes handled as a batch (``PublishRun``, ``Connection._on_publish_run``).

The batch path must deliver exactly what the per-message path does. Three levels:
the decoder (a run stands for the very packets a decoder without runs returns),
the outbound bulk write (the same bytes, drops, counters and wake-ups as one
``write_publish`` per message, whatever the flushes do), and real clients over
sockets, each scenario run twice on fresh brokers, once with the batch path and once
with it switched off, comparing what every subscriber received.
"""

from __future__ import annotations

import random
import time
from types import SimpleNamespace
from typing import Any

import pytest
from fluxmq_mqtt import connection as connection_module
from fluxmq_mqtt.codec import (
    Connack,
    Connect,
    Decoder,
    Pingreq,
    Pingresp,
    Properties,
    Puback,
    Publish,
    PublishRun,
    Suback,
    Subscribe,
    SubscribeOptions,
    Unsuback,
    Unsubscribe,
    encode,
    encode_publish,
)
from fluxmq_mqtt.outbound import FLUSH_AT, OutboundWriter, RunDelivery

from fluxmq_core.clock import ManualClock
from fluxmq_core.hookspecs import hookimpl
from fluxmq_core.stats import Stats

WAIT = 5.0

# -- the decoder -----------------------------------------------------------------------


def _flatten(packets: list[Any]) -> list[Any]:
    flat: list[Any] = []
    for p in packets:
        flat.extend(p.publishes() if isinstance(p, PublishRun) else [p])
    return flat


def _random_stream(rng: random.Random, version: int, count: int) -> list[bytes]:
    topics = ("a/b", "a/c", "x" * 140)
    out = []
    for i in range(count):
        topic = rng.choice(topics[:2]) if rng.random() < 0.9 else topics[2]
        qos = 0 if rng.random() < 0.8 else rng.choice((1, 2))
        retain = rng.random() < 0.05
        size = rng.choice((0, 1, 5, 64, 127, 128, 300))
        props = None
        if version == 5 and rng.random() < 0.05:
            props = Properties(user_properties=(("k", "v"),))
        out.append(
            encode_publish(
                topic,
                bytes([i & 0xFF]) * size,
                qos,
                retain,
                packet_id=(i % 60000) + 1 if qos else None,
                properties=props,
                version=version,
            )
        )
    return out


@pytest.mark.parametrize("version", [3, 4, 5])
def test_a_run_stands_for_the_packets_a_decoder_without_runs_returns(version):
    rng = random.Random(version)
    runs_seen = 0
    for _ in range(40):
        packets = _random_stream(rng, version, rng.randint(1, 60))
        stream = b"".join(packets)
        cuts = sorted(rng.sample(range(1, len(stream)), k=min(3, len(stream) - 1)))
        chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        plain = Decoder(version=version, role="server")
        batched = Decoder(version=version, role="server", runs=True)
        want: list[Any] = []
        got: list[Any] = []
        for chunk in chunks:
            want.extend(plain.packets(chunk))
            decoded = batched.packets(chunk)
            for p in decoded:
                if isinstance(p, PublishRun):
                    runs_seen += 1
                    assert len(p) >= 1
                    # Only QoS 0 PUBLISHes without properties: a run of one each.
                    # The run's bytes are the packets' own, back to back.
                    whole = p.buf[p.start : p.ends[-1]]
                    assert whole == b"".join(encode(q, version) for q in p.publishes())
            got.extend(_flatten(decoded))
        assert got == want
    assert runs_seen > 20


def test_runs_only_when_asked_and_never_across_other_packets():
    a = encode_publish("t", b"1")
    chunk = a + a + encode_publish("t", b"r", retain=True) + a + encode(Pingreq(), 4) + a + a
    plain = Decoder(version=4, role="server").packets(chunk)
    assert not any(isinstance(p, PublishRun) for p in plain)
    got = Decoder(version=4, role="server", runs=True).packets(chunk)
    assert [type(p).__name__ for p in got] == [
        "PublishRun",
        "Publish",
        "PublishRun",
        "Pingreq",
        "PublishRun",
    ]
    assert [len(p) for p in got if isinstance(p, PublishRun)] == [2, 1, 2]
    # Another topic starts another run; QoS 1 is never in one.
    other = encode_publish("u", b"1")
    qos1 = encode_publish("t", b"1", 1, packet_id=3)
    got = Decoder(version=4, role="server", runs=True).packets(a + other + other + qos1 + a)
    assert [(type(p).__name__, getattr(p, "topic", None)) for p in got] == [
        ("PublishRun", "t"),
        ("PublishRun", "u"),
        ("Publish", "t"),
        ("PublishRun", "t"),
    ]
    assert [len(p) for p in got if isinstance(p, PublishRun)] == [1, 2, 1]
    # A 5.0 PUBLISH with properties (here a topic alias) never joins a run.
    v5 = Decoder(version=5, role="server", runs=True)
    b = encode_publish("t", b"1", version=5)
    aliased = encode_publish("t", b"2", properties=Properties(topic_alias=1), version=5)
    assert [type(p).__name__ for p in v5.packets(b + aliased + b + b)] == [
        "PublishRun",
        "Publish",
        "PublishRun",
    ]


# -- the outbound bulk write ------------------------------------------------------------


class Writer(OutboundWriter):
    """A connection's output with a simulated adapter: ``wakeup`` writes at once past
    ``FLUSH_AT`` unless output is held, and the transport pauses after
    ``pause_after`` bytes written (as ``pause_writing`` would)."""

    __slots__ = (
        "registry",
        "version",
        "client_id",
        "wire",
        "hold",
        "pause_after",
        "wakes",
        "dropped",
    )

    def __init__(self, version: int, limit: int, hold: bool, pause_after: int) -> None:
        self._init_outbound(limit)
        self.dropped: list[tuple[bytes, str]] = []
        self.registry = SimpleNamespace(
            stats=Stats(),
            clock=ManualClock(),
            events=SimpleNamespace(
                on_dropped=True,
                on_delivered=False,
                message_dropped=lambda m, _proto, _cid, why: self.dropped.append((m.payload, why)),
            ),
        )
        self.version = version
        self.client_id = "w"
        self.wire = bytearray()
        self.hold = hold
        self.pause_after = pause_after
        self.wakes = 0
        self.wakeup = self._adapter

    def _adapter(self, conn: Any) -> None:
        self.wakes += 1
        if len(self.out) >= FLUSH_AT and not self.hold:
            self.flush_pending = False
            self.wire += self.out
            self.out = bytearray()
            if len(self.wire) >= self.pause_after:
                self.paused = True

    def state(self) -> tuple:
        s = self.registry.stats
        return (
            bytes(self.wire),
            bytes(self.out),
            self.paused,
            self.flush_pending,
            self.wakes,
            s.messages_sent,
            s.publish_sent,
            s.messages_dropped,
            tuple(self.dropped),
        )


def _run_of(version: int, sizes: list[int]) -> PublishRun:
    chunk = b"".join(
        encode_publish("r/t", bytes([i & 0xFF]) * n, version=version) for i, n in enumerate(sizes)
    )
    (run,) = Decoder(version=version, role="server", runs=True).packets(chunk)
    assert isinstance(run, PublishRun)
    return run


def test_bulk_write_matches_one_write_publish_per_message():
    rng = random.Random(7)
    full = too_large = paused = 0
    for _ in range(300):
        in_version = rng.choice((4, 5))
        out_version = rng.choice((4, 5))
        sizes = [rng.choice((10, 100, 126, 200, 3000)) for _ in range(rng.randint(2, 120))]
        ids: tuple[int, ...] = ()
        if out_version == 5 and rng.random() < 0.3:
            ids = tuple(sorted(rng.sample(range(1, 300), rng.randint(1, 2))))
        limit = rng.choice((1000, 20_000, FLUSH_AT, 200_000, 1 << 20))
        hold = rng.random() < 0.2
        pause_after = rng.choice((10**9, 50_000, 150_000))
        start_out = rng.choice((0, 100, FLUSH_AT - 500, FLUSH_AT + 10))
        pending = rng.random() < 0.7
        max_packet = rng.choice((0, 0, 0, 150, 2000)) if out_version == 5 else 0
        pair = []
        for batched in (False, True):
            w = Writer(out_version, limit, hold, pause_after)
            w.max_out_packet = max_packet
            w.out += b"\xee" * start_out
            w.flush_pending = pending
            run = _run_of(in_version, sizes)
            shared = RunDelivery(run, "pub", ManualClock())
            n = len(run)
            if batched:
                k = w.write_run(run, ids, shared)
            else:
                k = n
                for i in range(n):
                    if not w.has_room():
                        k = i
                        break
                    w.write_publish(shared.message(i), 0, False, ids)
            pair.append((k, w.state()))
        assert pair[0] == pair[1], (in_version, out_version, ids, limit, hold, start_out)
        full += pair[0][0] < len(sizes)
        too_large += bool(pair[0][1][-1])
        paused += pair[0][1][2]
    # The random states did reach each way out: no room, too large, paused.
    assert full > 20 and too_large > 5 and paused > 5


# -- real clients ------------------------------------------------------------------------


class RawClient:
    """A client over a raw socket that records every PUBLISH it receives, resolving
    topic aliases, and answers nothing (QoS 1/2 deliveries stay unacknowledged)."""

    def __init__(self, raw: Any, port: int, cid: str, version: int, props: Any = None) -> None:
        self.c = raw(port, version=version)
        self.version = version
        self.c.send_packet(Connect(client_id=cid, protocol_level=version, properties=props))
        ack = self.c.recv()
        assert isinstance(ack, Connack) and ack.reason_code == 0
        self.aliases: dict[int, str] = {}
        self.got: list[tuple] = []
        self.other: list[Any] = []
        self._pid = 0

    def _next(self) -> Any:
        p = self.c.recv()
        if isinstance(p, Publish):
            props = p.properties
            alias = props.topic_alias if props is not None else None
            topic = p.topic
            if alias is not None:
                if topic:
                    self.aliases[alias] = topic
                else:
                    topic = self.aliases[alias]
            ids = tuple(props.subscription_identifiers or ()) if props is not None else ()
            self.got.append((topic, p.payload, p.qos, p.retain, ids, alias, p.packet_id))
            return None
        return p

    def expect(self, kind: type) -> Any:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            p = self._next()
            if isinstance(p, kind):
                return p
            if p is not None:
                self.other.append(p)
        raise AssertionError(f"no {kind.__name__}")

    def subscribe(self, *filters: tuple[str, SubscribeOptions], sub_id: int | None = None) -> None:
        self._pid += 1
        props = Properties(subscription_identifiers=(sub_id,)) if sub_id else None
        self.c.send_packet(Subscribe(self._pid, tuple(filters), props))
        ack = self.expect(Suback)
        assert all(code < 0x80 for code in ack.reason_codes), ack

    def unsubscribe(self, topic_filter: str) -> None:
        self._pid += 1
        self.c.send_packet(Unsubscribe(self._pid, (topic_filter,)))
        self.expect(Unsuback)

    def ping(self) -> None:
        """Round trip: every packet sent before is handled, every PUBLISH the broker
        wrote before the PINGRESP is recorded."""
        self.c.send_packet(Pingreq())
        self.expect(Pingresp)

    def send(self, data: bytes) -> None:
        self.c.send(data)


def _opts(qos: int = 0, **kw: Any) -> SubscribeOptions:
    return SubscribeOptions(qos, **kw)


@pytest.fixture
def path_spy(monkeypatch):
    """Records the batch path's decisions; ``off()`` switches it off."""
    decisions: list[bool] = []
    lengths: list[int] = []  # of the runs the batch path took
    real = connection_module.Connection._publish_run

    def spy(self: Any, run: PublishRun) -> bool:
        if spy.off:
            decisions.append(False)
            return False
        result = real(self, run)
        decisions.append(result)
        if result:
            lengths.append(len(run))
        return result

    spy.off = False  # type: ignore[attr-defined]
    monkeypatch.setattr(connection_module.Connection, "_publish_run", spy)
    return SimpleNamespace(decisions=decisions, lengths=lengths, spy=spy)


def _pub(topic: str, payload: bytes, version: int, qos: int = 0, retain: bool = False, pid=None):
    return encode_publish(topic, payload, qos, retain, packet_id=pid, version=version)


def _mixed_packets(version: int, tag: bytes) -> list[bytes]:
    """QoS 0 runs broken by a QoS 1 publish, a retained one, another topic (the
    packets of one chunk)."""
    parts = []
    for i in range(8):
        parts.append(_pub("r/a", tag + b"a%d" % i + b"." * (i * 40), version))
    parts.append(_pub("r/a", tag + b"q1", version, qos=1, pid=1))
    parts += [_pub("r/a", tag + b"b%d" % i, version) for i in range(3)]
    parts.append(_pub("r/a", tag + b"retained", version, retain=True))
    parts += [_pub("r/a", tag + b"c%d" % i, version) for i in range(4)]
    parts += [_pub("r/b", tag + b"d%d" % i, version) for i in range(3)]
    parts += [_pub("r/a", tag + b"e%d" % i, version) for i in range(2)]
    return parts


def _stats(broker: Any) -> tuple:
    s = broker.context.stats
    return (
        s.messages_received,
        s.publish_received,
        s.messages_sent,
        s.publish_sent,
        s.messages_dropped,
    )


def _scenario(
    factory: Any, raw: Any, clients: Any, pub_version: int, lone: bool = False, **broker_kw: Any
) -> dict:
    """The mixed chunks published to subscribers of every shape; ``lone``: each
    packet on its own, after the previous one was handled (runs of one)."""
    b = factory(plugins=["mqtt"], **broker_kw)
    port = b.port()
    v4 = RawClient(raw, port, "v4", 4)
    v4.subscribe(("r/#", _opts()))
    v5ids = RawClient(raw, port, "v5ids", 5)
    v5ids.subscribe(("r/a", _opts(1)), sub_id=7)
    v5ids.subscribe(("r/#", _opts()), sub_id=9)
    aliases = RawClient(raw, port, "alias", 5, Properties(topic_alias_maximum=1))
    aliases.subscribe(("r/#", _opts(2, retain_as_published=True)))
    paho4 = clients(port, "paho4", version=4)
    paho4.subscribe("r/a", 0)
    paho5 = clients(port, "paho5", version=5)
    paho5.subscribe("r/#", 2)
    # The publisher subscribes to its own topics too, once with No Local.
    pub = RawClient(raw, port, "pub", pub_version)
    if pub_version == 5:
        pub.subscribe(("r/a", _opts(no_local=True)), ("r/b", _opts()))
    else:
        pub.subscribe(("r/b", _opts()))
    packets = _mixed_packets(pub_version, b"1") + _mixed_packets(pub_version, b"2")
    if lone:
        for packet in packets:
            pub.send(packet)
            pub.ping()
    else:
        pub.send(b"".join(packets))
        pub.ping()
    # 19 of each chunk's 22 publishes are to r/a, 3 to r/b; the QoS 1 one is acked.
    for sub in (v4, v5ids, aliases):
        sub.ping()
    deadline = time.monotonic() + WAIT
    paho4_got, paho5_got = [], []
    while (len(paho4_got) < 38 or len(paho5_got) < 44) and time.monotonic() < deadline:
        while not paho4.messages.empty():
            m = paho4.messages.get()
            paho4_got.append((m.topic, m.payload, m.qos, m.retain))
        while not paho5.messages.empty():
            m = paho5.messages.get()
            paho5_got.append((m.topic, m.payload, m.qos, m.retain))
        time.sleep(0.01)
    paho4.nothing()
    paho5.nothing()
    return {
        "v4": v4.got,
        "v5ids": v5ids.got,
        "alias": aliases.got,
        "pub": pub.got,
        "puback": [p for p in pub.other if isinstance(p, Puback)],
        "paho4": paho4_got,
        "paho5": paho5_got,
        "stats": b.call_soon(lambda: _stats(b)),
    }


@pytest.mark.parametrize("pub_version", [4, 5])
def test_real_clients_get_the_same_with_and_without_the_batch_path(
    fluxmq_broker_factory, raw, clients, path_spy, pub_version
):
    batched = _scenario(fluxmq_broker_factory, raw, clients, pub_version)
    assert True in path_spy.decisions  # the batch path did run
    path_spy.spy.off = True
    per_message = _scenario(fluxmq_broker_factory, raw, clients, pub_version)
    assert batched == per_message
    # And what the per-message path gives is what MQTT says (spot checks).
    assert len(batched["v4"]) == 44 and len(batched["paho4"]) == 38
    assert [m[1] for m in batched["paho4"][:9]] == [
        b"1a%d" % i + b"." * (i * 40) for i in range(8)
    ] + [b"1q1"]
    retained = [m for m in batched["alias"] if m[1] == b"1retained"]
    assert retained[0][3] is True  # Retain As Published
    assert {m[4] for m in batched["v5ids"] if m[0] == "r/a"} == {(7, 9)}
    assert [m[2] for m in batched["v5ids"] if m[1] == b"1q1"] == [1]
    if pub_version == 5:
        assert {m[0] for m in batched["pub"]} == {"r/b"}  # No Local on r/a
    assert batched["stats"][0] == 44 + 2  # each publish once, and the two paho markers


@pytest.mark.parametrize("pub_version", [4, 5])
def test_lone_publishes_as_runs_of_one_match_the_per_message_path(
    fluxmq_broker_factory, raw, clients, path_spy, pub_version
):
    """The latency case: each PUBLISH arrives on its own (at most with the PINGREQ
    that follows it) and is a run of one."""
    lone = _scenario(fluxmq_broker_factory, raw, clients, pub_version, lone=True)
    assert path_spy.lengths and set(path_spy.lengths) == {1}  # the batch path ran, 1 each
    path_spy.spy.off = True
    per_message = _scenario(fluxmq_broker_factory, raw, clients, pub_version, lone=True)
    assert lone == per_message
    # And the same as the whole chunks gave (each subscriber's own order).
    path_spy.spy.off = False
    chunked = _scenario(fluxmq_broker_factory, raw, clients, pub_version)
    assert lone == chunked


def test_a_subscriber_added_and_removed_between_chunks(fluxmq_broker_factory, raw, path_spy):
    b = fluxmq_broker_factory(plugins=["mqtt"])
    port = b.port()
    first = RawClient(raw, port, "first", 4)
    first.subscribe(("s/#", _opts()))
    later = RawClient(raw, port, "later", 5)
    pub = RawClient(raw, port, "pub", 4)

    def chunk(tag: str) -> None:
        pub.send(b"".join(_pub("s/t", f"{tag}{i}".encode(), 4) for i in range(20)))
        pub.ping()

    chunk("x")
    later.subscribe(("s/t", _opts()), sub_id=3)
    chunk("y")
    later.unsubscribe("s/t")
    chunk("z")
    first.ping()
    later.ping()
    assert [m[1] for m in first.got] == [f"{t}{i}".encode() for t in "xyz" for i in range(20)]
    assert [(m[1], m[4]) for m in later.got] == [(f"y{i}".encode(), (3,)) for i in range(20)]
    assert path_spy.decisions == [True, True, True]


@pytest.mark.parametrize("lone", [False, True])
def test_acl_deny_between_runs_and_a_decision_not_cached_yet(
    fluxmq_broker_factory, raw, tmp_path, path_spy, lone
):
    acl = tmp_path / "acl.toml"
    acl.write_text(
        'default = "deny"\n'
        '[[rule]]\npermission = "allow"\naction = "subscribe"\ntopic = "#"\n'
        '[[rule]]\npermission = "allow"\naction = "publish"\ntopic = "ok/#"\n'
    )
    b = fluxmq_broker_factory(plugins=["mqtt"], config={"auth": {"acl_file": str(acl)}})
    port = b.port()
    sub = RawClient(raw, port, "sub", 5)
    sub.subscribe(("ok/#", _opts()), ("no/#", _opts()))
    pub = RawClient(raw, port, "pub", 5)
    parts = [_pub("ok/a", b"a%d" % i, 5) for i in range(5)]
    parts += [_pub("no/a", b"n%d" % i, 5) for i in range(5)]
    parts += [_pub("ok/a", b"b%d" % i, 5) for i in range(5)]
    before = b.call_soon(lambda: b.context.stats.authz_denied)
    if lone:  # runs of one; the first of each topic waits for its decision
        for part in parts:
            pub.send(part)
            pub.ping()
    else:
        pub.send(b"".join(parts))
    pub.ping()  # a 5.0 QoS 0 publish refused by the ACL does not close the connection
    sub.ping()
    assert [m[1] for m in sub.got] == [b"a%d" % i for i in range(5)] + [
        b"b%d" % i for i in range(5)
    ]
    assert b.call_soon(lambda: b.context.stats.authz_denied) - before == 5
    # The first ok/a run waited for its decision (per message, then resumed as a
    # batch); the denied run went per message; the last one was a batch.
    assert path_spy.decisions[-1] is True and False in path_spy.decisions
    if lone:
        assert set(path_spy.lengths) == {1}


def test_reads_filtered_per_subscriber_in_a_batch(fluxmq_broker_factory, raw, tmp_path, path_spy):
    acl = tmp_path / "acl.toml"
    acl.write_text(
        'default = "deny"\n'
        '[[rule]]\npermission = "allow"\naction = "publish"\ntopic = "#"\n'
        '[[rule]]\npermission = "allow"\naction = "subscribe"\ntopic = "f/ok"\n'
        '[[rule]]\npermission = "allow"\naction = "subscribe"\ntopic = "f/ok2"\nclients = ["all"]\n'
    )
    b = fluxmq_broker_factory(plugins=["mqtt"], config={"auth": {"acl_file": str(acl)}})
    port = b.port()
    some = RawClient(raw, port, "some", 4)
    some.subscribe(("f/+", _opts()))  # partly readable: deliveries are checked
    everything = RawClient(raw, port, "all", 5)
    everything.subscribe(("f/#", _opts()))
    pub = RawClient(raw, port, "pub", 4)
    for rnd in range(3):  # the first round fills the read decisions' cache
        for topic in ("f/ok", "f/ok2"):
            pub.send(b"".join(_pub(topic, b"%d.%d" % (rnd, i), 4) for i in range(6)))
        pub.ping()
    some.ping()
    everything.ping()
    assert [(m[0], m[1]) for m in some.got] == [
        ("f/ok", b"%d.%d" % (r, i)) for r in range(3) for i in range(6)
    ]
    assert [(m[0], m[1]) for m in everything.got] == [
        (t, b"%d.%d" % (r, i)) for r in range(3) for t in ("f/ok", "f/ok2") for i in range(6)
    ]
    assert path_spy.decisions[-2:] == [True, True]


class Observer:
    def __init__(self) -> None:
        self.published: list[bytes] = []
        self.delivered: list[tuple[bytes, str]] = []

    @hookimpl
    def fluxmq_message_published(self, context: Any, message: Any) -> None:
        self.published.append(message.payload)

    @hookimpl
    def fluxmq_message_delivered(
        self, context: Any, message: Any, protocol: str, client_id: str
    ) -> None:
        self.delivered.append((message.payload, client_id))


def test_message_hooks_take_the_per_message_path(fluxmq_broker_factory, raw, path_spy):
    seen = Observer()
    b = fluxmq_broker_factory(plugins=["mqtt"], extra_plugins=[("observer", seen)])
    port = b.port()
    sub = RawClient(raw, port, "sub", 4)
    sub.subscribe(("h/#", _opts()))
    pub = RawClient(raw, port, "pub", 4)
    payloads = [b"m%d" % i for i in range(12)]
    pub.send(b"".join(_pub("h/t", p, 4) for p in payloads))
    pub.ping()
    sub.ping()
    assert [m[1] for m in sub.got] == payloads
    deadline = time.monotonic() + WAIT
    while len(seen.delivered) < 12 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen.published[-12:] == payloads
    assert seen.delivered[-12:] == [(p, "sub") for p in payloads]
    assert path_spy.decisions and not any(path_spy.decisions)


def test_shared_subscriptions_and_dollar_topics_take_the_per_message_path(
    fluxmq_broker_factory, raw, path_spy
):
    b = fluxmq_broker_factory(plugins=["mqtt"])
    port = b.port()
    m1 = RawClient(raw, port, "m1", 5)
    m1.subscribe(("$share/g/g/#", _opts()))
    m2 = RawClient(raw, port, "m2", 5)
    m2.subscribe(("$share/g/g/#", _opts()))
    dollar = RawClient(raw, port, "dollar", 4)
    dollar.subscribe(("$x/#", _opts()))
    pub = RawClient(raw, port, "pub", 4)
    pub.send(b"".join(_pub("g/t", b"%d" % i, 4) for i in range(10)))
    pub.send(b"".join(_pub("$x/t", b"%d" % i, 4) for i in range(10)))
    pub.ping()
    for c in (m1, m2, dollar):
        c.ping()
    # The group's turn advances per message: each member gets every other one.
    got = sorted([m[1] for m in m1.got] + [m[1] for m in m2.got], key=int)
    assert got == [b"%d" % i for i in range(10)]
    assert len(m1.got) == len(m2.got) == 5
    assert [m[1] for m in dollar.got] == [b"%d" % i for i in range(10)]
    assert path_spy.decisions == [False, False]


def test_a_publish_rate_limit_takes_the_per_message_path(fluxmq_broker_factory, raw, path_spy):
    b = fluxmq_broker_factory(
        plugins=["mqtt"], config={"mqtt": {"publish_rate": 1, "publish_burst": 5}}
    )
    port = b.port()
    sub = RawClient(raw, port, "sub", 4)
    sub.subscribe(("l/#", _opts()))
    pub = RawClient(raw, port, "pub", 4)  # 3.1.1: over the limit, QoS 0 is dropped
    pub.send(b"".join(_pub("l/t", b"%d" % i, 4) for i in range(10)))
    pub.ping()
    sub.ping()
    assert [m[1] for m in sub.got] == [b"%d" % i for i in range(5)]
    assert path_spy.decisions == [False]
