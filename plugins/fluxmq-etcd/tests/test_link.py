"""The same-host link: its codec against the protobuf one (same information, same
refusals), fuzzed frames (a clear error, never a traceback), and the link between
two Peers over a real Unix socket (bad frames close it, a refused or missing link
falls back to gRPC, a broken one is opened again)."""

from __future__ import annotations

import asyncio
import datetime
import enum
import socket
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from fluxmq_etcd import link
from fluxmq_etcd.codec import (
    MAX_DEPTH,
    CodecError,
    forward_batch_from_proto,
    forward_batch_to_proto,
    pb,
)
from fluxmq_etcd.peers import Peers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fluxmq_core.message import Message
from fluxmq_core.testing.conformance import sample_message

WAIT = 10.0

# The strategies of test_codec.py (a test module is not importable from another).
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
FINITE = st.floats(allow_nan=False, allow_infinity=False)
SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | st.binary()
)
VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def messages(draw: st.DrawFn) -> Message:
    return Message(
        draw(st.text()),
        draw(st.binary(max_size=64) | st.binary(min_size=60_000, max_size=70_000)),
        draw(st.integers(0, 2)),
        draw(st.booleans()),
        properties=draw(st.none() | st.dictionaries(st.text(max_size=8), VALUES, max_size=5)),
        user_properties=draw(
            st.none() | st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8)), max_size=5)
        ),
        content_type=draw(st.none() | st.text()),
        correlation_data=draw(st.none() | st.binary(max_size=32)),
        response_topic=draw(st.none() | st.text()),
        payload_format=draw(st.none() | INT64),
        expires_at=draw(st.none() | FINITE),
        origin_protocol=draw(st.text(max_size=8)),
        origin_client=draw(st.text()),
        timestamp=draw(FINITE),
    )


def link_round_trip(entries: list[tuple[Message, str]], sequence: int = 7) -> list[Any]:
    frame = link.encode_batch(sequence, [(link.encode_message(m), t) for m, t in entries])
    (n,) = struct.unpack_from("<I", frame)
    assert n == len(frame) - 4 and frame[4] == link.BATCH
    seq, out = link.decode_batch(frame[5:])
    assert seq == sequence
    return out


def proto_round_trip(entries: list[tuple[Message, str]]) -> list[Any]:
    wire = forward_batch_to_proto(entries, 7).SerializeToString()
    return forward_batch_from_proto(pb.ForwardBatch.FromString(wire))


def fresh(m: Message) -> Message:
    return m.copy()  # no encode cache shared between the two codecs' runs


# --- the codec -------------------------------------------------------------------------


@given(st.lists(st.tuples(messages(), st.sampled_from(["", "$share/g/t", "q:c1", "s:é"]))))
@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_carries_what_the_protobuf_batch_carries(entries: list[tuple[Message, str]]) -> None:
    mine = link_round_trip([(fresh(m), t) for m, t in entries])
    theirs = proto_round_trip([(fresh(m), t) for m, t in entries])
    assert [(m.to_dict(), t) for m, t in mine] == [(m.to_dict(), t) for m, t in theirs]
    for (a, _), (b, _) in zip(mine, theirs, strict=True):
        assert (a.properties is None) == (b.properties is None)
        assert (a.user_properties is None) == (b.user_properties is None)
        assert type(a.payload) is bytes and type(a.topic) is str


@given(VALUES)
def test_property_values_round_trip(value: Any) -> None:
    m = Message("t", properties={"v": value, "t": (1, [2])}, timestamp=1.0)
    ((back, _t),) = link_round_trip([(m, "")])
    assert back.properties == {"v": value, "t": [1, [2]]}


def test_every_field_of_a_full_message_and_empties() -> None:
    full = sample_message(3)
    empty = Message(
        "",
        b"",
        properties={},
        user_properties=[],
        content_type="",
        correlation_data=b"",
        response_topic="",
        timestamp=0.0,
    )
    plain = Message("t", timestamp=2.5)
    back = [m for m, _t in link_round_trip([(full, ""), (empty, "x"), (plain, "")])]
    assert [m.to_dict() for m in back] == [full.to_dict(), empty.to_dict(), plain.to_dict()]
    assert back[1].properties == {} and back[1].user_properties == []
    assert back[2].properties is None and back[2].user_properties is None
    assert back[2].content_type is None and back[2].expires_at is None


