"""What an idle MQTT connection holds, object by object (tracemalloc).

Starts the broker in-process (``fluxmq_core.testing.BrokerThread``, MQTT plugin only,
uvloop when installed unless ``--asyncio``) with ``tracemalloc`` on, opens
``--conns`` MQTT 3.1.1 connections from a child process (CONNECT, wait for CONNACK,
then idle, so the client sockets are not in the broker's heap), and prints the
Python heap growth per connection, grouped by the line that allocated it (the
innermost frame in FluxMQ, asyncio or uvloop code). Bounded: every wait has a
timeout. ``uv run python bench/idle_memory.py [--conns 2000] [--asyncio] [--sizes]
[--json F]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import linecache
import os
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import install_loop  # noqa: E402

CLIENT = r"""
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
def connect_packet(cid):
    cid = cid.encode()
    var = b"\x00\x04MQTT\x04\x02\x02\x58"
    body = var + len(cid).to_bytes(2, "big") + cid
    return bytes((0x10, len(body))) + body
socks = []
deadline = time.monotonic() + 120
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(connect_packet(f"idle-{i}"))
    socks.append(s)
    if len(socks) % 100 == 0 or i == n - 1:
        for t in socks[-100:] if len(socks) % 100 == 0 else socks[-(len(socks) % 100):]:
            got = b""
            while len(got) < 4:
                chunk = t.recv(4 - len(got))
                if not chunk:
                    raise SystemExit("closed before CONNACK")
                got += chunk
    if time.monotonic() > deadline:
        raise SystemExit("too slow")
print("ready", flush=True)
sys.stdin.readline()
for s in socks:
    s.close()
"""


def _where(tb: tracemalloc.Traceback) -> str:
    """The innermost frame of interest: FluxMQ code first, else asyncio/uvloop."""
    frames = list(tb)[::-1]  # most recent call first
    for f in frames:
        if "fluxmq" in f.filename:
            short = f.filename.split("site-packages/")[-1]
            short = short[short.find("fluxmq") :]
            return f"{short}:{f.lineno}: {linecache.getline(f.filename, f.lineno).strip()[:70]}"
    f = frames[0]
    return f"{os.path.basename(f.filename)}:{f.lineno}: {linecache.getline(f.filename, f.lineno).strip()[:70]}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--conns", type=int, default=2000)
    ap.add_argument("--asyncio", action="store_true", help="the asyncio loop, not uvloop")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--sizes", action="store_true", help="also list allocations by size")
    ap.add_argument("--json", default=None, help="write the table here as JSON")
    a = ap.parse_args()
    a.asyncio = install_loop(a.asyncio)
    from fluxmq_core.testing import BrokerThread

    tracemalloc.start(12)
    broker = BrokerThread(plugins=["mqtt"], config={"http": {"bind": ""}})
    broker.start()
    try:
        port = broker.port("mqtt.tcp")
        time.sleep(0.5)
        gc.collect()
        before = tracemalloc.take_snapshot()
        child = subprocess.Popen(
            [sys.executable, "-c", CLIENT, str(port), str(a.conns)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            line = child.stdout.readline() if child.stdout else ""
            if line.strip() != "ready":
                raise SystemExit(f"client failed: {line!r}")
            time.sleep(1.0)  # let the broker finish every CONNACK's bookkeeping
            gc.collect()
            after = tracemalloc.take_snapshot()
        finally:
            if child.stdin:
                child.stdin.write("\n")
                child.stdin.flush()
            child.wait(30)
    finally:
        broker.stop()
    flt = [tracemalloc.Filter(False, tracemalloc.__file__)]
    diff = after.filter_traces(flt).compare_to(before.filter_traces(flt), "traceback")
    if a.sizes:
        sizes: Counter[tuple[str, int]] = Counter()
        for stat in diff:
            if stat.size_diff > 0 and stat.count_diff > 0:
                sizes[(_where(stat.traceback), stat.size_diff // stat.count_diff)] += (
                    stat.count_diff
                )
        for (where, size), cnt in sizes.most_common(40):
            print(f"{cnt:7d} x {size:5d} B  {where}")
    groups: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    for stat in diff:
        if stat.size_diff <= 0:
            continue
        key = _where(stat.traceback)
        groups[key] += stat.size_diff
        counts[key] += stat.count_diff
    total = sum(groups.values())
    n = a.conns
    loop = "asyncio" if a.asyncio else "uvloop"
    print(f"{n} idle connections, {loop}: Python heap +{total / n:,.0f} B per connection")
    print(f"{'B/conn':>8} {'objs/conn':>9}  allocated at")
    rows = []
    for key, size in groups.most_common(a.top):
        print(f"{size / n:8.0f} {counts[key] / n:9.2f}  {key}")
        rows.append(
            {
                "where": key,
                "bytes_per_conn": round(size / n, 1),
                "objects_per_conn": round(counts[key] / n, 2),
            }
        )
    rest = total - sum(r["bytes_per_conn"] * n for r in rows)
    print(f"{rest / n:8.0f}            (the rest)")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(
                {"conns": n, "loop": loop, "bytes_per_conn": round(total / n, 1), "top": rows},
                fh,
                indent=1,
            )


if __name__ == "__main__":
    main()
