"""Reply codes and texts with pika, as RabbitMQ 3.x sends them (each case was run
against a live RabbitMQ 3.10; the unknown exchange type follows current RabbitMQ,
where 3.10 still closed the connection with 503).

Every case names the exact outcome: ``("channel", code, text)`` when the channel is
closed (and the connection stays usable), ``("connection", code, text)`` when the
whole connection is, ``("ok", None, None)`` when RabbitMQ accepts the command. Names
in texts are written ``{q}``/``{x}`` and filled in per run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fluxmq_amqp091.testing import name
from pika.exceptions import ChannelClosedByBroker, ConnectionClosedByBroker

LOCKED = (
    "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{q}' in vhost '/'. "
    "It could be originally declared on another connection or the exclusive property value "
    "does not match that of the original declaration."
)


def _stream(ch: Any, q: str) -> None:
    ch.queue_declare(q, durable=True, arguments={"x-queue-type": "stream"})


def _other_conn(connect: Callable[..., Any]) -> Any:
    return connect().channel()


# Each scenario: (setup(ch, q, x, connect), expected kind, code, text template)
CASES: dict[str, tuple[Callable[..., Any], str, int | None, str | None]] = {
    "unknown-exchange-type": (
        lambda ch, q, x, c: ch.exchange_declare(x, "x-custom"),
        "channel",
        406,
        "PRECONDITION_FAILED - unknown exchange type 'x-custom'",
    ),
    "exchange-redeclared-with-another-type": (
        lambda ch, q, x, c: (ch.exchange_declare(x, "direct"), ch.exchange_declare(x, "fanout")),
        "channel",
        406,
        "PRECONDITION_FAILED - inequivalent arg 'type' for exchange '{x}' in vhost '/': "
        "received 'fanout' but current is 'direct'",
    ),
    "exchange-redeclared-durable": (
        lambda ch, q, x, c: (
            ch.exchange_declare(x, "direct"),
            ch.exchange_declare(x, "direct", durable=True),
        ),
        "channel",
        406,
        "PRECONDITION_FAILED - inequivalent arg 'durable' for exchange '{x}' in vhost '/': "
        "received 'true' but current is 'false'",
    ),
    "exchange-redeclared-without-alternate-exchange": (
        lambda ch, q, x, c: (
            ch.exchange_declare(x, "direct", arguments={"alternate-exchange": "ae"}),
            ch.exchange_declare(x, "direct"),
        ),
        "channel",
        406,
        "PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange '{x}' in "
        "vhost '/': received none but current is the value 'ae' of type 'longstr'",
    ),
    "exchange-name-with-spaces": (
        lambda ch, q, x, c: ch.exchange_declare(x + " and spaces!", "direct"),
        "ok",
        None,
        None,
    ),
    "delete-system-exchange": (
        lambda ch, q, x, c: ch.exchange_delete("amq.direct"),
        "channel",
        403,
        "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '/' not allowed",
    ),
    "delete-default-exchange": (
        lambda ch, q, x, c: ch.exchange_delete(""),
        "channel",
        403,
        "ACCESS_REFUSED - operation not permitted on the default exchange",
    ),
    "delete-missing-exchange": (lambda ch, q, x, c: ch.exchange_delete(x), "ok", None, None),
    "headers-binding-with-bad-x-match": (
        lambda ch, q, x, c: (
            ch.exchange_declare(x, "headers"),
            ch.queue_declare(q, exclusive=True),
            ch.queue_bind(q, x, "", arguments={"x-match": "some"}),
        ),
        "channel",
        406,
        'PRECONDITION_FAILED - Invalid x-match field value <<"some">>; expected all, any, '
        "all-with-x, or any-with-x",
    ),
    "unbind-missing-queue": (
        lambda ch, q, x, c: ch.queue_unbind(q, "amq.direct", "k"),
        "ok",
        None,
        None,
    ),
    "unbind-from-missing-exchange": (
        lambda ch, q, x, c: (ch.queue_declare(q, exclusive=True), ch.queue_unbind(q, x, "k")),
        "ok",
        None,
        None,
    ),
    "unbind-exchange-from-missing-exchange": (
        lambda ch, q, x, c: (ch.exchange_declare(x, "direct"), ch.exchange_unbind(x, q, "k")),
        "ok",
        None,
        None,
    ),
    "unbind-from-default-exchange": (
        lambda ch, q, x, c: (ch.queue_declare(q, exclusive=True), ch.queue_unbind(q, "", q)),
        "channel",
        403,
        "ACCESS_REFUSED - operation not permitted on the default exchange",
    ),
    "queue-redeclared-durable": (
        lambda ch, q, x, c: (
            ch.queue_declare(q, auto_delete=True),
            ch.queue_declare(q, durable=True, auto_delete=True),
        ),
        "channel",
        406,
        "PRECONDITION_FAILED - inequivalent arg 'durable' for queue '{q}' in vhost '/': "
        "received 'true' but current is 'false'",
    ),
    "queue-redeclared-exclusive": (
        lambda ch, q, x, c: (
            ch.queue_declare(q, auto_delete=True),
            ch.queue_declare(q, exclusive=True, auto_delete=True),
        ),
        "channel",
        405,
        LOCKED,
    ),
    "queue-exclusive-to-another-connection": (
        lambda ch, q, x, c: (ch.queue_declare(q, exclusive=True), _other_conn(c).queue_purge(q)),
        "channel",
        405,
        LOCKED,
    ),
    "queue-not-empty": (
        lambda ch, q, x, c: (
            ch.queue_declare(q, exclusive=True),
            ch.basic_publish("", q, b"x"),
            ch.queue_delete(q, if_empty=True),
        ),
        "channel",
        406,
        "PRECONDITION_FAILED - queue '{q}' in vhost '/' not empty",
    ),
    "queue-in-use": (
        lambda ch, q, x, c: (
            ch.queue_declare(q, exclusive=True),
            ch.basic_consume(q, lambda *a: None),
            ch.queue_delete(q, if_unused=True),
        ),
        "channel",
        406,
        "PRECONDITION_FAILED - queue '{q}' in vhost '/' in use",
    ),
    "bad-queue-type": (
        lambda ch, q, x, c: ch.queue_declare(q, arguments={"x-queue-type": "lazy-ish"}),
        "channel",
        406,
        "PRECONDITION_FAILED - invalid arg 'x-queue-type' for queue '{q}' in vhost '/': "
        "\"unsupported queue type 'lazy-ish'\"",
    ),
    **{
        f"bad-arg-{key}-{value}": (
            lambda ch, q, x, c, key=key, value=value: ch.queue_declare(
                q, exclusive=True, arguments={key: value}
            ),
            "channel",
            406,
            f"PRECONDITION_FAILED - invalid arg '{key}' for queue '{{q}}' in vhost '/': {detail}",
        )
        for key, value, detail in (  # the template is formatted again: braces doubled
            ("x-message-ttl", "x", '"expected integer, got longstr"'),
            ("x-message-ttl", -1, "{{value_negative,-1}}"),
            ("x-max-length", -1, "{{value_negative,-1}}"),
            ("x-expires", 0, "{{value_zero,0}}"),
            ("x-max-priority", 256, "{{max_value_exceeded,256}}"),
            ("x-overflow", "sideways", "invalid_overflow"),
        )
    },
    "dead-letter-exchange-not-a-string": (
        lambda ch, q, x, c: ch.queue_declare(
            q, exclusive=True, arguments={"x-dead-letter-exchange": 5}
        ),
        "channel",
        406,
        "PRECONDITION_FAILED - invalid type 'signedint' for arg 'x-dead-letter-exchange' in "
        "queue '{q}' in vhost '/'",
    ),
    "stream-exclusive": (
        lambda ch, q, x, c: ch.queue_declare(
            q, durable=True, exclusive=True, arguments={"x-queue-type": "stream"}
        ),
        "channel",
        406,
        "PRECONDITION_FAILED - invalid property 'exclusive-owner' for queue '{q}' in vhost '/'",
    ),
    "quorum-non-durable": (
        lambda ch, q, x, c: ch.queue_declare(q, arguments={"x-queue-type": "quorum"}),
        "channel",
        406,
        "PRECONDITION_FAILED - invalid property 'non-durable' for queue '{q}' in vhost '/'",
    ),
    "stream-auto-delete": (
        lambda ch, q, x, c: ch.queue_declare(
            q, durable=True, auto_delete=True, arguments={"x-queue-type": "stream"}
        ),
        "channel",
        406,
        "PRECONDITION_FAILED - invalid property 'auto-delete' for queue '{q}' in vhost '/'",
    ),
    "stream-consumer-without-prefetch": (
        lambda ch, q, x, c: (_stream(ch, q), ch.basic_consume(q, lambda *a: None)),
        "channel",
        406,
        "PRECONDITION_FAILED - consumer prefetch count is not set for 'queue '{q}' in vhost '/''",
    ),
    "stream-consumer-no-ack": (
        lambda ch, q, x, c: (
            _stream(ch, q),
            ch.basic_qos(prefetch_count=10),
            ch.basic_consume(q, lambda *a: None, auto_ack=True),
        ),
        "connection",
        540,
        "NOT_IMPLEMENTED - automatic acknowledgement not supported by stream queues queue "
        "'{q}' in vhost '/'",
    ),
    "stream-basic-get": (
        lambda ch, q, x, c: (_stream(ch, q), ch.basic_get(q)),
        "connection",
        540,
        "NOT_IMPLEMENTED - basic.get not supported by stream queues queue '{q}' in vhost '/'",
    ),
    "prefetch-size": (
        lambda ch, q, x, c: ch.basic_qos(prefetch_size=10),
        "connection",
        540,
        "NOT_IMPLEMENTED - prefetch_size!=0 (10)",
    ),
    "recover-without-requeue": (
        lambda ch, q, x, c: ch.basic_recover(requeue=False),
        "connection",
        540,
        "NOT_IMPLEMENTED - requeue=false",
    ),
    "ack-tag-zero": (
        lambda ch, q, x, c: ch.basic_ack(0),
        "channel",
        406,
        "PRECONDITION_FAILED - unknown delivery tag 0",
    ),
    "ack-all-with-nothing-unacked": (
        lambda ch, q, x, c: ch.basic_ack(0, multiple=True),
        "ok",
        None,
        None,
    ),
    "cancel-unknown-consumer": (lambda ch, q, x, c: ch.basic_cancel("nope"), "ok", None, None),
    "exclusive-consumer-on-a-used-queue": (
        lambda ch, q, x, c: (
            ch.queue_declare(q, exclusive=True),
            ch.basic_consume(q, lambda *a: None),
            ch.basic_consume(q, lambda *a: None, exclusive=True),
        ),
        "channel",
        403,
        "ACCESS_REFUSED - queue '{q}' in vhost '/' in exclusive use",
    ),
    "consumer-on-a-queue-with-an-exclusive-consumer": (
        lambda ch, q, x, c: (
            ch.queue_declare(q, exclusive=True),
            ch.basic_consume(q, lambda *a: None, exclusive=True),
            ch.basic_consume(q, lambda *a: None),
        ),
        "channel",
        403,
        "ACCESS_REFUSED - queue '{q}' in vhost '/' in exclusive use",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_reply_code_as_rabbitmq(connect, case):
    setup, kind, code, template = CASES[case]
    conn = connect()
    ch = conn.channel()
    q, x = name("q"), name("x")
    try:
        setup(ch, q, x, connect)
        # a round trip: an asynchronous close (after publish, ack...) arrives first
        ch.queue_declare("", exclusive=True)
        got = ("ok", None, None)
    except ChannelClosedByBroker as exc:
        got = ("channel", exc.reply_code, exc.reply_text)
    except ConnectionClosedByBroker as exc:
        got = ("connection", exc.reply_code, exc.reply_text)
    finally:
        # durable or shared queues made by a case go (exclusive ones go with conn)
        (conn if conn.is_open else connect()).channel().queue_delete(q)
    text = template.format(q=q, x=x) if template else None
    assert got == (kind, code, text)
    if kind == "channel":
        # a channel error leaves the connection usable
        assert conn.is_open
        assert conn.channel().queue_declare("", exclusive=True).method.queue


def test_publish_to_unknown_exchange_closes_only_the_channel(connect):
    conn = connect()
    ch = conn.channel()
    x = name("x")
    ch.basic_publish(x, "k", b"lost")
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.queue_declare("", exclusive=True)
    assert (info.value.reply_code, info.value.reply_text) == (
        404,
        f"NOT_FOUND - no exchange '{x}' in vhost '/'",
    )
    assert conn.channel().exchange_declare("amq.direct", passive=True)


def test_pika_flow_control_request_is_honoured(connect):
    """RabbitMQ refuses a client's channel.flow(active=false) with 540; FluxMQ
    implements it as the spec says (see test_interop_pika.test_channel_flow)."""
    ch = connect().channel()
    assert ch.flow(False) is False
    assert ch.flow(True) is True


def test_tx_and_confirm_mode_errors(connect):
    conn = connect()
    for first, second, text in (
        ("confirm", "tx", "cannot switch from confirm to tx mode"),
        ("tx", "confirm", "cannot switch from tx to confirm mode"),
    ):
        ch = conn.channel()
        ch.confirm_delivery() if first == "confirm" else ch.tx_select()
        with pytest.raises(ChannelClosedByBroker) as info:
            ch.tx_select() if second == "tx" else ch.confirm_delivery()
        assert (info.value.reply_code, info.value.reply_text) == (
            406,
            f"PRECONDITION_FAILED - {text}",
        )
    ch = conn.channel()
    with pytest.raises(ChannelClosedByBroker) as info:
        ch.tx_commit()
    assert info.value.reply_text == "PRECONDITION_FAILED - channel is not transactional"
