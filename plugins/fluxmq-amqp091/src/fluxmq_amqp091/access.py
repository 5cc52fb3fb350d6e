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

Blocking hooks (``[[hooks.endpoints]]``) run after authorization, on the same
topics: ``auth_on_publish`` may deny (403) or change the payload, the headers (user
properties) and, on the bridged and the default exchange, the topic (the routing key
or the ``$queue/<q>`` queue), which is authorized again; ``auth_on_subscribe`` on
``basic.consume``, ``basic.get`` and bridged ``queue.bind`` may deny (403); a changed
filter is not applied (AMQP consumes queues, not filters). Cancels and unbinds are
not hooked.

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

from pamqp.commands import Basic

from fluxmq_amqp091.codec import ACCESS_REFUSED, AMQPError
from fluxmq_amqp091.props import PROTOCOL
from fluxmq_core.callout.hooks import HookOutcome, HookRequest, apply_outcome, external_id
from fluxmq_core.contracts import PUBLISH, SUBSCRIBE
from fluxmq_core.router.topics import (
    TopicError,
    amqp_pattern_to_filter,
    amqp_routing_key_to_topic,
    topic_to_amqp_routing_key,
    validate_topic_name,
)
from fluxmq_core.transport.adapter import Wait

_HOOK = {PUBLISH: "auth_on_publish", SUBSCRIBE: "auth_on_subscribe"}

__all__ = [
    "AuthzWait",
    "HookWait",
    "apply_hook",
    "may_bind",
    "may_consume",
    "may_publish",
    "resolve",
    "resolve_hook",
]


@dataclass(frozen=True, slots=True)
class AuthzWait(Wait):
    """A decision the auth service must make before ``retry`` runs the channel
    method again."""

    channel: Any
    action: str
    topic: str
    retry: Callable[[], None]


@dataclass(frozen=True, slots=True)
class HookWait(Wait):
    """A blocking hook to call before ``retry`` runs the channel method again."""

    channel: Any
    request: HookRequest
    ids: tuple[int, int]
    retry: Callable[[], None]


#: id(connection) -> (action, topic, decision) for the one re-run after a wait
#: (the auth service may not cache: ``[auth] cache_size = 0``).
_decided: dict[int, tuple[str, str, bool]] = {}
#: id(connection) -> the hook chain's outcome, during the re-run after a HookWait.
_hooked: dict[int, HookOutcome] = {}


def _hook(
    channel: Any,
    action: str,
    topic: str,
    ids: tuple[int, int],
    retry: Any,
    message: tuple[bytes, dict[str, str]] | None = None,
) -> bool:
    """After authorization: the blocking hook, when one is configured for it."""
    env = channel.env
    hooks = env.context.hooks
    if hooks is None or not hooks.wants(_HOOK[action], PROTOCOL):
        return True
    conn = channel.conn
    outcome = _hooked.get(id(conn))
    if outcome is not None:
        if not outcome.allow:
            env.stats.authz_denied += 1
            raise AMQPError(ACCESS_REFUSED, outcome.reason or "refused by a hook", *ids)
        return True
    payload, props = message or (b"", {})
    conn.waiting = HookWait(
        channel,
        HookRequest(
            _HOOK[action],
            PROTOCOL,
            conn.id,
            topic,
            payload=payload,
            properties=props,
            username=conn.username,
            external_id=external_id(env.context, conn.id),
        ),
        ids,
        retry,
    )
    return False


def _check(
    channel: Any, action: str, topic: str, what: str, ids: tuple[int, int], retry: Any
) -> bool:
    conn = channel.conn
    if id(conn) in _hooked:
        return True  # re-run after the hook: authorized before it
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


def _publish_topic(topo: Any, exchange: str, routing_key: str) -> str:
    """The topic a publish is hooked with: the bridged exchange's topic, the default
    exchange's ``$queue/<q>``, else the routing key as a topic (maybe "")."""
    if exchange == "":
        return f"$queue/{routing_key}"
    try:
        return amqp_routing_key_to_topic(routing_key)
    except TopicError:
        return ""


