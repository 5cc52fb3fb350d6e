"""The admin API under /api/v1 and its OpenAPI document, over real sockets."""

from __future__ import annotations

import http.client
import json
import time
from pathlib import Path
from typing import Any

import pytest

from fluxmq_core.http.admin import is_loopback
from fluxmq_core.http.openapi import OPERATIONS
from fluxmq_core.sessions import SessionInfo

WAIT = 5.0


def request(
    port: int,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    host: str = "127.0.0.1",
) -> tuple[int, dict[str, str], Any]:
    conn = http.client.HTTPConnection(host, port, timeout=WAIT)
    conn.request(method, path, headers=headers or {})
    resp = conn.getresponse()
    text = resp.read()
    conn.close()
    return (
        resp.status,
        {k.lower(): v for k, v in resp.getheaders()},
        json.loads(text) if text else None,
    )


class FakeSessions:
    """A protocol's session provider, as a plugin would register it."""

    def __init__(self, n: int) -> None:
        self.sessions = {
            f"dev-{i:02d}": SessionInfo(
                f"dev-{i:02d}",
                "fake",
                connected=i % 2 == 0,
                subscriptions={f"t/{i}": 1, "all/#": 0},
            )
            for i in range(n)
        }
        self.kicked: list[str] = []

    def list(self) -> list[SessionInfo]:
        return list(self.sessions.values())

    def get(self, client_id: str) -> SessionInfo | None:
        return self.sessions.get(client_id)

    def disconnect(self, client_id: str) -> bool:
        info = self.sessions.get(client_id)
        if info is None or not info.connected:
            return False
        info.connected = False
        self.kicked.append(client_id)
        return True


@pytest.fixture
def broker(fluxmq_broker_factory: Any) -> Any:
    b = fluxmq_broker_factory(plugins=[])
    b.fake = FakeSessions(12)
    b.call_soon(b.context.sessions.register, "fake", b.fake)
    return b


def test_stats(broker: Any) -> None:
    status, _, body = request(broker.port("http.bind"), "GET", "/api/v1/stats")
    assert status == 200
    assert {"broker", "router", "queues", "listeners", "uptime", "node_id"} <= set(body)
    assert "messages_received" in body["broker"] and "http.bind" in body["listeners"]


def test_sessions_filter_and_paging(broker: Any) -> None:
    port = broker.port("http.bind")
    status, _, body = request(port, "GET", "/api/v1/sessions?protocol=fake&limit=5&offset=5")
    assert status == 200 and body["total"] == 12 and body["limit"] == 5 and body["offset"] == 5
    assert [s["client_id"] for s in body["sessions"]] == [f"dev-{i:02d}" for i in range(5, 10)]
    _, _, body = request(port, "GET", "/api/v1/sessions?prefix=dev-1")
    assert [s["client_id"] for s in body["sessions"]] == ["dev-10", "dev-11"]
    _, _, body = request(port, "GET", "/api/v1/sessions?protocol=fake&connected=false")
    assert body["total"] == 6
    assert request(port, "GET", "/api/v1/sessions?limit=0")[0] == 400
    assert request(port, "GET", "/api/v1/sessions?limit=x")[0] == 400
    assert request(port, "GET", "/api/v1/sessions?connected=maybe")[0] == 400


def test_one_session_and_disconnect(broker: Any) -> None:
    port = broker.port("http.bind")
    status, _, body = request(port, "GET", "/api/v1/sessions/dev-04")
    assert (
        status == 200
        and body["protocol"] == "fake"
        and body["subscriptions"] == {"t/4": 1, "all/#": 0}
    )
    assert request(port, "GET", "/api/v1/sessions/nobody")[0] == 404
    assert request(port, "DELETE", "/api/v1/sessions/dev-04")[0] == 200
    assert broker.fake.kicked == ["dev-04"]
    assert request(port, "DELETE", "/api/v1/sessions/dev-04")[0] == 404  # not connected now
    # Client ids with slashes travel %-encoded.
    broker.fake.sessions["a/b"] = SessionInfo("a/b", "fake", connected=True)
    assert request(port, "GET", "/api/v1/sessions/a%2Fb")[2]["client_id"] == "a/b"


