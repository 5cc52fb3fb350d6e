"""MQTT 3.1.1 load generator for the benchmark: raw sockets, pre-encoded packets,
several processes.

Why it is not the bottleneck:

* Every packet a publisher sends is encoded once, before the clock starts. QoS 0
  publishers send one pre-built batch (about 32 kB of back-to-back PUBLISH packets)
  per ``sendall``; QoS 1 publishers slice the next packets out of one pre-built
  buffer holding a PUBLISH for every packet id.
* Publishers and subscribers are separate processes (``multiprocessing``, spawn).
* Subscribers ``recv_into`` one large reusable buffer and count PUBLISH packets
  without a Python loop per packet: when the stream is a run of same-shaped
  packets (the usual case: one topic, one payload size), the count is
  ``bytes // packet_length`` once strided slices have confirmed that every
  packet's fixed header sits where it should. Anything else (another size, DUP,
  PINGRESP, ...) falls back to a plain parser for a few packets. PUBACKs for QoS 1
  are built with the same strided slices (one ``sendall`` per received chunk).
* Each process measures its own CPU time (``resource.getrusage``) over the
  measurement window so the harness can print the load generator's CPU share.

Every wait has a timeout, every loop a deadline; a broker that does not answer
makes a scenario fail with a reason, never hang. Only loopback addresses are used.

Scenarios beyond the flood and latency ones: QoS 2 fan-in (PUBLISH/PUBREC/PUBREL/
PUBCOMP on both sides), QoS 1 at a fixed rate with latency, retained-heavy
subscribe, and any of them over WebSocket (``ws_`` prefix; a minimal RFC 6455
client, ``WSConn``).

Run directly for a quick check against a broker already listening:
``python bench/loadgen.py --port 1883 --scenario fanin_qos0``
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import queue as queue_mod
import resource
import selectors
import socket
import struct
import time

# ---------------------------------------------------------------------------
# MQTT 3.1.1 encoding (just what the benchmark needs)
# ---------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _str(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">H", len(b)) + b


def connect_packet(client_id: str, keepalive: int = 600, clean: bool = True) -> bytes:
    var = _str("MQTT") + bytes([4, 0x02 if clean else 0]) + struct.pack(">H", keepalive)
    body = var + _str(client_id)
    return b"\x10" + _varint(len(body)) + body


def subscribe_packet(topic: str, qos: int, pid: int = 1) -> bytes:
    body = struct.pack(">H", pid) + _str(topic) + bytes([qos])
    return b"\x82" + _varint(len(body)) + body


def publish_packet(topic: str, payload: bytes, qos: int = 0, pid: int = 0) -> bytes:
    body = _str(topic) + (struct.pack(">H", pid) if qos else b"") + payload
    return bytes([0x30 | (qos << 1)]) + _varint(len(body)) + body


DISCONNECT = b"\xe0\x00"
TOPIC = "bench/t"


class BrokerError(RuntimeError):
    pass


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise BrokerError("connection closed by broker")
        out += chunk
    return out


class WSConn:
    """A minimal RFC 6455 client over a connected socket, enough for MQTT over
    WebSocket (subprotocol ``mqtt``): the handshake, masked binary frames out,
    unmasked frames in. It looks like a socket to the rest of this module
    (``sendall``, ``recv``, ``recv_into``, ``fileno``, ...): what it returns is the
    MQTT byte stream with the frame headers removed. ``sendall`` of the same bytes
    object again reuses the frame it built last time (publishers send one
    pre-built batch over and over; one mask key per batch is enough for a
    benchmark, the server cannot tell)."""

    def __init__(self, sock: socket.socket, host: str, port: int, path: str) -> None:
        import base64

        self.sock = sock
        self.raw = bytearray()  # undecoded frame bytes
        self.pending = bytearray()  # decoded payload not yet handed out
        self._last = (None, b"")
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk or len(head) > 16384:
                raise BrokerError("WebSocket handshake: connection closed")
            head += chunk
        head, _, rest = head.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise BrokerError(f"WebSocket handshake refused: {head[:80]!r}")
        self.raw += rest

    def frame(self, data: bytes) -> bytes:
        n = len(data)
        if n < 126:
            hdr = bytes([0x82, 0x80 | n])
        elif n < 65536:
            hdr = bytes([0x82, 0xFE]) + struct.pack(">H", n)
        else:
            hdr = bytes([0x82, 0xFF]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        m = (mask * (n // 4 + 1))[:n]
        body = (int.from_bytes(data, "big") ^ int.from_bytes(m, "big")).to_bytes(n, "big")
        return hdr + mask + body

    def sendall(self, data: bytes) -> None:
        if self._last[0] is not data:
            self._last = (data, self.frame(data))
        self.sock.sendall(self._last[1])

    def _decode(self) -> bool:
        """Move complete frames' payloads from raw to pending; False on a close frame."""
        raw = self.raw
        pos = 0
        end = len(raw)
        ok = True
        while end - pos >= 2:
            op = raw[pos] & 0x0F
            n = raw[pos + 1] & 0x7F
            i = pos + 2
            if n == 126:
                if end - i < 2:
                    break
                n = (raw[i] << 8) | raw[i + 1]
                i += 2
            elif n == 127:
                if end - i < 8:
                    break
                n = int.from_bytes(raw[i : i + 8], "big")
                i += 8
            if raw[pos + 1] & 0x80:
                raise BrokerError("masked frame from server")
            if end - i < n:
                break
            if op in (0, 2):
                self.pending += raw[i : i + n]
            elif op == 8:
                ok = False
            pos = i + n
        del raw[:pos]
        return ok

    def _fill(self) -> bool:
        data = self.sock.recv(1 << 20)
        if not data:
            return False
        self.raw += data
        return self._decode()

    def recv(self, n: int) -> bytes:
        while not self.pending:
            if not self._fill():
                return b""
        out = bytes(self.pending[:n])
        del self.pending[:n]
        return out

    def recv_into(self, mv) -> int:
        if not self.pending and not self._fill() and not self.pending:
            return 0
        if not self.pending:
            raise BlockingIOError
        n = min(len(mv), len(self.pending))
        mv[:n] = self.pending[:n]
        del self.pending[:n]
        return n

    def __getattr__(self, name):  # fileno, setblocking, settimeout, setsockopt, close
        return getattr(self.sock, name)


