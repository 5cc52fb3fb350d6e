"""Webhooks: broker events POSTed as JSON envelopes to HTTP endpoints.

``config.py`` declares ``[webhooks]``, ``client.py`` is the small h11 client,
``notifier.py`` the queue, workers, retries and breakers, and ``plugin.py`` plugs
the notifier into the core's event dispatch as a default plugin. See docs/webhooks.md.
"""

from fluxmq_core.webhooks.config import EVENT_TYPES, EndpointConfig, WebhooksConfig
from fluxmq_core.webhooks.notifier import Breaker, Notifier

__all__ = ["EVENT_TYPES", "Breaker", "EndpointConfig", "Notifier", "WebhooksConfig"]
