"""The performance targets table, rendered from one ``bench/run.py`` run.

``docs/performance.md`` quotes the targets as a table that must come from a single
full run (same-run ratios, medians over the repeats). This script reads that run's
JSON and renders the table, so the figures in the docs are the run's figures and
nothing typed by hand. Each row also gives the broker's CPU time per message where
the run recorded it: on a shared machine that is the figure a neighbour disturbs
least, and it says what bounds a rate.

    uv run python bench/targets.py                       # print, from mqtt-latest.json
    uv run python bench/targets.py --json bench/results/mqtt-<stamp>.json
    uv run python bench/targets.py --write docs/performance.md

``--write`` replaces the block between ``<!-- targets:begin -->`` and
``<!-- targets:end -->`` in the given file (the markers must exist) and, when the
file also has ``<!-- results:begin -->`` / ``<!-- results:end -->``, the run's whole
table there (``bench/run.py``'s own table, from the same JSON).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
BEGIN = "<!-- targets:begin -->"
END = "<!-- targets:end -->"
RESULTS_BEGIN = "<!-- results:begin -->"
RESULTS_END = "<!-- results:end -->"


@dataclass(frozen=True)
class Target:
    """One row: how to read FluxMQ's figure (and the peer's) and what meets it."""

    label: str
    scenario: str
    metric: str
    peer: str | None  # None: an absolute target, no peer ratio
    goal: str
    met: Callable[[float, float | None], bool]
    higher: bool = True
    kind: str = "int"


def _ratio(f: float, p: float | None) -> float:
    return f / p if p else float("nan")


TARGETS = [
    Target(
        "MQTT QoS 0 fan-in 8->1 vs Mosquitto",
        "fanin_qos0",
        "rate",
        "mosquitto",
        ">= 2.0x",
        lambda f, p: _ratio(f, p) >= 2.0,
    ),
    Target(
        "MQTT QoS 0 fan-out 1->100 vs Mosquitto",
        "fanout_qos0",
        "rate",
        "mosquitto",
        ">= 6x",
        lambda f, p: _ratio(f, p) >= 6.0,
    ),
    Target(
        "MQTT QoS 1 fan-in window 32 vs Mosquitto",
        "fanin_qos1",
        "rate",
        "mosquitto",
        "keep (6.5x; >= 6.0x)",
        lambda f, p: _ratio(f, p) >= 6.0,
    ),
    Target(
        "MQTT QoS 1 fan-in: lost, % of acked",
        "fanin_qos1",
        "lost_pct",
        None,
        "0 lost",
        lambda f, p: f == 0,
        higher=False,
        kind="pct",
    ),
    Target(
        "latency at 5,000/s, p50 vs Mosquitto",
        "latency",
        "p50_us",
        "mosquitto",
        "<= 1.0x",
        lambda f, p: _ratio(f, p) <= 1.0,
        higher=False,
        kind="us",
    ),
    Target(
        "latency at 5,000/s, p99 vs Mosquitto",
        "latency",
        "p99_us",
        "mosquitto",
        "<= 1.0x",
        lambda f, p: _ratio(f, p) <= 1.0,
        higher=False,
        kind="us",
    ),
    Target(
        "idle bytes per connection",
        "idle_conns",
        "bytes_per_conn",
        "mosquitto",
        "<= 2,000 B",
        lambda f, p: f <= 2000,
        higher=False,
    ),
    Target(
        "AMQP 0.9.1 consume with manual acks vs RabbitMQ",
        "amqp091",
        "consume",
        "rabbitmq",
        ">= 1.2x",
        lambda f, p: _ratio(f, p) >= 1.2,
    ),
    Target(
        "AMQP 0.9.1 publish with confirms vs RabbitMQ",
        "amqp091",
        "publish+confirms",
        "rabbitmq",
        ">= 1.5x",
        lambda f, p: _ratio(f, p) >= 1.5,
    ),
    Target(
        "`$queue/` durable publish->consume, msg/s",
        "queue_durable",
        "consume_per_s",
        None,
        ">= 40,000/s",
        lambda f, p: f >= 40000,
    ),
    Target(
        "`$queue/` durable: acked but not consumed",
        "queue_durable",
        "lost",
        None,
        "0 lost",
        lambda f, p: f == 0,
        higher=False,
    ),
]


def _values(cells: list[dict], scenario: str, peer: str, metric: str) -> list[float]:
    return [
        c["metrics"][metric]
        for c in cells
        if c["scenario"] == scenario
        and c["peer"] == peer
        and c.get("ok")
        and isinstance(c.get("metrics"), dict)
        and isinstance(c["metrics"].get(metric), (int, float))
    ]


def _cpu_us(cells: list[dict], t: Target, peer: str) -> float | None:
    """Median broker CPU per message over the cells, in microseconds."""
    per: list[float] = []
    for c in cells:
        if c["scenario"] != t.scenario or c["peer"] != peer or not c.get("ok"):
            continue
        m = c.get("metrics") or {}
        if t.scenario == "amqp091":
            v = (m.get("cpu_us_per_msg") or {}).get(t.metric)
        elif t.scenario == "queue_durable":
            v = m.get("broker_cpu_us_per_msg")
        elif m.get("broker_cores") is not None and m.get("rate"):
            v = m["broker_cores"] / m["rate"] * 1e6
        else:
            v = None
        if isinstance(v, (int, float)):
            per.append(float(v))
    return statistics.median(per) if per else None


def _fmt(v: float, kind: str) -> str:
    if kind == "pct":
        return f"{v:.1f}%"
    if kind == "us":
        return f"{v:,.1f} us"
    return f"{v:,.0f}"


def _cell(vals: list[float], kind: str) -> str:
    med = statistics.median(vals)
    if len(vals) > 1:
        return f"{_fmt(med, kind)} [{_fmt(min(vals), kind)}-{_fmt(max(vals), kind)}]"
    return _fmt(med, kind)


def render(run: dict) -> list[str]:
    """The markdown block: the run's provenance, then one row per target."""
    cells = run.get("cells", [])
    mach = run.get("machine", {})
    params = run.get("params", {})
    reps = max(
        (len(_values(cells, t.scenario, "fluxmq", t.metric)) for t in TARGETS),
        default=0,
    )
    out = [
        f"From one run: `{run.get('command', '?')}` started {run.get('started', '?')}, "
        f"{run.get('elapsed_s', 0) / 60:.1f} minutes; {mach.get('cpu_model', '?')}, "
        f"{mach.get('cores', '?')} cores, Python {mach.get('python', '?')}; "
        f"{params.get('idle_conns', '?')} idle connections; medians of {reps} with [min-max]. "
        "CPU = the broker's CPU time per delivered (or consumed) message, median over the "
        "repeats. Rendered by `bench/targets.py` from the run's JSON.",
        "",
        "| scenario | peer | FluxMQ | ratio | FluxMQ / peer CPU per message | target | met |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for t in TARGETS:
        fv = _values(cells, t.scenario, "fluxmq", t.metric)
        if not fv:
            out.append(f"| {t.label} | - | not measured | - | - | {t.goal} | no |")
            continue
        f = statistics.median(fv)
        peer_cell, ratio, p = "-", "-", None
        if t.peer:
            pv = _values(cells, t.scenario, t.peer, t.metric)
            if pv:
                p = statistics.median(pv)
                peer_cell = _cell(pv, t.kind)
                ratio = f"{_ratio(f, p):.2f}x"
        fc = _cpu_us(cells, t, "fluxmq")
        pc = _cpu_us(cells, t, t.peer) if t.peer else None
        cpu = "-"
        if fc is not None:
            cpu = f"{fc:.2f} us" + (f" / {pc:.2f} us" if pc is not None else "")
        ok = "yes" if (p is not None or not t.peer) and t.met(f, p) else "no"
        out.append(
            f"| {t.label} | {peer_cell} | {_cell(fv, t.kind)} | {ratio} | {cpu} | {t.goal} | {ok} |"
        )
    return out


def results_table(run: dict) -> list[str]:
    """The run's whole table, as ``bench/run.py`` printed it, with its provenance."""
    sys.path.insert(0, str(HERE))
    import run as suite  # bench/run.py: the same table code as the run itself

    peers = [p for p in suite.ALL_PEERS if any(c["peer"] == p for c in run.get("cells", []))]
    reps = run.get("params", {}).get("repeat") or max(
        (
            sum(1 for c in run["cells"] if c["scenario"] == "fanin_qos0" and c["peer"] == p)
            for p in peers
        ),
        default=1,
    )
    mach = run.get("machine", {})
    head = (
        f"Command: `{run.get('command', '?')}`, started {run.get('started', '?')}, "
        f"{run.get('elapsed_s', 0) / 60:.1f} minutes; {mach.get('cpu_model', '?')}, "
        f"{mach.get('cores', '?')} cores, kernel {mach.get('kernel', '?')}, Python "
        f"{mach.get('python', '?')}. Peers: "
        + ", ".join(
            f"{p} {info.get('version', info.get('status', '?'))}"
            for p, info in (run.get("peers") or {}).items()
            if isinstance(info, dict)
        )
        + "."
    )
    table = suite.print_table(run["summary"], peers, reps)
    return [head, "", *(line for line in table if not line.startswith("medians of"))]


def _replace(text: str, begin: str, end: str, block: list[str]) -> str:
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return head + begin + "\n" + "\n".join(block) + "\n" + end + tail


def write(doc: Path, block: list[str], results: list[str] | None = None) -> None:
    text = doc.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{doc}: the markers {BEGIN} and {END} are missing")
    text = _replace(text, BEGIN, END, block)
    if results is not None and RESULTS_BEGIN in text and RESULTS_END in text:
        text = _replace(text, RESULTS_BEGIN, RESULTS_END, results)
    doc.write_text(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", default=str(HERE / "results" / "mqtt-latest.json"))
    ap.add_argument("--write", metavar="DOC", help="replace the targets block in DOC")
    args = ap.parse_args(argv)
    try:
        run = json.loads(Path(args.json).read_text())
    except (OSError, ValueError) as exc:
        print(f"{args.json}: cannot read the run's JSON: {exc}", file=sys.stderr)
        return 2
    block = render(run)
    print("\n".join(block))
    if args.write:
        write(Path(args.write), block, results_table(run))
        print(f"\nwrote the targets block of {args.write}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
