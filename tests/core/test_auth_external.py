"""``[auth_external]``: the auth callout against real HTTP and gRPC services started
by the test, driven by a real HTTP client (http.client) through the broker's HTTP
listener; every error path fails closed (timeout, breaker open, malformed answer,
nobody listening); the identity is sent back in authorization calls."""

from __future__ import annotations

import base64
import http.client
import json
import logging
import socket
import sys
from typing import Any

import pytest

from fluxmq_core.callout.config import ExternalAuthConfig
from fluxmq_core.callout.plugin import ExternalAuth
from fluxmq_core.callout.transport import Breaker
from fluxmq_core.clock import ManualClock
from fluxmq_core.testing.callout import CalloutHTTPServer

MSG = {"topic": "t/1", "payload": "eA=="}


def publish(broker: Any, user: str | None, password: str = "", topic: str = "t/1") -> int:
    headers = {"x-fluxmq-client-id": "c1"}
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    conn = http.client.HTTPConnection("127.0.0.1", broker.port("http.bind"), timeout=10)
    conn.request("POST", "/publish", json.dumps({**MSG, "topic": topic}), headers)
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp.status


def start(factory: Any, **cfg: Any) -> Any:
    return factory(plugins=[], config={"auth_external": cfg})


@pytest.fixture
def service() -> Any:
    with CalloutHTTPServer() as s:
        yield s


def test_http_login_and_authorize_with_the_external_identity(fluxmq_broker_factory, service):
    b = start(fluxmq_broker_factory, url=service.url)
    assert publish(b, "alice", "secret") == 200
    assert publish(b, "alice", "secret", topic="forbidden") == 403
    assert publish(b, "alice", "wrong") == 401
    assert publish(b, "mallory", "x") == 401
    logins = service.paths("/auth/authenticate")
    assert logins[0]["username"] == "alice" and logins[0]["protocol"] == "HTTP"
    checks = service.paths("/auth/authorize")
    assert [c["topic"] for c in checks] == ["t/1", "forbidden"]
    assert {c["external_id"] for c in checks} == {"uuid-alice"}
    assert checks[0]["action"] == "Publish"


def test_timeout_retries_then_fails_closed(fluxmq_broker_factory, service):
    service.mode = "slow"
    b = start(fluxmq_broker_factory, url=service.url, timeout=0.2, retries=1, backoff=0.0)
    assert publish(b, "alice", "secret") == 401
    assert len(service.paths("/auth/authenticate")) == 2  # first try and one retry


def test_server_errors_open_the_breaker(fluxmq_broker_factory, service):
    service.mode = "error"
    b = start(
        fluxmq_broker_factory,
        url=service.url,
        retries=2,
        backoff=0.0,
        breaker_failures=1,
        breaker_reset=3600,
    )
    assert publish(b, "alice", "secret") == 401
    assert len(service.paths("/auth/authenticate")) == 3
    service.mode = "ok"  # the service is back, but the breaker is open: still refused
    assert publish(b, "alice", "secret") == 401
    assert len(service.paths("/auth/authenticate")) == 3  # not even asked


@pytest.mark.parametrize("mode", ["garbage", "wrong-type"])
def test_malformed_answers_fail_closed_without_retry(fluxmq_broker_factory, service, mode):
    service.mode = mode
    b = start(fluxmq_broker_factory, url=service.url, retries=3, backoff=0.0)
    assert publish(b, "alice", "secret") == 401
    assert len(service.paths("/auth/authenticate")) == 1


def test_malformed_authorization_answer_denies_and_is_not_cached(fluxmq_broker_factory, service):
    b = start(fluxmq_broker_factory, url=service.url)
    service.mode = "wrong-authz"
    assert publish(b, "alice", "secret") == 403
    service.mode = "ok"  # a failed check is not remembered: asked again, allowed
    assert publish(b, "alice", "secret") == 200


def test_nobody_listening_fails_closed(fluxmq_broker_factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        b = start(fluxmq_broker_factory, url=f"http://127.0.0.1:{port}", retries=0)
        assert publish(b, "alice", "secret") == 401
        assert publish(b, None) == 401  # anonymous goes to the service too, and fails


def test_protocol_selection_leaves_other_protocols_alone(fluxmq_broker_factory, service):
    b = start(fluxmq_broker_factory, url=service.url, protocols=["mqtt"])
    assert publish(b, None) == 200  # HTTP is not called out: local anonymous applies
    assert service.calls == []


@pytest.fixture
def keep_logging() -> Any:
    """A reload from a file re-runs ``setup_logging`` (root handler, ``fluxmq``
    level): put the process's logging back so later tests' ``caplog`` is unaffected."""
    root, flux = logging.getLogger(), logging.getLogger("fluxmq")
    saved = (list(root.handlers), root.level, flux.level)
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    flux.setLevel(saved[2])


def test_reload_applies_a_new_url(fluxmq_broker_factory, service, tmp_path, keep_logging):
    conf = tmp_path / "fluxmq.toml"
    conf.write_text("[auth_external]\nurl = ''\n")
    b = fluxmq_broker_factory(plugins=[], config_file=str(conf))
    assert publish(b, "alice", "secret") == 401  # no source knows alice
    conf.write_text(f"[auth_external]\nurl = '{service.url}'\n")
    b.call(b.context.reload())
    assert publish(b, "alice", "secret") == 200


def test_bad_config_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        ExternalAuthConfig(url="ftp://x")
    with pytest.raises(ValueError, match="unknown protocol"):
        ExternalAuthConfig(url="http://x", protocols=["smtp"])


def test_grpc_without_grpcio_names_the_package(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "grpc", None)
    with pytest.raises(ImportError, match="grpcio"):
        ExternalAuth(ExternalAuthConfig(url="127.0.0.1:1", transport="grpc"))


def test_breaker_half_open_lets_one_trial_through() -> None:
    clock = ManualClock()
    br = Breaker(2, 10.0, clock)
    br.failure()
    assert br.state == "closed" and br.admit()
    br.failure()
    assert br.state == "open" and not br.admit()
    clock.advance(10.0)
    assert br.admit() and not br.admit()  # one trial at a time
    br.failure()
    assert br.state == "open"
    clock.advance(10.0)
    assert br.admit()
    br.success()
    assert br.state == "closed" and br.admit()


def test_grpc_transport(fluxmq_broker_factory) -> None:
    pytest.importorskip("grpc")
    from fluxmq_core.testing.callout import CalloutGrpcServer

    with CalloutGrpcServer() as svc:
        b = start(fluxmq_broker_factory, url=svc.url, transport="grpc")
        assert publish(b, "alice", "secret") == 200
        assert publish(b, "alice", "secret", topic="forbidden") == 403
        assert publish(b, "alice", "nope") == 401
        logins = svc.paths("Authenticate")
        assert logins[0]["protocol"] == 4  # HTTP in the contract's enum
        assert {c["external_id"] for c in svc.paths("Authorize")} == {"uuid-alice"}
        svc.mode = "error"
        assert publish(b, "alice", "secret") == 401
