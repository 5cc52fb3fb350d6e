"""``[rate_limit] connections_per_ip`` for CoAP, which has no connections.

What stands for a new connection is a source endpoint (``host:port``) the broker
has not heard from for :data:`IDLE` seconds: its first datagram takes a token from
the per-IP bucket every listener uses; later requests from the same endpoint do not.
Over the limit the request is answered 4.29 Too Many Requests (RFC 8516). Endpoints
are remembered in bounded memory (the least recently heard go first). While the
limit is off this costs one attribute check per request.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

__all__ = ["IDLE", "Peers"]

#: Seconds after which a silent endpoint counts as new again.
IDLE = 60.0
MAX_PEERS = 100_000


class Peers:
    """Recently heard source endpoints, for the per-IP connection limit."""

    __slots__ = ("context", "seen")

    def __init__(self, context: Any) -> None:
        self.context = context
        self.seen: OrderedDict[str, float] = OrderedDict()

    def admit(self, remote: str) -> bool:
        """Whether a request from ``remote`` may be served (counts a refusal)."""
        limits = getattr(self.context, "limits", None)
        if limits is None or limits.connections is None:
            return True
        now = self.context.clock()
        seen = self.seen
        last = seen.get(remote)
        if last is None or now - last >= IDLE:
            if not limits.allow_connection(remote):
                return False
        seen[remote] = now
        seen.move_to_end(remote)
        if len(seen) > MAX_PEERS:
            seen.popitem(last=False)
        return True
