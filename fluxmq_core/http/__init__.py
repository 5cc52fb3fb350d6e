"""The HTTP listener: publish bridge, Server-Sent Events, health, readiness and the
admin API, on a small h11 server (``server.py``). ``plugin.py`` registers it as a
core default plugin; ``[http]`` is declared in :mod:`fluxmq_core.builtin`."""

from fluxmq_core.http.config import HTTPConfig
from fluxmq_core.http.routes import HTTPService
from fluxmq_core.http.server import (
    HTTPError,
    HTTPProtocol,
    Request,
    Response,
    Router,
    StreamResponse,
    http_header,
    json_response,
)

__all__ = [
    "HTTPConfig",
    "HTTPError",
    "HTTPProtocol",
    "HTTPService",
    "Request",
    "Response",
    "Router",
    "StreamResponse",
    "http_header",
    "json_response",
]
