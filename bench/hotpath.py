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

``--subscribers N`` measures fan-out instead: N raw subscribers (drained by one
thread), the figure is then per delivered message (published x N). The broker's
``outbound_buffer`` is ``--outbound-buffer`` (default 64 MiB) so that a subscriber
drained by a Python thread never drops: a drop costs less than a delivery and would
flatter the figure.

``--topics N`` publishes to N topics in turn (the subscriber takes ``bench/#``), so
that no two PUBLISHes in a row are alike. ``--calls`` first counts the Python and C
function calls the loop thread makes inside ``data_received`` per message
(``sys.setprofile``), by function.

``uv run python bench/hotpath.py [--rounds 500] [--batch 400] [--repeat 5]
[--subscribers 1] [--topics 1] [--calls]``; bounded: every wait has a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import selectors
import socket
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import install_loop, mqtt_connect, mqtt_subscribe, publish_packet  # noqa: E402

TOPIC = "bench/t"


class Drain(threading.Thread):
    """Reads and counts the subscribers' bytes until told to stop."""

    def __init__(self, socks: list[socket.socket]) -> None:
        super().__init__(daemon=True)
        self.socks = socks
        self.bytes = 0
        self.stop = False
        self.sel = selectors.DefaultSelector()
        for sock in socks:
            sock.setblocking(False)
            self.sel.register(sock, selectors.EVENT_READ)

    def run(self) -> None:
        buf = bytearray(1 << 20)
        while not self.stop:
            for key, _ in self.sel.select(0.2):
                sock = key.fileobj
                try:
                    n = sock.recv_into(buf)  # type: ignore[union-attr]
                except BlockingIOError:
                    continue
                except OSError:
                    return
                if not n:
                    return
                self.bytes += n


def count_calls(proto: Any, chunk: bytes, rounds: int) -> Counter[tuple[str, str]]:
    """Python and C function calls made inside ``proto.data_received(chunk)``, by
    name, over ``rounds`` chunks (the loop's own work between chunks not counted)."""
    counted: Counter[tuple[str, str]] = Counter()

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            code = frame.f_code
            counted["py", f"{Path(code.co_filename).name}:{code.co_qualname}"] += 1
        elif event == "c_call":
            counted["c", getattr(arg, "__qualname__", repr(arg))] += 1

    for _ in range(rounds):
        sys.setprofile(profile)
        proto.data_received(chunk)
        sys.setprofile(None)
    # the setprofile(None) call itself is reported as a C call
    counted["c", "setprofile"] -= rounds
    if not counted["c", "setprofile"]:
        del counted["c", "setprofile"]
    return counted


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=500, help="chunks per run")
    ap.add_argument("--batch", type=int, default=400, help="PUBLISHes per chunk")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--subscribers", type=int, default=1, help="fan-out to this many")
    ap.add_argument(
        "--topics",
        type=int,
        default=1,
        help="publish to this many topics in turn (no two PUBLISHes in a row alike: at most 10)",
    )
    ap.add_argument("--outbound-buffer", type=int, default=64 << 20, help="bytes per connection")
    ap.add_argument("--asyncio", action="store_true", help="the asyncio loop, not uvloop")
    ap.add_argument("--json", default=None, help="write the result here")
    ap.add_argument(
        "--calls",
        action="store_true",
        help="count the loop thread's function calls per message (sys.setprofile) instead",
    )
    a = ap.parse_args()
    if not 1 <= a.topics <= 10:
        ap.error("--topics is 1 to 10")
    a.asyncio = install_loop(a.asyncio)
    from fluxmq_core.testing import BrokerThread

    broker = BrokerThread(
        plugins=["mqtt"],
        config={"http": {"bind": ""}, "mqtt": {"outbound_buffer": a.outbound_buffer}},
    )
    broker.start()
    try:
        port = broker.port("mqtt.tcp")
        subs = []
        for i in range(a.subscribers):
            sub = mqtt_connect("127.0.0.1", port, f"hotpath-sub{i}", rcvbuf=4 << 20)
            mqtt_subscribe(sub, TOPIC if a.topics == 1 else "bench/#", 0)
            subs.append(sub)
        fanout = len(subs)
        drain = Drain(subs)
        drain.start()
        pub = mqtt_connect("127.0.0.1", port, "hotpath-pub")
        servers = [o for o in gc.get_objects() if type(o).__name__ == "MQTTServer"]
        if len(servers) != 1:
            raise SystemExit(f"expected one MQTTServer, found {len(servers)}")
        server = servers[0]
        packet = publish_packet(TOPIC, b"x" * 64)
        chunk = packet * a.batch
        if a.topics > 1:
            # Topics of one length, so every packet has the size of ``packet``.
            names = [f"bench/{i % 10}" for i in range(a.topics)]
            packets = [publish_packet(name, b"x" * 64) for name in names]
            chunk = b"".join(packets[i % a.topics] for i in range(a.batch))

        async def run_once() -> tuple[float, int, int]:
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
            extra = 0
            if a.calls:
                extra = a.rounds * a.batch
                counted = count_calls(proto, chunk, a.rounds)
                total = sum(counted.values())
                per = a.rounds * a.batch
                for (kind, name), n in counted.most_common():
                    print(f"{n / per:8.2f} {kind:6} {name}")
                print(f"{total / per:8.2f} calls per message in data_received")
            t0 = time.thread_time()
            for _ in range(a.rounds):
                proto.data_received(chunk)
                await asyncio.sleep(0)
            cpu = time.thread_time() - t0
            return cpu, stats.messages_dropped - dropped, extra

        loop = broker.loop
        assert loop is not None
        runs = []
        for _ in range(a.repeat):
            before = drain.bytes
            fut = asyncio.run_coroutine_threadsafe(run_once(), loop)
            cpu, dropped, extra = fut.result(120)
            sent = a.rounds * a.batch
            deliveries = sent * fanout
            want = before + ((sent + extra) * fanout - dropped) * len(packet)
            deadline = time.monotonic() + 30
            while drain.bytes < want and time.monotonic() < deadline:
                time.sleep(0.01)
            got = (drain.bytes - before) // len(packet) - extra * fanout
            runs.append(1e6 * cpu / deliveries)
            print(
                f"{1e6 * cpu / deliveries:6.3f} us of broker CPU per delivered message "
                f"({sent:,} published, {got:,} delivered, {dropped:,} dropped)"
            )
        drain.stop = True
        pub.close()
        for sub in subs:
            sub.close()
    finally:
        broker.stop()
    loop_name = "asyncio" if a.asyncio else "uvloop"
    best, median = min(runs), statistics.median(runs)
    print(f"{loop_name}, 1->{a.subscribers}: best {best:.3f} us/msg, median {median:.3f} us/msg")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(
                {
                    "loop": loop_name,
                    "subscribers": a.subscribers,
                    "runs_us_per_msg": runs,
                    "best": best,
                    "median": median,
                },
                fh,
                indent=1,
            )


if __name__ == "__main__":
    main()
