"""Fixtures: a broker with the queue API (gRPC on an ephemeral port, Connect on the
HTTP listener) and MQTT, with an admin token and a few declared queues."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fluxmq_queue_api.testing import TOKEN

from fluxmq_core.testing.broker import BrokerThread

QUEUES = {
    "small": {"type": "classic", "max_depth": 2},
    "slowvt": {"type": "classic", "visibility_timeout": 60},
    "events": {"type": "stream"},
}


@pytest.fixture(scope="module")
def broker() -> Iterator[BrokerThread]:
    with BrokerThread(
        plugins=["mqtt", "queue_api"],
        config={"http": {"admin_token": TOKEN}, "queues": QUEUES},
    ) as b:
        yield b
