"""AMQP 1.0 benchmark: FluxMQ beside RabbitMQ 3.10's ``rabbitmq_amqp1_0`` plugin,
same client, same machine, same run.

    uv run python bench/amqp1.py [--messages 20000] [--size 100] [--repeat 3] [--no-rabbitmq]

``--repeat`` rounds (default 3) interleave the brokers; the table shows medians with
[min-max] and each broker's CPU time per message (process tree, from ``/proc``).

Each broker runs as a subprocess on a free loopback port: FluxMQ as
``fluxmq run --plugins amqp1`` on a fresh data directory with the queue declared
durable (``[queues.<name>] type = "classic"``; durable ``badgerlike`` storage when
installed), RabbitMQ from Debian's ``rabbitmq-server`` (see ``bench/amqp091.py``:
temporary mnesia and log dirs, its own node name, AMQP, distribution and epmd
ports) with ``rabbitmq_amqp1_0`` enabled through an ``enabled_plugins`` file in
its temp dir; stopped afterwards, and the epmd it started is stopped by pid.

The client is a raw-socket AMQP 1.0 client built on the plugin's sans-IO codec:
transfers are encoded and written in batches as link credit and the session
window allow, so the client is not what is measured. Scenarios, durable 100-byte
messages to the durable queue ``/queue/<name>`` (both brokers read that address as
the queue; RabbitMQ declares it durable for a durable target):

* ``send unsettled``: N transfers sent unsettled (at-least-once); done when the
  broker has settled every one with ``accepted`` (FluxMQ settles once the queue
  append is durable; RabbitMQ once its queue confirmed it).
* ``receive credit 1000``: the N messages already queued; a receiver link with
  credit 1000 (topped up at half), accepting in ranges of 100 deliveries; done when
  all N arrived.

Prints a table and writes ``bench/results/amqp1.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from amqp091 import RabbitMQ as RabbitMQ091
from amqp091 import broker_cpu, free_port, measure_repeated, range_cell, wait_port
from fluxmq_amqp1.codec.composites import (
    Accepted,
    Attach,
    Begin,
    Close,
    Data,
    Disposition,
    Flow,
    Header,
    Open,
    SaslInit,
    SaslMechanisms,
    SaslOutcome,
    Source,
    Target,
    Transfer,
)
from fluxmq_amqp1.codec.frames import (
    AMQP_HEADER,
    SASL_HEADER,
    TYPE_SASL,
    Frame,
    FrameReader,
    encode_frame,
)
from fluxmq_amqp1.codec.message import AMQPMessage, encode_message

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "amqp1.json"
START_TIMEOUT = 60.0
IO_TIMEOUT = 60.0
QUEUE = "bench-amqp1"
ADDRESS = f"/queue/{QUEUE}"
WINDOW = 2**31 - 1
CREDIT = 1000
SETTLE_EVERY = 100


# --- a raw client ----------------------------------------------------------------------


class Client:
    """One connection and one session, SASL ANONYMOUS (PLAIN guest/guest when the
    broker does not offer it)."""

    def __init__(self, port: int, name: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = FrameReader()
        self.sock.sendall(SASL_HEADER)
        self.next_header()
        mechs = self.expect(SaslMechanisms).sasl_server_mechanisms or []
        if "ANONYMOUS" in mechs:
            init = SaslInit(mechanism="ANONYMOUS", hostname="localhost")
        else:
            init = SaslInit(mechanism="PLAIN", initial_response=b"\0guest\0guest")
        self.sock.sendall(encode_frame(0, init, type=TYPE_SASL))
        outcome = self.expect(SaslOutcome)
        if outcome.code != 0:
            raise RuntimeError(f"SASL {init.mechanism} refused (code {outcome.code})")
        self.reader.expect_header = True
        self.sock.sendall(
            AMQP_HEADER
            + encode_frame(0, Open(container_id=name, hostname="localhost", max_frame_size=65536))
            + encode_frame(
                0, Begin(next_outgoing_id=0, incoming_window=WINDOW, outgoing_window=WINDOW)
            )
        )
        self.next_header()
        self.expect(Open)
        begin = self.expect(Begin)
        self.next_outgoing_id = 0
        self.next_incoming_id = begin.next_outgoing_id
        self.remote_window = begin.incoming_window

    def next_header(self) -> None:
        while True:
            f = self.reader.next_frame()
            if f is not None:
                if isinstance(f, Frame):
                    raise RuntimeError(f"expected a protocol header, got {f}")
                return
            self._recv()

    def _recv(self) -> None:
        data = self.sock.recv(1 << 20)
        if not data:
            raise EOFError("broker closed the connection")
        self.reader.feed(data)

    def frames(self) -> Iterator[Frame]:
        while True:
            f = self.reader.next_frame()
            if f is None:
                self._recv()
                continue
            assert isinstance(f, Frame)
            if isinstance(f.body, Close):
                raise RuntimeError(f"closed by the broker: {f.body.error}")
            if isinstance(f.body, Attach) and f.body.source is None and f.body.target is None:
                raise RuntimeError("attach refused by the broker")
            yield f

    def expect(self, kind: type) -> Any:
        for f in self.frames():
            if isinstance(f.body, kind):
                return f.body
        raise AssertionError("unreachable")

    def close(self) -> None:
        try:
            self.sock.sendall(encode_frame(0, Close()))
        except OSError:
            pass
        self.sock.close()


def message_bytes(size: int) -> bytes:
    return encode_message(AMQPMessage([Data(os.urandom(size))], header=Header(durable=True)))


def run_send(port: int, n: int, size: int) -> float:
    c = Client(port, "bench-sender")
    c.sock.sendall(
        encode_frame(
            0,
            Attach(
                name="bench-sender",
                handle=0,
                role=False,
                snd_settle_mode=0,  # unsettled: the broker settles with an outcome
                source=Source(address="bench"),
                target=Target(address=ADDRESS, durable=2),
                initial_delivery_count=0,
            ),
        )
    )
    payload = message_bytes(size)
    credit = 0
    delivery_count = 0
    sent = accepted = 0
    frames = c.frames()
    t0 = time.perf_counter()
    while accepted < n:
        room = min(credit, n - sent, c.remote_window - c.next_outgoing_id)
        if room > 0:
            out = bytearray()
            for _ in range(room):
                out += encode_frame(
                    0,
                    Transfer(
                        handle=0,
                        delivery_id=sent,
                        delivery_tag=sent.to_bytes(4, "big"),
                        message_format=0,
                    ),
                    payload,
                )
                sent += 1
            credit -= room
            delivery_count += room
            c.next_outgoing_id += room
            c.sock.sendall(out)
        f = next(frames)
        body = f.body
        if isinstance(body, Flow):
            if body.next_incoming_id is not None:
                c.remote_window = body.next_incoming_id + body.incoming_window
            if body.handle == 0:
                credit = (body.delivery_count or 0) + (body.link_credit or 0) - delivery_count
        elif isinstance(body, Disposition) and body.role:
            if not isinstance(body.state, Accepted):
                raise RuntimeError(f"a transfer was settled with {body.state}")
            last = body.last if body.last is not None else body.first
            accepted += last - body.first + 1
    dt = time.perf_counter() - t0
    c.close()
    return n / dt


def run_receive(port: int, n: int) -> float:
    c = Client(port, "bench-receiver")
    t0 = time.perf_counter()
    c.sock.sendall(
        encode_frame(
            0,
            Attach(
                name="bench-receiver",
                handle=0,
                role=True,
                snd_settle_mode=0,
                rcv_settle_mode=0,
                source=Source(address=ADDRESS, durable=2),
                target=Target(address="bench"),
            ),
        )
        + encode_frame(
            0,
            Flow(
                next_incoming_id=c.next_incoming_id,
                incoming_window=WINDOW,
                next_outgoing_id=0,
                outgoing_window=WINDOW,
                handle=0,
                delivery_count=0,
                link_credit=CREDIT,
            ),
        )
    )
    got = 0
    granted = CREDIT
    first_unsettled: int | None = None
    last_id = 0
    for f in c.frames():
        body = f.body
        if not isinstance(body, Transfer):
            continue
        c.next_incoming_id += 1
        if body.delivery_id is None or body.more:
            continue  # a continuation, or a delivery's first frames
        got += 1
        last_id = body.delivery_id
        if first_unsettled is None:
            first_unsettled = last_id
        out = bytearray()
        if got % SETTLE_EVERY == 0 or got >= n:
            out += encode_frame(
                0,
                Disposition(
                    role=True, first=first_unsettled, last=last_id, settled=True, state=Accepted()
                ),
            )
            first_unsettled = None
        if granted - got < CREDIT // 2 and got < n:
            granted = got + CREDIT
            out += encode_frame(
                0,
                Flow(
                    next_incoming_id=c.next_incoming_id,
                    incoming_window=WINDOW,
                    next_outgoing_id=0,
                    outgoing_window=WINDOW,
                    handle=0,
                    delivery_count=got,
                    link_credit=CREDIT,
                ),
            )
        if out:
            c.sock.sendall(out)
        if got >= n:
            break
    dt = time.perf_counter() - t0
    c.close()
    return n / dt


def scenarios(
    port: int, n: int, size: int, pid: int | None = None, cpu: dict[str, float] | None = None
) -> dict[str, float]:
    """Both steps' rates; with ``pid`` and ``cpu``, also the broker's CPU time per
    message of each step (microseconds) into ``cpu``."""
    out: dict[str, float] = {}
    for name, step in (
        ("send unsettled", lambda: run_send(port, n, size)),
        ("receive credit 1000", lambda: run_receive(port, n)),
    ):
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
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        data = self.work / "fluxmq-data"
        data.mkdir(parents=True, exist_ok=True)
        conf = self.work / "fluxmq.toml"
        conf.write_text(f'[queues.{QUEUE}]\ntype = "classic"\n')
        ready = self.work / "fluxmq-ready.json"
        env = dict(os.environ, FLUXMQ_AMQP1__BIND=f"127.0.0.1:{self.port}", FLUXMQ_HTTP__BIND="")
        script = Path(sys.executable).parent / "fluxmq"
        cmd = [str(script)] if script.exists() else [sys.executable, "-m", "fluxmq_core.cli"]
        self.log = open(self.work / "fluxmq.log", "ab")  # noqa: SIM115 - closed by the process end
        self.proc = subprocess.Popen(
            [
                *cmd,
                "run",
                "--config",
                str(conf),
                "--plugins",
                "amqp1",
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

        v = f"fluxmq-core {version('fluxmq-core')}, fluxmq-amqp1 {version('fluxmq-amqp1')}"
        try:
            v += f", storage badgerlike {version('fluxmq-storage-badgerlike')}"
        except Exception:
            v += ", memory storage"
        return v

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class RabbitMQ(RabbitMQ091):
    """RabbitMQ with the rabbitmq_amqp1_0 plugin (AMQP 1.0 on the AMQP port)."""

    def _env(self) -> dict[str, str]:
        env = super()._env()
        Path(env["RABBITMQ_ENABLED_PLUGINS_FILE"]).write_text("[rabbitmq_amqp1_0].\n")
        return env

    def version(self) -> str:
        return super().version() + ", rabbitmq_amqp1_0"

    def stop(self) -> None:
        epmd = epmd_pids(self.epmd_port)
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        # the epmd this node started (daemonized, on its own port): by pid
        for pid in epmd or epmd_pids(self.epmd_port):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


def epmd_pids(port: int) -> list[int]:
    """Processes named epmd started with ERL_EPMD_PORT=<port> (ours only)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                if f.read().strip() != "epmd":
                    continue
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if f"ERL_EPMD_PORT={port}".encode() in env:
            found.append(int(entry))
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3, help="rounds, peers interleaved (default 3)")
    ap.add_argument("--no-rabbitmq", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fluxmq-bench-amqp1-") as tmp:
        work = Path(tmp)
        peers: list[Any] = [FluxMQ(work)]
        if not args.no_rabbitmq:
            peers.append(RabbitMQ(work))
        results = measure_repeated(
            peers,
            work,
            lambda port, pid, cpu: scenarios(port, args.messages, args.size, pid, cpu),
            args.repeat,
        )
    names = ["send unsettled", "receive credit 1000"]
    flux = results.get("fluxmq", {})
    rabbit = results.get("rabbitmq", {})
    print(
        f"\nAMQP 1.0, {args.messages} durable messages of {args.size} bytes, durable queue; "
        f"medians of {args.repeat} [min-max]; broker CPU per message in us"
    )
    print(
        f"{'scenario':<21}{'fluxmq msg/s':>24}{'rabbitmq msg/s':>24}{'ratio':>7}"
        f"{'fluxmq us':>11}{'rabbitmq us':>13}"
    )
    ratios = {}
    for s in names:
        f = flux.get("msgs_per_s", {}).get(s)
        r = rabbit.get("msgs_per_s", {}).get(s)
        ratio = round(f / r, 2) if f and r else None
        ratios[s] = ratio
        print(
            f"{s:<21}{range_cell(flux, s):>24}{range_cell(rabbit, s):>24}"
            f"{(f'{ratio:.2f}x' if ratio else '-'):>7}"
            f"{flux.get('cpu_us_per_msg', {}).get(s, 0):>11.1f}"
            f"{rabbit.get('cpu_us_per_msg', {}).get(s, 0):>13.1f}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "amqp1",
                "messages": args.messages,
                "size": args.size,
                "repeat": args.repeat,
                "address": ADDRESS,
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


if __name__ == "__main__":
    sys.exit(main())
