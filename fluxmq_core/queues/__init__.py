"""The protocol-neutral durable queue manager (DESIGN.md section 4).

Not built yet: it is the subject of issue #4 (durable queues). The placeholder
raises a clear error instead of pretending, so a protocol that reaches for queues
before that issue lands fails loudly.
"""

from __future__ import annotations

from typing import Any, NoReturn

_WHY = "the durable queue manager is not built yet (issue #4: durable queues)"


class QueueManager:
    """Placeholder for the queue manager of issue #4."""

    def __init__(self, context: Any) -> None:
        self.context = context

    def _missing(self, *_a: Any, **_k: Any) -> NoReturn:
        raise NotImplementedError(_WHY)

    append = consume = ack = nack = reject = commit = declare = delete = _missing
