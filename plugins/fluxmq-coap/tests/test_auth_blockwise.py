"""Auth through the core hooks (query parameters), ACL on publish and subscribe,
the codes CoAP answers with, and block-wise transfers both ways bounded by
``coap.max_message_size``."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import aiocoap
import pytest
from aiocoap.numbers.codes import Code
from fluxmq_coap.testing import WAIT, Collector, broker_plugins, coap_url

from fluxmq_core.auth_file import set_password
from fluxmq_core.testing.broker import BrokerThread


async def req(client: aiocoap.Context, broker: Any, code: Code, path: str, **kw: Any) -> Any:
    msg = aiocoap.Message(code=code, uri=coap_url(broker, path), **kw)
    return await asyncio.wait_for(client.request(msg).response, WAIT)


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    d = tmp_path_factory.mktemp("coap-auth")
    pw = d / "passwd"
    set_password(pw, "alice", "s3cret")
    set_password(pw, "bob", "hunter2")
    acl = d / "acl.toml"
    acl.write_text(
        'default = "deny"\n'
        '[[rule]]\npermission = "allow"\ntopic = "#"\nusers = ["alice"]\n'
        '[[rule]]\npermission = "allow"\naction = "publish"\ntopic = "bob/#"\nusers = ["bob"]\n'
    )
    config = {
        "auth": {"password_file": str(pw), "acl_file": str(acl), "anonymous": False},
        "coap": {"max_message_size": 4096},
    }
    with BrokerThread(plugins=broker_plugins(), config=config) as b:
        yield b


async def test_anonymous_refused_with_4_01(client, secured):
    r = await req(client, secured, Code.POST, "/ps/bob/t", payload=b"x")
    assert r.code == Code.UNAUTHORIZED and r.payload


async def test_wrong_password_4_01(client, secured):
    r = await req(client, secured, Code.POST, "/ps/bob/t?username=bob&password=nope", payload=b"x")
    assert r.code == Code.UNAUTHORIZED


async def test_publish_allowed_and_denied_by_acl(client, secured):
    got = Collector()
    secured.call_soon(secured.context.router.subscribe, got, "bob/#")
    r = await req(
        client,
        secured,
        Code.POST,
        "/ps/bob/t?username=bob&password=hunter2&client_id=b1",
        payload=b"ok",
    )
    assert r.code == Code.CHANGED
    (m,) = got.wait(1)
    assert m.origin_client == "b1"
    r = await req(
        client, secured, Code.POST, "/ps/other/t?username=bob&password=hunter2", payload=b"x"
    )
    assert r.code == Code.FORBIDDEN and b"publish" in r.payload


async def test_subscribe_and_retained_get_need_read_permission(client, secured):
    r = await req(client, secured, Code.GET, "/ps/bob/t?username=bob&password=hunter2")
    assert r.code == Code.FORBIDDEN
    msg = aiocoap.Message(
        code=Code.GET, uri=coap_url(secured, "/ps/bob/%23?username=bob&password=hunter2"), observe=0
    )
    r = await asyncio.wait_for(client.request(msg).response, WAIT)
    assert r.code == Code.FORBIDDEN


async def test_authorization_basic_and_delete_needs_publish(client, secured):
    token = base64.b64encode(b"alice:s3cret").decode()
    auth = f"authorization=Basic%20{token}"
    r = await req(client, secured, Code.PUT, f"/ps/a/r?retain&{auth}", payload=b"kept")
    assert r.code == Code.CHANGED
    r = await req(client, secured, Code.GET, f"/ps/a/r?{auth}")
    assert (r.code, r.payload) == (Code.CONTENT, b"kept")
    r = await req(client, secured, Code.DELETE, "/ps/a/r?username=bob&password=hunter2")
    assert r.code == Code.FORBIDDEN
    r = await req(client, secured, Code.DELETE, f"/ps/a/r?{auth}")
    assert r.code == Code.DELETED


async def test_malformed_authorization_is_4_00(client, secured):
    r = await req(client, secured, Code.POST, "/ps/a?authorization=Basic%20!!!", payload=b"x")
    assert r.code == Code.BAD_REQUEST


async def test_block1_publish_and_block2_get(client, coap_broker):
    big = bytes(range(256)) * 40  # 10 KiB: aiocoap sends it in Block1 pieces
    got = Collector()
    coap_broker.call_soon(coap_broker.context.router.subscribe, got, "bw/t")
    r = await req(client, coap_broker, Code.PUT, "/ps/bw/t?retain", payload=big)
    assert r.code == Code.CHANGED
    (m,) = got.wait(1)
    assert m.payload == big
    r = await req(client, coap_broker, Code.GET, "/ps/bw/t")
    assert r.code == Code.CONTENT and r.payload == big


async def test_publish_larger_than_max_message_size_is_4_13(client, secured):
    r = await req(
        client, secured, Code.POST, "/ps/a/big?username=alice&password=s3cret", payload=b"x" * 5000
    )
    assert r.code == Code.REQUEST_ENTITY_TOO_LARGE
    assert r.opt.size1 == 4096


def test_dtls_bind_without_the_extra_refuses_with_the_reason(monkeypatch):
    import fluxmq_coap.config as coap_config

    monkeypatch.setattr(coap_config, "dtls_available", lambda: False)
    with pytest.raises(ValueError) as info:
        coap_config.CoAPConfig(dtls_bind="127.0.0.1:0", dtls_psk_file="x")
    assert "tinydtls" in str(info.value) and "dtls_bind" in str(info.value)
    assert "fluxmq-coap[dtls]" in str(info.value)


def test_shutting_down_answers_5_03(fluxmq_broker_factory):
    b = fluxmq_broker_factory(plugins=["coap"])
    b.call_soon(b.context.shutting_down.set)

    async def run() -> Any:
        ctx = await aiocoap.Context.create_client_context(transports=["udp6"])
        try:
            return await req(ctx, b, Code.POST, "/ps/x", payload=b"x")
        finally:
            await ctx.shutdown()

    r = asyncio.run(run())
    assert r.code == Code.SERVICE_UNAVAILABLE


async def test_external_callout_decides_coap_requests(client):
    """[auth_external]: a real HTTP callout service decides logins and publishes;
    a burst of publishes to one topic costs one authorization callout."""
    from fluxmq_core.testing.callout import CalloutHTTPServer

    with CalloutHTTPServer() as svc:
        svc.users["erin"] = ("pw", "uuid-erin")
        svc.denied.add("closed/t")
        config = {"auth_external": {"url": svc.url}, "auth": {"anonymous": False}}
        with BrokerThread(plugins=broker_plugins(), config=config) as b:
            got = Collector()
            b.call_soon(b.context.router.subscribe, got, "open/t")
            creds = "username=erin&password=pw&client_id=e1"
            r = await req(
                client, b, Code.POST, "/ps/open/t?username=erin&password=no", payload=b"x"
            )
            assert r.code == Code.UNAUTHORIZED
            for i in range(5):
                r = await req(client, b, Code.POST, f"/ps/open/t?{creds}", payload=b"%d" % i)
                assert r.code == Code.CHANGED
            assert len(got.wait(5)) == 5
            r = await req(client, b, Code.POST, f"/ps/closed/t?{creds}", payload=b"x")
            assert r.code == Code.FORBIDDEN
        logins = svc.paths("/auth/authenticate")
        assert {x["protocol"] for x in logins} == {"CoAP"}
        assert len(logins) == 2  # the refused one, then one for the six requests of e1
        checks = [(c["action"], c["topic"]) for c in svc.paths("/auth/authorize")]
        assert checks.count(("Publish", "open/t")) == 1
        assert ("Publish", "closed/t") in checks
        assert {c["external_id"] for c in svc.paths("/auth/authorize")} == {"uuid-erin"}
