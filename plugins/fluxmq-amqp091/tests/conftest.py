"""Shared fixtures for the AMQP 0.9.1 tests: one broker per module (tests use their
own queue and exchange names), pika connections closed at the end. Waits bounded."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pika
import pytest
from fluxmq_amqp091.testing import WAIT

from fluxmq_core.queues.manager import QueueManager
from fluxmq_core.testing.broker import BrokerThread


@pytest.fixture(scope="module")
def amqp_broker() -> Iterator[BrokerThread]:
    with BrokerThread(plugins=["amqp091"]) as b:
        yield b


@pytest.fixture
def connect(amqp_broker: BrokerThread) -> Iterator[Any]:
    made: list[pika.BlockingConnection] = []

    def factory(**kwargs: Any) -> pika.BlockingConnection:
        params = pika.ConnectionParameters(
            "127.0.0.1",
            amqp_broker.port("amqp091.bind"),
            blocked_connection_timeout=WAIT,
            socket_timeout=WAIT,
            **kwargs,
        )
        c = pika.BlockingConnection(params)
        made.append(c)
        return c

    yield factory
    for c in made:
        if c.is_open:
            try:
                c.close()
            except Exception:
                pass


@pytest.fixture
def inject(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], None]:
    """``inject(queue, "fail" | "hang")``: appends to ``queue`` fail or never finish.

    Wraps the core queue manager's ``append`` for that queue name only (the broker
    runs in a thread of this process), so the other queues of the shared broker are
    untouched."""
    modes: dict[str, str] = {}
    real = QueueManager.append

    def append(self: QueueManager, queue: str, message: Any) -> asyncio.Future[int]:
        mode = modes.get(queue)
        if mode is None:
            return real(self, queue, message)
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if mode == "fail":
            fut.set_exception(OSError("injected: disk full"))
        return fut

    monkeypatch.setattr(QueueManager, "append", append)
    return modes.__setitem__
