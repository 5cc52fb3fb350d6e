"""Config sections of the callouts: ``[auth_external]`` and ``[hooks]``.

Sections are flat names in ``fluxmq_core.config`` (a table ``[auth.external]``
would be an unknown key ``external`` of ``[auth]``), hence ``[auth_external]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fluxmq_core.config import setting

PROTOCOLS = ("mqtt", "amqp091", "amqp1", "http", "coap")
#: the auth callout also serves the queue API (its logins and queue ACL checks)
AUTH_PROTOCOLS = (*PROTOCOLS, "queue-api")
HOOK_EVENTS = ("auth_on_register", "auth_on_publish", "auth_on_subscribe", "auth_on_unsubscribe")


def _check_protocols(names: list[str], key: str, known: tuple[str, ...] = PROTOCOLS) -> None:
    unknown = [p for p in names if p not in known]
    if unknown:
        raise ValueError(f"{key}: unknown protocol(s) {unknown}; known: {list(known)}")


@dataclass
class ExternalAuthConfig:
    """``[auth_external]``: ask an external service who may log in and what they may do."""

    url: str = setting(
        "",
        "Base URL of the auth service; '' turns the callout off. HTTP: JSON POSTs to "
        "{url}/auth/authenticate and {url}/auth/authorize. gRPC: host:port (or "
        "grpc://host:port) of a fluxmq.auth.v1.AuthService.",
    )
    transport: Literal["http", "grpc"] = setting(
        "http", 'How to call it: "http" (JSON, stdlib) or "grpc" (needs grpcio and protobuf).'
    )
    timeout: float = setting(2.0, "Seconds one attempt may take.")
    retries: int = setting(2, "Extra attempts after a failed one (connection error, timeout, 5xx).")
    backoff: float = setting(
        0.05, "Base delay in seconds before a retry; doubled each time, with full jitter."
    )
    breaker_failures: int = setting(
        5,
        "Consecutive failed calls that open the circuit breaker: while open, logins and "
        "uncached checks are refused at once (fail closed).",
    )
    breaker_reset: float = setting(
        10.0, "Seconds the breaker stays open before one trial call is let through."
    )
    protocols: list[str] = setting(
        help="Protocols that use the callout (mqtt, amqp091, amqp1, http, coap, queue-api); "
        "empty = all.",
        factory=list,
    )
    authorize: bool = setting(
        True, "Also ask the service for publish/subscribe decisions (else logins only)."
    )
    cache_ttl: float = setting(
        60.0,
        "Seconds an allow or deny answer is reused for the same client, action and topic "
        "(then the service is asked again); 0 = until the client disconnects or a reload.",
    )
    cache_size: int = setting(
        1000,
        "Authorization answers kept per client; past it the client's oldest one goes. "
        "0 = only [auth] cache_size bounds them.",
    )

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ValueError("timeout must be > 0")
        if self.retries < 0 or self.backoff < 0 or self.breaker_reset < 0:
            raise ValueError("retries, backoff and breaker_reset must be >= 0")
        if self.cache_ttl < 0 or self.cache_size < 0:
            raise ValueError("cache_ttl and cache_size must be >= 0")
        if self.breaker_failures < 1:
            raise ValueError("breaker_failures must be >= 1")
        if (
            self.url
            and self.transport == "http"
            and not self.url.startswith(("http://", "https://"))
        ):
            raise ValueError(f"url {self.url!r} must start with http:// or https://")
        _check_protocols(self.protocols, "protocols", AUTH_PROTOCOLS)
