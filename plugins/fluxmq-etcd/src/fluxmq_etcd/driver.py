"""``EtcdCluster``: the ``etcd`` cluster driver (entry point ``fluxmq.cluster = etcd``).

Metadata lives in etcd under ``[cluster] etcd_prefix`` (default ``/fluxmq/``):

- ``nodes/<node_id>``: this node's record (JSON: gRPC address, start time, session
  count, listeners), attached to the node's lease, so it disappears ``lease_ttl``
  seconds after the node stops answering;
- ``subs/<node_id>/<filter>``: one key per filter held by a local subscriber of any
  protocol (``$share/<group>/<filter>`` as given), on the same lease.

Every node reads the whole prefix once, then follows it with one prefix watch from
the revision it read. A watch that fails for any reason (etcd restarted, history
compacted, the stream cut) ends the current *session* with etcd: the node re-reads
everything and rebuilds its view from scratch (a full resync), so a gap in the event
stream can never go unnoticed. Its own keys are re-written under a live lease at the
start of each session (a lost lease is replaced by a new one).

Publishes are forwarded by :meth:`EtcdCluster.forward` to the nodes whose filters
match. A retained publish is also written to ``retained/<topic>`` (small payloads
inline, large ones as a pointer to the node that holds them, fetched over gRPC), so
every node, a later one included, keeps it. A shared subscription group is served once cluster-wide: the publishing
node picks, in turn, one of the nodes holding members of the group, and only that
node delivers (to one of its members, in its own turn). Messages travel through :class:`fluxmq_etcd.peers.Peers` (gRPC, batched per peer, with a
circuit breaker). A forwarded message is handed to the receiving node's router and
never forwarded again.

Session ownership is a compare-and-swap on ``sessions/<client_id>`` under the lease,
with the etcd revision of the winning write as fencing epoch (:meth:`acquire_session`);
a node that loses its lease loses every claim with it. :meth:`take_session` also
moves a session's state from a live previous owner (``TakeoverSession``) or reads
what a dead one left in ``sessionstate/<client_id>``; ``wills/<node>/<client_id>``
holds the wills of clients connected to a node, published once by a survivor
when that node dies.

Before the protocols start, the driver wraps two of the core's objects in the
broker context: ``context.store`` becomes a :class:`~fluxmq_etcd.replication.ReplicatedStore`
(every write of a persistent session is copied to this node's session replica
before the store's ``sync()`` resolves, so a survivor resumes the session whole)
and ``context.queues`` a :class:`~fluxmq_etcd.queues.ClusterQueues` (a queue owned
by another node, ``queues/<name>`` in etcd, is published to, consumed and settled
through its owner). ``docs/clustering.md`` says what is and is not replicated.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from fluxmq_core.cluster.base import (
    ClusterError,
    NodeInfo,
    SessionClaim,
    SessionExporter,
    SessionSnapshot,
)
from fluxmq_core.cluster.index import NodeIndex
from fluxmq_core.config import ClusterConfig, ConfigError, parse_address
from fluxmq_core.plugins import PluginError
from fluxmq_core.router import parse_shared
from fluxmq_core.router.topics import topic_matches
from fluxmq_core.router.types import Delivery
from fluxmq_etcd.codec import (
    CodecError,
    message_from_proto,
    message_to_proto,
    pb,
    session_from_proto,
    session_to_proto,
)
from fluxmq_etcd.embedded import EtcdMember, EtcdSupervisor
from fluxmq_etcd.etcdclient import Endpoint, make_client, parse_endpoints
from fluxmq_etcd.peers import (
    HandlerError,
    PeerError,
    Peers,
    tls_client_credentials,
    tls_server_credentials,
)
from fluxmq_etcd.queues import TARGET as QUEUE_TARGET
from fluxmq_etcd.queues import ClusterQueues
from fluxmq_etcd.replication import ReplicatedStore, SessionCopies, version_base

if TYPE_CHECKING:
    import aetcd

    from fluxmq_core.message import Message
log = logging.getLogger("fluxmq.cluster.etcd")

__all__ = ["EtcdCluster"]

#: Where a publish to one topic goes beyond this node: (the other live nodes with a
#: matching plain filter, the share groups matched with no member here).
_Route = tuple[tuple[str, ...], tuple[tuple[str, tuple[tuple[str, int], ...]], ...]]
#: The route of a topic no other node wants (the common case of a worker's traffic).
_NOWHERE: _Route = ((), ())
#: Topics whose route is cached (the oldest is dropped beyond this).
ROUTES_MAX = 4096

#: Seconds between attempts to reach etcd again after a failure (grows to the max).
RETRY_MIN = 0.2
RETRY_MAX = 3.0
#: Compare-and-swap attempts of one session claim when the key is released between
#: the read and the swap (a claimed key ends the attempts at once).
CLAIM_ATTEMPTS = 3
#: Target prefix of a message relayed to one session's new node after a takeover.
SESSION_TARGET = "s:"
#: Seconds an old owner keeps relaying what peers forward to it after it withdrew
#: a moved session's filters (peers that had not seen the withdrawal yet).
RELAY_GRACE = 1.0


#: Longest socket path the link uses (``sun_path`` holds 108 bytes on Linux);
#: a longer one is replaced by a random name in the abstract namespace.
LINK_PATH_MAX = 100


def host_id() -> str | None:
    """This kernel's boot id and network namespace: equal for two nodes exactly when
    they run on the same (booted) host and share its network, whatever their host
    names or addresses (two network namespaces, say two containers or a partition
    test, count as two hosts: the link must not bypass their network); None off
    Linux."""
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        net = os.stat("/proc/self/ns/net")
    except OSError:
        return None
    return f"{boot}/net:{net.st_dev}:{net.st_ino}" if boot else None


class _Relay:
    """An old owner relaying a moved session's traffic to its new node until every
    node routes to the new node directly (see ``EtcdCluster._serve_takeover``)."""

    __slots__ = ("client_id", "node", "filters", "held", "local")

    def __init__(self, client_id: str, node: str, filters: list[str], held: set[str]) -> None:
        self.client_id = client_id
        self.node = node
        self.filters = filters
        #: Filters kept in etcd for the relay only (no local subscriber holds them).
        self.held = held
        #: Still relaying local publishes (until the new node's filters are seen here).
        self.local = True

    def matches(self, topic: str) -> bool:
        return any(topic_matches(f, topic) for f in self.filters)


def _resumable(snapshot: SessionSnapshot, protocol: str) -> bool:
    """Whether a session's stored state (in etcd or a replica) may resume it: same
    protocol (or none recorded), and not expired since its client went away."""
    if snapshot.protocol and snapshot.protocol != protocol:
        return False
    record = snapshot.record or {}
    expiry = record.get("expiry") or 0
    since = record.get("disconnected_at")
    return not (since and expiry and expiry != 0xFFFFFFFF and since + expiry < time.time())


class EtcdCluster:
    """The etcd cluster driver (see the module docstring)."""

    name = "etcd"
    distributed = True

    def __init__(self, node_id: str, options: ClusterConfig | None = None) -> None:
        cfg = options if options is not None else ClusterConfig(driver="etcd")
        if not node_id or "/" in node_id:
            raise ConfigError(
                f"cluster.node_id: {node_id!r} cannot name a node (non-empty, no '/')",
                key="cluster.node_id",
            )
        self.node_id = node_id
        self.cfg = cfg
        self.prefix = cfg.etcd_prefix if cfg.etcd_prefix.endswith("/") else cfg.etcd_prefix + "/"
        self._nodes_prefix = f"{self.prefix}nodes/".encode()
        self._subs_prefix = f"{self.prefix}subs/".encode()
        self._sessions_prefix = f"{self.prefix}sessions/".encode()
        self._retained_prefix = f"{self.prefix}retained/".encode()
        self._wills_prefix = f"{self.prefix}wills/".encode()
        self._state_prefix = f"{self.prefix}sessionstate/".encode()
        self._queues_prefix = f"{self.prefix}queues/".encode()
        self._own_wills = f"{self.prefix}wills/{node_id}/".encode()
        self._own_subs = f"{self.prefix}subs/{node_id}/".encode()
        if cfg.etcd_embedded:
            self.endpoints = [
                Endpoint(*parse_address(cfg.etcd_client, where="cluster.etcd_client"), False)
            ]
        else:
            self.endpoints = parse_endpoints(cfg.etcd_endpoints or ["http://127.0.0.1:2379"])
        self.address = ""
        self.started = time.time()
        self.index = NodeIndex()
        #: node id -> its record as read from etcd (this node included).
        self.members: dict[str, dict[str, Any]] = {}
        #: topic -> its :data:`_Route`, valid while ``index.generation`` equals
        #: ``_routes_gen`` (a membership change sets that to -1).
        self._routes: dict[str, _Route] = {}
        self._routes_gen = -1
        #: Filters held by local subscribers: the truth our etcd keys are made from.
        self._local: set[str] = set()
        #: Filter changes not yet written to etcd (filter -> held?).
        #: (the value to write: b"" for a plain filter, the member count of a
        #: ``$share/`` one; None to delete).
        self._pending: dict[str, bytes | None] = {}
        #: Local member count of each ``$share/`` filter held here.
        self._members: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._client: aetcd.Client | None = None
        self._endpoint_i = 0
        self._lease_id: int | None = None
        self._context: Any = None
        self._peers: Peers | None = None
        self._supervisor: EtcdSupervisor | None = None
        #: Same-host link: this kernel's boot id when ``local_link`` is on.
        self._host = host_id() if cfg.local_link == "auto" else None
        self._task: asyncio.Task[None] | None = None
        self._synced = asyncio.Event()
        #: Set while :attr:`ready` (a claim waits on it); ``_retry_now`` cuts the
        #: pause before the next attempt to reach etcd short when a claim waits.
        self._ready = asyncio.Event()
        self._retry_now = asyncio.Event()
        self._stopping = False
        self._listeners: dict[str, str] = {}
        self.resyncs = 0
        self.last_error = ""
        #: Sessions this node owns: client id -> epoch (the etcd revision of the
        #: claim). Cleared when the lease is lost: ownership never outlives it.
        self._owned: dict[str, int] = {}
        #: Share group key -> this node's round-robin turn over the holding nodes.
        self._turns: dict[str, int] = {}
        self._from_peer = False
        self.share_dropped = 0
        #: Retained changes made here, not yet in etcd (topic -> message or None).
        self._retained_pending: dict[str, Message | None] = {}
        #: Large retained messages this node holds for others to fetch.
        self._retained_held: dict[str, Message] = {}
        self.retained_fetch_failed = 0
        self._session_lost: list[Callable[[str, int], None]] = []
        #: protocol -> exporter of its sessions (serves TakeoverSession).
        self._exporters: dict[str, SessionExporter] = {}
        #: Wills of clients connected here, not yet in etcd (client id -> message or None).
        self._wills_pending: dict[str, Message | None] = {}
        #: Persistent session states not yet in etcd (client id -> snapshot or None).
        self._states_pending: dict[str, SessionSnapshot | None] = {}
        self.sessions_resumed_from_etcd = 0
        #: Whether our own stale ``wills/<node_id>/`` keys were cleared this run.
        self._wills_cleared = False
        self.takeovers_in = 0
        self.takeovers_out = 0
        self.wills_published = 0
        #: The node's store, wrapped so that persistent sessions are copied to the
        #: session replica (``replication.py``); the copies kept here for others.
        self._store: ReplicatedStore | None = None
        self._replicas = SessionCopies(fenced=True)
        self._replicator: asyncio.Task[None] | None = None
        self._replica_wake = asyncio.Event()
        #: This run of the node (its copies on replicas are tagged with it).
        self.run = version_base()
        self.replica_target: str | None = None
        self.replication_errors = 0
        self.replication_last_error = ""
        self.replication_full_syncs = 0
        self.sessions_resumed_from_replica = 0
        #: Takeovers this node handed over, relaying until the new node is routed to.
        self._relays: dict[str, _Relay] = {}
        self.relayed = 0
        self.relay_dropped = 0
        #: Queue name -> (owner node id, queue type), from etcd ``queues/<name>``.
        self.queue_owners: dict[str, tuple[str, str]] = {}
        #: Queue claims not yet in etcd (name -> type, or None to give it up).
        self._queues_pending: dict[str, str | None] = {}
        self._cq: ClusterQueues | None = None

    @property
    def ready(self) -> bool:
        """Registered in etcd and following its watch: sessions can be claimed."""
        return self._ready.is_set()

    @ready.setter
    def ready(self, value: bool) -> None:
        if value:
            self._ready.set()
        else:
            self._ready.clear()

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self, context: Any) -> None:
        """Start embedded etcd (if configured) and the gRPC endpoint, then join:
        returns once this node is registered and has read the cluster's state, or
        raises when etcd cannot be reached within ``lease_ttl`` (``PluginError``,
        which ``fluxmq run`` reports without a traceback). Whatever was started is
        stopped again on failure: no orphaned etcd member or gRPC port."""
        try:
            await self._start(context)
        except BaseException:
            await self.stop()
            raise

    async def _start(self, context: Any) -> None:
        self._context = context
        cfg = self.cfg
        if cfg.etcd_embedded:
            data_dir = cfg.etcd_data_dir or str(Path(context.config.server.data_dir) / "etcd")
            member = EtcdMember(
                self.node_id,
                data_dir,
                cfg.etcd_client,
                cfg.etcd_peer,
                cfg.etcd_initial_cluster,
                log_path=Path(data_dir).parent / "etcd.log",
            )
            self._supervisor = EtcdSupervisor(member)
            await self._supervisor.start()
        tls: dict[str, Any] = {}
        if cfg.tls_cert:
            try:
                tls["server_credentials"] = tls_server_credentials(
                    cfg.tls_cert, cfg.tls_key, cfg.tls_ca
                )
                tls["client_credentials"] = tls_client_credentials(
                    cfg.tls_ca, cfg.tls_cert, cfg.tls_key
                )
            except (OSError, ValueError) as exc:
                raise ConfigError(str(exc), key="cluster.tls_cert") from None
            tls["tls_server_name"] = cfg.tls_server_name or None
        self._peers = Peers(
            self.node_id,
            self._on_peer_messages,
            on_targeted=self._on_targeted,
            batch_max=cfg.batch_max,
            batch_delay=cfg.batch_delay,
            queue_max=cfg.peer_queue_max,
            timeout=cfg.peer_timeout,
            **tls,
        )
        self._peers.ready = lambda: self.ready
        self._peers.handle("FetchRetained", self._serve_retained)
        self._peers.handle("TakeoverSession", self._serve_takeover)
        self._peers.handle("ReplicateSessions", self._serve_replicate)
        self._peers.handle("FetchReplica", self._serve_fetch_replica)
        if context.queues is not None and not isinstance(context.queues, ClusterQueues):
            # Queues owned by other nodes are reached through their owner.
            self._cq = ClusterQueues(context.queues, self)
            context.queues = self._cq
            self._peers.handle("QueueAppend", self._cq.serve_append)
            self._peers.handle("QueueSettle", self._cq.serve_settle)
            self._peers.handle("QueueConsume", self._cq.serve_consume)
            self._peers.handle("QueueCancel", self._cq.serve_cancel)
            self._peers.handle("QueueFlow", self._cq.serve_flow)
        # Before the protocols start (they read context.store once): every write
        # to a persistent session is also copied to this node's session replica.
        if not isinstance(context.store, ReplicatedStore):
            self._store = ReplicatedStore(context.store, self.node_id, self._owned.get)
            await self._store.load()
            context.store = self._store
        context.router.set_share_handler(self._serve_groups)
        try:
            port = await self._peers.start(cfg.bind)
        except OSError as exc:
            raise ConfigError(f"cluster.bind: {exc}", key="cluster.bind") from None
        if self._host is not None:
            await self._start_link(context)
        host, _ = parse_address(cfg.bind, where="cluster.bind")
        context.bound["cluster.bind"] = (host, port)
        if cfg.advertise:
            self.address = cfg.advertise
        else:
            shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
            self.address = f"{shown}:{port}"
        self._task = asyncio.get_running_loop().create_task(self._run(), name="etcd-cluster")
        try:
            await asyncio.wait_for(self._synced.wait(), max(5.0, cfg.lease_ttl))
        except TimeoutError:
            raise PluginError(
                f"cluster driver etcd: cannot join the cluster through etcd at "
                f"{', '.join(str(e) for e in self.endpoints)}: {self.last_error or 'no answer'}"
            ) from None
        if self._store is not None:
            self._replicator = asyncio.get_running_loop().create_task(
                self._replicate(self._store), name="etcd-session-replica"
            )
        log.info(
            "node %s joined the cluster (%d node(s)), peers at %s; each queue has a "
            "single copy, on the node that created it (reached from the others)",
            self.node_id,
            len(self.members),
            self.address,
        )

    async def _start_link(self, context: Any) -> None:
        """Serve the same-host link at ``<data_dir>/cluster-<node_id>.sock`` (an
        abstract name when that path is too long); without it, gRPC only."""
        assert self._peers is not None
        data_dir = Path(os.path.abspath(context.config.server.data_dir))
        path = str(data_dir / f"cluster-{self.node_id}.sock")
        if len(os.fsencode(path)) > LINK_PATH_MAX:
            path = f"@fluxmq-link-{secrets.token_hex(8)}"
        try:
            if not path.startswith("@"):
                data_dir.mkdir(parents=True, exist_ok=True)
            await self._peers.start_link(path)
        except OSError as exc:
            log.warning("cluster: no same-host link (%s): forwarding over gRPC only", exc)
            self._host = None

    async def stop(self) -> None:
        """Leave: revoke the lease (our keys vanish at once, peers stop forwarding),
        stop the gRPC endpoint and the embedded etcd."""
        if self._stopping:
            return
        self._stopping = True
        self.ready = False
        if self._context is not None:
            self._context.router.set_share_handler(None)
        await self._stop_replicator()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        client = self._client
        if client is not None and self._wills_pending:
            # Wills published or cleared at shutdown go before the lease: else the
            # survivors would publish them a second time.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._flush_wills(client), 2.0)
        if client is not None and self._states_pending:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    while self._states_pending:
                        cid, state = self._states_pending.popitem()
                        await self._write_state(client, cid, state)
        if client is not None:
            if self._lease_id is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.revoke_lease(self._lease_id), 2.0)
            with contextlib.suppress(Exception):
                await client.close()
            self._client = None
        if self._peers is not None:
            await self._peers.stop()
        if self._supervisor is not None:
            await self._supervisor.stop()

    # --- the session with etcd ----------------------------------------------------------

    async def _run(self) -> None:
        pause = RETRY_MIN
        while not self._stopping:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.ready = False
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("etcd session ended (%s); resyncing in %.1fs", self.last_error, pause)
                await self._reset_client()
                # A claim waiting for etcd (see :meth:`_claim`) cuts the pause short,
                # but never below RETRY_MIN: clients connecting during an outage do
                # not make the attempts any more frequent than that.
                self._retry_now.clear()
                await asyncio.sleep(RETRY_MIN)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._retry_now.wait(), pause - RETRY_MIN)
                pause = min(RETRY_MAX, pause * 2)
                continue
            pause = RETRY_MIN

    async def _reset_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 2.0)
        # Next endpoint on the next attempt: a dead member is not retried forever.
        self._endpoint_i = (self._endpoint_i + 1) % len(self.endpoints)

    async def _session(self) -> None:
        """One connected stretch: register, read everything, follow the watch. Any
        failure raises; :meth:`_run` starts over with a full resync."""
        if self._client is None:
            self._client = make_client(self.endpoints[self._endpoint_i], self.cfg)
        client = self._client
        ttl = max(2, int(round(self.cfg.lease_ttl)))
        if self._lease_id is not None:
            # Keep the lease when it survived the outage; otherwise a new one. Keys
            # re-written below move to the new lease, so the old one expiring later
            # deletes nothing.
            try:
                reply = await client.refresh_lease(self._lease_id)
                alive = reply is not None and reply.TTL > 0
            except Exception:
                alive = False
            if not alive:
                log.warning("lease of node %s lost; registering again", self.node_id)
                self._lease_id = None
                self._lose_all_sessions("lease lost")
        if self._lease_id is None:
            lease = await client.lease(ttl)
            self._lease_id = lease.id
        await self._register(client)
        snapshot = await client.get_prefix(self.prefix.encode())
        self._rebuild(snapshot)
        self.resyncs += 1
        watch = await client.watch_prefix(
            self.prefix.encode(), start_revision=snapshot.header.revision + 1
        )
        self.ready = True
        self.last_error = ""
        self._synced.set()
        if self._retained_pending:
            self._wake.set()  # made while etcd was away
        tasks = [
            asyncio.ensure_future(self._follow(watch)),
            asyncio.ensure_future(self._keepalive(client, ttl)),
            asyncio.ensure_future(self._writer(client)),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                t.result()  # raise the failure that ended the session
            raise ClusterError("etcd watch ended")
        finally:
            self.ready = False
            for t in tasks:
                t.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(watch.cancel(), 1.0)
            await asyncio.gather(*tasks, return_exceptions=True)

    def _record(self) -> bytes:
        sessions = 0
        if self._context is not None:
            sessions = sum(1 for s in self._context.sessions.list() if s.connected)
        return json.dumps(
            {
                "node_id": self.node_id,
                "address": self.address,
                "started": self.started,
                "sessions": sessions,
                "listeners": self._listeners,
                **(
                    {"link": self._peers.link_address, "host": self._host}
                    if self._host is not None and self._peers is not None
                    else {}
                ),
            }
        ).encode()

    async def _register(self, client: aetcd.Client) -> None:
        """Our node record and every local filter, under the current lease; keys of
        ours that no longer match the local set (from before a restart) go."""
        self._pending.clear()
        await client.put(
            self._nodes_prefix + self.node_id.encode(), self._record(), lease=self._lease_id
        )
        if not self._wills_cleared:
            # Left by an earlier run of this node id that nobody published (it came
            # back before its lease expired): its durable store, if any, has them.
            await client.delete_prefix(self._own_wills)
            self._wills_cleared = True
            if self._wills_pending:
                self._wake.set()
        if self._cq is not None:
            for info in self._cq.manager.list():
                self._queues_pending.setdefault(info.name, info.type)
            if self._queues_pending:
                self._wake.set()
        held = set(self._local)
        existing = await client.get_prefix(self._own_subs, keys_only=True)
        for kv in existing:
            key = bytes(kv.key)
            if key[len(self._own_subs) :].decode() not in held:
                await client.delete(key)
        for f in held:
            await client.put(self._own_subs + f.encode(), self._value(f), lease=self._lease_id)

    def _value(self, topic_filter: str) -> bytes:
        """A subs key's value: empty for a plain filter, the local member count of a
        ``$share/`` filter (its weight in the group's cluster-wide round robin)."""
        count = self._members.get(topic_filter)
        return b"" if count is None else str(count).encode()

    async def _keepalive(self, client: aetcd.Client, ttl: int) -> None:
        last = self._record()
        while True:
            await asyncio.sleep(max(0.5, ttl / 3))
            assert self._lease_id is not None
            reply = await client.refresh_lease(self._lease_id)
            if reply is None or reply.TTL <= 0:
                self._lease_id = None
                self._lose_all_sessions("lease expired")
                raise ClusterError("lease expired (etcd unreachable for longer than lease_ttl?)")
            record = self._record()
            if record != last:  # session count or listeners changed
                await client.put(
                    self._nodes_prefix + self.node_id.encode(), record, lease=self._lease_id
                )
                last = record

    async def _writer(self, client: aetcd.Client) -> None:
        """Write filter changes in the order they settle; a failure ends the session
        (the next one re-writes the whole local set, so nothing is lost). Retained
        changes made here follow (kept until written, across sessions)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._retained_pending:
                topic, message = next(iter(self._retained_pending.items()))
                await self._write_retained(client, topic, message)
                if self._retained_pending.get(topic) is message:
                    del self._retained_pending[topic]
            await self._flush_wills(client)
            while self._queues_pending:
                name, qtype = next(iter(self._queues_pending.items()))
                await self._write_queue(client, name, qtype)
                if self._queues_pending.get(name) == qtype:
                    del self._queues_pending[name]
            while self._states_pending:
                cid, state = next(iter(self._states_pending.items()))
                await self._write_state(client, cid, state)
                if self._states_pending.get(cid) is state:
                    del self._states_pending[cid]
            while self._pending:
                f, value = next(iter(self._pending.items()))
                key = self._own_subs + f.encode()
                if value is not None:
                    await client.put(key, value, lease=self._lease_id)
                else:
                    await client.delete(key)
                if self._pending.get(f) is value:
                    del self._pending[f]

    # --- the cluster's state, from etcd -------------------------------------------------

    def _rebuild(self, snapshot: Any) -> None:
        members: dict[str, dict[str, Any]] = {}
        subs: dict[str, dict[str, int]] = {}
        owners: dict[str, tuple[str, int]] = {}
        owners_q: dict[str, tuple[str, str]] = {}
        for kv in snapshot:
            key = bytes(kv.key)
            if key.startswith(self._sessions_prefix):
                owners[key[len(self._sessions_prefix) :].decode()] = (
                    bytes(kv.value).decode(),
                    kv.mod_revision,
                )
            elif key.startswith(self._retained_prefix):
                self._apply_retained(
                    key[len(self._retained_prefix) :].decode(), bytes(kv.value), resync=True
                )
            elif key.startswith(self._queues_prefix):
                owners_q[key[len(self._queues_prefix) :].decode()] = _queue_record(bytes(kv.value))
            else:
                self._apply_kv(key, bytes(kv.value), members, subs)
        for client_id, epoch in list(self._owned.items()):
            if owners.get(client_id) != (self.node_id, epoch):
                self._lose_session(client_id, epoch, "changed while etcd was away")
        orphans = {
            bytes(kv.key)[len(self._wills_prefix) :].decode().partition("/")[0]
            for kv in snapshot
            if bytes(kv.key).startswith(self._wills_prefix)
        }
        old = set(self.members)
        self.members = members
        self._forget_routes()
        self.queue_owners = owners_q
        for node in orphans - set(members) - {self.node_id}:
            asyncio.get_running_loop().create_task(self._publish_wills_of(node))
        # Ours come from the router, not etcd.
        subs[self.node_id] = {f: self._members.get(f, 1) for f in self._local}
        for node in set(self.index.node_ids) | set(subs):
            self.index.set_node(node, subs.get(node, {}))
        for node in old - set(members):
            self._peer(node, None)
            if self._cq is not None:
                self._cq.node_left(node)
        for node, record in members.items():
            self._peer(node, record)

    def _apply_kv(
        self,
        key: bytes,
        value: bytes,
        members: dict[str, dict[str, Any]],
        subs: dict[str, dict[str, int]],
    ) -> None:
        if key.startswith(self._nodes_prefix):
            node = key[len(self._nodes_prefix) :].decode()
            with contextlib.suppress(ValueError):
                members[node] = json.loads(value)
        elif key.startswith(self._subs_prefix):
            node, _, f = key[len(self._subs_prefix) :].decode().partition("/")
            if node != self.node_id and f:
                subs.setdefault(node, {})[f] = _weight(value)

    async def _follow(self, watch: Any) -> None:
        async for event in watch:
            key = bytes(event.kv.key)
            put = event.kind == "PUT"
            if key.startswith(self._nodes_prefix):
                node = key[len(self._nodes_prefix) :].decode()
                if put:
                    try:
                        record = json.loads(bytes(event.kv.value))
                    except ValueError:
                        continue
                    if node not in self.members:
                        self._forget_routes()
                    self.members[node] = record
                    self._peer(node, record)
                else:
                    self.members.pop(node, None)
                    self._forget_routes()
                    if node != self.node_id:
                        self.index.drop_node(node)
                        asyncio.get_running_loop().create_task(self._publish_wills_of(node))
                        if self._cq is not None:
                            self._cq.node_left(node)
                    self._peer(node, None)
            elif key.startswith(self._queues_prefix):
                name = key[len(self._queues_prefix) :].decode()
                if put:
                    self.queue_owners[name] = _queue_record(bytes(event.kv.value))
                else:
                    self.queue_owners.pop(name, None)
            elif key.startswith(self._retained_prefix):
                self._apply_retained(
                    key[len(self._retained_prefix) :].decode(),
                    bytes(event.kv.value) if put else None,
                )
            elif key.startswith(self._sessions_prefix):
                client_id = key[len(self._sessions_prefix) :].decode()
                epoch = self._owned.get(client_id)
                if epoch is not None and (
                    not put or bytes(event.kv.value).decode() != self.node_id
                ):
                    self._lose_session(client_id, epoch, "taken over" if put else "released")
            elif key.startswith(self._subs_prefix):
                node, _, f = key[len(self._subs_prefix) :].decode().partition("/")
                if node == self.node_id or not f:
                    continue
                if put:
                    self.index.add(node, f, _weight(bytes(event.kv.value)))
                else:
                    self.index.remove(node, f)
        raise ClusterError("etcd watch stream closed")

    def _peer(self, node: str, record: dict[str, Any] | None) -> None:
        if node == self.node_id or self._peers is None:
            return
        self._replica_wake.set()  # the session replica may change with membership
        if record is None:
            self._peers.set_peer(node, None)
            return
        link = record.get("link") if self._host and record.get("host") == self._host else None
        self._peers.set_peer(
            node, record.get("address") or None, link=link if isinstance(link, str) else None
        )

    # --- the interface the core calls ---------------------------------------------------

    def subscription_added(self, topic_filter: str) -> None:
        for relay in self._relays.values():
            relay.held.discard(topic_filter)  # a local subscriber holds it now
        self._local.add(topic_filter)
        self.index.add(self.node_id, topic_filter, self._members.get(topic_filter, 1))
        self._pending[topic_filter] = self._value(topic_filter)
        self._wake.set()

    def subscription_removed(self, topic_filter: str) -> None:
        self._local.discard(topic_filter)
        self._members.pop(topic_filter, None)
        self.index.remove(self.node_id, topic_filter)
        self._pending[topic_filter] = None
        self._wake.set()

    def shared_members(self, topic_filter: str, count: int) -> None:
        if self._members.get(topic_filter) == count:
            return
        self._members[topic_filter] = count
        if topic_filter in self._local:
            self.index.add(self.node_id, topic_filter, count)
            self._pending[topic_filter] = self._value(topic_filter)
            self._wake.set()

    def forward(self, message: Message) -> int:
        """Plain matches: one copy to every other node holding a matching filter (a
        retained message: to every node). Share groups with no member here: one
        node per group, in turn (groups with members here were served by
        :meth:`_serve_groups` during the local publish)."""
        peers = self._peers
        if peers is None:
            return 0
        topic = message.topic
        if message.retain:
            # Every node learns it through etcd; only subscribers need it now.
            self._retained_pending[topic] = message if message.payload else None
            self._wake.set()
        index = self.index
        if index.generation != self._routes_gen:
            self._routes.clear()
            self._routes_gen = index.generation
        route = self._routes.get(topic)
        if route is None:
            route = self._route(topic)
        relays = self._relays
        if route is _NOWHERE and not relays:
            return 0  # nothing beyond this node: a publish pays this much
        nodes, shares = route
        for node in nodes:
            peers.forward(node, message)
        sent = len(nodes)
        if relays:
            sent += self._relay(message, index.match(topic), local=True)
        for key, holders in shares:
            sent += self._share_to(key, holders, None, message)
        return sent

    def _forget_routes(self) -> None:
        """The membership changed: work every topic's route out again."""
        self._routes_gen = -1

    def _route(self, topic: str) -> _Route:
        """Work out (and cache) where a publish to ``topic`` goes beyond this node:
        the live nodes with a matching plain filter, and the matching share groups
        with no member here (groups with one here are served during the local
        publish); the same for every publish until the index or the membership
        changes."""
        me = self.node_id
        members = self.members
        index = self.index
        nodes = tuple(n for n in index.match(topic) if n != me and n in members)
        shares = tuple(
            (key, holders)
            for key, holders in index.match_shared(topic)
            if all(node != me for node, _n in holders)
        )
        route = (nodes, shares) if nodes or shares else _NOWHERE
        routes = self._routes
        if len(routes) >= ROUTES_MAX:
            del routes[next(iter(routes))]
        routes[topic] = route
        return route

    def _serve_groups(self, message: Message, groups: Any) -> int:
        """The router's share handler: for each matched local group, pick the node
        whose turn it is among every node holding the group; deliver here only if it
        is this one. A message from a peer was already decided at its origin."""
        if self._from_peer:
            return 0
        holders = dict(self.index.match_shared(message.topic))
        me = ((self.node_id, 1),)
        delivered = 0
        for group in groups:
            key = f"$share/{group.name}/{group.topic_filter}"
            delivered += self._share_to(key, holders.get(key, me), group, message)
        return delivered

    def _share_to(
        self, key: str, holders: tuple[tuple[str, int], ...], group: Any, message: Message
    ) -> int:
        """Weighted round robin over the live nodes holding share group ``key``: each
        node gets as many turns in a cycle as it has members (every node walks them
        in the same sorted order, each publisher with its own turn counter); the
        chosen node then picks one of its members in turn. Over a cycle every member
        of the group, wherever it is, gets one message."""
        me = self.node_id
        members = self.members
        alive = [(n, w) for n, w in holders if n == me or n in members]
        if not alive:
            return 0
        turn = self._turns.get(key, 0)
        self._turns[key] = turn + 1
        k = turn % sum(w for _n, w in alive)
        chosen = alive[-1][0]
        for node, weight in alive:
            if k < weight:
                chosen = node
                break
            k -= weight
        if chosen == me:
            if group is None:
                return 0
            return int(self._context.router.deliver_group(group, message))
        assert self._peers is not None
        return 1 if self._peers.forward(chosen, message, key) else 0

    def _on_peer_messages(self, from_node: str, messages: list[Message]) -> None:
        """Messages forwarded by ``from_node``: delivered here, never re-forwarded,
        and not to share groups (the origin picked a node for each of those)."""
        context = self._context
        if context is None:
            return
        publish = context.router.publish
        self._from_peer = True
        try:
            if not self._relays:
                for message in messages:
                    publish(message)
                return
            for message in messages:
                publish(message)
                if self._relays:
                    self._relay(message, frozenset(), local=False)
        finally:
            self._from_peer = False

    def _on_targeted(self, from_node: str, entries: list[tuple[str, Message]]) -> None:
        """Share-group deliveries picked for this node by ``from_node``, and queue
        deliveries its queues made to consumers here."""
        router = self._context.router if self._context is not None else None
        if router is None:
            return
        for key, message in entries:
            if key.startswith(QUEUE_TARGET):
                if self._cq is not None:
                    self._cq.delivered(from_node, key[len(QUEUE_TARGET) :], message)
                continue
            if key.startswith(SESSION_TARGET):
                self._deliver_relayed(key[len(SESSION_TARGET) :], message, 0)
                continue
            shared = parse_shared(key) if key.startswith("$share/") else None
            group = router.share_group(shared[1], shared[0]) if shared else None
            if group is None or not router.deliver_group(group, message):
                # The last member left after the origin picked us: nobody to take it.
                self.share_dropped += 1

    def nodes(self) -> list[NodeInfo]:
        out = []
        for node, record in sorted(self.members.items()):
            extra = {"listeners": record.get("listeners") or {}}
            out.append(
                NodeInfo(
                    node,
                    address=str(record.get("address", "")),
                    alive=True,
                    local=node == self.node_id,
                    started=record.get("started"),
                    sessions=int(record.get("sessions") or 0),
                    extra=extra,
                )
            )
        if self.node_id not in self.members:
            out.append(NodeInfo(self.node_id, self.address, alive=self.ready, local=True))
        return out

    def status(self) -> dict[str, Any]:
        peers = self._peers
        stats = getattr(peers, "stats", None) if peers is not None else None
        if callable(stats):
            stats = stats()
        return {
            "driver": self.name,
            "node_id": self.node_id,
            "ready": self.ready,
            "etcd": {
                "endpoint": str(self.endpoints[self._endpoint_i]),
                "embedded": self.cfg.etcd_embedded,
                "lease_ttl": self.cfg.lease_ttl,
                "resyncs": self.resyncs,
                "last_error": self.last_error,
            },
            "subscriptions": {
                "local_filters": len(self._local),
                "share_dropped": self.share_dropped,
            },
            "shared": self.index.shared_groups(),
            "retained": {
                "pending": len(self._retained_pending),
                "held_large": len(self._retained_held),
                "fetch_failed": self.retained_fetch_failed,
            },
            "peers": _plain(stats),
            "nodes": [n.to_dict() for n in self.nodes()],
            "sessions_owned": len(self._owned),
            "takeovers": {
                "in": self.takeovers_in,
                "out": self.takeovers_out,
                "relaying": len(self._relays),
                "relayed": self.relayed,
                "relay_dropped": self.relay_dropped,
            },
            "wills_published": self.wills_published,
            "sessions_resumed_from_etcd": self.sessions_resumed_from_etcd,
            "session_replication": {
                "replica": self.replica_target,
                "sessions_copied": len(self._store.shadow) if self._store is not None else 0,
                "copies_held": len(self._replicas),
                "written": self._store.written if self._store is not None else 0,
                "replicated": self._store.done if self._store is not None else 0,
                "unreplicated_syncs": (
                    self._store.unreplicated_syncs if self._store is not None else 0
                ),
                "full_syncs": self.replication_full_syncs,
                "errors": self.replication_errors,
                "last_error": self.replication_last_error,
                "resumed": self.sessions_resumed_from_replica,
            },
            # The queues this node owns; each lives on its owner only (a single copy).
            "queues_single_copy": self._local_queues(),
            "queues": self._cq.status() if self._cq is not None else {},
            "queue_owners": {
                name: owner for name, (owner, _t) in sorted(self.queue_owners.items())
            },
            "not_replicated": [
                "queues (each lives on its owner node only: see queue_owners)",
            ],
        }

    def _local_queues(self) -> list[str]:
        manager = self._context.queues if self._context is not None else None
        if manager is None:
            return []
        return (
            sorted(info.name for info in manager.manager.list())
            if isinstance(manager, ClusterQueues)
            else sorted(info.name for info in manager.list())
        )

    def announce(self, listeners: dict[str, tuple[str, int]]) -> None:
        """Publish this node's protocol listeners in its record (next keepalive)."""
        self._listeners = {k: f"{h}:{p}" for k, (h, p) in sorted(listeners.items())}

    # --- retained messages ---------------------------------------------------------------

    async def _write_retained(
        self, client: aetcd.Client, topic: str, message: Message | None
    ) -> None:
        """``retained/<topic>``: ``M<node>\0<protobuf Message>`` when the payload is
        small, ``R<node>\0<timestamp>`` (fetch it from <node>) when it is not, and a
        tombstone ``X<node>\0`` when cleared, so a node that was away when it was
        cleared drops its copy on its next resync. No lease: a retained message
        outlives the node that took it (a large one stays fetchable only while that
        node runs)."""
        key = self._retained_prefix + topic.encode()
        head = self.node_id.encode() + b"\0"
        if message is None:
            self._retained_held.pop(topic, None)
            await client.put(key, b"X" + head)
            return
        if len(message.payload) <= self.cfg.retained_inline_max:
            self._retained_held.pop(topic, None)
            value = b"M" + head + message_to_proto(message).SerializeToString()
        else:
            self._retained_held[topic] = message
            value = b"R" + head + repr(message.timestamp).encode()
        await client.put(key, value)

    def _apply_retained(self, topic: str, value: bytes | None, *, resync: bool = False) -> None:
        """A retained change seen in etcd: store it in the local router (and through
        it the local store) unless it came from here or is already held; a
        tombstone clears the local copy. Local retained messages that etcd does not
        mention at all are kept (a node never deletes what it cannot prove was
        cleared)."""
        context = self._context
        if context is None or topic in self._retained_pending:
            return
        router = context.router
        if value is None:
            if router.get_retained(topic) is not None:
                router.clear_retained(topic)
            return
        kind, rest = value[:1], value[1:]
        node, _, body = rest.partition(b"\0")
        if node.decode() == self.node_id and not resync:
            return
        if kind == b"X":
            if router.get_retained(topic) is not None:
                router.clear_retained(topic)
        elif kind == b"M":
            try:
                message = message_from_proto(pb.Message.FromString(body))
            except Exception:
                log.warning("retained message for %r in etcd is unreadable; skipped", topic)
                return
            held = router.get_retained(topic)
            if held is None or (held.timestamp, held.payload) != (
                message.timestamp,
                message.payload,
            ):
                router.set_retained(message)
        elif kind == b"R":
            held = router.get_retained(topic)
            if held is not None and repr(held.timestamp).encode() == body:
                return
            asyncio.get_running_loop().create_task(self._fetch_retained(node.decode(), topic))

    async def _fetch_retained(self, node: str, topic: str) -> None:
        peers = self._peers
        if peers is None or self._context is None:
            return
        try:
            reply = await peers.call(node, "FetchRetained", pb.FetchRetainedRequest(topic=topic))
        except Exception as exc:
            self.retained_fetch_failed += 1
            log.warning("retained message %r: cannot fetch it from node %s: %s", topic, node, exc)
            return
        if reply.found:
            self._context.router.set_retained(message_from_proto(reply.message))

    async def _serve_retained(self, from_node: str, request: Any) -> Any:
        message = self._retained_held.get(request.topic)
        if message is None and self._context is not None:
            message = self._context.router.get_retained(request.topic)
        if message is None:
            return pb.FetchRetainedResponse(found=False)
        return pb.FetchRetainedResponse(found=True, message=message_to_proto(message))

    # --- session ownership -------------------------------------------------------------

    async def acquire_session(self, client_id: str) -> SessionClaim:
        """Make this node the owner of ``client_id`` by compare-and-swap on
        ``sessions/<client_id>`` (value: the owner's node id, on our lease).

        The key is written only if it is absent, or unchanged since we read it (so of
        two nodes racing for one client exactly one wins; the other gets
        :class:`ClusterError`). The claim's ``epoch`` is the etcd revision of that
        write: every later claim by anyone has a higher one, which makes it a fencing
        token. Refused while etcd is unreachable: a node that cannot prove ownership
        must not take a session over. The previous owner learns from its watch
        (``watch_sessions`` callbacks) and must stop serving the session.

        :meth:`take_session` also moves the session's state from the old owner.
        """
        claim, _previous = await self._claim(client_id)
        return claim

    async def _claim(self, client_id: str) -> tuple[SessionClaim, str | None]:
        """:meth:`acquire_session`, also naming the node that owned the key before
        (``""``: nobody; None: this node, by a claim it still holds; this node's id:
        an earlier claim of this node id, lost or made before a restart)."""
        if not self.ready and not self._stopping:
            # The etcd session is being re-established (etcd was away, or this
            # node's watch or keepalive failed): wait for it up to etcd_timeout
            # rather than refuse a client a moment before the node could serve it.
            self._retry_now.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), self.cfg.etcd_timeout)
        client = self._client
        if not self.ready or client is None or self._lease_id is None:
            raise ClusterError(
                f"cannot claim session {client_id!r}: etcd is unreachable ({self.last_error or 'not connected'})"
            )
        key = self._sessions_prefix + client_id.encode()
        tx = client.transactions
        for attempt in range(CLAIM_ATTEMPTS):
            current = await client.get(key)
            if current is None:
                compare = [tx.create(key) == 0]
            elif bytes(current.value).decode() == self.node_id and client_id in self._owned:
                return SessionClaim(client_id, self.node_id, self._owned[client_id]), None
            else:
                compare = [tx.mod(key) == current.mod_revision]
            # "": nobody owned it (never, released, or its node's lease expired).
            previous: str | None = "" if current is None else bytes(current.value).decode()
            ok, responses = await client.transaction(
                compare=compare,
                success=[tx.put(key, self.node_id.encode(), lease=self._lease_id)],
                failure=[],
            )
            if ok:
                break
            # The key changed between the read and the swap. Released meanwhile (the
            # old owner's client disconnected just as it reconnected here): nobody
            # owns it now, so claim it again. Another node's claim: that one won.
            if attempt + 1 == CLAIM_ATTEMPTS or await client.get(key) is not None:
                raise ClusterError(
                    f"session {client_id!r} was claimed by another node at the same time; not taken"
                )
        epoch = int(responses[0].response_put.header.revision)
        self._owned[client_id] = epoch
        # previous == our id: ours from an earlier claim (lost, then taken back, or
        # made by an earlier run of this node id).
        return SessionClaim(client_id, self.node_id, epoch), previous

    async def take_session(
        self, client_id: str, protocol: str
    ) -> tuple[SessionClaim, SessionSnapshot | None]:
        """Claim ``client_id`` by compare-and-swap, then, when a live node owned it,
        ask that node for the session's state (``TakeoverSession`` with our epoch):
        it closes the client's connection there and hands the state over. A dead
        owner's key is already gone with its lease (nothing to fetch). An owner that
        is up but does not answer leaves the claim ours and the state behind it
        (logged; the client gets a fresh session rather than no connection)."""
        claim, previous = await self._claim(client_id)
        if previous is None:
            return claim, None
        if previous == self.node_id:
            # Claimed by an earlier run of this node id (killed and restarted before
            # its lease expired): what it held may be in a replica.
            return claim, await self._replica_state(client_id, protocol, claim.epoch)
        if previous == "" or previous not in self.members or self._peers is None:
            return claim, await self._gone_owner_state(client_id, protocol, claim.epoch)
        request = pb.TakeoverRequest(client_id=client_id, to_node=self.node_id, epoch=claim.epoch)
        try:
            reply = await self._peers.call(previous, "TakeoverSession", request)
        except PeerError as exc:
            log.warning(
                "session %r: node %s did not hand its state over (%s); resuming its copy",
                client_id,
                previous,
                exc,
            )
            return claim, await self._gone_owner_state(client_id, protocol, claim.epoch)
        if not reply.found:
            return claim, None
        try:
            snapshot = session_from_proto(reply.session)
        except CodecError as exc:
            log.warning("session %r from node %s is unreadable: %s", client_id, previous, exc)
            return claim, None
        if snapshot.protocol and snapshot.protocol != protocol:
            log.warning(
                "session %r on node %s is a %s session, not %s; not moved",
                client_id,
                previous,
                snapshot.protocol,
                protocol,
            )
            return claim, None
        self.takeovers_in += 1
        return claim, snapshot

    def session_exporter(self, protocol: str, exporter: SessionExporter | None) -> None:
        """Serve ``TakeoverSession`` for ``protocol``'s sessions with ``exporter``."""
        if exporter is None:
            self._exporters.pop(protocol, None)
        else:
            self._exporters[protocol] = exporter

    async def _serve_takeover(self, from_node: str, request: Any) -> Any:
        """Another node won ``sessions/<client_id>``: check its epoch is newer than
        ours (a stale request is refused), stop owning the session here, and hand
        its state over. Each exporter is asked; the one that holds the session
        closes the client's connection (DISCONNECT 0x8E) and forgets it."""
        client_id = request.client_id
        ours = self._owned.get(client_id)
        if ours is not None and request.epoch <= ours:
            raise HandlerError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"epoch {request.epoch} of session {client_id!r} is not newer than {ours}",
            )
        if ours is not None:
            self._lose_session(client_id, ours, f"taken over by node {from_node}")
        for protocol, exporter in list(self._exporters.items()):
            snapshot = exporter(client_id, int(request.epoch))
            if snapshot is not None:
                snapshot.protocol = snapshot.protocol or protocol
                snapshot.epoch = int(request.epoch)
                self.takeovers_out += 1
                self._start_relay(client_id, from_node, list(snapshot.subscriptions))
                return pb.TakeoverResponse(found=True, session=session_to_proto(snapshot))
        return pb.TakeoverResponse(found=False)

    # --- the handover window of a takeover ---------------------------------------------------

    def _start_relay(self, client_id: str, node: str, filters: list[str]) -> None:
        """The session moved to ``node``: until every node routes its filters there,
        what still reaches this node for it is relayed to ``node`` (targeted to the
        session), and this node keeps its filters in etcd meanwhile, so no node has
        a moment in which the session's filters are nowhere. Shared and queue
        subscriptions are not relayed (the group or queue serves them)."""
        filters = [f for f in filters if not f.startswith(("$share/", "$queue/", "$dlq/"))]
        if not filters or self._peers is None:
            return
        held = {f for f in filters if f not in self._local}
        for f in held:
            self._local.add(f)
            self.index.add(self.node_id, f)
            self._pending[f] = b""
        if held:
            self._wake.set()
        relay = _Relay(client_id, node, filters, held)
        self._relays[client_id] = relay
        asyncio.get_running_loop().create_task(self._end_relay(relay))

    async def _end_relay(self, relay: _Relay) -> None:
        """Once the new node's filters are in our view (etcd delivers events in
        order, so every node sees them before our withdrawal), withdraw ours and stop
        relaying local publishes (we forward them directly now); relay what peers
        still forward for ``RELAY_GRACE`` more seconds, then stop."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(5.0, 2 * self.cfg.lease_ttl)
        try:
            while (
                loop.time() < deadline
                and relay.node in self.members
                and not set(relay.filters) <= self.index.filters_of(relay.node)
            ):
                await asyncio.sleep(0.02)
            relay.local = False
            for f in relay.held:
                if f in self._local:
                    self._local.discard(f)
                    self.index.remove(self.node_id, f)
                    self._pending[f] = None
            relay.held = set()
            self._wake.set()
            await asyncio.sleep(RELAY_GRACE)
        finally:
            if self._relays.get(relay.client_id) is relay:
                del self._relays[relay.client_id]

    def _relay(self, message: Message, direct: Any, *, local: bool) -> int:
        """Relay ``message`` to the new node of each moved session it matches (a
        local publish only while that node was not forwarded it directly)."""
        peers = self._peers
        if peers is None:
            return 0
        sent = 0
        topic = message.topic
        for relay in list(self._relays.values()):
            if local and (not relay.local or relay.node in direct):
                continue
            if relay.matches(topic) and peers.forward(
                relay.node, message, SESSION_TARGET + relay.client_id
            ):
                self.relayed += 1
                sent += 1
        return sent

    def _deliver_relayed(self, client_id: str, message: Message, attempt: int) -> None:
        """A message the old owner of ``client_id`` relayed: delivered to that
        session only, as the router would (its granted QoS and subscription ids).
        The session may not be imported yet (the relay can overtake the takeover's
        answer): retried for a second."""
        context = self._context
        if context is None:
            return
        matched = [
            (sub, d)
            for sub, d in context.router.match(message.topic)
            if sub.client_id == client_id and d.shared_group is None
        ]
        if not matched:
            if attempt < 50:
                asyncio.get_running_loop().call_later(
                    0.02, self._deliver_relayed, client_id, message, attempt + 1
                )
            else:
                self.relay_dropped += 1
            return
        for sub, d in matched:
            try:
                sub.deliver(message, Delivery(d.qos, False, d.subscription_ids))
            except Exception:
                log.exception("relayed delivery to %r failed", client_id)

    # --- session state kept in etcd (for node failures) ------------------------------------

    def session_saved(self, client_id: str, snapshot: SessionSnapshot | None) -> None:
        """Keep a persistent session's record and subscriptions in
        ``sessionstate/<client_id>`` (no lease: it must outlive this node), written
        in the background and only while this node owns the session."""
        self._states_pending[client_id] = snapshot
        self._wake.set()

    async def _write_state(
        self, client: aetcd.Client, client_id: str, state: SessionSnapshot | None
    ) -> None:
        """Fenced: written (or deleted) only while ``sessions/<client_id>`` names
        this node, so a stale owner cannot overwrite the new owner's state. A delete
        also goes through when nobody owns the session (released just before)."""
        owner = self._sessions_prefix + client_id.encode()
        key = self._state_prefix + client_id.encode()
        tx = client.transactions
        if state is None:
            ok, _ = await client.transaction(
                compare=[tx.value(owner) == self.node_id.encode()],
                success=[tx.delete(key)],
                failure=[],
            )
            if not ok:
                await client.transaction(
                    compare=[tx.version(owner) == 0], success=[tx.delete(key)], failure=[]
                )
            return
        value = self.node_id.encode() + b"\0" + session_to_proto(state).SerializeToString()
        await client.transaction(
            compare=[tx.value(owner) == self.node_id.encode()],
            success=[tx.put(key, value)],
            failure=[],
        )

    async def _gone_owner_state(
        self, client_id: str, protocol: str, epoch: int
    ) -> SessionSnapshot | None:
        """The state of a session whose owner is gone: the replica's copy (whole),
        else the record and subscriptions kept in etcd."""
        try:
            snapshot = await self._replica_state(client_id, protocol, epoch)
        except Exception as exc:  # never fail a CONNECT on the way to the fallback
            log.warning("session %r: asking for its replica failed: %s", client_id, exc)
            snapshot = None
        if snapshot is not None:
            return snapshot
        return await self._stored_state(client_id, protocol)

    async def _stored_state(self, client_id: str, protocol: str) -> SessionSnapshot | None:
        """The state a dead (or departed) owner left in etcd, unless it is this
        node's own (the local copy is more complete) or expired."""
        client = self._client
        if client is None:
            return None
        try:
            found = await client.get(self._state_prefix + client_id.encode())
        except Exception as exc:
            log.warning("session %r: cannot read its state from etcd: %s", client_id, exc)
            return None
        if found is None:
            return None
        writer, _, body = bytes(found.value).partition(b"\0")
        if writer.decode() == self.node_id:
            return None
        try:
            snapshot = session_from_proto(pb.SessionState.FromString(body))
        except Exception as exc:
            log.warning("session %r: its state in etcd is unreadable: %s", client_id, exc)
            return None
        if not _resumable(snapshot, protocol):
            return None
        self.sessions_resumed_from_etcd += 1
        log.info(
            "session %r resumed from the state node %s left in etcd", client_id, writer.decode()
        )
        return snapshot

    # --- session replicas (for node failures) ---------------------------------------------

    def _replica_target(self) -> str | None:
        """This node's session replica: the next live node after it in the ring of
        node ids (None: no other node)."""
        others = [n for n, r in self.members.items() if n != self.node_id and r.get("address")]
        if not others:
            return None
        ring = sorted([*others, self.node_id])
        return ring[(ring.index(self.node_id) + 1) % len(ring)]

    async def _replicate(self, store: ReplicatedStore) -> None:
        """Send the store's session ops to the replica, one request in flight, in
        order. A new replica (or one that failed) first gets a full copy; a failed
        request releases the syncs waiting for it (the acknowledgements go out
        unreplicated, counted) rather than holding them."""
        store.active = True
        version = self.run
        current: str | None = None
        reset = True
        pause = RETRY_MIN
        try:
            while True:
                target = self._replica_target()
                if target != current:
                    current, reset = target, True
                    self.replica_target = target
                    if target is not None:
                        log.info("sessions of node %s are copied to node %s", self.node_id, target)
                peers = self._peers
                if current is None or peers is None:
                    store.take()
                    store.reached(store.written, replicated=False)
                    reset = True
                    await self._wait_replica_wake(store, 1.0)
                    continue
                if reset:
                    ops, mark = store.take_all()
                else:
                    ops, mark = store.take()
                    if not ops:
                        await self._wait_replica_wake(store, 1.0)
                        continue
                version += 1
                request = pb.ReplicateRequest(reset=reset, version=version, ops=ops, run=self.run)
                try:
                    await peers.call(current, "ReplicateSessions", request)
                except PeerError as exc:
                    self.replication_errors += 1
                    self.replication_last_error = str(exc)
                    store.reached(mark, replicated=False)
                    reset = True
                    await self._wait_replica_wake(store, pause, on_writes=False)
                    pause = min(RETRY_MAX, pause * 2)
                    continue
                if reset:
                    self.replication_full_syncs += 1
                reset = False
                pause = RETRY_MIN
                store.reached(mark)
        finally:
            store.release_all()

    async def _wait_replica_wake(
        self, store: ReplicatedStore, timeout: float, *, on_writes: bool = True
    ) -> None:
        self._replica_wake.clear()
        waits = [asyncio.ensure_future(self._replica_wake.wait())]
        if on_writes:
            store.wake.clear()
            if store.pending:
                store.wake.set()
            waits.append(asyncio.ensure_future(store.wake.wait()))
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def _stop_replicator(self) -> None:
        """Give the last ops (written by the protocols' shutdown) a moment to reach
        the replica, then stop sending."""
        task, self._replicator = self._replicator, None
        store = self._store
        if task is None or store is None:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.cfg.peer_timeout):
                while store.done < store.written and not task.done():
                    store.wake.set()
                    await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    async def _serve_replicate(self, from_node: str, request: Any) -> Any:
        """Ops from ``from_node``, whose session replica this node is."""
        if request.reset:
            # Copies of the caller's earlier run stay: they may be all that is left
            # of sessions it held when it died (until read, replaced or expired).
            self._replicas.drop_origin(from_node, request.run)
        applied = 0
        for op in request.ops:
            if self._replicas.apply(from_node, op, request.version, request.run):
                applied += 1
        return pb.ReplicateResponse(applied=applied)

    def _take_copy(self, client_id: str, epoch: int, caller: str) -> tuple[Any, Any] | None:
        """The copy held here of ``client_id`` as (sort key, FetchReplicaResponse);
        dropped here when ``epoch`` (the new owner's claim) is newer, unless the
        caller made it (it goes on writing it, or replaces it with a full copy)."""
        held = self._replicas.sessions.get(client_id)
        if held is None:
            return None
        if epoch and held.epoch < epoch and held.origin != caller:
            del self._replicas.sessions[client_id]
        if held.record is None:
            return None
        reply = pb.FetchReplicaResponse(
            found=True, origin=held.origin, epoch=held.epoch, version=held.version, run=held.run
        )
        reply.session.CopyFrom(session_to_proto(held.snapshot(client_id)))
        return (held.epoch, held.version), reply

    async def _serve_fetch_replica(self, from_node: str, request: Any) -> Any:
        found = self._take_copy(request.client_id, int(request.epoch), from_node)
        return pb.FetchReplicaResponse(found=False) if found is None else found[1]

    async def _replica_state(
        self, client_id: str, protocol: str, epoch: int
    ) -> SessionSnapshot | None:
        """The newest copy of ``client_id`` on any live node (this one included)
        whose owner is gone: what it had acknowledged, queue and in-flight
        exchanges included."""
        candidates: list[tuple[Any, Any]] = []
        mine = self._take_copy(client_id, epoch, self.node_id)
        if mine is not None:
            candidates.append(mine)
        peers = self._peers
        others = [n for n in self.members if n != self.node_id]
        if peers is not None and others:
            request = pb.FetchReplicaRequest(client_id=client_id, epoch=epoch)
            replies = await asyncio.gather(
                *(peers.call(n, "FetchReplica", request) for n in others),
                return_exceptions=True,
            )
            for node, reply in zip(others, replies, strict=True):
                if isinstance(reply, BaseException):
                    log.debug("session %r: no replica from node %s: %s", client_id, node, reply)
                elif reply.found:
                    candidates.append(((reply.epoch, reply.version), reply))
        # Our own copies of this run: the local state is at least as fresh.
        candidates = [
            c for c in candidates if not (c[1].origin == self.node_id and c[1].run == self.run)
        ]
        if not candidates:
            return None
        _key, best = max(candidates, key=lambda c: c[0])
        try:
            snapshot = session_from_proto(best.session)
        except CodecError as exc:
            log.warning("session %r: its replica is unreadable: %s", client_id, exc)
            return None
        if not _resumable(snapshot, protocol):
            return None
        self.sessions_resumed_from_replica += 1
        log.info(
            "session %r resumed from the copy of node %s's state (%d queued, %d in flight)",
            client_id,
            best.origin,
            len(snapshot.queued),
            len(snapshot.inflight),
        )
        return snapshot

    # --- wills -----------------------------------------------------------------------------

    def will_set(self, client_id: str, will: Message | None) -> None:
        """``wills/<node_id>/<client_id>`` holds the will of a client connected here
        (no lease: it must outlive this node). Written in the background."""
        self._wills_pending[client_id] = will
        self._wake.set()

    async def _flush_wills(self, client: aetcd.Client) -> None:
        while self._wills_pending:
            cid, will = next(iter(self._wills_pending.items()))
            key = self._own_wills + cid.encode()
            if will is not None:
                await client.put(key, message_to_proto(will).SerializeToString())
            else:
                await client.delete(key)
            if self._wills_pending.get(cid) is will:
                del self._wills_pending[cid]

    async def _publish_wills_of(self, node: str) -> None:
        """``node`` left the cluster (its lease expired, or it stopped): publish the
        wills it left in etcd. Every surviving node tries; each will is taken by a
        transaction that deletes its key only if it is unchanged, so exactly one
        node publishes it. A node that stopped cleanly published or cleared its
        wills itself."""
        client = self._client
        context = self._context
        if client is None or context is None:
            return
        prefix = self._wills_prefix + node.encode() + b"/"
        try:
            found = await client.get_prefix(prefix)
            tx = client.transactions
            for kv in found:
                key = bytes(kv.key)
                ok, _ = await client.transaction(
                    compare=[tx.mod(key) == kv.mod_revision], success=[tx.delete(key)], failure=[]
                )
                if not ok:
                    continue  # another node took it
                try:
                    message = message_from_proto(pb.Message.FromString(bytes(kv.value)))
                except Exception:
                    log.warning("will %r of node %s is unreadable; dropped", key, node)
                    continue
                message = message.copy(timestamp=time.time())
                self.wills_published += 1
                log.info("publishing the will of %r, left by node %s", message.origin_client, node)
                context.publish(message)
        except Exception as exc:
            log.warning("wills of node %s: %s (retried at the next resync)", node, exc)

    async def release_session(self, claim: SessionClaim) -> None:
        """Delete the ownership key, only if it is still this claim (same owner, same
        revision): a stale claim releases nothing."""
        client = self._client
        if self._owned.get(claim.client_id) == claim.epoch:
            del self._owned[claim.client_id]
        if client is None:
            return
        key = self._sessions_prefix + claim.client_id.encode()
        tx = client.transactions
        await client.transaction(
            compare=[tx.mod(key) == claim.epoch, tx.value(key) == self.node_id.encode()],
            success=[tx.delete(key)],
            failure=[],
        )

    def claim_valid(self, claim: SessionClaim) -> bool:
        """True while ``claim`` is this node's current ownership of the session (as
        far as the watch has told; False at once when the lease is lost)."""
        return self.ready and self._owned.get(claim.client_id) == claim.epoch

    def watch_sessions(self, callback: Callable[[str, int], None]) -> None:
        """Call ``callback(client_id, epoch)`` when a session this node owned is
        taken over, released elsewhere, or lost with the lease."""
        self._session_lost.append(callback)

    def _lose_session(self, client_id: str, epoch: int, why: str) -> None:
        if self._owned.get(client_id) != epoch:
            return
        del self._owned[client_id]
        log.info("session %r (epoch %d) no longer owned here: %s", client_id, epoch, why)
        for callback in self._session_lost:
            try:
                callback(client_id, epoch)
            except Exception:
                log.exception("session-lost callback failed for %r", client_id)

    def _lose_all_sessions(self, why: str) -> None:
        for client_id, epoch in list(self._owned.items()):
            self._lose_session(client_id, epoch, why)

    def queue_owner(self, queue: str) -> str:
        """The node holding ``queue``'s log: this one when it exists here (or
        nobody owns it yet: it would be created here), else its owner in etcd."""
        if self._cq is not None:
            owner = self._cq.owner_of(queue)
            if owner is not None:
                return owner
        return self.node_id

    def queue_created(self, name: str, qtype: str | None) -> None:
        """A queue was created here (claim it in etcd, first claim wins) or
        deleted (``None``: give the claim up). Written in the background."""
        found = self.queue_owners.get(name)
        if qtype is not None and found is not None and found[0] == self.node_id:
            return
        self._queues_pending[name] = qtype
        self._wake.set()

    async def _write_queue(self, client: aetcd.Client, name: str, qtype: str | None) -> None:
        """``queues/<name>`` = ``<owner>\\0<type>``: created only if absent (no
        lease: a queue outlives its node's restarts); deleted only if ours."""
        key = self._queues_prefix + name.encode()
        tx = client.transactions
        if qtype is None:
            found = await client.get(key)
            if found is not None and _queue_record(bytes(found.value))[0] == self.node_id:
                await client.transaction(
                    compare=[tx.mod(key) == found.mod_revision],
                    success=[tx.delete(key)],
                    failure=[],
                )
            return
        value = self.node_id.encode() + b"\0" + qtype.encode()
        ok, _ = await client.transaction(
            compare=[tx.version(key) == 0], success=[tx.put(key, value)], failure=[]
        )
        if not ok:
            found = await client.get(key)
            owner = _queue_record(bytes(found.value))[0] if found is not None else ""
            if owner and owner != self.node_id:
                log.warning(
                    "queue %r exists here and on node %s, which owns it: publishes and "
                    "consumers on other nodes go to node %s's copy",
                    name,
                    owner,
                    owner,
                )


def _queue_record(value: bytes) -> tuple[str, str]:
    """(owner node id, queue type) of a ``queues/<name>`` value."""
    node, _, qtype = value.partition(b"\0")
    return node.decode(errors="replace"), qtype.decode(errors="replace") or "classic"


def _weight(value: bytes) -> int:
    """Members behind a subs key (1 for a plain filter or an unreadable value)."""
    try:
        return max(1, int(value)) if value else 1
    except ValueError:
        return 1


def _plain(value: Any) -> Any:
    """Peer statistics as JSON-friendly values, whatever shape peers reports."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "__dict__"):
        return {k: _plain(v) for k, v in vars(value).items() if not k.startswith("_")}
    if hasattr(value, "__slots__"):
        return {k: _plain(getattr(value, k, None)) for k in value.__slots__}
    return str(value)
