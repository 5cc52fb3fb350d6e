"""AMQP 1.0 messages <-> the core ``Message``: W3C trace context in application
properties goes in as user properties and, replaced by a tracer, comes out again on
a message that kept its bytes; an untouched message comes out byte for byte."""

from __future__ import annotations

from fluxmq_amqp1.codec.composites import AmqpValue, Header, Properties
from fluxmq_amqp1.codec.message import AMQPMessage, decode_message, encode_message
from fluxmq_amqp1.mapping import from_core, to_core

from fluxmq_core.message import Message

CLIENT_TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
BROKER_TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01"


def received(app: dict[str, object]) -> tuple[bytes, Message]:
    raw = encode_message(
        AMQPMessage(
            [AmqpValue("body")],
            header=Header(durable=True),
            properties=Properties(message_id="m-1", subject="s"),
            application_properties=app,
        )
    )
    return raw, to_core(decode_message(raw), raw, "t/a", False, "client", 0.0)


def test_trace_context_goes_in_as_user_properties() -> None:
    raw, core = received({"traceparent": CLIENT_TP, "tracestate": "k=v", "n": 7})
    assert core.user_properties == [("traceparent", CLIENT_TP), ("tracestate", "k=v"), ("n", "7")]
    assert from_core(core, 0.0) == raw  # as received: the same bytes


def test_a_replaced_trace_context_comes_out_in_application_properties() -> None:
    raw, core = received({"traceparent": CLIENT_TP, "tracestate": "k=v", "n": 7})
    kept = [(k, v) for k, v in core.user_properties or () if k not in ("traceparent", "tracestate")]
    traced = core.copy(user_properties=[*kept, ("traceparent", BROKER_TP)])  # as a tracer does
    out = from_core(traced, 0.0)
    msg = decode_message(out)
    assert msg.application_properties == {"traceparent": BROKER_TP, "n": 7}  # types kept
    original = decode_message(raw)
    assert msg.properties == original.properties and msg.body == original.body
    assert from_core(traced, 0.0) == out  # encoded once per message
    # a redelivery keeps the rewrite and counts
    again = traced.copy(properties={**(traced.properties or {}), "delivery-count": 2})
    msg2 = decode_message(from_core(again, 0.0))
    assert msg2.header.delivery_count == 1
    assert msg2.application_properties["traceparent"] == BROKER_TP


def test_a_trace_context_added_to_a_message_without_one() -> None:
    raw, core = received({"n": 1})
    traced = core.copy(user_properties=[*(core.user_properties or ()), ("traceparent", BROKER_TP)])
    msg = decode_message(from_core(traced, 0.0))
    assert msg.application_properties == {"n": 1, "traceparent": BROKER_TP}
    assert from_core(core, 0.0) == raw


def test_trace_context_from_another_protocol_is_an_application_property() -> None:
    core = Message("t/a", b"x", 1, user_properties=[("traceparent", BROKER_TP)])
    msg = decode_message(from_core(core, 0.0))
    assert msg.application_properties == {"traceparent": BROKER_TP}
