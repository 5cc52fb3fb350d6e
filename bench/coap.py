"""CoAP benchmark: CoAP beside MQTT into the same broker, same machine, same run.

    uv run python bench/coap.py [--messages 20000] [--size 64] [--latency 2000]

The broker runs as ``fluxmq run --plugins coap,mqtt`` in a subprocess on free
loopback ports (memory storage, no HTTP listener). Clients are raw sockets with
pre-encoded datagrams and packets (``fluxmq_coap.testing.encode`` and a few lines of
MQTT 3.1.1), so the Python client libraries are not what is measured.

* ``coap NON publish -> mqtt sub``: NON POSTs to ``/ps/bench/in`` (with No-Response
  for 2.xx, as a fire-and-forget sensor sends them) at most
  ``--window`` ahead of what the MQTT subscriber has received (UDP has no flow
  control: the window keeps the socket buffers from dropping); msgs/s until the
  subscriber has all N.
* ``mqtt qos0 publish -> mqtt sub``: the same through MQTT (the reference).
* ``mqtt publish -> coap observe``: one CoAP observer of ``bench/out/#`` (it ACKs the
  CON notifications); MQTT publishes in windows; notifications/s received.
* ``coap CON publish round trip``: sequential CON POSTs, each waiting for its ACK;
  p50 / p99 latency.

Prints a table and writes ``bench/results/coap.json``. Every loop is bounded in
count and time; only loopback addresses are used.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from fluxmq_coap.testing import ACK, CON, NON, decode, encode, path_options

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "coap.json"
START_TIMEOUT = 60.0
RUN_TIMEOUT = 60.0
POST = 2


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- a minimal MQTT 3.1.1 client over a raw socket --------------------------------------


def _remaining(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mqtt_connect(port: int, client_id: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=RUN_TIMEOUT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid
    s.sendall(b"\x10" + _remaining(len(body)) + body)
    assert s.recv(4)[:2] == b"\x20\x02", "no CONNACK"
    return s


def mqtt_publish_packet(topic: str, payload: bytes) -> bytes:
    t = topic.encode()
    body = len(t).to_bytes(2, "big") + t + payload
    return b"\x30" + _remaining(len(body)) + body


class MqttCounter(threading.Thread):
    """Subscribes to ``topic_filter`` and counts PUBLISH packets."""

    def __init__(self, port: int, topic_filter: str) -> None:
        super().__init__(daemon=True)
        self.sock = mqtt_connect(port, f"bench-sub-{os.getpid()}")
        f = topic_filter.encode()
        body = b"\x00\x01" + len(f).to_bytes(2, "big") + f + b"\x00"
        self.sock.sendall(b"\x82" + _remaining(len(body)) + body)
        self.count = 0
        self._buf = b""
        self._suback = threading.Event()
        self.start()
        assert self._suback.wait(RUN_TIMEOUT), "no SUBACK"

    def run(self) -> None:
        buf = b""
        try:
            while True:
                data = self.sock.recv(1 << 20)
                if not data:
                    return
                buf += data
                i = 0
                while True:
                    if len(buf) - i < 2:
                        break
                    mult, n, j = 1, 0, i + 1
                    while j < len(buf):
                        b = buf[j]
                        n += (b & 0x7F) * mult
                        mult *= 128
                        j += 1
                        if not b & 0x80:
                            break
                    else:
                        break
                    if len(buf) - j < n:
                        break
                    kind = buf[i] >> 4
                    if kind == 3:
                        self.count += 1
                    elif kind == 9:
                        self._suback.set()
                    i = j + n
                buf = buf[i:]
        except OSError:
            return

    def wait_for(self, n: int, deadline: float) -> None:
        while self.count < n and time.monotonic() < deadline:
            time.sleep(0.0005)


# --- the broker --------------------------------------------------------------------------


class Broker:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.coap_port = free_port(socket.SOCK_DGRAM)
        self.mqtt_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = dict(
            os.environ,
            FLUXMQ_COAP__BIND=f"127.0.0.1:{self.coap_port}",
            FLUXMQ_MQTT__TCP=f"127.0.0.1:{self.mqtt_port}",
            FLUXMQ_MQTT__WEBSOCKET="",
            FLUXMQ_HTTP__BIND="",
            FLUXMQ_STORAGE__DRIVER="memory",
        )
        ready = self.work / "ready.json"
        script = Path(sys.executable).parent / "fluxmq"
        cmd = [str(script)] if script.exists() else [sys.executable, "-m", "fluxmq_core.cli"]
        self.log = open(self.work / "fluxmq.log", "ab")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [*cmd, "run", "--plugins", "coap,mqtt", "--data-dir", str(self.work / "data")]
            + ["--ready-file", str(ready), "--log-level", "warning"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"fluxmq did not start; see {self.work / 'fluxmq.log'}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


# --- scenarios ---------------------------------------------------------------------------


def coap_non_publish(b: Broker, n: int, size: int, window: int) -> dict[str, Any]:
    sub = MqttCounter(b.mqtt_port, "bench/in")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    sock.connect(("127.0.0.1", b.coap_port))
    # No-Response: 2.xx (RFC 7967): fire-and-forget, as a sensor publishing NON would.
    opts = path_options("/ps/bench/in") + [(258, b"\x02")]
    payload = b"x" * size
    # Each request has its own token, as real clients do (a request reusing a token
    # from the same endpoint replaces the previous one). Message ids wrap at 65536: the exchange lifetime dedup would drop a repeated id
    # from the same endpoint, so at most 65536 distinct ids per run (n is capped).
    datagrams = [
        encode(NON, POST, i & 0xFFFF, i.to_bytes(4, "big"), opts, payload) for i in range(n)
    ]
    stop = threading.Event()

    def drain() -> None:  # NON responses to NON requests: read and drop
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                sock.recv(2048)
            except OSError:
                continue

    t = threading.Thread(target=drain, daemon=True)
    t.start()
    deadline = time.monotonic() + RUN_TIMEOUT
    start = time.perf_counter()
    sent = 0
    last_count, last_change = 0, time.monotonic()
    while sent < n and time.monotonic() < deadline:
        count = sub.count
        if count != last_count:
            last_count, last_change = count, time.monotonic()
        elif time.monotonic() - last_change > 0.2:  # lost datagrams: stop waiting for them
            last_change = time.monotonic()
            window += sent - count
        while sent < n and sent - sub.count < window:
            sock.send(datagrams[sent])
            sent += 1
        time.sleep(0.0002)
    sub.wait_for(n, min(deadline, time.monotonic() + 1.0))
    elapsed = time.perf_counter() - start
    stop.set()
    t.join(1)
    got = sub.count
    sub.sock.close()
    sock.close()
    return {"messages": n, "received": got, "seconds": elapsed, "rate": got / elapsed}


def mqtt_publish(b: Broker, n: int, size: int, window: int) -> dict[str, Any]:
    sub = MqttCounter(b.mqtt_port, "bench/mq")
    pub = mqtt_connect(b.mqtt_port, f"bench-pub-{os.getpid()}")
    packet = mqtt_publish_packet("bench/mq", b"x" * size)
    deadline = time.monotonic() + RUN_TIMEOUT
    start = time.perf_counter()
    sent = 0
    while sent < n and time.monotonic() < deadline:
        k = min(n - sent, max(0, window - (sent - sub.count)))
        if k:
            pub.sendall(packet * k)
            sent += k
        else:
            time.sleep(0.0002)
    sub.wait_for(n, deadline)
    elapsed = time.perf_counter() - start
    got = sub.count
    sub.sock.close()
    pub.close()
    return {"messages": n, "received": got, "seconds": elapsed, "rate": got / elapsed}


def observe_out(b: Broker, n: int, size: int, window: int) -> dict[str, Any]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    sock.connect(("127.0.0.1", b.coap_port))
    sock.settimeout(5)
    sock.send(encode(CON, 1, 1, b"ob", [(6, b"")] + path_options("/ps/bench/out/#")))
    while decode(sock.recv(2048))["mid"] != 1:
        pass
    count = 0
    stop = threading.Event()

    def receive() -> None:
        nonlocal count
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                data = sock.recv(4096)
            except OSError:
                continue
            m = decode(data)
            if m["token"] == b"ob" and m["code"] == 0x45:
                count += 1
                if m["mtype"] == CON:
                    sock.send(encode(ACK, 0, m["mid"]))

    t = threading.Thread(target=receive, daemon=True)
    t.start()
    pub = mqtt_connect(b.mqtt_port, f"bench-opub-{os.getpid()}")
    packet = mqtt_publish_packet("bench/out/t", b"x" * size)
    deadline = time.monotonic() + RUN_TIMEOUT
    start = time.perf_counter()
    sent = 0
    last_count, last_change = 0, time.monotonic()
    while sent < n and time.monotonic() < deadline:
        if count != last_count:
            last_count, last_change = count, time.monotonic()
        elif time.monotonic() - last_change > 0.2:  # dropped by a slow observer's queue
            last_change = time.monotonic()
            window += sent - count
        k = min(n - sent, max(0, window - (sent - count)))
        if k:
            pub.sendall(packet * k)
            sent += k
        else:
            time.sleep(0.0002)
    end = min(deadline, time.monotonic() + 1.0)
    while count < n and time.monotonic() < end:
        time.sleep(0.0005)
    elapsed = time.perf_counter() - start
    stop.set()
    t.join(1)
    pub.close()
    sock.close()
    return {"messages": n, "received": count, "seconds": elapsed, "rate": count / elapsed}


def con_latency(b: Broker, n: int, size: int) -> dict[str, Any]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(("127.0.0.1", b.coap_port))
    sock.settimeout(5)
    opts = path_options("/ps/bench/lat?qos=1")
    payload = b"x" * size
    samples = []
    deadline = time.monotonic() + RUN_TIMEOUT
    for i in range(n):
        if time.monotonic() > deadline:
            break
        mid = (0x8000 + i) & 0xFFFF
        datagram = encode(CON, POST, mid, i.to_bytes(4, "big"), opts, payload)
        t0 = time.perf_counter()
        sock.send(datagram)
        while True:
            m = decode(sock.recv(2048))
            if m["mid"] == mid and m["mtype"] == ACK:
                break
        samples.append((time.perf_counter() - t0) * 1000)
    sock.close()
    samples.sort()
    return {
        "requests": len(samples),
        "p50_ms": statistics.median(samples),
        "p99_ms": samples[min(len(samples) - 1, int(len(samples) * 0.99))],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--size", type=int, default=64)
    # In flight between sender and subscriber; small enough for the default UDP
    # receive buffer (each datagram costs ~1 KiB of it, whatever its size).
    ap.add_argument("--window", type=int, default=100)
    ap.add_argument("--latency", type=int, default=2000)
    args = ap.parse_args()
    n = min(args.messages, 65536)
    with tempfile.TemporaryDirectory(prefix="fluxmq-bench-coap-") as tmp:
        broker = Broker(Path(tmp))
        broker.start()
        try:
            results = {
                "coap NON publish -> mqtt sub": coap_non_publish(broker, n, args.size, args.window),
                "mqtt qos0 publish -> mqtt sub": mqtt_publish(broker, n, args.size, args.window),
                "mqtt publish -> coap observe": observe_out(broker, n, args.size, args.window),
                "coap CON publish round trip": con_latency(broker, args.latency, args.size),
            }
        finally:
            broker.stop()
    print(f"\n{'scenario':34} {'msgs':>7} {'recv':>7} {'msgs/s':>9}  latency")
    for name, r in results.items():
        if "rate" in r:
            print(f"{name:34} {r['messages']:>7} {r['received']:>7} {r['rate']:>9.0f}")
        else:
            print(
                f"{name:34} {r['requests']:>7} {'':>7} {'':>9}  "
                f"p50 {r['p50_ms']:.3f} ms, p99 {r['p99_ms']:.3f} ms"
            )
    out = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "params": {"messages": n, "size": args.size, "window": args.window},
        "results": results,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {RESULTS.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
