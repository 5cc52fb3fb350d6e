"""The public routes of the HTTP listener: ``POST /publish``, ``GET /health``,
``GET /ready`` and ``GET /subscribe`` (Server-Sent Events).

:class:`HTTPService` is the one object behind the listener: it holds the router of
routes (these plus the admin API of ``admin.py``), the open connections, and the SSE
subscribers, which are ordinary router subscribers with a bounded queue: a reader
that falls behind loses messages (counted), never memory. The publish bridge keeps
the Go FluxMQ's body (``topic``, base64 ``payload``, ``qos``, ``retain``) and goes
through the same auth hooks and ``context.publish`` as every protocol; a topic under
``$queue/`` goes to the queue manager by the same core path as MQTT's, and the
answer waits until the append is durable (errors: 404 unknown queue under
``auto_create = "none"``, 400 bad queue topic, 413 too large, 503 full or not stored).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from fluxmq_core.auth import PUBLISH, SUBSCRIBE, AuthRequest, AuthResult
from fluxmq_core.callout.hooks import HookRequest, apply_outcome
from fluxmq_core.http.server import (
    HTTPError,
    HTTPProtocol,
    Request,
    Response,
    Router,
    StreamResponse,
    StreamWriter,
    json_response,
)
from fluxmq_core.message import Message
from fluxmq_core.queues import (
    InvalidQueueNameError,
    MessageTooLargeError,
    QueueError,
    QueueFullError,
    QueuesUnavailableError,
    QueueTopicError,
    UnknownQueueError,
    is_queue_topic,
    split_queue_topic,
)
from fluxmq_core.router.topics import TopicError, validate_topic_filter, validate_topic_name
from fluxmq_core.router.types import Delivery, SubscriptionOptions
from fluxmq_core.sessions import SessionInfo

if TYPE_CHECKING:
    from fluxmq_core.context import BrokerContext
    from fluxmq_core.http.config import HTTPConfig

__all__ = ["HTTPService", "SSESubscriber"]

log = logging.getLogger("fluxmq.http")

PROTOCOL = "http"
_AUTH_CHALLENGE = [("WWW-Authenticate", 'Basic realm="fluxmq", Bearer realm="fluxmq"')]


class HTTPService:
    """Routes, connections and SSE streams of the HTTP listener."""

    def __init__(self, context: BrokerContext, cfg: HTTPConfig) -> None:
        self.context = context
        self.cfg = cfg
        self.router = Router()
        self.connections: set[HTTPProtocol] = set()
        self.streams: dict[str, SSESubscriber] = {}
        self.started = False
        r = self.router
        r.add("POST", "/publish", self.publish, "Publish a message", "bridge")
        r.add(
            "GET",
            "/subscribe",
            self.subscribe,
            "Stream matching messages (Server-Sent Events)",
            "bridge",
        )
        r.add("GET", "/health", self.health, "Liveness", "health")
        r.add("GET", "/ready", self.ready, "Readiness: storage, listeners and cluster", "health")
        from fluxmq_core.http.admin import add_admin_routes

        add_admin_routes(self)

    def protocol_factory(self) -> HTTPProtocol:
        return HTTPProtocol(
            self.router,
            max_body=self.cfg.max_body,
            request_timeout=self.cfg.request_timeout,
            connections=self.connections,
        )

    async def stop(self) -> None:
        """End SSE streams, close connections (an in-flight request still answers)."""
        for stream in list(self.streams.values()):
            stream.end("server shutting down")
        for proto in list(self.connections):
            proto.gone.set()
            if proto.transport is not None and proto._task is None:
                proto.transport.close()
        for _ in range(50):  # streams finish their last write within a few ticks
            if not self.streams:
                break
            await asyncio.sleep(0.01)
        for proto in list(self.connections):
            if proto.transport is not None:
                proto.transport.close()

    # -- credentials -----------------------------------------------------------------------

    async def login(self, req: Request) -> AuthResult:
        """HTTP Basic, or ``Authorization: Bearer <token>`` (the token is the password,
        the username none), or no credentials (anonymous), through the auth hooks.
        401 with a challenge when refused."""
        username, password = credentials(req)
        result = await self.context.auth.authenticate(
            AuthRequest(
                protocol=PROTOCOL,
                client_id=self.client_id(req),
                username=username,
                password=password,
                remote=req.remote,
                tls_identity=None,
            )
        )
        if not result.ok:
            self.context.stats.auth_failures += 1
            raise HTTPError(
                401, f"authentication failed: {result.reason or 'refused'}", _AUTH_CHALLENGE
            )
        return result

    async def allowed(self, req: Request, user: AuthResult, action: str, topic: str) -> None:
        auth = self.context.auth
        client_id = self.client_id(req)
        try:
            ok = await auth.authorize(client_id, user.username, action, topic)
        finally:
            auth.forget_client(client_id)  # one request is one "client": keep no cache
        if not ok:
            self.context.stats.authz_denied += 1
            raise HTTPError(403, f"not authorized to {action} on {topic!r}")

    @staticmethod
    def client_id(req: Request) -> str:
        return req.headers.get("x-fluxmq-client-id") or f"http:{req.remote}"

    # -- POST /publish ---------------------------------------------------------------------

    def _rate_limited(self, req: Request, kind: str) -> None:
        """``[rate_limit]`` per client (the client id header, else the address):
        429 Too Many Requests with ``Retry-After``. One attribute check when unset."""
        limits = self.context.limits
        if limits is None:
            return
        key = self.client_id(req)
        allowed = limits.allow_publish(key) if kind == PUBLISH else limits.allow_subscribe(key)
        if not allowed:
            raise HTTPError(
                429,
                f"{kind} rate limit exceeded",
                [("Retry-After", str(limits.retry_after(kind, key)))],
            )

    async def publish(self, req: Request) -> Response:
        user = await self.login(req)
        self._rate_limited(req, PUBLISH)
        message = self._message(req)
        await self.allowed(req, user, PUBLISH, message.topic)
        hooks = self.context.hooks
        if hooks is not None and hooks.wants("auth_on_publish", PROTOCOL):
            await self._publish_hook(req, user, hooks, message)
        return await self._publish_counted(message)

    async def _publish_counted(self, message: Message) -> Response:
        """Count an authorized message as received, then route it (or append it to
        its queue, answered once durable). Shared with the admin API's publish."""
        stats = self.context.stats
        stats.messages_received += 1
        stats.publish_received += 1
        stats.bytes_received += len(message.payload)
        if is_queue_topic(message.topic):
            return await self._publish_queued(message)
        self.context.publish(message)
        return json_response({"status": "ok"})

    async def _publish_hook(
        self, req: Request, user: AuthResult, hooks: Any, message: Message
    ) -> None:
        """``auth_on_publish``: 403 on a denial; a new topic is authorized again."""
        outcome = await hooks.call(
            HookRequest(
                "auth_on_publish",
                PROTOCOL,
                self.client_id(req),
                message.topic,
                payload=message.payload,
                qos=message.qos,
                retain=message.retain,
                properties=dict(message.user_properties or []),
            )
        )
        if not outcome.allow:
            raise HTTPError(403, f"publish refused: {outcome.reason}")
        if outcome.topic is not None and outcome.topic != message.topic:
            await self.allowed(req, user, PUBLISH, outcome.topic)
            message.topic = outcome.topic
        apply_outcome(message, outcome)

    async def _publish_queued(self, message: Message) -> Response:
        """A ``$queue/`` publish: answered once the append is durable, with the
        queue and offset; a refusal or a failed append is an error status."""
        ctx = self.context
        try:
            fut = ctx.publish_queued(message)
        except QueueError as exc:
            ctx.stats.messages_dropped += 1
            raise HTTPError(_queue_error_status(exc), str(exc)) from None
        try:
            offset = await fut
        except Exception as exc:
            ctx.stats.messages_dropped += 1
            log.warning("HTTP publish to %r: queue append failed: %s", message.topic, exc)
            raise HTTPError(
                503, f"queue append failed, the message was not stored: {exc}"
            ) from None
        name, _ = split_queue_topic(message.topic)
        return json_response({"status": "ok", "queue": name, "offset": offset})

    def _message(self, req: Request) -> Message:
        try:
            body = json.loads(req.body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise HTTPError(400, f"invalid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise HTTPError(400, "the body must be a JSON object")
        unknown = set(body) - {"topic", "payload", "qos", "retain", "properties"}
        if unknown:
            raise HTTPError(400, f"unknown field(s): {', '.join(sorted(unknown))}")
        topic = body.get("topic")
        if not isinstance(topic, str) or not topic:
            raise HTTPError(400, "'topic' must be a non-empty string")
        try:
            validate_topic_name(topic)
        except TopicError as exc:
            raise HTTPError(400, f"invalid topic: {exc}") from None
        payload = _b64(body.get("payload", ""), "payload")
        qos = body.get("qos", 0)
        if not isinstance(qos, int) or isinstance(qos, bool) or not 0 <= qos <= 2:
            raise HTTPError(400, "'qos' must be 0, 1 or 2")
        retain = body.get("retain", False)
        if not isinstance(retain, bool):
            raise HTTPError(400, "'retain' must be true or false")
        now = self.context.clock()
        message = Message(
            topic,
            payload,
            qos,
            retain,
            origin_protocol=PROTOCOL,
            origin_client=self.client_id(req),
            timestamp=now,
        )
        props = body.get("properties")
        if props is not None:
            _apply_properties(message, props, now)
        return message

    # -- GET /health, /ready -----------------------------------------------------------------

    async def health(self, req: Request) -> Response:
        ctx = self.context
        return json_response(
            {
                "status": "ok",
                "node_id": ctx.node_id,
                "uptime": round(max(0.0, ctx.clock() - ctx.stats.started_at), 3),
            }
        )

    async def ready(self, req: Request) -> Response:
        ctx = self.context
        stopping = ctx.shutting_down.is_set()
        checks = {
            "storage": bool(getattr(ctx.store, "ready", True)) and not stopping,
            "listeners": self.started and not stopping,
            "cluster": bool(getattr(ctx.cluster, "ready", True)),
        }
        ok = all(checks.values())
        return json_response(
            {"status": "ready" if ok else "not ready", "checks": checks}, 200 if ok else 503
        )

    # -- GET /subscribe (SSE) ------------------------------------------------------------------

    async def _subscribe_hook(self, req: Request, user: AuthResult, hooks: Any, f: str) -> str:
        """``auth_on_subscribe``: 403 on a denial; the filter to use (a new one is
        checked and authorized again)."""
        outcome = await hooks.call(
            HookRequest("auth_on_subscribe", PROTOCOL, self.client_id(req), f)
        )
        if not outcome.allow:
            raise HTTPError(403, f"subscribe to {f!r} refused: {outcome.reason}")
        if outcome.topic is None or outcome.topic == f:
            return f
        try:
            validate_topic_filter(outcome.topic)
        except TopicError as exc:
            raise HTTPError(403, f"hook gave an invalid filter {outcome.topic!r}: {exc}") from None
        await self.allowed(req, user, SUBSCRIBE, outcome.topic)
        return outcome.topic

    @staticmethod
    def _stream_filters(req: Request) -> list[str]:
        """The ``filter`` query parameters of a stream request, each a valid topic
        filter (400 otherwise). Shared with the admin API's tail."""
        filters: list[str] = req.query.get("filter") or []
        if not filters:
            raise HTTPError(400, "query parameter 'filter' is required")
        for f in filters:
            try:
                validate_topic_filter(f)
            except TopicError as exc:
                raise HTTPError(400, f"invalid filter {f!r}: {exc}") from None
        return filters

    async def subscribe(self, req: Request) -> StreamResponse:
        filters = self._stream_filters(req)
        user = await self.login(req)
        self._rate_limited(req, SUBSCRIBE)
        for f in filters:
            await self.allowed(req, user, SUBSCRIBE, f)
        hooks = self.context.hooks
        if hooks is not None and hooks.wants("auth_on_subscribe", PROTOCOL):
            filters = [await self._subscribe_hook(req, user, hooks, f) for f in filters]
        if self.context.shutting_down.is_set():
            raise HTTPError(503, "server shutting down")
        if self.client_id(req) in self.streams:
            raise HTTPError(409, f"client id {self.client_id(req)!r} is already streaming")
        sub = SSESubscriber(self, self.client_id(req), user.username, req.remote, filters)

        async def stream(writer: StreamWriter) -> None:
            await sub.run(writer)

        return StreamResponse(stream, headers=[("X-Accel-Buffering", "no")])

    # -- sessions provider (the admin API lists SSE streams as "http" sessions) -----------------

    def list(self) -> list[SessionInfo]:
        return [s.info() for s in list(self.streams.values())]

    def get(self, client_id: str) -> SessionInfo | None:
        s = self.streams.get(client_id)
        return None if s is None else s.info()

    def disconnect(self, client_id: str) -> bool:
        s = self.streams.get(client_id)
        if s is None:
            return False
        s.end("disconnected by an administrator")
        return True


class SSESubscriber:
    """A router subscriber feeding one ``/subscribe`` stream through a bounded queue."""

    __slots__ = (
        "service",
        "client_id",
        "protocol",
        "username",
        "remote",
        "filters",
        "queue",
        "limit",
        "dropped",
        "sent",
        "wake",
        "ended",
        "reason",
    )

    def __init__(
        self,
        service: HTTPService,
        client_id: str,
        username: str | None,
        remote: str,
        filters: list[str],
    ) -> None:
        self.service = service
        self.client_id = client_id
        self.protocol = PROTOCOL
        self.username = username
        self.remote = remote
        self.filters = filters
        self.limit = service.cfg.sse_queue_size
        self.queue: deque[tuple[Message, bool]] = deque()
        self.dropped = 0
        self.sent = 0
        self.wake = asyncio.Event()
        self.ended = False
        self.reason = "normal"

    def deliver(self, message: Message, delivery: Delivery) -> None:
        auth = self.service.context.auth
        if auth.filter_reads and not auth.may_read(self.client_id, self.username, message.topic):
            self._drop(message, "not authorized")  # [auth] acl_subscribe = "filter"
            return
        if len(self.queue) >= self.limit:
            self._drop(message, "queue full")
            return
        self.queue.append((message, delivery.retain))
        self.wake.set()

    def _drop(self, message: Message, reason: str) -> None:
        self.dropped += 1
        ctx = self.service.context
        ctx.stats.messages_dropped += 1
        if ctx.events.on_dropped:
            ctx.events.message_dropped(message, PROTOCOL, self.client_id, reason)

    def end(self, reason: str) -> None:
        self.ended = True
        self.reason = reason
        self.wake.set()

    def info(self) -> SessionInfo:
        return SessionInfo(
            client_id=self.client_id,
            protocol=PROTOCOL,
            connected=True,
            username=self.username,
            remote=self.remote,
            version="sse",
            subscriptions={f: 0 for f in self.filters},
            queued=len(self.queue),
            extra={"dropped": self.dropped, "sent": self.sent},
        )

    async def run(self, writer: StreamWriter) -> None:
        service = self.service
        ctx = service.context
        router = ctx.router
        events = ctx.events
        options = SubscriptionOptions(qos=0)
        service.streams[self.client_id] = self
        ctx.stats.clients_connected += 1
        ctx.stats.clients_total += 1
        events.client_connected(PROTOCOL, self.client_id, self.username, self.remote)
        subscribed = []
        try:
            for f in self.filters:
                if router.subscribe(self, f, options):
                    ctx.stats.subscriptions += 1
                    subscribed.append(f)
                    events.client_subscribed(PROTOCOL, self.client_id, f, options)
                for m in router.retained_for(f)[: self.limit]:
                    self.deliver(m, Delivery(0, retain=True))
            writer.write(f": subscribed to {', '.join(self.filters)}\n\n".encode())
            await self._pump(writer)
        finally:
            for f in subscribed:
                if router.unsubscribe(self, f):
                    ctx.stats.subscriptions -= 1
                    events.client_unsubscribed(PROTOCOL, self.client_id, f)
            service.streams.pop(self.client_id, None)
            ctx.auth.forget_client(self.client_id)  # read decisions cached per delivery
            ctx.stats.clients_connected -= 1
            ctx.stats.clients_disconnected += 1
            reason = self.reason if self.ended else "connection lost"
            events.client_disconnected(PROTOCOL, self.client_id, reason)

    async def _pump(self, writer: StreamWriter) -> None:
        keepalive = self.service.cfg.sse_keepalive or None
        closed = writer.closed
        stats = self.service.context.stats
        while not self.ended and not closed.is_set():
            if not self.queue:
                self.wake.clear()
                waiters = [
                    asyncio.ensure_future(self.wake.wait()),
                    asyncio.ensure_future(closed.wait()),
                ]
                done, pending = await asyncio.wait(
                    waiters, timeout=keepalive, return_when=asyncio.FIRST_COMPLETED
                )
                for w in pending:
                    w.cancel()
                if not done:
                    writer.write(b": keepalive\n\n")
                continue
            out = bytearray()
            while self.queue and len(out) < 65536:
                message, retain = self.queue.popleft()
                self.sent += 1
                out += _sse_event(self.sent, message, retain)
            stats.messages_sent += 1
            writer.write(bytes(out))
            await writer.drain()


def _queue_error_status(exc: QueueError) -> int:
    """The HTTP status of a refused queue publish."""
    if isinstance(exc, UnknownQueueError):
        return 404
    if isinstance(exc, (InvalidQueueNameError, QueueTopicError)):
        return 400
    if isinstance(exc, MessageTooLargeError):
        return 413
    if isinstance(exc, (QueueFullError, QueuesUnavailableError)):
        return 503
    return 400


def _sse_event(seq: int, m: Message, retain: bool) -> bytes:
    data: dict[str, Any] = {
        "topic": m.topic,
        "payload": base64.b64encode(m.payload).decode(),
        "qos": m.qos,
        "retain": retain,
    }
    try:
        data["text"] = m.payload.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if m.content_type:
        data["content_type"] = m.content_type
    if m.user_properties:
        data["user_properties"] = [list(p) for p in m.user_properties]
    return (
        f"id: {seq}\nevent: message\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
    )


def credentials(req: Request) -> tuple[str | None, bytes | None]:
    """``(username, password)`` from the ``Authorization`` header; ``(None, None)``
    without one. A malformed header is a 401 (never a silent anonymous login)."""
    header = req.headers.get("authorization")
    if header is None:
        return None, None
    scheme, _, value = header.strip().partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise HTTPError(401, "malformed Basic credentials", _AUTH_CHALLENGE) from None
        user, sep, password = decoded.partition(":")
        if not sep:
            raise HTTPError(401, "malformed Basic credentials", _AUTH_CHALLENGE)
        return user, password.encode()
    if scheme == "bearer" and value:
        return None, value.encode()
    raise HTTPError(401, "unsupported Authorization scheme (use Basic or Bearer)", _AUTH_CHALLENGE)


def _b64(value: Any, name: str) -> bytes:
    if not isinstance(value, str):
        raise HTTPError(400, f"'{name}' must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPError(400, f"'{name}' is not valid base64") from None


def _apply_properties(m: Message, props: Any, now: float) -> None:
    """Optional MQTT 5-style properties of a published message."""
    if not isinstance(props, dict):
        raise HTTPError(400, "'properties' must be an object")
    known = {
        "content_type",
        "correlation_data",
        "response_topic",
        "user_properties",
        "message_expiry",
    }
    unknown = set(props) - known
    if unknown:
        raise HTTPError(400, f"unknown properties: {', '.join(sorted(unknown))}")
    if "content_type" in props:
        if not isinstance(props["content_type"], str):
            raise HTTPError(400, "'properties.content_type' must be a string")
        m.content_type = props["content_type"]
    if "correlation_data" in props:
        m.correlation_data = _b64(props["correlation_data"], "properties.correlation_data")
    if "response_topic" in props:
        rt = props["response_topic"]
        if not isinstance(rt, str) or not rt:
            raise HTTPError(400, "'properties.response_topic' must be a non-empty string")
        try:
            validate_topic_name(rt)
        except TopicError as exc:
            raise HTTPError(400, f"invalid response_topic: {exc}") from None
        m.response_topic = rt
    if "user_properties" in props:
        up = props["user_properties"]
        pairs: list[tuple[str, str]] = []
        if isinstance(up, dict):
            pairs = [(str(k), v) for k, v in up.items()]
        elif isinstance(up, list) and all(isinstance(p, list) and len(p) == 2 for p in up):
            pairs = [(p[0], p[1]) for p in up]
        else:
            raise HTTPError(
                400, "'properties.user_properties' must be an object or a list of [key, value]"
            )
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in pairs):
            raise HTTPError(400, "'properties.user_properties' keys and values must be strings")
        m.user_properties = pairs or None
    if "message_expiry" in props:
        exp = props["message_expiry"]
        if not isinstance(exp, int) or isinstance(exp, bool) or exp < 0:
            raise HTTPError(
                400, "'properties.message_expiry' must be a whole number of seconds >= 0"
            )
        m.expires_at = now + exp
