"""Queue configuration: the ``[queue_manager]`` section, the per-queue
``[queues.<name>]`` tables, and the errors the queue manager raises.

A queue's settings are one :class:`QueueConfig`; a few of them (``visibility_timeout``,
``max_deliveries``) may be left unset and then come from ``[queue_manager]`` when the
queue is created, so changing the broker-wide default changes every queue that did not
choose. :func:`resolve` applies those defaults and checks the whole table.

What this module does not hold: any behaviour. Every key here is read by
``manager.py``, ``classic.py``, ``stream.py``, ``retention.py`` or ``dlq.py``; the
docstring of each field says which rule it drives.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from fluxmq_core.config import setting
from fluxmq_core.router.topics import TopicError, validate_topic_filter

QUEUE_TYPES = ("classic", "stream", "ephemeral")
DLQ_PREFIX = "$dlq/"


class QueueError(Exception):
    """A queue operation the caller got wrong: unknown queue, group or message id,
    a bad declaration. Protocol adapters turn it into their own error reply."""


class QueueFullError(QueueError):
    """``append`` refused: the queue holds ``max_depth`` messages and its
    overflow policy is ``reject``."""


class MessageTooLargeError(QueueError):
    """``append`` refused: the payload is larger than ``max_message_size``."""


class InvalidQueueNameError(QueueError):
    """A queue name that cannot be a queue (see :func:`validate_queue_name`)."""


class UnknownQueueError(QueueError):
    """The queue does not exist, and nothing creates it: an operation on an unknown
    queue, a publish to an undeclared ``$queue/<name>`` under ``auto_create =
    "none"``, a publish to a dead-letter queue that was never made."""


class QueueTopicError(QueueError):
    """A ``$queue/`` topic that names no append: a control verb (``$ack``...) as a
    topic level. Those settle an MQTT consumer's deliveries; only the MQTT face
    understands them."""


class QueuesUnavailableError(QueueError):
    """The broker runs without a queue manager (a protocol used outside a broker)."""


#: ``[queue_manager] auto_create``: what a publish or subscription to an undeclared
#: ``$queue/<name>`` does.
AUTO_CREATE = ("ephemeral", "durable", "none")


@dataclass
class QueueManagerConfig:
    """``[queue_manager]``: timers of the queue manager and defaults for new queues."""

    sweep_interval: float = setting(
        1.0,
        "Seconds between sweeps: visibility timeouts, delayed retries, stream auto-commit, "
        "retention, idle ephemeral queues. Timeouts fire with this granularity.",
    )
    sweep_batch: int = setting(
        10000, "Most records one sweep removes from one queue (bounded work per tick)."
    )
    auto_commit_interval: float = setting(
        5.0,
        "Seconds between commits of auto-commit stream consumers' position; 0 = after every "
        "delivery batch.",
    )
    visibility_timeout: float = setting(
        30.0, "Default seconds a classic delivery may stay unacknowledged before redelivery."
    )
    max_deliveries: int = setting(
        5, "Default deliveries of one message before it is dead-lettered; 0 = unlimited."
    )
    ephemeral_idle_timeout: float = setting(
        300.0, "Seconds an ephemeral queue lives without consumers or publishes."
    )
    auto_create: Literal["ephemeral", "durable", "none"] = setting(
        "ephemeral",
        "What a publish or subscription to an undeclared $queue/<name> does: ephemeral "
        "creates an in-memory queue (lost on restart, removed when idle; logged once per "
        "queue), durable a classic queue in the queue log, none refuses it (MQTT 5 PUBACK "
        "0x90, HTTP 404).",
    )

    def __post_init__(self) -> None:
        if self.sweep_interval <= 0:
            raise ValueError("sweep_interval must be > 0")
        if self.sweep_batch < 1:
            raise ValueError("sweep_batch must be >= 1")
        for name in ("auto_commit_interval", "ephemeral_idle_timeout"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.visibility_timeout <= 0:
            raise ValueError("visibility_timeout must be > 0")
        if self.max_deliveries < 0:
            raise ValueError("max_deliveries must be >= 0")
        if self.auto_create not in AUTO_CREATE:
            raise ValueError(
                f"auto_create must be one of {', '.join(AUTO_CREATE)}; got {self.auto_create!r}"
            )


@dataclass
class QueueConfig:
    """``[queues.<name>]``: one durable queue declared in the configuration."""

    type: Literal["classic", "stream", "ephemeral"] = setting(
        "classic",
        "classic (work queue: one consumer per group gets each message), stream (read by "
        "offset), ephemeral (in memory, removed when idle).",
    )
    topics: list[str] = setting(
        factory=list, help="Topic filters whose ordinary publishes this queue captures."
    )
    durability: Literal["sync", "async"] = setting(
        "sync",
        "sync: an append resolves (and the publisher is acknowledged) once the queue log "
        "synced it; async: at once.",
    )
    max_depth: int = setting(0, "Most messages kept; 0 = unlimited.")
    overflow: Literal["reject", "drop-oldest"] = setting(
        "reject", "At max_depth: refuse the new message, or drop the oldest one."
    )
    max_message_size: int = setting(0, "Largest payload in bytes; 0 = unlimited.")
    message_ttl: float = setting(
        0.0, "Seconds a message lives after its append (caps its own expiry); 0 = forever."
    )
    retention_age: float = setting(0.0, "Drop messages older than this many seconds; 0 = off.")
    retention_bytes: int = setting(0, "Keep at most this many payload bytes; 0 = off.")
    retention_messages: int = setting(0, "Keep at most this many messages; 0 = off.")
    visibility_timeout: float | None = setting(
        None, "Seconds before an unacknowledged delivery is redelivered; unset = [queue_manager]."
    )
    max_deliveries: int | None = setting(
        None, "Deliveries before dead-lettering (0 = unlimited); unset = [queue_manager]."
    )
    retry_initial: float = setting(
        0.0, "Delay in seconds before the first redelivery after a nack or timeout; 0 = at once."
    )
    retry_max: float = setting(300.0, "Longest redelivery delay in seconds.")
    retry_multiplier: float = setting(2.0, "Each further redelivery waits this much longer.")
    dlq: bool = setting(
        True, "Dead-letter rejected and over-delivered messages to $dlq/<name> (else drop)."
    )
    dlq_expired: bool = setting(
        False,
        "Classic: dead-letter expired messages (reason expired) instead of dropping them; "
        "needs dlq.",
    )
    dlq_overflow: bool = setting(
        False,
        "Classic: dead-letter what max_depth overflow drops (drop-oldest) or refuses (reject) "
        "(reason maxlen); needs dlq.",
    )
    max_priority: int = setting(
        0,
        "Classic: 1-255 delivers messages with a higher properties['priority'] first (above "
        "the max counts as the max, none as 0); 0 = FIFO.",
    )

    def __post_init__(self) -> None:
        if self.type not in QUEUE_TYPES:
            raise ValueError(f"type must be one of {', '.join(QUEUE_TYPES)}; got {self.type!r}")
        if self.durability not in ("sync", "async"):
            raise ValueError(f"durability must be sync or async; got {self.durability!r}")
        if self.overflow not in ("reject", "drop-oldest"):
            raise ValueError(f"overflow must be reject or drop-oldest; got {self.overflow!r}")
        for name in (
            "max_depth",
            "max_message_size",
            "message_ttl",
            "retention_age",
            "retention_bytes",
            "retention_messages",
            "retry_initial",
            "retry_max",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.visibility_timeout is not None and self.visibility_timeout <= 0:
            raise ValueError("visibility_timeout must be > 0")
        if self.max_deliveries is not None and self.max_deliveries < 0:
            raise ValueError("max_deliveries must be >= 0")
        if not 0 <= self.max_priority <= 255 or isinstance(self.max_priority, bool):
            raise ValueError("max_priority must be between 0 and 255")
        if self.retry_multiplier < 1:
            raise ValueError("retry_multiplier must be >= 1")
        for pattern in self.topics:
            try:
                validate_topic_filter(pattern)
            except TopicError as exc:
                raise ValueError(f"topics: {exc}") from None

    def backoff(self, delivery_count: int) -> float:
        """Seconds to wait before redelivering a message already delivered
        ``delivery_count`` times: ``retry_initial * retry_multiplier**(n-1)``,
        capped at ``retry_max``."""
        if self.retry_initial <= 0:
            return 0.0
        n = max(1, delivery_count) - 1
        delay = self.retry_initial
        for _ in range(n):  # no float overflow for large counts
            delay *= self.retry_multiplier
            if delay >= self.retry_max:
                return self.retry_max
        return min(delay, self.retry_max)

    def to_record(self) -> dict[str, Any]:
        """The dict stored with the queue in the QueueLog."""
        return dataclasses.asdict(self)


_FIELDS = {f.name for f in dataclasses.fields(QueueConfig)}


def queue_config(
    value: QueueConfig | dict[str, Any] | None, *, where: str = "queue"
) -> QueueConfig:
    """A :class:`QueueConfig` from a dataclass, a dict of ``[queues.<name>]`` keys
    or ``None`` (all defaults); :class:`QueueError` names a bad key."""
    if value is None:
        return QueueConfig()
    if isinstance(value, QueueConfig):
        return dataclasses.replace(value)
    if not isinstance(value, dict):
        raise QueueError(f"{where}: expected a QueueConfig or a dict, got {type(value).__name__}")
    unknown = sorted(set(value) - _FIELDS)
    if unknown:
        raise QueueError(
            f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_FIELDS))})"
        )
    try:
        cfg = QueueConfig(**value)
    except (TypeError, ValueError) as exc:
        raise QueueError(f"{where}: {exc}") from None
    return cfg


def resolve(cfg: QueueConfig, defaults: QueueManagerConfig) -> QueueConfig:
    """A copy with the ``[queue_manager]`` defaults filled in for unset keys."""
    return dataclasses.replace(
        cfg,
        visibility_timeout=(
            defaults.visibility_timeout
            if cfg.visibility_timeout is None
            else cfg.visibility_timeout
        ),
        max_deliveries=defaults.max_deliveries
        if cfg.max_deliveries is None
        else cfg.max_deliveries,
    )


def validate_queue_name(name: str) -> None:
    """Queue names are one topic level (they appear as ``$queue/<name>/...``):
    non-empty, no ``/``, ``+``, ``#`` or NUL, not starting with ``$``. Dead-letter
    queues (``$dlq/<name>``) are the one exception."""
    if not isinstance(name, str) or not name:
        raise InvalidQueueNameError("a queue name must be a non-empty string")
    base = name.removeprefix(DLQ_PREFIX)
    if not base or base.startswith("$") or any(c in base for c in "/+#\x00"):
        raise InvalidQueueNameError(
            f"invalid queue name {name!r}: one topic level without '/', '+', '#', NUL "
            "or a leading '$'"
        )
