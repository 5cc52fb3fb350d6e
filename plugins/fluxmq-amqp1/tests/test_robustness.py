"""Raw bytes against the listener: wrong headers, frames that cannot be delimited,
type-system violations, oversized frames, random garbage and a stalled handshake
and unfinished multi-frame deliveries spread over many links each end with the
spec's answer (a protocol header or a close carrying the error
condition), never a traceback, and the broker keeps serving."""

from __future__ import annotations

import random
import socket
import struct
from typing import Any

import pytest
from fluxmq_amqp1.codec.composites import Attach, Begin, Close, Open, Source, Target, Transfer
from fluxmq_amqp1.codec.frames import AMQP_HEADER, FrameReader, Header8, encode_frame
from proton import Message
from proton.utils import BlockingConnection

from fluxmq_core.testing.broker import BrokerThread

WAIT = 5.0


@pytest.fixture(scope="module")
def broker() -> Any:
    config = {"amqp1": {"handshake_timeout": 0.5, "max_reassembly": 4096}}
    with BrokerThread(plugins=["amqp1"], config=config) as b:
        yield b


def exchange(broker: BrokerThread, data: bytes) -> list[Any]:
    """Send ``data``, read until the broker closes (bounded), return what it sent."""
    with socket.create_connection(("127.0.0.1", broker.port("amqp1.bind")), timeout=WAIT) as s:
        s.sendall(data)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    reader = FrameReader()
    reader.feed(b"".join(chunks))
    out = []
    while (f := reader.next_frame()) is not None:
        out.append(f.raw if isinstance(f, Header8) else f.body)
    return out


def opened(extra: bytes) -> bytes:
    return AMQP_HEADER + encode_frame(0, Open(container_id="raw")) + extra


def close_condition(frames: list[Any]) -> str | None:
    closes = [f for f in frames if isinstance(f, Close)]
    assert closes, frames
    return closes[-1].error.condition if closes[-1].error else None


def still_serves(broker: BrokerThread) -> None:
    c = BlockingConnection(f"amqp://127.0.0.1:{broker.port('amqp1.bind')}", timeout=WAIT)
    try:
        r = c.create_receiver("topic/robust/ok", credit=1)
        c.create_sender("topic/robust/ok").send(Message(body="alive"))
        assert r.receive(timeout=WAIT).body == "alive"
        r.accept()
    finally:
        c.close()


def test_unsupported_version_gets_ours_and_a_close(broker: BrokerThread) -> None:
    assert exchange(broker, b"AMQP\x00\x01\x00\x09") == [AMQP_HEADER]
    # in-band TLS (protocol id 2) is not AMQP 1.0 as spoken here: nobody claims it
    assert exchange(broker, b"AMQP\x02\x01\x00\x00") == []


def test_frame_size_below_eight_is_a_framing_error(broker: BrokerThread) -> None:
    frames = exchange(broker, opened(struct.pack(">IBBH", 4, 2, 0, 0)))
    assert close_condition(frames) == "amqp:connection:framing-error"


def test_frame_over_max_frame_size_is_a_framing_error(broker: BrokerThread) -> None:
    frames = exchange(broker, opened(struct.pack(">IBBH", 10_000_000, 2, 0, 0)))
    assert close_condition(frames) == "amqp:connection:framing-error"


def test_type_violation_is_a_decode_error(broker: BrokerThread) -> None:
    # begin whose next-outgoing-id is a string
    body = b"\x00\x53\x11\xc0\x08\x03\x40\xa1\x01x\x43\x43"
    frames = exchange(broker, opened(struct.pack(">IBBH", 8 + len(body), 2, 0, 0) + body))
    assert close_condition(frames) == "amqp:decode-error"


def test_performative_before_open_is_not_allowed(broker: BrokerThread) -> None:
    frames = exchange(
        broker,
        AMQP_HEADER
        + encode_frame(0, Begin(next_outgoing_id=0, incoming_window=1, outgoing_window=1)),
    )
    assert close_condition(frames) == "amqp:not-allowed"


def test_stalled_handshake_is_closed(broker: BrokerThread) -> None:
    assert exchange(broker, AMQP_HEADER) == [AMQP_HEADER]  # then closed by the timeout


def test_random_garbage_after_open(broker: BrokerThread) -> None:
    rng = random.Random(1234)
    for _ in range(25):
        junk = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 120)))
        frame = struct.pack(">IBBH", 8 + len(junk), 2, rng.choice((0, 0, 1)), 0) + junk
        frames = exchange(broker, opened(frame + encode_frame(0, Close())))
        assert isinstance(frames[1], Open)
        assert any(isinstance(f, Close) for f in frames)
    still_serves(broker)


def test_unfinished_deliveries_on_many_links_close_the_connection(broker: BrokerThread) -> None:
    """Each link keeps one multi-frame delivery open, all under max-message-size;
    together they pass [amqp1] max_reassembly (4096 here)."""
    data = bytearray(opened(b""))
    data += encode_frame(0, Begin(next_outgoing_id=0, incoming_window=100, outgoing_window=100))
    for h in range(4):
        data += encode_frame(
            0,
            Attach(
                name=f"s{h}",
                handle=h,
                role=False,
                source=Source(),
                target=Target(address="topic/robust/partial"),
                initial_delivery_count=0,
            ),
        )
    for h in range(4):
        t = Transfer(handle=h, delivery_id=h, delivery_tag=bytes([h]), more=True)
        data += encode_frame(0, t, b"\x00" * 1500)
    frames = exchange(broker, bytes(data))
    assert close_condition(frames) == "amqp:resource-limit-exceeded"
    still_serves(broker)
