"""``fluxmq.queue.v1.QueueService`` on the core queue manager, protocol free.

:class:`QueueAPI` holds one handler per RPC; the gRPC face (``grpc_server``) and
the Connect face (``connect``) decode a request, call :meth:`QueueAPI.login` with
the caller's ``authorization`` header and address, then the handler, and encode
what comes back. Handlers raise :class:`~fluxmq_queue_api.errors.ApiError`.

Everything goes through ``context.queues``, so what the API appends an MQTT or AMQP
consumer of ``$queue/<name>`` receives, and the other way round. A message's
``key`` is its routing key: ``Append(queue="orders", key="eu")`` appends a message
with topic ``$queue/orders/eu``, which is what an MQTT client publishing to that
topic appends too; reading gives back the routing key as the key. Headers are user
properties (UTF-8 values).

API consumers: ``JoinGroup``, ``Consume``, ``ConsumeQueue`` and ``Claim`` register a
:class:`ApiConsumer` with the queue manager, an ordinary queue subscriber that
buffers what the group's dispatcher hands it (at most ``max_in_flight``
unacknowledged, the consumer's credit). ``Consume`` drains the buffer, a
``ConsumeQueue`` stream sends it as it fills. A consumer with no call or heartbeat
for its session timeout is removed and its pending messages go to the group's other
consumers; one with an open ``ConsumeQueue`` stream stays.

Access: ``authorization: Bearer <[http] admin_token>`` may do everything. Any other
credentials (Basic, or a bearer token as a password) and no credentials at all go
through the core auth service (``[auth] anonymous`` decides the last), then the ACL:
appending needs ``publish`` on the message's topic, everything else that reads or
consumes ``subscribe`` on ``$queue/<name>``. Creating, updating and deleting queues,
Purge and Truncate need the admin token, or, while ``[http] admin_token`` is empty,
a loopback client (the admin API's rule).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import hmac
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import duration_pb2, empty_pb2, timestamp_pb2
from google.protobuf.message_factory import GetMessageClass

from fluxmq_core.auth import PUBLISH, SUBSCRIBE, AuthRequest
from fluxmq_core.contracts import is_loopback
from fluxmq_core.message import Message
from fluxmq_core.queues import QueueError
from fluxmq_core.queues.config import QueueConfig
from fluxmq_core.queues.types import Consumer, decorate, routing_key
from fluxmq_core.router.topics import TopicError, validate_topic_name
from fluxmq_core.router.types import Delivery
from fluxmq_queue_api._proto import queue_pb2 as pb
from fluxmq_queue_api.config import ApiConfig
from fluxmq_queue_api.errors import ApiError, from_queue_error

__all__ = ["METHODS", "ApiConsumer", "Caller", "Method", "QueueAPI"]

log = logging.getLogger("fluxmq.queue_api")

PROTOCOL = "queue-api"
DEFAULT_BATCH = 100
MAX_BATCH = 1000
STREAM_WINDOW = 1000  # AppendQueue appends waiting for durability at once


@dataclass(frozen=True)
class Method:
    """One RPC: its name, kind (``unary``, ``client_stream``, ``server_stream``) and
    the request and response message classes."""

    name: str
    kind: str
    request: Any
    response: Any


def _methods() -> dict[str, Method]:
    service = pb.DESCRIPTOR.services_by_name["QueueService"]
    out = {}
    for m in service.methods:
        if m.client_streaming and m.server_streaming:
            raise AssertionError("no bidirectional method in QueueService")
        kind = (
            "client_stream"
            if m.client_streaming
            else "server_stream"
            if m.server_streaming
            else "unary"
        )
        out[m.name] = Method(
            m.name, kind, GetMessageClass(m.input_type), GetMessageClass(m.output_type)
        )
    return out


#: Logins kept by the login cache at most (the oldest go first).
MAX_LOGINS = 10_000


def remote_owner(q: Any) -> str | None:
    """The node that holds ``q`` when a cluster driver answered a stand-in for a
    queue living on another node (it has an ``owner`` and no local log), else None."""
    if hasattr(q, "log"):
        return None
    owner = getattr(q, "owner", None)
    return str(owner) if owner else None


#: Every RPC of ``fluxmq.queue.v1.QueueService`` by name.
METHODS = _methods()


@dataclass
class Caller:
    """Who is calling: ``admin`` for the admin token, else the identity the auth
    service accepted (``username`` may be None: anonymous)."""

    username: str | None
    client_id: str
    remote: str
    admin: bool = False


class ApiConsumer:
    """A queue subscriber that buffers deliveries for ``Consume`` and
    ``ConsumeQueue`` (see the module docstring)."""

    protocol = PROTOCOL

    def __init__(
        self, queue: str, group: str, consumer_id: str, session_timeout: float, now: float
    ) -> None:
        self.queue = queue
        self.group = group
        self.consumer_id = consumer_id
        self.client_id = f"api:{consumer_id}"
        self.buffer: deque[Message] = deque()
        self.ready = asyncio.Event()
        self.handle: Consumer | None = None
        self.metadata: dict[str, str] = {}
        self.session_timeout = session_timeout
        self.last_seen = now
        self.streams = 0

    def deliver(self, message: Message, delivery: Delivery) -> None:
        self.buffer.append(message)
        self.ready.set()

    @property
    def closed(self) -> bool:
        return self.handle is None or self.handle.closed


@dataclass
class _GroupState:
    generation: int = 0
    created_at: float = field(default_factory=time.time)


Key = tuple[str, str, str]


class QueueAPI:
    """The handlers of every RPC (see the module docstring)."""

    def __init__(self, context: Any, cfg: ApiConfig) -> None:
        self.context = context
        self.cfg = cfg
        self.members: dict[Key, ApiConsumer] = {}
        self.groups: dict[tuple[str, str], _GroupState] = {}
        self.closing = asyncio.Event()
        #: What idle Tail streams wait for (resolved at stop, so they end).
        self._tail_waits: set[asyncio.Future[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self.handlers: dict[str, Callable[..., Any]] = {
            name: getattr(self, _snake(name)) for name in METHODS
        }
        #: successful logins: (Authorization header, client id) -> (caller, expiry)
        self.logins: dict[tuple[str, str], tuple[Caller, float]] = {}

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(
            self._sweep_loop(), name="fluxmq-queue-api-sessions"
        )

    async def stop(self) -> None:
        self.closing.set()
        for fut in list(self._tail_waits):
            if not fut.done():
                fut.set_result(None)
        for member in list(self.members.values()):
            member.ready.set()
            self._remove(member)
        if self._sweeper is not None:
            self._sweeper.cancel()
            try:
                await self._sweeper
            except asyncio.CancelledError:
                pass
            self._sweeper = None

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.cfg.session_timeout / 4))
            self.expire_sessions(time.monotonic())

    def expire_sessions(self, now: float) -> int:
        """Remove API consumers silent for longer than their session timeout."""
        gone = 0
        for member in list(self.members.values()):
            if member.streams == 0 and now - member.last_seen > member.session_timeout:
                log.info(
                    "queue api: consumer %s of %s/%s timed out",
                    member.consumer_id,
                    member.queue,
                    member.group,
                )
                self._remove(member)
                gone += 1
        return gone

    # --- access ---------------------------------------------------------------------------

    @property
    def admin_token(self) -> str:
        http = getattr(self.context.config, "http", None)
        return getattr(http, "admin_token", "") or ""

    def forget_logins(self) -> None:
        """Drop every cached login and its cached ACL decisions (on reload)."""
        auth = self.context.auth
        for caller, _expiry in self.logins.values():
            auth.forget_client(caller.client_id)
        self.logins.clear()

    async def login(self, authorization: str | None, remote: str, client_id: str = "") -> Caller:
        """The caller of one request, or UNAUTHENTICATED. A successful login is
        reused for ``[api] login_cache_ttl`` seconds by calls with the same
        Authorization header and client id (a gRPC channel keeps its connection, so
        its remote address), so a stream of unary calls costs one login and one
        authorization per queue and action, not one per call."""
        client_id = client_id or f"api:{remote}"
        ttl = self.cfg.login_cache_ttl
        key = (authorization or "", client_id)
        if ttl:
            hit = self.logins.get(key)
            if hit is not None:
                if time.monotonic() < hit[1]:
                    return hit[0]
                del self.logins[key]
                self.context.auth.forget_client(client_id)
        caller = await self._login(authorization, remote, client_id)
        if ttl and not caller.admin:
            if len(self.logins) >= MAX_LOGINS:
                old_key = next(iter(self.logins))  # the oldest goes first
                old_caller, _ = self.logins.pop(old_key)
                self.context.auth.forget_client(old_caller.client_id)
            self.logins[key] = (caller, time.monotonic() + ttl)
        return caller

    async def _login(self, authorization: str | None, remote: str, client_id: str) -> Caller:
        username: str | None = None
        password: bytes | None = None
        if authorization:
            scheme, _, value = authorization.strip().partition(" ")
            scheme, value = scheme.lower(), value.strip()
            if scheme == "bearer" and value:
                token = self.admin_token
                if token and hmac.compare_digest(value.encode(), token.encode()):
                    return Caller("$admin", client_id, remote, admin=True)
                password = value.encode()
            elif scheme == "basic":
                try:
                    decoded = base64.b64decode(value, validate=True).decode("utf-8")
                except (binascii.Error, UnicodeDecodeError):
                    raise ApiError("unauthenticated", "malformed Basic credentials") from None
                user, sep, secret = decoded.partition(":")
                if not sep:
                    raise ApiError("unauthenticated", "malformed Basic credentials")
                username, password = user, secret.encode()
            else:
                raise ApiError(
                    "unauthenticated", "unsupported authorization scheme (use Bearer or Basic)"
                )
        result = await self.context.auth.authenticate(
            AuthRequest(
                protocol=PROTOCOL,
                client_id=client_id,
                username=username,
                password=password,
                remote=remote,
                tls_identity=None,
            )
        )
        if not result.ok:
            self.context.stats.auth_failures += 1
            raise ApiError(
                "unauthenticated", f"authentication failed: {result.reason or 'refused'}"
            )
        return Caller(result.username, client_id, remote)

    async def allow(self, caller: Caller, action: str, topic: str) -> None:
        """PERMISSION_DENIED unless the ACL lets ``caller`` do ``action`` on ``topic``."""
        if caller.admin:
            return
        auth = self.context.auth
        try:
            ok = await auth.authorize(caller.client_id, caller.username, action, topic)
        finally:
            if not self.cfg.login_cache_ttl:
                auth.forget_client(caller.client_id)  # one request is one "client"
        if not ok:
            self.context.stats.authz_denied += 1
            raise ApiError("permission_denied", f"not authorized to {action} on {topic!r}")

    async def may_read(self, caller: Caller, queue: str) -> None:
        await self.allow(caller, SUBSCRIBE, f"$queue/{queue}")

    def require_admin(self, caller: Caller, what: str) -> None:
        if caller.admin:
            return
        if self.admin_token:
            raise ApiError("permission_denied", f"{what} needs the admin bearer token")
        host = caller.remote.rsplit(":", 1)[0].strip("[]")
        if not is_loopback(host):
            raise ApiError(
                "permission_denied",
                f"{what}: only loopback clients may while [http] admin_token is empty",
            )

    # --- helpers ------------------------------------------------------------------------

    @property
    def queues(self) -> Any:
        return self.context.queues

    def _queue(self, name: str, *, remote_ok: bool = False) -> Any:
        """The queue ``name``. In a cluster it may live on another node (its owner):
        appends, consuming, acks and nacks reach it from here (``remote_ok``); any
        other call is refused with the node to ask instead."""
        if not name:
            raise ApiError("invalid_argument", "queue_name is required")
        q = self.queues.get(name)
        if q is None:
            raise ApiError("not_found", f"unknown queue {name!r}")
        owner = remote_owner(q)
        if owner is not None and not remote_ok:
            raise ApiError(
                "failed_precondition",
                f"queue {name!r} lives on node {owner} of the cluster: call this there "
                "(append, consume, ack and nack work from any node)",
            )
        return q

    def _group(self, queue: str, group: str) -> Any:
        q = self._queue(queue)
        if not group:
            raise ApiError("invalid_argument", "group_id is required")
        g = q.groups.get(group)
        if g is None:
            raise ApiError("not_found", f"queue {queue!r} has no consumer group {group!r}")
        return g

    def _state(self, queue: str, group: str) -> _GroupState:
        return self.groups.setdefault((queue, group), _GroupState())

    def _member(
        self,
        queue: str,
        group: str,
        consumer_id: str,
        *,
        credit: int = 0,
        session_timeout: float = 0.0,
    ) -> tuple[ApiConsumer, bool]:
        """The API consumer ``consumer_id`` of the group, registered when new
        (``True`` then)."""
        q = self._queue(queue, remote_ok=True)
        if not group:
            raise ApiError("invalid_argument", "group_id is required")
        if not consumer_id:
            raise ApiError("invalid_argument", "consumer_id is required")
        key = (queue, group, consumer_id)
        member = self.members.get(key)
        now = time.monotonic()
        if member is not None and member.closed:
            self._remove(member)
            member = None
        if member is not None:
            member.last_seen = now
            if credit and member.handle is not None and member.handle.credit != credit:
                member.handle.set_credit(credit)
            return member, False
        member = ApiConsumer(
            queue, group, consumer_id, session_timeout or self.cfg.session_timeout, now
        )
        # A queue on another node: its groups are the owner's (the consumer joins
        # with the group's filter there).
        existing = q.groups.get(group) if remote_owner(q) is None else None
        try:
            member.handle = self.queues.consume(
                queue,
                group,
                member,
                filter=existing.filter if existing is not None else None,
                credit=credit or self.cfg.max_in_flight,
            )
        except QueueError as exc:
            raise from_queue_error(exc) from None
        self.members[key] = member
        self._state(queue, group).generation += 1
        return member, True

    def _remove(self, member: ApiConsumer) -> None:
        key = (member.queue, member.group, member.consumer_id)
        if self.members.get(key) is member:
            del self.members[key]
            state = self.groups.get((member.queue, member.group))
            if state is not None:
                state.generation += 1
        if member.handle is not None:
            self.queues.cancel(member.handle)
        member.buffer.clear()
        member.ready.set()

    def _api_id(self, core_id: str, queue: str, group: str) -> str:
        for m in self.members.values():
            if m.queue == queue and m.group == group and m.handle and m.handle.id == core_id:
                return m.consumer_id
        return core_id

    async def _read_at(self, q: Any, offset: int) -> Message | None:
        rows = await q.log.read(q.name, offset, 1)
        if rows and rows[0][0] == offset:
            return rows[0][1]
        return None

    async def _edges(self, q: Any) -> tuple[Message | None, Message | None]:
        first, nxt = q.log.first_offset(q.name), q.log.next_offset(q.name)
        if first >= nxt:
            return None, None
        oldest = await self._read_at(q, first)
        newest = await self._read_at(q, nxt - 1)
        return oldest, newest

    # --- queue administration ---------------------------------------------------------

    async def create_queue(self, req: Any, caller: Caller) -> Any:
        self.require_admin(caller, "CreateQueue")
        if not req.name:
            raise ApiError("invalid_argument", "name is required")
        if self.queues.get(req.name) is not None:
            raise ApiError("already_exists", f"queue {req.name!r} already exists")
        settings = {"type": "classic", "topics": list(req.topics)}
        settings.update(_config_from_proto(req.config))
        try:
            self.queues.declare(req.name, settings)
        except (QueueError, ValueError, TypeError) as exc:
            raise _as_api(exc) from None
        return await self._queue_proto(self._queue(req.name))

    async def get_queue(self, req: Any, caller: Caller) -> Any:
        q = self._queue(req.name)
        await self.may_read(caller, req.name)
        return await self._queue_proto(q)

    async def list_queues(self, req: Any, caller: Caller) -> Any:
        limit = min(req.limit or DEFAULT_BATCH, MAX_BATCH)
        names = sorted(q.name for q in self.queues.queues() if q.name.startswith(req.prefix))
        names = [n for n in names if n > req.page_token] if req.page_token else names
        out = pb.ListQueuesResponse()
        for name in names:
            if len(out.queues) >= limit:
                out.next_page_token = out.queues[-1].name
                break
            try:
                await self.may_read(caller, name)
            except ApiError:
                continue
            q = self.queues.get(name)
            if q is not None:
                out.queues.append(await self._queue_proto(q))
        return out

    async def delete_queue(self, req: Any, caller: Caller) -> Any:
        self.require_admin(caller, "DeleteQueue")
        self._queue(req.name)
        for member in [m for m in self.members.values() if m.queue == req.name]:
            self._remove(member)
        self.queues.delete(req.name)
        return empty_pb2.Empty()

    async def update_queue(self, req: Any, caller: Caller) -> Any:
        self.require_admin(caller, "UpdateQueue")
        q = self._queue(req.name)
        settings = dataclasses.asdict(q.declared)
        changes = _config_from_proto(req.config)
        if changes.get("type", q.type) != q.type:
            raise ApiError(
                "failed_precondition",
                f"queue {q.name!r} is a {q.type} queue; a queue's type cannot change "
                "(delete it and create it again)",
            )
        settings.update(changes)
        try:
            self.queues.declare(req.name, settings, update=True)
        except (QueueError, ValueError, TypeError) as exc:
            raise _as_api(exc) from None
        return await self._queue_proto(self._queue(req.name))

    async def _queue_proto(self, q: Any) -> Any:
        info = self.queues.info(q.name)
        cfg = q.config
        out = pb.Queue(name=q.name, topics=list(cfg.topics), reserved=q.name.startswith("$"))
        out.config.type = cfg.type
        out.config.max_priority = cfg.max_priority
        out.config.max_message_size = cfg.max_message_size
        out.config.compression = pb.COMPRESSION_TYPE_NONE
        out.config.retention.max_bytes = cfg.retention_bytes
        if cfg.retention_age:
            out.config.retention.max_age.CopyFrom(_duration(cfg.retention_age))
        out.state.total_messages = info.depth
        out.state.total_bytes = info.bytes
        out.state.consumer_group_count = len(info.groups)
        oldest, newest = await self._edges(q)
        if oldest is not None:
            out.state.oldest_message.CopyFrom(_timestamp(oldest.timestamp))
        if newest is not None:
            out.state.newest_message.CopyFrom(_timestamp(newest.timestamp))
        return out

    # --- append -------------------------------------------------------------------------

    def _message(
        self, queue: str, key: bytes, value: bytes, headers: Any, caller: Caller
    ) -> Message:
        try:
            text_key = key.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(
                "invalid_argument", "key must be UTF-8 text (it is the routing key)"
            ) from None
        topic = f"$queue/{queue}/{text_key}" if text_key else f"$queue/{queue}"
        try:
            validate_topic_name(topic)
        except TopicError as exc:
            raise ApiError(
                "invalid_argument", f"key {text_key!r} is not a routing key: {exc}"
            ) from None
        props = []
        for name in sorted(headers):
            try:
                props.append((name, bytes(headers[name]).decode("utf-8")))
            except UnicodeDecodeError:
                raise ApiError("invalid_argument", f"header {name!r} is not UTF-8 text") from None
        if len(value) > self.cfg.max_message_size:
            raise ApiError("invalid_argument", "value exceeds [api] max_message_size")
        extra = None
        if "priority" in headers:  # what a priority queue orders by, as AMQP's priority
            text = bytes(headers["priority"]).decode("utf-8", "replace")
            if not text.isdigit() or int(text) > 255:
                raise ApiError("invalid_argument", f"header 'priority' must be 0-255, got {text!r}")
            extra = {"priority": int(text)}
        return Message(
            topic,
            bytes(value),
            qos=1,
            properties=extra,
            user_properties=props or None,
            origin_protocol=PROTOCOL,
            origin_client=caller.client_id,
        )

    async def _submit(
        self, queue: str, message: Message, allowed: set[str], caller: Caller
    ) -> asyncio.Future[int]:
        """Check the ACL and append; the future resolves once the append is durable."""
        if message.topic not in allowed:
            await self.allow(caller, PUBLISH, message.topic)
            allowed.add(message.topic)
        try:
            fut = self.queues.append(queue, message)
        except QueueError as exc:
            raise from_queue_error(exc) from None
        self.context.stats.messages_received += 1
        return fut

    @staticmethod
    async def _durable(fut: asyncio.Future[int]) -> int:
        try:
            return await fut
        except Exception as exc:
            raise ApiError("unavailable", f"append not stored: {exc}") from None

    async def _append(self, queue: str, message: Message, allowed: set[str], caller: Caller) -> int:
        return await self._durable(await self._submit(queue, message, allowed, caller))

    async def append(self, req: Any, caller: Caller) -> Any:
        self._queue(req.queue_name, remote_ok=True)
        message = self._message(req.queue_name, req.key, req.value, req.headers, caller)
        offset = await self._append(req.queue_name, message, set(), caller)
        return pb.AppendResponse(offset=offset, timestamp=_timestamp(message.timestamp))

    async def append_batch(self, req: Any, caller: Caller) -> Any:
        q = self._queue(req.queue_name, remote_ok=True)
        if not req.messages:
            raise ApiError("invalid_argument", "messages is empty")
        batch = [
            self._message(req.queue_name, m.key, m.value, m.headers, caller) for m in req.messages
        ]
        # Checked before the first append, so that a batch is all or nothing for the
        # refusals we can foresee (size, a full queue under overflow = reject). A
        # queue on another node is checked there, message by message.
        cfg = q.config if remote_owner(q) is None else QueueConfig()
        if cfg.max_message_size:
            for i, m in enumerate(batch):
                if len(m.payload) > cfg.max_message_size:
                    raise ApiError(
                        "invalid_argument",
                        f"message {i}: payload exceeds max_message_size {cfg.max_message_size}",
                    )
        if cfg.max_depth and cfg.overflow == "reject" and q.depth + len(batch) > cfg.max_depth:
            raise ApiError(
                "resource_exhausted",
                f"queue {q.name!r} has room for {max(0, cfg.max_depth - q.depth)} of "
                f"{len(batch)} messages (max_depth {cfg.max_depth})",
            )
        allowed: set[str] = set()
        for m in {m.topic: m for m in batch}.values():
            await self.allow(caller, PUBLISH, m.topic)
            allowed.add(m.topic)
        offsets = [await self._append(q.name, m, allowed, caller) for m in batch]
        return pb.AppendBatchResponse(
            first_offset=offsets[0],
            last_offset=offsets[-1],
            count=len(offsets),
            timestamp=_timestamp(batch[-1].timestamp),
        )

    async def append_queue(self, requests: AsyncIterator[Any], caller: Caller) -> Any:
        queue = ""
        waiting: list[asyncio.Future[int]] = []
        first = last_offset = count = 0
        allowed: set[str] = set()
        last = 0.0

        async def settle() -> None:
            # Appends are not awaited one by one (the stream's messages share group
            # commits); at most STREAM_WINDOW wait at once.
            nonlocal first, last_offset, count
            while waiting:
                offset = await self._durable(waiting[0])
                waiting.pop(0)
                first = offset if count == 0 else first
                last_offset = offset
                count += 1

        try:
            async for req in requests:
                if not queue:
                    queue = req.queue_name
                    self._queue(queue, remote_ok=True)
                elif req.queue_name and req.queue_name != queue:
                    raise ApiError(
                        "invalid_argument",
                        f"AppendQueue: one stream appends to one queue ({queue!r}); "
                        f"got {req.queue_name!r}",
                    )
                message = self._message(queue, req.key, req.value, req.headers, caller)
                waiting.append(await self._submit(queue, message, allowed, caller))
                last = message.timestamp
                if len(waiting) >= STREAM_WINDOW:
                    await settle()
            await settle()
        except ApiError as exc:
            # What was appended before the refusal stays appended: say how much.
            for result in await asyncio.gather(*waiting, return_exceptions=True):
                if isinstance(result, int):
                    first = result if count == 0 else first
                    last_offset = result
                    count += 1
            exc.detail = pb.QueueErrorDetail(
                append_progress=pb.AppendProgress(
                    processed_count=count,
                    failed_index=count,
                    first_offset=first,
                    last_offset=last_offset,
                )
            )
            raise
        if not count:
            raise ApiError("invalid_argument", "AppendQueue: the stream had no messages")
        return pb.AppendBatchResponse(
            first_offset=first, last_offset=last_offset, count=count, timestamp=_timestamp(last)
        )

    # --- reading ------------------------------------------------------------------------

    async def read(self, req: Any, caller: Caller) -> Any:
        q = self._queue(req.queue_name)
        await self.may_read(caller, q.name)
        message = await self._read_at(q, req.offset)
        if message is None:
            first, nxt = q.log.first_offset(q.name), q.log.next_offset(q.name)
            raise ApiError(
                "not_found",
                f"queue {q.name!r} has no message at offset {req.offset} "
                f"(it holds offsets {first} to {nxt - 1})"
                if nxt > first
                else f"queue {q.name!r} has no message at offset {req.offset} (it is empty)",
            )
        return _message_proto(q.name, req.offset, message)

    async def read_batch(self, req: Any, caller: Caller) -> Any:
        q = self._queue(req.queue_name)
        await self.may_read(caller, q.name)
        limit = min(req.limit or DEFAULT_BATCH, MAX_BATCH)
        rows = await q.log.read(q.name, req.start_offset, limit)
        out = pb.ReadBatchResponse()
        size = 0
        nxt = req.start_offset
        for offset, message in rows:
            if req.max_bytes and out.messages and size + len(message.payload) > req.max_bytes:
                break
            out.messages.append(_message_proto(q.name, offset, message))
            size += len(message.payload)
            nxt = offset + 1
        nxt = max(nxt, q.log.first_offset(q.name)) if not out.messages else nxt
        out.next_offset = nxt
        out.end_of_queue = nxt >= q.log.next_offset(q.name)
        return out

    async def tail(self, req: Any, caller: Caller) -> AsyncIterator[Any]:
        q = self._queue(req.queue_name)
        await self.may_read(caller, q.name)
        start = req.start_from
        if start == pb.TailRequest.START_FROM_EARLIEST:
            offset = q.log.first_offset(q.name)
        elif start == pb.TailRequest.START_FROM_LATEST:
            offset = q.log.next_offset(q.name)
        else:
            offset = req.start_offset
        while not self.closing.is_set():
            if q.deleted:
                raise ApiError("not_found", f"queue {q.name!r} was deleted")
            before = q.log.next_offset(q.name)
            rows = await q.log.read(q.name, offset, DEFAULT_BATCH)
            if rows:
                for off, message in rows:
                    yield _message_proto(q.name, off, message)
                    offset = off + 1
                continue
            # Nothing retained at or after ``offset`` when the read started: skip
            # to where the log ended then (what came during the read is beyond).
            offset = max(offset, before)
            if q.log.next_offset(q.name) > offset:
                continue  # appended during the read
            # At the end of the log: sleep until the queue manager says something
            # was appended (or the queue was deleted); no polling.
            await self._await_append(q)

    async def _await_append(self, q: Any) -> None:
        if q.deleted:
            return
        fut = self.queues.watch(q.name)
        self._tail_waits.add(fut)
        try:
            await fut
        finally:
            self._tail_waits.discard(fut)
            fut.cancel()

    async def seek_to_offset(self, req: Any, caller: Caller) -> Any:
        q = self._queue(req.queue_name)
        await self.may_read(caller, q.name)
        first, nxt = q.log.first_offset(q.name), q.log.next_offset(q.name)
        offset = min(max(req.offset, first), nxt)
        message = await self._read_at(q, offset)
        out = pb.SeekResponse(
            offset=offset, exact_match=message is not None and offset == req.offset
        )
        if message is not None:
            out.timestamp.CopyFrom(_timestamp(message.timestamp))
        return out

    async def seek_to_timestamp(self, req: Any, caller: Caller) -> Any:
        q = self._queue(req.queue_name)
        await self.may_read(caller, q.name)
        if not req.HasField("timestamp"):
            raise ApiError("invalid_argument", "timestamp is required")
        wanted = req.timestamp.ToNanoseconds() / 1e9
        offset = await q.log.offset_for_time(q.name, wanted)
        message = await self._read_at(q, offset)
        out = pb.SeekResponse(offset=offset)
        if message is not None:
            out.timestamp.CopyFrom(_timestamp(message.timestamp))
            out.exact_match = _timestamp(message.timestamp) == req.timestamp
        return out

    # --- consumer groups ------------------------------------------------------------------

    def _group_proto(self, q: Any, g: Any) -> Any:
        info = g.info()
        out = pb.ConsumerGroup(queue_name=q.name, group_id=g.name, pattern=g.filter or "")
        vt = q.config.visibility_timeout
        if vt:
            out.config.ack_timeout.CopyFrom(_duration(vt))
        out.config.max_redeliveries = q.config.max_deliveries or 0
        out.cursor.cursor = info.cursor
        out.cursor.committed = info.committed or 0
        out.cursor.lag = max(0, q.log.next_offset(q.name) - info.cursor)
        out.pending_count = info.pending
        state = self.groups.get((q.name, g.name))
        if state is not None:
            out.created_at.CopyFrom(_timestamp(state.created_at))
        for c in g.consumers:
            out.consumers.append(self._consumer_proto(q.name, g.name, c))
        return out

    def _consumer_proto(self, queue: str, group: str, c: Consumer) -> Any:
        sub = c.subscriber
        if isinstance(sub, ApiConsumer):
            out = pb.ConsumerInfo(
                consumer_id=sub.consumer_id, pending_count=len(c.inflight), metadata=sub.metadata
            )
            out.last_heartbeat.CopyFrom(
                _timestamp(time.time() - (time.monotonic() - sub.last_seen))
            )
            return out
        # A consumer of another protocol (MQTT, AMQP) in the same group.
        return pb.ConsumerInfo(
            consumer_id=c.id,
            pending_count=len(c.inflight),
            metadata={"protocol": str(getattr(sub, "protocol", ""))},
        )

    async def create_consumer_group(self, req: Any, caller: Caller) -> Any:
        q = self._queue(req.queue_name)
        await self.may_read(caller, q.name)
        if not req.group_id:
            raise ApiError("invalid_argument", "group_id is required")
        start = (
            "latest" if req.config.initial_position == pb.INITIAL_POSITION_LATEST else "earliest"
        )
        try:
            g = self.queues.create_group(
                q.name, req.group_id, start=start, filter=req.pattern or None
            )
        except QueueError as exc:
            raise from_queue_error(exc) from None
        self.groups[(q.name, req.group_id)] = _GroupState()
        return self._group_proto(q, g)

    async def get_consumer_group(self, req: Any, caller: Caller) -> Any:
        g = self._group(req.queue_name, req.group_id)
        await self.may_read(caller, req.queue_name)
        return self._group_proto(g.queue, g)

    async def list_consumer_groups(self, req: Any, caller: Caller) -> Any:
        q = self._queue(req.queue_name)
        await self.may_read(caller, q.name)
        limit = min(req.limit or DEFAULT_BATCH, MAX_BATCH)
        names = sorted(n for n in q.groups if not req.page_token or n > req.page_token)
        out = pb.ListConsumerGroupsResponse()
        for name in names[:limit]:
            out.groups.append(self._group_proto(q, q.groups[name]))
        if len(names) > limit:
            out.next_page_token = names[limit - 1]
        return out

    async def delete_consumer_group(self, req: Any, caller: Caller) -> Any:
        self._group(req.queue_name, req.group_id)
        await self.may_read(caller, req.queue_name)
        for m in [
            m for m in self.members.values() if (m.queue, m.group) == (req.queue_name, req.group_id)
        ]:
            self._remove(m)
        self.queues.delete_group(req.queue_name, req.group_id)
        self.groups.pop((req.queue_name, req.group_id), None)
        return empty_pb2.Empty()

    async def join_group(self, req: Any, caller: Caller) -> Any:
        await self.may_read(caller, req.queue_name)
        timeout = _seconds(req.session_timeout) if req.HasField("session_timeout") else 0.0
        member, _new = self._member(
            req.queue_name, req.group_id, req.consumer_id, session_timeout=timeout
        )
        if timeout:
            member.session_timeout = timeout
        member.metadata = dict(req.metadata)
        out = pb.JoinGroupResponse(
            generation_id=self._state(req.queue_name, req.group_id).generation
        )
        if remote_owner(self._queue(req.queue_name, remote_ok=True)) is not None:
            # The group lives on the queue's owner: only this node's members are known.
            for m in self.members.values():
                if (m.queue, m.group) == (req.queue_name, req.group_id):
                    out.consumers.append(pb.ConsumerInfo(consumer_id=m.consumer_id))
            return out
        g = self._group(req.queue_name, req.group_id)
        for c in g.consumers:
            out.consumers.append(self._consumer_proto(req.queue_name, req.group_id, c))
        return out

    async def leave_group(self, req: Any, caller: Caller) -> Any:
        await self.may_read(caller, req.queue_name)
        member = self.members.get((req.queue_name, req.group_id, req.consumer_id))
        if member is None:
            raise ApiError(
                "not_found",
                f"consumer {req.consumer_id!r} is not in group {req.group_id!r} of {req.queue_name!r}",
            )
        self._remove(member)
        return empty_pb2.Empty()

    async def heartbeat(self, req: Any, caller: Caller) -> Any:
        await self.may_read(caller, req.queue_name)
        member = self.members.get((req.queue_name, req.group_id, req.consumer_id))
        state = self.groups.get((req.queue_name, req.group_id))
        generation = state.generation if state is not None else 0
        if member is None or member.closed:
            return pb.HeartbeatResponse(should_rejoin=True, generation_id=generation)
        member.last_seen = time.monotonic()
        rejoin = bool(req.generation_id) and req.generation_id != generation
        return pb.HeartbeatResponse(should_rejoin=rejoin, generation_id=generation)

    # --- consuming --------------------------------------------------------------------------

    def _delivered(self, member: ApiConsumer, message: Message) -> Any:
        props = message.properties or {}
        offset = int(props.get("offset", 0))
        out = _message_proto(member.queue, offset, message)
        info = out.delivery_info
        info.delivery_count = int(props.get("delivery-count", 1))
        info.group_id = member.group
        info.consumer_id = member.consumer_id
        info.delivered_at.CopyFrom(_timestamp(time.time()))
        return out

    async def consume(self, req: Any, caller: Caller) -> Any:
        await self.may_read(caller, req.queue_name)
        member, _new = self._member(req.queue_name, req.group_id, req.consumer_id)
        wait = min(_seconds(req.wait_time), self.cfg.max_wait) if req.HasField("wait_time") else 0.0
        if not member.buffer and wait > 0:
            member.ready.clear()
            try:
                await asyncio.wait_for(member.ready.wait(), wait)
            except TimeoutError:
                pass
        limit = min(req.max_messages or 10, MAX_BATCH)
        out = pb.ConsumeResponse()
        size = 0
        while member.buffer and len(out.messages) < limit:
            m = member.buffer[0]
            if req.max_bytes and out.messages and size + len(m.payload) > req.max_bytes:
                break
            member.buffer.popleft()
            out.messages.append(self._delivered(member, m))
            size += len(m.payload)
        member.last_seen = time.monotonic()
        return out

    async def consume_queue(self, req: Any, caller: Caller) -> AsyncIterator[Any]:
        await self.may_read(caller, req.queue_name)
        member, created = self._member(
            req.queue_name, req.group_id, req.consumer_id, credit=req.max_in_flight
        )
        member.streams += 1
        try:
            while not self.closing.is_set():
                while member.buffer:
                    yield self._delivered(member, member.buffer.popleft())
                if member.closed:
                    raise ApiError(
                        "not_found",
                        f"consumer {req.consumer_id!r} of {req.queue_name!r}/{req.group_id!r} "
                        "was removed (queue or group deleted, or LeaveGroup)",
                    )
                member.ready.clear()
                try:
                    await asyncio.wait_for(member.ready.wait(), 1.0)
                except TimeoutError:
                    pass
        finally:
            member.streams -= 1
            member.last_seen = time.monotonic()
            if created and member.streams == 0:
                self._remove(member)

    def _settle_target(self, req: Any) -> Any:
        """The group to settle in (None: the queue lives on another node, which
        checks the group and settles)."""
        q = self._queue(req.queue_name, remote_ok=True)
        if remote_owner(q) is not None:
            if not req.group_id:
                raise ApiError("invalid_argument", "group_id is required")
            g = None
        else:
            g = self._group(req.queue_name, req.group_id)
        if not req.offsets:
            raise ApiError("invalid_argument", "offsets is empty")
        return g

    async def ack(self, req: Any, caller: Caller) -> Any:
        await self.may_read(caller, req.queue_name)
        g = self._settle_target(req)
        acked = 0
        for offset in req.offsets:
            try:
                acked += bool(self.queues.ack(req.queue_name, req.group_id, offset))
            except QueueError as exc:
                raise from_queue_error(exc) from None
        out = pb.AckResponse(acked_count=acked)
        if g is None:  # settled on the owner: its cursor is not known here
            return out
        info = g.info()
        out.committed.cursor = info.cursor
        out.committed.committed = info.committed or 0
        out.committed.lag = max(0, g.queue.log.next_offset(g.queue.name) - info.cursor)
        out.committed.updated_at.CopyFrom(_timestamp(time.time()))
        return out

    async def nack(self, req: Any, caller: Caller) -> Any:
        await self.may_read(caller, req.queue_name)
        self._settle_target(req)
        delay = _seconds(req.delay) if req.HasField("delay") else None
        for offset in req.offsets:
            try:
                self.queues.nack(req.queue_name, req.group_id, offset, delay=delay)
            except QueueError as exc:
                raise from_queue_error(exc) from None
        return empty_pb2.Empty()

    async def claim(self, req: Any, caller: Caller) -> Any:
        await self.may_read(caller, req.queue_name)
        self._group(req.queue_name, req.group_id)
        member, _new = self._member(req.queue_name, req.group_id, req.consumer_id)
        assert member.handle is not None
        min_idle = _seconds(req.min_idle_time) if req.HasField("min_idle_time") else 0.0
        try:
            claimed = self.queues.claim(
                member.handle, min_idle, min(req.limit or DEFAULT_BATCH, MAX_BATCH)
            )
        except QueueError as exc:
            raise from_queue_error(exc) from None
        q = self._queue(req.queue_name)
        out = pb.ClaimResponse()
        for offset, count in claimed:
            message = await self._read_at(q, offset)
            if message is None:  # gone meanwhile (retention): nothing to hand over
                self.queues.ack(q.name, req.group_id, offset)
                continue
            out.messages.append(
                self._delivered(member, decorate(message, q.name, req.group_id, offset, count))
            )
        return out

    async def get_pending(self, req: Any, caller: Caller) -> Any:
        await self.may_read(caller, req.queue_name)
        self._group(req.queue_name, req.group_id)
        try:
            entries = self.queues.pending(req.queue_name, req.group_id)
        except QueueError as exc:
            raise from_queue_error(exc) from None
        rows = [
            (offset, self._api_id(cid, req.queue_name, req.group_id), at, count)
            for offset, cid, at, count in entries
        ]
        if req.consumer_id:
            rows = [r for r in rows if r[1] == req.consumer_id]
        total = len(rows)
        if req.page_token:
            try:
                after = int(req.page_token)
            except ValueError:
                raise ApiError(
                    "invalid_argument", "page_token is not one this server gave"
                ) from None
            rows = [r for r in rows if r[0] > after]
        limit = min(req.limit or DEFAULT_BATCH, MAX_BATCH)
        out = pb.GetPendingResponse(total_pending=total)
        clock_now = self.queues.clock()
        wall_now = time.time()
        for offset, cid, at, count in rows[:limit]:
            entry = pb.PendingEntry(offset=offset, consumer_id=cid, delivery_count=count)
            idle = max(0.0, clock_now - at)
            entry.idle_time.CopyFrom(_duration(idle))
            entry.delivered_at.CopyFrom(_timestamp(wall_now - idle))
            out.entries.append(entry)
        if len(rows) > limit:
            out.next_page_token = str(rows[limit - 1][0])
        return out

    # --- information and maintenance ----------------------------------------------------

    async def get_queue_info(self, req: Any, caller: Caller) -> Any:
        q = self._queue(req.queue_name)
        await self.may_read(caller, q.name)
        info = self.queues.info(q.name)
        out = pb.QueueInfo(
            queue_name=q.name,
            head_offset=info.first_offset,
            tail_offset=info.next_offset,
            message_count=info.depth,
            size_bytes=info.bytes,
        )
        oldest, newest = await self._edges(q)
        if oldest is not None:
            out.oldest_timestamp.CopyFrom(_timestamp(oldest.timestamp))
        if newest is not None:
            out.newest_timestamp.CopyFrom(_timestamp(newest.timestamp))
        return out

    async def get_stats(self, req: Any, caller: Caller) -> Any:
        q = self._queue(req.queue_name)
        await self.may_read(caller, q.name)
        info = self.queues.info(q.name)
        out = pb.QueueStats(
            queue_name=q.name,
            message_count=info.depth,
            size_bytes=info.bytes,
            head_offset=info.first_offset,
            tail_offset=info.next_offset,
        )
        for g in info.groups:
            out.consumer_groups.append(
                pb.ConsumerGroupSummary(
                    group_id=g.name,
                    consumer_count=g.consumers,
                    total_lag=max(0, info.next_offset - g.cursor),
                    pending_count=g.pending,
                )
            )
        return out

    async def purge(self, req: Any, caller: Caller) -> Any:
        self.require_admin(caller, "Purge")
        q = self._queue(req.queue_name)
        before = q.log.size_bytes(q.name)
        n = self.queues.purge(q.name)
        return pb.PurgeResponse(
            messages_deleted=n, bytes_freed=max(0, before - q.log.size_bytes(q.name))
        )

    async def truncate(self, req: Any, caller: Caller) -> Any:
        self.require_admin(caller, "Truncate")
        q = self._queue(req.queue_name)
        try:
            self.queues.truncate(q.name, req.min_offset)
        except QueueError as exc:
            raise from_queue_error(exc) from None
        return empty_pb2.Empty()


# --- conversions ----------------------------------------------------------------------------


def _snake(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i:
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def _duration(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


def _seconds(d: duration_pb2.Duration) -> float:
    value = d.ToNanoseconds() / 1e9
    if value < 0:
        raise ApiError("invalid_argument", "a duration must not be negative")
    return value


def _message_proto(queue: str, offset: int, message: Message) -> Any:
    out = pb.Message(offset=offset, value=message.payload)
    out.timestamp.CopyFrom(_timestamp(message.timestamp))
    out.key = routing_key(queue, message.topic).encode()
    for name, value in message.user_properties or ():
        out.headers[name] = value.encode()
    if message.content_type and "content-type" not in out.headers:
        out.headers["content-type"] = message.content_type.encode()
    return out


def _config_from_proto(cfg: Any) -> dict[str, Any]:
    """``[queues.<name>]`` keys from a QueueConfig message; what this broker cannot
    do is refused, never silently dropped (segment settings excepted: the queue
    log's own layout applies)."""
    out: dict[str, Any] = {}
    if cfg.type:
        out["type"] = cfg.type  # the core says which types exist when it is unknown
    if cfg.max_priority:
        out["max_priority"] = cfg.max_priority
    if cfg.max_message_size:
        out["max_message_size"] = cfg.max_message_size
    if cfg.HasField("retention"):
        r = cfg.retention
        if r.HasField("max_age"):
            out["retention_age"] = _seconds(r.max_age)
        if r.max_bytes:
            out["retention_bytes"] = r.max_bytes
        if r.min_messages:
            raise ApiError("invalid_argument", "retention.min_messages is not supported")
    if cfg.compression not in (pb.COMPRESSION_TYPE_UNSPECIFIED, pb.COMPRESSION_TYPE_NONE):
        raise ApiError(
            "invalid_argument", "compression is not supported (use COMPRESSION_TYPE_NONE)"
        )
    if cfg.HasField("replication") and cfg.replication.enabled:
        raise ApiError(
            "failed_precondition", "per-queue replication is not supported by this broker"
        )
    return out


def _as_api(exc: Exception) -> ApiError:
    if isinstance(exc, QueueError):
        return from_queue_error(exc)
    return ApiError("invalid_argument", str(exc))


Handler = Callable[[Any, Caller], Awaitable[Any]]
