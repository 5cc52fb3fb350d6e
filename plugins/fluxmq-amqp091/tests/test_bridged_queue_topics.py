"""A publish to the bridged topic exchange (``amq.topic``) whose routing key maps to a
queue topic (``$queue.<name>.<key>`` -> ``$queue/<name>/<key>``) is appended by the
core queue manager, and its publisher confirm / ``tx.commit`` wait for that append
as for a bound queue's: a failed or refused append nacks the publish or fails the
commit. pika over a real socket; failing appends come from the ``inject`` fixture."""

from __future__ import annotations

import time

import pytest
from fluxmq_amqp091.testing import WAIT, name
from pika.exceptions import ChannelClosedByBroker, NackError


def _get(ch, q):
    """basic.get until a message comes (bounded)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        m, props, body = ch.basic_get(q, auto_ack=True)
        if m is not None:
            return body
    raise AssertionError(f"nothing in {q}")


def _count(connect, q):
    return connect().channel().queue_declare(q, passive=True).method.message_count


def test_confirm_comes_once_the_core_appended_it(connect):
    ch = connect().channel()
    q = ch.queue_declare(name(), durable=True).method.queue
    ch.confirm_delivery()
    ch.basic_publish("amq.topic", f"$queue.{q}.orders.7", b"via topic", mandatory=True)
    assert _count(connect, q) == 1  # confirmed, so appended
    assert _get(connect().channel(), q) == b"via topic"


def test_confirm_nacks_a_failed_append(connect, inject):
    ch = connect().channel()
    q = ch.queue_declare(name(), durable=True).method.queue
    inject(q, "fail")
    ch.confirm_delivery()
    with pytest.raises(NackError):
        ch.basic_publish("amq.topic", f"$queue.{q}.k", b"lost")
    # The channel stays usable, and a publish to another queue topic is acked.
    other = ch.queue_declare(name(), durable=True).method.queue
    ch.basic_publish("amq.topic", f"$queue.{other}.k", b"kept")
    assert _count(connect, other) == 1


def test_confirm_nacks_a_refused_queue_publish(connect):
    ch = connect().channel()
    q = ch.queue_declare(name()).method.queue
    ch.confirm_delivery()
    with pytest.raises(NackError):  # a control verb is not a routing key
        ch.basic_publish("amq.topic", f"$queue.{q}.$ack", b"x")
    assert _count(connect, q) == 0


def test_tx_commit_fails_when_the_queue_topic_append_fails(connect, inject):
    setup = connect().channel()
    q = setup.queue_declare(name(), durable=True).method.queue
    inject(q, "fail")
    ch = connect().channel()
    ch.tx_select()
    ch.basic_publish("amq.topic", f"$queue.{q}.k", b"in-tx")
    with pytest.raises(ChannelClosedByBroker) as err:
        ch.tx_commit()
    assert err.value.reply_code == 541
    assert "append failed" in err.value.reply_text


def test_tx_commit_ok_after_the_queue_topic_append(connect):
    setup = connect().channel()
    q = setup.queue_declare(name(), durable=True).method.queue
    ch = connect().channel()
    ch.tx_select()
    ch.basic_publish("amq.topic", f"$queue.{q}.k", b"in-tx")
    assert _count(connect, q) == 0  # buffered until the commit
    ch.tx_commit()
    assert _count(connect, q) == 1


def test_tx_commit_applies_nothing_when_a_queue_topic_would_be_refused(connect):
    setup = connect().channel()
    full = setup.queue_declare(
        name(), arguments={"x-max-length": 1, "x-overflow": "reject-publish"}
    ).method.queue
    ok = setup.queue_declare(name()).method.queue
    ch = connect().channel()
    ch.tx_select()
    ch.basic_publish("", ok, b"a")
    ch.basic_publish("amq.topic", f"$queue.{full}.k", b"1")
    ch.basic_publish("amq.topic", f"$queue.{full}.k", b"2")  # over max-length 1
    with pytest.raises(ChannelClosedByBroker) as err:
        ch.tx_commit()
    assert err.value.reply_code == 406
    assert _count(connect, ok) == 0 and _count(connect, full) == 0


def test_tx_commit_refuses_a_control_verb_queue_topic(connect):
    setup = connect().channel()
    ok = setup.queue_declare(name()).method.queue
    ch = connect().channel()
    ch.tx_select()
    ch.basic_publish("", ok, b"a")
    ch.basic_publish("amq.topic", f"$queue.{ok}.$nack", b"x")
    with pytest.raises(ChannelClosedByBroker) as err:
        ch.tx_commit()
    assert err.value.reply_code == 406
    assert _count(connect, ok) == 0
