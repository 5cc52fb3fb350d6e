"""A real broker for tests: in a background thread, or as a subprocess.

:class:`BrokerThread` runs a full :class:`fluxmq_core.server.Broker` on its own
event loop in a daemon thread, every listener rebound to ``127.0.0.1:0``, data in a
temporary directory. Synchronous clients (paho-mqtt, pika) and asyncio tests alike
talk to it over real sockets. :class:`BrokerProcess` runs ``fluxmq run`` as a child
process for what a thread cannot show: signals, exit codes and ``kill -9``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

from fluxmq_core.config import Config, load_config, section_fields
from fluxmq_core.context import BrokerContext
from fluxmq_core.plugins import PluginRegistry
from fluxmq_core.server import Broker

T = TypeVar("T")

LOOPBACK_EPHEMERAL = "127.0.0.1:0"


def ephemeral_overrides(
    schema: Mapping[str, type], keep_disabled: bool = True
) -> dict[str, dict[str, Any]]:
    """Rebind every enabled listener to ``127.0.0.1:0``.

    A listener whose default is empty (disabled, e.g. TLS without a certificate)
    stays disabled; tests enable it explicitly.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, cls in schema.items():
        default = cls()
        for key, (f, _tp) in section_fields(cls).items():
            if f.metadata.get("listener") and (getattr(default, key) or not keep_disabled):
                out.setdefault(name, {})[key] = LOOPBACK_EPHEMERAL
    return out


def _merge(
    a: dict[str, dict[str, Any]], b: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    out = {k: dict(v) for k, v in a.items()}
    for sec, values in b.items():
        out.setdefault(sec, {}).update(values)
    return out


class BrokerThread:
    """A broker running in a background thread (context manager).

    ``plugins`` restricts installed plugins (``["mqtt"]``); ``extra_plugins`` adds
    throw-away plugin objects for this broker only; ``config`` overrides sections
    (``{"mqtt": {"max_keepalive": 10}}``). ``data_dir`` defaults to a fresh temporary
    directory, kept across :meth:`restart` so durable state can be checked.
    """

    def __init__(
        self,
        *,
        plugins: list[str] | None = None,
        extra_plugins: list[tuple[str, object]] | None = None,
        config: Mapping[str, Mapping[str, Any]] | None = None,
        config_file: str | None = None,
        data_dir: str | None = None,
        clock: Any = None,
        start_timeout: float = 15.0,
    ) -> None:
        self._plugins = plugins
        self._extra = extra_plugins or []
        self._config = dict(config or {})
        self._config_file = config_file
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="fluxmq-test-")
            data_dir = self._tmp.name
        self.data_dir = data_dir
        self._clock = clock
        self._start_timeout = start_timeout
        self.loop: asyncio.AbstractEventLoop | None = None
        self.broker: Broker | None = None
        self._thread: threading.Thread | None = None
        self._bound_first: dict[str, tuple[str, int]] | None = None

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> BrokerThread:
        registry = PluginRegistry(enable=self._plugins, extra=self._extra)
        registry.check()
        schema = registry.config_schema()
        overrides = _merge(ephemeral_overrides(schema), self._config)
        if self._bound_first:  # on restart keep the ports clients know
            for name, (host, port) in self._bound_first.items():
                sec, key = name.split(".", 1)
                if str(overrides.get(sec, {}).get(key, "")).endswith(":0"):
                    overrides[sec][key] = f"{host}:{port}"
        overrides.setdefault("server", {}).setdefault("data_dir", self.data_dir)
        overrides["server"].setdefault("shutdown_timeout", 5.0)
        overrides.setdefault("sys", {}).setdefault("interval", 0.0)
        cfg: Config = load_config(schema, self._config_file, env={}, overrides=overrides)
        self.broker = Broker(cfg, registry, clock=self._clock)
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.loop = asyncio.new_event_loop()

        def runner() -> None:
            assert self.loop is not None and self.broker is not None
            asyncio.set_event_loop(self.loop)
            broker = self.broker

            async def boot() -> None:
                await broker.start()

            try:
                self.loop.run_until_complete(boot())
            except BaseException as exc:  # handed to the starting thread
                ready.set_exception(exc)
                self.loop.close()
                return
            ready.set_result(None)
            self.loop.run_forever()
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

        self._thread = threading.Thread(target=runner, name="fluxmq-test-broker", daemon=True)
        self._thread.start()
        ready.result(self._start_timeout)
        if self._bound_first is None:
            self._bound_first = dict(self.context.bound)
        return self

    def stop(self) -> None:
        if self.loop is None or self._thread is None or self.broker is None:
            return
        if self.loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self.broker.stop(), self.loop)
            try:
                fut.result(30)
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)
        self._thread = None

    def restart(self) -> BrokerThread:
        """Stop cleanly and start again on the same data directory and ports."""
        self.stop()
        return self.start()

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> BrokerThread:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- access -------------------------------------------------------------------------

    @property
    def context(self) -> BrokerContext:
        assert self.broker is not None and self.broker.context is not None, "broker not started"
        return self.broker.context

    def address(self, listener: str = "mqtt.tcp") -> tuple[str, int]:
        """``(host, port)`` bound for a listener name such as ``"mqtt.tcp"``."""
        try:
            return self.context.bound[listener]
        except KeyError:
            raise KeyError(
                f"listener {listener!r} is not bound; bound: {sorted(self.context.bound)}"
            ) from None

    def port(self, listener: str = "mqtt.tcp") -> int:
        return self.address(listener)[1]

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run a coroutine on the broker's loop and return its result."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call_soon(self, fn: Any, *args: Any, timeout: float = 10.0) -> Any:
        """Run a plain function on the broker's loop (thread-safe access to state)."""

        async def wrapper() -> Any:
            return fn(*args)

        return self.call(wrapper(), timeout)


