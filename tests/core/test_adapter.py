"""The protocol-adapter base (fluxmq_core.transport.adapter) with a toy line protocol:
one write per destination per chunk, typed waits, per-connection exception
isolation, reading held while waiting, and the graceful close with a linger.
Real loopback sockets where the bytes on the wire matter, a recording transport
where the number of writes does."""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest

from fluxmq_core.transport import adapter
from fluxmq_core.transport.adapter import AdapterProtocol, AdapterServer, Wait

WAIT = 5.0


@dataclass(frozen=True, slots=True)
class EchoWait(Wait):
    text: str


@dataclass(frozen=True, slots=True)
class NobodyWait(Wait):
    pass


class Toy:
    """A sans-IO line protocol: ``echo X``, ``to NAME X`` (deliver to another
    connection), ``wait X`` (an EchoWait), ``nobody`` (a wait without a handler),
    ``boom`` (a bug), ``bye`` (the server closes with a goodbye)."""

    def __init__(self, server: ToyServer, name: str) -> None:
        self.server = server
        self.name = name
        self.out = bytearray()
        self.waiting: Wait | None = None
        self.closing = False
        self.paused = False
        self.flush_pending = False
        self.wakeup: Any = None
        self.buf = b""
        self.lost_called = 0

    def receive(self, data: bytes) -> None:
        self.buf += data
        self.process()

    def process(self) -> None:
        while self.waiting is None and not self.closing and b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            cmd, _, arg = line.decode().partition(" ")
            if cmd == "boom":
                raise RuntimeError("toy bug")
            if cmd == "to":
                dest, _, text = arg.partition(" ")
                other = self.server.conns[dest]
                other.out += text.encode() + b"\n"
                other.wakeup(other)
            elif cmd == "wait":
                self.waiting = EchoWait(arg)
            elif cmd == "nobody":
                self.waiting = NobodyWait()
            elif cmd == "bye":
                self.out += b"bye\n"
                self.closing = True
            else:
                self.out += arg.encode() + b"\n"

    def answer(self, text: str) -> None:
        self.waiting = None
        self.out += b"waited " + text.encode() + b"\n"
        self.process()


class ToyServer(AdapterServer):
    def __init__(self) -> None:
        super().__init__(SimpleNamespace(stats=SimpleNamespace(bytes_received=0, bytes_sent=0)))
        self.conns: dict[str, Toy] = {}
        self.names = iter(f"c{i}" for i in range(1000))
        self.release = asyncio.Event()


class ToyProtocol(AdapterProtocol):
    __slots__ = ()
    log_name = "fluxmq.test.toy"

    def make_connection(self, transport: Any) -> Toy:
        conn = Toy(self.server, next(self.server.names))
        self.server.conns[conn.name] = conn
        return conn

    def internal_error(self) -> None:
        self.conn.out += b"ERR internal\n"
        self.conn.closing = True

    def connection_ended(self) -> None:
        self.conn.lost_called += 1

    async def _echo(self, wait: EchoWait) -> None:
        await self.server.release.wait()
        self.conn.answer(wait.text)

    WAITS = {EchoWait: _echo}


