"""tx.commit answers commit-ok only when everything was durably applied, and
connection.update-secret re-authenticates; both with pika over a real socket.

A failing or never-finishing append is injected with the ``inject`` fixture
(conftest.py)."""

from __future__ import annotations

import time

import fluxmq_amqp091.server as amqp_server
import pika
import pytest
from fluxmq_amqp091.testing import WAIT, name
from pika.exceptions import ChannelClosedByBroker, ConnectionClosedByBroker

from fluxmq_core.auth_file import set_password


def _count(connect, q):
    return connect().channel().queue_declare(q, passive=True).method.message_count


def _get(ch, q):
    """basic.get until a message comes (bounded)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        m, props, body = ch.basic_get(q)
        if m is not None:
            return m, body
    raise AssertionError(f"nothing in {q}")


def _tx_with_an_ack(connect, target):
    """A tx channel holding one ack (of a message from ``src``) and one publish to
    ``target``; returns (channel, src)."""
    setup = connect().channel()
    src = setup.queue_declare(name()).method.queue
    setup.queue_declare(target)
    setup.basic_publish("", src, b"to-ack")
    ch = connect().channel()
    ch.tx_select()
    m, body = _get(ch, src)
    assert body == b"to-ack"
    ch.basic_ack(m.delivery_tag)
    ch.basic_publish("", target, b"in-tx")
    return ch, src


def test_tx_commit_fails_when_an_append_fails(connect, inject):
    target = name()
    inject(target, "fail")
    ch, src = _tx_with_an_ack(connect, target)
    with pytest.raises(ChannelClosedByBroker) as err:
        ch.tx_commit()
    assert err.value.reply_code == 541
    assert "append failed" in err.value.reply_text
    # The ack was not applied: the message went back to its queue with the channel.
    m, body = _get(connect().channel(), src)
    assert body == b"to-ack" and m.redelivered


def test_tx_commit_fails_when_appends_time_out(connect, inject, monkeypatch):
    monkeypatch.setattr(amqp_server, "COMMIT_WAIT", 0.2)
    target = name()
    inject(target, "hang")
    ch, src = _tx_with_an_ack(connect, target)
    with pytest.raises(ChannelClosedByBroker) as err:
        ch.tx_commit()
    assert err.value.reply_code == 541
    assert "not durable" in err.value.reply_text
    m, body = _get(connect().channel(), src)
    assert body == b"to-ack" and m.redelivered


def test_tx_commit_applies_nothing_when_a_queue_refuses(connect):
    setup = connect().channel()
    full = setup.queue_declare(
        name(), arguments={"x-max-length": 1, "x-overflow": "reject-publish"}
    ).method.queue
    ok = setup.queue_declare(name()).method.queue
    ch = connect().channel()
    ch.tx_select()
    ch.basic_publish("", ok, b"a")
    ch.basic_publish("", full, b"1")
    ch.basic_publish("", full, b"2")  # over max-length 1
    with pytest.raises(ChannelClosedByBroker) as err:
        ch.tx_commit()
    assert err.value.reply_code == 406
    assert _count(connect, ok) == 0 and _count(connect, full) == 0


def test_tx_commit_ok_after_durable_appends(connect):
    ch, src = _tx_with_an_ack(connect, name())
    ch.tx_commit()
    assert _count(connect, src) == 0


# --- connection.update-secret -----------------------------------------------------------


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    from fluxmq_core.testing.broker import BrokerThread

    pw = tmp_path_factory.mktemp("auth") / "passwd"
    set_password(pw, "alice", "token-1")
    set_password(pw, "bob", "token-2")
    config = {"auth": {"password_file": str(pw), "anonymous": False}}
    with BrokerThread(plugins=["amqp091"], config=config) as b:
        yield b


def _login(b, user, password):
    params = pika.ConnectionParameters(
        "127.0.0.1",
        b.port("amqp091.bind"),
        credentials=pika.PlainCredentials(user, password),
        socket_timeout=WAIT,
        blocked_connection_timeout=WAIT,
    )
    return pika.BlockingConnection(params)


def test_update_secret_accepted(secured):
    c = _login(secured, "alice", "token-1")
    try:
        c.update_secret("token-1", "token refresh")
        q = c.channel().queue_declare(name()).method.queue  # the connection lives on
        assert q
    finally:
        c.close()
    assert secured.context.stats.auth_failures == 0


def test_update_secret_refused_closes_with_530(secured):
    c = _login(secured, "alice", "token-1")
    try:
        with pytest.raises(ConnectionClosedByBroker) as err:
            c.update_secret("stolen", "token refresh")
        assert err.value.reply_code == 530
        assert "refused" in err.value.reply_text
    finally:
        if c.is_open:
            c.close()


def test_update_secret_with_another_users_secret_is_refused(secured):
    c = _login(secured, "alice", "token-1")
    try:
        with pytest.raises(ConnectionClosedByBroker) as err:
            c.update_secret("token-2", "bob's token")
        assert err.value.reply_code == 530
    finally:
        if c.is_open:
            c.close()
