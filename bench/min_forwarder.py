"""The floor of a Python event loop at low rates: a minimal MQTT 3.1.1 QoS 0 forwarder.

Not a broker: it answers CONNECT with CONNACK, SUBSCRIBE with SUBACK (QoS 0, for
every filter, without matching), PINGREQ with PINGRESP, and forwards every QoS 0
PUBLISH, bytes unchanged, to every connection that subscribed. That is enough for
``bench/loadgen.py --scenario latency`` and nothing more: what it costs per message
(one ``epoll`` wake-up, one ``read``, one ``write`` and a few lines of Python) is
what any Python broker on the same loop pays at least, so beside Mosquitto it
separates the cost of the loop and the kernel from the cost of the broker's code.

    uv run python bench/min_forwarder.py --port 1884 [--epoll] [--seconds 600]
    uv run python bench/loadgen.py --port 1884 --scenario latency

``--epoll`` uses a plain ``select.epoll`` loop instead of uvloop. Loopback only;
it exits after ``--seconds`` (default 600) so that a forgotten one does not stay.
"""

from __future__ import annotations

import argparse
import asyncio
import select
import socket
import time

CONNACK = b"\x20\x02\x00\x00"
PINGRESP = b"\xd0\x00"


def cut(buf: bytes, reply, subscribe) -> tuple[bytes, list[bytes]]:
    """Split ``buf`` into packets: answer CONNECT/SUBSCRIBE/PINGREQ through
    ``reply``, note subscribers through ``subscribe``; return the rest and the
    PUBLISH packets."""
    i, n, out = 0, len(buf), []
    while i + 2 <= n:
        length, mult, j = 0, 1, i + 1
        while j < n:
            b = buf[j]
            length += (b & 127) * mult
            mult *= 128
            j += 1
            if b < 128:
                break
        else:
            break  # the length is not complete yet
        if j + length > n:
            break
        kind = buf[i] >> 4
        if kind == 3:
            out.append(buf[i : j + length])
        elif kind == 1:
            reply(CONNACK)
        elif kind == 8:
            subscribe()
            reply(b"\x90\x03" + buf[j : j + 2] + b"\x00")
        elif kind == 12:
            reply(PINGRESP)
        i = j + length
    return buf[i:], out


class Forward(asyncio.Protocol):
    subs: list[asyncio.Transport] = []

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.t = transport
        self.buf = b""
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buf, out = cut(self.buf + data, self.t.write, lambda: self.subs.append(self.t))
        if out:
            payload = b"".join(out)
            for t in self.subs:
                if not t.is_closing():
                    t.write(payload)

    def connection_lost(self, exc) -> None:
        if self.t in self.subs:
            self.subs.remove(self.t)


async def run_uvloop(port: int, seconds: float) -> None:
    server = await asyncio.get_running_loop().create_server(Forward, "127.0.0.1", port)
    async with server:
        await asyncio.sleep(seconds)


def run_epoll(port: int, seconds: float) -> None:
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(100)
    ls.setblocking(False)
    ep = select.epoll()
    ep.register(ls.fileno(), select.EPOLLIN)
    conns: dict[int, socket.socket] = {}
    bufs: dict[int, bytes] = {}
    subs: list[socket.socket] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for fd, _ev in ep.poll(1.0):
            if fd == ls.fileno():
                c, _ = ls.accept()
                c.setblocking(False)
                c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conns[c.fileno()] = c
                bufs[c.fileno()] = b""
                ep.register(c.fileno(), select.EPOLLIN)
                continue
            c = conns[fd]
            try:
                data = c.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                ep.unregister(fd)
                c.close()
                del conns[fd], bufs[fd]
                if c in subs:
                    subs.remove(c)
                continue
            bufs[fd], out = cut(bufs[fd] + data, c.send, lambda c=c: subs.append(c))
            if out:
                payload = b"".join(out)
                for s in subs:
                    try:
                        s.send(payload)
                    except OSError:
                        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--epoll", action="store_true", help="select.epoll instead of uvloop")
    ap.add_argument("--seconds", type=float, default=600.0, help="exit after this long")
    a = ap.parse_args()
    if a.epoll:
        run_epoll(a.port, a.seconds)
        return
    import uvloop

    uvloop.run(run_uvloop(a.port, a.seconds))


if __name__ == "__main__":
    main()
