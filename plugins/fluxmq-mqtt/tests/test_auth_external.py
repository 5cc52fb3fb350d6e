"""``[auth_external]`` with paho-mqtt: one authorization callout per (client, action,
topic) however many messages flow, a refused login gets CONNACK 0x86 / 0x87-class
refusals, and the identity the service returned is shown in the admin API."""

from __future__ import annotations

import http.client
import json

from fluxmq_core.testing.callout import CalloutHTTPServer


def test_publish_stream_costs_one_callout_per_topic(fluxmq_broker_factory, clients):
    with CalloutHTTPServer() as svc:
        b = fluxmq_broker_factory(plugins=["mqtt"], config={"auth_external": {"url": svc.url}})
        port = b.port()
        sub = clients(port, "watcher", username="alice", password="secret")
        sub.subscribe("s/#", 1)
        pub = clients(port, "dev1", username="alice", password="secret")
        for i in range(5):
            pub.publish("s/a", b"%d" % i, qos=1)
        pub.publish("s/b", b"b", qos=1)
        got = [sub.get().payload for _ in range(6)]
        assert got == [b"0", b"1", b"2", b"3", b"4", b"b"]
        publishes = [c for c in svc.paths("/auth/authorize") if c["action"] == "Publish"]
        assert sorted(c["topic"] for c in publishes) == ["s/a", "s/b"]
        assert {c["external_id"] for c in publishes} == {"uuid-alice"}
        assert svc.paths("/auth/authenticate")[0]["protocol"] == "MQTT"

        conn = http.client.HTTPConnection("127.0.0.1", b.port("http.bind"), timeout=5)
        conn.request("GET", "/api/v1/sessions/dev1")
        resp = conn.getresponse()
        body = json.loads(resp.read())
        conn.close()
        assert resp.status == 200, body
        sessions = body["sessions"] if isinstance(body, dict) and "sessions" in body else body
        info = sessions[0] if isinstance(sessions, list) else sessions
        assert info["extra"]["external_id"] == "uuid-alice"


def test_refused_login(fluxmq_broker_factory, clients):
    with CalloutHTTPServer() as svc:
        b = fluxmq_broker_factory(plugins=["mqtt"], config={"auth_external": {"url": svc.url}})
        bad = clients(b.port(), "x", username="alice", password="nope", connect=False)
        _flags, rc, _props = bad.connect(expect_ok=False)
        assert rc.is_failure
