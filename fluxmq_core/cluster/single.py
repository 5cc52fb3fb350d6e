"""The ``none`` cluster driver: one node, owning every session and queue.

It is the default and the reference for the Cluster interface a distributed driver
(``fluxmq-etcd``) implements: ownership questions always answer "this node", and
there is nothing to forward.
"""

from __future__ import annotations

from typing import Any


class SingleNodeCluster:
    """A cluster of one."""

    name = "none"

    def __init__(self, node_id: str, options: dict[str, Any] | None = None) -> None:
        self.node_id = node_id
        self.options = options or {}
        self.ready = False

    async def start(self, context: Any) -> None:
        self.ready = True

    async def stop(self) -> None:
        self.ready = False

    def owner_of_session(self, client_id: str) -> str:
        return self.node_id

    def nodes(self) -> list[str]:
        return [self.node_id]
