"""The core's observer events from AMQP 1.0, seen through webhooks by a real HTTP
receiver (``http.server`` in a thread): a Qpid Proton client connects, attaches
receiver links on a topic and a queue, publishes (and gets the message), detaches
and closes; each step is one webhook event naming the protocol and the client. Every wait is bounded."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from proton import Message
from proton.utils import BlockingConnection

WAIT = 5.0


class Receiver:
    """Records the JSON bodies POSTed to it."""

    def __init__(self) -> None:
        self.got: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                rec.got.put(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of_type(self, event_type: str, **match: Any) -> dict[str, Any]:
        """The first event of that type whose data has ``match`` (events arrive in
        any order: workers deliver concurrently)."""
        deadline = time.monotonic() + WAIT
        while True:
            for i, ev in enumerate(self.seen):
                data = ev["data"]
                if ev["event_type"] == event_type and all(
                    data.get(k) == v for k, v in match.items()
                ):
                    return self.seen.pop(i)["data"]
            self.seen.append(self.got.get(timeout=max(0.01, deadline - time.monotonic())))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_connect_subscribe_publish_unsubscribe_disconnect_events(
    fluxmq_broker_factory: Any, receiver: Receiver
) -> None:
    b = fluxmq_broker_factory(
        plugins=["amqp1"],
        config={
            "webhooks": {
                "endpoints": [{"url": receiver.url}],
                "initial_interval": 0.01,
                "max_interval": 0.05,
            }
        },
    )
    conn = BlockingConnection(f"amqp://127.0.0.1:{b.port('amqp1.bind')}", timeout=WAIT)
    try:
        topic = conn.create_receiver("topic/wh/a", credit=5, name="t")
        queue_link = conn.create_receiver("$queue/whq/k/#", credit=5, name="q")
        conn.create_sender("topic/wh/a").send(Message(body="hi"))
        assert topic.receive(timeout=WAIT).body == "hi"
        topic.accept()
        topic.close()
        queue_link.close()
    finally:
        conn.close()
    connected = receiver.of_type("client.connected", protocol="amqp1")
    cid = connected["client_id"]
    assert cid and connected["remote"].startswith("127.0.0.1:")
    for kind in ("subscription.created", "subscription.removed"):
        for f in ("wh/a", "$queue/whq/k/#"):
            data = receiver.of_type(kind, topic_filter=f)
            assert data["client_id"] == cid and data["protocol"] == "amqp1"
    published = receiver.of_type("message.published", topic="wh/a")
    assert published["client_id"] == cid and published["protocol"] == "amqp1"
    delivered = receiver.of_type("message.delivered", topic="wh/a")
    assert delivered["client_id"] == cid and delivered["protocol"] == "amqp1"
    assert delivered["origin_protocol"] == "amqp1"
    gone = receiver.of_type("client.disconnected", client_id=cid)
    assert gone["protocol"] == "amqp1" and gone["reason"] == "closed"
