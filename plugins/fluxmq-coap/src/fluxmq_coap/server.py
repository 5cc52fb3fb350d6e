"""The CoAP server: aiocoap inside the broker's event loop, one root resource that
maps the pub/sub resource tree onto the core router and queue manager.

Why one root resource with ``render_to_pipe`` instead of aiocoap's ``Site`` and
``ObservableResource``: topics are dynamic (``/ps/<any topic>``), and aiocoap's
observable resources collapse notifications to the latest state, while a pub/sub
observer must see every message. Rendering into the request's pipe ourselves lets
each published message become one notification, with our own CON/NON choice,
Observe numbers and deregistration rules.

aiocoap still does what it does well: message deduplication within the exchange
lifetime, CON retransmission, piggybacked ACKs, block-wise assembly (Block1) and
slicing (Block2) through ``aiocoap.blockwise``'s spool and cache (the server's own).

Where we reach below aiocoap's public API (seeing the ACKs and RSTs that answer
our notifications, dropping undecodable datagrams, the bound port) is all in
:mod:`fluxmq_coap.aiocoap_glue`, checked at start-up against the pinned aiocoap.

Each notification is checked against the ACL when ``[auth] acl_subscribe =
"filter"`` (a topic the observer may not read is skipped), and on a reload every
observation's filter is authorized again: one no longer allowed ends with 4.03.
A ``$share/<group>/<filter>`` observation joins the router's share group (each
message goes to one member, of any protocol) and gets no retained messages, as
in MQTT.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import time
from typing import TYPE_CHECKING, Any

import aiocoap
from aiocoap import error as coap_error
from aiocoap import resource as coap_resource
from aiocoap.blockwise import Block1Spool, Block2Cache
from aiocoap.numbers.codes import Code
from aiocoap.numbers.constants import TransportTuning
from aiocoap.numbers.types import CON, NON, RST

from fluxmq_coap import aiocoap_glue
from fluxmq_coap import hooks as coap_hooks
from fluxmq_coap.config import CoAPConfig, load_psk_file
from fluxmq_coap.observe import Observations
from fluxmq_coap.peers import Peers
from fluxmq_coap.resources import (
    KNOWN_OPTIONS,
    Kind,
    Query,
    QueryError,
    Target,
    content_format_for,
    content_type_for,
    is_critical,
    parse_query,
    route,
    split_hostport,
)
from fluxmq_core.contracts import PUBLISH, SUBSCRIBE, AuthRequest
from fluxmq_core.message import Message
from fluxmq_core.queues.config import (
    MessageTooLargeError,
    QueueError,
    QueueFullError,
    QueuesUnavailableError,
    UnknownQueueError,
)
from fluxmq_core.queues.types import is_queue_topic, split_queue_topic
from fluxmq_core.router.topics import (
    TopicError,
    parse_shared,
    validate_topic_filter,
    validate_topic_name,
)
from fluxmq_core.sessions import SessionInfo

if TYPE_CHECKING:
    from fluxmq_core.context import BrokerContext
    from fluxmq_core.router.types import Delivery

__all__ = ["CoAPServer"]

log = logging.getLogger("fluxmq.coap")

PROTOCOL = "coap"
AIOCOAP_LOGGER = "fluxmq.coap.aiocoap"
_TEXT = 0  # Content-Format of our diagnostic payloads
_OBSERVE_MAX = 0xFFFFFF
_PROXY_OPTIONS = (35, 39)  # Proxy-Uri, Proxy-Scheme


def _diag(code: Code, text: str, **options: Any) -> aiocoap.Message:
    """An error answer with a diagnostic payload (RFC 7252 5.5.2)."""
    return aiocoap.Message(code=code, payload=text.encode(), content_format=_TEXT, **options)


class _Refused(Exception):
    """Raised inside request handling to answer with ``response`` at once."""

    def __init__(self, response: aiocoap.Message) -> None:
        super().__init__(response.code)
        self.response = response


class Observer:
    """One Observe registration: a router subscriber (or a queue consumer) whose
    ``deliver`` never blocks, only queues for the render task to send.

    ``client_id`` is the authenticated client id or ``coap:<remote>``.
    """

    __slots__ = (
        "client_id",
        "protocol",
        "username",
        "remote",
        "filter",
        "queue",
        "group",
        "consumer",
        "pending",
        "wake",
        "end_reason",
        "end_code",
        "unacked",
        "seq",
        "sent",
        "since",
        "key",
        "_server",
    )

    def __init__(
        self,
        server: CoAPServer,
        client_id: str,
        username: str | None,
        remote: str,
        topic_filter: str,
        key: Any,
    ) -> None:
        self._server = server
        self.client_id = client_id
        self.protocol = PROTOCOL
        self.username = username
        self.remote = remote
        self.filter = topic_filter
        self.queue: str | None = None
        self.group: str | None = None
        self.consumer: Any = None
        self.pending: collections.deque[Message] = collections.deque()
        self.wake: asyncio.Event = asyncio.Event()
        self.end_reason: str | None = None
        self.end_code: Code = Code.SERVICE_UNAVAILABLE
        self.unacked: set[int] = set()
        self.seq = 0
        self.sent = 0
        self.since = time.time()
        self.key = key  # (token, remote) in aiocoap's token manager

    def deliver(self, message: Message, delivery: Delivery) -> None:
        """Router / queue callback: queue the message; never blocks."""
        server = self._server
        auth = server.context.auth
        if self.queue is None and auth.filter_reads:
            if not auth.may_read(self.client_id, self.username, message.topic):
                return
        pending = self.pending
        if len(pending) >= server.cfg.max_queued and self.queue is None:
            pending.popleft()
            server.context.stats.session_queue_dropped += 1
            server.notifications_dropped += 1
        pending.append(message)
        self.wake.set()

    def end(self, reason: str, code: Code = Code.SERVICE_UNAVAILABLE) -> None:
        """Ask the render task to finish this observation (it sends a final
        notification with ``code``, 5.03 unless told, and ``reason`` unless the peer
        already said it is gone)."""
        if self.end_reason is None:
            self.end_reason = reason
            self.end_code = code
        self.wake.set()


class _Root(coap_resource.Resource):
    """The whole resource tree (see ``docs/protocols/coap.md``)."""

    def __init__(self, server: CoAPServer) -> None:
        super().__init__()
        self.server = server

    async def needs_blockwise_assembly(self, request: Any) -> bool:
        return True

    async def render(self, request: Any) -> Any:  # pragma: no cover - render_to_pipe is used
        raise coap_error.UnsupportedMethod()

    async def render_to_pipe(self, pipe: Any) -> None:
        await self.server.handle(self, pipe)


class CoAPServer:
    """Owns the aiocoap context, the observers and the session-provider view."""

    def __init__(self, context: BrokerContext, cfg: CoAPConfig) -> None:
        self.context = context
        self.cfg = cfg
        self.coap: Any = None
        self.root = _Root(self)
        self.observers: dict[int, Observer] = {}
        #: The core's observer events (connected/subscribed per observation).
        self.observe = Observations(context)
        self.peers = Peers(context)  # [rate_limit] connections_per_ip
        # This listener's own totals, read by a metrics exporter (coap.* metrics);
        # the broker-wide counters in context.stats count CoAP with every protocol.
        self.requests = 0
        self.publishes = 0
        self.observations = 0
        self.notifications = 0
        self.notifications_dropped = 0
        # (remote, mid) of sent notifications -> (observer, queue offset or None).
        self._sent: collections.OrderedDict[tuple[Any, int], tuple[Observer, int | None]] = (
            collections.OrderedDict()
        )
        self._auth_cache: dict[tuple[Any, ...], tuple[float, str, str | None]] = {}
        # Block-wise state of every request (RFC 7959), shared by both contexts.
        self._block1 = Block1Spool()
        self._block2 = Block2Cache()
        self.coaps: Any = None  # the DTLS context, when coap.dtls_bind is set
        self._token_managers: list[Any] = []
        # Retransmission of confirmable notifications: RFC 7252's defaults unless
        # configured (a shorter timeout finds departed observers sooner).
        self._tuning = type(
            "NotificationTuning",
            (TransportTuning,),
            {"ACK_TIMEOUT": cfg.notify_ack_timeout, "MAX_RETRANSMIT": cfg.notify_max_retransmit},
        )()

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        if not self.cfg.bind and not self.cfg.dtls_bind:
            return
        aiocoap_log = logging.getLogger(AIOCOAP_LOGGER)
        if aiocoap_log.level == logging.NOTSET:
            # aiocoap warns once per malformed or unexpected datagram: a peer sending
            # garbage would flood the log. Set this logger's level to see them.
            aiocoap_log.setLevel(logging.ERROR)
        if self.cfg.bind:
            await self._start_udp()
        if self.cfg.dtls_bind:
            await self._start_dtls()
        self.context.sessions.register(PROTOCOL, self)

    def _hook(self, coap: Any) -> None:
        """Our hooks into one aiocoap context (plain or DTLS): see
        :mod:`fluxmq_coap.aiocoap_glue`."""
        self._token_managers.append(aiocoap_glue.hook_context(coap, self._peer_answered))

    async def _start_dtls(self) -> None:
        """CoAP over DTLS with pre-shared keys (aiocoap's experimental
        ``tinydtls_server`` transport, DTLSSocket underneath), a second aiocoap
        context over the same resources."""
        from aiocoap.credentials import DTLS, CredentialsMap

        creds = CredentialsMap()
        for identity, key in load_psk_file(self.cfg.dtls_psk_file).items():
            # The entry's name is what aiocoap reports as the peer's claim.
            creds[identity] = DTLS(psk=key, client_identity=identity.encode())
        host, port = split_hostport(self.cfg.dtls_bind)
        # aiocoap binds this transport at the given port + 1 (5683 -> 5684, its
        # default): ask for one less to get the configured port (0 stays 0).
        self.coaps = await aiocoap.Context.create_server_context(
            self.root,
            bind=(host, port - 1),
            transports=["tinydtls_server"],
            server_credentials=creds,
            loggername=AIOCOAP_LOGGER,
        )
        self._hook(self.coaps)
        bound_port = aiocoap_glue.bound_port(self.coaps)
        self.context.bound["coap.dtls_bind"] = (host, bound_port)
        log.info("CoAP over DTLS (PSK, %d identities) on udp %s:%d", len(creds), host, bound_port)

    async def _start_udp(self) -> None:
        host, port = split_hostport(self.cfg.bind)
        # udp6 only: aiocoap's default server transports also open CoAP over TCP
        # (and WebSocket) on the same port, which we neither document nor test.
        self.coap = await aiocoap.Context.create_server_context(
            self.root,
            bind=(host, port),
            transports=["udp6"],
            loggername=AIOCOAP_LOGGER,
        )
        self._hook(self.coap)

        def unparsable(address: Any, exc: BaseException) -> None:
            # aiocoap's decoder lets some malformed datagrams escape as exceptions
            # other than UnparsableMessage (a string option that is not UTF-8 raises
            # UnicodeDecodeError into the event loop's handler): such a datagram is
            # a protocol error of that peer, dropped like any unparsable one.
            self.context.stats.protocol_errors += 1
            log.debug("CoAP: dropped an unparsable datagram from %s: %r", address, exc)

        aiocoap_glue.wrap_datagrams(self.coap, unparsable)
        bound_port = aiocoap_glue.bound_port(self.coap)
        self.context.bound["coap.bind"] = (host, bound_port)
        log.info("CoAP listening on udp %s:%d", host, bound_port)

    async def stop(self) -> None:
        for obs in list(self.observers.values()):
            obs.end("the broker is shutting down")
        # Let the render tasks send their final 5.03 notifications.
        for _ in range(3):
            if not self.observers:
                break
            await asyncio.sleep(0)
        self.context.sessions.unregister(PROTOCOL)
        for name in ("coap", "coaps"):
            ctx = getattr(self, name)
            if ctx is not None:
                setattr(self, name, None)
                await ctx.shutdown()

    # --- ACK / RST bookkeeping ---------------------------------------------------------

    def _peer_answered(self, message: Any) -> None:
        entry = self._sent.pop((message.remote, message.mid), None)
        if entry is None:
            return
        obs, offset = entry
        obs.unacked.discard(message.mid)
        if message.mtype is RST:
            # RFC 7641 3.6: a Reset to a notification cancels the observation.
            obs.end_reason = obs.end_reason or "reset by the client"
            if offset is not None and obs.queue is not None and obs.group is not None:
                self._settle(obs, offset, ok=False)
            self._stop_pipe(obs)
            return
        if offset is not None and obs.queue is not None and obs.group is not None:
            self._settle(obs, offset, ok=True)
        if obs.end_reason is None:
            obs.wake.set()

    def _settle(self, obs: Observer, offset: int, ok: bool) -> None:
        queues = self.context.queues
        if queues is None or obs.queue is None or obs.group is None:
            return
        try:
            if ok:
                queues.ack(obs.queue, obs.group, offset)
            else:
                queues.nack(obs.queue, obs.group, offset)
        except QueueError as exc:
            log.info("CoAP queue settle for %s failed: %s", obs.client_id, exc)

    def _reject(self, obs: Observer, offset: int) -> None:
        queues = self.context.queues
        if queues is None or obs.queue is None or obs.group is None:
            return
        log.info(
            "CoAP: queue %s message %d exceeds coap.max_message_size; dead-lettered",
            obs.queue,
            offset,
        )
        try:
            queues.reject(obs.queue, obs.group, offset)
        except QueueError as exc:
            log.info("CoAP queue reject for %s failed: %s", obs.client_id, exc)

    def _stop_pipe(self, obs: Observer) -> None:
        """End an observation without sending anything (the peer said it is gone):
        what aiocoap itself does for an RST to a CON notification."""
        if not aiocoap_glue.stop_incoming(self._token_managers, obs.key):
            obs.end("reset by the client")

    def _remember(self, response: Any, obs: Observer, offset: int | None) -> None:
        mid = response.mid
        if mid is None or response.remote is None:
            return
        self._sent[(response.remote, mid)] = (obs, offset)
        if response.mtype is CON:
            obs.unacked.add(mid)
        while len(self._sent) > 65536:
            (_r, old_mid), (old_obs, _o) = self._sent.popitem(last=False)
            old_obs.unacked.discard(old_mid)

    # --- requests -----------------------------------------------------------------------

    async def handle(self, root: _Root, pipe: Any) -> None:
        """Render one request (or run one observation) into ``pipe``."""
        req = pipe.request
        self.requests += 1
        try:
            response = self._precheck(req)
            if response is None and not self.peers.admit(remote_name(req.remote)):
                response = _diag(
                    Code.TOO_MANY_REQUESTS, "connection rate limit exceeded", max_age=1
                )
            if response is None:
                target = route(req.opt.uri_path, self.cfg.compat_paths)
                if req.opt.observe == 0 and req.code == Code.GET and target.kind is Kind.PS:
                    await self._observe(pipe, req, target)
                    return
                response = await self._blockwise(root, req, target)
        except _Refused as refused:
            response = refused.response
        pipe.add_response(response, is_last=True)

    def _precheck(self, req: Any) -> Any:
        numbers = {int(o.number) for o in req.opt.option_list()}
        if any(n in numbers for n in _PROXY_OPTIONS):
            return _diag(Code.PROXYING_NOT_SUPPORTED, "this server is not a proxy")
        unknown = sorted(n for n in numbers if is_critical(n) and n not in KNOWN_OPTIONS)
        if unknown:
            self.context.stats.protocol_errors += 1
            return _diag(Code.BAD_OPTION, f"unrecognized critical option(s): {unknown}")
        if self.context.shutting_down.is_set():
            return _diag(Code.SERVICE_UNAVAILABLE, "the broker is shutting down")
        return None

    async def _blockwise(self, root: _Root, req: Any, target: Target) -> Any:
        limit = self.cfg.max_message_size
        block1 = req.opt.block1
        if (req.opt.size1 is not None and req.opt.size1 > limit) or (
            block1 is not None and block1.start + len(req.payload) > limit
        ):
            return self._too_large()
        req = self._block1.feed_and_take(req)
        if len(req.payload) > limit:
            return self._too_large()
        if req.opt.block2 is None:
            # The common case, without aiocoap's block-key computation per request:
            # only a response larger than a datagram goes through the Block2 cache.
            res = await self._render(req, target)
            if len(res.payload) > _block_limit(req):
                res = await self._block2.extract_or_insert(req, _ready(res))
        else:
            res = await self._block2.extract_or_insert(req, lambda: self._render(req, target))
        res.opt.block1 = req.opt.block1
        return res

    def _too_large(self) -> Any:
        return _diag(
            Code.REQUEST_ENTITY_TOO_LARGE,
            f"payload larger than coap.max_message_size ({self.cfg.max_message_size} bytes)",
            size1=self.cfg.max_message_size,
        )

    async def _render(self, req: Any, target: Target) -> Any:
        code = req.code
        kind = target.kind
        try:
            if kind is Kind.WELL_KNOWN:
                if code != Code.GET:
                    return _diag(Code.METHOD_NOT_ALLOWED, "GET only")
                return aiocoap.Message(
                    code=Code.CONTENT, payload=self._link_format(), content_format=40
                )
            if kind is Kind.HEALTH:
                if code != Code.GET:
                    return _diag(Code.METHOD_NOT_ALLOWED, "GET only")
                return aiocoap.Message(
                    code=Code.CONTENT, payload=b'{"status":"ok"}', content_format=50
                )
            if kind is Kind.UNKNOWN:
                return _diag(Code.NOT_FOUND, "no such resource; see /.well-known/core")
            if kind is Kind.PS_ROOT:
                if code == Code.GET:
                    return aiocoap.Message(
                        code=Code.CONTENT, payload=self._link_format(), content_format=40
                    )
                return _diag(
                    Code.NOT_IMPLEMENTED,
                    "creating topics under /ps is not needed: publish to /ps/<topic>",
                )
            query = self._query(req)
            if kind is Kind.PUBLISH:
                if code in (Code.POST, Code.PUT):
                    return await self._publish(req, target.topic, query)
                return _diag(
                    Code.METHOD_NOT_ALLOWED,
                    "this path only publishes (POST/PUT); read and observe under /ps/<topic>",
                )
            if code in (Code.POST, Code.PUT):
                return await self._publish(req, target.topic, query)
            if code == Code.GET:
                return await self._get(req, target.topic, query)
            if code == Code.DELETE:
                return await self._delete(req, target.topic, query)
            if code == Code.FETCH or code == Code.PATCH or code == Code.iPATCH:
                return _diag(Code.NOT_IMPLEMENTED, f"{code} is not implemented on /ps")
            return _diag(Code.METHOD_NOT_ALLOWED, "GET, POST, PUT or DELETE")
        except _Refused as refused:
            return refused.response

    def _link_format(self) -> bytes:
        links = [
            '</ps>;rt="core.ps";ct=40',
            '</ps/{topic}>;rt="core.ps.data";obs',
            "</health>;ct=50",
        ]
        if self.cfg.compat_paths:
            links.append('</mqtt/publish/{topic}>;rt="fluxmq.publish"')
        return ",".join(links).encode()

    def _query(self, req: Any) -> Query:
        try:
            return parse_query(req.opt.uri_query)
        except QueryError as exc:
            self.context.stats.protocol_errors += 1
            raise _Refused(_diag(Code.BAD_REQUEST, str(exc))) from None

    # --- auth ------------------------------------------------------------------------------

    async def _login(self, req: Any, query: Query) -> tuple[str, str | None]:
        """``(client_id, username)`` for this request, or raise :class:`_Refused`
        (4.01). Decisions are cached per remote and credentials for
        ``auth_cache_ttl`` seconds: CoAP has no connection to hold a login."""
        remote = remote_name(req.remote)
        client_id = query.client_id or f"coap:{remote}"
        claims = getattr(req.remote, "authenticated_claims", None)
        if claims and query.username is None:
            # A DTLS peer: its handshake proved the identity against
            # coap.dtls_psk_file, which is this listener's credential store.
            return client_id, str(claims[0])
        # The password is kept hashed in the cache key, not in clear.
        secret = None if query.password is None else hashlib.sha256(query.password).digest()
        key = (remote, client_id, query.username, secret)
        now = time.monotonic()
        cached = self._auth_cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1], cached[2]
        result = await self.context.auth.authenticate(
            AuthRequest(
                protocol=PROTOCOL,
                client_id=client_id,
                username=query.username,
                password=query.password,
                remote=remote,
                tls_identity=None,
            )
        )
        if not result.ok:
            self.context.stats.auth_failures += 1
            raise _Refused(_diag(Code.UNAUTHORIZED, result.reason or "not authorized"))
        if self.cfg.auth_cache_ttl > 0:
            if len(self._auth_cache) >= 10000:
                self._auth_cache.clear()
            self._auth_cache[key] = (now + self.cfg.auth_cache_ttl, client_id, result.username)
        return client_id, result.username

    async def _authorize(
        self, client_id: str, username: str | None, action: str, topic: str
    ) -> None:
        auth = self.context.auth
        ok = auth.authorize_cached(client_id, username, action, topic)
        if ok is None:
            ok = await auth.authorize(client_id, username, action, topic)
        if not ok:
            self.context.stats.authz_denied += 1
            raise _Refused(_diag(Code.FORBIDDEN, f"not allowed to {action} {topic!r}"))

    def _rate_limited(self, client_id: str, action: str) -> None:
        """``[rate_limit]`` per client: 4.29 Too Many Requests with Max-Age set to
        the seconds until the next token (RFC 8516)."""
        limits = getattr(self.context, "limits", None)
        if limits is None:
            return
        ok = (
            limits.allow_publish(client_id)
            if action == PUBLISH
            else limits.allow_subscribe(client_id)
        )
        if not ok:
            raise _Refused(
                _diag(
                    Code.TOO_MANY_REQUESTS,
                    f"{action} rate limit exceeded",
                    max_age=limits.retry_after(action, client_id),
                )
            )

    # --- publish / GET / DELETE ------------------------------------------------------------

    async def _publish(self, req: Any, topic: str, query: Query) -> Any:
        try:
            validate_topic_name(topic)
        except TopicError as exc:
            return _diag(Code.BAD_REQUEST, f"bad topic {topic!r}: {exc}")
        client_id, username = await self._login(req, query)
        await self._authorize(client_id, username, PUBLISH, topic)
        self._rate_limited(client_id, PUBLISH)
        payload = req.payload
        stats = self.context.stats
        message = Message(
            topic,
            payload,
            query.qos,
            query.retain,
            content_type=content_type_for(
                None if req.opt.content_format is None else int(req.opt.content_format)
            ),
            origin_protocol=PROTOCOL,
            origin_client=client_id,
        )
        if self.context.hooks is not None:
            try:
                await coap_hooks.on_publish(
                    self.context, client_id, username, message, self._authorize
                )
            except coap_hooks.HookRefused as exc:
                return _diag(Code.FORBIDDEN, exc.reason)
            topic, payload = message.topic, message.payload
        stats.messages_received += 1
        stats.publish_received += 1
        stats.bytes_received += len(payload)
        self.publishes += 1
        if is_queue_topic(topic):
            try:
                fut = self.context.publish_queued(message)
            except QueueError as exc:
                return _diag(_queue_error_code(exc), str(exc))
            try:
                await asyncio.wait_for(asyncio.shield(fut), self.cfg.publish_timeout)
            except TimeoutError:
                return _diag(Code.SERVICE_UNAVAILABLE, "the queue append did not finish in time")
            except Exception as exc:  # the storage error, told to the client
                log.warning("CoAP publish to %r failed: %s", topic, exc)
                return _diag(Code.INTERNAL_SERVER_ERROR, f"queue append failed: {exc}")
        else:
            self.context.publish(message)
        return aiocoap.Message(code=Code.CHANGED)

    async def _get(self, req: Any, topic: str, query: Query) -> Any:
        wildcard = "+" in topic or "#" in topic
        try:
            if wildcard:
                validate_topic_filter(topic)
            else:
                validate_topic_name(topic)
        except TopicError as exc:
            return _diag(Code.BAD_REQUEST, f"bad topic {topic!r}: {exc}")
        client_id, username = await self._login(req, query)
        await self._authorize(client_id, username, SUBSCRIBE, topic)
        if req.opt.observe == 1:  # a deregistration is answered as a plain GET
            if wildcard:
                return aiocoap.Message(code=Code.CONTENT)
        elif wildcard:
            return _diag(Code.BAD_REQUEST, "wildcard filters need Observe (GET with Observe=0)")
        message = self.context.router.get_retained(topic)
        if message is None:
            if req.opt.observe == 1:
                return aiocoap.Message(code=Code.CONTENT)
            return _diag(Code.NOT_FOUND, f"no retained message on {topic!r}")
        if len(message.payload) > self.cfg.max_message_size:
            return _diag(Code.INTERNAL_SERVER_ERROR, "retained payload exceeds max_message_size")
        self.context.stats.messages_sent += 1
        return self._content(message)

    async def _delete(self, req: Any, topic: str, query: Query) -> Any:
        try:
            validate_topic_name(topic)
        except TopicError as exc:
            return _diag(Code.BAD_REQUEST, f"bad topic {topic!r}: {exc}")
        client_id, username = await self._login(req, query)
        await self._authorize(client_id, username, PUBLISH, topic)
        self.context.router.clear_retained(topic)
        return aiocoap.Message(code=Code.DELETED)

    @staticmethod
    def _content(message: Message, **options: Any) -> Any:
        cf = content_format_for(message.content_type)
        if cf is not None:
            options["content_format"] = cf
        return aiocoap.Message(code=Code.CONTENT, payload=message.payload, **options)

    # --- Observe ---------------------------------------------------------------------------

    async def _observe(self, pipe: Any, req: Any, target: Target) -> None:
        """Run one observation until the client leaves, the broker stops, or too
        many confirmable notifications stay unanswered."""
        topic_filter = target.topic
        try:
            query = self._query(req)
            try:
                validate_topic_filter(topic_filter)
            except TopicError as exc:
                raise _Refused(
                    _diag(Code.BAD_REQUEST, f"bad filter {topic_filter!r}: {exc}")
                ) from None
            client_id, username = await self._login(req, query)
            await self._authorize(client_id, username, SUBSCRIBE, topic_filter)
            self._rate_limited(client_id, SUBSCRIBE)
            if self.context.hooks is not None:
                try:
                    topic_filter = await coap_hooks.on_subscribe(
                        self.context, client_id, username, topic_filter, self._authorize
                    )
                except coap_hooks.HookRefused as exc:
                    raise _Refused(_diag(Code.FORBIDDEN, exc.reason)) from None
            limit = self.cfg.max_observers
            if limit and len(self.observers) >= limit:
                raise _Refused(
                    _diag(
                        Code.SERVICE_UNAVAILABLE, f"too many observers (coap.max_observers={limit})"
                    )
                )
        except _Refused as refused:
            pipe.add_response(refused.response, is_last=True)
            return
        obs = Observer(
            self,
            client_id,
            username,
            remote_name(req.remote),
            topic_filter,
            (req.token, req.remote),
        )
        first: Message | None = None
        try:
            if is_queue_topic(topic_filter):
                self._consume(obs, topic_filter, query)
            else:
                self.context.router.subscribe(obs, topic_filter)
                # A shared observation gets no retained messages (as in MQTT): every
                # member would get the same ones.
                shared = parse_shared(topic_filter) is not None
                retained = [] if shared else self.context.router.retained_for(topic_filter)
                if retained:
                    first = retained[0]
                    obs.pending.extend(retained[1:])
        except (QueueError, TopicError) as exc:
            code = _queue_error_code(exc) if isinstance(exc, QueueError) else Code.BAD_REQUEST
            pipe.add_response(_diag(code, str(exc)), is_last=True)
            return
        stats = self.context.stats
        self.observers[id(obs)] = obs
        self.observations += 1
        stats.clients_connected += 1
        stats.clients_total += 1
        stats.subscriptions += 1
        self.observe.started(obs)
        try:
            await self._run_observation(pipe, req, obs, first)
        finally:
            self.observe.ended(obs)
            self.observers.pop(id(obs), None)
            stats.clients_connected -= 1
            stats.clients_disconnected += 1
            stats.subscriptions -= 1
            if obs.consumer is not None:
                self.context.queues.cancel(obs.consumer)
            else:
                self.context.router.unsubscribe_all(obs)

    def _consume(self, obs: Observer, topic_filter: str, query: Query) -> None:
        queues = self.context.queues
        if queues is None:
            raise QueuesUnavailableError("queues are not available")
        name, rest = split_queue_topic(topic_filter)
        if not name or "+" in name or "#" in name:
            raise QueueError("observe $queue/<name>/<filter>: the queue name must be literal")
        if queues.get(name) is None:
            queues.auto_declare(name, "a CoAP observe")
        obs.queue = name
        obs.group = query.group or self.cfg.queue_group
        obs.consumer = queues.consume(
            name,
            obs.group,
            obs,
            filter=rest if rest not in ("", "#") else None,
            credit=self.cfg.max_unacked,
        )

    async def _run_observation(
        self, pipe: Any, req: Any, obs: Observer, first: Message | None
    ) -> None:
        stats = self.context.stats
        if first is not None:
            response = await self._notification(req, first)
            stats.messages_sent += 1
            stats.publish_sent += 1
            self.notifications += 1
            if self.observe.events.on_delivered:
                self.observe.delivered(obs, first)
        else:
            response = aiocoap.Message(code=Code.CONTENT)
        response.opt.observe = 0
        pipe.add_response(response, is_last=False)
        every = self.cfg.notify_con_every
        clock = self.context.clock
        while True:
            if obs.end_reason is not None:
                final = _diag(obs.end_code, obs.end_reason)
                final.mtype = NON
                pipe.add_response(final, is_last=True)
                return
            # Queue deliveries are always confirmable: the ACK is the queue ack, and
            # up to max_unacked may be outstanding (aiocoap sends them in order).
            # Other observers have one confirmable notification outstanding at a
            # time (RFC 7641 4.5.1): a second one would wait in aiocoap's NSTART
            # backlog while later NON notifications overtook it, and the client
            # would discard it as older than what it has seen.
            if obs.queue is not None:
                confirm, window = True, self.cfg.max_unacked
            else:
                confirm, window = (obs.sent + 1) % every == 0, 1
            if not obs.pending or (confirm and len(obs.unacked) >= window):
                # Meanwhile messages queue (bounded by max_queued, oldest dropped).
                obs.wake.clear()
                await obs.wake.wait()
                continue
            message = obs.pending.popleft()
            offset = None
            if obs.queue is not None and message.properties:
                offset = message.properties.get("offset")
            if len(message.payload) > self.cfg.max_message_size or (
                message.expires_at is not None and message.expired(clock())
            ):
                stats.messages_dropped += 1
                self.notifications_dropped += 1
                if offset is not None:  # a queue delivery: dead-letter, not redeliver
                    self._reject(obs, offset)
                continue
            response = await self._notification(req, message)
            obs.seq = (obs.seq + 1) & _OBSERVE_MAX
            response.opt.observe = obs.seq
            obs.sent += 1
            if confirm:
                response.mtype = CON
                # An observer that leaves it unacknowledged through every
                # retransmission is gone: aiocoap then ends all its requests.
                response.transport_tuning = self._tuning
            else:
                response.mtype = NON
            pipe.add_response(response, is_last=False)
            stats.messages_sent += 1
            stats.publish_sent += 1
            self.notifications += 1
            stats.bytes_sent += len(message.payload)
            self._remember(response, obs, offset)
            if self.observe.events.on_delivered:
                self.observe.delivered(obs, message)

    async def _notification(self, req: Any, message: Message) -> Any:
        full = self._content(message)
        if len(full.payload) <= _block_limit(req):
            return full
        # Larger than a datagram: send the first block; the client fetches the rest
        # with GET + Block2 on the same path, served from the block cache.
        return await self._block2.extract_or_insert(req, _ready(full))

    async def recheck_acl(self) -> int:
        """Authorize every observation's filter again (after the users or the ACL
        changed): one no longer allowed ends with a final 4.03 Forbidden. Returns
        how many ended. Per-message read checks (``acl_subscribe = "filter"``) need
        nothing here: the reload cleared the decisions they cache."""
        auth = self.context.auth
        ended = 0
        for obs in list(self.observers.values()):
            if obs.end_reason is not None:
                continue
            try:
                ok = await auth.authorize(obs.client_id, obs.username, SUBSCRIBE, obs.filter)
            except Exception:
                log.exception("CoAP: re-authorizing %s on %r failed", obs.client_id, obs.filter)
                ok = False
            if not ok:
                self.context.stats.authz_denied += 1
                obs.end(f"no longer allowed to subscribe {obs.filter!r}", Code.FORBIDDEN)
                ended += 1
        return ended

    # --- session provider (admin API) ---------------------------------------------------

    def list(self) -> list[SessionInfo]:
        by_client: dict[str, SessionInfo] = {}
        for obs in self.observers.values():
            info = by_client.get(obs.client_id)
            if info is None:
                info = by_client[obs.client_id] = SessionInfo(
                    client_id=obs.client_id,
                    protocol=PROTOCOL,
                    connected=True,
                    username=obs.username,
                    remote=obs.remote,
                    version="RFC 7252",
                    extra={"observers": 0},
                )
            info.subscriptions[obs.filter] = 0
            info.inflight += len(obs.unacked)
            info.queued += len(obs.pending)
            info.extra["observers"] += 1
        return sorted(by_client.values(), key=lambda i: i.client_id)

    def get(self, client_id: str) -> SessionInfo | None:
        for info in self.list():
            if info.client_id == client_id:
                return info
        return None

    def disconnect(self, client_id: str) -> bool:
        found = False
        for obs in list(self.observers.values()):
            if obs.client_id == client_id:
                obs.end("disconnected by an operator")
                found = True
        return found


def remote_name(remote: Any) -> str:
    """``host:port`` (``[v6]:port``) of a peer, as the core's ``remote`` fields are
    written. aiocoap's ``hostinfo`` parses the address with :mod:`ipaddress` on every
    call, which showed up as the largest cost per request."""
    sockaddr = getattr(remote, "sockaddr", None)
    if not sockaddr:
        return str(getattr(remote, "hostinfo", "?"))
    host, port = sockaddr[0], sockaddr[1]
    if host.startswith("::ffff:") and "." in host:
        return f"{host[7:]}:{port}"
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def _block_limit(req: Any) -> int:
    """The largest payload sent in one piece: the datagram's room, or the Block2 size
    the client asked for (RFC 7959 2.4)."""
    limit = int(req.remote.maximum_payload_size)
    if req.opt.block2 is not None:
        limit = min(limit, int(req.opt.block2.size))
    return limit


def _ready(message: Any) -> Any:
    async def build() -> Any:
        return message

    return build


def _queue_error_code(exc: QueueError) -> Code:
    if isinstance(exc, UnknownQueueError):
        return Code.NOT_FOUND
    if isinstance(exc, MessageTooLargeError):
        return Code.REQUEST_ENTITY_TOO_LARGE
    if isinstance(exc, (QueueFullError, QueuesUnavailableError)):
        return Code.SERVICE_UNAVAILABLE
    return Code.BAD_REQUEST
