"""Webhooks against a real HTTP receiver (``http.server`` in a thread) recording what
it gets: envelopes, filters, include_payload, retries, the breaker, the drop policy,
the response-size limit, and the auth events. Every wait is bounded."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import queue
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from fluxmq_core.auth_file import set_password
from fluxmq_core.config import ConfigError, load_config
from fluxmq_core.message import Message
from fluxmq_core.plugins import PluginRegistry
from fluxmq_core.webhooks import Breaker, Notifier, WebhooksConfig
from fluxmq_core.webhooks.client import WebhookClientError, post
from fluxmq_core.webhooks.config import EndpointConfig

WAIT = 5.0


class Receiver:
    """Records POSTed JSON. ``statuses`` are answered in turn (then 200); ``hang``
    makes it never answer (until closed); ``big`` answers a huge body."""

    def __init__(self, statuses: list[int] | None = None, hang: bool = False, big: int = 0) -> None:
        self.got: queue.Queue[dict[str, Any]] = queue.Queue()
        self.headers: list[dict[str, str]] = []
        self.seen: list[dict[str, Any]] = []
        self.attempts = 0
        self.statuses = list(statuses or [])
        self.release = threading.Event()
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                rec.attempts += 1
                if hang:
                    rec.release.wait(WAIT * 2)
                    return
                status = rec.statuses.pop(0) if rec.statuses else 200
                if status == 200:
                    rec.headers.append({k.lower(): v for k, v in self.headers.items()})
                    rec.got.put(json.loads(body))
                payload = b"x" * big if big else b"ok"
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except OSError:
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self, n: int, timeout: float = WAIT) -> list[dict[str, Any]]:
        return [self.got.get(timeout=timeout) for _ in range(n)]

    def of_type(self, event_type: str, timeout: float = WAIT) -> dict[str, Any]:
        """The first event of that type (workers deliver concurrently: arrival order
        is not event order, so others are kept for later calls)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.seen):
                if ev["event_type"] == event_type:
                    return self.seen.pop(i)
            self.seen.append(self.got.get(timeout=max(0.01, deadline - time.monotonic())))

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def factory(**kwargs: Any) -> Receiver:
        r = Receiver(**kwargs)
        made.append(r)
        return r

    yield factory
    for r in made:
        r.close()


def hooks_config(*endpoints: dict[str, Any], **settings: Any) -> dict[str, Any]:
    return {
        "webhooks": {
            "endpoints": list(endpoints),
            "initial_interval": 0.01,
            "max_interval": 0.05,
            **settings,
        }
    }


def webhooks_done(broker: Any, timeout: float = WAIT) -> None:
    """Wait (bounded) until the webhook workers handled every queued event: each
    POST they will make for what happened so far is answered, so a receiver that
    has nothing now gets nothing later (no fixed wait before that check)."""
    notifier = broker.context.extras["fluxmq.webhooks"]
    deadline = time.monotonic() + timeout
    while broker.call_soon(lambda: bool(notifier.queue) or notifier._busy > 0):
        assert time.monotonic() < deadline, "webhook workers still busy"
        time.sleep(0.01)


