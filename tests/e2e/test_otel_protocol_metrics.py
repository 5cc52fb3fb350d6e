"""The amqp.* (AMQP 1.0), amqp091.*, coap.* and cluster.* metrics those plugins register through the
core's metric registry: scraped from /metrics, parsed with prometheus_client's
parser, moving with real traffic (Qpid Proton for AMQP 1.0, aiocoap for CoAP); the
cluster family from a driver's status(). A plugin that is not installed is skipped."""

from __future__ import annotations

import asyncio
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from fluxmq_otel import collectors
from fluxmq_otel.testing import WAIT, scrape, value

from fluxmq_core.message import Message
from fluxmq_core.testing.broker import BrokerThread


def _until(broker: BrokerThread, name: str, want: float, **labels: str) -> float | None:
    """Scrape until ``name`` reads ``want`` (bounded); returns the last value. A
    count the broker takes when it reads a close frame has no round trip to wait
    on, hence asking again."""
    got = None
    tick = threading.Event()
    for _ in range(int(WAIT / 0.02)):
        got = value(scrape(broker)[2], name, **labels)
        if got == want:
            break
        tick.wait(0.02)
    return got


# --- AMQP 1.0 ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def amqp1_broker() -> Iterator[BrokerThread]:
    pytest.importorskip("fluxmq_amqp1")
    pytest.importorskip("proton")
    with BrokerThread(plugins=["amqp1", "otel"]) as b:
        yield b


def test_amqp1_metrics_follow_connections_links_and_messages(amqp1_broker) -> None:
    """AMQP 1.0 metrics carry the Go FluxMQ's ``amqp.*`` names."""
    from proton import Message
    from proton.utils import BlockingConnection

    b = amqp1_broker
    text = scrape(b)[2]
    assert value(text, "amqp_connections_current") == 0
    in0 = value(text, "amqp_messages_received_total")
    out0 = value(text, "amqp_messages_sent_total")
    opened0 = value(text, "amqp_connections_total")
    closed0 = value(text, "amqp_disconnections_total")
    bytes_in0 = value(text, "amqp_bytes_received_total")
    bytes_out0 = value(text, "amqp_bytes_sent_total")
    assert None not in (in0, out0, opened0, closed0, bytes_in0, bytes_out0)
    assert value(text, "amqp_errors_total") is not None
    conn = BlockingConnection(f"amqp://127.0.0.1:{b.port('amqp1.bind')}", timeout=WAIT)
    try:
        receiver = conn.create_receiver("topic/metrics/a", credit=10)
        sender = conn.create_sender("topic/metrics/a")
        for i in range(3):
            sender.send(Message(body=f"m{i}"))
        for _ in range(3):
            receiver.receive(timeout=WAIT)
            receiver.accept()
        text = scrape(b)[2]
        assert value(text, "amqp_connections_current") == 1
        assert value(text, "amqp_connections_total") == opened0 + 1
        assert value(text, "amqp_sessions_current") >= 1
        assert value(text, "amqp_links_current", role="sender") == 1
        assert value(text, "amqp_links_current", role="receiver") == 1
        assert value(text, "amqp_subscriptions_active") == 1
        assert value(text, "amqp_messages_received_total") == in0 + 3
        assert value(text, "amqp_messages_sent_total") == out0 + 3
        assert value(text, "amqp_bytes_received_total") > bytes_in0 + 3 * len("m0")
        assert value(text, "amqp_bytes_sent_total") > bytes_out0 + 3 * len("m0")
        assert value(text, "amqp_deliveries_unsettled") is not None
        assert value(text, "amqp_messages_held") == 0
    finally:
        conn.close()
    assert _until(b, "amqp_connections_current", 0) == 0
    text = scrape(b)[2]
    assert value(text, "amqp_links_current", role="sender") == 0
    assert value(text, "amqp_subscriptions_active") == 0
    assert value(text, "amqp_disconnections_total") == closed0 + 1


# --- AMQP 0.9.1 --------------------------------------------------------------------------


def test_amqp091_connections_and_channels_follow_pika() -> None:
    pytest.importorskip("fluxmq_amqp091")
    pika = pytest.importorskip("pika")
    with BrokerThread(plugins=["amqp091", "otel"]) as b:
        text = scrape(b)[2]
        assert value(text, "amqp091_connections_current") == 0
        host, port = b.address("amqp091.bind")
        conn = pika.BlockingConnection(pika.ConnectionParameters(host=host, port=port))
        try:
            conn.channel()
            conn.channel()
            text = scrape(b)[2]
            assert value(text, "amqp091_connections_current") == 1
            assert value(text, "amqp091_channels_current") == 2
        finally:
            conn.close()
        assert _until(b, "amqp091_connections_current", 0) == 0
        assert value(scrape(b)[2], "amqp091_channels_current") == 0


# --- CoAP --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def coap_broker() -> Iterator[BrokerThread]:
    pytest.importorskip("fluxmq_coap")
    pytest.importorskip("aiocoap")
    with BrokerThread(plugins=["coap", "otel"]) as b:
        yield b