def test_subscriptions(broker: Any) -> None:
    port = broker.port("http.bind")
    _, _, body = request(port, "GET", "/api/v1/subscriptions?protocol=fake&prefix=t/&limit=3")
    assert body["total"] == 12 and len(body["subscriptions"]) == 3
    assert body["subscriptions"][0] == {
        "client_id": "dev-00",
        "protocol": "fake",
        "filter": "t/0",
        "qos": 1,
    }
    _, _, body = request(port, "GET", "/api/v1/subscriptions?client_id=dev-03")
    assert {s["filter"] for s in body["subscriptions"]} == {"t/3", "all/#"}


def test_queues(fluxmq_broker_factory: Any) -> None:
    b = fluxmq_broker_factory(plugins=[], config={"queues": {"orders": {"type": "classic"}}})
    status, _, body = request(b.port("http.bind"), "GET", "/api/v1/queues")
    assert status == 200 and [q["name"] for q in body["queues"]] == ["orders"]
    assert {"depth", "consumers", "groups", "type"} <= set(body["queues"][0])


def test_reload(broker: Any) -> None:
    status, _, body = request(broker.port("http.bind"), "POST", "/api/v1/reload")
    assert status == 200 and body["status"] == "ok" and "auth" in body["applied"]


def test_admin_token_is_required_when_set(fluxmq_broker_factory: Any) -> None:
    b = fluxmq_broker_factory(plugins=[], config={"http": {"admin_token": "s3cret"}})
    port = b.port("http.bind")
    for method, path in (
        ("GET", "/api/v1/stats"),
        ("GET", "/api/v1/sessions"),
        ("DELETE", "/api/v1/sessions/x"),
        ("POST", "/api/v1/reload"),
        ("GET", "/api/v1/queues"),
        ("GET", "/api/v1/subscriptions"),
    ):
        status, headers, _ = request(port, method, path)
        assert status == 401 and "Bearer" in headers["www-authenticate"], path
        assert request(port, method, path, {"Authorization": "Bearer wrong"})[0] == 401
    assert request(port, "GET", "/api/v1/stats", {"Authorization": "Bearer s3cret"})[0] == 200
    # The public routes do not need it.
    assert request(port, "GET", "/health")[0] == 200
    assert request(port, "GET", "/api/v1/openapi.json")[0] == 200


def test_without_token_only_loopback_clients_are_served(fluxmq_broker_factory: Any) -> None:
    """Reached through a non-loopback address of this machine (when it has one)."""
    import socket

    try:
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.connect(("192.0.2.1", 9))  # no packet is sent: only picks the outgoing address
        own = probe.getsockname()[0]
        probe.close()
    except OSError:
        own = "127.0.0.1"
    if is_loopback(own):
        pytest.skip("no non-loopback address on this machine")
    b = fluxmq_broker_factory(plugins=[], config={"http": {"bind": f"{own}:0"}})
    port = b.port("http.bind")
    status, _, body = request(port, "GET", "/api/v1/stats", host=own)
    assert status == 403 and "loopback" in body["error"]
    assert request(port, "GET", "/health", host=own)[0] == 200


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("::ffff:127.0.0.5")
    assert not is_loopback("10.0.0.1") and not is_loopback("?") and not is_loopback("example.com")


