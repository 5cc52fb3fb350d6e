"""The ``none`` cluster driver: one node, owning every session and queue.

It is the default and the reference implementation of
:class:`~fluxmq_core.cluster.base.Cluster`: ownership questions answer "this
node", there is nothing to forward, and ``distributed = False`` tells the core not
to wire forwarding or the subscription index at all, so a single node pays nothing
per message or per subscription for the cluster layer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fluxmq_core.cluster.base import NodeInfo, SessionClaim, SessionExporter, SessionSnapshot

if TYPE_CHECKING:
    from fluxmq_core.message import Message


class SingleNodeCluster:
    """A cluster of one."""

    name = "none"
    distributed = False

    def __init__(self, node_id: str, options: Any = None) -> None:
        self.node_id = node_id
        self.options = options
        self.ready = False
        self._context: Any = None

    async def start(self, context: Any) -> None:
        self._context = context
        self.ready = True

    async def stop(self) -> None:
        self.ready = False

    def nodes(self) -> list[NodeInfo]:
        sessions = 0
        if self._context is not None:
            sessions = len(self._context.sessions.list())
        return [NodeInfo(self.node_id, alive=True, local=True, sessions=sessions)]

    def status(self) -> dict[str, Any]:
        return {
            "driver": self.name,
            "node_id": self.node_id,
            "ready": self.ready,
            "nodes": [n.to_dict() for n in self.nodes()],
        }

    def subscription_added(self, topic_filter: str) -> None:
        """Never called (``distributed`` is False); present for the interface."""

    def subscription_removed(self, topic_filter: str) -> None:
        """Never called (``distributed`` is False); present for the interface."""

    def shared_members(self, topic_filter: str, count: int) -> None:
        """Never called (``distributed`` is False); present for the interface."""

    def forward(self, message: Message) -> int:
        return 0

    async def acquire_session(self, client_id: str) -> SessionClaim:
        return SessionClaim(client_id, self.node_id, 1)

    async def release_session(self, claim: SessionClaim) -> None:
        return None

    def claim_valid(self, claim: SessionClaim) -> bool:
        return True  # nobody else can take it

    def watch_sessions(self, callback: Callable[[str, int], None]) -> None:
        """Never calls back: a single node never loses a session to another."""

    async def take_session(
        self, client_id: str, protocol: str
    ) -> tuple[SessionClaim, SessionSnapshot | None]:
        """Never asked (``distributed`` is False); present for the interface."""
        return SessionClaim(client_id, self.node_id, 1), None

    def session_exporter(self, protocol: str, exporter: SessionExporter | None) -> None:
        """Nothing to export to: no other node exists."""

    def session_saved(self, client_id: str, snapshot: SessionSnapshot | None) -> None:
        """Never called (``distributed`` is False); present for the interface."""

    def will_set(self, client_id: str, will: Message | None) -> None:
        """Never called (``distributed`` is False); present for the interface."""

    def owner_of_session(self, client_id: str) -> str:
        return self.node_id

    def queue_owner(self, queue: str) -> str:
        return self.node_id
