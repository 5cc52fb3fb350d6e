"""The HTTP listener's public routes over real sockets: POST /publish (good and bad
requests, auth), /health, /ready, GET /subscribe (SSE), and raw-bytes robustness."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from fluxmq_core.auth_file import set_password
from fluxmq_core.router.types import SubscriptionOptions
from fluxmq_core.testing.queues import RecordingConsumer

WAIT = 5.0


def wait_for(predicate: Any, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def request(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    raw_body: bytes | None = None,
) -> tuple[int, dict[str, str], Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    data = (
        raw_body
        if raw_body is not None
        else (json.dumps(body).encode() if body is not None else None)
    )
    conn.request(method, path, body=data, headers=headers or {})
    resp = conn.getresponse()
    text = resp.read()
    conn.close()
    try:
        parsed = json.loads(text) if text else None
    except json.JSONDecodeError:
        parsed = text
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, parsed


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def broker(fluxmq_broker_factory: Any) -> Any:
    return fluxmq_broker_factory(plugins=[])


def subscribe(broker: Any, topic_filter: str) -> RecordingConsumer:
    rec = RecordingConsumer("recorder")
    broker.call_soon(broker.context.router.subscribe, rec, topic_filter, SubscriptionOptions(qos=2))
    return rec


def test_publish_reaches_a_subscriber_with_properties(broker: Any) -> None:
    rec = subscribe(broker, "sensors/#")
    status, _, body = request(
        broker.port("http.bind"),
        "POST",
        "/publish",
        {
            "topic": "sensors/1",
            "payload": b64(b"\x00\x01hi"),
            "qos": 1,
            "retain": False,
            "properties": {
                "content_type": "application/octet-stream",
                "correlation_data": b64(b"c-1"),
                "response_topic": "replies/1",
                "user_properties": {"k": "v"},
                "message_expiry": 60,
            },
        },
    )
    assert (status, body) == (200, {"status": "ok"})
    wait_for(lambda: rec.messages)
    m = rec.messages[0]
    assert (m.topic, m.payload, m.qos, m.retain) == ("sensors/1", b"\x00\x01hi", 1, False)
    assert m.content_type == "application/octet-stream" and m.correlation_data == b"c-1"
    assert m.response_topic == "replies/1" and m.user_properties == [("k", "v")]
    assert m.expires_at is not None and m.origin_protocol == "http"
    assert m.origin_client.startswith("http:127.0.0.1:")
    assert broker.context.stats.messages_received >= 1


def test_publish_retained_and_defaults(broker: Any) -> None:
    port = broker.port("http.bind")
    assert (
        request(
            port, "POST", "/publish", {"topic": "r/1", "payload": b64(b"keep"), "retain": True}
        )[0]
        == 200
    )
    assert request(port, "POST", "/publish", {"topic": "plain"})[0] == 200  # payload "" and qos 0
    wait_for(lambda: broker.call_soon(broker.context.router.get_retained, "r/1") is not None)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "invalid JSON"),
        (b"[1, 2]", "JSON object"),
        (json.dumps({"topic": "a", "payload": "%%%"}).encode(), "base64"),
        (json.dumps({"topic": "a/+"}).encode(), "invalid topic"),
        (json.dumps({"topic": "a/#"}).encode(), "invalid topic"),
        (json.dumps({"topic": "a", "qos": 3}).encode(), "qos"),
        (json.dumps({"topic": "a", "qos": True}).encode(), "qos"),
        (json.dumps({"topic": ""}).encode(), "topic"),
        (json.dumps({"payload": ""}).encode(), "topic"),
        (json.dumps({"topic": "a", "retain": "yes"}).encode(), "retain"),
        (json.dumps({"topic": "a", "extra": 1}).encode(), "unknown field"),
        (
            json.dumps({"topic": "a", "properties": {"message_expiry": -1}}).encode(),
            "message_expiry",
        ),
        (json.dumps({"topic": "a", "properties": {"nope": 1}}).encode(), "unknown properties"),
        (
            json.dumps({"topic": "a", "properties": {"user_properties": [1]}}).encode(),
            "user_properties",
        ),
    ],
)
def test_publish_bad_requests_are_400_with_a_reason(broker: Any, body: bytes, reason: str) -> None:
    status, headers, answer = request(
        broker.port("http.bind"),
        "POST",
        "/publish",
        raw_body=body,
        headers={"Content-Type": "application/json"},
    )
    assert status == 400 and headers["content-type"] == "application/json"
    assert reason in answer["error"], answer


def test_body_over_max_body_is_413(fluxmq_broker_factory: Any) -> None:
    b = fluxmq_broker_factory(plugins=[], config={"http": {"max_body": 100}})
    port = b.port("http.bind")
    status, _, answer = request(
        port, "POST", "/publish", {"topic": "a", "payload": b64(b"x" * 200)}
    )
    assert status == 413 and "100" in answer["error"]
    # Chunked bodies have no Content-Length: counted as they come.
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        s.sendall(b"POST /publish HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        s.sendall(b"80\r\n" + b"x" * 128 + b"\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 413")


def test_expect_100_continue(broker: Any) -> None:
    body = json.dumps({"topic": "c/1", "payload": b64(b"z")}).encode()
    with socket.create_connection(("127.0.0.1", broker.port("http.bind")), timeout=WAIT) as s:
        s.sendall(
            b"POST /publish HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        assert s.recv(4096).startswith(b"HTTP/1.1 100")
        s.sendall(body)
        assert s.recv(4096).startswith(b"HTTP/1.1 200")


def test_keep_alive_and_pipelining(broker: Any) -> None:
    one = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", broker.port("http.bind")), timeout=WAIT) as s:
        s.sendall(one * 3)
        got = b""
        deadline = time.monotonic() + WAIT
        while got.count(b"HTTP/1.1 200") < 3 and time.monotonic() < deadline:
            got += s.recv(65536)
        assert got.count(b"HTTP/1.1 200") == 3


@pytest.fixture
def secured(fluxmq_broker_factory: Any, tmp_path: Path) -> Any:
    pw = tmp_path / "passwd"
    set_password(str(pw), "alice", "secret")
    acl = tmp_path / "acl.toml"
    acl.write_text(
        'default = "deny"\n[[rule]]\npermission = "allow"\ntopic = "alice/#"\nusers = ["alice"]\n'
    )
    return fluxmq_broker_factory(
        plugins=[],
        config={"auth": {"password_file": str(pw), "acl_file": str(acl), "anonymous": False}},
    )


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + b64(f"{user}:{password}".encode())}


def test_publish_auth_basic_401_403(secured: Any) -> None:
    port = secured.port("http.bind")
    body = {"topic": "alice/x", "payload": b64(b"1")}
    status, headers, _ = request(port, "POST", "/publish", body)
    assert status == 401 and "Basic" in headers["www-authenticate"]
    assert request(port, "POST", "/publish", body, basic("alice", "wrong"))[0] == 401
    assert request(port, "POST", "/publish", body, {"Authorization": "Digest abc"})[0] == 401
    assert request(port, "POST", "/publish", body, {"Authorization": "Basic !!!"})[0] == 401
    assert request(port, "POST", "/publish", body, basic("alice", "secret"))[0] == 200
    status, _, answer = request(
        port, "POST", "/publish", {"topic": "bob/x"}, basic("alice", "secret")
    )
    assert status == 403 and "bob/x" in answer["error"]
    assert secured.context.stats.auth_failures >= 2 and secured.context.stats.authz_denied >= 1


def test_bearer_token_goes_to_auth_hooks_as_password(fluxmq_broker_factory: Any) -> None:
    from fluxmq_core.auth import AuthResult
    from fluxmq_core.hookspecs import hookimpl

    seen: list[Any] = []

    class TokenAuth:
        @hookimpl
        def fluxmq_authenticate(self, request: Any) -> Any:
            seen.append(request)
            ok = request.password == b"good-token"
            return AuthResult(
                ok=ok, username="svc" if ok else None, reason="" if ok else "bad token"
            )

    b = fluxmq_broker_factory(plugins=[], extra_plugins=[("tokens", TokenAuth())])
    port = b.port("http.bind")
    body = {"topic": "t", "payload": ""}
    assert request(port, "POST", "/publish", body, {"Authorization": "Bearer good-token"})[0] == 200
    assert request(port, "POST", "/publish", body, {"Authorization": "Bearer nope"})[0] == 401
    assert seen[0].protocol == "http" and seen[0].username is None
    assert seen[0].client_id.startswith("http:127.0.0.1:")


def test_health_and_ready(broker: Any) -> None:
    port = broker.port("http.bind")
    status, _, body = request(port, "GET", "/health")
    assert status == 200 and body["status"] == "ok" and body["node_id"]
    status, _, body = request(port, "GET", "/ready")
    assert status == 200 and body == {
        "status": "ready",
        "checks": {"storage": True, "listeners": True, "cluster": True},
    }
    broker.call_soon(setattr, broker.context.cluster, "ready", False)
    status, _, body = request(port, "GET", "/ready")
    assert status == 503 and body["checks"]["cluster"] is False


def test_unknown_route_404_and_wrong_method_405(broker: Any) -> None:
    port = broker.port("http.bind")
    assert request(port, "GET", "/nope")[0] == 404
    status, headers, _ = request(port, "GET", "/publish")
    assert status == 405 and headers["allow"] == "POST"


@pytest.mark.parametrize(
    "raw",
    [
        b"NOT-HTTP\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n",
        b"POST /publish HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
    ],
    ids=["garbage", "bad-header", "headers-too-big", "bad-length"],
)
def test_malformed_requests_get_400_and_close(fluxmq_broker_factory: Any, raw: bytes) -> None:
    # On its own port (a concrete loopback address), so the sniffer is not in the way.
    b = fluxmq_broker_factory(plugins=[], config={"http": {"bind": "127.0.0.2:0"}})
    with socket.create_connection(b.address("http.bind"), timeout=WAIT) as s:
        s.sendall(raw)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    assert got.startswith(b"HTTP/1.1 4"), got


def test_idle_connection_is_closed_after_request_timeout(fluxmq_broker_factory: Any) -> None:
    b = fluxmq_broker_factory(plugins=[], config={"http": {"request_timeout": 0.2}})
    with socket.create_connection(("127.0.0.1", b.port("http.bind")), timeout=WAIT) as s:
        s.sendall(b"GET /health HTTP/1.1\r\n")  # never finished
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    assert got.startswith(b"HTTP/1.1 408")


# --- Server-Sent Events ----------------------------------------------------------------


def sse_events(resp: Any, n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while len(out) < n:
        line = resp.fp.readline()
        if not line:
            break
        if line.startswith(b"data: "):
            out.append(json.loads(line[6:]))
    return out


def test_sse_subscribe_streams_matching_messages(broker: Any) -> None:
    port = broker.port("http.bind")
    request(
        port, "POST", "/publish", {"topic": "news/old", "payload": b64(b"retained"), "retain": True}
    )
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    conn.request("GET", "/subscribe?filter=news/%23")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("content-type") == "text/event-stream"
    first = sse_events(resp, 1)[0]
    assert first["topic"] == "news/old" and first["retain"] is True and first["text"] == "retained"
    wait_for(lambda: broker.context.router.subscription_count >= 1)
    request(port, "POST", "/publish", {"topic": "news/a", "payload": b64(b"\xff\x00")})
    request(port, "POST", "/publish", {"topic": "other", "payload": b64(b"no")})
    request(port, "POST", "/publish", {"topic": "news/b", "payload": b64(b"B")})
    got = sse_events(resp, 2)
    assert [g["topic"] for g in got] == ["news/a", "news/b"]
    assert base64.b64decode(got[0]["payload"]) == b"\xff\x00" and "text" not in got[0]
    resp.close()
    conn.close()
    wait_for(lambda: broker.context.router.subscription_count == 0)


def test_sse_needs_a_valid_filter_and_subscribe_permission(secured: Any) -> None:
    port = secured.port("http.bind")
    assert request(port, "GET", "/subscribe", headers=basic("alice", "secret"))[0] == 400
    assert (
        request(port, "GET", "/subscribe?filter=a/%23/b", headers=basic("alice", "secret"))[0]
        == 400
    )
    assert request(port, "GET", "/subscribe?filter=x")[0] == 401
    assert (
        request(port, "GET", "/subscribe?filter=bob/%23", headers=basic("alice", "secret"))[0]
        == 403
    )


def test_sse_slow_reader_drops_and_counts(fluxmq_broker_factory: Any) -> None:
    b = fluxmq_broker_factory(plugins=[], config={"http": {"sse_queue_size": 5}})
    port = b.port("http.bind")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    conn.request("GET", "/subscribe?filter=flood")
    resp = conn.getresponse()
    wait_for(lambda: b.context.router.subscription_count == 1)
    stream = next(iter(b.context.extras["fluxmq.http"].streams.values()))

    async def burst() -> None:  # 50 messages in one loop turn: the queue holds 5
        from fluxmq_core.message import Message

        for i in range(50):
            b.context.publish(Message("flood", str(i).encode()))

    b.call(burst())
    got = sse_events(resp, 5)
    assert [g["text"] for g in got] == ["0", "1", "2", "3", "4"]
    assert stream.dropped == 45 and b.context.stats.messages_dropped >= 45
    resp.close()
    conn.close()


def test_a_queue_topic_is_answered_after_the_append_or_503_when_it_failed(broker: Any) -> None:
    import asyncio

    port = broker.port("http.bind")
    body = {"topic": "$queue/h/orders/1", "payload": b64(b"x"), "qos": 1}
    status, _, answer = request(port, "POST", "/publish", body)
    assert (status, answer) == (200, {"status": "ok", "queue": "h", "offset": 0})
    queues = broker.context.queues
    assert broker.call_soon(queues.info, "h").depth == 1  # appended, not routed

    def failing(message: Any) -> Any:
        fut = asyncio.get_running_loop().create_future()
        fut.set_exception(OSError("disk gone"))
        return fut

    dropped = broker.context.stats.messages_dropped
    broker.call_soon(setattr, queues, "publish", failing)
    try:
        status, _, answer = request(port, "POST", "/publish", body)
    finally:
        broker.call_soon(delattr, queues, "publish")
    assert status == 503 and "not stored" in answer["error"] and "disk gone" in answer["error"]
    assert broker.context.stats.messages_dropped == dropped + 1
