"""Queue API throughput over gRPC beside the same queue through MQTT ``$queue/``.

    uv run python bench/queue_api.py [--messages 5000] [--window 100] [--no-mqtt]

Runs ``fluxmq run --plugins mqtt,queue_api`` as a subprocess on a fresh data
directory with one durable classic queue (default badgerlike QueueLog,
``durability = "sync"``: an append is answered after the group-commit fsync), and
one asyncio client (``fluxmq_queue_api.client``) measuring:

* ``Append``: N unary calls, at most ``--window`` in flight.
* ``AppendQueue``: one client stream of N messages (one answer at the end).
* ``ConsumeQueue``: N messages already queued, one stream with ``max_in_flight``
  1000, acknowledged with ``Ack`` every 100 offsets; until all N arrived.

Beside them, ``bench/queue_mqtt.py``'s durable scenario with one publisher and one
consumer (raw-socket MQTT clients, QoS 1 window ``--window``) against its own
broker: the same queue semantics through the MQTT face.

Every wait has a deadline; loopback only. Writes ``bench/results/queue_api.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEADLINE = 120.0
PAYLOAD = b"x" * 100
CONFIG = """
[queues.bench]
type = "classic"
durability = "sync"
"""


def start_broker(workdir: Path) -> tuple[subprocess.Popen, str]:
    (workdir / "fluxmq.toml").write_text(CONFIG)
    ready = workdir / "ready.json"
    script = Path(sys.executable).parent / "fluxmq"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "fluxmq_core.cli"]
    env = dict(
        os.environ,
        FLUXMQ_MQTT__TCP="127.0.0.1:0",
        FLUXMQ_MQTT__WEBSOCKET="",
        FLUXMQ_HTTP__BIND="",
        FLUXMQ_API__GRPC="127.0.0.1:0",
    )
    log = open(workdir / "broker.log", "wb")
    proc = subprocess.Popen(
        [
            *cmd,
            "run",
            "--plugins",
            "mqtt,queue_api",
            "--config",
            str(workdir / "fluxmq.toml"),
            "--data-dir",
            str(workdir / "data"),
            "--ready-file",
            str(ready),
            "--log-level",
            "warning",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"broker exited: {(workdir / 'broker.log').read_text()}")
        try:
            host, port = json.loads(ready.read_text())["api.grpc"]
            return proc, f"{host}:{port}"
        except (OSError, ValueError, KeyError):
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("broker not ready")


async def bench_api(target: str, n: int, window: int) -> list[dict]:
    from fluxmq_queue_api.client import QueueClient

    rows = []
    async with QueueClient(target) as qc:
        sem = asyncio.Semaphore(window)

        async def one() -> None:
            async with sem:
                await qc.append("bench", PAYLOAD)

        t0 = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(one() for _ in range(n))), DEADLINE)
        rows.append(_row(f"Append (unary, window {window})", n, time.perf_counter() - t0))

        t0 = time.perf_counter()
        r = await asyncio.wait_for(qc.append_stream("bench", (PAYLOAD for _ in range(n))), DEADLINE)
        assert r.count == n
        rows.append(_row("AppendQueue (one stream)", n, time.perf_counter() - t0))

        total = 2 * n  # both appends above are queued
        t0 = time.perf_counter()
        got = 0
        pending: list[int] = []
        stream = qc.consume_queue("bench", "g", "c1", max_in_flight=1000)

        async def drain() -> None:
            nonlocal got
            async for m in stream:
                got += 1
                pending.append(m.offset)
                if len(pending) >= 100:
                    await qc.ack("bench", "g", "c1", pending)
                    pending.clear()
                if got >= total:
                    break

        await asyncio.wait_for(drain(), DEADLINE)
        if pending:
            await qc.ack("bench", "g", "c1", pending)
        rows.append(_row("ConsumeQueue (+ Ack every 100)", got, time.perf_counter() - t0))
        await stream.aclose()
    return rows


def _row(name: str, n: int, seconds: float) -> dict:
    return {
        "scenario": name,
        "messages": n,
        "seconds": round(seconds, 3),
        "per_s": round(n / seconds),
    }


def bench_mqtt(n: int, window: int) -> list[dict]:
    sys.path.insert(0, str(HERE))
    import queue_mqtt

    r = queue_mqtt.run("mqtt", queue_mqtt.DURABLE, n, 1, 1, window)
    return [
        _row(
            f"MQTT $queue/ publish QoS 1 (window {window})",
            r["messages"],
            r["messages"] / max(1, r["publish_per_s"]),
        ),
        _row("MQTT $queue/ consume (end to end)", r["consumed"], r["seconds"]),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--window", type=int, default=100)
    ap.add_argument("--no-mqtt", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fluxmq-apibench-") as tmp:
        proc, target = start_broker(Path(tmp))
        try:
            rows = asyncio.run(bench_api(target, args.messages, args.window))
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
    if not args.no_mqtt:
        rows += bench_mqtt(args.messages, args.window)
    print(f"{'scenario':<42} {'messages':>9} {'seconds':>8} {'msgs/s':>8}")
    for r in rows:
        print(f"{r['scenario']:<42} {r['messages']:>9} {r['seconds']:>8} {r['per_s']:>8}")
    out = HERE / "results" / "queue_api.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "machine": platform.platform(),
                "cpus": os.cpu_count(),
                "payload": len(PAYLOAD),
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