def test_openapi_document_is_valid_and_covers_every_route(broker: Any) -> None:
    status, _, doc = request(broker.port("http.bind"), "GET", "/api/v1/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.1")
    try:
        from openapi_spec_validator import validate
    except ImportError:  # pragma: no cover - a dev dependency
        validate = None
    if validate is not None:
        validate(doc)
    routes = broker.context.extras["fluxmq.http"].router.routes
    for route in routes:
        assert route.method.lower() in doc["paths"][route.pattern], (route.method, route.pattern)
        assert (route.method, route.pattern) in OPERATIONS, (
            f"no OpenAPI details for {route.method} {route.pattern}"
        )
    assert {"/publish", "/health", "/ready", "/subscribe", "/api/v1/sessions/{client_id}"} <= set(
        doc["paths"]
    )
    ids = [op["operationId"] for path in doc["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids))


def test_docs_page_mentions_every_route() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "http.md").read_text()
    for method, pattern in OPERATIONS:
        assert f"{method} {pattern}" in text, f"docs/http.md does not mention {method} {pattern}"


def test_http_listener_can_be_disabled(fluxmq_broker_factory: Any) -> None:
    b = fluxmq_broker_factory(plugins=[], config={"http": {"bind": ""}})
    assert "http.bind" not in b.context.bound
    time.sleep(0)  # nothing else to check: start-up and stop are clean


def test_stats_has_process_memory_and_sessions_by_protocol(broker: Any) -> None:
    _, _, body = request(broker.port("http.bind"), "GET", "/api/v1/stats")
    assert "sessions_by_protocol" not in body  # walks every session: only when asked
    proc = body["process"]
    assert proc["rss_bytes"] > 1_000_000 and proc["max_rss_bytes"] >= proc["rss_bytes"] // 2
    assert proc["cpu_seconds"] >= 0 and proc["threads"] >= 1
    _, _, body = request(broker.port("http.bind"), "GET", "/api/v1/stats?by_protocol=true")
    assert body["sessions_by_protocol"]["fake"] == {
        "sessions": 12,
        "connected": 6,
        "subscriptions": 24,
    }


def test_sessions_search(broker: Any) -> None:
    port = broker.port("http.bind")
    broker.fake.sessions["dev-05"].username = "Alice"
    broker.fake.sessions["dev-07"].remote = "10.1.2.3:5000"
    _, _, body = request(port, "GET", "/api/v1/sessions?search=v-1")
    assert [s["client_id"] for s in body["sessions"]] == ["dev-10", "dev-11"]
    _, _, body = request(port, "GET", "/api/v1/sessions?search=alice")
    assert [s["client_id"] for s in body["sessions"]] == ["dev-05"]
    _, _, body = request(port, "GET", "/api/v1/sessions?search=10.1.2")
    assert [s["client_id"] for s in body["sessions"]] == ["dev-07"]
    _, _, body = request(port, "GET", "/api/v1/sessions?search=nobody")
    assert body["total"] == 0


def test_subscription_filters_and_the_clients_of_one(broker: Any) -> None:
    port = broker.port("http.bind")
    _, _, body = request(port, "GET", "/api/v1/subscriptions/filters")
    assert body["total"] == 13
    assert body["filters"][0] == {"filter": "all/#", "subscribers": 12, "protocols": {"fake": 12}}
    assert body["filters"][1] == {"filter": "t/0", "subscribers": 1, "protocols": {"fake": 1}}
    _, _, body = request(port, "GET", "/api/v1/subscriptions/filters?search=t/1&limit=2")
    assert [f["filter"] for f in body["filters"]] == ["t/1", "t/10"] and body["total"] == 3
    _, _, body = request(port, "GET", "/api/v1/subscriptions?filter=t/3")
    assert [s["client_id"] for s in body["subscriptions"]] == ["dev-03"]
    _, _, body = request(port, "GET", "/api/v1/subscriptions?filter=all/%23&limit=1000")
    assert body["total"] == 12


def _tail(port: int, path: str, headers: dict[str, str] | None = None) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    conn.request("GET", path, headers=headers or {})
    return conn, conn.getresponse()


def test_admin_tail_streams_what_admin_publish_sends(fluxmq_broker_factory: Any) -> None:
    b = fluxmq_broker_factory(plugins=[], config={"http": {"admin_token": "s3cret"}})
    port = b.port("http.bind")
    auth = {"Authorization": "Bearer s3cret"}
    conn, resp = _tail(port, "/api/v1/tail?filter=t/%23")
    assert resp.status == 401
    conn.close()
    assert request(port, "GET", "/api/v1/tail", auth)[0] == 400
    assert request(port, "GET", "/api/v1/tail?filter=a/%23/b", auth)[0] == 400
    conn, resp = _tail(
        port, "/api/v1/tail?filter=t/%23", {**auth, "X-FluxMQ-Client-Id": "console-tail-1"}
    )
    assert resp.status == 200 and resp.getheader("content-type") == "text/event-stream"
    assert resp.readline().startswith(b": subscribed to t/#")
    _, _, body = request(port, "GET", "/api/v1/sessions?protocol=http", auth)
    assert [s["client_id"] for s in body["sessions"]] == ["console-tail-1"]
    pub = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    body_json = json.dumps({"topic": "t/x", "payload": "aGk=", "qos": 1})
    pub.request("POST", "/api/v1/publish", body=body_json, headers={"Authorization": "Bearer no"})
    assert pub.getresponse().status == 401
    pub.close()
    pub = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    pub.request("POST", "/api/v1/publish", body=body_json, headers=auth)
    r = pub.getresponse()
    assert r.status == 200 and json.loads(r.read()) == {"status": "ok"}
    pub.close()
    data = None
    for _ in range(20):
        line = resp.readline()
        if line.startswith(b"data: "):
            data = json.loads(line[6:])
            break
    assert data is not None and data["topic"] == "t/x" and data["text"] == "hi"
    conn.close()


def test_admin_publish_to_a_queue(fluxmq_broker_factory: Any) -> None:
    b = fluxmq_broker_factory(plugins=[], config={"queues": {"jobs": {"type": "classic"}}})
    port = b.port("http.bind")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    conn.request("POST", "/api/v1/publish", body=json.dumps({"topic": "$queue/jobs/a"}))
    r = conn.getresponse()
    assert r.status == 200 and json.loads(r.read()) == {
        "status": "ok",
        "queue": "jobs",
        "offset": 0,
    }
    conn.request("POST", "/api/v1/publish", body=b"{")
    r = conn.getresponse()
    assert r.status == 400 and "invalid JSON" in json.loads(r.read())["error"]
    conn.close()
    assert request(port, "GET", "/api/v1/queues/jobs")[2]["depth"] == 1


def test_admin_tail_sees_what_the_acl_hides_from_readers(
    fluxmq_broker_factory: Any, tmp_path: Path
) -> None:
    """Under ``acl_subscribe = "filter"`` a reader's deliveries are checked per topic;
    the admin tail is not a reader under the ACL and sees every matching message."""
    acl = tmp_path / "acl.toml"
    acl.write_text(
        '[[rule]]\npermission = "deny"\ntopic = "t/secret"\n\n'
        '[[rule]]\npermission = "allow"\ntopic = "t/#"\n'
    )
    b = fluxmq_broker_factory(
        plugins=[], config={"auth": {"acl_file": str(acl), "acl_subscribe": "filter"}}
    )
    port = b.port("http.bind")
    assert b.context.auth.filter_reads
    reader_conn, reader = _tail(port, "/subscribe?filter=t/%23")
    assert reader.status == 200 and reader.readline().startswith(b": subscribed")
    conn, resp = _tail(port, "/api/v1/tail?filter=t/%23")
    assert resp.status == 200 and resp.readline().startswith(b": subscribed")
    for topic in ("t/secret", "t/open"):
        pub = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
        pub.request("POST", "/api/v1/publish", body=json.dumps({"topic": topic}))
        assert pub.getresponse().status == 200
        pub.close()

    def topics(r: Any, n: int) -> list[str]:
        got: list[str] = []
        while len(got) < n:
            line = r.readline()
            if line.startswith(b"data: "):
                got.append(json.loads(line[6:])["topic"])
        return got

    assert topics(resp, 2) == ["t/secret", "t/open"]
    assert topics(reader, 1) == ["t/open"]  # the reader's t/secret was dropped
    conn.close()
    reader_conn.close()
