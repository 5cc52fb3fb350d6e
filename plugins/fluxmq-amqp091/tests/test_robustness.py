"""Raw, hand-made bytes against the broker: bad headers and frames get the reply code
RabbitMQ 3.x sends (checked against a live RabbitMQ 3.10) and never affect other
connections. Every case asserts the exact close it expects. Waits are bounded."""

from __future__ import annotations

import socket
import struct

import pika
import pytest
from fluxmq_amqp091.codec import PROTOCOL_HEADER, AMQPError, FrameReader, Method
from fluxmq_amqp091.testing import WAIT
from pamqp import commands
from pamqp import frame as pframe


class Raw:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.reader = FrameReader(frame_max=0)
        self.reader.expect_header = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_raw(self, n: int = 8) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                break
            out += chunk
        return out

    def frame(self):
        while True:
            f = self.reader.next_frame()
            if f is not None:
                return f
            data = self.sock.recv(65536)
            if not data:
                raise EOFError
            self.reader.feed(data)

    def method(self):
        f = self.frame()
        assert isinstance(f, Method), f
        return f.method

    def closed(self) -> bool:
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except (TimeoutError, ConnectionResetError):
            return False

    def open(self, heartbeat: int = 0) -> None:
        """Handshake to an open connection (PLAIN guest/guest) and channel 1."""
        self.send(PROTOCOL_HEADER)
        assert isinstance(self.method(), commands.Connection.Start)
        self.send(
            pframe.marshal(
                commands.Connection.StartOk(
                    client_properties={"capabilities": {}},
                    mechanism="PLAIN",
                    response="\0guest\0guest",
                ),
                0,
            )
        )
        tune = self.method()
        assert isinstance(tune, commands.Connection.Tune)
        self.send(
            pframe.marshal(
                commands.Connection.TuneOk(
                    channel_max=tune.channel_max, frame_max=tune.frame_max, heartbeat=heartbeat
                ),
                0,
            )
        )
        self.send(pframe.marshal(commands.Connection.Open(virtual_host="/"), 0))
        assert isinstance(self.method(), commands.Connection.OpenOk)
        self.send(pframe.marshal(commands.Channel.Open(), 1))
        assert isinstance(self.method(), commands.Channel.OpenOk)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw(amqp_broker):
    made = []

    def factory() -> Raw:
        r = Raw(amqp_broker.port("amqp091.bind"))
        made.append(r)
        return r

    yield factory
    for r in made:
        r.close()


@pytest.fixture
def healthy(amqp_broker):
    """A pika connection opened before the abuse; it must still work after."""
    conn = pika.BlockingConnection(
        pika.ConnectionParameters("127.0.0.1", amqp_broker.port("amqp091.bind"))
    )
    ch = conn.channel()
    yield ch
    ch.queue_declare("", exclusive=True)
    conn.close()


@pytest.mark.parametrize(
    "header", [b"AMQP\x00\x00\x08\x00", b"AMQP\x01\x01\x00\x09", b"AMQP\x00\x00\x09\x02"]
)
def test_bad_protocol_header_gets_ours_and_close(amqp_broker, header):
    s = socket.create_connection(("127.0.0.1", amqp_broker.port("amqp091.bind")), timeout=WAIT)
    s.sendall(header)
    data = b""
    while len(data) < 8:
        chunk = s.recv(8)
        if not chunk:
            break
        data += chunk
    assert data == PROTOCOL_HEADER
    assert s.recv(10) == b""
    s.close()


def test_non_amqp_bytes_are_not_claimed_and_closed(amqp_broker):
    """Bytes that are not an AMQP greeting are left to the port's other protocols
    (here the HTTP face answers 400) and the connection ends; AMQP never answers."""
    s = socket.create_connection(("127.0.0.1", amqp_broker.port("amqp091.bind")), timeout=WAIT)
    s.sendall(b"GET / HTTP/1.1\r\n\r\n")
    data = b""
    while chunk := s.recv(4096):
        data += chunk
    s.close()
    assert data.startswith(b"HTTP/1.1 400 ")
    assert PROTOCOL_HEADER not in data


def _close_code(r: Raw) -> int:
    """The reply code of the connection.close the broker sends next."""
    m = r.method()
    assert isinstance(m, commands.Connection.Close), m
    return m.reply_code


