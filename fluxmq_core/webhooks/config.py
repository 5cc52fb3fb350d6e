"""The ``[webhooks]`` config section and its ``[[webhooks.endpoints]]`` tables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fluxmq_core.config import setting

__all__ = ["EVENT_TYPES", "EndpointConfig", "WebhooksConfig"]

EVENT_TYPES = (
    "client.connected",
    "client.disconnected",
    "client.session_takeover",
    "message.published",
    "message.delivered",
    "message.retained",
    "subscription.created",
    "subscription.removed",
    "auth.failure",
    "authz.denied",
)


@dataclass
class EndpointConfig:
    """One ``[[webhooks.endpoints]]`` table: where to POST which events."""

    url: str = setting("", "http:// or https:// URL the events are POSTed to (required).")
    events: list[str] = setting(help="Event types sent here; empty = all.", factory=list)
    topic_filters: list[str] = setting(
        help="MQTT topic filters; message.* events on other topics are not sent here "
        "(empty = all topics).",
        factory=list,
    )
    headers: dict[str, str] = setting(help="Extra HTTP headers (e.g. Authorization).", factory=dict)
    timeout: float = setting(5.0, "Seconds one delivery attempt may take.")
    include_payload: bool = setting(False, "Include message payloads (base64) in message.* events.")

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {self.url!r}")
        bad = [e for e in self.events if e not in EVENT_TYPES]
        if bad:
            raise ValueError(f"unknown event type(s) {bad}; known: {', '.join(EVENT_TYPES)}")
        if self.timeout <= 0:
            raise ValueError("timeout must be > 0")
        from fluxmq_core.router.topics import TopicError, validate_topic_filter

        for f in self.topic_filters:
            try:
                validate_topic_filter(f)
            except TopicError as exc:
                raise ValueError(f"invalid topic filter {f!r}: {exc}") from None


@dataclass
class WebhooksConfig:
    """[webhooks]: event notifications POSTed to HTTP endpoints, off the publish path."""

    queue_size: int = setting(
        10000, "Events waiting for delivery; past it the drop policy applies."
    )
    drop_policy: Literal["oldest", "newest"] = setting(
        "oldest", "When the queue is full: drop the oldest waiting event or the new one."
    )
    workers: int = setting(5, "Events delivered at the same time.")
    shutdown_timeout: float = setting(
        30.0,
        "Seconds to keep delivering queued events at shutdown (within [server] shutdown_timeout).",
    )
    response_limit: int = setting(
        65536, "Bytes of an endpoint's response body read at most; the rest is discarded."
    )
    max_attempts: int = setting(3, "Delivery attempts per event and endpoint (1 = no retry).")
    initial_interval: float = setting(1.0, "Seconds before the first retry.")
    max_interval: float = setting(30.0, "Longest wait between retries, in seconds.")
    multiplier: float = setting(2.0, "Factor applied to the wait after each failed attempt.")
    jitter: float = setting(0.2, "Random spread of each wait, as a fraction (0.2 = +-20%).")
    failure_threshold: int = setting(
        5, "Consecutive failed attempts that open an endpoint's circuit breaker."
    )
    reset_timeout: float = setting(
        60.0, "Seconds an open breaker refuses deliveries before it lets one try through."
    )
    endpoints: list[EndpointConfig] = setting(
        help="[[webhooks.endpoints]] tables (url, events, topic_filters, headers, timeout, "
        "include_payload); none = webhooks off.",
        factory=list,
    )

    def __post_init__(self) -> None:
        checks = [
            (self.queue_size >= 1, "queue_size must be >= 1"),
            (self.workers >= 1, "workers must be >= 1"),
            (self.shutdown_timeout >= 0, "shutdown_timeout must be >= 0"),
            (self.response_limit >= 0, "response_limit must be >= 0"),
            (self.max_attempts >= 1, "max_attempts must be >= 1"),
            (self.initial_interval >= 0, "initial_interval must be >= 0"),
            (
                self.max_interval >= self.initial_interval,
                "max_interval must be >= initial_interval",
            ),
            (self.multiplier >= 1, "multiplier must be >= 1"),
            (0 <= self.jitter <= 1, "jitter must be between 0 and 1"),
            (self.failure_threshold >= 1, "failure_threshold must be >= 1"),
            (self.reset_timeout > 0, "reset_timeout must be > 0"),
        ]
        for ok, what in checks:
            if not ok:
                raise ValueError(what)
