"""Test helpers for the otel plugin and for plugins that check their metrics:
scrape ``/metrics`` over a real socket and read it with prometheus_client's parser
(imported only when used, as it is a test dependency)."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from typing import Any

from fluxmq_core.testing.broker import BrokerThread

__all__ = ["WAIT", "samples", "scrape", "subscribe", "value"]

WAIT = 10.0


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
