"""The former name of :mod:`fluxmq_mqtt.registry`, kept so that existing imports
(``from fluxmq_mqtt.sessions import SessionRegistry``) keep working. New code imports
from ``fluxmq_mqtt.registry``. (The core's ``fluxmq_core.sessions`` is another
thing: the session directory of the admin API.)"""

from __future__ import annotations

from fluxmq_mqtt.registry import NEVER, QueueDrops, Scheduler, SessionRegistry, Will

__all__ = ["NEVER", "QueueDrops", "Scheduler", "SessionRegistry", "Will"]
