"""The MQTT face of the queue manager (``fluxmq_mqtt/queues.py``) with paho 5.0 and
3.1.1 clients: work queues, groups, acknowledgement by PUBACK, the control topics,
dead letters, stream cursors, rejections, persistent sessions and a restart."""

from __future__ import annotations

import json
import queue as stdqueue
import time
from importlib.metadata import entry_points
from typing import Any

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties as PahoProperties

WAIT = 5.0


def sub_props(**user: str) -> PahoProperties:
    p = PahoProperties(PacketTypes.SUBSCRIBE)
    p.UserProperty = [(k.replace("_", "-"), v) for k, v in user.items()]
    return p


def uprops(m: Any) -> dict[str, str]:
    props = getattr(m, "properties", None)
    return dict(getattr(props, "UserProperty", None) or [])


def collect(client: Any, n: int, timeout: float = WAIT) -> list[Any]:
    return [client.get(timeout) for _ in range(n)]


def collect_from(clients: list[Any], n: int, timeout: float = WAIT) -> list[list[Any]]:
    """``n`` messages in all, from whichever of ``clients`` they reach (bounded);
    one list per client."""
    got: list[list[Any]] = [[] for _ in clients]
    deadline = time.monotonic() + timeout
    while sum(map(len, got)) < n:
        assert time.monotonic() < deadline, f"{sum(map(len, got))} of {n} messages arrived"
        for out, c in zip(got, clients, strict=True):
            try:
                out.append(c.get(0.01))
            except stdqueue.Empty:
                pass
    return got


def info(broker: Any, name: str) -> Any:
    return broker.call_soon(lambda: broker.context.queues.info(name))


