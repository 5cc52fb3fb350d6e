"""Fixtures: a real etcd (Debian ``etcd-server``) on free loopback ports, and two
broker nodes in threads on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fluxmq_etcd.testing import EtcdServer, etcd_missing_reason, node

from fluxmq_core.testing.broker import BrokerThread


@pytest.fixture
def etcd() -> Iterator[EtcdServer]:
    """A fresh one-member etcd for one test; skipped, saying why, without the binary."""
    reason = etcd_missing_reason()
    if reason:
        pytest.skip(f"{reason} (Debian/Ubuntu: apt-get install etcd-server)")
    with EtcdServer() as server:
        yield server


@pytest.fixture
def pair(etcd: EtcdServer) -> Iterator[tuple[BrokerThread, BrokerThread]]:
    """Nodes ``a`` and ``b`` of the cluster on ``etcd`` (not yet waited for to see
    each other)."""
    a = node(etcd, "a")
    b = node(etcd, "b")
    try:
        yield a, b
    finally:
        b.close()
        a.close()
