"""The core's own configuration sections, declared through the same hook plugins use,
and the one start-up message every broker owes its operator: which listeners other hosts
can reach and what a remote client needs to get in."""

from __future__ import annotations

from typing import Any

from fluxmq_core.config import ClusterConfig, LogConfig, ServerConfig, StorageConfig, SysConfig
from fluxmq_core.contracts import AuthConfig
from fluxmq_core.hookspecs import hookimpl
from fluxmq_core.http.config import HTTPConfig
from fluxmq_core.queues.config import QueueConfig, QueueManagerConfig
from fluxmq_core.ratelimit import RateLimitConfig
from fluxmq_core.webhooks.config import WebhooksConfig


@hookimpl
def fluxmq_add_config() -> dict[str, Any]:
    return {
        "server": ServerConfig,
        "storage": StorageConfig,
        "cluster": ClusterConfig,
        "log": LogConfig,
        "sys": SysConfig,
        "auth": AuthConfig,
        "queue_manager": QueueManagerConfig,
        "queues": dict[str, QueueConfig],
        # HTTP listener and webhooks (served by the default plugins
        # fluxmq_core.http.plugin and fluxmq_core.webhooks.plugin).
        "http": HTTPConfig,
        "webhooks": WebhooksConfig,
        "rate_limit": RateLimitConfig,
    }


@hookimpl
def fluxmq_startup(context: Any) -> None:
    """Every listener is bound by now: log what is exposed, once."""
    context.auth.log_exposure(context.bound)
