"""``[[hooks.endpoints]]`` through the HTTP listener with a real client: allow, deny
and modify on publish (topic, payload, retain, properties) and subscribe (filter),
authorization again on a modified topic, register hooks refusing logins, per-event
and per-protocol selection, fail_mode on a dead service, and the gRPC HookService."""

from __future__ import annotations

import base64
import http.client
import json
import socket
from typing import Any

import pytest

from fluxmq_core.callout.hooks import HookEndpoint
from fluxmq_core.router.types import SubscriptionOptions
from fluxmq_core.testing.callout import CalloutHTTPServer
from fluxmq_core.testing.queues import RecordingConsumer


def post(broker: Any, topic: str, payload: bytes = b"x", user: str | None = None) -> int:
    headers = {"x-fluxmq-client-id": "h1"}
    if user:
        headers["Authorization"] = "Basic " + base64.b64encode(user.encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", broker.port("http.bind"), timeout=10)
    body = {"topic": topic, "payload": base64.b64encode(payload).decode()}
    conn.request("POST", "/publish", json.dumps(body), headers)
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp.status


def recorder(broker: Any, topic_filter: str = "#") -> RecordingConsumer:
    rec = RecordingConsumer("recorder")
    broker.call_soon(broker.context.router.subscribe, rec, topic_filter, SubscriptionOptions(qos=1))
    return rec


def start(factory: Any, *endpoints: dict[str, Any], extra: dict[str, Any] | None = None) -> Any:
    return factory(plugins=[], config={"hooks": {"endpoints": list(endpoints)}, **(extra or {})})


def rewrite(body: dict[str, Any]) -> dict[str, Any]:
    if body["hook"] != "auth_on_publish":
        return {"result": "ok"}
    if body["topic"] == "deny/me":
        return {"result": "deny", "reason": "nope"}
    if body["topic"] == "move/me":
        return {
            "result": "ok",
            "topic": "moved/here",
            "payload": base64.b64encode(b"changed").decode(),
            "retain": True,
            "properties": {"tag": "hooked"},
        }
    if body["topic"] == "move/forbidden":
        return {"result": "ok", "topic": "secret/x"}
    return {"result": "ok"}


def test_publish_allow_deny_modify(fluxmq_broker_factory, tmp_path):
    acl = tmp_path / "acl.toml"
    acl.write_text(
        '[[rule]]\npermission = "deny"\naction = "publish"\ntopic = "secret/#"\n'
        '[[rule]]\npermission = "allow"\ntopic = "#"\n'
    )
    with CalloutHTTPServer() as svc:
        svc.hook_answer = rewrite
        b = start(fluxmq_broker_factory, {"url": svc.url}, extra={"auth": {"acl_file": str(acl)}})
        rec = recorder(b)
        assert post(b, "plain/t") == 200
        assert post(b, "deny/me") == 403
        assert post(b, "move/me") == 200
        assert post(b, "move/forbidden") == 403  # authorized again under the new topic
        assert post(b, "plain/t2") == 200  # a round trip: everything before is routed
        got = b.call_soon(lambda: [(m.topic, m.payload, m.retain) for m in rec.messages])
        assert got == [
            ("plain/t", b"x", False),
            ("moved/here", b"changed", True),
            ("plain/t2", b"x", False),
        ]
        props = b.call_soon(lambda: rec.messages[1].user_properties)
        assert ("tag", "hooked") in list(props)
        seen = [c for c in svc.paths("/hooks") if c["hook"] == "auth_on_publish"]
        assert seen[0]["protocol"] == "HTTP" and seen[0]["topic"] == "plain/t"
        assert base64.b64decode(seen[0]["payload"]) == b"x"


def test_event_and_protocol_selection(fluxmq_broker_factory):
    with CalloutHTTPServer() as svc:
        svc.hook_answer = lambda body: {"result": "deny"}
        b = start(
            fluxmq_broker_factory,
            {"url": svc.url, "events": ["auth_on_subscribe"]},
            {"url": svc.url, "protocols": ["mqtt"]},
        )
        assert post(b, "any/t") == 200  # neither endpoint takes HTTP publishes
        assert svc.calls == []
        assert b.call_soon(lambda: b.context.hooks.wants("auth_on_publish", "mqtt"))
        assert not b.call_soon(lambda: b.context.hooks.wants("auth_on_publish", "http"))


def test_subscribe_hook_modifies_and_denies(fluxmq_broker_factory):
    def answer(body: dict[str, Any]) -> dict[str, Any]:
        if body["topic"] == "no/#":
            return {"result": "deny"}
        if body["topic"] == "old/#":
            return {"result": "ok", "topic": "new/#"}
        return {"result": "ok"}

    with CalloutHTTPServer() as svc:
        svc.hook_answer = answer
        b = start(fluxmq_broker_factory, {"url": svc.url, "events": ["auth_on_subscribe"]})
        port = b.port("http.bind")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/subscribe?filter=no/%23")
        assert conn.getresponse().status == 403
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/subscribe?filter=old/%23")
        resp = conn.getresponse()
        assert resp.status == 200
        resp.fp.readline()  # the stream is open: its subscription exists
        subs = b.call_soon(lambda: [s["topic_filter"] for s in _subscriptions(b)])
        conn.close()
        assert "new/#" in subs and "old/#" not in subs


def _subscriptions(b: Any) -> list[dict[str, Any]]:
    return [{"topic_filter": f} for info in b.context.sessions.list() for f in info.subscriptions]


def test_register_hook_refuses_and_fail_modes(fluxmq_broker_factory):
    with CalloutHTTPServer() as svc:
        svc.hook_answer = lambda body: (
            {"result": "deny", "reason": "banned"}
            if body["hook"] == "auth_on_register"
            else {"result": "ok"}
        )
        b = start(fluxmq_broker_factory, {"url": svc.url})
        assert post(b, "t") == 401  # the login itself was refused by the hook
        assert svc.paths("/hooks")[0]["hook"] == "auth_on_register"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
        b = start(fluxmq_broker_factory, {"url": dead, "events": ["auth_on_publish"]})
        assert post(b, "t") == 403  # fail_mode = deny (the default)
        b2 = start(
            fluxmq_broker_factory,
            {"url": dead, "events": ["auth_on_publish"], "fail_mode": "allow"},
        )
        assert post(b2, "t") == 200


def test_malformed_hook_answer_follows_fail_mode(fluxmq_broker_factory):
    with CalloutHTTPServer() as svc:
        svc.hook_answer = lambda body: {"result": "maybe"}
        b = start(fluxmq_broker_factory, {"url": svc.url, "events": ["auth_on_publish"]})
        assert post(b, "t") == 403


def test_bad_endpoint_config() -> None:
    with pytest.raises(ValueError, match="unknown"):
        HookEndpoint(url="http://x", events=["on_everything"])
    with pytest.raises(ValueError, match="url is required"):
        HookEndpoint()


def test_grpc_hook_service(fluxmq_broker_factory):
    pytest.importorskip("grpc")
    from fluxmq_core.testing.callout import CalloutGrpcServer

    with CalloutGrpcServer() as svc:
        svc.hook_answer = rewrite
        b = start(
            fluxmq_broker_factory,
            {"url": svc.url, "transport": "grpc", "events": ["auth_on_publish"]},
        )
        rec = recorder(b)
        assert post(b, "deny/me") == 403
        assert post(b, "move/me") == 200
        got = b.call_soon(lambda: [(m.topic, m.payload, m.retain) for m in rec.messages])
        assert got == [("moved/here", b"changed", True)]
        assert svc.paths("Handle")[0]["hook_enum"] == "AuthOnPublish"
