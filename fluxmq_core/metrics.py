"""Metric providers: how a plugin offers its counters to a metrics exporter.

The core and every protocol keep plain integer counters (see :mod:`fluxmq_core.stats`);
an exporter such as the ``otel`` plugin reads them at collection time through
observable instruments, so nothing is paid per message. This module is the one place
where a plugin says *which* of its numbers are metrics: it registers
:class:`MetricSpec` objects with :func:`register_metrics` (from
``fluxmq_register_servers`` or ``fluxmq_startup``), each with a ``read`` callable the
exporter calls on every collection. A plugin that is not installed registers nothing
and costs nothing; with no exporter installed the specs are never read.

The registry lives in ``context.extras`` so that the context needs no new field.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["MetricSpec", "Observation", "metric_specs", "register_metrics"]

EXTRAS_KEY = "fluxmq.metrics"

#: One value with its attributes (labels), e.g. ``(3, {"queue": "orders"})``.
Observation = tuple[float, Mapping[str, str]]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric: ``name`` in OpenTelemetry dotted form (``amqp.connections.current``),
    ``kind`` ``"counter"`` (monotonic total), ``"gauge"`` (a current value) or
    ``"updown"`` (a sum that goes both ways), and ``read``, called at each
    collection, returning a plain number or an iterable of :data:`Observation`.
    ``read`` must be cheap and must not block: it runs on the event loop."""

    name: str
    kind: Literal["counter", "gauge", "updown"]
    read: Callable[[], float | Iterable[Observation]]
    unit: str = "1"
    description: str = ""

    def observations(self) -> list[Observation]:
        """What ``read`` returns, as a list of observations."""
        value = self.read()
        if isinstance(value, int | float):
            return [(value, {})]
        return list(value)


def register_metrics(context: Any, owner: str, specs: Iterable[MetricSpec]) -> None:
    """Offer ``specs`` under ``owner`` (your plugin's name); registering again
    replaces that owner's list."""
    registry: dict[str, list[MetricSpec]] = context.extras.setdefault(EXTRAS_KEY, {})
    registry[owner] = list(specs)


def metric_specs(context: Any) -> dict[str, list[MetricSpec]]:
    """Every registered spec by owner (a copy)."""
    return {k: list(v) for k, v in context.extras.get(EXTRAS_KEY, {}).items()}
