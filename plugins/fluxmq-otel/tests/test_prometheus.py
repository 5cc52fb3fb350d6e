"""GET /metrics: Prometheus text that prometheus_client parses, whose values move
with real traffic, served under the admin API's access rule."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fluxmq_otel.testing import WAIT, samples, scrape, subscribe, value

from fluxmq_core.hookspecs import hookimpl
from fluxmq_core.metrics import Histogram, MetricSpec, histogram_spec, register_metrics
from fluxmq_core.testing.broker import BrokerThread


@pytest.fixture(scope="module")
def broker() -> Iterator[BrokerThread]:
    with BrokerThread(plugins=["mqtt", "otel"]) as b:
        yield b


def test_metrics_parse_and_carry_the_resource(broker: BrokerThread) -> None:
    status, ctype, text = scrape(broker)
    assert status == 200
    assert ctype.startswith("text/plain; version=0.0.4")
    got = samples(text)
    info = [labels for (name, labels) in got if name == "target_info"]
    assert info, text
    labels = dict(info[0])
    assert labels["service_name"] == "fluxmq"
    assert labels["service_instance_id"] == broker.context.node_id
    assert labels["service_version"]
    assert value(text, "mqtt_connections_current") is not None
    assert value(text, "mqtt_messages_received_total") is not None
    # protocol plugins that are not running contribute nothing
    names = {name for (name, _labels) in got}
    for prefix in ("amqp_", "amqp091_", "coap_", "cluster_", "webhook_"):
        assert not [n for n in names if n.startswith(prefix)], prefix


def test_connections_current_follows_clients(broker: BrokerThread, mqtt_client) -> None:
    base = value(scrape(broker)[2], "mqtt_connections_current")
    assert base is not None
    clients = [mqtt_client(broker, f"prom-conn-{i}") for i in range(5)]
    text = scrape(broker)[2]
    assert value(text, "mqtt_connections_current") == base + 5
    assert value(text, "fluxmq_connections_current") >= 5
    assert value(text, "mqtt_sessions_active") >= 5
    for c in clients[:2]:
        c.disconnect()
        c.loop_stop()
    # The broker counts a disconnect when it reads DISCONNECT: a round trip through
    # another client's subscription proves nothing, so ask until the gauge moves.
    for _ in range(200):
        if value(scrape(broker)[2], "mqtt_connections_current") == base + 3:
            break
        threading.Event().wait(0.02)
    assert value(scrape(broker)[2], "mqtt_connections_current") == base + 3


def test_message_counters_move_with_traffic(broker: BrokerThread, mqtt_client) -> None:
    sub = mqtt_client(broker, "prom-sub")
    got = subscribe(sub, "prom/t", qos=1)
    before = scrape(broker)[2]
    received0 = value(before, "mqtt_messages_received_total")
    sent0 = value(before, "mqtt_messages_sent_total")
    bytes0 = value(before, "mqtt_bytes_received_total")
    subs0 = value(before, "mqtt_subscriptions_active")
    assert subs0 is not None and subs0 >= 1
    pub = mqtt_client(broker, "prom-pub")
    for i in range(10):
        pub.publish("prom/t", f"m{i}".encode(), qos=1).wait_for_publish(WAIT)
    deadline = threading.Event()
    for _ in range(500):
        if len(got) == 10:
            break
        deadline.wait(0.01)
    assert len(got) == 10
    after = scrape(broker)[2]
    assert value(after, "mqtt_messages_received_total") == received0 + 10
    assert value(after, "mqtt_messages_sent_total") >= sent0 + 10
    assert value(after, "mqtt_bytes_received_total") > bytes0
    pub.publish("prom/retained", b"r", qos=1, retain=True).wait_for_publish(WAIT)
    assert value(scrape(broker)[2], "mqtt_retained_messages") >= 1


def test_non_loopback_is_refused_without_a_token() -> None:
    """Same rule as the admin API: with no admin_token only loopback clients."""
    from fluxmq_core.http.server import Request

    with BrokerThread(plugins=["otel"]) as b:
        telemetry = b.context.extras["otel"]
        req = Request("GET", "/metrics", "/metrics", {}, {}, b"", "192.0.2.7:5555")
        from fluxmq_core.http.server import HTTPError

        with pytest.raises(HTTPError) as info:
            b.call(telemetry.scrape(req))
        assert info.value.status == 403


def test_admin_token_is_required_when_set() -> None:
    with BrokerThread(plugins=["otel"], config={"http": {"admin_token": "s3cret"}}) as b:
        assert scrape(b)[0] == 401
        assert scrape(b, token="wrong")[0] == 401
        status, _, text = scrape(b, token="s3cret")
        assert status == 200 and "target_info" in text


def test_prometheus_off_serves_nothing() -> None:
    with BrokerThread(plugins=["otel"], config={"otel": {"prometheus": False}}) as b:
        assert scrape(b)[0] == 404


def test_queue_metrics_move_with_traffic(broker: BrokerThread, mqtt_client) -> None:
    appended0 = value(scrape(broker)[2], "queue_messages_appended_total") or 0
    pub = mqtt_client(broker, "prom-qpub")
    for i in range(3):
        pub.publish("$queue/prom-q/a", f"q{i}".encode(), qos=1).wait_for_publish(WAIT)
    text = scrape(broker)[2]
    assert value(text, "queue_depth", queue="prom-q") == 3
    assert value(text, "queue_bytes", queue="prom-q") > 0
    assert value(text, "queue_consumers", queue="prom-q") == 0
    assert value(text, "queue_messages_appended_total") == appended0 + 3


class _Offers:
    """A throw-away plugin offering its own metrics through the core registry."""

    def __init__(self) -> None:
        self.frames = 0

    @hookimpl
    def fluxmq_startup(self, context: Any) -> None:
        register_metrics(
            context,
            "offers",
            [
                MetricSpec("offers.frames.received", "counter", lambda: self.frames),
                MetricSpec(
                    "offers.channel.depth",
                    "gauge",
                    lambda: [(2, {"channel": "a"}), (5, {"channel": 'b"q'})],
                ),
            ],
        )


def test_a_plugin_offers_its_own_metrics() -> None:
    offers = _Offers()
    with BrokerThread(plugins=["otel"], extra_plugins=[("offers", offers)]) as b:
        assert value(scrape(b)[2], "offers_frames_received_total") == 0
        offers.frames = 7
        text = scrape(b)[2]
        assert value(text, "offers_frames_received_total") == 7
        assert value(text, "offers_channel_depth", channel="a") == 2
        assert value(text, "offers_channel_depth", channel='b"q') == 5  # escaped and parsed


class _Latency:
    """A throw-away plugin offering a histogram, and one gauge name from two
    owners (as two storage drivers do), through the core registry."""

    def __init__(self) -> None:
        self.histogram = Histogram((0.001, 0.01, 0.1))

    @hookimpl
    def fluxmq_startup(self, context: Any) -> None:
        register_metrics(
            context, "lat", [histogram_spec("lat.fsync.duration.seconds", self.histogram, "s")]
        )
        for store, size in (("broker", 10), ("queue_log", 20)):
            register_metrics(
                context,
                f"lat.{store}",
                [MetricSpec("lat.size", "gauge", lambda s=store, n=size: [(n, {"store": s})])],
            )


def test_a_histogram_and_a_name_shared_by_two_owners() -> None:
    lat = _Latency()
    assert not lat.histogram.attached
    lat.histogram.record(5.0)  # nobody listens yet: dropped, costs a None check
    with BrokerThread(plugins=["otel"], extra_plugins=[("lat", lat)]) as b:
        assert lat.histogram.attached
        for v, store in ((0.0005, "broker"), (0.005, "broker"), (0.05, "broker"), (0.2, "x")):
            b.call_soon(lat.histogram.record, v, {"store": store})
        text = scrape(b)[2]
        name = "lat_fsync_duration_seconds"
        assert value(text, f"{name}_bucket", store="broker", le="0.001") == 1
        assert value(text, f"{name}_bucket", store="broker", le="0.01") == 2
        assert value(text, f"{name}_bucket", store="broker", le="+Inf") == 3
        assert value(text, f"{name}_count", store="broker") == 3
        assert value(text, f"{name}_sum", store="broker") == pytest.approx(0.0555)
        assert value(text, f"{name}_count", store="x") == 1
        assert value(text, "lat_size", store="broker") == 10
        assert value(text, "lat_size", store="queue_log") == 20
    assert not lat.histogram.attached  # detached at shutdown


def _poll(cond: Any) -> None:
    tick = threading.Event()
    for _ in range(int(WAIT / 0.01)):
        if cond():
            return
        tick.wait(0.01)
    raise AssertionError("condition not met in time")


def test_queue_group_lag_pending_redeliveries_and_dead_letters() -> None:
    """The per-group gauges and the redelivery / dead-letter counters, moved by a
    consumer of the core queue manager (the path every protocol's consumer takes)."""
    from fluxmq_core.message import Message

    with BrokerThread(plugins=["otel"]) as b:
        got: list[Message] = []

        class Consumer:
            client_id, protocol = "prom-c", "test"

            def deliver(self, message: Message, delivery: Any) -> None:
                got.append(message)

        qm = b.context.queues

        async def fill() -> None:
            qm.declare("prom-g", {"type": "classic"})
            for i in range(3):
                await qm.append("prom-g", Message("$queue/prom-g", f"m{i}".encode()))
            qm.consume("prom-g", "g1", Consumer(), credit=2)

        before = scrape(b)[2]
        redelivered0 = value(before, "queue_messages_redelivered_total")
        dead0 = value(before, "queue_messages_dead_lettered_total")
        b.call(fill())
        _poll(lambda: len(got) == 2)
        text = scrape(b)[2]
        assert value(text, "queue_group_pending", queue="prom-g", group="g1") == 2
        assert value(text, "queue_group_lag", queue="prom-g", group="g1") == 3
        first, second = (m.properties["message-id"] for m in got[:2])
        assert b.call_soon(lambda: qm.nack(first, "g1", requeue=True, delay=0)) is True
        _poll(lambda: len(got) == 3)  # the redelivery
        assert b.call_soon(lambda: qm.reject(second, "g1")) is True
        _poll(lambda: value(scrape(b)[2], "queue_messages_dead_lettered_total") == dead0 + 1)
        text = scrape(b)[2]
        assert value(text, "queue_messages_redelivered_total") == redelivered0 + 1
        assert value(text, "queue_depth", queue="$dlq/prom-g") == 1
        # the redelivered first message and the third are pending now
        assert value(text, "queue_group_pending", queue="prom-g", group="g1") == 2


def test_webhook_and_http_metrics_move_with_traffic() -> None:
    """Webhook counters per endpoint, from a real local receiver that accepts one
    endpoint's events and refuses the other's; the HTTP listener's connections."""
    import http.server

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(500 if self.path.startswith("/bad") else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    good = f"http://127.0.0.1:{server.server_port}/good"
    bad = f"http://127.0.0.1:{server.server_port}/bad"
    cfg = {
        "webhooks": {
            "max_attempts": 1,
            "endpoints": [
                {"url": good, "events": ["message.published"]},
                {"url": bad, "events": ["message.published"]},
            ],
        }
    }
    try:
        with BrokerThread(plugins=["otel"], config=cfg) as b:
            from fluxmq_core.message import Message

            text = scrape(b)[2]
            assert value(text, "webhook_sent_total", url=good) == 0
            assert value(text, "http_connections_current") >= 1  # this scrape's
            b.call_soon(b.context.publish, Message("hooks/a", b"x"))
            _poll(lambda: value(scrape(b)[2], "webhook_sent_total", url=good) == 1)
            _poll(lambda: (value(scrape(b)[2], "webhook_failed_total", url=bad) or 0) >= 1)
            text = scrape(b)[2]
            assert value(text, "webhook_sent_total", url=bad) == 0
            assert value(text, "webhook_dropped_total") == 0
            assert value(text, "webhook_breaker_open", url=good, state="closed") == 0
    finally:
        server.shutdown()
        server.server_close()
