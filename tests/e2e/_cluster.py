"""Helpers shared by the cross-plugin tests: a bounded poll, the admin API, a paho
MQTT 5 client that queues what it receives, and broker nodes of one cluster on a
real etcd (started, waited for, stopped whatever happens).

Not a test module (no ``test_`` prefix); the test files import it as
``tests.e2e._cluster``. It imports no plugin: a test that needs the etcd plugin
skips without it before calling :func:`need_etcd` or :func:`start_nodes`."""

from __future__ import annotations

import json
import queue
import time
import urllib.request
import uuid
from collections.abc import Iterable
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.client import CallbackAPIVersion

from fluxmq_core.testing.broker import BrokerProcess

WAIT = 15.0

Bound = dict[str, tuple[str, int]]
#: Node id -> (its broker process, the addresses it bound).
Nodes = dict[str, tuple[BrokerProcess, Bound]]


def until(predicate: Any, timeout: float = WAIT) -> Any:
    """Poll ``predicate`` until it returns something true (returned) or ``timeout``
    seconds have passed (AssertionError)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def http_url(bound: Bound) -> str:
    host, port = bound["http.bind"]
    return f"http://{host}:{port}"


def api(bound: Bound, path: str, token: str | None = None) -> Any:
    """GET ``path`` on a node's admin API as JSON (with a bearer ``token`` if given)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(http_url(bound) + path, headers=headers)
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def mqtt_client(address: tuple[str, int], wait: float = WAIT, strict: bool = False) -> Any:
    """A connected MQTT 5 paho client (random client id, its network loop running).
    ``c.got`` queues the messages it receives; ``c.acks`` gets ``"connack"`` and a
    ``"suback"`` per SUBACK; ``c.cid`` is its id. A refused CONNACK counts as
    ``"connack"`` too (paho's loop connects again by itself) unless ``strict``, where
    it fails the test as ``"refused <reason>"``."""
    got: queue.Queue[Any] = queue.Queue()
    acks: queue.Queue[Any] = queue.Queue()
    client_id = uuid.uuid4().hex[:12]
    c = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
    )
    c.on_message = lambda _c, _u, m: got.put(m)
    c.on_connect = lambda _c, _u, _f, rc, _p: acks.put(
        "connack" if not (strict and rc.is_failure) else f"refused {rc}"
    )
    c.on_subscribe = lambda *a: acks.put("suback")
    c.connect(*address)
    c.loop_start()
    assert acks.get(timeout=wait) == "connack"
    c.got = got
    c.acks = acks
    c.cid = client_id
    return c


def client(bound: Bound, wait: float = WAIT, strict: bool = False) -> Any:
    """:func:`mqtt_client` on a node's ``mqtt.tcp`` listener."""
    return mqtt_client(bound["mqtt.tcp"], wait, strict)


def close(clients: Iterable[Any]) -> None:
    """Disconnect paho clients and stop their network loops."""
    for c in clients:
        c.disconnect()
        c.loop_stop()


def drain(c: Any, payload: bytes) -> bool:
    """Take what ``c`` received until ``payload`` comes (True) or nothing comes for
    0.2 s (False): one probe of a round trip for :func:`until`."""
    try:
        while True:
            if c.got.get(timeout=0.2).payload == payload:
                return True
    except queue.Empty:
        return False


def need_etcd() -> None:
    """Skip without the etcd plugin, or without an etcd binary (saying which Debian
    package to install)."""
    etcd_testing = pytest.importorskip("fluxmq_etcd.testing", reason="fluxmq-etcd is not installed")
    reason = etcd_testing.etcd_missing_reason()
    if reason:
        pytest.skip(f"{reason} (Debian/Ubuntu: apt-get install etcd-server)")


def start_nodes(
    etcd: Any,
    names: tuple[str, ...],
    lease_ttl: str = "4",
    plugins: str = "mqtt,amqp091,etcd",
    env: dict[str, str] | None = None,
    endpoints: str = "",
    etcd_timeout: str | None = "2",
) -> Nodes:
    """One broker process per name, each a node of the etcd cluster at ``etcd``
    (memory storage), returned once every node lists all of them. ``etcd_timeout``
    None keeps the configured default."""
    procs: Nodes = {}
    try:
        for n in names:
            node_env = {
                "FLUXMQ_CLUSTER__DRIVER": "etcd",
                "FLUXMQ_CLUSTER__NODE_ID": n,
                "FLUXMQ_CLUSTER__ETCD_ENDPOINTS": endpoints or etcd.endpoint,
                "FLUXMQ_CLUSTER__LEASE_TTL": lease_ttl,
            }
            if etcd_timeout is not None:
                node_env["FLUXMQ_CLUSTER__ETCD_TIMEOUT"] = etcd_timeout
            node_env["FLUXMQ_STORAGE__DRIVER"] = "memory"
            proc = BrokerProcess(["--plugins", plugins], env={**node_env, **(env or {})})
            procs[n] = (proc, proc.start(timeout=30))
        for n in names:
            until(lambda n=n: len(api(procs[n][1], "/api/v1/cluster")["nodes"]) == len(names))
    except BaseException:
        stop_nodes(procs)
        raise
    return procs


def stop_nodes(procs: Nodes) -> None:
    """SIGTERM every node still running, then wait for each and free it."""
    for proc, _bound in procs.values():
        if proc.proc is not None and proc.proc.poll() is None:
            proc.signal(15)
    for proc, _bound in procs.values():
        try:
            if proc.proc is not None:
                proc.wait(15)
        finally:
            proc.close()
