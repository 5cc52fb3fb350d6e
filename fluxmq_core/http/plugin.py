"""The HTTP listener as a core default plugin: hookimpls only.

``fluxmq_register_servers`` is ``trylast`` so that the HTTP listener's spec comes
after every protocol's: when the test kit (or a user) puts several listeners on one
address, a WebSocket endpoint's more specific predicate is asked first (see
:func:`fluxmq_core.transport.websocket.websocket_header`).
"""

from __future__ import annotations

from typing import Any

from fluxmq_core.hookspecs import hookimpl
from fluxmq_core.http.config import HTTPConfig
from fluxmq_core.http.routes import HTTPService
from fluxmq_core.http.server import http_header
from fluxmq_core.transport import ListenerSpec, ProtocolServer

_KEY = "fluxmq.http"


@hookimpl(trylast=True)
def fluxmq_register_servers(context: Any) -> list[ProtocolServer]:
    cfg: HTTPConfig = context.config.http
    service = HTTPService(context, cfg)
    context.extras[_KEY] = service
    context.sessions.register("http", service)
    spec = ListenerSpec(
        "http.bind",
        cfg.bind,
        service.protocol_factory,
        header=http_header,
        max_connections=cfg.max_connections,
        kind="http",
    )
    specs = [spec]
    ssl_ctx = cfg.server_ssl_context()
    if ssl_ctx is not None:
        specs.append(
            ListenerSpec(
                "http.tls_bind",
                cfg.tls_bind,
                service.protocol_factory,
                ssl=ssl_ctx,
                header=http_header,
                max_connections=cfg.max_connections,
                kind="https",
            )
        )
    return [
        ProtocolServer(
            "http", specs, stop=service.stop, info={"routes": len(service.router.routes)}
        )
    ]


@hookimpl
def fluxmq_startup(context: Any) -> None:
    service = context.extras.get(_KEY)
    if service is not None:
        service.started = True
