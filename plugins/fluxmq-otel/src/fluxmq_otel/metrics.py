"""The meter side: observable instruments over the broker's counters, a pull reader
for Prometheus and an OTLP exporter driven from the event loop.

Every instrument but the histograms is asynchronous (observable): its callback
reads a :class:`~fluxmq_core.metrics.MetricSpec` when a reader collects, so the
message path never touches OpenTelemetry. A histogram (an fsync's duration) is a
synchronous instrument attached to the producer's
:class:`~fluxmq_core.metrics.Histogram` while the provider runs; specs that share
a name (the same metric from two storage drivers, with different attributes)
become one instrument. Collection always runs on the broker's event loop, where
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
from opentelemetry.sdk.metrics.export import (
    Histogram as HistogramPoints,
)
from opentelemetry.sdk.resources import Resource

from fluxmq_core.metrics import Histogram, MetricSpec

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


def _recorder(instrument: Any) -> Any:
    record = instrument.record

    def sink(value: float, attributes: Any) -> None:
        record(value, attributes)

    return sink


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
        self._attached: list[Histogram] = []

    def add_otlp(self, exporter: MetricExporter) -> None:
        self.otlp_reader = LoopReader(exporter)
        self._readers.append(self.otlp_reader)

    def start(self) -> None:
        self.provider = MeterProvider(resource=self.resource, metric_readers=self._readers)
        meter = self.provider.get_meter("fluxmq")
        # One instrument per name: specs sharing a name and kind are merged (their
        # callbacks, or their histograms, go to the one instrument).
        by_name: dict[str, list[MetricSpec]] = {}
        for spec in self.specs:
            same = by_name.setdefault(spec.name, [])
            if same and same[0].kind != spec.kind:
                log.warning(
                    "metric %s offered as %s and %s; the first one is kept",
                    spec.name,
                    same[0].kind,
                    spec.kind,
                )
                continue
            same.append(spec)
        self._attached = []
        for name, specs in by_name.items():
            first = specs[0]
            if first.kind == "histogram":
                bounds = next((s.histogram.boundaries for s in specs if s.histogram), ())
                hist = meter.create_histogram(
                    name,
                    unit=first.unit,
                    description=first.description,
                    explicit_bucket_boundaries_advisory=list(bounds) or None,
                )
                for spec in specs:
                    if spec.histogram is not None:
                        spec.histogram.attach(_recorder(hist))
                        self._attached.append(spec.histogram)
                continue
            make = {
                "counter": meter.create_observable_counter,
                "gauge": meter.create_observable_gauge,
                "updown": meter.create_observable_up_down_counter,
            }[first.kind]
            make(
                name,
                callbacks=[_callback(spec) for spec in specs],
                unit=first.unit,
                description=first.description,
            )

    def shutdown(self) -> None:
        for histogram in self._attached:
            histogram.attach(None)
        self._attached = []
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
    resource becomes ``target_info`` as the OpenTelemetry-Prometheus mapping says;
    a histogram is a ``histogram`` (cumulative ``_bucket{le=...}``, ``_sum``,
    ``_count``)."""
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
                if isinstance(points, HistogramPoints):
                    lines += _histogram_lines(metric, points)
                    continue
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


def _histogram_lines(metric: Any, points: Any) -> list[str]:
    name = prom_name(metric.name)
    lines = [
        f"# HELP {name} {_help(metric.description or metric.name)}",
        f"# TYPE {name} histogram",
    ]
    for dp in points.data_points:
        attrs = dict(dp.attributes or {})
        cumulative = 0
        bounds = [*dp.explicit_bounds, math.inf]
        for bound, count in zip(bounds, dp.bucket_counts, strict=False):
            cumulative += count
            labels = _labels({**attrs, "le": _number(float(bound))})
            lines.append(f"{name}_bucket{labels} {cumulative}")
        lines.append(f"{name}_sum{_labels(attrs)} {_number(dp.sum)}")
        lines.append(f"{name}_count{_labels(attrs)} {dp.count}")
    return lines
