"""Authorization on AMQP 0.9.1 with pika over real sockets: the ACL file decides
publishes (routing key as a topic on the bridged exchange, ``$queue/<q>`` on the
others), consumers and basic.get (``$queue/<q>``) and bridged bindings (the MQTT
filter); a refusal closes the channel with 403. With the external auth callout the
decisions come from a real HTTP service, one call per (client, action, topic)."""

from __future__ import annotations

import http.client
import json
from typing import Any

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker

from fluxmq_core.auth_file import set_password
from fluxmq_core.testing.callout import CalloutHTTPServer

ACL = """default = "deny"
[[rule]]
permission = "allow"
topic = "sensors/#"
users = ["bob"]
[[rule]]
permission = "allow"
topic = "$queue/jobs"
users = ["bob"]
"""


def _admin(b: Any, method: str, path: str) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", b.port("http.bind"), timeout=5)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status in (200, 204), (resp.status, body)
        return json.loads(body) if body else None
    finally:
        conn.close()


def _connect(b: Any, user: str, password: str) -> pika.BlockingConnection:
    return pika.BlockingConnection(
        pika.ConnectionParameters(
            "127.0.0.1",
            b.port("amqp091.bind"),
            credentials=pika.PlainCredentials(user, password),
            socket_timeout=5,
        )
    )


@pytest.fixture
def secured(fluxmq_broker_factory, tmp_path):
    pw = tmp_path / "passwd"
    set_password(pw, "bob", "pw")
    acl = tmp_path / "acl.toml"
    acl.write_text(ACL)
    auth = {"password_file": str(pw), "acl_file": str(acl), "anonymous": False}
    return fluxmq_broker_factory(plugins=["amqp091"], config={"auth": auth})


def _refused(action) -> str:
    with pytest.raises(ChannelClosedByBroker) as info:
        action()
    assert info.value.reply_code == 403
    return info.value.reply_text


def test_acl_applies_to_publish_consume_get_and_bind(secured):
    conn = _connect(secured, "bob", "pw")
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("jobs")
    ch.queue_declare("secret")
    ch.basic_publish("", "jobs", b"ok")  # $queue/jobs: allowed, confirmed
    ch.basic_publish("amq.topic", "sensors.a", b"t")  # sensors/a: allowed
    text = _refused(lambda: ch.basic_publish("", "secret", b"no"))
    assert "queue 'secret'" in text and "bob" in text

    ch = conn.channel()
    ch.queue_bind("jobs", "amq.topic", "sensors.#")  # subscribe sensors/#: allowed
    text = _refused(lambda: ch.queue_bind("jobs", "amq.topic", "other.#"))
    assert "other.#" in text

    ch = conn.channel()
    method, _props, body = ch.basic_get("jobs", auto_ack=True)
    assert body == b"ok"
    ch.basic_consume("jobs", lambda *a: None)
    _refused(lambda: ch.basic_consume("secret", lambda *a: None))
    ch = conn.channel()
    _refused(lambda: ch.basic_get("secret"))
    ch = conn.channel()
    assert ch.queue_declare("secret", passive=True).method.message_count == 0
    conn.close()
    assert secured.call_soon(lambda: secured.context.stats.authz_denied) >= 4


def test_external_callout_decides_and_is_asked_once_per_topic(fluxmq_broker_factory):
    with CalloutHTTPServer() as svc:
        svc.users["bob"] = ("pw", "uuid-bob")
        svc.denied.add("$queue/forbidden")
        b = fluxmq_broker_factory(plugins=["amqp091"], config={"auth_external": {"url": svc.url}})
        conn = _connect(b, "bob", "pw")
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare("work")
        ch.queue_declare("forbidden")
        for i in range(20):
            ch.basic_publish("", "work", b"%d" % i)
        assert ch.queue_declare("work", passive=True).method.message_count == 20
        _refused(lambda: ch.basic_publish("", "forbidden", b"x"))
        checks = svc.paths("/auth/authorize")
        assert [(c["action"], c["topic"]) for c in checks] == [
            ("Publish", "$queue/work"),
            ("Publish", "$queue/forbidden"),
        ]
        assert {c["external_id"] for c in checks} == {"uuid-bob"}
        assert svc.paths("/auth/authenticate")[0]["protocol"] == "AMQP_0_9_1"
        ch = conn.channel()
        ch.basic_consume("work", lambda *a: None)
        assert svc.paths("/auth/authorize")[-1]["action"] == "Subscribe"
        # The admin API's session view: the connection, its consumer, the identity.
        sessions = _admin(b, "GET", "/api/v1/sessions?protocol=amqp091")
        listed = sessions["sessions"] if isinstance(sessions, dict) else sessions
        (info,) = [s for s in listed if s["protocol"] == "amqp091"]
        assert info["username"] == "bob" and info["extra"]["external_id"] == "uuid-bob"
        assert info["subscriptions"] == {"$queue/work": 1}
        _admin(b, "DELETE", f"/api/v1/sessions/{info['client_id']}")  # an operator's kick
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
            conn.channel().queue_declare("work", passive=True)
        assert closed.value.reply_code == 320
