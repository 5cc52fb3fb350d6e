"""``kill -9`` of a ``fluxmq run`` process with the durable storage (``badgerlike``):
every message whose transfer the broker settled with ``accepted`` on a classic queue
is there after the restart (the disposition waits for the durable append)."""

from __future__ import annotations

import socket
from importlib.metadata import entry_points

import pytest
from proton import Message
from proton.utils import BlockingConnection

from fluxmq_core.testing import BrokerProcess

WAIT = 5.0

pytestmark = pytest.mark.skipif(
    "badgerlike" not in {ep.name for ep in entry_points(group="fluxmq.storage")},
    reason="the durable badgerlike storage driver is not installed",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_accepted_messages_survive_kill_9() -> None:
    port = _free_port()
    proc = BrokerProcess(
        ["--plugins", "amqp1"],
        env={
            "FLUXMQ_AMQP1__BIND": f"127.0.0.1:{port}",
            "FLUXMQ_HTTP__BIND": "127.0.0.1:0",
            "FLUXMQ_STORAGE__DRIVER": "badgerlike",
        },
        config_text='[queues.orders]\ntype = "classic"\n',
    )
    url = f"amqp://127.0.0.1:{port}"
    try:
        proc.start()
        conn = BlockingConnection(url, timeout=WAIT)
        sender = conn.create_sender("$queue/orders")
        for i in range(20):
            sender.send(Message(body=f"o{i}", durable=True))  # returns once accepted
        proc.kill()
        try:
            conn.close()
        except Exception:
            pass  # the broker is gone
        proc.start()
        conn = BlockingConnection(url, timeout=WAIT)
        try:
            r = conn.create_receiver("$queue/orders", credit=50)
            bodies = []
            for _ in range(20):
                bodies.append(r.receive(timeout=WAIT).body)
                r.accept()
            assert bodies == [f"o{i}" for i in range(20)]
        finally:
            conn.close()
    finally:
        proc.close()
