"""The core's observer events from CoAP, checked at a real webhook receiver with an
aiocoap client: a client is connected from its first observation to its last,
each observation is a subscription, notifications are deliveries, publishes are
reported, and a refused login is an auth failure."""

from __future__ import annotations

import asyncio
from typing import Any

import aiocoap
import pytest
from aiocoap.numbers.codes import Code
from fluxmq_coap.testing import WAIT, coap_url, until

from fluxmq_core.testing.webhooks import WebhookReceiver

P = "coap"


@pytest.fixture
def receiver():
    with WebhookReceiver() as rec:
        yield rec


async def wait_for(rec: WebhookReceiver, event_type: str, **data: Any) -> dict[str, Any]:
    return await asyncio.to_thread(rec.wait_for, event_type, **data)


async def _observe(client: aiocoap.Context, b: Any, path: str) -> Any:
    request = client.request(aiocoap.Message(code=Code.GET, uri=coap_url(b, path), observe=0))
    first = await asyncio.wait_for(request.response, WAIT)
    assert first.code == Code.CONTENT
    return request


async def _post(client: aiocoap.Context, b: Any, path: str, payload: bytes) -> Any:
    msg = aiocoap.Message(code=Code.POST, uri=coap_url(b, path), payload=payload)
    return await asyncio.wait_for(client.request(msg).response, WAIT)


async def test_observation_lifecycle_events(fluxmq_broker_factory, receiver, client):
    config = {**receiver.config(ordered=True), "coap": {"notify_con_every": 1}}
    b = fluxmq_broker_factory(plugins=["coap"], config=config)
    coap = b.context.extras["coap"]
    wide = await _observe(client, b, "/ps/wh/%23?client_id=dev1")
    side = await _observe(client, b, "/ps/side/t?client_id=dev1")
    ev = await wait_for(receiver, "client.connected", client_id="dev1", protocol=P)
    assert ev["data"]["remote"].startswith("127.0.0.1") or ev["data"]["remote"].startswith("[")
    await wait_for(receiver, "subscription.created", client_id="dev1", topic_filter="wh/#")
    sub = await wait_for(receiver, "subscription.created", client_id="dev1", topic_filter="side/t")
    assert sub["data"]["qos"] == 0

    assert (await _post(client, b, "/ps/wh/a?client_id=pub1", b"hello")).code == Code.CHANGED
    pub = await wait_for(receiver, "message.published", client_id="pub1", protocol=P)
    assert pub["data"]["topic"] == "wh/a"
    got = await wait_for(receiver, "message.delivered", client_id="dev1", topic="wh/a")
    assert (got["data"]["protocol"], got["data"]["origin_client"]) == (P, "pub1")

    # One observation ends (the client forgot it and answers the next CON with
    # RST): a subscription goes, the client stays connected.
    side.observation.cancel()
    for i in range(20):  # bounded: a few notifications until one is answered with RST
        await _post(client, b, "/ps/side/t?client_id=pub1", b"%d" % i)
        if await until(lambda: len(coap.observers) == 1, timeout=0.5):
            break
    await wait_for(receiver, "subscription.removed", client_id="dev1", topic_filter="side/t")
    # The last one ends (an operator disconnects the client): it is disconnected.
    assert b.call_soon(b.context.sessions.disconnect, "dev1")
    gone = await wait_for(receiver, "client.disconnected", client_id="dev1", protocol=P)
    assert gone["data"]["reason"] == "disconnected by an operator"
    # Ordered delivery: everything before the disconnect has arrived.
    assert len(receiver.matching("client.connected", client_id="dev1")) == 1
    assert len(receiver.matching("client.disconnected", client_id="dev1")) == 1
    removed = receiver.matching("subscription.removed", client_id="dev1")
    assert sorted(e["data"]["topic_filter"] for e in removed) == ["side/t", "wh/#"]
    assert await until(lambda: not coap.observers)
    assert wide.observation.cancelled  # the broker's final 5.03 ended it client-side
    # A one-shot publish is not a connection.
    assert not receiver.matching("client.connected", client_id="pub1")


async def test_refused_login_is_an_auth_failure(fluxmq_broker_factory, receiver, client):
    b = fluxmq_broker_factory(plugins=["coap"], config=receiver.config())
    r = await _post(client, b, "/ps/t?client_id=m1&username=mallory&password=nope", b"x")
    assert r.code == Code.UNAUTHORIZED
    fail = await wait_for(receiver, "auth.failure", client_id="m1", protocol=P)
    assert fail["data"]["username"] == "mallory" and fail["data"]["reason"]
