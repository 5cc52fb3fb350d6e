"""``fluxmq run --workers N``: N broker processes on every core, acting as one broker.

A small supervisor (this module; it runs no broker itself) starts N child
``fluxmq run`` processes. Each child is a node of the etcd cluster driver (the
``fluxmq-etcd`` plugin, never imported here: the children load it as any driver):

- node id ``<node>-w<i>`` (``<node>`` = ``[cluster] node_id``, else ``[server]
  node_id``, else the host name), its data under ``<data_dir>/w<i>``;
- its node-to-node gRPC listener on loopback (``127.0.0.1:0``), or, when the
  configuration already joins an etcd cluster, on the configured ``bind`` port + i;
- every TCP listener bound with SO_REUSEPORT (``[server] reuse_port``), so all
  workers accept on the same ports and the kernel spreads connections among them.
  Worker 0 starts first; the ports it bound (``host:0`` included) are then pinned
  for the others and for its own restarts;
- CoAP (UDP) only on worker 0: a CoAP exchange and an Observe relation are bound to
  the process that holds them, and the kernel would hash a client's datagrams to
  whichever worker, so the other workers leave ``[coap]`` unbound;
- without a configured ``[cluster]``, worker 0 runs an embedded etcd member on two
  free loopback ports and every worker uses it.

The supervisor forwards SIGTERM/SIGINT (stopping workers 1..N-1 first, worker 0,
which holds the embedded etcd, last) and SIGHUP, restarts a worker that dies
(backoff 0.5 s doubling to 10 s, reset once a worker ran a minute; before
restarting worker 0 it stops the embedded etcd member a killed worker 0 left
running), prefixes each
child's output with ``[w<i>]`` (JSON log lines get a ``"worker"`` field), and keeps ``<data_dir>/workers/workers.json``
(each worker's pid, node id and restarts) current.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluxmq_core.config import Config, ConfigError, parse_address
from fluxmq_core.plugins import installed_drivers

log = logging.getLogger("fluxmq.workers")

BACKOFF_MIN = 0.5
BACKOFF_MAX = 10.0
STABLE_AFTER = 60.0  # a worker that ran this long restarts after BACKOFF_MIN again
READY_TIMEOUT = 60.0
EXIT_CONFIG = 2


def resolve_workers(value: int | str) -> int:
    """``auto`` -> the CPUs this process may run on; an int as is (>= 1)."""
    if value == "auto":
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # not Linux
            return max(1, os.cpu_count() or 1)
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise ConfigError(
                f"--workers: expected a number or 'auto', got {value!r}", key="server.workers"
            ) from None
    if value < 1:
        raise ConfigError("--workers must be >= 1 or 'auto'", key="server.workers")
    return value


def check_available(cfg: Config) -> None:
    """Raise a ConfigError naming what is missing for several workers."""
    drivers = installed_drivers().get("fluxmq.cluster", {})
    if "etcd" not in drivers:
        raise ConfigError(
            "--workers > 1 runs the workers as one cluster through the 'etcd' cluster "
            "driver, which is not installed: install the fluxmq-etcd plugin "
            "(pip install fluxmq-etcd)",
            key="server.workers",
        )
    driver = cfg.cluster.driver
    if driver not in ("none", "etcd"):
        raise ConfigError(
            f"--workers > 1 needs [cluster] driver 'none' or 'etcd', not {driver!r}",
            key="cluster.driver",
        )
    embedded = driver == "none" or cfg.cluster.etcd_embedded
    if embedded and shutil.which("etcd") is None:
        raise ConfigError(
            "--workers > 1 without an external etcd runs an embedded etcd member, which "
            "needs the 'etcd' binary on PATH (Debian/Ubuntu: apt-get install etcd-server), "
            "or configure [cluster] driver = 'etcd' with etcd_endpoints",
            key="server.workers",
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env_var(section: str, key: str) -> str:
    return f"FLUXMQ_{section.upper()}__{key.upper()}"


@dataclass
class Worker:
    index: int
    node_id: str
    env: dict[str, str]
    ready_file: Path
    proc: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff: float = BACKOFF_MIN
    ready: bool = False
    pump: asyncio.Task[None] | None = field(default=None, repr=False)


class Supervisor:
    """Start, watch, restart and stop the worker processes."""

    def __init__(
        self,
        cfg: Config,
        count: int,
        *,
        run_args: list[str],
        ready_file: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.count = count
        self.run_args = run_args  # --config/--plugins/--log-level, passed on as given
        self.ready_file = ready_file
        self.data_dir = Path(cfg.server.data_dir)
        self.state_dir = self.data_dir / "workers"
        base = cfg.cluster.node_id or cfg.server.node_id or socket.gethostname()
        common = self._common_env()
        self.workers = [
            Worker(
                index=i,
                node_id=f"{base}-w{i}",
                env={**common, **self._worker_env(i, f"{base}-w{i}")},
                ready_file=self.state_dir / f"w{i}.ready.json",
            )
            for i in range(count)
        ]
        self._stopping = False
        self._exit_code = 0
        #: worker 0's embedded etcd data directory, when it runs one
        self._etcd_dir: str | None = None
        if cfg.cluster.driver == "none" or cfg.cluster.etcd_embedded:
            self._etcd_dir = os.path.abspath(
                cfg.cluster.etcd_data_dir or str(self.data_dir / "w0" / "etcd")
            )

    # --- environment of each worker -----------------------------------------------------

    def _common_env(self) -> dict[str, str]:
        env = {
            _env_var("server", "workers"): "1",
            _env_var("server", "reuse_port"): "true",
            _env_var("cluster", "driver"): "etcd",
        }
        cl = self.cfg.cluster
        if self.cfg.cluster.driver == "none":
            client = f"127.0.0.1:{_free_port()}"
            self._etcd_client = client
            self._etcd_peer = f"127.0.0.1:{_free_port()}"
            env[_env_var("cluster", "etcd_endpoints")] = f"http://{client}"
        elif cl.etcd_embedded and not cl.etcd_endpoints:
            env[_env_var("cluster", "etcd_endpoints")] = f"http://{cl.etcd_client}"
        return env

    def _worker_env(self, i: int, node_id: str) -> dict[str, str]:
        cl = self.cfg.cluster
        env = {
            _env_var("cluster", "node_id"): node_id,
            _env_var("server", "node_id"): node_id,
        }
        if cl.driver == "none":
            env[_env_var("cluster", "bind")] = "127.0.0.1:0"
            env[_env_var("cluster", "advertise")] = ""
            embedded = i == 0
            if embedded:
                env[_env_var("cluster", "etcd_client")] = self._etcd_client
                env[_env_var("cluster", "etcd_peer")] = self._etcd_peer
        else:
            host, port = parse_address(cl.bind, where="cluster.bind")
            env[_env_var("cluster", "bind")] = f"{host}:{port + i if port else 0}"
            if cl.advertise:
                a_host, a_port = parse_address(cl.advertise, where="cluster.advertise")
                env[_env_var("cluster", "advertise")] = f"{a_host}:{a_port + i}"
            embedded = cl.etcd_embedded and i == 0
        env[_env_var("cluster", "etcd_embedded")] = "true" if embedded else "false"
        if i > 0 and self.cfg.has("coap"):
            env[_env_var("coap", "bind")] = ""
            env[_env_var("coap", "dtls_bind")] = ""
        return env

    def _pin_ports(self, bound: dict[str, list[Any]]) -> None:
        """Give every worker the ports worker 0 bound (a ``host:0`` listener included)."""
        listeners = self.cfg.listeners()
        for name, (host, port) in bound.items():
            section, _, key = name.partition(".")
            if section == "cluster" or name not in listeners:
                continue
            # CoAP runs on worker 0 only: its port is pinned for worker 0's restarts.
            for worker in self.workers[:1] if section == "coap" else self.workers:
                worker.env[_env_var(section, key)] = f"{host}:{port}"

    # --- processes ------------------------------------------------------------------------

    async def _spawn(self, worker: Worker) -> None:
        with contextlib.suppress(FileNotFoundError):
            worker.ready_file.unlink()
        worker.ready = False
        cmd = [
            sys.executable,
            "-m",
            "fluxmq_core.cli",
            "run",
            "--workers",
            "1",
            "--data-dir",
            str(self.data_dir / f"w{worker.index}"),
            "--ready-file",
            str(worker.ready_file),
            *self.run_args,
        ]
        env = {**os.environ, **worker.env}
        worker.proc = await asyncio.create_subprocess_exec(
            *cmd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            # Its own process group: a terminal's Ctrl-C reaches the supervisor only,
            # which stops the workers in order.
            start_new_session=True,
        )
        worker.started_at = time.monotonic()
        worker.pump = asyncio.get_running_loop().create_task(self._pump(worker, worker.proc))
        log.info(
            "worker %d (node %s) started, pid %d", worker.index, worker.node_id, worker.proc.pid
        )
        self._write_state()

    async def _pump(self, worker: Worker, proc: asyncio.subprocess.Process) -> None:
        """Copy the child's output to ours, each line prefixed with ``[w<i>]``."""
        assert proc.stdout is not None
        as_json = self.cfg.log.format == "json"
        out = sys.stderr.buffer
        while True:
            line = await proc.stdout.readline()
            if not line:
                return
            out.write(tag_line(line, worker.index, as_json))
            out.flush()

    async def _wait_ready(self, worker: Worker, timeout: float = READY_TIMEOUT) -> dict[str, Any]:
        assert worker.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if worker.ready_file.exists():
                worker.ready = True
                data: dict[str, Any] = json.loads(worker.ready_file.read_text())
                return data
            if worker.proc.returncode is not None:
                code = worker.proc.returncode
                raise _WorkerFailed(worker.index, code)
            await asyncio.sleep(0.05)
        raise _WorkerFailed(worker.index, None)

    def _write_state(self) -> None:
        state = {
            "supervisor": os.getpid(),
            "workers": [
                {
                    "index": w.index,
                    "node_id": w.node_id,
                    "pid": w.proc.pid if w.proc is not None and w.proc.returncode is None else None,
                    "restarts": w.restarts,
                    "ready": w.ready,
                }
                for w in self.workers
            ],
        }
        tmp = self.state_dir / "workers.json.tmp"
        tmp.write_text(json.dumps(state, indent=2))
        os.replace(tmp, self.state_dir / "workers.json")

    # --- run ------------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._forward, signal.SIGHUP)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log.info("starting %d workers (one broker through the etcd cluster driver)", self.count)
        try:
            first = self.workers[0]
            await self._spawn(first)
            bound = await self._startup_step(first, stop)
            if bound is None:
                return await self._shutdown()
            self._pin_ports(bound)
            for worker in self.workers[1:]:
                await self._spawn(worker)
            for worker in self.workers[1:]:
                if await self._startup_step(worker, stop) is None:
                    return await self._shutdown()
        except _WorkerFailed as exc:
            log.error("%s; stopping", exc)
            self._exit_code = EXIT_CONFIG if exc.code == EXIT_CONFIG else 1
            return await self._shutdown()
        self._write_state()
        if self.ready_file:
            tmp = f"{self.ready_file}.tmp"
            shared = {k: v for k, v in bound.items() if not k.startswith("cluster.")}
            Path(tmp).write_text(json.dumps(shared))
            os.replace(tmp, self.ready_file)
        log.info("FluxMQ ready: %d workers, supervisor pid %d", self.count, os.getpid())
        watchers = [loop.create_task(self._watch(w)) for w in self.workers]
        await stop.wait()
        for task in watchers:
            task.cancel()
        return await self._shutdown()

    async def _startup_step(self, worker: Worker, stop: asyncio.Event) -> dict[str, Any] | None:
        """Wait for one worker's ready file; None when a stop signal came first."""
        ready = asyncio.ensure_future(self._wait_ready(worker))
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({ready, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if ready.done():
            stopped.cancel()
            self._write_state()
            return ready.result()
        ready.cancel()
        return None

    async def _watch(self, worker: Worker) -> None:
        """Restart ``worker`` whenever it exits, with a bounded backoff."""
        while not self._stopping:
            proc = worker.proc
            assert proc is not None
            code = await proc.wait()
            if self._stopping:
                return
            ran = time.monotonic() - worker.started_at
            if ran >= STABLE_AFTER:
                worker.backoff = BACKOFF_MIN
            log.warning(
                "worker %d (node %s, pid %d) exited with %s after %.1fs; restarting in %.1fs",
                worker.index,
                worker.node_id,
                proc.pid,
                code,
                ran,
                worker.backoff,
            )
            worker.ready = False
            self._write_state()
            if worker.index == 0:
                await self._stop_orphan_etcd()
            await asyncio.sleep(worker.backoff)
            worker.backoff = min(BACKOFF_MAX, worker.backoff * 2)
            if self._stopping:
                return
            worker.restarts += 1
            await self._spawn(worker)
            with contextlib.suppress(_WorkerFailed):
                await self._wait_ready(worker)
                log.info("worker %d ready again (restart %d)", worker.index, worker.restarts)
            self._write_state()

    async def _stop_orphan_etcd(self) -> None:
        """A worker 0 that died without stopping its embedded etcd (SIGKILL) leaves the
        member running in its own session, holding its ports and data: stop it, so
        the restarted worker 0 can start it again (Linux: found through /proc)."""
        if self._etcd_dir is None:
            return
        for pid in embedded_etcd_pids(self._etcd_dir):
            log.warning("stopping the embedded etcd (pid %d) worker 0 left running", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and _alive(pid):
                await asyncio.sleep(0.05)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def _forward(self, sig: int) -> None:
        for worker in self.workers:
            if worker.proc is not None and worker.proc.returncode is None:
                worker.proc.send_signal(sig)

    async def _shutdown(self) -> int:
        """Stop workers 1..N-1, then worker 0 (it holds the embedded etcd)."""
        self._stopping = True
        log.info("stopping %d workers", self.count)
        grace = self.cfg.server.shutdown_timeout + 5.0
        await self._stop_group(self.workers[1:], grace)
        await self._stop_group(self.workers[:1], grace)
        await self._stop_orphan_etcd()
        for worker in self.workers:
            if worker.pump is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(worker.pump, 1.0)
        with contextlib.suppress(OSError):
            (self.state_dir / "workers.json").unlink()
        log.info("all workers stopped")
        return self._exit_code

    async def _stop_group(self, workers: list[Worker], grace: float) -> None:
        live = [w for w in workers if w.proc is not None and w.proc.returncode is None]
        for worker in live:
            assert worker.proc is not None
            with contextlib.suppress(ProcessLookupError):
                worker.proc.send_signal(signal.SIGTERM)
        for worker in live:
            assert worker.proc is not None
            try:
                await asyncio.wait_for(worker.proc.wait(), grace)
            except TimeoutError:
                log.error("worker %d did not stop within %.0fs: killed", worker.index, grace)
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.kill()
                await worker.proc.wait()


def tag_line(line: bytes, index: int, as_json: bool = False) -> bytes:
    """Mark a worker's output line: ``[w<i>] `` before a text line, a ``"worker"``
    field in a JSON log line (``[log] format = "json"``) so it stays one JSON object."""
    if as_json and line.startswith(b"{"):
        try:
            record = json.loads(line)
        except ValueError:
            pass
        else:
            if isinstance(record, dict):
                record["worker"] = index
                return json.dumps(record, separators=(",", ":")).encode() + b"\n"
    return f"[w{index}] ".encode() + line


def embedded_etcd_pids(data_dir: str) -> list[int]:
    """Pids of the etcd processes serving ``data_dir`` (an absolute path)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not argv or not argv[0].endswith(b"etcd") or b"--data-dir" not in argv:
            continue
        i = argv.index(b"--data-dir")
        if i + 1 < len(argv) and os.path.abspath(os.fsdecode(argv[i + 1])) == data_dir:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (an exited child not yet reaped by its parent) is not running.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class _WorkerFailed(Exception):
    def __init__(self, index: int, code: int | None) -> None:
        self.index = index
        self.code = code
        what = f"exited with {code}" if code is not None else f"not ready in {READY_TIMEOUT:.0f}s"
        super().__init__(f"worker {index} {what} while starting")


def run_workers(
    cfg: Config, count: int, *, run_args: list[str], ready_file: str | None = None
) -> int:
    """Run the supervisor until every worker stopped; returns the exit code."""
    check_available(cfg)
    return asyncio.run(Supervisor(cfg, count, run_args=run_args, ready_file=ready_file).run())
