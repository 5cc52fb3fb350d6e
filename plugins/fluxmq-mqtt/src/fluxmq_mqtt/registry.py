"""The session registry: which client id has which session, and for how long.

:class:`SessionRegistry` creates, resumes and takes over sessions when a CONNECT is
accepted, ends them (clean start, Session Expiry Interval, 3.1.1 persistent-session
cap), publishes wills (lost connection, protocol error, keep-alive timeout, takeover,
server shutdown; never after a normal DISCONNECT unless reason 0x04) with the MQTT 5
Will Delay Interval, and restores persisted sessions at start-up. Timers go through a
two-method scheduler (``call_later(delay, fn, *args) -> handle``, ``cancel(handle)``)
injected by the adapter, so the whole layer runs under a fake clock in tests.

It also keeps :class:`QueueDrops`, the per-client count of messages that session
queues dropped at ``max_queued_messages``, logged rate-limited, so that the default
drop (the oldest, as Mosquitto does) is never silent.

It holds no socket code and no packet handling (``connection.py``), and no per-message
work except through the sessions it owns (``session.py``). (Before it was named
``registry.py`` this module was ``sessions.py``; that name still imports.)
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from fluxmq_core.cluster.base import SessionClaim, SessionSnapshot
from fluxmq_core.message import Message
from fluxmq_mqtt.limits import KeyedLimiter
from fluxmq_mqtt.queues import QueueFace, is_queue_topic
from fluxmq_mqtt.session import (
    NEVER,
    PROTOCOL,
    Session,
    _inbound_record,
    options_from_record,
    options_to_record,
)

if TYPE_CHECKING:
    from fluxmq_core.context import BrokerContext
    from fluxmq_core.stats import Stats
    from fluxmq_mqtt.codec import Connect
    from fluxmq_mqtt.codec.decoder import Decoder
    from fluxmq_mqtt.config import MQTTConfig
    from fluxmq_mqtt.connection import Connection

__all__ = ["NEVER", "LiveConnections", "QueueDrops", "Scheduler", "SessionRegistry", "Will"]

log = logging.getLogger("fluxmq.mqtt")

#: Seconds between two log lines about session-queue drops (the first is at once).
DROP_LOG_INTERVAL = 60.0
_WILL_DELAY = "mqtt.will_delay"
_WILL_EXPIRY = "mqtt.will_expiry"


class Scheduler(Protocol):
    def call_later(self, delay: float, fn: Any, *args: Any) -> Any: ...

    def cancel(self, handle: Any) -> None: ...


class LiveConnections(Protocol):
    """The registry's connections past CONNACK: a set in sans-IO use; the adapter
    puts a view of its own set of open connections in its place
    (``server.ConnectedView``), so a connection is not in two sets."""

    def add(self, conn: Connection) -> None: ...

    def discard(self, conn: Connection) -> None: ...

    def __contains__(self, conn: object) -> bool: ...

    def __iter__(self) -> Iterator[Connection]: ...

    def __len__(self) -> int: ...


class Will:
    """A will message as given at CONNECT: the message (without timestamp or expiry
    deadline; they are set when it is published), its delay and expiry interval."""

    __slots__ = ("message", "delay", "expiry")

    def __init__(self, message: Message, delay: int = 0, expiry: int | None = None) -> None:
        self.message = message
        self.delay = delay
        self.expiry = expiry

    def stored(self) -> Message:
        props = dict(self.message.properties or {})
        props[_WILL_DELAY] = self.delay
        props[_WILL_EXPIRY] = self.expiry
        return self.message.copy(properties=props)

    @classmethod
    def from_stored(cls, message: Message) -> Will:
        props = dict(message.properties or {})
        delay = int(props.pop(_WILL_DELAY, 0) or 0)
        expiry = props.pop(_WILL_EXPIRY, None)
        return cls(message.copy(properties=props or None), delay, expiry)


class QueueDrops:
    """Messages dropped by full session queues, per client id, logged rate-limited.

    A session at ``max_queued_messages`` drops (``queue_policy``) rather than grow:
    a fair default, but one a user must be able to see. Each drop is counted in
    ``stats.session_queue_dropped`` and per client (``by_client``, shown as
    ``extra.queue_dropped`` by the admin API's session view, kept while the session
    lives). The first drop is logged at once; later ones in one line per
    ``interval`` seconds at most, broker-wide, naming the clients that dropped most,
    so that a fan-out to ten thousand offline sessions logs one line, not ten
    thousand.
    """

    __slots__ = ("by_client", "clock", "cfg", "interval", "last_log", "pending", "stats")

    def __init__(
        self, cfg: MQTTConfig, stats: Stats, clock: Any, interval: float = DROP_LOG_INTERVAL
    ) -> None:
        self.cfg = cfg
        self.stats = stats
        self.clock = clock
        self.interval = interval
        self.by_client: dict[str, int] = {}
        self.pending: dict[str, int] = {}  # drops not logged yet
        self.last_log: float | None = None

    def dropped(self, client_id: str) -> None:
        """One message dropped by ``client_id``'s full session queue."""
        self.stats.session_queue_dropped += 1
        self.by_client[client_id] = self.by_client.get(client_id, 0) + 1
        self.pending[client_id] = self.pending.get(client_id, 0) + 1
        now = self.clock()
        if self.last_log is None or now - self.last_log >= self.interval:
            self._log(now)

    def _log(self, now: float) -> None:
        pending, self.pending = self.pending, {}
        total = sum(pending.values())
        worst = sorted(pending.items(), key=lambda kv: -kv[1])[:5]
        named = ", ".join(f"{cid!r}: {n}" for cid, n in worst)
        if len(pending) > len(worst):
            named += f" and {len(pending) - len(worst)} more client(s)"
        what = "the oldest queued" if self.cfg.queue_policy == "drop-oldest" else "new"
        since = "" if self.last_log is None else f" in the last {now - self.last_log:.0f}s"
        log.warning(
            "session queues at [mqtt] max_queued_messages = %d dropped %d %s message(s)%s "
            "(%s); raise max_queued_messages or let the clients reconnect sooner. Counted "
            "in stats session_queue_dropped; logged at most every %.0fs",
            self.cfg.max_queued_messages,
            total,
            what,
            since,
            named,
            self.interval,
        )
        self.last_log = now

    def forget(self, client_id: str) -> None:
        """The session ended: its count goes (a new session starts from 0)."""
        self.by_client.pop(client_id, None)


