"""Test helpers for the otel plugin and for plugins that check their metrics:
scrape ``/metrics`` over a real socket and read it with prometheus_client's parser
(imported only when used, as it is a test dependency); a broker whose finished spans
an in-memory exporter keeps, and a client's W3C trace context to send."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from fluxmq_core.testing.broker import BrokerThread

__all__ = [
    "PARENT_ID",
    "TRACEPARENT",
    "TRACE_ID",
    "WAIT",
    "samples",
    "scrape",
    "subscribe",
    "traced_broker",
    "value",
]

WAIT = 10.0

#: A client's sampled trace context (the W3C example ids), as a ``traceparent``.
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


@contextmanager
def traced_broker(
    plugins: list[str], sample_rate: float = 1.0
) -> Iterator[tuple[BrokerThread, InMemorySpanExporter]]:
    """A broker with ``plugins`` (``otel`` among them) tracing at ``sample_rate``,
    and the in-memory exporter that receives every span it finishes."""
    cfg = {"otel": {"traces": True, "sample_rate": sample_rate}}
    with BrokerThread(plugins=plugins, config=cfg) as b:
        exporter = InMemorySpanExporter()
        b.context.extras["otel"].tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        yield b, exporter


def scrape(broker: BrokerThread, token: str | None = None) -> tuple[int, str, str]:
    """GET /metrics: (status, content type, body)."""
    host, port = broker.address("http.bind")
    req = urllib.request.Request(f"http://{host}:{port}/metrics")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=WAIT) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition, keyed by (name, sorted labels)."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, tuple(sorted(labels.items()))))


def subscribe(client: Any, topic: str, qos: int = 1) -> list[Any]:
    """Subscribe and wait for SUBACK; returns the list messages are appended to."""
    got: list[Any] = []
    done = threading.Event()
    client.on_message = lambda _c, _u, msg: got.append(msg)
    client.on_subscribe = lambda *a: done.set()
    client.subscribe(topic, qos)
    assert done.wait(WAIT), "no SUBACK"
    return got
