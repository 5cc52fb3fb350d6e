"""``fluxmq run --workers 2``: two broker processes sharing each port (SO_REUSEPORT)
and acting as one broker through the etcd cluster driver and an embedded etcd.

Connections spread over both workers (the cluster API's per-node session counts),
paho clients on different workers exchange messages, a killed worker is restarted,
and SIGTERM stops every worker and the embedded etcd. Skipped, saying why, when the
etcd plugin or binary is missing."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

from fluxmq_core.testing.broker import BrokerProcess
from tests.e2e._cluster import api, client, close, until

etcd_testing = pytest.importorskip("fluxmq_etcd.testing", reason="fluxmq-etcd is not installed")

WAIT = 20.0

Workers = tuple[BrokerProcess, dict[str, tuple[str, int]]]


@pytest.fixture(autouse=True)
def _need_etcd() -> None:
    reason = etcd_testing.etcd_missing_reason()
    if reason:
        pytest.skip(reason)


def start_workers(plugins: str = "mqtt,etcd") -> Workers:
    proc = BrokerProcess(
        ["--plugins", plugins, "--workers", "2"],
        env={
            "FLUXMQ_STORAGE__DRIVER": "memory",
            # Node records (their session counts) are refreshed every lease_ttl / 3.
            "FLUXMQ_CLUSTER__LEASE_TTL": "3",
            "FLUXMQ_CLUSTER__ETCD_TIMEOUT": "2",
        },
    )
    try:
        return proc, proc.start(timeout=60)
    except BaseException:
        proc.close()
        raise


def stop_workers(proc: BrokerProcess) -> int:
    if proc.proc is None or proc.proc.poll() is not None:
        return proc.proc.returncode if proc.proc is not None else 0
    proc.signal(signal.SIGTERM)
    return proc.wait(30)


@pytest.fixture(scope="module")
def broker() -> Iterator[Workers]:
    if etcd_testing.etcd_missing_reason():
        pytest.skip(etcd_testing.etcd_missing_reason() or "")
    proc, bound = start_workers()
    try:
        yield proc, bound
    finally:
        stop_workers(proc)
        proc.close()


def state(proc: BrokerProcess) -> dict[str, Any]:
    path = Path(proc.data_dir) / "workers" / "workers.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data


def sessions_per_node(bound: dict[str, tuple[str, int]], total: int) -> dict[str, int]:
    """Each worker's connected sessions, once the node records add up to ``total``."""

    def counts() -> dict[str, int] | None:
        nodes = api(bound, "/api/v1/cluster")["nodes"]
        out = {n["node_id"]: n["sessions"] for n in nodes if n["alive"]}
        return out if len(out) == 2 and sum(out.values()) == total else None

    result: dict[str, int] = until(counts, WAIT)
    return result


def test_connections_spread_and_clients_on_different_workers_exchange(broker: Workers) -> None:
    _proc, bound = broker
    nodes = api(bound, "/api/v1/cluster")["nodes"]
    assert sorted(n["node_id"].rsplit("-", 1)[1] for n in nodes) == ["w0", "w1"]
    pub = client(bound, WAIT, strict=True)
    subs: list[Any] = []
    try:
        # The kernel hashes each connection to a worker: add subscribers until both
        # workers hold sessions (8 at a time, at most 32; one worker taking 9 in a row
        # happens once in 256 runs). Then some subscriber is on the publisher's other
        # worker, whichever that is.
        spread: dict[str, int] = {}
        while len(subs) < 32:
            for _ in range(8):
                s = client(bound, WAIT, strict=True)
                s.subscribe("wk/#", qos=1)
                assert s.acks.get(timeout=WAIT) == "suback"
                subs.append(s)
            spread = sessions_per_node(bound, len(subs) + 1)
            if all(spread.values()):
                break
        assert all(spread.values()), spread
        # Each worker's filters reach the other through etcd: probe until all answer.
        for s in subs:
            until(lambda s=s: pub.publish("wk/probe", b"p", 0) and not s.got.empty(), WAIT)
        for i in range(20):
            pub.publish(f"wk/{i}", str(i).encode(), 1).wait_for_publish(WAIT)
        for s in subs:
            seen = []
            while len(seen) < 20:
                m = s.got.get(timeout=WAIT)
                if m.topic != "wk/probe":
                    seen.append(m.payload)
            assert sorted(seen, key=int) == [str(i).encode() for i in range(20)]
        # The workers forwarded to each other over their same-host link, not gRPC
        # (each HTTP request lands on one worker: ask until both answered).
        seen_peers: dict[str, dict[str, Any]] = {}

        def both() -> bool:
            status = api(bound, "/api/v1/cluster")
            seen_peers[status["node_id"]] = status["peers"]
            return len(seen_peers) == 2

        until(both, WAIT)
        forwarded = sum(p["forwarded"] for p in seen_peers.values())
        assert forwarded >= 20
        assert sum(p["link_forwarded"] for p in seen_peers.values()) == forwarded
    finally:
        close([pub, *subs])


