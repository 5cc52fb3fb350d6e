"""Cluster benchmark: what forwarding a message to another node costs, and how
throughput grows with nodes on one host.

    uv run python bench/cluster.py [--messages 100000] [--payload 64] [--quick]

Needs the ``etcd`` binary (Debian ``etcd-server``) and the fluxmq-etcd plugin; every
broker is a ``fluxmq run`` subprocess on free loopback ports with memory storage.

Scenarios (QoS 0, MQTT 3.1.1, raw sockets from ``bench/loadgen.py``; the publisher
sends pre-encoded batches, the subscriber counts PUBLISH packets):

* ``single``: one node (cluster driver ``none``), publisher and subscriber on it;
* ``local-in-cluster``: a 2-node etcd cluster, publisher and subscriber on the same
  node (the cost of the cluster layer for local traffic: index lookups only);
* ``forwarded``: a 2-node cluster, publisher on node a, subscriber on node b (every
  message crosses to node b once, over the same-host link that two nodes of one
  host use by default);
* ``scale-N`` for N in 1, 2, 3: N cluster nodes, one publisher and one subscriber
  per node on a topic of its own (traffic spread evenly, nothing crosses nodes):
  the aggregate rate, as a simulation of scale-out.

Prints a table (delivered messages per second, median of ``--repeat`` runs) and
writes JSON to bench/results/cluster.json. What limits it on a small machine: every
node is one Python process (one core), the load generator needs cores too, and on
a 2-core host three nodes plus clients oversubscribe the CPU, so ``scale-3`` shows
contention rather than scale-out. Numbers are only comparable within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from loadgen import (  # noqa: E402
    drain_socket,
    mqtt_connect,
    mqtt_subscribe,
    probe_until_delivered,
    publish_packet,
    send_batched,
)

from fluxmq_core.testing.broker import BrokerProcess  # noqa: E402


def start_nodes(n: int, etcd: Any | None) -> list[tuple[BrokerProcess, int]]:
    nodes = []
    for i in range(n):
        env = {"FLUXMQ_STORAGE__DRIVER": "memory", "FLUXMQ_LOG__LEVEL": "warning"}
        if etcd is not None:
            env |= {
                "FLUXMQ_CLUSTER__DRIVER": "etcd",
                "FLUXMQ_CLUSTER__NODE_ID": f"n{i}",
                "FLUXMQ_CLUSTER__ETCD_ENDPOINTS": etcd.endpoint,
            }
        proc = BrokerProcess(["--plugins", "mqtt" + (",etcd" if etcd else "")], env=env)
        bound = proc.start(timeout=30)
        nodes.append((proc, bound["mqtt.tcp"][1]))
    return nodes


def stop_nodes(nodes: list[tuple[BrokerProcess, int]]) -> None:
    for proc, _port in nodes:
        proc.signal(15)
    for proc, _port in nodes:
        try:
            proc.wait(15)
        finally:
            proc.close()


def flow(pairs: list[tuple[int, int, str]], messages: int, payload: int) -> float:
    """Publish ``messages`` on each (publisher port, subscriber port, topic) pair at
    once; return delivered messages per second over all pairs (first send to last
    receipt)."""
    subs = []
    for i, (_pp, sp, topic) in enumerate(pairs):
        s = mqtt_connect("127.0.0.1", sp, f"bench-sub-{i}", rcvbuf=1 << 20)
        mqtt_subscribe(s, topic, 0)
        subs.append(s)
    pubs = [
        mqtt_connect("127.0.0.1", pp, f"bench-pub-{i}") for i, (pp, _sp, _t) in enumerate(pairs)
    ]
    # Wait until each subscription is known where its publisher is (the index is
    # eventually consistent through etcd): probe until one arrives.
    for (_pp, _sp, topic), pub, sub in zip(pairs, pubs, subs, strict=True):
        probe = publish_packet(topic, b"probe", 0)
        probe_until_delivered(pub, sub, probe, f"subscription on {topic!r} never became visible")
        drain_socket(sub)  # the rest of the probes
    counts = [0] * len(pairs)
    done_at = [0.0] * len(pairs)

    def receive(i: int, sock: Any, size: int) -> None:
        sock.settimeout(10)
        got = 0
        want = messages * size
        while got < want:
            try:
                chunk = sock.recv(1 << 20)
            except TimeoutError:
                break
            if not chunk:
                break
            got += len(chunk)
        counts[i] = got // size
        done_at[i] = time.monotonic()

    def send(pub: Any, topic: str) -> None:
        send_batched(pub, publish_packet(topic, b"x" * payload, 0), messages)

    threads = []
    for i, (sub, (_pp, _sp, topic)) in enumerate(zip(subs, pairs, strict=True)):
        size = len(publish_packet(topic, b"x" * payload, 0))
        threads.append(threading.Thread(target=receive, args=(i, sub, size)))
    for t in threads:
        t.start()
    t0 = time.monotonic()
    senders = [
        threading.Thread(target=send, args=(pub, topic))
        for pub, (_pp, _sp, topic) in zip(pubs, pairs, strict=True)
    ]
    for t in senders:
        t.start()
    for t in senders + threads:
        t.join(120)
    for s in subs + pubs:
        s.close()
    elapsed = max(done_at) - t0
    return sum(counts) / elapsed if elapsed > 0 else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--payload", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="2,000 messages, one repeat")
    args = ap.parse_args()
    if args.quick:
        args.messages, args.repeat = 2_000, 1
    try:
        from fluxmq_etcd.testing import EtcdServer, etcd_missing_reason
    except ImportError:
        print("fluxmq-etcd is not installed", file=sys.stderr)
        return 2
    if etcd_missing_reason():
        print(f"{etcd_missing_reason()} (apt-get install etcd-server)", file=sys.stderr)
        return 2
    results: dict[str, list[float]] = {}

    def record(name: str, rate: float) -> None:
        results.setdefault(name, []).append(rate)
        print(f"  {name}: {rate:,.0f} msg/s", flush=True)

    for _ in range(args.repeat):
        nodes = start_nodes(1, None)
        try:
            port = nodes[0][1]
            record("single", flow([(port, port, "b/1")], args.messages, args.payload))
        finally:
            stop_nodes(nodes)
        with EtcdServer() as etcd:
            nodes = start_nodes(2, etcd)
            try:
                (_, a), (_, b) = nodes
                record("local-in-cluster", flow([(a, a, "b/local")], args.messages, args.payload))
                record("forwarded", flow([(a, b, "b/fwd")], args.messages, args.payload))
            finally:
                stop_nodes(nodes)
        for n in (1, 2, 3):
            with EtcdServer() as etcd:
                nodes = start_nodes(n, etcd)
                try:
                    pairs = [(p, p, f"scale/{i}") for i, (_proc, p) in enumerate(nodes)]
                    record(f"scale-{n}", flow(pairs, args.messages, args.payload))
                finally:
                    stop_nodes(nodes)

    table = {k: statistics.median(v) for k, v in results.items()}
    print(f"\nQoS 0, {args.payload}-byte payload, {args.messages:,} messages per publisher")
    print(f"{'scenario':<20} {'delivered/s':>12}")
    for k, v in table.items():
        print(f"{k:<20} {v:>12,.0f}")
    if table.get("single") and table.get("forwarded"):
        print(f"\nforwarded / single: {table['forwarded'] / table['single']:.2f}")
    out = HERE / "results" / "cluster.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {"args": vars(args), "cpus": os.cpu_count(), "runs": results, "median": table},
            indent=2,
        )
    )
    print(f"wrote {out.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
