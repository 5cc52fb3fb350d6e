"""What an AMQP 1.0 connection asks the adapter to await (the login is the core's
``AuthWait``): frozen, slotted dataclasses, one per kind of wait."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fluxmq_core.transport.adapter import AuthWait, Wait

__all__ = ["AuthWait", "AuthorizeWait"]


@dataclass(frozen=True, slots=True)
class AuthorizeWait(Wait):
    """A new link's checks that need a round trip: an ACL decision the auth service
    has not cached (``acl``) and/or a blocking ``auth_on_subscribe`` hook
    (``hook``), for ``action`` (publish or subscribe) on ``topic``; answered with
    ``Connection.authorized(link, ok)``."""

    link: Any
    action: str
    topic: str
    acl: bool = True
    hook: bool = False
