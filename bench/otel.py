"""What the fluxmq-otel plugin costs on the publish path: QoS 0 fan-in through
``fluxmq run`` with the plugin off, with metrics only (the default: observable
instruments, nothing per message), and with traces at ``sample_rate`` 0.01 and 1.0.

Each mode starts its own broker process (``--plugins mqtt`` or ``mqtt,otel``, the
``[otel]`` keys as ``FLUXMQ_OTEL__*`` environment variables; no OTLP endpoint, so
spans are made and sampled but not sent anywhere) and runs the load generator's
``fanin_qos0`` scenario against it, ``--rounds`` times, modes interleaved so that a
noisy neighbour hurts every mode alike. The figure is the median delivered rate;
the table shows each mode beside off. Writes ``bench/results/otel.json``.

Loopback only; every wait has a deadline. On a shared 2-core machine the spread
between rounds is often larger than the effect measured: read the min/max columns.
``python bench/otel.py [--duration S] [--rounds N] [--publishers P]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import loadgen  # noqa: E402
from peers import FluxMQ  # noqa: E402

MODES: dict[str, tuple[str, dict[str, str]]] = {
    "off": ("mqtt", {}),
    "metrics": ("mqtt,otel", {"FLUXMQ_OTEL__METRICS": "true"}),
    "traces 0.01": (
        "mqtt,otel",
        {"FLUXMQ_OTEL__TRACES": "true", "FLUXMQ_OTEL__SAMPLE_RATE": "0.01"},
    ),
    "traces 1.0": (
        "mqtt,otel",
        {"FLUXMQ_OTEL__TRACES": "true", "FLUXMQ_OTEL__SAMPLE_RATE": "1.0"},
    ),
    # Not run by default: the cost of the sampling decision alone (nothing sampled).
    "traces 0": (
        "mqtt,otel",
        {"FLUXMQ_OTEL__TRACES": "true", "FLUXMQ_OTEL__SAMPLE_RATE": "0"},
    ),
}
DEFAULT_MODES = ("off", "metrics", "traces 0.01", "traces 1.0")


class OtelFluxMQ(FluxMQ):
    """The bench's FluxMQ peer with a chosen plugin set and extra environment."""

    def __init__(self, workdir: Path, plugins: str, env: dict[str, str]) -> None:
        super().__init__(workdir)
        self.plugins = plugins
        self.extra_env = env

    def _launch(self) -> None:
        from peers import free_port

        self.port = free_port()
        data = self.workdir / "data"
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True, exist_ok=True)
        self.ready_file.unlink(missing_ok=True)
        env = dict(
            os.environ,
            FLUXMQ_MQTT__TCP=f"127.0.0.1:{self.port}",
            FLUXMQ_MQTT__WEBSOCKET="",
            FLUXMQ_HTTP__BIND=f"127.0.0.1:{free_port()}",
            **self.extra_env,
        )
        self.proc = subprocess.Popen(
            self.cmd
            + ["run", "--plugins", self.plugins, "--data-dir", str(data)]
            + ["--ready-file", str(self.ready_file), "--log-level", "warning"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=self.workdir,
        )


def run(
    duration: float, rounds: int, publishers: int, modes: tuple[str, ...] = DEFAULT_MODES
) -> dict:
    rates: dict[str, list[float]] = {m: [] for m in modes}
    cores: dict[str, list[float]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory(prefix="fluxmq-bench-otel-") as tmp:
        for r in range(rounds):
            for mode in modes:
                plugins, env = MODES[mode]
                peer = OtelFluxMQ(Path(tmp) / mode.replace(" ", "_"), plugins, env)
                peer.start()
                try:
                    res = loadgen.run_scenario(
                        "fanin_qos0",
                        peer.host,
                        peer.port,
                        {"duration": duration, "publishers": publishers},
                        broker=peer,
                    )
                finally:
                    peer.stop()
                rates[mode].append(res["rate"])
                cores[mode].append(res.get("broker_cores") or 0.0)
                print(f"round {r + 1} {mode:12} {res['rate']:>12,.0f} msg/s", flush=True)
    base = statistics.median(rates["off"])
    # Messages per second of broker CPU: what a mode costs per message even when a
    # busy neighbour takes cores away from the broker (the rate alone then says more
    # about the neighbour than about the mode).
    per_cpu = {m: [r / c for r, c in zip(rates[m], cores[m], strict=True) if c] for m in modes}
    base_cpu = statistics.median(per_cpu["off"]) if per_cpu["off"] else 0.0
    rows = {}
    for mode in modes:
        med = statistics.median(rates[mode])
        cpu = statistics.median(per_cpu[mode]) if per_cpu[mode] else 0.0
        rows[mode] = {
            "median_msgs_per_s": round(med),
            "min": round(min(rates[mode])),
            "max": round(max(rates[mode])),
            "vs_off": round(med / base, 3) if base else None,
            "broker_cores": round(statistics.median(cores[mode]), 3),
            "msgs_per_cpu_s": round(cpu),
            "cpu_vs_off": round(cpu / base_cpu, 3) if base_cpu else None,
            "rounds": [round(x) for x in rates[mode]],
        }
    return {
        "scenario": "fanin_qos0",
        "duration_s": duration,
        "publishers": publishers,
        "rounds": rounds,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "modes": rows,
    }


def table(result: dict) -> str:
    lines = [
        "| mode | msg/s (median) | min | max | vs off | broker cores "
        "| msg per broker CPU-s | vs off (CPU) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode, row in result["modes"].items():
        lines.append(
            f"| {mode} | {row['median_msgs_per_s']:,} | {row['min']:,} | {row['max']:,} "
            f"| {row['vs_off']:.2f} | {row['broker_cores']:.2f} "
            f"| {row['msgs_per_cpu_s']:,} | {row['cpu_vs_off']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--publishers", type=int, default=4)
    ap.add_argument("--out", default=str(HERE / "results" / "otel.json"))
    ap.add_argument(
        "--modes",
        default=",".join(DEFAULT_MODES),
        help=f"comma-separated, 'off' first; of {', '.join(MODES)}",
    )
    args = ap.parse_args()
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    unknown = [m for m in modes if m not in MODES]
    if unknown or "off" not in modes:
        ap.error(f"--modes needs 'off' and known modes; unknown: {unknown}")
    result = run(args.duration, args.rounds, args.publishers, modes)
    print(table(result))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
