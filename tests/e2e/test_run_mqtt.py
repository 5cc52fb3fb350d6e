"""``fluxmq run`` as a user starts it, with the MQTT plugin and the default durable
storage: a real client connects, SIGTERM stops the broker cleanly, and the client
hears why (MQTT 5 DISCONNECT 0x8B, Server shutting down)."""

from __future__ import annotations

import queue
import signal
import socket
import time

import pytest

paho = pytest.importorskip("paho.mqtt.client")
from paho.mqtt.client import CallbackAPIVersion, Client, MQTTv5  # noqa: E402

from fluxmq_core.testing import BrokerProcess  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigterm_with_connected_mqtt_client_exits_zero_and_tells_the_client() -> None:
    port = free_port()
    with BrokerProcess(
        ["--plugins", "mqtt"], env={"FLUXMQ_MQTT__TCP": f"127.0.0.1:{port}"}
    ) as proc:
        bound = proc.start()
        assert bound["mqtt.tcp"][1] == port
        events: queue.Queue[tuple[str, int]] = queue.Queue()
        client = Client(CallbackAPIVersion.VERSION2, client_id="e2e", protocol=MQTTv5)
        client.on_connect = lambda c, u, f, rc, p: events.put(("connect", rc.value))
        client.on_disconnect = lambda c, u, f, rc, p: events.put(("disconnect", rc.value))
        client.connect("127.0.0.1", port)
        client.loop_start()
        try:
            assert events.get(timeout=10) == ("connect", 0)
            t0 = time.monotonic()
            proc.signal(signal.SIGTERM)
            assert proc.wait(10) == 0, proc.output()
            assert time.monotonic() - t0 < 10
            assert events.get(timeout=10) == ("disconnect", 0x8B)
        finally:
            client.loop_stop()
        assert "stopped" in proc.output()
