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
from fluxmq_core.queues import CONTROL_VERBS, QueueError, split_queue_topic
from fluxmq_core.queues.retention import trim_consumed

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


def refusal(queues: Any, publishes: list[tuple[Any, Any]]) -> str | None:
    """What the queue manager would refuse among a transaction's queue appends,
    found before any is applied (the checks of ``QueueManager.publish`` and
    ``append``: a control verb as topic level, an unknown queue that may not be
    created, ``max_message_size``, and ``max_depth`` with ``overflow = "reject"``
    for all of the transaction's messages to a queue together); None when all fit.
    The check and the appends run in one call on the event loop: nothing can come
    in between."""
    counts: dict[str, int] = {}
    for node, core in publishes:
        if node.queue is None:
            continue
        if queues is None:
            return "queues are not available in this broker"
        try:
            name, rest = split_queue_topic(core.topic)
            if rest and not CONTROL_VERBS.isdisjoint(rest.split("/")):
                return f"{core.topic!r}: a queue control verb is not appended"
            q = queues.get(name)
            if q is None:
                q = queues.auto_declare(name, "an AMQP 1.0 transaction")  # as the append would
        except QueueError as exc:
            return str(exc)
        limit = q.config.max_message_size
        if limit and len(core.payload) > limit:
            return (
                f"queue {name!r}: payload of {len(core.payload)} bytes exceeds "
                f"max_message_size {limit}"
            )
        counts[name] = counts.get(name, 0) + 1
    for name, n in counts.items():
        q = queues.get(name)
        cfg = q.config
        if cfg.max_depth and cfg.overflow == "reject" and q.log.length(name) + n > cfg.max_depth:
            trim_consumed(queues, q)  # what the append does before it refuses
            if q.live_length() + n > cfg.max_depth:
                return (
                    f"queue {name!r} is full (max_depth {cfg.max_depth}): "
                    f"the transaction's {n} message(s) do not fit"
                )
    return None


def commit(context: Any, txn: Txn, done: Any) -> None:
    """Apply every publish and outcome; the discharge is accepted once every
    queue append is durable. When a queue would refuse one of the appends (see
    :func:`refusal`) nothing is applied: the transaction is rolled back and the
    discharge rejected with amqp:transaction:rollback. A storage failure after the
    appends (a failed sync) also rejects it, but what was appended stays."""
    refused = refusal(context.queues, txn.publishes)
    if refused is not None:
        rollback(txn)
        done(Rejected(error=Error(TXN_ROLLBACK, refused)))
        return
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
