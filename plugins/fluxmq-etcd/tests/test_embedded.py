"""Embedded etcd: a missing binary is a clear error naming the Debian package; the
supervisor restarts a member that died; a node with ``etcd_embedded = true`` runs
its own member and stops it on shutdown."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from fluxmq_etcd.embedded import EtcdMember, EtcdNotFoundError, EtcdSupervisor, find_etcd, free_port
from fluxmq_etcd.testing import etcd_missing_reason

from fluxmq_core.testing.broker import BrokerThread

needs_etcd = pytest.mark.skipif(
    etcd_missing_reason() is not None,
    reason=f"{etcd_missing_reason()} (Debian/Ubuntu: apt-get install etcd-server)",
)


def test_missing_binary_names_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLUXMQ_ETCD_BINARY", raising=False)
    monkeypatch.setenv("PATH", "")
    with pytest.raises(EtcdNotFoundError, match="etcd-server"):
        find_etcd()
    with pytest.raises(EtcdNotFoundError, match="apt-get install etcd-server"):
        BrokerThread(
            plugins=["etcd"],
            config={"cluster": {"driver": "etcd", "node_id": "n", "etcd_embedded": True}},
        ).start()


def test_a_bad_explicit_binary_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FLUXMQ_ETCD_BINARY", str(tmp_path / "nope"))
    with pytest.raises(EtcdNotFoundError, match="FLUXMQ_ETCD_BINARY"):
        find_etcd()


@needs_etcd
async def test_supervisor_restarts_a_member_that_died(tmp_path: Path) -> None:
    member = EtcdMember(
        "m1", tmp_path / "data", f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    )
    sup = EtcdSupervisor(member)
    await sup.start()
    try:
        first = member.proc
        assert first is not None and await asyncio.to_thread(member.answering)
        first.kill()
        deadline = time.monotonic() + 20
        while not (member.restarts == 1 and await asyncio.to_thread(member.answering)):
            assert time.monotonic() < deadline, "the member was not restarted"
            await asyncio.sleep(0.05)
        assert member.proc is not first
    finally:
        await sup.stop()
    assert member.proc is not None and member.proc.poll() is not None


@needs_etcd
def test_node_with_embedded_etcd_runs_and_stops_its_member(tmp_path: Path) -> None:
    client = f"127.0.0.1:{free_port()}"
    broker = BrokerThread(
        plugins=["etcd"],
        data_dir=str(tmp_path),
        config={
            "cluster": {
                "driver": "etcd",
                "node_id": "solo",
                "etcd_embedded": True,
                "etcd_client": client,
                "etcd_peer": f"127.0.0.1:{free_port()}",
            }
        },
    ).start()
    try:
        cluster = broker.context.cluster
        status = broker.call_soon(cluster.status)
        assert status["ready"] is True and status["etcd"]["embedded"] is True
        assert [n["node_id"] for n in status["nodes"]] == ["solo"]
        assert (tmp_path / "etcd" / "member").is_dir()
        member = cluster._supervisor.member
    finally:
        broker.close()
    assert member.proc is not None and member.proc.poll() is not None
