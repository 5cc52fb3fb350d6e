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

import base64
import dataclasses
import hmac
import json
import sys
from typing import TYPE_CHECKING, Any

from fluxmq_core.contracts import is_loopback
from fluxmq_core.http.routes import SSESubscriber
from fluxmq_core.http.server import (
    HTTPError,
    Request,
    Response,
    StreamResponse,
    StreamWriter,
    json_response,
)

if TYPE_CHECKING:
    from fluxmq_core.http.routes import HTTPService

__all__ = ["add_admin_routes", "is_loopback", "record_line"]

PREFIX = "/api/v1"
MAX_LIMIT = 1000


def add_admin_routes(service: HTTPService) -> None:
    api = AdminAPI(service)
    r = service.router
    r.add("GET", f"{PREFIX}/stats", api.stats, "Broker counters", "admin")
    r.add("GET", f"{PREFIX}/sessions", api.sessions, "List sessions", "admin")
    r.add("GET", f"{PREFIX}/sessions/{{client_id}}", api.session, "One session", "admin")
    r.add(
        "DELETE", f"{PREFIX}/sessions/{{client_id}}", api.disconnect, "Disconnect a client", "admin"
    )
    r.add("GET", f"{PREFIX}/subscriptions", api.subscriptions, "List subscriptions", "admin")
    r.add(
        "GET",
        f"{PREFIX}/subscriptions/filters",
        api.subscription_filters,
        "Topic filters with their subscriber counts",
        "admin",
    )
    r.add("GET", f"{PREFIX}/queues", api.queues, "List durable queues", "admin")
    r.add("POST", f"{PREFIX}/queues", api.create_queue, "Declare a queue", "admin")
    r.add("GET", f"{PREFIX}/queues/{{name}}", api.queue, "One queue with its groups", "admin")
    r.add("DELETE", f"{PREFIX}/queues/{{name}}", api.delete_queue, "Delete a queue", "admin")
    r.add(
        "POST",
        f"{PREFIX}/queues/{{name}}/purge",
        api.purge_queue,
        "Remove a queue's messages",
        "admin",
    )
    r.add(
        "GET",
        f"{PREFIX}/queues/{{name}}/records",
        api.queue_records,
        "Export a queue's log as JSON lines (read-only)",
        "admin",
    )
    r.add("POST", f"{PREFIX}/publish", api.publish, "Publish a message as the admin", "admin")
    r.add("GET", f"{PREFIX}/tail", api.tail, "Stream matching messages as the admin (SSE)", "admin")
    r.add("GET", f"{PREFIX}/cluster", api.cluster, "Cluster nodes and their health", "admin")
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
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), token.encode()
            ):
                raise HTTPError(
                    401,
                    "admin API: missing or wrong bearer token",
                    [("WWW-Authenticate", 'Bearer realm="fluxmq-admin"')],
                )
        elif not is_loopback(req.remote_host):
            raise HTTPError(
                403, "admin API: only loopback clients are served while [http] admin_token is empty"
            )

    def _page(self, req: Request, items: list[Any]) -> dict[str, Any]:
        limit = req.int_arg("limit", 100, minimum=1, maximum=MAX_LIMIT)
        offset = req.int_arg("offset", 0, minimum=0)
        return {
            "total": len(items),
            "limit": limit,
            "offset": offset,
            "items": items[offset : offset + limit],
        }

    async def stats(self, req: Request) -> Response:
        self.guard(req)
        ctx = self.context
        body: dict[str, Any] = {
            "node_id": ctx.node_id,
            "uptime": round(max(0.0, ctx.clock() - ctx.stats.started_at), 3),
            "broker": ctx.stats.snapshot(),
            "router": {
                "subscriptions": ctx.router.subscription_count,
                "retained": ctx.router.retained_count,
            },
            "queues": ctx.queues.stats() if ctx.queues is not None else {},
            "listeners": {name: f"{h}:{p}" for name, (h, p) in sorted(ctx.bound.items())},
            "protocols": ctx.sessions.protocols,
            "process": process_stats(),
        }
        if req.arg("by_protocol") == "true":  # walks every session: asked for, not always
            body["sessions_by_protocol"] = self._by_protocol()
        return json_response(body)

    def _by_protocol(self) -> dict[str, dict[str, int]]:
        """Sessions, connected clients and subscriptions of each protocol."""
        out = {
            p: {"sessions": 0, "connected": 0, "subscriptions": 0}
            for p in self.context.sessions.protocols
        }
        for info in self.context.sessions.list():
            row = out.setdefault(info.protocol, {"sessions": 0, "connected": 0, "subscriptions": 0})
            row["sessions"] += 1
            row["connected"] += int(info.connected)
            row["subscriptions"] += len(info.subscriptions)
        return out

    async def sessions(self, req: Request) -> Response:
        self.guard(req)
        connected = req.arg("connected")
        if connected not in (None, "", "true", "false"):
            raise HTTPError(400, "query parameter 'connected' must be true or false")
        infos = self.context.sessions.list(
            protocol=req.arg("protocol") or None, prefix=req.arg("prefix", "") or ""
        )
        if connected:
            infos = [i for i in infos if i.connected == (connected == "true")]
        search = (req.arg("search") or "").lower()
        if search:
            infos = [
                i
                for i in infos
                if any(search in (v or "").lower() for v in (i.client_id, i.username, i.remote))
            ]
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
        exact = req.arg("filter")
        rows = [
            {"client_id": i.client_id, "protocol": i.protocol, "filter": f, "qos": q}
            for i in self.context.sessions.list(protocol=req.arg("protocol") or None)
            if client is None or i.client_id == client
            for f, q in i.subscriptions.items()
            if f.startswith(prefix) and (exact is None or f == exact)
        ]
        page = self._page(req, rows)
        page["subscriptions"] = page.pop("items")
        return json_response(page)

    async def subscription_filters(self, req: Request) -> Response:
        """One row per topic filter: how many clients hold it, by protocol; query
        ``search`` (substring of the filter), ``protocol`` and paging; sorted by
        subscriber count, then filter."""
        self.guard(req)
        search = req.arg("search") or ""
        by_filter: dict[str, dict[str, int]] = {}
        for info in self.context.sessions.list(protocol=req.arg("protocol") or None):
            for f in info.subscriptions:
                if search in f:
                    counts = by_filter.setdefault(f, {})
                    counts[info.protocol] = counts.get(info.protocol, 0) + 1
        ordered = sorted(by_filter.items(), key=lambda fc: (-sum(fc[1].values()), fc[0]))
        rows = [{"filter": f, "subscribers": sum(c.values()), "protocols": c} for f, c in ordered]
        page = self._page(req, rows)
        page["filters"] = page.pop("items")
        return json_response(page)

    # --- publish and tail as the admin (the web console) ------------------------------

    async def publish(self, req: Request) -> Response:
        """``POST /publish``'s body and answers, authorized by the admin token instead
        of the client auth hooks (an operator's test message)."""
        self.guard(req)
        service = self.service
        return await service._publish_counted(service._message(req))

    async def tail(self, req: Request) -> StreamResponse:
        """``GET /subscribe``'s event stream, authorized by the admin token instead of
        the client auth hooks. The stream is an ``http`` session like any other."""
        self.guard(req)
        service = self.service
        filters = service._stream_filters(req)
        if self.context.shutting_down.is_set():
            raise HTTPError(503, "server shutting down")
        client_id = req.headers.get("x-fluxmq-client-id") or f"admin-tail:{req.remote}"
        if client_id in service.streams:
            raise HTTPError(409, f"client id {client_id!r} is already streaming")
        sub = AdminTail(service, client_id, None, req.remote, filters)

        async def stream(writer: StreamWriter) -> None:
            await sub.run(writer)

        return StreamResponse(stream, headers=[("X-Accel-Buffering", "no")])

    async def queues(self, req: Request) -> Response:
        self.guard(req)
        qm = self.context.queues
        infos = [dataclasses.asdict(i) for i in qm.list()] if qm is not None else []
        return json_response({"queues": infos})

    # --- queues (fluxmq queue ...) --------------------------------------------------

    def _qm(self) -> Any:
        qm = self.context.queues
        if qm is None:
            raise HTTPError(503, "the queue manager is not running")
        return qm

    def _known(self, req: Request) -> tuple[Any, str]:
        qm = self._qm()
        name = req.params["name"]
        if qm.get(name) is None:
            raise HTTPError(404, f"no queue {name!r}")
        return qm, name

    async def create_queue(self, req: Request) -> Response:
        """Body: ``{"name": ..., <[queues.<name>] keys>}``. 201 when created, 200 when
        it exists with the same settings, 409 with other settings."""
        self.guard(req)
        from fluxmq_core.queues import QueueError

        qm = self._qm()
        try:
            body = json.loads(req.body or b"{}")
        except ValueError:
            raise HTTPError(400, "the body must be a JSON object") from None
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            raise HTTPError(400, "the body must be a JSON object with a string 'name'")
        name = body.pop("name")
        existed = qm.get(name) is not None
        try:
            qm.declare(name, body)
        except QueueError as exc:
            raise HTTPError(409 if existed else 400, str(exc)) from None
        return json_response(dataclasses.asdict(qm.info(name)), 200 if existed else 201)

    async def queue(self, req: Request) -> Response:
        self.guard(req)
        qm, name = self._known(req)
        out = dataclasses.asdict(qm.info(name))
        out["config"] = qm.get(name).config.to_record()
        return json_response(out)

    async def delete_queue(self, req: Request) -> Response:
        self.guard(req)
        qm, name = self._known(req)
        qm.delete(name)
        return json_response({"status": "ok", "queue": name})

    async def purge_queue(self, req: Request) -> Response:
        self.guard(req)
        qm, name = self._known(req)
        return json_response({"status": "ok", "queue": name, "purged": qm.purge(name)})

    async def queue_records(self, req: Request) -> StreamResponse:
        """``from`` (offset, default the first retained) and ``limit`` (default all):
        one JSON object a line with offset, timestamp, topic, base64 payload, qos and
        properties. Reads through ``QueueLog.iter_records``; consumers are untouched."""
        self.guard(req)
        qm, name = self._known(req)
        start = req.int_arg("from", -1, minimum=-1)
        limit = req.int_arg("limit", 0, minimum=0)
        log_ = qm.get(name).log

        async def stream(writer: StreamWriter) -> None:
            it = log_.iter_records(name, None if start < 0 else start, limit or None)
            buf: list[bytes] = []
            async for offset, message in it:
                buf.append(record_line(offset, message))
                if len(buf) >= 256:
                    writer.write(b"".join(buf))
                    buf.clear()
                    await writer.drain()
                    if writer.closed.is_set():
                        return
            if buf:
                writer.write(b"".join(buf))

        return StreamResponse(stream, content_type="application/x-ndjson")

    async def cluster(self, req: Request) -> Response:
        """The cluster driver's view: driver, this node, every node with its health
        (the ``none`` driver answers with this node alone)."""
        self.guard(req)
        return json_response(self.context.cluster.status())

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


