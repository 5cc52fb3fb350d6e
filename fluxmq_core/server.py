"""Wiring: build the context, start drivers and protocol servers, stop cleanly.

Start-up order: drivers (storage, queue log, cluster) -> router with the retained
messages loaded -> auth and events -> queue manager -> protocol servers (bound together) ->
``fluxmq_startup``. Nothing listens before the cluster driver's ``start`` returned
(joined and synced): with SO_REUSEPORT (``fluxmq run --workers``) a bound socket gets
its share of new connections at once, so a restarted worker binding earlier would be
handed clients it cannot yet claim sessions for; the ready file is written after the
bind, so it names only listeners that accept. Stop is the reverse, bounded by ``[server] shutdown_timeout``:
stop accepting, let each protocol close its sessions its own way, run
``fluxmq_shutdown``, drain observers, flush and close storage. A failure at any start
step stops what already started and raises, naming the plugin: never a half-started
broker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

from fluxmq_core.auth import AuthFileError, AuthService
from fluxmq_core.clock import Clock, system_clock
from fluxmq_core.config import Config, ConfigError
from fluxmq_core.context import BrokerContext
from fluxmq_core.events import Events
from fluxmq_core.logs import setup_logging
from fluxmq_core.message import Message
from fluxmq_core.metrics import register_driver_metrics
from fluxmq_core.plugins import (
    PluginError,
    PluginRegistry,
    call_each,
    installed_drivers,
    load_driver,
)
from fluxmq_core.queues import QueueManager
from fluxmq_core.ratelimit import RateLimits
from fluxmq_core.router import Router
from fluxmq_core.stats import Stats
from fluxmq_core.storage.base import StorageOptions
from fluxmq_core.transport import ListenerSet, ProtocolServer

log = logging.getLogger("fluxmq.server")


def default_driver(group: str) -> str:
    """``badgerlike`` when a durable driver of that name is installed, else ``memory``."""
    return "badgerlike" if "badgerlike" in installed_drivers().get(group, {}) else "memory"


class Broker:
    """One running broker: the context plus everything started from it."""

    def __init__(
        self, config: Config, registry: PluginRegistry, *, clock: Clock | None = None
    ) -> None:
        self.config = config
        self.registry = registry
        self.pm = registry.pm
        self.clock = clock or system_clock
        self.context: BrokerContext | None = None
        self.servers: list[ProtocolServer] = []
        self.listeners: ListenerSet | None = None
        self._started: list[str] = []
        self._stopped = False

    # --- start --------------------------------------------------------------------------

    async def start(self) -> BrokerContext:
        try:
            return await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> BrokerContext:
        cfg = self.config
        node_id = cfg.cluster.node_id or cfg.server.node_id or socket.gethostname()
        data_dir = Path(cfg.server.data_dir)
        store_name = cfg.storage.driver or default_driver("fluxmq.storage")
        log_name = cfg.storage.queue_log or cfg.storage.driver or default_driver("fluxmq.queue_log")
        if store_name != "memory" or log_name != "memory":
            data_dir.mkdir(parents=True, exist_ok=True)
        options = StorageOptions(
            data_dir=str(data_dir), fsync=cfg.storage.fsync, extra=dict(cfg.storage.options)
        )

        store = load_driver("fluxmq.storage", store_name, options)
        await store.open()
        self._started.append("store")
        queue_log = load_driver("fluxmq.queue_log", log_name, options)
        await queue_log.open()
        self._started.append("queue_log")
        cluster = load_driver("fluxmq.cluster", cfg.cluster.driver, node_id, cfg.cluster)
        stats = Stats(started_at=self.clock())

        def on_retained(topic: str, message: Message | None) -> None:
            if topic.startswith("$SYS/"):
                return  # recomputed every interval; never worth a disk write
            if message is None:
                store.delete_retained(topic)
            else:
                store.save_retained(message)

        router = Router(clock=self.clock, on_retained_change=on_retained)
        router.load_retained(await store.load_retained())

        ctx = BrokerContext(
            config=cfg,
            router=router,
            store=store,
            queue_log=queue_log,
            cluster=cluster,
            stats=stats,
            clock=self.clock,
            pm=self.pm,
            node_id=node_id,
        )
        self.context = ctx
        ctx.reload = self.reload
        register_driver_metrics(ctx)
        try:
            ctx.auth = AuthService(self.pm, ctx, cfg.auth)
        except AuthFileError as exc:
            raise ConfigError(str(exc), key="auth") from exc
        ctx.events = Events(self.pm, ctx)
        ctx.limits = RateLimits(cfg.section("rate_limit"), self.clock, stats)
        ctx.queues = QueueManager(ctx)
        await ctx.queues.start()
        self._started.append("queues")
        # Joined and synced before any protocol binds a port (module docstring).
        await cluster.start(ctx)
        self._started.append("cluster")
        if cluster.distributed:
            # Only a distributed driver costs anything per subscription and publish.
            for held, count in router.watch_filters(cluster).items():
                cluster.subscription_added(held)
                if held.startswith("$share/"):
                    cluster.shared_members(held, count)
            ctx.forward = cluster.forward
        log.info(
            "node %s: storage %s, queue log %s, cluster %s, data dir %s",
            node_id,
            store_name,
            log_name,
            cfg.cluster.driver,
            data_dir,
        )

        for plugin, result in await call_each(self.pm, "fluxmq_register_servers", context=ctx):
            for server in result or []:
                if not isinstance(server, ProtocolServer):
                    raise PluginError(
                        f"plugin {plugin!r}: fluxmq_register_servers must return ProtocolServer objects, "
                        f"got {type(server).__name__}"
                    )
                self.servers.append(server)
        for server in self.servers:
            if server.start is not None:
                await server.start()
        self.listeners = ListenerSet(stats, ctx.limits, reuse_port=cfg.server.reuse_port)
        await self.listeners.bind([spec for s in self.servers for spec in s.listeners])
        ctx.bound.update(self.listeners.bound)
        self._started.append("listeners")

        await call_each(self.pm, "fluxmq_startup", context=ctx)
        self._started.append("plugins")
        return ctx

    # --- stop ---------------------------------------------------------------------------

    async def stop(self) -> None:
        """Stop in reverse order within ``shutdown_timeout``; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        deadline = time.monotonic() + self.config.server.shutdown_timeout
        ctx = self.context
        if ctx is not None:
            ctx.shutting_down.set()
        if self.listeners is not None:
            self.listeners.close()
        for server in reversed(self.servers):
            if server.stop is not None:
                await self._bounded(server.stop(), deadline, f"server {server.name} stop")
        if ctx is not None and "plugins" in self._started:
            await self._bounded(
                call_each(self.pm, "fluxmq_shutdown", context=ctx), deadline, "fluxmq_shutdown"
            )
        if ctx is not None:
            events = getattr(ctx, "events", None)  # unset when start-up failed building auth
            if events is not None:
                await self._bounded(events.drain(), deadline, "observer hooks")
            if "cluster" in self._started:
                await self._bounded(ctx.cluster.stop(), deadline, "cluster stop")
            if "queues" in self._started:
                await self._bounded(ctx.queues.stop(), deadline, "queue manager stop")
            if "queue_log" in self._started:
                await self._bounded(ctx.queue_log.close(), deadline, "queue log close")
            if "store" in self._started:
                await self._bounded(ctx.store.close(), deadline, "storage close")
        if self.listeners is not None:
            await self.listeners.wait_closed()
        log.info("stopped")

    async def _bounded(self, aw: Any, deadline: float, what: str) -> None:
        try:
            await asyncio.wait_for(aw, max(0.05, deadline - time.monotonic()))
        except TimeoutError:
            log.error("%s did not finish within the shutdown timeout", what)
        except Exception:
            log.exception("%s failed during shutdown", what)

    # --- reload -------------------------------------------------------------------------

    async def reload(self) -> list[str]:
        """Re-read what can change at run time: log level and format, users, ACL.
        Returns what was applied; a bad file is logged and the old settings kept."""
        applied: list[str] = []
        if self.config.source:
            try:
                fresh = self.config.reload()
            except ConfigError as exc:
                log.error("reload: %s (keeping the running configuration)", exc)
                return applied
            self.config.section("log").level = fresh.log.level
            self.config.section("log").format = fresh.log.format
            setup_logging(fresh.log.level, fresh.log.format)
            applied.append("log")
            auth = self.config.section("auth")
            auth.password_file = fresh.auth.password_file
            auth.acl_file = fresh.auth.acl_file
            # Whole sections that apply at run time without a restart.
            for name in ("rate_limit", "auth_external", "hooks"):
                if self.config.has(name) and fresh.has(name):
                    self.config._sections[name] = fresh.section(name)
        if self.context is not None:
            try:
                self.context.auth.reload()
                applied.append("auth")
            except Exception as exc:  # a bad users/ACL file must not kill the broker
                log.error("reload: auth files not reloaded: %s", exc)
            if self.config.source and self.context.limits is not None:
                self.context.limits.configure(self.config.section("rate_limit"))
                applied.append("rate_limit")
            await call_each(self.pm, "fluxmq_reload", context=self.context)
        log.info("reloaded: %s", ", ".join(applied) or "nothing")
        return applied


def install_event_loop_policy() -> str:
    """Use uvloop when installed (DESIGN.md section 3); returns the loop's name."""
    if os.environ.get("FLUXMQ_NO_UVLOOP"):
        return "asyncio"
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


async def serve(broker: Broker, ready_file: str | None = None) -> None:
    """Run until SIGINT/SIGTERM; SIGHUP reloads. Used by ``fluxmq run``."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(broker.reload()))
    ctx = await broker.start()
    if ready_file:
        tmp = f"{ready_file}.tmp"
        Path(tmp).write_text(json.dumps({k: list(v) for k, v in ctx.bound.items()}))
        os.replace(tmp, ready_file)
    log.info("FluxMQ ready: %d listener(s), pid %d", len(ctx.bound), os.getpid())
    await stop.wait()
    log.info("shutting down")
    await broker.stop()