def test_a_decoded_message_has_every_slot_of_the_class() -> None:
    """The decoder builds plain messages slot by slot: none may be left unset, and
    each must equal what ``Message(...)`` makes, whatever fields the class grows."""
    plain = Message("a/b", b"x", 1, True, origin_protocol="mqtt", origin_client="c", timestamp=3.0)
    entries = [(plain, ""), (Message("a/c", b"y", timestamp=4.0), ""), (plain, "")]
    back = [m for m, _t in link_round_trip(entries)]
    for got, sent in zip(back, [e[0] for e in entries], strict=True):
        for name in Message.__slots__:
            want = None if name == "encoded" else getattr(sent, name)
            assert getattr(got, name) == want, name
    # A run of one topic is one string; another topic of the same length is not it.
    assert back[0].topic == "a/b" and back[1].topic == "a/c" and back[2].topic == "a/b"


def test_big_ints_and_nesting_limits() -> None:
    m = Message("t", properties={"big": 2**70, "small": -(2**70)}, timestamp=1.0)
    assert link_round_trip([(m, "")])[0][0].properties == {"big": 2**70, "small": -(2**70)}
    deep: Any = "leaf"
    for _ in range(MAX_DEPTH):
        deep = [deep]
    ok = Message("t", properties={"d": deep}, timestamp=1.0)
    assert link_round_trip([(ok, "")])[0][0].properties == {"d": deep}
    with pytest.raises(CodecError, match="nested deeper"):
        link.encode_message(Message("t", properties={"d": [deep]}))


class Colour(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize(
    "change, error",
    [
        ({"properties": {"when": datetime.datetime(2020, 1, 1)}}, "datetime cannot cross"),
        ({"properties": {1: "x"}}, "is not a string"),
        ({"topic": "\ud800"}, "not valid UTF-8"),
        ({"payload": "text"}, "expected bytes"),
        ({"user_properties": [("k", 1)]}, "user_properties"),
        ({"user_properties": [("k", "v", "w")]}, "user_properties"),
        ({"qos": True}, "QoS"),
        ({"payload_format": 2**64}, "payload_format"),
        ({"correlation_data": "s"}, "expected bytes"),
    ],
)
def test_what_cannot_cross_is_refused_by_both_codecs(change: dict[str, Any], error: str) -> None:
    m = Message("t", b"x", timestamp=1.0)
    for k, v in change.items():
        setattr(m, k, v)
    with pytest.raises(CodecError, match=error):
        link.encode_message(m)
    with pytest.raises(CodecError):
        forward_batch_to_proto([(m, "")], 1)


def test_subclasses_cross_as_plain_values() -> None:
    m = Message("t", properties={"c": Colour.RED}, timestamp=1.0)
    back = link_round_trip([(m, "")])[0][0]
    assert back.properties == {"c": 1} and type(back.properties["c"]) is int


def test_a_message_is_encoded_once_for_several_peers() -> None:
    m = Message("t", b"x")
    first = link.encode_message(m)
    assert link.encode_message(m) is first


def test_a_qos_above_2_is_refused_on_receipt() -> None:
    frame = link.encode_batch(1, [(link.encode_message(Message("t", qos=3)), "")])
    with pytest.raises(link.LinkError, match="QoS 3 is not 0, 1 or 2"):
        link.decode_batch(frame[5:])


def test_handshake_and_ack_frames() -> None:
    hello = link.encode_hello("a", "b")
    assert hello[4] == link.HELLO and link.decode_hello(hello[5:]) == ("a", "b")
    assert link.decode_welcome(link.encode_welcome("b")[5:]) == "b"
    assert link.decode_refuse(link.encode_refuse(9, "stale")[5:]) == (9, "stale")
    assert link.decode_ack(link.encode_ack(5, 0, 3)[5:]) == (5, 0, 3, "")
    with pytest.raises(link.LinkError, match="bad magic"):
        link.decode_hello(b"HTTP" + hello[9:])
    with pytest.raises(link.LinkError, match="link version 9"):
        link.decode_hello(b"FMQL\x09" + hello[10:])
    with pytest.raises(link.LinkError, match="exceeds the limit"):
        link.frame_length(struct.pack("<I", 1 << 30), 1 << 20)
    with pytest.raises(link.LinkError, match="empty frame"):
        link.frame_length(b"\0\0\0\0", 100)


DECODERS: list[Callable[[bytes], Any]] = [
    link.decode_batch,
    link.decode_hello,
    link.decode_welcome,
    link.decode_refuse,
    link.decode_ack,
    link.batch_sequence,
]


@given(st.binary(max_size=300))
def test_fuzzed_bodies_are_refused_clearly(data: bytes) -> None:
    for decode in DECODERS:
        try:
            decode(data)
        except CodecError:
            pass  # LinkError is one: a clear error, nothing else


@given(messages(), st.data())
@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_mutated_batches_decode_or_are_refused(message: Message, data: st.DataObject) -> None:
    body = bytearray(link.encode_batch(3, [(link.encode_message(message), "q:1")])[5:])
    for _ in range(data.draw(st.integers(1, 4))):
        what = data.draw(st.sampled_from(["flip", "cut", "grow"]))
        if what == "flip" and body:
            i = data.draw(st.integers(0, len(body) - 1))
            body[i] = data.draw(st.integers(0, 255))
        elif what == "cut":
            del body[data.draw(st.integers(0, len(body))) :]
        else:
            body += data.draw(st.binary(min_size=1, max_size=8))
    try:
        _seq, out = link.decode_batch(bytes(body))
    except CodecError:
        return
    assert all(isinstance(m, Message) and isinstance(t, str) for m, t in out)


# --- the link between two Peers --------------------------------------------------------


async def until(cond: Callable[[], Any], what: str, timeout: float = WAIT) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class Pair:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.inbox: list[str] = []
        self.made: list[Peers] = []

    async def node(self, name: str, bind: str = "127.0.0.1:0", **kw: Any) -> Peers:
        inbox = self.inbox if name == "b" else []
        p = Peers(name, lambda _f, ms: inbox.extend(m.topic for m in ms), timeout=30.0, **kw)
        await p.start(bind, link=str(self.tmp / f"{name}.sock"))
        self.made.append(p)
        return p


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    p = Pair(tmp_path)
    yield p
    for peers in p.made:
        await peers.stop(timeout=0)


async def raw_dial(path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_unix_connection(path)


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    (n,) = struct.unpack("<I", await reader.readexactly(4))
    data = await reader.readexactly(n)
    return data[0], data[1:]


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\n\r\n",  # not a hello
        struct.pack("<IB", 6, link.HELLO) + b"XXXX\x01",  # bad magic
        struct.pack("<I", 0xFFFFFFFF) + b"\x01",  # absurd length
        b"\x00\x00\x00\x00",  # empty frame
    ],
)
async def test_a_bad_hello_closes_the_link(pair: Pair, garbage: bytes) -> None:
    b = await pair.node("b")
    reader, writer = await raw_dial(str(pair.tmp / "b.sock"))
    writer.write(garbage)
    assert await asyncio.wait_for(reader.read(), WAIT) == b""  # closed, nothing said
    writer.close()
    await until(lambda: b.stats()["served_errors"] == 1, "the error counted")
    # The server still serves a good dialer.
    reader, writer = await raw_dial(str(pair.tmp / "b.sock"))
    writer.write(link.encode_hello("a", "b"))
    assert await read_frame(reader) == (link.WELCOME, link.encode_welcome("b")[5:])
    writer.close()


