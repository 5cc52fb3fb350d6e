"""Webhooks as a core default plugin: hookimpls only.

The notifier is started while servers are registered, before any listener is bound,
so no client event is missed, and stopped in ``fluxmq_shutdown``, after every
protocol closed its sessions, so their disconnect events still go out. With no
``[[webhooks.endpoints]]`` nothing is registered and the core's event dispatch stays
exactly as cheap as without this plugin.
"""

from __future__ import annotations

from typing import Any

from fluxmq_core.hookspecs import hookimpl
from fluxmq_core.webhooks.notifier import Notifier

_KEY = "fluxmq.webhooks"


@hookimpl
def fluxmq_register_servers(context: Any) -> list[Any]:
    cfg = context.config.webhooks
    if cfg.endpoints:
        notifier = Notifier(cfg, context.node_id)
        notifier.start()
        context.extras[_KEY] = notifier
        context.events.add_sink(notifier)
    return []


@hookimpl
async def fluxmq_shutdown(context: Any) -> None:
    notifier = context.extras.pop(_KEY, None)
    if notifier is None:
        return
    context.events.remove_sink(notifier)
    # Leave half of the broker's own shutdown budget to the steps after this one.
    budget = min(
        context.config.webhooks.shutdown_timeout, context.config.server.shutdown_timeout / 2
    )
    await notifier.stop(budget)
