"""Fixtures: a real etcd (Debian ``etcd-server``) on free loopback ports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fluxmq_etcd.testing import EtcdServer, etcd_missing_reason


@pytest.fixture
def etcd() -> Iterator[EtcdServer]:
    """A fresh one-member etcd for one test; skipped, saying why, without the binary."""
    reason = etcd_missing_reason()
    if reason:
        pytest.skip(f"{reason} (Debian/Ubuntu: apt-get install etcd-server)")
    with EtcdServer() as server:
        yield server