class AdminTail(SSESubscriber):
    """An SSE subscriber that skips the per-delivery ACL read check (``[auth]
    acl_subscribe = "filter"``): the admin token sees every matching message. Still
    bounded: past ``sse_queue_size`` new messages are dropped and counted."""

    __slots__ = ()

    def deliver(self, message: Any, delivery: Any) -> None:
        if len(self.queue) >= self.limit:
            self._drop(message, "queue full")
            return
        self.queue.append((message, delivery.retain))
        self.wake.set()


def process_stats() -> dict[str, Any]:
    """This process's resident memory (``/proc`` on Linux; the peak elsewhere), peak
    memory, CPU seconds and thread count: cheap enough to ask every second."""
    import os
    import threading

    out: dict[str, Any] = {"pid": os.getpid(), "threads": threading.active_count()}
    try:
        import resource

        usage = resource.getrusage(resource.RUSAGE_SELF)
        scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS
        out["max_rss_bytes"] = int(usage.ru_maxrss * scale)
        out["cpu_seconds"] = round(usage.ru_utime + usage.ru_stime, 3)
    except ImportError:  # pragma: no cover - Windows
        pass
    try:
        with open("/proc/self/statm", "rb") as fh:
            out["rss_bytes"] = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        if "max_rss_bytes" in out:
            out["rss_bytes"] = out["max_rss_bytes"]
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def record_line(offset: int, message: Any) -> bytes:
    """One exported queue record as a JSON line (what ``fluxmq queue sql`` loads).

    ``payload`` is base64; ``properties`` holds the message's protocol properties
    (bytes as base64) plus, when set, ``user_properties``, ``content_type``,
    ``correlation_data``, ``response_topic``, ``expires_at`` and the origin."""
    props = _plain(message.properties or {})
    if message.user_properties:
        props["user_properties"] = [list(p) for p in message.user_properties]
    for key in ("content_type", "correlation_data", "response_topic", "expires_at"):
        value = getattr(message, key)
        if value is not None:
            props[key] = _plain(value)
    if message.origin_protocol:
        props["origin_protocol"] = message.origin_protocol
    if message.origin_client:
        props["origin_client"] = message.origin_client
    return (
        json.dumps(
            {
                "offset": offset,
                "timestamp": message.timestamp,
                "topic": message.topic,
                "payload": base64.b64encode(message.payload).decode("ascii"),
                "qos": message.qos,
                "properties": props,
            },
            separators=(",", ":"),
        ).encode()
        + b"\n"
    )