async def test_bad_frames_after_the_hello(pair: Pair) -> None:
    b = await pair.node("b")
    reader, writer = await raw_dial(str(pair.tmp / "b.sock"))
    writer.write(link.encode_hello("a", "b"))
    assert (await read_frame(reader))[0] == link.WELCOME
    # A batch that frames well but does not decode: refused, the link stays.
    bad = bytearray(link.encode_batch(1, [(link.encode_message(Message("t", qos=1)), "")]))
    bad[5 + 12 + 4 + 1] = 7  # the QoS byte
    writer.write(bytes(bad))
    kind, body = await read_frame(reader)
    seq, status, accepted, details = link.decode_ack(body)
    assert (kind, seq, status, accepted) == (link.ACK, 1, 3, 0)  # INVALID_ARGUMENT
    assert "QoS 7" in details
    good = link.encode_batch(2, [(link.encode_message(Message("ok")), "")])
    writer.write(good)
    assert link.decode_ack((await read_frame(reader))[1]) == (2, 0, 1, "")
    assert pair.inbox == ["ok"]
    # A frame of an unknown kind: the link is closed.
    writer.write(struct.pack("<IB", 1, 99))
    assert await asyncio.wait_for(reader.read(), WAIT) == b""
    writer.close()
    assert b.stats()["served_errors"] == 2 and b.stats()["received"] == 1


async def test_a_missing_link_falls_back_to_grpc(pair: Pair) -> None:
    a, b = await pair.node("a"), await pair.node("b")
    a.set_peer("b", f"127.0.0.1:{b.port}", link=str(pair.tmp / "nowhere.sock"))
    for i in range(20):
        a.forward("b", Message(f"t/{i}"))
    await until(lambda: a.stats()["forwarded"] == 20, "the messages over gRPC")
    assert pair.inbox == [f"t/{i}" for i in range(20)]
    peer = a.stats()["peers"]["b"]
    assert peer["link"] == "down" and peer["link_forwarded"] == 0
    assert "nowhere.sock" in peer["link_error"]


