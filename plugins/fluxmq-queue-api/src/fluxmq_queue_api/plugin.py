"""Hookimpls of the queue API plugin: the ``[api]`` section, start and stop.

``fluxmq_startup`` runs once every listener is up, so the core HTTP service (the
``fluxmq.http`` extra) exists and the Connect route joins its router, as the otel
plugin's ``/metrics`` does; the gRPC server binds its own port and reports it in
``context.bound["api.grpc"]`` like every listener.
"""

from __future__ import annotations

import logging
from typing import Any

from fluxmq_core.hookspecs import hookimpl
from fluxmq_queue_api.config import ApiConfig
from fluxmq_queue_api.connect import ConnectFace
from fluxmq_queue_api.grpc_server import GrpcFace
from fluxmq_queue_api.service import QueueAPI

log = logging.getLogger("fluxmq.queue_api")

_KEY = "queue_api"


class _Running:
    def __init__(self, api: QueueAPI, grpc_face: GrpcFace | None) -> None:
        self.api = api
        self.grpc = grpc_face


@hookimpl
def fluxmq_add_config() -> dict[str, type]:
    return {"api": ApiConfig}


@hookimpl
async def fluxmq_startup(context: Any) -> None:
    cfg: ApiConfig = context.config.api
    api = QueueAPI(context, cfg)
    api.start()
    face: GrpcFace | None = None
    running = _Running(api, None)
    context.extras[_KEY] = running
    if cfg.grpc:
        face = GrpcFace(api, cfg)
        try:
            context.bound["api.grpc"] = await face.start(cfg.grpc)
        except Exception:
            await api.stop()
            context.extras.pop(_KEY, None)
            raise
        running.grpc = face
    http = context.extras.get("fluxmq.http")
    if cfg.connect and http is not None:
        ConnectFace(api).install(http.router)
    elif cfg.connect:
        log.info("queue api: no HTTP listener, so the Connect protocol is not served")


@hookimpl
async def fluxmq_shutdown(context: Any) -> None:
    running = context.extras.pop(_KEY, None)
    if running is None:
        return
    running.api.closing.set()  # open streams end at their next wake-up
    for member in list(running.api.members.values()):
        member.ready.set()
    if running.grpc is not None:
        await running.grpc.stop()
    await running.api.stop()


@hookimpl
def fluxmq_reload(context: Any) -> None:
    """Users and ACL may have changed: later calls log in again."""
    running = context.extras.get(_KEY)
    if running is not None:
        running.api.forget_logins()
