"""``[[hooks.endpoints]]`` on AMQP 1.0 with Qpid Proton against a real HTTP hook
service: ``auth_on_publish`` allows, denies (the rejected outcome) and modifies
(topic, payload, properties; the new topic authorized again), in order;
``auth_on_subscribe`` denies a receiver attach or moves it to another filter."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from proton import Delivery, Message
from proton.utils import BlockingConnection, LinkDetached, SendException

from fluxmq_core.testing.callout import CalloutHTTPServer

WAIT = 5.0
ACL = (
    '[[rule]]\npermission = "deny"\naction = "publish"\ntopic = "secret/#"\n'
    '[[rule]]\npermission = "deny"\naction = "subscribe"\ntopic = "secret/#"\n'
    '[[rule]]\npermission = "allow"\ntopic = "#"\n'
)


def answer(body: dict[str, Any]) -> dict[str, Any]:
    topic = body["topic"]
    if body["hook"] == "auth_on_publish":
        if topic == "hk/deny":
            return {"result": "deny", "reason": "nope"}
        if topic == "hk/move":
            return {
                "result": "ok",
                "topic": "hk/moved",
                "payload": base64.b64encode(b"changed").decode(),
                "properties": {"tag": "hooked"},
            }
        if topic == "hk/forbidden":
            return {"result": "ok", "topic": "secret/x"}
    if body["hook"] == "auth_on_subscribe":
        if topic == "hk/no/#":
            return {"result": "deny", "reason": "no subscriptions here"}
        if topic == "hk/old/#":
            return {"result": "ok", "topic": "hk/new/#"}
        if topic == "hk/sneaky":
            return {"result": "ok", "topic": "secret/#"}
    return {"result": "ok"}


@pytest.fixture
def hooked(fluxmq_broker_factory: Any, tmp_path: Any) -> Any:
    acl = tmp_path / "acl.toml"
    acl.write_text(ACL)
    with CalloutHTTPServer() as svc:
        svc.hook_answer = answer
        b = fluxmq_broker_factory(
            plugins=["amqp1"],
            config={
                "hooks": {"endpoints": [{"url": svc.url, "protocols": ["amqp1"]}]},
                "auth": {"acl_file": str(acl)},
            },
        )
        conn = BlockingConnection(f"amqp://127.0.0.1:{b.port('amqp1.bind')}", timeout=WAIT)
        try:
            yield b, svc, conn
        finally:
            conn.close()


def test_publish_hook_allows_denies_and_modifies_in_order(hooked: Any) -> None:
    _b, svc, conn = hooked
    moved = conn.create_receiver("topic/hk/moved", credit=10, name="moved")
    plain = conn.create_receiver("topic/hk/plain", credit=20, name="plain")
    s = conn.create_sender(None, name="relay")  # the anonymous relay: one link, many topics
    s.send(Message(address="topic/hk/plain", body="p0"))
    with pytest.raises(SendException) as info:
        s.send(Message(address="topic/hk/deny", body="x"))
    assert info.value.state == Delivery.REJECTED
    s.send(Message(address="topic/hk/move", body="original", properties={"k": "v"}))
    with pytest.raises(SendException) as info:
        s.send(Message(address="topic/hk/forbidden", body="x"))  # ACL again: secret/x
    assert info.value.state == Delivery.REJECTED
    m = moved.receive(timeout=WAIT)
    moved.accept()
    assert m.body == b"changed" and m.properties == {"k": "v", "tag": "hooked"}
    # many publishes, each waiting for its hook call, arrive in the order sent
    sender = conn.create_sender("topic/hk/plain", name="plain-s")
    for i in range(1, 15):
        sender.send(Message(body=f"p{i}"), timeout=WAIT)
    got = []
    for _ in range(15):
        got.append(plain.receive(timeout=WAIT).body)
        plain.accept()
    assert got == [f"p{i}" for i in range(15)]
    calls = [c for c in svc.paths("/hooks") if c["hook"] == "auth_on_publish"]
    assert calls[0]["protocol"] == "AMQP_1_0" and calls[0]["topic"] == "hk/plain"
    assert calls[0]["client_id"] and base64.b64decode(calls[0]["payload"]) == b"p0"


def test_subscribe_hook_denies_and_moves_a_receiver(hooked: Any) -> None:
    _b, _svc, conn = hooked
    with pytest.raises(LinkDetached) as info:
        conn.create_receiver("topic/hk/no/#", name="no")
    cond = info.value.link.remote_condition
    assert cond.name == "amqp:unauthorized-access" and cond.description == "no subscriptions here"
    with pytest.raises(LinkDetached) as info:
        conn.create_receiver("topic/hk/sneaky", name="sneaky")  # moved into what the ACL denies
    assert info.value.link.remote_condition.name == "amqp:unauthorized-access"
    r = conn.create_receiver("topic/hk/old/#", credit=5, name="old")
    # consumes the hook's filter (its source is answered as the client gave it)
    conn.create_sender("topic/hk/new/a", name="to-new").send(Message(body="here"))
    assert r.receive(timeout=WAIT).body == "here"
    r.accept()
