"""``[[hooks.endpoints]]`` on MQTT with paho-mqtt: a publish hook denies (5.0 PUBACK
0x87) or rewrites topic and payload, a subscribe hook rewrites the filter and the
granted QoS, an unsubscribe hook refuses."""

from __future__ import annotations

import base64
from typing import Any

from fluxmq_core.testing.callout import CalloutHTTPServer


def answer(body: dict[str, Any]) -> dict[str, Any]:
    hook, topic = body["hook"], body["topic"]
    if hook == "auth_on_publish" and topic == "deny/me":
        return {"result": "deny", "reason": "no"}
    if hook == "auth_on_publish" and topic == "in/raw":
        return {"result": "ok", "topic": "out/cooked", "payload": base64.b64encode(b"new").decode()}
    if hook == "auth_on_subscribe" and topic == "want/#":
        return {"result": "ok", "topic": "out/#", "qos": 0}
    if hook == "auth_on_unsubscribe" and topic == "out/#":
        return {"result": "deny"}
    return {"result": "ok"}


def test_mqtt_publish_subscribe_unsubscribe_hooks(fluxmq_broker_factory, clients):
    with CalloutHTTPServer() as svc:
        svc.hook_answer = answer
        b = fluxmq_broker_factory(
            plugins=["mqtt"], config={"hooks": {"endpoints": [{"url": svc.url}]}}
        )
        port = b.port()
        sub = clients(port, "sub")
        assert [rc.value for rc in sub.subscribe("want/#", 1)] == [0]  # QoS lowered by hook
        sub.subscribe("deny/#", 1)
        pub = clients(port, "pub")
        info = pub.publish("deny/me", b"x", qos=1)
        assert info.rc == 0  # acknowledged (with 0x87, which paho reports only in logs)
        pub.publish("in/raw", b"old", qos=1)
        m = sub.get()  # deny/me was published first and never delivered
        assert (m.topic, m.payload) == ("out/cooked", b"new")
        sub.client.unsubscribe("out/#")
        sub.subscribe("other/t", 0)  # a round trip: the UNSUBSCRIBE was handled before
        subs = b.call_soon(lambda: b.context.sessions.get("sub")[0].subscriptions)
        assert "out/#" in subs  # the hook refused the unsubscribe
        hooks = [c["hook"] for c in svc.paths("/hooks")]
        assert {
            "auth_on_register",
            "auth_on_subscribe",
            "auth_on_publish",
            "auth_on_unsubscribe",
        } <= set(hooks)
        pubs = [c for c in svc.paths("/hooks") if c["hook"] == "auth_on_publish"]
        assert [c["topic"] for c in pubs] == ["deny/me", "in/raw"]
        assert pubs[0]["protocol"] == "MQTT"
