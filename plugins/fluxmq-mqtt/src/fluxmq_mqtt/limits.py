"""Rate limits as token buckets: the core's (:mod:`fluxmq_core.ratelimit`), re-exported
for the MQTT plugin's ``[mqtt] connection_rate`` / ``publish_rate`` and older imports.

What this module does not do: decide what happens to an event over the limit
(``connection.py`` refuses the CONNECT or answers the PUBLISH), or any I/O.
"""

from __future__ import annotations

from fluxmq_core.ratelimit import KeyedLimiter, TokenBucket, remote_ip

__all__ = ["KeyedLimiter", "TokenBucket", "remote_ip"]
