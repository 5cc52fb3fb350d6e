"""The vocabulary of the router contract: who subscribes, with what options, and
what a delivery carries.

Kept apart from the trie so that protocol plugins can import these small types
without pulling in the matching machinery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from fluxmq_core.contracts import SubscriptionOptions

if TYPE_CHECKING:
    from fluxmq_core.message import Message


@runtime_checkable
class Subscriber(Protocol):
    """Anything that can receive messages from the router.

    ``client_id`` identifies the subscriber for No Local (a publish whose
    ``origin_client`` equals it skips No Local subscriptions). ``deliver`` must never
    block or await: the subscriber owns its queue, window and backpressure.
    """

    client_id: str
    protocol: str

    def deliver(self, message: Message, delivery: Delivery) -> None: ...


DEFAULT_OPTIONS = SubscriptionOptions()


class Delivery:
    """What one subscriber gets for one publish: the grouped outcome of every
    filter of that subscriber that matched.

    ``qos`` is the highest granted QoS among the matches (the caller caps it by the
    message QoS); ``retain`` is the retain flag to send (kept only under Retain As
    Published, or for retained messages sent on subscribe); ``subscription_ids``
    lists every matching subscription identifier in subscription order.
    ``shared_group`` is set when the delivery came through a ``$share`` group.
    """

    __slots__ = ("qos", "retain", "subscription_ids", "shared_group")

    def __init__(
        self,
        qos: int,
        retain: bool = False,
        subscription_ids: tuple[int, ...] = (),
        shared_group: str | None = None,
    ) -> None:
        self.qos = qos
        self.retain = retain
        self.subscription_ids = subscription_ids
        self.shared_group = shared_group

    def __repr__(self) -> str:
        return (
            f"Delivery(qos={self.qos}, retain={self.retain}, "
            f"subscription_ids={self.subscription_ids}, shared_group={self.shared_group!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Delivery):
            return NotImplemented
        return (self.qos, self.retain, self.subscription_ids, self.shared_group) == (
            other.qos,
            other.retain,
            other.subscription_ids,
            other.shared_group,
        )

    # typeshed types __hash__ as a method; None is how Python spells "unhashable".
    __hash__ = None  # type: ignore[assignment]  # unhashable: mutable, compared by value
