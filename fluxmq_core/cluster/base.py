"""The Cluster interface: what every ``fluxmq.cluster`` driver provides.

The core talks to exactly one cluster driver (``BrokerContext.cluster``), chosen by
``[cluster] driver``. The ``none`` driver (:mod:`fluxmq_core.cluster.single`) is a
cluster of one and costs nothing; a distributed driver (``fluxmq-etcd``) keeps
metadata in a consensus store and moves messages between nodes.

How the core uses it, and the cost of each call:

- **Start-up** (``server.py``): ``start(context)`` after the queue manager, before
  the protocol servers; ``stop()`` after they stopped. If ``distributed`` is True
  the core hands the router a *filter listener* (``subscription_added`` /
  ``subscription_removed``) and sets ``context.forward = cluster.forward``; if it
  is False neither happens, so the single-node publish path checks one ``None``.
- **Subscription index**: the router reports each filter the first time any local
  subscriber (any protocol) holds it and when the last one drops it, as given
  (``$share/<group>/<filter>`` included). The driver publishes that node-level
  set to the cluster and answers :meth:`Cluster.forward` from the union of every
  node's set. It never sees individual subscribers.
- **Remote delivery**: :meth:`Cluster.forward` is called once per publish that
  entered through ``BrokerContext.publish`` (not ``$SYS``, not ``$queue/``), after
  local delivery; it must not block or await (batch and send in the background)
  and returns how many nodes it was handed to. A message arriving from a peer is
  given to ``context.router.publish``: delivered locally, never forwarded again.
- **Membership**: :meth:`Cluster.nodes` lists the known nodes with their health
  (``GET /api/v1/cluster``, ``fluxmq cluster status``); ``ready`` feeds ``/ready``.
- **Session ownership**: :meth:`Cluster.acquire_session` claims a client id for this
  node by compare-and-swap and returns a :class:`SessionClaim` whose ``epoch``
  fences writes made under an older claim; :meth:`Cluster.release_session` gives
  it back; :meth:`Cluster.claim_valid` and :meth:`Cluster.watch_sessions` tell the
  owner when it lost a claim (taken over, or its lease expired), so it stops serving
  the session and writes nothing more under it.
- **Session takeover**: a protocol that keeps sessions registers an exporter per
  protocol (:meth:`Cluster.session_exporter`) and, only when ``distributed`` is
  True, awaits :meth:`Cluster.take_session` on CONNECT before it attaches the
  session. That claims the client id by compare-and-swap and, when another node
  owned it, asks that node (whose exporter closes the client's connection and
  hands the state over) for a :class:`SessionSnapshot`, which the protocol
  imports. The ``none`` driver is never asked (``distributed`` is False), so a
  single node pays nothing per CONNECT.
- **Session state for node failures**: :meth:`Cluster.session_saved` keeps a
  persistent session's record and subscriptions where a surviving node can read
  them; :meth:`Cluster.take_session` returns them when the owner died.
- **Wills**: :meth:`Cluster.will_set` records (or clears) the will of a client
  connected here, so that if this node dies a surviving node publishes it, once.
- **Queues**: :meth:`Cluster.queue_owner` names the node that holds a queue's log.

Deliberately not here: how a driver stores its metadata, its wire format between
nodes and its failure detection; those belong to the driver.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from fluxmq_core.message import Message

#: ``(store seq or 0, message, granted qos, retain flag, subscription ids)``: one
#: entry of a session's offline queue, as the MQTT session holds it.
QueuedEntry = tuple[int, Message, int, bool, tuple[int, ...]]

__all__ = [
    "Cluster",
    "ClusterError",
    "NodeInfo",
    "QueuedEntry",
    "SessionClaim",
    "SessionSnapshot",
]


class ClusterError(Exception):
    """A cluster operation failed for a reason the caller can act on (the
    metadata store is unreachable, another node won a claim); the text says which."""


@dataclass
class NodeInfo:
    """One member of the cluster as this node sees it (the admin API's row)."""

    node_id: str
    address: str = ""
    alive: bool = True
    local: bool = False
    started: float | None = None
    sessions: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "node_id": self.node_id,
            "address": self.address,
            "alive": self.alive,
            "local": self.local,
            "started": self.started,
            "sessions": self.sessions,
        }
        out.update(self.extra)
        return out


@dataclass(frozen=True)
class SessionClaim:
    """Ownership of one session by one node. ``epoch`` grows with every change of
    owner, so a write carrying an older epoch is recognisably stale (a fencing
    token)."""

    client_id: str
    node_id: str
    epoch: int


