"""``--workers`` benchmark: QoS 0 fan-in on ``fluxmq run --workers 1`` and ``--workers 2``.

    uv run python bench/workers.py [--messages 40000] [--publishers 4] [--repeat 3]

Needs the ``etcd`` binary (Debian ``etcd-server``) and the fluxmq-etcd plugin.
Each run starts ``fluxmq run --workers N`` (memory storage, free loopback ports),
connects one subscriber and ``--publishers`` publishers to the one shared MQTT port
(the kernel spreads the connections over the workers, SO_REUSEPORT), and sends
``--messages`` QoS 0 messages in all, pre-encoded (``bench/loadgen.py``), to the
subscriber's topic. The two worker counts alternate, ``--repeat`` times. The
workers forward to each other over their same-host link (``--local-link off``:
over gRPC, as between nodes on different hosts).

Reported per run: delivered messages per second (first send to last receipt), the
share delivered (QoS 0 across workers is at most once: a burst beyond the per-peer
queue is dropped), the broker CPU seconds (every worker process, from /proc) per
delivered message, and, with two workers, how many messages were forwarded between
them (the ``peers`` counters of ``GET /api/v1/cluster``, read from each worker: an
HTTP request lands on one worker, so the script asks until it has seen both). The
**per-forward cost** is the extra broker CPU of the 2-worker run over the 1-worker run
of the same repeat, divided by the messages forwarded.

Writes bench/results/workers.json. The load generator cannot be pinned apart from the
brokers on a 2-core host (``taskset`` needs spare cores), so on such a host the
workers and the clients share both cores; numbers are only comparable within a run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
import urllib.request
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

TOPIC = "fan/in"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def worker_pids(proc: BrokerProcess, workers: int) -> list[int]:
    assert proc.proc is not None
    if workers == 1:
        return [proc.proc.pid]
    state = json.loads((Path(proc.data_dir) / "workers" / "workers.json").read_text())
    return [int(w["pid"]) for w in state["workers"]]


def forwarded(http: tuple[str, int], workers: int) -> tuple[int, int]:
    """Messages forwarded between workers so far, and how many of them over the
    same-host link, summed over every worker's view."""
    if workers == 1:
        return 0, 0
    seen: dict[str, tuple[int, int]] = {}
    for _ in range(50):
        with urllib.request.urlopen(f"http://{http[0]}:{http[1]}/api/v1/cluster", timeout=5) as r:
            status = json.loads(r.read())
        peers = status["peers"]
        seen[status["node_id"]] = (int(peers["forwarded"]), int(peers.get("link_forwarded", 0)))
        if len(seen) == workers:
            return sum(f for f, _l in seen.values()), sum(n for _f, n in seen.values())
    raise RuntimeError(f"saw only workers {sorted(seen)} through the shared HTTP port")


def start(
    workers: int, local_link: str = "auto"
) -> tuple[BrokerProcess, dict[str, tuple[str, int]]]:
    env = {
        "FLUXMQ_STORAGE__DRIVER": "memory",
        "FLUXMQ_LOG__LEVEL": "warning",
        # A burst must not overflow the queue towards the other worker.
        "FLUXMQ_CLUSTER__PEER_QUEUE_MAX": "1000000",
    }
    if local_link != "auto":  # (unset by default: older builds know no such key)
        env["FLUXMQ_CLUSTER__LOCAL_LINK"] = local_link
    proc = BrokerProcess(["--plugins", "mqtt,etcd", "--workers", str(workers)], env=env)
    return proc, proc.start(timeout=60)


def stop(proc: BrokerProcess) -> None:
    try:
        proc.signal(15)
        proc.wait(30)
    finally:
        proc.close()


