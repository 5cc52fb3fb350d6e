"""CPU per message of the broker's MQTT QoS 0 hot path, measured in-process.

A load generator against a broker process measures throughput, which on a shared
machine moves with whatever else runs. This measures the broker's own CPU time per
message instead, which a busy neighbour disturbs far less: the broker runs in this
process (``fluxmq_core.testing.BrokerThread``, MQTT plugin only, uvloop unless
``--asyncio``); one raw-socket subscriber (``bench/t``, QoS 0, drained by a thread)
and one raw-socket publisher connect over loopback; then, on the broker's loop, the
publisher's protocol is handed ``--rounds`` chunks of ``--batch`` back-to-back
3.1.1 PUBLISHes (64-byte payloads) exactly as ``data_received`` would get them from
the socket, yielding to the loop after each chunk so that the subscriber's writes
go out. The loop thread's CPU time (``time.thread_time``) over all chunks, divided
by the messages published, is the figure: decode, checks, ``Message``, routing,
encoding for the subscriber, the write. Best and median of ``--repeat`` runs.

``uv run python bench/hotpath.py [--rounds 500] [--batch 400] [--repeat 5]``;
bounded: every wait has a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import install_loop, mqtt_connect, mqtt_subscribe, publish_packet  # noqa: E402

TOPIC = "bench/t"


class Drain(threading.Thread):
    """Reads and counts the subscriber's bytes until told to stop."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.bytes = 0
        self.stop = False
        sock.settimeout(0.2)

    def run(self) -> None:
        buf = bytearray(1 << 20)
        while not self.stop:
            try:
                n = self.sock.recv_into(buf)
            except TimeoutError:
                continue
            except OSError:
                return
            if not n:
                return
            self.bytes += n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=500, help="chunks per run")
    ap.add_argument("--batch", type=int, default=400, help="PUBLISHes per chunk")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--asyncio", action="store_true", help="the asyncio loop, not uvloop")
    ap.add_argument("--json", default=None, help="write the result here")
    a = ap.parse_args()
    a.asyncio = install_loop(a.asyncio)
    from fluxmq_core.testing import BrokerThread

    broker = BrokerThread(plugins=["mqtt"], config={"http": {"bind": ""}})
    broker.start()
    try:
        port = broker.port("mqtt.tcp")
        sub = mqtt_connect("127.0.0.1", port, "hotpath-sub", rcvbuf=4 << 20)
        mqtt_subscribe(sub, TOPIC, 0)
        drain = Drain(sub)
        drain.start()
        pub = mqtt_connect("127.0.0.1", port, "hotpath-pub")
        servers = [o for o in gc.get_objects() if type(o).__name__ == "MQTTServer"]
        if len(servers) != 1:
            raise SystemExit(f"expected one MQTTServer, found {len(servers)}")
        server = servers[0]
        packet = publish_packet(TOPIC, b"x" * 64)
        chunk = packet * a.batch

        async def run_once() -> tuple[float, int]:
            deadline = time.monotonic() + 5
            proto = None
            while proto is None and time.monotonic() < deadline:
                for p in list(server.protocols):
                    if p.conn is not None and p.conn.client_id == "hotpath-pub":
                        proto = p
                await asyncio.sleep(0.01)
            if proto is None:
                raise SystemExit("publisher connection not found")
            stats = server.context.stats
            dropped = stats.messages_dropped
            t0 = time.thread_time()
            for _ in range(a.rounds):
                proto.data_received(chunk)
                await asyncio.sleep(0)
            cpu = time.thread_time() - t0
            return cpu, stats.messages_dropped - dropped

        loop = broker.loop
        assert loop is not None
        runs = []
        for _ in range(a.repeat):
            before = drain.bytes
            fut = asyncio.run_coroutine_threadsafe(run_once(), loop)
            cpu, dropped = fut.result(120)
            sent = a.rounds * a.batch
            want = before + (sent - dropped) * len(packet)
            deadline = time.monotonic() + 10
            while drain.bytes < want and time.monotonic() < deadline:
                time.sleep(0.01)
            got = (drain.bytes - before) // len(packet)
            runs.append(1e6 * cpu / sent)
            print(
                f"{1e6 * cpu / sent:6.2f} us of broker CPU per message "
                f"({sent:,} published, {got:,} delivered, {dropped:,} dropped)"
            )
        drain.stop = True
        pub.close()
        sub.close()
    finally:
        broker.stop()
    loop_name = "asyncio" if a.asyncio else "uvloop"
    best, median = min(runs), statistics.median(runs)
    print(f"{loop_name}: best {best:.2f} us/msg, median {median:.2f} us/msg")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(
                {"loop": loop_name, "runs_us_per_msg": runs, "best": best, "median": median},
                fh,
                indent=1,
            )


if __name__ == "__main__":
    main()
