"""The state of the sessions and links of one AMQP 1.0 connection (sans-IO, no
frames written here; :mod:`fluxmq_amqp1.sessions`, :mod:`fluxmq_amqp1.links` and
:mod:`fluxmq_amqp1.delivery` drive them).

Flow control, as part 2.5.6 and 2.6.7 of the spec put it:

* A **session** counts transfer frames. ``next_incoming_id``/``incoming_window``
  are ours (the peer may send ``incoming_window`` more frames; we reopen the window
  when half of it is used). ``remote_incoming_window`` is how many frames the peer
  accepts from us: ``next-incoming-id(peer) + incoming-window(peer) -
  next-outgoing-id(ours)``, recomputed on every flow.
* A **link** counts deliveries. On a link we *receive* on, we grant
  ``link_credit`` and top it up when half is used; a transfer beyond it is
  ``amqp:link:transfer-limit-exceeded``. On a link we *send* on, the peer's flow
  sets our credit to ``delivery-count(peer) + link-credit(peer) -
  delivery-count(ours)``; each delivery spends one; ``drain`` spends what is left
  when nothing waits.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from fluxmq_amqp1.codec.types import AMQPError

__all__ = ["EndpointError", "Link", "Partial", "Session"]


class EndpointError(AMQPError):
    """An error that ends one session or one link rather than the connection."""

    def __init__(self, condition: str, description: str, endpoint: Any) -> None:
        super().__init__(
            condition, description, scope="link" if isinstance(endpoint, Link) else "session"
        )
        self.endpoint = endpoint


class Partial:
    """A delivery being received over several transfer frames."""

    __slots__ = ("delivery_id", "tag", "settled", "chunks", "size", "held", "state")

    def __init__(self, delivery_id: int, tag: bytes, settled: bool, state: Any = None) -> None:
        #: the first frame's delivery state (a transactional-state for a transfer
        #: inside a transaction)
        self.state = state
        self.delivery_id = delivery_id
        self.tag = tag
        self.settled = settled
        self.chunks: list[bytes] = []
        self.size = 0
        #: bytes counted in the connection's ``reassembling`` (frames with more to come)
        self.held = 0


class Link:
    """One attached link. ``outgoing`` is True when the broker sends on it (the
    peer attached as receiver). ``node`` is what the broker bound it to (a topic
    subscription, a queue consumer, a publish target), set by the server."""

    __slots__ = (
        "session",
        "name",
        "handle",
        "local_handle",
        "outgoing",
        "attach",
        "address",
        "snd_settle_mode",
        "rcv_settle_mode",
        "credit",
        "delivery_count",
        "drain",
        "drain_wait",
        "held",
        "partial",
        "node",
        "refused",
        "detached",
        "dropped",
    )

    def __init__(self, session: Session, attach: Any, local_handle: int) -> None:
        self.session = session
        self.name: str = attach.name
        self.handle: int = attach.handle
        self.local_handle = local_handle
        self.outgoing: bool = bool(attach.role)  # peer is receiver -> we send
        self.attach = attach
        self.address: Any = None
        self.snd_settle_mode: int = attach.snd_settle_mode
        self.rcv_settle_mode: int = attach.rcv_settle_mode
        self.credit = 0
        self.delivery_count = 0
        self.drain = False
        #: a drain the node answers later (a queue link waits for its dispatcher)
        self.drain_wait = False
        #: outgoing deliveries waiting for credit or session window: (payload, token)
        self.held: deque[tuple[bytes, Any]] = deque()
        self.partial: Partial | None = None
        self.node: Any = None
        #: attach refused: the peer's answering detach is expected, nothing else
        self.refused = False
        self.detached = False
        self.dropped = 0

    @property
    def presettled(self) -> bool:
        """Deliveries on this outgoing link are sent settled (at-most-once)."""
        return self.snd_settle_mode == 1

    def __repr__(self) -> str:
        kind = "out" if self.outgoing else "in"
        return f"Link({self.name!r}, {kind}, handle={self.handle}, address={self.address!r})"


class Session:
    """One begun session: its channels, windows, links and unsettled deliveries."""

    __slots__ = (
        "channel",
        "remote_channel",
        "next_incoming_id",
        "incoming_window",
        "window",
        "next_outgoing_id",
        "remote_incoming_window",
        "remote_outgoing_window",
        "handle_max",
        "links",
        "local_handles",
        "next_delivery_id",
        "unsettled",
        "blocked",
        "ended",
    )

    def __init__(
        self, channel: int, remote_channel: int, begin: Any, window: int, handle_max: int
    ) -> None:
        self.channel = channel
        self.remote_channel = remote_channel
        self.next_incoming_id: int = begin.next_outgoing_id
        self.window = window
        self.incoming_window = window
        self.next_outgoing_id = 0
        self.remote_incoming_window: int = begin.incoming_window
        self.remote_outgoing_window: int = begin.outgoing_window
        self.handle_max = min(handle_max, begin.handle_max)
        #: by the peer's handle
        self.links: dict[int, Link] = {}
        self.local_handles: set[int] = set()
        self.next_delivery_id = 0
        #: our outgoing unsettled deliveries: delivery-id -> (link, token)
        self.unsettled: dict[int, tuple[Link, Any]] = {}
        #: outgoing links with held deliveries waiting for the session window
        self.blocked: dict[int, Link] = {}
        self.ended = False

    def new_handle(self) -> int:
        h = 0
        while h in self.local_handles:
            h += 1
        self.local_handles.add(h)
        return h

    def __repr__(self) -> str:
        return f"Session(channel={self.channel}, remote={self.remote_channel}, links={len(self.links)})"
