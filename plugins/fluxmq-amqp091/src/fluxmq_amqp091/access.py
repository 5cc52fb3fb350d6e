"""Authorization for AMQP 0.9.1: the core's ``fluxmq_authorize`` decisions (the ACL
file, the external auth callout, any auth plugin) applied to publishes, consumers
and bindings, as for MQTT.

What is checked, on which topic:

=========================================  ===============================================
operation                                  check
=========================================  ===============================================
``basic.publish`` to the bridged exchange  ``publish`` on the routing key as an MQTT topic
                                           (``a.b`` -> ``a/b``), what an MQTT publisher of
                                           that topic needs
``basic.publish`` to any other exchange    ``publish`` on ``$queue/<q>`` for every queue it
                                           routes to (appending, as through the queue API)
``basic.consume``, ``basic.get``           ``subscribe`` on ``$queue/<q>``
``queue.bind`` on the bridged exchange     ``subscribe`` on the binding as an MQTT filter
=========================================  ===============================================

A refusal is RabbitMQ's: the channel is closed with 403 ACCESS_REFUSED (a publish
refusal closes the channel too, as RabbitMQ's topic authorization does).

The channel code is synchronous and decisions may need a network round trip (the
callout), so a check that the auth service has not cached yet sets an
:class:`AuthzWait` on the connection (which stops reading frames, so order is kept)
and the method runs again once the adapter has the decision. Nothing is checked,
and nothing costs more than one flag test, while no plugin authorizes
(``auth.authorization_active``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fluxmq_amqp091.codec import ACCESS_REFUSED, AMQPError
from fluxmq_core.contracts import PUBLISH, SUBSCRIBE
from fluxmq_core.router.topics import (
    TopicError,
    amqp_pattern_to_filter,
    amqp_routing_key_to_topic,
)
from fluxmq_core.transport.adapter import Wait

__all__ = ["AuthzWait", "may_bind", "may_consume", "may_publish", "resolve"]


@dataclass(frozen=True, slots=True)
class AuthzWait(Wait):
    """A decision the auth service must make before ``retry`` runs the channel
    method again."""

    channel: Any
    action: str
    topic: str
    retry: Callable[[], None]


#: id(connection) -> (action, topic, decision) for the one re-run after a wait
#: (the auth service may not cache: ``[auth] cache_size = 0``).
_decided: dict[int, tuple[str, str, bool]] = {}


def _check(
    channel: Any, action: str, topic: str, what: str, ids: tuple[int, int], retry: Any
) -> bool:
    conn = channel.conn
    decided = _decided.get(id(conn))
    if decided is not None and decided[0] == action and decided[1] == topic:
        ok: bool | None = decided[2]
    else:
        ok = channel.env.context.auth.authorize_cached(conn.id, conn.username, action, topic)
    if ok is None:
        conn.waiting = AuthzWait(channel, action, topic, retry)
        return False
    if not ok:
        channel.env.stats.authz_denied += 1
        user = conn.username or "anonymous"
        raise AMQPError(
            ACCESS_REFUSED, f"access to {what} in vhost '/' refused for user '{user}'", *ids
        )
    return True


def may_publish(channel: Any, m: Any, headers: dict[str, Any] | None, retry: Any) -> bool:
    """Whether ``basic.publish`` ``m`` may go on (False: wait set, ``retry`` later)."""
    env = channel.env
    topo = env.topology
    ex = topo.exchanges.get(m.exchange)
    if ex is None or ex.internal:
        return True  # the publish path answers these with its own errors
    ids = (60, 40)
    if ex.name == topo.bridge:
        try:
            topic = amqp_routing_key_to_topic(m.routing_key)
        except TopicError:
            topic = ""
        if topic:
            what = f"topic '{m.routing_key}' in exchange '{ex.name}'"
            return _check(channel, PUBLISH, topic, what, ids, retry)
    for name in topo.route(ex, m.routing_key, headers, env.queues.exists):
        if not _check(channel, PUBLISH, f"$queue/{name}", f"queue '{name}'", ids, retry):
            return False
    return True


def may_consume(channel: Any, queue: str, ids: tuple[int, int], retry: Any) -> bool:
    """``basic.consume`` / ``basic.get`` on ``queue``."""
    return _check(channel, SUBSCRIBE, f"$queue/{queue}", f"queue '{queue}'", ids, retry)


def may_bind(channel: Any, exchange: str, routing_key: str, retry: Any) -> bool:
    """``queue.bind``: a subscription when the exchange is the bridged one."""
    topo = channel.env.topology
    ex = topo.exchanges.get(exchange)
    if ex is None or ex.name != topo.bridge or ex.type != "topic":
        return True
    try:
        topic_filter = amqp_pattern_to_filter(routing_key)
    except TopicError:
        return True  # not bridged to topics: no subscription
    what = f"topic '{routing_key}' in exchange '{exchange}'"
    return _check(channel, SUBSCRIBE, topic_filter, what, (50, 20), retry)


async def resolve(conn: Any, auth: Any, wait: AuthzWait) -> None:
    """The adapter's handler: decide, then run the method again (once)."""
    ok = await auth.authorize(conn.id, conn.username, wait.action, wait.topic)
    conn.waiting = None
    channel = wait.channel
    if conn.channels.get(channel.number) is not channel or channel.closing:
        return
    _decided[id(conn)] = (wait.action, wait.topic, ok)
    try:
        wait.retry()
    except AMQPError as exc:
        channel.fail(exc)
    finally:
        _decided.pop(id(conn), None)
