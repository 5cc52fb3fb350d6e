"""Transactions with Qpid Proton's reactor (its coordinator link, declare and
discharge): transactional sends applied all at commit and none at rollback, and a
transactionally accepted delivery that comes back when its transaction is rolled
back."""

from __future__ import annotations

import uuid
from typing import Any

from proton import Message
from proton.handlers import MessagingHandler, TransactionHandler
from proton.reactor import Container
from proton.utils import BlockingConnection

WAIT = 5.0
LIMIT = 15.0  # the reactor run is cut off after this, and the test fails


class Scenario(MessagingHandler, TransactionHandler):
    """commit(a, b) -> rollback(c) -> receive a, accept it inside a transaction,
    roll that back -> a arrives again -> accept it plainly -> done."""

    def __init__(self, url: str, queue: str) -> None:
        super().__init__(prefetch=0, auto_accept=False)
        self.url = url
        self.queue = queue
        self.events: list[str] = []
        self.step = 0
        self.received: list[Any] = []
        self.conn: Any = None

    def on_start(self, event: Any) -> None:
        self.container = event.container
        self.conn = event.container.connect(self.url)
        self.sender = event.container.create_sender(self.conn, self.queue)
        event.container.declare_transaction(self.conn, handler=self)
        self.timer = event.container.schedule(LIMIT, self)

    def on_timer_task(self, event: Any) -> None:
        self.events.append("timeout")
        self.conn.close()

    def on_transaction_declared(self, event: Any) -> None:
        txn = event.transaction
        self.events.append(f"declared{self.step}")
        if self.step == 0:
            txn.send(self.sender, Message(body="a"))
            txn.send(self.sender, Message(body="b"))
            txn.commit()
        elif self.step == 1:
            txn.send(self.sender, Message(body="c"))
            txn.abort()
        else:
            txn.accept(self.pending)
            txn.abort()

    def on_transaction_committed(self, event: Any) -> None:
        self.events.append("committed")
        self.step = 1
        self.container.declare_transaction(self.conn, handler=self)

    def on_transaction_aborted(self, event: Any) -> None:
        self.events.append("aborted")
        if self.step == 1:
            self.step = 2
            self.receiver = self.container.create_receiver(self.conn, self.queue)
            self.receiver.flow(1)
        else:
            self.receiver.flow(1)

    def on_transaction_commit_failed(self, event: Any) -> None:
        self.events.append("commit-failed")
        self.conn.close()

    def on_message(self, event: Any) -> None:
        self.received.append(event.message.body)
        if len(self.received) == 1:
            self.pending = event.delivery
            self.container.declare_transaction(self.conn, handler=self)
        else:
            self.accept(event.delivery)
            self.events.append("done")
            self.timer.cancel()
            self.conn.close()


def test_commit_rollback_and_transactional_accept(url: str) -> None:
    queue = f"$queue/tx{uuid.uuid4().hex[:8]}"
    scenario = Scenario(url, queue)
    Container(scenario).run()
    assert scenario.events == [
        "declared0",
        "committed",
        "declared1",
        "aborted",
        "declared2",
        "aborted",
        "done",
    ]
    assert scenario.received == ["a", "a"]  # the rolled-back accept gave it back
    conn = BlockingConnection(url, timeout=WAIT)
    try:
        conn.create_sender(queue).send(Message(body="marker"))
        r = conn.create_receiver(queue, credit=5)
        got = []
        for _ in range(2):
            got.append(r.receive(timeout=WAIT).body)
            r.accept()
        # b from the committed transaction, then the marker: c was rolled back
        assert got == ["b", "marker"]
    finally:
        conn.close()


class CommitAcross(MessagingHandler, TransactionHandler):
    """One transaction sends to two queues and commits; the outcome is recorded."""

    def __init__(self, url: str, first: str, second: str) -> None:
        super().__init__(prefetch=0, auto_accept=False)
        self.url, self.first, self.second = url, first, second
        self.events: list[str] = []
        self.condition: Any = None

    def on_start(self, event: Any) -> None:
        self.conn = event.container.connect(self.url)
        self.s1 = event.container.create_sender(self.conn, self.first)
        self.s2 = event.container.create_sender(self.conn, self.second)
        event.container.declare_transaction(self.conn, handler=self)
        self.timer = event.container.schedule(LIMIT, self)

    def on_timer_task(self, event: Any) -> None:
        self.events.append("timeout")
        self.conn.close()

    def on_transaction_declared(self, event: Any) -> None:
        txn = event.transaction
        txn.send(self.s1, Message(body="x1"))
        txn.send(self.s2, Message(body="x2"))
        txn.commit()

    def _end(self, what: str, event: Any) -> None:
        self.events.append(what)
        self.timer.cancel()
        self.conn.close()

    def on_transaction_committed(self, event: Any) -> None:
        self._end("committed", event)

    def on_transaction_commit_failed(self, event: Any) -> None:
        delivery = event.transaction._discharge
        self.condition = delivery.remote.condition if delivery is not None else None
        self._end("commit-failed", event)


def test_commit_refused_by_one_queue_applies_nothing(fluxmq_broker_factory: Any) -> None:
    full = f"full{uuid.uuid4().hex[:6]}"
    free = f"free{uuid.uuid4().hex[:6]}"
    cfg = {"queues": {full: {"type": "classic", "max_depth": 1, "overflow": "reject"}}}
    broker = fluxmq_broker_factory(plugins=["amqp1"], config=cfg)
    url = f"amqp://127.0.0.1:{broker.port('amqp1.bind')}"
    conn = BlockingConnection(url, timeout=WAIT)
    try:
        conn.create_sender(f"$queue/{full}").send(Message(body="already"))
        failing = CommitAcross(url, f"$queue/{free}", f"$queue/{full}")
        Container(failing).run()
        assert failing.events == ["commit-failed"]
        assert failing.condition is not None  # the rejected outcome's error
        assert failing.condition.name == "amqp:transaction:rollback"
        assert full in failing.condition.description
        queues = broker.context.queues
        # nothing applied: the free queue got nothing, the full one only what it held
        assert broker.call_soon(lambda: queues.info(full).depth) == 1
        assert broker.call_soon(lambda: queues.get(free) is None or queues.info(free).depth == 0)
        # the same transaction to two queues with room is committed whole
        ok = CommitAcross(url, f"$queue/{free}", f"$queue/{free}x")
        Container(ok).run()
        assert ok.events == ["committed"]
        assert broker.call_soon(
            lambda: (queues.info(free).depth, queues.info(f"{free}x").depth)
        ) == (
            1,
            1,
        )
    finally:
        conn.close()
