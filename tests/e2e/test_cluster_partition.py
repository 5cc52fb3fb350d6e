"""A partition between two broker nodes while etcd stays reachable, on a real
network: each node runs in its own network namespace, joined to a bridge by a veth
pair; etcd and the test's clients are on the bridge in this namespace. Link-local
addresses (169.254.x.x) that exist only on that bridge and in those namespaces.

The partition is a blackhole route to the other node in each node's namespace
(etcd and clients still reach both). Needs root and ``ip`` (iproute2); skipped,
saying why, without them (or without etcd). Namespaces and the bridge are removed
in teardown whatever happens.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.client import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fluxmq_core.testing.broker import BrokerProcess
from tests.e2e._cluster import WAIT, Bound, Nodes, api, client, close, drain, stop_nodes, until

etcd_testing = pytest.importorskip("fluxmq_etcd.testing", reason="fluxmq-etcd is not installed")
from fluxmq_etcd.embedded import EtcdMember, free_port  # noqa: E402

SUBNET = "169.254.213"
BRIDGE_IP = f"{SUBNET}.254"
#: The admin API answers non-loopback clients only with a token.
TOKEN = uuid.uuid4().hex


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=20)


def _netns_missing_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root for ip netns"
    if shutil.which("ip") is None:
        return "no 'ip' (iproute2)"
    probe = "fmqp" + uuid.uuid4().hex[:6]
    try:
        made = _run("ip", "netns", "add", probe, check=False)
        if made.returncode != 0:
            return f"ip netns unavailable here: {made.stderr.strip()}"
    finally:
        _run("ip", "netns", "del", probe, check=False)
    return None


class Net:
    """A bridge in this namespace and one namespace per node, each with a veth into
    the bridge and the address ``169.254.213.<i>``."""

    def __init__(self, nodes: tuple[str, ...]) -> None:
        tag = uuid.uuid4().hex[:5]
        self.bridge = f"fmqbr{tag}"
        self.ns = {n: f"fmq{tag}{n}" for n in nodes}
        self.dev = {n: f"fmqp{tag}{n}" for n in nodes}  # inside the namespace
        self.ip = {n: f"{SUBNET}.{i + 1}" for i, n in enumerate(nodes)}
        self._outer = {n: f"fmqv{tag}{n}" for n in nodes}

    def up(self) -> None:
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{BRIDGE_IP}/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        for n, ns in self.ns.items():
            _run("ip", "netns", "add", ns)
            _run("ip", "link", "add", self._outer[n], "type", "veth", "peer", "name", self.dev[n])
            _run("ip", "link", "set", self.dev[n], "netns", ns)
            _run("ip", "link", "set", self._outer[n], "master", self.bridge)
            _run("ip", "link", "set", self._outer[n], "up")
            inside = ("ip", "netns", "exec", ns)
            _run(*inside, "ip", "addr", "add", f"{self.ip[n]}/24", "dev", self.dev[n])
            _run(*inside, "ip", "link", "set", self.dev[n], "up")
            _run(*inside, "ip", "link", "set", "lo", "up")

    def cut(self, a: str, b: str) -> None:
        """Nodes ``a`` and ``b`` stop reaching each other (a blackhole route to the
        other in each namespace); both still reach etcd and the clients."""
        self._blackholes("add", a, b, check=True)

    def heal(self, a: str, b: str) -> None:
        self._blackholes("del", a, b, check=False)

    def _blackholes(self, verb: str, a: str, b: str, check: bool) -> None:
        for x, y in ((a, b), (b, a)):
            _run(
                *("ip", "netns", "exec", self.ns[x]),
                *("ip", "route", verb, "blackhole", f"{self.ip[y]}/32"),
                check=check,
            )

    def down(self) -> None:
        for ns in self.ns.values():
            _run("ip", "netns", "del", ns, check=False)  # takes its veth pair along
        for dev in self._outer.values():
            _run("ip", "link", "del", dev, check=False)
        _run("ip", "link", "del", self.bridge, check=False)


@pytest.fixture
def net() -> Iterator[Net]:
    reason = etcd_testing.etcd_missing_reason() or _netns_missing_reason()
    if reason:
        pytest.skip(reason)
    n = Net(("a", "b"))
    try:
        n.up()
        yield n
    finally:
        n.down()


def status(bound: Bound) -> Any:
    """A node's cluster status from its admin API (with the token: the test's
    address is not loopback to the node)."""
    return api(bound, "/api/v1/cluster", TOKEN)


def test_a_partition_between_two_brokers_opens_the_breaker_and_heals(
    net: Net, tmp_path: Any
) -> None:
    """Nodes a and b each in a namespace, etcd reachable from both. Cut a from b:
    publishers on a keep getting their PUBACKs, a's breaker for b opens and counts
    what it drops, neither node loses its lease (both still list each other). Heal:
    the breaker closes by itself and publishes on a reach b's subscriber again."""
    etcd = EtcdMember(
        "part",
        tmp_path / "etcd",
        f"{BRIDGE_IP}:{free_port(BRIDGE_IP)}",
        f"127.0.0.1:{free_port()}",
        "",
        log_path=tmp_path / "etcd.log",
    )
    etcd.start()
    procs: Nodes = {}
    try:
        etcd.wait_ready(20)
        for n in ("a", "b"):
            proc = BrokerProcess(
                ["--plugins", "mqtt,etcd"],
                env={
                    "FLUXMQ_CLUSTER__DRIVER": "etcd",
                    "FLUXMQ_CLUSTER__NODE_ID": n,
                    "FLUXMQ_CLUSTER__ETCD_ENDPOINTS": etcd.endpoint,
                    "FLUXMQ_CLUSTER__LEASE_TTL": "4",
                    "FLUXMQ_CLUSTER__PEER_TIMEOUT": "0.5",
                    "FLUXMQ_CLUSTER__BIND": f"{net.ip[n]}:0",
                    "FLUXMQ_STORAGE__DRIVER": "memory",
                    "FLUXMQ_HTTP__ADMIN_TOKEN": TOKEN,
                    "FLUXMQ_AUTH__ANONYMOUS": "true",  # clients come from the bridge
                },
                command_prefix=["ip", "netns", "exec", net.ns[n]],
            )
            for key, value in list(proc.env.items()):
                if value == "127.0.0.1:0":  # every listener on the node's own address
                    proc.env[key] = f"{net.ip[n]}:0"
            procs[n] = (proc, proc.start(timeout=30))
        a, b = procs["a"][1], procs["b"][1]
        for x in (a, b):
            until(lambda x=x: len(status(x)["nodes"]) == 2)
        sub = client(b, strict=True)
        sub.subscribe("pt/#", qos=1)
        assert sub.acks.get(timeout=WAIT) == "suback"
        pub = client(a, strict=True)
        until(lambda: pub.publish("pt/probe", b"p", 1) and drain(sub, b"p"))
        # A persistent session on a (whose session replica is b), client away.
        keeper = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id="keeper-" + uuid.uuid4().hex[:6],
            protocol=mqtt.MQTTv5,
        )
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 300
        keeper.connect(*a["mqtt.tcp"], clean_start=False, properties=props)
        keeper.loop_start()
        keeper.subscribe("pt/s/#", qos=1)
        until(lambda: status(a)["session_replication"]["sessions_copied"] == 1)
        keeper.disconnect()
        keeper.loop_stop()
        until(lambda: status(a)["session_replication"]["replica"] == "b")

        net.cut("b", "a")
        try:
            sent = 0

            def breaker_open() -> bool:
                nonlocal sent
                pub.publish("pt/cut", b"during", 1).wait_for_publish(WAIT)  # PUBACK: a serves
                sent += 1
                peer = status(a)["peers"]["peers"].get("b", {})
                return peer.get("state") == "open" and peer.get("dropped", 0) > 0

            until(breaker_open)
            assert sent >= 1
            # A message queued for the session is acknowledged although its copy
            # cannot reach the replica (counted, not waited for).
            pub.publish("pt/s/x", b"queued", 1).wait_for_publish(WAIT)
            assert status(a)["session_replication"]["unreplicated_syncs"] >= 1
            # etcd is reachable from both: nobody lost its lease.
            for x in (a, b):
                assert [n["node_id"] for n in status(x)["nodes"]] == ["a", "b"]
        finally:
            net.heal("b", "a")
        until(lambda: pub.publish("pt/after", b"healed", 1) and drain(sub, b"healed"), 30)
        assert status(a)["peers"]["peers"]["b"]["state"] == "closed"
        # The replica gets a full copy again once it answers.
        until(lambda: status(a)["session_replication"]["full_syncs"] >= 2)
        assert status(b)["session_replication"]["copies_held"] == 1
        close((sub, pub))
    finally:
        stop_nodes(procs)
        etcd.stop()