async def test_coap_metrics_follow_publishes_and_observers(coap_broker) -> None:
    import aiocoap
    from aiocoap.numbers.codes import Code
    from fluxmq_coap.testing import coap_url

    b = coap_broker
    loop = asyncio.get_running_loop()

    async def read() -> str:
        return (await loop.run_in_executor(None, scrape, b))[2]

    text = await read()
    req0 = value(text, "coap_requests_total")
    pub0 = value(text, "coap_publishes_total")
    assert value(text, "coap_observers_current") == 0
    client = await aiocoap.Context.create_client_context(transports=["udp6"])
    try:
        for i in range(3):
            msg = aiocoap.Message(code=Code.POST, uri=coap_url(b, "/ps/cm/t"), payload=b"%d" % i)
            resp = await asyncio.wait_for(client.request(msg).response, WAIT)
            assert resp.code == Code.CHANGED
        text = await read()
        assert value(text, "coap_publishes_total") == pub0 + 3
        assert value(text, "coap_requests_total") >= req0 + 3

        req = client.request(
            aiocoap.Message(code=Code.GET, uri=coap_url(b, "/ps/cm/%23"), observe=0)
        )
        got: asyncio.Queue[Any] = asyncio.Queue()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            req.observation.register_callback(got.put_nowait)
        await asyncio.wait_for(req.response, WAIT)
        text = await read()
        assert value(text, "coap_observers_current") == 1
        assert value(text, "coap_observations_total") >= 1
        sent0 = value(text, "coap_notifications_sent_total")
        msg = aiocoap.Message(code=Code.POST, uri=coap_url(b, "/ps/cm/u"), payload=b"n")
        await asyncio.wait_for(client.request(msg).response, WAIT)
        note = await asyncio.wait_for(got.get(), WAIT)
        assert note.payload == b"n"
        text = await read()
        assert value(text, "coap_notifications_sent_total") == sent0 + 1
        assert value(text, "coap_publishes_total") == pub0 + 4
        req.observation.cancel()
        # aiocoap ignores NON notifications of a cancelled observation and answers
        # the next CON one (every coap.notify_con_every-th, 8 by default) with RST,
        # which ends it (RFC 7641 3.6): a round trip to wait on.
        for i in range(8):
            b.call_soon(b.context.publish, Message("cm/v", b"after cancel %d" % i))
        assert await loop.run_in_executor(None, _until, b, "coap_observers_current", 0) == 0
    finally:
        await client.shutdown()
    assert await loop.run_in_executor(None, _until, b, "coap_observers_current", 0) == 0


# --- cluster -----------------------------------------------------------------------------


class _Cluster:
    """A distributed driver as the collectors see it: ``distributed`` and ``status()``
    (the etcd driver's shape)."""

    distributed = True

    def __init__(self) -> None:
        self.peers: dict[str, Any] = {
            "forwarded": 0,
            "received": 0,
            "dropped": 0,
            "peer_errors": 0,
            "remote_errors": 0,
            "peers": {"n2": {"queued": 0, "consecutive_failures": 0}},
        }
        self.calls = 0

    def status(self) -> dict[str, Any]:
        self.calls += 1
        return {
            "ready": True,
            "nodes": [{"id": "n1"}, {"id": "n2"}],
            "subscriptions": {"share_dropped": 1},
            "peers": dict(self.peers),
        }


class _Ctx:
    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster


def _read(specs: list[Any]) -> dict[str, list[Any]]:
    return {s.name: s.observations() for s in specs}


def test_cluster_metrics_from_the_driver_status(monkeypatch) -> None:
    cluster = _Cluster()
    specs = collectors.cluster_specs(_Ctx(cluster))
    got = _read(specs)
    assert got["cluster.nodes"] == [(2, {})]
    assert got["cluster.ready"] == [(1, {})]
    assert got["cluster.messages.forwarded.total"] == [(0, {})]
    assert got["cluster.peer.queued"] == [(0, {"peer": "n2"})]
    assert got["cluster.share.dropped.total"] == [(1, {})]
    assert cluster.calls == 1  # one status() per collection, not one per metric
    cluster.peers.update(forwarded=7, peer_errors=2, peers={"n2": {"queued": 3}})
    clock = [1e6]
    monkeypatch.setattr(collectors.time, "monotonic", lambda: clock[0])
    got = _read(specs)
    assert got["cluster.messages.forwarded.total"] == [(7, {})]
    assert got["cluster.peer.errors.total"] == [(2, {})]
    assert got["cluster.peer.queued"] == [(3, {"peer": "n2"})]


def test_single_node_has_no_cluster_metrics() -> None:
    class Single:
        distributed = False

    assert collectors.cluster_specs(_Ctx(Single())) == []
    assert collectors.cluster_specs(_Ctx(None)) == []


# --- storage (badgerlike) ------------------------------------------------------------------


def test_storage_fsync_histogram_size_and_gc_from_the_badgerlike_drivers() -> None:
    """The badgerlike drivers offer their metrics through the core registry; the
    otel plugin serves them without importing the storage plugin."""
    pytest.importorskip("fluxmq_badgerlike")
    cfg = {"storage": {"driver": "badgerlike", "queue_log": "badgerlike", "fsync": "always"}}
    with BrokerThread(plugins=["otel"], config=cfg) as b:
        for i in range(5):
            b.call_soon(
                b.context.publish, Message(f"st/{i}", b"x" * 200, retain=True, origin_protocol="t")
            )
        b.call(b.context.store.sync())
        text = scrape(b)[2]
        count = value(text, "storage_fsync_duration_seconds_count", store="broker")
        assert count is not None and count > 0, text
        inf = value(text, "storage_fsync_duration_seconds_bucket", store="broker", le="+Inf")
        assert inf == count
        assert value(text, "storage_value_log_size", store="broker") > 0
        assert value(text, "storage_value_log_size", store="queue_log") is not None
        assert value(text, "storage_gc_runs_total", store="broker") == 0
        assert value(text, "storage_gc_reclaimed_bytes_total", store="broker") == 0
