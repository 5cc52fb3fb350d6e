"""Three broker processes as one cluster on a real etcd (Debian ``etcd-server``):
MQTT publishes on one node reach paho subscribers on the two others once each, with
QoS and properties; an AMQP 0.9.1 consumer on another node gets MQTT publishes; the
admin API and ``fluxmq cluster status`` list the nodes. Skipped, saying why, when the
etcd binary or the plugin is missing."""

from __future__ import annotations

import base64
import json
import queue
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pika
import pytest
from paho.mqtt.client import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fluxmq_core.testing.broker import BrokerProcess
from tests.e2e._cluster import (
    WAIT,
    Nodes,
    api,
    client,
    close,
    drain,
    http_url,
    need_etcd,
    start_nodes,
    stop_nodes,
    until,
)

etcd_testing = pytest.importorskip("fluxmq_etcd.testing", reason="fluxmq-etcd is not installed")

NODES = ("a", "b", "c")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Nodes]:
    need_etcd()
    with etcd_testing.EtcdServer() as etcd:
        procs = start_nodes(etcd, NODES)
        try:
            yield procs
        finally:
            stop_nodes(procs)


def test_mqtt_publish_reaches_subscribers_on_every_other_node_once(cluster: Any) -> None:
    a, b, c = (cluster[n][1] for n in NODES)
    pub = client(a)
    subs = [client(b), client(c)]
    try:
        for s in subs:
            s.subscribe("cl/#", qos=1)
            assert s.acks.get(timeout=WAIT) == "suback"
        # The index reaches node a through etcd: probe until both nodes answer.
        for s in subs:
            until(lambda s=s: pub.publish("cl/probe", b"p", 0) and _drain_probe(s))
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = [("trace", "42")]
        props.ContentType = "text/plain"
        props.ResponseTopic = "cl/reply"
        props.CorrelationData = b"corr"
        pub.publish("cl/q0", b"zero", 0, properties=props).wait_for_publish(WAIT)
        pub.publish("cl/q1", b"one", 1, properties=props).wait_for_publish(WAIT)
        pub.publish("cl/end", b"marker", 1).wait_for_publish(WAIT)
        for s in subs:
            seen = []
            while True:
                m = s.got.get(timeout=WAIT)
                if m.topic == "cl/probe":
                    continue
                seen.append(m)
                if m.topic == "cl/end":
                    break
            assert [(m.topic, m.payload, m.qos) for m in seen] == [
                ("cl/q0", b"zero", 0),
                ("cl/q1", b"one", 1),
                ("cl/end", b"marker", 1),
            ]
            for m in seen[:2]:
                assert m.properties.UserProperty == [("trace", "42")]
                assert m.properties.ContentType == "text/plain"
                assert m.properties.ResponseTopic == "cl/reply"
                assert m.properties.CorrelationData == b"corr"
    finally:
        close((pub, *subs))


def _drain_probe(s: Any) -> bool:
    try:
        while True:
            if s.got.get(timeout=0.2).topic == "cl/probe":
                return True
    except queue.Empty:
        return False


def test_amqp_consumer_on_another_node_gets_mqtt_publishes(cluster: Any) -> None:
    a, _b, c = (cluster[n][1] for n in NODES)
    conn = pika.BlockingConnection(pika.ConnectionParameters(*c["amqp091.bind"]))
    pub = client(a)
    try:
        ch = conn.channel()
        q = ch.queue_declare("", exclusive=True).method.queue
        ch.queue_bind(q, "amq.topic", "cl.amqp.*")

        def probe() -> bool:
            pub.publish("cl/amqp/probe", b"p", 0)
            _m, _p, body = ch.basic_get(q, auto_ack=True)
            return body is not None

        until(probe)
        pub.publish("cl/amqp/real", b"from mqtt on a", 1).wait_for_publish(WAIT)

        def real() -> bytes | None:
            method, _p, body = ch.basic_get(q, auto_ack=True)
            return body if method is not None and method.routing_key == "cl.amqp.real" else None

        assert until(real) == b"from mqtt on a"
    finally:
        pub.disconnect()
        pub.loop_stop()
        conn.close()


def test_a_shared_subscription_gets_each_message_once_across_nodes(cluster: Any) -> None:
    a, b, c = (cluster[n][1] for n in NODES)
    pub = client(a)
    members = [client(b), client(c)]
    try:
        for m in members:
            m.subscribe("$share/workers/jobs/#", qos=1)
            assert m.acks.get(timeout=WAIT) == "suback"
        until(lambda: _share_holders(a, "$share/workers/jobs/#") == ["b", "c"])
        for i in range(10):
            pub.publish("jobs/run", f"job-{i}".encode(), 1).wait_for_publish(WAIT)
        got = [m.got.get(timeout=WAIT) for _ in range(5) for m in members]
        # Node a alternates between b and c: 5 each, every job once.
        assert sorted(x.payload for x in got) == sorted(f"job-{i}".encode() for i in range(10))
        # Markers along the same streams come next: no duplicate was in flight.
        for i in range(2):
            pub.publish("jobs/run", f"end-{i}".encode(), 1).wait_for_publish(WAIT)
        assert sorted(m.got.get(timeout=WAIT).payload for m in members) == [b"end-0", b"end-1"]
    finally:
        close((pub, *members))


