"""``[[hooks.endpoints]]`` on AMQP 0.9.1 with pika and a real hook service: a
publish hook denies (403), moves a publish to another queue with a new payload, or
moves a bridged publish to another topic (authorized again); a subscribe hook
denies a consumer."""

from __future__ import annotations

import base64
from typing import Any

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker

from fluxmq_core.router.types import SubscriptionOptions
from fluxmq_core.testing.callout import CalloutHTTPServer
from fluxmq_core.testing.queues import RecordingConsumer

ACL = (
    '[[rule]]\npermission = "deny"\naction = "publish"\ntopic = "secret/#"\n'
    '[[rule]]\npermission = "allow"\ntopic = "#"\n'
    '[[rule]]\npermission = "allow"\ntopic = "$queue/#"\n'
)


def answer(body: dict[str, Any]) -> dict[str, Any]:
    topic = body["topic"]
    if topic in ("$queue/denied", "$queue/nosub"):
        if body["hook"] == "auth_on_subscribe" or topic == "$queue/denied":
            return {"result": "deny", "reason": "nope"}
    if topic == "$queue/move":
        new = base64.b64encode(b"new " + base64.b64decode(body["payload"])).decode()
        return {"result": "ok", "topic": "$queue/moved", "payload": new}
    if topic == "t/move":
        return {"result": "ok", "topic": "t/moved"}
    if topic == "t/sneak":
        return {"result": "ok", "topic": "secret/x"}
    return {"result": "ok"}


def test_publish_and_subscribe_hooks(fluxmq_broker_factory, tmp_path):
    acl = tmp_path / "acl.toml"
    acl.write_text(ACL)
    with CalloutHTTPServer() as svc:
        svc.hook_answer = answer
        config = {
            "hooks": {"endpoints": [{"url": svc.url, "protocols": ["amqp091"]}]},
            "auth": {"acl_file": str(acl)},
        }
        b = fluxmq_broker_factory(plugins=["amqp091"], config=config)
        rec = RecordingConsumer("recorder")
        b.call_soon(b.context.router.subscribe, rec, "t/#", SubscriptionOptions(qos=1))
        conn = pika.BlockingConnection(
            pika.ConnectionParameters("127.0.0.1", b.port("amqp091.bind"), socket_timeout=5)
        )
        ch = conn.channel()
        ch.confirm_delivery()
        for q in ("plain", "move", "moved", "denied", "nosub"):
            ch.queue_declare(q)
        ch.basic_publish("", "plain", b"p")
        ch.basic_publish("", "move", b"m")
        ch.basic_publish("amq.topic", "t.move", b"bridged")
        ch.basic_publish("amq.topic", "t.plain", b"as is")
        assert ch.queue_declare("plain", passive=True).method.message_count == 1
        assert ch.queue_declare("move", passive=True).method.message_count == 0
        _m, _p, body = ch.basic_get("moved", auto_ack=True)
        assert body == b"new m"
        got = b.call_soon(lambda: [(m.topic, m.payload) for m in rec.messages])
        assert got == [("t/moved", b"bridged"), ("t/plain", b"as is")]
        with pytest.raises(ChannelClosedByBroker) as info:
            ch.basic_publish("", "denied", b"x")
        assert info.value.reply_code == 403 and "nope" in info.value.reply_text
        ch = conn.channel()
        with pytest.raises(ChannelClosedByBroker) as info:
            ch.basic_publish("amq.topic", "t.sneak", b"x")  # moved where it may not go
            ch.queue_declare("plain", passive=True)
        assert info.value.reply_code == 403
        ch = conn.channel()
        ch.basic_consume("plain", lambda *a: None)
        with pytest.raises(ChannelClosedByBroker) as info:
            ch.basic_consume("nosub", lambda *a: None)
        assert info.value.reply_code == 403
        conn.close()
        hooks = [(c["hook"], c["topic"], c["protocol"]) for c in svc.paths("/hooks")]
        assert ("auth_on_publish", "$queue/plain", "AMQP_0_9_1") in hooks
        assert ("auth_on_subscribe", "$queue/plain", "AMQP_0_9_1") in hooks
        assert ("auth_on_subscribe", "$queue/moved", "AMQP_0_9_1") in hooks  # basic.get