def flow(
    port: int, scenario: str, publishers: int, messages: int, payload: int
) -> tuple[float, int]:
    """``fanin``: every publisher to one subscriber's topic; ``pairs``: publisher i to
    subscriber i on a topic of its own. Return (delivered per second, delivered)."""
    topics = [TOPIC] if scenario == "fanin" else [f"{TOPIC}/{i}" for i in range(publishers)]
    subs = []
    for i, topic in enumerate(topics):
        s = mqtt_connect("127.0.0.1", port, f"bench-sub-{i}", rcvbuf=1 << 20)
        mqtt_subscribe(s, topic, 0)
        subs.append(s)
    pubs = [mqtt_connect("127.0.0.1", port, f"bench-pub-{i}") for i in range(publishers)]
    # Each publisher's worker must know its subscription (through etcd): probe.
    for i, pub in enumerate(pubs):
        sub, topic = subs[i % len(subs)], topics[i % len(topics)]
        probe = publish_packet(topic, b"p", 0)
        probe_until_delivered(
            pub, sub, probe, "a subscription never became visible to its publisher"
        )
    for sub in subs:
        drain_socket(sub)
    per_pub = messages // publishers
    packets = [publish_packet(t, b"x" * payload, 0) for t in topics]
    size = len(packets[0])
    want = [per_pub * publishers * size // len(subs)] * len(subs)
    got = [0] * len(subs)
    done_at = [0.0] * len(subs)

    def receive(i: int) -> None:
        sock = subs[i]
        sock.settimeout(5)
        while got[i] < want[i]:
            try:
                chunk = sock.recv(1 << 20)
            except TimeoutError:
                break
            if not chunk:
                break
            got[i] += len(chunk)
            done_at[i] = time.monotonic()

    def send(i: int) -> None:
        send_batched(pubs[i], packets[i % len(packets)], per_pub)

    receivers = [threading.Thread(target=receive, args=(i,)) for i in range(len(subs))]
    for t in receivers:
        t.start()
    t0 = time.monotonic()
    senders = [threading.Thread(target=send, args=(i,)) for i in range(publishers)]
    for t in senders:
        t.start()
    for t in [*senders, *receivers]:
        t.join(120)
    for s in [*subs, *pubs]:
        s.close()
    delivered = sum(got) // size
    elapsed = max(done_at) - t0
    return (delivered / elapsed if elapsed > 0 else 0.0), delivered


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=40_000)
    ap.add_argument("--publishers", type=int, default=4)
    ap.add_argument("--payload", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--scenarios", default="fanin,pairs")
    ap.add_argument("--quick", action="store_true", help="8,000 messages, one repeat")
    ap.add_argument(
        "--local-link",
        choices=["auto", "off"],
        default="auto",
        help="[cluster] local_link of the workers: 'off' forwards over gRPC",
    )
    args = ap.parse_args()
    if args.quick:
        args.messages, args.repeat = 8_000, 1
    if not 1 <= args.publishers <= 9:
        ap.error("--publishers: 1 to 9")
    scenarios = [x.strip() for x in args.scenarios.split(",") if x.strip()]
    if not set(scenarios) <= {"fanin", "pairs"}:
        ap.error("--scenarios: fanin and/or pairs")
    try:
        from fluxmq_etcd.testing import etcd_missing_reason
    except ImportError:
        print("fluxmq-etcd is not installed", file=sys.stderr)
        return 2
    if etcd_missing_reason():
        print(f"{etcd_missing_reason()} (apt-get install etcd-server)", file=sys.stderr)
        return 2
    runs: list[dict[str, Any]] = []
    sent = args.messages // args.publishers * args.publishers
    for rep in range(args.repeat):
        for workers in (1, 2):
            proc, bound = start(workers, args.local_link)
            try:
                pids = worker_pids(proc, workers)
                for scenario in scenarios:
                    fwd0, link0 = forwarded(bound["http.bind"], workers)
                    cpu0 = cpu_seconds(pids)
                    rate, delivered = flow(
                        bound["mqtt.tcp"][1], scenario, args.publishers, args.messages, args.payload
                    )
                    cpu = cpu_seconds(pids) - cpu0
                    fwd, link = forwarded(bound["http.bind"], workers)
                    fwd, link = fwd - fwd0, link - link0
                    run = {
                        "repeat": rep,
                        "scenario": scenario,
                        "workers": workers,
                        "rate": rate,
                        "delivered": delivered,
                        "sent": sent,
                        "cpu_s": cpu,
                        "cpu_us_per_msg": cpu / delivered * 1e6 if delivered else None,
                        "forwarded": fwd,
                        "forwarded_over_link": link,
                    }
                    runs.append(run)
                    print(
                        f"  repeat {rep} {scenario} workers {workers}: {rate:,.0f} msg/s, "
                        f"{delivered}/{sent} delivered, "
                        f"{run['cpu_us_per_msg'] or 0:.1f} us CPU/msg, {fwd} forwarded "
                        f"({link} over the same-host link)",
                        flush=True,
                    )
            finally:
                stop(proc)
    pairs: list[dict[str, Any]] = []
    for scenario in scenarios:
        for rep in range(args.repeat):
            one, two = (r for r in runs if r["repeat"] == rep and r["scenario"] == scenario)
            extra = (
                (two["cpu_s"] - two["delivered"] * one["cpu_s"] / one["delivered"])
                / two["forwarded"]
                if two["forwarded"] and one["delivered"]
                else None
            )
            pairs.append(
                {
                    "scenario": scenario,
                    "repeat": rep,
                    "ratio": two["rate"] / one["rate"] if one["rate"] else None,
                    "cpu_ratio": (two["cpu_us_per_msg"] or 0) / (one["cpu_us_per_msg"] or 1),
                    "forwarded_share": two["forwarded"] / two["delivered"]
                    if two["delivered"]
                    else None,
                    "extra_cpu_us_per_forward": extra * 1e6 if extra is not None else None,
                }
            )
    summary: dict[str, Any] = {}
    print(
        f"\nQoS 0, {args.publishers} publishers, {args.messages:,} messages, "
        f"{args.payload}-byte payload; 2 workers against 1 in the same repeat"
    )
    for scenario in scenarios:
        mine = [p for p in pairs if p["scenario"] == scenario]
        ratios = [p["ratio"] for p in mine if p["ratio"] is not None]
        extras = [p["extra_cpu_us_per_forward"] for p in mine if p["extra_cpu_us_per_forward"]]
        summary[scenario] = {
            "ratio_median": statistics.median(ratios) if ratios else None,
            "extra_cpu_us_per_forward_median": statistics.median(extras) if extras else None,
        }
        for p in mine:
            print(
                f"  {scenario} repeat {p['repeat']}: rate ratio {p['ratio'] or 0:.2f}, "
                f"CPU/msg ratio {p['cpu_ratio']:.2f}, forwarded share "
                f"{p['forwarded_share'] or 0:.2f}, extra CPU per forward "
                f"{p['extra_cpu_us_per_forward'] or 0:.1f} us"
            )
    print(json.dumps(summary, indent=2))
    out = HERE / "results" / "workers.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "args": vars(args),
                "cpus": len(os.sched_getaffinity(0)),
                "load_average": os.getloadavg(),
                "runs": runs,
                "pairs": pairs,
                "summary": summary,
            },
            indent=2,
        )
    )
    print(f"wrote {out.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
