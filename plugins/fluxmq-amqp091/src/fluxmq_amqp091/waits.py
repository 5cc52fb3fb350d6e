"""What an AMQP connection or channel asks the adapter to await.

Frozen, slotted dataclasses, one per kind of wait (the login is the core's
``AuthWait``): the connection sets one as ``waiting`` and stops reading frames; the
adapter's handler for its type (``AMQPProtocol.WAITS``) awaits and answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fluxmq_core.transport.adapter import AuthWait, Wait

if TYPE_CHECKING:
    from fluxmq_core.auth import AuthRequest

__all__ = ["AuthWait", "CommitWait", "GetWait", "SecretWait"]


@dataclass(frozen=True, slots=True)
class GetWait(Wait):
    """``basic.get``: wait (bounded) for the queue's dispatcher to hand a message."""

    channel: Any
    queue: Any
    no_ack: bool


@dataclass(frozen=True, slots=True)
class CommitWait(Wait):
    """``tx.commit``: the transaction's publishes were appended (``futures``); once
    every one is durable the buffered ``settles`` are applied and commit-ok sent."""

    channel: Any
    futures: tuple[Any, ...]
    settles: tuple[tuple[Any, ...], ...]


@dataclass(frozen=True, slots=True)
class SecretWait(Wait):
    """``connection.update-secret``: re-authenticate the connection's user with the
    new secret."""

    request: AuthRequest
