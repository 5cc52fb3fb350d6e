"""Cluster drivers (group ``fluxmq.cluster``): the interface every driver provides
(:class:`Cluster`), the node-level subscription index distributed drivers share
(:class:`NodeIndex`) and the core's ``none`` driver (:class:`SingleNodeCluster`)."""

from fluxmq_core.cluster.base import (
    Cluster,
    ClusterError,
    NodeInfo,
    SessionClaim,
    SessionSnapshot,
)
from fluxmq_core.cluster.index import NodeIndex
from fluxmq_core.cluster.single import SingleNodeCluster

__all__ = [
    "Cluster",
    "ClusterError",
    "NodeIndex",
    "NodeInfo",
    "SessionClaim",
    "SessionSnapshot",
    "SingleNodeCluster",
]
