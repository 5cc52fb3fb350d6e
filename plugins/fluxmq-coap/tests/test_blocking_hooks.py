"""``[[hooks.endpoints]]`` on CoAP with aiocoap and a real hook service: a publish
hook denies (4.03), moves a publish to another topic (authorized again) and changes
its payload; a subscribe hook denies an observation or observes another filter."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import aiocoap
from aiocoap.numbers.codes import Code
from fluxmq_coap.testing import WAIT, Collector, coap_url

from fluxmq_core.message import Message
from fluxmq_core.testing.callout import CalloutHTTPServer

ACL = (
    '[[rule]]\npermission = "deny"\naction = "publish"\ntopic = "secret/#"\n'
    '[[rule]]\npermission = "allow"\ntopic = "#"\n'
)


def answer(body: dict[str, Any]) -> dict[str, Any]:
    topic = body["topic"]
    if topic in ("deny/me", "sub/deny"):
        return {"result": "deny", "reason": "nope"}
    if topic == "move/me":
        return {"result": "ok", "topic": "moved/here", "payload": base64.b64encode(b"new").decode()}
    if topic == "move/forbidden":
        return {"result": "ok", "topic": "secret/x"}
    if topic == "sub/move":
        return {"result": "ok", "topic": "sub/moved"}
    return {"result": "ok"}


async def _req(client: aiocoap.Context, b: Any, code: Code, path: str, **kw: Any) -> Any:
    msg = aiocoap.Message(code=code, uri=coap_url(b, path), **kw)
    return await asyncio.wait_for(client.request(msg).response, WAIT)


async def test_publish_and_observe_hooks(fluxmq_broker_factory, client, tmp_path):
    acl = tmp_path / "acl.toml"
    acl.write_text(ACL)
    with CalloutHTTPServer() as svc:
        svc.hook_answer = answer
        config = {
            "hooks": {"endpoints": [{"url": svc.url, "protocols": ["coap"]}]},
            "auth": {"acl_file": str(acl)},
        }
        b = fluxmq_broker_factory(plugins=["coap"], config=config)
        rec = Collector()
        b.call_soon(b.context.router.subscribe, rec, "#")
        assert (await _req(client, b, Code.POST, "/ps/plain/t", payload=b"x")).code == Code.CHANGED
        denied = await _req(client, b, Code.POST, "/ps/deny/me", payload=b"x")
        assert denied.code == Code.FORBIDDEN and b"nope" in denied.payload
        assert (await _req(client, b, Code.POST, "/ps/move/me", payload=b"x")).code == Code.CHANGED
        moved = await _req(client, b, Code.POST, "/ps/move/forbidden", payload=b"x")
        assert moved.code == Code.FORBIDDEN  # authorized again under the hook's topic
        assert (await _req(client, b, Code.POST, "/ps/plain/t2", payload=b"y")).code == Code.CHANGED
        got = await asyncio.to_thread(rec.wait, 3)
        assert [(m.topic, m.payload) for m in got] == [
            ("plain/t", b"x"),
            ("moved/here", b"new"),
            ("plain/t2", b"y"),
        ]
        calls = [c for c in svc.paths("/hooks") if c["hook"] == "auth_on_publish"]
        assert calls[0]["protocol"] == "CoAP" and calls[0]["topic"] == "plain/t"

        refused = await _req(client, b, Code.GET, "/ps/sub/deny", observe=0)
        assert refused.code == Code.FORBIDDEN
        request = client.request(
            aiocoap.Message(code=Code.GET, uri=coap_url(b, "/ps/sub/move"), observe=0)
        )
        first = await asyncio.wait_for(request.response, WAIT)
        assert first.code == Code.CONTENT
        sessions = b.call_soon(lambda: b.context.sessions.list(protocol="coap"))
        assert any("sub/moved" in s.subscriptions for s in sessions)
        b.call_soon(b.context.publish, Message("sub/moved", b"to the hooked filter"))
        note = await asyncio.wait_for(request.observation.__aiter__().__anext__(), WAIT)
        assert note.payload == b"to the hooked filter"
        request.observation.cancel()
