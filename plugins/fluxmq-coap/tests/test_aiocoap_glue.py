"""The aiocoap internals the server relies on (all in ``fluxmq_coap.aiocoap_glue``),
checked against the installed aiocoap: the pinned version range, a real server
context passing the start-up check, the ACK/RST hook and the datagram guard seeing
raw datagrams, and a clear error when an internal is missing."""

from __future__ import annotations

import asyncio
import socket
from importlib.metadata import requires, version
from typing import Any

import aiocoap
import pytest
from aiocoap import resource as coap_resource
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import RST
from fluxmq_coap import aiocoap_glue
from fluxmq_coap.testing import CON, encode, until
from fluxmq_coap.testing import RST as RAW_RST
from packaging.requirements import Requirement


def test_installed_aiocoap_is_in_the_pinned_range() -> None:
    reqs = [Requirement(r) for r in requires("fluxmq-coap") or []]
    pin = next(r for r in reqs if r.name == "aiocoap" and r.marker is None)
    assert pin.specifier.contains(version("aiocoap")), (pin, version("aiocoap"))
    assert any(s.operator == "<" for s in pin.specifier), "the range must have an upper bound"


class _Hello(coap_resource.Resource):
    async def render_get(self, request: Any) -> aiocoap.Message:
        return aiocoap.Message(code=Code.CONTENT, payload=b"hi")


@pytest.fixture
async def server() -> Any:
    site = coap_resource.Site()
    site.add_resource(["hello"], _Hello())
    ctx = await aiocoap.Context.create_server_context(
        site, bind=("127.0.0.1", 0), transports=["udp6"]
    )
    try:
        yield ctx
    finally:
        await ctx.shutdown()


async def test_a_server_context_has_every_internal(server: Any) -> None:
    aiocoap_glue.check(server)
    port = aiocoap_glue.bound_port(server)
    assert 0 < port < 65536
    answers: list[Any] = []
    errors: list[BaseException] = []
    managers = [aiocoap_glue.hook_context(server, answers.append)]
    aiocoap_glue.wrap_datagrams(server, lambda address, exc: errors.append(exc))
    assert aiocoap_glue.stop_incoming(managers, (b"nope", None)) is False
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        sock.connect(("127.0.0.1", port))
        # A request still works through the hooked render path.
        await loop.sock_sendall(sock, encode(CON, 1, 0x0101, b"t1", [(11, b"hello")]))
        reply = await asyncio.wait_for(loop.sock_recv(sock, 2048), 5)
        assert reply[1] == 69 and reply.endswith(b"hi")  # 2.05 Content
        # An RST reaches the hook with its message id, before aiocoap handles it.
        await loop.sock_sendall(sock, encode(RAW_RST, 0, 0x2345))
        assert await until(lambda: any(m.mid == 0x2345 for m in answers))
        assert next(m for m in answers if m.mid == 0x2345).mtype is RST
        # A datagram aiocoap's decoder fails on with a foreign exception is dropped.
        await loop.sock_sendall(sock, encode(CON, 1, 0x0102, b"t2", [(11, b"\xff\xfe")]))
        assert await until(lambda: bool(errors))
        assert isinstance(errors[0], UnicodeDecodeError)
    finally:
        sock.close()


def test_a_missing_internal_is_named() -> None:
    class Bare:
        request_interfaces: list[Any] = []

    with pytest.raises(aiocoap_glue.AiocoapInternalsError, match="request_interfaces"):
        aiocoap_glue.check(Bare())

    class NoIncoming:
        token_interface = None

    class Ctx:
        request_interfaces = [NoIncoming()]

    with pytest.raises(aiocoap_glue.AiocoapInternalsError, match="incoming_requests"):
        aiocoap_glue.check(Ctx())