def _close(r: Raw) -> tuple[int, str, int, int]:
    m = r.method()
    assert isinstance(m, commands.Connection.Close), m
    return m.reply_code, m.reply_text, m.class_id, m.method_id


def test_bad_frame_end(raw, healthy):
    r = raw()
    r.open()
    payload = struct.pack(">I", commands.Basic.Qos.index) + b"\x00" * 7
    r.send(struct.pack(">BHI", 1, 1, len(payload)) + payload + b"\x00")
    assert _close_code(r) == 501


def test_oversized_frame(raw, healthy):
    r = raw()
    r.open()
    r.send(struct.pack(">BHI", 3, 1, 10_000_000))
    assert _close_code(r) == 501


def test_unknown_class_method(raw, healthy):
    r = raw()
    r.open()
    payload = struct.pack(">HH", 99, 99) + b"\x00"
    r.send(struct.pack(">BHI", 1, 1, len(payload)) + payload + b"\xce")
    assert _close_code(r) == 503


def test_unknown_frame_type_and_truncated_method(raw, healthy):
    r = raw()
    r.open()
    r.send(struct.pack(">BHI", 7, 1, 1) + b"\x00\xce")
    assert _close_code(r) == 501
    r2 = raw()
    r2.open()
    payload = struct.pack(">I", commands.Queue.Declare.index) + b"\x00"
    r2.send(struct.pack(">BHI", 1, 1, len(payload)) + payload + b"\xce")
    code, text, _c, _m = _close(r2)
    assert (code, text.split(" - ")[0]) == (501, "FRAME_ERROR")  # RabbitMQ: cannot decode


def test_body_without_header_is_505_and_channel_reuse_is_504(raw, healthy):
    r = raw()
    r.open()
    r.send(struct.pack(">BHI", 3, 1, 2) + b"hi\xce")
    assert _close_code(r) == 505
    r2 = raw()
    r2.open()
    r2.send(pframe.marshal(commands.Channel.Open(), 1))
    assert _close_code(r2) == 504
    r3 = raw()
    r3.open()
    r3.send(pframe.marshal(commands.Basic.Qos(), 5))  # channel never opened
    assert _close_code(r3) == 504


def test_method_on_channel_zero_is_504_and_bad_vhost_530(raw, healthy):
    r = raw()
    r.open()
    r.send(pframe.marshal(commands.Basic.Qos(), 0))
    assert _close_code(r) == 504  # RabbitMQ: CHANNEL_ERROR
    r2 = raw()
    r2.send(PROTOCOL_HEADER)
    r2.method()
    r2.send(
        pframe.marshal(commands.Connection.StartOk(mechanism="PLAIN", response="\0guest\0guest"), 0)
    )
    tune = r2.method()
    r2.send(
        pframe.marshal(
            commands.Connection.TuneOk(channel_max=tune.channel_max, frame_max=tune.frame_max), 0
        )
    )
    r2.send(pframe.marshal(commands.Connection.Open(virtual_host="/other"), 0))
    assert _close_code(r2) == 530


def test_unsupported_mechanism_is_refused(raw):
    r = raw()
    r.send(PROTOCOL_HEADER)
    r.method()
    r.send(pframe.marshal(commands.Connection.StartOk(mechanism="EXTERNAL", response=""), 0))
    code, text, class_id, method_id = _close(r)
    assert (code, class_id, method_id) == (403, 10, 11)
    assert text == "ACCESS_REFUSED - unsupported authentication mechanism 'EXTERNAL'"
    assert r.closed()


def test_garbage_never_raises_out_of_the_reader():
    reader = FrameReader()
    reader.feed(PROTOCOL_HEADER + b"\x01\x00\x01\x00\x00\x00\x02\xff\xff\xce")
    reader.next_frame()
    with pytest.raises(AMQPError):
        reader.next_frame()


def test_silent_peer_is_dropped_and_server_sends_heartbeats(raw):
    r = raw()
    r.open(heartbeat=1)
    r.sock.settimeout(WAIT)
    got_heartbeat = False
    try:
        while True:
            data = r.sock.recv(65536)
            if not data:
                break
            got_heartbeat = got_heartbeat or b"\x08\x00\x00\x00\x00\x00\x00\xce" in data
    except ConnectionResetError:
        pass
    assert got_heartbeat


