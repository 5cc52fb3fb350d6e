"""Local transactions of AMQP 1.0 (part 4): the coordinator link's ``declare`` and
``discharge``. A transaction is a :class:`~fluxmq_amqp1.nodes.Txn` of one connection
(``conn.txns``): transactional transfers are buffered in it as core messages, and
receivers' transactional outcomes as (consumer, token, outcome); a commit applies
them all, a rollback none (the settled deliveries go back to their queues).
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any

from fluxmq_amqp1.codec.composites import (
    Accepted,
    AmqpValue,
    Declare,
    Declared,
    Discharge,
    Error,
    Rejected,
    Released,
)
from fluxmq_amqp1.nodes import TXN_ROLLBACK, TXN_UNKNOWN, Txn
from fluxmq_amqp1.state import NOT_IMPLEMENTED
from fluxmq_core.queues import QueueError

if TYPE_CHECKING:
    from fluxmq_amqp1.connection import Connection

__all__ = ["commit", "coordinate", "rollback"]


def coordinate(context: Any, conn: Connection, message: Any, done: Any) -> None:
    """A message to the coordinator link: declare a transaction, or discharge one
    (commit with fail = false, rollback with fail = true)."""
    body = message.body
    value = body[0].value if len(body) == 1 and type(body[0]) is AmqpValue else None
    if isinstance(value, Declare):
        if value.global_id is not None:
            done(
                Rejected(
                    error=Error(NOT_IMPLEMENTED, "distributed transactions are not implemented")
                )
            )
            return
        txn_id = os.urandom(8)
        conn.txns[txn_id] = Txn(txn_id)
        done(Declared(txn_id=txn_id))
    elif isinstance(value, Discharge):
        txn = conn.txns.pop(value.txn_id, None)
        if txn is None:
            done(Rejected(error=Error(TXN_UNKNOWN, f"no transaction {value.txn_id.hex()}")))
        elif value.fail:
            rollback(txn)
            done(Accepted())
        else:
            commit(context, txn, done)
    else:
        done(
            Rejected(
                error=Error("amqp:decode-error", "the coordinator takes declare and discharge")
            )
        )


def rollback(txn: Txn) -> None:
    """Discard the publishes; the deliveries it settled go back to their queues."""
    txn.publishes.clear()
    for node, token, _outcome in txn.settles:
        node.settle(token, Released())
    txn.settles.clear()


def commit(context: Any, txn: Txn, done: Any) -> None:
    """Apply every publish and outcome; the discharge is accepted once every
    queue append is durable (rejected with amqp:transaction:rollback when one
    was refused or failed: what was applied before stays applied)."""
    futures = []
    errors: list[str] = []
    for node, core in txn.publishes:
        if node.queue is None:
            context.publish(core)
            continue
        try:
            futures.append(context.publish_queued(core))
        except QueueError as exc:
            errors.append(str(exc))
    for qsub, token, outcome in txn.settles:
        qsub.settle(token, outcome if outcome is not None else Accepted())
    txn.publishes.clear()
    txn.settles.clear()
    left = [len(futures)]

    def finish() -> None:
        if errors:
            done(Rejected(error=Error(TXN_ROLLBACK, "; ".join(errors[:3]))))
        else:
            done(Accepted())

    def one(f: asyncio.Future[int]) -> None:
        if f.cancelled() or f.exception() is not None:
            errors.append(f"queue append failed: {'cancelled' if f.cancelled() else f.exception()}")
        left[0] -= 1
        if left[0] == 0:
            finish()

    if not futures:
        finish()
    for f in futures:
        f.add_done_callback(one)
