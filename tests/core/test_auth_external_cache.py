"""``[auth_external] cache_ttl`` and ``cache_size``: the callout's allow and deny
answers are reused per client, action and topic until they are ``cache_ttl`` seconds
old (on the broker's clock, moved by hand here) and at most ``cache_size`` per client,
counted as calls reaching a real HTTP and a real gRPC auth service."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from fluxmq_core.clock import ManualClock
from fluxmq_core.testing.callout import CalloutHTTPServer

PUB = "publish"


@pytest.fixture(params=["http", "grpc"])
def service(request: Any) -> Iterator[tuple[Any, str]]:
    if request.param == "grpc":
        pytest.importorskip("grpc")
        from fluxmq_core.testing.callout import CalloutGrpcServer

        with CalloutGrpcServer() as g:
            yield g, "grpc"
    else:
        with CalloutHTTPServer() as h:
            yield h, "http"


def _authz_calls(svc: Any, transport: str) -> list[str]:
    path = "Authorize" if transport == "grpc" else "/auth/authorize"
    return [c["topic"] for c in svc.paths(path)]


def _broker(factory: Any, svc: Any, transport: str, clock: ManualClock, **cfg: Any) -> Any:
    return factory(
        plugins=[],
        clock=clock,
        config={"auth_external": {"url": svc.url, "transport": transport, **cfg}},
    )


def _check(b: Any, topic: str, client: str = "c1") -> bool:
    return b.call(b.context.auth.authorize(client, "alice", PUB, topic))


def test_answers_are_reused_until_the_ttl_runs_out(fluxmq_broker_factory, service):
    svc, transport = service
    clock = ManualClock(time.time())
    b = _broker(fluxmq_broker_factory, svc, transport, clock, cache_ttl=30.0)
    for _ in range(5):
        assert _check(b, "t/1") is True
        assert _check(b, "forbidden") is False  # a deny is cached too
    assert _authz_calls(svc, transport) == ["t/1", "forbidden"]
    clock.advance(29.0)
    assert _check(b, "t/1") and not _check(b, "forbidden")
    assert len(_authz_calls(svc, transport)) == 2  # still fresh
    clock.advance(1.5)
    svc.denied.add("t/1")  # the service changed its mind: seen once the TTL ran out
    assert _check(b, "t/1") is False
    assert _check(b, "forbidden") is False
    assert _authz_calls(svc, transport) == ["t/1", "forbidden", "t/1", "forbidden"]
    assert b.call_soon(lambda: b.context.auth.cache_ttl) == 30.0


def test_cache_size_bounds_the_answers_kept_per_client(fluxmq_broker_factory, service):
    svc, transport = service
    clock = ManualClock(time.time())
    b = _broker(fluxmq_broker_factory, svc, transport, clock, cache_size=2)
    for topic in ("a", "b", "c"):
        assert _check(b, topic)
    assert _check(b, "c") and _check(b, "b")  # the two newest stay cached
    assert _authz_calls(svc, transport) == ["a", "b", "c"]
    assert _check(b, "a")  # the oldest was dropped: asked again
    assert _authz_calls(svc, transport) == ["a", "b", "c", "a"]
    assert _check(b, "x", client="c2")  # another client has its own bound
    assert b.call_soon(lambda: b.context.auth.cache_entries) == 3


def test_ttl_zero_keeps_answers_until_disconnect(fluxmq_broker_factory, service):
    svc, transport = service
    clock = ManualClock(time.time())
    b = _broker(fluxmq_broker_factory, svc, transport, clock, cache_ttl=0)
    assert _check(b, "t/1")
    clock.advance(10 * 86400.0)
    assert _check(b, "t/1")
    assert _authz_calls(svc, transport) == ["t/1"]
    b.call_soon(b.context.auth.forget_client, "c1")  # what a disconnect does
    assert _check(b, "t/1")
    assert _authz_calls(svc, transport) == ["t/1", "t/1"]


def test_cache_settings_are_checked() -> None:
    from fluxmq_core.callout.config import ExternalAuthConfig

    with pytest.raises(ValueError, match="cache_ttl"):
        ExternalAuthConfig(url="http://127.0.0.1:1", cache_ttl=-1)
    with pytest.raises(ValueError, match="cache_size"):
        ExternalAuthConfig(url="http://127.0.0.1:1", cache_size=-5)
