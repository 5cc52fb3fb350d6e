"""Observer-hook dispatch: tell plugins what happened without letting them break
the broker or slow the hot path.

Each observer hook is called implementation by implementation, so one plugin
raising is logged with its name and the others still run (pluggy alone would stop at
the first exception). A hookimpl that returns an awaitable is scheduled as a task
whose failure is logged, never lost.

The per-message hooks are guarded by flags computed once at start-up
(``on_published`` ...): the publish path checks a bool and pays nothing when no
plugin implements the hook.

Besides hooks, the core can feed *sinks* (:meth:`Events.add_sink`): callables
``sink(name, fields)`` that receive every notification by hook name (plus
``"auth_failure"`` and ``"authz_denied"``, which have no hook) and say through
``sink.wants(name)`` which ones they care about. Webhooks are such a sink; a sink
must not block (enqueue and return). The per-message flags include what sinks want,
so without a sink nothing changes on the publish path.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import TYPE_CHECKING, Any

import pluggy

from fluxmq_core.plugins import TRACE_HOOKS

if TYPE_CHECKING:
    from fluxmq_core.message import Message
    from fluxmq_core.router.types import SubscriptionOptions

log = logging.getLogger("fluxmq.events")

OBSERVER_HOOKS = (
    "fluxmq_client_connected",
    "fluxmq_client_disconnected",
    "fluxmq_client_subscribed",
    "fluxmq_client_unsubscribed",
    "fluxmq_message_published",
    "fluxmq_message_delivered",
    "fluxmq_message_dropped",
)


class Events:
    """Calls observer hooks on behalf of protocols and the core."""

    def __init__(self, pm: pluggy.PluginManager, context: Any) -> None:
        self._pm = pm
        self._context = context
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sinks: list[Any] = []
        self.on_published = False
        self.on_delivered = False
        self.on_dropped = False
        self.refresh()

    def refresh(self) -> None:
        """Recompute which hooks have implementations (after plugins register)."""
        self.on_published = self._has("fluxmq_message_published")
        self.on_delivered = self._has("fluxmq_message_delivered")
        self.on_dropped = self._has("fluxmq_message_dropped")

    def _has(self, name: str) -> bool:
        if any(sink.wants(name) for sink in self._sinks):
            return True
        return bool(getattr(self._pm.hook, name).get_hookimpls())

    # -- sinks ----------------------------------------------------------------------------

    def add_sink(self, sink: Any) -> None:
        """Feed ``sink(name, fields)`` with every notification it ``wants(name)``."""
        self._sinks.append(sink)
        self.refresh()

    def remove_sink(self, sink: Any) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)
        self.refresh()

    def _to_sinks(self, name: str, fields: dict[str, Any]) -> None:
        for sink in self._sinks:
            try:
                sink(name, fields)
            except Exception:
                log.exception("event sink %r failed on %s", sink, name)

    def emit(self, name: str, **kwargs: Any) -> None:
        """Call every implementation of observer hook ``name`` (and every sink);
        never raises."""
        if self._sinks:
            self._to_sinks(name, kwargs)
        hook = getattr(self._pm.hook, name)
        impls = hook.get_hookimpls()
        if not impls:
            return
        kwargs["context"] = self._context
        for impl in reversed(impls):  # pluggy's order: last registered first
            if TRACE_HOOKS:
                log.debug("hook: %s -> %s", name, impl.plugin_name)
            try:
                result = impl.function(*[kwargs[a] for a in impl.argnames])
            except Exception:
                log.exception("plugin %s failed in %s", impl.plugin_name, name)
                continue
            if inspect.isawaitable(result):
                self._schedule(result, impl.plugin_name, name)

    def _schedule(self, awaitable: Any, plugin: str, hook: str) -> None:
        async def runner() -> None:
            try:
                await awaitable
            except Exception:
                log.exception("plugin %s failed in %s", plugin, hook)

        try:
            task = asyncio.get_running_loop().create_task(runner())
        except RuntimeError:
            log.error(
                "plugin %s returned an awaitable from %s outside the event loop", plugin, hook
            )
            if inspect.iscoroutine(awaitable):
                awaitable.close()
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for pending async observer calls (used at shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # Typed conveniences: they document the argument names at the call sites.

    def client_connected(
        self, protocol: str, client_id: str, username: str | None, remote: str
    ) -> None:
        self.emit(
            "fluxmq_client_connected",
            protocol=protocol,
            client_id=client_id,
            username=username,
            remote=remote,
        )

    def client_disconnected(self, protocol: str, client_id: str, reason: str) -> None:
        self.emit(
            "fluxmq_client_disconnected", protocol=protocol, client_id=client_id, reason=reason
        )

    def client_subscribed(
        self, protocol: str, client_id: str, topic_filter: str, options: SubscriptionOptions
    ) -> None:
        self.emit(
            "fluxmq_client_subscribed",
            protocol=protocol,
            client_id=client_id,
            topic_filter=topic_filter,
            options=options,
        )

    def client_unsubscribed(self, protocol: str, client_id: str, topic_filter: str) -> None:
        self.emit(
            "fluxmq_client_unsubscribed",
            protocol=protocol,
            client_id=client_id,
            topic_filter=topic_filter,
        )

    def auth_failed(
        self, protocol: str, client_id: str, username: str | None, remote: str, reason: str
    ) -> None:
        """A login was refused (no hook: for sinks such as webhooks)."""
        if self._sinks:
            self._to_sinks(
                "auth_failure",
                {
                    "protocol": protocol,
                    "client_id": client_id,
                    "username": username,
                    "remote": remote,
                    "reason": reason,
                },
            )

    def authz_denied(self, client_id: str, username: str | None, action: str, topic: str) -> None:
        """An authorization check said no (no hook: for sinks such as webhooks)."""
        if self._sinks:
            self._to_sinks(
                "authz_denied",
                {
                    "client_id": client_id,
                    "username": username,
                    "action": action,
                    "topic": topic,
                },
            )

    def message_published(self, message: Message) -> None:
        if self.on_published:
            self.emit("fluxmq_message_published", message=message)

    def message_delivered(self, message: Message, protocol: str, client_id: str) -> None:
        if self.on_delivered:
            self.emit(
                "fluxmq_message_delivered", message=message, protocol=protocol, client_id=client_id
            )

    def message_dropped(self, message: Message, protocol: str, client_id: str, reason: str) -> None:
        if self.on_dropped:
            self.emit(
                "fluxmq_message_dropped",
                message=message,
                protocol=protocol,
                client_id=client_id,
                reason=reason,
            )