def mqtt_connect(
    host: str,
    port: int,
    client_id: str,
    timeout: float = 5.0,
    keepalive: int = 600,
    rcvbuf: int = 0,
    ws_path: str | None = None,
):
    """Open a TCP connection (WebSocket when ws_path), CONNECT, wait for a CONNACK."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf:
            # before connect, so the window scale is negotiated for it
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        sock.connect((host, port))
    except OSError:
        sock.close()
        raise
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if ws_path:
        try:
            sock = WSConn(sock, host, port, ws_path)
        except Exception:
            sock.close()
            raise
    sock.sendall(connect_packet(client_id, keepalive))
    hdr = _recv_exact(sock, 4)
    if hdr[0] != 0x20 or hdr[3] != 0:
        sock.close()
        raise BrokerError(f"bad CONNACK {hdr.hex()}")
    return sock


def mqtt_subscribe(sock: socket.socket, topic: str, qos: int) -> None:
    sock.sendall(subscribe_packet(topic, qos))
    hdr = _recv_exact(sock, 5)
    if hdr[0] != 0x90 or hdr[4] not in (0, 1, 2):
        raise BrokerError(f"bad SUBACK {hdr.hex()}")
    if hdr[4] < qos:
        raise BrokerError(f"SUBACK granted QoS {hdr[4]} < {qos}")


def probe_until_delivered(
    pub: socket.socket, sub: socket.socket, probe: bytes, failure: str, timeout: float = 15
) -> None:
    """Send the QoS 0 PUBLISH ``probe`` on ``pub`` until something arrives on ``sub``
    (a subscription is known where its publisher is only eventually, through etcd);
    RuntimeError(``failure``) after ``timeout`` seconds. Leaves ``sub`` with a 0.2 s
    timeout."""
    sub.settimeout(0.2)
    deadline = time.monotonic() + timeout
    while True:
        pub.sendall(probe)
        try:
            if sub.recv(65536):
                return
        except TimeoutError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(failure)


def drain_socket(sock: socket.socket) -> None:
    """Read and drop what ``sock`` has until it times out or closes (late probes)."""
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        pass


def send_batched(sock: socket.socket, packet: bytes, count: int) -> None:
    """Send ``packet`` ``count`` times, about 32 KiB of copies per ``sendall``."""
    batch = packet * max(1, 32768 // len(packet))
    per = len(batch) // len(packet)
    sent = 0
    while sent < count:
        k = min(per, count - sent)
        sock.sendall(batch if k == per else packet * k)
        sent += k


def install_loop(use_asyncio: bool) -> bool:
    """Install uvloop unless ``use_asyncio`` (or uvloop is missing); return whether
    the asyncio loop is the one in use (for the benchmarks' ``--asyncio``)."""
    if use_asyncio:
        return True
    try:
        import uvloop
    except ImportError:
        return True
    uvloop.install()
    return False


def machine_busy() -> tuple[float, float]:
    """(busy seconds, steal seconds) of all CPUs so far, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    # user nice system idle iowait irq softirq steal
    busy = v[0] + v[1] + v[2] + v[5] + v[6]
    return busy / tick, (v[7] if len(v) > 7 else 0) / tick


def cpu_now() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# ---------------------------------------------------------------------------
# Subscriber side: counting PUBLISH packets in a stream quickly
# ---------------------------------------------------------------------------


class Stream:
    """Parse state of one subscriber connection."""

    __slots__ = (
        "sock",
        "left",
        "publishes",
        "others",
        "prefix",
        "plen",
        "pid_off",
        "on_publish",
        "closed",
        "acks_sent",
        "ack_type",
        "retained",
    )

    def __init__(self, sock: socket.socket, on_publish=None) -> None:
        self.sock = sock
        self.left = b""  # bytes of an incomplete packet carried to the next read
        self.publishes = 0
        self.others = 0
        self.prefix = b""  # fixed header + remaining length of the usual PUBLISH
        self.plen = 0  # its total length
        self.pid_off = 0  # offset of its packet id (QoS 1), 0 for QoS 0
        self.on_publish = on_publish  # slow path callback(payload memoryview, now)
        self.closed = False
        self.acks_sent = 0
        self.ack_type = 0x40  # PUBACK (QoS 1) or PUBREC (QoS 2) for the fast path
        self.retained = 0  # PUBLISHes with the retain flag (slow path only)

    def process(self, buf: bytearray, end: int, now: int = 0) -> bytearray | None:
        """Consume complete packets in buf[:end]; keep the rest; return PUBACKs."""
        pos = 0
        acks = None
        fast = self.on_publish is None
        while pos < end:
            L = self.plen
            if fast and L:
                n = (end - pos) // L
                if n:
                    stop = pos + n * L
                    ok = True
                    for i, b in enumerate(self.prefix):
                        if buf[pos + i : stop : L].count(b) != n:
                            ok = False
                            break
                    if ok:
                        self.publishes += n
                        if self.pid_off:
                            a = bytearray(4 * n)
                            a[0::4] = bytes([self.ack_type]) * n
                            a[1::4] = b"\x02" * n
                            o = pos + self.pid_off
                            a[2::4] = buf[o:stop:L]
                            a[3::4] = buf[o + 1 : stop : L]
                            acks = a if acks is None else acks + a
                        pos = stop
                        continue
            # slow path: parse up to 64 packets one by one, then retry the fast path
            stalled = False
            for _ in range(64):
                if pos >= end:
                    break
                h = buf[pos]
                i = pos + 1
                rl = 0
                mult = 1
                complete = False
                while i < end:
                    b = buf[i]
                    i += 1
                    rl += (b & 0x7F) * mult
                    if b < 0x80:
                        complete = True
                        break
                    mult <<= 7
                    if i - pos > 5:
                        raise BrokerError("malformed remaining length from broker")
                if not complete or i + rl > end:
                    stalled = True  # incomplete packet: keep it for the next read
                    break
                ptype = h >> 4
                if ptype == 3:
                    self.publishes += 1
                    qos = (h >> 1) & 3
                    tlen = (buf[i] << 8) | buf[i + 1]
                    po = i + 2 + tlen
                    if h & 1:
                        self.retained += 1
                    if qos:
                        self.ack_type = 0x40 if qos == 1 else 0x50  # PUBACK / PUBREC
                        a = bytes([self.ack_type, 2]) + bytes(buf[po : po + 2])
                        acks = bytearray(a) if acks is None else acks + a
                        self.pid_off = po - pos
                        po += 2
                    else:
                        self.pid_off = 0
                    self.prefix = bytes(buf[pos:i])
                    self.plen = i + rl - pos
                    if self.on_publish is not None:
                        self.on_publish(memoryview(buf)[po : i + rl], now)
                elif ptype == 6 and rl == 2:  # PUBREL -> PUBCOMP (QoS 2)
                    self.others += 1
                    a = b"\x70\x02" + bytes(buf[i : i + 2])
                    acks = bytearray(a) if acks is None else acks + a
                elif ptype == 14:
                    raise BrokerError("DISCONNECT from broker")
                else:
                    self.others += 1
                pos = i + rl
            if stalled:
                break
        if pos < end:
            self.left = bytes(buf[pos:end])
        else:
            self.left = b""
        return acks

    def read(self, buf: bytearray, mv: memoryview, now: int = 0) -> int:
        """One recv on the socket into buf (after the carried bytes); returns bytes read."""
        k = len(self.left)
        if k:
            buf[:k] = self.left
        n = self.sock.recv_into(mv[k:])
        if n == 0:
            self.closed = True
            return 0
        acks = self.process(buf, k + n, now)
        if acks:
            self.sock.sendall(acks)
            self.acks_sent += len(acks) // 4
        return n


# ---------------------------------------------------------------------------
# Child processes
# ---------------------------------------------------------------------------


def _wait_start(start_evt, t0_val, timeout: float) -> float:
    if not start_evt.wait(timeout):
        raise BrokerError("start signal not received")
    return t0_val.value


def _sleep_until(t: float) -> None:
    d = t - time.monotonic()
    if d > 0:
        time.sleep(d)


def publisher_proc(idx, host, port, p, q, start_evt, t0_val):
    """QoS 0 flood, QoS 1 windowed flood, or fixed-rate timestamped publishing."""
    try:
        sock = mqtt_connect(
            host, port, f"bench-pub-{os.getpid()}-{idx}", p["timeout"], ws_path=p.get("ws_path")
        )
        sock.settimeout(p["timeout"])
        q.put(("ready", idx))
        t0 = _wait_start(start_evt, t0_val, p["setup_timeout"])
        w0 = t0 + p["warmup"]
        w1 = w0 + p["duration"]
        mode = p["pub_mode"]
        payload = b"x" * p["payload"]
        _sleep_until(t0)
        sent = acked = 0
        c0 = c1 = None
        broken = False  # stream cut mid-packet: close without DISCONNECT
        if mode == "qos0":
            pkt = publish_packet(TOPIC, payload, 0)
            k = max(1, p["batch_bytes"] // len(pkt))
            batch = pkt * k
            # A slow broker may leave sendall blocked: allow it until 1 s past the
            # window, then stop (the batch cut short is not counted).
            sock.settimeout(w1 - time.monotonic() + 1.0)
            while True:
                now = time.monotonic()
                if c0 is None and now >= w0:
                    c0 = cpu_now()
                if now >= w1:
                    break
                try:
                    sock.sendall(batch)
                except TimeoutError:
                    broken = True
                    break
                sent += k
            c1 = cpu_now()
            acked = sent
        elif mode == "qos1":
            window = p["window"]
            one = publish_packet(TOPIC, payload, 1, 1)
            L = len(one)
            pid_at = len(one) - len(payload) - 2
            # one buffer with a PUBLISH for every packet id 1..65535, twice for wrap
            proto = bytearray(one * 65535)
            ids = bytearray(struct.pack(">65535H", *range(1, 65536)))
            proto[pid_at::L] = ids[0::2]
            proto[pid_at + 1 :: L] = ids[1::2]
            allp = bytes(proto + proto)
            nxt = 0  # index (0-based) of the next packet id to use
            inflight = 0
            left = b""
            buf = bytearray(1 << 16)

            def send(n):
                nonlocal nxt, inflight, sent
                sock.sendall(allp[nxt * L : (nxt + n) * L])
                nxt = (nxt + n) % 65535
                inflight += n
                sent += n

            # Wake up only once half the window has been acknowledged: one recv and
            # one sendall per window/2 messages instead of per PUBACK.
            lowat = 4 * max(1, window // 2)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, lowat)
            send(window)
            stopping = False
            deadline = w1 + p["drain"]
            while True:
                now = time.monotonic()
                if c0 is None and now >= w0:
                    c0 = cpu_now()
                if not stopping and now >= w1:
                    stopping = True
                    c1 = cpu_now()
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
                if stopping and (inflight == 0 or now >= deadline):
                    break
                n = sock.recv_into(buf)
                if n == 0:
                    raise BrokerError("connection closed by broker")
                data = left + bytes(buf[:n]) if left else bytes(buf[:n])
                m = len(data) // 4
                if data[0 : m * 4 : 4].count(0x40) != m:
                    raise BrokerError(f"unexpected packet to publisher: {data[:8].hex()}")
                left = data[m * 4 :]
                acked += m
                inflight -= m
                if not stopping and m:
                    send(m)
            if c1 is None:
                c1 = cpu_now()
        elif mode == "qos2":
            # PUBLISH(QoS 2) -> PUBREC -> PUBREL -> PUBCOMP; a window slot is free
            # again at PUBCOMP. "acked" counts PUBRECs (the broker owns the message).
            window = p["window"]
            one = publish_packet(TOPIC, payload, 2, 1)
            L = len(one)
            pid_at = L - len(payload) - 2
            proto = bytearray(one * 65535)
            ids = bytearray(struct.pack(">65535H", *range(1, 65536)))
            proto[pid_at::L] = ids[0::2]
            proto[pid_at + 1 :: L] = ids[1::2]
            allp = bytes(proto + proto)
            nxt = inflight = 0
            left = b""
            buf = bytearray(1 << 16)
            out = bytearray(allp[0 : window * L])
            nxt, inflight, sent = window % 65535, window, window
            sock.sendall(out)
            stopping = False
            deadline = w1 + p["drain"]
            while True:
                now = time.monotonic()
                if c0 is None and now >= w0:
                    c0 = cpu_now()
                if not stopping and now >= w1:
                    stopping = True
                    c1 = cpu_now()
                if stopping and (inflight == 0 or now >= deadline):
                    break
                n = sock.recv_into(buf)
                if n == 0:
                    raise BrokerError("connection closed by broker")
                data = left + bytes(buf[:n]) if left else bytes(buf[:n])
                m = len(data) // 4
                left = data[m * 4 :]
                rel = bytearray()
                done = 0
                for i in range(0, m * 4, 4):
                    t = data[i]
                    if t == 0x50:
                        rel += b"\x62\x02" + data[i + 2 : i + 4]
                    elif t == 0x70:
                        done += 1
                    else:
                        raise BrokerError(
                            f"unexpected packet to publisher: {data[i : i + 4].hex()}"
                        )
                acked += len(rel) // 4
                inflight -= done
                if not stopping and done:
                    rel += allp[nxt * L : (nxt + done) * L]
                    nxt = (nxt + done) % 65535
                    inflight += done
                    sent += done
                if rel:
                    sock.sendall(rel)
            if c1 is None:
                c1 = cpu_now()
        elif mode == "rate":
            rate = p["rate"]
            pqos = p.get("pub_qos", 0)
            head = publish_packet(TOPIC, b"\0" * p["payload"], pqos, 1)[: -p["payload"]]
            if pqos:
                head = head[:-2]  # the packet id goes after the topic, per message
            pad = b"x" * (p["payload"] - 16)
            interval = 1.0 / rate
            seq = 0
            clock = time.clock_gettime_ns
            MONO = time.CLOCK_MONOTONIC
            ackbuf = b""

            def read_acks(block: bool) -> None:
                nonlocal acked, ackbuf
                try:
                    data = sock.recv(1 << 16, 0 if block else socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    return
                if not data:
                    raise BrokerError("connection closed by broker")
                ackbuf += data
                m = len(ackbuf) // 4
                if ackbuf[0 : m * 4 : 4].count(0x40) != m:
                    raise BrokerError(f"unexpected packet to publisher: {ackbuf[:8].hex()}")
                acked += m
                ackbuf = ackbuf[m * 4 :]

            while True:
                now = time.monotonic()
                if c0 is None and now >= w0:
                    c0 = cpu_now()
                if now >= w1:
                    break
                due = int((now - t0) / interval) + 1
                if due > seq:
                    out = []
                    for _ in range(min(due - seq, 1000)):
                        if pqos:
                            out.append(
                                head + struct.pack(">Hqq", seq % 65535 + 1, clock(MONO), seq) + pad
                            )
                        else:
                            out.append(head + struct.pack(">qq", clock(MONO), seq) + pad)
                        seq += 1
                    sock.sendall(b"".join(out))
                if pqos:
                    read_acks(False)
                nxt = t0 + seq * interval
                d = nxt - time.monotonic()
                if d > 0:
                    time.sleep(d)
            c1 = cpu_now()
            sent = seq
            if pqos:
                deadline = time.monotonic() + p["drain"]
                while acked < sent and time.monotonic() < deadline:
                    read_acks(True)
            else:
                acked = seq
        else:
            raise ValueError(mode)
        try:
            if not broken:
                sock.settimeout(1.0)
                sock.sendall(DISCONNECT)
            sock.close()
        except OSError:
            pass
        q.put(
            (
                "result",
                idx,
                {"role": "pub", "sent": sent, "acked": acked, "cpu": (c1 or 0) - (c0 or c1 or 0)},
            )
        )
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        q.put(("error", idx, f"publisher: {type(exc).__name__}: {exc}"))


def subscriber_proc(idx, host, port, p, q, start_evt, t0_val):
    """Hold p['subs'] subscriptions; count PUBLISHes in the measurement window."""
    try:
        qos = p["sub_qos"]
        latency = p.get("latency", False)
        lat: list[int] = []
        w0 = w1 = 0.0
        w0_ns = [0]

        def on_publish(payload, now_ns):
            ts = int.from_bytes(payload[:8], "big")
            if ts >= w0_ns[0]:
                lat.append(now_ns - ts)

        streams = []
        sel = selectors.DefaultSelector()
        for j in range(p["subs"]):
            s = mqtt_connect(
                host,
                port,
                f"bench-sub-{os.getpid()}-{idx}-{j}",
                p["timeout"],
                rcvbuf=p["rcvbuf"],
                ws_path=p.get("ws_path"),
            )
            mqtt_subscribe(s, TOPIC, qos)
            s.setblocking(False)
            st = Stream(s, on_publish if latency else None)
            streams.append(st)
            sel.register(s, selectors.EVENT_READ, st)
        q.put(("ready", idx))
        t0 = _wait_start(start_evt, t0_val, p["setup_timeout"])
        w0 = t0 + p["warmup"]
        w1 = w0 + p["duration"]
        w0_ns[0] = int(w0 * 1e9)
        hard_end = w1 + p["drain"]
        buf = bytearray(p["recv_buffer"])
        mv = memoryview(buf)
        count0 = count1 = None
        c0 = c1 = None
        t_w0 = t_w1 = None
        last_data = time.monotonic()
        clock = time.clock_gettime_ns
        MONO = time.CLOCK_MONOTONIC
        open_streams = len(streams)
        # QoS 1 subscribers ack at once (the broker's in-flight window to us is
        # small); latency subscribers read at once.
        pause = 0.0 if (latency or qos) else p["sub_pause"]
        coalesce = p["coalesce_bytes"]
        reads = nbytes = 0
        reads0 = None
        while True:
            now = time.monotonic()
            if count0 is None and now >= w0:
                count0 = sum(s.publishes for s in streams)
                c0 = cpu_now()
                t_w0 = now
            if count1 is None and now >= w1:
                count1 = sum(s.publishes for s in streams)
                c1 = cpu_now()
                t_w1 = now
                reads0 = (reads, nbytes)
                if not p["drain_until_quiet"]:
                    break
            if count1 is not None:
                if now >= hard_end or now - last_data >= p["quiet"]:
                    break
            if open_streams == 0:
                raise BrokerError("all subscriber connections closed by broker")
            events = sel.select(0.05)
            if events:
                tns = clock(MONO) if latency else 0
                got = 0
                for key, _ in events:
                    st = key.data
                    try:
                        got += st.read(buf, mv, tns)
                        reads += 1
                    except (BlockingIOError, InterruptedError):
                        continue
                    if st.closed:
                        sel.unregister(st.sock)
                        open_streams -= 1
                nbytes += got
                last_data = time.monotonic()
                # Little data in this pass: let more arrive before the next one, so
                # each recv (and its Python overhead) carries many packets.
                if pause and got < coalesce:
                    time.sleep(pause)
        total = sum(s.publishes for s in streams)
        for s in streams:
            try:
                s.sock.setblocking(True)
                s.sock.settimeout(1)
                s.sock.sendall(DISCONNECT)
                s.sock.close()
            except OSError:
                pass
        res = {
            "role": "sub",
            "window_count": count1 - count0,
            "window_s": t_w1 - t_w0,
            "total": total,
            "cpu": c1 - c0,
            "others": sum(s.others for s in streams),
            "reads": reads0[0],
            "bytes": reads0[1],
        }
        if latency:
            res["lat_ns"] = lat
        q.put(("result", idx, res))
    except Exception as exc:  # noqa: BLE001
        q.put(("error", idx, f"subscriber: {type(exc).__name__}: {exc}"))


def retained_sub_proc(idx, host, port, p, q, start_evt, t0_val):
    """Connect p['subs'] clients; at the start signal each subscribes to the
    wildcard over p['retained'] retained topics; count retained PUBLISHes until
    every client has them all (or the deadline)."""
    try:
        n_ret = p["retained"]
        streams = []
        sel = selectors.DefaultSelector()
        for j in range(p["subs"]):
            s = mqtt_connect(
                host, port, f"bench-rsub-{os.getpid()}-{idx}-{j}", p["timeout"], rcvbuf=p["rcvbuf"]
            )
            s.setblocking(False)
            st = Stream(s)
            streams.append(st)
        q.put(("ready", idx))
        t0 = _wait_start(start_evt, t0_val, p["setup_timeout"])
        _sleep_until(t0)
        c0 = cpu_now()
        sub = subscribe_packet(RETAINED_FILTER, 0)
        for st in streams:
            st.sock.setblocking(True)
            st.sock.sendall(sub)
            st.sock.setblocking(False)
            sel.register(st.sock, selectors.EVENT_READ, st)
        buf = bytearray(p["recv_buffer"])
        mv = memoryview(buf)
        done_at: dict[int, float] = {}
        deadline = t0 + p["retained_timeout"]
        while len(done_at) < len(streams) and time.monotonic() < deadline:
            for key, _ in sel.select(0.05):
                st = key.data
                try:
                    st.read(buf, mv)
                except (BlockingIOError, InterruptedError):
                    continue
                if st.closed:
                    sel.unregister(st.sock)
                    done_at.setdefault(id(st), time.monotonic())
                elif st.publishes >= n_ret and id(st) not in done_at:
                    done_at[id(st)] = time.monotonic()
                    sel.unregister(st.sock)
        c1 = cpu_now()
        total = sum(min(st.publishes, n_ret) for st in streams)
        for st in streams:
            try:
                st.sock.setblocking(True)
                st.sock.settimeout(1)
                st.sock.sendall(DISCONNECT)
                st.sock.close()
            except OSError:
                pass
        end = max(done_at.values()) if len(done_at) == len(streams) else time.monotonic()
        q.put(
            (
                "result",
                idx,
                {
                    "role": "sub",
                    "total": total,
                    "complete": len(done_at) == len(streams),
                    "elapsed": end - t0,
                    "cpu": c1 - c0,
                    "expected": n_ret * len(streams),
                },
            )
        )
    except Exception as exc:  # noqa: BLE001
        q.put(("error", idx, f"retained subscriber: {type(exc).__name__}: {exc}"))


def set_retained(host: str, port: int, n: int, payload: int, timeout: float) -> float:
    """Publish n retained QoS 0 messages to fixed-width topics, then PINGREQ: the
    PINGRESP comes after the broker handled (stored) every one. Returns seconds."""
    sock = mqtt_connect(host, port, f"bench-retain-{os.getpid()}", timeout)
    try:
        t = time.monotonic()
        data = b"".join(
            publish_packet(f"{RETAINED_PREFIX}{i:06d}", b"r" * payload, 0) for i in range(n)
        )
        data = bytearray(data)
        # set the retain flag on every packet (they all have the same length)
        L = len(data) // n
        data[0::L] = b"\x31" * n
        sock.sendall(bytes(data) + b"\xc0\x00")
        # skip anything before the PINGRESP (nothing is expected)
        got = b""
        while not got.endswith(b"\xd0\x00"):
            chunk = sock.recv(4096)
            if not chunk:
                raise BrokerError("connection closed while setting retained messages")
            got += chunk
        sock.sendall(DISCONNECT)
        return time.monotonic() - t
    finally:
        sock.close()


RETAINED_PREFIX = "bench/r/"
RETAINED_FILTER = "bench/r/#"


def idle_proc(idx, host, port, p, q, start_evt, t0_val):
    """Open p['conns'] idle connections in batches, hold until told, then close."""
    socks = []
    try:
        n = p["conns"]
        batch = 100
        deadline = time.monotonic() + p["connect_timeout"]
        pid = os.getpid()
        while len(socks) < n:
            if time.monotonic() > deadline:
                raise BrokerError(f"only {len(socks)} of {n} connections in time")
            group = []
            for j in range(min(batch, n - len(socks))):
                s = socket.create_connection((host, port), timeout=p["timeout"])
                s.sendall(connect_packet(f"idle-{pid}-{idx}-{len(socks) + j}", 600))
                group.append(s)
            for s in group:
                hdr = _recv_exact(s, 4)
                if hdr[0] != 0x20 or hdr[3] != 0:
                    raise BrokerError(f"bad CONNACK {hdr.hex()} after {len(socks)} connections")
                socks.append(s)
        q.put(("ready", idx))
        # the parent measures RSS, then sets start_evt to let us go
        if not start_evt.wait(p["hold_timeout"]):
            raise BrokerError("release signal not received")
        q.put(("result", idx, {"role": "idle", "conns": len(socks)}))
    except Exception as exc:  # noqa: BLE001
        q.put(("error", idx, f"idle: {type(exc).__name__}: {exc} ({len(socks)} open)"))
    finally:
        for s in socks:
            try:
                s.close()
            except OSError:
                pass


# ---------------------------------------------------------------------------
# Scenarios (run in the parent; children do the I/O)
# ---------------------------------------------------------------------------

DEFAULTS = {
    "warmup": 1.0,
    "duration": 5.0,
    "payload": 64,
    "batch_bytes": 32 * 1024,
    "window": 32,
    "rate": 5000,
    "timeout": 5.0,
    "setup_timeout": 30.0,
    "drain": 5.0,
    "quiet": 1.0,
    "recv_buffer": 1 << 20,
    "rcvbuf": 4 * 1024 * 1024,
    "sub_pause": 0.005,
    "coalesce_bytes": 1024 * 1024,
    "publishers": 8,
    "fanout_subs": 100,
    "fanout_procs": 2,
    "idle_conns": 5000,
    "idle_procs": 1,
    "connect_timeout": 60.0,
    "hold_timeout": 60.0,
    "retained": 10000,
    "retained_subs": 10,
    "retained_procs": 2,
    "retained_timeout": 30.0,
    "rate_qos1": 20000,
}

SCENARIOS = [
    "fanin_qos0",
    "fanin_qos1",
    "fanin_qos2",
    "fanout_qos0",
    "latency",
    "latency_qos1",
    "retained",
    "ws_fanin_qos0",
    "idle_conns",
]


class ScenarioFailed(RuntimeError):
    pass


class _Group:
    """Spawned children sharing a result queue, a start event and a start time."""

    def __init__(self) -> None:
        self.ctx = mp.get_context("spawn")
        self.q = self.ctx.Queue()
        self.start_evt = self.ctx.Event()
        self.t0 = self.ctx.Value("d", 0.0, lock=False)
        self.procs: list = []

    def spawn(self, target, idx, host, port, p) -> None:
        pr = self.ctx.Process(
            target=target, args=(idx, host, port, p, self.q, self.start_evt, self.t0), daemon=True
        )
        pr.start()
        self.procs.append(pr)

    def collect(self, kind: str, n: int, timeout: float) -> dict:
        """Wait for n messages of a kind; raise ScenarioFailed on error or timeout."""
        got: dict = {}
        deadline = time.monotonic() + timeout
        while len(got) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ScenarioFailed(f"timeout waiting for {kind} ({len(got)}/{n})")
            try:
                msg = self.q.get(timeout=min(left, 0.5))
            except queue_mod.Empty:
                if kind == "ready" and all(not pr.is_alive() for pr in self.procs):
                    raise ScenarioFailed("load generator processes died") from None
                continue
            if msg[0] == "error":
                raise ScenarioFailed(msg[2])
            if msg[0] == kind:
                got[msg[1]] = msg[2] if len(msg) > 2 else True
        return got

    def close(self) -> None:
        self.start_evt.set()
        deadline = time.monotonic() + 5
        for pr in self.procs:
            pr.join(max(0.1, deadline - time.monotonic()))
        for pr in self.procs:
            if pr.is_alive():
                pr.kill()
                pr.join(2)
        self.q.close()
        self.q.cancel_join_thread()


def run_scenario(name: str, host: str, port: int, cfg: dict | None = None, broker=None) -> dict:
    """Run one scenario against host:port. ``broker`` (a bench.peers.Peer) is used
    for broker CPU and RSS. Returns metrics; raises ScenarioFailed."""
    p = dict(DEFAULTS)
    p.update(cfg or {})
    if name == "idle_conns":
        return _run_idle(host, port, p, broker)
    if name == "retained":
        return _run_retained(host, port, p, broker)
    if name.startswith("ws_"):
        if not p.get("ws_path"):
            raise ScenarioFailed("no WebSocket listener")
        name = name[3:]
    g = _Group()
    try:
        if name == "fanin_qos0":
            pubs = [dict(p, pub_mode="qos0")] * p["publishers"]
            subs = [dict(p, subs=1, sub_qos=0, drain_until_quiet=False)]
        elif name == "fanin_qos1":
            pubs = [dict(p, pub_mode="qos1")] * p["publishers"]
            subs = [dict(p, subs=1, sub_qos=1, drain_until_quiet=True)]
        elif name == "fanin_qos2":
            pubs = [dict(p, pub_mode="qos2")] * p["publishers"]
            subs = [dict(p, subs=1, sub_qos=2, drain_until_quiet=True)]
        elif name == "fanout_qos0":
            pubs = [dict(p, pub_mode="qos0")]
            k = max(1, min(p["fanout_procs"], p["fanout_subs"]))
            per = [p["fanout_subs"] // k + (1 if i < p["fanout_subs"] % k else 0) for i in range(k)]
            subs = [dict(p, subs=n, sub_qos=0, drain_until_quiet=False) for n in per]
        elif name == "latency":
            pubs = [dict(p, pub_mode="rate")]
            subs = [dict(p, subs=1, sub_qos=0, latency=True, drain_until_quiet=True, quiet=0.5)]
        elif name == "latency_qos1":
            p["rate"] = p["rate_qos1"]
            pubs = [dict(p, pub_mode="rate", pub_qos=1)]
            subs = [dict(p, subs=1, sub_qos=1, latency=True, drain_until_quiet=True, quiet=0.5)]
        else:
            raise ScenarioFailed(f"unknown scenario {name}")
        # subscribers first (indices 0..), publishers after
        for i, sp in enumerate(subs):
            g.spawn(subscriber_proc, i, host, port, sp)
        g.collect("ready", len(subs), p["setup_timeout"])
        for j, pp in enumerate(pubs):
            g.spawn(publisher_proc, len(subs) + j, host, port, pp)
        g.collect("ready", len(pubs), p["setup_timeout"])
        t0 = time.monotonic() + 0.2
        g.t0.value = t0
        g.start_evt.set()
        w0 = t0 + p["warmup"]
        w1 = w0 + p["duration"]
        _sleep_until(w0)
        b0 = broker.cpu_seconds() if broker else 0.0
        m0 = machine_busy()
        r0 = time.monotonic()
        _sleep_until(w1)
        b1 = broker.cpu_seconds() if broker else 0.0
        m1 = machine_busy()
        r1 = time.monotonic()
        rss = broker.rss() if broker else 0
        n = len(subs) + len(pubs)
        res = g.collect("result", n, p["duration"] + p["warmup"] + p["drain"] + 20)
    finally:
        g.close()
    subr = [res[i] for i in range(len(subs))]
    pubr = [res[len(subs) + j] for j in range(len(pubs))]
    window = max(r["window_s"] for r in subr)
    delivered = sum(r["window_count"] for r in subr)
    lg_cpu = sum(r["cpu"] for r in subr) + sum(r["cpu"] for r in pubr)
    ncpu = os.cpu_count() or 1
    out = {
        "window_s": round(window, 3),
        "rate": delivered / window if window > 0 else 0.0,
        "published": sum(r["sent"] for r in pubr),
        "loadgen_cpu_s": round(lg_cpu, 3),
        "loadgen_cores": round(lg_cpu / window, 3) if window else 0.0,
        "loadgen_share": round(lg_cpu / window / ncpu, 3) if window else 0.0,
        "sub_cpu_s": round(sum(r["cpu"] for r in subr), 3),
        "sub_reads": sum(r["reads"] for r in subr),
        "sub_bytes": sum(r["bytes"] for r in subr),
        "broker_cores": round((b1 - b0) / (r1 - r0), 3) if broker else None,
        "broker_rss": rss,
        # everything busy on the machine (broker, load generator, kernel, other
        # tenants): well above broker + load generator means a contended run
        "machine_busy_cores": round((m1[0] - m0[0]) / (r1 - r0), 3),
        "machine_steal_cores": round((m1[1] - m0[1]) / (r1 - r0), 3),
    }
    if name in ("fanin_qos1", "fanin_qos2", "latency_qos1"):
        acked = sum(r["acked"] for r in pubr)
        total = sum(r["total"] for r in subr)
        out.update(
            acked=acked,
            delivered_total=total,
            lost=max(0, acked - total),
            duplicates_or_extra=max(0, total - acked),
        )
    if name.startswith("latency"):
        lat = sorted(x for r in subr for x in r["lat_ns"])
        expected = p["rate"] * p["duration"]
        if not lat:
            raise ScenarioFailed("no message received in the window")

        def pct(v):
            return lat[min(len(lat) - 1, int(v / 100 * len(lat)))] / 1000.0

        out.update(
            p50_us=pct(50),
            p90_us=pct(90),
            p99_us=pct(99),
            p999_us=pct(99.9),
            max_us=lat[-1] / 1000.0,
            received=len(lat),
            expected=int(expected),
            rate_target=p["rate"],
        )
        if len(lat) < 0.9 * expected:
            out["note"] = f"received {len(lat)} of ~{int(expected)}: broker did not keep up"
    return out


def _run_retained(host: str, port: int, p: dict, broker) -> dict:
    n = p["retained"]
    try:
        set_s = set_retained(host, port, n, p["payload"], p["timeout"] + n / 1000)
    except (OSError, BrokerError) as exc:
        raise ScenarioFailed(f"setting {n} retained messages: {exc}") from None
    g = _Group()
    k = max(1, min(p["retained_procs"], p["retained_subs"]))
    per = [p["retained_subs"] // k + (1 if i < p["retained_subs"] % k else 0) for i in range(k)]
    try:
        for i, m in enumerate(per):
            g.spawn(retained_sub_proc, i, host, port, dict(p, subs=m))
        g.collect("ready", k, p["setup_timeout"])
        t0 = time.monotonic() + 0.2
        g.t0.value = t0
        b0 = broker.cpu_seconds() if broker else 0.0
        g.start_evt.set()
        res = g.collect("result", k, p["retained_timeout"] + 20)
        b1 = broker.cpu_seconds() if broker else 0.0
    finally:
        g.close()
    total = sum(r["total"] for r in res.values())
    expected = sum(r["expected"] for r in res.values())
    elapsed = max(r["elapsed"] for r in res.values())
    out = {
        "retained": n,
        "subscribers": p["retained_subs"],
        "set_s": round(set_s, 3),
        "received": total,
        "expected": expected,
        "complete": all(r["complete"] for r in res.values()),
        "time_s": round(elapsed, 3),
        "rate": total / elapsed if elapsed > 0 else 0.0,
        "loadgen_cpu_s": round(sum(r["cpu"] for r in res.values()), 3),
        "broker_cpu_s": round(b1 - b0, 3) if broker else None,
    }
    if not out["complete"]:
        out["note"] = f"received {total} of {expected} retained messages in {elapsed:.1f} s"
    return out


def _run_idle(host: str, port: int, p: dict, broker) -> dict:
    n = p["idle_conns"]
    k = max(1, p["idle_procs"])
    time.sleep(0.3)
    before = broker.rss() if broker else 0
    g = _Group()
    try:
        for i in range(k):
            g.spawn(idle_proc, i, host, port, dict(p, conns=n // k + (1 if i < n % k else 0)))
        t_start = time.monotonic()
        g.collect("ready", k, p["connect_timeout"] + p["setup_timeout"])
        t_conn = time.monotonic() - t_start
        time.sleep(1.0)
        after = broker.rss() if broker else 0
        alive = broker.alive() if broker else True
        g.start_evt.set()
        res = g.collect("result", k, 30)
    finally:
        g.close()
    conns = sum(r["conns"] for r in res.values())
    if not alive:
        raise ScenarioFailed("broker died while holding the connections")
    return {
        "conns": conns,
        "rss_before": before,
        "rss_after": after,
        "bytes_per_conn": (after - before) / conns if conns else 0.0,
        "connect_s": round(t_conn, 3),
        "connects_per_s": round(conns / t_conn, 1) if t_conn else 0.0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--scenario", choices=SCENARIOS, default="fanin_qos0")
    ap.add_argument("--duration", type=float, default=DEFAULTS["duration"])
    ap.add_argument("--publishers", type=int, default=DEFAULTS["publishers"])
    ap.add_argument("--fanout-procs", type=int, default=DEFAULTS["fanout_procs"])
    ap.add_argument("--batch-bytes", type=int, default=DEFAULTS["batch_bytes"])
    ap.add_argument("--idle-conns", type=int, default=DEFAULTS["idle_conns"])
    ap.add_argument(
        "--ws-path",
        default="/mqtt",
        help="WebSocket path for ws_* scenarios (--port is then the WS port)",
    )
    a = ap.parse_args()
    if a.host not in ("127.0.0.1", "::1", "localhost"):
        ap.error("only loopback addresses")
    from peers import raise_fd_limit  # bench/ is on sys.path when run as a script

    raise_fd_limit()
    cfg = {
        "duration": a.duration,
        "publishers": a.publishers,
        "fanout_procs": a.fanout_procs,
        "batch_bytes": a.batch_bytes,
        "idle_conns": a.idle_conns,
        # Only the ws_* scenarios run over WebSocket; the others are plain TCP.
        "ws_path": a.ws_path if a.scenario.startswith("ws_") else None,
    }
    try:
        print(run_scenario(a.scenario, a.host, a.port, cfg))
    except ScenarioFailed as exc:
        print(f"failed: {exc}")


if __name__ == "__main__":
    main()
