"""An etcd member run by this process: the ``etcd_embedded = true`` mode, and the
real etcd that tests start.

:class:`EtcdMember` starts the ``etcd`` binary (Debian package ``etcd-server``) as a
child process with its own data directory and client/peer addresses, waits until it
answers, and stops it (SIGTERM, then SIGKILL after a bound). :class:`EtcdSupervisor`
keeps one running for a broker: it restarts the member when it dies, with a growing
pause, and stops it on shutdown.

What it does not do: form a cluster by itself (``etcd_initial_cluster`` names the
members; each node runs its own), or manage membership changes after the cluster
was created (``etcdctl member add`` stays the operator's tool).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from fluxmq_core.config import ConfigError
from fluxmq_core.plugins import PluginError

log = logging.getLogger("fluxmq.cluster.etcd")

__all__ = [
    "EtcdMember",
    "EtcdNotFoundError",
    "EtcdStartError",
    "EtcdSupervisor",
    "find_etcd",
    "free_port",
]

DEBIAN_PACKAGE = "etcd-server"


class EtcdNotFoundError(ConfigError):
    """No ``etcd`` binary: the embedded mode (and the tests) cannot start one."""


class EtcdStartError(PluginError):
    """The embedded etcd member did not come up (its log tail is in the message)."""


def find_etcd() -> str:
    """Path of the ``etcd`` binary (``$FLUXMQ_ETCD_BINARY``, else ``etcd`` on PATH)."""
    explicit = os.environ.get("FLUXMQ_ETCD_BINARY")
    if explicit:
        if os.access(explicit, os.X_OK):
            return explicit
        raise EtcdNotFoundError(f"FLUXMQ_ETCD_BINARY={explicit!r} is not an executable file")
    found = shutil.which("etcd")
    if found is None:
        raise EtcdNotFoundError(
            "[cluster] etcd_embedded = true needs the 'etcd' binary on PATH: install the "
            f"Debian/Ubuntu package '{DEBIAN_PACKAGE}' (apt-get install {DEBIAN_PACKAGE}), or "
            "an etcd release, or set etcd_embedded = false and point etcd_endpoints at a "
            "running etcd",
            key="cluster.etcd_embedded",
        )
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (etcd cannot report a port it chose)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _url(address: str) -> str:
    return address if "://" in address else f"http://{address}"


class EtcdMember:
    """One etcd member as a child process.

    ``client`` and ``peer`` are ``host:port`` (or URLs); ``initial_cluster`` is
    etcd's ``name=peer-url,...`` list (empty: a one-member cluster of ``name``).
    """

    def __init__(
        self,
        name: str,
        data_dir: str | os.PathLike[str],
        client: str,
        peer: str,
        initial_cluster: str = "",
        *,
        binary: str | None = None,
        log_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.name = name
        self.data_dir = Path(data_dir)
        self.client_url = _url(client)
        self.peer_url = _url(peer)
        self.initial_cluster = initial_cluster or f"{name}={self.peer_url}"
        self.binary = binary or find_etcd()
        self.log_path = Path(log_path) if log_path else self.data_dir.parent / f"{name}-etcd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def endpoint(self) -> str:
        return self.client_url

    def command(self) -> list[str]:
        # A member that already has data rejoins; "new" only matters the first time.
        state = "existing" if (self.data_dir / "member").exists() else "new"
        return [
            self.binary,
            "--name",
            self.name,
            "--data-dir",
            str(self.data_dir),
            "--listen-client-urls",
            self.client_url,
            "--advertise-client-urls",
            self.client_url,
            "--listen-peer-urls",
            self.peer_url,
            "--initial-advertise-peer-urls",
            self.peer_url,
            "--initial-cluster",
            self.initial_cluster,
            "--initial-cluster-state",
            state,
            "--initial-cluster-token",
            "fluxmq",
            "--logger",
            "zap",
            "--log-level",
            "warn",
        ]

    def start(self) -> None:
        """Spawn the process (returns at once; see :meth:`wait_ready`)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                self.command(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def answering(self) -> bool:
        """True when the client port accepts a connection and /health says so."""
        import urllib.request

        try:
            with urllib.request.urlopen(self.client_url + "/health", timeout=1.0) as resp:  # noqa: S310
                return b'"true"' in resp.read()
        except OSError:
            return False

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"etcd exited with {self.returncode()}:\n{self.output()}")
            if self.answering():
                return
            time.sleep(0.05)
        raise TimeoutError(f"etcd not ready in {timeout}s:\n{self.output()}")

    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def output(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit within ``timeout``."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def kill(self) -> None:
        """SIGKILL (tests: a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


class EtcdSupervisor:
    """Keeps an :class:`EtcdMember` running for the broker's lifetime."""

    def __init__(self, member: EtcdMember, *, max_pause: float = 5.0) -> None:
        self.member = member
        self.max_pause = max_pause
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self, timeout: float = 30.0) -> None:
        """Start the member and wait until it answers (a one-member cluster answers
        at once; a member of a new multi-member cluster answers once a quorum runs,
        so the nodes of a new cluster must start together)."""
        self.member.start()
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(self.member.answering):
            if not self.member.alive():
                raise EtcdStartError(
                    f"embedded etcd exited with {self.member.returncode()}: "
                    f"{self.member.output(1500)}"
                )
            if time.monotonic() > deadline:
                raise EtcdStartError(
                    f"embedded etcd did not answer on {self.member.endpoint} within {timeout}s "
                    f"(log {self.member.log_path})"
                )
            await asyncio.sleep(0.1)
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        pause = 0.2
        while not self._stopping:
            await asyncio.sleep(0.2)
            if self._stopping or self.member.alive():
                continue
            log.error(
                "embedded etcd exited with %s; restarting in %.1fs",
                self.member.returncode(),
                pause,
            )
            await asyncio.sleep(pause)
            if self._stopping:
                return
            self.member.restarts += 1
            self.member.start()
            pause = min(self.max_pause, pause * 2)

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await asyncio.to_thread(self.member.stop)
