"""Node-to-node mutual TLS from the ``[cluster] tls_*`` keys, against a real etcd."""

from __future__ import annotations

import queue
from pathlib import Path

import pytest
from fluxmq_etcd.testing import EtcdServer

from fluxmq_core.config import ConfigError
from fluxmq_core.message import Message
from fluxmq_core.testing.broker import BrokerThread
from fluxmq_core.testing.tls import make_test_certs

from .test_driver import WAIT, Sink, node, subscribe, until


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return make_test_certs(tmp_path_factory.mktemp("certs"))


def tls_keys(certs: dict[str, str]) -> dict[str, str]:
    # One certificate per node would be usual; the test CA's server certificate
    # (valid for 127.0.0.1) serves both nodes here, as server and as client.
    return {
        "tls_cert": certs["server.pem"],
        "tls_key": certs["server.key"],
        "tls_ca": certs["ca.pem"],
    }


def test_nodes_forward_over_mutual_tls(etcd: EtcdServer, certs: dict[str, str]) -> None:
    a = node(etcd, "a", **tls_keys(certs))
    b = node(etcd, "b", **tls_keys(certs))
    try:
        sink = Sink("s")
        subscribe(b, sink, "sec/#")
        until(lambda: a.call_soon(a.context.cluster.index.match, "sec/1") == {"b"}, "the index")
        a.call_soon(a.context.publish, Message("sec/1", b"over tls"))
        assert sink.got.get(timeout=WAIT)[0].payload == b"over tls"
    finally:
        b.close()
        a.close()


def test_a_plaintext_node_cannot_deliver_to_a_tls_node(
    etcd: EtcdServer, certs: dict[str, str]
) -> None:
    a = node(etcd, "a")  # no TLS
    b = node(etcd, "b", **tls_keys(certs))
    try:
        sink = Sink("s")
        subscribe(b, sink, "sec/#")
        until(lambda: a.call_soon(a.context.cluster.index.match, "sec/1") == {"b"}, "the index")
        a.call_soon(a.context.publish, Message("sec/1", b"refused"))
        until(
            lambda: a.call_soon(a.context.cluster.status)["peers"]["peer_errors"] >= 1,
            "the refused batch to be counted",
        )
        with pytest.raises(queue.Empty):
            sink.got.get_nowait()
    finally:
        b.close()
        a.close()


def test_unreadable_tls_files_are_a_config_error(tmp_path: Path, certs: dict[str, str]) -> None:
    keys = tls_keys(certs) | {"tls_cert": str(tmp_path / "missing.pem")}
    with pytest.raises(ConfigError, match="missing.pem"):
        BrokerThread(
            plugins=["etcd"], config={"cluster": {"driver": "etcd", "node_id": "n", **keys}}
        ).start()


def test_tls_cert_without_ca_is_refused_at_load() -> None:
    with pytest.raises(ConfigError, match="tls_cert needs tls_key and tls_ca"):
        BrokerThread(
            plugins=["etcd"],
            config={"cluster": {"driver": "etcd", "node_id": "n", "tls_cert": "x.pem"}},
        ).start()