async def test_a_link_to_the_wrong_node_is_not_used(pair: Pair) -> None:
    a, b = await pair.node("a"), await pair.node("b")
    c = await pair.node("c")
    # b's address, c's link: the handshake names b, c refuses, gRPC carries it.
    a.set_peer("b", f"127.0.0.1:{b.port}", link=c.link_address)
    a.forward("b", Message("t"))
    await until(lambda: a.stats()["forwarded"] == 1, "the message over gRPC")
    assert pair.inbox == ["t"]
    assert "this is node 'c', not 'b'" in a.stats()["peers"]["b"]["link_error"]


async def test_a_broken_link_falls_back_then_reopens_in_order(pair: Pair) -> None:
    a, b = await pair.node("a"), await pair.node("b")
    a.set_peer("b", f"127.0.0.1:{b.port}", link=b.link_address)
    a.forward("b", Message("first"))
    await until(lambda: a.stats()["link_forwarded"] == 1, "the link")
    for w in list(b._link_clients):  # cut the stream from b's side
        w.close()
    await until(lambda: a.stats()["peers"]["b"]["link"] == "down", "a to notice")
    sent = 1
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while a.stats()["peers"]["b"]["link"] != "up":  # gRPC meanwhile, then the link again
        assert loop.time() < deadline, "the link never reopened"
        a.forward("b", Message(f"t/{sent}"))
        sent += 1
        await asyncio.sleep(0.02)
    a.forward("b", Message("last"))
    sent += 1
    await until(lambda: a.stats()["forwarded"] + a.stats()["dropped"] == sent, "every answer")
    assert a.stats()["dropped"] == 0  # nothing was in flight when the stream was cut
    assert pair.inbox == ["first", *(f"t/{i}" for i in range(1, sent - 1)), "last"]
    assert 0 < a.stats()["link_forwarded"] < sent  # both transports carried some


async def test_a_restarted_peer_is_reached_over_its_link_again(pair: Pair) -> None:
    a, b = await pair.node("a"), await pair.node("b")
    a.set_peer("b", f"127.0.0.1:{b.port}", link=b.link_address)
    a.forward("b", Message("before"))
    await until(lambda: pair.inbox == ["before"], "the first message")
    await b.stop(timeout=0)
    assert not (pair.tmp / "b.sock").exists()  # removed at stop
    # (A message forwarded before a notices the cut is lost, as over gRPC.)
    await until(lambda: a.stats()["peers"]["b"]["link"] == "down", "a to notice")
    b2 = await pair.node("b")  # same link path, a new gRPC port: etcd would tell a
    a.set_peer("b", f"127.0.0.1:{b2.port}", link=b2.link_address)
    a.forward("b", Message("after"))
    await until(lambda: pair.inbox == ["before", "after"], "the message after the restart")
    await until(lambda: a.stats()["forwarded"] == 2, "the ack")
    assert a.stats()["link_forwarded"] == 2 and b2.stats()["link_received"] == 1


async def test_a_stale_socket_file_is_replaced_and_a_plain_file_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()  # a socket file nobody listens on, as a crash leaves it
    p = Peers("x", lambda _f, _m: None)
    await p.start("127.0.0.1:0", link=str(path))
    assert p.link_address == str(path) and path.is_socket()
    assert path.stat().st_mode & 0o777 == 0o600
    await p.stop(timeout=0)
    assert not path.exists()
    path.write_text("not a socket")
    q = Peers("y", lambda _f, _m: None)
    with pytest.raises(OSError, match="is not a socket"):
        await q.start("127.0.0.1:0", link=str(path))
    assert path.read_text() == "not a socket"
    assert q._server is None  # the gRPC server it started was stopped again


async def test_an_abstract_namespace_link(tmp_path: Path) -> None:
    name = f"@fluxmq-test-{tmp_path.name}-{id(tmp_path)}"
    got: list[str] = []
    a = Peers("a", lambda _f, _m: None, timeout=30.0)
    b = Peers("b", lambda _f, ms: got.extend(m.topic for m in ms), timeout=30.0)
    await a.start("127.0.0.1:0")
    await b.start("127.0.0.1:0", link=name)
    try:
        assert b.link_address == name and not list(tmp_path.iterdir())  # no file
        a.set_peer("b", f"127.0.0.1:{b.port}", link=name)
        for i in range(5):
            a.forward("b", Message(f"t/{i}"))
        await until(lambda: a.stats()["forwarded"] == 5, "the acks")
        assert got == [f"t/{i}" for i in range(5)] and a.stats()["link_forwarded"] == 5
    finally:
        await a.stop(timeout=0)
        await b.stop(timeout=0)
