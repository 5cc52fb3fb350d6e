"""The MQTT session: the state that outlives a network connection.

A :class:`Session` is what the core router delivers to (it is the ``Subscriber``):
its subscriptions, its outbound in-flight window (packet id -> message and QoS
state), the inbound QoS 2 packet ids waiting for PUBREL, its bounded queue of QoS 1/2
messages waiting for a connection or for room in the window, and its packet-id
allocator. When a connection is attached, :meth:`Session.deliver` writes straight into
that connection's outgoing buffer; otherwise it queues (QoS 1/2) or drops (QoS 0, as
Mosquitto does by default with ``queue_qos0_messages false``). A queue at
``max_queued_messages`` drops as ``queue_policy`` says (the oldest by default, as
Mosquitto does); every such drop is counted per client and logged, rate-limited, by
the registry (``registry.queue_drops``). A queue overflow while connected disconnects
the client when ``disconnect_slow_clients`` is on.

The outbound QoS flows follow the tables of ``state.py`` (:func:`state.next_outbound`,
``state.RESEND``); this module keeps the entries and persists them.

Sessions that outlive their connection (``persistent``) mirror every change into the
core's :class:`~fluxmq_core.storage.base.BrokerStore` with its synchronous write
calls. This module is sans-IO (no asyncio, no sockets, no timers): the registry in
``registry.py`` owns lifetimes, wills and timers; ``connection.py`` owns packets and
encoding.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from fluxmq_core.message import Message
from fluxmq_core.router import Delivery, SubscriptionOptions
from fluxmq_mqtt.codec import Puback, Pubcomp, Publish, Pubrec
from fluxmq_mqtt.state import RESEND, QoSState, next_outbound

if TYPE_CHECKING:
    from fluxmq_mqtt.codec import PublishRun
    from fluxmq_mqtt.connection import Connection
    from fluxmq_mqtt.outbound import RunDelivery

__all__ = ["NEVER", "PROTOCOL", "Outbound", "Session", "options_from_record", "options_to_record"]

#: The protocol name of every MQTT session and message origin.
PROTOCOL = "mqtt"
#: A session expiry that never ends (MQTT 5's 0xFFFFFFFF).
NEVER = 0xFFFFFFFF
#: The packet that ends an outbound flow of each QoS.
_LAST_ACK = {1: Puback, 2: Pubcomp}
_SUB_IDS = "mqtt.subscription_ids"


class _Empty(dict):
    """A shared, read-only empty dict: the value of a per-session or per-connection
    dict until its first entry, so that an idle connection holds no dict of its own.
    A write that forgot to make a real dict first fails loudly instead of landing in
    the shared one."""

    __slots__ = ()

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("the shared empty dict is read-only: make a dict of your own first")

    __setitem__ = setdefault = update = __ior__ = _read_only


#: The shared empty dict (see :class:`_Empty`); compare with ``is``.
EMPTY: dict[Any, Any] = _Empty()


class Outbound:
    """One outbound QoS 1/2 message in flight (keyed by packet id in the session)."""

    __slots__ = ("message", "qos", "retain", "ids", "state")

    def __init__(
        self,
        message: Message,
        qos: int,
        retain: bool,
        ids: tuple[int, ...],
        state: QoSState = QoSState.SENT_PUBLISH,
    ) -> None:
        self.message = message
        self.qos = qos
        self.retain = retain
        self.ids = ids
        self.state = state

    def record(self) -> dict[str, Any]:
        return {
            "dir": "out",
            "qos": self.qos,
            "retain": self.retain,
            "ids": list(self.ids),
            "state": int(self.state),
            "message": self.message.to_dict(),
        }


def options_to_record(o: SubscriptionOptions) -> dict[str, Any]:
    return {
        "qos": o.qos,
        "no_local": o.no_local,
        "rap": o.retain_as_published,
        "rh": o.retain_handling,
        "id": o.subscription_id,
    }


def options_from_record(r: dict[str, Any]) -> SubscriptionOptions:
    return SubscriptionOptions(
        int(r.get("qos", 0)),
        bool(r.get("no_local")),
        bool(r.get("rap")),
        int(r.get("rh", 0)),
        r.get("id"),
    )


class _Offline:
    """The fields of a :class:`Session` that matter only once its connection went
    (see ``_OfflineField``)."""

    __slots__ = ("will", "will_timer", "expiry_timer", "disconnected_at")

    def __init__(self) -> None:
        self.will: Any = None
        self.will_timer: Any = None
        self.expiry_timer: Any = None
        self.disconnected_at: float | None = None


class _OfflineField:
    """A Session attribute kept in its ``_offline`` record (default None): reads give
    None while there is none, writing None creates none, and the record goes once
    all four are None again. A connected session holds three fewer slots (four out,
    the link in: 32 bytes with pymalloc's rounding); a disconnected persistent one
    holds the record (64 bytes) instead."""

    __slots__ = ("name",)

    def __init__(self) -> None:
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Session | None, owner: Any = None) -> Any:
        if obj is None:
            return self
        offline = obj._offline
        return None if offline is None else getattr(offline, self.name)

    def __set__(self, obj: Session, value: Any) -> None:
        offline = obj._offline
        if offline is None:
            if value is None:
                return
            offline = obj._offline = _Offline()
        setattr(offline, self.name, value)
        if (
            value is None
            and offline.will is None
            and offline.will_timer is None
            and offline.expiry_timer is None
            and offline.disconnected_at is None
        ):
            obj._offline = None


class Session:
    """One client id's session. ``registry`` supplies ``cfg``, ``store``, ``stats``,
    ``events`` and ``clock``; the registry attaches and detaches connections."""

    #: The same for every MQTT session: a class attribute, not a slot of each.
    protocol: str = PROTOCOL

    # Set after the connection went (or for a session restored or handed over
    # without one): kept in an ``_Offline`` record, not in four slots of every session.
    #: a pending will (``registry.Will``) and the timer that publishes it
    will: Any = _OfflineField()
    will_timer: Any = _OfflineField()
    #: the timer that ends the session
    expiry_timer: Any = _OfflineField()
    #: when the connection went (clock seconds)
    disconnected_at: Any = _OfflineField()

    __slots__ = (
        "client_id",
        "version",
        "username",
        "expiry",
        "persistent",
        "subscriptions",
        "inflight",
        "inbound",
        "queue",
        "connection",
        "registry",
        "_offline",
        "ended",
        "_next_pid",
    )

    def __init__(
        self, registry: Any, client_id: str, version: int, expiry: int = 0, persistent: bool = False
    ) -> None:
        self.client_id = client_id
        self.version = version
        self.username: str | None = None
        self.expiry = expiry
        self.persistent = persistent
        # These three are the shared read-only EMPTY until their first entry (idle
        # sessions hold no dicts of their own): ``add_subscription``,
        # ``_add_inflight`` and ``hold_inbound`` make them.
        self.subscriptions: dict[str, SubscriptionOptions] = EMPTY
        self.inflight: dict[int, Outbound] = EMPTY
        # Inbound QoS 2: packet id -> message held until PUBREL (None: nothing to
        # publish, e.g. the publish was refused by the ACL).
        self.inbound: dict[int, Message | None] = EMPTY
        # (store seq or 0, message, qos, retain, subscription ids); QoS 1/2 only.
        # A deque while messages wait, else an empty tuple (no deque block per idle
        # session; ``enqueue`` and ``restore_queued`` make one when needed).
        self.queue: deque[tuple[int, Message, int, bool, tuple[int, ...]]] | tuple[()] = ()
        self.connection: Connection | None = None
        self.registry = registry
        self._offline: _Offline | None = None  # will, its timer, expiry timer, when it went
        self.ended = False
        self._next_pid = 1

    def __repr__(self) -> str:
        return (
            f"Session({self.client_id!r}, v{self.version}, expiry={self.expiry}, "
            f"subs={len(self.subscriptions)}, inflight={len(self.inflight)}, "
            f"queued={len(self.queue)}, connected={self.connection is not None})"
        )

    # -- persistence -------------------------------------------------------------------

    def record(self) -> dict[str, Any]:
        return {
            "protocol": PROTOCOL,
            "version": self.version,
            "expiry": self.expiry,
            "username": self.username,
            "disconnected_at": self.disconnected_at,
        }

    def save(self) -> None:
        """Write the session record (when persistent)."""
        if self.persistent:
            self.registry.store.save_session(self.client_id, self.record())

    def make_persistent(self) -> None:
        """Start mirroring into the store: write everything held so far."""
        if self.persistent:
            return
        self.persistent = True
        store = self.registry.store
        cid = self.client_id
        store.save_session(cid, self.record())
        for f, o in self.subscriptions.items():
            store.save_subscription(cid, f, options_to_record(o))
        for pid, entry in self.inflight.items():
            store.save_inflight(cid, pid, entry.record())
        for pid, msg in self.inbound.items():
            store.save_inflight(cid, pid, _inbound_record(msg))
        queued = list(self.queue)
        self.queue = (
            deque(
                [
                    (self._store_enqueue(m, qos, retain, ids), m, qos, retain, ids)
                    for _seq, m, qos, retain, ids in queued
                ]
            )
            if queued
            else ()
        )

    def drop_persistence(self) -> None:
        if self.persistent:
            self.persistent = False
            self.registry.store.delete_session(self.client_id)

    def _store_enqueue(self, message: Message, qos: int, retain: bool, ids: tuple[int, ...]) -> int:
        props = dict(message.properties) if message.properties else {}
        props[_SUB_IDS] = list(ids)
        return self.registry.store.enqueue(
            self.client_id, message.copy(qos=qos, retain=retain, properties=props)
        )

    def restore_queued(self, seq: int, stored: Message) -> None:
        """Put back a message read from the store's offline queue."""
        props = dict(stored.properties or {})
        ids = tuple(props.pop(_SUB_IDS, ()))
        message = stored.copy(properties=props or None)
        if not self.queue:
            self.queue = deque()
        self.queue.append((seq, message, stored.qos, stored.retain, ids))

    def restore_inflight(self, pid: int, record: dict[str, Any]) -> None:
        msg = record.get("message")
        message = Message.from_dict(msg) if msg is not None else None
        if record.get("dir") == "in":
            if self.inbound is EMPTY:
                self.inbound = {}
            self.inbound[pid] = message
        elif message is not None:
            if self.inflight is EMPTY:
                self.inflight = {}
            self.inflight[pid] = Outbound(
                message,
                int(record["qos"]),
                bool(record.get("retain")),
                tuple(record.get("ids") or ()),
                QoSState(int(record["state"])),
            )

    def add_subscription(self, topic_filter: str, options: SubscriptionOptions) -> None:
        """Record a subscription in ``subscriptions`` only (nothing stored, routed
        or replicated)."""
        subs = self.subscriptions
        if subs is EMPTY:
            subs = self.subscriptions = {}
        subs[topic_filter] = options

    def set_subscription(self, topic_filter: str, options: SubscriptionOptions) -> None:
        self.add_subscription(topic_filter, options)
        if self.persistent:
            self.registry.store.save_subscription(
                self.client_id, topic_filter, options_to_record(options)
            )
        if getattr(self.registry, "cluster", None) is not None:
            self.registry.replicate(self)

    def remove_subscription(self, topic_filter: str) -> None:
        self.subscriptions.pop(topic_filter, None)
        if self.persistent:
            self.registry.store.delete_subscription(self.client_id, topic_filter)
        if getattr(self.registry, "cluster", None) is not None:
            self.registry.replicate(self)

    # -- packet ids --------------------------------------------------------------------

    def _allocate_pid(self) -> int:
        """The next free outbound packet id (not reserved until used)."""
        pid = self._next_pid
        inflight = self.inflight
        for _ in range(0x10000):
            if pid not in inflight:
                return pid
            pid = pid + 1 if pid < 0xFFFF else 1
        raise RuntimeError("no free packet identifier")  # the window makes this impossible

    def _add_inflight(self, pid: int, entry: Outbound) -> None:
        inflight = self.inflight
        if inflight is EMPTY:
            inflight = self.inflight = {}
        inflight[pid] = entry
        self._next_pid = pid + 1 if pid < 0xFFFF else 1
        if self.persistent:
            self.registry.store.save_inflight(self.client_id, pid, entry.record())

    # -- the Subscriber contract -------------------------------------------------------

    def deliver(self, message: Message, delivery: Delivery) -> None:
        """Called by the router; never blocks. Sends now, queues or drops."""
        registry = self.registry
        auth = registry.auth
        if auth.filter_reads and not self._may_read(auth, message.topic):
            self._dropped(message, "not authorized")
            return
        qos = delivery.qos
        if message.qos < qos:
            qos = message.qos
        if message.expires_at is not None and message.expired(registry.clock()):
            return
        conn = self.connection
        if conn is not None:
            if qos == 0:
                if conn.has_room():
                    conn.write_publish(message, 0, delivery.retain, delivery.subscription_ids)
                else:
                    self._dropped(message, "outbound buffer full")
                    flow = self.registry.flow
                    if flow is not None and conn.paused:
                        flow.block(conn)  # stop reading the publisher until it drains
                return
            if not self.queue and len(self.inflight) < conn.send_window and conn.has_room():
                self._send(conn, message, qos, delivery.retain, delivery.subscription_ids)
                return
            self.enqueue(message, qos, delivery.retain, delivery.subscription_ids)
            flow = self.registry.flow
            if flow is not None and len(self.queue) >= flow.high:
                flow.block(conn)
            return
        elif qos == 0:
            return  # QoS 0 is not queued for offline sessions
        self.enqueue(message, qos, delivery.retain, delivery.subscription_ids)

    def deliver_run(self, run: PublishRun, ids: tuple[int, ...], shared: RunDelivery) -> None:
        """:meth:`deliver` of each message of a run of plain QoS 0 messages, in order
        (``Connection._on_publish_run``, which did the read check). What does not fit
        the connection's output is dropped as :meth:`deliver` drops it."""
        conn = self.connection
        if conn is None:
            return  # QoS 0 is not queued for offline sessions
        k = conn.write_run(run, ids, shared)
        if k < len(run.ends):
            self.dropped_run(shared, k, "outbound buffer full")
            flow = self.registry.flow
            if flow is not None and conn.paused:
                flow.block(conn)  # stop reading the publisher until it drains

    def dropped_run(self, shared: RunDelivery, k: int, reason: str) -> None:
        """:meth:`_dropped` for each message of a run from the ``k``-th on."""
        registry = self.registry
        n = len(shared.run.ends)
        if registry.events.on_dropped:
            for i in range(k, n):
                self._dropped(shared.message(i), reason)
        else:
            registry.stats.messages_dropped += n - k

    def _may_read(self, auth: Any, topic: str) -> bool:
        """The per-message read check of ``[auth] acl_subscribe = "filter"`` (a cached
        dict lookup after the first message per topic). Queue deliveries were
        authorized when the queue subscription was made and are not re-checked: a
        refused one would never be acknowledged."""
        if topic.startswith("$queue/"):
            return True
        return auth.may_read(self.client_id, self.username, topic)

    def _send(
        self, conn: Connection, message: Message, qos: int, retain: bool, ids: tuple[int, ...]
    ) -> bool:
        pid = self._allocate_pid()
        if not conn.write_publish(message, qos, retain, ids, pid):
            return False
        self._add_inflight(pid, Outbound(message, qos, retain, ids))
        return True

    def _dropped(self, message: Message, reason: str) -> None:
        registry = self.registry
        registry.stats.messages_dropped += 1
        if registry.events.on_dropped:
            registry.events.message_dropped(message, PROTOCOL, self.client_id, reason)

    def enqueue(self, message: Message, qos: int, retain: bool, ids: tuple[int, ...]) -> None:
        """Queue a QoS 1/2 message, applying ``max_queued_messages`` and the policy."""
        cfg = self.registry.cfg
        queue = self.queue
        if len(queue) >= cfg.max_queued_messages:
            conn = self.connection
            if conn is not None and cfg.disconnect_slow_clients:
                # Connected, yet the window and the queue are full: too slow.
                conn.kick(0x97, "session queue full: client too slow")
            if cfg.queue_policy == "reject" or not queue:
                self._dropped(message, "session queue full")
                self.registry.queue_drops.dropped(self.client_id)
                return
            old = queue.popleft()
            if self.persistent and old[0]:
                self.registry.store.remove_queued(self.client_id, (old[0],))
            self._dropped(old[1], "session queue full (oldest dropped)")
            self.registry.queue_drops.dropped(self.client_id)
        seq = self._store_enqueue(message, qos, retain, ids) if self.persistent else 0
        if not queue:
            queue = self.queue = deque()
        queue.append((seq, message, qos, retain, ids))

    def pump(self) -> None:
        """Move queued messages into the window while the connection has room."""
        conn = self.connection
        queue = self.queue
        if conn is None or not queue:
            return
        window = conn.send_window
        now = self.registry.clock()
        sent: list[int] = []
        while queue and len(self.inflight) < window and conn.has_room():
            seq, message, qos, retain, ids = queue.popleft()
            if seq:
                sent.append(seq)
            if message.expires_at is not None and message.expired(now):
                continue
            self._send(conn, message, qos, retain, ids)
        if sent and self.persistent:
            self.registry.store.remove_queued(self.client_id, sent)
        if not queue:
            self.queue = ()
        flow = self.registry.flow
        if flow is not None and flow.congested:
            flow.check(conn, len(queue))

    # -- acknowledgements of outbound messages ----------------------------------------

    def acked(self, pid: int, qos: int) -> bool:
        """PUBACK (qos 1) or PUBCOMP (qos 2) for ``pid``: True when it ended a flow."""
        entry = self.inflight.get(pid)
        if entry is None or entry.qos != qos:
            return False
        if next_outbound(qos, entry.state, _LAST_ACK[qos]) is not QoSState.DONE:
            return False  # a PUBCOMP before the PUBREC: not this flow's step
        self._finish(pid)
        return True

    def received(self, pid: int, failed: bool) -> bool | None:
        """PUBREC for ``pid``. Returns True when a PUBREL is due, False when the flow
        ended (reason code >= 0x80), None for an unknown packet id."""
        entry = self.inflight.get(pid)
        if entry is None or entry.qos != 2:
            return None
        if failed:
            self._finish(pid)
            return False
        state = next_outbound(2, entry.state, Pubrec)
        if state is not None:  # None: a repeated PUBREC, answered with PUBREL again
            entry.state = state
            # The message is delivered: keep only what a PUBREL resend needs.
            if self.persistent:
                self.registry.store.save_inflight(self.client_id, pid, entry.record())
        return True

    def _finish(self, pid: int) -> None:
        entry = self.inflight.pop(pid)
        if self.persistent:
            self.registry.store.delete_inflight(self.client_id, pid)
        registry = self.registry
        if registry.events.on_delivered:
            registry.events.message_delivered(entry.message, PROTOCOL, self.client_id)
        if self.queue:
            self.pump()

    # -- inbound QoS 2 -----------------------------------------------------------------

    def hold_inbound(self, pid: int, message: Message | None) -> None:
        inbound = self.inbound
        if inbound is EMPTY:
            inbound = self.inbound = {}
        inbound[pid] = message
        if self.persistent:
            self.registry.store.save_inflight(self.client_id, pid, _inbound_record(message))

    def release_inbound(self, pid: int) -> tuple[bool, Message | None]:
        """PUBREL: (known, message to publish now)."""
        if pid not in self.inbound:
            return False, None
        message = self.inbound.pop(pid)
        if self.persistent:
            self.registry.store.delete_inflight(self.client_id, pid)
        return True, message

    # -- resume ------------------------------------------------------------------------

    def resend(self, conn: Connection) -> None:
        """On resume: resend unacknowledged PUBLISH (DUP) and PUBREL, then queued."""
        for pid, entry in list(self.inflight.items()):
            if RESEND[entry.state] is not Publish:
                conn.write_pubrel(pid)
            elif not conn.write_publish(
                entry.message, entry.qos, entry.retain, entry.ids, pid, True
            ):
                self.inflight.pop(pid)
                if self.persistent:
                    self.registry.store.delete_inflight(self.client_id, pid)
        self.pump()


def _inbound_record(message: Message | None) -> dict[str, Any]:
    return {
        "dir": "in",
        "qos": 2,
        "state": int(QoSState.RECEIVED),
        "message": None if message is None else message.to_dict(),
    }
