"""The sans-IO session, registry and connection layers, driven in memory with a
fake clock and scheduler (no sockets, no event loop)."""

from __future__ import annotations

from types import SimpleNamespace

from fluxmq_mqtt.codec import (
    Connack,
    Connect,
    Decoder,
    Disconnect,
    Properties,
    Puback,
    Publish,
    Pubrec,
    Subscribe,
    SubscribeOptions,
    encode,
)
from fluxmq_mqtt.config import MQTTConfig
from fluxmq_mqtt.connection import Connection
from fluxmq_mqtt.registry import SessionRegistry
from fluxmq_mqtt.session import Session
from fluxmq_mqtt.state import Phase, QoSState
from fluxmq_mqtt.waits import AuthWait

from fluxmq_core.auth import AuthResult
from fluxmq_core.clock import ManualClock
from fluxmq_core.message import Message
from fluxmq_core.router import Delivery, Router
from fluxmq_core.stats import Stats
from fluxmq_core.storage.memory import MemoryBrokerStore


class FakeScheduler:
    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.timers: list[list] = []

    def call_later(self, delay, fn, *args):
        timer = [self.clock() + delay, fn, args, False]
        self.timers.append(timer)
        return timer

    def cancel(self, timer) -> None:
        timer[3] = True

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        for timer in sorted(self.timers, key=lambda t: t[0]):
            if not timer[3] and timer[0] <= self.clock():
                timer[3] = True
                timer[1](*timer[2])


class FakeAuth:
    authorization_active = False
    filter_reads = False

    def authorize_cached(self, *a):
        return True

    def forget_client(self, cid):
        pass


def make_registry(store=None, **cfg):
    clock = ManualClock()
    router = Router(clock=clock)
    published: list[Message] = []

    def publish(m):
        published.append(m)
        return router.publish(m)

    events = SimpleNamespace(
        on_delivered=False,
        on_dropped=False,
        client_connected=lambda *a: None,
        client_disconnected=lambda *a: None,
        client_subscribed=lambda *a: None,
        client_unsubscribed=lambda *a: None,
    )
    ctx = SimpleNamespace(
        store=store if store is not None else MemoryBrokerStore(),
        stats=Stats(),
        events=events,
        clock=clock,
        router=router,
        auth=FakeAuth(),
        publish=publish,
        # No batch path (``BrokerContext.route_plan``): every QoS 0 PUBLISH, a lone
        # one included, reaches ``publish`` above as a message.
        route_plan=lambda topic: None,
    )
    sched = FakeScheduler(clock)
    reg = SessionRegistry(ctx, MQTTConfig(**cfg), sched)
    return reg, sched, published


class FakeConn:
    def __init__(self, window=2, room=True):
        self.send_window = window
        self.room = room
        self.sent: list[tuple] = []

    def has_room(self):
        return self.room

    def write_publish(self, message, qos, retain, ids, pid=None, dup=False):
        self.sent.append((message.payload, qos, pid, dup))
        return True

    def write_pubrel(self, pid):
        self.sent.append(("PUBREL", pid))


def test_window_queue_and_pump():
    reg, _s, _p = make_registry()
    s = Session(reg, "c", 5)
    conn = FakeConn(window=2)
    s.connection = conn
    for i in range(4):
        s.deliver(Message("t", b"%d" % i, 1), Delivery(1))
    assert [x[0] for x in conn.sent] == [b"0", b"1"] and len(s.queue) == 2
    assert s.acked(1, 1)
    assert [x[0] for x in conn.sent] == [b"0", b"1", b"2"]
    assert not s.acked(1, 1)  # already done


def test_qos0_dropped_when_no_room_and_offline_not_queued():
    reg, _s, _p = make_registry()
    s = Session(reg, "c", 5)
    s.connection = FakeConn(room=False)
    s.deliver(Message("t", b"x", 0), Delivery(0))
    assert reg.stats.messages_dropped == 1
    s.connection = None
    s.deliver(Message("t", b"x", 0), Delivery(0))
    s.deliver(Message("t", b"y", 1), Delivery(1))
    assert [m[1].payload for m in s.queue] == [b"y"]


def test_queue_bound_policies():
    for policy, kept in (("drop-oldest", [b"1", b"2"]), ("reject", [b"0", b"1"])):
        reg, _s, _p = make_registry(max_queued_messages=2, queue_policy=policy)
        s = Session(reg, "c", 5)
        for i in range(3):
            s.deliver(Message("t", b"%d" % i, 1), Delivery(1))
        assert [m[1].payload for m in s.queue] == kept
        assert reg.stats.messages_dropped == 1


