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

import json
import os
import queue
import shutil
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.client import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fluxmq_core.testing.broker import BrokerProcess

etcd_testing = pytest.importorskip("fluxmq_etcd.testing", reason="fluxmq-etcd is not installed")
from fluxmq_etcd.embedded import EtcdMember, free_port  # noqa: E402

WAIT = 15.0
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
        for x, y in ((a, b), (b, a)):
            _run(
                "ip",
                "netns",
                "exec",
                self.ns[x],
                "ip",
                "route",
                "add",
                "blackhole",
                f"{self.ip[y]}/32",
            )

    def heal(self, a: str, b: str) -> None:
        for x, y in ((a, b), (b, a)):
            _run(
                "ip",
                "netns",
                "exec",
                self.ns[x],
                "ip",
                "route",
                "del",
                "blackhole",
                f"{self.ip[y]}/32",
                check=False,
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


def until(predicate: Any, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def api(bound: dict[str, tuple[str, int]], path: str) -> Any:
    host, port = bound["http.bind"]
    req = urllib.request.Request(
        f"http://{host}:{port}{path}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def client(bound: dict[str, tuple[str, int]]) -> Any:
    got: queue.Queue[Any] = queue.Queue()
    acks: queue.Queue[Any] = queue.Queue()
    c = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=uuid.uuid4().hex[:12],
        protocol=mqtt.MQTTv5,
    )
    c.on_message = lambda _c, _u, m: got.put(m)
    c.on_connect = lambda _c, _u, _f, rc, _p: acks.put(
        "connack" if not rc.is_failure else f"refused {rc}"
    )
    c.on_subscribe = lambda *a: acks.put("suback")
    c.connect(*bound["mqtt.tcp"])
    c.loop_start()
    assert acks.get(timeout=WAIT) == "connack"
    c.got = got
    c.acks = acks
    return c


def _drain(c: Any, payload: bytes) -> bool:
    try:
        while True:
            if c.got.get(timeout=0.2).payload == payload:
                return True
    except queue.Empty:
        return False


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
    procs: dict[str, tuple[BrokerProcess, dict[str, tuple[str, int]]]] = {}
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
            until(lambda x=x: len(api(x, "/api/v1/cluster")["nodes"]) == 2)
        sub = client(b)
        sub.subscribe("pt/#", qos=1)
        assert sub.acks.get(timeout=WAIT) == "suback"
        pub = client(a)
        until(lambda: pub.publish("pt/probe", b"p", 1) and _drain(sub, b"p"))
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
        until(lambda: api(a, "/api/v1/cluster")["session_replication"]["sessions_copied"] == 1)
        keeper.disconnect()
        keeper.loop_stop()
        until(lambda: api(a, "/api/v1/cluster")["session_replication"]["replica"] == "b")

        net.cut("b", "a")
        try:
            sent = 0

            def breaker_open() -> bool:
                nonlocal sent
                pub.publish("pt/cut", b"during", 1).wait_for_publish(WAIT)  # PUBACK: a serves
                sent += 1
                peer = api(a, "/api/v1/cluster")["peers"]["peers"].get("b", {})
                return peer.get("state") == "open" and peer.get("dropped", 0) > 0

            until(breaker_open)
            assert sent >= 1
            # A message queued for the session is acknowledged although its copy
            # cannot reach the replica (counted, not waited for).
            pub.publish("pt/s/x", b"queued", 1).wait_for_publish(WAIT)
            assert api(a, "/api/v1/cluster")["session_replication"]["unreplicated_syncs"] >= 1
            # etcd is reachable from both: nobody lost its lease.
            for x in (a, b):
                assert [n["node_id"] for n in api(x, "/api/v1/cluster")["nodes"]] == ["a", "b"]
        finally:
            net.heal("b", "a")
        until(lambda: pub.publish("pt/after", b"healed", 1) and _drain(sub, b"healed"), 30)
        assert api(a, "/api/v1/cluster")["peers"]["peers"]["b"]["state"] == "closed"
        # The replica gets a full copy again once it answers.
        until(lambda: api(a, "/api/v1/cluster")["session_replication"]["full_syncs"] >= 2)
        assert api(b, "/api/v1/cluster")["session_replication"]["copies_held"] == 1
        for x in (sub, pub):
            x.disconnect()
            x.loop_stop()
    finally:
        for proc, _bound in procs.values():
            if proc.proc is not None and proc.proc.poll() is None:
                proc.signal(15)
        for proc, _bound in procs.values():
            try:
                if proc.proc is not None:
                    proc.wait(15)
            finally:
                proc.close()
        etcd.stop()
