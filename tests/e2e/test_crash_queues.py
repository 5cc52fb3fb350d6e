"""``kill -9`` of ``fluxmq run --plugins mqtt`` in the middle of a QoS 1 load, with
the durable default drivers (badgerlike): every message the broker acknowledged,
whether appended to a ``$queue/`` queue or queued for an offline persistent
session, is delivered after the restart. Bounded: a few hundred messages, every
wait has a deadline."""

from __future__ import annotations

import queue
import socket
import time
from importlib.metadata import entry_points

import pytest

paho = pytest.importorskip("paho.mqtt.client")
from paho.mqtt.client import CallbackAPIVersion, Client, MQTTv5  # noqa: E402

from fluxmq_core.testing import BrokerProcess  # noqa: E402

pytestmark = pytest.mark.skipif(
    "badgerlike" not in {ep.name for ep in entry_points(group="fluxmq.queue_log")},
    reason="the durable badgerlike drivers are not installed",
)

N = 300  # messages published; the kill comes once about a third are acknowledged
WAIT = 15.0
CONFIG = """
[queues.crashq]
type = "classic"
durability = "sync"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client5:
    def __init__(self, port: int, client_id: str, *, clean: bool = True) -> None:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.got: queue.Queue = queue.Queue()
        self.events: queue.Queue = queue.Queue()
        c = self.c = Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTv5,
            reconnect_on_failure=False,
        )
        c.max_inflight_messages_set(50)
        c.max_queued_messages_set(0)
        c.on_message = lambda _c, _u, m: self.got.put(m)
        c.on_connect = lambda _c, _u, f, rc, p: self.events.put(("connack", rc.value))
        c.on_subscribe = lambda _c, _u, mid, rcs, p: self.events.put(
            ("suback", [r.value for r in rcs])
        )
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        c.connect("127.0.0.1", port, clean_start=clean, properties=props)
        c.loop_start()
        assert self.events.get(timeout=WAIT) == ("connack", 0)

    def subscribe(self, topic: str) -> None:
        self.c.subscribe(topic, 1)
        assert self.events.get(timeout=WAIT) == ("suback", [1])

    def drain(self, quiet: float = 1.0) -> list[bytes]:
        out = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                out.append(self.got.get(timeout=quiet).payload)
            except queue.Empty:
                break
        return out

    def close(self) -> None:
        try:
            self.c.disconnect()
        finally:
            self.c.loop_stop()


def test_acknowledged_queue_and_session_messages_survive_kill_9() -> None:
    port = free_port()
    proc = BrokerProcess(
        ["--plugins", "mqtt"],
        config_text=CONFIG,
        env={
            "FLUXMQ_MQTT__TCP": f"127.0.0.1:{port}",
            "FLUXMQ_MQTT__WEBSOCKET": "",
            "FLUXMQ_HTTP__BIND": "127.0.0.1:0",
        },
    )
    with proc:
        proc.start()
        # a persistent session subscribes, then goes offline
        offline = Client5(port, "crash-session", clean=False)
        offline.subscribe("crash/topic")
        offline.close()

        pub = Client5(port, "crash-pub")
        sent = []
        for i in range(N):
            topic = "$queue/crashq/k" if i % 2 == 0 else "crash/topic"
            payload = f"{'q' if i % 2 == 0 else 's'}-{i}".encode()
            sent.append((payload, pub.c.publish(topic, payload, qos=1)))
        deadline = time.monotonic() + WAIT
        while sum(info.is_published() for _p, info in sent) < N // 3:
            assert time.monotonic() < deadline, "the broker acknowledged too little"
            time.sleep(0.005)
        proc.kill()  # SIGKILL mid-load
        acked = {p for p, info in sent if info.is_published()}
        pub.c.loop_stop()
        assert acked, "nothing was acknowledged before the kill"

        proc.start()
        session = Client5(port, "crash-session", clean=False)  # resumes its session
        consumer = Client5(port, "crash-consumer")
        consumer.subscribe("$queue/crashq/#")
        got = set(consumer.drain()) | set(session.drain())
        consumer.close()
        session.close()
    missing = sorted(acked - got)
    assert not missing, f"{len(missing)} acknowledged message(s) lost, e.g. {missing[:5]}"
    assert {p for p in acked if p.startswith(b"q-")} and {p for p in acked if p.startswith(b"s-")}
