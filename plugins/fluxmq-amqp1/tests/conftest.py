"""Shared fixtures for the AMQP 1.0 tests: one broker per module (tests use their own
addresses), Qpid Proton blocking connections closed at the end. Waits bounded."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from proton.utils import BlockingConnection

from fluxmq_core.testing.broker import BrokerThread

WAIT = 5.0


@pytest.fixture(scope="module")
def amqp1_broker() -> Iterator[BrokerThread]:
    with BrokerThread(plugins=["amqp1"]) as b:
        yield b


@pytest.fixture
def url(amqp1_broker: BrokerThread) -> str:
    return f"amqp://127.0.0.1:{amqp1_broker.port('amqp1.bind')}"


@pytest.fixture
def connect(url: str) -> Iterator[Any]:
    made: list[BlockingConnection] = []

    def factory(**kwargs: Any) -> BlockingConnection:
        kwargs.setdefault("timeout", WAIT)
        c = BlockingConnection(kwargs.pop("url", url), **kwargs)
        made.append(c)
        return c

    yield factory
    for c in made:
        try:
            c.close()
        except Exception:
            pass