def _share_holders(bound: dict[str, tuple[str, int]], key: str) -> list[str]:
    return list(api(bound, "/api/v1/cluster").get("shared", {}).get(key, []))


def test_a_retained_publish_is_seen_by_a_new_subscriber_on_another_node(cluster: Any) -> None:
    a, _b, c = (cluster[n][1] for n in NODES)
    pub = client(a)
    try:
        pub.publish("cl/retained", b"last value", 1, retain=True).wait_for_publish(WAIT)
    finally:
        pub.disconnect()
        pub.loop_stop()

    def fresh_subscriber_gets_it() -> bool:
        sub = client(c)
        try:
            sub.subscribe("cl/retained", qos=1)
            m = sub.got.get(timeout=2)
            return m.payload == b"last value" and m.retain
        except queue.Empty:
            return False
        finally:
            sub.disconnect()
            sub.loop_stop()

    until(fresh_subscriber_gets_it)


def test_cluster_status_lists_every_node(cluster: Any) -> None:
    a = cluster["a"][1]
    conn = pika.BlockingConnection(pika.ConnectionParameters(*a["amqp091.bind"]))
    conn.channel().queue_declare("cl-orders", durable=True)
    conn.close()
    body = api(a, "/api/v1/cluster")
    assert body["driver"] == "etcd" and body["ready"] is True
    assert sorted(n["node_id"] for n in body["nodes"]) == list(NODES)
    ready = api(a, "/ready")
    assert ready["checks"]["cluster"] is True
    out = subprocess.run(
        [sys.executable, "-m", "fluxmq_core.cli", "cluster", "status", "--url", http_url(a)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert "driver etcd, node a: ready" in out.stdout
    lines = [line.split()[0] for line in out.stdout.splitlines()[2:5]]
    assert lines == ["a", "b", "c"]
    assert "on this node only" not in out.stdout
    queue_lines = {line.split()[0]: line.split()[1:] for line in out.stdout.splitlines()[6:]}
    assert queue_lines["QUEUE"] == ["OWNER", "COPIES"]
    assert queue_lines["cl-orders"] == ["a", "*", "1"]
    # Another node names the same owner (from etcd), without the mark.
    until(lambda: api(cluster["c"][1], "/api/v1/cluster")["queue_owners"].get("cl-orders") == "a")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "fluxmq_core.cli",
            "cluster",
            "status",
            "--url",
            http_url(cluster["c"][1]),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()]
    assert ["cl-orders", "a", "1"] in rows


def test_a_killed_node_drops_out_and_comes_back_under_the_same_id() -> None:
    need_etcd()
    with etcd_testing.EtcdServer() as etcd:
        procs = start_nodes(etcd, ("a", "b"), lease_ttl="2")
        try:
            a, b = procs["a"][1], procs["b"][1]
            procs["b"][0].kill()  # kill -9: no goodbye, the lease has to expire
            until(lambda: [n["node_id"] for n in api(a, "/api/v1/cluster")["nodes"]] == ["a"])
            # Publishing on a goes on while b is gone.
            pub = client(a)
            pub.publish("back/0", b"to nobody", 1).wait_for_publish(WAIT)
            # The same id comes back (on fresh ports: a port just released may be
            # taken by any outgoing connection meanwhile): a forwards to it again.
            proc_b = procs["b"][0]
            for var in proc_b._ephemeral_vars:
                proc_b.env[var] = "127.0.0.1:0"
            b = proc_b.start(timeout=30)
            until(lambda: len(api(a, "/api/v1/cluster")["nodes"]) == 2)
            sub = client(b)
            sub.subscribe("back/#", qos=1)
            assert sub.acks.get(timeout=WAIT) == "suback"
            until(lambda: pub.publish("back/1", b"again", 1) and drain(sub, b"again"))
            close((pub, sub))
        finally:
            stop_nodes(procs)


def test_etcd_stopped_and_restarted_under_traffic() -> None:
    need_etcd()
    with etcd_testing.EtcdServer() as etcd:
        procs = start_nodes(etcd, ("a", "b"), lease_ttl="4")
        try:
            a, b = procs["a"][1], procs["b"][1]
            pub, sub = client(a), client(b)
            sub.subscribe("live/#", qos=1)
            assert sub.acks.get(timeout=WAIT) == "suback"
            until(lambda: pub.publish("live/probe", b"p", 0) and drain(sub, b"p"))
            etcd.kill()
            until(lambda: _ready(a) == 503 and _ready(b) == 503)
            # Nodes keep forwarding with the view they had: traffic goes on.
            for i in range(20):
                pub.publish("live/x", f"during-{i}".encode(), 1).wait_for_publish(WAIT)
            got = [sub.got.get(timeout=WAIT).payload for _ in range(20)]
            assert got == [f"during-{i}".encode() for i in range(20)]
            etcd.restart()
            until(lambda: _ready(a) == 200 and _ready(b) == 200, timeout=30)
            # A subscription made after the outage is learnt through etcd again.
            sub.subscribe("after/#", qos=1)
            assert sub.acks.get(timeout=WAIT) == "suback"
            until(lambda: pub.publish("after/1", b"after", 1) and drain(sub, b"after"))
            close((pub, sub))
        finally:
            stop_nodes(procs)


def _ready(bound: dict[str, tuple[str, int]]) -> int:
    try:
        with urllib.request.urlopen(http_url(bound) + "/ready", timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_fluxmq_run_without_etcd_fails_clearly() -> None:
    from fluxmq_etcd.embedded import free_port

    proc = BrokerProcess(
        ["--plugins", "mqtt,etcd"],
        env={
            "FLUXMQ_CLUSTER__DRIVER": "etcd",
            "FLUXMQ_CLUSTER__NODE_ID": "lonely",
            "FLUXMQ_CLUSTER__ETCD_ENDPOINTS": f"http://127.0.0.1:{free_port()}",
            "FLUXMQ_CLUSTER__LEASE_TTL": "2",
            "FLUXMQ_CLUSTER__ETCD_TIMEOUT": "0.5",
        },
    )
    try:
        with pytest.raises(RuntimeError, match="broker exited with 1"):
            proc.start(timeout=30)
        out = proc.output()
        assert "cannot join the cluster through etcd at http://127.0.0.1:" in out
        assert "Traceback" not in out
    finally:
        proc.close()


def _persistent(bound: dict[str, tuple[str, int]], client_id: str, events: queue.Queue[Any]) -> Any:
    """A 5.0 client resuming ``client_id`` (no clean start, 300 s session expiry)
    that does not acknowledge anything by itself (``manual_ack``): its QoS 1
    deliveries stay in flight at the broker."""
    got: queue.Queue[Any] = queue.Queue()
    c = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=True,
    )
    c.on_message = lambda _c, _u, m: got.put(m)
    c.on_connect = lambda _c, _u, flags, rc, _p: events.put(("connack", flags.session_present))
    c.on_subscribe = lambda *a: events.put(("suback", None))
    c.on_disconnect = lambda _c, _u, _f, rc, _p: events.put(("disconnect", rc.value))
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 300
    c.connect(*bound["mqtt.tcp"], clean_start=False, properties=props)
    c.loop_start()
    c.got = got
    return c


def _event(events: queue.Queue[Any], kind: str) -> Any:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        k, value = events.get(timeout=max(0.01, deadline - time.monotonic()))
        if k == kind:
            return value
    raise AssertionError(f"no {kind}")


def _park(bound: dict[str, tuple[str, int]], client_id: str, topic: str) -> None:
    """A new persistent session ``client_id`` on a node, subscribed to ``topic`` at
    QoS 1, its client gone (DISCONNECT): what matches queues for it."""
    events: queue.Queue[Any] = queue.Queue()
    c = _persistent(bound, client_id, events)
    assert _event(events, "connack") is False
    c.subscribe(topic, qos=1)
    _event(events, "suback")
    c.disconnect()
    _event(events, "disconnect")
    c.loop_stop()


def _take_all(c: Any, want: set[bytes]) -> dict[bytes, Any]:
    """What ``c`` (a :func:`_persistent` client) receives, by payload, acknowledging
    each, until every payload in ``want`` came or WAIT seconds passed."""
    received: dict[bytes, Any] = {}
    deadline = time.monotonic() + WAIT
    while set(received) != want and time.monotonic() < deadline:
        try:
            m = c.got.get(timeout=0.5)
        except queue.Empty:
            continue
        received[m.payload] = m
        c.ack(m.mid, m.qos)
    return received


def test_takeover_on_another_node_moves_the_session_with_qos1_in_flight(cluster: Any) -> None:
    """A persistent session on node a, with QoS 1 messages in flight (delivered,
    never acknowledged) and queued behind its receive window, is taken over by the
    same client id connecting to node b: the old connection gets DISCONNECT 0x8E and
    the new one receives every message a publisher had acknowledged, with its
    properties, then keeps receiving (its subscription moved to node b)."""
    a, b, c = (cluster[n][1] for n in NODES)
    cid = "mover-" + uuid.uuid4().hex[:6]
    old_events: queue.Queue[Any] = queue.Queue()
    old = _persistent(a, cid, old_events)
    assert _event(old_events, "connack") is False
    old.subscribe("tk/#", qos=1)
    _event(old_events, "suback")
    pub = client(a)
    sent = {f"m{i}".encode() for i in range(40)}
    for payload in sorted(sent):
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = ("k", payload.decode())
        pub.publish("tk/x", payload, 1, properties=props).wait_for_publish(WAIT)
    # At least one delivery reached the old client (and stays unacknowledged).
    first = old.got.get(timeout=WAIT)
    assert first.payload in sent
    new_events: queue.Queue[Any] = queue.Queue()
    new = _persistent(b, cid, new_events)
    try:
        assert _event(new_events, "connack") is True  # session present: it moved
        assert _event(old_events, "disconnect") == 0x8E
        received = _take_all(new, sent)
        assert set(received) == sent
        m = received[b"m7"]
        assert m.qos == 1
        assert ("k", "m7") in m.properties.UserProperty
        # The subscription lives on node b now: a publish on node c reaches it.
        pub_c = client(c)
        until(lambda: pub_c.publish("tk/after", b"after", 1) and drain(new, b"after"))
        status = api(b, "/api/v1/cluster")
        assert status["takeovers"]["in"] >= 1
        close((pub, pub_c))
    finally:
        close((old, new))


def test_takeover_of_a_311_session_closes_the_old_connection(cluster: Any) -> None:
    """MQTT 3.1.1 has no server DISCONNECT: the old connection on node a is closed
    when the session moves to node c, which reports the session present."""
    a, c = cluster["a"][1], cluster["c"][1]
    cid = "v311-" + uuid.uuid4().hex[:6]
    events: list[queue.Queue[Any]] = [queue.Queue(), queue.Queue()]
    clients = []
    present: list[bool] = []
    for bound, ev in zip((a, c), events, strict=True):
        x = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=cid,
            protocol=mqtt.MQTTv311,
            clean_session=False,
        )
        x.on_connect = lambda _c, _u, flags, rc, _p, ev=ev: ev.put(
            ("connack", flags.session_present)
        )
        x.on_disconnect = lambda *_a, ev=ev: ev.put(("disconnect", None))
        x.on_subscribe = lambda *_a, ev=ev: ev.put(("suback", None))
        x.reconnect_delay_set(60, 120)  # no automatic reconnect during the test
        x.connect(*bound["mqtt.tcp"])
        x.loop_start()
        clients.append(x)
        present.append(_event(ev, "connack"))
        if len(clients) == 1:
            x.subscribe("v311/#", qos=1)
            _event(ev, "suback")
    try:
        assert present == [False, True]
        _event(events[0], "disconnect")
    finally:
        for x in clients:
            x.disconnect()
            x.loop_stop()


