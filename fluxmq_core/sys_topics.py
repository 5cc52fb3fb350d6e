"""``$SYS/broker/...`` status topics, published retained every ``[sys] interval``.

A core default plugin: it reads the integer counters in ``context.stats`` and the
router's counts, so it costs nothing between updates. Topic names follow
Mosquitto's, which monitoring tools already know.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fluxmq_core import __version__
from fluxmq_core.hookspecs import hookimpl
from fluxmq_core.message import Message

log = logging.getLogger("fluxmq.sys")

_KEY = "fluxmq.sys_topics"


def sys_values(context: Any) -> dict[str, str]:
    """The current ``$SYS`` topic -> payload map."""
    s = context.stats
    r = context.router
    uptime = int(max(0.0, context.clock() - s.started_at))
    return {
        "$SYS/broker/version": f"FluxMQ {__version__}",
        "$SYS/broker/uptime": f"{uptime} seconds",
        "$SYS/broker/clients/connected": str(s.clients_connected),
        "$SYS/broker/clients/total": str(s.clients_total),
        "$SYS/broker/clients/disconnected": str(s.clients_disconnected),
        "$SYS/broker/messages/received": str(s.messages_received),
        "$SYS/broker/messages/sent": str(s.messages_sent),
        "$SYS/broker/messages/dropped": str(s.messages_dropped),
        "$SYS/broker/bytes/received": str(s.bytes_received),
        "$SYS/broker/bytes/sent": str(s.bytes_sent),
        "$SYS/broker/subscriptions/count": str(r.subscription_count),
        "$SYS/broker/retained messages/count": str(r.retained_count),
    }


def publish_sys(context: Any) -> int:
    """Publish every ``$SYS`` value once (retained); returns how many."""
    now = context.clock()
    values = sys_values(context)
    for topic, payload in values.items():
        context.router.publish(
            Message(
                topic,
                payload.encode(),
                0,
                True,
                origin_protocol="sys",
                origin_client=context.node_id,
                timestamp=now,
            )
        )
    return len(values)


async def _loop(context: Any, interval: float) -> None:
    while True:
        try:
            publish_sys(context)
        except Exception:
            log.exception("publishing $SYS topics failed")
        await asyncio.sleep(interval)


@hookimpl
def fluxmq_startup(context: Any) -> None:
    interval = context.config.sys.interval
    if interval > 0:
        context.extras[_KEY] = asyncio.get_running_loop().create_task(_loop(context, interval))


@hookimpl
async def fluxmq_shutdown(context: Any) -> None:
    task = context.extras.pop(_KEY, None)
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
