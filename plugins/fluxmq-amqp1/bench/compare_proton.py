"""Our sans-IO AMQP 1.0 code against Qpid Proton's, on this machine (the figures in
docs/protocols/amqp1.md). Not a test; run it by hand:

    python3 -m uv run --frozen python plugins/fluxmq-amqp1/bench/compare_proton.py

1. Codec: decode and encode one message (100-byte body, message-id, durable header,
   two application properties) with ``fluxmq_amqp1.codec`` and ``proton.Message``.
2. Server side of a connection: the same client bytes (header, open, begin, attach
   and N unsettled transfers, made with our encoder) fed to Proton's engine
   (Transport/Connection/Collector without its reactor: Message.decode, accept and
   settle per delivery) and to our ``Connection`` (decode and an accepted
   disposition per delivery). Bounded: N messages, a few seconds in all.
"""

from __future__ import annotations

import time
from typing import Any

from fluxmq_amqp1.codec.composites import Accepted, Attach, Begin, Open, Source, Target, Transfer
from fluxmq_amqp1.codec.frames import AMQP_HEADER, encode_frame
from fluxmq_amqp1.codec.message import decode_message, encode_message
from fluxmq_amqp1.config import AMQP1Config
from fluxmq_amqp1.connection import Connection as Ours
from proton import Collector, Connection, Delivery, Event, Message, Transport

from fluxmq_core.contracts import AuthResult

N = 20000


def rate(fn: Any, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - t)


def codec() -> None:
    pm = Message(body=b"x" * 100, id="m-1", durable=True, properties={"k": "v", "n": 3})
    raw = pm.encode()
    ours = decode_message(raw)

    def proton_decode() -> None:
        Message().decode(raw)

    print(
        f"decode: ours {rate(lambda: decode_message(raw), N):,.0f}/s, proton {rate(proton_decode, N):,.0f}/s"
    )
    print(
        f"encode: ours {rate(lambda: encode_message(ours), N):,.0f}/s, proton {rate(pm.encode, N):,.0f}/s"
    )


def client_bytes() -> tuple[bytes, int]:
    body = Message(body=b"x" * 100, properties={"k": "v"}, id="m").encode()
    out = bytearray(AMQP_HEADER)
    out += encode_frame(0, Open(container_id="c"))
    out += encode_frame(
        0, Begin(next_outgoing_id=0, incoming_window=2**31 - 1, outgoing_window=2**31 - 1)
    )
    out += encode_frame(
        0,
        Attach(
            name="s",
            handle=0,
            role=False,
            source=Source(),
            target=Target(address="q"),
            initial_delivery_count=0,
        ),
    )
    preamble = len(out)
    for i in range(N):
        tag = i.to_bytes(4, "big")
        out += encode_frame(
            0, Transfer(handle=0, delivery_id=i, delivery_tag=tag, message_format=0), body
        )
    return bytes(out), preamble


def proton_server(data: bytes, preamble: int) -> float:
    st = Transport(Transport.SERVER)
    st.max_frame_size = 65536
    sc = Connection()
    st.bind(sc)
    col = Collector()
    sc.collect(col)
    got = 0
    t = time.perf_counter()
    pos = 0
    while pos < len(data):
        cap = st.capacity()
        if pos < preamble:
            cap = min(cap, preamble - pos)  # the session's capacity is set before transfers
        st.push(data[pos : pos + cap])
        pos += cap
        while (e := col.peek()) is not None:
            if e.type == Event.CONNECTION_REMOTE_OPEN:
                e.connection.open()
            elif e.type == Event.SESSION_REMOTE_OPEN:
                e.session.incoming_capacity = 2**31
                e.session.open()
            elif e.type == Event.LINK_REMOTE_OPEN:
                e.link.open()
                e.link.flow(N)
            elif e.type == Event.DELIVERY:
                d = e.delivery
                if d.readable and not d.partial:
                    Message().decode(e.link.recv(d.pending))
                    d.update(Delivery.ACCEPTED)
                    d.settle()
                    got += 1
            col.pop()
        if st.pending() > 0:
            st.pop(st.pending())
    assert got == N
    return N / (time.perf_counter() - t)


class Env:
    cfg = AMQP1Config(link_credit=1000, session_window=100000)
    container_id = "bench"

    def __init__(self) -> None:
        self.n = 0

    def authorize(self, conn: Any, link: Any) -> None:
        return None

    def attach(self, conn: Any, link: Any) -> Any:
        link.node = self
        return link.attach.target

    def publish(
        self,
        conn: Any,
        link: Any,
        message: Any,
        raw: bytes,
        settled: bool,
        done: Any,
        state: Any = None,
    ) -> None:
        self.n += 1
        done(Accepted())

    def settle(self, *args: Any) -> None:
        pass

    def credit(self, *args: Any) -> None:
        pass

    def detach(self, *args: Any) -> None:
        pass


def our_server(data: bytes) -> float:
    env = Env()
    conn = Ours(env, "127.0.0.1:1")
    t = time.perf_counter()
    conn.receive(data[:8])
    conn.auth_done(AuthResult(ok=True))
    conn.process()
    for i in range(8, len(data), 65536):
        conn.receive(data[i : i + 65536])
        conn.out.clear()
    assert env.n == N
    return N / (time.perf_counter() - t)


def main() -> None:
    codec()
    data, preamble = client_bytes()
    for _ in range(2):
        print(
            f"server side, {N} unsettled transfers: proton engine {proton_server(data, preamble):,.0f} msg/s, "
            f"ours {our_server(data):,.0f} msg/s"
        )


if __name__ == "__main__":
    main()
