"""Queue throughput through MQTT: publish to ``$queue/bench/...`` and consume in one
consumer group, end to end, against ``fluxmq run --plugins mqtt``.

Publishers are raw-socket MQTT 3.1.1 clients keeping a window of QoS 1 PUBLISHes in
flight (a PUBACK means the append is durable under the queue's ``durability``);
consumers are raw-socket MQTT 5.0 clients subscribed to ``$queue/bench/#`` at QoS 1
with ``consumer-group = bench`` (so they share the work), each PUBACKing what it
receives (that acknowledges the queue delivery). Every client is its own process.
The figure is messages consumed per second from the first PUBLISH to the last
delivery; the publish (acknowledged append) rate is shown beside it.

Scenarios: ``durable`` (a classic queue on the default badgerlike QueueLog,
``durability = "sync"``: PUBACK after the group-commit fsync, ``fsync = "batch"``)
and ``ephemeral`` (the in-memory queue a publish to an unknown name creates).

Mosquitto (and MQTT brokers in general) have no queues: there is no peer to measure
beside FluxMQ here. ``bench/run.py`` runs the durable case as its ``queue_durable``
scenario (the other peers' cells say "n/a: no queues").

Every wait has a deadline; loopback only. Writes ``bench/results/queue_mqtt.json``.
``python bench/queue_mqtt.py [--messages N] [--publishers P] [--consumers C] [--repeat R]
[--scenarios durable,ephemeral]``: medians of R rounds (default 3), the consumed rate's
[min-max], and the broker's CPU time per consumed message (user + system, from
``/proc``), the figure the machine's other load disturbs least.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEADLINE = 120.0
PAYLOAD = b"x" * 64


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _str(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def _connect(port: int, client_id: str, v5: bool) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if v5:  # properties: Receive Maximum 1000
        var = _str("MQTT") + bytes([5, 0x02]) + struct.pack(">H", 600) + b"\x03\x21\x03\xe8"
    else:
        var = _str("MQTT") + bytes([4, 0x02]) + struct.pack(">H", 600)
    body = var + _str(client_id)
    sock.sendall(b"\x10" + _varint(len(body)) + body)
    head = sock.recv(2)
    rest = _recv_exact(sock, head[1])
    if head[0] != 0x20 or rest[1] != 0:
        raise RuntimeError(f"CONNACK refused: {(head + rest).hex()}")
    return sock


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise RuntimeError("connection closed")
        out += chunk
    return out


def publisher(idx: int, port: int, count: int, window: int, start: mp.Event, out: mp.Queue) -> None:
    sock = _connect(port, f"qpub-{idx}", v5=False)
    topic = _str(f"$queue/bench/k{idx}")
    packets = [
        b"\x32" + _varint(len(topic) + 2 + len(PAYLOAD)) + topic + struct.pack(">H", pid) + PAYLOAD
        for pid in range(1, 65536)
    ]
    start.wait(30)
    t0 = time.monotonic()
    sent = acked = 0
    buf = b""
    sock.settimeout(10)
    while acked < count:
        if time.monotonic() - t0 > DEADLINE:
            raise RuntimeError("publisher deadline")
        n = min(window - (sent - acked), count - sent)
        if n > 0:
            sock.sendall(b"".join(packets[(sent + i) % 65535] for i in range(n)))
            sent += n
        data = sock.recv(65536)
        if not data:
            raise RuntimeError("broker closed the publisher")
        buf += data
        k = len(buf) // 4
        for i in range(k):
            if buf[4 * i] != 0x40:
                raise RuntimeError(f"unexpected packet {buf[4 * i : 4 * i + 4].hex()}")
        acked += k
        buf = buf[4 * k :]
    out.put(("pub", idx, t0, time.monotonic(), acked))
    sock.close()


def consumer(
    idx: int, port: int, counter: mp.Value, ready: mp.Queue, stop: mp.Event, out: mp.Queue
) -> None:
    sock = _connect(port, f"qcon-{idx}", v5=True)
    props = b"\x26" + _str("consumer-group") + _str("bench")
    body = struct.pack(">H", 1) + _varint(len(props)) + props + _str("$queue/bench/#") + b"\x01"
    sock.sendall(b"\x82" + _varint(len(body)) + body)
    head = _recv_exact(sock, 2)
    _recv_exact(sock, head[1])
    ready.put(idx)
    sock.settimeout(0.5)
    got = 0
    first = last = 0.0
    buf = bytearray()
    deadline = time.monotonic() + DEADLINE
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            data = sock.recv(1 << 16)
        except TimeoutError:
            continue
        if not data:
            break
        buf += data
        acks = []
        pos = 0
        while True:
            if len(buf) - pos < 2:
                break
            mult, length, j = 1, 0, pos + 1
            while True:
                if j >= len(buf):
                    length = -1
                    break
                b = buf[j]
                length += (b & 0x7F) * mult
                mult *= 128
                j += 1
                if not b & 0x80:
                    break
            if length < 0 or j + length > len(buf):
                break
            if buf[pos] & 0xF0 == 0x30:
                tlen = (buf[j] << 8) | buf[j + 1]
                if buf[pos] & 0x06:
                    acks.append(b"\x40\x02" + bytes(buf[j + 2 + tlen : j + 4 + tlen]))
                got += 1
            pos = j + length
        del buf[:pos]
        if acks:
            sock.sendall(b"".join(acks))
            with counter.get_lock():
                counter.value += len(acks)
            now = time.monotonic()
            first = first or now
            last = now
    out.put(("con", idx, first, last, got))
    sock.close()


def start_broker(workdir: Path, config: str) -> tuple[subprocess.Popen, int, Path]:
    cfg = workdir / "fluxmq.toml"
    cfg.write_text(config)
    ready = workdir / "ready.json"
    script = Path(sys.executable).parent / "fluxmq"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "fluxmq_core.cli"]
    env = dict(
        os.environ, FLUXMQ_MQTT__TCP="127.0.0.1:0", FLUXMQ_HTTP__BIND="", FLUXMQ_MQTT__WEBSOCKET=""
    )
    log = open(workdir / "broker.log", "wb")
    proc = subprocess.Popen(
        cmd
        + [
            "run",
            "--plugins",
            "mqtt",
            "--config",
            str(cfg),
            "--data-dir",
            str(workdir / "data"),
            "--ready-file",
            str(ready),
            "--log-level",
            "warning",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"broker exited: {(workdir / 'broker.log').read_text()}")
        try:
            port = int(json.loads(ready.read_text())["mqtt.tcp"][1])
            return proc, port, workdir
        except (OSError, ValueError, KeyError):
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("broker not ready")


def broker_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far; 0 when unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def run(name: str, config: str, n: int, pubs: int, cons: int, window: int) -> dict:
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="fluxmq-qbench-") as tmp:
        proc, port, _ = start_broker(Path(tmp), config)
        cpu0 = broker_cpu(proc.pid)
        try:
            out, ready, start, stop = ctx.Queue(), ctx.Queue(), ctx.Event(), ctx.Event()
            counter = ctx.Value("q", 0)
            procs = [
                ctx.Process(target=consumer, args=(i, port, counter, ready, stop, out))
                for i in range(cons)
            ]
            for p in procs:
                p.start()
            for _ in range(cons):
                ready.get(timeout=30)
            per = n // pubs
            pp = [
                ctx.Process(target=publisher, args=(i, port, per, window, start, out))
                for i in range(pubs)
            ]
            for p in pp:
                p.start()
            time.sleep(1.0)  # let the publishers connect and build their packets
            start.set()
            results = []
            for _ in range(pubs):
                results.append(out.get(timeout=DEADLINE + 10))
            acked_total = sum(r[4] for r in results)
            drain_deadline = time.monotonic() + 60  # bounded wait for the consumers
            while counter.value < acked_total and time.monotonic() < drain_deadline:
                time.sleep(0.05)
            consumed_results = []
            stop.set()
            for _ in range(cons):
                consumed_results.append(out.get(timeout=30))
            for p in pp + procs:
                p.join(10)
            cpu_s = broker_cpu(proc.pid) - cpu0
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
    t0 = min(r[2] for r in results)
    pub_end = max(r[3] for r in results)
    acked = sum(r[4] for r in results)
    consumed = sum(r[4] for r in consumed_results)
    con_end = max(r[3] for r in consumed_results if r[4]) if consumed else pub_end
    return {
        "scenario": name,
        "messages": acked,
        "consumed": consumed,
        "publishers": pubs,
        "consumers": cons,
        "window": window,
        "payload": len(PAYLOAD),
        "publish_per_s": round(acked / max(1e-9, pub_end - t0)),
        "consume_per_s": round(consumed / max(1e-9, con_end - t0)),
        "seconds": round(con_end - t0, 3),
        "broker_cpu_us_per_msg": round(cpu_s / max(1, consumed) * 1e6, 1),
    }


DURABLE = """
[queues.bench]
type = "classic"
durability = "sync"
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--publishers", type=int, default=4)
    ap.add_argument("--consumers", type=int, default=2)
    ap.add_argument("--window", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3, help="rounds (default 3); medians shown")
    ap.add_argument(
        "--scenarios", default="durable,ephemeral", help="comma-separated: durable, ephemeral"
    )
    args = ap.parse_args()
    configs = {
        "durable": ("durable (badgerlike, sync)", DURABLE),
        "ephemeral": ("ephemeral (memory)", ""),
    }
    chosen = [c.strip() for c in args.scenarios.split(",") if c.strip()]
    bad = [c for c in chosen if c not in configs]
    if bad:
        ap.error(f"unknown scenario(s): {', '.join(bad)}")
    runs: dict[str, list[dict]] = {}
    for _ in range(args.repeat):
        for key in chosen:
            label, cfg = configs[key]
            r = run(label, cfg, args.messages, args.publishers, args.consumers, args.window)
            print(
                f"{label}: consumed {r['consume_per_s']}/s, lost {r['messages'] - r['consumed']}, "
                f"broker {r['broker_cpu_us_per_msg']} us/msg",
                file=sys.stderr,
                flush=True,
            )
            runs.setdefault(key, []).append(r)
    rows = []
    for key in chosen:
        rs = runs[key]
        row = dict(rs[0])
        for k in ("publish_per_s", "consume_per_s", "seconds", "broker_cpu_us_per_msg"):
            row[k] = statistics.median(r[k] for r in rs)
        row["consume_range"] = [
            min(r["consume_per_s"] for r in rs),
            max(r["consume_per_s"] for r in rs),
        ]
        row["lost_max"] = max(r["messages"] - r["consumed"] for r in rs)
        row["rounds"] = rs
        rows.append(row)
    head = (
        f"| {'scenario':<28} | {'messages':>8} | {'lost (max)':>10} | {'publish/s':>9} | "
        f"{'consume/s [min-max]':>21} | {'broker us/msg':>13} |"
    )
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for r in rows:
        lo, hi = r["consume_range"]
        consumed = f"{r['consume_per_s']:,.0f} [{lo:,}-{hi:,}]"
        print(
            f"| {r['scenario']:<28} | {r['messages']:>8} | {r['lost_max']:>10} | "
            f"{r['publish_per_s']:>9,.0f} | {consumed:>21} | {r['broker_cpu_us_per_msg']:>13} |"
        )
    print("Mosquitto has no queues: FluxMQ only.")
    result = {
        "benchmark": "queue_mqtt",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "note": "Mosquitto has no queues; FluxMQ only.",
        "repeat": args.repeat,
        "loadavg_after": os.getloadavg(),
        "results": rows,
    }
    out = HERE / "results" / "queue_mqtt.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
