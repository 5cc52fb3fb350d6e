"""Every RPC over a real gRPC socket, with the client built on the generated code
(``fluxmq_queue_api.client``), and the error codes of each refusal."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from fluxmq_queue_api.client import QueueAPIError, QueueClient, pb
from fluxmq_queue_api.testing import TOKEN, grpc_target

from fluxmq_core.testing.broker import BrokerThread

WAIT = 10.0


@pytest.fixture
async def qc(broker: BrokerThread) -> AsyncIterator[QueueClient]:
    async with QueueClient(grpc_target(broker), token=TOKEN) as client:
        yield client


async def fails(code: grpc.StatusCode, coro) -> str:
    with pytest.raises(QueueAPIError) as info:
        await coro
    assert info.value.code == code, info.value
    return info.value.message


async def test_queue_admin(qc: QueueClient) -> None:
    q = await qc.create_queue("admin-q", ["sensors/#"], max_message_size=1000, retention_age=60)
    assert q.name == "admin-q" and list(q.topics) == ["sensors/#"]
    assert q.config.max_message_size == 1000
    assert q.config.retention.max_age.seconds == 60
    await fails(grpc.StatusCode.ALREADY_EXISTS, qc.create_queue("admin-q"))
    assert (await qc.get_queue("admin-q")).state.total_messages == 0
    names = [x.name for x in (await qc.list_queues(prefix="admin-")).queues]
    assert names == ["admin-q"]
    cfg = pb.QueueConfig(max_message_size=5)
    assert (await qc.update_queue("admin-q", cfg)).config.max_message_size == 5
    msg = await fails(grpc.StatusCode.INVALID_ARGUMENT, qc.append("admin-q", b"too long"))
    assert "max_message_size" in msg
    await fails(
        grpc.StatusCode.INVALID_ARGUMENT,
        qc.update_queue("admin-q", pb.QueueConfig(compression=pb.COMPRESSION_TYPE_ZSTD)),
    )
    await qc.delete_queue("admin-q")
    await fails(grpc.StatusCode.NOT_FOUND, qc.get_queue("admin-q"))
    await fails(grpc.StatusCode.NOT_FOUND, qc.delete_queue("admin-q"))
    await fails(grpc.StatusCode.INVALID_ARGUMENT, qc.create_queue(""))


async def test_list_queues_pages(qc: QueueClient) -> None:
    for i in range(3):
        await qc.create_queue(f"page-{i}")
    first = await qc.list_queues(prefix="page-", limit=2)
    assert [x.name for x in first.queues] == ["page-0", "page-1"]
    rest = await qc.list_queues(prefix="page-", limit=2, page_token=first.next_page_token)
    assert [x.name for x in rest.queues] == ["page-2"] and not rest.next_page_token


async def test_append_read_seek_info(qc: QueueClient) -> None:
    await qc.create_queue("log")
    r = await qc.append("log", b"zero", key="eu", headers={"h": b"v"})
    assert r.offset == 0 and r.timestamp.seconds > 0
    b = await qc.append_batch("log", [b"one", b"two"])
    assert (b.first_offset, b.last_offset, b.count) == (1, 2, 2)
    s = await qc.append_stream("log", [b"three", b"four", b"five"])
    assert (s.first_offset, s.last_offset, s.count) == (3, 5, 3)

    m = await qc.read("log", 0)
    assert (m.offset, m.key, m.value, dict(m.headers)) == (0, b"eu", b"zero", {"h": b"v"})
    await fails(grpc.StatusCode.NOT_FOUND, qc.read("log", 99))
    batch = await qc.read_batch("log", 1, limit=3)
    assert [x.value for x in batch.messages] == [b"one", b"two", b"three"]
    assert batch.next_offset == 4 and not batch.end_of_queue
    end = await qc.read_batch("log", 4)
    assert end.end_of_queue and end.next_offset == 6
    small = await qc.read_batch("log", 0, max_bytes=5)
    assert [x.value for x in small.messages] == [b"zero"]

    seek = await qc.seek_to_offset("log", 2)
    assert seek.offset == 2 and seek.exact_match
    assert (await qc.seek_to_offset("log", 100)).offset == 6
    ts = (await qc.read("log", 3)).timestamp
    by_time = await qc.seek_to_timestamp("log", ts.ToNanoseconds() / 1e9)
    assert by_time.offset <= 3 and by_time.timestamp.ToNanoseconds() <= ts.ToNanoseconds()

    info = await qc.get_queue_info("log")
    assert (info.head_offset, info.tail_offset, info.message_count) == (0, 6, 6)
    assert info.newest_timestamp.ToNanoseconds() >= info.oldest_timestamp.ToNanoseconds() > 0
    stats = await qc.get_stats("log")
    assert stats.message_count == 6 and stats.tail_offset == 6

    await qc.truncate("log", 2)
    assert (await qc.get_queue_info("log")).head_offset == 2
    await fails(grpc.StatusCode.NOT_FOUND, qc.read("log", 0))
    purged = await qc.purge("log")
    assert purged.messages_deleted == 4 and purged.bytes_freed > 0
    assert (await qc.get_queue_info("log")).message_count == 0


async def test_append_errors(qc: QueueClient) -> None:
    await fails(grpc.StatusCode.NOT_FOUND, qc.append("nope", b"x"))
    await qc.create_queue("errs")
    await fails(grpc.StatusCode.INVALID_ARGUMENT, qc.append("errs", b"x", key="a/+"))
    await fails(grpc.StatusCode.INVALID_ARGUMENT, qc.append("errs", b"x", key=b"\xff"))
    await fails(grpc.StatusCode.INVALID_ARGUMENT, qc.append("errs", b"x", headers={"h": b"\xff"}))
    await qc.purge("small")
    await qc.append_batch("small", [b"1", b"2"])
    msg = await fails(grpc.StatusCode.RESOURCE_EXHAUSTED, qc.append("small", b"3"))
    assert "full" in msg
    await fails(grpc.StatusCode.RESOURCE_EXHAUSTED, qc.append_batch("small", [b"3"]))
    await fails(grpc.StatusCode.INVALID_ARGUMENT, qc.append_batch("errs", []))


async def test_groups_consume_ack_nack(qc: QueueClient) -> None:
    await qc.create_queue("work")
    await qc.append_batch("work", [b"a", b"b", b"c"])
    g = await qc.create_consumer_group("work", "g1")
    assert g.group_id == "g1" and g.cursor.cursor == 0
    late = await qc.create_consumer_group("work", "late", latest=True)
    assert late.cursor.cursor == 3
    await fails(grpc.StatusCode.ALREADY_EXISTS, qc.create_consumer_group("work", "g1"))
    groups = await qc.list_consumer_groups("work")
    assert [x.group_id for x in groups.groups] == ["g1", "late"]

    joined = await qc.join_group("work", "g1", "w1", metadata={"host": "h1"})
    assert [c.consumer_id for c in joined.consumers] == ["w1"]
    assert dict(joined.consumers[0].metadata) == {"host": "h1"}
    got = await qc.consume("work", "g1", "w1", max_messages=2, wait=WAIT)
    assert [m.value for m in got] == [b"a", b"b"]
    assert got[0].delivery_info.group_id == "g1"
    assert got[0].delivery_info.consumer_id == "w1"
    assert got[0].delivery_info.delivery_count == 1

    pending = await qc.get_pending("work", "g1")
    assert pending.total_pending == 3  # a, b, and c waiting in w1's buffer
    assert {e.consumer_id for e in pending.entries} == {"w1"}

    ack = await qc.ack("work", "g1", "w1", [got[0].offset])
    assert ack.acked_count == 1 and ack.committed.committed == 1
    await qc.nack("work", "g1", "w1", [got[1].offset], delay=0)
    again = await qc.consume("work", "g1", "w1", max_messages=5, wait=WAIT)
    values = {m.value: m.delivery_info.delivery_count for m in again}
    while b"b" not in values:  # c first, then the redelivered b
        more = await qc.consume("work", "g1", "w1", max_messages=5, wait=WAIT)
        assert more, "the nacked message was not redelivered"
        values.update({m.value: m.delivery_info.delivery_count for m in more})
    assert values == {b"c": 1, b"b": 2}
    await qc.ack("work", "g1", "w1", [1, 2])
    assert (await qc.get_pending("work", "g1")).total_pending == 0

    hb = await qc.heartbeat("work", "g1", "w1", joined.generation_id)
    assert not hb.should_rejoin
    await qc.leave_group("work", "g1", "w1")
    assert (await qc.heartbeat("work", "g1", "w1")).should_rejoin
    await fails(grpc.StatusCode.NOT_FOUND, qc.leave_group("work", "g1", "w1"))
    await fails(grpc.StatusCode.INVALID_ARGUMENT, qc.ack("work", "g1", "w1", []))
    await fails(grpc.StatusCode.NOT_FOUND, qc.ack("work", "nope", "w1", [0]))
    await qc.delete_consumer_group("work", "late")
    await fails(grpc.StatusCode.NOT_FOUND, qc.get_consumer_group("work", "late"))


async def test_claim_moves_idle_pending(qc: QueueClient) -> None:
    await qc.append_batch("slowvt", [b"x", b"y"])
    got = await qc.consume("slowvt", "cg", "slow", max_messages=2, wait=WAIT)
    assert len(got) == 2
    stolen = await qc.claim("slowvt", "cg", "thief", min_idle=0.0, limit=1)
    assert [m.value for m in stolen] == [b"x"]
    assert stolen[0].delivery_info.consumer_id == "thief"
    assert stolen[0].delivery_info.delivery_count == 2
    owners = {e.offset: e.consumer_id for e in (await qc.get_pending("slowvt", "cg")).entries}
    assert owners == {got[0].offset: "thief", got[1].offset: "slow"}
    none = await qc.claim("slowvt", "cg", "thief", min_idle=3600.0)
    assert none == []
    await qc.ack("slowvt", "cg", "thief", [got[0].offset, got[1].offset])


async def test_consume_queue_stream(qc: QueueClient) -> None:
    await qc.create_queue("live")
    stream = qc.consume_queue("live", "g", "s1", max_in_flight=10)
    first = asyncio.ensure_future(anext(stream))
    await qc.append_batch("live", [b"1", b"2"])
    m1 = await asyncio.wait_for(first, WAIT)
    m2 = await asyncio.wait_for(anext(stream), WAIT)
    assert [m1.value, m2.value] == [b"1", b"2"]
    assert m1.delivery_info.consumer_id == "s1"
    await qc.ack("live", "g", "s1", [m1.offset, m2.offset])
    group = await qc.get_consumer_group("live", "g")
    assert [c.consumer_id for c in group.consumers] == ["s1"]
    await stream.aclose()
    # The stream's consumer goes with it.
    deadline = time.monotonic() + WAIT
    while (await qc.get_consumer_group("live", "g")).consumers:
        assert time.monotonic() < deadline, "the stream's consumer was not removed"
        await asyncio.sleep(0.02)


async def test_tail_stream_follows_appends(qc: QueueClient) -> None:
    await qc.create_queue("tailq")
    await qc.append("tailq", b"old")
    stream = qc.tail("tailq", start="earliest")
    assert (await asyncio.wait_for(anext(stream), WAIT)).value == b"old"
    nxt = asyncio.ensure_future(anext(stream))
    await qc.append("tailq", b"new")
    m = await asyncio.wait_for(nxt, WAIT)
    assert (m.offset, m.value) == (1, b"new")
    await stream.aclose()
    latest = qc.tail("tailq", start="latest")
    nxt = asyncio.ensure_future(anext(latest))
    await asyncio.sleep(0)  # let the call start before the append
    await qc.append("tailq", b"newer")
    assert (await asyncio.wait_for(nxt, WAIT)).value in (b"newer",)
    await latest.aclose()


async def test_stream_errors(qc: QueueClient) -> None:
    with pytest.raises(QueueAPIError) as info:
        await anext(qc.tail("missing"))
    assert info.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(QueueAPIError) as info:
        await anext(qc.consume_queue("missing", "g", "c"))
    assert info.value.code == grpc.StatusCode.NOT_FOUND
    await fails(grpc.StatusCode.NOT_FOUND, qc.append_stream("missing", [b"x"]))
    await fails(grpc.StatusCode.INVALID_ARGUMENT, qc.append_stream("work2", []))


async def test_stream_queue_commit_through_ack(qc: QueueClient) -> None:
    await qc.append_batch("events", [b"e0", b"e1"])
    await qc.create_consumer_group("events", "readers")
    got = await qc.consume("events", "readers", "r1", max_messages=2, wait=WAIT)
    assert [m.value for m in got] == [b"e0", b"e1"]
    ack = await qc.ack("events", "readers", "r1", [got[-1].offset])
    assert ack.acked_count == 1
    claim = await fails(grpc.StatusCode.FAILED_PRECONDITION, qc.claim("events", "readers", "r2"))
    assert "classic" in claim


async def test_reflection_lists_the_service(broker: BrokerThread) -> None:
    reflection_pb2 = pytest.importorskip("grpc_reflection.v1alpha.reflection_pb2")
    async with grpc.aio.insecure_channel(grpc_target(broker)) as channel:
        call = channel.stream_stream(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )

        async def ask():
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        answers = [a async for a in call(ask())]
    names = {s.name for s in answers[0].list_services_response.service}
    assert "fluxmq.queue.v1.QueueService" in names


async def test_errors_carry_queue_error_detail(broker: BrokerThread) -> None:
    """The Go FluxMQ's QueueErrorDetail rides in grpc-status-details-bin; a stream
    refused half-way says how much it appended (AppendProgress)."""
    from fluxmq_queue_api import SERVICE

    def detail_of(exc: grpc.aio.AioRpcError) -> pb.QueueErrorDetail:
        raw = dict(exc.trailing_metadata() or ())["grpc-status-details-bin"]
        # google.rpc.Status: field 3 is the Any; parse it with a tiny reader.
        from google.protobuf import any_pb2

        i = 0
        found = None
        while i < len(raw):
            key = raw[i]
            i += 1
            if key & 7 == 0:
                while raw[i] & 0x80:
                    i += 1
                i += 1
                continue
            size, shift = 0, 0
            while True:
                b = raw[i]
                i += 1
                size |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            if key >> 3 == 3:
                found = any_pb2.Any.FromString(raw[i : i + size])
            i += size
        assert found is not None
        detail = pb.QueueErrorDetail()
        assert found.Unpack(detail)
        return detail

    async with grpc.aio.insecure_channel(grpc_target(broker)) as channel:
        meta = (("authorization", f"Bearer {TOKEN}"),)
        get = channel.unary_unary(
            f"/{SERVICE}/GetQueue",
            request_serializer=pb.GetQueueRequest.SerializeToString,
            response_deserializer=pb.Queue.FromString,
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await get(pb.GetQueueRequest(name="missing"), metadata=meta)
        d = detail_of(info.value)
        assert d.code == pb.QUEUE_ERROR_CODE_NOT_FOUND and not d.retryable

        async with QueueClient(grpc_target(broker), token=TOKEN) as admin:
            await admin.purge("small")
        stream = channel.stream_unary(
            f"/{SERVICE}/AppendQueue",
            request_serializer=pb.AppendRequest.SerializeToString,
            response_deserializer=pb.AppendBatchResponse.FromString,
        )

        async def three():
            for v in (b"1", b"2", b"3"):  # "small" holds 2
                yield pb.AppendRequest(queue_name="small", value=v)

        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stream(three(), metadata=meta)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        d = detail_of(info.value)
        assert d.code == pb.QUEUE_ERROR_CODE_RESOURCE_EXHAUSTED and d.retryable
        assert d.WhichOneof("progress") == "append_progress"
        p = d.append_progress
        assert (p.processed_count, p.failed_index, p.last_offset - p.first_offset) == (2, 2, 1)
