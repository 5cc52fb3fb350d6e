"""OTLP export to local receivers: over HTTP (a plain http.server) and over gRPC (a
grpc server with the collector's service), each request decoded with
opentelemetry-proto. Exports are triggered by hand (``export_now``), not waited for."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import pytest
from fluxmq_otel.testing import WAIT
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from fluxmq_core.config import ConfigError
from fluxmq_core.testing.broker import BrokerThread


class Receiver:
    """An OTLP/HTTP receiver on an ephemeral loopback port."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.arrived = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer.arrived:
                    outer.requests.append(
                        (self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    outer.arrived.notify_all()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def wait_for(self, path: str) -> tuple[dict[str, str], bytes]:
        with self.arrived:
            ok = self.arrived.wait_for(
                lambda: any(p == path for p, _, _ in self.requests), timeout=WAIT
            )
            assert ok, f"no request to {path}; got {[p for p, _, _ in self.requests]}"
            return next((h, b) for p, h, b in self.requests if p == path)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: kv.value.string_value or kv.value.int_value for kv in kvs}


def _metric_names(req: metrics_service_pb2.ExportMetricsServiceRequest) -> dict[str, Any]:
    return {m.name: m for rm in req.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}


def test_otlp_http_metrics_and_traces(receiver: Receiver) -> None:
    cfg = {
        "otel": {
            "otlp_endpoint": receiver.url,
            "otlp_headers": {"X-Api-Key": "k1"},
            "export_interval": 3600.0,
            "traces": True,
        }
    }
    with BrokerThread(plugins=["otel"], config=cfg) as b:
        telemetry = b.context.extras["otel"]
        assert b.call(telemetry.export_now()) is True
        headers, body = receiver.wait_for("/v1/metrics")
        assert headers.get("x-api-key") == "k1"
        req = metrics_service_pb2.ExportMetricsServiceRequest.FromString(body)
        resource = _attrs(req.resource_metrics[0].resource.attributes)
        assert resource["service.name"] == "fluxmq"
        assert resource["service.instance.id"] == b.context.node_id
        assert resource["service.version"]
        names = _metric_names(req)
        assert "mqtt.connections.total" in names
        assert names["mqtt.messages.received.total"].sum.is_monotonic
        # A span, exported when the tracer provider flushes.
        from fluxmq_core.message import Message

        b.call_soon(b.context.publish, Message("otlp/t", b"x", origin_protocol="test"))
        assert telemetry.tracer_provider.force_flush(int(WAIT * 1000))
        _, body = receiver.wait_for("/v1/traces")
        traces = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
        spans = [s for rs in traces.resource_spans for ss in rs.scope_spans for s in ss.spans]
        assert "publish" in {s.name for s in spans}
        assert _attrs(traces.resource_spans[0].resource.attributes)["service.name"] == "fluxmq"


def test_otlp_export_failure_is_counted_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    # A port nobody listens on: the export fails, the broker goes on.
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    cfg = {
        "otel": {"otlp_endpoint": f"http://127.0.0.1:{port}", "otlp_timeout": 2.0, "traces": True}
    }
    with BrokerThread(plugins=["otel"], config=cfg) as b:
        telemetry = b.context.extras["otel"]
        assert b.call(telemetry.export_now(), timeout=30) is False
        assert telemetry.export_failures == 1
        from fluxmq_core.message import Message

        b.call_soon(b.context.publish, Message("down/t", b"x", origin_protocol="test"))
    # The broker stopped (its last export and span flush are bounded) and said why
    # the export failed without a traceback.
    ours = [r for r in caplog.records if r.name == "fluxmq.otel"]
    assert not [r for r in ours if r.exc_info], [r.getMessage() for r in ours]
    assert any("OTLP metric export" in r.getMessage() for r in ours)


class _MetricsService(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self) -> None:
        self.got: list[tuple[Any, dict[str, str]]] = []
        self.arrived = threading.Event()

    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC's name)
        self.got.append((request, dict(context.invocation_metadata())))
        self.arrived.set()
        return metrics_service_pb2.ExportMetricsServiceResponse()


def test_otlp_grpc_metrics() -> None:
    service = _MetricsService()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        cfg = {
            "otel": {
                "otlp_endpoint": f"http://127.0.0.1:{port}",
                "otlp_protocol": "grpc",
                "otlp_headers": {"X-Api-Key": "k2"},
                "export_interval": 3600.0,
            }
        }
        with BrokerThread(plugins=["otel"], config=cfg) as b:
            telemetry = b.context.extras["otel"]
            assert b.call(telemetry.export_now(), timeout=30) is True
            assert service.arrived.wait(WAIT)
            req, metadata = service.got[0]
            assert metadata.get("x-api-key") == "k2"
            assert "mqtt.bytes.received.total" in _metric_names(req)
            resource = _attrs(req.resource_metrics[0].resource.attributes)
            assert resource["fluxmq.node.id"] == b.context.node_id
    finally:
        server.stop(None)


@pytest.mark.parametrize(
    "otel, message",
    [
        ({"otlp_endpoint": "collector:4318"}, "otlp_endpoint"),
        ({"otlp_protocol": "thrift"}, "otlp_protocol"),
        ({"sample_rate": 1.5}, "sample_rate"),
        ({"export_interval": 0}, "export_interval"),
    ],
)
def test_bad_config_is_refused_with_the_key(otel: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        BrokerThread(plugins=["otel"], config={"otel": otel}).start()
    assert message in str(info.value)
