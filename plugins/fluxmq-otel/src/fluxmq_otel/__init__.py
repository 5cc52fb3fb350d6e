"""FluxMQ OpenTelemetry plugin: metrics read from the broker's counters, real traces,
OTLP export and a Prometheus ``/metrics`` endpoint."""

__version__ = "0.1.0"
