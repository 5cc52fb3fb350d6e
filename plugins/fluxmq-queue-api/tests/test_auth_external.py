"""The external auth callout (``[auth_external]``) behind the queue API: Basic
credentials go to a real HTTP callout service started by the test, its decisions
apply per call (append = publish, consume = subscribe), and a stream of appends
costs one authorization callout per queue, not one per message."""

from __future__ import annotations

import grpc
import pytest
from fluxmq_queue_api.client import QueueAPIError, QueueClient
from fluxmq_queue_api.testing import grpc_target

from fluxmq_core.testing.callout import CalloutHTTPServer


async def test_callout_decides_queue_api_calls(fluxmq_broker_factory) -> None:
    with CalloutHTTPServer() as svc:
        svc.users["carol"] = ("pw", "uuid-carol")
        svc.denied.add("$queue/secret")
        b = fluxmq_broker_factory(
            plugins=["queue_api"],
            config={
                "auth_external": {"url": svc.url},
                "auth": {"anonymous": False},
                "queues": {"jobs": {"type": "classic"}, "secret": {"type": "classic"}},
            },
        )
        target = grpc_target(b)
        async with QueueClient(target, username="carol", password="wrong") as bad:
            with pytest.raises(QueueAPIError) as info:
                await bad.append("jobs", b"x")
            assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
        async with QueueClient(target, username="carol", password="pw") as carol:
            for i in range(10):
                await carol.append("jobs", b"%d" % i)
            with pytest.raises(QueueAPIError) as info:
                await carol.append("secret", b"x")
            assert info.value.code == grpc.StatusCode.PERMISSION_DENIED
            got = await carol.consume("jobs", "g", "c1", max_messages=2, wait=5)
            assert [m.value for m in got] == [b"0", b"1"]
        logins = svc.paths("/auth/authenticate")
        # the refused login, then one login for the channel's thirteen calls
        assert [x["username"] for x in logins] == ["carol", "carol"]
        assert {x["protocol"] for x in logins} == {"HTTP"}
        checks = [(c["action"], c["topic"]) for c in svc.paths("/auth/authorize")]
        # ten appends to one queue: one publish callout for it (the decision is cached)
        assert checks.count(("Publish", "$queue/jobs")) == 1
        assert ("Publish", "$queue/secret") in checks
        assert ("Subscribe", "$queue/jobs") in checks
        assert {c["external_id"] for c in svc.paths("/auth/authorize")} == {"uuid-carol"}
        # a reload forgets the cached login and its decisions: asked again
        b.call(b.context.reload())
        async with QueueClient(target, username="carol", password="pw") as carol:
            await carol.append("jobs", b"after reload")
        assert len(svc.paths("/auth/authenticate")) == 3
        checks = [(c["action"], c["topic"]) for c in svc.paths("/auth/authorize")]
        assert checks.count(("Publish", "$queue/jobs")) == 2


async def test_login_cache_off_logs_in_on_every_call(fluxmq_broker_factory) -> None:
    with CalloutHTTPServer() as svc:
        svc.users["dave"] = ("pw", "uuid-dave")
        b = fluxmq_broker_factory(
            plugins=["queue_api"],
            config={
                "auth_external": {"url": svc.url},
                "auth": {"anonymous": False},
                "api": {"login_cache_ttl": 0},
                "queues": {"jobs": {"type": "classic"}},
            },
        )
        async with QueueClient(grpc_target(b), username="dave", password="pw") as dave:
            for _ in range(3):
                await dave.append("jobs", b"x")
        assert len(svc.paths("/auth/authenticate")) == 3
        assert len(svc.paths("/auth/authorize")) == 3
