"""Hookimpls of the CoAP plugin: its config section and its protocol server.

The UDP socket is opened by the server's ``start`` (the core's listener set is for
stream sockets); the bound address is published in ``context.bound["coap.bind"]``
like every other listener's, so the test kit and the exposure log see it.
"""

from __future__ import annotations

from typing import Any

from fluxmq_coap.config import CoAPConfig
from fluxmq_coap.server import CoAPServer
from fluxmq_core.hookspecs import hookimpl
from fluxmq_core.metrics import MetricSpec, register_metrics
from fluxmq_core.transport import ProtocolServer


@hookimpl
def fluxmq_add_config() -> dict[str, type]:
    return {"coap": CoAPConfig}


@hookimpl
def fluxmq_register_servers(context: Any) -> list[ProtocolServer]:
    cfg: CoAPConfig = context.config.coap
    server = CoAPServer(context, cfg)
    context.extras["coap"] = server
    register_metrics(context, "coap", metric_specs(server))
    return [
        ProtocolServer(
            "coap", [], start=server.start, stop=server.stop, info={"versions": "RFC 7252"}
        )
    ]


@hookimpl
async def fluxmq_reload(context: Any) -> None:
    """Users or ACL may have changed: observations no longer allowed end (4.03)."""
    server = context.extras.get("coap")
    if isinstance(server, CoAPServer):
        await server.recheck_acl()


def metric_specs(server: CoAPServer) -> list[MetricSpec]:
    """The ``coap.*`` metrics: this listener's own totals and its observers, read at
    collection time (nothing per message beyond the integer increments)."""

    def unacked() -> int:
        return sum(len(o.unacked) for o in list(server.observers.values()))

    return [
        MetricSpec("coap.requests.total", "counter", lambda: server.requests, "{request}",
                   "CoAP requests handled (every method and resource)."),
        MetricSpec("coap.publishes.total", "counter", lambda: server.publishes, "{message}",
                   "Messages published through CoAP (POST/PUT and the compatible paths)."),
        MetricSpec("coap.observations.total", "counter", lambda: server.observations,
                   "{observation}", "Observe registrations accepted since start."),
        MetricSpec("coap.observers.current", "updown", lambda: len(server.observers),
                   "{observation}", "Observations (subscriptions) open now."),
        MetricSpec("coap.notifications.sent.total", "counter", lambda: server.notifications,
                   "{message}", "Observe notifications sent (CON and NON)."),
        MetricSpec("coap.notifications.dropped.total", "counter",
                   lambda: server.notifications_dropped, "{message}",
                   "Notifications dropped: observer queue full, expired or too large."),
        MetricSpec("coap.notifications.unacked", "gauge", unacked, "{message}",
                   "Confirmable notifications waiting for their ACK."),
    ]  # fmt: skip
