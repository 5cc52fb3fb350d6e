"""The broker-wide ``[rate_limit]`` on CoAP with aiocoap: publishes and Observe
registrations over the per-client limit get 4.29 Too Many Requests with Max-Age."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import aiocoap
import pytest
from aiocoap.numbers.codes import Code
from fluxmq_coap.testing import WAIT, coap_url

from fluxmq_core.testing import BrokerThread

SLOW = 0.0001  # no token comes back during the test: only the burst counts


@pytest.fixture
def limited() -> Iterator[BrokerThread]:
    config = {"rate_limit": {"publish_rate": SLOW, "publish_burst": 2}}
    with BrokerThread(plugins=["coap"], config=config) as b:
        yield b


async def req(client: aiocoap.Context, broker: Any, code: Code, path: str, **kw: Any) -> Any:
    msg = aiocoap.Message(code=code, uri=coap_url(broker, path), **kw)
    return await asyncio.wait_for(client.request(msg).response, WAIT)


async def test_publish_over_the_limit_is_4_29(client, limited):
    path = "/ps/rl/a?client_id=dev1"
    assert (await req(client, limited, Code.POST, path, payload=b"1")).code == Code.CHANGED
    assert (await req(client, limited, Code.POST, path, payload=b"2")).code == Code.CHANGED
    refused = await req(client, limited, Code.POST, path, payload=b"3")
    assert refused.code == Code.TOO_MANY_REQUESTS
    assert refused.opt.max_age is not None and refused.opt.max_age >= 1
    other = await req(client, limited, Code.POST, "/ps/rl/a?client_id=dev2", payload=b"x")
    assert other.code == Code.CHANGED  # per client
    assert limited.call_soon(lambda: limited.context.stats.rate_limited_publishes) == 1


async def test_new_source_endpoints_take_connection_tokens(client):
    config = {"rate_limit": {"connections_per_ip": SLOW, "connection_burst": 1}}
    with BrokerThread(plugins=["coap"], config=config) as b:
        path = "/ps/rl/c"
        first = await req(client, b, Code.POST, path, payload=b"1")
        assert first.code == Code.CHANGED
        again = await req(client, b, Code.POST, path, payload=b"2")
        assert again.code == Code.CHANGED  # the same endpoint: not a new connection
        other = await aiocoap.Context.create_client_context(transports=["udp6"])
        try:  # another source port on the same IP: a new connection, over the limit
            refused = await req(other, b, Code.POST, path, payload=b"3")
        finally:
            await other.shutdown()
        assert refused.code == Code.TOO_MANY_REQUESTS and refused.opt.max_age >= 1
        assert b.call_soon(lambda: b.context.stats.rate_limited_connections) == 1
        ok = await req(client, b, Code.POST, path, payload=b"4")
        assert ok.code == Code.CHANGED


async def test_observe_registrations_over_the_limit_are_4_29(client):
    config = {"rate_limit": {"subscribe_rate": SLOW, "subscribe_burst": 1}}
    with BrokerThread(plugins=["coap"], config=config) as b:
        first = client.request(
            aiocoap.Message(code=Code.GET, uri=coap_url(b, "/ps/rl/o/1?client_id=obs1"), observe=0)
        )
        assert (await asyncio.wait_for(first.response, WAIT)).code == Code.CONTENT
        refused = await req(client, b, Code.GET, "/ps/rl/o/2?client_id=obs1", observe=0)
        assert refused.code == Code.TOO_MANY_REQUESTS
        assert refused.opt.max_age is not None and refused.opt.max_age >= 1
        assert b"subscribe rate limit" in refused.payload
        ok = await req(client, b, Code.GET, "/ps/rl/o/3?client_id=obs2", observe=0)
        assert ok.code == Code.CONTENT  # per client
        assert b.call_soon(lambda: b.context.stats.rate_limited_subscribes) == 1
        assert b.call_soon(lambda: len(b.context.extras["coap"].observers)) == 2
        first.observation.cancel()