def _etcd_get(etcd: Any, key: str) -> bytes | None:
    """A key's value through etcd's v3 JSON gateway (None: absent)."""
    body = json.dumps({"key": base64.b64encode(key.encode()).decode()}).encode()
    req = urllib.request.Request(etcd.endpoint + "/v3/kv/range", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        kvs = json.loads(resp.read()).get("kvs")
    return base64.b64decode(kvs[0].get("value", "")) if kvs else None


def _etcd_has(etcd: Any, key: str) -> bool:
    return _etcd_get(etcd, key) is not None


def test_a_killed_node_s_wills_go_out_once_and_its_sessions_resume_elsewhere() -> None:
    """kill -9 of node c with clients connected there: once c's lease expires, one
    of the surviving nodes publishes a client's will, once cluster-wide (every
    subscriber gets it exactly once), and a persistent session of c resumes on
    another node with its subscriptions (kept in etcd)."""
    need_etcd()
    with etcd_testing.EtcdServer() as etcd:
        procs = start_nodes(etcd, ("a", "b", "c"), lease_ttl="2")
        try:
            a, b, c = (procs[n][1] for n in ("a", "b", "c"))
            subs = [client(a), client(b)]
            for s in subs:
                s.subscribe("wills/#", qos=1)
                assert s.acks.get(timeout=WAIT) == "suback"
            w = mqtt.Client(
                callback_api_version=CallbackAPIVersion.VERSION2,
                client_id="doomed",
                protocol=mqtt.MQTTv5,
            )
            w.will_set("wills/doomed", b"gone", qos=1)
            w.connect(*c["mqtt.tcp"])
            w.loop_start()
            until(lambda: _etcd_has(etcd, "/fluxmq/wills/c/doomed"))
            ph_events: queue.Queue[Any] = queue.Queue()
            phoenix = _persistent(c, "phoenix", ph_events)
            assert _event(ph_events, "connack") is False
            phoenix.subscribe("ph/#", qos=1)
            _event(ph_events, "suback")
            until(lambda: b"ph/#" in (_etcd_get(etcd, "/fluxmq/sessionstate/phoenix") or b""))
            phoenix.loop_stop()
            procs["c"][0].kill()  # kill -9
            for s in subs:
                assert s.got.get(timeout=WAIT).payload == b"gone"
            until(lambda: not _etcd_has(etcd, "/fluxmq/wills/c/doomed"))
            # Both survivors have handled c's departure: the will went out once.
            until(lambda: all(len(api(x, "/api/v1/cluster")["nodes"]) == 2 for x in (a, b)))
            pub = client(a)
            until(lambda: pub.publish("wills/marker", b"mark", 1) and drain(subs[1], b"mark"))
            pub.publish("wills/marker2", b"mark2", 1).wait_for_publish(WAIT)
            assert drain(subs[0], b"mark2")
            published = sum(api(x, "/api/v1/cluster")["wills_published"] for x in (a, b))
            assert published == 1
            # The persistent session resumes on node a, subscription included.
            ph_events = queue.Queue()
            back = _persistent(a, "phoenix", ph_events)
            assert _event(ph_events, "connack") is True
            pub_b = client(b)
            until(lambda: pub_b.publish("ph/x", b"risen", 1) and drain(back, b"risen"))
            close((back, pub_b))
            w.loop_stop()
            close((*subs, pub))
        finally:
            stop_nodes(procs)


def test_a_clean_stop_publishes_the_delayed_will_of_a_disconnected_session() -> None:
    """Node a (memory store) holds a persistent session whose connection was lost,
    with a will delayed by 600 s; a clean stop of a publishes that will (nothing would
    bring it back after a restart), and the subscriber on node b gets it. The
    session's store copies its writes to b and makes acknowledgements wait for the
    copy, but does not survive a restart: the two are separate questions."""
    need_etcd()
    with etcd_testing.EtcdServer() as etcd:
        procs = start_nodes(etcd, ("a", "b"))
        try:
            a, b = (procs[n][1] for n in ("a", "b"))
            sub = client(b)
            sub.subscribe("late/#", qos=1)
            assert sub.acks.get(timeout=WAIT) == "suback"
            probe = client(a)
            until(lambda: probe.publish("late/probe", b"p", 1) and drain(sub, b"p"))
            w = mqtt.Client(
                callback_api_version=CallbackAPIVersion.VERSION2,
                client_id="sleeper",
                protocol=mqtt.MQTTv5,
            )
            will_props = Properties(PacketTypes.WILLMESSAGE)
            will_props.WillDelayInterval = 600
            w.will_set("late/sleeper", b"bye", qos=1, properties=will_props)
            connected: queue.Queue[Any] = queue.Queue()
            w.on_connect = lambda *args: connected.put(True)
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
            w.connect(*a["mqtt.tcp"], clean_start=True, properties=props)
            w.loop_start()
            assert connected.get(timeout=WAIT)
            w.loop_stop()
            w.socket().close()  # lost without a DISCONNECT: the will is scheduled
            until(lambda: not api(a, "/api/v1/sessions/sleeper")["connected"])
            # Still delayed: a round trip through node a shows nothing came before it.
            until(lambda: probe.publish("late/probe", b"p2", 1) and drain(sub, b"p2"))
            probe.disconnect()
            probe.loop_stop()
            proc_a = procs["a"][0]
            proc_a.signal(15)
            proc_a.wait(15)
            got = sub.got.get(timeout=WAIT)
            assert (got.topic, got.payload) == ("late/sleeper", b"bye")
            sub.disconnect()
            sub.loop_stop()
        finally:
            stop_nodes(procs)


def test_a_node_that_lost_its_lease_stops_serving_its_sessions() -> None:
    """Node b frozen (SIGSTOP) longer than its lease: node a drops it; when b runs
    again it finds its lease gone and disconnects the clients whose sessions it
    owned (DISCONNECT 0x8E) instead of serving a stale ownership; the client then
    resumes its session on node a."""
    import signal

    need_etcd()
    with etcd_testing.EtcdServer() as etcd:
        procs = start_nodes(etcd, ("a", "b"), lease_ttl="2")
        try:
            a, b = procs["a"][1], procs["b"][1]
            events: queue.Queue[Any] = queue.Queue()
            stale = _persistent(b, "stale-" + uuid.uuid4().hex[:6], events)
            assert _event(events, "connack") is False
            stale.subscribe("st/#", qos=1)
            _event(events, "suback")
            cid = stale._client_id.decode()
            until(lambda: b"st/#" in (_etcd_get(etcd, "/fluxmq/sessionstate/" + cid) or b""))
            procs["b"][0].signal(signal.SIGSTOP)
            try:
                until(lambda: [n["node_id"] for n in api(a, "/api/v1/cluster")["nodes"]] == ["a"])
            finally:
                procs["b"][0].signal(signal.SIGCONT)
            assert _event(events, "disconnect") == 0x8E
            stale.loop_stop()
            again: queue.Queue[Any] = queue.Queue()
            pub = client(a)
            back = _persistent(a, cid, again)
            assert _event(again, "connack") is True
            until(lambda: pub.publish("st/x", b"here", 1) and drain(back, b"here"))
            close((back, pub))
        finally:
            stop_nodes(procs)


def test_a_sampled_trace_context_is_forwarded_to_the_other_node() -> None:
    """With traces on, the message forwarded to another node carries the sending
    node's ``publish`` span as its parent (same trace id, a new parent span id), so
    a subscriber on that node continues the broker's trace, not the client's."""
    pytest.importorskip("fluxmq_otel", reason="fluxmq-otel is not installed")
    need_etcd()
    trace_id, client_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    with etcd_testing.EtcdServer() as etcd:
        traces = {"FLUXMQ_OTEL__TRACES": "true", "FLUXMQ_OTEL__SAMPLE_RATE": "1.0"}
        procs = start_nodes(etcd, ("ta", "tb"), plugins="mqtt,etcd,otel", env=traces)
        try:
            a, b = procs["ta"][1], procs["tb"][1]
            pub, sub = client(a), client(b)
            try:
                sub.subscribe("cl/#", qos=1)
                assert sub.acks.get(timeout=WAIT) == "suback"
                until(lambda: pub.publish("cl/probe", b"p", 0) and _drain_probe(sub))
                props = Properties(PacketTypes.PUBLISH)
                props.UserProperty = [("traceparent", f"00-{trace_id}-{client_span}-01")]
                pub.publish("cl/traced", b"traced", 1, properties=props).wait_for_publish(WAIT)
                while True:
                    m = sub.got.get(timeout=WAIT)
                    if m.topic == "cl/traced":
                        break
                header = dict(m.properties.UserProperty)["traceparent"]
                _version, got_trace, parent, flags = header.split("-")
                assert (got_trace, flags) == (trace_id, "01")
                assert parent != client_span, "the broker's span, not the client's"
            finally:
                close((pub, sub))
        finally:
            stop_nodes(procs)


def test_a_killed_node_s_queue_and_in_flight_messages_resume_on_another_node() -> None:
    """A persistent session on node a with QoS 1 messages in flight (delivered,
    never acknowledged) and more queued while its client was away, all of them
    acknowledged to their publisher on node a; then node a is killed (kill -9).
    The client resumes on node c (node a's session replica is b, so c fetches the
    copy from b): session present, every message with its user properties, and
    its subscription works there."""
    need_etcd()
    with etcd_testing.EtcdServer() as etcd:
        procs = start_nodes(etcd, ("a", "b", "c"), lease_ttl="2")
        try:
            a, c = procs["a"][1], procs["c"][1]
            until(lambda: api(a, "/api/v1/cluster")["session_replication"]["replica"] == "b")
            cid = "survivor-" + uuid.uuid4().hex[:6]
            events: queue.Queue[Any] = queue.Queue()
            first = _persistent(a, cid, events)
            assert _event(events, "connack") is False
            first.subscribe("rp/#", qos=1)
            _event(events, "suback")
            pub = client(a)

            def send(payloads: list[bytes]) -> None:
                for payload in payloads:
                    props = Properties(PacketTypes.PUBLISH)
                    props.UserProperty = ("k", payload.decode())
                    pub.publish("rp/x", payload, 1, properties=props).wait_for_publish(WAIT)

            in_flight = [f"f{i}".encode() for i in range(10)]
            send(in_flight)
            # Delivered to the client (never acknowledged: manual_ack).
            seen = {first.got.get(timeout=WAIT).payload for _ in in_flight}
            assert seen == set(in_flight)
            first.disconnect()
            assert _event(events, "disconnect") == 0
            first.loop_stop()
            offline = [f"q{i}".encode() for i in range(15)]
            send(offline)  # every PUBACK came after the copy reached node b
            pub.disconnect()
            pub.loop_stop()
            procs["a"][0].kill()  # kill -9
            until(lambda: [n["node_id"] for n in api(c, "/api/v1/cluster")["nodes"]] == ["b", "c"])
            again: queue.Queue[Any] = queue.Queue()
            back = _persistent(c, cid, again)
            try:
                assert _event(again, "connack") is True
                want = set(in_flight) | set(offline)
                received = _take_all(back, want)
                assert set(received) == want
                assert received[b"f3"].dup  # resent in-flight delivery
                assert ("k", "q7") in received[b"q7"].properties.UserProperty
                status = api(c, "/api/v1/cluster")["session_replication"]
                assert status["resumed"] == 1
                pub_b = client(procs["b"][1])
                until(lambda: pub_b.publish("rp/after", b"after", 1) and drain(back, b"after"))
                pub_b.disconnect()
                pub_b.loop_stop()
            finally:
                back.disconnect()
                back.loop_stop()
        finally:
            stop_nodes(procs)


def _queue_consumer(bound: dict[str, tuple[str, int]], topic: str, group: str) -> Any:
    """A 5.0 client in consumer group ``group`` of ``topic`` ($queue/...), QoS 1,
    acknowledging each delivery (PUBACK) as paho does by itself."""
    c = client(bound)
    props = Properties(PacketTypes.SUBSCRIBE)
    props.UserProperty = ("consumer-group", group)
    c.subscribe(topic, qos=1, properties=props)
    assert c.acks.get(timeout=WAIT) == "suback"
    return c


def test_a_queue_is_published_to_and_consumed_from_another_node(cluster: Any) -> None:
    """Queue ``jobs`` is created on node a (its owner, recorded in etcd). A consumer
    on node b and one on node a share group ``workers``; QoS 1 publishes to
    ``$queue/jobs/...`` from node c are acknowledged once appended on a, and every
    message reaches exactly one of the consumers (with its queue metadata);
    PUBACKs from node b settle the deliveries on node a (nothing stays pending)."""
    a, b, c = (cluster[n][1] for n in NODES)
    name = "jobs" + uuid.uuid4().hex[:6]
    seed = client(a)
    seed.publish(f"$queue/{name}/seed", b"seed", 1).wait_for_publish(WAIT)
    for x in (b, c):
        until(lambda x=x: api(x, "/api/v1/cluster")["queue_owners"].get(name) == "a")
    local = _queue_consumer(a, f"$queue/{name}/#", "workers")
    remote = _queue_consumer(b, f"$queue/{name}/#", "workers")
    until(lambda: api(a, "/api/v1/cluster")["queues"]["consumers_for_other_nodes"] == 1)
    pub = client(c)
    sent = {f"job{i}".encode() for i in range(30)}
    for payload in sorted(sent):
        pub.publish(f"$queue/{name}/work", payload, 1).wait_for_publish(WAIT)
    got: dict[bytes, str] = {}
    deadline = time.monotonic() + WAIT
    while (set(got) - {b"seed"}) != sent and time.monotonic() < deadline:
        for who, consumer in (("a", local), ("b", remote)):
            try:
                m = consumer.got.get(timeout=0.1)
            except queue.Empty:
                continue
            assert m.payload not in got, f"{m.payload!r} delivered twice"
            got[m.payload] = who
            if who == "b":
                fields = dict(m.properties.UserProperty)
                assert fields["group-id"] == "workers"
                assert fields["message-id"].startswith(name + ":")
    assert set(got) - {b"seed"} == sent
    assert "b" in got.values() and "a" in got.values()

    def settled() -> bool:
        info = api(a, f"/api/v1/queues/{name}")
        groups = {g["name"]: g for g in info["groups"]}
        return groups["workers"]["pending"] == 0

    until(settled)
    status = api(c, "/api/v1/cluster")["queues"]
    assert status["forwarded_appends"] >= 30
    close((seed, local, remote, pub))


def test_an_amqp_consumer_on_another_node_consumes_a_queue(cluster: Any) -> None:
    """Queue created on node a by an MQTT publish; an AMQP 0.9.1 consumer on node b
    (declaring it: adopted, it lives on a) receives what MQTT publishes to it on
    node c and acknowledges it (settled on node a); a message it rejects with
    requeue goes back to the owner and comes again."""
    a, b, c = (cluster[n][1] for n in NODES)
    name = "amqpq" + uuid.uuid4().hex[:6]
    seed = client(a)
    seed.publish(f"$queue/{name}/seed", b"seed", 1).wait_for_publish(WAIT)
    until(lambda: api(b, "/api/v1/cluster")["queue_owners"].get(name) == "a")
    conn = pika.BlockingConnection(pika.ConnectionParameters(*b["amqp091.bind"]))
    try:
        ch = conn.channel()
        ch.queue_declare(name, durable=True)
        got: list[tuple[bytes, int, bool]] = []
        ch.basic_qos(prefetch_count=10)
        ch.basic_consume(
            name,
            lambda _ch, method, _p, body: got.append(
                (body, method.delivery_tag, method.redelivered)
            ),
        )
        until(lambda: api(a, "/api/v1/cluster")["queues"]["consumers_for_other_nodes"] >= 1)
        pub = client(c)
        pub.publish(f"$queue/{name}/k", b"first", 1).wait_for_publish(WAIT)

        def receive(payload: bytes, after: int = 0) -> tuple[bytes, int, bool] | None:
            conn.process_data_events(time_limit=0.1)
            return next((g for g in got if g[0] == payload and g[1] > after), None)

        body, tag, _redelivered = until(lambda: receive(b"first"))
        ch.basic_nack(tag, requeue=True)
        _body, tag2, redelivered = until(lambda: receive(b"first", tag))
        assert redelivered
        ch.basic_ack(tag2)
        acked = {tag, tag2}

        def settled() -> bool:
            conn.process_data_events(time_limit=0.05)
            for _b, t, _r in got:  # the seed, if this group got it
                if t not in acked:
                    ch.basic_ack(t)
                    acked.add(t)
            info = api(a, f"/api/v1/queues/{name}")
            return all(g["pending"] == 0 for g in info["groups"])

        until(settled)
        pub.disconnect()
        pub.loop_stop()
    finally:
        conn.close()
        seed.disconnect()
        seed.loop_stop()


def test_brokers_keep_working_when_the_etcd_leader_dies() -> None:
    """A three-member etcd whose leader is every node's first endpoint is killed
    under traffic: both broker nodes move to another member, stay ready, keep their
    leases (nobody drops out), and with real clients: a subscription made afterwards
    on b gets publishes from a, and a persistent session moves from a to b (a
    compare-and-swap through the new leader) with its queued message."""
    need_etcd()
    with etcd_testing.EtcdServer(members=3) as etcd:
        leader = etcd.leader()
        endpoints = [leader.endpoint] + [e for e in etcd.endpoints if e != leader.endpoint]
        procs = start_nodes(etcd, ("a", "b"), lease_ttl="3", endpoints=",".join(endpoints))
        try:
            a, b = procs["a"][1], procs["b"][1]
            cid = "ha-" + uuid.uuid4().hex[:6]
            _park(a, cid, "ha/s/#")
            pub = client(a)
            sub = client(b)
            sub.subscribe("ha/live/#", qos=1)
            assert sub.acks.get(timeout=WAIT) == "suback"
            until(lambda: pub.publish("ha/live/x", b"before", 1) and drain(sub, b"before"))
            leader.kill()
            # Connected clients go on at once: nothing here waits for etcd.
            pub.publish("ha/s/queued", b"kept", 1).wait_for_publish(WAIT)
            pub.publish("ha/live/x", b"during", 1).wait_for_publish(WAIT)
            until(lambda: drain(sub, b"during"))
            for x in (a, b):
                until(lambda x=x: _ready(x) == 200, 30)
                assert [n["node_id"] for n in api(x, "/api/v1/cluster")["nodes"]] == ["a", "b"]
            # New subscriptions and sessions go through the surviving members.
            late = client(b)
            late.subscribe("ha/late/#", qos=1)
            assert late.acks.get(timeout=WAIT) == "suback"
            until(lambda: pub.publish("ha/late/x", b"late", 1) and drain(late, b"late"))
            late.disconnect()
            late.loop_stop()
            again: queue.Queue[Any] = queue.Queue()
            moved = _persistent(b, cid, again)
            try:
                assert _event(again, "connack") is True
                m = moved.got.get(timeout=WAIT)
                assert m.payload == b"kept"
                moved.ack(m.mid, m.qos)
            finally:
                moved.disconnect()
                moved.loop_stop()
            close((pub, sub))
        finally:
            stop_nodes(procs)


def test_no_acknowledged_message_is_lost_while_a_session_moves(cluster: Any) -> None:
    """A publisher on node a keeps publishing QoS 1 messages (each waited for: all
    are acknowledged) while the subscriber's persistent session moves from node a
    to node b. Every message reaches the client on node b: those node a had taken
    move with the session, those published on a before node a routes to b directly
    are relayed by a to the session on b."""
    import threading

    a, b, _c = (cluster[n][1] for n in NODES)
    cid = "gap-" + uuid.uuid4().hex[:6]
    old_events: queue.Queue[Any] = queue.Queue()
    old = _persistent(a, cid, old_events)
    assert _event(old_events, "connack") is False
    old.subscribe("gap/#", qos=1)
    _event(old_events, "suback")
    pub = client(a)
    total = 400
    acked: list[bytes] = []
    started = threading.Event()

    def publish_all() -> None:
        deadline = time.monotonic() + 60
        for i in range(total):
            if time.monotonic() > deadline:
                break
            payload = f"g{i}".encode()
            pub.publish("gap/x", payload, 1).wait_for_publish(WAIT)
            acked.append(payload)
            if i == 50:
                started.set()

    sender = threading.Thread(target=publish_all, daemon=True)
    sender.start()
    assert started.wait(WAIT)
    new_events: queue.Queue[Any] = queue.Queue()
    new = _persistent(b, cid, new_events)
    try:
        assert _event(new_events, "connack") is True
        sender.join(60)
        assert len(acked) == total
        received = _take_all(new, set(acked))
        assert set(acked) - set(received) == set()
    finally:
        close((old, new, pub))


def test_a_node_killed_and_restarted_under_its_id_gets_its_sessions_back() -> None:
    """Node a (memory store) holds a persistent session with queued QoS 1 messages,
    copied to node b; a is killed (kill -9) and restarted under the same id at
    once, before its lease expired. The client reconnecting to a gets session
    present and its queued messages: the restarted node resumes what its earlier run
    held from b's copy (which a reset from the new run does not wipe)."""
    need_etcd()
    with etcd_testing.EtcdServer() as etcd:
        procs = start_nodes(etcd, ("a", "b"), lease_ttl="10")
        try:
            a = procs["a"][1]
            until(lambda: api(a, "/api/v1/cluster")["session_replication"]["replica"] == "b")
            cid = "phoenix-" + uuid.uuid4().hex[:6]
            _park(a, cid, "px/#")
            pub = client(a)
            sent = [f"p{i}".encode() for i in range(10)]
            for payload in sent:
                pub.publish("px/x", payload, 1).wait_for_publish(WAIT)
            pub.loop_stop()
            proc_a = procs["a"][0]
            proc_a.kill()
            proc_a.wait(15)
            for var in proc_a._ephemeral_vars:
                proc_a.env[var] = "127.0.0.1:0"
            a = proc_a.start(timeout=30)
            procs["a"] = (proc_a, a)
            until(lambda: api(a, "/api/v1/cluster")["ready"])
            again: queue.Queue[Any] = queue.Queue()
            back = _persistent(a, cid, again)
            try:
                assert _event(again, "connack") is True
                assert set(_take_all(back, set(sent))) == set(sent)
            finally:
                back.disconnect()
                back.loop_stop()
        finally:
            stop_nodes(procs)