def publish_http(broker: Any, body: dict[str, Any], headers: dict[str, str] | None = None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", broker.port("http.bind"), timeout=WAIT)
    conn.request("POST", "/publish", json.dumps(body).encode(), headers or {})
    status = conn.getresponse().status
    conn.close()
    return status


def test_envelope_and_message_events(fluxmq_broker_factory: Any, receivers: Any) -> None:
    r = receivers()
    b = fluxmq_broker_factory(
        plugins=[],
        config=hooks_config(
            {
                "url": r.url,
                "events": ["message.published", "message.retained"],
                "headers": {"X-Token": "t1"},
            }
        ),
    )
    assert (
        publish_http(
            b,
            {"topic": "a/b", "payload": base64.b64encode(b"hi").decode(), "qos": 1, "retain": True},
        )
        == 200
    )
    got = {e["event_type"]: e for e in r.events(2)}
    pub = got["message.published"]
    assert set(pub) == {"event_type", "event_id", "timestamp", "broker_id", "data"}
    uuid.UUID(pub["event_id"])
    assert pub["broker_id"] == b.context.node_id and pub["timestamp"].endswith("Z")
    assert (
        pub["data"]["topic"] == "a/b"
        and pub["data"]["qos"] == 1
        and pub["data"]["payload_size"] == 2
    )
    assert pub["data"]["protocol"] == "http" and "payload" not in pub["data"]
    assert got["message.retained"]["data"]["cleared"] is False
    assert r.headers[0]["x-token"] == "t1" and r.headers[0]["content-type"] == "application/json"


def test_include_payload_and_topic_filters(fluxmq_broker_factory: Any, receivers: Any) -> None:
    with_payload, without = receivers(), receivers()
    b = fluxmq_broker_factory(
        plugins=[],
        config=hooks_config(
            {
                "url": with_payload.url,
                "events": ["message.published"],
                "include_payload": True,
                "topic_filters": ["sensors/#"],
            },
            {"url": without.url, "events": ["message.published"]},
        ),
    )
    for topic in ("other/x", "sensors/1"):
        publish_http(b, {"topic": topic, "payload": base64.b64encode(b"\x00\xff").decode()})
    ev = with_payload.events(1)[0]
    assert ev["data"]["topic"] == "sensors/1"
    assert base64.b64decode(ev["data"]["payload"]) == b"\x00\xff"
    assert sorted(e["data"]["topic"] for e in without.events(2)) == ["other/x", "sensors/1"]
    webhooks_done(b)
    assert with_payload.got.empty()


def test_client_subscription_and_auth_events(
    fluxmq_broker_factory: Any, receivers: Any, tmp_path: Path
) -> None:
    pw = tmp_path / "passwd"
    set_password(str(pw), "alice", "secret")
    acl = tmp_path / "acl.toml"
    acl.write_text('default = "deny"\n[[rule]]\npermission = "allow"\ntopic = "ok/#"\n')
    r = receivers()
    b = fluxmq_broker_factory(
        plugins=[],
        config={
            "auth": {"password_file": str(pw), "acl_file": str(acl)},
            **hooks_config(
                {
                    "url": r.url,
                    "events": [
                        "client.connected",
                        "client.disconnected",
                        "subscription.created",
                        "subscription.removed",
                        "auth.failure",
                        "authz.denied",
                    ],
                }
            ),
        },
    )
    cred = {"Authorization": "Basic " + base64.b64encode(b"alice:wrong").decode()}
    assert publish_http(b, {"topic": "ok/1"}, cred) == 401
    ev = r.of_type("auth.failure")
    assert ev["data"]["protocol"] == "http" and ev["data"]["username"] == "alice"
    good = {"Authorization": "Basic " + base64.b64encode(b"alice:secret").decode()}
    assert publish_http(b, {"topic": "no/1"}, good) == 403
    ev = r.of_type("authz.denied")
    assert ev["data"]["action"] == "publish" and ev["data"]["topic"] == "no/1"
    # An SSE stream is a client with subscriptions.
    conn = http.client.HTTPConnection("127.0.0.1", b.port("http.bind"), timeout=WAIT)
    conn.request("GET", "/subscribe?filter=ok/%23", headers=good)
    resp = conn.getresponse()
    assert resp.status == 200
    assert r.of_type("client.connected")["data"]["username"] == "alice"
    assert r.of_type("subscription.created")["data"]["topic_filter"] == "ok/#"
    resp.close()
    conn.close()
    assert r.of_type("subscription.removed")["data"]["topic_filter"] == "ok/#"
    assert r.of_type("client.disconnected")["data"]["protocol"] == "http"


def test_retries_until_the_receiver_recovers(fluxmq_broker_factory: Any, receivers: Any) -> None:
    r = receivers(statuses=[500, 503])
    b = fluxmq_broker_factory(
        plugins=[],
        config=hooks_config({"url": r.url, "events": ["message.published"]}, max_attempts=3),
    )
    publish_http(b, {"topic": "t"})
    assert r.events(1)[0]["data"]["topic"] == "t"
    assert r.attempts == 3
    notifier = b.context.extras["fluxmq.webhooks"]
    deadline = time.monotonic() + WAIT
    while notifier.endpoints[0].sent < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert notifier.stats()["endpoints"][0]["sent"] == 1


def test_gives_up_after_max_attempts(fluxmq_broker_factory: Any, receivers: Any) -> None:
    r = receivers(statuses=[500] * 10)
    b = fluxmq_broker_factory(
        plugins=[],
        config=hooks_config({"url": r.url, "events": ["message.published"]}, max_attempts=2),
    )
    publish_http(b, {"topic": "t"})
    notifier = b.context.extras["fluxmq.webhooks"]
    deadline = time.monotonic() + WAIT
    while notifier.endpoints[0].failed < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert notifier.endpoints[0].failed == 1 and r.attempts == 2


def test_breaker_opens_against_a_receiver_that_never_answers(
    fluxmq_broker_factory: Any, receivers: Any
) -> None:
    dead = receivers(hang=True)
    b = fluxmq_broker_factory(
        plugins=[],
        config=hooks_config(
            {"url": dead.url, "events": ["message.published"], "timeout": 0.2},
            max_attempts=1,
            failure_threshold=2,
            reset_timeout=60.0,
            workers=1,
        ),
    )
    for i in range(5):
        publish_http(b, {"topic": f"t/{i}"})
    notifier = b.context.extras["fluxmq.webhooks"]
    ep = notifier.endpoints[0]
    deadline = time.monotonic() + WAIT
    while (ep.failed + ep.rejected) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ep.breaker.state == "open"
    assert ep.failed == 2 and ep.rejected == 3  # two timeouts, then no more attempts
    assert dead.attempts == 2
    # The publish path never waited for it: publishing stays immediate.
    assert publish_http(b, {"topic": "fast"}) == 200


def test_breaker_states() -> None:
    now = [0.0]
    br = Breaker(2, 10.0, clock=lambda: now[0])
    assert br.allow()
    br.failure()
    assert br.state == "closed"
    br.failure()
    assert br.state == "open" and not br.allow()
    now[0] = 10.0
    assert br.allow() and br.state == "half-open"
    assert not br.allow()  # one trial at a time
    br.failure()
    assert br.state == "open"
    now[0] = 20.0
    assert br.allow()
    br.success()
    assert br.state == "closed" and br.allow()


def make_notifier(**settings: Any) -> Notifier:
    cfg = WebhooksConfig(endpoints=[EndpointConfig(url="http://127.0.0.1:9/x")], **settings)
    return Notifier(cfg, "node-1")


@pytest.mark.parametrize(
    ("policy", "kept"), [("oldest", ["2", "3", "4"]), ("newest", ["0", "1", "2"])]
)
async def test_drop_policy_when_the_queue_is_full(policy: str, kept: list[str]) -> None:
    n = make_notifier(queue_size=3, drop_policy=policy)  # not started: nothing drains
    for i in range(5):
        n("fluxmq_message_published", {"message": Message("t", str(i).encode())})
    assert [f["message"].payload.decode() for _h, f, _t in n.queue] == kept
    assert n.dropped == 2


async def test_sink_ignores_unwanted_notifications() -> None:
    n = Notifier(
        WebhooksConfig(endpoints=[EndpointConfig(url="http://x/", events=["client.connected"])]),
        "n",
    )
    assert n.wants("fluxmq_client_connected") and not n.wants("fluxmq_message_published")
    n("fluxmq_message_published", {"message": Message("t")})
    assert not n.queue


def test_no_webhooks_no_flag_on_the_publish_path(
    fluxmq_broker_factory: Any, receivers: Any
) -> None:
    plain = fluxmq_broker_factory(plugins=[])
    assert plain.context.events.on_published is False and not plain.context.events._sinks
    r = receivers()
    only_clients = fluxmq_broker_factory(
        plugins=[], config=hooks_config({"url": r.url, "events": ["client.connected"]})
    )
    assert only_clients.context.events.on_published is False  # not wanted: still free
    with_msgs = fluxmq_broker_factory(plugins=[], config=hooks_config({"url": r.url}))
    assert with_msgs.context.events.on_published is True


async def test_response_body_is_read_up_to_the_limit(receivers: Any) -> None:
    r = receivers(big=1_000_000)
    result = await post(r.url, b"{}", {}, WAIT, 1000)
    assert result.status == 200 and len(result.body) == 1000 and result.truncated


async def test_client_errors_are_bounded() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)  # accepts, never answers
    port = server.sockets[0].getsockname()[1]
    async with server:
        with pytest.raises(WebhookClientError, match="no answer"):
            await post(f"http://127.0.0.1:{port}/", b"{}", {}, 0.2, 100)
    with pytest.raises(WebhookClientError):
        await post(f"http://127.0.0.1:{port}/", b"{}", {}, 1.0, 100)  # closed port


