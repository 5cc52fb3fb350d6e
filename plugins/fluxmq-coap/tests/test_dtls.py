"""CoAP over DTLS with pre-shared keys, against aiocoap's own DTLS client: the PSK
identity is the login (an ACL on usernames applies to it), a wrong key gets no
service, and the configuration refuses what it cannot serve. Skipped without the
'dtls' extra (DTLSSocket)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import aiocoap
import pytest
from aiocoap.numbers.codes import Code
from fluxmq_coap.config import CoAPConfig, dtls_available, load_psk_file
from fluxmq_coap.testing import WAIT, Collector, broker_plugins

from fluxmq_core.testing.broker import BrokerThread

needs_dtls = pytest.mark.skipif(
    not dtls_available(), reason="DTLSSocket (pip install 'fluxmq-coap[dtls]') is not installed"
)


def test_psk_file_parsing(tmp_path) -> None:
    f = tmp_path / "psk"
    f.write_text("# identities\nalice:s3cret:with:colons\n\nbob:k2\n")
    assert load_psk_file(str(f)) == {"alice": b"s3cret:with:colons", "bob": b"k2"}
    f.write_text("alice\n")
    with pytest.raises(ValueError, match=r"psk:1: expected 'identity:key'"):
        load_psk_file(str(f))
    f.write_text("a:1\na:2\n")
    with pytest.raises(ValueError, match="repeated"):
        load_psk_file(str(f))
    with pytest.raises(ValueError, match="cannot be read"):
        load_psk_file(str(tmp_path / "missing"))


@needs_dtls
def test_dtls_needs_a_psk_file() -> None:
    with pytest.raises(ValueError, match="dtls_psk_file"):
        CoAPConfig(dtls_bind="127.0.0.1:0")


@pytest.fixture(scope="module")
def dtls_broker(tmp_path_factory) -> Iterator[BrokerThread]:
    if not dtls_available():
        pytest.skip("DTLSSocket (pip install 'fluxmq-coap[dtls]') is not installed")
    d = tmp_path_factory.mktemp("coap-dtls")
    psk = d / "psk"
    psk.write_text("alice:alice-key\nbob:bob-key\n")
    acl = d / "acl.toml"
    acl.write_text(
        'default = "deny"\n[[rule]]\npermission = "allow"\ntopic = "dtls/alice/#"\n'
        'users = ["alice"]\n'
    )
    config = {
        "auth": {"acl_file": str(acl), "anonymous": False},
        "coap": {"dtls_bind": "127.0.0.1:0", "dtls_psk_file": str(psk)},
    }
    with BrokerThread(plugins=broker_plugins(), config=config) as b:
        yield b


async def _dtls_client(broker: BrokerThread, identity: str, key: str) -> tuple[Any, str]:
    port = broker.port("coap.dtls_bind")
    base = f"coaps://127.0.0.1:{port}"
    ctx = await aiocoap.Context.create_client_context(transports=["tinydtls"])
    ctx.client_credentials.load_from_dict(
        {f"{base}/*": {"dtls": {"psk": {"ascii": key}, "client-identity": {"ascii": identity}}}}
    )
    return ctx, base


async def test_psk_identity_is_the_login(dtls_broker) -> None:
    col = Collector("dtls-col")
    dtls_broker.call_soon(dtls_broker.context.router.subscribe, col, "dtls/#")
    ctx, base = await _dtls_client(dtls_broker, "alice", "alice-key")
    try:
        msg = aiocoap.Message(code=Code.POST, uri=f"{base}/ps/dtls/alice/t", payload=b"sealed")
        r = await asyncio.wait_for(ctx.request(msg).response, WAIT)
        assert r.code == Code.CHANGED, r.payload
        got = await asyncio.get_running_loop().run_in_executor(None, col.wait, 1)
        assert got[0].payload == b"sealed" and got[0].origin_protocol == "coap"
        # The ACL sees the identity: alice may not publish outside dtls/alice/.
        msg = aiocoap.Message(code=Code.POST, uri=f"{base}/ps/dtls/other", payload=b"x")
        r = await asyncio.wait_for(ctx.request(msg).response, WAIT)
        assert r.code == Code.FORBIDDEN
    finally:
        await ctx.shutdown()


async def test_other_identity_is_refused_by_the_acl(dtls_broker) -> None:
    ctx, base = await _dtls_client(dtls_broker, "bob", "bob-key")
    try:
        msg = aiocoap.Message(code=Code.POST, uri=f"{base}/ps/dtls/alice/t", payload=b"x")
        r = await asyncio.wait_for(ctx.request(msg).response, WAIT)
        assert r.code == Code.FORBIDDEN
    finally:
        await ctx.shutdown()


async def test_wrong_key_gets_no_service(dtls_broker) -> None:
    ctx, base = await _dtls_client(dtls_broker, "alice", "not-the-key")
    try:
        msg = aiocoap.Message(code=Code.POST, uri=f"{base}/ps/dtls/alice/t", payload=b"x")
        # The handshake fails: aiocoap reports an error, or never gets a response.
        with pytest.raises((aiocoap.error.Error, TimeoutError)):
            await asyncio.wait_for(ctx.request(msg).response, 3.0)
    finally:
        await ctx.shutdown()


async def test_plain_udp_still_needs_credentials(dtls_broker) -> None:
    ctx = await aiocoap.Context.create_client_context(transports=["udp6"])
    try:
        port = dtls_broker.port("coap.bind")
        msg = aiocoap.Message(
            code=Code.POST, uri=f"coap://127.0.0.1:{port}/ps/dtls/alice/t", payload=b"x"
        )
        r = await asyncio.wait_for(ctx.request(msg).response, WAIT)
        assert r.code == Code.UNAUTHORIZED
    finally:
        await ctx.shutdown()
