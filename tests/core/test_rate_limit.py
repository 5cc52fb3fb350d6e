"""``[rate_limit]`` in the core: the token buckets on a manual clock, the per-IP
connection limit on a real listener, HTTP 429 with ``Retry-After`` over real sockets,
the counters in stats, and a reload that changes the limits."""

from __future__ import annotations

import http.client
import json
import logging
import socket
from typing import Any

import pytest

from fluxmq_core.clock import ManualClock
from fluxmq_core.config import ConfigError, load_config
from fluxmq_core.ratelimit import RateLimitConfig, RateLimits, remote_ip
from fluxmq_core.stats import Stats

# A rate so slow that no token comes back during a test: only the burst counts.
SLOW = 0.0001


def _post(port: int, path: str, body: Any, client: str = "c1") -> tuple[int, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request(
        "POST", path, body=json.dumps(body).encode(), headers={"x-fluxmq-client-id": client}
    )
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}


def test_buckets_on_a_manual_clock() -> None:
    clock = ManualClock(100.0)
    stats = Stats(0.0)
    limits = RateLimits(
        RateLimitConfig(
            connections_per_ip=1.0, connection_burst=2, publish_rate=2.0, publish_burst=1
        ),
        clock,
        stats,
    )
    assert limits.allow_connection("10.0.0.1:1") and limits.allow_connection("10.0.0.1:2")
    assert not limits.allow_connection("10.0.0.1:3")
    assert limits.allow_connection("10.0.0.2:1")  # another address has its own bucket
    assert stats.rate_limited_connections == 1
    clock.advance(1.0)
    assert limits.allow_connection("10.0.0.1:4")
    assert limits.allow_publish("c") and not limits.allow_publish("c")
    assert limits.retry_after("publish", "c") == 1
    bucket = limits.publish_bucket()
    assert bucket is not None and bucket.take(clock()) and not bucket.take(clock())
    clock.advance(0.5)
    assert bucket.take(clock())
    assert limits.subscribe_bucket() is None  # unconfigured: nothing to check
    assert stats.rate_limited_publishes == 1


def test_remote_ip_forms() -> None:
    assert remote_ip("127.0.0.1:5000") == "127.0.0.1"
    assert remote_ip("[::1]:5000") == "::1"
    assert remote_ip("?") == "?"


def test_bad_values_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="publish_rate"):
        load_config(
            {"rate_limit": RateLimitConfig},
            None,
            env={},
            overrides={"rate_limit": {"publish_rate": -1}},
        )


def test_http_publish_and_subscribe_get_429_with_retry_after(fluxmq_broker_factory: Any) -> None:
    broker = fluxmq_broker_factory(
        plugins=[],
        config={
            "rate_limit": {
                "publish_rate": SLOW,
                "publish_burst": 2,
                "subscribe_rate": SLOW,
                "subscribe_burst": 1,
            }
        },
    )
    port = broker.port("http.bind")
    msg = {"topic": "a/b", "payload": "eA=="}
    assert _post(port, "/publish", msg)[0] == 200
    assert _post(port, "/publish", msg)[0] == 200
    status, headers = _post(port, "/publish", msg)
    assert status == 429 and int(headers["retry-after"]) >= 1
    assert _post(port, "/publish", msg, client="c2")[0] == 200  # per client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/subscribe?filter=a/%23", headers={"x-fluxmq-client-id": "s1"})
    first = conn.getresponse()
    assert first.status == 200
    conn.close()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/subscribe?filter=a/%23", headers={"x-fluxmq-client-id": "s1"})
    second = conn.getresponse()
    assert second.status == 429 and second.getheader("Retry-After")
    conn.close()
    stats = broker.context.stats
    assert stats.rate_limited_publishes == 1 and stats.rate_limited_subscribes == 1


def _refused(port: int) -> bool:
    """Open a connection and send a request: True when the broker closed it unanswered."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        try:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(100) == b""
        except ConnectionError:
            return True


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


def test_connections_per_ip_on_a_listener_and_reload(
    fluxmq_broker_factory: Any, tmp_path: Any, keep_logging: Any
) -> None:
    conf = tmp_path / "fluxmq.toml"
    conf.write_text("[rate_limit]\nconnections_per_ip = 0.0001\nconnection_burst = 2\n")
    broker = fluxmq_broker_factory(plugins=[], config_file=str(conf))
    port = broker.port("http.bind")
    assert not _refused(port) and not _refused(port)
    assert _refused(port)
    assert broker.context.stats.rate_limited_connections == 1
    conf.write_text("[rate_limit]\nconnections_per_ip = 0\n")
    applied = broker.call(broker.context.reload())
    assert "rate_limit" in applied
    assert not _refused(port) and not _refused(port) and not _refused(port)