class BrokerProcess:
    """``fluxmq run`` as a subprocess, for signal, exit-code and crash tests.

    Unless ``ephemeral=False``, every listener of the enabled plugins is bound to
    ``127.0.0.1:0`` through ``FLUXMQ_<SECTION>__<KEY>`` variables (those the caller
    sets in ``env`` win), so tests never collide on default ports; after the first
    start the bound ports are pinned, so a restart keeps the addresses clients know.
    """

    def __init__(
        self,
        args: list[str] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        data_dir: str | None = None,
        config_text: str | None = None,
        ephemeral: bool = True,
        command_prefix: list[str] | None = None,
    ) -> None:
        #: Put before the command, e.g. ``["ip", "netns", "exec", "ns1"]`` to run the
        #: broker in a network namespace (it must exec the command: same pid).
        self.command_prefix = list(command_prefix or [])
        self._tmp = tempfile.TemporaryDirectory(prefix="fluxmq-proc-")
        self.dir = Path(self._tmp.name)
        self.data_dir = data_dir or str(self.dir / "data")
        self.ready_file = self.dir / "ready.json"
        self.args = list(args or [])
        if config_text is not None:
            cfg = self.dir / "fluxmq.toml"
            cfg.write_text(config_text)
            self.args += ["--config", str(cfg)]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FLUXMQ_")}
        self._ephemeral_vars: set[str] = set()
        if ephemeral:
            for sec, keys in ephemeral_overrides(self._schema()).items():
                for key, value in keys.items():
                    var = f"FLUXMQ_{sec.upper()}__{key.upper()}"
                    self.env[var] = value
                    self._ephemeral_vars.add(var)
        self.env.update(env or {})
        self._ephemeral_vars -= set(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "broker.log"

    def _schema(self) -> dict[str, type]:
        """The config schema of the plugins this process will enable."""
        enable = None
        if "--plugins" in self.args:
            raw = self.args[self.args.index("--plugins") + 1]
            enable = [p.strip() for p in raw.split(",") if p.strip()]
        return PluginRegistry(enable=enable).config_schema()

    def start(self, timeout: float = 20.0) -> dict[str, tuple[str, int]]:
        if self.ready_file.exists():
            self.ready_file.unlink()
        cmd = [
            *self.command_prefix,
            sys.executable,
            "-m",
            "fluxmq_core.cli",
            "run",
            "--data-dir",
            self.data_dir,
            "--ready-file",
            str(self.ready_file),
            *self.args,
        ]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready_file.exists():
                data = json.loads(self.ready_file.read_text())
                bound = {k: (v[0], int(v[1])) for k, v in data.items()}
                for name, (host, port) in bound.items():  # keep these ports on restart
                    sec, _, key = name.partition(".")
                    var = f"FLUXMQ_{sec.upper()}__{key.upper()}"
                    if var in self._ephemeral_vars:
                        self.env[var] = f"{host}:{port}"
                return bound
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode}:\n{self.output()}")
            time.sleep(0.05)
        self.kill()
        raise TimeoutError(f"broker not ready in {timeout}s:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def close(self) -> None:
        self.kill()
        if getattr(self, "_log", None):
            self._log.close()
        self._tmp.cleanup()

    def __enter__(self) -> BrokerProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
