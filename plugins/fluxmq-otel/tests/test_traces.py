"""Spans on the publish path, checked with the SDK's in-memory exporter: the tree
publish -> route -> deliver (one per subscriber) with its attributes, and W3C trace context carried from a
client's MQTT 5 user properties or AMQP headers to the subscriber of any protocol."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pika
import pytest
from fluxmq_otel.testing import PARENT_ID, TRACE_ID, TRACEPARENT, WAIT, subscribe, traced_broker
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fluxmq_core.testing.broker import BrokerThread


@pytest.fixture(scope="module")
def traced() -> Iterator[tuple[BrokerThread, InMemorySpanExporter]]:
    with traced_broker(["mqtt", "amqp091", "otel"]) as pair:
        yield pair


def _props(**user: str) -> Properties:
    p = Properties(PacketTypes.PUBLISH)
    p.UserProperty = list(user.items())
    return p


def _wait(got: list[Any], n: int = 1) -> None:
    tick = threading.Event()
    for _ in range(int(WAIT / 0.01)):
        if len(got) >= n:
            return
        tick.wait(0.01)
    raise AssertionError(f"expected {n} message(s), got {len(got)}")


def _tree(spans: tuple[ReadableSpan, ...], trace_id: int) -> dict[str, ReadableSpan]:
    mine = [s for s in spans if s.context.trace_id == trace_id]
    by_name = {s.name: s for s in mine}
    assert len(by_name) == len(mine), [s.name for s in mine]
    return by_name


def _spans(spans: tuple[ReadableSpan, ...], trace_id: int) -> dict[str, list[ReadableSpan]]:
    """The spans of one trace by name (several ``deliver`` spans per publish)."""
    out: dict[str, list[ReadableSpan]] = {}
    for s in spans:
        if s.context.trace_id == trace_id:
            out.setdefault(s.name, []).append(s)
    return out


def _assert_tree(by_name: dict[str, list[ReadableSpan]], deliveries: int) -> None:
    """One publish, one route under it, ``deliveries`` deliver spans under route."""
    assert len(by_name["publish"]) == len(by_name["route"]) == 1, by_name
    publish, route = by_name["publish"][0], by_name["route"][0]
    assert route.parent.span_id == publish.context.span_id
    assert len(by_name.get("deliver", [])) == deliveries
    for d in by_name.get("deliver", []):
        assert d.parent.span_id == route.context.span_id
        assert route.start_time <= d.start_time <= d.end_time <= route.end_time
    assert publish.start_time <= route.start_time <= route.end_time <= publish.end_time


def _user_props(msg: Any) -> dict[str, str]:
    return dict(getattr(msg.properties, "UserProperty", []) or [])


def test_mqtt_to_mqtt_span_tree_and_propagation(traced, mqtt_client) -> None:
    b, exporter = traced
    exporter.clear()
    sub = mqtt_client(b, "tr-sub")
    got = subscribe(sub, "tr/mqtt", qos=1)
    pub = mqtt_client(b, "tr-pub")
    pub.publish(
        "tr/mqtt", b"hello", qos=1, properties=_props(traceparent=TRACEPARENT, app="x")
    ).wait_for_publish(WAIT)
    _wait(got)
    spans = _tree(exporter.get_finished_spans(), int(TRACE_ID, 16))
    assert set(spans) == {"publish", "route", "deliver"}
    _assert_tree(_spans(exporter.get_finished_spans(), int(TRACE_ID, 16)), 1)
    publish, route, deliver = spans["publish"], spans["route"], spans["deliver"]
    # The client's span is the parent of the broker's publish span.
    assert publish.parent is not None and publish.parent.span_id == int(PARENT_ID, 16)
    assert route.attributes["fluxmq.matched_subscribers"] == 1
    assert route.attributes["fluxmq.deliveries"] == 1
    assert "fluxmq.share_groups" not in route.attributes
    assert "fluxmq.cluster.forwarded_nodes" not in route.attributes
    assert publish.attributes["fluxmq.protocol"] == "mqtt"
    assert publish.attributes["fluxmq.client_id"] == "tr-pub"
    assert publish.attributes["messaging.destination.name"] == "tr/mqtt"
    assert publish.attributes["fluxmq.qos"] == 1
    assert publish.attributes["messaging.message.body.size"] == 5
    assert publish.attributes["fluxmq.deliveries"] == 1
    assert deliver.attributes["fluxmq.protocol"] == "mqtt"
    assert deliver.attributes["fluxmq.client_id"] == "tr-sub"
    assert deliver.attributes["fluxmq.qos"] == 1
    # The subscriber sees the same trace, with the broker's publish span as parent,
    # and the other user properties untouched.
    props = _user_props(got[0])
    assert props["app"] == "x"
    version, trace_id, parent_id, flags = props["traceparent"].split("-")
    assert trace_id == TRACE_ID
    assert int(parent_id, 16) == publish.context.span_id
    assert flags == "01"


def test_fan_out_is_a_deliver_span_per_subscriber_and_share_member(traced, mqtt_client) -> None:
    b, exporter = traced
    subs = [mqtt_client(b, f"tr-fan{i}") for i in range(3)]
    got = [subscribe(c, "tr/fan", qos=i % 2) for i, c in enumerate(subs)]
    members = [mqtt_client(b, f"tr-fanm{i}") for i in range(2)]
    shared = [subscribe(c, "$share/fg/tr/fan", qos=1) for c in members]
    exporter.clear()
    pub = mqtt_client(b, "tr-fanpub")
    pub.publish("tr/fan", b"x", qos=1, properties=_props(traceparent=TRACEPARENT)).wait_for_publish(
        WAIT
    )
    for g in got:
        _wait(g)
    by_name = _spans(exporter.get_finished_spans(), int(TRACE_ID, 16))
    _assert_tree(by_name, 4)
    route = by_name["route"][0]
    assert route.attributes["fluxmq.matched_subscribers"] == 3
    assert route.attributes["fluxmq.share_groups"] == ("fg",)
    assert route.attributes["fluxmq.deliveries"] == 4
    delivers = {d.attributes["fluxmq.client_id"]: d.attributes for d in by_name["deliver"]}
    picked = next(m for m in ("tr-fanm0", "tr-fanm1") if m in delivers)
    _wait(shared[int(picked[-1])])  # the picked member got it
    assert sorted(delivers) == sorted(["tr-fan0", "tr-fan1", "tr-fan2", picked])
    for i in range(3):
        attrs = delivers[f"tr-fan{i}"]
        assert attrs["fluxmq.protocol"] == "mqtt" and attrs["fluxmq.qos"] == i % 2
        assert "fluxmq.share_group" not in attrs
    assert delivers[picked]["fluxmq.share_group"] == "fg"
    assert delivers[picked]["fluxmq.qos"] == 1
    assert by_name["publish"][0].attributes["fluxmq.deliveries"] == 4
    # Every subscriber's traceparent names the publish span (one encoding for all).
    publish_id = f"{by_name['publish'][0].context.span_id:016x}"
    for g in got:
        assert _user_props(g[0])["traceparent"].split("-")[2] == publish_id


def test_new_trace_without_client_context(traced, mqtt_client) -> None:
    b, exporter = traced
    exporter.clear()
    sub = mqtt_client(b, "tr-sub2")
    got = subscribe(sub, "tr/new", qos=0)
    pub = mqtt_client(b, "tr-pub2", v5=False)  # MQTT 3.1.1: no user properties
    pub.publish("tr/new", b"x", qos=1).wait_for_publish(WAIT)
    _wait(got)
    publish = next(s for s in exporter.get_finished_spans() if s.name == "publish")
    assert publish.parent is None
    trace_id = publish.context.trace_id
    assert {"publish", "route", "deliver"} == set(_tree(exporter.get_finished_spans(), trace_id))
    assert _user_props(got[0])["traceparent"].split("-")[1] == f"{trace_id:032x}"


def test_mqtt_to_amqp_carries_the_trace_in_headers(traced, mqtt_client) -> None:
    b, exporter = traced
    conn = pika.BlockingConnection(
        pika.ConnectionParameters("127.0.0.1", b.port("amqp091.bind"), socket_timeout=WAIT)
    )
    try:
        ch = conn.channel()
        q = ch.queue_declare("tr-amqp", exclusive=True).method.queue
        ch.queue_bind(q, "amq.topic", routing_key="tr.amqp")
        exporter.clear()
        pub = mqtt_client(b, "tr-pub3")
        pub.publish(
            "tr/amqp", b"to-amqp", qos=1, properties=_props(traceparent=TRACEPARENT)
        ).wait_for_publish(WAIT)
        body = None
        for _ in range(int(WAIT / 0.05)):
            method, props, body = ch.basic_get(q, auto_ack=True)
            if method is not None:
                break
            conn.sleep(0.05)
        assert body == b"to-amqp"
        assert props.headers["traceparent"].split("-")[1] == TRACE_ID
        spans = _tree(exporter.get_finished_spans(), int(TRACE_ID, 16))
        assert spans["deliver"].attributes["fluxmq.protocol"] == "amqp091"
        assert spans["deliver"].attributes["fluxmq.client_id"]  # the AMQP consumer's id
        _assert_tree(_spans(exporter.get_finished_spans(), int(TRACE_ID, 16)), 1)
        assert spans["publish"].attributes["fluxmq.protocol"] == "mqtt"
    finally:
        conn.close()


def test_amqp_headers_start_the_trace_for_an_mqtt_subscriber(traced, mqtt_client) -> None:
    b, exporter = traced
    exporter.clear()
    sub = mqtt_client(b, "tr-sub4")
    got = subscribe(sub, "tr/from-amqp", qos=0)
    conn = pika.BlockingConnection(
        pika.ConnectionParameters("127.0.0.1", b.port("amqp091.bind"), socket_timeout=WAIT)
    )
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish(
            "amq.topic",
            "tr.from-amqp",
            b"from-amqp",
            pika.BasicProperties(headers={"traceparent": TRACEPARENT}),
        )
    finally:
        conn.close()
    _wait(got)
    assert _user_props(got[0])["traceparent"].split("-")[1] == TRACE_ID
    spans = _tree(exporter.get_finished_spans(), int(TRACE_ID, 16))
    assert spans["publish"].attributes["fluxmq.protocol"] == "amqp091"
    assert spans["publish"].parent.span_id == int(PARENT_ID, 16)
    assert spans["deliver"].attributes["fluxmq.client_id"] == "tr-sub4"
    _assert_tree(_spans(exporter.get_finished_spans(), int(TRACE_ID, 16)), 1)


def test_queue_append_span(traced, mqtt_client) -> None:
    b, exporter = traced
    exporter.clear()
    pub = mqtt_client(b, "tr-pub5")
    pub.publish(
        "$queue/tr-q/a", b"queued", qos=1, properties=_props(traceparent=TRACEPARENT)
    ).wait_for_publish(WAIT)
    # PUBACK comes once the append is durable, and the span ends with the append.
    spans = _tree(exporter.get_finished_spans(), int(TRACE_ID, 16))
    append = spans["queue.append"]
    assert append.attributes["messaging.destination.name"] == "$queue/tr-q/a"
    assert append.attributes["fluxmq.queue.offset"] == 0


def test_unsampled_publish_makes_no_span_but_a_sampled_parent_does() -> None:
    with traced_broker(["otel"], sample_rate=0.0) as (b, exporter):
        from fluxmq_core.message import Message

        b.call_soon(b.context.publish, Message("s/t", b"x", origin_protocol="test"))
        assert exporter.get_finished_spans() == ()
        m = Message(
            "s/t", b"x", origin_protocol="test", user_properties=[("traceparent", TRACEPARENT)]
        )
        b.call_soon(b.context.publish, m)
        # nobody got it: routed, no deliver span
        assert [s.name for s in exporter.get_finished_spans()] == ["route", "publish"]
        assert exporter.get_finished_spans()[0].attributes["fluxmq.matched_subscribers"] == 0
        exporter.clear()
        # A client's trace that is not sampled (flags 00) stays unsampled.
        m = Message(
            "s/t",
            b"x",
            origin_protocol="test",
            user_properties=[("traceparent", TRACEPARENT[:-2] + "00")],
        )
        b.call_soon(b.context.publish, m)
        assert exporter.get_finished_spans() == ()


def test_traces_off_leaves_no_tracer_on_the_publish_path() -> None:
    with BrokerThread(plugins=["otel"]) as b:
        assert b.context.tracer is None
        assert b.context.extras["otel"].tracer_provider is None


def test_sample_rate_keeps_that_share_of_new_traces() -> None:
    cfg = {"otel": {"traces": True, "sample_rate": 0.25}}
    with BrokerThread(plugins=["otel"], config=cfg) as b:
        exporter = InMemorySpanExporter()
        telemetry = b.context.extras["otel"]
        telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        draws = iter([0.1, 0.5, 0.9, 0.2, 0.24, 0.25, 0.99, 0.6])
        telemetry.tracer._random = draws.__next__  # the ratio draw, made deterministic
        from fluxmq_core.message import Message

        for i in range(8):
            b.call_soon(b.context.publish, Message(f"r/{i}", b"x", origin_protocol="test"))
        kept = sorted(
            s.attributes["messaging.destination.name"]
            for s in exporter.get_finished_spans()
            if s.name == "publish"
        )
        assert kept == ["r/0", "r/3", "r/4"]  # draws below 0.25


def test_queue_deliver_and_ack_spans(traced, mqtt_client) -> None:
    b, exporter = traced
    exporter.clear()
    consumer = mqtt_client(b, "tr-qcons")
    got = subscribe(consumer, "$queue/tr-q2/#", qos=1)  # paho PUBACKs: that is the ack
    pub = mqtt_client(b, "tr-pub6")
    pub.publish(
        "$queue/tr-q2/a", b"work", qos=1, properties=_props(traceparent=TRACEPARENT)
    ).wait_for_publish(WAIT)
    _wait(got)
    tick = threading.Event()
    for _ in range(int(WAIT / 0.01)):
        if any(s.name == "queue.ack" for s in exporter.get_finished_spans()):
            break
        tick.wait(0.01)
    spans = _tree(exporter.get_finished_spans(), int(TRACE_ID, 16))
    deliver, ack = spans["queue.deliver"], spans["queue.ack"]
    assert deliver.attributes["messaging.destination.name"] == "tr-q2"
    assert deliver.attributes["fluxmq.queue.offset"] == 0
    assert ack.parent.span_id == deliver.context.span_id
    assert ack.attributes["fluxmq.outcome"] == "ack"
    assert ack.start_time == deliver.start_time <= ack.end_time
    assert "queue.append" in spans


class _Starts(SpanProcessor):
    """Records the names of the spans every processor is told have started."""

    def __init__(self) -> None:
        self.started: list[str] = []

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.started.append(span.name)


def test_span_processors_see_every_span_start() -> None:
    """With a processor that acts in on_start, the spans go through the SDK's tracer
    (the same tree and attributes as the recorded ones); with only the SDK's own
    processors they are recorded finished."""
    cfg = {"otel": {"traces": True, "sample_rate": 1.0}}
    with BrokerThread(plugins=["otel"], config=cfg) as b:
        telemetry = b.context.extras["otel"]
        exporter = InMemorySpanExporter()
        provider = telemetry.tracer_provider
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        from fluxmq_core.message import Message

        got: list[Message] = []

        class Sub:
            client_id, protocol = "s1", "test"

            def deliver(self, message: Message, delivery: Any) -> None:
                got.append(message)

        b.call_soon(b.context.router.subscribe, Sub(), "st/#")

        def publish_tree() -> dict[str, ReadableSpan]:
            exporter.clear()
            m = Message("st/a", b"x", origin_protocol="test", origin_client="p1")
            assert b.call_soon(b.context.publish, m) == 1
            spans = {s.name: s for s in exporter.get_finished_spans()}
            assert set(spans) == {"publish", "route", "deliver"}
            return spans

        recorded = publish_tree()
        assert telemetry.tracer._on_start_ignored()
        starts = _Starts()
        provider.add_span_processor(starts)
        made = publish_tree()
        assert not telemetry.tracer._on_start_ignored()
        assert sorted(starts.started) == ["deliver", "publish", "route"]
        for spans in (recorded, made):
            publish, route, deliver = spans["publish"], spans["route"], spans["deliver"]
            assert route.parent.span_id == publish.context.span_id
            assert deliver.parent.span_id == route.context.span_id
            assert publish.parent is None
            assert deliver.attributes["fluxmq.client_id"] == "s1"
            assert publish.attributes["fluxmq.client_id"] == "p1"
            assert publish.attributes["fluxmq.deliveries"] == 1
            assert publish.start_time <= route.start_time <= deliver.start_time
            assert deliver.end_time <= route.end_time <= publish.end_time
        for name in ("publish", "route", "deliver"):
            assert dict(recorded[name].attributes) == dict(made[name].attributes)
            assert recorded[name].kind == made[name].kind
        props = dict(got[-1].user_properties or [])
        assert f"{made['publish'].context.span_id:016x}" in props["traceparent"]


class _Sub:
    protocol = "test"

    def __init__(self, client_id: str, got: dict[str, int], fail: bool = False) -> None:
        self.client_id = client_id
        self.got = got
        self.fail = fail

    def deliver(self, message: Any, delivery: Any) -> None:
        if self.fail:
            raise RuntimeError("boom")
        self.got[self.client_id] = self.got.get(self.client_id, 0) + 1


@pytest.mark.parametrize("mode", ["per_subscriber", "per_publish"])
def test_deliver_span_names_the_share_group_member_that_got_the_message(mode: str) -> None:
    """Both span paths (recorded, and through the SDK's tracer) and both
    deliver_spans modes name the member the router picked in a share group, not only
    the group."""
    from fluxmq_core.contracts import SubscriptionOptions
    from fluxmq_core.message import Message

    cfg = {"otel": {"traces": True, "sample_rate": 1.0, "deliver_spans": mode}}
    with BrokerThread(plugins=["otel"], config=cfg) as b:
        telemetry = b.context.extras["otel"]
        exporter = InMemorySpanExporter()
        provider = telemetry.tracer_provider
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        got: dict[str, int] = {}
        router = b.context.router
        for cid in ("m1", "m2"):
            b.call_soon(
                router.subscribe, _Sub(cid, got), "$share/grp/sh/#", SubscriptionOptions(qos=1)
            )

        def publish(topic: str) -> tuple[dict[str, list[ReadableSpan]], str]:
            exporter.clear()
            before = dict(got)
            m = Message(topic, b"x", qos=1, origin_protocol="test", origin_client="p1")
            b.call_soon(b.context.publish, m)
            by_name: dict[str, list[ReadableSpan]] = {}
            for s in exporter.get_finished_spans():
                by_name.setdefault(s.name, []).append(s)
            member = next(c for c in ("m1", "m2") if got.get(c, 0) > before.get(c, 0))
            return by_name, member

        for on_start in (False, True):
            if on_start:
                provider.add_span_processor(_Starts())
            assert telemetry.tracer._on_start_ignored() is not on_start
            seen = set()
            for _ in range(2):  # round robin: each member once, each named
                by_name, member = publish("sh/a")
                _assert_tree(by_name, 1)
                attrs = by_name["deliver"][0].attributes
                assert attrs["fluxmq.client_id"] == member
                assert attrs["fluxmq.protocol"] == "test" and attrs["fluxmq.qos"] == 1
                assert attrs["fluxmq.share_group"] == "grp"
                route = by_name["route"][0].attributes
                assert route["fluxmq.share_groups"] == ("grp",)
                assert route["fluxmq.matched_subscribers"] == 0
                seen.add(member)
            assert seen == {"m1", "m2"}
        b.call_soon(router.subscribe, _Sub("plain", got), "sh/#")
        by_name, member = publish("sh/b")
        if mode == "per_subscriber":
            _assert_tree(by_name, 2)
            delivers = {d.attributes["fluxmq.client_id"]: d.attributes for d in by_name["deliver"]}
            assert sorted(delivers) == sorted(["plain", member])
            assert "fluxmq.share_group" not in delivers["plain"]
            assert delivers[member]["fluxmq.share_group"] == "grp"
        else:
            _assert_tree(by_name, 1)
            attrs = by_name["deliver"][0].attributes
            assert attrs["fluxmq.deliveries"] == 2
            assert sorted(attrs["fluxmq.subscribers"]) == sorted(["test:plain", f"test:{member}"])
            assert attrs["fluxmq.share_members"] == (f"grp=test:{member}",)
            assert attrs["fluxmq.share_groups"] == ("grp",)
        assert by_name["route"][0].attributes["fluxmq.deliveries"] == 2


def test_max_deliver_spans_caps_the_fan_out_and_failures_are_errors() -> None:
    """Past ``max_deliver_spans`` deliveries get no span and are counted on the
    route span; a subscriber whose delivery raised has an ERROR deliver span."""
    from fluxmq_core.message import Message

    cfg = {"otel": {"traces": True, "sample_rate": 1.0, "max_deliver_spans": 3}}
    with BrokerThread(plugins=["otel"], config=cfg) as b:
        exporter = InMemorySpanExporter()
        b.context.extras["otel"].tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        got: dict[str, int] = {}
        for i in range(5):
            b.call_soon(b.context.router.subscribe, _Sub(f"c{i}", got, fail=i == 0), "cap/t")
        m = Message("cap/t", b"x", origin_protocol="test", origin_client="p")
        assert b.call_soon(b.context.publish, m) == 4
        assert len(got) == 4
        by_name: dict[str, list[ReadableSpan]] = {}
        for s in exporter.get_finished_spans():
            by_name.setdefault(s.name, []).append(s)
        _assert_tree(by_name, 3)
        route = by_name["route"][0]
        assert route.attributes["fluxmq.matched_subscribers"] == 5
        assert route.attributes["fluxmq.deliveries"] == 4
        assert route.attributes["fluxmq.deliveries_failed"] == 1
        assert route.attributes["fluxmq.deliveries_omitted"] == 2
        failed = [d for d in by_name["deliver"] if d.status.status_code is StatusCode.ERROR]
        assert [d.attributes["fluxmq.client_id"] for d in failed] == ["c0"]
        assert by_name["publish"][0].attributes["fluxmq.deliveries"] == 4


def test_bad_deliver_span_settings_are_refused() -> None:
    from fluxmq_otel.config import OtelConfig

    with pytest.raises(ValueError, match="deliver_spans"):
        OtelConfig(deliver_spans="per_topic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_deliver_spans"):
        OtelConfig(max_deliver_spans=0)


def test_a_sampled_trace_context_is_forwarded_to_other_nodes() -> None:
    """A distributed cluster's forward receives the message carrying the publish
    span's traceparent (so the trace goes on on the other node), and the forward's
    deliveries count in the publish span."""
    with traced_broker(["otel"], sample_rate=0.0) as (b, exporter):
        from fluxmq_core.message import Message

        forwarded: list[Message] = []

        def forward(message: Message) -> int:
            forwarded.append(message)
            return 2  # two other nodes reached

        b.call_soon(setattr, b.context, "forward", forward)
        try:
            sampled = Message(
                "fw/t", b"x", origin_protocol="test", user_properties=[("traceparent", TRACEPARENT)]
            )
            assert b.call_soon(b.context.publish, sampled) == 2
            unsampled = Message("fw/u", b"y", origin_protocol="test")
            assert b.call_soon(b.context.publish, unsampled) == 2  # rate 0: not traced
        finally:
            b.call_soon(setattr, b.context, "forward", None)
        spans = _tree(exporter.get_finished_spans(), int(TRACE_ID, 16))
        publish = spans["publish"]
        assert publish.attributes["fluxmq.deliveries"] == 2
        assert spans["route"].attributes["fluxmq.cluster.forwarded_nodes"] == 2
        assert spans["route"].attributes["fluxmq.deliveries"] == 0
        props = dict(forwarded[0].user_properties or [])
        _v, trace_id, parent_id, flags = props["traceparent"].split("-")
        assert (trace_id, int(parent_id, 16), flags) == (TRACE_ID, publish.context.span_id, "01")
        assert forwarded[1] is unsampled  # an untraced message is forwarded untouched
