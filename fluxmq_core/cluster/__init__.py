"""Cluster drivers (group ``fluxmq.cluster``); the core ships ``none``."""

from fluxmq_core.cluster.single import SingleNodeCluster

__all__ = ["SingleNodeCluster"]
