"""Peers: two or three nodes in one event loop on loopback, real gRPC between them.

Every test runs twice: with gRPC only, and with each node also serving a same-host
link (a Unix socket in the test's directory) that forwarded batches take instead:
the two transports must behave the same.

No timing assertions: every wait is a bounded poll for a state, and the batching
tests queue their messages synchronously (``forward`` never yields), so how the
batches are cut does not depend on the scheduler.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from fluxmq_etcd.codec import pb
from fluxmq_etcd.peers import (
    RPCS,
    HandlerError,
    PeerError,
    Peers,
    PeerUnavailable,
)

from fluxmq_core.message import Message
from fluxmq_core.testing.conformance import sample_message

WAIT = 10.0


async def until(cond: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Poll ``cond`` until true; fail naming ``what`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@dataclass
class Node:
    peers: Peers
    inbox: list[tuple[str, Message]] = field(default_factory=list)
    targeted: list[tuple[str, str, Message]] = field(default_factory=list)
    log: list[str] = field(default_factory=list)  # topics, targeted or not, in order

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.peers.port}"

    @property
    def link(self) -> str | None:
        return self.peers.link_address

    def topics(self, sender: str | None = None) -> list[str]:
        return [m.topic for f, m in self.inbox if sender is None or f == sender]


MakeNode = Callable[..., Awaitable[Node]]


@pytest.fixture(params=["grpc", "link"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make_node(transport: str, tmp_path: Path) -> AsyncIterator[MakeNode]:
    made: list[Node] = []

    async def make(node_id: str, *, bind: str = "127.0.0.1:0", **kwargs: Any) -> Node:
        inbox: list[tuple[str, Message]] = []
        targeted: list[tuple[str, str, Message]] = []
        log: list[str] = []

        def on_messages(sender: str, messages: list[Message]) -> None:
            inbox.extend((sender, m) for m in messages)
            log.extend(m.topic for m in messages)

        def on_targeted(sender: str, items: list[tuple[str, Message]]) -> None:
            targeted.extend((sender, t, m) for t, m in items)
            log.extend(m.topic for _t, m in items)

        kwargs.setdefault("on_targeted", on_targeted)
        # A busy CI machine can take seconds to open the first channel: a batch that
        # times out is dropped, which would change the counts the tests check.
        kwargs.setdefault("timeout", 30.0)
        node = Node(Peers(node_id, on_messages, **kwargs), inbox, targeted, log)
        link_path = str(tmp_path / f"{node_id}.sock") if transport == "link" else None
        await node.peers.start(bind, link=link_path)
        made.append(node)
        return node

    yield make
    for node in made:
        await node.peers.stop(timeout=0)


def link(*nodes: Node) -> None:
    for a in nodes:
        for b in nodes:
            if a is not b:
                a.peers.set_peer(b.peers.node_id, b.address, link=b.link)


async def test_messages_arrive_in_order_per_sender(make_node: MakeNode, transport: str) -> None:
    a, b, c = await make_node("a"), await make_node("b"), await make_node("c")
    link(a, b, c)
    for i in range(300):
        assert a.peers.forward("b", Message(f"a/{i}"))
        assert c.peers.forward("b", Message(f"c/{i}"))
        assert a.peers.forward("c", Message(f"a/{i}"))
        if i % 50 == 0:
            await asyncio.sleep(0)  # let batches go out while more are queued
    await until(lambda: len(b.inbox) == 600 and len(c.inbox) == 300, "every message")
    assert b.topics("a") == [f"a/{i}" for i in range(300)]
    assert b.topics("c") == [f"c/{i}" for i in range(300)]
    assert c.topics("a") == [f"a/{i}" for i in range(300)]
    # A batch counts as forwarded when its RPC returns, which is after the receiver
    # has delivered it: wait for the last replies too.
    await until(lambda: a.peers.stats()["forwarded"] == 600, "every batch acknowledged")
    assert a.peers.stats()["dropped"] == 0
    # Over the link when there is one, and then over it only.
    assert a.peers.stats()["link_forwarded"] == (600 if transport == "link" else 0)
    assert b.peers.stats()["link_received"] == (600 if transport == "link" else 0)


async def test_every_field_crosses(make_node: MakeNode, transport: str) -> None:
    a, b = await make_node("a"), await make_node("b")
    link(a, b)
    sent = [sample_message(i) for i in range(3)] + [Message("plain", timestamp=5.0)]
    for m in sent:
        a.peers.forward("b", m)
    await until(lambda: len(b.inbox) == 4, "the messages")
    assert [m for _f, m in b.inbox] == sent
    await until(lambda: a.peers.stats()["forwarded"] == 4, "the acks")
    assert a.peers.stats()["peers"]["b"]["link"] == ("up" if transport == "link" else "off")
    assert a.peers.stats()["link_forwarded"] == (4 if transport == "link" else 0)


async def test_batching_groups_by_size(make_node: MakeNode) -> None:
    a, b = await make_node("a", batch_max=50, batch_delay=0.05), await make_node("b")
    link(a, b)
    for i in range(200):  # all queued before the sender task runs
        assert a.peers.forward("b", Message(f"t/{i}"))
    await until(lambda: len(b.inbox) == 200, "200 messages")
    await until(lambda: a.peers.stats()["forwarded"] == 200, "the last reply")
    assert a.peers.stats()["batches"] == 4
    assert b.peers.stats()["received_batches"] == 4


async def test_batching_bounded_by_bytes(make_node: MakeNode) -> None:
    a, b = await make_node("a", batch_bytes=100), await make_node("b")
    link(a, b)
    for i in range(5):
        a.peers.forward("b", Message(f"t/{i}", b"x" * 60))
    await until(lambda: len(b.inbox) == 5, "5 messages")
    await until(lambda: a.peers.stats()["forwarded"] == 5, "the last reply")
    assert a.peers.stats()["batches"] == 5  # 60 + 60 > 100: one per batch


async def test_full_queue_drops_and_counts(make_node: MakeNode) -> None:
    a, b = await make_node("a", queue_max=10), await make_node("b")
    link(a, b)
    accepted = [a.peers.forward("b", Message(f"t/{i}")) for i in range(100)]
    assert accepted == [True] * 10 + [False] * 90
    await until(lambda: len(b.inbox) == 10, "the 10 queued messages")
    stats = a.peers.stats()
    assert stats["dropped"] == 90 and stats["peers"]["b"]["dropped"] == 90
    assert b.topics() == [f"t/{i}" for i in range(10)]
    assert not a.peers.forward("nobody", Message("x"))
    assert a.peers.stats()["dropped_no_peer"] == 1


async def test_targeted_and_plain_keep_one_order(make_node: MakeNode) -> None:
    a, b = await make_node("a"), await make_node("b")
    link(a, b)
    expected = []
    for i in range(20):
        target = f"share:g:{i}" if i % 4 in (1, 2) else ""
        a.peers.forward("b", Message(f"t/{i}"), target)
        expected.append(f"t/{i}")
    await until(lambda: len(b.log) == 20, "20 deliveries")
    assert b.log == expected
    assert [t for _f, t, _m in b.targeted] == [f"share:g:{i}" for i in range(20) if i % 4 in (1, 2)]


async def test_breaker_opens_on_a_dead_peer_and_closes_when_it_returns(
    make_node: MakeNode,
) -> None:
    a = await make_node("a", breaker_failures=2, breaker_reset=0.05, breaker_reset_max=0.2)
    b = await make_node("b")
    link(a, b)
    port = b.peers.port
    a.peers.forward("b", Message("before"))
    await until(lambda: b.topics() == ["before"], "the first message")
    await b.peers.stop(timeout=0)

    def state() -> str:
        return str(a.peers.stats()["peers"]["b"]["state"])

    sent = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while state() == "closed":  # each failed batch counts towards the breaker
        assert loop.time() < deadline, "the breaker never opened"
        a.peers.forward("b", Message(f"lost/{sent}"))
        sent += 1
        await asyncio.sleep(0.01)
    stats = a.peers.stats()
    assert stats["peer_errors"] >= 2
    dropped = stats["dropped"]
    # Open (or probing, no await since the loop saw it): forward drops at once.
    assert a.peers.forward("b", Message("while-open")) is False
    assert a.peers.stats()["dropped"] == dropped + 1

    b2 = await make_node("b", bind=f"127.0.0.1:{port}")
    await until(lambda: state() == "closed", "the breaker to close")
    assert a.peers.forward("b", Message("after"))
    await until(lambda: b2.topics() == ["after"], "a message after the return")


async def test_silent_peer_times_out_without_blocking_forward(make_node: MakeNode) -> None:
    # A TCP listener that never speaks: the gRPC handshake hangs until the deadline.
    held: list[asyncio.StreamWriter] = []

    async def silent(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        held.append(w)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        a = await make_node("a", timeout=0.2, breaker_failures=1, breaker_reset=60, queue_max=50)
        a.peers.set_peer("slow", f"127.0.0.1:{port}")
        results = [a.peers.forward("slow", Message(f"t/{i}")) for i in range(1000)]
        assert results.count(True) == 50 and results.count(False) == 950
        await until(lambda: a.peers.stats()["peers"]["slow"]["state"] == "open", "the breaker")
        stats = a.peers.stats()
        assert stats["dropped"] == 1000 and stats["forwarded"] == 0
        assert stats["peers"]["slow"]["last_error"].startswith("Forward: ")
        with pytest.raises(PeerUnavailable, match="breaker open"):
            await a.peers.call("slow", "Ping", pb.PingRequest())
    finally:
        for w in held:
            w.close()
        server.close()
        await server.wait_closed()


async def test_unary_calls_handlers_and_errors(make_node: MakeNode) -> None:
    a, b = await make_node("a"), await make_node("b")
    link(a, b)
    ping = await a.peers.call("b", "Ping", pb.PingRequest(sent_at=1.0))
    assert ping.node_id == "b" and ping.ready

    with pytest.raises(PeerError, match="UNIMPLEMENTED.*serves no TakeoverSession") as info:
        await a.peers.call("b", "TakeoverSession", pb.TakeoverRequest(client_id="c1"))
    assert info.value.code is grpc.StatusCode.UNIMPLEMENTED
    assert not isinstance(info.value, PeerUnavailable)

    seen: list[tuple[str, str]] = []

    async def takeover(sender: str, request: Any) -> Any:
        seen.append((sender, request.client_id))
        if request.client_id == "missing":
            raise HandlerError(grpc.StatusCode.NOT_FOUND, "no session 'missing'")
        if request.client_id == "boom":
            raise RuntimeError("kaput")
        if request.client_id == "wrong":
            return pb.PingResponse()
        return pb.TakeoverResponse(found=True, session=pb.SessionState(client_id="c1", epoch=3))

    b.peers.handle("TakeoverSession", takeover)  # after start: looked up per call
    resp = await a.peers.call("b", "TakeoverSession", pb.TakeoverRequest(client_id="c1"))
    assert resp.found and resp.session.epoch == 3 and seen == [("a", "c1")]
    with pytest.raises(PeerError, match="NOT_FOUND: no session 'missing'"):
        await a.peers.call("b", "TakeoverSession", pb.TakeoverRequest(client_id="missing"))
    with pytest.raises(PeerError, match="INTERNAL.*kaput"):
        await a.peers.call("b", "TakeoverSession", pb.TakeoverRequest(client_id="boom"))
    with pytest.raises(PeerError, match="returned a PingResponse, not a TakeoverResponse"):
        await a.peers.call("b", "TakeoverSession", pb.TakeoverRequest(client_id="wrong"))
    # Errors the peer answered with leave its breaker closed.
    assert a.peers.stats()["peers"]["b"]["state"] == "closed"
    assert a.peers.stats()["remote_errors"] == 4

    with pytest.raises(ValueError, match="unknown cluster RPC 'Nope'"):
        await a.peers.call("b", "Nope", pb.PingRequest())
    with pytest.raises(ValueError, match="unknown cluster RPC"):
        b.peers.handle("Forward", takeover)
    with pytest.raises(TypeError, match="Ping takes a PingRequest, not a TakeoverRequest"):
        await a.peers.call("b", "Ping", pb.TakeoverRequest())
    with pytest.raises(PeerUnavailable, match="unknown peer"):
        await a.peers.call("z", "Ping", pb.PingRequest())
    assert set(RPCS) == {
        "Forward",
        "TakeoverSession",
        "FetchRetained",
        "QueueAppend",
        "QueueSettle",
        "QueueConsume",
        "QueueCancel",
        "QueueFlow",
        "Ping",
        "ReplicateSessions",
        "FetchReplica",
    }


async def test_call_to_the_wrong_node_is_refused(make_node: MakeNode) -> None:
    a, b = await make_node("a"), await make_node("b")
    a.peers.set_peer("c", b.address, link=b.link)  # stale: b now sits where c was
    with pytest.raises(PeerError, match="this is node 'b', not 'c'") as info:
        await a.peers.call("c", "Ping", pb.PingRequest())
    assert info.value.code is grpc.StatusCode.FAILED_PRECONDITION
    a.peers.forward("c", Message("t"))
    await until(lambda: a.peers.stats()["remote_errors"] == 2, "the refused batch")
    assert b.inbox == [] and a.peers.stats()["peers"]["c"]["state"] == "closed"


async def test_raw_call_without_node_id_is_refused(make_node: MakeNode) -> None:
    b = await make_node("b")
    async with grpc.aio.insecure_channel(b.address) as channel:
        ping = channel.unary_unary(
            "/fluxmq.cluster.v1.Cluster/Ping",
            request_serializer=pb.PingRequest.SerializeToString,
            response_deserializer=pb.PingResponse.FromString,
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await ping(pb.PingRequest(), timeout=WAIT)
        assert info.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert "caller's node id" in (info.value.details() or "")


async def test_malformed_batch_is_refused_clearly(make_node: MakeNode) -> None:
    b = await make_node("b")
    async with grpc.aio.insecure_channel(b.address) as channel:
        forward = channel.unary_unary(
            "/fluxmq.cluster.v1.Cluster/Forward",
            request_serializer=pb.ForwardBatch.SerializeToString,
            response_deserializer=pb.ForwardAck.FromString,
        )
        batch = pb.ForwardBatch(messages=[pb.ForwardedMessage(message=pb.Message(qos=7))])
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await forward(batch, timeout=WAIT, metadata=(("x-fluxmq-node", "x"),))
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "QoS 7" in (info.value.details() or "")
    assert b.inbox == []


async def test_targeted_without_a_handler_is_refused(make_node: MakeNode) -> None:
    a, b = await make_node("a"), await make_node("b", on_targeted=None)
    link(a, b)
    a.peers.forward("b", Message("t"), "share:g:c")
    await until(lambda: a.peers.stats()["remote_errors"] == 1, "the refusal")
    assert "takes no targeted deliveries" in a.peers.stats()["peers"]["b"]["last_error"]


async def test_stop_drains_the_queues(make_node: MakeNode) -> None:
    a, b = await make_node("a", batch_max=10), await make_node("b")
    link(a, b)
    for i in range(100):
        a.peers.forward("b", Message(f"t/{i}"))
    await a.peers.stop(timeout=WAIT)
    assert b.topics() == [f"t/{i}" for i in range(100)]
    assert a.peers.forward("b", Message("late")) is False


async def test_forgetting_a_peer_drops_its_queue(make_node: MakeNode) -> None:
    a, b = await make_node("a", batch_delay=60, batch_max=1000), await make_node("b")
    link(a, b)
    for i in range(5):
        a.peers.forward("b", Message(f"t/{i}"))
    a.peers.set_peer("b", None)
    assert a.peers.peers() == {}
    assert a.peers.forward("b", Message("gone")) is False
    stats = a.peers.stats()
    assert stats["dropped"] == 6 and stats["dropped_no_peer"] == 1


async def test_bad_arguments(make_node: MakeNode) -> None:
    a = await make_node("a")
    with pytest.raises(ValueError, match="this node"):
        a.peers.set_peer("a", "127.0.0.1:1")
    with pytest.raises(ValueError, match="not host:port"):
        a.peers.set_peer("b", "nowhere")
    with pytest.raises(ValueError, match="printable ASCII"):
        Peers("nöde", lambda _f, _m: None)
    with pytest.raises(ValueError, match="batch_max"):
        Peers("x", lambda _f, _m: None, batch_max=0)
    with pytest.raises(RuntimeError, match="already started"):
        await a.peers.start("127.0.0.1:0")
    other = Peers("x", lambda _f, _m: None)
    with pytest.raises(OSError, match="cannot listen"):
        await other.start(f"127.0.0.1:{a.peers.port}")


async def test_slow_handler_times_out_and_counts_towards_the_breaker(make_node: MakeNode) -> None:
    a = await make_node("a", timeout=WAIT, breaker_failures=2, breaker_reset=60)
    b = await make_node("b")
    link(a, b)
    never = asyncio.Event()

    async def stuck(_sender: str, _request: Any) -> Any:
        await never.wait()

    b.peers.handle("FetchRetained", stuck)
    for _ in range(2):
        with pytest.raises(PeerUnavailable, match="DEADLINE_EXCEEDED"):
            await a.peers.call(
                "b", "FetchRetained", pb.FetchRetainedRequest(topic="t"), timeout=0.1
            )
    assert a.peers.stats()["peers"]["b"]["state"] == "open"
    assert a.peers.forward("b", Message("t")) is False
