"""Session takeover between nodes without the network (MQTT sessions through the etcd
driver: a cross-plugin test, so it lives here): an MQTT session exported by
one registry, carried through the protobuf codec, and imported by another comes
back whole (subscriptions, offline queue, QoS 1/2 in flight both ways with their
properties, will); the old owner refuses a takeover with a stale epoch."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from fluxmq_etcd.codec import pb, session_from_proto, session_to_proto
from fluxmq_etcd.driver import EtcdCluster
from fluxmq_etcd.peers import HandlerError
from fluxmq_mqtt.config import MQTTConfig
from fluxmq_mqtt.registry import SessionRegistry, Will
from fluxmq_mqtt.session import Session
from fluxmq_mqtt.state import QoSState

from fluxmq_core.clock import ManualClock
from fluxmq_core.message import Message
from fluxmq_core.router import Delivery, Router, SubscriptionOptions
from fluxmq_core.stats import Stats
from fluxmq_core.storage.memory import MemoryBrokerStore


class _Sched:
    def call_later(self, delay: float, fn: Any, *args: Any) -> list[Any]:
        return [delay, fn, args]

    def cancel(self, handle: Any) -> None:
        pass


class _Auth:
    filter_reads = False

    def forget_client(self, cid: str) -> None:
        pass


def _registry() -> tuple[SessionRegistry, list[Message]]:
    clock = ManualClock()
    router = Router(clock=clock)
    published: list[Message] = []
    events = SimpleNamespace(on_delivered=False, on_dropped=False)
    ctx = SimpleNamespace(
        store=MemoryBrokerStore(),
        stats=Stats(),
        events=events,
        clock=clock,
        router=router,
        auth=_Auth(),
        publish=published.append,
    )
    return SessionRegistry(ctx, MQTTConfig(), _Sched()), published


class _Conn:
    send_window = 1

    def __init__(self) -> None:
        self.kicked: list[int] = []
        self.will: Will | None = None
        self.session: Any = None

    def has_room(self) -> bool:
        return True

    def write_publish(self, *a: Any) -> bool:
        return True

    def kick(self, code: int, reason: str) -> None:
        self.kicked.append(code)


def test_an_exported_session_is_imported_whole_on_another_node() -> None:
    old, _ = _registry()
    s = Session(old, "c1", 5, expiry=300)
    old.sessions["c1"] = s
    opts = SubscriptionOptions(1, True, True, 1, 7)
    old.router.subscribe(s, "a/#", opts)
    s.add_subscription("a/#", opts)
    conn = _Conn()
    conn.will = Will(Message("w/c1", b"bye", 1, origin_client="c1"), delay=5)
    conn.session = s
    s.connection = conn  # type: ignore[assignment]
    props = dict(user_properties=[("k", "v")], content_type="text/x", correlation_data=b"\x01")
    s.deliver(Message("a/1", b"one", 1, **props), Delivery(1, False, (7,)))  # in flight
    s.deliver(Message("a/2", b"two", 1, **props), Delivery(1, False, (7,)))  # queued
    s.inflight[1].state = QoSState.SENT_PUBLISH
    s.hold_inbound(9, Message("in/q2", b"held", 2))

    snap = old.export_session("c1", 42)
    assert conn.kicked == [0x8E]
    assert "c1" not in old.sessions
    assert old.router.publish(Message("a/9", b"gone", 1)) == 0  # unsubscribed there
    assert snap is not None
    wire = session_to_proto(snap).SerializeToString()
    back = session_from_proto(pb.SessionState.FromString(wire))

    new, published = _registry()
    session = new.import_session(back, clean_start=False)
    assert session.subscriptions == {"a/#": opts}
    assert [
        (pid, e.message.payload, e.message.user_properties) for pid, e in session.inflight.items()
    ] == [(1, b"one", [("k", "v")])]
    queued = [
        (m.payload, m.content_type, m.correlation_data, ids) for _s, m, _q, _r, ids in session.queue
    ]
    assert queued == [(b"two", "text/x", b"\x01", (7,))]
    assert session.inbound[9].payload == b"held"
    assert published == []  # a delayed will of a continued session is not sent
    # Routed on the new node.
    assert new.router.publish(Message("a/3", b"three", 1)) >= 1


def test_the_live_will_goes_out_when_the_new_connection_starts_clean() -> None:
    old, _ = _registry()
    s = Session(old, "c2", 5)
    old.sessions["c2"] = s
    conn = _Conn()
    conn.will = Will(Message("w/c2", b"bye", 1, origin_client="c2"))
    conn.session = s
    s.connection = conn  # type: ignore[assignment]
    snap = old.export_session("c2", 5)
    assert snap is not None
    new, published = _registry()
    new.import_session(session_from_proto(session_to_proto(snap)), clean_start=True)
    assert [m.payload for m in published] == [b"bye"]


async def test_a_takeover_with_a_stale_epoch_is_refused() -> None:
    node = EtcdCluster("a")
    node._owned["c3"] = 100
    exported: list[str] = []
    node.session_exporter("mqtt", lambda cid, epoch: exported.append(cid))
    with pytest.raises(HandlerError) as err:
        await node._serve_takeover("b", pb.TakeoverRequest(client_id="c3", to_node="b", epoch=99))
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert exported == [] and node._owned == {"c3": 100}
    reply = await node._serve_takeover(
        "b", pb.TakeoverRequest(client_id="c3", to_node="b", epoch=101)
    )
    assert exported == ["c3"] and not reply.found and node._owned == {}
