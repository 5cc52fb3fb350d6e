"""Blocking hooks (``[[hooks.endpoints]]``) on CoAP publishes and observations.

``auth_on_publish`` sees a POST/PUT publish after its authorization: the hook may
deny it (4.03 Forbidden with the hook's reason) or change its topic (authorized
again, so a hook cannot move a publish where the client may not publish), payload,
retain flag, QoS or user properties. ``auth_on_subscribe`` sees an Observe
registration's filter: deny (4.03), or a new filter (authorized again, then
observed instead). An observation's end is not hooked: like a disconnect, it cannot
be refused. With no endpoint configured ``context.hooks`` is ``None`` and each
request pays that one check.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fluxmq_core.callout.hooks import HookRequest, apply_outcome, external_id
from fluxmq_core.contracts import PUBLISH, SUBSCRIBE
from fluxmq_core.message import Message
from fluxmq_core.router.topics import TopicError, validate_topic_filter, validate_topic_name

__all__ = ["HookRefused", "on_publish", "on_subscribe"]

PROTOCOL = "coap"

#: ``authorize(client_id, username, action, topic)``: raises when refused.
Authorize = Callable[[str, "str | None", str, str], Awaitable[None]]


class HookRefused(Exception):
    """A hook said no; ``reason`` is for the client's diagnostic payload."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def on_publish(
    context: Any, client_id: str, username: str | None, message: Message, authorize: Authorize
) -> None:
    """Run ``auth_on_publish`` on ``message`` (changed in place) when hooked."""
    hooks = context.hooks
    if hooks is None or not hooks.wants("auth_on_publish", PROTOCOL):
        return
    outcome = await hooks.call(
        HookRequest(
            "auth_on_publish",
            PROTOCOL,
            client_id,
            message.topic,
            payload=message.payload,
            qos=message.qos,
            retain=message.retain,
            properties=dict(message.user_properties or []),
            username=username,
            external_id=external_id(context, client_id),
        )
    )
    if not outcome.allow:
        raise HookRefused(f"publish refused: {outcome.reason}")
    if outcome.topic is not None and outcome.topic != message.topic:
        try:
            validate_topic_name(outcome.topic)
        except TopicError as exc:
            raise HookRefused(f"the hook gave an invalid topic {outcome.topic!r}: {exc}") from None
        await authorize(client_id, username, PUBLISH, outcome.topic)
        message.topic = outcome.topic
    apply_outcome(message, outcome)


async def on_subscribe(
    context: Any, client_id: str, username: str | None, topic_filter: str, authorize: Authorize
) -> str:
    """Run ``auth_on_subscribe``; the filter to observe (maybe the hook's)."""
    hooks = context.hooks
    if hooks is None or not hooks.wants("auth_on_subscribe", PROTOCOL):
        return topic_filter
    outcome = await hooks.call(
        HookRequest(
            "auth_on_subscribe",
            PROTOCOL,
            client_id,
            topic_filter,
            username=username,
            external_id=external_id(context, client_id),
        )
    )
    if not outcome.allow:
        raise HookRefused(f"observe refused: {outcome.reason}")
    if outcome.topic is not None and outcome.topic != topic_filter:
        try:
            validate_topic_filter(outcome.topic)
        except TopicError as exc:
            raise HookRefused(f"the hook gave an invalid filter {outcome.topic!r}: {exc}") from None
        await authorize(client_id, username, SUBSCRIBE, outcome.topic)
        return outcome.topic
    return topic_filter
