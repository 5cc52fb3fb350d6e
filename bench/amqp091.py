"""AMQP 0.9.1 benchmark: FluxMQ beside RabbitMQ, same client, same machine, same run.

    uv run python bench/amqp091.py [--messages 20000] [--size 100] [--repeat 3] [--no-rabbitmq]

Each broker runs as a subprocess on a free loopback port: FluxMQ as
``fluxmq run --plugins amqp091`` on a fresh data directory (durable ``badgerlike``
storage when installed), RabbitMQ from Debian's ``rabbitmq-server`` (installed with
apt when missing and we are root) with a temporary ``RABBITMQ_MNESIA_BASE`` /
``RABBITMQ_LOG_BASE``, its own node name, ``RABBITMQ_NODE_PORT``, distribution
and epmd ports, stopped afterwards.

The client is a small raw-socket AMQP client built on this plugin's codec and pamqp:
frames are encoded once and written in large batches, and the consumer cuts the
delivery frames by hand (only the delivery tag is read), so the client is not what is
measured. ``--repeat`` rounds (default 3) interleave the brokers; the table shows
medians with [min-max] and each broker's CPU time per message (its process tree's
user + system time from ``/proc``, the figure other load on the machine disturbs
least). Scenarios, persistent 100-byte messages to a durable queue:

* ``publish``: N publishes, then queue.declare passive round trips until the
  queue counts all N (RabbitMQ enqueues asynchronously); msgs/s over that time.
* ``publish+confirms``: confirm.select, at most 1000 unconfirmed, until all acked.
* ``consume``: N messages already queued, basic.qos 1000, basic.consume with
  manual acks (``multiple`` every 100), until all delivered.
* ``consume no-ack``: the same with ``no_ack``.

Prints a table and writes ``bench/results/amqp091.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fluxmq_amqp091.codec import (
    PROTOCOL_HEADER,
    FrameReader,
    Method,
    encode_content,
    encode_properties,
)
from pamqp import commands
from pamqp import frame as pframe

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "amqp091.json"
START_TIMEOUT = 60.0
IO_TIMEOUT = 60.0
RABBIT_BIN = "/usr/lib/rabbitmq/bin/rabbitmq-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with code {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} not listening after {timeout}s")


# --- a raw client ----------------------------------------------------------------------


class Client:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = FrameReader(frame_max=0)
        self.reader.expect_header = False
        self.sock.sendall(PROTOCOL_HEADER)
        self.expect(commands.Connection.Start)
        self.send(
            0,
            commands.Connection.StartOk(
                client_properties={"product": "fluxmq-bench"},
                mechanism="PLAIN",
                response="\0guest\0guest",
            ),
        )
        tune = self.expect(commands.Connection.Tune)
        self.frame_max = tune.frame_max or 131072
        self.send(
            0,
            commands.Connection.TuneOk(
                channel_max=tune.channel_max, frame_max=self.frame_max, heartbeat=0
            ),
        )
        self.send(0, commands.Connection.Open(virtual_host="/"))
        self.expect(commands.Connection.OpenOk)
        self.send(1, commands.Channel.Open())
        self.expect(commands.Channel.OpenOk)

    def send(self, ch: int, method) -> None:
        self.sock.sendall(pframe.marshal(method, ch))

    def frames(self):
        while True:
            f = self.reader.next_frame()
            if f is not None:
                yield f
                continue
            data = self.sock.recv(1 << 20)
            if not data:
                raise EOFError("broker closed the connection")
            self.reader.feed(data)

    def expect(self, kind):
        for f in self.frames():
            if isinstance(f, Method):
                if isinstance(f.method, kind):
                    return f.method
                if isinstance(f.method, (commands.Connection.Close, commands.Channel.Close)):
                    raise RuntimeError(f"closed by broker: {f.method}")

    def close(self) -> None:
        try:
            self.send(
                0,
                commands.Connection.Close(
                    reply_code=200, reply_text="bye", class_id=0, method_id=0
                ),
            )
        except OSError:
            pass
        self.sock.close()


def publish_frames(queue: str, body: bytes, frame_max: int) -> bytes:
    props = encode_properties(commands.Basic.Properties(delivery_mode=2))
    method = pframe.marshal(commands.Basic.Publish(exchange="", routing_key=queue), 1)
    return encode_content(1, method, props, body, frame_max)


def declare(c: Client, queue: str, passive: bool = False) -> int:
    c.send(1, commands.Queue.Declare(queue=queue, durable=True, passive=passive))
    return c.expect(commands.Queue.DeclareOk).message_count


def run_publish(port: int, queue: str, n: int, body: bytes, confirms: bool) -> float:
    c = Client(port)
    declare(c, queue)
    one = publish_frames(queue, body, c.frame_max)
    batch = 200
    t0 = time.perf_counter()
    if not confirms:
        chunk = one * batch
        sent = 0
        while sent < n:
            k = min(batch, n - sent)
            c.sock.sendall(chunk if k == batch else one * k)
            sent += k
        # RabbitMQ enqueues asynchronously: poll (bounded) until every message counts
        got = declare(c, queue, passive=True)
        deadline = time.monotonic() + IO_TIMEOUT
        while got < n and time.monotonic() < deadline:
            time.sleep(0.001)
            got = declare(c, queue, passive=True)
    else:
        c.send(1, commands.Confirm.Select())
        c.expect(commands.Confirm.SelectOk)
        window = 1000
        sent = acked = 0
        it = c.frames()
        while acked < n:
            while sent < n and sent - acked < window:
                k = min(batch, n - sent, window - (sent - acked))
                c.sock.sendall(one * k)
                sent += k
            f = next(it)
            if isinstance(f, Method):
                m = f.method
                if isinstance(m, commands.Basic.Ack):
                    acked = m.delivery_tag if m.multiple else max(acked, m.delivery_tag)
                elif isinstance(m, commands.Basic.Nack):
                    raise RuntimeError("nacked publish")
        got = n
    dt = time.perf_counter() - t0
    c.close()
    if got < n:
        raise RuntimeError(f"only {got} of {n} messages queued")
    return n / dt


_FRAME_HEAD = struct.Struct(">BHI")
_METHOD_IDS = struct.Struct(">HH")
_TAG = struct.Struct(">Q")


def run_consume(port: int, queue: str, n: int, no_ack: bool) -> float:
    """Consume ``n`` deliveries. The frames are cut by hand: a ``basic.deliver`` is
    recognised by its class and method ids and only its delivery tag is read, and
    content frames are skipped by size, so the client spends a few steps per message
    (decoding each delivery with pamqp cost about as much as the broker's work and
    made the client the bound); any other method is decoded with pamqp."""
    c = Client(port)
    c.send(1, commands.Basic.Qos(prefetch_count=0 if no_ack else 1000))
    c.expect(commands.Basic.QosOk)
    t0 = time.perf_counter()
    c.send(1, commands.Basic.Consume(queue=queue, consumer_tag="bench", no_ack=no_ack))
    got = 0
    last_tag = 0
    acked = 0
    buf = bytes(c.reader._buf[c.reader._pos :])  # anything read after basic.qos-ok
    ack = b""
    if not no_ack:  # multiple acks of 100 at a time, the tag filled in when sent
        ack = pframe.marshal(commands.Basic.Ack(delivery_tag=0, multiple=True), 1)
    head, ids, tag_of = _FRAME_HEAD.unpack_from, _METHOD_IDS.unpack_from, _TAG.unpack_from
    sock = c.sock
    while got < n:
        data = sock.recv(1 << 20)
        if not data:
            raise EOFError("broker closed the connection")
        buf = buf + data if buf else data
        pos, end = 0, len(buf)
        while end - pos >= 7:
            ftype, _ch, size = head(buf, pos)
            nxt = pos + 8 + size
            if nxt > end:
                break
            if ftype == 1:
                if ids(buf, pos + 7) == (60, 60):
                    got += 1
                    last_tag = tag_of(buf, pos + 12 + buf[pos + 11])[0]
                    if ack and got % 100 == 0:
                        sock.sendall(ack[:11] + _TAG.pack(last_tag) + ack[19:])
                        acked = last_tag
                else:
                    method = pframe.unmarshal(bytes(buf[pos:nxt]))[2]
                    if isinstance(method, (commands.Connection.Close, commands.Channel.Close)):
                        raise RuntimeError(f"closed by broker: {method}")
            pos = nxt
        buf = buf[pos:]
    if not no_ack and last_tag > acked:
        c.send(1, commands.Basic.Ack(delivery_tag=last_tag, multiple=True))
    dt = time.perf_counter() - t0
    c.close()
    return n / dt


def broker_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) of process ``pid`` and its descendants so far
    (RabbitMQ runs as a script that starts the Erlang VM); 0 when unknown."""
    if pid is None:
        return 0.0
    total = 0.0
    todo = [pid]
    tick = os.sysconf("SC_CLK_TCK")
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except (OSError, IndexError, ValueError):
            continue
        todo.extend(int(k) for k in kids)
    return total