def wait_for(broker: Any, predicate: Any, timeout: float = WAIT) -> None:
    """Poll ``predicate`` (which reads broker state through ``broker.call_soon``)
    until it holds; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def dispatched(broker: Any) -> None:
    """Let the queue dispatchers (tasks of their own) finish the work they have,
    bounded: a client's round trip afterwards (``nothing()``) then covers every
    delivery they would make."""
    broker.call(broker.context.queues.wait_idle())


@pytest.fixture
def qbroker(fluxmq_broker_factory):
    return fluxmq_broker_factory(
        plugins=["mqtt"],
        config={
            "queues": {
                "events": {"type": "stream"},
                "small": {"max_depth": 2},
                "tiny": {"max_message_size": 4},
                "cap": {"topics": ["sensors/#"]},
            },
        },
    )


def test_work_queue_is_shared_between_the_consumers_of_a_group(qbroker, clients):
    port = qbroker.port()
    a = clients(port, "worker-a")
    b = clients(port, "worker-b")
    for c in (a, b):
        assert [
            rc.value
            for rc in c.subscribe(
                "$queue/jobs/#", 1, properties=sub_props(consumer_group="workers")
            )
        ] == [1]
    pub = clients(port, "producer")
    for i in range(20):
        info_ = pub.publish(f"$queue/jobs/task/{i % 3}", f"job-{i}".encode(), qos=1)
        assert info_.is_published()
    got_a, got_b = collect_from([a, b], 20)
    dispatched(qbroker)
    a.nothing()
    b.nothing()
    assert got_a and got_b, (len(got_a), len(got_b))
    payloads = sorted(m.payload for m in got_a + got_b)
    assert payloads == sorted(f"job-{i}".encode() for i in range(20))
    m = got_a[0]
    props = uprops(m)
    assert m.topic.startswith("$queue/jobs/task/")
    assert props["group-id"] == "workers"
    assert props["queue"] == "jobs"
    assert props["message-id"] == f"jobs:{props['offset']}"
    assert props["delivery-count"] == "1"
    # paho PUBACKs every delivery: nothing stays pending
    wait_for(qbroker, lambda: info(qbroker, "jobs").groups[0].pending == 0)
    assert info(qbroker, "jobs").type == "ephemeral"  # created by the first publish


def test_groups_fan_out_and_3_1_1_clients_consume_in_their_client_id_group(qbroker, clients):
    port = qbroker.port()
    g1 = clients(port, "fan-1")
    g2 = clients(port, "fan-2", 4)
    g1.subscribe("$queue/fan/#", 1, properties=sub_props(consumer_group="one"))
    g2.subscribe("$queue/fan/#", 1)
    pub = clients(port, "fan-pub", 4)
    for i in range(5):
        pub.publish("$queue/fan/x", b"%d" % i, qos=1)
    assert sorted(m.payload for m in collect(g1, 5)) == [b"%d" % i for i in range(5)]
    assert sorted(m.payload for m in collect(g2, 5)) == [b"%d" % i for i in range(5)]
    groups = {g.name for g in info(qbroker, "fan").groups}
    assert groups == {"one", "fan-2"}


def test_a_pattern_filters_by_routing_key_in_its_own_group(qbroker, clients):
    port = qbroker.port()
    c = clients(port, "pat")
    c.subscribe("$queue/orders/eu/+", 1, properties=sub_props(consumer_group="g"))
    pub = clients(port, "pat-pub")
    for key in ("eu/de", "us/ny", "eu/fr"):
        pub.publish(f"$queue/orders/{key}", key.encode(), qos=1)
    got = collect(c, 2)
    assert sorted(m.payload for m in got) == [b"eu/de", b"eu/fr"]
    assert uprops(got[0])["group-id"] == "g@eu/+"
    dispatched(qbroker)
    c.nothing()


def test_unacknowledged_deliveries_go_to_another_consumer_when_one_disconnects(qbroker, clients):
    port = qbroker.port()
    lazy = clients(port, "lazy")
    lazy.client.manual_ack_set(True)
    lazy.subscribe("$queue/steal/#", 1, properties=sub_props(consumer_group="g"))
    pub = clients(port, "steal-pub")
    for i in range(3):
        pub.publish("$queue/steal/k", b"%d" % i, qos=1)
    assert len(collect(lazy, 3)) == 3  # never PUBACKed
    assert info(qbroker, "steal").groups[0].pending == 3
    other = clients(port, "other")
    other.subscribe("$queue/steal/#", 1, properties=sub_props(consumer_group="g"))
    dispatched(qbroker)
    other.nothing()
    lazy.drop()
    got = collect(other, 3)
    assert sorted(m.payload for m in got) == [b"0", b"1", b"2"]
    assert {uprops(m)["delivery-count"] for m in got} == {"2"}


def test_nack_redelivers_and_a_late_puback_of_the_first_delivery_settles_nothing(qbroker, clients):
    port = qbroker.port()
    c = clients(port, "nacker")
    c.client.manual_ack_set(True)
    c.subscribe("$queue/retry/#", 1, properties=sub_props(consumer_group="g"))
    pub = clients(port, "retry-pub")
    pub.publish("$queue/retry/k", b"again", qos=1)
    first = c.get()
    mid = uprops(first)["message-id"]
    info_ = c.publish(
        "$queue/retry/$nack",
        b"",
        qos=1,
        props={"UserProperty": [("message-id", mid), ("group-id", "g")]},
    )
    assert info_.is_published()
    c.client.ack(first.mid, 1)  # late PUBACK of the first delivery
    second = c.get()
    assert second.payload == b"again"
    assert uprops(second)["delivery-count"] == "2"
    assert (
        info(qbroker, "retry").groups[0].pending == 1
    )  # still pending: not acked by the late PUBACK
    c.client.ack(second.mid, 1)
    wait_for(qbroker, lambda: info(qbroker, "retry").groups[0].pending == 0)


def test_reject_dead_letters_and_the_dlq_is_consumable_as_a_queue(qbroker, clients):
    port = qbroker.port()
    c = clients(port, "rejecter")
    c.client.manual_ack_set(True)
    c.subscribe("$queue/bad/#", 1)
    dead = clients(port, "dlq-reader")
    dead.subscribe("$dlq/bad/#", 1)
    pub = clients(port, "bad-pub")
    pub.publish("$queue/bad/item", b"poison", qos=1)
    m = c.get()
    # 5.0 client, but with the JSON body (what 3.1.1 clients use); the group is its own
    c.publish("$queue/bad/$reject", json.dumps({"message_id": uprops(m)["message-id"]}), qos=1)
    d = dead.get()
    assert d.payload == b"poison"
    assert d.topic == "$dlq/bad/item"
    props = uprops(d)
    assert props["_dlq_reason"] == "rejected"
    assert props["_dlq_original_queue"] == "bad"
    assert props["queue"] == "$dlq/bad"
    wait_for(qbroker, lambda: info(qbroker, "bad").groups[0].pending == 0)


def test_3_1_1_control_topics_take_a_json_body(qbroker, clients):
    port = qbroker.port()
    c = clients(port, "v3-worker", 4)
    c.client.manual_ack_set(True)
    c.subscribe("$queue/v3/#", 1)
    pub = clients(port, "v3-pub", 4)
    pub.publish("$queue/v3/a", b"one", qos=1)
    m = c.get()
    off = info(qbroker, "v3").first_offset
    c.publish(
        "$queue/v3/$nack", json.dumps({"message_id": f"v3:{off}", "group_id": "v3-worker"}), qos=1
    )
    again = c.get()
    assert again.payload == b"one"
    c.publish("$queue/v3/$ack", json.dumps({"message_id": f"v3:{off}"}), qos=1)
    wait_for(qbroker, lambda: info(qbroker, "v3").groups[0].pending == 0)
    assert m.payload == b"one"


def test_qos0_subscriptions_are_auto_acknowledged(qbroker, clients):
    port = qbroker.port()
    c = clients(port, "q0")
    c.client.manual_ack_set(True)
    c.subscribe("$queue/auto/#", 0)
    pub = clients(port, "q0-pub")
    for i in range(3):
        pub.publish("$queue/auto/k", b"%d" % i, qos=1)
    assert len(collect(c, 3)) == 3
    wait_for(qbroker, lambda: info(qbroker, "auto").groups[0].pending == 0)


def test_stream_cursors_replay_from_first_and_from_an_offset(qbroker, clients):
    port = qbroker.port()
    pub = clients(port, "ev-pub")
    for i in range(5):
        pub.publish("$queue/events/e", b"%d" % i, qos=1)
    first = clients(port, "ev-first")
    first.subscribe(
        "$queue/events/#", 1, properties=sub_props(consumer_group="replay", cursor="first")
    )
    got = collect(first, 5)
    assert [m.payload for m in got] == [b"0", b"1", b"2", b"3", b"4"]
    assert [uprops(m)["x-stream-offset"] for m in got] == ["0", "1", "2", "3", "4"]
    mid = clients(port, "ev-mid")
    mid.subscribe(
        "$queue/events/#", 1, properties=sub_props(consumer_group="late", cursor="offset:3")
    )
    assert [m.payload for m in collect(mid, 2)] == [b"3", b"4"]
    last = clients(port, "ev-last")
    last.subscribe("$queue/events/#", 1, properties=sub_props(consumer_group="new", cursor="last"))
    dispatched(qbroker)
    last.nothing()
    pub.publish("$queue/events/e", b"5", qos=1)
    assert last.get().payload == b"5"
    wait_for(
        qbroker,
        lambda: {g.name: g.committed for g in info(qbroker, "events").groups}["replay"] == 6,
    )


def test_rejections_carry_5_0_reason_codes(qbroker, clients):
    port = qbroker.port()
    pub = clients(port, "rc-pub")
    for _ in range(2):
        assert pub.publish("$queue/small/x", b"a", qos=1).is_published()
    codes = []
    for topic, payload in (("$queue/small/x", b"a"), ("$queue/tiny/x", b"too large")):
        pub.publish(topic, payload, qos=1)
    while len(codes) < 4:
        codes.append(pub.pubacks.get(timeout=WAIT)[1].value)
    assert codes == [0, 0, 0x97, 0x80]
    assert info(qbroker, "small").depth == 2
    assert info(qbroker, "tiny").depth == 0


def test_captured_publishes_arrive_with_their_source_topic(qbroker, clients):
    port = qbroker.port()
    c = clients(port, "cap-reader")
    c.subscribe("$queue/cap/#", 1)
    pub = clients(port, "cap-pub")
    pub.publish("sensors/kitchen/temp", b"21.5", qos=1)
    m = c.get()
    assert m.topic == "$queue/cap/sensors/kitchen/temp"
    assert uprops(m)["x-source-topic"] == "sensors/kitchen/temp"


def test_persistent_session_rejoins_its_group_on_reconnect(qbroker, clients):
    port = qbroker.port()
    c = clients(port, "sticky", connect_props={"SessionExpiryInterval": 300}, clean=False)
    c.subscribe("$queue/later/#", 1, properties=sub_props(consumer_group="keep"))
    c.close()
    wait_for(qbroker, lambda: info(qbroker, "later").consumers == 0)
    pub = clients(port, "later-pub")
    for i in range(3):
        pub.publish("$queue/later/k", b"%d" % i, qos=1)
    back = clients(port, "sticky", connect_props={"SessionExpiryInterval": 300}, clean=False)
    got = collect(back, 3)
    assert sorted(m.payload for m in got) == [b"0", b"1", b"2"]
    assert {uprops(m)["group-id"] for m in got} == {"keep"}


def test_unsubscribe_leaves_the_group(qbroker, clients):
    port = qbroker.port()
    c = clients(port, "leaver")
    c.subscribe("$queue/gone/#", 1)
    assert info(qbroker, "gone").consumers == 1
    c.client.unsubscribe("$queue/gone/#")
    wait_for(qbroker, lambda: info(qbroker, "gone").consumers == 0)


BADGER = "badgerlike" in {ep.name for ep in entry_points(group="fluxmq.queue_log")}


@pytest.mark.skipif(not BADGER, reason="the durable badgerlike driver is not installed")
def test_durable_queue_publishes_survive_a_restart(fluxmq_broker_factory, clients):
    broker = fluxmq_broker_factory(plugins=["mqtt"], config={"queues": {"durable": {}}})
    assert type(broker.context.queue_log).__name__ == "BadgerlikeQueueLog"
    port = broker.port()
    pub = clients(port, "d-pub")
    for i in range(10):
        assert pub.publish("$queue/durable/k", b"%d" % i, qos=1).is_published()
    pub.close()
    broker.restart()
    c = clients(broker.port(), "d-reader")
    c.subscribe("$queue/durable/#", 1)
    assert sorted(m.payload for m in collect(c, 10)) == sorted(b"%d" % i for i in range(10))


# -- one core path for every protocol; the silent defaults made visible -----------------


def http(broker: Any, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", broker.port("http.bind"), timeout=WAIT)
    conn.request(method, path, body=None if body is None else json.dumps(body).encode())
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, json.loads(data) if data else None


def http_publish(broker: Any, topic: str, payload: bytes, **extra: Any) -> tuple[int, Any]:
    import base64

    body = {"topic": topic, "payload": base64.b64encode(payload).decode(), **extra}
    return http(broker, "POST", "/publish", body)


def test_http_publish_to_a_queue_topic_reaches_an_mqtt_queue_consumer(qbroker, clients):
    port = qbroker.port()
    worker = clients(port, "http-worker")
    assert [rc.value for rc in worker.subscribe("$queue/web/#", 1)] == [1]
    status, body = http_publish(qbroker, "$queue/web/orders/1", b"from http", qos=1)
    assert (status, body) == (200, {"status": "ok", "queue": "web", "offset": 0})
    m = worker.get()
    assert (m.topic, m.payload) == ("$queue/web/orders/1", b"from http")
    assert uprops(m)["message-id"] == "web:0"
    # the same queue, whichever protocol appended: MQTT's publish is offset 1
    assert clients(port, "mqtt-pub").publish("$queue/web/orders/2", b"from mqtt", 1).is_published()
    assert worker.get().payload == b"from mqtt"
    # refusals come back as HTTP statuses, typed in the core, not parsed from text
    assert http_publish(qbroker, "$queue/small/x", b"1")[0] == 200
    assert http_publish(qbroker, "$queue/small/x", b"2")[0] == 200
    assert http_publish(qbroker, "$queue/small/x", b"3")[0] == 503  # max_depth 2
    assert http_publish(qbroker, "$queue/tiny/x", b"too large")[0] == 413
    assert http_publish(qbroker, "$queue/web/x/$ack", b"")[0] == 400
    assert http_publish(qbroker, "$dlq/nothing/x", b"")[0] == 404
    assert info(qbroker, "small").depth == 2


def test_auto_create_none_refuses_undeclared_queues_in_each_protocol(
    fluxmq_broker_factory, clients
):
    b = fluxmq_broker_factory(
        plugins=["mqtt"],
        config={"queue_manager": {"auto_create": "none"}, "queues": {"known": {}}},
    )
    port = b.port()
    pub = clients(port, "none-pub")
    codes = []
    for topic in ("$queue/unknown/x", "$queue/known/x"):
        pub.publish(topic, b"m", qos=1)
        codes.append(pub.pubacks.get(timeout=WAIT)[1].value)
    assert codes == [0x90, 0]  # Topic Name invalid for the undeclared queue
    status, body = http_publish(b, "$queue/unknown/x", b"m")
    assert status == 404 and "auto_create" in body["error"]
    assert http_publish(b, "$queue/known/x", b"m")[0] == 200
    assert [rc.value for rc in clients(port, "none-sub").subscribe("$queue/unknown/#", 1)] == [0x80]
    assert b.call_soon(b.context.queues.get, "unknown") is None
    assert info(b, "known").depth == 2


def test_auto_create_durable_makes_a_classic_queue(fluxmq_broker_factory, clients):
    b = fluxmq_broker_factory(
        plugins=["mqtt"], config={"queue_manager": {"auto_create": "durable"}}
    )
    assert http_publish(b, "$queue/kept/x", b"m")[0] == 200
    assert info(b, "kept").type == "classic"
    assert http(b, "GET", "/api/v1/stats")[1]["broker"]["ephemeral_queues_created"] == 0


def test_an_ephemeral_queue_is_logged_once_and_counted(qbroker, clients, caplog):
    pub = clients(qbroker.port(), "eph-pub")
    with caplog.at_level("WARNING", logger="fluxmq.queues"):
        for i in range(3):
            assert pub.publish("$queue/scratch/x", b"%d" % i, qos=1).is_published()
    lines = [r.getMessage() for r in caplog.records if "scratch" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "EPHEMERAL" in lines[0] and "[queues.scratch]" in lines[0]
    assert 'auto_create = "durable"' in lines[0]
    stats = http(qbroker, "GET", "/api/v1/stats")[1]
    assert stats["broker"]["ephemeral_queues_created"] == 1
    assert info(qbroker, "scratch").type == "ephemeral"


def test_offline_session_drops_are_counted_per_client_and_shown(
    fluxmq_broker_factory, clients, caplog
):
    b = fluxmq_broker_factory(plugins=["mqtt"], config={"mqtt": {"max_queued_messages": 3}})
    port = b.port()
    sub = clients(port, "sleeper", connect_props={"SessionExpiryInterval": 3600}, clean=False)
    sub.subscribe("news/#", 1)
    sub.close()
    wait_for(b, lambda: b.call_soon(lambda: b.context.stats.clients_connected) == 0)
    pub = clients(port, "news-pub")
    with caplog.at_level("WARNING", logger="fluxmq.mqtt"):
        for i in range(5):
            assert pub.publish("news/a", b"%d" % i, qos=1).is_published()
    lines = [r.getMessage() for r in caplog.records if "max_queued_messages" in r.getMessage()]
    assert len(lines) == 1 and "'sleeper': 1" in lines[0], lines  # then rate-limited
    assert http(b, "GET", "/api/v1/stats")[1]["broker"]["session_queue_dropped"] == 2
    session = http(b, "GET", "/api/v1/sessions/sleeper")[1]
    assert session["extra"]["queue_dropped"] == 2
    back = clients(port, "sleeper", connect_props={"SessionExpiryInterval": 3600}, clean=False)
    assert [back.get().payload for _ in range(3)] == [b"2", b"3", b"4"]  # the oldest went


def test_a_failed_append_is_0x80_for_5_0_and_closes_3_1_1(qbroker, clients):
    import asyncio

    port = qbroker.port()
    queues = qbroker.context.queues

    def failing(message: Any) -> Any:
        fut = asyncio.get_running_loop().create_future()
        fut.set_exception(OSError("disk gone"))
        return fut

    v5, v4 = clients(port, "fail-5"), clients(port, "fail-4", 4)
    qbroker.call_soon(setattr, queues, "publish", failing)
    try:
        v5.publish("$queue/f/x", b"m", qos=1)
        assert v5.pubacks.get(timeout=WAIT)[1].value == 0x80
        v4.client.publish("$queue/f/x", b"m", qos=1)
        v4.disconnects.get(timeout=WAIT)  # no negative PUBACK in 3.1.1: closed, resent later
        assert v4.pubacks.empty()
    finally:
        qbroker.call_soon(delattr, queues, "publish")