def may_publish(
    channel: Any, m: Any, headers: dict[str, Any] | None, body: bytes, retry: Any
) -> bool:
    """Whether ``basic.publish`` ``m`` may go on (False: wait set, ``retry`` later).
    Call only while authorization is active or a hook is configured."""
    env = channel.env
    topo = env.topology
    ex = topo.exchanges.get(m.exchange)
    if ex is None or ex.internal:
        return True  # the publish path answers these with its own errors
    ids = (60, 40)
    if env.auth.authorization_active:
        topic = ""
        if ex.name == topo.bridge:
            try:
                topic = amqp_routing_key_to_topic(m.routing_key)
            except TopicError:
                topic = ""
        if topic:
            what = f"topic '{m.routing_key}' in exchange '{ex.name}'"
            if not _check(channel, PUBLISH, topic, what, ids, retry):
                return False
        else:
            for name in topo.route(ex, m.routing_key, headers, env.queues.exists):
                if not _check(channel, PUBLISH, f"$queue/{name}", f"queue '{name}'", ids, retry):
                    return False
    props = {str(k): str(v) for k, v in (headers or {}).items() if isinstance(v, (str, int))}
    topic = _publish_topic(topo, ex.name, m.routing_key)
    return _hook(channel, PUBLISH, topic, ids, retry, (body, props))


def apply_hook(channel: Any, m: Any, message: Any) -> Any:
    """In the re-run after ``auth_on_publish``: put the hook's changes on
    ``message`` and return the publish method to route (a new routing key when the
    hook moved the topic)."""
    outcome = _hooked.get(id(channel.conn))
    if outcome is None:
        return m
    apply_outcome(message, outcome)
    topic = outcome.topic
    if topic is None:
        return m
    if m.exchange == "" and topic.startswith("$queue/"):
        key = topic.removeprefix("$queue/")
    elif m.exchange == channel.env.topology.bridge:
        key = topic_to_amqp_routing_key(topic)
        message.topic = topic
    else:
        return m  # other exchanges route on keys the hook does not speak
    return Basic.Publish(exchange=m.exchange, routing_key=key, mandatory=m.mandatory)


def may_consume(channel: Any, queue: str, ids: tuple[int, int], retry: Any) -> bool:
    """``basic.consume`` / ``basic.get`` on ``queue``."""
    topic = f"$queue/{queue}"
    if channel.env.auth.authorization_active and not _check(
        channel, SUBSCRIBE, topic, f"queue '{queue}'", ids, retry
    ):
        return False
    return _hook(channel, SUBSCRIBE, topic, ids, retry)


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
    if channel.env.auth.authorization_active and not _check(
        channel, SUBSCRIBE, topic_filter, what, (50, 20), retry
    ):
        return False
    return _hook(channel, SUBSCRIBE, topic_filter, (50, 20), retry)


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


async def resolve_hook(conn: Any, context: Any, wait: HookWait) -> None:
    """The adapter's handler: run the hook chain (and authorization again on a
    changed publish topic), then the method again (once)."""
    req = wait.request
    outcome = await context.hooks.call(req)
    if outcome.allow and outcome.topic is not None and outcome.topic != req.topic:
        if req.hook != "auth_on_publish":
            outcome = HookOutcome(True)  # a changed filter is not applied (see above)
        else:
            outcome = await _moved(conn, context, req, outcome)
    conn.waiting = None
    channel = wait.channel
    if conn.channels.get(channel.number) is not channel or channel.closing:
        return
    _hooked[id(conn)] = outcome
    try:
        wait.retry()
    except AMQPError as exc:
        channel.fail(exc)
    finally:
        _hooked.pop(id(conn), None)


async def _moved(conn: Any, context: Any, req: HookRequest, outcome: HookOutcome) -> HookOutcome:
    topic = outcome.topic or ""
    try:
        validate_topic_name(topic)
    except TopicError as exc:
        return HookOutcome(False, reason=f"the hook gave an invalid topic {topic!r}: {exc}")
    if not await context.auth.authorize(conn.id, conn.username, PUBLISH, topic):
        user = conn.username or "anonymous"
        return HookOutcome(False, reason=f"access to topic '{topic}' refused for user '{user}'")
    return outcome
