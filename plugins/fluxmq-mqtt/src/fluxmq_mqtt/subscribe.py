"""SUBSCRIBE and UNSUBSCRIBE of one connection, sans-IO (a base of ``Connection``).

:class:`SubscribeHandlers` checks each filter of a SUBSCRIBE in order (syntax, shared
and wildcard switches, No Local on shared subscriptions, the ACL, which may need an
async answer: then the packet is handled again from the start once it came), grants
at most ``[mqtt] max_qos``, subscribes the session in the core router, answers
SUBACK (5.0 codes, or 0x80 for a refused filter in 3.x) and then delivers the
retained messages that Retain Handling asks for. UNSUBSCRIBE answers UNSUBACK
(0x11 for a filter that was not subscribed).

What it does not do: topic matching or retained storage (the core router), or any
I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from fluxmq_core.message import Message
from fluxmq_core.router import Delivery, SubscriptionOptions, TopicError, validate_topic_filter
from fluxmq_mqtt.codec import MQTT_5, Properties, Suback, Subscribe, Unsuback, Unsubscribe, encode
from fluxmq_mqtt.queues import is_queue_topic
from fluxmq_mqtt.session import PROTOCOL
from fluxmq_mqtt.state import SUSPEND

if TYPE_CHECKING:
    from fluxmq_core.ratelimit import TokenBucket
    from fluxmq_mqtt.connection import Connection
    from fluxmq_mqtt.registry import SessionRegistry
    from fluxmq_mqtt.session import Session

__all__ = ["SubscribeHandlers"]


class SubscribeHandlers:
    """SUBSCRIBE / UNSUBSCRIBE handling, mixed into ``Connection``."""

    __slots__ = ()

    # Provided by Connection.
    registry: SessionRegistry
    session: Session | None
    version: int
    client_id: str
    problem_info: bool
    out: bytearray
    subscribe_bucket: TokenBucket | None

    if TYPE_CHECKING:

        def _authorized(self, action: str, topic: str) -> bool | None: ...
        def _protocol_error(self, code: int, text: str, count: bool = True) -> None: ...
        def _v5(self, packet: Any) -> bytes: ...
        def _hooked(self, event: str, topic: str, **fields: Any) -> Any: ...

    def _on_subscribe(self, p: Subscribe) -> Any:
        cfg = self.registry.cfg
        v5 = self.version == MQTT_5
        sub_id = None
        if p.properties is not None and p.properties.subscription_identifiers:
            if not cfg.subscription_identifiers:
                self._protocol_error(0xA1, "subscription identifiers not supported")
                return None
            sub_id = p.properties.subscription_identifiers[0]
        plan: list[tuple[str, SubscriptionOptions | None, int]] = []
        hooks = getattr(self.registry.context, "hooks", None)
        for topic_filter, o in p.subscriptions:
            code = 0
            shared = topic_filter.startswith("$share/")
            try:
                validate_topic_filter(topic_filter)
            except TopicError:
                code = 0x8F
            if not code and shared:
                if not cfg.shared_subscriptions:
                    code = 0x9E
                elif o.no_local:
                    self._protocol_error(0x82, "No Local on a shared subscription")
                    return None
            if (
                not code
                and not cfg.wildcard_subscriptions
                and ("+" in topic_filter or "#" in topic_filter)
            ):
                code = 0xA2
            if not code:
                allowed = self._authorized("subscribe", topic_filter)
                if allowed is None:
                    return SUSPEND
                if not allowed:
                    code = 0x87
            asked = o.qos
            if not code and hooks is not None and hooks.wants("auth_on_subscribe", PROTOCOL):
                hooked = self._hooked("auth_on_subscribe", topic_filter, qos=o.qos)
                if hooked is None:
                    return SUSPEND
                if not hooked.allow:
                    code = 0x87
                else:
                    if hooked.qos is not None:
                        asked = hooked.qos
                    if hooked.topic is not None and hooked.topic != topic_filter:
                        topic_filter = hooked.topic  # checked and authorized again
                        try:
                            validate_topic_filter(topic_filter)
                        except TopicError:
                            code = 0x8F
                        else:
                            allowed = self._authorized("subscribe", topic_filter)
                            if allowed is None:
                                return SUSPEND
                            if not allowed:
                                code = 0x87
            if code:
                plan.append((topic_filter, None, code))
                continue
            granted = min(asked, cfg.max_qos)
            plan.append(
                (
                    topic_filter,
                    SubscriptionOptions(
                        granted, o.no_local, o.retain_as_published, o.retain_handling, sub_id
                    ),
                    granted,
                )
            )
        bucket = self.subscribe_bucket
        if bucket is not None and not bucket.take(self.registry.clock()):
            # [rate_limit] subscribe_rate: every filter refused, 0x97 Quota exceeded
            # (3.x has only 0x80); nothing is subscribed.
            self.registry.stats.rate_limited_subscribes += 1
            plan = [(f, None, 0x97 if v5 else 0x80) for f, _o, _c in plan]
        registry = self.registry
        session = self.session
        assert session is not None
        router = registry.router
        events = registry.events
        codes = []
        retained: list[tuple[Message, int, tuple[int, ...]]] = []
        for topic_filter, options, code in plan:
            if options is not None and is_queue_topic(topic_filter):
                codes.append(
                    registry.queue_face.subscribe(
                        cast("Connection", self), topic_filter, options, p.properties
                    )
                )
                continue
            codes.append(code)
            if options is None:
                if code == 0x87:
                    registry.stats.authz_denied += 1
                continue
            new = router.subscribe(session, topic_filter, options)
            if new:
                registry.stats.subscriptions += 1
            session.set_subscription(topic_filter, options)
            events.client_subscribed(PROTOCOL, self.client_id, topic_filter, options)
            rh = options.retain_handling
            if not topic_filter.startswith("$share/") and (rh == 0 or (rh == 1 and new)):
                ids = (sub_id,) if sub_id is not None else ()
                for m in router.retained_for(topic_filter):
                    retained.append((m, options.qos, ids))
        props = None
        if v5 and self.problem_info and any(c >= 0x80 for c in codes):
            props = Properties(reason_string="some subscriptions were refused")
        suback = Suback(p.packet_id, tuple(codes), props)
        self.out += self._v5(suback) if v5 else encode(suback, self.version)
        for m, qos, sub_ids in retained:
            session.deliver(m, Delivery(qos, True, sub_ids))
        return None

    def _on_unsubscribe(self, p: Unsubscribe) -> Any:
        registry = self.registry
        session = self.session
        assert session is not None
        hooks = getattr(registry.context, "hooks", None)
        filters = list(p.topic_filters)
        refused: set[int] = set()
        if hooks is not None and hooks.wants("auth_on_unsubscribe", PROTOCOL):
            for i, topic_filter in enumerate(p.topic_filters):
                hooked = self._hooked("auth_on_unsubscribe", topic_filter)
                if hooked is None:
                    return SUSPEND
                if not hooked.allow:
                    refused.add(i)
                elif hooked.topic is not None:
                    filters[i] = hooked.topic
        codes = []
        for i, topic_filter in enumerate(filters):
            if i in refused:
                codes.append(0x87 if self.version == MQTT_5 else 0x11)
            elif is_queue_topic(topic_filter) and registry.queue_face.unsubscribe(
                session, topic_filter
            ):
                codes.append(0)
            elif registry.router.unsubscribe(session, topic_filter):
                registry.stats.subscriptions -= 1
                session.remove_subscription(topic_filter)
                registry.events.client_unsubscribed(PROTOCOL, self.client_id, topic_filter)
                codes.append(0)
            else:
                codes.append(0x11)
        self.out += encode(Unsuback(p.packet_id, tuple(codes)), self.version)