def test_expired_messages_not_delivered():
    reg, _s, _p = make_registry()
    s = Session(reg, "c", 5)
    m = Message("t", b"x", 1)
    m.expires_at = reg.clock() + 5
    s.deliver(m, Delivery(1))
    reg.clock.advance(10)
    conn = FakeConn()
    s.connection = conn
    s.pump()
    assert conn.sent == []


def test_qos2_outbound_flow_and_resend():
    reg, _s, _p = make_registry()
    s = Session(reg, "c", 5)
    conn = FakeConn()
    s.connection = conn
    s.deliver(Message("t", b"a", 2), Delivery(2))
    s.deliver(Message("t", b"b", 2), Delivery(2))
    assert s.received(1, failed=False) is True
    assert s.inflight[1].state is QoSState.SENT_PUBREL
    assert s.received(99, failed=False) is None
    conn2 = FakeConn()
    s.connection = conn2
    s.resend(conn2)
    assert conn2.sent == [("PUBREL", 1), (b"b", 2, 2, True)]
    assert s.acked(1, 2) and not s.acked(2, 2)  # 2 is still waiting for PUBREC


def test_packet_ids_skip_in_use():
    reg, _s, _p = make_registry()
    s = Session(reg, "c", 5)
    s._next_pid = 0xFFFF
    conn = FakeConn(window=10)
    s.connection = conn
    for _ in range(3):
        s.deliver(Message("t", b"x", 1), Delivery(1))
    assert [x[2] for x in conn.sent] == [0xFFFF, 1, 2]


def test_persistent_session_mirrors_store():
    reg, _s, _p = make_registry()
    s = Session(reg, "c", 5, expiry=60)
    s.make_persistent()
    s.deliver(Message("t", b"x", 1), Delivery(1, False, (7,)))
    store = reg.store
    assert store.queue_length("c") == 1
    restored = Session(reg, "c", 5, persistent=True)
    import asyncio

    for seq, m in asyncio.run(store.queued("c")):
        restored.restore_queued(seq, m)
    assert restored.queue[0][4] == (7,) and restored.queue[0][1].payload == b"x"


# -- registry: expiry and wills under a fake clock ---------------------------------------


def connect(reg, cid, version=5, clean=True, expiry=0, will=None, will_delay=0):
    conn = Connection(reg, "test:1")
    conn.wakeup = lambda c: None
    props = Properties(session_expiry_interval=expiry) if version == 5 and expiry else None
    wp = Properties(will_delay_interval=will_delay) if will_delay else None
    conn.receive(
        encode(
            Connect(
                client_id=cid,
                clean_start=clean,
                protocol_level=version,
                properties=props,
                will_topic=will,
                will_payload=b"w",
                will_properties=wp,
            ),
            version,
        )
    )
    assert isinstance(conn.waiting, AuthWait)
    conn.auth_done(AuthResult(ok=True))
    dec = Decoder(version=version, role="client")
    ack = dec.packets(bytes(conn.out))[0]
    conn.out.clear()
    assert isinstance(ack, Connack) and ack.reason_code == 0
    return conn, ack


def test_will_delay_earlier_of_delay_and_session_end():
    reg, sched, published = make_registry()
    conn, _ = connect(reg, "a", expiry=10, will="will/a", will_delay=30)
    conn.lost()
    sched.advance(9)
    assert published == []
    sched.advance(1.5)  # the session ended at 10 s, before the 30 s delay
    assert [m.topic for m in published] == ["will/a"]
    assert "a" not in reg.sessions


def test_will_cancelled_by_reconnect_and_takeover_kicks():
    reg, sched, published = make_registry()
    conn, _ = connect(reg, "a", expiry=100, will="will/a", will_delay=5)
    conn.lost()
    _c2, ack = connect(reg, "a", clean=False, expiry=100)
    assert ack.session_present
    sched.advance(10)
    assert published == []
    c3, _ = connect(reg, "a", clean=False, expiry=100)
    assert _c2.phase is Phase.CLOSED and _c2.closing
    assert Decoder(version=5, role="client").packets(bytes(_c2.out))[0] == Disconnect(
        0x8E, Properties(reason_string="session taken over")
    )


