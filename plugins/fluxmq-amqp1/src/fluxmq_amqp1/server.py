"""The broker side of AMQP 1.0 links: :class:`AMQP1Server`, one per broker.

It is the environment every :class:`~fluxmq_amqp1.connection.Connection` calls
(``env``): it binds links to the core (``attach``), routes received messages
(``publish``: the router for topics, the queue manager for queues, settled only once
the append is durable; blocking ``auth_on_publish`` hooks on the way), applies
receivers' outcomes (``settle``) and keeps queue consumers' core credit equal to the
link credit (``credit``). Each network connection is an
:class:`~fluxmq_amqp1.protocol.AMQP1Protocol`; transactions are
:mod:`fluxmq_amqp1.transactions`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING, Any

from fluxmq_amqp1 import transactions
from fluxmq_amqp1.codec.composites import (
    Accepted,
    Coordinator,
    Error,
    Rejected,
    Released,
    Source,
    Target,
    TransactionalState,
)
from fluxmq_amqp1.codec.message import decode_message
from fluxmq_amqp1.codec.types import AMQPError
from fluxmq_amqp1.connection import (
    CONNECTION_FORCED,
    INTERNAL_ERROR,
    NOT_FOUND,
    NOT_IMPLEMENTED,
    PROTOCOL,
    Connection,
    Phase,
)
from fluxmq_amqp1.endpoints import Link
from fluxmq_amqp1.management import MANAGEMENT, handle_request
from fluxmq_amqp1.mapping import INVALID_FIELD, Address, address_of, resolve, to_core
from fluxmq_amqp1.nodes import (
    COORDINATOR,
    DEFAULT_GROUP,
    DYNAMIC_PREFIX,
    RESOURCE_LIMIT,
    TXN_UNKNOWN,
    UNAUTHORIZED,
    Browser,
    MgmtReceiver,
    QueueSub,
    QueueTarget,
    TopicSub,
    Txn,
    acl_topic,
    queue_error,
    queue_predicate,
    source_filters,
)
from fluxmq_amqp1.protocol import HOOK_SUBSCRIBE, AMQP1Protocol
from fluxmq_amqp1.state import RESOURCE_DELETED
from fluxmq_amqp1.waits import AuthorizeWait
from fluxmq_core.callout.hooks import (
    HookOutcome,
    HookRequest,
    apply_outcome,
    external_id,
)
from fluxmq_core.contracts import PUBLISH, SUBSCRIBE, SubscriptionOptions
from fluxmq_core.queues import QueueError
from fluxmq_core.transport.adapter import AdapterServer

if TYPE_CHECKING:
    from fluxmq_amqp1.config import AMQP1Config

__all__ = ["AMQP1Server"]

log = logging.getLogger("fluxmq.amqp1")

HOOK_PUBLISH = "auth_on_publish"

#: Seconds between sweeps for receivers whose queue another API deleted.
DELETED_SWEEP = 1.0


def _orphan(node: QueueSub) -> str:
    return f"queue {node.queue!r} or its consumer group {node.group!r} was deleted"


class AMQP1Server(AdapterServer):
    """One per broker: the connections' environment (see the module docstring)."""

    def __init__(self, context: Any, cfg: AMQP1Config) -> None:
        super().__init__(context)
        self.cfg = cfg
        self.clock = context.clock
        self.container_id = f"fluxmq-{context.node_id}"
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        #: $management receiver links by (connection, reply address): a response goes
        #: only to a receiver of the connection that asked
        self._mgmt_replies: dict[tuple[int, str], MgmtReceiver] = {}
        #: receiver links an auth_on_subscribe hook moved: id(link) -> address, until bound
        self.moved: dict[int, str] = {}
        #: per connection: the order of publishes waiting for a check (ACL, hook)
        self.publish_order: dict[int, asyncio.Lock] = {}
        # AMQP 1.0's own message totals, read by a metrics exporter (amqp1.* metrics);
        # context.stats counts every protocol together.
        self.messages_in = 0
        self.messages_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.connections_total = 0
        self.disconnections_total = 0
        self.errors_total = 0

    def protocol_factory(self) -> AMQP1Protocol:
        return AMQP1Protocol(self)

    async def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(
            self._sweep_deleted(), name="fluxmq-amqp1-deleted-queues"
        )

    async def _sweep_deleted(self) -> None:
        """Every :data:`DELETED_SWEEP` seconds: receivers whose queue or consumer
        group another API deleted are detached (see :meth:`orphans_detached`)."""
        while True:
            await asyncio.sleep(DELETED_SWEEP)
            try:
                self.orphans_detached()
            except Exception:
                log.exception("amqp1: sweeping receivers of deleted queues failed")

    def orphans_detached(self) -> int:
        """Detach, with ``amqp:resource-deleted``, every receiver link whose queue
        consumer the queue manager closed (its queue or consumer group was deleted
        by the HTTP admin API, the queue API...); how many were."""
        n = 0
        for proto in list(self.protocols):
            conn = proto.conn
            if conn is None or conn.phase is not Phase.OPENED:
                continue
            for s in list(conn.sessions.values()):
                for link in list(s.links.values()):
                    node = link.node
                    if (
                        isinstance(node, QueueSub)
                        and node.handle is not None
                        and node.handle.closed
                    ):
                        conn.detach(link, RESOURCE_DELETED, _orphan(node))
                        n += 1
            if n:
                proto.flush()
        return n

    async def stop(self) -> None:
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
        for proto in list(self.protocols):
            conn = proto.conn
            if conn is not None and conn.phase is Phase.OPENED:
                conn.close(CONNECTION_FORCED, "broker shutdown")
        self.close_all()

    # --- Env: links ------------------------------------------------------------------------

    def _acl_subject(self, link: Link) -> tuple[str, str] | None:
        """(action, topic) the ACL is asked about for a new link, or None when the
        link names no node yet (dynamic, anonymous relay, coordinator)."""
        a = link.attach
        cfg = self.cfg
        if link.outgoing:
            src = a.source
            if not isinstance(src, Source) or src.dynamic:
                return None
            addr = resolve(src.address, src.capabilities, cfg.auto_create, filter=True)
            if addr.kind == "topic" and not addr.name:
                source_filters(src.filter, addr)  # the exchange: its binding names the topic
            return SUBSCRIBE, acl_topic(addr)
        tgt = a.target
        if not isinstance(tgt, Target) or tgt.dynamic or tgt.address is None:
            return None
        addr = resolve(tgt.address, tgt.capabilities, cfg.auto_create, filter=False)
        return PUBLISH, acl_topic(addr)

    def authorize(self, conn: Connection, link: Link) -> Any:
        auth = self.context.auth
        hooks = self.context.hooks
        if not auth.authorization_active and hooks is None:
            return None
        subject = self._acl_subject(link)
        if subject is None:
            return None
        action, topic = subject
        # a receiver on a topic or queue is a subscription a blocking hook may see
        hook = (
            hooks is not None
            and action == SUBSCRIBE
            and topic != MANAGEMENT
            and hooks.wants(HOOK_SUBSCRIBE, PROTOCOL)
        )
        if not auth.authorization_active:
            return AuthorizeWait(link, action, topic, acl=False, hook=True) if hook else None
        ok = auth.authorize_cached(conn.container_id or conn.id, conn.username, action, topic)
        if ok is None:
            return AuthorizeWait(link, action, topic, hook=hook)
        if not ok:
            self.stats.authz_denied += 1
            raise AMQPError(UNAUTHORIZED, f"not authorized to {action} {topic!r}")
        return AuthorizeWait(link, action, topic, acl=False, hook=True) if hook else None

    def attach(self, conn: Connection, link: Link) -> Any:
        a = link.attach
        if link.outgoing:
            source = a.source
            if not isinstance(source, Source):
                raise AMQPError(INVALID_FIELD, "a receiving link needs a source")
            limits = self.context.limits
            if (
                limits is not None
                and limits.subscribes is not None
                and not limits.allow_subscribe(conn.container_id or conn.id)
            ):
                # [rate_limit] subscribe_rate: the attach is refused, the client may retry
                raise AMQPError(RESOURCE_LIMIT, "subscribe rate limit exceeded")
            if source.dynamic:
                return self._dynamic(conn, link, source)
            address = self.moved.pop(id(link), source.address)  # a hook's new filter
            addr = resolve(address, source.capabilities, self.cfg.auto_create, filter=True)
            link.address = address
            props = a.properties or {}
            binding, selector = source_filters(source.filter, addr)
            if binding is not None and addr.kind == "queue":
                addr.pattern = binding
            if addr.kind == "management":
                keys = [link.name]
                if isinstance(a.target, Target) and isinstance(a.target.address, str):
                    keys.insert(0, a.target.address)
                mgmt = MgmtReceiver(conn, link, keys)
                for key in keys:
                    self._mgmt_replies[(id(conn), key)] = mgmt
                link.node = mgmt
                return source
            if source.distribution_mode == "copy":
                browser = self._browse(conn, link, source, addr, props)
                browser.selector = selector
                browser.start()
                return source
            if addr.kind == "topic":
                sub = TopicSub(self, conn, link, addr.name)
                sub.selector = selector
                options = SubscriptionOptions(qos=1)
                self.context.router.subscribe(sub, addr.name, options)
                self.stats.subscriptions += 1
                link.node = sub
                self._subscribed(conn, sub.filter, options)
            else:
                group = str(props.get("consumer-group") or DEFAULT_GROUP)
                cursor = props.get("cursor")
                qsub = QueueSub(self, conn, link, addr.name, group)
                queues = self._queues()
                self._check_dynamic(queues, addr.name)
                try:
                    queues.auto_declare(addr.name, "an AMQP 1.0 receiver")
                    predicate = None
                    if selector is not None:
                        # evaluated by the queue's dispatcher (classic, priority, stream)
                        predicate = queue_predicate(selector, self.clock)
                    qsub.handle = queues.consume(
                        addr.name,
                        group,
                        qsub,
                        filter=addr.pattern or None,
                        credit=1,
                        cursor=cursor,
                        auto_commit=link.presettled,
                        predicate=predicate,
                    )
                except QueueError as exc:
                    err = queue_error(exc)
                    raise AMQPError(err.condition, err.description or "") from None
                qsub.handle.pause()
                link.node = qsub
                if addr.pattern:
                    qsub.filter += "/" + addr.pattern
                self._subscribed(conn, qsub.filter, SubscriptionOptions(qos=1))
            return source
        target = a.target
        if isinstance(target, Coordinator):
            link.node = COORDINATOR
            return target
        if not isinstance(target, Target):
            raise AMQPError(INVALID_FIELD, "a sending link needs a target")
        if target.dynamic:
            return self._dynamic_target(link, target)
        if target.address is None:
            link.node = QueueTarget("", None)  # anonymous relay: routed by each `to`
            return target
        link.node = self._target(target.address, target.capabilities)
        link.address = target.address
        return target

    def _dynamic(self, conn: Connection, link: Link, source: Source) -> Source:
        """A receiver asking for a dynamic node gets a temporary queue (deleted at
        detach): its address is the reply-to of request/response clients."""
        queues = self._queues()
        name = f"{DYNAMIC_PREFIX}{uuid.uuid4().hex[:16]}"
        queues.ensure_ephemeral(name)
        qsub = QueueSub(self, conn, link, name, DEFAULT_GROUP)
        qsub.temporary = True
        qsub.handle = queues.consume(
            name, DEFAULT_GROUP, qsub, credit=1, auto_commit=link.presettled
        )
        qsub.handle.pause()
        link.node = qsub
        link.address = f"$queue/{name}"
        self._subscribed(conn, qsub.filter, SubscriptionOptions(qos=1))
        return Source(
            address=link.address,
            dynamic=True,
            expiry_policy=source.expiry_policy,
            capabilities=["queue", "temporary-queue"],
        )

    def _dynamic_target(self, link: Link, target: Target) -> Target:
        """A sender asking for a dynamic node gets a temporary queue (deleted at
        detach); receivers attach to the address answered in the target."""
        queues = self._queues()
        name = f"{DYNAMIC_PREFIX}{uuid.uuid4().hex[:16]}"
        queues.ensure_ephemeral(name)
        node = QueueTarget(f"$queue/{name}", name)
        node.temporary = True
        link.node = node
        link.address = f"$queue/{name}"
        return Target(
            address=link.address,
            dynamic=True,
            expiry_policy=target.expiry_policy,
            capabilities=["queue", "temporary-queue"],
        )

    def _browse(
        self, conn: Connection, link: Link, source: Source, addr: Address, props: dict[Any, Any]
    ) -> Browser:
        """distribution-mode copy: read a queue without consuming it."""
        if addr.kind != "queue":
            raise AMQPError(
                NOT_IMPLEMENTED,
                "browsing (distribution-mode copy) a topic is not implemented: topics keep no messages",
            )
        queues = self._queues()
        q = queues.get(addr.name)
        if q is None:
            raise AMQPError(NOT_FOUND, f"no queue {addr.name!r} to browse")
        group = str(props.get("consumer-group") or DEFAULT_GROUP)
        link.snd_settle_mode = 1  # copies are sent settled: there is nothing to ack
        browser = Browser(self, conn, link, q, group)
        browser.pattern = addr.pattern
        link.node = browser
        return browser

    @staticmethod
    def _check_dynamic(queues: Any, name: str) -> None:
        """Dynamic node names are the broker's: one that is gone is not re-created."""
        if name.startswith(DYNAMIC_PREFIX) and queues.get(name) is None:
            raise AMQPError(NOT_FOUND, f"no dynamic node {name!r} (it ended with its link)")

    def _queues(self) -> Any:
        queues = self.context.queues
        if queues is None:
            raise AMQPError(NOT_IMPLEMENTED, "queues are not available in this broker")
        return queues

    def _target(self, address: Any, capabilities: Any) -> QueueTarget:
        addr = resolve(address, capabilities, self.cfg.auto_create, filter=False)
        if addr.kind == "management":
            return QueueTarget(MANAGEMENT, None)
        if addr.kind == "topic":
            return QueueTarget(addr.name, None)
        queues = self._queues()
        self._check_dynamic(queues, addr.name)
        try:
            queues.auto_declare(addr.name, "an AMQP 1.0 sender")
        except QueueError as exc:
            err = queue_error(exc)
            raise AMQPError(err.condition, err.description or "") from None
        topic = f"$queue/{addr.name}" + (f"/{addr.pattern}" if addr.pattern else "")
        return QueueTarget(topic, addr.name)

    def detach(self, conn: Connection, link: Link) -> None:
        node = link.node
        if isinstance(node, QueueTarget):
            if node.temporary and node.queue is not None and self.context.queues is not None:
                node.temporary = False
                if self.context.queues.delete(node.queue):
                    self.queue_deleted(node.queue)
            return
        if isinstance(node, Browser):
            node.close()
            return
        if isinstance(node, MgmtReceiver):
            for key in node.keys:
                if self._mgmt_replies.get((id(conn), key)) is node:
                    del self._mgmt_replies[(id(conn), key)]
            return
        if isinstance(node, TopicSub | QueueSub):
            node.close()
            if isinstance(node, TopicSub):
                self.stats.subscriptions -= 1
            self.context.events.client_unsubscribed(
                PROTOCOL, conn.container_id or conn.id, node.filter
            )

    def _subscribed(self, conn: Connection, topic_filter: str, options: Any) -> None:
        """A receiver link consumes a topic or queue now (subscription events and
        webhooks, as MQTT's SUBSCRIBE)."""
        self.context.events.client_subscribed(
            PROTOCOL, conn.container_id or conn.id, topic_filter, options
        )

    def queue_deleted(self, name: str) -> None:
        """Queue ``name`` was deleted: every receiver link consuming or browsing it is
        detached with ``amqp:resource-deleted`` (as RabbitMQ and Artemis do), rather
        than left attached with nothing to receive. A link whose own detach deleted
        the queue (a dynamic source) is already unbound and skipped."""
        for proto in list(self.protocols):
            conn = proto.conn
            if conn is None or conn.phase is not Phase.OPENED:
                continue
            for s in list(conn.sessions.values()):
                for link in list(s.links.values()):
                    node = link.node
                    if (isinstance(node, QueueSub) and node.handle is not None
                            and node.queue == name) or (
                        isinstance(node, Browser) and node.queue.name == name
                    ):  # fmt: skip
                        conn.detach(link, RESOURCE_DELETED, f"queue {name!r} was deleted")

    def credit(self, conn: Connection, link: Link) -> None:
        node = link.node
        if isinstance(node, QueueSub):
            h = node.handle
            if h is not None and h.closed:
                # its queue or consumer group was deleted by someone else (the HTTP
                # admin API, the queue API): detach rather than wait for nothing
                conn.detach(link, RESOURCE_DELETED, _orphan(node))
                return
            node.sync()
            if link.drain and link.credit > 0:
                node.drain()
        elif isinstance(node, Browser):
            node.more.set()

    def settle(self, conn: Connection, link: Link, token: Any, state: Any) -> None:
        node = link.node
        if not isinstance(node, QueueSub):
            return
        if isinstance(state, TransactionalState):
            txn = conn.txns.get(state.txn_id)
            if txn is None:
                node.settle(token, Released())  # an unknown transaction: give it back
            else:
                txn.settles.append((node, token, state.outcome))
            return
        node.settle(token, state)

    # --- $management ----------------------------------------------------------------------

    def _manage(self, conn: Connection, request: Any, done: Any) -> None:
        """Carry out a management request and send the response to its reply-to."""
        p = request.properties
        reply_to = p.reply_to if p is not None else None
        if not isinstance(reply_to, str) or not reply_to:
            done(Rejected(error=Error(INVALID_FIELD, "a $management request needs a reply-to")))
            return
        direct = self._mgmt_replies.get((id(conn), reply_to))
        target = None
        if direct is None:
            try:
                target = self._target(reply_to, None)
            except AMQPError as exc:
                done(Rejected(error=Error(exc.condition, exc.description or None)))
                return
            if target.topic == MANAGEMENT:
                done(Rejected(error=Error(INVALID_FIELD, "reply-to cannot be $management")))
                return
        response = handle_request(self.context.queues, request, self.queue_deleted)
        done(Accepted())
        if direct is not None:
            direct.conn.send(direct.link, response, None)
            return
        assert target is not None
        core = to_core(
            decode_message(response), response, target.topic, True, "$management", self.clock()
        )
        try:
            if target.queue is None:
                self.context.publish(core)
            else:
                self.context.publish_queued(core).add_done_callback(_retrieve)
        except QueueError as exc:
            log.info("%s: $management reply to %r not delivered: %s", conn, reply_to, exc)

    # --- Env: publishing -------------------------------------------------------------------

    def publish(
        self,
        conn: Connection,
        link: Link,
        message: Any,
        payload: bytes,
        settled: bool,
        done: Any,
        state: Any = None,
    ) -> None:
        if link.node is COORDINATOR:
            transactions.coordinate(self.context, conn, message, done)
            return
        self.stats.messages_received += 1
        self.messages_in += 1
        limits = self.context.limits
        if (
            limits is not None
            and limits.publishes is not None
            and not limits.allow_publish(conn.container_id or conn.id)
        ):
            # [rate_limit] publish_rate: the rejected outcome, the sender may retry.
            self.stats.messages_dropped += 1
            done(Rejected(error=Error(RESOURCE_LIMIT, "publish rate limit exceeded")))
            return
        txn = None
        if isinstance(state, TransactionalState):
            txn = conn.txns.get(state.txn_id)
            if txn is None:
                done(Rejected(error=Error(TXN_UNKNOWN, f"no transaction {state.txn_id.hex()}")))
                return
        node: QueueTarget = link.node
        check_acl = False
        if node.queue is None and not node.topic:
            to = message.properties.to if message.properties is not None else None
            if to is None:
                done(Rejected(error=Error(NOT_FOUND, "anonymous relay: the message has no `to`")))
                return
            try:
                node = self._target(to, None)
            except AMQPError as exc:
                done(Rejected(error=Error(exc.condition, exc.description or None)))
                return
            auth = self.context.auth
            if auth.authorization_active:
                cid = conn.container_id or conn.id
                ok = auth.authorize_cached(cid, conn.username, PUBLISH, node.topic)
                if ok is None:
                    check_acl = True
                elif not ok:
                    self.stats.authz_denied += 1
                    done(_denied(node.topic))
                    return
        hooks = self.context.hooks
        hook = (
            hooks is not None
            and not (node.topic == MANAGEMENT and node.queue is None)
            and hooks.wants(HOOK_PUBLISH, PROTOCOL)
        )
        if check_acl or hook:
            task = asyncio.get_running_loop().create_task(
                self._publish_checked(
                    conn, node, message, payload, settled, done, txn, check_acl, hook
                )
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        self._route(conn, node, message, payload, settled, done, txn)

    async def _publish_checked(
        self,
        conn: Connection,
        node: QueueTarget,
        message: Any,
        payload: bytes,
        settled: bool,
        done: Any,
        txn: Txn | None,
        check_acl: bool,
        hook: bool,
    ) -> None:
        """A publish that waits for an ACL decision (anonymous relay) and/or a
        blocking ``auth_on_publish`` hook. One connection's waiting publishes go
        on in the order they arrived (a FIFO lock per connection)."""
        lock = self.publish_order.get(id(conn))
        if lock is None:
            lock = self.publish_order[id(conn)] = asyncio.Lock()
        async with lock:
            cid = conn.container_id or conn.id
            auth = self.context.auth
            if check_acl and not await auth.authorize(cid, conn.username, PUBLISH, node.topic):
                self.stats.authz_denied += 1
                done(_denied(node.topic))
                return
            outcome = None
            hooks = self.context.hooks
            if hook and hooks is not None:
                core = to_core(message, payload, node.topic, settled, cid, self.clock())
                outcome = await hooks.call(
                    HookRequest(
                        HOOK_PUBLISH,
                        PROTOCOL,
                        cid,
                        node.topic,
                        payload=core.payload,
                        qos=core.qos,
                        properties=dict(core.user_properties or ()),
                        external_id=external_id(self.context, cid),
                    )
                )
                if not outcome.allow:
                    self.stats.authz_denied += 1
                    reason = outcome.reason or "denied by hook"
                    done(Rejected(error=Error(UNAUTHORIZED, reason)))
                    return
                if outcome.topic is not None and outcome.topic != node.topic:
                    # authorized again under its new name: a hook cannot route around the ACL
                    try:
                        node = self._target(address_of(outcome.topic), None)
                    except AMQPError as exc:
                        done(Rejected(error=Error(exc.condition, exc.description or None)))
                        return
                    if auth.authorization_active and not await auth.authorize(
                        cid, conn.username, PUBLISH, node.topic
                    ):
                        self.stats.authz_denied += 1
                        done(_denied(node.topic))
                        return
            if conn.phase is Phase.CLOSED:
                return  # the connection went while we waited: its sender resends
            self._route(conn, node, message, payload, settled, done, txn, outcome)

    def _route(
        self,
        conn: Connection,
        node: QueueTarget,
        message: Any,
        payload: bytes,
        settled: bool,
        done: Any,
        txn: Txn | None = None,
        outcome: HookOutcome | None = None,
    ) -> None:
        if node.topic == MANAGEMENT and node.queue is None:
            self._manage(conn, message, done)
            return
        core = to_core(message, payload, node.topic, settled, conn.container_id, self.clock())
        if outcome is not None:
            apply_outcome(core, outcome)
            if outcome.payload is not None or outcome.properties:
                # changed by a hook: AMQP 1.0 receivers get it rebuilt from the core
                # message, not the bytes the client sent
                extra = core.properties or {}
                extra.pop("amqp1", None)
                extra.pop("amqp1-trace", None)
        if txn is not None:
            txn.publishes.append((node, core))
            done(TransactionalState(txn_id=txn.id, outcome=Accepted()))
            return
        if node.queue is None:
            self.context.publish(core)
            done(Accepted())
            return
        try:
            fut = self.context.publish_queued(core)
        except QueueError as exc:
            done(Rejected(error=queue_error(exc)))
            return

        def appended(f: asyncio.Future[int]) -> None:
            if f.cancelled():
                done(Released())
            elif f.exception() is not None:
                done(Rejected(error=Error(INTERNAL_ERROR, f"queue append failed: {f.exception()}")))
            else:
                done(Accepted())

        if fut.done():
            appended(fut)
        else:
            fut.add_done_callback(appended)


def _denied(topic: str) -> Rejected:
    return Rejected(error=Error(UNAUTHORIZED, f"not authorized to publish {topic!r}"))


def _retrieve(f: asyncio.Future[int]) -> None:
    """Mark a reply's append outcome as seen (nobody waits for it)."""
    if not f.cancelled() and f.exception() is not None:
        log.info("$management reply append failed: %s", f.exception())
