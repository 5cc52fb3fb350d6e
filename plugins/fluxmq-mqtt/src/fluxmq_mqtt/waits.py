"""What an MQTT connection asks the adapter to await (besides the core's ``AuthWait``).

Frozen, slotted dataclasses, one per kind of wait: the connection sets one as
``waiting``, stops processing packets, and the adapter's handler for its type
(``MQTTProtocol.WAITS``) feeds the answer back.
"""

from __future__ import annotations

from dataclasses import dataclass

from fluxmq_core.callout.hooks import HookRequest
from fluxmq_core.transport.adapter import AuthWait, Wait

__all__ = ["AuthWait", "AuthorizeWait", "ClaimWait", "EnhancedAuthWait", "HookWait"]


@dataclass(frozen=True, slots=True)
class AuthorizeWait(Wait):
    """An ACL decision not in the cache: answered with ``Connection.answer``."""

    action: str
    topic: str


@dataclass(frozen=True, slots=True)
class EnhancedAuthWait(Wait):
    """One MQTT 5 enhanced-authentication step with the client's ``data``."""

    data: bytes


@dataclass(frozen=True, slots=True)
class ClaimWait(Wait):
    """In a cluster only: claim ``client_id`` for this node (and fetch its state
    from the node that owned it) before the session is attached; answered with
    ``Connection.claim_done`` or ``Connection.claim_failed``."""

    client_id: str
    clean_start: bool


@dataclass(frozen=True, slots=True)
class HookWait(Wait):
    """A blocking hook call (``[[hooks.endpoints]]``): answered with
    ``Connection.hook_done``."""

    request: HookRequest
