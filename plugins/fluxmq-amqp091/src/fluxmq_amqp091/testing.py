"""Small helpers for tests of AMQP 0.9.1 against FluxMQ (used by this plugin's
tests; handy for plugin authors too). Every wait is bounded."""

from __future__ import annotations

import uuid
from typing import Any

WAIT = 5.0


def name(prefix: str = "t") -> str:
    """A unique queue or exchange name."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def consume_n(ch: Any, queue: str, n: int, *, ack: bool = True, timeout: float = WAIT) -> list:
    """Consume ``n`` messages (method, properties, body) with a bounded wait."""
    out: list = []
    for method, props, body in ch.consume(queue, inactivity_timeout=timeout):
        if method is None:
            break
        out.append((method, props, body))
        if ack:
            ch.basic_ack(method.delivery_tag)
        if len(out) >= n:
            break
    ch.cancel()
    return out


def settle(broker: Any, ch: Any) -> None:
    """Make "nothing more arrives" checkable without sleeping (pika, blocking).

    Waits until the broker's queue dispatchers are idle (every delivery they will
    make now is written), then makes one round trip on ``ch``: what the broker sent
    on that connection before the reply is in, and pika's callbacks for it run.
    ``broker`` is a :class:`~fluxmq_core.testing.broker.BrokerThread`. Publishes
    made on another connection need a round trip on that connection first.
    """
    ch.exchange_declare("amq.direct", passive=True)  # every frame sent so far is handled
    broker.call(broker.context.queues.wait_idle())
    ch.exchange_declare("amq.direct", passive=True)  # what that produced is in
    ch.connection.process_data_events(time_limit=0)