class SessionRegistry:
    """Every MQTT session of this broker (one per client id) and live connections."""

    def __init__(self, context: BrokerContext, cfg: MQTTConfig, scheduler: Scheduler) -> None:
        self.context = context
        self.cfg = cfg
        self.scheduler = scheduler
        self.store = context.store
        # Two questions a store answers separately: does it survive a restart (wills
        # are kept in it for the next run, or published at a clean stop), and do
        # acknowledgements wait for its sync (a cluster driver's replicating store
        # says yes while its memory store underneath says no to the first).
        self.durable = bool(getattr(context.store, "durable", False))
        self.acks_wait = bool(getattr(context.store, "acks_wait_for_sync", self.durable))
        self.stats = context.stats
        self.events = context.events
        self.clock = context.clock
        self.router = context.router
        self.auth = context.auth
        self.sessions: dict[str, Session] = {}
        # Publisher flow control (``server.FlowControl``), set by the adapter; None
        # in sans-IO use, where deliveries to congested clients only drop or queue.
        self.flow: Any = None
        self.connections: LiveConnections = set()  # connections past CONNACK
        # One decoder per MQTT version shared by the connections past CONNECT between
        # packets (``Connection.receive``): an idle connection holds no decoder.
        self.idle_decoders: dict[int, Decoder] = {}
        self._will_timers: dict[str, Any] = {}  # client id -> timer of a delayed will
        # [mqtt] connection_rate: one token bucket per remote IP address.
        self.connect_limiter = (
            KeyedLimiter(cfg.connection_rate, cfg.connection_burst) if cfg.connection_rate else None
        )
        self.queue_face = QueueFace(self)  # $queue/ topics (queues.py)
        self.queue_drops = QueueDrops(cfg, context.stats, context.clock)
        # The cluster driver when it is distributed, else None: the single-node path
        # then checks one None per CONNECT and nothing per message.
        cluster = getattr(context, "cluster", None)
        self.cluster: Any = cluster if getattr(cluster, "distributed", False) else None
        self.claims: dict[str, SessionClaim] = {}
        self._cluster_wills: set[str] = set()  # client ids with a will recorded in etcd
        self._handoff_wills: dict[str, Will] = {}  # wills of connections fenced off
        self._replicated: set[str] = set()  # client ids whose state is kept in the cluster
        # Runs a coroutine in the background (set by the adapter; None in sans-IO use).
        self.spawn: Any = None
        if self.cluster is not None:
            self.cluster.session_exporter(PROTOCOL, self.export_session)
            self.cluster.watch_sessions(self.session_lost)

    # -- wills ---------------------------------------------------------------------------

    def make_will(self, client_id: str, p: Connect) -> Will:
        props = p.will_properties
        m = Message(
            p.will_topic or "",
            p.will_payload,
            p.will_qos,
            p.will_retain,
            origin_protocol=PROTOCOL,
            origin_client=client_id,
        )
        delay = 0
        expiry = None
        if props is not None:
            delay = props.will_delay_interval or 0
            expiry = props.message_expiry_interval
            m.content_type = props.content_type
            m.correlation_data = props.correlation_data
            m.response_topic = props.response_topic
            m.payload_format = props.payload_format_indicator
            if props.user_properties:
                m.user_properties = list(props.user_properties)
        return Will(m, delay, expiry)

    def publish_will(self, client_id: str, will: Will) -> None:
        now = self.clock()
        m = will.message.copy(timestamp=now)
        if will.expiry is not None:
            m.expires_at = now + will.expiry
        if self.durable:
            self.store.delete_will(client_id)
        try:
            self.context.publish(m)
        except Exception:  # a will must never break a disconnect
            log.exception("publishing the will of %r failed", client_id)

    def _schedule_will(self, session: Session, will: Will) -> None:
        delay = will.delay
        if session.expiry != NEVER:
            delay = min(delay, session.expiry)
        session.will = will
        if self.durable or session.persistent:
            self.store.save_will(session.client_id, will.stored(), self.clock() + delay)
        session.will_timer = self.scheduler.call_later(delay, self._will_due, session)

    def _will_due(self, session: Session) -> None:
        session.will_timer = None
        will = session.will
        session.will = None
        if will is not None:
            self.publish_will(session.client_id, will)

    def _cancel_will(self, session: Session) -> None:
        if session.will_timer is not None:
            self.scheduler.cancel(session.will_timer)
            session.will_timer = None
        if session.will is not None:
            session.will = None
            self.store.delete_will(session.client_id)

    # -- connect / disconnect ------------------------------------------------------------

    def attach(self, conn: Connection, clean_start: bool) -> tuple[Session, bool]:
        """Give ``conn`` its session (new, resumed or taken over) and say whether one
        was present. A connection still attached to it is kicked (0x8E)."""
        cid = conn.client_id
        session = self.sessions.get(cid)
        present = False
        if session is not None:
            prev = session.connection
            if prev is not None:
                self._take_over(prev, session, continues=not clean_start)
            if clean_start:
                # The claim just made for this connection outlives the old session.
                claim = self.claims.pop(cid, None)
                self.end_session(session)
                if claim is not None:
                    self.claims[cid] = claim
                session = None
            else:
                self._cancel_will(session)
                if session.expiry_timer is not None:
                    self.scheduler.cancel(session.expiry_timer)
                    session.expiry_timer = None
                present = True
        if session is None:
            session = Session(self, cid, conn.version)
            self.sessions[cid] = session
        session.version = conn.version
        session.username = conn.username
        session.expiry = conn.expiry
        session.disconnected_at = None
        session.connection = conn
        if conn.expiry:
            session.make_persistent()
            session.save()
        else:
            session.drop_persistence()
        if self.cluster is not None:
            self._cluster_will(cid, conn.will)
            self.replicate(session)
        if conn.will is not None and self.durable:
            # Saved while connected (publish_at 0): a crash counts as a lost connection,
            # and the restarted broker publishes it. The CONNACK (and everything after
            # it) waits for the store's sync, so an accepted will survives a kill -9.
            self.store.save_will(cid, conn.will.stored(), 0.0)
            conn.sync_first = True
        elif conn.will is not None and self.acks_wait:
            # A store whose sync means something else (a copy on another node): the
            # CONNACK still waits for what the session wrote above.
            conn.sync_first = True
        return session, present

    def _take_over(self, prev: Connection, session: Session, continues: bool) -> None:
        will = prev.will
        prev.will = None
        prev.session = None
        session.connection = None
        prev.kick(0x8E, "session taken over")
        if will is not None and not (will.delay and continues):
            self.publish_will(prev.client_id, will)

    def connected(self, conn: Connection) -> None:
        self.connections.add(conn)
        stats = self.stats
        stats.clients_connected += 1
        stats.clients_total += 1
        self.events.client_connected(PROTOCOL, conn.client_id, conn.username, conn.remote)

    def disconnected(self, conn: Connection) -> None:
        if conn not in self.connections:
            return
        self.connections.discard(conn)
        stats = self.stats
        stats.clients_connected -= 1
        stats.clients_disconnected += 1
        self.auth.forget_client(conn.client_id)
        self.events.client_disconnected(PROTOCOL, conn.client_id, conn.close_reason)

    def detach(self, conn: Connection, will_wanted: bool) -> None:
        """``conn`` is gone: publish or schedule its will, end or keep the session."""
        session = conn.session
        conn.session = None
        if session is None or session.connection is not conn:
            return
        session.connection = None
        if self.cluster is not None:
            self._cluster_will(session.client_id, None)
        self.queue_face.detached(session)
        will = conn.will if will_wanted else None
        conn.will = None
        if will is None and self.durable:
            self.store.delete_will(session.client_id)
        if session.expiry == 0:
            if will is not None:
                self.publish_will(session.client_id, will)
            self.end_session(session)
            return
        session.disconnected_at = self.clock()
        session.save()
        if self.cluster is not None:
            self.replicate(session)
        if will is not None:
            if will.delay:
                self._schedule_will(session, will)
            else:
                self.publish_will(session.client_id, will)
        self._schedule_expiry(session)

    def set_expiry(self, session: Session, expiry: int) -> None:
        """A DISCONNECT changed the Session Expiry Interval."""
        session.expiry = expiry
        if expiry:
            session.make_persistent()
            session.save()

    def _schedule_expiry(self, session: Session, delay: float | None = None) -> None:
        if session.expiry == NEVER:
            return
        if delay is None:
            delay = session.expiry
        session.expiry_timer = self.scheduler.call_later(delay, self._expired, session)

    def _expired(self, session: Session) -> None:
        session.expiry_timer = None
        if session.connection is None and not session.ended:
            self.end_session(session)

    def end_session(self, session: Session) -> None:
        """Forget a session: subscriptions, queue, store; a pending will goes out."""
        if session.ended:
            return
        session.ended = True
        if session.expiry_timer is not None:
            self.scheduler.cancel(session.expiry_timer)
            session.expiry_timer = None
        if session.will_timer is not None:
            self.scheduler.cancel(session.will_timer)
            session.will_timer = None
        will = session.will
        session.will = None
        removed = self.router.unsubscribe_all(session)
        self.stats.subscriptions -= removed
        self.queue_face.session_ended(session)
        self.queue_drops.forget(session.client_id)
        session.drop_persistence()
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]
            if self.cluster is not None and session.client_id in self._replicated:
                self._replicated.discard(session.client_id)
                self.cluster.session_saved(session.client_id, None)
            claim = self.claims.pop(session.client_id, None)
            if claim is not None:
                self._background(self.cluster.release_session(claim))
        if will is not None:
            self.publish_will(session.client_id, will)

    # -- cluster: claims, takeover between nodes, wills -------------------------------------

    def _background(self, coro: Any) -> None:
        """Run a cluster call without waiting for it (a release, in the background)."""
        if self.spawn is None:
            coro.close()  # sans-IO use: no loop to run it on
        else:
            self.spawn(coro)

    def _cluster_will(self, client_id: str, will: Will | None) -> None:
        """Record the will of a client connected here in the cluster (a surviving
        node publishes it if this node dies), or clear it."""
        if will is not None:
            self._cluster_wills.add(client_id)
            self.cluster.will_set(client_id, will.message)
        elif client_id in self._cluster_wills:
            self._cluster_wills.discard(client_id)
            self.cluster.will_set(client_id, None)

    async def claim(self, client_id: str, clean_start: bool) -> None:
        """CONNECT in a cluster: claim ``client_id`` for this node by compare-and-swap
        (raises ``ClusterError`` when it cannot be done safely) and import the
        session's state when another node held it."""
        claim, snapshot = await self.cluster.take_session(client_id, PROTOCOL)
        self.claims[client_id] = claim
        if snapshot is not None:
            self.import_session(snapshot, clean_start)

    def _fence(self, session: Session) -> Will | None:
        """Stop serving ``session`` here: its connection gets DISCONNECT 0x8E (5.0)
        or is closed (3.1.1), without its will (which moves with the session).
        Returns that will."""
        conn = session.connection
        if conn is None:
            return self._handoff_wills.pop(session.client_id, None)
        will = conn.will
        conn.will = None
        conn.session = None
        session.connection = None
        self.queue_face.detached(session)
        conn.kick(0x8E, "session taken over by another node")
        return will

    def replicate(self, session: Session) -> None:
        """Give the cluster a persistent session's record and subscriptions (not its
        queue or in-flight messages: those change per message), for a surviving
        node to resume if this one dies. Called on connect, disconnect and each
        subscription change; only in a cluster."""
        cid = session.client_id
        if session.expiry == 0:
            if cid in self._replicated:
                self._replicated.discard(cid)
                self.cluster.session_saved(cid, None)
            return
        self._replicated.add(cid)
        self.cluster.session_saved(
            cid,
            SessionSnapshot(
                cid,
                PROTOCOL,
                record=session.record(),
                subscriptions={f: options_to_record(o) for f, o in session.subscriptions.items()},
            ),
        )

    def session_lost(self, client_id: str, epoch: int) -> None:
        """The cluster says this node no longer owns ``client_id`` (taken over, or
        the lease was lost): stop serving it at once. The state stays until the new
        owner asks for it (``export_session``) or it expires."""
        self.claims.pop(client_id, None)
        session = self.sessions.get(client_id)
        if session is not None and session.connection is not None:
            will = self._fence(session)
            if will is not None:
                self._handoff_wills[client_id] = will

    def export_session(self, client_id: str, epoch: int) -> SessionSnapshot | None:
        """Another node took ``client_id`` over: close its connection here, hand
        over the whole state (subscriptions, offline queue, QoS 1/2 in flight both
        ways, the will) and forget it, without publishing the will: the new owner
        decides, as a local takeover would."""
        session = self.sessions.get(client_id)
        if session is None or session.ended:
            return None
        self.claims.pop(client_id, None)
        live = self._fence(session)
        will: tuple[Message, float] | None = None
        if live is not None:
            will = (live.stored(), 0.0)  # 0: the will of a live connection
        elif session.will is not None:
            will = (session.will.stored(), max(1.0, self.clock()))
        inflight = {pid: e.record() for pid, e in session.inflight.items()}
        for pid, msg in session.inbound.items():
            inflight[pid] = _inbound_record(msg)
        snapshot = SessionSnapshot(
            client_id,
            PROTOCOL,
            record=session.record(),
            subscriptions={f: options_to_record(o) for f, o in session.subscriptions.items()},
            queued=list(session.queue),
            inflight=inflight,
            will=will,
            epoch=epoch,
        )
        self._forget(session)
        self._replicated.discard(client_id)
        if self.cluster is not None:
            self._cluster_will(client_id, None)
        log.info("session %r handed over to another node", client_id)
        return snapshot

    def _forget(self, session: Session) -> None:
        """Drop a session that lives on elsewhere now: like ``end_session`` but
        without its will and without releasing the cluster claim."""
        session.ended = True
        for timer in (session.expiry_timer, session.will_timer):
            if timer is not None:
                self.scheduler.cancel(timer)
        session.expiry_timer = session.will_timer = None
        session.will = None
        self.stats.subscriptions -= self.router.unsubscribe_all(session)
        self.queue_face.session_ended(session)
        self.queue_drops.forget(session.client_id)
        if self.durable or session.persistent:
            self.store.delete_will(session.client_id)
        session.drop_persistence()
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]

    def import_session(self, snap: SessionSnapshot, clean_start: bool) -> Session:
        """Install a session handed over by another node (replacing a stale local
        copy): subscriptions routed here, offline queue and in-flight exchanges
        kept for ``Session.resend``. The will of the connection that was live there
        goes out now unless the session continues and it has a delay (as a local
        takeover decides); a pending will waits for ``attach`` to cancel or publish
        it."""
        cid = snap.client_id
        self._handoff_wills.pop(cid, None)
        old = self.sessions.get(cid)
        if old is not None:
            if old.connection is not None:
                self._fence(old)
            self._forget(old)
        record = snap.record or {}
        session = Session(self, cid, int(record.get("version", 4)), int(record.get("expiry", 0)))
        session.username = record.get("username")
        self._fill(session, snap.subscriptions)
        for _seq, message, qos, retain, ids in snap.queued:
            session.enqueue(message, qos, retain, tuple(ids))
        for pid, rec in snap.inflight.items():
            session.restore_inflight(int(pid), rec)
        if session.inflight:
            session._next_pid = max(session.inflight) % 0xFFFF + 1
        session.disconnected_at = record.get("disconnected_at") or self.clock()
        self.sessions[cid] = session
        self._schedule_expiry(session)  # attach, next, cancels it
        if snap.will is not None:
            stored, publish_at = snap.will
            will = Will.from_stored(stored)
            if publish_at:
                session.will = will
            elif not (will.delay and not clean_start):
                self.publish_will(cid, will)
        return session

    def _fill(self, session: Session, subscriptions: dict[str, dict[str, Any]]) -> None:
        """Route a restored or imported session's subscriptions here."""
        for topic_filter, raw in subscriptions.items():
            options = options_from_record(raw)
            if is_queue_topic(topic_filter):  # re-joined at reconnect, not routed
                session.add_subscription(topic_filter, options)
                self.queue_face.restored(session, topic_filter, options, raw)
                continue
            try:
                if self.router.subscribe(session, topic_filter, options):
                    self.stats.subscriptions += 1
            except ValueError:
                log.warning(
                    "dropping invalid subscription %r of %r", topic_filter, session.client_id
                )
                continue
            session.add_subscription(topic_filter, options)

    # -- start-up and shutdown -----------------------------------------------------------

    async def restore(self) -> int:
        """Load persisted MQTT sessions and pending wills; returns sessions restored."""
        store = self.store
        now = self.clock()
        restored = 0
        for cid in await store.list_sessions():
            record = await store.load_session(cid)
            if not record or record.get("protocol") != PROTOCOL:
                continue
            session = Session(
                self,
                cid,
                int(record.get("version", 4)),
                int(record.get("expiry", 0)),
                persistent=True,
            )
            session.username = record.get("username")
            self._fill(session, await store.load_subscriptions(cid))
            for seq, message in await store.queued(cid):
                session.restore_queued(seq, message)
            for pid, rec in (await store.load_inflight(cid)).items():
                session.restore_inflight(int(pid), rec)
            if session.inflight:
                session._next_pid = max(session.inflight) % 0xFFFF + 1
            disconnected_at = record.get("disconnected_at") or now
            session.disconnected_at = disconnected_at
            self.sessions[cid] = session
            restored += 1
            if session.expiry != NEVER:
                left = disconnected_at + session.expiry - now
                if left <= 0:
                    self.end_session(session)
                    continue
                self._schedule_expiry(session, left)
        for cid, stored, publish_at in await store.load_wills():
            will = Will.from_stored(stored)
            due = (now + will.delay) if not publish_at else publish_at
            owner = self.sessions.get(cid)
            if owner is None:
                self.scheduler.call_later(max(0.0, due - now), self.publish_will, cid, will)
                continue
            owner.will = will
            owner.will_timer = self.scheduler.call_later(max(0.0, due - now), self._will_due, owner)
        if restored:
            log.info("restored %d MQTT session(s)", restored)
        return restored

    def shutdown(self) -> None:
        """Server stop: wills of connected clients go out (as Mosquitto does), 5.0
        clients get DISCONNECT 0x8B; sessions are saved for a restart."""
        for conn in list(self.connections):
            session = conn.session
            conn.kick(0x8B, "server shutting down")
            if session is not None:
                self.detach(conn, True)
        if not self.durable:
            # Nothing will bring delayed wills back after the restart: send them now.
            for session in list(self.sessions.values()):
                if session.will is not None:
                    if session.will_timer is not None:
                        self.scheduler.cancel(session.will_timer)
                    self._will_due(session)
        for session in self.sessions.values():
            for timer in (session.expiry_timer, session.will_timer):
                if timer is not None:
                    self.scheduler.cancel(timer)