def scenarios(
    port: int, n: int, size: int, pid: int | None = None, cpu: dict[str, float] | None = None
) -> dict[str, float]:
    """The four steps' rates; with ``pid`` and ``cpu``, also the broker's CPU time
    per message of each step (microseconds) into ``cpu``."""
    body = os.urandom(size)
    out: dict[str, float] = {}
    steps: list[tuple[str, Callable[[], float]]] = [
        ("publish", lambda: run_publish(port, "bench-a", n, body, confirms=False)),
        ("publish+confirms", lambda: run_publish(port, "bench-b", n, body, confirms=True)),
        ("consume", lambda: run_consume(port, "bench-a", n, no_ack=False)),
        ("consume no-ack", lambda: run_consume(port, "bench-b", n, no_ack=True)),
    ]
    for name, step in steps:
        c0 = broker_cpu(pid)
        out[name] = step()
        if cpu is not None and pid is not None:
            cpu[name] = round((broker_cpu(pid) - c0) / n * 1e6, 1)
    return out


# --- brokers ----------------------------------------------------------------------------


class FluxMQ:
    name = "fluxmq"

    def __init__(self, work: Path) -> None:
        self.work = work
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        data = self.work / "fluxmq-data"
        data.mkdir(parents=True, exist_ok=True)
        ready = self.work / "fluxmq-ready.json"
        env = dict(os.environ, FLUXMQ_AMQP091__BIND=f"127.0.0.1:{self.port}", FLUXMQ_HTTP__BIND="")
        script = Path(sys.executable).parent / "fluxmq"
        cmd = [str(script)] if script.exists() else [sys.executable, "-m", "fluxmq_core.cli"]
        self.log = open(self.work / "fluxmq.log", "ab")
        self.proc = subprocess.Popen(
            cmd
            + [
                "run",
                "--plugins",
                "amqp091",
                "--data-dir",
                str(data),
                "--ready-file",
                str(ready),
                "--log-level",
                "warning",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        wait_port(self.port, START_TIMEOUT, self.proc)

    def version(self) -> str:
        from importlib.metadata import version

        return f"fluxmq-core {version('fluxmq-core')}, fluxmq-amqp091 {version('fluxmq-amqp091')}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class RabbitMQ:
    name = "rabbitmq"

    def __init__(self, work: Path) -> None:
        self.work = work
        self.port = free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.proc: subprocess.Popen | None = None
        self.node = f"fluxbench{os.getpid()}@localhost"

    def available(self) -> str | None:
        if not Path(RABBIT_BIN).exists():
            if os.geteuid() == 0 and shutil.which("apt-get"):
                subprocess.run(
                    ["apt-get", "install", "-y", "-qq", "rabbitmq-server"],
                    capture_output=True,
                    timeout=600,
                    env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
                )
            if not Path(RABBIT_BIN).exists():
                return "rabbitmq-server is not installed (apt-get install rabbitmq-server)"
        return None

    def _env(self) -> dict[str, str]:
        base = self.work / "rabbitmq"
        (base / "mnesia").mkdir(parents=True, exist_ok=True)
        (base / "log").mkdir(parents=True, exist_ok=True)
        plugins = base / "enabled_plugins"
        plugins.write_text("[].\n")
        conf = base / "rabbitmq.conf"
        conf.write_text("loopback_users = none\n")
        return dict(
            os.environ,
            HOME=str(base),
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_DIST_PORT=str(self.dist_port),
            ERL_EPMD_PORT=str(self.epmd_port),
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_MNESIA_BASE=str(base / "mnesia"),
            RABBITMQ_LOG_BASE=str(base / "log"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(plugins),
            RABBITMQ_CONFIG_FILE=str(base / "rabbitmq"),
            RABBITMQ_PID_FILE=str(base / "pid"),
        )

    def start(self) -> None:
        self.env = self._env()
        self.log = open(self.work / "rabbitmq.log", "ab")
        self.proc = subprocess.Popen(
            [RABBIT_BIN],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            start_new_session=True,
        )
        wait_port(self.port, START_TIMEOUT, self.proc)
        # the port opens a moment before the node accepts AMQP: wait for a handshake
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                Client(self.port).close()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def version(self) -> str:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "rabbitmq-server"], capture_output=True, text=True
        )
        return f"rabbitmq-server {out.stdout.strip() or '?'} (Debian)"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        epmd = shutil.which("epmd") or "/usr/lib/erlang/bin/epmd"
        if Path(epmd).exists():  # the epmd this node started, on its own port
            subprocess.run(
                [epmd, "-port", str(self.epmd_port), "-kill"], capture_output=True, timeout=10
            )


def measure_peers(
    peers: list[Any], work: Path, measure: Callable[[int], dict[str, float]]
) -> dict[str, dict[str, Any]]:
    """Start each peer in turn, run ``measure(port)`` against it and stop it; a peer
    that is unavailable or fails is recorded with why (and its log's tail)."""
    results: dict[str, dict[str, Any]] = {}
    for peer in peers:
        why = peer.available() if hasattr(peer, "available") else None
        if why:
            results[peer.name] = {"error": why}
            print(f"{peer.name}: skipped: {why}", file=sys.stderr)
            continue
        try:
            peer.start()
            results[peer.name] = {"version": peer.version(), "msgs_per_s": measure(peer.port)}
        except Exception as exc:
            log = work / f"{peer.name}.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            results[peer.name] = {"error": f"{type(exc).__name__}: {exc}", "log_tail": tail}
            print(f"{peer.name}: failed: {exc}\n{tail}", file=sys.stderr)
        finally:
            peer.stop()
    return results


def measure_repeated(
    peers: list[Any],
    work: Path,
    measure: Callable[[int, int | None, dict[str, float]], dict[str, float]],
    repeat: int,
) -> dict[str, dict[str, Any]]:
    """``repeat`` rounds, the peers interleaved in each (one broker start per peer and
    round); per peer: every round's rates and broker CPU per message, their medians
    (``msgs_per_s``, ``cpu_us_per_msg``) and ``[min, max]`` of the rates."""
    rounds: dict[str, list[tuple[dict[str, float], dict[str, float]]]] = {}
    results: dict[str, dict[str, Any]] = {}
    for r in range(repeat):
        for peer in peers:
            cpu: dict[str, float] = {}
            got = measure_peers(
                [peer],
                work,
                lambda port, peer=peer, cpu=cpu: measure(
                    port, peer.proc.pid if peer.proc else None, cpu
                ),
            )[peer.name]
            if "error" in got:
                results.setdefault(peer.name, {}).setdefault("errors", []).append(got)
                continue
            rounds.setdefault(peer.name, []).append((got["msgs_per_s"], cpu))
            results.setdefault(peer.name, {})["version"] = got["version"]
            line = ", ".join(
                f"{k} {v:,.0f}/s ({cpu.get(k, 0):.1f} us)" for k, v in got["msgs_per_s"].items()
            )
            print(f"round {r + 1} {peer.name}: {line}", file=sys.stderr, flush=True)
    for name, runs in rounds.items():
        keys = list(runs[0][0])
        res = results[name]
        res["rounds"] = [{"msgs_per_s": rates, "cpu_us_per_msg": cpu} for rates, cpu in runs]
        res["msgs_per_s"] = {k: statistics.median(x[0][k] for x in runs) for k in keys}
        res["range"] = {k: [min(x[0][k] for x in runs), max(x[0][k] for x in runs)] for k in keys}
        res["cpu_us_per_msg"] = {
            k: statistics.median(x[1][k] for x in runs)
            for k in keys
            if all(k in x[1] for x in runs)
        }
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3, help="rounds, peers interleaved (default 3)")
    ap.add_argument("--no-rabbitmq", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fluxmq-bench-amqp-") as tmp:
        work = Path(tmp)
        peers: list = [FluxMQ(work)]
        if not args.no_rabbitmq:
            peers.append(RabbitMQ(work))
        results = measure_repeated(
            peers,
            work,
            lambda port, pid, cpu: scenarios(port, args.messages, args.size, pid, cpu),
            args.repeat,
        )
    names = ["publish", "publish+confirms", "consume", "consume no-ack"]
    flux = results.get("fluxmq", {})
    rabbit = results.get("rabbitmq", {})
    print(
        f"\nAMQP 0.9.1, {args.messages} persistent messages of {args.size} bytes, durable "
        f"queue; medians of {args.repeat} [min-max]; broker CPU per message in us"
    )
    print(
        f"{'scenario':<18}{'fluxmq msg/s':>24}{'rabbitmq msg/s':>24}{'ratio':>7}"
        f"{'fluxmq us':>11}{'rabbitmq us':>13}"
    )
    ratios = {}
    for s in names:
        f = flux.get("msgs_per_s", {}).get(s)
        r = rabbit.get("msgs_per_s", {}).get(s)
        ratio = round(f / r, 2) if f and r else None
        ratios[s] = ratio
        print(
            f"{s:<18}{range_cell(flux, s):>24}{range_cell(rabbit, s):>24}"
            f"{(f'{ratio:.2f}x' if ratio else '-'):>7}"
            f"{flux.get('cpu_us_per_msg', {}).get(s, 0):>11.1f}"
            f"{rabbit.get('cpu_us_per_msg', {}).get(s, 0):>13.1f}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "amqp091",
                "messages": args.messages,
                "size": args.size,
                "repeat": args.repeat,
                "client": "raw sockets; consume frames cut by hand (see run_consume)",
                "machine": {
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                    "cpus": os.cpu_count(),
                    "loadavg_after": os.getloadavg(),
                },
                "results": results,
                "ratio_fluxmq_over_rabbitmq": ratios,
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {RESULTS.relative_to(HERE.parent)}")
    return 0


def range_cell(res: dict[str, Any], s: str) -> str:
    v = res.get("msgs_per_s", {}).get(s)
    if v is None:
        return "-"
    lo, hi = res["range"][s]
    return f"{v:,.0f} [{lo:,.0f}-{hi:,.0f}]"


if __name__ == "__main__":
    sys.exit(main())