def test_config_validation() -> None:
    schema = PluginRegistry(load_entry_points=False).config_schema()
    cfg = load_config(
        schema,
        env={},
        overrides={
            "webhooks": {
                "endpoints": [
                    {"url": "http://h/x", "events": ["client.connected"], "topic_filters": ["a/#"]}
                ]
            }
        },
    )
    assert cfg.webhooks.endpoints[0].url == "http://h/x"
    for bad, match in [
        ({"endpoints": [{"url": "ftp://x"}]}, "url"),
        ({"endpoints": [{"url": "http://x", "events": ["nope"]}]}, "unknown event"),
        ({"endpoints": [{"url": "http://x", "topic_filters": ["a/#/b"]}]}, "topic filter"),
        ({"endpoints": [{"url": "http://x", "colour": "red"}]}, "unknown key"),
        ({"drop_policy": "random"}, "drop_policy"),
        ({"workers": 0}, "workers"),
    ]:
        with pytest.raises(ConfigError, match=match):
            load_config(schema, env={}, overrides={"webhooks": bad})
    env = {"FLUXMQ_WEBHOOKS__ENDPOINTS": '[{"url": "http://e/x", "include_payload": true}]'}
    assert load_config(schema, env=env).webhooks.endpoints[0].include_payload is True


def test_config_file_with_endpoint_tables(tmp_path: Path) -> None:
    f = tmp_path / "fluxmq.toml"
    f.write_text(
        '[webhooks]\nqueue_size = 50\n\n[[webhooks.endpoints]]\nurl = "http://a/1"\n'
        'events = ["message.published"]\n[webhooks.endpoints.headers]\nAuthorization = "Bearer x"\n\n'
        '[[webhooks.endpoints]]\nurl = "https://b/2"\ntimeout = 2.5\n'
    )
    schema = PluginRegistry(load_entry_points=False).config_schema()
    cfg = load_config(schema, f, env={})
    eps = cfg.webhooks.endpoints
    assert [e.url for e in eps] == ["http://a/1", "https://b/2"]
    assert eps[0].headers == {"Authorization": "Bearer x"} and eps[1].timeout == 2.5


def test_derived_events_takeover_and_delivered() -> None:
    from fluxmq_core.webhooks.notifier import _events

    out = _events(
        "fluxmq_client_disconnected",
        {"client_id": "c", "protocol": "mqtt", "reason": "session taken over"},
    )
    assert [e[0] for e in out] == ["client.disconnected", "client.session_takeover"]
    m = Message("t/1", b"x", 1, origin_protocol="http", origin_client="http:1")
    (ev,) = _events(
        "fluxmq_message_delivered", {"message": m, "protocol": "mqtt", "client_id": "sub"}
    )
    assert (
        ev[0] == "message.delivered"
        and ev[1]["client_id"] == "sub"
        and ev[1]["origin_client"] == "http:1"
    )
    assert ev[2] == "t/1" and ev[3] is m
