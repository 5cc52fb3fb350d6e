"""The ``[http]`` config section: the HTTP listener (publish bridge, health, admin
API, Server-Sent Events) and its HTTPS twin, which takes the TLS keys every listener
section shares (:class:`~fluxmq_core.transport.ListenerSecurity`)."""

from __future__ import annotations

from dataclasses import dataclass

from fluxmq_core.config import setting
from fluxmq_core.transport.base import ListenerSecurity

__all__ = ["HTTPConfig"]


@dataclass
class HTTPConfig(ListenerSecurity):
    """[http]: the HTTP listener: POST /publish, /health, /ready, /subscribe (SSE) and
    the admin API under /api/v1, over plain HTTP and HTTPS."""

    bind: str = setting("0.0.0.0:8080", "HTTP listener; empty disables it.", listener=True)
    tls_bind: str = setting(
        "0.0.0.0:8443",
        "HTTPS listener (same routes as bind); only bound when tls_cert is set.",
        listener=True,
    )
    max_body: int = setting(
        4 * 1024 * 1024, "Largest request body in bytes; bigger requests get 413."
    )
    admin_token: str = setting(
        "",
        "Bearer token required by the admin API (/api/v1); empty = the admin API "
        "answers loopback clients only.",
    )
    request_timeout: float = setting(
        30.0, "Seconds an idle or slow connection may take to send a whole request."
    )
    sse_queue_size: int = setting(
        1000, "Messages buffered per /subscribe stream; past it new ones are dropped and counted."
    )
    sse_keepalive: float = setting(
        15.0, "Seconds between keep-alive comments on an idle /subscribe stream; 0 = none."
    )

    def __post_init__(self) -> None:
        self.check_listener_security("http")
        if self.max_body < 1:
            raise ValueError("max_body must be >= 1")
        if self.request_timeout <= 0:
            raise ValueError("request_timeout must be > 0")
        if self.sse_queue_size < 1:
            raise ValueError("sse_queue_size must be >= 1")
        if self.sse_keepalive < 0:
            raise ValueError("sse_keepalive must be >= 0")