def test_offline_fields_live_in_a_record_only_while_the_session_is_offline():
    reg, sched, published = make_registry()
    conn, _ = connect(reg, "a", expiry=100, will="will/a", will_delay=5)
    session = reg.sessions["a"]
    assert session._offline is None  # connected: no will timer, expiry timer, ...
    assert session.will is None and session.expiry_timer is None
    assert session.disconnected_at is None
    conn.lost()
    assert session._offline is not None
    assert session.will is not None and session.will_timer is not None
    assert session.expiry_timer is not None and session.disconnected_at is not None
    _c2, ack = connect(reg, "a", clean=False, expiry=100)
    assert ack.session_present and reg.sessions["a"] is session
    assert session._offline is None  # all four back to None: the record went
    assert session.will is None and session.will_timer is None
    sched.advance(10)
    assert published == []


def test_normal_disconnect_discards_will_and_expiry_zero_ends_session():
    reg, sched, published = make_registry()
    conn, _ = connect(reg, "a", will="will/a")
    conn.receive(encode(Disconnect(), 5))
    conn.lost()
    assert published == [] and "a" not in reg.sessions


class ReplicatingMemoryStore(MemoryBrokerStore):
    """A memory store whose sync stands for a copy made elsewhere (as a cluster
    driver's replicating wrapper): acknowledgements wait for it, a restart keeps
    nothing."""

    acks_wait_for_sync = True


class DurableMemoryStore(MemoryBrokerStore):
    """A memory store that claims to survive restarts (as a disk store does)."""

    durable = True


def test_a_clean_stop_publishes_delayed_wills_unless_the_store_survives_a_restart():
    for store, published_at_stop in (
        (MemoryBrokerStore(), True),
        (ReplicatingMemoryStore(), True),
        (DurableMemoryStore(), False),
    ):
        reg, sched, published = make_registry(store)
        conn, _ = connect(reg, "a", expiry=3600, will="will/a", will_delay=600)
        conn.lost()
        sched.advance(1)
        assert published == []
        reg.shutdown()
        assert [m.topic for m in published] == (["will/a"] if published_at_stop else []), store
        if not published_at_stop:  # kept for the next run, which publishes it when due
            assert "a" in store._wills


def test_acks_wait_for_the_sync_of_a_store_that_asks_for_it_not_of_a_memory_store():
    for store, held in ((MemoryBrokerStore(), False), (ReplicatingMemoryStore(), True)):
        reg, _sched, _p = make_registry(store)
        pub, _ = connect(reg, "pub", version=4)
        pub.receive(encode(Publish("x/y", b"hello", qos=1, packet_id=9), 4))
        if held:
            assert not pub.out and bytes(pub.held) == encode(Puback(9), 4)
        else:
            assert bytes(pub.out) == encode(Puback(9), 4) and not pub.held


def test_connection_pubsub_in_memory():
    reg, _sched, _p = make_registry()
    sub, _ = connect(reg, "sub")
    pub, _ = connect(reg, "pub", version=4)
    sub.receive(encode(Subscribe(1, (("x/+", SubscribeOptions(1)),)), 5))
    sub.out.clear()
    pub.receive(encode(Publish("x/y", b"hello", qos=1, packet_id=9), 4))
    assert bytes(pub.out) == encode(Puback(9), 4)
    got = Decoder(version=5, role="client").packets(bytes(sub.out))
    assert got == [Publish("x/y", b"hello", qos=1, packet_id=1)]
    # The same bytes shape is encoded once and cached on the message.
    assert reg.stats.publish_sent == 1


def test_publish_before_auth_result_waits_in_order():
    reg, _sched, _p = make_registry()
    conn = Connection(reg, "t:1")
    conn.wakeup = lambda c: None
    conn.receive(
        encode(Connect(client_id="p", protocol_level=5), 5) + encode(Publish("a", b"1"), 5)
    )
    assert conn.phase is Phase.AUTHENTICATING and len(conn.backlog) == 1
    conn.auth_done(AuthResult(ok=True))
    assert conn.phase is Phase.CONNECTED and not conn.backlog
    assert reg.stats.publish_received == 1


def test_deferred_acks_leave_in_publish_order_and_refusals_reach_5_0_only():
    for version in (5, 4):
        reg, _sched, _p = make_registry()
        conn, _ = connect(reg, f"p{version}", version=version)
        woken = []
        conn.wakeup = woken.append
        first = conn.defer_ack(1, 1)
        conn.ack_now(1, 2)  # answered at once, but after the deferred one
        third = conn.defer_ack(2, 3)
        assert not conn.out and conn.held_count == 3
        conn.resolve_ack(third)
        assert not conn.out and conn.held_count == 3  # the first still waits
        conn.resolve_ack(first, 0x97, "queue full")
        assert conn.held_count == 0 and woken == [conn]
        got = Decoder(version=version, role="client").packets(bytes(conn.out))
        assert [(type(p), p.packet_id) for p in got] == [(Puback, 1), (Puback, 2), (Pubrec, 3)]
        if version == 5:
            assert got[0].reason_code == 0x97
            assert got[0].properties.reason_string == "queue full"
        else:
            assert got[0].reason_code == 0  # 3.1.1 has no negative PUBACK


