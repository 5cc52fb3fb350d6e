"""The ``[otel]`` config section: :class:`OtelConfig`.

Everything is checked in ``__post_init__`` so that a wrong value stops the broker at
start-up with the key named, never at the first export.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from fluxmq_core.config import setting

__all__ = ["OtelConfig"]


@dataclass
class OtelConfig:
    """[otel]: OpenTelemetry metrics and traces, OTLP export and Prometheus /metrics."""

    metrics: bool = setting(
        True,
        "Collect metrics (observable instruments read the broker's counters at "
        "collection time; nothing is paid per message).",
    )
    prometheus: bool = setting(
        True,
        "Serve the metrics in Prometheus text format at GET /metrics on the HTTP "
        "listener (loopback clients only unless [http] admin_token is set, then with "
        "that bearer token).",
    )
    otlp_endpoint: str = setting(
        "",
        "OTLP collector URL (http://host:4318 for http/protobuf, http://host:4317 for "
        "grpc); empty = no OTLP export.",
    )
    otlp_protocol: Literal["http/protobuf", "grpc"] = setting(
        "http/protobuf", "OTLP transport: 'http/protobuf' or 'grpc'."
    )
    otlp_headers: dict[str, str] = setting(
        help="Extra headers (gRPC metadata) sent with every OTLP export, e.g. an API key.",
        factory=dict,
    )
    otlp_timeout: float = setting(10.0, "Seconds one OTLP export may take.")
    export_interval: float = setting(
        15.0, "Seconds between OTLP metric exports (Prometheus is read on each scrape)."
    )
    traces: bool = setting(
        False,
        "Create spans (publish -> route -> deliver; queue.append, queue.deliver, queue.ack) "
        "and carry W3C trace context in MQTT 5 user properties and AMQP headers. Off: one "
        "flag check per publish.",
    )
    sample_rate: float = setting(
        1.0,
        "Share of new traces kept, 0..1 (parent-based: a publish that carries a "
        "sampled traceparent is always kept).",
    )
    deliver_spans: Literal["per_subscriber", "per_publish"] = setting(
        "per_subscriber",
        "Traced fan-out: 'per_subscriber' = a deliver span per subscriber reached (up to "
        "max_deliver_spans per publish); 'per_publish' = one deliver span for the whole "
        "fan-out, naming the first 16 subscribers.",
    )
    max_deliver_spans: int = setting(
        100,
        "With deliver_spans = 'per_subscriber': deliver spans made per traced publish at "
        "most; further deliveries are counted in the route span's "
        "fluxmq.deliveries_omitted.",
    )
    service_name: str = setting("fluxmq", "The service.name resource attribute.")

    def __post_init__(self) -> None:
        if not 0.0 <= self.sample_rate <= 1.0:
            raise ValueError("sample_rate must be between 0 and 1")
        if self.deliver_spans not in ("per_subscriber", "per_publish"):
            raise ValueError(
                f"deliver_spans {self.deliver_spans!r} must be 'per_subscriber' or 'per_publish'"
            )
        if isinstance(self.max_deliver_spans, bool) or self.max_deliver_spans < 1:
            raise ValueError("max_deliver_spans must be >= 1")
        if self.export_interval <= 0:
            raise ValueError("export_interval must be > 0")
        if self.otlp_timeout <= 0:
            raise ValueError("otlp_timeout must be > 0")
        if not self.service_name:
            raise ValueError("service_name must not be empty")
        if self.otlp_endpoint:
            parts = urlsplit(self.otlp_endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(
                    f"otlp_endpoint {self.otlp_endpoint!r} must be an http:// or https:// URL "
                    "with a host"
                )
        for key, value in self.otlp_headers.items():
            if not isinstance(value, str) or not key:
                raise ValueError(f"otlp_headers[{key!r}] must be a string")
