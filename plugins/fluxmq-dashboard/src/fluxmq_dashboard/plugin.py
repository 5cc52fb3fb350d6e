"""Hookimpls of the dashboard plugin: the console's routes on the core HTTP listener.

``fluxmq_startup`` runs once every listener is up, so the core HTTP service (the
``fluxmq.http`` extra) exists and the console's routes join its router, as the otel
plugin's ``/metrics`` does. The console itself talks only to the admin API under
``/api/v1``; the plugin adds one thing to what that API says: the time each client
connected (``extra["connected_at"]`` of a session), kept from the core's client
events and added by a session annotator.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fluxmq_core.hookspecs import hookimpl
from fluxmq_core.sessions import SessionInfo
from fluxmq_dashboard.site import StaticSite

log = logging.getLogger("fluxmq.dashboard")

_KEY = "dashboard"


class Dashboard:
    """The plugin's one object per broker (``context.extras["dashboard"]``)."""

    def __init__(self) -> None:
        self.site = StaticSite()
        #: (protocol, client id) -> wall-clock time of the last accepted connect.
        self.connected_at: dict[tuple[str, str], float] = {}

    def annotate(self, info: SessionInfo) -> None:
        if info.connected:
            at = self.connected_at.get((info.protocol, info.client_id))
            if at is not None:
                info.extra["connected_at"] = round(at, 3)


@hookimpl
def fluxmq_startup(context: Any) -> None:
    dash = Dashboard()
    context.extras[_KEY] = dash
    context.sessions.annotators.append(dash.annotate)
    http = context.extras.get("fluxmq.http")
    if http is None:
        log.info("dashboard: no HTTP listener, so the web console is not served")
        return
    dash.site.install(http.router)
    log.info("dashboard: web console at /ui/ on the HTTP listener")


@hookimpl
def fluxmq_shutdown(context: Any) -> None:
    dash = context.extras.pop(_KEY, None)
    if dash is not None and dash.annotate in context.sessions.annotators:
        context.sessions.annotators.remove(dash.annotate)


@hookimpl
def fluxmq_client_connected(
    context: Any, protocol: str, client_id: str, username: str | None, remote: str
) -> None:
    dash = context.extras.get(_KEY)
    if dash is not None:
        dash.connected_at[(protocol, client_id)] = time.time()


@hookimpl
def fluxmq_client_disconnected(context: Any, protocol: str, client_id: str, reason: str) -> None:
    dash = context.extras.get(_KEY)
    # A takeover's new connection may be announced before the old one's end.
    if dash is not None and reason != "takeover":
        dash.connected_at.pop((protocol, client_id), None)