def test_a_deferred_ack_resolved_after_close_writes_nothing():
    reg, _sched, _p = make_registry()
    conn, _ = connect(reg, "gone")
    ack = conn.defer_ack(1, 7)
    conn.close("test")
    conn.out.clear()
    conn.resolve_ack(ack)
    assert not conn.out and conn.held_count == 0


def test_session_queue_drops_are_counted_per_client_and_logged_rate_limited(caplog):
    reg, _sched, _p = make_registry(max_queued_messages=1)
    a, b = Session(reg, "a", 5), Session(reg, "b", 5)
    with caplog.at_level("WARNING", logger="fluxmq.mqtt"):
        for i in range(3):
            a.deliver(Message("t", b"%d" % i, 1), Delivery(1))
        assert [m[1].payload for m in a.queue] == [b"2"]  # the oldest went
        assert reg.stats.session_queue_dropped == 2
        assert reg.queue_drops.by_client == {"a": 2}
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 1, lines  # the first drop at once, the second waits
        assert "max_queued_messages = 1" in lines[0] and "'a': 1" in lines[0]
        reg.clock.advance(61)
        b.deliver(Message("t", b"x", 1), Delivery(1))
        b.deliver(Message("t", b"y", 1), Delivery(1))
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 2, lines
        assert "dropped 2 " in lines[1] and "'a': 1" in lines[1] and "'b': 1" in lines[1]
    reg.end_session(a)
    assert reg.queue_drops.by_client == {"b": 1}
    assert reg.stats.session_queue_dropped == 3


def test_the_former_module_name_still_imports():
    from fluxmq_mqtt import registry, sessions

    assert sessions.SessionRegistry is registry.SessionRegistry is SessionRegistry
    assert sessions.Will is registry.Will


def test_a_single_node_never_claims_sessions_through_the_cluster():
    """With the ``none`` driver the registry keeps no cluster (a CONNECT checks one
    None); a distributed driver gets the exporter and the session-lost callback."""
    from fluxmq_core.cluster import SingleNodeCluster

    reg, _s, _p = make_registry()
    assert reg.cluster is None
    ctx = reg.context
    ctx.cluster = SingleNodeCluster("n1")
    assert SessionRegistry(ctx, MQTTConfig(), FakeScheduler(ctx.clock)).cluster is None

    class Distributed:
        distributed = True

        def __init__(self):
            self.exporters, self.watchers = {}, []

        def session_exporter(self, protocol, fn):
            self.exporters[protocol] = fn

        def watch_sessions(self, fn):
            self.watchers.append(fn)

    ctx.cluster = Distributed()
    reg2 = SessionRegistry(ctx, MQTTConfig(), FakeScheduler(ctx.clock))
    assert reg2.cluster is ctx.cluster
    assert ctx.cluster.exporters == {"mqtt": reg2.export_session}
    assert ctx.cluster.watchers == [reg2.session_lost]


def test_a_clean_start_on_the_same_node_keeps_the_new_connection_s_claim():
    """Ending the old session of a clean-start reconnect must not release the
    cluster claim just made for the new connection (else another node could take
    the session without asking this one)."""
    reg, _s, _p = make_registry()
    released, saved = [], []
    reg.cluster = SimpleNamespace(
        will_set=lambda cid, will: None,
        session_saved=lambda cid, snap: saved.append((cid, snap)),
        release_session=lambda claim: released.append(claim) or _Noop(),
    )

    def conn():
        return SimpleNamespace(
            client_id="c", version=5, username=None, expiry=0, will=None, kick=lambda *a: None
        )

    reg.claims["c"] = "claim-1"
    first = conn()
    session, _present = reg.attach(first, True)
    first.session = session
    reg.claims["c"] = "claim-2"  # the second CONNECT claimed it again (same node)
    second = conn()
    second.session, _present = reg.attach(second, True)
    assert released == [] and reg.claims == {"c": "claim-2"}
    reg.detach(second, False)  # expiry 0: the session ends, the claim goes
    assert released == ["claim-2"] and reg.claims == {}


class _Noop:
    def close(self):
        pass