def test_amqplain_login(raw):
    from pamqp import encode

    r = raw()
    r.send(PROTOCOL_HEADER)
    start = r.method()
    assert b"AMQPLAIN" in (
        start.mechanisms if isinstance(start.mechanisms, bytes) else start.mechanisms.encode()
    )
    table = encode.field_table({"LOGIN": "guest", "PASSWORD": "guest"})[4:].decode("ascii")
    r.send(pframe.marshal(commands.Connection.StartOk(mechanism="AMQPLAIN", response=table), 0))
    assert isinstance(r.method(), commands.Connection.Tune)


def _publish_header(channel: int, body_size: int, class_id: int = 60) -> bytes:
    payload = struct.pack(">HHQH", class_id, 0, body_size, 0)
    return struct.pack(">BHI", 2, channel, len(payload)) + payload + b"\xce"


@pytest.mark.parametrize(
    ("frames", "code", "ids"),
    [
        # a heartbeat on a channel other than 0 (RabbitMQ: 505, not the spec's 501)
        (b"\x08\x00\x01\x00\x00\x00\x00\xce", 505, (0, 0)),
        # immediate=true is not implemented (RabbitMQ 3.0 dropped it)
        (
            pframe.marshal(commands.Basic.Publish(routing_key="x", immediate=True), 1)
            + _publish_header(1, 0),
            540,
            (60, 40),
        ),
        # a content header of another class
        (
            pframe.marshal(commands.Basic.Publish(routing_key="x"), 1) + _publish_header(1, 1, 50),
            505,
            (0, 0),
        ),
        # a method where the content header should be
        (
            pframe.marshal(commands.Basic.Publish(routing_key="x"), 1)
            + pframe.marshal(commands.Basic.Qos(), 1),
            505,
            (60, 10),
        ),
        # a method only the server sends, and a connection method on a channel
        (pframe.marshal(commands.Channel.OpenOk(), 1), 503, (20, 11)),
        (pframe.marshal(commands.Basic.ConsumeOk(consumer_tag="x"), 1), 503, (60, 21)),
        (
            pframe.marshal(commands.Connection.Close(200, "", 0, 0), 1),
            503,
            (10, 50),
        ),
        # a method other than close on channel 0 once open
        (pframe.marshal(commands.Connection.TuneOk(10, 4096, 0), 0), 504, (10, 31)),
        # basic.qos with a prefetch size (RabbitMQ does not implement it)
        (pframe.marshal(commands.Basic.Qos(prefetch_size=5), 1), 540, (60, 10)),
        # basic.recover with requeue = false
        (pframe.marshal(commands.Basic.Recover(requeue=False), 1), 540, (60, 110)),
    ],
    ids=[
        "heartbeat-on-channel",
        "immediate",
        "header-class",
        "method-for-header",
        "server-method",
        "server-basic-method",
        "connection-method-on-channel",
        "channel-zero-after-open",
        "prefetch-size",
        "recover-no-requeue",
    ],
)
def test_connection_errors_as_rabbitmq(raw, healthy, frames, code, ids):
    r = raw()
    r.open()
    r.send(frames)
    got, _text, class_id, method_id = _close(r)
    assert (got, (class_id, method_id)) == (code, ids)


def test_channel_frame_before_open_is_505(raw):
    r = raw()
    r.send(PROTOCOL_HEADER)
    r.method()
    r.send(
        pframe.marshal(commands.Connection.StartOk(mechanism="PLAIN", response="\0guest\0guest"), 0)
    )
    tune = r.method()
    r.send(pframe.marshal(commands.Connection.TuneOk(tune.channel_max, tune.frame_max, 0), 0))
    r.send(pframe.marshal(commands.Channel.Open(), 1))
    assert _close_code(r) == 505


def test_reused_consumer_tag_is_530(raw, healthy):
    r = raw()
    r.open()
    r.send(pframe.marshal(commands.Queue.Declare(queue="", exclusive=True), 1))
    assert isinstance(r.method(), commands.Queue.DeclareOk)
    r.send(pframe.marshal(commands.Basic.Consume(consumer_tag="t"), 1))
    assert isinstance(r.method(), commands.Basic.ConsumeOk)
    r.send(pframe.marshal(commands.Basic.Consume(consumer_tag="t"), 1))
    code, text, class_id, method_id = _close(r)
    assert (code, class_id, method_id) == (530, 60, 20)
    assert text == "NOT_ALLOWED - attempt to reuse consumer tag 't'"
