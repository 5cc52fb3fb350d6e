"""FluxMQ durable storage: a log-structured engine in Badger's spirit and the two
drivers built on it (``fluxmq.storage = badgerlike``, ``fluxmq.queue_log =
badgerlike``). Standard library only."""

from fluxmq_badgerlike.engine import Engine, EngineOptions
from fluxmq_badgerlike.errors import StorageCorruptionError, StorageError, StorageLockedError
from fluxmq_badgerlike.queue_log import BadgerlikeQueueLog
from fluxmq_badgerlike.store import BadgerlikeBrokerStore

__all__ = [
    "BadgerlikeBrokerStore",
    "BadgerlikeQueueLog",
    "Engine",
    "EngineOptions",
    "StorageCorruptionError",
    "StorageError",
    "StorageLockedError",
]