@pytest.mark.parametrize("index", [1, 0])
def test_a_killed_worker_is_restarted(broker: Workers, index: int) -> None:
    """Worker 1, then worker 0, which holds the embedded etcd: the supervisor stops
    the etcd member the killed worker 0 left behind, so the restarted one can start
    it again on the same ports and data."""
    proc, bound = broker
    before = until(lambda: (s := state(proc)) and all(w["ready"] for w in s["workers"]) and s, WAIT)
    victim = before["workers"][index]
    os.kill(victim["pid"], signal.SIGKILL)

    def restarted() -> dict[str, Any] | None:
        w = (state(proc).get("workers") or [{}, {}])[index]
        fresh = w.get("pid") not in (None, victim["pid"]) and w.get("ready")
        return w if fresh and w["restarts"] == victim["restarts"] + 1 else None

    again = until(restarted, 40)
    assert again["node_id"] == victim["node_id"]
    assert f"worker {index} ready again" in proc.output()
    if index == 0:
        assert "embedded etcd" in proc.output() and "worker 0 left running" in proc.output()
        assert len(_etcd_of(proc.data_dir)) == 1
    # The restarted worker serves: it rejoined the cluster and takes connections.
    # Strict: no CONNACK refusal. After worker 0 (and the embedded etcd) come back,
    # worker 1 re-establishes its etcd session; a client the kernel hands to it
    # meanwhile waits for that (up to etcd_timeout) rather than being refused. The
    # other worker's view may still list worker 1 as alive from before (its record
    # outlived the etcd restart), so wait until each worker says itself that it is
    # ready (each HTTP request lands on one worker: ask until both answered).
    ready: set[str] = set()

    def each_ready() -> bool:
        status = api(bound, "/api/v1/cluster")
        if status["ready"]:
            ready.add(status["node_id"])
        return len(ready) == 2

    until(each_ready, 40)
    clients = [client(bound, WAIT, strict=True) for _ in range(16)]
    try:
        assert all(sessions_per_node(bound, 16).values())
    finally:
        close(clients)


def _connack(address: tuple[str, int], client_id: str) -> tuple[int | None, socket.socket | None]:
    """A raw MQTT 3.1.1 CONNECT (clean session): the CONNACK's return code and the
    open socket, or (None, None) when the connection failed before any CONNACK (a
    connection the killed worker had queued is reset)."""
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid
    try:
        sock = socket.create_connection(address, timeout=WAIT)
    except OSError:
        return None, None
    try:
        sock.sendall(bytes([0x10, len(body)]) + body)
        ack = b""
        while len(ack) < 4:
            chunk = sock.recv(4 - len(ack))
            if not chunk:
                break
            ack += chunk
    except OSError:
        ack = b""
    if len(ack) < 4 or ack[0] != 0x20:
        sock.close()
        return None, None
    return ack[3], sock


