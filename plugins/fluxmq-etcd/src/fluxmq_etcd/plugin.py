"""Hookimpls of the etcd cluster plugin.

The driver itself is a stevedore entry point (``fluxmq.cluster = etcd``) and the
``[cluster]`` section belongs to the core, so the only hook here is
``fluxmq_startup``: once every protocol listener is bound, the node's record in
etcd lists them, so ``fluxmq cluster status`` shows where each node serves clients.
"""

from __future__ import annotations

from typing import Any

from fluxmq_core.hookspecs import hookimpl
from fluxmq_etcd.driver import EtcdCluster


@hookimpl
def fluxmq_startup(context: Any) -> None:
    cluster = context.cluster
    if isinstance(cluster, EtcdCluster):
        cluster.announce(dict(context.bound))
