""":class:`Telemetry`: the plugin's one object per broker (``context.extras["otel"]``).

It builds the resource (``service.name``, ``service.instance.id`` = node id,
``service.version``), the meter provider over every metric spec, the Prometheus
route, the OTLP exporters (http/protobuf or grpc) and, with ``traces = true``, the
tracer provider whose :class:`~fluxmq_otel.tracing.BrokerTracer` goes into
``context.tracer``. Tests reach the providers through it to add in-memory exporters.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from fluxmq_core.contracts import is_loopback
from fluxmq_core.http.server import HTTPError, Request, Response
from fluxmq_core.metrics import MetricSpec, metric_specs
from fluxmq_otel import collectors
from fluxmq_otel.config import OtelConfig
from fluxmq_otel.metrics import Metrics
from fluxmq_otel.tracing import BrokerTracer

__all__ = ["PROMETHEUS_CONTENT_TYPE", "Telemetry"]

log = logging.getLogger("fluxmq.otel")

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Seconds the last metric export at shutdown may take.
FINAL_EXPORT_TIMEOUT = 2.0


def _version() -> str:
    try:
        return version("fluxmq-core")
    except PackageNotFoundError:  # running from a source tree
        return "0"


def _otlp_url(base: str, signal: str) -> str:
    base = base.rstrip("/")
    return base if base.endswith(f"/v1/{signal}") else f"{base}/v1/{signal}"


class Telemetry:
    """Metrics, the /metrics route, OTLP export and tracing of one broker."""

    def __init__(self, context: Any, cfg: OtelConfig) -> None:
        self.context = context
        self.cfg = cfg
        self.resource = Resource.create(
            {
                "service.name": cfg.service_name,
                "service.instance.id": context.node_id,
                "service.version": _version(),
                "fluxmq.node.id": context.node_id,
            }
        )
        self.metrics: Metrics | None = None
        self.tracer_provider: TracerProvider | None = None
        self.tracer: BrokerTracer | None = None
        self.exports = 0  # OTLP metric exports that succeeded
        self.export_failures = 0
        self._task: asyncio.Task[None] | None = None

    # -- start and stop ----------------------------------------------------------------

    def specs(self) -> list[MetricSpec]:
        ctx = self.context
        specs = (
            collectors.core_specs(ctx)
            + collectors.protocol_specs(ctx)
            + collectors.queue_specs(ctx)
            + collectors.webhook_specs(ctx)
            + collectors.storage_specs(ctx)
            + collectors.cluster_specs(ctx)
        )
        for owner, offered in sorted(metric_specs(ctx).items()):
            log.debug("otel: %d metric(s) offered by %s", len(offered), owner)
            specs += offered
        return specs

    def start(self) -> None:
        cfg = self.cfg
        if cfg.metrics:
            serve = cfg.prometheus and self._http() is not None
            self.metrics = Metrics(self.resource, self.specs(), prometheus=serve)
            if cfg.otlp_endpoint:
                self.metrics.add_otlp(self._metric_exporter())
            self.metrics.start()
            if serve:
                self._http().router.add(
                    "GET", "/metrics", self.scrape, "Metrics in Prometheus text format", "metrics"
                )
            elif cfg.prometheus:
                log.info("otel: no HTTP listener, so GET /metrics is not served")
            if cfg.otlp_endpoint:
                self._task = asyncio.get_running_loop().create_task(
                    self._export_loop(), name="otel-metrics-export"
                )
        if cfg.traces:
            # BrokerTracer decides sampling before any span is made (its ratio for a
            # new trace, the parent's flag otherwise), so the SDK's sampler is
            # "always on": cheaper than a parent-based one asked for every span.
            sampler = ALWAYS_ON
            self.tracer_provider = TracerProvider(resource=self.resource, sampler=sampler)
            if cfg.otlp_endpoint:
                self.tracer_provider.add_span_processor(BatchSpanProcessor(self._span_exporter()))
            self.tracer = BrokerTracer(
                self.context,
                self.tracer_provider.get_tracer("fluxmq", _version()),
                cfg.sample_rate,
                per_subscriber=cfg.deliver_spans == "per_subscriber",
                cap=cfg.max_deliver_spans,
            )
            self.context.tracer = self.tracer
        log.info(
            "otel: metrics %s, /metrics %s, OTLP %s, traces %s",
            "on" if self.metrics else "off",
            "on" if self.metrics and self.metrics.prometheus_reader else "off",
            f"{cfg.otlp_protocol} to {cfg.otlp_endpoint}" if cfg.otlp_endpoint else "off",
            f"on (sample rate {cfg.sample_rate})" if cfg.traces else "off",
        )

    async def stop(self) -> None:
        if self.context.tracer is self.tracer:
            self.context.tracer = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            if self.metrics is not None and self.metrics.otlp_reader is not None:
                # The last numbers before going away, but a collector that does not
                # answer must not hold the shutdown.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.export_now(), FINAL_EXPORT_TIMEOUT)
        if self.tracer_provider is not None:
            # Flushes queued spans; bounded like the last metric export.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.to_thread(self.tracer_provider.shutdown), FINAL_EXPORT_TIMEOUT
                )
        if self.metrics is not None:
            await asyncio.to_thread(self.metrics.shutdown)

    # -- OTLP ----------------------------------------------------------------------------

    def _metric_exporter(self) -> Any:
        cfg = self.cfg
        if cfg.otlp_protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
                OTLPMetricExporter as GRPCMetricExporter,
            )

            return GRPCMetricExporter(**self._grpc_args())
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter(
            endpoint=_otlp_url(cfg.otlp_endpoint, "metrics"),
            headers=dict(cfg.otlp_headers),
            timeout=cfg.otlp_timeout,
        )

    def _span_exporter(self) -> Any:
        cfg = self.cfg
        if cfg.otlp_protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GRPCSpanExporter,
            )

            return GRPCSpanExporter(**self._grpc_args())
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(
            endpoint=_otlp_url(cfg.otlp_endpoint, "traces"),
            headers=dict(cfg.otlp_headers),
            timeout=cfg.otlp_timeout,
        )

    def _grpc_args(self) -> dict[str, Any]:
        cfg = self.cfg
        from urllib.parse import urlsplit

        parts = urlsplit(cfg.otlp_endpoint)
        return {
            "endpoint": parts.netloc,
            "insecure": parts.scheme == "http",
            # gRPC metadata keys are lower case.
            "headers": {k.lower(): v for k, v in cfg.otlp_headers.items()},
            "timeout": cfg.otlp_timeout,
        }

    async def export_now(self) -> bool:
        """Collect and export the metrics once (also what the export loop does)."""
        assert self.metrics is not None and self.metrics.otlp_reader is not None
        try:
            ok = await self.metrics.otlp_reader.export_once()
        except Exception as exc:  # a collector that is down is no reason for a traceback
            log.warning("otel: OTLP metric export to %s failed: %s", self.cfg.otlp_endpoint, exc)
            self.export_failures += 1
            return False
        if ok:
            self.exports += 1
        else:
            if not self.export_failures:  # once: the exporter logs each failure itself
                log.warning("otel: OTLP metric export to %s failed", self.cfg.otlp_endpoint)
            self.export_failures += 1
        return ok

    async def _export_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.export_interval)
            await self.export_now()

    # -- Prometheus ----------------------------------------------------------------------

    def _http(self) -> Any:
        return self.context.extras.get("fluxmq.http")

    async def scrape(self, req: Request) -> Response:
        """``GET /metrics``: the admin API's access rule (bearer token when
        ``[http] admin_token`` is set, else loopback clients only)."""
        token = self._http().cfg.admin_token
        if token:
            scheme, _, given = req.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), token.encode()
            ):
                raise HTTPError(
                    401,
                    "metrics: missing or wrong bearer token",
                    [("WWW-Authenticate", 'Bearer realm="fluxmq-admin"')],
                )
        elif not is_loopback(req.remote_host):
            raise HTTPError(
                403, "metrics: only loopback clients are served while [http] admin_token is empty"
            )
        assert self.metrics is not None
        body = self.metrics.prometheus_text().encode()
        return Response(200, body, PROMETHEUS_CONTENT_TYPE)
