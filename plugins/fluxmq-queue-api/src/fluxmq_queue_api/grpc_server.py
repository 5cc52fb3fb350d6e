"""The gRPC face of the queue API: a ``grpc.aio`` server on ``[api] grpc``.

Handlers are built from the service descriptor of the generated code (no
``_pb2_grpc`` module), one per RPC, each logging the caller in from its
``authorization`` metadata and peer address before calling :class:`QueueAPI`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from fluxmq_queue_api import SERVICE
from fluxmq_queue_api.config import ApiConfig
from fluxmq_queue_api.errors import ApiError, internal, status_details_bin
from fluxmq_queue_api.service import METHODS, Caller, Method, QueueAPI

__all__ = ["GrpcFace", "peer_address"]

log = logging.getLogger("fluxmq.queue_api")

STATUS = {code.value[1].replace(" ", "_"): code for code in grpc.StatusCode}
STATUS["canceled"] = grpc.StatusCode.CANCELLED  # Connect's spelling


def peer_address(peer: str) -> str:
    """``ipv4:127.0.0.1:5000`` / ``ipv6:[::1]:5000`` -> ``host:port`` (what
    ``AuthRequest.remote`` holds); ``?`` when unknown."""
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6") and rest:
        return rest
    return "?"


class GrpcFace:
    """The gRPC server of the queue API."""

    def __init__(self, api: QueueAPI, cfg: ApiConfig) -> None:
        self.api = api
        self.cfg = cfg
        self.server: grpc.aio.Server | None = None
        self.port = 0

    async def start(self, bind: str) -> tuple[str, int]:
        # SO_REUSEPORT only when the core's listeners use it ([server] reuse_port, set
        # for each `fluxmq run --workers` process): the workers then share this port.
        server_cfg = getattr(self.api.context.config, "server", None)
        reuse_port = 1 if getattr(server_cfg, "reuse_port", False) else 0
        opts = [
            ("grpc.max_send_message_length", self.cfg.max_message_size),
            ("grpc.max_receive_message_length", self.cfg.max_message_size),
            ("grpc.so_reuseport", reuse_port),
        ]
        server = grpc.aio.server(options=opts)
        handlers = {name: self._handler(m) for name, m in METHODS.items()}
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        names = [SERVICE]
        if self.cfg.reflection:
            try:
                from grpc_reflection.v1alpha import reflection
            except ImportError:
                log.info("queue api: grpcio-reflection is not installed: no server reflection")
            else:
                reflection.enable_server_reflection([*names, reflection.SERVICE_NAME], server)
        host = bind.rsplit(":", 1)[0] or "0.0.0.0"
        try:
            if self.cfg.tls_cert:
                port = server.add_secure_port(bind, self._credentials())
            else:
                port = server.add_insecure_port(bind)
        except RuntimeError as exc:
            raise OSError(f"[api] grpc: cannot listen on {bind!r}: {exc}") from None
        if not port:
            raise OSError(f"[api] grpc: cannot listen on {bind!r} (address in use or invalid)")
        await server.start()
        self.server, self.port = server, port
        log.info("queue api: gRPC on %s:%d%s", host, port, " (TLS)" if self.cfg.tls_cert else "")
        return host.strip("[]"), port

    def _credentials(self) -> grpc.ServerCredentials:
        cfg = self.cfg
        key = Path(cfg.tls_key or cfg.tls_cert).read_bytes()
        cert = Path(cfg.tls_cert).read_bytes()
        ca = Path(cfg.tls_ca).read_bytes() if cfg.tls_ca and cfg.tls_client_auth != "none" else None
        return grpc.ssl_server_credentials(
            [(key, cert)],
            root_certificates=ca,
            require_client_auth=cfg.tls_client_auth == "required",
        )

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(grace=1.0)
            self.server = None

    async def _login(self, ctx: grpc.aio.ServicerContext) -> Caller:
        meta = {k.lower(): v for k, v in (ctx.invocation_metadata() or ()) if isinstance(v, str)}
        remote = peer_address(ctx.peer() or "")
        return await self.api.login(
            meta.get("authorization"), remote, meta.get("x-fluxmq-client-id", "")
        )

    def _handler(self, m: Method) -> grpc.RpcMethodHandler:
        fn = self.api.handlers[m.name]
        des, ser = m.request.FromString, m.response.SerializeToString

        async def abort(ctx: grpc.aio.ServicerContext, exc: ApiError) -> None:
            code = STATUS[exc.code]
            details = status_details_bin(code.value[0], exc)
            await ctx.abort(
                code, exc.message, trailing_metadata=(("grpc-status-details-bin", details),)
            )

        if m.kind == "unary":

            async def unary(request: Any, ctx: grpc.aio.ServicerContext) -> Any:
                try:
                    return await fn(request, await self._login(ctx))
                except ApiError as exc:
                    await abort(ctx, exc)
                except Exception as exc:
                    await abort(ctx, internal(m.name, exc))

            return grpc.unary_unary_rpc_method_handler(unary, des, ser)
        if m.kind == "client_stream":

            async def client_stream(
                requests: AsyncIterator[Any], ctx: grpc.aio.ServicerContext
            ) -> Any:
                try:
                    return await fn(requests, await self._login(ctx))
                except ApiError as exc:
                    await abort(ctx, exc)
                except Exception as exc:
                    await abort(ctx, internal(m.name, exc))

            return grpc.stream_unary_rpc_method_handler(client_stream, des, ser)

        async def server_stream(request: Any, ctx: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                caller = await self._login(ctx)
                async for item in fn(request, caller):
                    yield item
            except ApiError as exc:
                await abort(ctx, exc)
            except Exception as exc:
                await abort(ctx, internal(m.name, exc))

        return grpc.unary_stream_rpc_method_handler(server_stream, des, ser)