def test_no_client_is_refused_while_a_killed_worker_restarts(broker: Workers) -> None:
    """Clients connect one after another from the kill of worker 1 until its restart
    has taken some of them: a restarted worker binds its ports only once it joined
    the cluster, so no CONNACK says "server unavailable" (return code 3) meanwhile.
    Bounded: at most 600 connections, 60 s."""
    proc, bound = broker
    before = until(lambda: (s := state(proc)) and all(w["ready"] for w in s["workers"]) and s, WAIT)
    victim = before["workers"][1]
    os.kill(victim["pid"], signal.SIGKILL)

    def restarted() -> bool:
        w = (state(proc).get("workers") or [{}, {}])[1]
        return bool(w.get("pid") not in (None, victim["pid"]) and w.get("ready"))

    codes: list[int] = []
    held: list[socket.socket] = []
    attempts = 0
    deadline = time.monotonic() + 60
    try:
        while len(held) < 24 and attempts < 600 and time.monotonic() < deadline:
            attempts += 1
            after = restarted()
            rc, sock = _connack(bound["mqtt.tcp"], f"rs{attempts}")
            if rc is not None:
                codes.append(rc)
            if sock is not None and after and rc == 0:
                held.append(sock)
            elif sock is not None:
                sock.close()
            time.sleep(0.01)
        assert [c for c in codes if c != 0] == []
        assert len(held) == 24, (attempts, len(codes))
        # Some connections made after the restart landed on the restarted worker.
        assert all(sessions_per_node(bound, len(held)).values())
    finally:
        for sock in held:
            sock.close()


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _etcd_of(data_dir: str) -> list[int]:
    """Pids of an etcd process whose data dir is under ``data_dir``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"etcd") and any(data_dir.encode() in a for a in cmd):
            found.append(int(entry.name))
    return found


def test_sigterm_stops_every_worker_and_the_embedded_etcd() -> None:
    """With AMQP 0.9.1 and the queue API too: every worker binds their ports as well
    (the queue API's gRPC server with SO_REUSEPORT)."""
    proc, bound = start_workers("mqtt,etcd,amqp091,queue_api")
    try:
        pids = [w["pid"] for w in until(lambda: state(proc).get("workers"), WAIT)]
        assert len(pids) == 2 and all(_running(p) for p in pids)
        etcd = _etcd_of(proc.data_dir)
        assert len(etcd) == 1
        grpc_port = bound["api.grpc"][1]
        for w in ("w0", "w1"):
            assert f"[{w}] " in proc.output()
            assert any(
                line.startswith(f"[{w}] ") and line.endswith(f"gRPC on 127.0.0.1:{grpc_port}")
                for line in proc.output().splitlines()
            )
        amqp = pika.BlockingConnection(
            pika.ConnectionParameters(*bound["amqp091.bind"], connection_attempts=1)
        )
        assert amqp.channel().queue_declare("", exclusive=True).method.queue
        c = client(bound, WAIT, strict=True)
        c.loop_stop()
        assert stop_workers(proc) == 0
        out = proc.output()
        assert "all workers stopped" in out
        assert "[w0]" in out and "[w1]" in out and "stopped" in out
        assert not any(_running(p) for p in pids)
        until(lambda: not _etcd_of(proc.data_dir), 10)
        assert not (Path(proc.data_dir) / "workers" / "workers.json").exists()
    finally:
        proc.close()


def test_a_worker_failing_to_start_stops_the_broker_with_its_exit_code() -> None:
    """A port another process holds (without SO_REUSEPORT): worker 0 cannot listen,
    exits 2 (configuration error), and the supervisor stops and exits 2 too."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = BrokerProcess(
            ["--plugins", "mqtt,etcd", "--workers", "2"],
            env={"FLUXMQ_STORAGE__DRIVER": "memory", "FLUXMQ_MQTT__TCP": f"127.0.0.1:{port}"},
        )
        try:
            with pytest.raises(RuntimeError, match="exited with 2"):
                proc.start(timeout=60)
            out = proc.output()
            assert "cannot listen" in out and "worker 0 exited with 2 while starting" in out
            assert not _etcd_of(proc.data_dir)
        finally:
            proc.close()
