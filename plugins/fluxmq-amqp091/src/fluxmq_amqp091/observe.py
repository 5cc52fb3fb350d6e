"""The core's observer events (webhooks, ``fluxmq_client_*`` and ``fluxmq_message_*``
hooks) for AMQP 0.9.1, as the MQTT adapter emits them.

The connection and channel code calls one function here per event, so what an event
carries is decided in one place:

==========================  ==================================================
event                       when
==========================  ==================================================
``client.connected``        ``connection.open-ok`` sent (after login)
``client.disconnected``     an opened connection's transport is gone; the reason
                            is the close's reply text (ours or the client's)
``subscription.created``    ``basic.consume`` (filter ``$queue/<queue>``, QoS 0
                            with ``no-ack``, else 1) and ``queue.bind`` on the
                            bridged topic exchange (the binding as an MQTT filter)
``subscription.removed``    ``basic.cancel`` from the client, ``queue.unbind``
                            on the bridged exchange
``message.published``       ``basic.publish`` to any exchange but the bridged
                            one (whose publishes the core router reports itself)
``message.delivered``       ``basic.deliver`` and ``basic.get-ok``
==========================  ==================================================

A refused login's ``auth.failure`` comes from the core's auth service, as for every
protocol. The client id of every event is the connection's id (``amqp091-<n>``), which is also
the id the auth service and the admin API's session view use. Per-message events
cost one flag check when nobody listens (``events.on_published`` /
``on_delivered``, computed by the core at start-up).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fluxmq_amqp091.props import PROTOCOL
from fluxmq_core.contracts import SubscriptionOptions
from fluxmq_core.router.topics import TopicError, amqp_pattern_to_filter

if TYPE_CHECKING:
    from fluxmq_core.message import Message

__all__ = [
    "bound",
    "cancelled",
    "connected",
    "consumed",
    "delivered",
    "disconnected",
    "published",
    "unbound",
]

_ACKED = SubscriptionOptions(qos=1)
_NO_ACK = SubscriptionOptions(qos=0)


def _events(env: Any) -> Any:
    return env.context.events


def connected(env: Any, conn: Any) -> None:
    _events(env).client_connected(PROTOCOL, conn.id, conn.username, conn.remote)


def disconnected(env: Any, conn: Any) -> None:
    """Call before the connection is torn down (its phase tells who closed)."""
    error = getattr(conn, "error", None)
    if error is not None:
        reason = f"{error.reply_code} {error.reply_text}"
    elif getattr(conn.phase, "value", "") == "closed":
        reason = "closed by the client"
    else:
        reason = "connection lost"
    _events(env).client_disconnected(PROTOCOL, conn.id, reason)
    forget = getattr(env.context.auth, "forget_client", None)
    if forget is not None:
        forget(conn.id)


def consumed(env: Any, conn: Any, queue: str, no_ack: bool) -> None:
    _events(env).client_subscribed(
        PROTOCOL, conn.id, f"$queue/{queue}", _NO_ACK if no_ack else _ACKED
    )


def cancelled(env: Any, conn: Any, queue: str) -> None:
    _events(env).client_unsubscribed(PROTOCOL, conn.id, f"$queue/{queue}")


def _bridged_filter(env: Any, exchange: str, routing_key: str) -> str | None:
    topology = env.topology
    ex = topology.exchanges.get(exchange)
    if ex is None or ex.name != topology.bridge or ex.type != "topic":
        return None
    try:
        return amqp_pattern_to_filter(routing_key)
    except TopicError:
        return None  # not bridged (the topology logs why)


def bound(env: Any, conn: Any, exchange: str, routing_key: str) -> None:
    topic_filter = _bridged_filter(env, exchange, routing_key)
    if topic_filter is not None:
        _events(env).client_subscribed(PROTOCOL, conn.id, topic_filter, _ACKED)


def unbound(env: Any, conn: Any, exchange: str, routing_key: str) -> None:
    topic_filter = _bridged_filter(env, exchange, routing_key)
    if topic_filter is not None:
        _events(env).client_unsubscribed(PROTOCOL, conn.id, topic_filter)


def published(env: Any, message: Message) -> None:
    """Call only while ``events.on_published``."""
    _events(env).message_published(message)


def delivered(env: Any, conn: Any, message: Message) -> None:
    """Call only while ``events.on_delivered``."""
    _events(env).message_delivered(message, PROTOCOL, conn.id)
