"""The WebSocket transport adapter with raw bytes over real loopback sockets.

An echo protocol runs inside :func:`websocket_factory`; a client made of a plain
socket plus wsproto's client side sends hand-made upgrades and frames, so bad
upgrades, framing errors and close codes are checked byte for byte.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
from typing import Any

import pytest
from wsproto import WSConnection
from wsproto.connection import ConnectionType
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    Request,
    TextMessage,
)

from fluxmq_core.transport import websocket_factory
from fluxmq_core.transport.websocket import WebSocketTransport

WAIT = 5.0


class Echo(asyncio.Protocol):
    """Echoes bytes; ``close`` closes; records what happened."""

    instances: list[Echo] = []

    def __init__(self) -> None:
        self.transport: Any = None
        self.received: list[bytes] = []
        self.lost = asyncio.Event()
        self.paused = 0
        self.resumed = 0
        Echo.instances.append(self)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received.append(data)
        if data == b"close":
            self.transport.close()
        else:
            self.transport.write(data)

    def pause_writing(self) -> None:
        self.paused += 1

    def resume_writing(self) -> None:
        self.resumed += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()


async def serve(**options: Any) -> tuple[asyncio.AbstractServer, int]:
    Echo.instances.clear()
    options.setdefault("path", "/ws")
    options.setdefault("subprotocols", ("echo",))
    factory = websocket_factory(Echo, **options)
    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


class Client:
    """Blocking-free asyncio client: raw socket streams + wsproto client."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.pending: list[Any] = []

    @classmethod
    async def open(cls, port: int) -> Client:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        return cls(r, w)

    async def handshake(
        self,
        path: str = "/ws",
        subprotocols: list[str] | None = None,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> Any:
        self.send(
            Request(
                host="127.0.0.1",
                target=path,
                subprotocols=subprotocols or ["echo"],
                extra_headers=extra or [],
            )
        )
        return await self.event()

    def send(self, event: Any) -> None:
        self.writer.write(self.ws.send(event))

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def event(self) -> Any:
        while not self.pending:
            data = await asyncio.wait_for(self.reader.read(65536), WAIT)
            self.ws.receive_data(data or None)
            self.pending.extend(self.ws.events())
        return self.pending.pop(0)

    async def data(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            ev = await self.event()
            assert isinstance(ev, BytesMessage), ev
            out += ev.data
        return out

    async def eof(self) -> bool:
        try:
            while True:
                data = await asyncio.wait_for(self.reader.read(65536), WAIT)
                if not data:
                    return True
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.writer.close()


async def raw_request(port: int, request: bytes) -> bytes:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(request)
    out = b""
    while True:
        data = await asyncio.wait_for(r.read(65536), WAIT)
        if not data:
            break
        out += data
    w.close()
    return out


def upgrade(path: str = "/ws", *, headers: str = "", key: str | None = None) -> bytes:
    key = key or base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n{headers}\r\n"
    ).encode()


def masked_frame(opcode: int, payload: bytes, fin: bool = True, mask: bool = True) -> bytes:
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 65536:
        head += bytes([m | 126]) + struct.pack("!H", n)
    else:
        head += bytes([m | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def test_upgrade_echo_and_subprotocol() -> None:
    server, port = await serve()
    async with server:
        c = await Client.open(port)
        ev = await c.handshake(subprotocols=["other", "echo"])
        assert isinstance(ev, AcceptConnection) and ev.subprotocol == "echo"
        c.send(BytesMessage(data=b"hello"))
        assert await c.data(5) == b"hello"
        t = Echo.instances[0].transport
        assert isinstance(t, WebSocketTransport)
        assert t.get_extra_info("websocket_subprotocol") == "echo"
        assert t.get_extra_info("peername")[0] == "127.0.0.1"
        c.close()
        await asyncio.wait_for(Echo.instances[0].lost.wait(), WAIT)


async def test_byte_stream_spans_frames_and_frames_hold_several_writes() -> None:
    server, port = await serve()
    async with server:
        c = await Client.open(port)
        await c.handshake()
        # One message in three frames (continuations), then two messages at once.
        c.send(BytesMessage(data=b"ab", message_finished=False))
        c.send(BytesMessage(data=b"cd", message_finished=False))
        c.send(BytesMessage(data=b"ef", message_finished=True))
        assert await c.data(6) == b"abcdef"
        c.send_raw(masked_frame(0x2, b"xy") + masked_frame(0x2, b"z"))
        assert await c.data(3) == b"xyz"
        # The inner protocol got one data_received per network chunk, joined.
        assert b"xyz" in Echo.instances[0].received
        c.close()


async def test_upgrade_with_data_in_the_same_packet() -> None:
    server, port = await serve()
    async with server:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(upgrade(headers="Sec-WebSocket-Protocol: echo\r\n") + masked_frame(0x2, b"early"))
        head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), WAIT)
        assert head.startswith(b"HTTP/1.1 101")
        frame = await asyncio.wait_for(r.readexactly(7), WAIT)
        assert frame == b"\x82\x05early"  # server frames are unmasked
        w.close()


async def test_ping_is_answered_with_pong() -> None:
    server, port = await serve()
    async with server:
        c = await Client.open(port)
        await c.handshake()
        c.send(Ping(payload=b"p1"))
        ev = await c.event()
        assert isinstance(ev, Pong) and ev.payload == b"p1"
        c.close()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (upgrade("/elsewhere"), b"404"),
        (b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", b"400"),
        (upgrade(headers="Sec-WebSocket-Protocol: nope, nada\r\n"), b"400"),
        (upgrade().replace(b"Version: 13", b"Version: 8"), b"426"),
        (upgrade(key="short"), b"400"),
        (upgrade().replace(b"GET", b"POST"), b"405"),
        (b"garbage\r\n\r\n", b"400"),
    ],
    ids=[
        "wrong-path",
        "no-upgrade-headers",
        "bad-subprotocol",
        "bad-version",
        "bad-key",
        "not-get",
        "not-http",
    ],
)
async def test_bad_upgrades_get_http_errors(request_bytes: bytes, status: bytes) -> None:
    server, port = await serve()
    async with server:
        answer = await raw_request(port, request_bytes)
    assert answer.split(b" ", 2)[1] == status, answer
    assert not Echo.instances  # the inner protocol never started


