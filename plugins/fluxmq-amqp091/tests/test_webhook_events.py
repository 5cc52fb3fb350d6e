"""The core's observer events from AMQP 0.9.1, checked at a real webhook receiver
with pika over real sockets: connect, consume (subscription), bind on the bridged
topic exchange, publish, deliver, cancel, unbind, disconnect and a refused login."""

from __future__ import annotations

import pika
import pytest
from pika.exceptions import ProbableAuthenticationError

from fluxmq_core.testing.webhooks import WebhookReceiver

P = "amqp091"


@pytest.fixture
def receiver():
    with WebhookReceiver() as rec:
        yield rec


def _params(b, **kw) -> pika.ConnectionParameters:
    return pika.ConnectionParameters("127.0.0.1", b.port("amqp091.bind"), socket_timeout=5, **kw)


def test_client_lifecycle_events(fluxmq_broker_factory, receiver):
    b = fluxmq_broker_factory(plugins=["amqp091"], config=receiver.config())
    conn = pika.BlockingConnection(_params(b))
    ev = receiver.wait_for("client.connected", protocol=P)
    client_id = ev["data"]["client_id"]
    assert client_id.startswith("amqp091-") and ev["data"]["remote"].startswith("127.0.0.1")

    ch = conn.channel()
    ch.queue_declare("wh")
    ch.queue_bind("wh", "amq.topic", "sensors.*.temp")
    bound = receiver.wait_for(
        "subscription.created", client_id=client_id, protocol=P, topic_filter="sensors/+/temp"
    )
    assert bound["data"]["qos"] == 1
    tag = ch.basic_consume("wh", lambda *a: None, auto_ack=True)
    sub = receiver.wait_for("subscription.created", client_id=client_id, topic_filter="$queue/wh")
    assert sub["data"]["qos"] == 0  # no-ack consumer

    ch.basic_publish("", "wh", b"direct")  # default exchange: reported by the adapter
    pub = receiver.wait_for("message.published", client_id=client_id, protocol=P)
    assert pub["data"]["payload_size"] == len(b"direct")
    got = receiver.wait_for("message.delivered", client_id=client_id, protocol=P)
    assert got["data"]["origin_protocol"] == P

    ch.basic_publish("amq.topic", "sensors.k1.temp", b"21")  # bridged: the router reports it
    receiver.wait_for("message.published", topic="sensors/k1/temp", client_id=client_id)

    ch.basic_cancel(tag)
    receiver.wait_for("subscription.removed", client_id=client_id, topic_filter="$queue/wh")
    ch.queue_unbind("wh", "amq.topic", "sensors.*.temp")
    receiver.wait_for("subscription.removed", client_id=client_id, topic_filter="sensors/+/temp")
    conn.close()
    gone = receiver.wait_for("client.disconnected", client_id=client_id, protocol=P)
    assert gone["data"]["reason"] == "closed by the client"
    # One published event per publish, however it was routed.
    assert len(receiver.matching("message.published", client_id=client_id)) == 2


def test_channel_errors_stay_in_the_connection_and_refused_logins_are_reported(
    fluxmq_broker_factory, receiver
):
    b = fluxmq_broker_factory(plugins=["amqp091"], config=receiver.config())
    conn = pika.BlockingConnection(_params(b))
    client_id = receiver.wait_for("client.connected", protocol=P)["data"]["client_id"]
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):
        ch.basic_publish("no-such-exchange", "k", b"x")
        ch.queue_declare("after")  # a round trip that sees the channel close
    conn.close()
    receiver.wait_for("client.disconnected", client_id=client_id, reason="closed by the client")
    # A channel error is not a connection event; a refused login is.
    bad = pika.PlainCredentials("mallory", "nope")
    with pytest.raises(ProbableAuthenticationError):
        pika.BlockingConnection(_params(b, credentials=bad, connection_attempts=1))
    fail = receiver.wait_for("auth.failure", protocol=P, username="mallory")
    assert fail["data"]["reason"]
    assert not receiver.matching("client.connected", username="mallory")
