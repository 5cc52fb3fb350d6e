"""The core's own configuration sections, declared through the same hook plugins use."""

from __future__ import annotations

from typing import Any

from fluxmq_core.auth import AuthConfig
from fluxmq_core.config import ClusterConfig, LogConfig, ServerConfig, StorageConfig, SysConfig
from fluxmq_core.hookspecs import hookimpl
from fluxmq_core.queues.config import QueueConfig, QueueManagerConfig


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
    }
