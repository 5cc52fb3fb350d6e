"""The core's observer events (webhooks, ``fluxmq_client_*`` and ``fluxmq_message_*``
hooks) for CoAP, as the MQTT adapter emits them.

CoAP has no connections: what stands for one is a client's **observations**. A client
(its ``client_id`` query parameter, else ``coap:<host:port>``) is *connected* from the
start of its first Observe registration to the end of its last one:

==========================  ==================================================
event                       when
==========================  ==================================================
``client.connected``        the client's first observation starts
``client.disconnected``     its last observation ends (the reason: the client
                            deregistered, an operator or the broker ended it,
                            notifications went unacknowledged)
``subscription.created``    every Observe registration (``topic_filter`` the
                            observed filter; QoS 1 on ``$queue/``, else 0)
``subscription.removed``    every observation's end
``auth.failure``            a refused login (4.01; told by the core's auth
                            service, as for every protocol)
``message.published``       a POST/PUT publish (reported by the core router and
                            queue manager, as for every protocol)
``message.delivered``       every notification sent to an observer
==========================  ==================================================

A one-shot publish or GET is neither a connection nor a disconnection. The
per-message event costs one flag check when nobody listens.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any

from fluxmq_core.contracts import SubscriptionOptions
from fluxmq_core.queues.types import is_queue_topic

if TYPE_CHECKING:
    from fluxmq_core.message import Message

__all__ = ["Observations"]

PROTOCOL = "coap"
_QUEUE = SubscriptionOptions(qos=1)
_TOPIC = SubscriptionOptions(qos=0)


class Observations:
    """Counts each client's live observations and tells the core's events."""

    __slots__ = ("events", "live")

    def __init__(self, context: Any) -> None:
        self.events = context.events
        self.live: collections.Counter[str] = collections.Counter()

    def started(self, obs: Any) -> None:
        events = self.events
        n = self.live[obs.client_id]
        self.live[obs.client_id] = n + 1
        if n == 0:
            events.client_connected(PROTOCOL, obs.client_id, obs.username, obs.remote)
        options = _QUEUE if is_queue_topic(obs.filter) else _TOPIC
        events.client_subscribed(PROTOCOL, obs.client_id, obs.filter, options)

    def ended(self, obs: Any) -> None:
        events = self.events
        events.client_unsubscribed(PROTOCOL, obs.client_id, obs.filter)
        n = self.live[obs.client_id] - 1
        if n > 0:
            self.live[obs.client_id] = n
            return
        del self.live[obs.client_id]
        events.client_disconnected(
            PROTOCOL, obs.client_id, obs.end_reason or "the client ended its observation"
        )

    def delivered(self, obs: Any, message: Message) -> None:
        """Call only while ``events.on_delivered``."""
        self.events.message_delivered(message, PROTOCOL, obs.client_id)
