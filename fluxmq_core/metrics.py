"""Metric providers: how a plugin offers its counters to a metrics exporter.

The core and every protocol keep plain integer counters (see :mod:`fluxmq_core.stats`);
an exporter such as the ``otel`` plugin reads them at collection time through
observable instruments, so nothing is paid per message. This module is the one place
where a plugin says *which* of its numbers are metrics: it registers
:class:`MetricSpec` objects with :func:`register_metrics` (from
``fluxmq_register_servers`` or ``fluxmq_startup``), each with a ``read`` callable the
exporter calls on every collection. A plugin that is not installed registers nothing
and costs nothing; with no exporter installed the specs are never read.

A distribution (a latency) cannot be read as one number: the producer records
each value into a :class:`Histogram` (``kind="histogram"``, see
:func:`histogram_spec`), which costs one ``None`` check per value until an exporter
attaches its instrument. Several specs may share one name (say the same histogram
from the broker store and the queue log) when their kinds match and their
observations carry different attributes; the exporter makes one instrument of them.

Storage drivers are not pluggy plugins and never see the context: a driver offers
its metrics with a ``metric_specs(store)`` method (``store`` is ``"broker"`` or
``"queue_log"``, the label to put on its observations), and the broker registers
them through :func:`register_driver_metrics` under the owner ``storage.<store>``.

The registry lives in ``context.extras`` so that the context needs no new field.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "Histogram",
    "MetricSpec",
    "Observation",
    "histogram_spec",
    "metric_specs",
    "register_driver_metrics",
    "register_metrics",
]

EXTRAS_KEY = "fluxmq.metrics"

#: One value with its attributes (labels), e.g. ``(3, {"queue": "orders"})``.
Observation = tuple[float, Mapping[str, str]]


#: Where a :class:`Histogram` sends its values once an exporter listens.
HistogramSink = Callable[[float, Mapping[str, str]], None]

_NO_ATTRIBUTES: Mapping[str, str] = {}


class Histogram:
    """A distribution recorded where it happens (an fsync's duration ...).

    ``record`` costs one ``None`` check while no exporter is attached; an exporter
    calls :meth:`attach` with its instrument's ``record``. ``boundaries`` are the
    bucket bounds the producer suggests (in the metric's unit). Call ``record`` on
    the event loop: the exporter's aggregation is not the producer's business.
    """

    __slots__ = ("boundaries", "_sink")

    def __init__(self, boundaries: Iterable[float] = ()) -> None:
        self.boundaries: tuple[float, ...] = tuple(boundaries)
        self._sink: HistogramSink | None = None

    def record(self, value: float, attributes: Mapping[str, str] = _NO_ATTRIBUTES) -> None:
        sink = self._sink
        if sink is not None:
            sink(value, attributes)

    def attach(self, sink: HistogramSink | None) -> None:
        """Send values to ``sink`` from now on; ``None`` stops."""
        self._sink = sink

    @property
    def attached(self) -> bool:
        return self._sink is not None


def _no_observations() -> list[Observation]:
    return []


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric: ``name`` in OpenTelemetry dotted form (``amqp.connections.current``),
    ``kind`` ``"counter"`` (monotonic total), ``"gauge"`` (a current value),
    ``"updown"`` (a sum that goes both ways) or ``"histogram"`` (values recorded
    into ``histogram``; build it with :func:`histogram_spec`), and ``read``, called
    at each collection, returning a plain number or an iterable of
    :data:`Observation`. ``read`` must be cheap and must not block: it runs on the
    event loop."""

    name: str
    kind: Literal["counter", "gauge", "updown", "histogram"]
    read: Callable[[], float | Iterable[Observation]]
    unit: str = "1"
    description: str = ""
    histogram: Histogram | None = None

    def observations(self) -> list[Observation]:
        """What ``read`` returns, as a list of observations."""
        value = self.read()
        if isinstance(value, int | float):
            return [(value, {})]
        return list(value)


def histogram_spec(
    name: str, histogram: Histogram, unit: str = "1", description: str = ""
) -> MetricSpec:
    """A ``"histogram"`` spec over ``histogram`` (it has nothing to read)."""
    return MetricSpec(name, "histogram", _no_observations, unit, description, histogram)


def register_metrics(context: Any, owner: str, specs: Iterable[MetricSpec]) -> None:
    """Offer ``specs`` under ``owner`` (your plugin's name); registering again
    replaces that owner's list."""
    registry: dict[str, list[MetricSpec]] = context.extras.setdefault(EXTRAS_KEY, {})
    registry[owner] = list(specs)


def metric_specs(context: Any) -> dict[str, list[MetricSpec]]:
    """Every registered spec by owner (a copy)."""
    return {k: list(v) for k, v in context.extras.get(EXTRAS_KEY, {}).items()}


def register_driver_metrics(context: Any) -> None:
    """Register what the storage drivers (``context.store``, ``context.queue_log``)
    offer through a ``metric_specs(store)`` method, as owners ``storage.broker`` and
    ``storage.queue_log``; a driver without the method offers nothing. Called by
    the broker once the context exists."""
    for store, driver in (("broker", context.store), ("queue_log", context.queue_log)):
        offer = getattr(driver, "metric_specs", None)
        if callable(offer):
            register_metrics(context, f"storage.{store}", offer(store))
