"""Run the benchmark suite against FluxMQ and its peers, interleaved: one command.

    uv run python bench/run.py [--quick] [--peers mosquitto,fluxmq,amqtt,rabbitmq]
                               [--scenarios fanin_qos0,...] [--repeat N]

MQTT scenarios (bench/loadgen.py): every (repeat, scenario, peer) cell starts a
fresh broker on a free loopback port, runs one scenario and stops the broker.
``queue_durable`` ($queue/ publish-to-consume, bench/queue_mqtt.py) runs on FluxMQ
only ("n/a: no queues" for the others); ``amqp091`` (bench/amqp091.py: publish,
publish with confirms, consume, consume no-ack) runs on FluxMQ and RabbitMQ
("n/a" for the MQTT-only peers; RabbitMQ has no MQTT cells here).
Peers alternate inside each scenario (A, B, A, B, ...) so that slow drifts of a
shared machine hit all of them alike. A peer that cannot be installed or started,
or a scenario that times out, is reported as "failed: <why>" and the run goes on.

Prints a table of medians with [min-max] and the ratio FluxMQ/peer, the load
generator's CPU share and the broker's CPU use per scenario, and writes JSON to
bench/results/mqtt-<timestamp>.json and bench/results/mqtt-latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import loadgen  # noqa: E402
from peers import PeerError, make_peer, raise_fd_limit  # noqa: E402

# (scenario, metric key, label, higher is better, format)
ROWS = [
    ("fanin_qos0", "rate", "QoS 0 fan-in 8->1, delivered/s", True, "int"),
    ("fanin_qos1", "rate", "QoS 1 fan-in 8->1 (window 32), delivered/s", True, "int"),
    ("fanin_qos1", "lost_pct", "QoS 1 fan-in: lost, % of acked", False, "pct"),
    ("fanin_qos2", "rate", "QoS 2 fan-in 8->1 (window 32), delivered/s", True, "int"),
    ("fanin_qos2", "lost_pct", "QoS 2 fan-in: lost, % of PUBREC'd", False, "pct"),
    ("fanout_qos0", "rate", "QoS 0 fan-out 1->100, deliveries/s", True, "int"),
    ("latency", "p50_us", "latency at 5,000 msg/s, p50 us", False, "f1"),
    ("latency", "p99_us", "latency at 5,000 msg/s, p99 us", False, "f1"),
    ("latency_qos1", "p50_us", "QoS 1 at 20,000 msg/s, p50 us", False, "f1"),
    ("latency_qos1", "p99_us", "QoS 1 at 20,000 msg/s, p99 us", False, "f1"),
    ("latency_qos1", "lost_pct", "QoS 1 at 20,000 msg/s: lost, % of acked", False, "pct"),
    ("retained", "rate", "retained: 10,000 topics -> 10 subs on '#', delivered/s", True, "int"),
    ("retained", "time_s", "retained: time until every sub has all, s", False, "f2"),
    ("ws_fanin_qos0", "rate", "WebSocket QoS 0 fan-in 8->1, delivered/s", True, "int"),
    (
        "queue_durable",
        "consume_per_s",
        "$queue/ durable (sync) publish->consume, msg/s",
        True,
        "int",
    ),
    ("queue_durable", "lost", "$queue/ durable: acked but not consumed", False, "int"),
    ("idle_conns", "bytes_per_conn", "idle connections: broker bytes/conn", False, "int"),
    ("amqp091", "publish", "AMQP 0.9.1 publish, persistent, msg/s", True, "int"),
    ("amqp091", "publish+confirms", "AMQP 0.9.1 publish + confirms, msg/s", True, "int"),
    ("amqp091", "consume", "AMQP 0.9.1 consume (acks), msg/s", True, "int"),
    ("amqp091", "consume no-ack", "AMQP 0.9.1 consume no-ack, msg/s", True, "int"),
]
CPU_SCENARIOS = [
    "fanin_qos0",
    "fanin_qos1",
    "fanin_qos2",
    "fanout_qos0",
    "latency",
    "latency_qos1",
    "ws_fanin_qos0",
]
MQTT_PEERS = ("mosquitto", "fluxmq", "amqtt")
ALL_PEERS = ("mosquitto", "fluxmq", "amqtt", "rabbitmq")
# scenarios run with their own client and broker start-up (not bench/loadgen.py)
QUEUE_SCENARIOS = ["queue_durable"]
AMQP_SCENARIOS = ["amqp091"]
SCENARIOS = loadgen.SCENARIOS + QUEUE_SCENARIOS + AMQP_SCENARIOS


def not_applicable(scen: str, peer: str) -> str | None:
    """Why a cell cannot exist ("n/a: ..."), else None."""
    if scen in AMQP_SCENARIOS:
        return None if peer in ("fluxmq", "rabbitmq") else "n/a: no AMQP 0.9.1"
    if peer == "rabbitmq":
        return "n/a: RabbitMQ runs here for the AMQP rows only"
    if scen in QUEUE_SCENARIOS and peer != "fluxmq":
        return "n/a: no queues"
    return None


def machine_info() -> dict:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
    }


def fmt(v, kind: str) -> str:
    if v is None:
        return "-"
    if kind == "int":
        return f"{v:,.0f}"
    if kind == "pct":
        return f"{v:.1f}%"
    if kind == "f1":
        return f"{v:,.1f}"
    if kind == "f2":
        return f"{v:.2f}"
    return str(v)


def summarize(cells: list[dict], peers: list[str]) -> dict:
    """{scenario: {metric: {peer: {median, min, max, n} | {error}}}}."""
    out: dict = {}
    for scen, key, *_ in ROWS + [
        (s, k, None, None, None)
        for s in CPU_SCENARIOS
        for k in ("loadgen_share", "loadgen_cores", "broker_cores", "machine_busy_cores")
    ]:
        for peer in peers:
            mine = [c for c in cells if c["scenario"] == scen and c["peer"] == peer]
            if not mine:
                continue
            vals = [
                c["metrics"][key] for c in mine if c.get("ok") and c["metrics"].get(key) is not None
            ]
            slot = out.setdefault(scen, {}).setdefault(key, {})
            if vals:
                slot[peer] = {
                    "median": statistics.median(vals),
                    "min": min(vals),
                    "max": max(vals),
                    "n": len(vals),
                }
            else:
                errs = [c.get("error", "") for c in mine if not c.get("ok")]
                slot[peer] = {"error": errs[0] if errs else "no value"}
    return out


def print_table(summary: dict, peers: list[str], reps: int) -> list[str]:
    lines = []
    others = [p for p in peers if p != "fluxmq"]
    ratio_cols = [f"fluxmq/{p}" for p in others] if "fluxmq" in peers else []
    header = ["scenario"] + peers + ratio_cols
    rows = []
    for scen, key, label, higher, kind in ROWS:
        cell = summary.get(scen, {}).get(key)
        if not cell:
            continue
        row = [label]
        for p in peers:
            v = cell.get(p)
            if v is None:
                row.append("-")
            elif "error" in v:
                e = v["error"]
                row.append(
                    e
                    if e.startswith("n/a") and len(e) < 40
                    else "n/a"
                    if e.startswith("n/a")
                    else "not installed"
                    if e.startswith("not installed")
                    else "failed"
                )
            elif v["n"] > 1:
                row.append(
                    f"{fmt(v['median'], kind)} [{fmt(v['min'], kind)}-{fmt(v['max'], kind)}]"
                )
            else:
                row.append(fmt(v["median"], kind))
        for p in others if ratio_cols else []:
            f, o = cell.get("fluxmq"), cell.get(p)
            if f and o and "median" in f and "median" in o and o["median"]:
                r = f["median"] / o["median"]
                row.append(f"{r:.2f}x" + ("" if higher else " (lower is better)"))
            else:
                row.append("-")
        rows.append(row)
    for scen in CPU_SCENARIOS:
        for key, label in (
            ("loadgen_share", f"{scen}: load generator CPU share of machine"),
            ("broker_cores", f"{scen}: broker CPU, cores"),
            ("machine_busy_cores", f"{scen}: whole machine busy, cores"),
        ):
            cell = summary.get(scen, {}).get(key)
            if not cell:
                continue
            row = [label]
            for p in peers:
                v = cell.get(p)
                if not v or "median" not in v:
                    row.append("-")
                elif key == "loadgen_share":
                    row.append(f"{v['median'] * 100:.0f}%")
                else:
                    row.append(f"{v['median']:.2f}")
            row += ["" for _ in ratio_cols]
            rows.append(row)
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]

    def line(r):
        return "| " + " | ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=False)) + " |"

    lines.append(f"medians of {reps} run(s), [min-max] when more than one")
    lines.append(line(header))
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += [line(r) for r in rows]
    notes = []
    seen_na = set()
    for scen, metrics in summary.items():
        for p in peers:
            v = next((m[p] for m in metrics.values() if p in m), None)
            if not v or "error" not in v:
                continue
            e = v["error"]
            if e.startswith("n/a"):
                if len(e) >= 40 and (p, e) not in seen_na:
                    seen_na.add((p, e))
                    notes.append(f"{p}: {e}")
            else:
                notes.append(f"{p} {scen}: {e[:300]}")
    if notes:
        lines.append("")
        lines += notes
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description="MQTT benchmark: FluxMQ beside its peers.")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="short runs (2 s windows, 2,000 idle connections, 1 repeat)",
    )
    ap.add_argument(
        "--peers",
        default=",".join(ALL_PEERS),
        help="comma-separated: mosquitto, fluxmq, amqtt, rabbitmq (AMQP rows "
        "only) (default: all four)",
    )
    ap.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help="comma-separated, default all: " + ",".join(SCENARIOS),
    )
    ap.add_argument(
        "--amqp-messages",
        type=int,
        default=None,
        help="messages per AMQP 0.9.1 step (default 20,000; 5,000 with --quick)",
    )
    ap.add_argument(
        "--queue-messages",
        type=int,
        default=None,
        help="messages through the $queue/ scenario (default 20,000; 5,000 with --quick)",
    )
    ap.add_argument("--repeat", type=int, default=None, help="repeats (default 3, 1 with --quick)")
    ap.add_argument("--duration", type=float, default=None, help="measurement window, seconds")
    ap.add_argument("--warmup", type=float, default=None, help="warm-up before the window")
    ap.add_argument("--idle-conns", type=int, default=None, help="idle connections (default 5000)")
    ap.add_argument("--publishers", type=int, default=None, help="fan-in publishers (default 8)")
    ap.add_argument("--out-dir", default=str(HERE / "results"))
    a = ap.parse_args()

    peers = [p.strip() for p in a.peers.split(",") if p.strip()]
    scenarios = [s.strip() for s in a.scenarios.split(",") if s.strip()]
    bad = [s for s in scenarios if s not in SCENARIOS]
    if bad:
        ap.error(f"unknown scenario(s): {', '.join(bad)}")
    badp = [p for p in peers if p not in ALL_PEERS]
    if badp:
        ap.error(f"unknown peer(s): {', '.join(badp)}")
    reps = a.repeat or (1 if a.quick else 3)
    cfg: dict = {}
    if a.quick:
        cfg.update(duration=2.0, warmup=0.5, idle_conns=2000)
    for k, v in (
        ("duration", a.duration),
        ("warmup", a.warmup),
        ("idle_conns", a.idle_conns),
        ("publishers", a.publishers),
    ):
        if v is not None:
            cfg[k] = v
    params = dict(loadgen.DEFAULTS)
    params.update(cfg)
    params["amqp_messages"] = a.amqp_messages or (5000 if a.quick else 20000)
    params["queue_messages"] = a.queue_messages or (5000 if a.quick else 20000)
    fd_limit = raise_fd_limit()
    if fd_limit < params["idle_conns"] + 200:
        params["idle_conns"] = cfg["idle_conns"] = max(100, fd_limit - 200)
        print(f"note: fd limit {fd_limit}, idle connections lowered to {params['idle_conns']}")

    machine = machine_info()
    print(
        f"machine: {machine['cpu_model']}, {machine['cores']} cores, kernel {machine['kernel']}, "
        f"Python {machine['python']}"
    )
    print(
        f"scenarios: {', '.join(scenarios)}; peers: {', '.join(peers)}; repeats: {reps}; "
        f"window {params['duration']} s after {params['warmup']} s warm-up"
    )

    cells: list[dict] = []
    peer_info: dict = {}
    start_failures: dict[str, int] = {}  # consecutive failed starts per peer
    first_start_error: dict[str, str] = {}
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="fluxmq-bench-") as tmp:
        objs = {}
        need_mqtt = any(s not in AMQP_SCENARIOS for s in scenarios)
        for name in peers:
            if name == "rabbitmq" or (not need_mqtt and name != "fluxmq"):
                continue
            try:
                objs[name] = make_peer(name, Path(tmp))
            except PeerError as exc:
                peer_info[name] = {"status": f"failed: {exc}"}
        for name, peer in objs.items():
            why = peer.available()
            peer_info[name] = {
                "version": peer.version() if not why else None,
                "status": why or "ok",
            }
            print(f"peer {name}: {peer_info[name]['version'] or why}")
        if "rabbitmq" in peers and any(s in AMQP_SCENARIOS for s in scenarios):
            peer_info["rabbitmq"] = amqp_peer_info(Path(tmp))
            print(
                f"peer rabbitmq: {peer_info['rabbitmq'].get('version') or peer_info['rabbitmq']['status']}"
            )
        for rep in range(reps):
            for scen in scenarios:
                order = peers if rep % 2 == 0 else list(reversed(peers))
                for name in order:
                    cell = {"peer": name, "scenario": scen, "repeat": rep, "ok": False}
                    cells.append(cell)
                    na = not_applicable(scen, name)
                    if na is None and scen.startswith("ws_") and name in objs:
                        na = objs[name].no_websocket
                    if na:
                        cell["error"] = na
                        if rep == 0:
                            print(f"[{rep + 1}/{reps}] {scen:12s} {name:10s} {na}")
                        continue
                    if scen in AMQP_SCENARIOS or scen in QUEUE_SCENARIOS:
                        t = time.monotonic()
                        try:
                            if scen in AMQP_SCENARIOS:
                                cell["metrics"] = run_amqp(name, Path(tmp), params)
                            else:
                                cell["metrics"] = run_queue(params)
                            cell["ok"] = True
                        except Exception as exc:  # noqa: BLE001 - keep going
                            cell["error"] = f"failed: {type(exc).__name__}: {exc}"
                        cell["seconds"] = round(time.monotonic() - t, 1)
                        print(
                            f"[{rep + 1}/{reps}] {scen:12s} {name:10s} {_brief(cell)}", flush=True
                        )
                        continue
                    peer = objs.get(name)
                    if peer is None:
                        cell["error"] = peer_info[name]["status"]
                        continue
                    if start_failures.get(name, 0) >= 2:
                        cell["error"] = (
                            f"failed: skipped after {start_failures[name]} failed "
                            f"starts ({first_start_error[name]})"
                        )
                        print(f"[{rep + 1}/{reps}] {scen:12s} {name:10s} skipped (did not start)")
                        continue
                    if peer_info[name]["status"] != "ok":
                        cell["error"] = peer_info[name]["status"]
                        print(f"[{rep + 1}/{reps}] {scen:12s} {name:10s} {cell['error']}")
                        continue
                    t = time.monotonic()
                    try:
                        peer.start()
                        peer_info[name].setdefault("info", peer.info())
                        port = peer.port
                        run_cfg = dict(cfg)
                        if scen.startswith("ws_"):
                            if not peer.ws_port:
                                raise loadgen.ScenarioFailed("no WebSocket listener")
                            port = peer.ws_port
                            run_cfg["ws_path"] = "/mqtt"
                        m = loadgen.run_scenario(scen, peer.host, port, run_cfg, broker=peer)
                        if not peer.alive():
                            raise loadgen.ScenarioFailed(
                                "broker exited during the run: " + peer.log_tail()
                            )
                        if "acked" in m:
                            m["lost_pct"] = 100.0 * m["lost"] / m["acked"] if m["acked"] else 0.0
                        cell["metrics"] = m
                        cell["ok"] = True
                        start_failures[name] = 0
                    except PeerError as exc:
                        cell["error"] = f"failed: {exc}"
                        start_failures[name] = start_failures.get(name, 0) + 1
                        first_start_error.setdefault(name, str(exc))
                    except loadgen.ScenarioFailed as exc:
                        cell["error"] = f"failed: {exc}"
                    except Exception as exc:  # noqa: BLE001 - keep going
                        cell["error"] = f"failed: {type(exc).__name__}: {exc}"
                    finally:
                        peer.stop()
                    cell["seconds"] = round(time.monotonic() - t, 1)
                    print(f"[{rep + 1}/{reps}] {scen:12s} {name:10s} {_brief(cell)}", flush=True)

    summary = summarize(cells, peers)
    print()
    table = print_table(summary, peers, reps)
    print("\n".join(table))
    result = {
        "suite": "mqtt",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "elapsed_s": round(time.time() - started, 1),
        "command": "uv run python bench/run.py " + " ".join(sys.argv[1:]),
        "machine": machine,
        "params": params,
        "peers": peer_info,
        "summary": summary,
        "table": table,
        "cells": cells,
    }
    out_dir = Path(a.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    text = json.dumps(result, indent=1, default=str)
    (out_dir / f"mqtt-{stamp}.json").write_text(text)
    (out_dir / "mqtt-latest.json").write_text(text)
    try:
        shown = (out_dir / f"mqtt-{stamp}.json").relative_to(Path.cwd())
    except ValueError:
        shown = f"mqtt-{stamp}.json in the results directory"
    print(f"\nwrote {shown} and mqtt-latest.json")
    return 0


def amqp_peer_info(workdir: Path) -> dict:
    try:
        import amqp091
    except Exception as exc:  # noqa: BLE001 - pamqp or the plugin missing
        return {"status": f"not installed: AMQP client ({exc})"}
    rmq = amqp091.RabbitMQ(workdir / "rabbitmq-probe")
    why = rmq.available()
    if why:
        return {"status": f"not installed: {why}"}
    return {"status": "ok", "version": rmq.version()}


def run_amqp(name: str, workdir: Path, params: dict) -> dict:
    """One broker start, then bench/amqp091.py's four steps (publish, publish with
    confirms, consume with acks, consume no-ack) over a bounded number of persistent
    messages. Every socket wait of that client has a 60 s timeout."""
    import amqp091

    work = Path(tempfile.mkdtemp(prefix=f"amqp-{name}-", dir=workdir))
    broker = amqp091.FluxMQ(work) if name == "fluxmq" else amqp091.RabbitMQ(work)
    if hasattr(broker, "available"):
        why = broker.available()
        if why:
            raise RuntimeError(f"not installed: {why}")
    t = time.monotonic()
    try:
        broker.start()
        start_s = time.monotonic() - t
        cpu: dict[str, float] = {}
        pid = broker.proc.pid if getattr(broker, "proc", None) else None
        rates = amqp091.scenarios(broker.port, params["amqp_messages"], 100, pid, cpu)
    except Exception as exc:
        log = work / f"{broker.name}.log"
        tail = log.read_text(errors="replace")[-300:].replace("\n", " | ") if log.exists() else ""
        raise RuntimeError(f"{exc} {tail}".strip()) from None
    finally:
        broker.stop()
    return dict(
        rates,
        messages=params["amqp_messages"],
        body=100,
        start_s=round(start_s, 1),
        cpu_us_per_msg=cpu,
    )


def run_queue(params: dict) -> dict:
    """bench/queue_mqtt.py's durable scenario: 4 MQTT publishers (QoS 1, window 100)
    into $queue/bench/..., 2 consumers in one group; its own FluxMQ start."""
    import queue_mqtt

    r = queue_mqtt.run("durable", queue_mqtt.DURABLE, params["queue_messages"], 4, 2, 100)
    r["lost"] = max(0, r["messages"] - r["consumed"])
    return r


def _brief(cell: dict) -> str:
    if not cell.get("ok"):
        return cell.get("error", "failed")
    m = cell["metrics"]
    s = cell["scenario"]
    if s == "amqp091":
        return ", ".join(
            f"{k} {m[k]:,.0f}/s"
            for k in ("publish", "publish+confirms", "consume", "consume no-ack")
            if k in m
        )
    if s == "queue_durable":
        return (
            f"{m['consume_per_s']:,}/s consumed, {m['publish_per_s']:,}/s published, "
            f"{m['consumed']:,}/{m['messages']:,} consumed"
        )
    if s == "retained":
        return (
            f"{m['received']:,}/{m['expected']:,} retained in {m['time_s']:.2f} s "
            f"({m['rate']:,.0f}/s); set in {m['set_s']:.2f} s"
        )
    lg = f"loadgen {m.get('loadgen_share', 0) * 100:.0f}% of machine, broker {m.get('broker_cores') or 0:.2f} cores"
    if s == "idle_conns":
        return (
            f"{m['conns']} conns, {m['bytes_per_conn']:,.0f} B/conn "
            f"(RSS {m['rss_before'] / 1e6:.1f} -> {m['rss_after'] / 1e6:.1f} MB)"
        )
    if s.startswith("latency"):
        return (
            f"p50 {m['p50_us']:.0f} us, p99 {m['p99_us']:.0f} us, "
            f"{m['received']}/{m['expected']} received"
            + (f", lost {m['lost']:,}" if "lost" in m else "")
            + f"; {lg}"
        )
    if s in ("fanin_qos1", "fanin_qos2"):
        return (
            f"{m['rate']:,.0f}/s delivered, {m['acked']:,} acked, lost {m['lost']:,} "
            f"({m['lost_pct']:.1f}%); {lg}"
        )
    return f"{m['rate']:,.0f}/s (published {m['published']:,}); {lg}"


if __name__ == "__main__":
    sys.exit(main())
