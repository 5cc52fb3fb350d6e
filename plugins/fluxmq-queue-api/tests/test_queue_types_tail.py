"""CreateQueue makes every queue type of the core (classic, stream, ephemeral,
classic with priorities) over gRPC and Connect, and Tail waits for appends instead
of polling the log: an idle stream is parked on the queue manager's append watch,
wakes on an append, and ends when the queue is deleted."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from fluxmq_queue_api.client import QueueAPIError, QueueClient, pb
from fluxmq_queue_api.testing import TOKEN, connect_call, grpc_target

from fluxmq_core.testing.broker import BrokerThread

WAIT = 10.0


@pytest.fixture
async def qc(broker: BrokerThread) -> AsyncIterator[QueueClient]:
    async with QueueClient(grpc_target(broker), token=TOKEN) as client:
        yield client


async def _code(coro) -> grpc.StatusCode:
    with pytest.raises(QueueAPIError) as info:
        await coro
    return info.value.code


async def test_stream_queue_fans_out_to_every_group(qc: QueueClient, broker) -> None:
    q = await qc.create_queue("t-stream", type="stream")
    assert q.config.type == "stream"
    assert (await qc.get_queue("t-stream")).config.type == "stream"
    assert broker.call_soon(lambda: broker.context.queues.get("t-stream").is_stream)
    await qc.append_batch("t-stream", [b"a", b"b"])
    for group in ("g1", "g2"):  # a stream: each group reads everything
        await qc.create_consumer_group("t-stream", group)
        got = await qc.consume("t-stream", group, "c", max_messages=2, wait=WAIT)
        assert [m.value for m in got] == [b"a", b"b"]
    assert await _code(qc.claim("t-stream", "g1", "c2")) == grpc.StatusCode.FAILED_PRECONDITION


async def test_priority_queue_delivers_higher_priorities_first(qc: QueueClient) -> None:
    q = await qc.create_queue("t-prio", max_priority=10)
    assert (q.config.type, q.config.max_priority) == ("classic", 10)
    await qc.append("t-prio", b"low", headers={"priority": b"1"})
    await qc.append("t-prio", b"none")
    await qc.append("t-prio", b"high", headers={"priority": b"9"})
    await qc.create_consumer_group("t-prio", "w")
    got = await qc.consume("t-prio", "w", "c", max_messages=3, wait=WAIT)
    assert [m.value for m in got] == [b"high", b"low", b"none"]
    code = await _code(qc.append("t-prio", b"x", headers={"priority": b"high"}))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


async def test_ephemeral_and_refused_types(qc: QueueClient) -> None:
    assert (await qc.create_queue("t-eph", type="ephemeral")).config.type == "ephemeral"
    bad = qc.create_queue("t-bad", type="fanout")
    assert await _code(bad) == grpc.StatusCode.INVALID_ARGUMENT
    # A queue never changes type.
    await qc.create_queue("t-fixed")
    code = await _code(qc.update_queue("t-fixed", pb.QueueConfig(type="stream")))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert (await qc.get_queue("t-fixed")).config.type == "classic"
    # Go-generated clients never set the field: they get a classic queue.
    assert (await qc.create_queue("t-plain")).config.type == "classic"


def test_connect_json_creates_a_stream_queue(broker: BrokerThread) -> None:
    status, _ct, body = connect_call(
        broker, "CreateQueue", {"name": "t-cstream", "config": {"type": "stream"}}
    )
    assert status == 200, body
    assert json.loads(body)["config"]["type"] == "stream"
    status, _ct, body = connect_call(
        broker, "CreateQueue", {"name": "t-cbad", "config": {"type": "nope"}}
    )
    assert status == 400 and json.loads(body)["code"] == "invalid_argument"


def _watchers(broker: BrokerThread, name: str) -> int:
    def count() -> int:
        q = broker.context.queues.get(name)
        return sum(1 for w in q.watchers if not w.done()) if q is not None else -1

    return broker.call_soon(count)


async def _until(cond, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not cond():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


async def test_idle_tail_waits_on_the_append_watch(qc: QueueClient, broker) -> None:
    await qc.create_queue("t-tail")
    reads: list[int] = []

    def spy() -> object:
        log = broker.context.queues.get("t-tail").log
        original = log.read

        async def counting(queue, offset, limit):
            if queue == "t-tail":
                reads.append(offset)
            return await original(queue, offset, limit)

        log.read = counting
        return log

    log = broker.call_soon(spy)
    try:
        stream = qc.tail("t-tail", start="latest")
        nxt = asyncio.ensure_future(anext(stream))
        await _until(lambda: _watchers(broker, "t-tail") == 1, "the idle tail is not watching")
        idle_reads = len(reads)
        for _ in range(5):  # round trips while the tail is idle: no log reads
            await qc.get_queue("t-tail")
        assert len(reads) == idle_reads and not nxt.done()
        await qc.append("t-tail", b"wake")
        assert (await asyncio.wait_for(nxt, WAIT)).value == b"wake"
        nxt = asyncio.ensure_future(anext(stream))
        await _until(lambda: _watchers(broker, "t-tail") == 1, "the tail did not park again")
        await qc.delete_queue("t-tail")  # deletion wakes it: the stream ends NOT_FOUND
        with pytest.raises(QueueAPIError) as info:
            await asyncio.wait_for(nxt, WAIT)
        assert info.value.code == grpc.StatusCode.NOT_FOUND
        await stream.aclose()
    finally:
        broker.call_soon(lambda: vars(log).pop("read", None))  # the log is shared
