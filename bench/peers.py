"""Find, install, start and stop the brokers the MQTT benchmark runs against.

Every peer is a subprocess listening on a free loopback port. A peer object has
``start()`` (returns once the port accepts TCP connections, raises PeerError
otherwise), ``stop()`` (SIGTERM, then SIGKILL after a grace period), ``rss()``
(VmRSS of the broker process and its descendants, bytes) and ``cpu_seconds()``
(utime + stime from /proc, for the process tree).

Peers:

* ``mosquitto``: the Debian package (``apt-get install -y mosquitto`` when the
  binary is missing and we are root), started with a minimal generated config.
* ``fluxmq``: this repository's broker, ``fluxmq run --plugins mqtt`` with the MQTT
  listener on a free port (env ``FLUXMQ_MQTT__TCP``) and ``--ready-file``.
* ``amqtt``: optional, installed from PyPI into a private venv under the temp dir
  with ``uv`` (never into the project's environment). Reported as "not installed"
  when that fails.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MOSQUITTO_BIN = "/usr/sbin/mosquitto"
START_TIMEOUT = 20.0
STOP_GRACE = 5.0
_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICKS = os.sysconf("SC_CLK_TCK")


class PeerError(RuntimeError):
    """A peer could not be installed, started or reached."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(host: str, port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Wait until host:port accepts a TCP connection (or the process exits)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise PeerError(f"exited with code {proc.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError as exc:
            last = exc
            time.sleep(0.05)
    raise PeerError(f"port {host}:{port} not accepting after {timeout:.0f}s ({last})")


def raise_fd_limit() -> int:
    """Raise RLIMIT_NOFILE to the hard limit (children inherit it); return it."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    out.extend(int(x) for x in f.read().split())
            except OSError:
                pass
    except OSError:
        pass
    return out


def process_tree(pid: int) -> list[int]:
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        todo.extend(_children(p))
    return seen


def rss_bytes(pid: int) -> int:
    """VmRSS of one process, in bytes (0 if gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds (0 if gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return 0.0
    fields = data[data.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


class Peer:
    name = "peer"

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir) / self.name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None
        self.host = "127.0.0.1"
        self.port = 0
        self.ws_port = 0  # MQTT over WebSocket listener (path /mqtt), 0 when none
        self._log = None

    #: why this peer has no MQTT over WebSocket listener (None: it has one)
    no_websocket: str | None = None

    # -- to override -------------------------------------------------------
    def available(self) -> str | None:
        """None when the peer can run, else why not ("not installed: ...")."""
        return None

    def version(self) -> str:
        return "?"

    def info(self) -> dict:
        """What to record about how the peer was run (config, command)."""
        return {}

    def _launch(self) -> None:
        raise NotImplementedError

    # -- common ------------------------------------------------------------
    def start(self) -> None:
        self.stop()
        why = self.available()
        if why:
            raise PeerError(why)
        self._log = open(self.workdir / "broker.log", "wb")
        self._launch()
        try:
            self._wait_ready()
        except Exception as exc:
            tail = self.log_tail()
            self.stop()
            raise PeerError(f"{self.name} did not start" + (f": {tail}" if tail else "")) from exc

    def _wait_ready(self) -> None:
        wait_port(self.host, self.port, START_TIMEOUT, self.proc)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                proc.kill()
                try:
                    proc.wait(STOP_GRACE)
                except subprocess.TimeoutExpired:
                    pass
            except ProcessLookupError:
                pass
        if self._log is not None:
            self._log.close()
            self._log = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def rss(self) -> int:
        if not self.alive():
            return 0
        return sum(rss_bytes(p) for p in process_tree(self.pid))

    def cpu_seconds(self) -> float:
        if not self.alive():
            return 0.0
        return sum(cpu_seconds(p) for p in process_tree(self.pid))

    def log_tail(self, n: int = 400) -> str:
        try:
            data = (self.workdir / "broker.log").read_bytes()[-n:]
        except OSError:
            return ""
        return data.decode("utf-8", "replace").strip().replace("\n", " | ")


class Mosquitto(Peer):
    name = "mosquitto"
    # Checked: /usr/sbin/mosquitto (Debian 2.0.11) is not linked with libwebsockets;
    # a "listener <port>" + "protocol websockets" config makes it exit with
    # "Unable to start any listening sockets".
    no_websocket = "n/a: Debian's mosquitto is built without websockets (no libwebsockets)"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.binary = shutil.which("mosquitto") or MOSQUITTO_BIN
        self.config_text = ""

    @staticmethod
    def install() -> str | None:
        """apt-get install mosquitto when missing; None on success, else why not."""
        if os.path.exists(MOSQUITTO_BIN) or shutil.which("mosquitto"):
            return None
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            return "not installed: /usr/sbin/mosquitto missing (apt-get install mosquitto)"
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for cmd in (
            ["apt-get", "install", "-y", "mosquitto"],
            ["apt-get", "update"],
            ["apt-get", "install", "-y", "mosquitto"],
        ):
            try:
                r = subprocess.run(cmd, env=env, capture_output=True, timeout=600)
            except (OSError, subprocess.TimeoutExpired) as exc:
                return f"not installed: {' '.join(cmd)} failed ({exc})"
            if cmd[1] == "install" and r.returncode == 0:
                return None
        return "not installed: apt-get install mosquitto failed"

    def available(self) -> str | None:
        if not (os.path.exists(self.binary) or shutil.which("mosquitto")):
            return self.install()
        return None

    def version(self) -> str:
        try:
            r = subprocess.run([self.binary, "-h"], capture_output=True, timeout=10)
            first = (r.stdout or r.stderr).decode(errors="replace").splitlines()[0]
            return first.replace("mosquitto version", "").strip()
        except Exception:
            return "?"

    def info(self) -> dict:
        return {"binary": self.binary, "config": self.config_text}

    def _launch(self) -> None:
        self.port = free_port()
        # Only what is needed to run: everything else is Mosquitto's default
        # (max_inflight_messages 20, max_queued_messages 1000, no byte limit).
        self.config_text = (
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "log_dest stderr\n"
            "log_type error\n"
            "log_type warning\n"
        )
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(self.config_text)
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(conf)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.workdir,
        )


class FluxMQ(Peer):
    name = "fluxmq"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        # Run the console script of this environment directly (not through
        # `uv run`) so that the pid we hold is the broker's own.
        script = Path(sys.executable).parent / "fluxmq"
        self.cmd = [str(script)] if script.exists() else [sys.executable, "-m", "fluxmq_core.cli"]
        self.ready_file = self.workdir / "ready.json"

    def available(self) -> str | None:
        try:
            import fluxmq_core  # noqa: F401
        except ImportError as exc:
            return f"not installed: {exc}"
        return None

    def version(self) -> str:
        try:
            from importlib.metadata import version

            v = version("fluxmq-core")
            try:
                v += f" (fluxmq-mqtt {version('fluxmq-mqtt')})"
            except Exception:
                pass
            try:
                import uvloop

                v += f", uvloop {uvloop.__version__}"
            except ImportError:
                v += ", no uvloop"
            return v
        except Exception:
            return "?"

    def info(self) -> dict:
        return {
            "command": "fluxmq run --plugins mqtt --data-dir <tmp> --ready-file <tmp>",
            "env": {
                "FLUXMQ_MQTT__TCP": "127.0.0.1:<port>",
                "FLUXMQ_MQTT__WEBSOCKET": "127.0.0.1:<port>",
                "FLUXMQ_HTTP__BIND": "",
            },
        }

    def _launch(self) -> None:
        self.port = free_port()
        data = self.workdir / "data"
        if data.exists():
            shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True, exist_ok=True)
        self.ready_file.unlink(missing_ok=True)
        self.ws_port = free_port()
        env = dict(
            os.environ,
            FLUXMQ_MQTT__TCP=f"127.0.0.1:{self.port}",
            FLUXMQ_MQTT__WEBSOCKET=f"127.0.0.1:{self.ws_port}",
            FLUXMQ_HTTP__BIND="",
        )
        env.pop("FLUXMQ_NO_UVLOOP", None)
        self.proc = subprocess.Popen(
            self.cmd
            + [
                "run",
                "--plugins",
                "mqtt",
                "--data-dir",
                str(data),
                "--ready-file",
                str(self.ready_file),
                "--log-level",
                "warning",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=self.workdir,
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PeerError(f"exited with code {self.proc.returncode}")
            try:
                ready = json.loads(self.ready_file.read_text())
            except (OSError, ValueError):
                time.sleep(0.05)
                continue
            addr = ready.get("mqtt.tcp")
            if addr:
                self.host, self.port = addr[0], int(addr[1])
                if self.host in ("0.0.0.0", "::", ""):
                    self.host = "127.0.0.1"
            ws = ready.get("mqtt.websocket")
            self.ws_port = int(ws[1]) if ws else 0
            break
        else:
            raise PeerError("no ready file")
        wait_port(self.host, self.port, max(1.0, deadline - time.monotonic()), self.proc)


class Amqtt(Peer):
    """amqtt from PyPI, in a private venv made with uv under the work dir."""

    name = "amqtt"
    PACKAGE = "amqtt"
    _install_error: str | None = None

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.venv = self.workdir / "venv"
        self.config_text = ""

    def _bin(self, name: str) -> Path:
        return self.venv / "bin" / name

    def available(self) -> str | None:
        if self._bin("amqtt").exists():
            return None
        if Amqtt._install_error:
            return Amqtt._install_error
        uv = shutil.which("uv")
        if not uv:
            Amqtt._install_error = "not installed: uv not found to build a venv for amqtt"
            return Amqtt._install_error
        try:
            subprocess.run(
                [uv, "venv", "-q", "--python", sys.executable, str(self.venv)],
                check=True,
                capture_output=True,
                timeout=120,
            )
            subprocess.run(
                [uv, "pip", "install", "-q", "--python", str(self._bin("python")), self.PACKAGE],
                check=True,
                capture_output=True,
                timeout=300,
            )
        except subprocess.CalledProcessError as exc:
            err = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
            Amqtt._install_error = "not installed: " + (err[-1] if err else str(exc))
            return Amqtt._install_error
        except (OSError, subprocess.TimeoutExpired) as exc:
            Amqtt._install_error = f"not installed: {exc}"
            return Amqtt._install_error
        if not self._bin("amqtt").exists():
            Amqtt._install_error = "not installed: amqtt script missing after install"
            return Amqtt._install_error
        return None

    def version(self) -> str:
        try:
            r = subprocess.run(
                [
                    str(self._bin("python")),
                    "-c",
                    "from importlib.metadata import version; print(version('amqtt'))",
                ],
                capture_output=True,
                timeout=30,
            )
            return r.stdout.decode().strip() or "?"
        except Exception:
            return "?"

    def info(self) -> dict:
        return {"config": self.config_text, "install": "uv pip install amqtt (private venv)"}

    def _launch(self) -> None:
        self.port = free_port()
        self.ws_port = free_port()
        self.config_text = (
            "listeners:\n"
            "  default:\n"
            "    type: tcp\n"
            f"    bind: 127.0.0.1:{self.port}\n"
            "    max_connections: 0\n"
            "  ws-mqtt:\n"
            "    type: ws\n"
            f"    bind: 127.0.0.1:{self.ws_port}\n"
            "    max_connections: 0\n"
            "plugins:\n"
            "  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
            "    allow_anonymous: true\n"
            "auth:\n"
            "  allow-anonymous: true\n"
            "  plugins: ['auth_anonymous']\n"
            "topic-check:\n"
            "  enabled: false\n"
        )
        conf = self.workdir / "amqtt.yaml"
        conf.write_text(self.config_text)
        self.proc = subprocess.Popen(
            [str(self._bin("amqtt")), "-c", str(conf)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.workdir,
        )


PEERS = {"mosquitto": Mosquitto, "fluxmq": FluxMQ, "amqtt": Amqtt}


def make_peer(name: str, workdir: Path) -> Peer:
    try:
        return PEERS[name](workdir)
    except KeyError:
        raise PeerError(f"unknown peer {name!r} (known: {', '.join(PEERS)})") from None


if __name__ == "__main__":
    # Smoke test: start and stop each named peer, print port, RSS and version.
    names = sys.argv[1:] or ["mosquitto"]
    with tempfile.TemporaryDirectory(prefix="fluxmq-bench-") as tmp:
        for n in names:
            p = make_peer(n, Path(tmp))
            try:
                p.start()
                print(f"{n} {p.version()}: port {p.port} pid {p.pid} rss {p.rss() / 1024:.0f} kB")
            except PeerError as exc:
                print(f"{n}: failed: {exc}")
            finally:
                p.stop()
