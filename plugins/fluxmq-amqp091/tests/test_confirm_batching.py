"""Publisher confirms settled by one group commit go out as one ``multiple`` ack
(a raw client counts the ack frames), in order, covering every publish."""

from __future__ import annotations

import socket
import uuid

from fluxmq_amqp091.codec import PROTOCOL_HEADER, FrameReader, Method, encode_content
from fluxmq_amqp091.testing import WAIT
from pamqp import commands
from pamqp import frame as pframe


class Raw:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.reader = FrameReader(frame_max=0)
        self.reader.expect_header = False
        self.sock.sendall(PROTOCOL_HEADER)
        assert isinstance(self.method(), commands.Connection.Start)
        self.send(
            commands.Connection.StartOk(
                client_properties={}, mechanism="PLAIN", response="\0guest\0guest"
            ),
            0,
        )
        tune = self.method()
        self.send(
            commands.Connection.TuneOk(
                channel_max=tune.channel_max, frame_max=tune.frame_max, heartbeat=0
            ),
            0,
        )
        self.send(commands.Connection.Open(virtual_host="/"), 0)
        assert isinstance(self.method(), commands.Connection.OpenOk)
        self.send(commands.Channel.Open(), 1)
        assert isinstance(self.method(), commands.Channel.OpenOk)

    def send(self, method: object, channel: int = 1) -> None:
        self.sock.sendall(pframe.marshal(method, channel))

    def method(self) -> object:
        while True:
            f = self.reader.next_frame()
            if f is not None:
                assert isinstance(f, Method), f
                return f.method
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("broker closed the connection")
            self.reader.feed(data)


def test_a_burst_of_durable_publishes_is_confirmed_in_few_multiple_acks(amqp_broker):
    c = Raw(amqp_broker.port("amqp091.bind"))
    try:
        q = f"confirm-batch-{uuid.uuid4().hex[:8]}"
        c.send(commands.Queue.Declare(queue=q, durable=True))
        assert isinstance(c.method(), commands.Queue.DeclareOk)
        c.send(commands.Confirm.Select())
        assert isinstance(c.method(), commands.Confirm.SelectOk)
        props = commands.Basic.Properties(delivery_mode=2).marshal()
        one = encode_content(
            1, pframe.marshal(commands.Basic.Publish(routing_key=q), 1), props, b"x" * 10, 131072
        )
        n = 200
        c.sock.sendall(one * n)  # one write: the broker appends them in few loop ticks
        acks: list[tuple[int, bool]] = []
        confirmed = 0
        while confirmed < n:
            m = c.method()
            assert isinstance(m, commands.Basic.Ack), m
            assert m.delivery_tag > confirmed  # in order, nothing twice
            assert m.multiple or m.delivery_tag == confirmed + 1  # no gap skipped
            acks.append((m.delivery_tag, m.multiple))
            confirmed = m.delivery_tag
        assert confirmed == n
        assert len(acks) < n // 2, acks  # settled per group commit, not per publish
        c.send(commands.Queue.Declare(queue=q, durable=True, passive=True))
        ok = c.method()
        assert isinstance(ok, commands.Queue.DeclareOk) and ok.message_count == n
    finally:
        c.sock.close()
