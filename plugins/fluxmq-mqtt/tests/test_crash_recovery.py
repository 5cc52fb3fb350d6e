"""``kill -9`` of a ``fluxmq run`` process with the durable default storage
(``badgerlike``): what the broker acknowledged is there after the restart.

- The will of a client that was connected when the process died is published after
  the restart (the will is saved at CONNECT, and the CONNACK waits for the store's
  sync, so an accepted will is never lost).
- Every QoS 1 message PUBACKed to a publisher while the subscriber's persistent
  session was offline is delivered when the subscriber comes back.
"""

from __future__ import annotations

import socket
from importlib.metadata import entry_points

import pytest
from fluxmq_mqtt.codec import Connect, Properties

from fluxmq_core.testing import BrokerProcess

pytestmark = pytest.mark.skipif(
    "badgerlike" not in {ep.name for ep in entry_points(group="fluxmq.storage")},
    reason="the durable badgerlike storage driver is not installed",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def proc():
    """A ``fluxmq run --plugins mqtt`` process on a fixed free port (kept across
    restarts), other listeners on ephemeral loopback ports."""
    port = _free_port()
    p = BrokerProcess(
        ["--plugins", "mqtt"],
        env={
            "FLUXMQ_MQTT__TCP": f"127.0.0.1:{port}",
            "FLUXMQ_MQTT__WEBSOCKET": "",
            "FLUXMQ_HTTP__BIND": "127.0.0.1:0",
            "FLUXMQ_STORAGE__DRIVER": "badgerlike",
        },
    )
    p.port = port  # type: ignore[attr-defined]
    yield p
    p.close()


def test_will_of_a_client_connected_at_kill_9_is_published_after_restart(proc, clients, raw):
    bound = proc.start()
    port = proc.port
    assert bound["mqtt.tcp"][1] == port
    watcher = clients(port, "watcher", 4, clean=False)
    assert [rc.value for rc in watcher.subscribe("crash/will/#", 1)] == [1]
    watcher.close()
    v311 = raw(port, version=4)
    v311.send_packet(
        Connect(
            client_id="dies-311",
            protocol_level=4,
            keepalive=60,
            will_topic="crash/will/311",
            will_payload=b"311 died",
            will_qos=1,
        )
    )
    assert v311.recv().reason_code == 0
    v5 = raw(port, version=5)
    v5.send_packet(
        Connect(
            client_id="dies-5",
            protocol_level=5,
            keepalive=60,
            will_topic="crash/will/5",
            will_payload=b"5 died",
            will_qos=1,
            properties=Properties(session_expiry_interval=300),
        )
    )
    assert v5.recv().reason_code == 0
    proc.kill()
    proc.start()
    watcher = clients(port, "watcher", 4, clean=False, connect=False)
    assert watcher.connect()[0].session_present
    wills = {}
    for _ in range(2):
        m = watcher.get(timeout=10)
        wills[m.topic] = m.payload
    assert wills == {"crash/will/311": b"311 died", "crash/will/5": b"5 died"}
    watcher.nothing()  # each will exactly once


def test_acknowledged_qos1_messages_survive_kill_9(proc, clients):
    proc.start()
    port = proc.port
    keeper = clients(port, "keeper", 4, clean=False)
    keeper.subscribe("crash/q", 1)
    keeper.close()
    pub = clients(port, "pub", 4)
    count = 300
    infos = [pub.client.publish("crash/q", f"m{i}", 1) for i in range(count)]
    for info in infos:
        info.wait_for_publish(10)
        assert info.is_published()
    proc.kill()  # right after the last PUBACK
    pub.client.loop_stop()
    proc.start()
    keeper = clients(port, "keeper", 4, clean=False, connect=False)
    assert keeper.connect()[0].session_present
    got = set()
    while len(got) < count:
        got.add(keeper.get(timeout=10).payload)
    assert got == {f"m{i}".encode() for i in range(count)}