class RecordingTransport(asyncio.Transport):
    """What the protocol writes, one entry per ``write`` call."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.reading = True
        self.eof = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def _pair(server: ToyServer, n: int = 2) -> list[tuple[ToyProtocol, RecordingTransport]]:
    out = []
    for _ in range(n):
        p, t = ToyProtocol(server), RecordingTransport()
        p.connection_made(t)
        out.append((p, t))
    return out


def test_one_write_per_destination_per_chunk():
    async def main() -> None:
        server = ToyServer()
        (a, ta), (b, tb) = _pair(server)
        a.data_received(b"to c1 one\nto c1 two\necho x\nto c1 three\n")
        assert ta.writes == [b"x\n"]
        assert tb.writes == [b"one\ntwo\nthree\n"]  # once, at the end of a's chunk
        assert not server.dirty

    asyncio.run(main())


def test_a_chunk_writes_its_deliveries_without_a_loop_callback(monkeypatch):
    async def main() -> None:
        server = ToyServer()
        (a, _ta), (b, tb) = _pair(server)
        loop = asyncio.get_running_loop()
        scheduled: list[Any] = []
        real = loop.call_soon

        def counting(cb: Any, *args: Any, **kw: Any) -> Any:
            scheduled.append(cb)
            return real(cb, *args, **kw)

        monkeypatch.setattr(loop, "call_soon", counting)
        for i in range(3):
            a.data_received(f"to c1 m{i}\n".encode())
        assert tb.writes == [b"m0\n", b"m1\n", b"m2\n"]
        assert scheduled == []  # the chunk's end wrote them; nothing left for the loop
        # Outside a chunk (a timer, a task): one callback per loop tick writes.
        for text in (b"t1\n", b"t2\n"):
            b.conn.out += text
            b.conn.wakeup(b.conn)
        assert tb.writes[3:] == [] and len(scheduled) == 1
        await asyncio.sleep(0)
        assert tb.writes[3:] == [b"t1\nt2\n"]

    asyncio.run(main())


def test_deliveries_are_written_before_the_chunks_own_answers(monkeypatch):
    async def main() -> None:
        server = ToyServer()
        (a, ta), (b, tb) = _pair(server)
        order: list[tuple[str, bytes]] = []
        for name, t in (("a", ta), ("b", tb)):
            monkeypatch.setattr(t, "write", lambda data, name=name: order.append((name, data)))
        a.data_received(b"echo ack\nto c1 copy\n")
        assert order == [("b", b"copy\n"), ("a", b"ack\n")]

    asyncio.run(main())


def test_a_failing_chunk_still_writes_what_it_delivered(caplog):
    async def main() -> None:
        server = ToyServer()
        (a, ta), (b, tb) = _pair(server)
        with caplog.at_level(logging.ERROR, logger="fluxmq.test.toy"):
            a.data_received(b"to c1 one\nboom\n")
        assert tb.writes == [b"one\n"]  # at once, not left for a later loop tick
        assert not server.dirty
        assert b"".join(ta.writes) == b"ERR internal\n"

    asyncio.run(main())


def test_delivery_into_another_server_is_written_on_the_next_tick():
    async def main() -> None:
        one, two = ToyServer(), ToyServer()
        ((a, _ta),) = _pair(one, 1)
        ((b, tb),) = _pair(two, 1)
        one.conns["other"] = b.conn  # a's chunk delivers into two's connection
        a.data_received(b"to other hi\n")
        assert tb.writes == []  # one's chunk end writes one's list only
        assert two.dirty == [b]
        await asyncio.sleep(0)
        assert tb.writes == [b"hi\n"] and not two.dirty

    asyncio.run(main())


def test_output_past_flush_at_is_written_at_once(monkeypatch):
    async def main() -> None:
        server = ToyServer()
        (a, _ta), (b, tb) = _pair(server)
        monkeypatch.setattr(ToyProtocol, "flush_at", 8)
        a.data_received(b"to c1 0123456789\nto c1 x\n")
        assert tb.writes == [b"0123456789\n", b"x\n"]

    asyncio.run(main())


def test_a_bug_closes_only_its_connection(caplog):
    async def main() -> None:
        server = ToyServer()
        (a, ta), (b, tb) = _pair(server)
        with caplog.at_level(logging.ERROR, logger="fluxmq.test.toy"):
            a.data_received(b"echo before\nboom\n")
            a.data_received(b"boom\n")  # discarded: a is lingering
        assert b"".join(ta.writes) == b"before\nERR internal\n"  # the chunk's answers, then why
        assert ta.eof and a.conn.lost_called == 1
        assert len([r for r in caplog.records if r.name == "fluxmq.test.toy"]) == 1
        b.data_received(b"echo still here\n")
        assert tb.writes == [b"still here\n"] and not tb.closed and not tb.eof

    asyncio.run(main())


def test_a_failing_flush_does_not_strand_the_others(monkeypatch):
    async def main() -> None:
        server = ToyServer()
        (a, ta), (b, tb), (c, tc) = _pair(server, 3)

        def broken(data: Any) -> None:
            raise OSError("broken pipe")

        monkeypatch.setattr(tb, "write", broken)
        a.data_received(b"to c1 lost\nto c2 kept\n")
        assert tc.writes == [b"kept\n"]
        assert tb.closed  # the second failure (writing the goodbye) aborted it
        assert b.conn.lost_called == 1

    asyncio.run(main())


def test_typed_wait_holds_reading_and_answers_in_order():
    async def main() -> None:
        server = ToyServer()
        ((a, ta),) = _pair(server, 1)
        a.data_received(b"echo 1\nwait 2\necho 3\n")
        assert ta.writes == [b"1\n"] and not ta.reading
        a.data_received(b"echo 4\n")  # already in flight when reading paused
        server.release.set()
        for _ in range(10):
            await asyncio.sleep(0)
        assert b"".join(ta.writes) == b"1\nwaited 2\n3\n4\n"
        assert ta.reading

    asyncio.run(main())


def test_a_wait_without_handler_is_an_internal_error(caplog):
    async def main() -> None:
        server = ToyServer()
        ((a, ta),) = _pair(server, 1)
        with caplog.at_level(logging.ERROR, logger="fluxmq.test.toy"):
            a.data_received(b"nobody\n")
            for _ in range(5):
                await asyncio.sleep(0)
        assert ta.writes == [b"ERR internal\n"] and ta.eof
        assert "no handler for NobodyWait()" in caplog.text

    asyncio.run(main())


def test_graceful_close_over_a_real_socket(monkeypatch):
    """The client keeps writing after the server's goodbye: it still reads the
    goodbye and then EOF (no reset), and the server closes after the linger."""
    monkeypatch.setattr(adapter, "LINGER", 0.5)

    async def main() -> None:
        server = ToyServer()
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(lambda: ToyProtocol(server), "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]

        def client() -> bytes:
            s = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
            try:
                s.sendall(b"echo hi\nbye\n" + b"junk after the goodbye\n" * 2000)
                got = b""
                while True:
                    data = s.recv(65536)  # ConnectionResetError would fail the test
                    if not data:
                        return got
                    got += data
            finally:
                s.close()

        got = await asyncio.wait_for(loop.run_in_executor(None, client), WAIT)
        assert got == b"hi\nbye\n"
        srv.close()
        await srv.wait_closed()

    asyncio.run(main())


def test_linger_ends_a_client_that_never_closes(monkeypatch):
    monkeypatch.setattr(adapter, "LINGER", 0.2)

    async def main() -> None:
        server = ToyServer()
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(lambda: ToyProtocol(server), "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"bye\n")
        assert await asyncio.wait_for(reader.readline(), WAIT) == b"bye\n"
        assert await asyncio.wait_for(reader.read(), WAIT) == b""  # half-closed
        # we never close our side: the server ends the connection after the linger
        while server.protocols:
            await asyncio.sleep(0.05)
        writer.close()
        srv.close()
        await srv.wait_closed()

    asyncio.run(asyncio.wait_for(main(), WAIT))


@pytest.mark.parametrize("holds", [adapter.HOLD_FLOW, adapter.HOLD_OTHER])
def test_read_holds_combine(holds):
    async def main() -> None:
        server = ToyServer()
        ((a, ta),) = _pair(server, 1)
        a.hold_reading(holds)
        a.hold_reading(adapter.HOLD_WAIT)
        a.release_reading(holds)
        assert not ta.reading  # still held for the wait
        a.release_reading(adapter.HOLD_WAIT)
        assert ta.reading

    asyncio.run(main())
