"""The ``[api]`` config section: :class:`ApiConfig`."""

from __future__ import annotations

from dataclasses import dataclass

from fluxmq_core.config import setting
from fluxmq_core.transport import ListenerSecurity

__all__ = ["ApiConfig"]


@dataclass
class ApiConfig(ListenerSecurity):
    """[api]: the queue API (fluxmq.queue.v1.QueueService) over gRPC and Connect."""

    grpc: str = setting(
        "0.0.0.0:9090",
        "gRPC listener of the queue API (TLS when tls_cert is set); empty disables it.",
        listener=True,
    )
    connect: bool = setting(
        True,
        "Serve the queue API over the Connect protocol (JSON or binary POST to "
        "/fluxmq.queue.v1.QueueService/<Method>) on the [http] listener.",
    )
    reflection: bool = setting(
        True, "Serve gRPC server reflection on the gRPC listener (needs grpcio-reflection)."
    )
    max_message_size: int = setting(
        4 * 1024 * 1024, "Largest gRPC message in bytes, either way (also the Connect body)."
    )
    max_in_flight: int = setting(
        100, "Unacknowledged deliveries per API consumer when a request does not say."
    )
    session_timeout: float = setting(
        30.0,
        "Seconds an API consumer (JoinGroup, Consume) lives without a call or heartbeat "
        "when JoinGroup does not say; a ConsumeQueue stream keeps its consumer alive.",
    )
    max_wait: float = setting(30.0, "Longest wait_time a Consume call may ask for, in seconds.")
    login_cache_ttl: float = setting(
        60.0,
        "Seconds a successful login (the same Authorization header and client) is reused "
        "by later calls, with its cached ACL decisions, instead of asking the auth "
        "service (an external callout) on every call; 0 = every call logs in.",
    )

    def __post_init__(self) -> None:
        self.check_listener_security("api")
        if self.max_message_size <= 0:
            raise ValueError("api.max_message_size must be > 0")
        if self.max_in_flight <= 0:
            raise ValueError("api.max_in_flight must be > 0")
        if self.session_timeout <= 0:
            raise ValueError("api.session_timeout must be > 0")
        if self.max_wait < 0:
            raise ValueError("api.max_wait must be >= 0")
        if self.login_cache_ttl < 0:
            raise ValueError("api.login_cache_ttl must be >= 0")
