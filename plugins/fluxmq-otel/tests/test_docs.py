"""The docs stay true: docs/observability.md names every metric a broker with the
bundled protocols (and a distributed cluster) exports, and every metric a panel of
docs/grafana/*.json queries exists under that Prometheus name."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fluxmq_otel import collectors
from fluxmq_otel.metrics import prom_name

from fluxmq_core.testing.broker import BrokerThread

DOCS = Path(__file__).resolve().parents[3] / "docs"
PROMQL_WORDS = {
    "sum",
    "rate",
    "irate",
    "increase",
    "by",
    "without",
    "max",
    "min",
    "avg",
    "count",
    "on",
    "ignoring",
    "histogram_quantile",
    "topk",
    "bottomk",
}


class _Distributed:
    class cluster:  # noqa: N801 - stands for context.cluster
        distributed = True

        @staticmethod
        def status() -> dict[str, object]:
            return {}


@pytest.fixture(scope="module")
def exported() -> Iterator[dict[str, str]]:
    """Prometheus name -> OpenTelemetry name of every metric offered."""
    cfg = {"webhooks": {"endpoints": [{"url": "http://127.0.0.1:9/hook"}]}}
    with BrokerThread(plugins=["mqtt", "amqp091", "amqp1", "coap", "otel"], config=cfg) as b:
        out = {}
        specs = b.context.extras["otel"].specs()
        # A cluster of one has no cluster.* metrics: the family as a distributed
        # driver offers it.
        specs += collectors.cluster_specs(_Distributed())
        for spec in specs:
            name = prom_name(spec.name)
            if spec.kind == "counter" and not name.endswith("_total"):
                name += "_total"
            if spec.kind == "histogram":
                for suffix in ("_bucket", "_sum", "_count"):
                    out[name + suffix] = spec.name
            out[name] = spec.name
        yield out


def test_observability_doc_names_every_metric(exported: dict[str, str]) -> None:
    text = (DOCS / "observability.md").read_text()
    missing = sorted(
        otel
        for otel in exported.values()
        if not otel.startswith("storage.") and f"`{otel}`" not in text
    )
    assert not missing, f"docs/observability.md lacks {missing}"
    assert "`storage.<counter>`" in text


def _metrics_in(expr: str) -> set[str]:
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping labels
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    return {w for w in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr) if w not in PROMQL_WORDS}


def _storage_doc(name: str) -> bool:
    """``storage_*`` names are the installed driver's; the badgerlike ones the
    dashboard uses must at least be the documented ones: a ``stats()`` counter, or
    a metric the driver offers by name (``storage.fsync.duration.seconds``)."""
    if not name.startswith("storage_"):
        return False
    text = (DOCS / "observability.md").read_text()
    counter = re.sub(r"^(engine_|meta_)", "", name.removeprefix("storage_"))
    if f"`{counter}`" in text:
        return True
    base = re.sub(r"_(bucket|sum|count)$", "", name)
    offered = {prom_name(n) for n in re.findall(r"`(storage\.[a-z_.]+)`", text)}
    return base in offered or base in {n + "_total" for n in offered}


def test_grafana_dashboards_query_exported_names(exported: dict[str, str]) -> None:
    dashboards = sorted((DOCS / "grafana").glob("*.json"))
    assert dashboards
    for path in dashboards:
        dash = json.loads(path.read_text())
        queried = {
            name
            for panel in dash["panels"]
            for target in panel.get("targets", [])
            for name in _metrics_in(target["expr"])
        }
        assert queried, path
        unknown = sorted(n for n in queried if n not in exported and not _storage_doc(n))
        assert not unknown, f"{path.name} queries metrics nobody exports: {unknown}"