@dataclass(slots=True)
class SessionSnapshot:
    """What moves with a session between nodes on takeover: the store's session
    record, the subscriptions (filter -> the store's options record), the offline
    queue, the QoS 1/2 exchanges in flight (packet id -> the store's record) and
    the will (message in its stored form, time it is due; 0 means the will of a
    connection that was live when the session moved). ``epoch`` is the fencing
    token of the ownership the state was taken under. Protocol-neutral: the
    protocol that made it reads it back."""

    client_id: str
    protocol: str = ""
    record: dict[str, Any] | None = None
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    queued: list[QueuedEntry] = field(default_factory=list)
    inflight: dict[int, dict[str, Any]] = field(default_factory=dict)
    will: tuple[Message, float] | None = None
    epoch: int = 0


#: ``exporter(client_id, epoch) -> SessionSnapshot | None``: called on the old
#: owner when another node took ``client_id`` over; it stops serving the session
#: (closing its connection), returns its state and forgets it.
SessionExporter = Callable[[str, int], SessionSnapshot | None]


@runtime_checkable
class Cluster(Protocol):
    """What the core asks of a cluster driver (see the module docstring)."""

    #: Driver name as configured (``none``, ``etcd``).
    name: str
    #: This node's id (``[cluster] node_id``, default the host name).
    node_id: str
    #: True when other nodes may exist: the core then wires forwarding and the
    #: subscription index; False keeps the single-node path free of both.
    distributed: bool
    #: Readiness for ``/ready``: False while the metadata store is unreachable.
    ready: bool

    async def start(self, context: Any) -> None:
        """Join the cluster; raise (naming the problem) if that is impossible."""
        ...

    async def stop(self) -> None:
        """Leave the cluster cleanly (idempotent)."""
        ...

    def nodes(self) -> list[NodeInfo]:
        """Every known node, this one included."""
        ...

    def status(self) -> dict[str, Any]:
        """A JSON-friendly summary for ``GET /api/v1/cluster``."""
        ...

    def subscription_added(self, topic_filter: str) -> None:
        """The first local subscription on ``topic_filter`` appeared (never blocks)."""
        ...

    def subscription_removed(self, topic_filter: str) -> None:
        """The last local subscription on ``topic_filter`` went away (never blocks)."""
        ...

    def shared_members(self, topic_filter: str, count: int) -> None:
        """A ``$share/`` filter now has ``count`` (> 0) local members: the weight of
        this node in the group's cluster-wide round robin (never blocks)."""
        ...

    def forward(self, message: Message) -> int:
        """Hand ``message`` to every other node with a matching subscriber; returns
        the number of nodes. Never blocks, never raises for a peer that is down."""
        ...

    async def acquire_session(self, client_id: str) -> SessionClaim:
        """Claim ``client_id`` for this node by compare-and-swap; raises
        :class:`ClusterError` when the claim cannot be made safely."""
        ...

    async def release_session(self, claim: SessionClaim) -> None:
        """Give a claim back (only if it is still ours)."""
        ...

    def claim_valid(self, claim: SessionClaim) -> bool:
        """True while ``claim`` is still this node's ownership (check before writing
        session state: a stale owner must not write)."""
        ...

    def watch_sessions(self, callback: Callable[[str, int], None]) -> None:
        """Call ``callback(client_id, epoch)`` when a session this node owned is taken
        over by another node or lost with the node's lease: stop serving it."""
        ...

    async def take_session(
        self, client_id: str, protocol: str
    ) -> tuple[SessionClaim, SessionSnapshot | None]:
        """Claim ``client_id`` for this node (as :meth:`acquire_session`) and, when
        another live node owned it, fetch its state from there (that node stops
        serving it). ``None``: no state elsewhere (use the local one, if any).
        Raises :class:`ClusterError` when the claim cannot be made safely."""
        ...

    def session_exporter(self, protocol: str, exporter: SessionExporter | None) -> None:
        """Serve takeovers of ``protocol``'s sessions with ``exporter`` (None: stop)."""
        ...

    def session_saved(self, client_id: str, snapshot: SessionSnapshot | None) -> None:
        """A persistent session owned here changed (record, subscriptions) or ended
        (None): keep it where another node can resume it if this one dies (never
        blocks)."""
        ...

    def will_set(self, client_id: str, will: Message | None) -> None:
        """Record (or clear, with None) the will of ``client_id``, connected here,
        for a surviving node to publish if this node dies (never blocks)."""
        ...

    def queue_owner(self, queue: str) -> str:
        """The node id that holds ``queue``'s log."""
        ...
