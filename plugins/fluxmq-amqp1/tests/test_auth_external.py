"""``[auth_external]`` with Qpid Proton (SASL PLAIN): the login goes to the callout
service, a link costs one authorization callout whatever the number of messages,
and the identity the service returned is kept under the container-id (sent with
later callouts, shown in the admin API)."""

from __future__ import annotations

import http.client
import json
from typing import Any

import pytest
from proton import ConnectionException, Message
from proton.utils import BlockingConnection

from fluxmq_core.testing.callout import CalloutHTTPServer

WAIT = 5.0


def connect(b: Any, password: str) -> BlockingConnection:
    return BlockingConnection(
        f"amqp://127.0.0.1:{b.port('amqp1.bind')}",
        user="alice",
        password=password,
        allowed_mechs="PLAIN",
        timeout=WAIT,
    )


def test_login_links_and_identity_through_the_callout(fluxmq_broker_factory: Any) -> None:
    with CalloutHTTPServer() as svc:
        b = fluxmq_broker_factory(plugins=["amqp1"], config={"auth_external": {"url": svc.url}})
        conn = connect(b, "secret")
        try:
            cid = conn.conn.container
            r = conn.create_receiver("topic/ext/a", credit=10)
            s = conn.create_sender("topic/ext/a")
            for i in range(5):
                s.send(Message(body=i))
            assert [r.receive(timeout=WAIT).body for _ in range(5)] == [0, 1, 2, 3, 4]
            r.accept()
            login = svc.paths("/auth/authenticate")
            assert len(login) == 1 and login[0]["protocol"] == "AMQP_1_0"
            authz = svc.paths("/auth/authorize")
            assert sorted(c["action"] for c in authz) == ["Publish", "Subscribe"]
            assert {c["external_id"] for c in authz} == {"uuid-alice"}
            http_conn = http.client.HTTPConnection("127.0.0.1", b.port("http.bind"), timeout=WAIT)
            http_conn.request("GET", f"/api/v1/sessions/{cid}")
            resp = http_conn.getresponse()
            body = json.loads(resp.read())
            http_conn.close()
            assert resp.status == 200, body
            sessions = body["sessions"] if isinstance(body, dict) and "sessions" in body else body
            info = sessions[0] if isinstance(sessions, list) else sessions
            assert info["protocol"] == "amqp1" and info["extra"]["external_id"] == "uuid-alice"
        finally:
            conn.close()


def test_refused_login(fluxmq_broker_factory: Any) -> None:
    with CalloutHTTPServer() as svc:
        b = fluxmq_broker_factory(plugins=["amqp1"], config={"auth_external": {"url": svc.url}})
        with pytest.raises(ConnectionException):
            connect(b, "wrong")
        assert svc.paths("/auth/authenticate")[0]["username"] == "alice"
