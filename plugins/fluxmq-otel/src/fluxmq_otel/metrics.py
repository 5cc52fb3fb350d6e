"""The meter side: observable instruments over the broker's counters, a pull reader
for Prometheus and an OTLP exporter driven from the event loop.

Every instrument is asynchronous (observable): its callback reads a
:class:`~fluxmq_core.metrics.MetricSpec` when a reader collects, so the message path
never touches OpenTelemetry. Collection always runs on the broker's event loop, where
the counters live: a Prometheus scrape collects in its request handler, and OTLP
export collects in an asyncio task and only hands the finished batch to a worker
thread for the network call (the SDK's periodic reader would read the broker's
dicts from its own thread).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterable
from typing import Any

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    Gauge,
    InMemoryMetricReader,
    MetricExporter,
    MetricReader,
    MetricsData,
    Sum,
)
from opentelemetry.sdk.resources import Resource

from fluxmq_core.metrics import MetricSpec

__all__ = ["LoopReader", "Metrics", "render_prometheus"]

log = logging.getLogger("fluxmq.otel")


class LoopReader(MetricReader):
    """A reader collected by :meth:`export_once` on the event loop, exporting the
    batch in a worker thread."""

    def __init__(self, exporter: MetricExporter) -> None:
        super().__init__(
            preferred_temporality=exporter._preferred_temporality,
            preferred_aggregation=exporter._preferred_aggregation,
        )
        self.exporter = exporter
        self._batch: MetricsData | None = None

    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        self._batch = metrics_data

    async def export_once(self) -> bool:
        """Collect now and export; False when the exporter said it failed."""
        self._batch = None
        self.collect()
        batch = self._batch
        if batch is None:
            return True
        result = await asyncio.to_thread(self.exporter.export, batch)
        return getattr(result, "name", "") == "SUCCESS"

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.exporter.shutdown(timeout_millis=timeout_millis)


def _callback(spec: MetricSpec) -> Any:
    def observe(options: CallbackOptions) -> Iterable[Observation]:
        try:
            return [Observation(v, dict(a)) for v, a in spec.observations()]
        except Exception:
            log.exception("metric %s: reading failed", spec.name)
            return []

    return observe


class Metrics:
    """The meter provider with one observable instrument per spec."""

    def __init__(self, resource: Resource, specs: list[MetricSpec], prometheus: bool) -> None:
        self.prometheus_reader = InMemoryMetricReader() if prometheus else None
        self.otlp_reader: LoopReader | None = None
        self.specs = specs
        self.resource = resource
        self._readers: list[MetricReader] = (
            [self.prometheus_reader] if self.prometheus_reader else []
        )
        self.provider: MeterProvider | None = None

    def add_otlp(self, exporter: MetricExporter) -> None:
        self.otlp_reader = LoopReader(exporter)
        self._readers.append(self.otlp_reader)

    def start(self) -> None:
        self.provider = MeterProvider(resource=self.resource, metric_readers=self._readers)
        meter = self.provider.get_meter("fluxmq")
        seen: set[str] = set()
        for spec in self.specs:
            if spec.name in seen:
                log.warning("metric %s offered twice; the first one is kept", spec.name)
                continue
            seen.add(spec.name)
            make = {
                "counter": meter.create_observable_counter,
                "gauge": meter.create_observable_gauge,
                "updown": meter.create_observable_up_down_counter,
            }[spec.kind]
            make(
                spec.name, callbacks=[_callback(spec)], unit=spec.unit, description=spec.description
            )

    def shutdown(self) -> None:
        if self.provider is not None:
            self.provider.shutdown(timeout_millis=5_000)
            self.provider = None

    def prometheus_text(self) -> str:
        """Collect now and render the Prometheus text exposition format 0.0.4."""
        assert self.prometheus_reader is not None
        data = self.prometheus_reader.get_metrics_data()
        return render_prometheus(data, self.resource)


# --- Prometheus text format -------------------------------------------------------------


def prom_name(name: str) -> str:
    """``mqtt.messages.received.total`` -> ``mqtt_messages_received_total``."""
    out = "".join(c if c.isalnum() or c in "_:" else "_" for c in name)
    return "_" + out if out[:1].isdigit() else out


def _label_value(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(attrs: Any) -> str:
    if not attrs:
        return ""
    inner = ",".join(f'{prom_name(str(k))}="{_label_value(v)}"' for k, v in sorted(attrs.items()))
    return "{" + inner + "}"


def _number(v: float) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "+Inf" if v > 0 else "-Inf"
        return repr(v)
    return str(v)


def _help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def render_prometheus(data: MetricsData | None, resource: Resource) -> str:
    """Render ``data`` as Prometheus text: a monotonic sum is a ``counter`` (its name
    gets ``_total`` unless it ends so already), anything else a ``gauge``; the
    resource becomes ``target_info`` as the OpenTelemetry-Prometheus mapping says."""
    lines: list[str] = [
        "# HELP target_info Target metadata",
        "# TYPE target_info gauge",
        f"target_info{_labels(dict(resource.attributes))} 1",
    ]
    if data is None:
        return "\n".join(lines) + "\n"
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                points = metric.data
                counter = isinstance(points, Sum) and points.is_monotonic
                if not isinstance(points, Sum | Gauge):
                    continue
                name = prom_name(metric.name)
                if counter and not name.endswith("_total"):
                    name += "_total"
                lines.append(f"# HELP {name} {_help(metric.description or metric.name)}")
                lines.append(f"# TYPE {name} {'counter' if counter else 'gauge'}")
                for dp in points.data_points:
                    lines.append(f"{name}{_labels(dp.attributes)} {_number(dp.value)}")
    return "\n".join(lines) + "\n"
