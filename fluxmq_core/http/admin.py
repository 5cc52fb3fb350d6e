"""The admin API under ``/api/v1``: stats, sessions, subscriptions, queues, reload,
and the OpenAPI document that describes every route of the HTTP listener.

Access: with ``[http] admin_token`` set, every admin route needs
``Authorization: Bearer <token>`` (401 otherwise, compared in constant time); with no
token, admin routes answer loopback clients only (403 for anyone else), so a broker
started with defaults never exposes its admin API to the network. The OpenAPI
document itself is public: it describes routes, not data.

Sessions come from the core's session directory (``context.sessions``), where each
protocol plugin registers its own; this module knows no protocol.
"""

from __future__ import annotations

import dataclasses
import hmac
import ipaddress
from typing import TYPE_CHECKING, Any

from fluxmq_core.http.server import HTTPError, Request, Response, json_response

if TYPE_CHECKING:
    from fluxmq_core.http.routes import HTTPService

__all__ = ["add_admin_routes", "is_loopback"]

PREFIX = "/api/v1"
MAX_LIMIT = 1000


def is_loopback(host: str) -> bool:
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def add_admin_routes(service: HTTPService) -> None:
    api = AdminAPI(service)
    r = service.router
    r.add("GET", f"{PREFIX}/stats", api.stats, "Broker counters", "admin")
    r.add("GET", f"{PREFIX}/sessions", api.sessions, "List sessions", "admin")
    r.add("GET", f"{PREFIX}/sessions/{{client_id}}", api.session, "One session", "admin")
    r.add("DELETE", f"{PREFIX}/sessions/{{client_id}}", api.disconnect, "Disconnect a client", "admin")
    r.add("GET", f"{PREFIX}/subscriptions", api.subscriptions, "List subscriptions", "admin")
    r.add("GET", f"{PREFIX}/queues", api.queues, "List durable queues", "admin")
    r.add("POST", f"{PREFIX}/reload", api.reload, "Reload users, ACL and log settings", "admin")
    r.add("GET", f"{PREFIX}/openapi.json", api.openapi, "This OpenAPI document", "meta")


class AdminAPI:
    def __init__(self, service: HTTPService) -> None:
        self.service = service
        self.context = service.context

    def guard(self, req: Request) -> None:
        token = self.service.cfg.admin_token
        if token:
            header = req.headers.get("authorization", "")
            scheme, _, given = header.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
                raise HTTPError(401, "admin API: missing or wrong bearer token",
                                [("WWW-Authenticate", 'Bearer realm="fluxmq-admin"')])
        elif not is_loopback(req.remote_host):
            raise HTTPError(403, "admin API: only loopback clients are served while [http] admin_token is empty")

    def _page(self, req: Request, items: list[Any]) -> dict[str, Any]:
        limit = req.int_arg("limit", 100, minimum=1, maximum=MAX_LIMIT)
        offset = req.int_arg("offset", 0, minimum=0)
        return {"total": len(items), "limit": limit, "offset": offset, "items": items[offset:offset + limit]}

    async def stats(self, req: Request) -> Response:
        self.guard(req)
        ctx = self.context
        return json_response({
            "node_id": ctx.node_id,
            "uptime": round(max(0.0, ctx.clock() - ctx.stats.started_at), 3),
            "broker": ctx.stats.snapshot(),
            "router": {"subscriptions": ctx.router.subscription_count,
                       "retained": ctx.router.retained_count},
            "queues": ctx.queues.stats() if ctx.queues is not None else {},
            "listeners": {name: f"{h}:{p}" for name, (h, p) in sorted(ctx.bound.items())},
            "protocols": ctx.sessions.protocols,
        })

    async def sessions(self, req: Request) -> Response:
        self.guard(req)
        connected = req.arg("connected")
        if connected not in (None, "", "true", "false"):
            raise HTTPError(400, "query parameter 'connected' must be true or false")
        infos = self.context.sessions.list(protocol=req.arg("protocol") or None, prefix=req.arg("prefix", "") or "")
        if connected:
            infos = [i for i in infos if i.connected == (connected == "true")]
        page = self._page(req, [i.to_dict() for i in infos])
        page["sessions"] = page.pop("items")
        return json_response(page)

    async def session(self, req: Request) -> Response:
        self.guard(req)
        client_id = req.params["client_id"]
        infos = self.context.sessions.get(client_id, protocol=req.arg("protocol") or None)
        if not infos:
            raise HTTPError(404, f"no session {client_id!r}")
        return json_response(infos[0].to_dict())

    async def disconnect(self, req: Request) -> Response:
        self.guard(req)
        client_id = req.params["client_id"]
        if not self.context.sessions.disconnect(client_id, protocol=req.arg("protocol") or None):
            raise HTTPError(404, f"no connected client {client_id!r}")
        return json_response({"status": "ok", "client_id": client_id})

    async def subscriptions(self, req: Request) -> Response:
        self.guard(req)
        prefix = req.arg("prefix", "") or ""
        client = req.arg("client_id")
        rows = [
            {"client_id": i.client_id, "protocol": i.protocol, "filter": f, "qos": q}
            for i in self.context.sessions.list(protocol=req.arg("protocol") or None)
            if client is None or i.client_id == client
            for f, q in i.subscriptions.items()
            if f.startswith(prefix)
        ]
        page = self._page(req, rows)
        page["subscriptions"] = page.pop("items")
        return json_response(page)

    async def queues(self, req: Request) -> Response:
        self.guard(req)
        qm = self.context.queues
        infos = [dataclasses.asdict(i) for i in qm.list()] if qm is not None else []
        return json_response({"queues": infos})

    async def reload(self, req: Request) -> Response:
        self.guard(req)
        reload = self.context.reload
        if reload is None:
            raise HTTPError(503, "reload is not available")
        applied = await reload()
        return json_response({"status": "ok", "applied": list(applied or [])})

    async def openapi(self, req: Request) -> Response:
        from fluxmq_core.http.openapi import document

        return json_response(document(self.service.router))