async def test_origin_allow_list() -> None:
    server, port = await serve(origins=["https://good.example"])
    async with server:
        bad = await raw_request(port, upgrade(headers="Origin: https://evil.example\r\n"))
        assert bad.startswith(b"HTTP/1.1 403"), bad
        c = await Client.open(port)
        ev = await c.handshake(extra=[(b"origin", b"https://good.example")])
        assert isinstance(ev, AcceptConnection)
        c.close()
        # No Origin header (not a browser): allowed.
        c = await Client.open(port)
        assert isinstance(await c.handshake(), AcceptConnection)
        c.close()


async def test_no_subprotocol_offered_is_accepted_without_one() -> None:
    server, port = await serve()
    async with server:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(upgrade())
        head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), WAIT)
        assert head.startswith(b"HTTP/1.1 101") and b"sec-websocket-protocol" not in head.lower()
        w.close()


async def test_rejected_http_event_for_wsproto_client() -> None:
    server, port = await serve()
    async with server:
        c = await Client.open(port)
        ev = await c.handshake(path="/nope")
        assert isinstance(ev, RejectConnection) and ev.status_code == 404
        c.close()


async def close_code(c: Client) -> int:
    while True:
        ev = await c.event()
        if isinstance(ev, CloseConnection):
            return int(ev.code)


async def test_inner_close_sends_1000_and_waits_for_the_answer() -> None:
    server, port = await serve()
    async with server:
        c = await Client.open(port)
        await c.handshake()
        c.send(BytesMessage(data=b"close"))
        assert await close_code(c) == 1000
        c.send(CloseConnection(code=1000))
        assert await c.eof()
        await asyncio.wait_for(Echo.instances[0].lost.wait(), WAIT)


async def test_shutdown_close_is_1001() -> None:
    stopping = asyncio.Event()
    server, port = await serve(shutting_down=stopping)
    async with server:
        c = await Client.open(port)
        await c.handshake()
        stopping.set()
        Echo.instances[0].transport.close()
        assert await close_code(c) == 1001
        c.close()


async def test_client_close_is_echoed() -> None:
    server, port = await serve()
    async with server:
        c = await Client.open(port)
        await c.handshake()
        c.send(CloseConnection(code=1000, reason="bye"))
        assert await close_code(c) == 1000
        assert await c.eof()
        await asyncio.wait_for(Echo.instances[0].lost.wait(), WAIT)


async def test_text_frame_is_closed_with_1003() -> None:
    server, port = await serve()
    async with server:
        c = await Client.open(port)
        await c.handshake()
        c.send(TextMessage(data="hi"))
        assert await close_code(c) == 1003
        c.close()


async def test_unmasked_client_frame_is_a_protocol_error_1002() -> None:
    server, port = await serve()
    async with server:
        c = await Client.open(port)
        await c.handshake()
        c.send_raw(masked_frame(0x2, b"x", mask=False))
        assert await close_code(c) == 1002
        c.close()


async def test_message_too_big_is_1009() -> None:
    server, port = await serve(max_message_size=10)
    async with server:
        c = await Client.open(port)
        await c.handshake()
        c.send(BytesMessage(data=b"0123456789"))  # exactly the limit: fine
        assert await c.data(10) == b"0123456789"
        c.send(BytesMessage(data=b"01234", message_finished=False))
        c.send(BytesMessage(data=b"567890", message_finished=True))
        assert await close_code(c) == 1009
        c.close()


async def test_close_timeout_bounds_an_unanswered_close() -> None:
    server, port = await serve(close_timeout=0.2)
    async with server:
        c = await Client.open(port)
        await c.handshake()
        c.send(BytesMessage(data=b"close"))
        assert await close_code(c) == 1000
        assert await c.eof()  # we never answered; the server hung up anyway


async def test_handshake_timeout_closes_a_silent_client() -> None:
    server, port = await serve(handshake_timeout=0.2)
    async with server:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"GET /ws HTTP/1.1\r\n")  # never finished
        assert await asyncio.wait_for(r.read(), WAIT) == b""
        w.close()


async def test_backpressure_reaches_the_inner_protocol() -> None:
    server, port = await serve()
    async with server:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(upgrade(headers="Sec-WebSocket-Protocol: echo\r\n"))
        await asyncio.sleep(0)
        for _ in range(200):
            if Echo.instances and Echo.instances[0].transport is not None:
                break
            await asyncio.sleep(0.01)
        echo = Echo.instances[0]
        t = echo.transport
        t.set_write_buffer_limits(high=16 * 1024)
        assert t.get_write_buffer_limits()[1] == 16 * 1024
        for _ in range(20_000):  # the client never reads: the raw buffer fills up
            t.write(b"x" * 4096)
            if echo.paused:
                break
            await asyncio.sleep(0)
        assert echo.paused == 1
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        received = 0
        async with asyncio.timeout(WAIT * 4):
            while not echo.resumed:
                received += len(await loop.sock_recv(sock, 1 << 20))
        assert echo.resumed == 1 and received > 16 * 1024
        sock.close()
